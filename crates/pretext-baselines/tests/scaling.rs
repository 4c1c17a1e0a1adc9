//! Scaling against scikit-learn's StandardScaler and MinMaxScaler on the wine table
//! (tests/fixtures/scaling.json, made by make_scaling.py beside it), and what it does for
//! K-means there.

use burn::tensor::{Device, Tensor, TensorData};
use pretext_baselines::metrics::nmi;
use pretext_baselines::{BaselineError, Fit, KMeansConfig, Scaling, Transform};
mod common;

use common::{fixture, matrix, matrix_tensor};

#[test]
fn scalers_match_scikit_learns_and_make_k_means_find_the_wines() {
    let f = fixture("scaling.json");
    let x = matrix_tensor(&f["x"]);
    let truth: Vec<u32> = f["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    for (name, scaling) in [
        ("none", Scaling::None),
        ("standard", Scaling::Standard),
        ("minmax", Scaling::MinMax),
    ] {
        let scaled = scaling.fit(&x).unwrap().transform(&x).unwrap();
        if scaling != Scaling::None {
            let (want, _, _) = matrix(&f[name]);
            let got = scaled.to_data().try_into_vec_as::<f32>().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-4 * w.abs().max(1.0),
                    "{name}: {g} vs {w}"
                );
            }
        }
        let labels = KMeansConfig::new(3).n_init(10).fit(&scaled).unwrap().labels;
        let ours = nmi(&truth, &labels).unwrap();
        let theirs = f[format!("kmeans_nmi_{name}")].as_f64().unwrap();
        assert!(
            (ours - theirs).abs() < 0.03,
            "{name}: NMI {ours} vs {theirs}"
        );
    }
}

#[test]
fn constant_columns_stay_finite_and_new_rows_use_the_training_statistics() {
    let device = Device::flex();
    let train = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 5.0, 3.0, 5.0, 5.0, 5.0], [3, 2]),
        &device,
    );
    for scaling in [Scaling::Standard, Scaling::MinMax] {
        let scaler = scaling.fit(&train).unwrap();
        let out = scaler
            .transform(&train)
            .unwrap()
            .to_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert!(out.iter().all(|v| v.is_finite()), "{scaling:?}: {out:?}");
        assert_eq!(
            [out[1], out[3], out[5]],
            [0.0; 3],
            "{scaling:?}: constant column"
        );
        let new = Tensor::<2>::from_data(TensorData::new(vec![5.0f32, 5.0], [1, 2]), &device);
        let v = scaler
            .transform(&new)
            .unwrap()
            .to_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let want = if scaling == Scaling::MinMax {
            1.0
        } else {
            (5.0 - 3.0) / (8.0f32 / 3.0).sqrt()
        };
        assert!((v[0] - want).abs() < 1e-5, "{scaling:?}: {v:?}");
        let narrow = Tensor::<2>::zeros([1, 3], &device);
        assert!(matches!(
            scaler.transform(&narrow),
            Err(BaselineError::ShapeMismatch(_))
        ));
    }
}
