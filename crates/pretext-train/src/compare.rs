//! `compare`: pretrain what the study needs (or reuse finished runs), then run the study.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use pretext_data::{ImageDataset, TaskKind};
use pretext_models::encoders::EncoderConfig;
use pretext_models::encoders::EncoderKind;

use crate::config::{PretrainConfig, default_encoder};
use crate::error::{Result, TrainError};
use crate::export::{WEIGHTS, load_encoder, load_encoder_for};
use crate::model::seeded;
use crate::observer::TrainObserver;
use crate::pretrain::pretrain;
use crate::run_dir::RunMode;
use crate::study::{
    Cell, Representation, StudyConfig, StudyObserver, Summary, run_study, summarize,
};

/// Settings of `pretext compare`, read from `configs/compare.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompareConfig {
    pub study: StudyConfig,
    /// Pretext tasks to pretrain (each with its default settings unless `pretrain` says more).
    pub tasks: Vec<TaskKind>,
    /// Pretraining epochs of every task.
    pub epochs: u64,
    /// Images per pretraining batch.
    pub batch_size: usize,
    /// Pretrain on at most this many training images; all when absent.
    pub pretrain_images: Option<usize>,
    pub seed: u64,
}

impl Default for CompareConfig {
    fn default() -> Self {
        Self {
            study: StudyConfig::default(),
            tasks: vec![
                TaskKind::Rotation,
                TaskKind::Jigsaw,
                TaskKind::Mae,
                TaskKind::Simclr,
                TaskKind::Autoencoder,
            ],
            epochs: 10,
            batch_size: 128,
            pretrain_images: None,
            seed: 0,
        }
    }
}

impl CompareConfig {
    /// A few minutes on a laptop: one seed, one pretraining epoch on at most 3,000 images,
    /// shorter probes and training runs.
    pub fn quick(mut self) -> Self {
        self.pretrain_images = Some(self.pretrain_images.unwrap_or(3000).min(3000));
        self.study.seeds = 1;
        self.study.linear_iterations = 100;
        self.study.cluster_n_init = 1;
        self.study.train_steps = 30;
        self.epochs = 1;
        self
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| TrainError::config(e.to_string()))
    }
}

/// What a finished comparison produced.
pub struct CompareOutcome {
    pub cells: Vec<Cell>,
    pub summaries: Vec<Summary>,
    pub pretraining: Vec<PretrainingCost>,
}

/// What pretraining one task cost, from its run's metrics log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainingCost {
    pub task: TaskKind,
    pub epochs: u64,
    pub seconds: f64,
    /// The held-out kNN accuracy after the last epoch.
    pub knn_accuracy: Option<f64>,
    pub final_loss: Option<f64>,
}

impl PretrainingCost {
    /// Reads the epoch lines of `dir/metrics.jsonl`.
    fn of(task: TaskKind, dir: &Path) -> Self {
        let mut cost = Self {
            task,
            epochs: 0,
            seconds: 0.0,
            knn_accuracy: None,
            final_loss: None,
        };
        let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["kind"] == "epoch" {
                cost.epochs += 1;
                cost.seconds += v["seconds"].as_f64().unwrap_or(0.0);
                cost.knn_accuracy = v["knn_accuracy"].as_f64();
                cost.final_loss = v["mean_loss"].as_f64();
            }
        }
        cost
    }
}

/// Pretrains each task of `config` not given in `pretrained` (into `out/pretrain/<task>`,
/// resuming an interrupted run), builds the representations and runs the study into
/// `out/cells.jsonl`.
pub fn compare(
    config: &CompareConfig,
    data: &ImageDataset,
    pretrained: &[PathBuf],
    device: &Device,
    out: &Path,
    train_observer: &mut dyn TrainObserver,
    observer: &mut dyn StudyObserver,
) -> Result<CompareOutcome> {
    config.study.validate()?;
    crate::study::check_data(data)?;
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let shape = data.train.shape;
    let mut representations = vec![Representation::Pixels, Representation::Pca];
    let random =
        EncoderConfig::for_images(EncoderKind::Cnn, shape.channels, shape.height, shape.width);
    let encoder = seeded(config.seed, device, || Ok(random.init(device)?))?;
    representations.push(Representation::Encoder {
        name: "random cnn".into(),
        encoder: Box::new(encoder.valid()),
        pretrained: false,
    });
    for dir in pretrained {
        let (encoder, description) = load_encoder_for(dir, shape, device)?;
        representations.push(Representation::Encoder {
            name: format!("{} ({})", description.task, dir.display()),
            encoder: Box::new(encoder),
            pretrained: true,
        });
    }
    let mut pretraining = Vec::new();
    for &task in &config.tasks {
        let dir = out.join("pretrain").join(task.name());
        if !dir.join(WEIGHTS).exists() {
            observer.note(&format!("pretraining {task} for {} epochs", config.epochs));
            let mut c = PretrainConfig {
                task: pretext_data::tasks::TaskConfig::default_for(task),
                encoder: Some(default_encoder(task)),
                epochs: config.epochs,
                seed: config.seed,
                ..PretrainConfig::default()
            };
            c.loader.batch_size = config.batch_size;
            c.max_images = config.pretrain_images;
            pretrain(&c, data, device, &dir, RunMode::Resume, train_observer)?;
        }
        let (encoder, _) = load_encoder(&dir, device)?;
        pretraining.push(PretrainingCost::of(task, &dir));
        representations.push(Representation::Encoder {
            name: task.name().to_string(),
            encoder: Box::new(encoder),
            pretrained: true,
        });
    }
    let cells = run_study(
        &config.study,
        data,
        &representations,
        device,
        &out.join("cells.jsonl"),
        observer,
    )?;
    let summaries = summarize(&cells);
    Ok(CompareOutcome {
        cells,
        summaries,
        pretraining,
    })
}
