//! A small Transformer text encoder (token and learned position embeddings, pre-norm blocks),
//! its masked-token (MLM) head and a classifier on its pooled output.

use burn::module::{Module, Param};
use burn::nn::transformer::TransformerEncoder;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::encoders::transformer::{blocks, encode};
use crate::error::ModelError;
use crate::kernels::{gelu, layer_norm, linear, matmul};
use crate::losses::cross_entropy;
use crate::settings::settings;

/// How a sequence's token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The mean over the non-padding tokens.
    #[default]
    Mean,
    /// The state of the first token, `[CLS]`.
    Cls,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }
}

settings! {
/// Configuration of [`TextEncoder`]. Defaults: 4,000 tokens, sequences of up to 64, width 64,
/// 2 blocks of 4 heads, MLP ratio 4 (360,000 parameters, 260,000 of them embeddings). Masked-
/// token training leaves the unigram plateau only after thousands of steps; on two CPU cores
/// this size takes them in minutes, where width 128 and 4 blocks were still on the plateau.
pub struct TextEncoderConfig {
    vocab_size: usize = 4000,
    max_len: usize = 64,
    /// Token width; also the size of the representation.
    dim: usize = 64,
    depth: usize = 2,
    heads: usize = 4,
    mlp_ratio: usize = 4,
    /// Pooling of the representation (the classifier and exported features).
    pooling: Pooling = Pooling::Mean,
    /// Dropout in the blocks while training (0: none). SimCSE's views differ by it.
    dropout: f64 = 0.0,
}
}

