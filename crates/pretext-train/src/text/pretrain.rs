//! Pretraining of the text encoder, by masked tokens (`mlm`) or contrastive views (`simcse`):
//! the tokenizer trained on the pretraining text and saved with the run, the training loop
//! shared with images (checkpoints, resume), a held-out measure after each epoch (masked-token
//! accuracy, or how often a view finds its twin), and the exported encoder (and MLM model).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use pretext_data::LoaderConfig;
use pretext_data::text::{
    MlmBatch, MlmConfig, TextDataset, TextLoader, TextTask, TextTokenizer, TextViewsBatch,
    TextViewsConfig, TokenBatch, TokenizerConfig, encode_documents,
};
use pretext_models::losses::l2_normalize;
use pretext_models::tasks::{TaskModel, TextContrastiveModel};
use pretext_models::text::{MlmModel, Pooling, TextEncoder, TextEncoderConfig};

use crate::config::{CheckpointConfig, OptimizerConfig};
use crate::error::{Result, TrainError};
use crate::model::seeded;
use crate::observer::TrainObserver;
use crate::replicas::Replicas;
use crate::run_dir::{RunDir, RunMode};
use crate::schedule::ScheduleConfig;
use crate::study::{correct, predictions};
use crate::trainer::{LoopSettings, Persistence, train_loop};

pub const TOKENIZER: &str = "tokenizer.json";
pub const TEXT_DESCRIPTION: &str = "text_encoder.json";
pub const ENCODER_WEIGHTS: &str = "encoder.safetensors";
pub const MLM_WEIGHTS: &str = "mlm.safetensors";

/// A text pretext task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextTaskKind {
    /// Masked-token prediction (BERT).
    #[default]
    Mlm,
    /// Contrastive views of each sequence (SimCSE's dropout, with crops and deletions).
    Simcse,
}

impl TextTaskKind {
    pub const ALL: [TextTaskKind; 2] = [TextTaskKind::Mlm, TextTaskKind::Simcse];

    pub fn name(self) -> &'static str {
        match self {
            TextTaskKind::Mlm => "mlm",
            TextTaskKind::Simcse => "simcse",
        }
    }

    /// What the held-out number after each epoch measures.
    pub fn monitor(self) -> &'static str {
        match self {
            TextTaskKind::Mlm => "masked-token accuracy",
            TextTaskKind::Simcse => "held-out views matched",
        }
    }
}

impl std::str::FromStr for TextTaskKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown text task '{s}': expected mlm or simcse"))
    }
}

/// Contrastive views' settings. Defaults: SimCSE's temperature 0.05 and dropout 0.1, views
/// cropped to spans of 20-50% of the tokens with 10% of them deleted (chosen on the
/// validation split), a 256-wide projector to 128.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimcseConfig {
    pub views: TextViewsConfig,
    /// NT-Xent's temperature.
    pub temperature: f32,
    /// Dropout in the encoder's blocks while training, which makes two passes differ.
    pub dropout: f64,
    pub projector_hidden: usize,
    pub projection_dim: usize,
}

impl Default for SimcseConfig {
    fn default() -> Self {
        Self {
            views: TextViewsConfig::default(),
            temperature: 0.05,
            dropout: 0.1,
            projector_hidden: 256,
            projection_dim: 128,
        }
    }
}

impl SimcseConfig {
    pub fn validate(&self) -> Result<()> {
        self.views.validate()?;
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(TrainError::config(format!(
                "simcse temperature = {} must be positive",
                self.temperature
            )));
        }
        if self.projector_hidden == 0 || self.projection_dim == 0 {
            return Err(TrainError::config(
                "simcse projector_hidden and projection_dim must be positive",
            ));
        }
        Ok(())
    }
}

