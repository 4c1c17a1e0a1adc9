//! The reference CNN encoder trained with labels, through the same loop as pretraining: a check
//! that the encoder is large enough (the 2-conv nets reach 0.92-0.93 test accuracy on
//! Fashion-MNIST).
//!
//! `cargo run --release --example supervised_cnn -- [DATA] [EPOCHS]` (defaults: the Debian
//! package's `/usr/share/datasets/fashion-mnist`, 10 epochs).

use std::sync::Arc;

use burn::module::Module;
use burn::tensor::Device;
use pretext_data::tasks::{AnyTask, SupervisedTask};
use pretext_data::{BatchLoader, DataSource, LoaderConfig};
use pretext_models::encoders::{EncoderConfig, EncoderKind};
use pretext_models::tasks::TaskModel;
use pretext_train::config::{HeadsConfig, OptimizerConfig};
use pretext_train::model::{build_model, seeded};
use pretext_train::schedule::ScheduleConfig;
use pretext_train::study::accuracy;
use pretext_train::trainer::{LoopSettings, train_loop};
use pretext_train::{EpochReport, TrainObserver};

// The allocator the `pretext` binary uses, so figures match what users see.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Print;

impl TrainObserver for Print {
    fn epoch_finished(&mut self, r: &EpochReport) {
        println!(
            "epoch {}: loss {:.4}, {:.1} s, {:.0} img/s",
            r.epoch + 1,
            r.mean_loss,
            r.seconds,
            r.images_per_second
        );
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let spec = args
        .next()
        .unwrap_or_else(|| "/usr/share/datasets/fashion-mnist".into());
    let epochs: u64 = args.next().map_or(Ok(10), |e| e.parse())?;
    let data = DataSource::parse(&spec)?.load()?;
    let test = data
        .test
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{spec} has no test split"))?;
    let shape = data.train.shape;
    let norm = data.normalization();
    let device = Device::flex();
    let train_device = device.clone().autodiff();
    let task = AnyTask::Supervised(SupervisedTask::new(shape));
    let encoder =
        EncoderConfig::for_images(EncoderKind::Cnn, shape.channels, shape.height, shape.width);
    let model = seeded(0, &train_device, || {
        build_model(
            &task,
            &encoder,
            &HeadsConfig::default(),
            data.num_classes(),
            &train_device,
        )
    })?;
    let loader = BatchLoader::new(
        task,
        Arc::new(data.train.clone()),
        None,
        norm.clone(),
        LoaderConfig {
            batch_size: 128,
            ..LoaderConfig::default()
        },
        0,
    )?;
    let settings = LoopSettings {
        epochs,
        max_steps: None,
        optimizer: OptimizerConfig {
            lr: 2e-3,
            weight_decay: 1e-4,
            ..OptimizerConfig::default()
        },
        schedule: ScheduleConfig::default(),
        accumulation: 1,
        grad_clip: None,
        checkpoint_every_steps: None,
        encoder_lr_scale: 1.0,
        momentum: pretext_train::schedule::DEFAULT_MOMENTUM,
        replicas: None,
    };
    let model = train_loop(
        model,
        &loader,
        &settings,
        &train_device,
        None,
        &mut |_, _| Ok(None),
        &mut Print,
    )?;
    let TaskModel::Classifier(classifier) = model.valid() else {
        anyhow::bail!("the supervised task builds a classifier");
    };
    println!(
        "test accuracy {:.4} ({} parameters, {} epochs)",
        accuracy(&classifier, test, &norm, &device),
        classifier.num_params(),
        epochs
    );
    Ok(())
}
