//! Data for pretext: loaders for real image data, the embedded default data set, seeded
//! stratified splits and label budgets, the image pretext tasks and the batch loader that runs
//! them ahead of training; text corpora, tokenizers and masked-token prediction ([`text`]).
//!
//! Pixels are held as bytes and become normalised f32 tensors one batch at a time
//! ([`ImageSet::images_tensor`]), normalised with the training split's statistics. The
//! `tensors` feature (default) holds everything that makes tensors: the tasks, the loaders and
//! the previews; without it the crate is the parsers, data sets and splits, with no Burn.

pub mod cifar;
pub mod dataset;
pub mod embedded;
pub mod error;
pub mod folder;
pub mod idx;
#[cfg(feature = "tensors")]
pub mod loader;
pub mod npy;
pub mod pixels;
#[cfg(feature = "tensors")]
pub mod preview;
pub mod source;
pub mod split;
pub mod table;
#[cfg(feature = "tensors")]
pub mod tasks;
pub mod text;

pub use dataset::{DatasetSummary, ImageDataset, ImageSet, ImageShape, Normalization};
pub use error::{DataError, Result};
#[cfg(feature = "tensors")]
pub use loader::{BatchLoader, BatchSource, Batches, LoaderConfig};
pub use source::DataSource;
pub use split::{LabelBudget, TrainValSplit, stratified_subset, validation_split};
pub use table::{Table, read_csv};
#[cfg(feature = "tensors")]
pub use tasks::{PretextTask, Samples, TaskKind};
