//! Encoders: images in (`[batch, channels, height, width]`), representations out
//! (`[batch, embedding_dim]`). [`EncoderConfig`] names one of them and its settings, and
//! [`Encoder`] runs whichever was built.

pub mod cnn;
pub mod mlp;
pub(crate) mod norm;
pub mod resnet;
pub mod transformer;
pub mod vit;

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
pub use cnn::{CnnEncoder, CnnEncoderConfig};
pub use mlp::{MlpEncoder, MlpEncoderConfig};
pub use resnet::{ResNetEncoder, ResNetEncoderConfig};
pub use vit::{VitEncoder, VitEncoderConfig};

/// The encoder families by name, as the CLI and config files spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderKind {
    Mlp,
    Cnn,
    Resnet,
    Vit,
}

impl EncoderKind {
    pub const ALL: [EncoderKind; 4] = [
        EncoderKind::Mlp,
        EncoderKind::Cnn,
        EncoderKind::Resnet,
        EncoderKind::Vit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EncoderKind::Mlp => "mlp",
            EncoderKind::Cnn => "cnn",
            EncoderKind::Resnet => "resnet",
            EncoderKind::Vit => "vit",
        }
    }
}

impl fmt::Display for EncoderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EncoderKind {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        EncoderKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                ModelError::invalid(
                    "encoder",
                    format!("unknown encoder '{s}'; expected one of mlp, cnn, resnet, vit"),
                )
            })
    }
}

/// One encoder's settings, tagged by `kind` in config files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EncoderConfig {
    Mlp(MlpEncoderConfig),
    Cnn(CnnEncoderConfig),
    Resnet(ResNetEncoderConfig),
    Vit(VitEncoderConfig),
}

impl EncoderConfig {
    /// The defaults of `kind` for images of `channels x height x width`.
    pub fn for_images(kind: EncoderKind, channels: usize, height: usize, width: usize) -> Self {
        Self::default_for(kind).with_input(channels, height, width)
    }

    pub fn default_for(kind: EncoderKind) -> Self {
        match kind {
            EncoderKind::Mlp => EncoderConfig::Mlp(MlpEncoderConfig::new()),
            EncoderKind::Cnn => EncoderConfig::Cnn(CnnEncoderConfig::new()),
            EncoderKind::Resnet => EncoderConfig::Resnet(ResNetEncoderConfig::new()),
            EncoderKind::Vit => EncoderConfig::Vit(VitEncoderConfig::new()),
        }
    }

    /// The same settings for inputs of another size.
    pub fn with_input(self, channels: usize, height: usize, width: usize) -> Self {
        match self {
            EncoderConfig::Mlp(c) => EncoderConfig::Mlp(
                c.with_in_channels(channels)
                    .with_height(height)
                    .with_width(width),
            ),
            EncoderConfig::Cnn(c) => EncoderConfig::Cnn(
                c.with_in_channels(channels)
                    .with_height(height)
                    .with_width(width),
            ),
            EncoderConfig::Resnet(c) => EncoderConfig::Resnet(
                c.with_in_channels(channels)
                    .with_height(height)
                    .with_width(width),
            ),
            EncoderConfig::Vit(c) => EncoderConfig::Vit(
                c.with_in_channels(channels)
                    .with_height(height)
                    .with_width(width),
            ),
        }
    }

    pub fn kind(&self) -> EncoderKind {
        match self {
            EncoderConfig::Mlp(_) => EncoderKind::Mlp,
            EncoderConfig::Cnn(_) => EncoderKind::Cnn,
            EncoderConfig::Resnet(_) => EncoderKind::Resnet,
            EncoderConfig::Vit(_) => EncoderKind::Vit,
        }
    }

    /// `[channels, height, width]` of the inputs the encoder is built for.
    pub fn input(&self) -> [usize; 3] {
        match self {
            EncoderConfig::Mlp(c) => [c.in_channels, c.height, c.width],
            EncoderConfig::Cnn(c) => [c.in_channels, c.height, c.width],
            EncoderConfig::Resnet(c) => [c.in_channels, c.height, c.width],
            EncoderConfig::Vit(c) => [c.in_channels, c.height, c.width],
        }
    }

