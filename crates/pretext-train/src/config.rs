//! The settings of a pretraining run, read from TOML (`configs/*.toml`), overridden by flags and
//! saved resolved in the run directory.

use serde::{Deserialize, Serialize};

use pretext_data::tasks::TaskConfig;
use pretext_data::{ImageShape, LoaderConfig, TaskKind};
use pretext_models::encoders::{CnnEncoderConfig, EncoderConfig, EncoderKind};
use pretext_models::losses::VicregWeights;
use pretext_models::tasks::{JointEmbeddingConfig, JointLoss, MaeDecoder};

use crate::error::{Result, TrainError};
use crate::schedule::ScheduleConfig;

/// A pretraining run. Every field has a laptop-sized default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    pub task: TaskConfig,
    /// The encoder; when absent, the task's usual one ([`default_encoder`]). Its input size is
    /// always taken from the data.
    pub encoder: Option<EncoderConfig>,
    pub heads: HeadsConfig,
    pub epochs: u64,
    pub loader: LoaderConfig,
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
    /// Batches whose gradients are summed before each optimizer step (effective batch =
    /// `accumulation * batch_size`).
    pub accumulation: usize,
    /// Clip the norm of each parameter's gradient to this value.
    pub grad_clip: Option<f32>,
    pub seed: u64,
    pub checkpoint: CheckpointConfig,
    pub knn: KnnConfig,
    /// Pretrain on at most this many training images (a seeded subset); all when absent.
    pub max_images: Option<usize>,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            task: TaskConfig::default_for(TaskKind::Rotation),
            encoder: None,
            heads: HeadsConfig::default(),
            epochs: 10,
            loader: LoaderConfig::default(),
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            accumulation: 1,
            grad_clip: None,
            seed: 0,
            checkpoint: CheckpointConfig::default(),
            knn: KnnConfig::default(),
            max_images: None,
        }
    }
}

/// The encoder a task uses unless told otherwise: a ViT for MAE (it needs patch tokens), a CNN
/// with global pooling for jigsaw (it trains on tiles and is evaluated on whole images), the
/// reference CNN's convolutional trunk for the two-view methods (their projector is the head;
/// the literature probes the backbone under it), and the reference CNN otherwise.
pub fn default_encoder(task: TaskKind) -> EncoderConfig {
    match task {
        TaskKind::Mae => EncoderConfig::default_for(EncoderKind::Vit),
        TaskKind::Jigsaw => EncoderConfig::Cnn(CnnEncoderConfig::new().with_global_pool(true)),
        t if t.uses_views() => EncoderConfig::Cnn(CnnEncoderConfig::new().with_fc(false)),
        _ => EncoderConfig::default_for(EncoderKind::Cnn),
    }
}

impl PretrainConfig {
    /// Reads a TOML file.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| TrainError::config(e.to_string()))
    }

    pub fn to_toml(&self) -> String {
        // Every field serialises (no maps with non-string keys), so this cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The encoder with its input size set from the data.
    pub fn resolved_encoder(&self, shape: ImageShape) -> EncoderConfig {
        self.encoder
            .clone()
            .unwrap_or_else(|| default_encoder(self.task.kind()))
            .with_input(shape.channels, shape.height, shape.width)
    }

    /// Checks every setting that does not need the data.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(TrainError::config(reason));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.loader.batch_size == 0 {
            return bad("loader.batch_size must be at least 1".into());
        }
        if self.accumulation == 0 {
            return bad("accumulation must be at least 1".into());
        }
        if let Some(c) = self.grad_clip
            && !(c.is_finite() && c > 0.0)
        {
            return bad(format!("grad_clip = {c} must be positive"));
        }
        if self.checkpoint.keep == 0 {
            return bad("checkpoint.keep must be at least 1".into());
        }
        if self.max_images == Some(0) {
            return bad("max_images must be at least 1".into());
        }
        if self.checkpoint.every_steps == Some(0) {
            return bad("checkpoint.every_steps must be at least 1".into());
        }
        self.optimizer.validate()?;
        self.schedule.validate()?;
        self.heads.validate()?;
        self.knn.validate()
    }
}

