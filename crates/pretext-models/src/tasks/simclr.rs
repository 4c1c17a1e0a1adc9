//! SimCLR: encoder + projection MLP, NT-Xent over the 2N views of a batch.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::encoders::Encoder;
use crate::losses::nt_xent;

#[derive(Module, Debug)]
pub struct SimclrModel {
    pub encoder: Encoder,
    project_hidden: Linear,
    project_out: Linear,
    #[module(skip)]
    temperature: f32,
}

impl SimclrModel {
    pub fn new(
        encoder: Encoder,
        embedding_dim: usize,
        projection_dim: usize,
        temperature: f32,
        device: &Device,
    ) -> Self {
        Self {
            encoder,
            project_hidden: LinearConfig::new(embedding_dim, embedding_dim).init(device),
            project_out: LinearConfig::new(embedding_dim, projection_dim).init(device),
            temperature,
        }
    }

    /// Projections `[batch, projection_dim]` of images.
    pub fn project(&self, images: Tensor<4>) -> Tensor<2> {
        let h = self.encoder.forward(images);
        self.project_out
            .forward(relu(self.project_hidden.forward(h)))
    }

    /// Both views go through the encoder in one pass, so batch norm sees all 2N images.
    pub fn loss(&self, first: Tensor<4>, second: Tensor<4>) -> Tensor<1> {
        let n = first.dims()[0];
        let z = self.project(Tensor::cat(vec![first, second], 0));
        let z1 = z.clone().narrow(0, 0, n);
        let z2 = z.narrow(0, n, n);
        nt_xent(z1, z2, self.temperature)
    }
}
