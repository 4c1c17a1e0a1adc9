//! The task models learn, checkpoints hold everything, and an interrupted run resumed from its
//! checkpoint ends exactly where an uninterrupted one does.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use pretext_data::tasks::{AnyTask, JigsawConfig, MaskingConfig, TaskConfig, ViewsConfig};
use pretext_data::{BatchLoader, ImageDataset, ImageSet, ImageShape, LoaderConfig, TaskKind};
use pretext_models::encoders::{CnnEncoderConfig, EncoderConfig, VitEncoderConfig};
use pretext_train::config::{HeadsConfig, OptimizerConfig};
use pretext_train::model::{build_model, seeded};
use pretext_train::optimizer::build_optimizer;
use pretext_train::trainer::task_loss;
use pretext_train::{PretrainConfig, RunMode, StepReport, TrainObserver, pretrain, pretrain_on};

/// `n` 16x16 images of three classes of simple shapes with noise, so tasks have structure.
fn dataset(n: usize) -> ImageDataset {
    let shape = ImageShape::new(1, 16, 16);
    let mut pixels = Vec::with_capacity(n * shape.len());
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 3) as u32;
        for y in 0..16 {
            for x in 0..16 {
                let on = match class {
                    0 => (4..12).contains(&y) && (6..10).contains(&x),
                    1 => y > x,
                    _ => (x + y) % 4 < 2 && y < 10,
                };
                let noise = (i * 7 + y * 13 + x * 31) % 40;
                pixels.push(if on { 200 + noise as u8 } else { noise as u8 });
            }
        }
        labels.push(class);
    }
    ImageDataset {
        name: "shapes".into(),
        train: ImageSet::new(shape, pixels, Some(labels)).unwrap(),
        test: None,
        classes: vec!["bar".into(), "triangle".into(), "checks".into()],
        carved_test: None,
    }
}

fn small_encoder(kind: TaskKind) -> EncoderConfig {
    match kind {
        TaskKind::Mae => EncoderConfig::Vit(
            VitEncoderConfig::new()
                .with_dim(32)
                .with_depth(1)
                .with_heads(2),
        ),
        _ => EncoderConfig::Cnn(
            CnnEncoderConfig::new()
                .with_channels(vec![8, 16])
                .with_embedding_dim(32)
                .with_global_pool(kind == TaskKind::Jigsaw),
        ),
    }
}

fn small_task(kind: TaskKind) -> TaskConfig {
    match kind {
        TaskKind::Jigsaw => TaskConfig::Jigsaw(JigsawConfig {
            grid: 2,
            permutations: 12,
            crop: None,
            jitter: 1,
        }),
        TaskKind::Mae => TaskConfig::Mae(MaskingConfig::default()),
        TaskKind::Simclr => TaskConfig::Simclr(ViewsConfig::default()),
        k => TaskConfig::default_for(k),
    }
}

#[test]
fn every_task_model_overfits_a_tiny_batch() {
    let data = dataset(16);
    let device = Device::flex().autodiff();
    let norm = data.normalization();
    for kind in TaskKind::ALL {
        let task = AnyTask::build(&small_task(kind), data.train.shape).unwrap();
        let encoder = small_encoder(kind).with_input(1, 16, 16);
        // Heads sized for 16 images: a 1024-wide embedding cannot decorrelate over so few.
        let heads = HeadsConfig {
            projector: (kind.uses_views() && kind != TaskKind::Simclr).then(|| vec![32, 16]),
            predictor_hidden: 32,
            ..HeadsConfig::default()
        };
        let mut model = seeded(1, &device, || {
            build_model(&task, &encoder, &heads, 3, &device)
        })
        .unwrap();
        let loader = BatchLoader::new(
            task,
            Arc::new(data.train.clone()),
            None,
            norm.clone(),
            LoaderConfig {
                batch_size: 16,
                ..LoaderConfig::default()
            },
            5,
        )
        .unwrap();
        // The same batch (same augmentations, masks and labels) every step.
        let batch = loader.batch(0, 0);
        let mut optimizer = build_optimizer(
            &OptimizerConfig {
                weight_decay: 0.0,
                ..OptimizerConfig::default()
            },
            None,
        );
        let value = |l: &burn::tensor::Tensor<1>| {
            l.clone().into_data().try_into_vec_as::<f64>().unwrap()[0]
        };
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..60 {
            let loss = task_loss(&model, batch.clone().into_tensors(&device)).unwrap();
            last = value(&loss);
            first.get_or_insert(last);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(3e-3, model, grads);
        }
        let first = first.unwrap();
        assert!(
            last < 0.5 * first,
            "{kind}: loss went from {first:.4} to {last:.4}"
        );
    }
}

