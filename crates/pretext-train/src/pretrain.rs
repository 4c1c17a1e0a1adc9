//! Pretraining a representation: the run directory, the held-out kNN monitor, the loop, and the
//! exported encoder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::Device;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::config::PretrainConfig;
use crate::embed::embed;
use crate::error::{Result, TrainError};
use crate::export::{EncoderDescription, export_encoder};
use crate::model::{build_model, seeded};
use crate::observer::TrainObserver;
use crate::probes::{KnnProbe, knn_accuracy};
use crate::replicas::Replicas;
use crate::run_dir::{PERMUTATIONS, RunDir, RunMode};
use crate::trainer::{LoopSettings, Persistence, train_loop};
use pretext_data::tasks::AnyTask;
use pretext_data::{BatchLoader, ImageDataset, TrainValSplit, validation_split};
use pretext_models::tasks::TaskModel;

/// What a finished pretraining run leaves.
#[derive(Debug, Clone)]
pub struct PretrainOutcome {
    pub run_dir: PathBuf,
    /// Which layer the exported representation is.
    pub representation: String,
    /// The kNN accuracy after the last epoch, when the data has labels.
    pub knn_accuracy: Option<f64>,
    pub encoder_flops_per_image: u64,
    pub encoder_params: usize,
}

/// Keeps the validation split's salt apart from the loader's seeds.
const KNN_SALT: u64 = 0x6b6e_6e5f_7661_6c69;
/// Salt of the `max_images` subset.
const SUBSET_SALT: u64 = 0x7375_6273_6574_5f69;

/// The labelled training images a run holds out of pretraining for its kNN monitor (and for
/// choosing settings on them afterwards), with the rest; `None` when the run holds none out
/// (unlabelled data, or the monitor disabled).
pub fn held_out_split(
    config: &PretrainConfig,
    data: &ImageDataset,
) -> Result<Option<TrainValSplit>> {
    let classes = data.num_classes();
    let labels = data.train.labels.as_deref();
    if labels.is_none() || !config.knn.enabled || classes < 2 {
        return Ok(None);
    }
    Ok(Some(validation_split(
        data.train.len(),
        labels,
        classes,
        config.knn.validation_fraction,
        config.seed ^ KNN_SALT,
    )?))
}

/// How many images a run of `config` pretrains on: the training images less those held out
/// ([`held_out_split`]), at most `max_images`.
pub fn pretraining_count(config: &PretrainConfig, data: &ImageDataset) -> Result<usize> {
    let pool = held_out_split(config, data)?.map_or(data.train.len(), |s| s.train.len());
    Ok(config.max_images.map_or(pool, |m| m.min(pool)))
}