/// Settings of the task heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadsConfig {
    /// Hidden width of the jigsaw MLP over the concatenated tile features.
    pub jigsaw_hidden: usize,
    /// SimCLR's projection size (default 64).
    pub projection_dim: usize,
    /// SimCLR's NT-Xent temperature (default 0.5).
    pub temperature: f32,
    pub mae_decoder: MaeDecoder,
    /// Hidden width of the autoencoder's MLP decoder.
    pub decoder_hidden: usize,
    /// The two-view methods' projector (SimCLR, BYOL, MoCo v3, VICReg, Barlow Twins): hidden
    /// widths, then the output width. When absent, the method's own
    /// ([`HeadsConfig::projector_for`]).
    pub projector: Option<Vec<usize>>,
    /// Hidden width of the BYOL and MoCo v3 predictor (default 1024).
    pub predictor_hidden: usize,
    /// MoCo v3's temperature (default 0.2).
    pub moco_temperature: f32,
    /// VICReg's weights (default 25, 25, 1).
    pub vicreg: VicregWeights,
    /// Barlow Twins' weight of the off-diagonal terms (default 5e-3).
    pub barlow_lambda: f32,
    /// The momentum target's moving average (BYOL, MoCo v3): `[base, final]`, rising along a
    /// half cosine over the run's steps (default 0.99 to 1).
    pub momentum: [f64; 2],
}

impl Default for HeadsConfig {
    fn default() -> Self {
        Self {
            jigsaw_hidden: 512,
            projection_dim: 64,
            temperature: 0.5,
            mae_decoder: MaeDecoder::default(),
            decoder_hidden: 512,
            projector: None,
            predictor_hidden: 1024,
            moco_temperature: 0.2,
            vicreg: VicregWeights::default(),
            barlow_lambda: 5e-3,
            momentum: crate::schedule::DEFAULT_MOMENTUM,
        }
    }
}

impl HeadsConfig {
    /// The projector of a two-view method over a representation of `dim` features: the
    /// configured one, else the method's (scaled down from the papers' 2048- to 8192-wide heads
    /// to what trains on a CPU). SimCLR's is one hidden layer as wide as the representation (at
    /// most 1024), then `projection_dim`.
    pub fn projector_for(&self, kind: TaskKind, dim: usize) -> Vec<usize> {
        if let Some(p) = &self.projector {
            return p.clone();
        }
        match kind {
            TaskKind::Simclr => vec![dim.min(1024), self.projection_dim],
            TaskKind::Byol => vec![1024, 128],
            TaskKind::MocoV3 => vec![1024, 1024, 128],
            _ => vec![1024, 1024, 1024],
        }
    }

    /// The model of the two-view method `kind` over a representation of `dim` features.
    pub fn joint(&self, kind: TaskKind, dim: usize) -> Option<JointEmbeddingConfig> {
        let loss = match kind {
            TaskKind::Simclr => JointLoss::Simclr {
                temperature: self.temperature,
            },
            TaskKind::Byol => JointLoss::Byol,
            TaskKind::MocoV3 => JointLoss::MocoV3 {
                temperature: self.moco_temperature,
            },
            TaskKind::Vicreg => JointLoss::Vicreg(self.vicreg),
            TaskKind::BarlowTwins => JointLoss::BarlowTwins {
                lambda: self.barlow_lambda,
            },
            _ => return None,
        };
        Some(JointEmbeddingConfig {
            loss,
            projector: self.projector_for(kind, dim),
            projector_hidden_norm: kind != TaskKind::Simclr,
            // MoCo v3 ends its projector with batch norm, as the paper.
            projector_output_norm: kind == TaskKind::MocoV3,
            predictor_hidden: self.predictor_hidden,
        })
    }

