//! Encoders: images in (`[batch, channels, height, width]`), representations out
//! (`[batch, embedding_dim]`). [`EncoderConfig`] names one of them and its settings, and
//! [`Encoder`] runs whichever was built.

pub mod cnn;
pub mod mlp;
pub mod resnet;
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
            EncoderConfig::Cnn(c) => c.embedding_dim,
            EncoderConfig::Resnet(c) => c.embedding_dim,
            EncoderConfig::Vit(c) => c.dim,
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
