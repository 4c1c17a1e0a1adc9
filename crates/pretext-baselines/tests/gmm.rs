//! Gaussian mixtures against scikit-learn's `GaussianMixture` (tests/fixtures/gmm.json at the
//! workspace root, made by make_gmm.py beside it).

use burn::tensor::{Device, Tensor, TensorData};
use pretext_baselines::metrics::ari;
use pretext_baselines::{
    BaselineError, CovarianceType, Fit, GaussianMixtureConfig, GmmInit, Predict,
};
use serde_json::Value;

fn fixture() -> Value {
    let path = format!(
        "{}/../../tests/fixtures/gmm.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        other => vec![other.as_f64().unwrap()],
    }
}

fn labels(v: &Value) -> Vec<u32> {
    flat(v).into_iter().map(|l| l as u32).collect()
}

fn tensor(v: &Value) -> Tensor<2> {
    let rows = v.as_array().unwrap().len();
    let values: Vec<f32> = flat(v).into_iter().map(|x| x as f32).collect();
    let cols = values.len() / rows;
    Tensor::from_data(TensorData::new(values, [rows, cols]), &Device::flex())
}

#[test]
fn em_from_the_same_start_matches_scikit_learn() {
    let f = fixture();
    let x = tensor(&f["x"]);
    let k = f["k"].as_u64().unwrap() as usize;
    for (name, kind) in [
        ("full", CovarianceType::Full),
        ("diag", CovarianceType::Diag),
    ] {
        let want = &f[name];
        let fitted = GaussianMixtureConfig::new(k)
            .covariance(kind)
            .init(GmmInit::Parameters {
                weights: flat(&f["weights0"]),
                means: flat(&f["means0"]),
                covariances: flat(&want["covariances0"]),
            })
            .fit(&x)
            .unwrap();
        let bound = want["lower_bound"].as_f64().unwrap();
        assert!(
            (fitted.lower_bound - bound).abs() < 1e-5 * bound.abs(),
            "{name}: lower bound {} vs {bound}",
            fitted.lower_bound
        );
        assert_eq!(
            fitted.n_iter as u64,
            want["n_iter"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(fitted.converged, want["converged"].as_bool().unwrap());
        for (ours, theirs) in fitted.weights.iter().zip(flat(&want["weights"])) {
            assert!(
                (ours - theirs).abs() < 1e-4,
                "{name}: weight {ours} vs {theirs}"
            );
        }
        for (ours, theirs) in fitted.means.iter().zip(flat(&want["means"])) {
            assert!(
                (ours - theirs).abs() < 1e-3,
                "{name}: mean {ours} vs {theirs}"
            );
        }
        let theirs = labels(&want["labels"]);
        let same = fitted
            .labels
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a == b)
            .count();
        assert!(
            same * 1000 >= theirs.len() * 998,
            "{name}: {same} of {} labels agree",
            theirs.len()
        );
        assert_eq!(fitted.predict(&x).unwrap(), fitted.labels);
        let score = fitted.score(&x).unwrap();
        let want_score = want["score"].as_f64().unwrap();
        assert!(
            (score - want_score).abs() < 1e-5 * want_score.abs(),
            "{name}: {score}"
        );
        // Responsibilities are probabilities.
        let proba = fitted.predict_proba(&x).unwrap();
        for row in proba.chunks_exact(k) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
    }
}

#[test]
fn k_means_plus_plus_restarts_find_scikit_learns_mixture_of_separated_blobs() {
    let f = fixture();
    let blobs = &f["blobs"];
    let x = tensor(&blobs["x"]);
    for init in [GmmInit::KMeansPlusPlus, GmmInit::KMeans] {
        let fitted = GaussianMixtureConfig::new(3)
            .init(init.clone())
            .n_init(3)
            .fit(&x)
            .unwrap();
        let want = blobs["score"].as_f64().unwrap();
        let score = fitted.score(&x).unwrap();
        assert!(
            (score - want).abs() < 1e-4 * want.abs(),
            "{init:?}: {score} vs {want}"
        );
        assert_eq!(ari(&labels(&blobs["labels"]), &fitted.labels).unwrap(), 1.0);
        assert_eq!(
            ari(&labels(&blobs["labels_true"]), &fitted.labels).unwrap(),
            1.0
        );
        // Seeded: the same fit twice.
        let again = GaussianMixtureConfig::new(3)
            .init(init)
            .n_init(3)
            .fit(&x)
            .unwrap();
        assert_eq!(again.labels, fitted.labels);
        assert_eq!(again.lower_bound, fitted.lower_bound);
    }
}

#[test]
fn invalid_settings_and_inputs_are_errors() {
    let f = fixture();
    let x = tensor(&f["blobs"]["x"]);
    let invalid =
        |c: GaussianMixtureConfig| matches!(c.fit(&x), Err(BaselineError::InvalidParam(_)));
    assert!(invalid(GaussianMixtureConfig::new(0)));
    assert!(invalid(GaussianMixtureConfig::new(3).n_init(0)));
    assert!(invalid(GaussianMixtureConfig::new(3).max_iter(0)));
    assert!(invalid(GaussianMixtureConfig::new(3).tol(-1.0)));
    assert!(invalid(GaussianMixtureConfig::new(3).reg_covar(f64::NAN)));
    assert!(invalid(GaussianMixtureConfig::new(301)));
    let wrong = GaussianMixtureConfig::new(3).init(GmmInit::Parameters {
        weights: vec![1.0],
        means: vec![],
        covariances: vec![],
    });
    assert!(matches!(
        wrong.fit(&x),
        Err(BaselineError::ShapeMismatch(_))
    ));
    let nan = Tensor::<2>::from_data(
        TensorData::new(vec![0.0f32, f32::NAN, 1.0, 2.0], [2, 2]),
        &Device::flex(),
    );
    assert!(matches!(
        GaussianMixtureConfig::new(1).fit(&nan),
        Err(BaselineError::NonFinite {
            row: 0,
            column: 1,
            ..
        })
    ));
    // A covariance that cannot be factored is a clear error, not a panic.
    let singular = GaussianMixtureConfig::new(1)
        .reg_covar(0.0)
        .init(GmmInit::Parameters {
            weights: vec![1.0],
            means: vec![0.0; 3],
            covariances: vec![0.0; 9],
        });
    let err = singular.fit(&x).unwrap_err().to_string();
    assert!(err.contains("not positive definite"), "{err}");
    let fitted = GaussianMixtureConfig::new(3).fit(&x).unwrap();
    let narrow = Tensor::<2>::zeros([2, 2], &Device::flex());
    assert!(matches!(
        fitted.predict(&narrow),
        Err(BaselineError::ShapeMismatch(_))
    ));
}
