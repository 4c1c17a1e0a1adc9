//! Any task (and any batch, images or text) behind one type, so a training loop can hold "the task of this run" without generics.

use burn::tensor::Device;

use super::{
    ClassificationBatch, ClassificationTensors, DenoiseBatch, DenoiseConfig, DenoiseTask,
    DenoiseTensors, JigsawBatch, JigsawTask, JigsawTensors, MaskedBatch, MaskedTensors,
    MaskingTask, PretextTask, RotationTask, Samples, SupervisedTask, TaskConfig, ViewsBatch,
    ViewsTask, ViewsTensors,
};
use crate::dataset::ImageShape;
use crate::error::Result;
use crate::text::{
    MlmBatch, MlmTensors, TextClassBatch, TextClassTensors, TextViewsBatch, TextViewsTensors,
};

/// A built task of any kind.
#[derive(Debug, Clone)]
pub enum AnyTask {
    Rotation(RotationTask),
    Jigsaw(JigsawTask),
    Masking(MaskingTask),
    Views(ViewsTask),
    Denoise(DenoiseTask),
    Supervised(SupervisedTask),
}

/// A host batch of any task.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyBatch {
    Classification(ClassificationBatch),
    Jigsaw(JigsawBatch),
    Masked(MaskedBatch),
    Views(ViewsBatch),
    Denoise(DenoiseBatch),
    Mlm(MlmBatch),
    TextViews(TextViewsBatch),
    TextClassification(TextClassBatch),
}

/// [`AnyBatch`] on a device.
// Tensor handles are large; a batch is made and moved once per step, so boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum AnyTensors {
    Classification(ClassificationTensors),
    Jigsaw(JigsawTensors),
    Masked(MaskedTensors),
    Views(ViewsTensors),
    Denoise(DenoiseTensors),
    Mlm(MlmTensors),
    TextViews(TextViewsTensors),
    TextClassification(TextClassTensors),
}

impl AnyTask {
    /// Builds the task `config` describes for images of `shape`.
    pub fn build(config: &TaskConfig, shape: ImageShape) -> Result<Self> {
        Ok(match config {
            TaskConfig::Rotation(c) => AnyTask::Rotation(c.build(shape)?),
            TaskConfig::Jigsaw(c) => AnyTask::Jigsaw(c.build(shape)?),
            TaskConfig::Mae(c) => AnyTask::Masking(c.build(shape)?),
            TaskConfig::Denoise(c) => AnyTask::Denoise(c.build(shape)?),
            TaskConfig::Autoencoder => AnyTask::Denoise(DenoiseConfig::autoencoder().build(shape)?),
            TaskConfig::Simclr(c)
            | TaskConfig::Byol(c)
            | TaskConfig::MocoV3(c)
            | TaskConfig::Vicreg(c)
            | TaskConfig::BarlowTwins(c) => {
                AnyTask::Views(c.build(shape)?.for_method(config.kind()))
            }
        })
    }
}

impl PretextTask for AnyTask {
    type Batch = AnyBatch;

    fn input_shape(&self) -> ImageShape {
        match self {
            AnyTask::Rotation(t) => t.input_shape(),
            AnyTask::Jigsaw(t) => t.input_shape(),
            AnyTask::Masking(t) => t.input_shape(),
            AnyTask::Views(t) => t.input_shape(),
            AnyTask::Denoise(t) => t.input_shape(),
            AnyTask::Supervised(t) => t.input_shape(),
        }
    }

    fn needs_labels(&self) -> bool {
        matches!(self, AnyTask::Supervised(_))
    }

    fn make_batch(&self, samples: &Samples<'_>) -> AnyBatch {
        match self {
            AnyTask::Rotation(t) => AnyBatch::Classification(t.make_batch(samples)),
            AnyTask::Jigsaw(t) => AnyBatch::Jigsaw(t.make_batch(samples)),
            AnyTask::Masking(t) => AnyBatch::Masked(t.make_batch(samples)),
            AnyTask::Views(t) => AnyBatch::Views(t.make_batch(samples)),
            AnyTask::Denoise(t) => AnyBatch::Denoise(t.make_batch(samples)),
            AnyTask::Supervised(t) => AnyBatch::Classification(t.make_batch(samples)),
        }
    }
}

impl AnyBatch {
    /// Examples the batch holds (rotation's all-four mode makes four per image).
    pub fn examples(&self) -> usize {
        match self {
            AnyBatch::Classification(b) => b.len(),
            AnyBatch::Jigsaw(b) => b.len(),
            AnyBatch::Masked(b) => b.images,
            AnyBatch::Views(b) => b.len(),
            AnyBatch::Denoise(b) => b.len(),
            AnyBatch::Mlm(b) => b.inputs.batch,
            AnyBatch::TextViews(b) => b.pairs(),
            AnyBatch::TextClassification(b) => b.labels.len(),
        }
    }

    pub fn into_tensors(self, device: &Device) -> AnyTensors {
        match self {
            AnyBatch::Classification(b) => AnyTensors::Classification(b.into_tensors(device)),
            AnyBatch::Jigsaw(b) => AnyTensors::Jigsaw(b.into_tensors(device)),
            AnyBatch::Masked(b) => AnyTensors::Masked(b.into_tensors(device)),
            AnyBatch::Views(b) => AnyTensors::Views(b.into_tensors(device)),
            AnyBatch::Denoise(b) => AnyTensors::Denoise(b.into_tensors(device)),
            AnyBatch::Mlm(b) => AnyTensors::Mlm(b.into_tensors(device)),
            AnyBatch::TextViews(b) => AnyTensors::TextViews(b.into_tensors(device)),
            AnyBatch::TextClassification(b) => {
                AnyTensors::TextClassification(b.into_tensors(device))
            }
        }
    }
}
