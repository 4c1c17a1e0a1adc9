//! End to end: `pretext compare` on a small IDX data set: the report, the results, resuming an
//! interrupted study, and bad requests.

mod common;

use std::path::Path;

use common::{idx, pretext};
use predicates::prelude::*;
use predicates::str::contains;

/// `n` labelled 16x16 images of three classes (a bar, a triangle, a checkerboard) with noise.
fn images(n: u32, salt: u32) -> (Vec<u8>, Vec<u8>) {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let class = i % 3;
        for y in 0..16u32 {
            for x in 0..16u32 {
                let on = match class {
                    0 => (4..12).contains(&y) && (6..10).contains(&x),
                    1 => y > x,
                    _ => (x + y) % 4 < 2,
                };
                let noise = ((i * 7 + salt + y * 13 + x * 31) % 50) as u8;
                pixels.push(if on { 190 + noise } else { noise });
            }
        }
        labels.push(class as u8);
    }
    (pixels, labels)
}

fn data_dir(dir: &Path) {
    let (train, train_labels) = images(90, 0);
    let (test, test_labels) = images(30, 17);
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
    write("train-images-idx3-ubyte", idx(&[90, 16, 16], &train));
    write("train-labels-idx1-ubyte", idx(&[90], &train_labels));
    write("t10k-images-idx3-ubyte", idx(&[30, 16, 16], &test));
    write("t10k-labels-idx1-ubyte", idx(&[30], &test_labels));
}

const CONFIG: &str = r#"
tasks = ["autoencoder"]
epochs = 1
batch_size = 8

[study]
budgets = ["1", "5", "all"]
seeds = 2
linear_iterations = 30
train_steps = 20
protocols = ["linear", "knn", "cluster", "gmm", "scan", "finetune", "supervised"]
gmm_components = 2

[study.scan]
neighbours = 5
heads = 2
epochs = 3
batch_size = 32
mining_components = 8
self_label_epochs = 1
"#;

