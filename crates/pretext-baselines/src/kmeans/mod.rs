//! K-means clustering: k-means++ initialisation, Lloyd or Elkan iterations, mini-batch K-means
//! for large data, `n_init` restarts keeping the lowest inertia.
//!
//! Lloyd and mini-batch run on the data's device, distances as matrix products
//! (‖x‖² − 2x·c + ‖c‖²). On a CPU backend Lloyd runs instead as one fused pass per iteration
//! over the host's rows (`host_lloyd`). Elkan's triangle-inequality bounds are per-point
//! branching work, so it always runs on the host's threads.

mod elkan;
mod host_lloyd;
mod init;
mod kernel;
mod lloyd;
mod minibatch;
mod rows;

use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{BaselineError, Result};
use crate::input::{check_features, check_input, on_host, tensor, to_vec};
use crate::traits::{Fit, Predict, Transform};
use rows::{ByteRows, HostRows};

/// How iterations update the centres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KMeansAlgorithm {
    /// Assign every point, then move every centre to its points' mean.
    #[default]
    Lloyd,
    /// Lloyd's result with fewer distance computations, skipping those the triangle inequality
    /// rules out (Elkan, 2003).
    Elkan,
    /// Centres updated from random mini-batches (Sculley, 2010): approximate, for large data.
    MiniBatch,
}

/// How the first centres are chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KMeansInit {
    /// Greedy k-means++ (Arthur & Vassilvitskii, 2007), `2 + ln k` candidates per step, as
    /// scikit-learn does.
    KMeansPlusPlus,
    /// `k` distinct random rows.
    Random,
    /// Given centres, `[k, features]` row-major; `n_init` is then 1.
    Centers(Vec<f32>),
}

/// Configuration of [`KMeans`]. Defaults follow scikit-learn: k-means++, `n_init` 1, 300
/// iterations, `tol` 1e-4 (relative to the mean feature variance), Lloyd, mini-batches of 1,024
/// stopping after 10 batches without improvement, seed 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansConfig {
    pub k: usize,
    pub init: KMeansInit,
    pub n_init: usize,
    pub max_iter: usize,
    pub tol: f64,
    pub algorithm: KMeansAlgorithm,
    pub batch_size: usize,
    pub max_no_improvement: usize,
    pub seed: u64,
}

impl KMeansConfig {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            init: KMeansInit::KMeansPlusPlus,
            n_init: 1,
            max_iter: 300,
            tol: 1e-4,
            algorithm: KMeansAlgorithm::Lloyd,
            batch_size: 1024,
            max_no_improvement: 10,
            seed: 0,
        }
    }

    pub fn init(mut self, init: KMeansInit) -> Self {
        self.init = init;
        self
    }

    pub fn n_init(mut self, n_init: usize) -> Self {
        self.n_init = n_init;
        self
    }

    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }

    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    pub fn algorithm(mut self, algorithm: KMeansAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The initial centres the first run would start from (`[k, features]`, row-major), e.g. to
    /// start another implementation from the same place.
    pub fn initial_centers(&self, x: &Tensor<2>) -> Result<Vec<f32>> {
        self.check(x)?;
        let run_seed: u64 = ChaCha8Rng::seed_from_u64(self.seed).random();
        Ok(match &self.init {
            KMeansInit::Centers(c) => c.clone(),
            KMeansInit::Random => init::random(x, self.k, run_seed),
            KMeansInit::KMeansPlusPlus => {
                init::kmeans_plus_plus(x, &x.clone().square().sum_dim(1), self.k, run_seed)
            }
        })
    }

    /// The rows k-means++ would choose as the first run's centres.
    pub fn kmeans_plus_plus_rows(&self, x: &Tensor<2>) -> Result<Vec<u32>> {
        self.check(x)?;
        let run_seed: u64 = ChaCha8Rng::seed_from_u64(self.seed).random();
        let x_sq = x.clone().square().sum_dim(1);
        Ok(init::kmeans_plus_plus_rows(x, &x_sq, self.k, run_seed))
    }

    /// Validates the configuration against data `x`; returns its `[rows, features]`.
    fn check(&self, x: &Tensor<2>) -> Result<[usize; 2]> {
        self.validate()?;
        let [n, d] = check_input(x)?;
        if self.k > n {
            return Err(BaselineError::InvalidParam(format!(
                "k = {} exceeds the number of rows ({n})",
                self.k
            )));
        }
        Ok([n, d])
    }

    /// Checks what can be checked without data.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(BaselineError::InvalidParam(m.to_string()));
        if self.k == 0 {
            return bad("k (the number of clusters) must be at least 1");
        }
        if self.n_init == 0 {
            return bad("n_init must be at least 1");
        }
        if self.max_iter == 0 {
            return bad("max_iter must be at least 1");
        }
        if !(self.tol >= 0.0 && self.tol.is_finite()) {
            return bad("tol must be a finite number >= 0");
        }
        if self.algorithm == KMeansAlgorithm::MiniBatch && self.batch_size == 0 {
            return bad("batch_size must be at least 1");
        }
        Ok(())
    }
}

