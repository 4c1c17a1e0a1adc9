//! PCA and K-means give the same results on every compiled-in backend as on flex (within 1e-3),
//! on scikit-learn's digits (1,797 x 64).

use burn::tensor::{Device, Tensor, TensorData};
use pretext_baselines::{
    Components, Fit, KMeans, KMeansConfig, KMeansInit, Pca, PcaConfig, PcaSolver,
};
use pretext_cli::device::DeviceSpec;

fn digits(device: &Device) -> (Tensor<2>, Vec<f32>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pca_digits.json"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows = json["x"].as_array().unwrap();
    let values: Vec<f32> = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    // The first ten rows as initial centres, as a fixed start for every backend.
    let init = values[..10 * 64].to_vec();
    (
        Tensor::from_data(TensorData::new(values, [rows.len(), 64]), device),
        init,
    )
}

fn fit(device: &Device) -> (Pca, Pca, KMeans) {
    let (x, init) = digits(device);
    let exact = PcaConfig::new(Components::Count(5))
        .solver(PcaSolver::Exact)
        .fit(&x)
        .unwrap();
    let randomized = PcaConfig::new(Components::Count(5))
        .solver(PcaSolver::Randomized)
        .fit(&x)
        .unwrap();
    let km = KMeansConfig::new(10)
        .init(KMeansInit::Centers(init))
        .fit(&x)
        .unwrap();
    (exact, randomized, km)
}

fn close(what: &str, a: &[f64], b: &[f64]) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let err = (x - y).abs() / x.abs().max(1.0);
        assert!(err <= 1e-3, "{what}[{i}]: flex {x} vs {y}");
    }
}

fn check(spec: &str) {
    let device = spec.parse::<DeviceSpec>().unwrap().device().unwrap();
    let (e_ref, r_ref, k_ref) = fit(&Device::flex());
    let (e, r, k) = fit(&device);
    let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    close(
        "exact explained variance",
        &e_ref.explained_variance,
        &e.explained_variance,
    );
    close(
        "exact components",
        &f64s(&e_ref.components),
        &f64s(&e.components),
    );
    close(
        "randomized explained variance",
        &r_ref.explained_variance,
        &r.explained_variance,
    );
    close(
        "randomized components",
        &f64s(&r_ref.components),
        &f64s(&r.components),
    );
    close("k-means inertia", &[k_ref.inertia], &[k.inertia]);
    close("k-means centres", &f64s(&k_ref.centers), &f64s(&k.centers));
    let agree = k_ref
        .labels
        .iter()
        .zip(&k.labels)
        .filter(|(a, b)| a == b)
        .count();
    assert!(
        agree as f64 >= 0.999 * k.labels.len() as f64,
        "{agree} labels agree"
    );
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_matches_flex() {
    check("ndarray");
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_matches_flex() {
    check("wgpu");
}
