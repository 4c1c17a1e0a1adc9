//! End to end on text: `pretext pretrain --task mlm` and `--task simcse`, and `pretext compare
//! --modality text` on a small generated corpus (one fortune-format file per class), and bad
//! text input.

mod common;

use std::path::Path;

use common::pretext;
use predicates::str::contains;

/// Three topical classes of generated documents, unbalanced (60, 24 and 12 documents), and an
/// unlabelled file, in fortune format.
fn corpus(dir: &Path) {
    let topics: [(&str, [&str; 6]); 3] = [
        (
            "space",
            ["rocket", "orbit", "planet", "star", "moon", "launch"],
        ),
        (
            "food",
            ["bread", "cheese", "soup", "apple", "cook", "dinner"],
        ),
        (
            "law",
            ["judge", "court", "lawyer", "trial", "verdict", "appeal"],
        ),
    ];
    let common = ["the", "a", "of", "and", "is", "was"];
    for (t, (name, words)) in topics.iter().enumerate() {
        let mut text = String::new();
        for d in 0..[60, 24, 12][t] {
            for w in 0..8 {
                let word = if w % 2 == 0 {
                    words[(d * 5 + w * 3 + t) % 6]
                } else {
                    common[(d + w) % 6]
                };
                text.push_str(word);
                text.push(' ');
            }
            text.push_str("\n%\n");
        }
        std::fs::write(dir.join(name), text).unwrap();
    }
    std::fs::write(
        dir.join("unlabelled"),
        "the rocket and the bread\n%\na judge of cheese\n",
    )
    .unwrap();
}

const PRETRAIN: &str = r#"
epochs = 2
held_out_fraction = 0.1

[tokenizer]
vocab_size = 120

[encoder]
max_len = 24
dim = 32
depth = 1
heads = 2
mlp_ratio = 2

[loader]
batch_size = 16
"#;