/// A text pretraining run. Defaults are sized to pretrain on the fortunes (about 660,000
/// tokens) by masked tokens in about ten minutes on two CPU cores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextPretrainConfig {
    pub task: TextTaskKind,
    pub tokenizer: TokenizerConfig,
    /// The encoder; its `vocab_size` is always the tokenizer's.
    pub encoder: TextEncoderConfig,
    pub mlm: MlmConfig,
    pub simcse: SimcseConfig,
    pub epochs: u64,
    pub loader: LoaderConfig,
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
    pub grad_clip: Option<f32>,
    pub seed: u64,
    pub checkpoint: CheckpointConfig,
    /// Share of the pretraining sequences held out to measure masked-token accuracy.
    pub held_out_fraction: f64,
    /// A finished text pretraining run (its directory) whose tokenizer and encoder weights this
    /// run starts from instead of training a tokenizer and drawing random weights: SimCSE on a
    /// masked-token encoder, as the paper starts from BERT. `tokenizer` is then unused, and
    /// `encoder` must have that run's shape.
    pub init_from: Option<PathBuf>,
}

impl Default for TextPretrainConfig {
    fn default() -> Self {
        Self {
            task: TextTaskKind::Mlm,
            tokenizer: TokenizerConfig::default(),
            encoder: TextEncoderConfig::new(),
            mlm: MlmConfig::default(),
            simcse: SimcseConfig::default(),
            epochs: 16,
            loader: LoaderConfig {
                batch_size: 32,
                ..LoaderConfig::default()
            },
            optimizer: OptimizerConfig {
                lr: 2e-3,
                weight_decay: 0.01,
                ..OptimizerConfig::default()
            },
            schedule: ScheduleConfig {
                warmup_epochs: 0.2,
                final_fraction: 0.0,
            },
            grad_clip: Some(1.0),
            seed: 0,
            checkpoint: CheckpointConfig::default(),
            held_out_fraction: 0.05,
            init_from: None,
        }
    }
}

impl TextPretrainConfig {
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| TrainError::config(e.to_string()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.loader.batch_size == 0 || self.checkpoint.keep == 0 {
            return Err(TrainError::config(
                "epochs, loader.batch_size and checkpoint.keep must be at least 1",
            ));
        }
        if !(self.held_out_fraction > 0.0 && self.held_out_fraction < 1.0) {
            return Err(TrainError::config(format!(
                "held_out_fraction = {} must lie strictly between 0 and 1",
                self.held_out_fraction
            )));
        }
        if self.encoder.max_len < 3 {
            return Err(TrainError::config(
                "encoder.max_len must be at least 3 ([CLS], a token and [SEP])",
            ));
        }
        self.tokenizer.validate()?;
        self.mlm.validate()?;
        self.simcse.validate()?;
        self.encoder.validate()?;
        self.schedule.validate()?;
        self.optimizer.validate()
    }
}

/// What `text_encoder.json` holds: enough to rebuild the encoder and its tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextEncoderDescription {
    pub encoder: TextEncoderConfig,
    pub task: String,
    pub epochs: u64,
    pub data: String,
    /// Held-out masked-token accuracy after the last epoch (`mlm`).
    pub masked_accuracy: Option<f64>,
    /// Share of held-out views whose nearest other view was their twin (`simcse`).
    #[serde(default)]
    pub views_matched: Option<f64>,
    /// The run whose encoder this one started from (`init_from`), if any.
    #[serde(default)]
    pub initialised_from: Option<String>,
}

/// What a finished text pretraining run leaves.
#[derive(Debug, Clone)]
pub struct TextPretrainOutcome {
    pub run_dir: PathBuf,
    /// The held-out measure after the last epoch (see [`TextTaskKind::monitor`]).
    pub held_out: Option<f64>,
    pub sequences: usize,
    pub tokens: usize,
    pub vocab_size: usize,
    pub encoder_params: usize,
}

/// Salt of the held-out split and of its fixed masks.
const HELD_OUT_SALT: u64 = 0x6d6c_6d5f_6865_6c64;

/// Pretrains a text encoder by `config.task` on `data`'s pretraining text (never its test
/// split), in the run directory `out`.
pub fn pretrain_text(
    config: &TextPretrainConfig,
    data: &TextDataset,
    device: &Device,
    out: &Path,
    mode: RunMode,
    observer: &mut dyn TrainObserver,
) -> Result<TextPretrainOutcome> {
    pretrain_text_on(
        config,
        data,
        std::slice::from_ref(device),
        out,
        mode,
        observer,
    )
}

