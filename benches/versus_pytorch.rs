//! Training steps, pretext beside PyTorch in one run: the same models, batch sizes, optimizers
//! and thread count, each timed as the median of several steps after warm-up, in rounds that
//! alternate pretext's side and PyTorch's, so that a slow spell of the machine falls on both;
//! each step's ratio is the median of its rounds' ratios, with their range.
//!
//! Steps (batch 128 of 1x28x28 unless said): `reference-cnn` (conv 1→32, pool, conv 32→64,
//! pool, fc 3136→128, fc 128→4, Adam), `rotation-cnn` (the batch-norm CNN on all four rotations
//! of 128 images), `simclr-cnn` (two views of 128 images through the encoder and projection
//! MLP, NT-Xent), `byol-cnn`, `moco-v3-cnn`, `vicreg-cnn` and `barlow-twins-cnn` (the same two
//! views through each method's projector, predictor and momentum target, with the target's
//! moving average after every step), `resnet` (the ResNet-8 classifier on 3x32x32 images, Adam),
//! `mae-vit` (ViT-tiny on the 12 visible 4x4 patches of 49, a one-block decoder) and `text-mlm`
//! (the text Transformer's masked-token step: 32 sequences of 64 tokens, vocabulary 4,000, 15%
//! of positions predicted). Also each side's fp32 matrix product of 2048x2048, whose faster
//! figure is the machine's peak the reference step is measured against.
//!
//! PyTorch's side is `benches/peers/torch_steps.py`, run from a virtual environment under
//! `target/bench-venv` that pip fills with `torch` on first use; without Python or torch the
//! benchmark prints pretext's figures alone.
//!
//! Run: `cargo bench --bench versus_pytorch` (add `--features ndarray,wgpu` to time those
//! backends too). Environment: PRETEXT_BENCH_DEVICES (comma-separated `--device` values;
//! default: every compiled-in CPU backend), PRETEXT_BENCH_ROUNDS (default 3),
//! PRETEXT_BENCH_STEPS (comma-separated step names; default all), PRETEXT_BENCH_REPEATS (timed
//! steps per round; default 10, 3 on ndarray: raise it so a profile is mostly the steps).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::time::Instant;

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use pretext_cli::device::DeviceSpec;
use pretext_data::tasks::{AnyTask, TaskConfig};
use pretext_data::{DataSource, PretextTask, Samples, TaskKind};
use pretext_models::CnnEncoderConfig;
use pretext_models::encoders::{EncoderConfig, EncoderKind};
use pretext_models::tasks::{ClassifierModel, TaskModel};
use pretext_models::text::{MlmInput, MlmModel, TextEncoderConfig};
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
static ALLOCATOR: pretext_cli::allocator::Allocator = pretext_cli::allocator::Allocator {};

const BATCH: usize = 128;
const STEPS: [&str; 10] = [
    "reference-cnn",
    "rotation-cnn",
    "simclr-cnn",
    "byol-cnn",
    "moco-v3-cnn",
    "vicreg-cnn",
    "barlow-twins-cnn",
    "resnet",
    "mae-vit",
    "text-mlm",
];
/// The text step's batch: sequences and their length.
const TEXT_BATCH: [usize; 2] = [32, 64];
const VOCAB: usize = 4000;
const GEMM: usize = 2048;

/// Images (or sequences) one step of `step` trains on.
fn images(step: &str) -> usize {
    match step {
        "rotation-cnn" => 4 * BATCH,
        "simclr-cnn" | "byol-cnn" | "moco-v3-cnn" | "vicreg-cnn" | "barlow-twins-cnn" => 2 * BATCH,
        "text-mlm" => TEXT_BATCH[0],
        _ => BATCH,
    }
}

/// Adam: AdamW without weight decay.
fn adam() -> OptimizerConfig {
    OptimizerConfig {
        weight_decay: 0.0,
        ..OptimizerConfig::default()
    }
}

/// A classifier of random `[BATCH, shape]` images into `classes` on `encoder`, Adam.
fn classifier_step(
    encoder: EncoderConfig,
    shape: [usize; 3],
    classes: usize,
    device: &Device,
    warmup: usize,
    repeats: usize,
) -> f64 {
    let embedding = encoder.embedding_dim();
    let model = seeded(0, device, || {
        Ok(TaskModel::Classifier(ClassifierModel::new(
            encoder.init(device)?,
            embedding,
            classes,
            device,
        )))
    })
    .expect("model");
    let [c, h, w] = shape;
    let x = Tensor::<4>::random([BATCH, c, h, w], Distribution::Normal(0.0, 1.0), device);
    let targets: Vec<i64> = (0..BATCH as i64).map(|i| i % classes as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(targets, [BATCH]), device);
    time_steps(
        model,
        &adam(),
        1e-3,
        |m| match m {
            TaskModel::Classifier(c) => c.loss(x.clone(), y.clone()),
            _ => unreachable!("a classifier step builds a classifier"),
        },
        warmup,
        repeats,
    )
}

