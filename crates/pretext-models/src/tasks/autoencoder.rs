//! Autoencoder and denoising autoencoder: encoder + MLP decoder back to pixels, mean squared
//! reconstruction error against the clean image.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::encoders::Encoder;
use crate::kernels::linear;
use crate::losses::mse;

#[derive(Module, Debug)]
pub struct AutoencoderModel {
    pub encoder: Encoder,
    hidden: Linear,
    out: Linear,
    #[module(skip)]
    output: [usize; 3],
}

impl AutoencoderModel {
    pub fn new(
        encoder: Encoder,
        embedding_dim: usize,
        hidden: usize,
        output: [usize; 3],
        device: &Device,
    ) -> Self {
        Self {
            encoder,
            hidden: LinearConfig::new(embedding_dim, hidden).init(device),
            out: LinearConfig::new(hidden, output.iter().product()).init(device),
            output,
        }
    }

    /// Reconstructions `[batch, c, h, w]` of `inputs`.
    pub fn forward(&self, inputs: Tensor<4>) -> Tensor<4> {
        let b = inputs.dims()[0];
        let z = self.encoder.forward(inputs);
        let [c, h, w] = self.output;
        linear(&self.out, relu(linear(&self.hidden, z))).reshape([b, c, h, w])
    }

    pub fn loss(&self, inputs: Tensor<4>, targets: Tensor<4>) -> Tensor<1> {
        mse(self.forward(inputs), targets)
    }
}
