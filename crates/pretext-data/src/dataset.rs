//! In-memory image data sets: pixels kept as bytes (compact), turned into normalised f32 tensors
//! batch by batch.

#[cfg(feature = "tensors")]
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// The shape of one image, channels first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
        }
    }

    /// Values per image: `channels * height * width`.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// Per-channel mean and standard deviation of pixel values scaled to [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// Statistics of `set`, accumulated in f64 so 60,000 images lose no precision.
    pub fn of(set: &ImageSet) -> Self {
        let c = set.shape.channels;
        let plane = set.shape.height * set.shape.width;
        let mut sum = vec![0f64; c];
        let mut sum_sq = vec![0f64; c];
        for image in set.pixels.chunks_exact(set.shape.len()) {
            for (ch, values) in image.chunks_exact(plane).enumerate() {
                let (s, s2) = values.iter().fold((0u64, 0u64), |(s, s2), &v| {
                    (s + v as u64, s2 + (v as u64) * (v as u64))
                });
                sum[ch] += s as f64;
                sum_sq[ch] += s2 as f64;
            }
        }
        let count = (set.len() * plane).max(1) as f64;
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for ch in 0..c {
            let m = sum[ch] / count / 255.0;
            let var = (sum_sq[ch] / count / (255.0 * 255.0) - m * m).max(0.0);
            mean.push(m as f32);
            // A constant channel would divide by zero; leave it unscaled instead.
            std.push(if var > 1e-12 { var.sqrt() as f32 } else { 1.0 });
        }
        Self { mean, std }
    }
}

impl Normalization {
    /// Appends one image of bytes, normalised, to `out`.
    pub fn extend_normalized(&self, image: &[u8], shape: ImageShape, out: &mut Vec<f32>) {
        let plane = shape.height * shape.width;
        for (ch, values) in image.chunks_exact(plane).enumerate() {
            // One multiply-add per pixel: (v / 255 - mean) / std == v * scale + shift.
            let scale = 1.0 / (255.0 * self.std[ch]);
            let shift = -self.mean[ch] / self.std[ch];
            out.extend(values.iter().map(|&v| v as f32 * scale + shift));
        }
    }

    /// Normalises values on the [0, 1] scale in place (augmentations work on that scale).
    pub fn normalize_unit(&self, values: &mut [f32], shape: ImageShape) {
        let plane = shape.height * shape.width;
        for (ch, chunk) in values.chunks_exact_mut(plane).enumerate() {
            let c = ch % shape.channels;
            let (m, s) = (self.mean[c], self.std[c]);
            chunk.iter_mut().for_each(|v| *v = (*v - m) / s);
        }
    }

    /// Undoes the normalisation back to the [0, 1] scale, for pictures of what a model sees.
    pub fn denormalize(&self, values: &mut [f32], shape: ImageShape) {
        let plane = shape.height * shape.width;
        for (ch, chunk) in values.chunks_exact_mut(plane).enumerate() {
            let c = ch % shape.channels;
            let (m, s) = (self.mean[c], self.std[c]);
            chunk.iter_mut().for_each(|v| *v = *v * s + m);
        }
    }
}

/// One split of an image data set: `len()` images of one shape, labels optional.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pub shape: ImageShape,
    /// `len() * shape.len()` bytes, each image channels-first (CHW).
    pub pixels: Vec<u8>,
    pub labels: Option<Vec<u32>>,
}

impl ImageSet {
    /// Checks that pixels and labels agree with the shape.
    pub fn new(shape: ImageShape, pixels: Vec<u8>, labels: Option<Vec<u32>>) -> Result<Self> {
        if shape.is_empty() {
            return Err(DataError::InvalidConfig(format!(
                "image shape {shape} has no pixels"
            )));
        }
        if !pixels.len().is_multiple_of(shape.len()) {
            return Err(DataError::InvalidConfig(format!(
                "{} pixel values are not a whole number of {shape} images",
                pixels.len()
            )));
        }
        let n = pixels.len() / shape.len();
        if let Some(labels) = &labels
            && labels.len() != n
        {
            return Err(DataError::InvalidConfig(format!(
                "{n} images but {} labels",
                labels.len()
            )));
        }
        Ok(Self {
            shape,
            pixels,
            labels,
        })
    }

    pub fn len(&self) -> usize {
        self.pixels.len() / self.shape.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// The raw bytes of image `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        let n = self.shape.len();
        &self.pixels[index * n..(index + 1) * n]
    }

