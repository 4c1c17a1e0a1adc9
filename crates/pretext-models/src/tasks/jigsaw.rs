//! Jigsaw: the shared encoder runs on every tile, the tiles' features are concatenated in their
//! shuffled order, and an MLP names the permutation.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor};

use crate::encoders::Encoder;
use crate::kernels::linear;
use crate::losses::cross_entropy;

#[derive(Module, Debug)]
pub struct JigsawModel {
    pub encoder: Encoder,
    hidden: Linear,
    out: Linear,
    #[module(skip)]
    tiles: usize,
}

impl JigsawModel {
    pub fn new(
        encoder: Encoder,
        embedding_dim: usize,
        tiles: usize,
        hidden: usize,
        permutations: usize,
        device: &Device,
    ) -> Self {
        Self {
            encoder,
            hidden: LinearConfig::new(tiles * embedding_dim, hidden).init(device),
            out: LinearConfig::new(hidden, permutations).init(device),
            tiles,
        }
    }

    /// Tiles `[batch * tiles, c, t, t]` (each image's tiles consecutive) → logits
    /// `[batch, permutations]`.
    pub fn forward(&self, tiles: Tensor<4>) -> Tensor<2> {
        let features = self.encoder.forward(tiles);
        let [bt, d] = features.dims();
        let joined = features.reshape([bt / self.tiles, self.tiles * d]);
        linear(&self.out, relu(linear(&self.hidden, joined)))
    }

    pub fn loss(&self, tiles: Tensor<4>, targets: Tensor<1, Int>) -> Tensor<1> {
        cross_entropy(self.forward(tiles), targets)
    }
}
