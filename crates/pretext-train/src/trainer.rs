//! The training loop, one for every use: pretraining on a pretext task, fine-tuning and the
//! supervised baseline. It steps the optimizer on batches the loader makes ahead, follows the
//! learning-rate schedule, accumulates gradients, stops on a non-finite loss, writes checkpoints
//! and resumes from them exactly.

use std::time::Instant;

use burn::module::{Module, ParamGroup};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor};

use pretext_data::BatchSource;
use pretext_data::tasks::AnyTensors;
use pretext_data::text::TokenTensors;
use pretext_models::tasks::{JointOutput, JointProjections, MaeInput, TaskModel, TokenViews};
use pretext_models::text::MlmInput;

use crate::checkpoint::{Checkpoint, CheckpointDir, TrainState};
use crate::config::{OptimizerConfig, PretrainConfig};
use crate::error::{Result, TrainError};
use crate::metrics::MetricsLog;
use crate::observer::{EmbeddingSpread, EpochReport, StepReport, TrainObserver};
use crate::optimizer::build_optimizer;
use crate::replicas::Replicas;
use crate::schedule::{MomentumSchedule, Schedule, ScheduleConfig};

/// The settings the loop itself uses.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub epochs: u64,
    /// Stop after this many optimizer steps, mid-epoch if need be; the learning-rate schedule
    /// spans these steps. `None`: every step of `epochs` epochs.
    pub max_steps: Option<u64>,
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
    pub accumulation: usize,
    pub grad_clip: Option<f32>,
    pub checkpoint_every_steps: Option<u64>,
    /// The encoder's learning rate as a fraction of the rest's (fine-tuning trains a pretrained
    /// encoder more gently than its new head); 1 trains all alike.
    pub encoder_lr_scale: f64,
    /// The momentum target's moving average, `[base, final]` over the run (models with a
    /// target only).
    pub momentum: [f64; 2],
    /// Data-parallel replicas, the loop's device first; `None` trains on that device alone.
    pub replicas: Option<Replicas>,
}

impl From<&PretrainConfig> for LoopSettings {
    fn from(c: &PretrainConfig) -> Self {
        Self {
            epochs: c.epochs,
            max_steps: None,
            optimizer: c.optimizer.clone(),
            schedule: c.schedule.clone(),
            accumulation: c.accumulation,
            grad_clip: c.grad_clip,
            checkpoint_every_steps: c.checkpoint.every_steps,
            encoder_lr_scale: 1.0,
            momentum: c.heads.momentum,
            replicas: None,
        }
    }
}

impl LoopSettings {
    /// A study run: `steps` optimizer steps over a loader of `batches` batches per epoch at a
    /// constant rate `lr` (no warm-up, no decay), no checkpoints.
    pub fn fixed_steps(
        steps: usize,
        batches: usize,
        optimizer: OptimizerConfig,
        grad_clip: Option<f32>,
        encoder_lr_scale: f64,
    ) -> Self {
        Self {
            epochs: steps.div_ceil(batches.max(1)).max(1) as u64,
            max_steps: Some(steps as u64),
            optimizer,
            schedule: ScheduleConfig {
                warmup_epochs: 0.0,
                final_fraction: 0.0,
            },
            accumulation: 1,
            grad_clip,
            checkpoint_every_steps: None,
            encoder_lr_scale,
            momentum: crate::schedule::DEFAULT_MOMENTUM,
            replicas: None,
        }
    }
}

/// Trains without checkpoints, epoch hook or progress: the study's fine-tuning and
/// from-scratch runs. Returns the model in evaluation mode.
pub fn train_quietly(
    model: TaskModel,
    loader: &dyn BatchSource,
    settings: &LoopSettings,
    device: &Device,
) -> Result<TaskModel> {
    let model = train_loop(
        model,
        loader,
        settings,
        device,
        None,
        &mut |_, _| Ok(None),
        &mut crate::observer::Silent,
    )?;
    Ok(model.valid())
}

/// A constant rate: the loop computes the schedule itself and hands Burn the rate per group.
#[derive(Clone)]
struct Rate(f64);

impl LrScheduler for Rate {
    fn step(&mut self) -> f64 {
        self.0
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new()
    }

    fn load_record(&mut self, _record: LrSchedulerRecord) {}
}

/// The learning rate of every parameter: `lr`, or `lr * scale` for the encoder's when a group
/// is given.
fn rates(lr: f64, encoder: Option<&(ParamGroup, f64)>) -> ModuleLearningRate {
    let mut scheduler = ModuleLrScheduler::new(Rate(lr));
    if let Some((group, scale)) = encoder {
        scheduler = scheduler.with_group(group.clone(), Rate(lr * scale));
    }
    scheduler.step()
}

