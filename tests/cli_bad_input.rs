//! Bad input across the command line, one table: malformed and hostile files, invalid configs,
//! out-of-range flags, mismatched checkpoints. Each must exit with status 1 and one message on
//! stderr that names what is wrong (and the file, where there is one): no panic, no backtrace,
//! and no output directory left behind.

mod common;

use std::path::Path;

use common::{idx, idx_split, pretext};

/// A labelled IDX data set of `n` `h`x`w` images of three classes, with a test split of 12.
fn idx_dir(dir: &Path, n: u32, h: u32, w: u32) {
    idx_split(dir, "train", n, h, w, 3);
    idx_split(dir, "t10k", 12, h, w, 3);
}

/// Every fixture the table refers to, under `d`.
fn fixtures(d: &Path) {
    idx_dir(&d.join("good"), 30, 16, 16);
    idx_dir(&d.join("nonsquare"), 30, 16, 12);

    let bad = |name: &str, images: Vec<u8>, labels: Option<Vec<u8>>| {
        let dir = d.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train-images-idx3-ubyte"), images).unwrap();
        if let Some(labels) = labels {
            std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
        }
    };
    let labels30 = idx(&[30], &[1; 30]);
    // The header promises 30 images; the file holds 10.
    bad(
        "truncated",
        idx(&[30, 16, 16], &[7; 10 * 256]),
        Some(labels30.clone()),
    );
    // Element type 0x09 (signed byte) instead of unsigned bytes.
    let mut magic = idx(&[30, 16, 16], &[7; 30 * 256]);
    magic[2] = 0x09;
    bad("bad-magic", magic, Some(labels30.clone()));
    // A header claiming 2^31 images over a few bytes must not allocate them.
    bad(
        "huge",
        idx(&[1 << 31, 16, 16], &[0; 64]),
        Some(labels30.clone()),
    );
    bad(
        "label-count",
        idx(&[30, 16, 16], &[7; 30 * 256]),
        Some(idx(&[29], &[1; 29])),
    );
    bad("no-images", idx(&[0, 16, 16], &[]), Some(idx(&[0], &[])));
    bad("garbage", b"not an idx file at all".to_vec(), None);
    std::fs::create_dir_all(d.join("empty")).unwrap();
    std::fs::write(d.join("notes.txt"), "hello").unwrap();

    std::fs::write(d.join("ragged.csv"), "a,b,label\n1,2,0\n3,1\n5,6,1\n").unwrap();
    std::fs::write(d.join("words.csv"), "a,b,label\n1,2,0\n3,four,1\n").unwrap();
    std::fs::write(d.join("nan.csv"), "a,b,label\n1,2,0\n3,NaN,1\n").unwrap();
    std::fs::write(d.join("fine.csv"), "a,b,label\n1,2,0\n3,4,1\n5,6,1\n").unwrap();

    let toml = |name: &str, text: &str| std::fs::write(d.join(name), text).unwrap();
    toml("unknown-field.toml", "epochs = 2\nlearning_rate = 0.1\n");
    toml("unknown-task.toml", "[task]\nkind = \"spin\"\n");
    toml("zero-batch.toml", "[loader]\nbatch_size = 0\n");
    toml("negative-lr.toml", "[optimizer]\nlr = -0.1\n");
    toml("syntax.toml", "epochs = = 2\n");
    toml("zero-seeds.toml", "[study]\nseeds = 0\n");
    toml("bad-budget.toml", "[study]\nbudgets = [\"1\", \"lots\"]\n");
    toml("bad-limit.toml", "pretrain_images = \"many\"\n");
}

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    /// Each must appear in the message ("{d}" is the fixtures' directory).
    needles: &'static [&'static str],
}

