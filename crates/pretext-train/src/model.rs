//! Builds the model of a task: the encoder with the task's head, checked against each other.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

use pretext_data::PretextTask;
use pretext_data::tasks::AnyTask;
use pretext_data::tasks::RotationTask;
use pretext_models::Encoder;
use pretext_models::encoders::EncoderConfig;
use pretext_models::tasks::{
    AutoencoderModel, ClassifierModel, JigsawModel, JointEmbeddingModel, MaeModel, TaskModel,
};

use crate::config::HeadsConfig;
use crate::error::{Result, TrainError};

/// The model for `task` around a new encoder built from `encoder`. `classes` is used by the
/// supervised task only.
pub fn build_model(
    task: &AnyTask,
    encoder: &EncoderConfig,
    heads: &HeadsConfig,
    classes: usize,
    device: &Device,
) -> Result<TaskModel> {
    let dim = encoder.embedding_dim();
    let shape = task.input_shape();
    let built = |config: &EncoderConfig| -> Result<Encoder> { Ok(config.init(device)?) };
    Ok(match task {
        AnyTask::Rotation(_) => TaskModel::Classifier(ClassifierModel::new(
            built(encoder)?,
            dim,
            RotationTask::NUM_CLASSES,
            device,
        )),
        AnyTask::Supervised(_) => {
            if classes < 2 {
                return Err(TrainError::config(
                    "supervised training needs labelled data with at least two classes",
                ));
            }
            TaskModel::Classifier(ClassifierModel::new(built(encoder)?, dim, classes, device))
        }
        AnyTask::Jigsaw(t) => {
            if !encoder.accepts_any_size() {
                return Err(TrainError::config(format!(
                    "jigsaw trains the encoder on tiles and uses it on whole images, so it needs an \
                     encoder that accepts any size (cnn with global_pool = true, or resnet), not {}",
                    encoder.kind()
                )));
            }
            let tile = t.tile_shape();
            // The tiles must be large enough for the encoder's downsampling.
            encoder
                .clone()
                .with_input(tile.channels, tile.height, tile.width)
                .validate()
                .map_err(|e| {
                    TrainError::config(format!(
                        "jigsaw tiles are {}x{} pixels, too small for this encoder: {e}",
                        tile.height, tile.width
                    ))
                })?;
            TaskModel::Jigsaw(JigsawModel::new(
                built(encoder)?,
                dim,
                t.tiles_per_image(),
                heads.jigsaw_hidden,
                t.permutations().len(),
                device,
            ))
        }
        AnyTask::Masking(t) => {
            let EncoderConfig::Vit(vit) = encoder else {
                return Err(TrainError::config(format!(
                    "mae needs the vit encoder (it encodes patch tokens), not {}",
                    encoder.kind()
                )));
            };
            if vit.patch_size != t.patch_size() {
                return Err(TrainError::config(format!(
                    "mae masks {0}x{0} patches but the vit encoder uses {1}x{1} patches; make \
                     task.patch_size and encoder.patch_size equal",
                    t.patch_size(),
                    vit.patch_size
                )));
            }
            TaskModel::Mae(MaeModel::new(
                vit.init(device)?,
                t.num_patches(),
                t.patch_dim(),
                heads.mae_decoder,
                device,
            ))
        }
        AnyTask::Views(t) => {
            let out = t.output_shape();
            if out != shape && !encoder.accepts_any_size() {
                return Err(TrainError::config(format!(
                    "{} views are {}x{} but the {} encoder takes {}x{} images only",
                    t.method(),
                    out.height,
                    out.width,
                    encoder.kind(),
                    shape.height,
                    shape.width
                )));
            }
            let joint = heads.joint(t.method(), dim).ok_or_else(|| {
                TrainError::config(format!("{} does not learn from two views", t.method()))
            })?;
            TaskModel::Joint(JointEmbeddingModel::new(encoder, &joint, device)?)
        }
        AnyTask::Denoise(_) => TaskModel::Autoencoder(AutoencoderModel::new(
            built(encoder)?,
            dim,
            heads.decoder_hidden,
            [shape.channels, shape.height, shape.width],
            device,
        )),
    })
}

/// Parameters initialise lazily, on first use, from the device's random generator, which is
/// global. Seeding and touching every parameter while holding this lock makes initialisation
/// depend on the seed alone, even with other threads creating models.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds a model with `build` and initialises all its parameters from `seed`.
pub fn seeded<M: Module>(
    seed: u64,
    device: &Device,
    build: impl FnOnce() -> Result<M>,
) -> Result<M> {
    let _guard = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    let model = build()?;
    model.visit(&mut Touch);
    Ok(model)
}

struct Touch;

impl ModuleVisitor for Touch {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}
