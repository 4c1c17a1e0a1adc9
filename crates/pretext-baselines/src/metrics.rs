//! Clustering metrics, computed as scikit-learn computes them: normalised mutual information
//! (arithmetic normalisation, its default), adjusted Rand index, accuracy under the best
//! one-to-one matching of clusters to classes (Hungarian), and the silhouette coefficient; and
//! the classification scores that stay fair when classes are unbalanced: balanced accuracy and
//! macro-F1.

use std::collections::HashMap;

use pathfinding::prelude::{Matrix, kuhn_munkres};
use rand::SeedableRng;
use rand::seq::index;
use rand_chacha::ChaCha8Rng;

use crate::error::{BaselineError, Result};

/// Counts of (true label, predicted label) pairs, labels renumbered densely in order of first
/// appearance.
struct Contingency {
    counts: Vec<Vec<u64>>,
    rows: Vec<u64>,
    cols: Vec<u64>,
    n: u64,
}

fn dense(labels: &[u32]) -> (Vec<usize>, usize) {
    let mut ids = HashMap::new();
    let out = labels
        .iter()
        .map(|&l| {
            let next = ids.len();
            *ids.entry(l).or_insert(next)
        })
        .collect();
    (out, ids.len())
}

fn contingency(truth: &[u32], pred: &[u32]) -> Result<Contingency> {
    check_pair(truth, pred)?;
    let (t, nt) = dense(truth);
    let (p, np) = dense(pred);
    let mut counts = vec![vec![0u64; np]; nt];
    for (&i, &j) in t.iter().zip(&p) {
        counts[i][j] += 1;
    }
    let rows = counts.iter().map(|r| r.iter().sum()).collect();
    let cols = (0..np).map(|j| counts.iter().map(|r| r[j]).sum()).collect();
    Ok(Contingency {
        counts,
        rows,
        cols,
        n: truth.len() as u64,
    })
}

fn entropy(sizes: &[u64]) -> f64 {
    let total: u64 = sizes.iter().sum();
    let log_total = (total as f64).ln();
    -sizes
        .iter()
        .filter(|&&s| s > 0)
        .map(|&s| (s as f64 / total as f64) * ((s as f64).ln() - log_total))
        .sum::<f64>()
}

fn mutual_information(c: &Contingency) -> f64 {
    if c.rows.len() == 1 || c.cols.len() == 1 {
        return 0.0;
    }
    let n = c.n as f64;
    let log_n = n.ln();
    let mut mi = 0.0;
    for (i, row) in c.counts.iter().enumerate() {
        for (j, &nij) in row.iter().enumerate() {
            if nij == 0 {
                continue;
            }
            let p = nij as f64 / n;
            let outer = (c.rows[i] as f64) * (c.cols[j] as f64);
            let term = p * ((nij as f64).ln() - log_n) + p * (-outer.ln() + 2.0 * log_n);
            // scikit-learn zeroes terms below machine epsilon before summing.
            if term.abs() >= f64::EPSILON {
                mi += term;
            }
        }
    }
    mi.max(0.0)
}

/// The mean over the true classes of the fraction of each predicted right (scikit-learn's
/// `balanced_accuracy_score`): predicting the commonest class for everything scores
/// `1 / classes`, however unbalanced the classes.
pub fn balanced_accuracy(truth: &[u32], pred: &[u32]) -> Result<f64> {
    check_pair(truth, pred)?;
    let mut per_class: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
    for (&t, &p) in truth.iter().zip(pred) {
        let e = per_class.entry(t).or_default();
        e.0 += (t == p) as u64;
        e.1 += 1;
    }
    Ok(per_class
        .values()
        .map(|&(right, all)| right as f64 / all as f64)
        .sum::<f64>()
        / per_class.len() as f64)
}

