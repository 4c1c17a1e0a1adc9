//! Rotation prediction (RotNet, Gidaris et al. 2018): which of 0, 90, 180 or 270 degrees an
//! image was turned by. Rotations are exact pixel permutations, so only square images are
//! accepted: a non-square image is a configuration error (crop or resize the data first) rather
//! than being padded, since padding would give the model a trivial cue (where the padding is).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{ClassificationBatch, PretextTask, Samples, invalid};
use crate::dataset::ImageShape;
use crate::error::Result;
use crate::pixels::rotate_quarter_turns;

/// How many rotations of each image a batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RotationMode {
    /// All four rotations of every image, consecutively (as the paper trains): a batch of `n`
    /// images holds `4n` examples.
    #[default]
    AllFour,
    /// One rotation per image, drawn uniformly.
    RandomOne,
}

/// Rotation task settings. Default: all four rotations per image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RotationConfig {
    pub mode: RotationMode,
}

impl RotationConfig {
    /// The task for images of `shape`; non-square images are an error.
    pub fn build(&self, shape: ImageShape) -> Result<RotationTask> {
        if shape.is_empty() {
            return Err(invalid(
                "rotation",
                format!("image shape {shape} has no pixels"),
            ));
        }
        if shape.height != shape.width {
            return Err(invalid(
                "rotation",
                format!(
                    "images are {}x{} pixels; rotation needs square images (crop or resize them first)",
                    shape.height, shape.width
                ),
            ));
        }
        Ok(RotationTask {
            shape,
            mode: self.mode,
        })
    }
}

/// Labels 0, 1, 2, 3 mean 0, 90, 180 and 270 degrees counter-clockwise.
#[derive(Debug, Clone)]
pub struct RotationTask {
    shape: ImageShape,
    mode: RotationMode,
}

impl RotationTask {
    pub const NUM_CLASSES: usize = 4;

    pub fn mode(&self) -> RotationMode {
        self.mode
    }

    /// Examples per input image.
    pub fn examples_per_image(&self) -> usize {
        match self.mode {
            RotationMode::AllFour => 4,
            RotationMode::RandomOne => 1,
        }
    }
}

impl PretextTask for RotationTask {
    type Batch = ClassificationBatch;

    fn input_shape(&self) -> ImageShape {
        self.shape
    }

    fn make_batch(&self, samples: &Samples<'_>) -> ClassificationBatch {
        let s = self.shape;
        let per = self.examples_per_image();
        let mut batch = ClassificationBatch::with_capacity(s, samples.len() * per);
        let mut image = Vec::with_capacity(s.len());
        batch.images.resize(samples.len() * per * s.len(), 0.0);
        let mut example = 0;
        for (i, bytes) in samples.images.iter().enumerate() {
            image.clear();
            samples.norm.extend_normalized(bytes, s, &mut image);
            let one;
            let turns: &[u8] = match self.mode {
                RotationMode::AllFour => &[0, 1, 2, 3],
                RotationMode::RandomOne => {
                    one = [samples.rng(i).random_range(0..4)];
                    &one
                }
            };
            for &t in turns {
                let out = &mut batch.images[example * s.len()..(example + 1) * s.len()];
                rotate_quarter_turns(&image, s, t, out);
                batch.targets.push(t as u32);
                example += 1;
            }
        }
        batch
    }
}
