//! Training for pretext: the training loop shared by pretraining, fine-tuning and the supervised
//! baseline; checkpoints that resume exactly; the run directory; the online kNN monitor; and the
//! exported encoder.

pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod embed;
pub mod error;
pub mod export;
pub mod metrics;
pub mod model;
pub mod observer;
pub mod optimizer;
pub mod pretrain;
pub mod probes;
pub mod projection;
pub mod replicas;
pub mod run_dir;
pub mod schedule;
pub mod study;
pub mod text;
pub mod trainer;

pub use config::PretrainConfig;
pub use error::{Result, TrainError};
pub use observer::{EmbeddingSpread, EpochReport, Silent, StepReport, TrainObserver};
pub use pretrain::{PretrainOutcome, pretrain, pretrain_on};
pub use run_dir::RunMode;
