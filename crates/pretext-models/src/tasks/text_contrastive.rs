//! Contrastive sentence embeddings (SimCSE, Gao et al. 2021): two views of each sequence go
//! through the text encoder (whose dropout differs between them) and a projector (linear, ReLU,
//! linear, as SimCLR's), and NT-Xent pulls each pair together against the batch's other views.
//! The encoder's pooled output, under the projector, is the representation kept.

use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor};

use super::joint::{JointOutput, JointProjections};
use crate::error::ModelError;
use crate::heads::{MlpHead, MlpHeadConfig};
use crate::losses::{normalized_std, nt_xent};
use crate::text::TextEncoder;

/// One side of a batch of view pairs: `[batch, len]` tokens and their padding.
pub struct TokenViews {
    pub tokens: Tensor<2, Int>,
    pub padding: Tensor<2, Bool>,
}

/// See the module documentation.
#[derive(Module, Debug)]
pub struct TextContrastiveModel {
    pub encoder: TextEncoder,
    projector: MlpHead,
    #[module(skip)]
    temperature: f32,
}

impl TextContrastiveModel {
    /// `encoder` under a projector `dim → hidden → projection`, trained at `temperature`.
    pub fn new(
        encoder: TextEncoder,
        hidden: usize,
        projection: usize,
        temperature: f32,
        device: &Device,
    ) -> Result<Self, ModelError> {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(ModelError::invalid(
                "simcse",
                format!("temperature = {temperature} must be positive"),
            ));
        }
        let projector = MlpHeadConfig {
            hidden_norm: false,
            ..MlpHeadConfig::new(encoder.dim(), &[hidden], projection)
        }
        .init(device)?;
        Ok(Self {
            encoder,
            projector,
            temperature,
        })
    }

    /// What the loss needs of a batch of view pairs (`first` row `i` and `second` row `i` come
    /// from one sequence), or of one replica's shard of it: the projections of the first
    /// views, then of the second. The two sides are padded to their own lengths, so
    /// they are encoded apart.
    pub fn project(&self, first: TokenViews, second: TokenViews) -> JointProjections {
        let z1 = self.encoder.forward(first.tokens, first.padding);
        let z2 = self.encoder.forward(second.tokens, second.padding);
        JointProjections {
            online: self.projector.forward(Tensor::cat(vec![z1, z2], 0)),
            predicted: None,
            target: None,
        }
    }

    /// NT-Xent of a batch's projections, gathered from its shards or made in one piece.
    pub fn loss_of(&self, projections: JointProjections) -> JointOutput {
        let z = projections.online;
        let [rows, embedding_dim] = z.dims();
        let n = rows / 2;
        let embedding_std = normalized_std(z.clone().narrow(0, 0, n).detach());
        let loss = nt_xent(
            z.clone().narrow(0, 0, n),
            z.narrow(0, n, n),
            self.temperature,
        );
        JointOutput {
            loss,
            embedding_std,
            embedding_dim,
        }
    }
}