    /// The subset at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(indices.len() * self.shape.len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        let labels = self
            .labels
            .as_ref()
            .map(|l| indices.iter().map(|&i| l[i]).collect());
        ImageSet {
            shape: self.shape,
            pixels,
            labels,
        }
    }

    /// Images at `indices` as normalised f32 values, flattened `[len, C*H*W]` row-major.
    pub fn normalized(&self, indices: &[usize], norm: &Normalization) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * self.shape.len());
        for &i in indices {
            norm.extend_normalized(self.image(i), self.shape, &mut out);
        }
        out
    }

    /// Images at `indices` as a normalised `[batch, C, H, W]` tensor on `device`.
    #[cfg(feature = "tensors")]
    pub fn images_tensor(
        &self,
        indices: &[usize],
        norm: &Normalization,
        device: &Device,
    ) -> Tensor<4> {
        let s = self.shape;
        let data = TensorData::new(
            self.normalized(indices, norm),
            [indices.len(), s.channels, s.height, s.width],
        );
        Tensor::from_data(data, device)
    }

    /// Labels at `indices` as a `[batch]` integer tensor, or `None` for an unlabelled set.
    #[cfg(feature = "tensors")]
    pub fn labels_tensor(&self, indices: &[usize], device: &Device) -> Option<Tensor<1, Int>> {
        let labels = self.labels.as_ref()?;
        let values: Vec<i64> = indices.iter().map(|&i| labels[i] as i64).collect();
        Some(Tensor::from_data(
            TensorData::new(values, [indices.len()]),
            device,
        ))
    }

    /// Images per class, indexed by label; empty for an unlabelled set.
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; num_classes];
        for &l in self.labels.iter().flatten() {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }
}

/// A named data set: a training split, an optional test split, and class names.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    pub name: String,
    pub train: ImageSet,
    pub test: Option<ImageSet>,
    /// One name per class; empty when the data has no labels.
    pub classes: Vec<String>,
    /// The fraction of the training images held out as the test split, when the data came
    /// without one ([`ImageDataset::with_test_split`]).
    pub carved_test: Option<f64>,
}

/// Keeps the carved test split apart from every other seeded choice, and the same for every
/// command, so pretraining never sees the images a study tests on.
const TEST_SALT: u64 = 0x7465_7374_5f73_706c;

