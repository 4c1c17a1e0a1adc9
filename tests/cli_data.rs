//! End to end: `pretext data info` and `pretext devices` as a user runs them, including the
//! errors a user sees for bad input.

mod common;

use common::{idx, pretext};
use std::path::Path;

use predicates::prelude::*;
use predicates::str::contains;

/// A valid 4-image 2-class IDX directory.
fn valid_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx(&[4, 3, 3], &[9; 36]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        idx(&[4], &[0, 1, 1, 0]),
    )
    .unwrap();
    dir
}

/// Runs `data info` on `dir` and expects exit status 1 with `needle` in one clean message.
fn expect_error(dir: &Path, needle: &str) {
    pretext()
        .args(["data", "info", "--data"])
        .arg(dir)
        .assert()
        .code(1)
        .stdout("")
        .stderr(contains(needle))
        .stderr(contains("error:"))
        .stderr(contains("panicked").not());
}

#[test]
fn info_on_the_embedded_default_needs_no_files() {
    let dir = tempfile::tempdir().unwrap();
    pretext()
        .current_dir(dir.path())
        .args(["data", "info"])
        .assert()
        .success()
        .stdout(contains("12000 (10000 train, 2000 test)"))
        .stdout(contains("1x28x28"))
        .stdout(contains("Ankle boot"))
        .stdout(contains("1000"))
        .stdout(contains("mean 0.28"));
}

#[test]
fn info_as_json_parses() {
    let out = pretext()
        .args(["data", "info", "--data", "fashion-mnist", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["splits"][0]["images"], 10_000);
    assert_eq!(v["splits"][1]["per_class"][3], 200);
    assert_eq!(v["classes"].as_array().unwrap().len(), 10);
    let std = v["pixel_std"][0].as_f64().unwrap();
    assert!((0.3..0.4).contains(&std), "{std}");
}

#[test]
fn info_on_an_idx_directory() {
    let dir = valid_dir();
    pretext()
        .args(["data", "info", "--data"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(contains("4 (4 train)"))
        .stdout(contains("1x3x3"));
}

/// Full Fashion-MNIST from Debian's `dataset-fashion-mnist`. CI installs the package and sets
/// PRETEXT_REQUIRE_DEBIAN_DATA so that its absence fails there instead of passing quietly.
#[test]
fn info_on_the_full_debian_data_set() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.is_dir() {
        assert!(
            std::env::var_os("PRETEXT_REQUIRE_DEBIAN_DATA").is_none(),
            "{} is missing: apt-get install dataset-fashion-mnist",
            dir.display()
        );
        eprintln!("skipped: {} is not installed", dir.display());
        return;
    }
    pretext()
        .args(["data", "info", "--data"])
        .arg(dir)
        .assert()
        .success()
        .stdout(contains("70000 (60000 train, 10000 test)"))
        .stdout(contains("Ankle boot"))
        .stdout(contains("6000"));
}

#[test]
fn wrong_magic_number() {
    let dir = valid_dir();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        b"\x89PNG\r\n\x1a\n....",
    )
    .unwrap();
    expect_error(dir.path(), "train-images-idx3-ubyte: not an IDX file");
}

#[test]
fn truncated_file() {
    let dir = valid_dir();
    let mut bytes = idx(&[4, 3, 3], &[9; 36]);
    bytes.truncate(30);
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), bytes).unwrap();
    expect_error(dir.path(), "train-images-idx3-ubyte: truncated");
}

#[test]
fn truncated_gzip_file() {
    let dir = valid_dir();
    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &idx(&[4, 3, 3], &[9; 36])).unwrap();
    let mut gz = enc.finish().unwrap();
    gz.truncate(gz.len() / 2);
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), gz).unwrap();
    expect_error(dir.path(), "train-images-idx3-ubyte.gz:");
}

#[test]
fn image_label_count_mismatch() {
    let dir = valid_dir();
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        idx(&[3], &[0, 1, 1]),
    )
    .unwrap();
    expect_error(dir.path(), "holds 4 images but");
}