/// What each epoch is measured on: held-out sequences masked, or cut into views, once.
enum HeldOut {
    Masks(Vec<MlmBatch>),
    Views(Vec<TextViewsBatch>),
}

impl HeldOut {
    fn measure(&self, model: &TaskModel, device: &Device) -> Option<f64> {
        match (self, model) {
            (HeldOut::Masks(batches), TaskModel::Mlm(m)) => {
                Some(masked_accuracy(m, batches, device))
            }
            (HeldOut::Views(batches), TaskModel::TextContrastive(m)) => {
                Some(views_matched(&m.encoder, batches, device))
            }
            _ => None,
        }
    }
}

/// [`pretrain_text`] data-parallel on `devices` (see [`crate::replicas`]); the first device
/// holds the model, the optimizer and the checkpoints.
pub fn pretrain_text_on(
    config: &TextPretrainConfig,
    data: &TextDataset,
    devices: &[Device],
    out: &Path,
    mode: RunMode,
    observer: &mut dyn TrainObserver,
) -> Result<TextPretrainOutcome> {
    config.validate()?;
    let device = devices
        .first()
        .ok_or_else(|| TrainError::config("pretraining needs a device"))?;
    let documents = data.pretraining_documents();
    let init = config
        .init_from
        .as_deref()
        .map(|dir| InitialEncoder::load(dir, &config.encoder))
        .transpose()?;
    // Reuse the run's tokenizer when resuming (training is deterministic, but a saved one is
    // the one the checkpoints were trained with).
    let saved = out.join(TOKENIZER);
    let tokenizer = if mode == RunMode::Resume && saved.exists() {
        TextTokenizer::load(&saved)?
    } else if let Some(init) = &init {
        init.tokenizer.clone()
    } else {
        observer.note("training the tokenizer");
        TextTokenizer::train(&config.tokenizer, &documents)?
    };
    let mut encoder_config = config
        .encoder
        .clone()
        .with_vocab_size(tokenizer.vocab_size());
    if config.task == TextTaskKind::Simcse {
        encoder_config = encoder_config.with_dropout(config.simcse.dropout);
    }
    let resolved = TextPretrainConfig {
        encoder: encoder_config.clone(),
        ..config.clone()
    };
    let toml = resolved.to_toml();
    let sequences = encode_documents(&tokenizer, &documents, encoder_config.max_len, true);
    let tokens = sequences.iter().map(Vec::len).sum();
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed ^ HELD_OUT_SALT));
    let held = ((sequences.len() as f64 * config.held_out_fraction).round() as usize)
        .clamp(1, 2000.min(sequences.len().saturating_sub(1)).max(1));
    let (held_out, train) = order.split_at(held.min(order.len()));
    let mut train = train.to_vec();
    train.sort_unstable();
    let sequences = Arc::new(sequences);

    let train_device = device.clone().autodiff();
    let (task, held_out) = match config.task {
        TextTaskKind::Mlm => {
            let masking = config.mlm.build(tokenizer.vocab_size())?;
            let held_out = fixed_batches(&sequences, held_out, config.seed, 128, |chunk, rng| {
                let masked: Vec<_> = chunk.iter().map(|s| masking.mask(s, rng)).collect();
                let batch = MlmBatch::from_masked(&masked);
                (!batch.positions.is_empty()).then_some(batch)
            });
            (TextTask::Mlm(masking), HeldOut::Masks(held_out))
        }
        TextTaskKind::Simcse => {
            let views = config.simcse.views.build()?;
            // A view among one is always matched: such a chunk measures nothing.
            let held_out = fixed_batches(&sequences, held_out, config.seed, 128, |chunk, rng| {
                let pairs: Vec<_> = chunk
                    .iter()
                    .map(|s| (views.view(s, rng), views.view(s, rng)))
                    .collect();
                (pairs.len() > 1).then(|| TextViewsBatch::from_pairs(&pairs))
            });
            (TextTask::Views(views), HeldOut::Views(held_out))
        }
    };
    let model = seeded(config.seed, &train_device, || {
        let mut encoder = encoder_config.init(&train_device)?;
        if let Some(init) = &init {
            load_weights(&mut encoder, &init.weights)?;
        }
        Ok(match config.task {
            TextTaskKind::Mlm => TaskModel::Mlm(MlmModel::new(encoder, &train_device)),
            TextTaskKind::Simcse => TaskModel::TextContrastive(TextContrastiveModel::new(
                encoder,
                config.simcse.projector_hidden,
                config.simcse.projection_dim,
                config.simcse.temperature,
                &train_device,
            )?),
        })
    })?;
    let loader = TextLoader::new(
        task,
        Arc::clone(&sequences),
        None,
        Some(train),
        config.loader.clone(),
        config.seed,
    )?;
    let resolve = |saved: &str| {
        TextPretrainConfig::from_toml(saved)
            .ok()
            .map(|c| c.to_toml())
    };
    let run = RunDir::open_resolving(out, &toml, mode, &resolve)?;
    // The kept checkpoints, one being written, and the exported encoder and MLM model.
    run.ensure_checkpoint_space(model.num_params(), config.checkpoint.keep + 3)?;
    tokenizer.save(&run.file(TOKENIZER))?;

    let mut last = None;
    let mut hook = |model: &TaskModel, _epoch: u64| -> Result<Option<f64>> {
        let measured = held_out.measure(&model.valid(), device);
        last = measured;
        Ok(measured)
    };
    let settings = LoopSettings {
        epochs: config.epochs,
        max_steps: None,
        optimizer: config.optimizer.clone(),
        schedule: config.schedule.clone(),
        accumulation: 1,
        grad_clip: config.grad_clip,
        checkpoint_every_steps: config.checkpoint.every_steps,
        encoder_lr_scale: 1.0,
        momentum: crate::schedule::DEFAULT_MOMENTUM,
        replicas: Replicas::data_parallel(devices),
    };
    let persistence = Persistence {
        checkpoints: run.checkpoints(config.checkpoint.keep),
        metrics: run.metrics(),
        config_digest: crate::run_dir::settings_digest(&toml),
        accepted_digests: run.accepted_digests(&toml),
        extension: run.extension(),
        resume: mode == RunMode::Resume,
    };
    let model = train_loop(
        model,
        &loader,
        &settings,
        &train_device,
        Some(persistence),
        &mut hook,
        observer,
    )?
    .valid();
    if last.is_none() {
        // Resumed after the last epoch: measure once more for the description.
        last = held_out.measure(&model, device);
    }
    let encoder = model
        .text_encoder()
        .ok_or_else(|| TrainError::config("text pretraining built an image model"))?;
    let description = TextEncoderDescription {
        encoder: encoder_config,
        task: config.task.name().into(),
        epochs: config.epochs,
        data: data.name.clone(),
        masked_accuracy: last.filter(|_| config.task == TextTaskKind::Mlm),
        views_matched: last.filter(|_| config.task == TextTaskKind::Simcse),
        initialised_from: config
            .init_from
            .as_ref()
            .map(|dir| dir.display().to_string()),
    };
    save_weights(&encoder, &run.file(ENCODER_WEIGHTS))?;
    if let TaskModel::Mlm(mlm) = &model {
        save_weights(mlm, &run.file(MLM_WEIGHTS))?;
    }
    let json = serde_json::to_vec_pretty(&description).unwrap_or_default();
    pretext_data::npy::write_atomic(&run.file(TEXT_DESCRIPTION), &json)?;
    Ok(TextPretrainOutcome {
        run_dir: run.root().to_path_buf(),
        held_out: last,
        sequences: sequences.len(),
        tokens,
        vocab_size: tokenizer.vocab_size(),
        encoder_params: encoder.num_params(),
    })
}

