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
