//! The supervised task: images with their real class labels, for fine-tuning, linear heads and
//! the supervised-from-scratch baseline, so they share the loader with the pretext tasks.

use super::{ClassificationBatch, PretextTask, Samples};
use crate::dataset::ImageShape;
use crate::error::Result;
use crate::tasks::views::{ViewsConfig, ViewsTask};

/// Normalised images and their class labels, unchanged, or each image augmented once per
/// batch (one view of [`ViewsConfig`]'s augmentations): with a few labelled images trained on
/// for many passes, augmentation is what keeps a network from memorising them.
#[derive(Debug, Clone)]
pub struct SupervisedTask {
    shape: ImageShape,
    views: Option<ViewsTask>,
}

impl SupervisedTask {
    pub fn new(shape: ImageShape) -> Self {
        Self { shape, views: None }
    }

    /// Each image augmented by `views` (whose `size`, when set, must be the input's: a
    /// classifier sees the test images at their own size).
    pub fn augmented(shape: ImageShape, views: &ViewsConfig) -> Result<Self> {
        if views.size.is_some_and(|s| s != [shape.height, shape.width]) {
            return Err(super::invalid(
                "supervised",
                format!(
                    "augmented views keep the images' size ({}x{}); leave `size` unset",
                    shape.height, shape.width
                ),
            ));
        }
        Ok(Self {
            shape,
            views: Some(views.build(shape)?),
        })
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
        match &self.views {
            None => {
                for bytes in &samples.images {
                    samples
                        .norm
                        .extend_normalized(bytes, self.shape, &mut batch.images);
                }
            }
            Some(views) => {
                let o = self.shape.len();
                let mut work = views.work();
                batch.images.resize(samples.len() * o, 0.0);
                for (i, out) in batch.images.chunks_mut(o).enumerate() {
                    let (bytes, mut rng) = (samples.images[i], samples.rng(i));
                    views.normalized_views(bytes, &mut rng, samples.norm, &mut [out], &mut work);
                }
            }
        }
        batch.targets = samples.labels.clone().unwrap_or_default();
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::ImageSet;
    use crate::dataset::Normalization;

    fn set() -> (ImageSet, Normalization) {
        let shape = ImageShape::new(1, 8, 8);
        let images: Vec<u8> = (0..3 * 64).map(|i| (i * 7 % 256) as u8).collect();
        let set = ImageSet::new(shape, images, Some(vec![0, 1, 2])).unwrap();
        let norm = Normalization::of(&set);
        (set, norm)
    }

    #[test]
    fn plain_batches_are_the_normalised_images() {
        let (set, norm) = set();
        let task = SupervisedTask::new(set.shape);
        let samples = Samples::of(&set, &[0, 1, 2], &norm, 0, 0);
        let batch = task.make_batch(&samples);
        let mut expected = Vec::new();
        for i in 0..3 {
            norm.extend_normalized(set.image(i), set.shape, &mut expected);
        }
        assert_eq!(batch.images, expected);
        assert_eq!(batch.targets, vec![0, 1, 2]);
    }

    #[test]
    fn augmented_batches_keep_size_and_labels_and_vary_by_epoch() {
        let (set, norm) = set();
        let task = SupervisedTask::augmented(set.shape, &ViewsConfig::default()).unwrap();
        let first = task.make_batch(&Samples::of(&set, &[0, 1, 2], &norm, 0, 0));
        let again = task.make_batch(&Samples::of(&set, &[0, 1, 2], &norm, 0, 0));
        let next = task.make_batch(&Samples::of(&set, &[0, 1, 2], &norm, 0, 1));
        assert_eq!(first.images.len(), 3 * 64);
        assert_eq!(first.targets, vec![0, 1, 2]);
        // Seeded: the same epoch repeats, the next differs.
        assert_eq!(first.images, again.images);
        assert_ne!(first.images, next.images);
        assert!(first.images.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn augmented_views_of_another_size_are_refused() {
        let (set, _) = set();
        let views = ViewsConfig {
            size: Some([4, 4]),
            ..ViewsConfig::default()
        };
        let err = SupervisedTask::augmented(set.shape, &views).unwrap_err();
        assert!(err.to_string().contains("leave `size` unset"), "{err}");
    }
}