/// Where a loop keeps its checkpoints and metrics, when it keeps them.
pub struct Persistence {
    pub checkpoints: CheckpointDir,
    /// The metrics log's path; after a resume, lines of steps past the checkpoint are dropped.
    pub metrics: std::path::PathBuf,
    /// Identifies the settings; stored in checkpoints and checked on resume.
    pub config_digest: String,
    /// Other digests checkpoints of the same settings carry (earlier ways of writing them:
    /// [`crate::run_dir::RunDir::accepted_digests`]); accepted on resume too.
    pub accepted_digests: Vec<String>,
    /// Set when this resume raised `epochs`: said to the observer and logged.
    pub extension: Option<crate::run_dir::Extension>,
    /// Resume from the newest good checkpoint, if any.
    pub resume: bool,
}

/// Runs on after every epoch with the model in evaluation mode; its number (say, a kNN
/// accuracy) goes into the epoch's report.
pub type EpochHook<'a> = dyn FnMut(&TaskModel, u64) -> Result<Option<f64>> + 'a;

/// What one batch gives the loop: the loss, and for methods that embed two views, how spread
/// out the embeddings are (the collapse monitor).
pub struct StepLoss {
    pub loss: Tensor<1>,
    /// The embeddings' spread and their width.
    pub embedding_std: Option<(Tensor<1>, usize)>,
}

/// The loss of one batch. The model and batch kinds match when both come from one task.
pub fn task_loss(model: &TaskModel, batch: AnyTensors) -> Result<Tensor<1>> {
    task_output(model, batch).map(|out| out.loss)
}

/// [`task_loss`] with the collapse monitor.
pub fn task_output(model: &TaskModel, batch: AnyTensors) -> Result<StepLoss> {
    if let Some(out) = projections(model, &batch).and_then(|p| model.loss_of_projections(p)) {
        return Ok(out.into());
    }
    let loss = match (model, batch) {
        (TaskModel::Classifier(m), AnyTensors::Classification(b)) => m.loss(b.images, b.targets),
        (TaskModel::Jigsaw(m), AnyTensors::Jigsaw(b)) => m.loss(b.tiles, b.targets),
        (TaskModel::Mae(m), AnyTensors::Masked(b)) => m.loss(MaeInput {
            visible: b.visible,
            visible_indices: b.visible_indices,
            restore: b.restore,
            mask: b.mask,
            targets: b.targets,
        }),
        (TaskModel::Autoencoder(m), AnyTensors::Denoise(b)) => m.loss(b.inputs, b.targets),
        (TaskModel::Mlm(m), AnyTensors::Mlm(b)) => m.loss(MlmInput {
            tokens: b.inputs.tokens,
            padding: b.inputs.padding,
            positions: b.positions,
            targets: b.targets,
        }),
        (TaskModel::TextClassifier(m), AnyTensors::TextClassification(b)) => {
            m.loss(b.tokens.tokens, b.tokens.padding, b.targets)
        }
        _ => {
            return Err(TrainError::config(
                "the model was built for another task than the data loader's",
            ));
        }
    };
    Ok(StepLoss {
        loss,
        embedding_std: None,
    })
}

/// The projections of a batch of view pairs, for a model that
/// [projects views](TaskModel::projects_views); `None` for other models and batches.
pub(crate) fn projections(model: &TaskModel, batch: &AnyTensors) -> Option<JointProjections> {
    match (model, batch) {
        (TaskModel::Joint(m), AnyTensors::Views(b)) => {
            Some(m.project(b.first.clone(), b.second.clone()))
        }
        (TaskModel::TextContrastive(m), AnyTensors::TextViews(b)) => {
            Some(m.project(token_views(&b.first), token_views(&b.second)))
        }
        _ => None,
    }
}

/// One side of a batch of text views as the model takes it.
fn token_views(t: &TokenTensors) -> TokenViews {
    TokenViews {
        tokens: t.tokens.clone(),
        padding: t.padding.clone(),
    }
}

impl From<JointOutput> for StepLoss {
    fn from(out: JointOutput) -> Self {
        StepLoss {
            loss: out.loss,
            embedding_std: Some((out.embedding_std, out.embedding_dim)),
        }
    }
}

/// The one-element loss as a number, or why the device could not give it (a remote device's
/// server gone, a driver failure).
fn scalar(loss: &Tensor<1>) -> std::result::Result<f64, String> {
    let data = loss.clone().try_into_data().map_err(|e| e.to_string())?;
    Ok(data
        .try_into_vec_as::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN))
}