impl ImageDataset {
    /// The data with a test split: unchanged when it has one (or has no labels to stratify
    /// by, or `fraction` is 0); otherwise a stratified, seeded `fraction` of the training
    /// images becomes the test split, the same whichever command asks.
    pub fn with_test_split(mut self, fraction: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(DataError::InvalidConfig(format!(
                "the test fraction must be at least 0 and below 1, not {fraction}"
            )));
        }
        let Some(labels) = self.train.labels.as_deref() else {
            return Ok(self);
        };
        if fraction == 0.0 || self.test.is_some() || self.num_classes() < 2 {
            return Ok(self);
        }
        // Each class gives round(count x fraction) images, keeping one for training; data too
        // small to give any stays unsplit (the study then says it has no test split).
        let mut counts = vec![0usize; self.num_classes()];
        for &l in labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        let carved: usize = counts
            .iter()
            .map(|&c| ((c as f64 * fraction).round() as usize).min(c.saturating_sub(1)))
            .sum();
        if carved == 0 {
            return Ok(self);
        }
        let split = crate::split::validation_split(
            self.train.len(),
            Some(labels),
            self.num_classes(),
            fraction,
            TEST_SALT,
        )?;
        self.test = Some(self.train.select(&split.val));
        self.train = self.train.select(&split.train);
        self.carved_test = Some(fraction);
        Ok(self)
    }

    /// The normalisation every split uses: the training set's statistics, never the test set's.
    pub fn normalization(&self) -> Normalization {
        Normalization::of(&self.train)
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Counts and statistics for people (`pretext data info`) and reports.
    pub fn summary(&self) -> DatasetSummary {
        let norm = self.normalization();
        let split = |name: &str, set: &ImageSet| SplitSummary {
            split: name.to_string(),
            images: set.len(),
            labelled: set.labels.is_some(),
            per_class: set.class_counts(self.num_classes()),
        };
        let mut splits = vec![split("train", &self.train)];
        if let Some(test) = &self.test {
            splits.push(split("test", test));
        }
        DatasetSummary {
            carved_test: self.carved_test,
            name: self.name.clone(),
            shape: self.train.shape,
            classes: self.classes.clone(),
            splits,
            pixel_mean: norm.mean,
            pixel_std: norm.std,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitSummary {
    pub split: String,
    pub images: usize,
    pub labelled: bool,
    pub per_class: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub name: String,
    /// Set when the test split was carved from the training images, as this fraction.
    pub carved_test: Option<f64>,
    pub shape: ImageShape,
    pub classes: Vec<String>,
    pub splits: Vec<SplitSummary>,
    /// Per channel, on the [0, 1] scale, from the training split.
    pub pixel_mean: Vec<f32>,
    pub pixel_std: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageSet {
        // Two 1x2x2 images: all 0s and all 255s.
        ImageSet::new(
            ImageShape::new(1, 2, 2),
            vec![0, 0, 0, 0, 255, 255, 255, 255],
            Some(vec![0, 1]),
        )
        .unwrap()
    }

    #[test]
    fn normalization_matches_hand_computed_values() {
        let n = Normalization::of(&tiny());
        assert!((n.mean[0] - 0.5).abs() < 1e-6);
        assert!((n.std[0] - 0.5).abs() < 1e-6);
        let v = tiny().normalized(&[1, 0], &n);
        assert_eq!(v.len(), 8);
        assert!(v[..4].iter().all(|&x| (x - 1.0).abs() < 1e-5));
        assert!(v[4..].iter().all(|&x| (x + 1.0).abs() < 1e-5));
    }

    #[test]
    fn constant_images_do_not_divide_by_zero() {
        let set = ImageSet::new(ImageShape::new(1, 1, 2), vec![7; 6], None).unwrap();
        let n = Normalization::of(&set);
        assert_eq!(n.std, vec![1.0]);
        assert!(set.normalized(&[0], &n).iter().all(|v| v.is_finite()));
    }

    /// `n` 1x1x1 images whose pixel is their index, labelled `i % classes`, with no test split.
    fn unsplit(n: usize, classes: usize) -> ImageDataset {
        ImageDataset {
            name: "unsplit".into(),
            train: ImageSet::new(
                ImageShape::new(1, 1, 1),
                (0..n).map(|i| i as u8).collect(),
                Some((0..n).map(|i| (i % classes) as u32).collect()),
            )
            .unwrap(),
            test: None,
            classes: (0..classes).map(|c| c.to_string()).collect(),
            carved_test: None,
        }
    }

    #[test]
    fn a_test_split_is_carved_stratified_and_the_same_every_time() {
        let data = unsplit(100, 4).with_test_split(0.2).unwrap();
        assert_eq!(data.carved_test, Some(0.2));
        let test = data.test.as_ref().unwrap();
        assert_eq!((data.train.len(), test.len()), (80, 20));
        let labels = test.labels.as_deref().unwrap();
        for class in 0..4 {
            assert_eq!(labels.iter().filter(|&&l| l == class).count(), 5);
        }
        // No image is in both splits.
        let mut all: Vec<u8> = data
            .train
            .pixels
            .iter()
            .chain(&test.pixels)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 100);
        let again = unsplit(100, 4).with_test_split(0.2).unwrap();
        assert_eq!(again.test.unwrap().pixels, test.pixels, "seeded");
        assert!(data.summary().carved_test.is_some());
    }

    #[test]
    fn data_with_a_test_split_too_little_data_or_fraction_zero_stay_unsplit() {
        let mut data = unsplit(20, 2);
        data.test = Some(data.train.clone());
        let kept = data.with_test_split(0.2).unwrap();
        assert_eq!((kept.train.len(), kept.carved_test), (20, None));
        // Two images per class give round(0.4) = 0 each.
        assert!(unsplit(4, 2).with_test_split(0.2).unwrap().test.is_none());
        assert!(unsplit(20, 2).with_test_split(0.0).unwrap().test.is_none());
        let err = unsplit(20, 2).with_test_split(1.0).unwrap_err();
        assert!(err.to_string().contains("test fraction"), "{err}");
    }

    #[test]
    fn mismatched_labels_are_rejected() {
        let err = ImageSet::new(ImageShape::new(1, 1, 1), vec![1, 2], Some(vec![0])).unwrap_err();
        assert!(err.to_string().contains("2 images but 1 labels"));
    }

    #[test]
    #[cfg(feature = "tensors")]
    fn tensors_have_the_batch_shape() {
        let device = Device::flex();
        let set = tiny();
        let n = Normalization::of(&set);
        let x = set.images_tensor(&[0, 1, 1], &n, &device);
        assert_eq!(x.dims(), [3, 1, 2, 2]);
        let y = set.labels_tensor(&[1, 0], &device).unwrap();
        assert_eq!(y.into_data().try_into_vec_as::<i64>().unwrap(), vec![1, 0]);
    }
}
