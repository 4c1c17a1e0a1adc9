//! Encoder + linear head + cross-entropy: rotation prediction, fine-tuning and the supervised
//! baseline.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

use crate::encoders::Encoder;
use crate::kernels::linear;
use crate::losses::cross_entropy;

#[derive(Module, Debug)]
pub struct ClassifierModel {
    pub encoder: Encoder,
    head: Linear,
}

impl ClassifierModel {
    pub fn new(encoder: Encoder, embedding_dim: usize, classes: usize, device: &Device) -> Self {
        Self {
            encoder,
            head: LinearConfig::new(embedding_dim, classes).init(device),
        }
    }

    /// A classifier whose head starts from given weights `[embedding_dim, classes]` and bias
    /// `[classes]` (a fitted linear probe, for fine-tuning).
    pub fn with_head(encoder: Encoder, weight: Tensor<2>, bias: Tensor<1>) -> Self {
        Self {
            encoder,
            head: Linear {
                weight: Param::from_tensor(weight),
                bias: Some(Param::from_tensor(bias)),
            },
        }
    }

    /// `[batch, c, h, w]` → logits `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        linear(&self.head, self.encoder.forward(images))
    }

    pub fn loss(&self, images: Tensor<4>, targets: Tensor<1, Int>) -> Tensor<1> {
        cross_entropy(self.forward(images), targets)
    }
}
