//! A small convolutional encoder: conv3x3-batchnorm-relu-maxpool blocks, then one linear layer.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::norm::batch_norm_2d_pool_relu;
use crate::error::ModelError;
use crate::kernels::{conv2d, linear, max_pool2_relu};
use crate::settings::settings;

settings! {
/// Configuration of [`CnnEncoder`]. The defaults are the reference small CNN for 28x28
/// grayscale images: conv 1→32, pool, conv 32→64, pool, linear 3136→128.
pub struct CnnEncoderConfig {
    /// Input channels (1 for grayscale, 3 for RGB). Default 1.
    in_channels: usize = 1,
    /// Input height in pixels. Default 28.
    height: usize = 28,
    /// Input width in pixels. Default 28.
    width: usize = 28,
    /// Output channels of each conv block; each block halves the spatial size. Default [32, 64].
    channels: Vec<usize> = vec![32, 64],
    /// Width of the linear layer (with its ReLU) that ends the encoder. Default 128.
    embedding_dim: usize = 128,
    /// End with that linear layer, whose output is the representation. Without it
    /// (`fc = false`) the representation is the convolutional trunk's own output, flattened
    /// (channels x height x width values) or, with `global_pool`, averaged over space: the
    /// backbone features the literature probes, before any projection head. Default true.
    fc: bool = true,
    /// Batch normalisation after each convolution. Default true.
    batch_norm: bool = true,
    /// Average the last feature map over space instead of flattening it, so the encoder accepts
    /// any input size (jigsaw trains on tiles and is evaluated on whole images). Default false.
    global_pool: bool = false,
}
}

impl CnnEncoderConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |reason: String| Err(ModelError::invalid("cnn encoder", reason));
        if self.in_channels == 0 || (self.fc && self.embedding_dim == 0) {
            return bad("in_channels and embedding_dim must be positive".into());
        }
        if self.channels.is_empty() || self.channels.contains(&0) {
            return bad(format!(
                "channels {:?} must list at least one positive width",
                self.channels
            ));
        }
        let shrink = 1usize << self.channels.len().min(usize::BITS as usize - 1);
        if self.height < shrink || self.width < shrink {
            return bad(format!(
                "{} pooling blocks need images of at least {shrink}x{shrink}, got {}x{}",
                self.channels.len(),
                self.height,
                self.width
            ));
        }
        Ok(())
    }

    /// Spatial size after the conv blocks.
    fn feature_map(&self) -> (usize, usize) {
        let n = self.channels.len() as u32;
        (self.height >> n, self.width >> n)
    }

    /// Size of the representation vector: `embedding_dim`, or the trunk's output without `fc`.
    pub fn representation_dim(&self) -> usize {
        if self.fc {
            self.embedding_dim
        } else {
            self.flat_features()
        }
    }

    fn flat_features(&self) -> usize {
        let last = self.channels.last().copied().unwrap_or(0);
        if self.global_pool {
            return last;
        }
        let (h, w) = self.feature_map();
        last * h * w
    }

    /// Multiply-adds counted as two FLOPs, for one image's forward pass (convolutions and the
    /// linear layer; normalisation, activations and pooling are negligible beside them).
    pub fn flops_per_image(&self) -> u64 {
        let (mut h, mut w) = (self.height as u64, self.width as u64);
        let mut c_in = self.in_channels as u64;
        let mut flops = 0;
        for &c_out in &self.channels {
            flops += 2 * 9 * c_in * c_out as u64 * h * w;
            c_in = c_out as u64;
            h /= 2;
            w /= 2;
        }
        let fc = if self.fc {
            2 * self.flat_features() as u64 * self.embedding_dim as u64
        } else {
            0
        };
        flops + fc
    }

    pub fn init(&self, device: &Device) -> Result<CnnEncoder, ModelError> {
        self.validate()?;
        let mut c_in = self.in_channels;
        let blocks = self
            .channels
            .iter()
            .map(|&c_out| {
                let block = ConvBlock {
                    conv: Conv2dConfig::new([c_in, c_out], [3, 3])
                        .with_padding(PaddingConfig2d::Same)
                        // Batch norm has its own shift; a conv bias before it is redundant.
                        .with_bias(!self.batch_norm)
                        .init(device),
                    norm: self
                        .batch_norm
                        .then(|| BatchNormConfig::new(c_out).init(device)),
                };
                c_in = c_out;
                block
            })
            .collect();
        Ok(CnnEncoder {
            blocks,
            fc: self
                .fc
                .then(|| LinearConfig::new(self.flat_features(), self.embedding_dim).init(device)),
            global_pool: self.global_pool,
        })
    }
}

