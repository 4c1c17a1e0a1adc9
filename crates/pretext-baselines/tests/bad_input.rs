//! Every invalid parameter and bad input is a clear error, never a panic: one test each.

use burn::tensor::{Device, Tensor, TensorData};
use pretext_baselines::{
    BaselineError, Components, Fit, KMeansConfig, KMeansInit, PcaConfig, PcaSolver, Predict,
};

fn x(values: Vec<f32>, rows: usize, cols: usize) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), &Device::flex())
}

fn grid() -> Tensor<2> {
    x((0..24).map(|v| (v * v % 7) as f32).collect(), 8, 3)
}

fn invalid(err: BaselineError, needle: &str) {
    let msg = err.to_string();
    assert!(msg.contains(needle), "'{msg}' should mention '{needle}'");
}

#[test]
fn k_zero() {
    invalid(KMeansConfig::new(0).fit(&grid()).unwrap_err(), "at least 1");
}

#[test]
fn k_larger_than_rows() {
    invalid(
        KMeansConfig::new(9).fit(&grid()).unwrap_err(),
        "k = 9 exceeds the number of rows (8)",
    );
}

#[test]
fn n_init_zero() {
    invalid(
        KMeansConfig::new(2).n_init(0).fit(&grid()).unwrap_err(),
        "n_init",
    );
}

#[test]
fn max_iter_zero() {
    invalid(
        KMeansConfig::new(2).max_iter(0).fit(&grid()).unwrap_err(),
        "max_iter",
    );
}

#[test]
fn negative_or_nan_tolerance() {
    invalid(
        KMeansConfig::new(2).tol(-1.0).fit(&grid()).unwrap_err(),
        "tol",
    );
    invalid(
        KMeansConfig::new(2).tol(f64::NAN).fit(&grid()).unwrap_err(),
        "tol",
    );
}

#[test]
fn initial_centres_of_the_wrong_shape() {
    let err = KMeansConfig::new(2)
        .init(KMeansInit::Centers(vec![0.0; 5]))
        .fit(&grid())
        .unwrap_err();
    invalid(err, "2 x 3");
}

#[test]
fn n_components_zero() {
    invalid(
        PcaConfig::new(Components::Count(0))
            .fit(&grid())
            .unwrap_err(),
        "at least 1",
    );
}

#[test]
fn n_components_above_min_rows_features() {
    invalid(
        PcaConfig::new(Components::Count(4))
            .fit(&grid())
            .unwrap_err(),
        "min(8, 3)",
    );
}

#[test]
fn variance_fraction_outside_0_1() {
    invalid(
        PcaConfig::new(Components::Variance(1.5))
            .fit(&grid())
            .unwrap_err(),
        "(0, 1]",
    );
    let err = PcaConfig::new(Components::Variance(0.9))
        .solver(PcaSolver::Randomized)
        .fit(&grid())
        .unwrap_err();
    invalid(err, "exact solver");
}

#[test]
fn nan_is_located() {
    let mut v = vec![1.0; 12];
    v[7] = f32::NAN;
    let err = KMeansConfig::new(2).fit(&x(v, 4, 3)).unwrap_err();
    assert!(
        matches!(
            err,
            BaselineError::NonFinite {
                row: 2,
                column: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn infinity_is_located() {
    let mut v = vec![1.0; 12];
    v[11] = f32::INFINITY;
    let err = PcaConfig::new(Components::Count(1))
        .fit(&x(v, 4, 3))
        .unwrap_err();
    invalid(err, "row 3, column 2");
}

#[test]
fn empty_table() {
    let empty = x(vec![], 0, 3);
    assert_eq!(
        KMeansConfig::new(1).fit(&empty).unwrap_err(),
        BaselineError::EmptyInput
    );
    assert_eq!(
        PcaConfig::new(Components::Count(1))
            .fit(&empty)
            .unwrap_err(),
        BaselineError::EmptyInput
    );
}

#[test]
fn constant_column_is_fine_and_reported() {
    let v: Vec<f32> = (0..8)
        .flat_map(|i| [i as f32, 5.0, (i * i) as f32])
        .collect();
    let pca = PcaConfig::new(Components::Count(2))
        .fit(&x(v, 8, 3))
        .unwrap();
    assert_eq!(pca.constant_features, vec![1]);
    assert!(pca.explained_variance.iter().all(|v| v.is_finite()));
}

#[test]
fn wrong_feature_count_at_predict() {
    let km = KMeansConfig::new(2).fit(&grid()).unwrap();
    invalid(
        km.predict(&x(vec![0.0; 4], 2, 2)).unwrap_err(),
        "fitted on 3 features",
    );
}

#[test]
fn empty_cluster_is_reseeded_with_the_farthest_point() {
    use pretext_baselines::KMeansAlgorithm;
    // The centre at 100 attracts no row; it must be re-seeded (with 12, the farthest row from
    // its centre) rather than left empty.
    let data = x(vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0], 6, 1);
    let fit = |algorithm| {
        KMeansConfig::new(3)
            .init(KMeansInit::Centers(vec![0.0, 1.0, 100.0]))
            .algorithm(algorithm)
            .fit(&data)
            .unwrap()
    };
    let lloyd = fit(KMeansAlgorithm::Lloyd);
    let elkan = fit(KMeansAlgorithm::Elkan);
    for km in [&lloyd, &elkan] {
        for c in 0..3 {
            assert!(
                km.labels.contains(&c),
                "cluster {c} is empty: {:?}",
                km.labels
            );
        }
        assert!(km.centers.iter().all(|c| *c <= 12.0), "{:?}", km.centers);
    }
    assert_eq!(lloyd.labels, elkan.labels);
    assert!((lloyd.inertia - elkan.inertia).abs() < 1e-4);
}