    /// Size of the representation vector.
    pub fn embedding_dim(&self) -> usize {
        match self {
            EncoderConfig::Mlp(c) => c.embedding_dim,
            EncoderConfig::Cnn(c) => c.representation_dim(),
            EncoderConfig::Resnet(c) => c.representation_dim(),
            EncoderConfig::Vit(c) => c.dim,
        }
    }

    /// Which layer the representation is, in words, for reports and `encoder.json`.
    pub fn representation(&self) -> String {
        let dim = self.embedding_dim();
        match self {
            EncoderConfig::Mlp(_) => {
                format!("the last linear layer's ReLU outputs ({dim} features)")
            }
            EncoderConfig::Vit(_) => {
                format!("the mean of the last block's normalised tokens ({dim} features)")
            }
            EncoderConfig::Cnn(c) if c.fc => {
                format!("the linear layer after the convolutions ({dim} ReLU features)")
            }
            EncoderConfig::Resnet(c) if c.fc => {
                format!("the linear layer after global pooling ({dim} ReLU features)")
            }
            EncoderConfig::Resnet(_) => {
                format!("the last residual stage averaged over space ({dim} features)")
            }
            EncoderConfig::Cnn(c) if c.global_pool => {
                format!("the convolutional trunk averaged over space ({dim} features)")
            }
            EncoderConfig::Cnn(c) => {
                let n = c.channels.len() as u32;
                let channels = c.channels.last().copied().unwrap_or(0);
                format!(
                    "the convolutional trunk, {channels} channels of {}x{} flattened ({dim} \
                     features)",
                    c.height >> n,
                    c.width >> n
                )
            }
        }
    }

    /// Whether the built encoder accepts inputs of any size (not only [`Self::input`]).
    pub fn accepts_any_size(&self) -> bool {
        match self {
            EncoderConfig::Cnn(c) => c.global_pool,
            EncoderConfig::Resnet(_) => true,
            EncoderConfig::Mlp(_) | EncoderConfig::Vit(_) => false,
        }
    }

    /// FLOPs of one forward pass on one input of [`Self::input`]'s size.
    pub fn flops_per_image(&self) -> u64 {
        match self {
            EncoderConfig::Mlp(c) => c.flops_per_image(),
            EncoderConfig::Cnn(c) => c.flops_per_image(),
            EncoderConfig::Resnet(c) => c.flops_per_image(),
            EncoderConfig::Vit(c) => c.flops_per_image(),
        }
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        match self {
            EncoderConfig::Mlp(c) => c.validate(),
            EncoderConfig::Cnn(c) => c.validate(),
            EncoderConfig::Resnet(c) => c.validate(),
            EncoderConfig::Vit(c) => c.validate(),
        }
    }

    pub fn init(&self, device: &Device) -> Result<Encoder, ModelError> {
        Ok(match self {
            EncoderConfig::Mlp(c) => Encoder::Mlp(c.init(device)?),
            EncoderConfig::Cnn(c) => Encoder::Cnn(c.init(device)?),
            EncoderConfig::Resnet(c) => Encoder::Resnet(c.init(device)?),
            EncoderConfig::Vit(c) => Encoder::Vit(c.init(device)?),
        })
    }
}

/// Any encoder; see [`EncoderConfig`].
// One encoder lives per model; the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Encoder {
    Mlp(MlpEncoder),
    Cnn(CnnEncoder),
    Resnet(ResNetEncoder),
    Vit(VitEncoder),
}

