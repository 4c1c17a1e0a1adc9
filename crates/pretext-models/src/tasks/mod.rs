//! Task models: an encoder with the head and loss of one pretext task (or of classification).
//! [`TaskModel`] holds any of them so one training loop serves every task.

mod autoencoder;
mod classifier;
mod jigsaw;
mod joint;
mod mae;
mod text_contrastive;

use burn::module::{Module, ParamGroup};

pub use autoencoder::AutoencoderModel;
pub use classifier::ClassifierModel;
pub use jigsaw::JigsawModel;
pub use joint::{
    JointEmbeddingConfig, JointEmbeddingModel, JointLoss, JointOutput, JointProjections,
};
pub use mae::{MaeDecoder, MaeInput, MaeModel};
pub use text_contrastive::{TextContrastiveModel, TokenViews};

use crate::encoders::Encoder;
use crate::text::{MlmModel, TextClassifierModel, TextEncoder};

/// Any task model.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TaskModel {
    Classifier(ClassifierModel),
    Jigsaw(JigsawModel),
    Mae(MaeModel),
    Autoencoder(AutoencoderModel),
    Joint(JointEmbeddingModel),
    Mlm(MlmModel),
    TextContrastive(TextContrastiveModel),
    TextClassifier(TextClassifierModel),
}

impl TaskModel {
    /// The image encoder being trained (the part kept after pretraining); `None` for a text
    /// model.
    pub fn encoder(&self) -> Option<Encoder> {
        Some(match self {
            TaskModel::Classifier(m) => m.encoder.clone(),
            TaskModel::Jigsaw(m) => m.encoder.clone(),
            TaskModel::Mae(m) => Encoder::Vit(m.encoder.clone()),
            TaskModel::Autoencoder(m) => m.encoder.clone(),
            TaskModel::Joint(m) => m.encoder.clone(),
            TaskModel::Mlm(_) | TaskModel::TextContrastive(_) | TaskModel::TextClassifier(_) => {
                return None;
            }
        })
    }

    /// The text encoder being trained; `None` for an image model.
    pub fn text_encoder(&self) -> Option<TextEncoder> {
        match self {
            TaskModel::Mlm(m) => Some(m.encoder.clone()),
            TaskModel::TextContrastive(m) => Some(m.encoder.clone()),
            TaskModel::TextClassifier(m) => Some(m.encoder.clone()),
            _ => None,
        }
    }

    /// Whether the loss is made from projections of view pairs (the joint-embedding methods,
    /// SimCSE), which data-parallel training gathers from its replicas.
    pub fn projects_views(&self) -> bool {
        matches!(self, TaskModel::Joint(_) | TaskModel::TextContrastive(_))
    }

    /// The loss of a batch's projections, gathered or made in one piece, for a model that
    /// [projects views](Self::projects_views); `None` for the others.
    pub fn loss_of_projections(&self, projections: JointProjections) -> Option<JointOutput> {
        match self {
            TaskModel::Joint(m) => Some(m.loss_of(projections)),
            TaskModel::TextContrastive(m) => Some(m.loss_of(projections)),
            _ => None,
        }
    }

    /// Whether the model has a momentum target that [`Self::update_target`] moves.
    pub fn has_target(&self) -> bool {
        matches!(self, TaskModel::Joint(m) if m.has_target())
    }

    /// One moving-average step of the momentum target, if the model has one.
    pub fn update_target(self, momentum: f64) -> Self {
        match self {
            TaskModel::Joint(m) => TaskModel::Joint(m.update_target(momentum)),
            other => other,
        }
    }

    /// The encoder's parameters, which fine-tuning trains at their own learning rate.
    pub fn encoder_group(&self) -> ParamGroup {
        match (self.encoder(), self) {
            (Some(e), _) => ParamGroup::ids_from_module(e),
            (None, m) => match m.text_encoder() {
                Some(e) => ParamGroup::ids_from_module(e),
                // Every image model has an image encoder.
                None => ParamGroup::ids_from_module(m.clone()),
            },
        }
    }
}
