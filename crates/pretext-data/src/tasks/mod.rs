//! Pretext tasks: labels and targets made from the images themselves.
//!
//! Each task is a `Config` (serde, with defaults, validated by `build` against the image shape)
//! that builds a task. A task turns a list of images into one host-side batch
//! ([`PretextTask::make_batch`]); the batch becomes device tensors with `into_tensors`. The
//! [`BatchLoader`](crate::loader::BatchLoader) calls tasks on worker threads ahead of training.
//!
//! Randomness comes from one seed per image, derived from the run's seed, the epoch and the
//! image's index in its split ([`sample_seed`]), so a batch does not depend on the batch size,
//! the number of worker threads or which thread made it.

mod any;
mod classification;
mod denoise;
mod jigsaw;
mod masking;
mod rotation;
mod shards;
mod supervised;
mod views;

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use any::{AnyBatch, AnyTask, AnyTensors};
pub use classification::{ClassificationBatch, ClassificationTensors};
pub use denoise::{Corruption, DenoiseBatch, DenoiseConfig, DenoiseTask, DenoiseTensors};
pub use jigsaw::{JigsawBatch, JigsawConfig, JigsawTask, JigsawTensors, PermutationSet};
pub use masking::{MaskedBatch, MaskedTensors, MaskingConfig, MaskingTask};
pub use rotation::{RotationConfig, RotationMode, RotationTask};
pub use supervised::SupervisedTask;
pub use views::{ViewsBatch, ViewsConfig, ViewsTask, ViewsTensors};

use crate::dataset::{ImageSet, ImageShape, Normalization};
use crate::error::{DataError, Result};

/// The images one batch is made from.
pub struct Samples<'a> {
    /// Raw bytes of each image, channels first, all of the task's input shape.
    pub images: Vec<&'a [u8]>,
    /// Class labels, when the split has them.
    pub labels: Option<Vec<u32>>,
    /// One seed per image ([`sample_seed`]).
    pub seeds: Vec<u64>,
    /// The training split's normalisation.
    pub norm: &'a Normalization,
}

impl<'a> Samples<'a> {
    /// The images at `indices` of `set` in `epoch` of a run seeded with `seed`: the samples the
    /// loader would give a task.
    pub fn of(
        set: &'a ImageSet,
        indices: &[usize],
        norm: &'a Normalization,
        seed: u64,
        epoch: u64,
    ) -> Self {
        Samples {
            images: indices.iter().map(|&i| set.image(i)).collect(),
            labels: set
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
            seeds: indices
                .iter()
                .map(|&i| sample_seed(seed, epoch, i as u64))
                .collect(),
            norm,
        }
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The random number generator of image `i`.
    pub fn rng(&self, i: usize) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seeds[i])
    }
}

/// Something that makes training batches from images: a pretext task, or plain class labels.
pub trait PretextTask: Send + Sync {
    /// The host-side batch; `into_tensors` on it gives device tensors.
    type Batch: Send;

    /// The shape every input image must have.
    fn input_shape(&self) -> ImageShape;

    /// Whether the task needs class labels (only the supervised task does).
    fn needs_labels(&self) -> bool {
        false
    }

    /// Makes one batch. `samples` holds images of [`Self::input_shape`] (and labels when
    /// [`Self::needs_labels`]); the loader checks both before calling.
    fn make_batch(&self, samples: &Samples<'_>) -> Self::Batch;
}

/// The seed of one image in one epoch: a SplitMix64 hash of the run's seed, the epoch and the
/// image's index, so neighbouring indices get unrelated streams.
pub fn sample_seed(seed: u64, epoch: u64, index: u64) -> u64 {
    let mut z = seed
        ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The pretext tasks by name, as the CLI and config files spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    Rotation,
    Jigsaw,
    Mae,
    Simclr,
    Denoise,
    Autoencoder,
    Byol,
    MocoV3,
    Vicreg,
    BarlowTwins,
}

impl TaskKind {
    pub const ALL: [TaskKind; 10] = [
        TaskKind::Rotation,
        TaskKind::Jigsaw,
        TaskKind::Mae,
        TaskKind::Simclr,
        TaskKind::Denoise,
        TaskKind::Autoencoder,
        TaskKind::Byol,
        TaskKind::MocoV3,
        TaskKind::Vicreg,
        TaskKind::BarlowTwins,
    ];