/// Trains `model` (built on `device`, an autodiff device) on `loader`'s batches for
/// `settings.epochs` epochs and returns it.
pub fn train_loop(
    mut model: TaskModel,
    loader: &dyn BatchSource,
    settings: &LoopSettings,
    device: &Device,
    mut persistence: Option<Persistence>,
    epoch_hook: &mut EpochHook<'_>,
    observer: &mut dyn TrainObserver,
) -> Result<TaskModel> {
    let batches = loader.batches_per_epoch();
    let accumulation = settings.accumulation.max(1);
    let steps_per_epoch = batches.div_ceil(accumulation) as u64;
    let schedule = Schedule::new(
        &settings.schedule,
        settings.optimizer.lr,
        steps_per_epoch,
        settings.epochs,
    )
    .truncated(settings.max_steps);
    let finished = |step: u64| settings.max_steps.is_some_and(|m| step >= m);
    let momentum = MomentumSchedule::new(settings.momentum, schedule.total_steps());
    let mut optimizer = build_optimizer(&settings.optimizer, settings.grad_clip);
    let encoder_group = (settings.encoder_lr_scale != 1.0)
        .then(|| (model.encoder_group(), settings.encoder_lr_scale));
    let digest = persistence
        .as_ref()
        .map(|p| p.config_digest.clone())
        .unwrap_or_default();
    let mut state = TrainState {
        epoch: 0,
        batch: 0,
        step: 0,
        config_digest: digest.clone(),
    };

    if let Some(p) = persistence.as_mut().filter(|p| p.resume) {
        match p.checkpoints.latest()? {
            Some(restored) => {
                for skipped in &restored.skipped {
                    observer.note(&format!("skipped {skipped}"));
                }
                let c = restored.checkpoint;
                if c.state.config_digest != digest
                    && !p.accepted_digests.contains(&c.state.config_digest)
                {
                    return Err(TrainError::checkpoint(
                        &restored.path,
                        "it was written under other settings",
                    ));
                }
                let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(c.model))
                    .map_err(|e| TrainError::checkpoint(&restored.path, e.to_string()))?;
                model = model
                    .try_load_record(record)
                    .map_err(|e| TrainError::checkpoint(&restored.path, e.to_string()))?;
                optimizer = optimizer
                    .from_bytes(Bytes::from_bytes_vec(c.optimizer))
                    .map_err(|e| TrainError::checkpoint(&restored.path, e.to_string()))?;
                state = c.state;
                observer.note(&format!(
                    "resumed from {} (epoch {}, batch {}, step {})",
                    restored.path.display(),
                    state.epoch + 1,
                    state.batch,
                    state.step
                ));
            }
            None => observer.note("no checkpoint yet; starting from the beginning"),
        }
    }

    let mut log = match &persistence {
        Some(p) => Some(MetricsLog::open(
            &p.metrics,
            p.resume.then_some(state.step),
        )?),
        None => None,
    };
    if let (Some(p), Some(log)) = (persistence.as_ref(), log.as_mut())
        && let Some(e) = p.extension
    {
        observer.note(&format!(
            "extending the run from {} to {} epochs at step {}: the learning-rate schedule \
             (and any momentum schedule) is re-planned over {} epochs",
            e.from_epochs, e.to_epochs, state.step, e.to_epochs
        ));
        log.extension(e.from_epochs, e.to_epochs, state.step)?;
    }
    let save = |model: &TaskModel,
                optimizer: &burn::optim::ModuleOptimizer,
                state: &TrainState,
                p: &Persistence,
                log: &mut MetricsLog|
     -> Result<()> {
        log.flush()?;
        let bytes = |r: std::result::Result<Bytes, burn::store::RecordError>| {
            r.map(|b| b.to_vec())
                .map_err(|e| TrainError::checkpoint(p.checkpoints.dir(), e.to_string()))
        };
        let checkpoint = Checkpoint {
            state: state.clone(),
            // Batch norm's running statistics lag one update behind until synchronised, which
            // the evaluation copy does; its parameters are the training model's.
            model: bytes(model.valid().into_record().into_bytes())?,
            optimizer: bytes(optimizer.into_bytes())?,
        };
        p.checkpoints.save(&checkpoint)?;
        Ok(())
    };

    while state.epoch < settings.epochs && !finished(state.step) {
        let epoch = state.epoch;
        observer.epoch_started(epoch, settings.epochs, state.batch, batches);
        let started = Instant::now();
        let (mut loss_sum, mut losses, mut images) = (0.0, 0usize, 0usize);
        let (mut std_sum, mut stds, mut embedding_dim) = (0.0, 0usize, 0usize);
        let mut accumulator = GradientsAccumulator::<TaskModel>::new();
        let mut pending = 0;
        let mut window = (Instant::now(), 0usize);
        for (b, batch) in (state.batch..).zip(loader.epoch_from(epoch, state.batch)) {
            let examples = batch.examples();
            let (
                StepLoss {
                    loss,
                    embedding_std,
                },
                sharded,
            ) = match &settings.replicas {
                Some(replicas) => {
                    let (out, sharded) = replicas.forward(&model, batch)?;
                    (out, Some(sharded))
                }
                None => (task_output(&model, batch.into_tensors(device))?, None),
            };
            let dir = || {
                persistence
                    .as_ref()
                    .map(|p| p.checkpoints.dir().to_path_buf())
                    .unwrap_or_default()
            };
            let failed = |reason: String| TrainError::DeviceFailed {
                reason,
                epoch: epoch + 1,
                step: state.step,
                dir: dir(),
            };
            let value = scalar(&loss).map_err(failed)?;
            let embedding_std = match embedding_std {
                Some((std, dim)) => {
                    let std = scalar(&std).map_err(failed)?;
                    std_sum += std;
                    stds += 1;
                    embedding_dim = dim;
                    Some(std)
                }
                None => None,
            };
            if !value.is_finite() {
                let dir = dir();
                return Err(TrainError::Diverged {
                    loss: value,
                    epoch: epoch + 1,
                    step: state.step,
                    dir,
                });
            }
            let loss = if accumulation > 1 {
                loss.div_scalar(accumulation as f64)
            } else {
                loss
            };
            let grads = match sharded {
                Some(sharded) => sharded.gradients(loss.backward(), &model, device),
                None => GradientsParams::from_grads(loss.backward(), &model),
            };
            accumulator.accumulate(&model, grads);
            pending += 1;
            loss_sum += value;
            losses += 1;
            images += examples;
            window.1 += examples;
            let last = b + 1 == batches;
            if pending == accumulation || last {
                let lr = schedule.lr(state.step);
                model = optimizer.step(
                    rates(lr, encoder_group.as_ref()),
                    model,
                    accumulator.grads(),
                );
                if let Some(replicas) = &settings.replicas {
                    model = replicas.home(model);
                }
                if model.has_target() {
                    model = model.update_target(momentum.at(state.step));
                }
                pending = 0;
                state.step += 1;
                state.batch = b + 1;
                let report = StepReport {
                    epoch,
                    batch: b,
                    step: state.step,
                    loss: value,
                    lr,
                    images_per_second: window.1 as f64 / window.0.elapsed().as_secs_f64(),
                    embedding_std,
                };
                window = (Instant::now(), 0);
                observer.step(&report);
                if let (Some(p), Some(log)) = (persistence.as_ref(), log.as_mut()) {
                    log.step(&report)?;
                    let due = settings
                        .checkpoint_every_steps
                        .is_some_and(|n| state.step.is_multiple_of(n));
                    if due && !last {
                        save(&model, &optimizer, &state, p, log)?;
                    }
                }
                if finished(state.step) {
                    break;
                }
            }
        }
        let knn_accuracy = epoch_hook(&model, epoch)?;
        let seconds = started.elapsed().as_secs_f64();
        let report = EpochReport {
            epoch,
            mean_loss: loss_sum / losses.max(1) as f64,
            knn_accuracy,
            seconds,
            images_per_second: images as f64 / seconds.max(1e-9),
            embedding: (stds > 0).then(|| EmbeddingSpread {
                std: std_sum / stds as f64,
                dim: embedding_dim,
            }),
        };
        if let Some(spread) = report.embedding.filter(EmbeddingSpread::collapsed) {
            observer.note(&format!(
                "the embeddings are collapsing: their per-dimension spread is {:.3} of a \
                 spread-out embedding's (below {}); lower the learning rate, or check the \
                 method's variance terms and momentum",
                spread.relative(),
                EmbeddingSpread::COLLAPSED
            ));
        }
        state.epoch += 1;
        state.batch = 0;
        if let (Some(p), Some(log)) = (persistence.as_ref(), log.as_mut()) {
            log.epoch(&report, state.step)?;
            save(&model, &optimizer, &state, p, log)?;
        }
        observer.epoch_finished(&report);
    }
    Ok(model)
}