/// The run in `dir`'s held-out images as a data set: its training split is the images the run
/// pretrained on and its test split the ones it held out ([`held_out_split`]), so settings can
/// be chosen on them without touching the test split.
pub fn held_out_dataset(dir: &Path, data: &ImageDataset) -> Result<ImageDataset> {
    let path = dir.join(crate::run_dir::CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let config = PretrainConfig::from_toml(&text)
        .map_err(|e| TrainError::config(format!("{}: {e}", path.display())))?;
    let split = held_out_split(&config, data)?.ok_or_else(|| {
        TrainError::config(format!(
            "{} held no images out of pretraining (unlabelled data or knn.enabled = false), so \
             it has no validation split",
            dir.display()
        ))
    })?;
    Ok(ImageDataset {
        name: format!("{} (the run's held-out validation images)", data.name),
        train: data.train.select(&split.train),
        test: Some(data.train.select(&split.val)),
        classes: data.classes.clone(),
        carved_test: None,
    })
}

/// Pretrains an encoder on `data`'s training split as `config` says, in the run directory `out`.
pub fn pretrain(
    config: &PretrainConfig,
    data: &ImageDataset,
    device: &Device,
    out: &Path,
    mode: RunMode,
    observer: &mut dyn TrainObserver,
) -> Result<PretrainOutcome> {
    pretrain_on(
        config,
        data,
        std::slice::from_ref(device),
        out,
        mode,
        observer,
    )
}

/// [`pretrain`] data-parallel on `devices` (see [`crate::replicas`]): each takes an equal
/// shard of every batch of the config's size. The first device is the main one: the model,
/// the optimizer, the checkpoints and the kNN monitor live there.
pub fn pretrain_on(
    config: &PretrainConfig,
    data: &ImageDataset,
    devices: &[Device],
    out: &Path,
    mode: RunMode,
    observer: &mut dyn TrainObserver,
) -> Result<PretrainOutcome> {
    config.validate()?;
    let device = devices
        .first()
        .ok_or_else(|| TrainError::config("pretraining needs a device"))?;
    let shape = data.train.shape;
    let task = AnyTask::build(&config.task, shape)?;
    let encoder_config = config.resolved_encoder(shape);
    encoder_config.validate()?;
    let resolved = PretrainConfig {
        encoder: Some(encoder_config.clone()),
        ..config.clone()
    };
    let toml = resolved.to_toml();
    let train_device = device.clone().autodiff();
    // Build the model and the loader before touching the run directory, so settings that
    // cannot work leave nothing behind.
    let classes = data.num_classes();
    let model = seeded(config.seed, &train_device, || {
        build_model(
            &task,
            &encoder_config,
            &config.heads,
            classes,
            &train_device,
        )
    })?;

    let norm = data.normalization();
    let n = data.train.len();
    let labels = data.train.labels.as_deref();
    let monitor = held_out_split(config, data)?.map(|split| {
        let stride = split.train.len().div_ceil(config.knn.bank).max(1);
        let bank: Vec<usize> = split.train.iter().copied().step_by(stride).collect();
        (split.train, bank, split.val)
    });
    let mut train_indices = monitor
        .as_ref()
        .map(|(train, _, _)| train.clone())
        .unwrap_or_else(|| (0..n).collect());
    if let Some(max) = config.max_images.filter(|&m| m < train_indices.len()) {
        train_indices.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed ^ SUBSET_SALT));
        train_indices.truncate(max);
        train_indices.sort_unstable();
    }
    let loader = BatchLoader::new(
        task.clone(),
        Arc::new(data.train.clone()),
        Some(train_indices),
        norm.clone(),
        config.loader.clone(),
        config.seed,
    )?;

    let resolve = |saved: &str| PretrainConfig::from_toml(saved).ok().map(|c| c.to_toml());
    let run = RunDir::open_resolving(out, &toml, mode, &resolve)?;
    // Room for the kept checkpoints, one being written, and the exported encoder.
    run.ensure_checkpoint_space(model.num_params(), config.checkpoint.keep + 2)?;
    if let AnyTask::Jigsaw(t) = &task {
        let json = serde_json::to_vec_pretty(t.permutations()).unwrap_or_default();
        pretext_data::npy::write_atomic(&run.file(PERMUTATIONS), &json)?;
    }

    let probe = KnnProbe {
        k: config.knn.k,
        temperature: config.knn.temperature,
    };
    let eval_batch = config.loader.batch_size.max(256);
    let mut last_knn = None;
    let mut hook = |model: &TaskModel, _epoch: u64| -> Result<Option<f64>> {
        let Some((_, bank, val)) = &monitor else {
            return Ok(None);
        };
        let Some(encoder) = model.valid().encoder() else {
            return Ok(None);
        };
        let (bank_x, dim) = embed(&encoder, &data.train, bank, &norm, device, eval_batch);
        let (val_x, _) = embed(&encoder, &data.train, val, &norm, device, eval_batch);
        let all = labels.unwrap_or_default();
        let bank_y: Vec<u32> = bank.iter().map(|&i| all[i]).collect();
        let val_y: Vec<u32> = val.iter().map(|&i| all[i]).collect();
        let acc = knn_accuracy(
            &probe, &bank_x, &bank_y, &val_x, &val_y, dim, classes, device,
        );
        last_knn = Some(acc);
        Ok(Some(acc))
    };

    let resume = mode == RunMode::Resume;
    let persistence = Persistence {
        checkpoints: run.checkpoints(config.checkpoint.keep),
        metrics: run.metrics(),
        config_digest: crate::run_dir::settings_digest(&toml),
        accepted_digests: run.accepted_digests(&toml),
        extension: run.extension(),
        resume,
    };
    let settings = LoopSettings {
        replicas: Replicas::data_parallel(devices),
        ..LoopSettings::from(config)
    };
    let model = train_loop(
        model,
        &loader,
        &settings,
        &train_device,
        Some(persistence),
        &mut hook,
        observer,
    )?;

    let encoder = model
        .valid()
        .encoder()
        .ok_or_else(|| TrainError::config("image pretraining built a text model"))?;
    let description = EncoderDescription {
        encoder: encoder_config.clone(),
        representation: encoder_config.representation(),
        input: shape,
        normalization: norm,
        task: config.task.kind(),
        epochs: config.epochs,
        data: data.name.clone(),
    };
    export_encoder(&encoder, &description, run.root())?;
    Ok(PretrainOutcome {
        run_dir: run.root().to_path_buf(),
        representation: encoder_config.representation(),
        knn_accuracy: last_knn,
        encoder_flops_per_image: encoder_config.flops_per_image(),
        encoder_params: encoder.num_params(),
    })
}
