//! Gaussian mixture models fitted by expectation-maximisation, as scikit-learn's
//! `GaussianMixture`: full or diagonal covariances, the same initialisations, the same
//! regularisation of the covariances and the same stopping rule (the change of the mean
//! log-likelihood per row below `tol`), `n_init` restarts keeping the highest likelihood.
//!
//! Everything runs on the host in f64 (faer's matrix products and Cholesky factors): a mixture
//! is fitted on tens of features (a PCA projection, say), where f32 log-densities would lose the
//! digits that decide convergence.

use faer::{Mat, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use burn::tensor::Tensor;

use crate::error::{BaselineError, Result};
use crate::input::{check_features, check_input, to_vec};
use crate::kmeans::KMeansConfig;
use crate::traits::{Fit, Predict};

/// The shape of each component's covariance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CovarianceType {
    /// A full `features x features` matrix per component.
    #[default]
    Full,
    /// Independent features: a variance per feature and component.
    Diag,
}

/// Where EM starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GmmInit {
    /// Responsibilities from a K-means fit (k-means++ start, one run), scikit-learn's default
    /// `init_params="kmeans"`.
    KMeans,
    /// Each component starts at one row chosen by k-means++, with only the regularisation as
    /// its covariance (scikit-learn's `init_params="k-means++"`).
    KMeansPlusPlus,
    /// Given weights `[k]`, means `[k, features]` and covariances (`[k, features, features]`
    /// for full, `[k, features]` for diagonal), row-major; `n_init` is then 1.
    Parameters {
        weights: Vec<f64>,
        means: Vec<f64>,
        covariances: Vec<f64>,
    },
}

/// Configuration of [`GaussianMixture`]. Defaults follow scikit-learn: full covariances, `tol`
/// 1e-3, `reg_covar` 1e-6, 100 iterations, one initialisation from K-means, seed 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianMixtureConfig {
    pub k: usize,
    pub covariance: CovarianceType,
    pub tol: f64,
    /// Added to the diagonal of every covariance, so each stays positive definite.
    pub reg_covar: f64,
    pub max_iter: usize,
    pub n_init: usize,
    pub init: GmmInit,
    pub seed: u64,
}

impl GaussianMixtureConfig {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            covariance: CovarianceType::Full,
            tol: 1e-3,
            reg_covar: 1e-6,
            max_iter: 100,
            n_init: 1,
            init: GmmInit::KMeans,
            seed: 0,
        }
    }

    pub fn covariance(mut self, covariance: CovarianceType) -> Self {
        self.covariance = covariance;
        self
    }

    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    pub fn reg_covar(mut self, reg_covar: f64) -> Self {
        self.reg_covar = reg_covar;
        self
    }

    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }

    pub fn n_init(mut self, n_init: usize) -> Self {
        self.n_init = n_init;
        self
    }

    pub fn init(mut self, init: GmmInit) -> Self {
        self.init = init;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks what can be checked without data.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(BaselineError::InvalidParam(m.to_string()));
        if self.k == 0 {
            return bad("k (the number of components) must be at least 1");
        }
        if self.n_init == 0 || self.max_iter == 0 {
            return bad("n_init and max_iter must be at least 1");
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return bad("tol must be a finite number >= 0");
        }
        if !(self.reg_covar.is_finite() && self.reg_covar >= 0.0) {
            return bad("reg_covar must be a finite number >= 0");
        }
        Ok(())
    }
}

/// A fitted mixture. Attributes as scikit-learn names them, without the trailing underscore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianMixture {
    pub k: usize,
    pub n_features: usize,
    pub covariance: CovarianceType,
    /// `[k]`, summing to 1.
    pub weights: Vec<f64>,
    /// `[k, features]`, row-major.
    pub means: Vec<f64>,
    /// `[k, features, features]` (full) or `[k, features]` (diagonal), row-major.
    pub covariances: Vec<f64>,
    /// The mean log-likelihood per row of the training data at the last E-step.
    pub lower_bound: f64,
    pub n_iter: usize,
    pub converged: bool,
    /// Component of each training row (the most probable).
    pub labels: Vec<u32>,
}