/// The run a text pretraining starts from (`init_from`): its tokenizer and where its encoder's
/// weights are, once its shape is known to match the config's.
struct InitialEncoder {
    tokenizer: TextTokenizer,
    weights: PathBuf,
}

impl InitialEncoder {
    fn load(dir: &Path, wanted: &TextEncoderConfig) -> Result<Self> {
        let description = load_description(dir)?;
        let tokenizer = TextTokenizer::load(&dir.join(TOKENIZER))?;
        let weights = dir.join(ENCODER_WEIGHTS);
        if !weights.exists() {
            return Err(TrainError::checkpoint(
                &weights,
                "init_from names a run without its exported encoder; is the run finished?",
            ));
        }
        // Only the shape must match: the vocabulary is the tokenizer's, and dropout and
        // pooling are this run's own.
        let shape = |c: &TextEncoderConfig| {
            c.clone()
                .with_vocab_size(tokenizer.vocab_size())
                .with_dropout(0.0)
                .with_pooling(Pooling::Mean)
        };
        let theirs = &description.encoder;
        if shape(theirs) != shape(wanted) {
            return Err(TrainError::config(format!(
                "init_from {}: its encoder (max_len {}, dim {}, depth {}, heads {}, mlp_ratio {}) \
                 differs from this config's (max_len {}, dim {}, depth {}, heads {}, mlp_ratio {})",
                dir.display(),
                theirs.max_len,
                theirs.dim,
                theirs.depth,
                theirs.heads,
                theirs.mlp_ratio,
                wanted.max_len,
                wanted.dim,
                wanted.depth,
                wanted.heads,
                wanted.mlp_ratio,
            )));
        }
        Ok(Self { tokenizer, weights })
    }
}