impl TextEncoderConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |reason: String| Err(ModelError::invalid("text encoder", reason));
        if [
            self.vocab_size,
            self.max_len,
            self.dim,
            self.depth,
            self.heads,
            self.mlp_ratio,
        ]
        .contains(&0)
        {
            return bad(
                "vocab_size, max_len, dim, depth, heads and mlp_ratio must be positive".into(),
            );
        }
        if !self.dim.is_multiple_of(self.heads) {
            return bad(format!(
                "dim {} must be a multiple of heads {}",
                self.dim, self.heads
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout = {} must lie in [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// FLOPs of the blocks on one token of a `len`-token sequence (embeddings excluded).
    pub fn flops_per_token(&self, len: usize) -> u64 {
        let (d, n) = (self.dim as u64, len as u64);
        let ff = d * self.mlp_ratio as u64;
        self.depth as u64 * (2 * (4 * d * d + 2 * d * ff) + 2 * 2 * n * d)
    }

    pub fn init(&self, device: &Device) -> Result<TextEncoder, ModelError> {
        self.validate()?;
        Ok(TextEncoder {
            tokens: EmbeddingConfig::new(self.vocab_size, self.dim)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device),
            position: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([self.max_len, self.dim], device),
            blocks: blocks(
                self.dim,
                self.heads,
                self.depth,
                self.mlp_ratio,
                self.dropout,
                device,
            ),
            norm: LayerNormConfig::new(self.dim).init(device),
            dim: self.dim,
            max_len: self.max_len,
            pooling: self.pooling,
        })
    }
}

/// See [`TextEncoderConfig`].
#[derive(Module, Debug)]
pub struct TextEncoder {
    pub tokens: Embedding,
    /// `[max_len, dim]`.
    position: Param<Tensor<2>>,
    blocks: TransformerEncoder,
    norm: LayerNorm,
    #[module(skip)]
    dim: usize,
    #[module(skip)]
    max_len: usize,
    #[module(skip)]
    pooling: Pooling,
}

impl TextEncoder {
    /// Token states `[batch, len, dim]` of `tokens` `[batch, len]` (at most `max_len` long);
    /// `padding` `[batch, len]` is true at padding, which attention ignores.
    pub fn states(&self, tokens: Tensor<2, Int>, padding: Tensor<2, Bool>) -> Tensor<3> {
        let [b, len] = tokens.dims();
        let len = len.min(self.max_len);
        let tokens = tokens.slice([0..b, 0..len]);
        let padding = padding.slice([0..b, 0..len]);
        let position = self
            .position
            .val()
            .slice([0..len, 0..self.dim])
            .reshape([1, len, self.dim]);
        let x = self.tokens.forward(tokens) + position;
        let x = encode(&self.blocks, x, Some(padding));
        layer_norm(&self.norm, x)
    }

    /// One vector per sequence, `[batch, dim]`, pooled as configured.
    pub fn forward(&self, tokens: Tensor<2, Int>, padding: Tensor<2, Bool>) -> Tensor<2> {
        self.pooled(tokens, padding, self.pooling)
    }

    /// One vector per sequence, `[batch, dim]`, pooled by `pooling`.
    pub fn pooled(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        pooling: Pooling,
    ) -> Tensor<2> {
        let [b, len] = tokens.dims();
        let len = len.min(self.max_len);
        let states = self.states(tokens, padding.clone());
        match pooling {
            Pooling::Cls => states
                .slice([0..b, 0..1, 0..self.dim])
                .reshape([b, self.dim]),
            Pooling::Mean => {
                let keep = padding
                    .slice([0..b, 0..len])
                    .bool_not()
                    .float()
                    .reshape([b, len, 1]);
                let count = keep.clone().sum_dim(1).clamp_min(1.0).reshape([b, 1]);
                (states * keep).sum_dim(1).reshape([b, self.dim]) / count
            }
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }
}

/// The encoder with BERT's MLM head: a dense layer, GELU and layer norm, then logits over the
/// vocabulary from the token embeddings (tied) plus a bias.
#[derive(Module, Debug)]
pub struct MlmModel {
    pub encoder: TextEncoder,
    transform: Linear,
    norm: LayerNorm,
    bias: Param<Tensor<1>>,
}

/// A batch for [`MlmModel::loss`].
pub struct MlmInput {
    /// `[batch, len]`, the masked tokens.
    pub tokens: Tensor<2, Int>,
    pub padding: Tensor<2, Bool>,
    /// `[selected]`: positions in the flattened `[batch * len]` tokens.
    pub positions: Tensor<1, Int>,
    /// `[selected]`: the original tokens there.
    pub targets: Tensor<1, Int>,
}

impl MlmModel {
    pub fn new(encoder: TextEncoder, device: &Device) -> Self {
        let dim = encoder.dim();
        let vocab = encoder.tokens.weight.dims()[0];
        Self {
            encoder,
            transform: LinearConfig::new(dim, dim).init(device),
            norm: LayerNormConfig::new(dim).init(device),
            bias: Param::from_tensor(Tensor::zeros([vocab], device)),
        }
    }

    /// Vocabulary logits `[selected, vocab]` at `positions` of the flattened tokens.
    pub fn logits(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        positions: Tensor<1, Int>,
    ) -> Tensor<2> {
        let states = self.encoder.states(tokens, padding);
        let [b, len, d] = states.dims();
        let picked = states.reshape([b * len, d]).select(0, positions);
        let h = layer_norm(&self.norm, gelu(linear(&self.transform, picked)));
        let vocab = self.bias.dims()[0];
        matmul(h, self.encoder.tokens.weight.val().transpose())
            + self.bias.val().reshape([1, vocab])
    }

    /// Mean cross-entropy over the selected positions only.
    pub fn loss(&self, input: MlmInput) -> Tensor<1> {
        cross_entropy(
            self.logits(input.tokens, input.padding, input.positions),
            input.targets,
        )
    }
}

/// The text encoder with a linear head: fine-tuning and the from-scratch baseline.
#[derive(Module, Debug)]
pub struct TextClassifierModel {
    pub encoder: TextEncoder,
    head: Linear,
}

impl TextClassifierModel {
    pub fn new(encoder: TextEncoder, classes: usize, device: &Device) -> Self {
        let dim = encoder.dim();
        Self {
            encoder,
            head: LinearConfig::new(dim, classes).init(device),
        }
    }

    /// A classifier whose head starts from given weights `[dim, classes]` and bias `[classes]`.
    pub fn with_head(encoder: TextEncoder, weight: Tensor<2>, bias: Tensor<1>) -> Self {
        Self {
            encoder,
            head: Linear {
                weight: Param::from_tensor(weight),
                bias: Some(Param::from_tensor(bias)),
            },
        }
    }

    /// Logits `[batch, classes]`.
    pub fn forward(&self, tokens: Tensor<2, Int>, padding: Tensor<2, Bool>) -> Tensor<2> {
        linear(&self.head, self.encoder.forward(tokens, padding))
    }

    pub fn loss(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        targets: Tensor<1, Int>,
    ) -> Tensor<1> {
        cross_entropy(self.forward(tokens, padding), targets)
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    fn pooled(encoder: &TextEncoder, device: &Device) -> Vec<f32> {
        let tokens = Tensor::<2, Int>::from_data(
            TensorData::new(vec![2i64, 7, 9, 11, 3, 2, 8, 3, 0, 0], [2, 5]),
            device,
        );
        let padding = tokens.clone().equal_elem(0);
        encoder
            .forward(tokens, padding)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    }

    /// SimCSE's two passes differ only by dropout: active in training, off for features.
    #[test]
    fn dropout_makes_training_passes_differ_and_features_repeat() {
        let device = Device::flex();
        let train = device.clone().autodiff();
        let config = TextEncoderConfig::new().with_vocab_size(16).with_dim(16);
        let with = config.clone().with_dropout(0.3).init(&train).unwrap();
        assert_ne!(pooled(&with, &train), pooled(&with, &train));
        let features = with.valid();
        assert_eq!(pooled(&features, &device), pooled(&features, &device));
        let without = config.init(&train).unwrap();
        assert_eq!(pooled(&without, &train), pooled(&without, &train));
    }
}
