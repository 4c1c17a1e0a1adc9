//! End to end: `pretext pretrain` on a small IDX data set: the run directory's contents, the
//! refusal to overwrite a run, resuming, and bad requests.

mod common;

use common::{idx, pretext};
#[cfg(feature = "ndarray")]
use common::{largest_difference, train_embeddings};
use std::path::Path;

use predicates::prelude::*;
use predicates::str::contains;

/// 40 labelled 16x16 images of two classes (bright top half or bright bottom half).
fn data_dir(dir: &Path) {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for i in 0..40u32 {
        let class = i % 2;
        for y in 0..16 {
            for x in 0..16u32 {
                let bright = (y < 8) == (class == 0);
                let noise = ((i * 7 + y * 3 + x * 5) % 30) as u8;
                pixels.push(if bright { 200 + noise } else { noise });
            }
        }
        labels.push(class as u8);
    }
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx(&[40, 16, 16], &pixels),
    )
    .unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(&[40], &labels)).unwrap();
}

/// Batches of 8 unless `extra` sets the size.
fn pretrain(data: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    let batch: &[&str] = if extra.contains(&"--batch-size") {
        &[]
    } else {
        &["--batch-size", "8"]
    };
    pretext()
        .args(["pretrain", "--epochs", "2", "--quiet", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(batch)
        .args(extra)
        .assert()
}

#[test]
fn pretraining_writes_a_complete_run_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let out = dir.path().join("run");
    pretrain(dir.path(), &out, &["--task", "rotation"])
        .success()
        .stdout(contains("kNN accuracy"))
        .stdout(contains("encoder.safetensors"));
    for file in [
        "config.toml",
        "metrics.jsonl",
        "encoder.safetensors",
        "encoder.json",
    ] {
        assert!(out.join(file).exists(), "{file} is missing");
    }
    assert!(!out.join(".lock").exists());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.contains("\"kind\":\"epoch\""))
            .count(),
        2
    );
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        saved.contains("epochs = 2") && saved.contains("height = 16"),
        "{saved}"
    );

    // The exported encoder embeds a split for other tools.
    let emb = dir.path().join("emb.npy");
    pretext()
        .args(["embed", "--split", "train", "--data"])
        .arg(dir.path())
        .arg("--checkpoint")
        .arg(&out)
        .arg("--out")
        .arg(&emb)
        .assert()
        .success()
        .stdout(contains("32 x 128"));
    // The data has no test split, so 8 of its 40 images were held out as one: 32 rows of 128
    // float32 after the .npy header; 32 u32 labels.
    let header = |b: &[u8]| 10 + u16::from_le_bytes([b[8], b[9]]) as usize;
    let bytes = std::fs::read(&emb).unwrap();
    assert_eq!(bytes.len() - header(&bytes), 32 * 128 * 4);
    let labels = std::fs::read(dir.path().join("emb-labels.npy")).unwrap();
    assert_eq!(labels.len() - header(&labels), 32 * 4);
    // With --tsne, the embeddings' t-SNE map too (perplexity lowered for 32 points).
    pretext()
        .args(["embed", "--split", "train", "--tsne", "--data"])
        .arg(dir.path())
        .arg("--checkpoint")
        .arg(&out)
        .arg("--out")
        .arg(&emb)
        .assert()
        .success()
        .stdout(contains("t-SNE, 32 x 2"))
        .stderr(contains("perplexity lowered to 10"));
    let map = std::fs::read(dir.path().join("emb-tsne.npy")).unwrap();
    assert_eq!(map.len() - header(&map), 32 * 2 * 4);
    // The carved test split, which pretraining never saw.
    pretext()
        .args(["embed", "--data"])
        .arg(dir.path())
        .arg("--checkpoint")
        .arg(&out)
        .arg("--out")
        .arg(&emb)
        .assert()
        .success()
        .stdout(contains("8 x 128"));

    // The same directory again: refused, without touching the run.
    pretrain(dir.path(), &out, &["--task", "rotation"])
        .code(1)
        .stderr(contains("already holds a different run"))
        .stderr(contains("--resume"));
    // Resuming a finished run re-exports it.
    pretrain(dir.path(), &out, &["--task", "rotation", "--resume"]).success();
    // Resuming with more epochs continues it, the schedule re-planned and said so; any other
    // change is refused, naming what differs.
    let resume = |extra: &[&str]| {
        pretext()
            .args([
                "pretrain",
                "--task",
                "rotation",
                "--batch-size",
                "8",
                "--resume",
            ])
            .arg("--data")
            .arg(dir.path())
            .arg("--out")
            .arg(&out)
            .args(extra)
            .assert()
    };
    resume(&["--epochs", "3"])
        .success()
        .stderr(contains("extending the run from 2 to 3 epochs"));
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.contains("\"kind\":\"epoch\""))
            .count(),
        3
    );
    assert!(metrics.contains("\"kind\":\"extension\""), "{metrics}");
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(saved.contains("epochs = 3"), "{saved}");
    resume(&["--epochs", "3", "--lr", "0.5"])
        .code(1)
        .stderr(contains("optimizer.lr differ"));
    // --force starts over.
    pretrain(dir.path(), &out, &["--task", "rotation", "--resume"])
        .code(1)
        .stderr(contains("epochs differ"));
    pretrain(dir.path(), &out, &["--task", "autoencoder", "--force"]).success();
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(saved.contains("kind = \"autoencoder\""), "{saved}");
}

