//! One training step (forward, backward, AdamW update) per task and encoder on the embedded
//! Fashion-MNIST subset, beside the rate at which the data pipeline makes that task's batches.
//!
//! Run with `cargo bench --bench train_step [-- FILTER]` (FILTER matches "task/encoder"). For
//! each pair it prints the median step time over several repetitions after warm-up, images per
//! second, the achieved GFLOP/s (forward FLOPs x 3 for forward and backward), and the images per
//! second of batch generation on one thread and through the loader's workers, with the ratio of
//! the loader's rate to the step's (it should stay far above 1: data must never be the
//! bottleneck).

use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::tensor::Device;
use pretext_data::tasks::{AnyTask, TaskConfig};
use pretext_data::{BatchLoader, DataSource, LoaderConfig, PretextTask, Samples, TaskKind};
use pretext_models::encoders::{EncoderConfig, EncoderKind};
use pretext_train::config::{HeadsConfig, OptimizerConfig, default_encoder};
use pretext_train::model::{build_model, seeded};
use pretext_train::trainer::task_loss;

// The allocator the `pretext` binary uses, so figures match what users see.
#[global_allocator]
static ALLOCATOR: pretext_cli::allocator::Allocator = pretext_cli::allocator::Allocator {};

#[path = "common/steps.rs"]
mod steps;
use steps::time_steps;

const BATCH: usize = 128;
const WARMUP: usize = 3;
const REPEATS: usize = 10;

fn main() {
    pretext_cli::allocator::keep_freed_memory();
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let data = DataSource::EmbeddedFashionMnist
        .load()
        .expect("embedded data");
    let shape = data.train.shape;
    let norm = data.normalization();
    let train = Arc::new(data.train.clone());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "batch {BATCH} images, flex backend, {threads} threads; median of {REPEATS} after {WARMUP} warm-up steps"
    );
    println!(
        "{:<24} {:>9} {:>9} {:>8} {:>9} {:>11} {:>11} {:>7}",
        "task/encoder",
        "ms/step",
        "img/s",
        "GFLOP/s",
        "MFLOP/img",
        "data 1 thr",
        "data loader",
        "ratio"
    );
    let pairs: Vec<(TaskKind, EncoderConfig)> = vec![
        (
            TaskKind::Rotation,
            EncoderConfig::default_for(EncoderKind::Cnn),
        ),
        (
            TaskKind::Rotation,
            EncoderConfig::default_for(EncoderKind::Mlp),
        ),
        (
            TaskKind::Rotation,
            EncoderConfig::default_for(EncoderKind::Resnet),
        ),
        (
            TaskKind::Rotation,
            EncoderConfig::default_for(EncoderKind::Vit),
        ),
        (TaskKind::Jigsaw, default_encoder(TaskKind::Jigsaw)),
        (TaskKind::Mae, default_encoder(TaskKind::Mae)),
        (
            TaskKind::Simclr,
            EncoderConfig::default_for(EncoderKind::Cnn),
        ),
        (
            TaskKind::Autoencoder,
            EncoderConfig::default_for(EncoderKind::Cnn),
        ),
        (
            TaskKind::Denoise,
            EncoderConfig::default_for(EncoderKind::Cnn),
        ),
    ];
    let device = Device::flex().autodiff();
    for (kind, encoder) in pairs {
        let name = format!("{kind}/{}", encoder.kind());
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let task = AnyTask::build(&TaskConfig::default_for(kind), shape).expect("task");
        let encoder = encoder.with_input(shape.channels, shape.height, shape.width);
        let model = seeded(0, &device, || {
            build_model(&task, &encoder, &HeadsConfig::default(), 10, &device)
        })
        .expect("model");
        let loader = BatchLoader::new(
            task.clone(),
            train.clone(),
            None,
            norm.clone(),
            LoaderConfig {
                batch_size: BATCH,
                ..LoaderConfig::default()
            },
            0,
        )
        .expect("loader");

        // Training step.
        let batch = loader.batch(0, 0);
        let examples = batch.examples();
        let step_ms = time_steps(
            model,
            &OptimizerConfig::default(),
            1e-4,
            |m| task_loss(m, batch.clone().into_tensors(&device)).expect("loss"),
            WARMUP,
            REPEATS,
        );
        let images_per_s = BATCH as f64 * 1e3 / step_ms;
        // The encoder sees every example of the batch (tiles: every tile; views: both).
        let flops_per_example = match kind {
            TaskKind::Jigsaw => {
                let AnyTask::Jigsaw(t) = &task else {
                    unreachable!()
                };
                let ts = t.tile_shape();
                encoder
                    .clone()
                    .with_input(ts.channels, ts.height, ts.width)
                    .flops_per_image()
                    * t.tiles_per_image() as u64
            }
            TaskKind::Simclr => 2 * encoder.flops_per_image(),
            _ => encoder.flops_per_image(),
        };
        let per_image = flops_per_example as f64 * examples as f64 / BATCH as f64;
        let gflops = 3.0 * per_image * images_per_s / 1e9;

        // Data: one thread, then a whole epoch through the loader.
        let indices: Vec<usize> = (0..BATCH).collect();
        let samples = Samples::of(&data.train, &indices, &norm, 0, 0);
        let t = Instant::now();
        let mut made = 0;
        while t.elapsed() < Duration::from_millis(500) {
            std::hint::black_box(task.make_batch(&samples));
            made += BATCH;
        }
        let one_thread = made as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let epoch_images = loader.images_per_epoch();
        let _ = loader.epoch(1).count();
        let through_loader = epoch_images as f64 / t.elapsed().as_secs_f64();

        println!(
            "{:<24} {:>9.1} {:>9.0} {:>8.2} {:>9.2} {:>11.0} {:>11.0} {:>6.0}x",
            name,
            step_ms,
            images_per_s,
            gflops,
            per_image / 1e6,
            one_thread,
            through_loader,
            through_loader / images_per_s
        );
    }
}