/// A fitted K-means model. Attributes as scikit-learn names them, without the trailing underscore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeans {
    /// `[k, features]`, row-major.
    pub centers: Vec<f32>,
    pub k: usize,
    pub n_features: usize,
    /// Cluster of each training row.
    pub labels: Vec<u32>,
    /// Sum of squared distances of training rows to their centre.
    pub inertia: f64,
    /// Iterations of the best run (mini-batch: batches).
    pub n_iter: usize,
}

/// The result of one run from one initialisation.
pub(crate) struct Run {
    pub centers: Vec<f32>,
    pub labels: Vec<u32>,
    pub inertia: f64,
    pub n_iter: usize,
}

impl Fit for KMeansConfig {
    type Fitted = KMeans;

    fn fit(&self, x: &Tensor<2>) -> Result<KMeans> {
        let [_, d] = self.check(x)?;
        let runs = match &self.init {
            KMeansInit::Centers(c) => {
                if c.len() != self.k * d {
                    return Err(BaselineError::ShapeMismatch(format!(
                        "initial centres hold {} values, expected k x features = {} x {d}",
                        c.len(),
                        self.k
                    )));
                }
                if let Some(i) = c.iter().position(|v| !v.is_finite()) {
                    return Err(BaselineError::NonFinite {
                        row: i / d,
                        column: i % d,
                        value: c[i],
                    });
                }
                1
            }
            _ => self.n_init,
        };
        let host = on_host(&x.device());
        // The host's copy of the rows, made once for every restart of the host paths.
        let needs_rows = self.algorithm == KMeansAlgorithm::Elkan
            || (host && self.algorithm == KMeansAlgorithm::Lloyd);
        // Host Lloyd reads the rows once per iteration: a byte per value, where the data allows
        // it exactly, is a quarter of the memory traffic.
        let bytes = (host && self.algorithm == KMeansAlgorithm::Lloyd)
            .then(|| ByteRows::from_tensor(x))
            .flatten();
        let values = if needs_rows && bytes.is_none() {
            to_vec(x)
        } else {
            Vec::new()
        };
        let rows = HostRows { values: &values, d };
        // Row norms `[n, 1]`, for the device paths and k-means++ only.
        let x_sq = std::cell::OnceCell::new();
        let x_sq = || x_sq.get_or_init(|| x.clone().square().sum_dim(1));
        // scikit-learn's tolerance is relative to the data's scale.
        let tol = if self.tol > 0.0 && needs_rows {
            self.tol
                * match &bytes {
                    Some(bytes) => host_lloyd::mean_feature_variance(bytes),
                    None => host_lloyd::mean_feature_variance(&rows),
                }
        } else if self.tol > 0.0 {
            self.tol * mean_feature_variance(x)
        } else {
            0.0
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut best: Option<Run> = None;
        for _ in 0..runs {
            let run_seed: u64 = rng.random();
            let centers = match &self.init {
                KMeansInit::Centers(c) => c.clone(),
                KMeansInit::Random => init::random(x, self.k, run_seed),
                KMeansInit::KMeansPlusPlus => init::kmeans_plus_plus(x, x_sq(), self.k, run_seed),
            };
            let run = match self.algorithm {
                KMeansAlgorithm::Lloyd if host => match &bytes {
                    Some(bytes) => host_lloyd::run(bytes, centers, self.max_iter, tol),
                    None => host_lloyd::run(&rows, centers, self.max_iter, tol),
                },
                KMeansAlgorithm::Lloyd => lloyd::run(x, x_sq(), centers, self.max_iter, tol),
                KMeansAlgorithm::Elkan => elkan::run(rows, centers, self.k, self.max_iter, tol),
                KMeansAlgorithm::MiniBatch => minibatch::run(x, x_sq(), centers, self, run_seed),
            };
            if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
                best = Some(run);
            }
        }
        let best = best.expect("at least one run");
        Ok(KMeans {
            centers: best.centers,
            k: self.k,
            n_features: d,
            labels: best.labels,
            inertia: best.inertia,
            n_iter: best.n_iter,
        })
    }
}