/// The held-out sequences made into batches of up to `batch_size` once, with a fixed seed, so
/// every epoch is measured on the same masks or views. `make` turns a chunk's sequences into
/// a batch, or into nothing when the chunk has nothing to measure.
fn fixed_batches<T>(
    sequences: &[Vec<u32>],
    held_out: &[usize],
    seed: u64,
    batch_size: usize,
    mut make: impl FnMut(&[&[u32]], &mut ChaCha8Rng) -> Option<T>,
) -> Vec<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ HELD_OUT_SALT);
    held_out
        .chunks(batch_size)
        .filter_map(|chunk| {
            let chunk: Vec<&[u32]> = chunk.iter().map(|&i| sequences[i].as_slice()).collect();
            make(&chunk, &mut rng)
        })
        .collect()
}

/// Share of first views whose most similar second view (cosine of the encoder's pooled
/// representation, among a batch of up to 128) is their own twin; chance is one in the batch.
pub fn views_matched(encoder: &TextEncoder, batches: &[TextViewsBatch], device: &Device) -> f64 {
    let (mut right, mut total) = (0usize, 0usize);
    for batch in batches {
        let n = batch.pairs();
        let t = batch.clone().into_tensors(device);
        let z1 = l2_normalize(encoder.forward(t.first.tokens, t.first.padding));
        let z2 = l2_normalize(encoder.forward(t.second.tokens, t.second.padding));
        let nearest = predictions(z1.matmul(z2.transpose()));
        right += nearest
            .iter()
            .enumerate()
            .filter(|&(i, &j)| i == j as usize)
            .count();
        total += n;
    }
    right as f64 / total.max(1) as f64
}

/// Share of the selected tokens that the model predicts exactly (top-1).
pub fn masked_accuracy(model: &MlmModel, batches: &[MlmBatch], device: &Device) -> f64 {
    let (mut right, mut total) = (0usize, 0usize);
    for batch in batches {
        let t = batch.clone().into_tensors(device);
        let logits = model.logits(t.inputs.tokens, t.inputs.padding, t.positions);
        right += correct(&predictions(logits), &batch.targets);
        total += batch.targets.len();
    }
    right as f64 / total.max(1) as f64
}