impl Encoder {
    /// `[batch, channels, height, width]` → `[batch, embedding_dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Encoder::Mlp(e) => e.forward(images),
            Encoder::Cnn(e) => e.forward(images),
            Encoder::Resnet(e) => e.forward(images),
            Encoder::Vit(e) => e.forward(images),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Int, TensorData};

    #[test]
    fn every_encoder_maps_images_to_its_embedding_size() {
        let device = Device::flex();
        for kind in EncoderKind::ALL {
            let config = EncoderConfig::for_images(kind, 1, 28, 28);
            let encoder = config.init(&device).unwrap();
            let out = encoder.forward(Tensor::ones([3, 1, 28, 28], &device));
            assert_eq!(out.dims(), [3, config.embedding_dim()], "{kind}");
            assert!(encoder.num_params() > 1000, "{kind}");
            assert!(config.flops_per_image() > 100_000, "{kind}");
            assert_eq!(config.input(), [1, 28, 28]);
            assert_eq!(kind.name().parse::<EncoderKind>().unwrap(), kind);
        }
        assert!("transformer".parse::<EncoderKind>().is_err());
    }

    #[test]
    fn size_independent_encoders_take_other_sizes() {
        let device = Device::flex();
        let resnet = EncoderConfig::default_for(EncoderKind::Resnet);
        assert!(resnet.accepts_any_size());
        let out = resnet
            .init(&device)
            .unwrap()
            .forward(Tensor::ones([2, 1, 9, 13], &device));
        assert_eq!(out.dims(), [2, 128]);
        let pooled = EncoderConfig::Cnn(CnnEncoderConfig::new().with_global_pool(true));
        assert!(pooled.accepts_any_size());
        let out = pooled
            .init(&device)
            .unwrap()
            .forward(Tensor::ones([2, 1, 8, 8], &device));
        assert_eq!(out.dims(), [2, 128]);
        assert!(!EncoderConfig::default_for(EncoderKind::Vit).accepts_any_size());
    }

    #[test]
    fn the_vit_encodes_a_subset_of_patches_and_patchifies_row_major() {
        let device = Device::flex();
        let vit = VitEncoderConfig::new()
            .with_height(8)
            .with_width(8)
            .with_dim(16)
            .with_heads(2)
            .with_depth(1)
            .init(&device)
            .unwrap();
        // 2x2 patches of 4x4; image values are their pixel index.
        let image: Vec<f32> = (0..64).map(|v| v as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(image, [1, 1, 8, 8]), &device);
        let patches = vit.patchify(x);
        assert_eq!(patches.dims(), [1, 4, 16]);
        let p = patches.into_data().try_into_vec_as::<f32>().unwrap();
        // Patch 1 is the top-right block: rows 0-3, columns 4-7.
        assert_eq!(&p[16..20], &[4.0, 5.0, 6.0, 7.0]);
        assert_eq!(&p[20..24], &[12.0, 13.0, 14.0, 15.0]);
        let some = Tensor::<3>::ones([2, 3, 16], &device);
        let idx = Tensor::<2, Int>::from_data(
            TensorData::new(vec![0i64, 2, 3, 1, 2, 3], [2, 3]),
            &device,
        );
        assert_eq!(vit.forward_patches(some, idx).dims(), [2, 3, 16]);
    }

    #[test]
    fn invalid_encoder_configs_are_errors() {
        let vit = EncoderConfig::Vit(VitEncoderConfig::new().with_patch_size(5));
        assert!(
            vit.validate()
                .unwrap_err()
                .to_string()
                .contains("patch_size 5")
        );
        let vit = EncoderConfig::Vit(VitEncoderConfig::new().with_dim(30).with_heads(4));
        assert!(vit.validate().is_err());
        let mlp = EncoderConfig::Mlp(MlpEncoderConfig::new().with_hidden(vec![0]));
        assert!(mlp.validate().is_err());
        let resnet = EncoderConfig::Resnet(ResNetEncoderConfig::new().with_widths(vec![]));
        assert!(resnet.validate().is_err());
        // Config files name only what they change; unknown keys are errors.
        let c: EncoderConfig = toml::from_str("kind = \"cnn\"\nchannels = [8]\n").unwrap();
        assert_eq!(
            c,
            EncoderConfig::Cnn(CnnEncoderConfig::new().with_channels(vec![8]))
        );
        assert!(toml::from_str::<EncoderConfig>("kind = \"cnn\"\nchanels = [8]\n").is_err());
    }
}