/// The parameters during EM, with each component's precision factor: `P` with `P Pᵀ` the
/// inverse covariance (full), or the inverse standard deviations (diagonal).
struct Params {
    weights: Vec<f64>,
    means: Mat<f64>,
    covariances: Vec<f64>,
    precision_factors: Vec<Mat<f64>>,
}

impl Fit for GaussianMixtureConfig {
    type Fitted = GaussianMixture;

    fn fit(&self, x: &Tensor<2>) -> Result<GaussianMixture> {
        self.validate()?;
        let [n, d] = check_input(x)?;
        if self.k > n {
            return Err(BaselineError::InvalidParam(format!(
                "k = {} exceeds the number of rows ({n})",
                self.k
            )));
        }
        let values = to_vec(x);
        let rows = Mat::from_fn(n, d, |i, j| values[i * d + j] as f64);
        let runs = if matches!(self.init, GmmInit::Parameters { .. }) {
            1
        } else {
            self.n_init
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut best: Option<GaussianMixture> = None;
        for _ in 0..runs {
            let run_seed: u64 = rng.random();
            let params = self.initial(x, &rows, run_seed)?;
            let fitted = self.em(&rows, params)?;
            if best
                .as_ref()
                .is_none_or(|b| fitted.lower_bound > b.lower_bound)
            {
                best = Some(fitted);
            }
        }
        best.ok_or(BaselineError::EmptyInput)
    }
}

impl GaussianMixtureConfig {
    /// The starting parameters of one run.
    fn initial(&self, x: &Tensor<2>, rows: &Mat<f64>, seed: u64) -> Result<Params> {
        let (n, d, k) = (rows.nrows(), rows.ncols(), self.k);
        let one_hot =
            |labels: &[u32]| Mat::from_fn(n, k, |i, j| (labels[i] as usize == j) as u8 as f64);
        match &self.init {
            GmmInit::KMeans => {
                let fitted = KMeansConfig::new(k).seed(seed).fit(x)?;
                self.m_step(rows, &one_hot(&fitted.labels))
            }
            GmmInit::KMeansPlusPlus => {
                // The rows k-means++ picks, each the sole member of its component.
                let chosen = KMeansConfig::new(k).seed(seed).kmeans_plus_plus_rows(x)?;
                let mut resp = Mat::<f64>::zeros(n, k);
                for (j, &i) in chosen.iter().enumerate() {
                    resp[(i as usize, j)] = 1.0;
                }
                self.m_step(rows, &resp)
            }
            GmmInit::Parameters {
                weights,
                means,
                covariances,
            } => {
                let per = match self.covariance {
                    CovarianceType::Full => d * d,
                    CovarianceType::Diag => d,
                };
                if weights.len() != k || means.len() != k * d || covariances.len() != k * per {
                    return Err(BaselineError::ShapeMismatch(format!(
                        "initial parameters hold {} weights, {} mean values and {} covariance \
                         values; expected {k}, {} and {}",
                        weights.len(),
                        means.len(),
                        covariances.len(),
                        k * d,
                        k * per
                    )));
                }
                let means = Mat::from_fn(k, d, |j, c| means[j * d + c]);
                let precision_factors = self.precision_factors(covariances, d)?;
                Ok(Params {
                    weights: weights.clone(),
                    means,
                    covariances: covariances.clone(),
                    precision_factors,
                })
            }
        }
    }

    /// EM from `params` until the mean log-likelihood changes by less than `tol`.
    fn em(&self, rows: &Mat<f64>, mut params: Params) -> Result<GaussianMixture> {
        let mut lower_bound = f64::NEG_INFINITY;
        let mut converged = false;
        let mut n_iter = 0;
        for iteration in 1..=self.max_iter {
            n_iter = iteration;
            let previous = lower_bound;
            let (mean_log_likelihood, resp) = self.e_step(rows, &params);
            params = self.m_step(rows, &resp)?;
            lower_bound = mean_log_likelihood;
            if (lower_bound - previous).abs() < self.tol {
                converged = true;
                break;
            }
        }
        // A last E-step, so the labels agree with the returned parameters.
        let (_, resp) = self.e_step(rows, &params);
        let labels = argmax_rows(&resp);
        let (k, d) = (self.k, rows.ncols());
        Ok(GaussianMixture {
            k,
            n_features: d,
            covariance: self.covariance,
            weights: params.weights,
            means: (0..k * d).map(|i| params.means[(i / d, i % d)]).collect(),
            covariances: params.covariances,
            lower_bound,
            n_iter,
            converged,
            labels,
        })
    }

