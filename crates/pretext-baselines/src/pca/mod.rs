//! Principal component analysis: exact (an eigendecomposition of the covariance or Gram matrix,
//! whichever is smaller) or randomized (Halko, Martinsson & Tropp, 2011).
//!
//! Fitted attributes follow scikit-learn's names. Components are sign-normalised so that the
//! entry of largest magnitude in each is positive, which makes results comparable across solvers
//! and libraries (scikit-learn flips signs by a different rule, so compare up to sign).

mod exact;
mod randomized;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{BaselineError, Result};
use crate::input::{check_features, check_input, tensor, to_vec};
use crate::traits::{Fit, InverseTransform, Transform};

/// How many components to keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Components {
    /// Exactly this many.
    Count(usize),
    /// The fewest components whose explained-variance ratio reaches this fraction, in (0, 1].
    Variance(f64),
}

/// Which algorithm computes the decomposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PcaSolver {
    /// scikit-learn's rule: exact when rows outnumber at most 1,000 features tenfold, for small
    /// inputs or a variance fraction; randomized when fewer than 80% of min(rows, features)
    /// components are asked of a larger input.
    #[default]
    Auto,
    Exact,
    Randomized,
}

/// Configuration of [`Pca`]; `n_components` is required. Defaults: `whiten` false, `solver`
/// auto, 10 oversamples, power iterations chosen as scikit-learn does (7 when fewer than 10% of
/// the possible components are asked, else 4), seed 0, covariance accumulated over chunks of
/// 8,192 rows so large inputs never need more than a chunk's extra copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaConfig {
    pub n_components: Components,
    pub whiten: bool,
    pub solver: PcaSolver,
    pub oversamples: usize,
    pub power_iterations: Option<usize>,
    pub seed: u64,
    pub chunk_rows: usize,
}

impl PcaConfig {
    pub fn new(n_components: Components) -> Self {
        Self {
            n_components,
            whiten: false,
            solver: PcaSolver::Auto,
            oversamples: 10,
            power_iterations: None,
            seed: 0,
            chunk_rows: 8192,
        }
    }

    pub fn whiten(mut self, whiten: bool) -> Self {
        self.whiten = whiten;
        self
    }

    pub fn solver(mut self, solver: PcaSolver) -> Self {
        self.solver = solver;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks what can be checked without data.
    pub fn validate(&self) -> Result<()> {
        match self.n_components {
            Components::Count(0) => Err(BaselineError::InvalidParam(
                "n_components must be at least 1".into(),
            )),
            Components::Variance(f) if !(f > 0.0 && f <= 1.0) => Err(BaselineError::InvalidParam(
                format!("a variance fraction must lie in (0, 1], got {f}"),
            )),
            Components::Variance(_) if self.solver == PcaSolver::Randomized => {
                Err(BaselineError::InvalidParam(
                    "a variance fraction needs the exact solver (it needs the whole spectrum)"
                        .into(),
                ))
            }
            _ if self.chunk_rows == 0 => Err(BaselineError::InvalidParam(
                "chunk_rows must be at least 1".into(),
            )),
            _ => Ok(()),
        }
    }

    fn resolve_solver(&self, n: usize, d: usize) -> PcaSolver {
        match (self.solver, self.n_components) {
            // Many rows, few features: the covariance is small and its exact eigendecomposition
            // beats a randomized sketch (scikit-learn's `covariance_eigh` rule).
            (PcaSolver::Auto, _) if d <= 1000 && n >= 10 * d => PcaSolver::Exact,
            (PcaSolver::Auto, Components::Count(k))
                if n.max(d) > 500 && (k as f64) < 0.8 * n.min(d) as f64 =>
            {
                PcaSolver::Randomized
            }
            (PcaSolver::Auto, _) => PcaSolver::Exact,
            (solver, _) => solver,
        }
    }
}

/// A spectrum and basis before truncation: singular values of the centred data (descending) and
/// the matching components, row-major `[len, features]`.
pub(crate) struct Spectrum {
    pub singular_values: Vec<f64>,
    pub components: Vec<f64>,
    /// Sum of all eigenvalues of the covariance, for the explained-variance ratio.
    pub total_variance: f64,
}

/// A fitted PCA. Attributes as scikit-learn names them, without the trailing underscore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    /// Per-feature mean of the training data.
    pub mean: Vec<f32>,
    /// `[n_components, n_features]`, row-major; each row has unit norm.
    pub components: Vec<f32>,
    pub explained_variance: Vec<f64>,
    pub explained_variance_ratio: Vec<f64>,
    pub singular_values: Vec<f64>,
    pub n_components: usize,
    pub n_features: usize,
    pub n_samples: usize,
    pub whiten: bool,
    /// Features with zero variance in the training data; harmless, reported for the user.
    pub constant_features: Vec<usize>,
    pub solver: PcaSolver,
}

impl Fit for PcaConfig {
    type Fitted = Pca;

    fn fit(&self, x: &Tensor<2>) -> Result<Pca> {
        self.validate()?;
        let [n, d] = check_input(x)?;
        let max_k = n.min(d);
        if let Components::Count(k) = self.n_components
            && k > max_k
        {
            return Err(BaselineError::InvalidParam(format!(
                "n_components {k} exceeds min(rows, features) = min({n}, {d})"
            )));
        }
        if n < 2 {
            return Err(BaselineError::InvalidParam(
                "PCA needs at least 2 rows".into(),
            ));
        }
        let mean_t = x.clone().mean_dim(0); // [1, d]
        let mean = to_vec(&mean_t);
        let variances = to_vec(&(x.clone() - mean_t.clone()).square().sum_dim(0));
        let constant_features = variances
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == 0.0)
            .map(|(i, _)| i)
            .collect();