    /// The methods that learn from two augmented views of each image (SimCLR and the
    /// joint-embedding methods).
    pub fn uses_views(self) -> bool {
        matches!(
            self,
            TaskKind::Simclr
                | TaskKind::Byol
                | TaskKind::MocoV3
                | TaskKind::Vicreg
                | TaskKind::BarlowTwins
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Rotation => "rotation",
            TaskKind::Jigsaw => "jigsaw",
            TaskKind::Mae => "mae",
            TaskKind::Simclr => "simclr",
            TaskKind::Denoise => "denoise",
            TaskKind::Autoencoder => "autoencoder",
            TaskKind::Byol => "byol",
            TaskKind::MocoV3 => "moco-v3",
            TaskKind::Vicreg => "vicreg",
            TaskKind::BarlowTwins => "barlow-twins",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TaskKind {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        TaskKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = TaskKind::ALL.iter().map(|k| k.name()).collect();
                DataError::InvalidConfig(format!(
                    "unknown task '{s}'; expected one of {}",
                    known.join(", ")
                ))
            })
    }
}

/// The settings of any one task, tagged by `kind` in config files:
///
/// ```toml
/// [task]
/// kind = "jigsaw"
/// grid = 3
/// permutations = 100
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TaskConfig {
    Rotation(RotationConfig),
    Jigsaw(JigsawConfig),
    Mae(MaskingConfig),
    Simclr(ViewsConfig),
    Denoise(DenoiseConfig),
    /// A plain autoencoder: the denoising task with no corruption.
    Autoencoder,
    /// BYOL, MoCo v3, VICReg and Barlow Twins take two views as SimCLR does.
    Byol(ViewsConfig),
    MocoV3(ViewsConfig),
    Vicreg(ViewsConfig),
    BarlowTwins(ViewsConfig),
}

impl TaskConfig {
    /// The defaults of `kind`.
    pub fn default_for(kind: TaskKind) -> Self {
        match kind {
            TaskKind::Rotation => TaskConfig::Rotation(RotationConfig::default()),
            TaskKind::Jigsaw => TaskConfig::Jigsaw(JigsawConfig::default()),
            TaskKind::Mae => TaskConfig::Mae(MaskingConfig::default()),
            TaskKind::Simclr => TaskConfig::Simclr(ViewsConfig::default()),
            TaskKind::Denoise => TaskConfig::Denoise(DenoiseConfig::default()),
            TaskKind::Autoencoder => TaskConfig::Autoencoder,
            TaskKind::Byol => TaskConfig::Byol(ViewsConfig::default()),
            TaskKind::MocoV3 => TaskConfig::MocoV3(ViewsConfig::default()),
            TaskKind::Vicreg => TaskConfig::Vicreg(ViewsConfig::default()),
            TaskKind::BarlowTwins => TaskConfig::BarlowTwins(ViewsConfig::default()),
        }
    }

    pub fn kind(&self) -> TaskKind {
        match self {
            TaskConfig::Rotation(_) => TaskKind::Rotation,
            TaskConfig::Jigsaw(_) => TaskKind::Jigsaw,
            TaskConfig::Mae(_) => TaskKind::Mae,
            TaskConfig::Simclr(_) => TaskKind::Simclr,
            TaskConfig::Denoise(_) => TaskKind::Denoise,
            TaskConfig::Autoencoder => TaskKind::Autoencoder,
            TaskConfig::Byol(_) => TaskKind::Byol,
            TaskConfig::MocoV3(_) => TaskKind::MocoV3,
            TaskConfig::Vicreg(_) => TaskKind::Vicreg,
            TaskConfig::BarlowTwins(_) => TaskKind::BarlowTwins,
        }
    }

    /// The views of a two-view method.
    pub fn views(&self) -> Option<&ViewsConfig> {
        match self {
            TaskConfig::Simclr(c)
            | TaskConfig::Byol(c)
            | TaskConfig::MocoV3(c)
            | TaskConfig::Vicreg(c)
            | TaskConfig::BarlowTwins(c) => Some(c),
            _ => None,
        }
    }

    /// Checks the settings against images of `shape` by building the task.
    pub fn validate(&self, shape: ImageShape) -> Result<()> {
        match self {
            TaskConfig::Rotation(c) => c.build(shape).map(drop),
            TaskConfig::Jigsaw(c) => c.build(shape).map(drop),
            TaskConfig::Mae(c) => c.build(shape).map(drop),
            TaskConfig::Denoise(c) => c.build(shape).map(drop),
            TaskConfig::Autoencoder => DenoiseConfig::autoencoder().build(shape).map(drop),
            TaskConfig::Simclr(c)
            | TaskConfig::Byol(c)
            | TaskConfig::MocoV3(c)
            | TaskConfig::Vicreg(c)
            | TaskConfig::BarlowTwins(c) => c.build(shape).map(drop),
        }
    }
}

/// A config error of `task`: the message says which setting is wrong and why.
pub(crate) fn invalid(task: &str, reason: impl fmt::Display) -> DataError {
    DataError::InvalidConfig(format!("{task}: {reason}"))
}

/// Checks a probability setting.
pub(crate) fn check_probability(task: &str, name: &str, p: f32) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(invalid(task, format!("{name} = {p} must lie in [0, 1]")))
    }
}

/// Checks a `[low, high]` range setting with `min <= low <= high`.
pub(crate) fn check_range(task: &str, name: &str, range: [f32; 2], min: f32) -> Result<()> {
    let [lo, hi] = range;
    if lo.is_finite() && hi.is_finite() && lo >= min && lo <= hi {
        Ok(())
    } else {
        Err(invalid(
            task,
            format!("{name} = [{lo}, {hi}] must be an increasing range no lower than {min}"),
        ))
    }
}