const CASES: &[Case] = &[
    // Data files.
    Case {
        name: "missing data directory",
        args: &["data", "info", "--data", "{d}/nowhere"],
        needles: &["{d}/nowhere"],
    },
    Case {
        name: "data that is neither a directory nor a CSV table",
        args: &["data", "info", "--data", "{d}/notes.txt"],
        needles: &["notes.txt"],
    },
    Case {
        name: "a directory without IDX files",
        args: &["data", "info", "--data", "{d}/empty"],
        needles: &["{d}/empty", "train-images-idx3-ubyte"],
    },
    Case {
        name: "a truncated IDX file",
        args: &["data", "info", "--data", "{d}/truncated"],
        needles: &["train-images-idx3-ubyte"],
    },
    Case {
        name: "an IDX file of another element type",
        args: &["data", "info", "--data", "{d}/bad-magic"],
        needles: &["train-images-idx3-ubyte"],
    },
    Case {
        name: "an IDX header claiming 2^31 images",
        args: &["data", "info", "--data", "{d}/huge"],
        needles: &["train-images-idx3-ubyte"],
    },
    Case {
        name: "labels that do not match the images",
        args: &["data", "info", "--data", "{d}/label-count"],
        needles: &["29", "30"],
    },
    Case {
        name: "an IDX file with no images",
        args: &["data", "info", "--data", "{d}/no-images"],
        needles: &["no-images"],
    },
    Case {
        name: "a file that is not IDX at all",
        args: &["data", "info", "--data", "{d}/garbage"],
        needles: &["train-images-idx3-ubyte"],
    },
    Case {
        name: "a CSV row with a missing value",
        args: &["baseline", "pca", "--data", "{d}/ragged.csv"],
        needles: &["ragged.csv", "line 3"],
    },
    Case {
        name: "a CSV value that is not a number",
        args: &["baseline", "pca", "--data", "{d}/words.csv"],
        needles: &["words.csv", "four"],
    },
    Case {
        name: "a CSV label column that does not exist",
        args: &[
            "baseline",
            "kmeans",
            "--k",
            "2",
            "--data",
            "{d}/fine.csv",
            "--label-column",
            "class",
        ],
        needles: &["class"],
    },
    Case {
        name: "NaN in the features",
        args: &[
            "baseline",
            "kmeans",
            "--k",
            "2",
            "--data",
            "{d}/nan.csv",
            "--label-column",
            "label",
        ],
        needles: &["nan.csv", "line 3", "'b'"],
    },
    // Flags.
    Case {
        name: "an unknown device",
        args: &["baseline", "pca", "--data", "{d}/good", "--device", "tpu"],
        needles: &["tpu"],
    },
    Case {
        name: "an adapter on a CPU backend",
        args: &[
            "baseline", "pca", "--data", "{d}/good", "--device", "flex:3",
        ],
        needles: &["flex"],
    },
    Case {
        name: "a backend that is not compiled in",
        args: &["baseline", "pca", "--data", "{d}/good", "--device", "cuda"],
        needles: &["cuda", "feature"],
    },
    Case {
        name: "zero clusters",
        args: &["baseline", "kmeans", "--data", "{d}/good", "--k", "0"],
        needles: &["k"],
    },
    Case {
        name: "more clusters than rows",
        args: &["baseline", "kmeans", "--data", "{d}/good", "--k", "500"],
        needles: &["500", "30"],
    },
    Case {
        name: "zero k-means restarts",
        args: &["baseline", "kmeans", "--data", "{d}/good", "--n-init", "0"],
        needles: &["n_init"],
    },
    Case {
        name: "a negative tolerance",
        args: &["baseline", "kmeans", "--data", "{d}/good", "--tol=-1"],
        needles: &["tol"],
    },
    Case {
        name: "more PCA components than features",
        args: &[
            "baseline",
            "pca",
            "--data",
            "{d}/fine.csv",
            "--components",
            "9",
        ],
        needles: &["9"],
    },
    Case {
        name: "an unknown pretext task",
        args: &[
            "pretrain", "--data", "{d}/good", "--task", "spin", "--out", "{out}",
        ],
        needles: &["spin"],
    },
    Case {
        name: "an unknown encoder",
        args: &[
            "pretrain",
            "--data",
            "{d}/good",
            "--encoder",
            "transformer",
            "--out",
            "{out}",
        ],
        needles: &["transformer"],
    },
    Case {
        name: "zero epochs",
        args: &[
            "pretrain", "--data", "{d}/good", "--epochs", "0", "--out", "{out}",
        ],
        needles: &["epochs"],
    },
    Case {
        name: "a zero batch size",
        args: &[
            "pretrain",
            "--data",
            "{d}/good",
            "--batch-size",
            "0",
            "--out",
            "{out}",
        ],
        needles: &["batch_size"],
    },
    Case {
        name: "a negative learning rate",
        args: &[
            "pretrain", "--data", "{d}/good", "--lr=-1", "--out", "{out}",
        ],
        needles: &["lr"],
    },
    Case {
        name: "rotation of non-square images",
        args: &[
            "pretrain",
            "--data",
            "{d}/nonsquare",
            "--task",
            "rotation",
            "--out",
            "{out}",
        ],
        needles: &["square", "16x12"],
    },
    Case {
        name: "a CSV label column number past the last column",
        args: &[
            "baseline",
            "kmeans",
            "--k",
            "2",
            "--data",
            "{d}/fine.csv",
            "--label-column",
            "5",
        ],
        needles: &["fine.csv", "'5'", "a, b, label"],
    },
    // Configs.
    Case {
        name: "a config with an unknown field",
        args: &[
            "pretrain",
            "--data",
            "{d}/good",
            "--config",
            "{d}/unknown-field.toml",
            "--out",
            "{out}",
        ],
        needles: &["unknown-field.toml", "learning_rate"],
    },
    Case {
        name: "a config naming an unknown task",
        args: &[
            "pretrain",
            "--data",
            "{d}/good",
            "--config",
            "{d}/unknown-task.toml",
            "--out",
            "{out}",
        ],
        needles: &["unknown-task.toml", "spin"],
    },
    Case {
        name: "a config with a zero batch size",
        args: &[
            "pretrain",
            "--data",
            "{d}/good",
            "--config",
            "{d}/zero-batch.toml",
            "--out",
            "{out}",
        ],
        needles: &["batch_size"],
    },
    Case {
        name: "a config with a negative learning rate",
        args: &[
            "pretrain",
            "--data",
            "{d}/good",
            "--config",
            "{d}/negative-lr.toml",
            "--out",
            "{out}",
        ],
        needles: &["lr"],
    },
    Case {
        name: "a config that is not TOML",
        args: &[
            "pretrain",
            "--data",
            "{d}/good",
            "--config",
            "{d}/syntax.toml",
            "--out",
            "{out}",
        ],
        needles: &["syntax.toml"],
    },
    Case {
        name: "a config file that does not exist",
        args: &[
            "pretrain",
            "--data",
            "{d}/good",
            "--config",
            "{d}/absent.toml",
            "--out",
            "{out}",
        ],
        needles: &["absent.toml"],
    },
    Case {
        name: "a study with zero seeds",
        args: &[
            "compare",
            "--data",
            "{d}/good",
            "--config",
            "{d}/zero-seeds.toml",
            "--out",
            "{out}",
        ],
        needles: &["zero-seeds.toml", "seeds"],
    },
    Case {
        name: "a label budget that is not a number",
        args: &[
            "compare",
            "--data",
            "{d}/good",
            "--config",
            "{d}/bad-budget.toml",
            "--out",
            "{out}",
        ],
        needles: &["bad-budget.toml", "lots"],
    },
    Case {
        name: "a pretraining image limit that is neither a number nor all",
        args: &[
            "compare",
            "--data",
            "{d}/good",
            "--config",
            "{d}/bad-limit.toml",
            "--out",
            "{out}",
        ],
        needles: &["bad-limit.toml", "many"],
    },
    // Checkpoints.
    Case {
        name: "a checkpoint directory that does not exist",
        args: &[
            "embed",
            "--data",
            "{d}/good",
            "--checkpoint",
            "{d}/no-run",
            "--out",
            "{out}.npy",
        ],
        needles: &["{d}/no-run"],
    },
    Case {
        name: "a checkpoint directory that holds no run",
        args: &[
            "probe",
            "--data",
            "{d}/good",
            "--checkpoint",
            "{d}/empty",
            "--protocol",
            "linear",
            "--labels-per-class",
            "2",
        ],
        needles: &["{d}/empty"],
    },
    Case {
        name: "an unknown probe protocol",
        args: &[
            "probe",
            "--data",
            "{d}/good",
            "--checkpoint",
            "{d}/empty",
            "--protocol",
            "dance",
            "--labels-per-class",
            "2",
        ],
        needles: &["dance"],
    },
    Case {
        name: "a text task in the image study",
        args: &[
            "compare",
            "--quick",
            "--tasks",
            "rotation,mlm",
            "--out",
            "{out}",
        ],
        needles: &["mlm is a text task", "--modality text"],
    },
    Case {
        name: "the image study on the validation split",
        args: &["compare", "--quick", "--on", "validation", "--out", "{out}"],
        needles: &["probe --on validation"],
    },
    Case {
        name: "an image task in the text study",
        args: &[
            "compare",
            "--modality",
            "text",
            "--data",
            "{d}/good",
            "--tasks",
            "simclr",
            "--out",
            "{out}",
        ],
        needles: &["simclr is an image task"],
    },
];