        let solver = self.resolve_solver(n, d);
        let spectrum = match (solver, self.n_components) {
            (PcaSolver::Randomized, Components::Count(k)) => {
                let iters = self
                    .power_iterations
                    .unwrap_or(if (k as f64) < 0.1 * max_k as f64 {
                        7
                    } else {
                        4
                    });
                randomized::spectrum(x, &mean_t, k, self.oversamples, iters, self.seed)?
            }
            _ => exact::spectrum(x, &mean_t, self.chunk_rows)?,
        };

        let ratio_all: Vec<f64> = spectrum
            .singular_values
            .iter()
            .map(|s| s * s / (n as f64 - 1.0) / spectrum.total_variance.max(f64::MIN_POSITIVE))
            .collect();
        let k = match self.n_components {
            Components::Count(k) => k.min(spectrum.singular_values.len()),
            Components::Variance(f) => {
                let mut acc = 0.0;
                // Rounding can leave the sum a hair below 1; the last component then counts.
                ratio_all
                    .iter()
                    .position(|r| {
                        acc += r;
                        acc >= f - 1e-12
                    })
                    .map_or(ratio_all.len(), |i| i + 1)
            }
        };
        let mut components = spectrum.components[..k * d].to_vec();
        for row in components.chunks_exact_mut(d) {
            normalise_sign(row);
        }
        let singular_values = spectrum.singular_values[..k].to_vec();
        Ok(Pca {
            mean,
            components: components.iter().map(|&v| v as f32).collect(),
            explained_variance: singular_values
                .iter()
                .map(|s| s * s / (n as f64 - 1.0))
                .collect(),
            explained_variance_ratio: ratio_all[..k].to_vec(),
            singular_values,
            n_components: k,
            n_features: d,
            n_samples: n,
            whiten: self.whiten,
            constant_features,
            solver,
        })
    }
}

/// Flips `row` so that its entry of largest magnitude is positive.
fn normalise_sign(row: &mut [f64]) {
    let largest = row
        .iter()
        .copied()
        .fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
    if largest < 0.0 {
        row.iter_mut().for_each(|v| *v = -*v);
    }
}

impl Pca {
    fn components_t(&self, x: &Tensor<2>) -> Tensor<2> {
        tensor(
            self.components.clone(),
            self.n_components,
            self.n_features,
            &x.device(),
        )
    }

    fn mean_t(&self, x: &Tensor<2>) -> Tensor<2> {
        tensor(self.mean.clone(), 1, self.n_features, &x.device())
    }

    /// `1 / sqrt(explained variance)` per component, as a `[1, k]` tensor; 0 for a component
    /// without variance (beyond the data's rank), which whitening cannot scale to unit variance.
    fn whitening(&self, x: &Tensor<2>) -> Tensor<2> {
        let tiny = self.explained_variance.first().copied().unwrap_or(0.0) * 1e-10;
        let scale = self
            .explained_variance
            .iter()
            .map(|&v| {
                if v > tiny {
                    (1.0 / v.sqrt()) as f32
                } else {
                    0.0
                }
            })
            .collect();
        tensor(scale, 1, self.n_components, &x.device())
    }

    /// `sqrt(explained variance)` per component, undoing [`Pca::whitening`].
    fn unwhitening(&self, z: &Tensor<2>) -> Tensor<2> {
        let scale = self
            .explained_variance
            .iter()
            .map(|v| v.sqrt() as f32)
            .collect();
        tensor(scale, 1, self.n_components, &z.device())
    }

    /// Mean squared reconstruction error per row: `mean(||x - inverse(transform(x))||²)`.
    pub fn reconstruction_error(&self, x: &Tensor<2>) -> Result<f64> {
        let n = check_features(x, self.n_features)?;
        let back = self.inverse_transform(&self.transform(x)?)?;
        let err: f32 = (x.clone() - back).square().sum().into_scalar();
        Ok(err as f64 / n as f64)
    }

    /// Cumulative explained-variance ratio of the kept components.
    pub fn total_explained_variance_ratio(&self) -> f64 {
        self.explained_variance_ratio.iter().sum()
    }
}

impl Transform for Pca {
    /// `[rows, features]` → `[rows, n_components]`.
    fn transform(&self, x: &Tensor<2>) -> Result<Tensor<2>> {
        check_features(x, self.n_features)?;
        let z = (x.clone() - self.mean_t(x)).matmul(self.components_t(x).transpose());
        Ok(if self.whiten {
            z * self.whitening(x)
        } else {
            z
        })
    }
}

impl InverseTransform for Pca {
    /// `[rows, n_components]` → `[rows, features]`.
    fn inverse_transform(&self, z: &Tensor<2>) -> Result<Tensor<2>> {
        check_features(z, self.n_components)?;
        let z = if self.whiten {
            z.clone() * self.unwhitening(z)
        } else {
            z.clone()
        };
        let (components, mean) = (self.components_t(&z), self.mean_t(&z));
        Ok(z.matmul(components) + mean)
    }
}