fn mean_feature_variance(x: &Tensor<2>) -> f64 {
    let [_, d] = x.dims();
    let var: f32 = x.clone().var_bias(0).sum().into_scalar();
    var as f64 / d as f64
}

/// Squared distances `[n, k]` from rows of `x` to rows of `centers`, as matrix products, clamped
/// at zero against rounding.
pub(crate) fn squared_distances(x: &Tensor<2>, x_sq: &Tensor<2>, centers: &Tensor<2>) -> Tensor<2> {
    let c_sq = centers.clone().square().sum_dim(1).transpose(); // [1, k]
    let cross = x.clone().matmul(centers.clone().transpose()); // [n, k]
    (x_sq.clone() + c_sq - cross * 2.0).clamp_min(0.0)
}

/// Nearest centre of every row, as host labels.
pub(crate) fn assign(x: &Tensor<2>, x_sq: &Tensor<2>, centers: &Tensor<2>) -> Vec<u32> {
    labels_of(squared_distances(x, x_sq, centers).argmin(1))
}

pub(crate) fn labels_of(t: Tensor<2, Int>) -> Vec<u32> {
    t.into_data()
        .try_into_vec_as::<i64>()
        .expect("int tensors convert to i64")
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

/// Labels as an `[n]` int tensor on `x`'s device.
pub(crate) fn labels_tensor(labels: &[u32], x: &Tensor<2>) -> Tensor<1, Int> {
    let values: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(values, [labels.len()]), &x.device())
}

/// Sum of squared distances of rows to their assigned centre: direct differences on the device
/// (no cancellation), summed in f64 on the host.
pub(crate) fn inertia(x: &Tensor<2>, centers: &Tensor<2>, labels: &[u32]) -> f64 {
    let assigned = centers.clone().select(0, labels_tensor(labels, x));
    to_vec(&(x.clone() - assigned).square().sum_dim(1))
        .into_iter()
        .map(f64::from)
        .sum()
}

/// Clusters that received no rows.
pub(crate) fn empty_clusters(counts: &[f64]) -> Vec<usize> {
    (0..counts.len()).filter(|&j| counts[j] == 0.0).collect()
}

/// Re-seeds each cluster of `empty` with one of `farthest`, given as (its cluster, its values)
/// from the farthest row from its own centre down, taking the row out of its old cluster's sum
/// as scikit-learn does.
pub(crate) fn reseed_empty(
    sums: &mut [f64],
    counts: &mut [f64],
    empty: &[usize],
    farthest: &[(usize, &[f32])],
) {
    let d = sums.len() / counts.len();
    for (&j, &(old, row)) in empty.iter().zip(farthest) {
        if counts[old] > 1.0 {
            for (s, v) in sums[old * d..(old + 1) * d].iter_mut().zip(row) {
                *s -= *v as f64;
            }
            counts[old] -= 1.0;
        }
        for (s, v) in sums[j * d..(j + 1) * d].iter_mut().zip(row) {
            *s = *v as f64;
        }
        counts[j] = 1.0;
    }
}

/// Cluster means `[k, d]` from per-cluster sums and counts.
pub(crate) fn means(sums: &[f64], counts: &[f64]) -> Vec<f32> {
    let d = sums.len() / counts.len();
    sums.chunks_exact(d)
        .zip(counts)
        .flat_map(|(s, c)| s.iter().map(move |v| (v / c.max(1.0)) as f32))
        .collect()
}

impl KMeans {
    fn centers_t(&self, x: &Tensor<2>) -> Tensor<2> {
        tensor(self.centers.clone(), self.k, self.n_features, &x.device())
    }
}

impl Predict for KMeans {
    fn predict(&self, x: &Tensor<2>) -> Result<Vec<u32>> {
        check_features(x, self.n_features)?;
        let x_sq = x.clone().square().sum_dim(1);
        Ok(assign(x, &x_sq, &self.centers_t(x)))
    }
}

impl Transform for KMeans {
    /// Euclidean distance of each row to each centre, `[rows, k]`.
    fn transform(&self, x: &Tensor<2>) -> Result<Tensor<2>> {
        check_features(x, self.n_features)?;
        let x_sq = x.clone().square().sum_dim(1);
        Ok(squared_distances(x, &x_sq, &self.centers_t(x)).sqrt())
    }
}