/// The `k` likeliest tokens for each `[MASK]` of `text`, with their probabilities.
pub fn fill_mask(
    model: &MlmModel,
    tokenizer: &TextTokenizer,
    text: &str,
    k: usize,
    device: &Device,
) -> Vec<Vec<(String, f64)>> {
    let mask = pretext_data::text::Special::Mask;
    // Tokenize around the literal "[MASK]" markers, so they become the mask token.
    let mut ids = vec![pretext_data::text::Special::Cls.id()];
    for (i, part) in text.split(mask.text()).enumerate() {
        if i > 0 {
            ids.push(mask.id());
        }
        ids.extend(tokenizer.encode(part));
    }
    ids.push(pretext_data::text::Special::Sep.id());
    ids.truncate(model.encoder.max_len());
    let positions: Vec<i64> = (0..ids.len())
        .filter(|&i| ids[i] == mask.id())
        .map(|i| i as i64)
        .collect();
    if positions.is_empty() {
        return Vec::new();
    }
    let n = positions.len();
    let tensors = TokenBatch::pad(&[ids.as_slice()]).into_tensors(device);
    let positions = Tensor::from_data(TensorData::new(positions, [n]), device);
    let probabilities = burn::tensor::activation::softmax(
        model.logits(tensors.tokens, tensors.padding, positions),
        1,
    );
    let vocab = probabilities.dims()[1];
    let values = probabilities
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap_or_default();
    values
        .chunks(vocab)
        .map(|row| {
            let mut ranked: Vec<(usize, f32)> = row
                .iter()
                .copied()
                .enumerate()
                .filter(|&(id, _)| id >= pretext_data::text::FIRST_ORDINARY_ID as usize)
                .collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            ranked
                .into_iter()
                .take(k)
                .map(|(id, p)| (tokenizer.token(id as u32).unwrap_or_default(), f64::from(p)))
                .collect()
        })
        .collect()
}

fn save_weights<M: Module>(module: &M, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.partial");
    let mut store = SafetensorsStore::from_file(&tmp).overwrite(true);
    module
        .save_into(&mut store)
        .map_err(|e| TrainError::checkpoint(path, format!("cannot write the weights: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

fn load_weights<M: Module>(module: &mut M, path: &Path) -> Result<()> {
    let mut store = SafetensorsStore::from_file(path);
    module
        .load_from(&mut store)
        .map_err(|e| TrainError::checkpoint(path, format!("cannot load the weights: {e}")))?;
    Ok(())
}

/// A finished MLM run rebuilt on `device`: the model (encoder and head), the tokenizer and the
/// description.
pub struct LoadedMlm {
    pub model: MlmModel,
    pub tokenizer: TextTokenizer,
    pub description: TextEncoderDescription,
}

impl LoadedMlm {
    pub fn encoder(&self) -> &TextEncoder {
        &self.model.encoder
    }
}

fn load_description(dir: &Path) -> Result<TextEncoderDescription> {
    let json_path = dir.join(TEXT_DESCRIPTION);
    let text = std::fs::read(&json_path).map_err(|e| TrainError::io(&json_path, e))?;
    serde_json::from_slice(&text)
        .map_err(|e| TrainError::checkpoint(&json_path, format!("unreadable description: {e}")))
}

/// Loads the MLM run in `dir`.
pub fn load_mlm(dir: &Path, device: &Device) -> Result<LoadedMlm> {
    let description = load_description(dir)?;
    let tokenizer = TextTokenizer::load(&dir.join(TOKENIZER))?;
    let mut model = MlmModel::new(description.encoder.init(device)?, device);
    load_weights(&mut model, &dir.join(MLM_WEIGHTS))?;
    Ok(LoadedMlm {
        model: model.valid(),
        tokenizer,
        description,
    })
}

/// A finished text pretraining run of any task rebuilt on `device`: its encoder, tokenizer
/// and description.
pub struct LoadedTextEncoder {
    pub encoder: TextEncoder,
    pub tokenizer: TextTokenizer,
    pub description: TextEncoderDescription,
}

/// Loads the encoder of the text pretraining run in `dir`.
pub fn load_text_encoder(dir: &Path, device: &Device) -> Result<LoadedTextEncoder> {
    let description = load_description(dir)?;
    let tokenizer = TextTokenizer::load(&dir.join(TOKENIZER))?;
    let mut encoder = description.encoder.init(device)?;
    load_weights(&mut encoder, &dir.join(ENCODER_WEIGHTS))?;
    Ok(LoadedTextEncoder {
        encoder: encoder.valid(),
        tokenizer,
        description,
    })
}
