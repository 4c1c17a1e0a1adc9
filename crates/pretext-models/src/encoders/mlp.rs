//! A multilayer perceptron over flattened pixels: the fastest encoder, a baseline for the others.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::error::ModelError;
use crate::kernels::linear;
use crate::settings::settings;

settings! {
/// Configuration of [`MlpEncoder`]. Defaults: 28x28x1 inputs, hidden layers of 512 and 256,
/// a 128-dimensional representation.
pub struct MlpEncoderConfig {
    in_channels: usize = 1,
    height: usize = 28,
    width: usize = 28,
    /// Widths of the hidden layers, each followed by a ReLU.
    hidden: Vec<usize> = vec![512, 256],
    embedding_dim: usize = 128,
}
}

impl MlpEncoderConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.in_features() == 0 || self.embedding_dim == 0 || self.hidden.contains(&0) {
            return Err(ModelError::invalid(
                "mlp encoder",
                format!(
                    "sizes must be positive (input {}x{}x{}, hidden {:?}, embedding_dim {})",
                    self.in_channels, self.height, self.width, self.hidden, self.embedding_dim
                ),
            ));
        }
        Ok(())
    }

    fn in_features(&self) -> usize {
        self.in_channels * self.height * self.width
    }

    fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.in_features()];
        w.extend(&self.hidden);
        w.push(self.embedding_dim);
        w
    }

    /// Two FLOPs per multiply-add of the linear layers.
    pub fn flops_per_image(&self) -> u64 {
        self.widths()
            .windows(2)
            .map(|p| 2 * p[0] as u64 * p[1] as u64)
            .sum()
    }

    pub fn init(&self, device: &Device) -> Result<MlpEncoder, ModelError> {
        self.validate()?;
        let layers = self
            .widths()
            .windows(2)
            .map(|p| LinearConfig::new(p[0], p[1]).init(device))
            .collect();
        Ok(MlpEncoder { layers })
    }
}

/// See [`MlpEncoderConfig`].
#[derive(Module, Debug)]
pub struct MlpEncoder {
    layers: Vec<Linear>,
}

impl MlpEncoder {
    /// `[batch, channels, height, width]` → `[batch, embedding_dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x: Tensor<2> = images.flatten(1, 3);
        for layer in &self.layers {
            x = relu(linear(layer, x));
        }
        x
    }
}