fn config(kind: TaskKind, epochs: u64) -> PretrainConfig {
    let mut c = PretrainConfig {
        task: small_task(kind),
        encoder: Some(small_encoder(kind)),
        epochs,
        seed: 3,
        ..PretrainConfig::default()
    };
    c.loader.batch_size = 8;
    c.loader.workers = 2;
    c.checkpoint.every_steps = Some(2);
    c.checkpoint.keep = 2;
    c.knn.bank = 30;
    c
}

/// Every parameter (batch-norm statistics included) of the encoder exported into `run`.
fn parameters(run: &std::path::Path, device: &Device) -> Vec<(String, Vec<f32>)> {
    struct Collect(Vec<(String, Vec<f32>)>, Vec<String>);
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let values = p.val().into_data().try_into_vec_as::<f32>().unwrap();
            self.0.push((self.1.join("."), values));
        }
    }
    let (encoder, _) = pretext_train::export::load_encoder(run, device).unwrap();
    let mut c = Collect(Vec::new(), Vec::new());
    encoder.visit(&mut c);
    c.0
}

/// Pretrains on flex, reporting nothing.
fn quiet(
    c: &PretrainConfig,
    data: &ImageDataset,
    out: &std::path::Path,
    mode: RunMode,
) -> pretext_train::Result<pretext_train::PretrainOutcome> {
    pretrain(
        c,
        data,
        &Device::flex(),
        out,
        mode,
        &mut pretext_train::Silent,
    )
}

/// Data-parallel replicas train what one device trains on the whole batch: the shards'
/// losses average to the batch's, and SimCLR's NT-Xent runs over the gathered projections, so
/// every negative of the batch counts. (Batch norm is left out: replicas normalise by their
/// own shard's statistics.)
#[test]
fn replicas_train_the_parameters_one_device_trains_on_the_whole_batch() {
    let data = dataset(48);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for kind in [TaskKind::Rotation, TaskKind::Simclr, TaskKind::Mae] {
        let mut c = config(kind, 1);
        if kind != TaskKind::Mae {
            c.encoder = Some(EncoderConfig::Cnn(
                CnnEncoderConfig::new()
                    .with_channels(vec![8, 16])
                    .with_embedding_dim(32)
                    .with_batch_norm(false),
            ));
        }
        let run = |devices: &[Device], name: &str| {
            let out = dir.path().join(format!("{kind}-{name}"));
            let mut silent = pretext_train::Silent;
            pretrain_on(&c, &data, devices, &out, RunMode::New, &mut silent).unwrap();
            parameters(&out, &device)
        };
        let one = run(std::slice::from_ref(&device), "one");
        // Batches of 8 in shards of 3, 3 and 2.
        let three = run(&[device.clone(), device.clone(), device.clone()], "three");
        assert_eq!(one.len(), three.len());
        for ((name, x), (_, y)) in one.iter().zip(&three) {
            let worst = x
                .iter()
                .zip(y)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{kind}: {name} differs by {worst}");
        }
    }
}

/// Panics at the given optimizer step, as a crash would stop the run there.
struct CrashAt(u64);

impl TrainObserver for CrashAt {
    fn step(&mut self, r: &StepReport) {
        if r.step == self.0 {
            panic!("simulated crash at step {}", r.step);
        }
    }
}

#[test]
fn a_resumed_run_ends_with_the_parameters_of_an_uninterrupted_one() {
    let data = dataset(48);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    // Rotation with gradient accumulation and clipping; SimCLR with SGD and Nesterov momentum.
    let mut rotation = config(TaskKind::Rotation, 2);
    rotation.accumulation = 2;
    rotation.grad_clip = Some(1.0);
    let mut simclr = config(TaskKind::Simclr, 2);
    simclr.optimizer.kind = pretext_train::config::OptimizerKind::Sgd;
    simclr.optimizer.lr = 0.05;
    simclr.optimizer.nesterov = true;
    // BYOL: the momentum target and its schedule must be restored exactly too, or the online
    // encoder, which learns against it, ends elsewhere.
    let mut byol = config(TaskKind::Byol, 2);
    byol.heads.projector = Some(vec![24, 12]);
    byol.heads.predictor_hidden = 16;
    byol.heads.momentum = [0.9, 1.0];
    // 42 training images (48 less the kNN validation split) make 5 batches of 8 per epoch. With
    // accumulation over 2 batches that is 3 steps per epoch: crash at step 5, after the
    // checkpoint at step 4 (mid-epoch 2). Without, 5 steps: crash at step 7, after the one at 6.
    for (c, crash_at) in [(rotation, 5), (simclr, 7), (byol, 7)] {
        let kind = c.task.kind();
        let whole = dir.path().join(format!("{kind}-whole"));
        let outcome = quiet(&c, &data, &whole, RunMode::New).unwrap();
        assert!(outcome.knn_accuracy.is_some());

        let broken = dir.path().join(format!("{kind}-broken"));
        let crashed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            pretrain(
                &c,
                &data,
                &device,
                &broken,
                RunMode::New,
                &mut CrashAt(crash_at),
            )
        }));
        assert!(crashed.is_err());
        assert!(!broken.join("encoder.safetensors").exists());
        quiet(&c, &data, &broken, RunMode::Resume).unwrap();

        let a = parameters(&whole, &device);
        let b = parameters(&broken, &device);
        assert_eq!(a.len(), 12);
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert!(x == y, "{kind}: {name} differs after resuming");
        }
        // The metrics log holds each step once, as the uninterrupted run's does.
        let steps = |p: &std::path::Path| {
            std::fs::read_to_string(p.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .filter(|l| l.contains("\"kind\":\"step\""))
                .count()
        };
        assert_eq!(steps(&whole), steps(&broken));
    }
}

