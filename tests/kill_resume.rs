//! Reproducible pretraining: a process killed (SIGKILL) at random points and resumed each time
//! ends with the parameters of an uninterrupted run with the same seed, and the number of
//! data-loading threads changes nothing. "The same parameters" is checked as bit-identical
//! embeddings of every training image.

mod common;

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::{idx_split, pretext, pretrain_process};

/// 48 labelled 16x16 images of three classes.
fn data_dir(dir: &Path) {
    idx_split(dir, "train", 48, 16, 16, 3);
}

/// Rotation on the CNN, a checkpoint every 2 of the run's 120 steps.
const CONFIG: &str = r#"
epochs = 20
seed = 7

[task]
kind = "rotation"

[encoder]
kind = "cnn"
channels = [8, 16]
embedding_dim = 32

[loader]
batch_size = 8
workers = 2

[checkpoint]
every_steps = 2
"#;

/// Optimizer steps in the run's metrics log (0 before the first).
fn steps_logged(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("\"kind\":\"step\""))
                .count()
        })
        .unwrap_or(0)
}

/// The run's embeddings of the training images, as the `.npy` file's bytes.
fn embeddings(dir: &Path, run: &Path) -> Vec<u8> {
    let out = run.with_extension("npy");
    pretext()
        .args(["embed", "--split", "train", "--data"])
        .arg(dir)
        .arg("--checkpoint")
        .arg(run)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    std::fs::read(out).unwrap()
}

#[test]
fn a_killed_run_resumed_ends_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();

    let whole = dir.path().join("whole");
    let started = Instant::now();
    let status = pretrain_process(dir.path(), &whole, false)
        .status()
        .unwrap();
    assert!(status.success());
    let duration = started.elapsed();
    let expected = embeddings(dir.path(), &whole);

    // Kill points spread over the run, at a different random offset each time the test runs.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let jitter = (nanos % 1000) as f64 / 1000.0;
    let killed = dir.path().join("killed");
    let mut kills = 0;
    let mut mid_training = 0;
    for (i, base) in [0.15, 0.4, 0.65].into_iter().enumerate() {
        let fraction = base + 0.2 * ((jitter + i as f64 * 0.37) % 1.0);
        let mut child = pretrain_process(dir.path(), &killed, i > 0)
            .spawn()
            .unwrap();
        std::thread::sleep(duration.mul_f64(fraction));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            // Reaped, so its lock's process is gone and the next run takes the lock over.
            child.wait().unwrap();
            let logged = steps_logged(&killed);
            if (1..120).contains(&logged) {
                mid_training += 1;
            }
            kills += 1;
        } else {
            child.wait().unwrap();
        }
    }
    let out = pretrain_process(dir.path(), &killed, true)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        mid_training > 0,
        "no kill landed during training ({kills} kills)"
    );
    assert_eq!(
        embeddings(dir.path(), &killed),
        expected,
        "the resumed run's parameters differ from the uninterrupted run's ({kills} kills)"
    );
}

#[test]
fn the_same_seed_gives_identical_parameters_whatever_the_loader_threads() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let mut runs = Vec::new();
    for workers in [1, 3] {
        let config = CONFIG
            .replace("epochs = 20", "epochs = 2")
            .replace("workers = 2", &format!("workers = {workers}"));
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let run = dir.path().join(format!("workers-{workers}"));
        let out = pretrain_process(dir.path(), &run, false).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        runs.push(embeddings(dir.path(), &run));
    }
    assert_eq!(runs[0], runs[1]);
}
