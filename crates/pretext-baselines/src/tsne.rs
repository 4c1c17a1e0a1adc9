//! t-SNE maps (van der Maaten and Hinton 2008) with scikit-learn's defaults: perplexity 30,
//! early exaggeration 12 for the first 250 of 1,000 iterations, momentum 0.5 then 0.8, the
//! learning rate `max(n / 12 / 4, 50)`, and the embedding started from the first two principal
//! components scaled to a standard deviation of 1e-4.
//!
//! The optimisation is the `bhtsne` crate's, with its Barnes-Hut (`theta` 0.5) or FFT-accelerated
//! (FIt-SNE, Linderman et al. 2019) repulsion. The `3 x perplexity` nearest neighbours that the
//! affinities need are found exactly, as matrix products on the data's device, so
//! high-dimensional features cost a few products rather than a tree search that degenerates
//! into a scan.

use bhtsne::{Neighbor, tSNE};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{BaselineError, Result};
use crate::input::{check_input, to_vec};
use crate::pca::{Components, PcaConfig, PcaSolver};
use crate::traits::{Fit, Transform};

/// How the repulsive forces are approximated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TsneMethod {
    /// A space-partitioning tree; cells seen under an angle below `theta` count as one point.
    BarnesHut { theta: f32 },
    /// Interpolation on a grid with FFT convolutions: linear in the points.
    Fft,
    /// FFT from [`FFT_FROM`] points, Barnes-Hut (`theta` 0.5) below, as openTSNE chooses:
    /// FFT's grid grows with the map's extent, which for a few tight clusters (a small test
    /// split) runs to millions of cells, where a tree over few points stays cheap.
    Auto,
}

/// The size from which [`TsneMethod::Auto`] takes the FFT-accelerated repulsion.
pub const FFT_FROM: usize = 10_000;

/// Configuration of a t-SNE map. Defaults as scikit-learn's `TSNE`, with the FFT-accelerated
/// repulsion from 10,000 points and Barnes-Hut below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TsneConfig {
    pub perplexity: f32,
    pub early_exaggeration: f32,
    pub max_iter: usize,
    /// The step size in scikit-learn's units; `None` for its `"auto"`,
    /// `max(n / early_exaggeration / 4, 50)`.
    pub learning_rate: Option<f32>,
    pub method: TsneMethod,
}

impl Default for TsneConfig {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            early_exaggeration: 12.0,
            max_iter: 1000,
            learning_rate: None,
            method: TsneMethod::Auto,
        }
    }
}

impl TsneConfig {
    pub fn perplexity(mut self, perplexity: f32) -> Self {
        self.perplexity = perplexity;
        self
    }

    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }

    pub fn method(mut self, method: TsneMethod) -> Self {
        self.method = method;
        self
    }

    /// The neighbours each point's affinities use: `3 x perplexity`.
    fn neighbours(&self) -> usize {
        (3.0 * self.perplexity) as usize
    }

    /// The same settings with the perplexity lowered, if need be, so `n` points have enough
    /// neighbours (`n - 1 >= 3 x perplexity`).
    pub fn fitted_to(mut self, n: usize) -> Self {
        let most = (n.saturating_sub(1) / 3) as f32;
        if self.perplexity > most {
            self.perplexity = most.max(1.0);
        }
        self
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BaselineError::InvalidParam(m));
        if !(self.perplexity.is_finite() && self.perplexity >= 1.0) {
            return bad(format!(
                "perplexity = {} must be at least 1",
                self.perplexity
            ));
        }
        if !(self.early_exaggeration.is_finite() && self.early_exaggeration >= 1.0) {
            return bad("early_exaggeration must be at least 1".into());
        }
        if self.max_iter < 250 {
            return bad(format!(
                "max_iter = {} must be at least 250 (the early exaggeration phase)",
                self.max_iter
            ));
        }
        if let Some(lr) = self.learning_rate
            && !(lr.is_finite() && lr > 0.0)
        {
            return bad(format!("learning_rate = {lr} must be positive"));
        }
        if let TsneMethod::BarnesHut { theta } = self.method
            && !(theta.is_finite() && theta > 0.0)
        {
            return bad(format!("theta = {theta} must be positive"));
        }
        Ok(())
    }
}

