//! The protocols that train: fine-tuning a pretrained encoder with a new linear head, and the
//! same architecture trained from scratch on only the labelled subset. Both run through the
//! training loop that pretraining uses.

use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use pretext_data::tasks::{AnyTask, SupervisedTask};
use pretext_data::{BatchLoader, ImageDataset, ImageSet, LoaderConfig, Normalization};
use pretext_models::Encoder;
use pretext_models::tasks::{ClassifierModel, TaskModel};

use super::{Examples, StudyConfig};
use crate::config::OptimizerConfig;
use crate::error::{Result, TrainError};
use crate::model::seeded;
use crate::probes::LinearHead;
use crate::trainer::{LoopSettings, train_quietly};

/// The encoder a training protocol starts from.
pub struct Start<'a> {
    pub encoder: &'a Encoder,
    pub embedding_dim: usize,
    /// Below 1 fine-tunes the encoder gently; 1 trains it like the head (from scratch).
    pub encoder_lr_scale: f64,
    /// The head's starting weights (a linear probe fitted on the same labels); a random head
    /// when `None`.
    pub head: Option<LinearHead>,
}

/// Trains the encoder of `start` with a new linear head on the images of `train` (the data's
/// training split, shared across runs) that `examples` names, and returns its predicted class
/// of each test image.
pub fn train_and_test(
    start: Start<'_>,
    data: &ImageDataset,
    train: &Arc<ImageSet>,
    examples: Examples,
    config: &StudyConfig,
    seed: u64,
    device: &Device,
) -> Result<Vec<u32>> {
    let Start {
        encoder,
        embedding_dim,
        encoder_lr_scale,
        head,
    } = start;
    let test = data
        .test
        .as_ref()
        .ok_or_else(|| TrainError::config("the study needs a test split"))?;
    let classes = data.num_classes();
    let shape = data.train.shape;
    let norm = data.normalization();
    let train_device = device.clone().autodiff();
    let relabelled = match &train.labels {
        Some(own) => examples.relabelled(own)?,
        None => None,
    };
    let train = match relabelled {
        Some(labels) => Arc::new(ImageSet {
            labels: Some(labels),
            ..(**train).clone()
        }),
        None => Arc::clone(train),
    };
    let labelled = examples.indices;
    let n = labelled.len();
    let batch_size = config.train_batch_size.min(n).max(1);
    let task = match &config.train_views {
        Some(views) => SupervisedTask::augmented(shape, views)?,
        None => SupervisedTask::new(shape),
    };
    let loader = BatchLoader::new(
        AnyTask::Supervised(task),
        train,
        Some(labelled),
        norm.clone(),
        LoaderConfig {
            batch_size,
            drop_last: false,
            ..LoaderConfig::default()
        },
        seed,
    )?;
    let model = seeded(seed, &train_device, || {
        let encoder = encoder.clone().fork(&train_device).train();
        Ok(TaskModel::Classifier(match head {
            Some(LinearHead { weight, bias }) => ClassifierModel::with_head(
                encoder,
                Tensor::from_data(
                    TensorData::new(weight, [embedding_dim, classes]),
                    &train_device,
                ),
                Tensor::from_data(TensorData::new(bias, [classes]), &train_device),
            ),
            None => ClassifierModel::new(encoder, embedding_dim, classes, &train_device),
        }))
    })?;
    // The same number of optimizer steps at every budget (equal compute): many passes over a
    // small subset, part of one over a large one.
    let settings = LoopSettings::fixed_steps(
        config.train_steps,
        loader.batches_per_epoch(),
        OptimizerConfig {
            lr: config.train_lr,
            weight_decay: 1e-4,
            ..OptimizerConfig::default()
        },
        None,
        encoder_lr_scale,
    );
    let TaskModel::Classifier(classifier) =
        train_quietly(model, &loader, &settings, &train_device)?
    else {
        return Err(TrainError::config("fine-tuning builds a classifier"));
    };
    Ok(predict(&classifier, test, &norm, device))
}

/// The class `classifier` predicts for each of `set`'s images.
pub fn predict(
    classifier: &ClassifierModel,
    set: &ImageSet,
    norm: &Normalization,
    device: &Device,
) -> Vec<u32> {
    let indices: Vec<usize> = (0..set.len()).collect();
    let mut out = Vec::with_capacity(set.len());
    for chunk in indices.chunks(512) {
        out.extend(predictions(
            classifier.forward(set.images_tensor(chunk, norm, device)),
        ));
    }
    out
}

/// Fraction of `set`'s images that `classifier` labels correctly (0 for an unlabelled set).
pub fn accuracy(
    classifier: &ClassifierModel,
    set: &ImageSet,
    norm: &Normalization,
    device: &Device,
) -> f64 {
    let Some(labels) = set.labels.as_deref() else {
        return 0.0;
    };
    let predicted = predict(classifier, set, norm, device);
    correct(&predicted, labels) as f64 / set.len().max(1) as f64
}

/// The class with the largest logit of each row of `logits` `[n, classes]`.
pub(crate) fn predictions(logits: Tensor<2>) -> Vec<u32> {
    logits
        .argmax(1)
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap_or_default()
        .into_iter()
        .map(|p| p as u32)
        .collect()
}

/// How many predictions equal their targets.
pub(crate) fn correct(predicted: &[u32], targets: &[u32]) -> usize {
    predicted
        .iter()
        .zip(targets)
        .filter(|(p, t)| p == t)
        .count()
}
