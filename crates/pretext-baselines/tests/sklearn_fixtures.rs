//! Results against scikit-learn's, computed on small real data (see tests/fixtures/*.json at the
//! workspace root, each with an `about` saying how it was made).

use burn::tensor::{Device, Tensor, TensorData};
use pretext_baselines::metrics::{ari, hungarian_accuracy, nmi, silhouette};
use pretext_baselines::{
    Components, Fit, InverseTransform, KMeansAlgorithm, KMeansConfig, KMeansInit, PcaConfig,
    PcaSolver, Predict, Transform,
};
use serde_json::Value;

mod common;

use common::{fixture, matrix};

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn labels(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn tensor(data: Vec<f32>, rows: usize, cols: usize) -> Tensor<2> {
    Tensor::from_data(TensorData::new(data, [rows, cols]), &Device::flex())
}

fn digits() -> Tensor<2> {
    let (x, n, d) = matrix(&fixture("pca_digits.json")["x"]);
    tensor(x, n, d)
}

fn assert_rel(what: &str, ours: f64, theirs: f64, tol: f64) {
    let err = (ours - theirs).abs() / theirs.abs().max(f64::MIN_POSITIVE);
    assert!(
        err <= tol,
        "{what}: ours {ours} vs scikit-learn {theirs} (relative error {err:e} > {tol:e})"
    );
}

fn check_pca(solver: PcaSolver, tol: f64) {
    let f = fixture("pca_digits.json");
    let pca = PcaConfig::new(Components::Count(10))
        .solver(solver)
        .fit(&digits())
        .unwrap();
    for (i, (a, b)) in pca
        .explained_variance
        .iter()
        .zip(floats(&f["explained_variance"]))
        .enumerate()
    {
        assert_rel(&format!("explained_variance[{i}]"), *a, b, tol);
    }
    for (i, (a, b)) in pca
        .explained_variance_ratio
        .iter()
        .zip(floats(&f["explained_variance_ratio"]))
        .enumerate()
    {
        assert_rel(&format!("explained_variance_ratio[{i}]"), *a, b, tol);
    }
    for (i, (a, b)) in pca
        .singular_values
        .iter()
        .zip(floats(&f["singular_values"]))
        .enumerate()
    {
        assert_rel(&format!("singular_values[{i}]"), *a, b, tol);
    }
    for (i, (a, b)) in pca.mean.iter().zip(floats(&f["mean"])).enumerate() {
        assert!(
            (*a as f64 - b).abs() <= 1e-4 * b.abs().max(1.0),
            "mean[{i}]"
        );
    }
    // Both sides use the same sign convention; unit vectors, so compare absolutely.
    let (theirs, k, d) = matrix(&f["components"]);
    assert_eq!((k, d), (10, 64));
    for (i, (a, b)) in pca.components.iter().zip(&theirs).enumerate() {
        assert!(
            (a - b).abs() <= tol as f32 * 10.0,
            "component {} feature {}: ours {a} vs scikit-learn {b}",
            i / d,
            i % d
        );
    }
}

#[test]
fn pca_exact_matches_scikit_learn_on_digits() {
    check_pca(PcaSolver::Exact, 1e-4);
}

#[test]
fn pca_randomized_matches_scikit_learn_on_digits() {
    check_pca(PcaSolver::Randomized, 1e-4);
}

#[test]
fn pca_round_trips_with_all_components_and_whitening() {
    let x = digits();
    for whiten in [false, true] {
        let pca = PcaConfig::new(Components::Count(64))
            .whiten(whiten)
            .solver(PcaSolver::Exact)
            .fit(&x)
            .unwrap();
        let err = pca.reconstruction_error(&x).unwrap();
        assert!(
            err < 1e-6 * 1797.0,
            "whiten {whiten}: reconstruction error {err}"
        );
        if whiten {
            // Whitened features have unit variance.
            let z = pca.transform(&x).unwrap();
            let var: Vec<f32> = z.var(0).into_data().try_into_vec_as::<f32>().unwrap();
            // Components beyond the data's rank have no variance to scale.
            assert!(var[..40].iter().all(|v| (v - 1.0).abs() < 1e-3), "{var:?}");
        }
        let back = pca.inverse_transform(&pca.transform(&x).unwrap()).unwrap();
        assert_eq!(back.dims(), [1797, 64]);
    }
    // Digits have constant (always-zero) pixels: reported, not an error.
    let pca = PcaConfig::new(Components::Count(2)).fit(&x).unwrap();
    assert!(
        pca.constant_features.contains(&0),
        "{:?}",
        pca.constant_features
    );
}

#[test]
fn pca_variance_fraction_keeps_the_fewest_components() {
    let pca = PcaConfig::new(Components::Variance(0.5))
        .fit(&digits())
        .unwrap();
    let total = pca.total_explained_variance_ratio();
    assert!(total >= 0.5, "{total}");
    assert!(total - pca.explained_variance_ratio.last().unwrap() < 0.5);
    assert_eq!(
        pca.n_components, 5,
        "scikit-learn keeps 5 components for 50% on digits"
    );
}

#[test]
fn pca_with_more_features_than_rows_uses_the_gram_route() {
    let (x, _, d) = matrix(&fixture("pca_digits.json")["x"]);
    let wide = tensor(x[..20 * d].to_vec(), 20, d);
    let exact = PcaConfig::new(Components::Count(5))
        .solver(PcaSolver::Exact)
        .fit(&wide)
        .unwrap();
    let rand = PcaConfig::new(Components::Count(5))
        .solver(PcaSolver::Randomized)
        .fit(&wide)
        .unwrap();
    for (a, b) in exact
        .explained_variance
        .iter()
        .zip(&rand.explained_variance)
    {
        assert_rel("gram vs randomized variance", *a, *b, 1e-3);
    }
}

fn digits_fixed_init() -> (KMeansConfig, Value) {
    let f = fixture("kmeans_digits_fixed_init.json");
    let (x, _, d) = matrix(&fixture("pca_digits.json")["x"]);
    let init: Vec<f32> = labels(&f["init_rows"])
        .iter()
        .flat_map(|&r| x[r as usize * d..(r as usize + 1) * d].to_vec())
        .collect();
    let config = KMeansConfig::new(10)
        .init(KMeansInit::Centers(init))
        .tol(0.0)
        .max_iter(300);
    (config, f)
}

fn check_kmeans_fixed_init(algorithm: KMeansAlgorithm) {
    let (config, f) = digits_fixed_init();
    let km = config.algorithm(algorithm).fit(&digits()).unwrap();
    assert_eq!(km.labels, labels(&f["labels"]), "{algorithm:?} labels");
    assert_rel("inertia", km.inertia, f["inertia"].as_f64().unwrap(), 1e-6);
    assert_eq!(km.n_iter, f["n_iter"].as_u64().unwrap() as usize);
    let (centers, _, _) = matrix(&f["centers"]);
    for (a, b) in km.centers.iter().zip(&centers) {
        assert!((a - b).abs() < 1e-4, "centre {a} vs {b}");
    }
}

#[test]
fn kmeans_lloyd_matches_scikit_learn_from_fixed_centres() {
    check_kmeans_fixed_init(KMeansAlgorithm::Lloyd);
}

#[test]
fn kmeans_elkan_matches_scikit_learn_from_fixed_centres() {
    check_kmeans_fixed_init(KMeansAlgorithm::Elkan);
}

#[test]
fn kmeans_recovers_blobs_with_any_seed() {
    let f = fixture("kmeans_blobs.json");
    let (x, n, d) = matrix(&f["x"]);
    let x = tensor(x, n, d);
    let truth = labels(&f["y"]);
    for algorithm in [
        KMeansAlgorithm::Lloyd,
        KMeansAlgorithm::Elkan,
        KMeansAlgorithm::MiniBatch,
    ] {
        for seed in 0..3 {
            let km = KMeansConfig::new(4)
                .algorithm(algorithm)
                .batch_size(100)
                .seed(seed)
                .fit(&x)
                .unwrap();
            assert_eq!(
                ari(&truth, &km.labels).unwrap(),
                1.0,
                "{algorithm:?} seed {seed}"
            );
            assert_eq!(km.predict(&x).unwrap(), km.labels);
            let dist = km.transform(&x).unwrap();
            assert_eq!(dist.dims(), [n, 4]);
        }
    }
}

#[test]
fn kmeans_restarts_keep_the_lowest_inertia() {
    let x = digits();
    let one = KMeansConfig::new(10).seed(3).fit(&x).unwrap();
    let many = KMeansConfig::new(10).seed(3).n_init(4).fit(&x).unwrap();
    assert!(
        many.inertia <= one.inertia,
        "{} > {}",
        many.inertia,
        one.inertia
    );
    let again = KMeansConfig::new(10).seed(3).n_init(4).fit(&x).unwrap();
    assert_eq!(many, again, "seeded runs are reproducible");
}

#[test]
fn metrics_match_scikit_learn() {
    let f = fixture("clustering_metrics.json");
    for (i, case) in f["cases"].as_array().unwrap().iter().enumerate() {
        let (t, p) = (labels(&case["truth"]), labels(&case["pred"]));
        let close = |name: &str, ours: f64| {
            let theirs = case[name].as_f64().unwrap();
            assert!(
                (ours - theirs).abs() <= 1e-9,
                "case {i} {name}: {ours} vs {theirs}"
            );
        };
        close("nmi_arithmetic", nmi(&t, &p).unwrap());
        close("ari", ari(&t, &p).unwrap());
        close("hungarian_accuracy", hungarian_accuracy(&t, &p).unwrap());
    }
    let s = &f["silhouette"];
    let x: Vec<f64> = s["x"].as_array().unwrap().iter().flat_map(floats).collect();
    let ours = silhouette(&x, 4, &labels(&s["labels"]), None).unwrap();
    let theirs = s["score"].as_f64().unwrap();
    // The fixture stores x rounded to 6 decimals but scored the unrounded points: an exact
    // computation on the stored x differs from its score by 4.7e-9, so 1e-9 cannot be asked here.
    assert!(
        (ours - theirs).abs() <= 1e-8,
        "silhouette {ours} vs {theirs}"
    );
}

#[test]
fn balanced_accuracy_and_macro_f1_match_scikit_learn() {
    use pretext_baselines::metrics::{balanced_accuracy, macro_f1};
    let f = fixture("classification_metrics.json");
    for (i, case) in f["cases"].as_array().unwrap().iter().enumerate() {
        let (t, p) = (labels(&case["truth"]), labels(&case["pred"]));
        for (name, ours) in [
            ("balanced_accuracy", balanced_accuracy(&t, &p).unwrap()),
            ("macro_f1", macro_f1(&t, &p).unwrap()),
        ] {
            let theirs = case[name].as_f64().unwrap();
            assert!(
                (ours - theirs).abs() <= 1e-12,
                "case {i} {name}: {ours} vs {theirs}"
            );
        }
    }
    assert!(balanced_accuracy(&[0, 1], &[0]).is_err());
    assert!(macro_f1(&[], &[]).is_err());
}