    /// The mean log-likelihood and the responsibilities `[n, k]`.
    fn e_step(&self, rows: &Mat<f64>, params: &Params) -> (f64, Mat<f64>) {
        let mut log_resp = weighted_log_prob(rows, params, self.covariance);
        let n = rows.nrows();
        let mut total = 0.0;
        for i in 0..n {
            let norm = log_sum_exp((0..self.k).map(|j| log_resp[(i, j)]));
            total += norm;
            for j in 0..self.k {
                log_resp[(i, j)] = (log_resp[(i, j)] - norm).exp();
            }
        }
        (total / n as f64, log_resp)
    }

    /// Weights, means and covariances from responsibilities `resp` `[n, k]`.
    fn m_step(&self, rows: &Mat<f64>, resp: &Mat<f64>) -> Result<Params> {
        let (n, d, k) = (rows.nrows(), rows.ncols(), self.k);
        // scikit-learn adds ten machine epsilons so an empty component divides safely.
        let counts: Vec<f64> = (0..k)
            .map(|j| (0..n).map(|i| resp[(i, j)]).sum::<f64>() + 10.0 * f64::EPSILON)
            .collect();
        let sums = resp.transpose() * rows; // [k, d]
        let means = Mat::from_fn(k, d, |j, c| sums[(j, c)] / counts[j]);
        let covariances = match self.covariance {
            CovarianceType::Full => {
                let mut out = Vec::with_capacity(k * d * d);
                for j in 0..k {
                    let centred = Mat::from_fn(n, d, |i, c| rows[(i, c)] - means[(j, c)]);
                    let weighted = Mat::from_fn(n, d, |i, c| resp[(i, j)] * centred[(i, c)]);
                    let cov = weighted.transpose() * &centred;
                    for a in 0..d {
                        for b in 0..d {
                            let reg = if a == b { self.reg_covar } else { 0.0 };
                            out.push(cov[(a, b)] / counts[j] + reg);
                        }
                    }
                }
                out
            }
            CovarianceType::Diag => {
                let squares = Mat::from_fn(n, d, |i, c| rows[(i, c)] * rows[(i, c)]);
                let sum_sq = resp.transpose() * &squares; // [k, d]
                let mut out = Vec::with_capacity(k * d);
                for j in 0..k {
                    for c in 0..d {
                        let m = means[(j, c)];
                        // E[x²] − 2 m E[x] + m², as scikit-learn writes it.
                        let avg_x2 = sum_sq[(j, c)] / counts[j];
                        let avg_x_m = m * sums[(j, c)] / counts[j];
                        out.push(avg_x2 - 2.0 * avg_x_m + m * m + self.reg_covar);
                    }
                }
                out
            }
        };
        let total: f64 = counts.iter().sum();
        Ok(Params {
            weights: counts.iter().map(|c| c / total).collect(),
            precision_factors: self.precision_factors(&covariances, d)?,
            means,
            covariances,
        })
    }