/// The unweighted mean of the per-class F1 scores over every class that is true or predicted
/// somewhere (scikit-learn's `f1_score(average="macro")`, a class never predicted scoring 0).
pub fn macro_f1(truth: &[u32], pred: &[u32]) -> Result<f64> {
    check_pair(truth, pred)?;
    let mut counts: std::collections::BTreeMap<u32, [u64; 3]> = Default::default();
    for (&t, &p) in truth.iter().zip(pred) {
        if t == p {
            counts.entry(t).or_default()[0] += 1;
        } else {
            counts.entry(p).or_default()[1] += 1; // a false positive of p
            counts.entry(t).or_default()[2] += 1; // a false negative of t
        }
    }
    Ok(counts
        .values()
        .map(|&[tp, fp, fn_]| {
            let denominator = 2 * tp + fp + fn_;
            if denominator == 0 {
                0.0
            } else {
                2.0 * tp as f64 / denominator as f64
            }
        })
        .sum::<f64>()
        / counts.len() as f64)
}

fn check_pair(truth: &[u32], pred: &[u32]) -> Result<()> {
    if truth.len() != pred.len() {
        return Err(BaselineError::ShapeMismatch(format!(
            "{} true labels but {} predicted labels",
            truth.len(),
            pred.len()
        )));
    }
    if truth.is_empty() {
        return Err(BaselineError::EmptyInput);
    }
    Ok(())
}

/// Normalised mutual information with arithmetic-mean normalisation (scikit-learn's default):
/// `MI / ((H(truth) + H(pred)) / 2)`, 1.0 when both labellings are a single cluster.
pub fn nmi(truth: &[u32], pred: &[u32]) -> Result<f64> {
    let c = contingency(truth, pred)?;
    if c.rows.len() == 1 && c.cols.len() == 1 {
        return Ok(1.0);
    }
    let mi = mutual_information(&c);
    if mi == 0.0 {
        return Ok(0.0);
    }
    let norm = (entropy(&c.rows) + entropy(&c.cols)) / 2.0;
    Ok(mi / norm.max(f64::EPSILON))
}

/// Adjusted Rand index: pair agreement corrected for chance; 1.0 for identical partitions.
pub fn ari(truth: &[u32], pred: &[u32]) -> Result<f64> {
    let c = contingency(truth, pred)?;
    // The pair confusion matrix in exact integer arithmetic, as scikit-learn builds it.
    let n = c.n as i128;
    let sum_squares: i128 = c
        .counts
        .iter()
        .flatten()
        .map(|&v| (v as i128) * (v as i128))
        .sum();
    let mut c_dot_nk: i128 = 0;
    let mut ct_dot_nc: i128 = 0;
    for (i, row) in c.counts.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            c_dot_nk += v as i128 * c.cols[j] as i128;
            ct_dot_nc += v as i128 * c.rows[i] as i128;
        }
    }
    let tp = sum_squares - n;
    let fp = c_dot_nk - sum_squares;
    let fn_ = ct_dot_nc - sum_squares;
    let tn = n * n - fp - fn_ - sum_squares;
    if fn_ == 0 && fp == 0 {
        return Ok(1.0);
    }
    let num = 2.0 * ((tp * tn - fn_ * fp) as f64);
    let den = ((tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn)) as f64;
    Ok(num / den)
}

/// Clustering accuracy: the fraction of points whose cluster maps to their class under the
/// one-to-one mapping that maximises agreement (the Hungarian algorithm). Clusters left without a
/// class (more clusters than classes) count as wrong.
pub fn hungarian_accuracy(truth: &[u32], pred: &[u32]) -> Result<f64> {
    let c = contingency(truth, pred)?;
    let size = c.rows.len().max(c.cols.len());
    let mut weights = Matrix::new(size, size, 0i64);
    for (i, row) in c.counts.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            weights[(i, j)] = v as i64;
        }
    }
    let (matched, _) = kuhn_munkres(&weights);
    Ok(matched as f64 / c.n as f64)
}

