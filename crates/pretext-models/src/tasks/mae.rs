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
        let sequence = Tensor::cat(vec![tokens, mask_tokens], 1);
        let x = patch_order(sequence, restore) + self.decoder_position.val().reshape([1, n, d]);
        let x = encode(&self.decoder, x, None);
        linear(&self.predict, layer_norm(&self.decoder_norm, x))
    }

    pub fn loss(&self, input: MaeInput) -> Tensor<1> {
        let predictions = self.forward(input.visible, input.visible_indices, input.restore);
        masked_patch_mse(predictions, input.targets, input.mask)
    }
}

/// `out[b, p] = sequence[b, restore[b, p]]`: the decoder's `[visible..., masked...]` tokens
/// back into patch order. Whole token rows are picked from the flattened batch: `select`
/// copies rows, and its gradient adds rows back, where `gather` along the tokens reads and
/// scatters one value at a time.
fn patch_order(sequence: Tensor<3>, restore: Tensor<2, Int>) -> Tensor<3> {
    let [b, n, d] = sequence.dims();
    let first: Tensor<2, Int> = Tensor::arange(0..b as i64, &restore.device())
        .reshape([b, 1])
        .mul_scalar(n as i64);
    let rows = (restore + first).reshape([b * n]);
    sequence
        .reshape([b * n, d])
        .select(0, rows)
        .reshape([b, n, d])
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData, Tolerance};

    use super::*;

    #[test]
    fn patch_order_matches_gather_forward_and_backward() {
        let device = Device::flex().autodiff();
        let [b, n, d] = [3, 5, 4];
        let values =
            crate::test_data::seeded([b, n, d], Distribution::Normal(0.0, 1.0), 7, &device)
                .into_data();
        // A different permutation per image.
        let restore: Vec<i64> = (0..b)
            .flat_map(|i| (0..n).map(move |p| ((p * 2 + i) % n) as i64))
            .collect();
        let restore = Tensor::<2, Int>::from_data(TensorData::new(restore, [b, n]), &device);
        let leaf = || Tensor::<3>::from_data(values.clone(), &device).require_grad();
        let (ours, theirs) = (leaf(), leaf());
        let order = restore.clone().reshape([b, n, 1]).expand([b, n, d]);
        let fast = patch_order(ours.clone(), restore);
        let slow = theirs.clone().gather(1, order);
        fast.to_data().assert_eq(&slow.to_data(), true);
        let weights =
            crate::test_data::seeded([b, n, d], Distribution::Normal(0.0, 1.0), 8, &device);
        let fast_grads = (fast * weights.clone()).sum().backward();
        let slow_grads = (slow * weights).sum().backward();
        ours.grad(&fast_grads)
            .expect("a gradient")
            .into_data()
            .assert_approx_eq::<f32>(
                &theirs.grad(&slow_grads).expect("a gradient").into_data(),
                Tolerance::default(),
            );
    }
}