#[test]
fn empty_set() {
    let dir = valid_dir();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx(&[0, 3, 3], &[]),
    )
    .unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), idx(&[0], &[])).unwrap();
    expect_error(dir.path(), "the data set is empty");
}

#[test]
fn missing_path() {
    pretext()
        .args(["data", "info", "--data", "/no/such/place"])
        .assert()
        .code(1)
        .stderr(contains("'/no/such/place' is neither an embedded data set"))
        .stderr(contains("panicked").not());
}

#[test]
fn unreadable_file() {
    let dir = valid_dir();
    // A directory where a file should be cannot be read, even by root.
    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
    std::fs::create_dir(dir.path().join("train-images-idx3-ubyte")).unwrap();
    expect_error(dir.path(), "train-images-idx3-ubyte: cannot read");
}

#[test]
fn devices_lists_the_backends() {
    pretext()
        .arg("devices")
        .assert()
        .success()
        .stdout(contains("flex     compiled in"))
        .stdout(contains("cuda"));
}

#[test]
fn devices_checks_a_named_device() {
    pretext()
        .args(["devices", "--device", "flex"])
        .assert()
        .success()
        .stdout(contains("flex: ok"));
}

#[test]
fn unknown_device_is_a_usage_error_with_status_1() {
    pretext()
        .args(["devices", "--device", "tpu"])
        .assert()
        .code(1)
        .stderr(contains("unknown device 'tpu'"));
}

#[cfg(not(feature = "cuda"))]
#[test]
fn device_not_compiled_in_names_the_feature() {
    pretext()
        .args(["devices", "--device", "cuda:0"])
        .assert()
        .code(1)
        .stderr(contains("--features cuda"));
}

#[test]
fn cifar_batches_and_image_folders_load_and_pretrain() {
    let dir = tempfile::tempdir().unwrap();

    // CIFAR-10: 8 training and 4 test records of a label byte and 3,072 pixel bytes.
    let cifar = dir.path().join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    let records = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                std::iter::once((i % 2) as u8)
                    .chain((0..3072).map(move |p| ((p + i * 5) % 256) as u8))
            })
            .collect()
    };
    std::fs::write(cifar.join("data_batch_1.bin"), records(8)).unwrap();
    std::fs::write(cifar.join("test_batch.bin"), records(4)).unwrap();
    pretext()
        .args(["data", "info", "--data"])
        .arg(&cifar)
        .assert()
        .success()
        .stdout(contains("12 (8 train, 4 test)").or(contains("8 train")))
        .stdout(contains("3x32x32"));

    // An image folder of RGB images of two sizes, resized to 12x12.
    let folder = dir.path().join("photos");
    for (class, colour) in [("cat", [220u8, 40, 0]), ("dog", [0, 40, 220])] {
        std::fs::create_dir_all(folder.join(class)).unwrap();
        for i in 0..6u32 {
            let image = image::RgbImage::from_fn(18 + i, 14, |x, y| {
                let v = ((x + y) % 7) as u8 * 5;
                image::Rgb([colour[0] / 2 + v, colour[1] + v, colour[2] / 2 + v])
            });
            image
                .save(folder.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    pretext()
        .args(["data", "info", "--image-size", "12", "--data"])
        .arg(&folder)
        .assert()
        .success()
        .stdout(contains("3x12x12"))
        .stdout(contains("cat"))
        // The folder is not split: one image of each class's six is held out as the test split.
        .stdout(contains("12 (10 train, 2 test)"))
        .stdout(contains(
            "test split   a stratified 20% of the training images",
        ));
    pretext()
        .args([
            "data",
            "info",
            "--image-size",
            "12",
            "--test-fraction",
            "0.5",
            "--data",
        ])
        .arg(&folder)
        .assert()
        .success()
        .stdout(contains("12 (6 train, 6 test)"));
    let run = dir.path().join("run");
    pretext()
        .args([
            "pretrain",
            "--task",
            "rotation",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--quiet",
            "--image-size",
            "12",
            "--data",
        ])
        .arg(&folder)
        .arg("--out")
        .arg(&run)
        .assert()
        .success();
    assert!(run.join("encoder.safetensors").exists());
}
