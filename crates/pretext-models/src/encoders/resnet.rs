//! A small residual network with a CIFAR-style stem (one 3x3 convolution, no early pooling), for
//! larger images. Global average pooling makes it accept any input size.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::norm::{batch_norm_2d, batch_norm_2d_add_relu, batch_norm_2d_relu};
use crate::error::ModelError;
use crate::kernels::conv2d;
use crate::settings::settings;

settings! {
/// Configuration of [`ResNetEncoder`]. Defaults: three stages of widths 32, 64 and 128 with one
/// basic block each (a ResNet-8), stride 2 between stages, a 128-dimensional representation.
pub struct ResNetEncoderConfig {
    in_channels: usize = 1,
    /// Input height the FLOP count assumes; the network itself accepts any size.
    height: usize = 28,
    width: usize = 28,
    /// Channels of each stage; every stage after the first halves the spatial size.
    widths: Vec<usize> = vec![32, 64, 128],
    /// Basic blocks per stage.
    blocks_per_stage: usize = 1,
    /// Width of the linear layer (with its ReLU) after global pooling. Default 128.
    embedding_dim: usize = 128,
    /// End with that linear layer. Without it (`fc = false`) the representation is the globally
    /// pooled output of the last stage (its width), as the literature probes a ResNet.
    /// Default true.
    fc: bool = true,
}
}

impl ResNetEncoderConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.in_channels == 0
            || (self.fc && self.embedding_dim == 0)
            || self.blocks_per_stage == 0
            || self.widths.is_empty()
            || self.widths.contains(&0)
        {
            return Err(ModelError::invalid(
                "resnet encoder",
                format!(
                    "in_channels, embedding_dim, blocks_per_stage and widths {:?} must be positive",
                    self.widths
                ),
            ));
        }
        Ok(())
    }

    /// Multiply-adds (two FLOPs each) of the convolutions and the final linear layer.
    pub fn flops_per_image(&self) -> u64 {
        let conv = |c_in: usize, c_out: usize, k: u64, h: u64, w: u64| {
            2 * k * k * c_in as u64 * c_out as u64 * h * w
        };
        let (mut h, mut w) = (self.height as u64, self.width as u64);
        let first = self.widths[0];
        let mut flops = conv(self.in_channels, first, 3, h, w);
        let mut c_in = first;
        for (stage, &c_out) in self.widths.iter().enumerate() {
            for block in 0..self.blocks_per_stage {
                if stage > 0 && block == 0 {
                    h = h.div_ceil(2);
                    w = w.div_ceil(2);
                }
                flops += conv(c_in, c_out, 3, h, w) + conv(c_out, c_out, 3, h, w);
                if c_in != c_out || (stage > 0 && block == 0) {
                    flops += conv(c_in, c_out, 1, h, w);
                }
                c_in = c_out;
            }
        }
        flops + 2 * c_in as u64 * self.embedding_dim as u64 * self.fc as u64
    }

    /// Size of the representation vector: `embedding_dim`, or the last stage's width
    /// without `fc`.
    pub fn representation_dim(&self) -> usize {
        match (self.fc, self.widths.last()) {
            (false, Some(&w)) => w,
            _ => self.embedding_dim,
        }
    }

    pub fn init(&self, device: &Device) -> Result<ResNetEncoder, ModelError> {
        self.validate()?;
        let first = self.widths[0];
        let mut blocks = Vec::new();
        let mut c_in = first;
        for (stage, &c_out) in self.widths.iter().enumerate() {
            for block in 0..self.blocks_per_stage {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(c_in, c_out, stride, device));
                c_in = c_out;
            }
        }
        Ok(ResNetEncoder {
            stem: conv3x3(self.in_channels, first, 1, device),
            stem_norm: BatchNormConfig::new(first).init(device),
            blocks,
            fc: self
                .fc
                .then(|| LinearConfig::new(c_in, self.embedding_dim).init(device)),
        })
    }
}

fn conv3x3(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

/// Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut.
#[derive(Module, Debug)]
struct BasicBlock {
    conv1: Conv2d,
    norm1: BatchNorm,
    conv2: Conv2d,
    norm2: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        let shortcut = (stride != 1 || c_in != c_out).then(|| {
            (
                Conv2dConfig::new([c_in, c_out], [1, 1])
                    .with_stride([stride, stride])
                    .with_bias(false)
                    .init(device),
                BatchNormConfig::new(c_out).init(device),
            )
        });
        Self {
            conv1: conv3x3(c_in, c_out, stride, device),
            norm1: BatchNormConfig::new(c_out).init(device),
            conv2: conv3x3(c_out, c_out, 1, device),
            norm2: BatchNormConfig::new(c_out).init(device),
            shortcut,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.shortcut {
            Some((conv, norm)) => batch_norm_2d(norm, conv2d(conv, x.clone())),
            None => x.clone(),
        };
        let y = batch_norm_2d_relu(&self.norm1, conv2d(&self.conv1, x));
        batch_norm_2d_add_relu(&self.norm2, conv2d(&self.conv2, y), identity)
    }
}

/// See [`ResNetEncoderConfig`].
#[derive(Module, Debug)]
pub struct ResNetEncoder {
    stem: Conv2d,
    stem_norm: BatchNorm,
    blocks: Vec<BasicBlock>,
    fc: Option<Linear>,
}

impl ResNetEncoder {
    /// `[batch, channels, height, width]` → `[batch, representation_dim]`, for any height and
    /// width.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = batch_norm_2d_relu(&self.stem_norm, conv2d(&self.stem, images));
        for block in &self.blocks {
            x = block.forward(x);
        }
        // Global average pooling: [b, c, h, w] → [b, c].
        let [b, c, h, w] = x.dims();
        let pooled: Tensor<2> = x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c]);
        match &self.fc {
            Some(fc) => relu(fc.forward(pooled)),
            None => pooled,
        }
    }
}