fn study_config() -> String {
    let pretrain: String = PRETRAIN
        .lines()
        .map(|l| match l.strip_prefix('[') {
            Some(table) => format!("[pretrain.{table}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        r#"
tasks = ["mlm", "simcse"]
tfidf_features = 50
fill_masks = ["the judge and the [MASK]"]

[study]
budgets = ["1", "5", "all"]
seeds = 1
pca_components = 8
linear_iterations = 30
cluster_n_init = 1
train_steps = 8
train_batch_size = 8

[pretrain]
{pretrain}
"#
    )
}

/// `pretext pretrain --task TASK --quiet --epochs 1` with `config`, on `data`, into `out`.
fn pretrain_text(task: &str, config: &Path, data: &Path, out: &Path) -> assert_cmd::Command {
    let mut cmd = pretext();
    cmd.args([
        "pretrain", "--task", task, "--quiet", "--epochs", "1", "--config",
    ])
    .arg(config)
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out);
    cmd
}

#[test]
fn the_text_study_writes_its_report_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("corpus");
    std::fs::create_dir(&data).unwrap();
    corpus(&data);
    let config = dir.path().join("compare-text.toml");
    std::fs::write(&config, study_config()).unwrap();
    let out = dir.path().join("study");
    let run = || {
        pretext()
            .args(["compare", "--modality", "text", "--quiet", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(&data)
            .args(["--classes", "space,food,law", "--out"])
            .arg(&out)
            .assert()
    };
    run()
        .success()
        .stdout(contains("## linear probe"))
        .stdout(contains("## fine-tuning"))
        .stdout(contains("## supervised from scratch"))
        .stdout(contains(
            "| representation | K-means ACC | K-means NMI | K-means ARI |",
        ))
        .stdout(contains("## The answer"))
        .stdout(contains("held-out measure (mlm: masked-token accuracy"))
        .stdout(contains("Predicting the commonest test class (space)"))
        .stdout(contains("linear probe in balanced accuracy / macro-F1"))
        .stdout(contains("## What the pretrained model fills in"))
        .stdout(contains("`the judge and the [MASK]` →"));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for rep in [
        "tf-idf",
        "tf-idf + pca",
        "random transformer",
        "mlm (cls)",
        "mlm (mean)",
        "simcse from mlm (mean)",
        "transformer from scratch",
    ] {
        assert!(
            report.contains(&format!("| {rep} |")),
            "{rep} missing from\n{report}"
        );
    }
    for (figure, element) in [
        ("label_efficiency", "<polyline"),
        ("pretraining", "<polyline"),
        ("embeddings", "<circle"),
    ] {
        let png = image::open(out.join(format!("{figure}.png")))
            .unwrap_or_else(|e| panic!("{figure}.png: {e}"));
        assert!(png.width() >= 400, "{figure}.png");
        let svg = std::fs::read_to_string(out.join(format!("{figure}.svg"))).unwrap();
        assert!(svg.contains(element), "{figure}.svg");
    }
    assert!(out.join("pretrain/mlm/tokenizer.json").exists());
    assert!(
        out.join("pretrain/simcse-from-mlm/encoder.safetensors")
            .exists()
    );
    assert!(report.contains("Held-out views matched by the simcse encoder"));
    // The default: the contrastive run starts from the masked-token one, and the report says so.
    assert!(report.contains("started from the masked-token encoder"));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        results["classes"],
        serde_json::json!(["space", "food", "law"])
    );
    for measure in ["masked_accuracy", "views_matched"] {
        let value = results[measure].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&value), "{measure} {value}");
    }
    let summaries = results["summaries"].as_array().unwrap();
    for s in summaries {
        let mean = s["mean"].as_f64().unwrap();
        // The adjusted Rand index is negative for worse-than-chance clusterings.
        let low = if s["protocol"] == "cluster-ari" {
            -1.0
        } else {
            0.0
        };
        assert!((low..=1.0).contains(&mean), "{s}");
    }
    // Topical words separate the classes: TF-IDF with all labels is well above chance.
    let tfidf_all = summaries
        .iter()
        .find(|s| {
            s["representation"] == "tf-idf" && s["protocol"] == "linear" && s["budget"] == "all"
        })
        .unwrap();
    assert!(tfidf_all["mean"].as_f64().unwrap() > 0.8, "{tfidf_all}");
    // Per seed: 6 representations x 3 budgets x 2 probes, 3 clustering scores each,
    // fine-tuning of the mean-pooled MLM and SimCSE encoders and the from-scratch baseline on
    // 3 budgets.
    let cells = || std::fs::read_to_string(out.join("cells.jsonl")).unwrap();
    let expected = 6 * 6 + 6 * 3 + 2 * 3 + 3;
    assert_eq!(cells().lines().count(), expected);
    // Resumed: every cell is reused and the report is written again.
    run().success().stdout(contains("## linear probe"));
    assert_eq!(cells().lines().count(), expected);
}