#[test]
fn a_checkpoint_restores_the_exported_encoder_exactly() {
    let data = dataset(48);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let c = config(TaskKind::Autoencoder, 1);
    quiet(&c, &data, &run, RunMode::New).unwrap();

    let (encoder, description) = pretext_train::export::load_encoder(&run, &device).unwrap();
    assert_eq!(description.task, TaskKind::Autoencoder);
    // The newest checkpoint holds the same model as the export.
    let task = AnyTask::build(&c.task, data.train.shape).unwrap();
    let restored = pretext_train::checkpoint::CheckpointDir::new(run.join("checkpoints"), 2)
        .latest()
        .unwrap()
        .unwrap();
    let fresh = seeded(99, &device, || {
        build_model(&task, &description.encoder, &c.heads, 3, &device)
    })
    .unwrap();
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(
        restored.checkpoint.model,
    ))
    .unwrap();
    let loaded = fresh
        .try_load_record(record)
        .unwrap()
        .valid()
        .encoder()
        .unwrap();
    let norm = data.normalization();
    let x = data.train.images_tensor(&[0, 1, 2, 3], &norm, &device);
    let a = encoder
        .forward(x.clone())
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    let b = loaded
        .forward(x)
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    assert_eq!(a, b);

    // Starting again in the same directory is refused without --resume or --force.
    let err = quiet(&c, &data, &run, RunMode::New).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn mismatched_tasks_and_encoders_are_clear_errors() {
    let data = dataset(24);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            TaskKind::Mae,
            EncoderConfig::Cnn(CnnEncoderConfig::new()),
            "mae needs the vit encoder",
        ),
        (
            TaskKind::Jigsaw,
            EncoderConfig::Cnn(CnnEncoderConfig::new()),
            "accepts any size",
        ),
        (
            TaskKind::Mae,
            EncoderConfig::Vit(VitEncoderConfig::new().with_patch_size(8)),
            "make task.patch_size and encoder.patch_size equal",
        ),
    ];
    for (kind, encoder, needle) in cases {
        let mut c = config(kind, 1);
        c.encoder = Some(encoder);
        let out = dir.path().join(format!("{kind}"));
        let err = quiet(&c, &data, &out, RunMode::New)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{kind}: {err}");
        // Nothing is left behind for a run that could not start.
        assert!(!out.exists(), "{kind}: {} was created", out.display());
    }
    let mut c = config(TaskKind::Rotation, 1);
    c.loader.batch_size = 64;
    let err = quiet(&c, &data, &dir.path().join("big"), RunMode::New)
        .unwrap_err()
        .to_string();
    assert!(err.contains("fewer than one batch of 64"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_a_clear_error_and_keeps_its_checkpoints() {
    let data = dataset(48);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut c = config(TaskKind::Autoencoder, 3);
    c.optimizer.lr = 1e30;
    let err = quiet(&c, &data, &run, RunMode::New)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the loss became") && err.contains("training stopped"),
        "{err}"
    );
    assert!(!run.join("encoder.safetensors").exists());
    let checkpoints = pretext_train::checkpoint::CheckpointDir::new(run.join("checkpoints"), 2);
    for path in checkpoints.list().unwrap() {
        pretext_train::checkpoint::Checkpoint::read(&path).unwrap();
    }
    assert!(!run.join(".lock").exists());
}

#[test]
fn max_images_pretrains_on_a_subset() {
    let data = dataset(48);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut c = config(TaskKind::Autoencoder, 2);
    c.max_images = Some(16);
    quiet(&c, &data, &run, RunMode::New).unwrap();
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    // 16 images in batches of 8: 2 steps per epoch.
    let steps = metrics
        .lines()
        .filter(|l| l.contains("\"kind\":\"step\""))
        .count();
    assert_eq!(steps, 4);
    c.max_images = Some(0);
    let err = quiet(&c, &data, &dir.path().join("zero"), RunMode::New).unwrap_err();
    assert!(err.to_string().contains("max_images"), "{err}");
}

#[test]
fn max_steps_stops_mid_epoch_after_exactly_that_many_steps() {
    use pretext_train::schedule::ScheduleConfig;
    use pretext_train::trainer::{LoopSettings, train_loop};

    struct Steps(Vec<(u64, u64, f64)>);
    impl TrainObserver for Steps {
        fn step(&mut self, r: &StepReport) {
            self.0.push((r.epoch, r.step, r.lr));
        }
    }
    let data = dataset(48);
    let device = Device::flex().autodiff();
    let task = AnyTask::build(&small_task(TaskKind::Rotation), data.train.shape).unwrap();
    let model = seeded(0, &device, || {
        build_model(
            &task,
            &small_encoder(TaskKind::Rotation).with_input(1, 16, 16),
            &HeadsConfig::default(),
            3,
            &device,
        )
    })
    .unwrap();
    // 48 images in batches of 8: 6 steps an epoch; 9 steps end halfway through the second.
    let loader = BatchLoader::new(
        task,
        Arc::new(data.train.clone()),
        None,
        data.normalization(),
        LoaderConfig {
            batch_size: 8,
            ..LoaderConfig::default()
        },
        0,
    )
    .unwrap();
    let settings = LoopSettings {
        epochs: 5,
        max_steps: Some(9),
        optimizer: OptimizerConfig::default(),
        schedule: ScheduleConfig {
            warmup_epochs: 0.0,
            final_fraction: 0.0,
        },
        accumulation: 1,
        grad_clip: None,
        checkpoint_every_steps: None,
        encoder_lr_scale: 1.0,
        momentum: pretext_train::schedule::DEFAULT_MOMENTUM,
        replicas: None,
    };
    let mut steps = Steps(Vec::new());
    train_loop(
        model,
        &loader,
        &settings,
        &device,
        None,
        &mut |_, _| Ok(None),
        &mut steps,
    )
    .unwrap();
    let epochs: Vec<u64> = steps.0.iter().map(|s| s.0).collect();
    assert_eq!(epochs, [0, 0, 0, 0, 0, 0, 1, 1, 1]);
    // The cosine schedule spans the nine steps: it decays all the way by the last one.
    let last_lr = steps.0.last().unwrap().2;
    assert!(last_lr < 0.05 * OptimizerConfig::default().lr, "{last_lr}");
}

/// Collects the notes a run gives.
struct Notes(Vec<String>);

impl TrainObserver for Notes {
    fn note(&mut self, message: &str) {
        self.0.push(message.to_string());
    }
}

#[test]
fn the_embedding_spread_is_logged_and_a_collapsing_run_says_so() {
    let data = dataset(48);
    let dir = tempfile::tempdir().unwrap();
    let run = |c: &PretrainConfig, name: &str| {
        let out = dir.path().join(name);
        let mut notes = Notes(Vec::new());
        pretrain(c, &data, &Device::flex(), &out, RunMode::New, &mut notes).unwrap();
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        (notes.0, metrics)
    };
    let mut healthy = config(TaskKind::Vicreg, 2);
    healthy.heads.projector = Some(vec![16, 8]);
    let (notes, metrics) = run(&healthy, "healthy");
    assert!(notes.iter().all(|n| !n.contains("collapsing")), "{notes:?}");
    let steps: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        steps
            .iter()
            .all(|v| v["embedding_std"].as_f64().is_some_and(|s| s > 0.0)),
        "every step and epoch logs the spread"
    );
    assert!(metrics.contains("\"embedding_collapsed\":false"));

    // Invariance alone is minimised by mapping every image to one point.
    let mut collapsing = healthy.clone();
    collapsing.epochs = 30;
    collapsing.optimizer.lr = 1e-2;
    collapsing.schedule.final_fraction = 1.0;
    collapsing.heads.vicreg.variance = 0.0;
    collapsing.heads.vicreg.covariance = 0.0;
    let (notes, metrics) = run(&collapsing, "collapsing");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("the embeddings are collapsing")),
        "{notes:?}"
    );
    assert!(metrics.contains("\"embedding_collapsed\":true"));
}
