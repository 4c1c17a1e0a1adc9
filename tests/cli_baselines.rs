//! End to end: `pretext baseline pca|kmeans` on the embedded images and on CSV tables.

mod common;

use common::pretext;
use predicates::prelude::*;
use predicates::str::contains;

fn npy_len(path: &std::path::Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    (bytes.len() - 10 - header) / 4
}

#[test]
fn pca_on_the_embedded_images_writes_its_outputs() {
    let out = tempfile::tempdir().unwrap();
    pretext()
        .args(["baseline", "pca", "--components", "20", "--out"])
        .arg(out.path())
        .assert()
        .success()
        .stdout(contains("10000 rows x 784 features"))
        .stdout(contains("explained variance: 0.7"));
    assert_eq!(npy_len(&out.path().join("features.npy")), 10_000 * 20);
    assert_eq!(npy_len(&out.path().join("labels.npy")), 10_000);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["n_components"], 20);
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("pca.json")).unwrap()).unwrap();
    assert_eq!(model["components"].as_array().unwrap().len(), 20 * 784);
}

#[test]
fn pca_keeps_a_variance_fraction() {
    pretext()
        .args([
            "baseline",
            "pca",
            "--components",
            "0.9",
            "--solver",
            "exact",
        ])
        .assert()
        .success()
        .stdout(contains("explained variance: 0.90"));
}

#[test]
fn kmeans_on_pca_features_scores_against_the_labels() {
    let out = tempfile::tempdir().unwrap();
    pretext()
        .args([
            "baseline", "kmeans", "--k", "10", "--pca", "30", "--n-init", "2", "--out",
        ])
        .arg(out.path())
        .assert()
        .success()
        .stdout(contains("against the labels: ACC 0."));
    assert_eq!(npy_len(&out.path().join("assignments.npy")), 10_000);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    let nmi = summary["scores"]["nmi"].as_f64().unwrap();
    assert!((0.3..0.8).contains(&nmi), "NMI {nmi}");
}

fn customers() -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    let mut text = String::from("age,spend,segment\n");
    for i in 0..30 {
        let (age, spend, seg) = if i % 2 == 0 {
            (25.0, 100.0, "young")
        } else {
            (60.0, 900.0, "senior")
        };
        text.push_str(&format!(
            "{},{},{seg}\n",
            age + (i % 5) as f32,
            spend + (i % 7) as f32
        ));
    }
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn kmeans_clusters_a_csv_table_with_a_label_column() {
    let csv = customers();
    for algorithm in ["lloyd", "elkan", "minibatch"] {
        pretext()
            .args([
                "baseline",
                "kmeans",
                "--k",
                "2",
                "--label-column",
                "segment",
                "--algorithm",
                algorithm,
            ])
            .args(["--silhouette", "20", "--data"])
            .arg(csv.path())
            .assert()
            .success()
            .stdout(contains("30 rows x 2 features"))
            .stdout(contains("silhouette 0.9"))
            .stdout(contains("ACC 1.0000  NMI 1.0000  ARI 1.0000"));
    }
}

#[test]
fn bad_csv_cell_is_an_error_naming_line_and_column() {
    let file = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    std::fs::write(file.path(), "a,b\n1,2\n3,oops\n").unwrap();
    pretext()
        .args(["baseline", "pca", "--components", "1", "--data"])
        .arg(file.path())
        .assert()
        .code(1)
        .stderr(contains("line 3, column 'b': 'oops' is not a number"))
        .stderr(contains("panicked").not());
}

#[test]
fn invalid_parameters_exit_with_status_1() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["baseline", "kmeans", "--k", "0"],
            "k (the number of clusters) must be at least 1",
        ),
        (
            &["baseline", "pca", "--components", "0"],
            "n_components must be at least 1",
        ),
        (
            &["baseline", "pca", "--components", "1.5"],
            "must be a count (50) or a fraction",
        ),
        (
            &["baseline", "pca", "--components", "785"],
            "exceeds min(rows, features)",
        ),
    ];
    for (args, needle) in cases {
        pretext()
            .args(args)
            .assert()
            .code(1)
            .stderr(contains(needle))
            .stderr(contains("panicked").not());
    }
}

/// The wine table of tests/fixtures/scaling.json as a CSV file with a `target` column.
fn wine_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scaling.json");
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let columns: Vec<&str> = f["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let mut text = format!("{},target\n", columns.join(","));
    for (row, y) in f["x"]
        .as_array()
        .unwrap()
        .iter()
        .zip(f["y"].as_array().unwrap())
    {
        let cells: Vec<String> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        text.push_str(&format!("{},class{}\n", cells.join(","), y));
    }
    let csv = dir.join("wine.csv");
    std::fs::write(&csv, text).unwrap();
    csv
}

/// The NMI `baseline kmeans|gmm` prints against the labels.
fn printed_nmi(stdout: &[u8]) -> f64 {
    let text = String::from_utf8_lossy(stdout);
    let after = text.split("NMI ").nth(1).expect("an NMI line");
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn scaling_a_table_of_mixed_units_lets_the_clusterers_find_its_classes() {
    let dir = tempfile::tempdir().unwrap();
    let csv = wine_csv(dir.path());
    let run = |command: &str, scale: &str, out: Option<&std::path::Path>| {
        let mut cmd = pretext();
        cmd.args([
            "baseline",
            command,
            "--k",
            "3",
            "--label-column",
            "target",
            "--scale",
            scale,
        ])
        .args(if command == "kmeans" {
            &["--n-init", "10"][..]
        } else {
            &[][..]
        })
        .arg("--data")
        .arg(&csv);
        if let Some(out) = out {
            cmd.arg("--out").arg(out);
        }
        cmd.assert().success().get_output().stdout.clone()
    };
    // scikit-learn's figures on this table: 0.43 unscaled, 0.88 standardised.
    assert!(printed_nmi(&run("kmeans", "none", None)) < 0.5);
    let out = dir.path().join("km");
    let standard = run("kmeans", "standard", Some(&out));
    assert!(
        String::from_utf8_lossy(&standard)
            .contains("columns standardised (mean 0, standard deviation 1)")
    );
    assert!(printed_nmi(&standard) > 0.85);
    let scaler: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("scaler.json")).unwrap()).unwrap();
    assert_eq!(scaler["scaling"], "standard");
    assert_eq!(scaler["offset"].as_array().unwrap().len(), 13);
    assert!(printed_nmi(&run("kmeans", "minmax", None)) > 0.8);
    assert!(printed_nmi(&run("gmm", "standard", None)) > 0.8);
}