#[derive(Module, Debug)]
struct ConvBlock {
    conv: Conv2d,
    norm: Option<BatchNorm>,
}

/// See [`CnnEncoderConfig`].
#[derive(Module, Debug)]
pub struct CnnEncoder {
    blocks: Vec<ConvBlock>,
    fc: Option<Linear>,
    #[module(skip)]
    global_pool: bool,
}

impl CnnEncoder {
    /// `[batch, channels, height, width]` → `[batch, representation_dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for block in &self.blocks {
            x = conv2d(&block.conv, x);
            // [b, c, h, w] → [b, c, h/2, w/2]. ReLU and max-pooling commute; pooling first
            // runs the ReLU on a quarter of the values, and one kernel does both on flex
            // (with the batch norm before them, in training).
            x = match &block.norm {
                Some(norm) => batch_norm_2d_pool_relu(norm, x),
                None => max_pool2_relu(x),
            };
        }
        let x: Tensor<2> = if self.global_pool {
            let [b, c, h, w] = x.dims();
            x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
        } else {
            x.flatten(1, 3)
        };
        match &self.fc {
            Some(fc) => relu(linear(fc, x)),
            None => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_reference_cnn() {
        let device = Device::flex();
        let config = CnnEncoderConfig::new();
        let encoder = config.init(&device).unwrap();
        // conv1 288 (no bias), conv2 18432, fc 3136*128 + 128; each batch norm holds four
        // values per channel (scale, shift, running mean and variance).
        assert_eq!(
            encoder.num_params(),
            288 + 4 * 32 + 18_432 + 4 * 64 + 3136 * 128 + 128
        );
        let out = encoder.forward(Tensor::zeros([3, 1, 28, 28], &device));
        assert_eq!(out.dims(), [3, 128]);
        // 2*9*(1*32*784 + 32*64*196) + 2*3136*128
        assert_eq!(
            config.flops_per_image(),
            2 * 9 * (32 * 784 + 32 * 64 * 196) + 2 * 3136 * 128
        );
    }

    #[test]
    fn without_fc_the_trunk_is_the_representation() {
        let device = Device::flex();
        let flat = CnnEncoderConfig::new().with_fc(false);
        assert_eq!(flat.representation_dim(), 64 * 7 * 7);
        assert_eq!(
            flat.flops_per_image(),
            2 * 9 * (32 * 784 + 32 * 64 * 196),
            "no linear layer"
        );
        let encoder = flat.init(&device).unwrap();
        assert_eq!(encoder.num_params(), 288 + 4 * 32 + 18_432 + 4 * 64);
        let out = encoder.forward(Tensor::ones([2, 1, 28, 28], &device));
        assert_eq!(out.dims(), [2, 3136]);
        // After the ReLU every feature is non-negative.
        assert!(out.min().into_scalar::<f32>() >= 0.0);
        let pooled = CnnEncoderConfig::new()
            .with_fc(false)
            .with_global_pool(true)
            .with_embedding_dim(0);
        assert!(pooled.validate().is_ok(), "embedding_dim is unused");
        assert_eq!(pooled.representation_dim(), 64);
        let out = pooled
            .init(&device)
            .unwrap()
            .forward(Tensor::ones([2, 1, 12, 12], &device));
        assert_eq!(out.dims(), [2, 64]);
    }

    #[test]
    fn odd_sizes_and_colour_work() {
        let device = Device::flex();
        let config = CnnEncoderConfig::new()
            .with_in_channels(3)
            .with_height(13)
            .with_width(9)
            .with_channels(vec![8])
            .with_embedding_dim(5);
        let out = config
            .init(&device)
            .unwrap()
            .forward(Tensor::ones([2, 3, 13, 9], &device));
        assert_eq!(out.dims(), [2, 5]);
    }

    #[test]
    fn invalid_configs_are_errors() {
        assert!(
            CnnEncoderConfig::new()
                .with_channels(vec![])
                .validate()
                .is_err()
        );
        assert!(
            CnnEncoderConfig::new()
                .with_channels(vec![4, 0])
                .validate()
                .is_err()
        );
        assert!(
            CnnEncoderConfig::new()
                .with_embedding_dim(0)
                .validate()
                .is_err()
        );
        let err = CnnEncoderConfig::new()
            .with_height(3)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("at least 4x4"), "{err}");
    }
}