#[test]
fn the_study_writes_its_report_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let config = dir.path().join("compare.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let out = dir.path().join("study");
    let run = || {
        pretext()
            .args(["compare", "--quiet", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(dir.path())
            .arg("--out")
            .arg(&out)
            .assert()
    };
    run()
        .success()
        .stdout(contains("## linear probe"))
        .stdout(contains("## fine-tuning"))
        .stdout(contains("## supervised from scratch"))
        .stdout(contains(
            "| representation | K-means ACC | K-means NMI | K-means ARI | GMM ACC | GMM NMI | \
             GMM ARI | SCAN ACC | SCAN NMI | SCAN ARI |",
        ))
        .stdout(contains("## Which representation wins"))
        .stdout(contains("## The answer"))
        // Only the autoencoder was pretrained, and it is a baseline, not self-supervised.
        .stdout(contains("No self-supervised encoder was evaluated."))
        .stdout(contains("## Pretraining cost"));
    for file in ["report.md", "results.json", "cells.jsonl"] {
        assert!(out.join(file).exists(), "{file} is missing");
    }
    // Every figure in both formats: the PNG decodes, the SVG holds drawn lines or points.
    for (figure, element) in [
        ("label_efficiency", "<polyline"),
        ("pretraining", "<polyline"),
        ("embeddings", "<circle"),
    ] {
        let png = image::open(out.join(format!("{figure}.png")))
            .unwrap_or_else(|e| panic!("{figure}.png: {e}"));
        assert!(png.width() >= 400 && png.height() >= 300, "{figure}.png");
        let svg = std::fs::read_to_string(out.join(format!("{figure}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains(element),
            "{figure}.svg"
        );
    }
    let scatter = std::fs::read_to_string(out.join("embeddings.svg")).unwrap();
    for rep in ["pixels", "random cnn", "autoencoder"] {
        for view in ["PCA", "t-SNE"] {
            assert!(
                scatter.contains(&format!("\n{rep} ({view})\n")),
                "{rep} has no {view} scatter"
            );
        }
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for rep in [
        "pixels",
        "pca",
        "random cnn",
        "autoencoder",
        "supervised cnn",
    ] {
        assert!(
            report.contains(&format!("| {rep} |")),
            "{rep} missing from\n{report}"
        );
    }
    // Per seed: 3 budgets x 2 probes + 3 scores of each of 3 clusterings (K-means, GMM, SCAN)
    // for each of 4 representations, fine-tuning of the pretrained one on 3 budgets, and the
    // supervised baseline on 3 budgets.
    let per_seed = 4 * (6 + 9) + 3 + 3;
    let cells = std::fs::read_to_string(out.join("cells.jsonl")).unwrap();
    assert_eq!(cells.lines().count(), 2 * per_seed);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let summaries = results["summaries"].as_array().unwrap();
    assert_eq!(summaries.len(), per_seed);
    for s in summaries {
        let mean = s["mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&mean), "{s}");
    }
    // Separable shapes: pixels with all labels are classified well above chance.
    let pixels_all = summaries
        .iter()
        .find(|s| {
            s["representation"] == "pixels" && s["protocol"] == "linear" && s["budget"] == "all"
        })
        .unwrap();
    assert!(pixels_all["mean"].as_f64().unwrap() > 0.8, "{pixels_all}");

    // One cell of the study for one pretrained run, cached beside it.
    let pretrained = out.join("pretrain").join("autoencoder");
    for (protocol, needle) in [
        ("linear", "linear probe  5 labels per class"),
        ("cluster", "K-means NMI"),
        ("gmm", "GMM ACC"),
        ("scan", "SCAN NMI"),
    ] {
        pretext()
            .args([
                "probe",
                "--protocol",
                protocol,
                "--labels-per-class",
                "5",
                "--seeds",
                "2",
            ])
            .arg("--checkpoint")
            .arg(&pretrained)
            .arg("--data")
            .arg(dir.path())
            .assert()
            .success()
            .stdout(contains(needle))
            .stdout(contains("(2 seeds"));
    }
    let caches = || {
        std::fs::read_dir(&pretrained)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.starts_with("probes-") && name.ends_with(".jsonl")
            })
            .count()
    };
    assert_eq!(caches(), 1);
    // Other protocol settings from a file: measured afresh and cached apart.
    let settings = dir.path().join("scan.toml");
    std::fs::write(&settings, "[study.scan]\nhead_hidden = 16\nheads = 2\n").unwrap();
    let probe = |args: &[&str], settings: &std::path::Path| {
        pretext()
            .arg("probe")
            .args(args)
            .arg("--settings")
            .arg(settings)
            .arg("--checkpoint")
            .arg(&pretrained)
            .arg("--data")
            .arg(dir.path())
            .assert()
    };
    let probe_with = |file: &std::path::Path| probe(&["--protocol", "scan", "--seeds", "1"], file);
    probe_with(&settings).success().stdout(contains("SCAN ACC"));
    assert_eq!(caches(), 2);
    std::fs::write(&settings, "[study.scan]\nheads = 0\n").unwrap();
    probe_with(&settings)
        .code(1)
        .stderr(contains("scan.toml"))
        .stderr(contains("heads"));

    // Fine-tuning and the supervised baseline, both on augmented labelled images.
    let augmented = dir.path().join("augmented.toml");
    std::fs::write(
        &augmented,
        "[study]\ntrain_steps = 5\n\n[study.train_views]\ncrop_scale = [0.6, 1.0]\n",
    )
    .unwrap();
    for (protocol, needle) in [
        ("finetune", "autoencoder  fine-tuning  5 labels per class"),
        (
            "supervised",
            "supervised cnn  supervised from scratch  5 labels per class",
        ),
    ] {
        let args = [
            "--labels-per-class",
            "5",
            "--seeds",
            "1",
            "--protocol",
            protocol,
        ];
        probe(&args, &augmented).success().stdout(contains(needle));
    }
    // Label propagation and self-training (fine-tuning on the propagated labels too), with
    // the propagation's settings from the file; bad ones name it.
    let propagation = dir.path().join("propagation.toml");
    std::fs::write(
        &propagation,
        "[study]\ntrain_steps = 5\n\n[study.propagation]\nneighbours = 4\niterations = 10\n",
    )
    .unwrap();
    for (protocol, needle) in [
        (
            "propagation",
            "autoencoder  label propagation  1 labels per class",
        ),
        (
            "self-training",
            "autoencoder  self-training  1 labels per class",
        ),
    ] {
        let args = [
            "--labels-per-class",
            "1",
            "--seeds",
            "2",
            "--protocol",
            protocol,
        ];
        probe(&args, &propagation)
            .success()
            .stdout(contains(needle))
            .stdout(contains("(2 seeds"));
    }
    std::fs::write(&propagation, "[study.propagation]\nalpha = 1.5\n").unwrap();
    probe(&["--protocol", "propagation"], &propagation)
        .code(1)
        .stderr(contains("propagation.toml"))
        .stderr(contains("alpha"));
    std::fs::write(&augmented, "[study.train_views]\ncrop_scale = [0.6, 2.0]\n").unwrap();
    probe(&["--protocol", "supervised"], &augmented)
        .code(1)
        .stderr(contains("augmented.toml"))
        .stderr(contains("train_views"))
        .stderr(contains("crop_scale"));

    // An interruption that lost the last cells: the rerun computes only those.
    let kept: Vec<&str> = cells.lines().take(45).collect();
    std::fs::write(out.join("cells.jsonl"), kept.join("\n") + "\n").unwrap();
    run().success();
    let again = std::fs::read_to_string(out.join("cells.jsonl")).unwrap();
    assert_eq!(again.lines().count(), 2 * per_seed);
    assert!(again.starts_with(&kept.join("\n")));

    // The costly protocols kept for some budgets and representations: fine-tuning and the
    // supervised baseline at 5 labels per class only, SCAN on pixels and the autoencoder only.
    // Every cell is in the log already, so nothing is computed; the outcome holds fewer.
    let limited = CONFIG.replace(
        "gmm_components = 2\n",
        "gmm_components = 2\ntrain_budgets = [\"5\"]\n",
    ) + "representations = [\"pixels\", \"autoencoder\"]\n";
    std::fs::write(&config, &limited).unwrap();
    run()
        .success()
        .stdout(contains("## fine-tuning"))
        .stdout(contains("## supervised from scratch"));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let summaries = results["summaries"].as_array().unwrap();
    // Per seed: SCAN's 3 scores on pca and random cnn, and 2 budgets each of fine-tuning and
    // the supervised baseline, fewer.
    assert_eq!(summaries.len(), per_seed - 2 * 3 - 2 - 2);
    let has = |rep: &str, protocol: &str, budget: &str| {
        summaries.iter().any(|s| {
            s["representation"] == rep && s["protocol"] == protocol && s["budget"] == budget
        })
    };
    assert!(has("autoencoder", "finetune", "5") && !has("autoencoder", "finetune", "1"));
    assert!(has("supervised cnn", "supervised", "5"));
    assert!(!has("supervised cnn", "supervised", "all"));
    assert!(has("pixels", "scan", "all") && has("autoencoder", "scan", "all"));
    assert!(!has("pca", "scan", "all") && !has("random cnn", "scan", "all"));
    assert_eq!(
        std::fs::read_to_string(out.join("cells.jsonl")).unwrap(),
        again,
        "the log keeps every cell"
    );
    // probe runs the protocol its flags name, whatever a study's limits say.
    probe(
        &[
            "--protocol",
            "finetune",
            "--labels-per-class",
            "1",
            "--seeds",
            "1",
        ],
        &config,
    )
    .success()
    .stdout(contains("autoencoder  fine-tuning  1 labels per class"));
    // A training budget the study does not have is refused, naming the file.
    std::fs::write(
        &config,
        CONFIG.replace(
            "gmm_components = 2\n",
            "gmm_components = 2\ntrain_budgets = [\"10\"]\n",
        ),
    )
    .unwrap();
    run()
        .code(1)
        .stderr(contains("compare.toml"))
        .stderr(contains("train_budgets lists 10"));
}

#[test]
fn bad_comparison_requests_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    // No labels.
    let unlabelled = dir.path().join("unlabelled");
    std::fs::create_dir(&unlabelled).unwrap();
    std::fs::copy(
        dir.path().join("train-images-idx3-ubyte"),
        unlabelled.join("train-images-idx3-ubyte"),
    )
    .unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[study]\nseeds = 0\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--data".into(), unlabelled.display().to_string()],
            "is not labelled with at least two classes",
        ),
        (
            vec!["--config".into(), bad.display().to_string()],
            "bad.toml: not a valid comparison config: seeds = 0",
        ),
        (
            vec!["--checkpoint".into(), "no/such/run".into()],
            "no/such/run",
        ),
    ];
    for (args, needle) in cases {
        let mut cmd = pretext();
        cmd.args(["compare", "--quick", "--quiet", "--out"])
            .arg(dir.path().join("out"));
        if !args.contains(&"--data".to_string()) {
            cmd.arg("--data").arg(dir.path());
        }
        cmd.args(&args)
            .assert()
            .code(1)
            .stderr(contains(needle))
            .stderr(contains("panicked").not());
    }
}

/// 8x8 images and no test split, as a new user's own data might come: the study carves a test
/// split, runs the tasks that fit and names the one that does not.
#[test]
fn small_images_without_a_test_split_are_studied_with_what_fits() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for i in 0..60u32 {
        let class = i % 3;
        for y in 0..8u32 {
            for x in 0..8u32 {
                let on = match class {
                    0 => x < 4,
                    1 => y < 4,
                    _ => (x + y) % 2 == 0,
                };
                pixels.push(if on {
                    200
                } else {
                    ((i * 13 + x * 7 + y) % 40) as u8
                });
            }
        }
        labels.push(class as u8);
    }
    let data = dir.path().join("small");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("train-images-idx3-ubyte"),
        idx(&[60, 8, 8], &pixels),
    )
    .unwrap();
    std::fs::write(data.join("train-labels-idx1-ubyte"), idx(&[60], &labels)).unwrap();
    pretext()
        .args(["data", "info", "--data"])
        .arg(&data)
        .assert()
        .success()
        .stdout(contains("12 test"))
        .stdout(contains("a stratified 20% of the training images"));
    let out = dir.path().join("study");
    pretext()
        .args(["compare", "--quick", "--tasks", "rotation,jigsaw", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stderr(contains("skipping jigsaw: jigsaw tiles are"))
        .stderr(contains("the test split is a stratified 20%"))
        .stderr(contains("pretraining on batches of"))
        .stderr(contains(
            "skipping 100 labels per class: the smallest class has",
        ))
        .stdout(contains("Skipped jigsaw: jigsaw tiles are"))
        .stdout(contains("| rotation |"));
    assert!(out.join("pretrain/rotation/encoder.safetensors").exists());
    assert!(!out.join("pretrain/jigsaw").exists());
}