    /// Each component's precision factor, with a clear error for a covariance that is not
    /// positive definite.
    fn precision_factors(&self, covariances: &[f64], d: usize) -> Result<Vec<Mat<f64>>> {
        let singular = || {
            BaselineError::Numerical(
                "a component's covariance is not positive definite (collapsed onto too few \
                 rows); raise reg_covar or scale the features"
                    .into(),
            )
        };
        match self.covariance {
            CovarianceType::Full => covariances
                .chunks_exact(d * d)
                .map(|c| {
                    let cov = Mat::from_fn(d, d, |a, b| c[a * d + b]);
                    let llt = cov.llt(Side::Lower).map_err(|_| singular())?;
                    // L⁻¹ from L X = I; the factor is its transpose, so P Pᵀ = Σ⁻¹.
                    let mut inverse = Mat::<f64>::identity(d, d);
                    llt.L().solve_lower_triangular_in_place(inverse.as_mut());
                    Ok(inverse.transpose().to_owned())
                })
                .collect(),
            CovarianceType::Diag => covariances
                .chunks_exact(d)
                .map(|v| {
                    if !v.iter().all(|&s| s.is_finite() && s > 0.0) {
                        return Err(singular());
                    }
                    Ok(Mat::from_fn(1, d, |_, c| 1.0 / v[c].sqrt()))
                })
                .collect(),
        }
    }
}

/// `log(weight_j) + log N(x_i | mean_j, cov_j)` for every row and component, `[n, k]`.
fn weighted_log_prob(rows: &Mat<f64>, params: &Params, covariance: CovarianceType) -> Mat<f64> {
    let (n, d) = (rows.nrows(), rows.ncols());
    let k = params.weights.len();
    let constant = d as f64 * (2.0 * std::f64::consts::PI).ln();
    let mut out = Mat::<f64>::zeros(n, k);
    for j in 0..k {
        let factor = &params.precision_factors[j];
        let (squared, log_det): (Vec<f64>, f64) = match covariance {
            CovarianceType::Full => {
                // y = (x − μ) P, and the Mahalanobis distance is |y|².
                let centred = Mat::from_fn(n, d, |i, c| rows[(i, c)] - params.means[(j, c)]);
                let y = &centred * factor;
                let squared = (0..n)
                    .map(|i| (0..d).map(|c| y[(i, c)] * y[(i, c)]).sum())
                    .collect();
                let log_det = (0..d).map(|c| factor[(c, c)].ln()).sum();
                (squared, log_det)
            }
            CovarianceType::Diag => {
                let squared = (0..n)
                    .map(|i| {
                        (0..d)
                            .map(|c| {
                                let z = (rows[(i, c)] - params.means[(j, c)]) * factor[(0, c)];
                                z * z
                            })
                            .sum()
                    })
                    .collect();
                let log_det = (0..d).map(|c| factor[(0, c)].ln()).sum();
                (squared, log_det)
            }
        };
        let log_weight = params.weights[j].ln();
        for (i, s) in squared.into_iter().enumerate() {
            out[(i, j)] = -0.5 * (constant + s) + log_det + log_weight;
        }
    }
    out
}

fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

fn argmax_rows(m: &Mat<f64>) -> Vec<u32> {
    (0..m.nrows())
        .map(|i| {
            (0..m.ncols())
                .fold((0, f64::NEG_INFINITY), |(best, v), j| {
                    if m[(i, j)] > v {
                        (j, m[(i, j)])
                    } else {
                        (best, v)
                    }
                })
                .0 as u32
        })
        .collect()
}

impl GaussianMixture {
    fn params(&self) -> Params {
        let (k, d) = (self.k, self.n_features);
        let config = GaussianMixtureConfig::new(k).covariance(self.covariance);
        Params {
            weights: self.weights.clone(),
            means: Mat::from_fn(k, d, |j, c| self.means[j * d + c]),
            covariances: self.covariances.clone(),
            // The covariances were positive definite when fitted.
            precision_factors: config
                .precision_factors(&self.covariances, d)
                .unwrap_or_default(),
        }
    }

    fn host_rows(&self, x: &Tensor<2>) -> Result<Mat<f64>> {
        let n = check_features(x, self.n_features)?;
        let d = self.n_features;
        let values = to_vec(x);
        Ok(Mat::from_fn(n, d, |i, c| values[i * d + c] as f64))
    }

    /// Each row's probability of each component, `[rows, k]` row-major.
    pub fn predict_proba(&self, x: &Tensor<2>) -> Result<Vec<f64>> {
        let rows = self.host_rows(x)?;
        let config = GaussianMixtureConfig::new(self.k).covariance(self.covariance);
        let (_, resp) = config.e_step(&rows, &self.params());
        Ok((0..rows.nrows() * self.k)
            .map(|i| resp[(i / self.k, i % self.k)])
            .collect())
    }

    /// The mean log-likelihood per row of `x` (scikit-learn's `score`).
    pub fn score(&self, x: &Tensor<2>) -> Result<f64> {
        let rows = self.host_rows(x)?;
        let config = GaussianMixtureConfig::new(self.k).covariance(self.covariance);
        Ok(config.e_step(&rows, &self.params()).0)
    }
}

impl Predict for GaussianMixture {
    fn predict(&self, x: &Tensor<2>) -> Result<Vec<u32>> {
        let rows = self.host_rows(x)?;
        Ok(argmax_rows(&weighted_log_prob(
            &rows,
            &self.params(),
            self.covariance,
        )))
    }
}
