//! End to end: `pretext data preview` writes a readable PNG for every task, and bad requests are
//! clear errors that leave no file behind.

mod common;

use common::pretext;
use predicates::prelude::*;
use predicates::str::contains;

#[test]
fn every_task_previews_as_a_png() {
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for task in [
        "rotation",
        "jigsaw",
        "mae",
        "simclr",
        "denoise",
        "autoencoder",
    ] {
        let out = dir.path().join(format!("{task}.png"));
        pretext()
            .args(["data", "preview", "--task", task, "--samples", "3", "--out"])
            .arg(&out)
            .assert()
            .success()
            .stdout(contains(format!("{task}:")));
        let image = image::open(&out).unwrap().to_rgb8();
        // Three rows of 28-pixel images at scale 4, plus their labels and gaps.
        assert!(image.height() > 3 * 28 * 4, "{task}: {}", image.height());
        // Not a blank picture: many distinct colours.
        let colours: std::collections::HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 50, "{task}: {} colours", colours.len());
        sizes.push((task, image.width()));
    }
    // Rotation shows four panels per row, simclr three, denoise two.
    let width = |t: &str| sizes.iter().find(|(n, _)| *n == t).unwrap().1;
    assert!(width("rotation") > width("simclr") && width("simclr") > width("denoise"));
}

#[test]
fn preview_options_come_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jigsaw.toml");
    std::fs::write(
        &config,
        "[task]\nkind = \"jigsaw\"\ngrid = 2\npermutations = 24\n",
    )
    .unwrap();
    pretext()
        .args([
            "data",
            "preview",
            "--task",
            "jigsaw",
            "--samples",
            "2",
            "--config",
        ])
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("j.png"))
        .assert()
        .success()
        .stdout(contains("(of 24, minimum Hamming distance 2)"));
}

#[test]
fn bad_preview_requests_are_clear_errors_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.png");
    let config = dir.path().join("mae.toml");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--task".into(), "rotate".into()],
            "unknown task 'rotate'",
        ),
        (
            vec![
                "--task".into(),
                "mae".into(),
                "--samples".into(),
                "0".into(),
            ],
            "at least one sample",
        ),
        (
            vec![
                "--task".into(),
                "mae".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            "mask_ratio = 1.5",
        ),
        (
            vec![
                "--task".into(),
                "jigsaw".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            "its [task] is mae but --task is jigsaw",
        ),
        (
            vec![
                "--task".into(),
                "rotation".into(),
                "--data".into(),
                "no/such/dir".into(),
            ],
            "no/such/dir",
        ),
    ];
    std::fs::write(&config, "[task]\nkind = \"mae\"\nmask_ratio = 1.5\n").unwrap();
    for (args, needle) in cases {
        pretext()
            .args(["data", "preview", "--out"])
            .arg(&out)
            .args(&args)
            .assert()
            .code(1)
            .stderr(contains(needle))
            .stderr(contains("panicked").not());
        assert!(!out.exists(), "{args:?} left {}", out.display());
    }
}
