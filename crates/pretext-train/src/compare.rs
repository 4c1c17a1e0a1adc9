//! `compare`: pretrain what the study needs (or reuse finished runs), then run the study.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use pretext_data::tasks::{AnyTask, JigsawConfig, TaskConfig};
use pretext_data::{ImageDataset, TaskKind};
use pretext_models::encoders::EncoderConfig;
use pretext_models::encoders::EncoderKind;

use crate::config::{HeadsConfig, PretrainConfig, default_encoder};
use crate::error::{Result, TrainError};
use crate::export::{WEIGHTS, load_encoder, load_encoder_for};
use crate::model::build_model;
use crate::model::seeded;
use crate::observer::TrainObserver;
use crate::pretrain::{pretrain_on, pretraining_count};
use crate::projection::{PROJECTED_EXAMPLES, Projection, project_test};
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
    /// Pretrain on at most this many training images; `"all"` (`None`) for every one.
    #[serde(with = "image_limit")]
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
            // Sized to finish within about 10 minutes on 2 CPU cores on the embedded data.
            epochs: 3,
            batch_size: 128,
            pretrain_images: Some(5000),
            seed: 0,
        }
    }
}

impl CompareConfig {
    /// About two minutes on a laptop: one seed, one pretraining epoch on at most 3,000 images,
    /// shorter probes and training runs.
    pub fn quick(mut self) -> Self {
        self.pretrain_images = Some(self.pretrain_images.unwrap_or(3000).min(3000));
        self.study.seeds = 1;
        self.study.linear_iterations = 100;
        self.study.cluster_n_init = 1;
        self.study.train_steps = self.study.train_steps.min(15);
        self.epochs = 1;
        self
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| TrainError::config(e.to_string()))
    }
}

/// `pretrain_images` in TOML and JSON: a number of images, or `"all"` (TOML has no null, and the
/// default is a limit).
mod image_limit {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(limit: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
        match limit {
            Some(n) => s.serialize_u64(*n as u64),
            None => s.serialize_str("all"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Limit {
            Count(usize),
            Word(String),
        }
        match Limit::deserialize(d)? {
            Limit::Count(n) => Ok(Some(n)),
            Limit::Word(w) if w == "all" => Ok(None),
            Limit::Word(w) => Err(D::Error::custom(format!(
                "pretrain_images = {w:?}: expected a number of images or \"all\""
            ))),
        }
    }
}

/// What a finished comparison produced.
pub struct CompareOutcome {
    pub cells: Vec<Cell>,
    pub summaries: Vec<Summary>,
    pub pretraining: Vec<PretrainingCost>,
    /// Test features in two dimensions, per representation (PCA features excepted).
    pub projections: Vec<Projection>,
    /// Tasks of the config that do not fit the data.
    pub skipped: Vec<SkippedTask>,
}

/// What pretraining one task cost, from its run's metrics log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainingCost {
    /// The pretext task's name.
    pub task: String,
    pub epochs: u64,
    pub seconds: f64,
    /// The held-out kNN accuracy after the last epoch.
    pub knn_accuracy: Option<f64>,
    pub final_loss: Option<f64>,
    /// `(step, loss)` of every optimizer step, for the loss curve.
    #[serde(skip)]
    pub losses: Vec<(u64, f64)>,
    /// `(epoch, accuracy)` of the held-out kNN probe after each epoch (1-based epochs).
    #[serde(skip)]
    pub knn_curve: Vec<(u64, f64)>,
}

impl PretrainingCost {
    /// Reads the epoch lines of `dir/metrics.jsonl`.
    pub fn of(task: &str, dir: &Path) -> Self {
        let mut cost = Self {
            task: task.to_string(),
            epochs: 0,
            seconds: 0.0,
            knn_accuracy: None,
            final_loss: None,
            losses: Vec::new(),
            knn_curve: Vec::new(),
        };
        let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["kind"] == "step"
                && let (Some(step), Some(loss)) = (v["step"].as_u64(), v["loss"].as_f64())
            {
                cost.losses.push((step, loss));
            }
            if v["kind"] == "epoch" {
                cost.epochs += 1;
                cost.seconds += v["seconds"].as_f64().unwrap_or(0.0);
                cost.knn_accuracy = v["knn_accuracy"].as_f64();
                cost.final_loss = v["mean_loss"].as_f64();
                if let Some(acc) = cost.knn_accuracy {
                    cost.knn_curve.push((cost.epochs, acc));
                }
            }
        }
        cost
    }
}

