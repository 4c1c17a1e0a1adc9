//! A tiny Vision Transformer: linear patch embedding, learned position embeddings, pre-norm
//! transformer blocks, mean pooling over the tokens. It can encode a subset of the patches
//! ([`VitEncoder::forward_patches`]), which masked-patch pretraining (MAE) needs.
//!
//! Patches are numbered row-major over the patch grid and flattened channel, row, column, the
//! same layout as `pretext_data::tasks::MaskingTask`.

use burn::module::{Module, Param};
use burn::nn::transformer::TransformerEncoder;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

use crate::encoders::transformer::{blocks, encode};
use crate::error::ModelError;
use crate::kernels::{layer_norm, linear};
use crate::settings::settings;

settings! {
/// Configuration of [`VitEncoder`]. Defaults: 28x28x1 images in 4x4 patches (49 tokens), width
/// 64, 4 blocks of 4 heads, MLP ratio 2.
pub struct VitEncoderConfig {
    in_channels: usize = 1,
    height: usize = 28,
    width: usize = 28,
    patch_size: usize = 4,
    /// Token width; also the size of the representation.
    dim: usize = 64,
    depth: usize = 4,
    heads: usize = 4,
    /// Hidden width of each block's MLP as a multiple of `dim`.
    mlp_ratio: usize = 2,
}
}

impl VitEncoderConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |reason: String| Err(ModelError::invalid("vit encoder", reason));
        let p = self.patch_size;
        if [
            self.in_channels,
            self.dim,
            self.depth,
            self.heads,
            self.mlp_ratio,
        ]
        .contains(&0)
        {
            return bad("in_channels, dim, depth, heads and mlp_ratio must be positive".into());
        }
        if p == 0 || !self.height.is_multiple_of(p) || !self.width.is_multiple_of(p) {
            return bad(format!(
                "patch_size {p} must divide the {}x{} images",
                self.height, self.width
            ));
        }
        if !self.dim.is_multiple_of(self.heads) {
            return bad(format!(
                "dim {} must be a multiple of heads {}",
                self.dim, self.heads
            ));
        }
        Ok(())
    }

    pub fn num_patches(&self) -> usize {
        (self.height / self.patch_size) * (self.width / self.patch_size)
    }

    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.patch_size * self.patch_size
    }

    /// FLOPs of one image with all its patches: patch embedding, attention projections, the
    /// attention products and the MLPs.
    pub fn flops_per_image(&self) -> u64 {
        let (n, d) = (self.num_patches() as u64, self.dim as u64);
        let ff = d * self.mlp_ratio as u64;
        let per_block = 2 * n * (4 * d * d + 2 * d * ff) + 2 * 2 * n * n * d;
        2 * n * self.patch_dim() as u64 * d + self.depth as u64 * per_block
    }

    pub fn init(&self, device: &Device) -> Result<VitEncoder, ModelError> {
        self.validate()?;
        Ok(VitEncoder {
            patch_embed: LinearConfig::new(self.patch_dim(), self.dim).init(device),
            position: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([self.num_patches(), self.dim], device),
            blocks: blocks(
                self.dim,
                self.heads,
                self.depth,
                self.mlp_ratio,
                0.0,
                device,
            ),
            norm: LayerNormConfig::new(self.dim).init(device),
            in_channels: self.in_channels,
            patch_size: self.patch_size,
            dim: self.dim,
        })
    }
}

/// See [`VitEncoderConfig`].
#[derive(Module, Debug)]
pub struct VitEncoder {
    patch_embed: Linear,
    /// `[patches, dim]`.
    position: Param<Tensor<2>>,
    blocks: TransformerEncoder,
    norm: LayerNorm,
    #[module(skip)]
    in_channels: usize,
    #[module(skip)]
    patch_size: usize,
    #[module(skip)]
    dim: usize,
}

impl VitEncoder {
    /// `[batch, channels, height, width]` → `[batch, patches, patch_dim]`.
    pub fn patchify(&self, images: Tensor<4>) -> Tensor<3> {
        let [b, c, h, w] = images.dims();
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        images
            .reshape([b, c, gh, p, gw, p])
            // [b, gh, gw, c, p, p]: patches row-major, each flattened channel, row, column.
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b, gh * gw, c * p * p])
    }

    /// Encodes the given patches only: `patches` `[batch, k, patch_dim]` are the patches at
    /// `indices` `[batch, k]`; returns the tokens `[batch, k, dim]` after the final norm.
    pub fn forward_patches(&self, patches: Tensor<3>, indices: Tensor<2, Int>) -> Tensor<3> {
        let [b, k, _] = patches.dims();
        let dim = self.dim;
        let tokens = linear(&self.patch_embed, patches);
        let position = self
            .position
            .val()
            .select(0, indices.reshape([b * k]))
            .reshape([b, k, dim]);
        let x = encode(&self.blocks, tokens + position, None);
        layer_norm(&self.norm, x)
    }

    /// All tokens of whole images, `[batch, patches, dim]`.
    pub fn tokens(&self, images: Tensor<4>) -> Tensor<3> {
        let patches = self.patchify(images);
        let [b, n, _] = patches.dims();
        let device = patches.device();
        let indices = Tensor::<1, Int>::arange(0..n as i64, &device)
            .reshape([1, n])
            .repeat_dim(0, b);
        self.forward_patches(patches, indices)
    }

    /// `[batch, channels, height, width]` → `[batch, dim]`: the mean of the tokens.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let tokens = self.tokens(images);
        let [b, _, d] = tokens.dims();
        tokens.mean_dim(1).reshape([b, d])
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn patch_size(&self) -> usize {
        self.patch_size
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }
}
