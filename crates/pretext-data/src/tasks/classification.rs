//! Batches of images with one class target each: rotation's and the supervised task's output.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::dataset::ImageShape;

/// Images and their targets, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationBatch {
    pub shape: ImageShape,
    /// `targets.len()` normalised images, CHW, one after another.
    pub images: Vec<f32>,
    pub targets: Vec<u32>,
}

/// [`ClassificationBatch`] on a device.
#[derive(Debug, Clone)]
pub struct ClassificationTensors {
    /// `[batch, channels, height, width]`.
    pub images: Tensor<4>,
    /// `[batch]`.
    pub targets: Tensor<1, Int>,
}

impl ClassificationBatch {
    pub fn with_capacity(shape: ImageShape, examples: usize) -> Self {
        Self {
            shape,
            images: Vec::with_capacity(examples * shape.len()),
            targets: Vec::with_capacity(examples),
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The normalised pixels of example `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * self.shape.len()..(i + 1) * self.shape.len()]
    }

    pub fn into_tensors(self, device: &Device) -> ClassificationTensors {
        let s = self.shape;
        let n = self.len();
        let images = TensorData::new(self.images, [n, s.channels, s.height, s.width]);
        let targets: Vec<i64> = self.targets.iter().map(|&t| t as i64).collect();
        ClassificationTensors {
            images: Tensor::from_data(images, device),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
        }
    }
}