/// Pretrains each task of `config` not given in `pretrained` (into `out/pretrain/<task>`,
/// resuming an interrupted run), builds the representations and runs the study into
/// `out/cells.jsonl`. Pretraining is data-parallel over `devices`; the rest runs on the first.
pub fn compare(
    config: &CompareConfig,
    data: &ImageDataset,
    pretrained: &[PathBuf],
    devices: &[Device],
    out: &Path,
    train_observer: &mut dyn TrainObserver,
    observer: &mut dyn StudyObserver,
) -> Result<CompareOutcome> {
    config.study.validate()?;
    let device = devices
        .first()
        .ok_or_else(|| TrainError::config("the study needs a device"))?;
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
    let mut skipped = Vec::new();
    for &task in &config.tasks {
        let dir = out.join("pretrain").join(task.name());
        let task_config = match fitted_task(task, data) {
            Ok((task_config, adapted)) => {
                if let Some(note) = adapted {
                    observer.note(&note);
                }
                task_config
            }
            Err(reason) => {
                observer.note(&format!("skipping {task}: {reason}"));
                skipped.push(SkippedTask {
                    task: task.name().to_string(),
                    reason,
                });
                continue;
            }
        };
        if !dir.join(WEIGHTS).exists() {
            observer.note(&format!("pretraining {task} for {} epochs", config.epochs));
            let mut c = PretrainConfig {
                task: task_config,
                encoder: Some(default_encoder(task)),
                epochs: config.epochs,
                seed: config.seed,
                ..PretrainConfig::default()
            };
            c.loader.batch_size = config.batch_size;
            c.max_images = config.pretrain_images;
            // Small data sets pretrain on one batch of everything rather than stopping.
            let images = pretraining_count(&c, data)?;
            if (1..c.loader.batch_size).contains(&images) {
                observer.note(&format!(
                    "{task}: {images} images are fewer than a batch of {}; pretraining on \
                     batches of {images}",
                    c.loader.batch_size
                ));
                c.loader.batch_size = images;
            }
            pretrain_on(&c, data, devices, &dir, RunMode::Resume, train_observer)?;
        }
        let (encoder, _) = load_encoder(&dir, device)?;
        pretraining.push(PretrainingCost::of(task.name(), &dir));
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
    observer.note("projecting test features to two dimensions");
    let mut projections = Vec::new();
    for representation in &representations {
        projections.extend(project_test(
            representation,
            data,
            PROJECTED_EXAMPLES,
            device,
        )?);
    }
    Ok(CompareOutcome {
        cells,
        summaries,
        pretraining,
        projections,
        skipped,
    })
}

/// A task the study left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedTask {
    pub task: String,
    pub reason: String,
}

/// The settings `task` pretrains with on `data`: its defaults, adapted where that is sound (a
/// jigsaw grid of 2 x 2 when 3 x 3 tiles would be too small for the encoder), with a note saying
/// so; or why it cannot run on this data.
pub fn fitted_task(
    task: TaskKind,
    data: &ImageDataset,
) -> std::result::Result<(TaskConfig, Option<String>), String> {
    let shape = data.train.shape;
    let fits = |config: &TaskConfig| -> std::result::Result<(), String> {
        let built = AnyTask::build(config, shape).map_err(|e| e.to_string())?;
        let encoder = default_encoder(task).with_input(shape.channels, shape.height, shape.width);
        // Parameters initialise lazily: building the model allocates none of them.
        build_model(
            &built,
            &encoder,
            &HeadsConfig::default(),
            data.num_classes(),
            &Device::flex(),
        )
        .map(drop)
        .map_err(|e| e.to_string())
    };
    let defaults = TaskConfig::default_for(task);
    match fits(&defaults) {
        Ok(()) => Ok((defaults, None)),
        Err(reason) => {
            if let TaskConfig::Jigsaw(j) = &defaults
                && j.grid > 2
            {
                let smaller = TaskConfig::Jigsaw(JigsawConfig {
                    grid: 2,
                    permutations: j.permutations.min(24),
                    ..j.clone()
                });
                if fits(&smaller).is_ok() {
                    return Ok((
                        smaller,
                        Some(format!(
                            "jigsaw: a {0}x{0} grid does not fit {shape} images ({reason}); \
                             using a 2x2 grid of 24 permutations",
                            j.grid
                        )),
                    ));
                }
            }
            Err(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretrain_images_is_a_count_or_all() {
        let read = |line: &str| CompareConfig::from_toml(line).map(|c| c.pretrain_images);
        assert_eq!(read("").unwrap(), Some(5000));
        assert_eq!(read("pretrain_images = 1200").unwrap(), Some(1200));
        assert_eq!(read("pretrain_images = \"all\"").unwrap(), None);
        let err = read("pretrain_images = \"many\"").unwrap_err().to_string();
        assert!(err.contains("\"many\"") && err.contains("\"all\""), "{err}");
        // Written back as it was read, so results.json records the setting.
        let all = CompareConfig {
            pretrain_images: None,
            ..CompareConfig::default()
        };
        let json = serde_json::to_value(&all).unwrap();
        assert_eq!(json["pretrain_images"], "all");
    }
}
