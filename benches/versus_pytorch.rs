//! Training steps, pretext beside PyTorch in one run: the same models, batch sizes, optimizers
//! and thread count, each timed as the median of several steps after warm-up.
//!
//! Steps: `reference-cnn` (conv 1→32, pool, conv 32→64, pool, fc 3136→128, fc 128→4, Adam,
//! batch 128 of 1x28x28), `rotation-cnn` (the batch-norm CNN on all four rotations of 128
//! images), `simclr-cnn` (two views of 128 images through the encoder and projection MLP,
//! NT-Xent) and `mae-vit` (ViT-tiny on the 12 visible 4x4 patches of 49, a one-block decoder). PyTorch's side is `benches/peers/torch_steps.py`, run from a virtual environment
//! under `target/bench-venv` that pip fills with `torch` on first use; without Python or torch
//! the benchmark prints pretext's figures alone.
//!
//! Run: `cargo bench --bench versus_pytorch` (add `--features ndarray,wgpu` to time those
//! backends too). Environment: PRETEXT_BENCH_DEVICES (comma-separated `--device` values;
//! default: every compiled-in CPU backend).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use pretext_cli::device::DeviceSpec;
use pretext_data::tasks::{AnyTask, TaskConfig};
use pretext_data::{DataSource, PretextTask, Samples, TaskKind};
use pretext_models::encoders::{EncoderConfig, EncoderKind};
use pretext_models::tasks::{ClassifierModel, TaskModel};
use pretext_models::{CnnEncoderConfig, Encoder};
use pretext_train::config::{HeadsConfig, OptimizerConfig};
use pretext_train::model::{build_model, seeded};
use pretext_train::trainer::task_loss;

#[path = "common/peer.rs"]
mod peer;
#[path = "common/steps.rs"]
mod steps;
use steps::time_steps;

// The allocator the `pretext` binary uses, so figures match what users see.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 128;
const STEPS: [&str; 4] = ["reference-cnn", "rotation-cnn", "simclr-cnn", "mae-vit"];

/// One pretext step by name on `device`.
fn ours(step: &str, device: &Device, warmup: usize, repeats: usize) -> f64 {
    let device = device.clone().autodiff();
    if step == "reference-cnn" {
        let model = seeded(0, &device, || {
            let encoder = CnnEncoderConfig::new()
                .with_batch_norm(false)
                .init(&device)?;
            Ok(TaskModel::Classifier(ClassifierModel::new(
                Encoder::Cnn(encoder),
                128,
                4,
                &device,
            )))
        })
        .expect("model");
        let x = Tensor::<4>::random([BATCH, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        let targets: Vec<i64> = (0..BATCH as i64).map(|i| i % 4).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(targets, [BATCH]), &device);
        // Adam: AdamW without weight decay.
        let adam = OptimizerConfig {
            weight_decay: 0.0,
            ..OptimizerConfig::default()
        };
        return time_steps(
            model,
            &adam,
            1e-3,
            |m| match m {
                TaskModel::Classifier(c) => c.loss(x.clone(), y.clone()),
                _ => unreachable!("the reference step builds a classifier"),
            },
            warmup,
            repeats,
        );
    }
    let (kind, encoder) = match step {
        "rotation-cnn" => (
            TaskKind::Rotation,
            EncoderConfig::default_for(EncoderKind::Cnn),
        ),
        "simclr-cnn" => (
            TaskKind::Simclr,
            EncoderConfig::default_for(EncoderKind::Cnn),
        ),
        _ => (TaskKind::Mae, EncoderConfig::default_for(EncoderKind::Vit)),
    };
    let data = DataSource::EmbeddedFashionMnist
        .load()
        .expect("embedded data");
    let norm = data.normalization();
    let task = AnyTask::build(&TaskConfig::default_for(kind), data.train.shape).expect("task");
    let model = seeded(0, &device, || {
        build_model(&task, &encoder, &HeadsConfig::default(), 10, &device)
    })
    .expect("model");
    let indices: Vec<usize> = (0..BATCH).collect();
    let batch = task.make_batch(&Samples::of(&data.train, &indices, &norm, 0, 0));
    time_steps(
        model,
        &OptimizerConfig::default(),
        1e-3,
        |m| task_loss(m, batch.clone().into_tensors(&device)).expect("loss"),
        warmup,
        repeats,
    )
}

/// PyTorch's medians by step name, or why there are none.
fn peer(threads: usize) -> Result<(String, BTreeMap<String, f64>), String> {
    let python = peer::peer_python("torch, numpy", &["torch", "numpy"])?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/torch_steps.py");
    let out = Command::new(python)
        .arg(script)
        .arg(threads.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "torch_steps.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let steps = v["steps"]
        .as_object()
        .ok_or("torch_steps.py printed no steps")?
        .iter()
        .filter_map(|(k, ms)| Some((k.clone(), ms.as_f64()?)))
        .collect();
    Ok((v["torch"].as_str().unwrap_or("?").to_string(), steps))
}

fn main() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let devices: Vec<String> = match std::env::var("PRETEXT_BENCH_DEVICES") {
        Ok(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        Err(_) => ["flex", "ndarray"]
            .into_iter()
            .filter(|d| DeviceSpec::from_str(d).is_ok_and(|s| s.backend.compiled()))
            .map(String::from)
            .collect(),
    };
    let peer = peer(threads);
    match &peer {
        Ok((version, _)) => println!(
            "batch {BATCH} of 1x28x28; {threads} threads for both; PyTorch {version} on CPU; median of 10 steps after 3 warm-up"
        ),
        Err(why) => println!("PyTorch side skipped: {why}"),
    }
    println!(
        "{:<16} {:<10} {:>11} {:>11} {:>9} {:>11}",
        "step", "backend", "pretext ms", "PyTorch ms", "ratio", "pretext img/s"
    );
    for spec in &devices {
        let device = match DeviceSpec::from_str(spec).and_then(|s| s.device()) {
            Ok(d) => d,
            Err(e) => {
                println!("{spec}: {e}");
                continue;
            }
        };
        // The deprecated ndarray backend is about 20x slower: fewer repetitions.
        let (warmup, repeats) = if spec.starts_with("ndarray") {
            (1, 3)
        } else {
            (3, 10)
        };
        for step in STEPS {
            let ms = ours(step, &device, warmup, repeats);
            let images = match step {
                "rotation-cnn" => 4 * BATCH,
                "simclr-cnn" => 2 * BATCH,
                _ => BATCH,
            };
            let theirs = peer.as_ref().ok().and_then(|(_, s)| s.get(step).copied());
            println!(
                "{:<16} {:<10} {:>11.1} {:>11} {:>9} {:>11.0}",
                step,
                spec,
                ms,
                theirs.map_or("–".into(), |t| format!("{t:.1}")),
                // Speed relative to PyTorch's: above 1 is faster.
                theirs.map_or("–".into(), |t| format!("{:.2}x", t / ms)),
                images as f64 * 1e3 / ms
            );
        }
    }
}
