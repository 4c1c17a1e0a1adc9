//! The clustering probe: K-means with one cluster per class on the features, scored against the
//! labels by Hungarian-matched accuracy, NMI and ARI.

use burn::tensor::{Device, Tensor, TensorData};
use pretext_baselines::metrics::{ari, hungarian_accuracy, nmi};
use pretext_baselines::{Fit, KMeansAlgorithm, KMeansConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// How well K-means clusters of the features match the classes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClusterScores {
    pub accuracy: f64,
    pub nmi: f64,
    pub ari: f64,
    pub inertia: f64,
}

/// K-means (k-means++ with `n_init` restarts, Elkan) on `features` (`rows x dim`) with
/// `classes` clusters, scored against `labels`.
pub fn cluster_probe(
    features: &[f32],
    labels: &[u32],
    dim: usize,
    classes: usize,
    n_init: usize,
    seed: u64,
    device: &Device,
) -> Result<ClusterScores> {
    let rows = labels.len();
    if dim == 0 || features.len() != rows * dim {
        return Err(TrainError::config(format!(
            "cluster probe: {} feature values do not make {rows} rows of {dim}",
            features.len()
        )));
    }
    let x = Tensor::<2>::from_data(TensorData::new(features.to_vec(), [rows, dim]), device);
    let fitted = KMeansConfig::new(classes)
        .n_init(n_init)
        .algorithm(KMeansAlgorithm::Elkan)
        .seed(seed)
        .fit(&x)?;
    Ok(ClusterScores {
        accuracy: hungarian_accuracy(labels, &fitted.labels)?,
        nmi: nmi(labels, &fitted.labels)?,
        ari: ari(labels, &fitted.labels)?,
        inertia: fitted.inertia,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_separated_classes_are_recovered() {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..60u32 {
            let class = i % 3;
            let jitter = (i * 37 % 11) as f32 / 100.0;
            features.extend([class as f32 * 10.0 + jitter, -(class as f32) * 5.0 - jitter]);
            labels.push(class);
        }
        let s = cluster_probe(&features, &labels, 2, 3, 3, 0, &Device::flex()).unwrap();
        assert_eq!((s.accuracy, s.nmi, s.ari), (1.0, 1.0, 1.0));
        assert!(cluster_probe(&features[1..], &labels, 2, 3, 3, 0, &Device::flex()).is_err());
    }
}