/// A t-SNE map of the rows it was fitted on: `[rows, 2]`, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TsneMap {
    pub embedding: Vec<f32>,
    /// The Kullback-Leibler divergence the optimisation ended at.
    pub kl_divergence: Option<f32>,
}

impl Fit for TsneConfig {
    type Fitted = TsneMap;

    fn fit(&self, x: &Tensor<2>) -> Result<TsneMap> {
        self.fit_observed(x, &mut |_| {})
    }
}

impl TsneConfig {
    /// [`Fit::fit`], calling `on_iteration` with each finished iteration's number (from 1 to
    /// `max_iter`), for progress.
    pub fn fit_observed(
        &self,
        x: &Tensor<2>,
        on_iteration: &mut (dyn FnMut(usize) + Send),
    ) -> Result<TsneMap> {
        self.validate()?;
        let [n, d] = check_input(x)?;
        let k = self.neighbours();
        if n <= k {
            return Err(BaselineError::InvalidParam(format!(
                "perplexity {} needs more than {k} rows (3 x perplexity neighbours each), the \
                 data has {n}; lower the perplexity",
                self.perplexity
            )));
        }
        let neighbours = nearest_neighbours(x, k);
        let init = pca_start(x, d)?;
        let values = to_vec(x);
        let rows: Vec<&[f32]> = values.chunks_exact(d).collect();
        // The optimisation's parallel sums split their work differently from run to run, so
        // its last digits would too: one thread keeps a map the same every time.
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .map_err(|e| BaselineError::Numerical(format!("cannot start a thread: {e}")))?;
        Ok(one_thread.install(|| {
            let mut tsne: tSNE<f32, &[f32]> = tSNE::new(&rows);
            tsne.perplexity(self.perplexity)
                .early_exaggeration(self.early_exaggeration)
                .epochs(self.max_iter)
                .initial_embedding(init)
                .epoch_callback(|epoch, _| on_iteration(epoch + 1));
            // scikit-learn's gradient carries the KL divergence's factor 4, `bhtsne`'s does
            // not: the same rate would take steps 4x shorter, leaving the map less converged
            // after its 1,000 iterations (trustworthiness 0.981 against scikit-learn's 0.993
            // on 10,000 Fashion-MNIST images; 0.988 with the factor).
            let auto = (n as f32 / self.early_exaggeration / 4.0).max(50.0);
            tsne.learning_rate(4.0 * self.learning_rate.unwrap_or(auto));
            match self.method {
                TsneMethod::BarnesHut { theta } => {
                    tsne.barnes_hut_with_neighbors(theta, &neighbours)
                }
                TsneMethod::Auto if n < FFT_FROM => {
                    tsne.barnes_hut_with_neighbors(0.5, &neighbours)
                }
                TsneMethod::Fft | TsneMethod::Auto => tsne.fit_sne_with_neighbors(&neighbours),
            };
            TsneMap {
                embedding: tsne.embedding(),
                kl_divergence: tsne.kl_divergence(),
            }
        }))
    }
}

/// scikit-learn's PCA start: the first two principal components, scaled so the first has a
/// standard deviation of 1e-4.
fn pca_start(x: &Tensor<2>, d: usize) -> Result<Vec<f32>> {
    let components = 2.min(d);
    let pca = PcaConfig::new(Components::Count(components))
        .solver(PcaSolver::Exact)
        .fit(x)?;
    let z = to_vec(&pca.transform(x)?);
    let n = z.len() / components;
    let first: Vec<f64> = z.iter().step_by(components).map(|&v| v as f64).collect();
    let mean = first.iter().sum::<f64>() / n as f64;
    let std = (first.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64).sqrt();
    let scale = if std > 0.0 { 1e-4 / std } else { 1.0 };
    let mut out = Vec::with_capacity(n * 2);
    for row in z.chunks_exact(components) {
        out.push((row[0] as f64 * scale) as f32);
        out.push(row.get(1).map_or(0.0, |&v| (v as f64 * scale) as f32));
    }
    Ok(out)
}