/// The text Transformer's masked-token step: random tokens, every seventh position predicted
/// (about 15%), AdamW at the text configs' settings.
fn mlm_step(device: &Device, warmup: usize, repeats: usize) -> f64 {
    let [b, len] = TEXT_BATCH;
    let model = seeded(0, device, || {
        let encoder = TextEncoderConfig::new()
            .with_vocab_size(VOCAB)
            .init(device)?;
        Ok(TaskModel::Mlm(MlmModel::new(encoder, device)))
    })
    .expect("model");
    let tokens =
        Tensor::<2, Int>::random([b, len], Distribution::Uniform(5.0, VOCAB as f64), device);
    let padding = Tensor::<2, Int>::zeros([b, len], device).equal_elem(1);
    let positions: Vec<i64> = (0..(b * len) as i64).step_by(7).collect();
    let n = positions.len();
    let positions = Tensor::<1, Int>::from_data(TensorData::new(positions, [n]), device);
    let targets = Tensor::<1, Int>::random([n], Distribution::Uniform(5.0, VOCAB as f64), device);
    let adamw = OptimizerConfig {
        lr: 2e-3,
        weight_decay: 0.01,
        ..OptimizerConfig::default()
    };
    time_steps(
        model,
        &adamw,
        2e-3,
        |m| match m {
            TaskModel::Mlm(mlm) => mlm.loss(MlmInput {
                tokens: tokens.clone(),
                padding: padding.clone(),
                positions: positions.clone(),
                targets: targets.clone(),
            }),
            _ => unreachable!("the text step builds a masked-token model"),
        },
        warmup,
        repeats,
    )
}