fn fill(s: &str, d: &Path, out: &Path) -> String {
    s.replace("{d}", &d.display().to_string())
        .replace("{out}", &out.display().to_string())
}

#[test]
fn every_bad_input_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixtures(d);
    assert!(CASES.len() >= 30);
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let out = d.join(format!("out-{i}"));
        let args: Vec<String> = case.args.iter().map(|a| fill(a, d, &out)).collect();
        let output = pretext().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        let mut wrong = Vec::new();
        if output.status.code() != Some(1) {
            wrong.push(format!("exit status {:?}", output.status.code()));
        }
        if stderr.contains("panicked") || stderr.contains("backtrace") {
            wrong.push("a panic".into());
        }
        // (A line saying what is about to run may come first.)
        if stderr.lines().filter(|l| l.starts_with("error: ")).count() != 1 {
            wrong.push("not exactly one error message".into());
        }
        // A cause printed twice reads as two errors.
        if stderr.matches("(os error").count() > 1 {
            wrong.push("a repeated cause".into());
        }
        for needle in case.needles {
            let needle = fill(needle, d, &out);
            if !stderr.contains(&needle) {
                wrong.push(format!("no {needle:?} in the message"));
            }
        }
        for leftover in [out.clone(), out.with_extension("npy")] {
            if leftover.exists() {
                wrong.push(format!("{} left behind", leftover.display()));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n  pretext {}\n  stderr: {}",
                case.name,
                wrong.join("; "),
                args.join(" "),
                stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs were not handled well:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
