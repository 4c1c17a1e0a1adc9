//! t-SNE maps against scikit-learn's (tests/fixtures/tsne_digits.json, made by make_tsne.py):
//! the same trustworthiness score on the same map, and maps of our own that keep neighbourhoods
//! as well as scikit-learn's.

use burn::tensor::{Device, Tensor, TensorData};
use pretext_baselines::{BaselineError, Fit, TsneConfig, TsneMethod, trustworthiness};
mod common;

use common::{fixture, matrix_tensor};

fn digits() -> Tensor<2> {
    matrix_tensor(&fixture("pca_digits.json")["x"])
}

#[test]
fn trustworthiness_equals_scikit_learns_on_its_own_map() {
    let f = fixture("tsne_digits.json");
    let map = matrix_tensor(&f["embedding"]);
    let x = digits();
    for k in [5, 10] {
        let ours = trustworthiness(&x, &map, k).unwrap();
        let theirs = f[format!("trustworthiness_{k}")].as_f64().unwrap();
        assert!((ours - theirs).abs() < 1e-6, "k = {k}: {ours} vs {theirs}");
    }
    // A map that keeps no neighbourhood scores far lower.
    let scrambled: Vec<f32> = (0..1797 * 2).map(|i| ((i * 7919) % 1000) as f32).collect();
    let scrambled = Tensor::from_data(TensorData::new(scrambled, [1797, 2]), &Device::flex());
    assert!(trustworthiness(&x, &scrambled, 5).unwrap() < 0.6);
}

#[test]
fn our_maps_keep_neighbourhoods_as_well_as_scikit_learns() {
    let f = fixture("tsne_digits.json");
    let theirs = f["trustworthiness_5"].as_f64().unwrap();
    let x = digits();
    for method in [TsneMethod::BarnesHut { theta: 0.5 }, TsneMethod::Fft] {
        let map = TsneConfig::default().method(method).fit(&x).unwrap();
        assert_eq!(map.embedding.len(), 1797 * 2);
        let embedded = Tensor::from_data(
            TensorData::new(map.embedding.clone(), [1797, 2]),
            &Device::flex(),
        );
        let ours = trustworthiness(&x, &embedded, 5).unwrap();
        assert!(
            (ours - theirs).abs() < 0.01,
            "{method:?}: trustworthiness {ours} vs scikit-learn's {theirs}"
        );
        // Deterministic: the PCA start and exact neighbours leave nothing to chance.
        let again = TsneConfig::default().method(method).fit(&x).unwrap();
        assert_eq!(again.embedding, map.embedding, "{method:?}");
    }
}

#[test]
fn settings_that_cannot_work_are_errors() {
    let x = digits().narrow(0, 0, 60);
    let err = TsneConfig::default().fit(&x).unwrap_err();
    assert!(err.to_string().contains("lower the perplexity"), "{err}");
    // Lowered to fit, the same data maps.
    let fitted = TsneConfig::default().fitted_to(60);
    assert_eq!(fitted.perplexity, 19.0);
    assert_eq!(fitted.fit(&x).unwrap().embedding.len(), 120);
    let invalid = |c: TsneConfig| matches!(c.validate(), Err(BaselineError::InvalidParam(_)));
    assert!(invalid(TsneConfig::default().perplexity(0.5)));
    assert!(invalid(TsneConfig::default().max_iter(100)));
    assert!(invalid(
        TsneConfig::default().method(TsneMethod::BarnesHut { theta: 0.0 })
    ));
    assert!(trustworthiness(&x, &x, 30).is_err());
}

/// A small map of a few tight clusters (a small test split): FFT's grid grew with the
/// spread-out map until one fit ran for minutes; below 10,000 points the default takes
/// Barnes-Hut, which maps them at once and keeps the clusters apart.
#[test]
fn a_few_tight_clusters_map_quickly_and_apart() {
    let mut rows = Vec::new();
    for i in 0..12usize {
        let class = i % 3;
        rows.extend((0..16).map(|j| {
            if j % 3 == class {
                5.0
            } else {
                0.01 * (i + j) as f32
            }
        }));
    }
    let x = Tensor::<2>::from_data(TensorData::new(rows, [12, 16]), &Device::flex());
    let map = TsneConfig::default().fitted_to(12).fit(&x).unwrap();
    let point = |i: usize| [map.embedding[2 * i], map.embedding[2 * i + 1]];
    let distance = |a: usize, b: usize| {
        let (p, q) = (point(a), point(b));
        ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()
    };
    // Each point is nearer every point of its class than any point of another class.
    for a in 0..12 {
        let same = (0..12)
            .filter(|&b| b != a && b % 3 == a % 3)
            .map(|b| distance(a, b));
        let other = (0..12).filter(|&b| b % 3 != a % 3).map(|b| distance(a, b));
        let far_same = same.fold(0.0f32, f32::max);
        let near_other = other.fold(f32::INFINITY, f32::min);
        assert!(
            far_same < near_other,
            "point {a}: {far_same} vs {near_other}"
        );
    }
}