/// One pretext step by name on `device`.
fn ours(step: &str, device: &Device, warmup: usize, repeats: usize) -> f64 {
    let device = device.clone().autodiff();
    match step {
        "reference-cnn" => {
            let encoder = CnnEncoderConfig::new().with_batch_norm(false);
            return classifier_step(
                EncoderConfig::Cnn(encoder),
                [1, 28, 28],
                4,
                &device,
                warmup,
                repeats,
            );
        }
        "resnet" => {
            let encoder = EncoderConfig::for_images(EncoderKind::Resnet, 3, 32, 32);
            return classifier_step(encoder, [3, 32, 32], 10, &device, warmup, repeats);
        }
        "text-mlm" => return mlm_step(&device, warmup, repeats),
        _ => {}
    }
    let (kind, encoder) = match step {
        "rotation-cnn" => (TaskKind::Rotation, EncoderKind::Cnn),
        "simclr-cnn" => (TaskKind::Simclr, EncoderKind::Cnn),
        "byol-cnn" => (TaskKind::Byol, EncoderKind::Cnn),
        "moco-v3-cnn" => (TaskKind::MocoV3, EncoderKind::Cnn),
        "vicreg-cnn" => (TaskKind::Vicreg, EncoderKind::Cnn),
        "barlow-twins-cnn" => (TaskKind::BarlowTwins, EncoderKind::Cnn),
        _ => (TaskKind::Mae, EncoderKind::Vit),
    };
    let encoder = EncoderConfig::default_for(encoder);
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

/// Median milliseconds of a `GEMM` x `GEMM` fp32 matrix product on `device`.
fn gemm_ms(device: &Device) -> f64 {
    let a = Tensor::<2>::random([GEMM, GEMM], Distribution::Normal(0.0, 1.0), device);
    let b = Tensor::<2>::random([GEMM, GEMM], Distribution::Normal(0.0, 1.0), device);
    let mut times = Vec::new();
    for i in 0..7 {
        let start = Instant::now();
        std::hint::black_box(a.clone().matmul(b.clone()).into_data());
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// FLOPs of one reference step: the forward pass, the weight gradients of every layer and the
/// input gradients of all but the first (each as many multiply-adds as the forward layer).
fn reference_step_flops() -> f64 {
    let cnn = CnnEncoderConfig::new().with_batch_norm(false);
    let forward = cnn.flops_per_image() + 2 * 128 * 4;
    let first_conv = 2 * 9 * 32 * 28 * 28;
    (BATCH as u64 * (3 * forward - first_conv)) as f64
}

/// PyTorch's medians by step name (and `gemm`), or why there are none.
fn peer(
    python: &Path,
    threads: usize,
    steps: &[&str],
) -> Result<(String, BTreeMap<String, f64>), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/torch_steps.py");
    let out = Command::new(python)
        .arg(script)
        .arg(threads.to_string())
        .arg(steps.join(","))
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

/// The median and the range of `v`.
fn median_range(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn median(v: &[f64]) -> f64 {
    median_range(v).0
}

fn main() {
    pretext_cli::allocator::keep_freed_memory();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let devices: Vec<String> = match std::env::var("PRETEXT_BENCH_DEVICES") {
        Ok(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        Err(_) => ["flex", "ndarray"]
            .into_iter()
            .filter(|d| DeviceSpec::from_str(d).is_ok_and(|s| s.backend.compiled()))
            .map(String::from)
            .collect(),
    };
    let rounds: usize = std::env::var("PRETEXT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(3);
    let wanted = std::env::var("PRETEXT_BENCH_STEPS").unwrap_or_default();
    let steps: Vec<&str> = STEPS
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.split(',').any(|w| w.trim() == *s))
        .collect();
    let python = peer::peer_python("torch, numpy", &["torch", "numpy"]);
    if let Err(why) = &python {
        println!("PyTorch side skipped: {why}");
    }
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
        let repeats = std::env::var("PRETEXT_BENCH_REPEATS")
            .ok()
            .and_then(|r| r.parse().ok())
            .filter(|&r| r > 0)
            .unwrap_or(repeats);
        // Per round: pretext's side, then PyTorch's.
        let mut mine: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut theirs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut version = None;
        for round in 1..=rounds {
            eprintln!("{spec}: round {round} of {rounds}");
            mine.entry("gemm").or_default().push(gemm_ms(&device));
            for &step in &steps {
                mine.entry(step)
                    .or_default()
                    .push(ours(step, &device, warmup, repeats));
            }
            if let Ok(python) = &python {
                match peer(python, threads, &steps) {
                    Ok((v, times)) => {
                        version = Some(v);
                        for (k, ms) in times {
                            theirs.entry(k).or_default().push(ms);
                        }
                    }
                    Err(why) => println!("PyTorch round {round} failed: {why}"),
                }
            }
        }
        println!(
            "\n{spec}: batch {BATCH}; {threads} threads for both; {}; median of {repeats} steps \
             after {warmup} warm-up, {rounds} alternating rounds",
            version.map_or("no PyTorch".to_string(), |v| format!("PyTorch {v} on CPU"))
        );
        println!(
            "{:<17} {:>12} {:>12} {:>9} {:>15} {:>12}",
            "step", "pretext ms", "PyTorch ms", "ratio", "ratio range", "pretext img/s"
        );
        for &step in &steps {
            let ms = median(&mine[step]);
            let peer_ms = theirs.get(step).map(|t| median(t));
            // Speed relative to PyTorch's, round by round: above 1 is faster.
            let ratios: Option<Vec<f64>> = theirs
                .get(step)
                .map(|t| t.iter().zip(&mine[step]).map(|(t, m)| t / m).collect());
            let ratio = ratios.filter(|r| !r.is_empty()).map(|r| median_range(&r));
            println!(
                "{:<17} {:>12.1} {:>12} {:>9} {:>15} {:>12.0}",
                step,
                ms,
                peer_ms.map_or("–".into(), |t| format!("{t:.1}")),
                ratio.map_or("–".into(), |(r, _, _)| format!("{r:.2}x")),
                ratio.map_or("–".into(), |(_, lo, hi)| format!("{lo:.2}-{hi:.2}x")),
                images(step) as f64 * 1e3 / ms
            );
        }
        let gflops = |ms: f64| 2.0 * (GEMM as f64).powi(3) / (ms * 1e6);
        let our_gemm = gflops(median(&mine["gemm"]));
        let their_gemm = theirs.get("gemm").map(|t| gflops(median(t)));
        println!(
            "fp32 matrix product {GEMM}x{GEMM}: pretext {our_gemm:.0} GFLOP/s, PyTorch {}",
            their_gemm.map_or("–".into(), |g| format!("{g:.0} GFLOP/s"))
        );
        if let Some(reference) = mine.get("reference-cnn") {
            let peak = their_gemm.unwrap_or(0.0).max(our_gemm);
            let (flops, ms) = (reference_step_flops(), median(reference));
            let achieved = flops / (ms * 1e6);
            println!(
                "reference step: {:.2} GFLOP in {ms:.1} ms = {achieved:.0} GFLOP/s, {:.0}% of the \
                 faster matrix product's {peak:.0} GFLOP/s",
                flops / 1e9,
                100.0 * achieved / peak
            );
        }
    }
}