#[test]
fn mlm_pretraining_from_the_command_line_and_bad_text() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("corpus");
    std::fs::create_dir(&data).unwrap();
    corpus(&data);
    let config = dir.path().join("mlm.toml");
    std::fs::write(&config, PRETRAIN).unwrap();
    let run = dir.path().join("run");
    let pretrain = || pretrain_text("mlm", &config, &data, &run);
    pretrain()
        .assert()
        .success()
        .stdout(contains("masked tokens"))
        .stdout(contains("vocabulary of"));
    for file in [
        "tokenizer.json",
        "encoder.safetensors",
        "text_encoder.json",
        "config.toml",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    // The run exists: starting it again is refused; --resume finishes at once.
    pretrain().assert().failure().stderr(contains("--resume"));
    pretrain().arg("--resume").assert().success();
    // A run written before `task`, `[simcse]` and `encoder.dropout` existed resumes: those
    // keys' defaults are its settings. Another value of one of them is still a change.
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let mut earlier: toml::Table = toml::from_str(&saved).unwrap();
    earlier.remove("task");
    earlier.remove("simcse");
    earlier["encoder"].as_table_mut().unwrap().remove("dropout");
    std::fs::write(run.join("config.toml"), toml::to_string(&earlier).unwrap()).unwrap();
    pretrain().arg("--resume").assert().success();
    std::fs::write(run.join("config.toml"), toml::to_string(&earlier).unwrap()).unwrap();
    pretrain_text("simcse", &config, &data, &run)
        .arg("--resume")
        .assert()
        .failure()
        .stderr(contains("differ"))
        .stderr(contains("task"));

    // Contrastive views from the same config: the encoder alone is exported.
    let views = dir.path().join("views");
    pretrain_text("simcse", &config, &data, &views)
        .assert()
        .success()
        .stdout(contains("views matched"));
    assert!(views.join("encoder.safetensors").exists());
    assert!(!views.join("mlm.safetensors").exists());
    // Contrastive views started from the masked-token run: its tokenizer, and the run says so.
    let started = dir.path().join("started");
    let simcse_from = |from: &Path, out: &Path| {
        let mut cmd = pretrain_text("simcse", &config, &data, out);
        cmd.arg("--init-from").arg(from);
        cmd
    };
    simcse_from(&run, &started).assert().success();
    assert_eq!(
        std::fs::read(started.join("tokenizer.json")).unwrap(),
        std::fs::read(run.join("tokenizer.json")).unwrap()
    );
    let description = std::fs::read_to_string(started.join("text_encoder.json")).unwrap();
    assert!(description.contains("initialised_from"), "{description}");
    simcse_from(&dir.path().join("no-run"), &dir.path().join("x"))
        .assert()
        .failure()
        .stderr(contains("no-run"));
    pretext()
        .args(["pretrain", "--task", "rotation", "--init-from"])
        .arg(&run)
        .arg("--out")
        .arg(dir.path().join("x"))
        .assert()
        .failure()
        .stderr(contains("--init-from"));

    // Invalid UTF-8 names the file and the byte offset; --lossy skips the document.
    std::fs::write(
        data.join("food"),
        b"good soup\n%\nbad \xff bread\n%\nmore soup\n",
    )
    .unwrap();
    pretrain_text("mlm", &config, &data, &dir.path().join("bad"))
        .assert()
        .failure()
        .stderr(contains("food"))
        .stderr(contains("byte offset 16"));
    pretext()
        .args([
            "pretrain", "--task", "mlm", "--epochs", "1", "--lossy", "--config",
        ])
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("lossy"))
        .assert()
        .success()
        .stderr(contains("skipped 1 documents"));
    // A missing directory and an image encoder are clear errors.
    pretext()
        .args(["compare", "--modality", "text", "--data", "/no/such/corpus"])
        .assert()
        .failure()
        .stderr(contains("/no/such/corpus"));
    pretext()
        .args(["pretrain", "--task", "mlm", "--encoder", "cnn", "--out"])
        .arg(dir.path().join("x"))
        .assert()
        .failure()
        .stderr(contains("text Transformer"));
}

/// The default labelled task on Debian's `fortunes`. CI installs the package and sets
/// PRETEXT_REQUIRE_DEBIAN_DATA so that its absence fails there instead of passing quietly.
#[test]
fn the_fortunes_default_task() {
    use pretext_data::text::{
        FORTUNE_CATEGORIES, FORTUNES_DIR, ReadOptions, Special, TextSource, TextTokenizer,
        TokenizerConfig, encode_documents,
    };
    let dir = Path::new(FORTUNES_DIR);
    if !dir.is_dir() {
        assert!(
            std::env::var_os("PRETEXT_REQUIRE_DEBIAN_DATA").is_none(),
            "{} is missing: apt-get install fortunes",
            dir.display()
        );
        eprintln!("skipped: {} is not installed", dir.display());
        return;
    }
    let data = TextSource::fortunes().load(ReadOptions::default()).unwrap();
    assert_eq!(data.classes, FORTUNE_CATEGORIES);
    assert_eq!(data.skipped, 0, "the fortunes are valid UTF-8");
    let labels = data.train.labels.clone().unwrap();
    for class in 0..data.num_classes() as u32 {
        let n = labels.iter().filter(|&&l| l == class).count();
        // 100 labels per class fit beside the validation split.
        assert!(
            n >= 120,
            "{} has {n} training documents",
            data.classes[class as usize]
        );
    }
    assert!(data.test.len() > 600 && data.unlabelled.len() > 5000);
    let documents = data.pretraining_documents();
    let tokenizer = TextTokenizer::train(&TokenizerConfig::default(), &documents).unwrap();
    assert_eq!(tokenizer.vocab_size(), 4000);
    let sequences = encode_documents(&tokenizer, &documents, 64, true);
    let tokens: usize = sequences.iter().map(Vec::len).sum();
    let unknown = sequences
        .iter()
        .flatten()
        .filter(|&&t| t == Special::Unk.id())
        .count();
    assert!(tokens > 500_000 && (unknown as f64) < 0.001 * tokens as f64);
}
