//! Masked autoencoder (He et al. 2021): the ViT encoder sees only the visible patches; a light
//! transformer decoder gets their tokens plus a shared mask token at every masked place, and
//! predicts every patch's pixels; the loss counts masked patches only.

use burn::module::{Module, Param};
use burn::nn::transformer::TransformerEncoder;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

use crate::encoders::VitEncoder;
use crate::encoders::transformer::{blocks, encode};
use crate::kernels::{layer_norm, linear};
use crate::losses::masked_patch_mse;

/// What one MAE step needs, as tensors.
pub struct MaeInput {
    /// `[batch, visible, patch_dim]`.
    pub visible: Tensor<3>,
    /// `[batch, visible]` patch numbers.
    pub visible_indices: Tensor<2, Int>,
    /// `[batch, patches]`: where patch `p` sits in the visible-then-masked sequence.
    pub restore: Tensor<2, Int>,
    /// `[batch, patches]`, 1 for masked.
    pub mask: Tensor<2>,
    /// `[batch, patches, patch_dim]`.
    pub targets: Tensor<3>,
}

#[derive(Module, Debug)]
pub struct MaeModel {
    pub encoder: VitEncoder,
    decoder_embed: Linear,
    mask_token: Param<Tensor<1>>,
    decoder_position: Param<Tensor<2>>,
    decoder: TransformerEncoder,
    decoder_norm: LayerNorm,
    predict: Linear,
}

/// Decoder settings (defaults: width 64, one block of 4 heads).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaeDecoder {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
}

impl Default for MaeDecoder {
    fn default() -> Self {
        Self {
            dim: 64,
            depth: 1,
            heads: 4,
        }
    }
}

impl MaeModel {
    pub fn new(
        encoder: VitEncoder,
        patches: usize,
        patch_dim: usize,
        decoder: MaeDecoder,
        device: &Device,
    ) -> Self {
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        Self {
            decoder_embed: LinearConfig::new(encoder.dim(), decoder.dim).init(device),
            mask_token: normal.init([decoder.dim], device),
            decoder_position: normal.init([patches, decoder.dim], device),
            decoder: blocks(decoder.dim, decoder.heads, decoder.depth, 2, 0.0, device),
            decoder_norm: LayerNormConfig::new(decoder.dim).init(device),
            predict: LinearConfig::new(decoder.dim, patch_dim).init(device),
            encoder,
        }
    }

    /// Predicted pixels of every patch, `[batch, patches, patch_dim]`.
    pub fn forward(
        &self,
        visible: Tensor<3>,
        visible_indices: Tensor<2, Int>,
        restore: Tensor<2, Int>,
    ) -> Tensor<3> {
        let [b, n] = restore.dims();
        let v = visible.dims()[1];
        let tokens = linear(
            &self.decoder_embed,
            self.encoder.forward_patches(visible, visible_indices),
        );
        let d = tokens.dims()[2];
        let mask_tokens: Tensor<3> = self
            .mask_token
            .val()
            .reshape([1, 1, d])
            .expand([b, n - v, d]);
        // [visible..., masked...] back into patch order.
        let sequence = Tensor::cat(vec![tokens, mask_tokens], 1);
        let order: Tensor<3, Int> = restore.reshape([b, n, 1]).expand([b, n, d]);
        let x = sequence.gather(1, order) + self.decoder_position.val().reshape([1, n, d]);
        let x = encode(&self.decoder, x, None);
        linear(&self.predict, layer_norm(&self.decoder_norm, x))
    }

    pub fn loss(&self, input: MaeInput) -> Tensor<1> {
        let predictions = self.forward(input.visible, input.visible_indices, input.restore);
        masked_patch_mse(predictions, input.targets, input.mask)
    }
}
