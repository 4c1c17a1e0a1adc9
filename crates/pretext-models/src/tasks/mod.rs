//! Task models: an encoder with the head and loss of one pretext task (or of classification).
//! [`TaskModel`] holds any of them so one training loop serves every task.

mod autoencoder;
mod classifier;
mod jigsaw;
mod mae;
mod simclr;

use burn::module::Module;

pub use autoencoder::AutoencoderModel;
pub use classifier::ClassifierModel;
pub use jigsaw::JigsawModel;
pub use mae::{MaeDecoder, MaeInput, MaeModel};
pub use simclr::SimclrModel;

use crate::encoders::Encoder;

/// Any task model.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TaskModel {
    Classifier(ClassifierModel),
    Jigsaw(JigsawModel),
    Mae(MaeModel),
    Simclr(SimclrModel),
    Autoencoder(AutoencoderModel),
}

impl TaskModel {
    /// The encoder being trained (the part kept after pretraining).
    pub fn encoder(&self) -> Encoder {
        match self {
            TaskModel::Classifier(m) => m.encoder.clone(),
            TaskModel::Jigsaw(m) => m.encoder.clone(),
            TaskModel::Mae(m) => Encoder::Vit(m.encoder.clone()),
            TaskModel::Simclr(m) => m.encoder.clone(),
            TaskModel::Autoencoder(m) => m.encoder.clone(),
        }
    }
}