/// Rows processed per block of the distance computation.
const BLOCK: usize = 1024;

/// Every row's `k` nearest other rows by Euclidean distance, nearest first (ties by index).
pub fn nearest_neighbours(x: &Tensor<2>, k: usize) -> Vec<Vec<Neighbor<f32>>> {
    let [n, _] = x.dims();
    let squares = to_vec(&x.clone().square().sum_dim(1));
    let xt = x.clone().transpose();
    let mut out = Vec::with_capacity(n);
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        let dots = to_vec(&x.clone().narrow(0, start, rows).matmul(xt.clone()));
        for (r, dot) in dots.chunks_exact(n).enumerate() {
            let i = start + r;
            // |a - b|² = |a|² + |b|² − 2 a·b, clamped at zero against rounding.
            let distance = |j: usize| (squares[i] + squares[j] - 2.0 * dot[j]).max(0.0);
            order.clear();
            order.extend((0..n).filter(|&j| j != i));
            let take = k.min(order.len());
            let by_distance =
                |&a: &usize, &b: &usize| distance(a).total_cmp(&distance(b)).then(a.cmp(&b));
            if take < order.len() {
                order.select_nth_unstable_by(take, by_distance);
            }
            order.truncate(take);
            order.sort_unstable_by(by_distance);
            out.push(
                order
                    .iter()
                    .map(|&j| Neighbor {
                        index: j,
                        distance: distance(j).sqrt(),
                    })
                    .collect(),
            );
        }
    }
    out
}

/// How well a low-dimensional map keeps each row's neighbourhood, as scikit-learn's
/// `trustworthiness`: 1 minus a penalty for each of a row's `k` nearest neighbours in the map
/// that is not among its `k` nearest in the original space, growing with how far down the
/// original ranking it is. 1 is perfect.
pub fn trustworthiness(x: &Tensor<2>, embedded: &Tensor<2>, k: usize) -> Result<f64> {
    let [n, _] = check_input(x)?;
    let [m, _] = check_input(embedded)?;
    if m != n {
        return Err(BaselineError::ShapeMismatch(format!(
            "{n} rows but {m} embedded rows"
        )));
    }
    if k == 0 || 2 * k >= n {
        return Err(BaselineError::InvalidParam(format!(
            "k = {k} neighbours must be positive and below half the {n} rows"
        )));
    }
    let mapped = nearest_neighbours(embedded, k);
    let squares = to_vec(&x.clone().square().sum_dim(1));
    let xt = x.clone().transpose();
    let mut penalty = 0u64;
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        let dots = to_vec(&x.clone().narrow(0, start, rows).matmul(xt.clone()));
        for (r, dot) in dots.chunks_exact(n).enumerate() {
            let i = start + r;
            let distance = |j: usize| (squares[i] + squares[j] - 2.0 * dot[j]).max(0.0);
            for neighbour in &mapped[i] {
                let j = neighbour.index;
                let dj = distance(j);
                // The 1-based rank of j among i's neighbours in the original space.
                let rank = 1
                    + (0..n)
                        .filter(|&m| m != i && m != j)
                        .filter(|&m| {
                            let dm = distance(m);
                            dm < dj || (dm == dj && m < j)
                        })
                        .count() as u64;
                penalty += rank.saturating_sub(k as u64);
            }
        }
    }
    let (n, k) = (n as f64, k as f64);
    Ok(1.0 - penalty as f64 * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))
}