    fn validate(&self) -> Result<()> {
        if self
            .projector
            .as_ref()
            .is_some_and(|p| p.is_empty() || p.contains(&0))
            || self.predictor_hidden == 0
        {
            return Err(TrainError::config(
                "heads: projector must list positive widths (hidden ones, then the output) and \
                 predictor_hidden be positive",
            ));
        }
        let [base, end] = self.momentum;
        if !((0.0..=1.0).contains(&base) && (base..=1.0).contains(&end)) {
            return Err(TrainError::config(format!(
                "heads.momentum = [{base}, {end}] must rise within [0, 1]"
            )));
        }
        let w = &self.vicreg;
        let non_negative = |v: f32| v.is_finite() && v >= 0.0;
        let valid = self.moco_temperature.is_finite()
            && self.moco_temperature > 0.0
            && [self.barlow_lambda, w.invariance, w.variance, w.covariance]
                .into_iter()
                .all(non_negative);
        if !valid {
            return Err(TrainError::config(
                "heads: moco_temperature must be positive, barlow_lambda and the vicreg weights \
                 non-negative",
            ));
        }
        let d = &self.mae_decoder;
        if self.jigsaw_hidden == 0
            || self.projection_dim == 0
            || self.decoder_hidden == 0
            || d.dim == 0
            || d.depth == 0
            || d.heads == 0
            || !d.dim.is_multiple_of(d.heads)
        {
            return Err(TrainError::config(
                "heads: sizes must be positive and mae_decoder.dim a multiple of its heads",
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(TrainError::config(format!(
                "heads.temperature = {} must be positive",
                self.temperature
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Adamw,
    Sgd,
}

/// Optimizer settings. Defaults: AdamW, learning rate 1e-3, weight decay 0.05, betas 0.9/0.999.
/// With `kind = "sgd"`, `momentum` (default 0.9) and `nesterov` apply instead of the betas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Peak learning rate (reached after warm-up).
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub momentum: f64,
    pub nesterov: bool,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adamw,
            lr: 1e-3,
            weight_decay: 0.05,
            betas: [0.9, 0.999],
            momentum: 0.9,
            nesterov: false,
        }
    }
}

impl OptimizerConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(TrainError::config(format!(
                "optimizer.lr = {} must be positive",
                self.lr
            )));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(TrainError::config(format!(
                "optimizer.weight_decay = {} must be >= 0",
                self.weight_decay
            )));
        }
        let unit = |v: f64| (0.0..1.0).contains(&v);
        if !unit(self.betas[0]) || !unit(self.betas[1]) || !unit(self.momentum) {
            return Err(TrainError::config(
                "optimizer.betas and optimizer.momentum must lie in [0, 1)",
            ));
        }
        Ok(())
    }
}

/// Defaults: a checkpoint at the end of every epoch, the last 3 kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Also write a checkpoint every this many optimizer steps.
    pub every_steps: Option<u64>,
    pub keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            every_steps: None,
            keep: 3,
        }
    }
}

/// The online kNN monitor. Defaults: 10% of the labelled training images held out of
/// pretraining as queries, at most 5,000 training images as the memory bank, k = 20, cosine
/// similarity weighted with temperature 0.07.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnnConfig {
    pub enabled: bool,
    pub validation_fraction: f64,
    pub bank: usize,
    pub k: usize,
    pub temperature: f32,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            validation_fraction: 0.1,
            bank: 5000,
            k: 20,
            temperature: 0.07,
        }
    }
}

impl KnnConfig {
    fn validate(&self) -> Result<()> {
        if self.enabled
            && (!(self.validation_fraction > 0.0 && self.validation_fraction < 1.0)
                || self.k == 0
                || self.bank == 0
                || self.temperature.is_nan()
                || self.temperature <= 0.0)
        {
            return Err(TrainError::config(
                "knn: validation_fraction must lie in (0, 1) and k, bank and temperature be positive",
            ));
        }
        Ok(())
    }
}
