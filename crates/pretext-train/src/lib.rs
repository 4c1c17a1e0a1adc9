//! Training for pretext: the training loop shared by pretraining, fine-tuning and the supervised
//! baseline, checkpoints, probes and the comparison study.
