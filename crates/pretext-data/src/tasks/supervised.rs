//! The supervised task: images with their real class labels, for fine-tuning, linear heads and
//! the supervised-from-scratch baseline, so they share the loader with the pretext tasks.

use super::{ClassificationBatch, PretextTask, Samples};
use crate::dataset::ImageShape;

/// Normalised images and their class labels, unchanged.
#[derive(Debug, Clone)]
pub struct SupervisedTask {
    shape: ImageShape,
}

impl SupervisedTask {
    pub fn new(shape: ImageShape) -> Self {
        Self { shape }
    }
}

impl PretextTask for SupervisedTask {
    type Batch = ClassificationBatch;

    fn input_shape(&self) -> ImageShape {
        self.shape
    }

    fn needs_labels(&self) -> bool {
        true
    }

    fn make_batch(&self, samples: &Samples<'_>) -> ClassificationBatch {
        let mut batch = ClassificationBatch::with_capacity(self.shape, samples.len());
        for bytes in &samples.images {
            samples
                .norm
                .extend_normalized(bytes, self.shape, &mut batch.images);
        }
        batch.targets = samples.labels.clone().unwrap_or_default();
        batch
    }
}