#[test]
fn a_config_file_sets_the_run_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let config = dir.path().join("jigsaw.toml");
    std::fs::write(
        &config,
        "epochs = 5\n[task]\nkind = \"jigsaw\"\ngrid = 2\npermutations = 6\n\
         [encoder]\nkind = \"cnn\"\nchannels = [8]\nembedding_dim = 16\nglobal_pool = true\n",
    )
    .unwrap();
    let out = dir.path().join("run");
    pretrain(dir.path(), &out, &["--config", config.to_str().unwrap()]).success();
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        saved.contains("epochs = 2") && saved.contains("permutations = 6"),
        "{saved}"
    );
    let perms = std::fs::read_to_string(out.join("permutations.json")).unwrap();
    assert!(perms.contains("\"min_hamming\""), "{perms}");
}

#[test]
fn bad_pretraining_requests_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let out = dir.path().join("run");
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "epochs = 2\n[optimizer]\nlearning_rate = 1\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--task", "spin"], "unknown task 'spin'"),
        (
            vec!["--encoder", "transformer"],
            "unknown encoder 'transformer'",
        ),
        (
            vec!["--task", "mae", "--encoder", "cnn"],
            "mae needs the vit encoder",
        ),
        (vec!["--lr", "0"], "optimizer.lr = 0"),
        (vec!["--batch-size", "64"], "fewer than one batch of 64"),
        (
            vec!["--config", bad_config.to_str().unwrap()],
            "learning_rate",
        ),
        (vec!["--device", "cuda"], "cuda"),
    ];
    for (args, needle) in cases {
        pretrain(dir.path(), &out, &args)
            .code(1)
            .stderr(contains(needle))
            .stderr(contains("panicked").not());
        assert!(!out.exists(), "{args:?} left {}", out.display());
    }
}

/// Two replicas on different backends (flex's and ndarray's CPU devices) train what one
/// device trains on the whole batch, SimCLR's negatives gathered across them, and resume
/// from their checkpoints.
#[cfg(feature = "ndarray")]
#[test]
fn pretraining_on_two_devices_matches_one_device_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let config = dir.path().join("simclr.toml");
    // No batch norm: replicas normalise by their own shard's statistics.
    std::fs::write(
        &config,
        "[task]\nkind = \"simclr\"\n[encoder]\nkind = \"cnn\"\nchannels = [8]\n\
         embedding_dim = 16\nbatch_norm = false\n",
    )
    .unwrap();
    let run = |name: &str, devices: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["--config", config.to_str().unwrap()];
        args.extend_from_slice(devices);
        pretrain(dir.path(), &out, &args).success();
        (out.clone(), train_embeddings(dir.path(), &out))
    };
    let (_, one) = run("one", &["--device", "flex"]);
    let (two_dir, two) = run("two", &["--devices", "flex,ndarray"]);
    let worst = largest_difference(&one, &two);
    assert!(worst < 1e-3, "the embeddings differ by {worst}");
    // Extended by an epoch, still on both devices, from the run's last checkpoint.
    pretext()
        .args([
            "pretrain",
            "--epochs",
            "3",
            "--quiet",
            "--batch-size",
            "8",
            "--resume",
        ])
        .args(["--devices", "flex,ndarray", "--data"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&two_dir)
        .assert()
        .success()
        .stdout(contains("encoder.safetensors"));
    let log = std::fs::read_to_string(two_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(log.matches("\"kind\":\"epoch\"").count(), 3, "{log}");
}

/// A device of `--devices` that cannot run (no such adapter) is a clear error before the run
/// starts, not a panic in the middle of it.
#[cfg(feature = "wgpu")]
#[test]
fn an_unavailable_device_in_the_list_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let out = dir.path().join("run");
    pretrain(
        dir.path(),
        &out,
        &["--task", "rotation", "--devices", "flex,wgpu:discrete:7"],
    )
    .code(1)
    .stderr(contains("device wgpu:discrete:7 is unavailable"))
    .stderr(contains("panicked").not());
    assert!(!out.exists());
}
