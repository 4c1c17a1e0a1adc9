//! Denoising and inpainting (an autoencoder-style baseline): a corrupted input and the clean
//! image as the target. With no corruption it is a plain autoencoder's data.

use rand::Rng;
use serde::{Deserialize, Serialize};

use burn::tensor::{Device, Tensor, TensorData};

use super::{PretextTask, Samples, invalid};
use crate::dataset::ImageShape;
use crate::error::Result;
use crate::pixels::add_gaussian_noise;

/// How inputs are corrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Corruption {
    /// The input is the clean image (a plain autoencoder).
    None,
    /// Gaussian noise added on the [0, 1] pixel scale, then clipped to [0, 1].
    #[default]
    Noise,
    /// A square at a random place is filled with the data set's mean (zero after normalising).
    Square,
}

/// Denoising settings. Defaults: Gaussian noise of standard deviation 0.3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DenoiseConfig {
    pub corruption: Corruption,
    /// Noise standard deviation on the [0, 1] scale.
    pub noise_std: f32,
    /// Side of the masked square as a fraction of the image's shorter side.
    pub square: f32,
}

impl Default for DenoiseConfig {
    fn default() -> Self {
        Self {
            corruption: Corruption::Noise,
            noise_std: 0.3,
            square: 0.5,
        }
    }
}

impl DenoiseConfig {
    /// A plain autoencoder: no corruption.
    pub fn autoencoder() -> Self {
        Self {
            corruption: Corruption::None,
            ..Self::default()
        }
    }

    pub fn build(&self, shape: ImageShape) -> Result<DenoiseTask> {
        let task = "denoise";
        if shape.is_empty() {
            return Err(invalid(task, format!("image shape {shape} has no pixels")));
        }
        if !(self.noise_std.is_finite() && self.noise_std >= 0.0) {
            return Err(invalid(
                task,
                format!("noise_std = {} must be >= 0", self.noise_std),
            ));
        }
        let side = (self.square * shape.height.min(shape.width) as f32).round() as usize;
        if self.corruption == Corruption::Square
            && !(self.square > 0.0 && self.square <= 1.0 && side >= 1)
        {
            return Err(invalid(
                task,
                format!(
                    "square = {} must be a fraction in (0, 1] covering at least one pixel",
                    self.square
                ),
            ));
        }
        Ok(DenoiseTask {
            shape,
            corruption: self.corruption,
            noise_std: self.noise_std,
            side,
        })
    }
}

/// Corrupts inputs; targets are the clean, normalised images.
#[derive(Debug, Clone)]
pub struct DenoiseTask {
    shape: ImageShape,
    corruption: Corruption,
    noise_std: f32,
    side: usize,
}

/// Corrupted inputs and clean targets on the host, both normalised CHW images.
#[derive(Debug, Clone, PartialEq)]
pub struct DenoiseBatch {
    pub shape: ImageShape,
    pub inputs: Vec<f32>,
    pub targets: Vec<f32>,
}

/// [`DenoiseBatch`] on a device, each `[batch, channels, height, width]`.
#[derive(Debug, Clone)]
pub struct DenoiseTensors {
    pub inputs: Tensor<4>,
    pub targets: Tensor<4>,
}

impl DenoiseBatch {
    pub fn len(&self) -> usize {
        self.targets.len() / self.shape.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub fn into_tensors(self, device: &Device) -> DenoiseTensors {
        let s = self.shape;
        let dims = [self.len(), s.channels, s.height, s.width];
        DenoiseTensors {
            inputs: Tensor::from_data(TensorData::new(self.inputs, dims), device),
            targets: Tensor::from_data(TensorData::new(self.targets, dims), device),
        }
    }
}

impl PretextTask for DenoiseTask {
    type Batch = DenoiseBatch;

    fn input_shape(&self) -> ImageShape {
        self.shape
    }

    fn make_batch(&self, samples: &Samples<'_>) -> DenoiseBatch {
        let s = self.shape;
        let mut targets = Vec::with_capacity(samples.len() * s.len());
        for bytes in &samples.images {
            samples.norm.extend_normalized(bytes, s, &mut targets);
        }
        let mut inputs = match self.corruption {
            Corruption::Noise => Vec::with_capacity(targets.len()),
            _ => targets.clone(),
        };
        let plane = s.height * s.width;
        for (i, bytes) in samples.images.iter().enumerate() {
            let mut rng = samples.rng(i);
            match self.corruption {
                Corruption::None => {}
                Corruption::Noise => {
                    let start = inputs.len();
                    inputs.extend(bytes.iter().map(|&b| b as f32 / 255.0));
                    add_gaussian_noise(&mut inputs[start..], self.noise_std, &mut rng);
                    samples.norm.normalize_unit(&mut inputs[start..], s);
                }
                Corruption::Square => {
                    let top = rng.random_range(0..=s.height - self.side);
                    let left = rng.random_range(0..=s.width - self.side);
                    let image = &mut inputs[i * s.len()..(i + 1) * s.len()];
                    for c in 0..s.channels {
                        for y in top..top + self.side {
                            let row = c * plane + y * s.width + left;
                            image[row..row + self.side].fill(0.0);
                        }
                    }
                }
            }
        }
        DenoiseBatch {
            shape: s,
            inputs,
            targets,
        }
    }
}