/// Mean silhouette coefficient with euclidean distances over `x` (`n` rows of `dim` values).
///
/// Exact (all pairs, O(n²)) when `sample` is `None`; otherwise on a seeded random sample of
/// `size` points, as scikit-learn's `sample_size` does. A point alone in its cluster scores 0.
pub fn silhouette<T: Copy + Into<f64>>(
    x: &[T],
    dim: usize,
    labels: &[u32],
    sample: Option<(usize, u64)>,
) -> Result<f64> {
    if dim == 0 || !x.len().is_multiple_of(dim) {
        return Err(BaselineError::ShapeMismatch(format!(
            "{} values are not rows of {dim}",
            x.len()
        )));
    }
    let n = x.len() / dim;
    if labels.len() != n {
        return Err(BaselineError::ShapeMismatch(format!(
            "{n} points but {} labels",
            labels.len()
        )));
    }
    let rows: Vec<usize> = match sample {
        Some((size, seed)) if size < n => {
            let mut idx = index::sample(&mut ChaCha8Rng::seed_from_u64(seed), n, size).into_vec();
            idx.sort_unstable();
            idx
        }
        _ => (0..n).collect(),
    };
    let sub_labels: Vec<u32> = rows.iter().map(|&i| labels[i]).collect();
    let (dl, k) = dense(&sub_labels);
    if k < 2 || k > rows.len() - 1 {
        return Err(BaselineError::InvalidParam(format!(
            "silhouette needs 2 to n-1 clusters, got {k} clusters for {} points",
            rows.len()
        )));
    }
    let mut sizes = vec![0usize; k];
    for &l in &dl {
        sizes[l] += 1;
    }
    let point = |i: usize| &x[rows[i] * dim..(rows[i] + 1) * dim];
    let m = rows.len();
    let mut total = 0.0;
    let mut sums = vec![0f64; k];
    for i in 0..m {
        sums.iter_mut().for_each(|s| *s = 0.0);
        let pi = point(i);
        for j in 0..m {
            if i != j {
                let d: f64 = pi
                    .iter()
                    .zip(point(j))
                    .map(|(&a, &b)| {
                        let t = a.into() - b.into();
                        t * t
                    })
                    .sum();
                sums[dl[j]] += d.sqrt();
            }
        }
        let own = dl[i];
        if sizes[own] == 1 {
            continue;
        }
        let a = sums[own] / (sizes[own] - 1) as f64;
        let b = (0..k)
            .filter(|&c| c != own)
            .map(|c| sums[c] / sizes[c] as f64)
            .fold(f64::INFINITY, f64::min);
        let s = (b - a) / a.max(b);
        if s.is_finite() {
            total += s;
        }
    }
    Ok(total / m as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_permuted_labellings_score_one() {
        let t = [0, 0, 1, 1, 2, 2, 2];
        let p = [5, 5, 3, 3, 9, 9, 9];
        assert_eq!(nmi(&t, &p).unwrap(), 1.0);
        assert_eq!(ari(&t, &p).unwrap(), 1.0);
        assert_eq!(hungarian_accuracy(&t, &p).unwrap(), 1.0);
    }

    #[test]
    fn single_clusters_are_special_cases() {
        assert_eq!(nmi(&[1, 1, 1], &[4, 4, 4]).unwrap(), 1.0);
        assert_eq!(nmi(&[0, 1, 2], &[4, 4, 4]).unwrap(), 0.0);
        assert_eq!(ari(&[1, 1, 1], &[4, 4, 4]).unwrap(), 1.0);
    }

    #[test]
    fn more_clusters_than_classes() {
        // Cluster 2 has no class left: its single point counts as wrong.
        assert_eq!(
            hungarian_accuracy(&[0, 0, 1, 1], &[0, 0, 1, 2]).unwrap(),
            0.75
        );
    }

    #[test]
    fn length_mismatch_and_empty_are_errors() {
        assert!(matches!(
            nmi(&[0], &[0, 1]),
            Err(BaselineError::ShapeMismatch(_))
        ));
        assert!(matches!(ari(&[], &[]), Err(BaselineError::EmptyInput)));
    }

    #[test]
    fn silhouette_of_two_tight_far_clusters_is_near_one() {
        let x = [0.0f32, 0.0, 0.1, 0.0, 10.0, 10.0, 10.1, 10.0];
        let s = silhouette(&x, 2, &[0, 0, 1, 1], None).unwrap();
        assert!(s > 0.98, "{s}");
        assert!(silhouette(&x, 2, &[0, 0, 0, 0], None).is_err());
    }
}
