//! Initial centres: random rows, or greedy k-means++.

use burn::tensor::Tensor;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{labels_tensor, squared_distances};
use crate::input::to_vec;

/// Rows `indices` of `x`, row-major.
fn rows(x: &Tensor<2>, indices: &[u32]) -> Tensor<2> {
    x.clone().select(0, labels_tensor(indices, x))
}

/// `k` distinct rows chosen uniformly.
pub(crate) fn random(x: &Tensor<2>, k: usize, seed: u64) -> Vec<f32> {
    let [n, _] = x.dims();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let idx: Vec<u32> = sample(&mut rng, n, k)
        .into_iter()
        .map(|i| i as u32)
        .collect();
    to_vec(&rows(x, &idx))
}

/// Greedy k-means++: the first centre uniformly, then for each next one `2 + ln k` candidates
/// drawn with probability proportional to the squared distance to the nearest chosen centre,
/// keeping the candidate that lowers the total (the potential) most.
pub(crate) fn kmeans_plus_plus(x: &Tensor<2>, x_sq: &Tensor<2>, k: usize, seed: u64) -> Vec<f32> {
    to_vec(&rows(x, &kmeans_plus_plus_rows(x, x_sq, k, seed)))
}

/// The rows [`kmeans_plus_plus`] chooses, in order.
pub(crate) fn kmeans_plus_plus_rows(
    x: &Tensor<2>,
    x_sq: &Tensor<2>,
    k: usize,
    seed: u64,
) -> Vec<u32> {
    let [n, _] = x.dims();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let trials = 2 + (k as f64).ln() as usize;
    let mut chosen = vec![rng.random_range(0..n) as u32];
    let mut closest: Vec<f64> = to_vec(&squared_distances(x, x_sq, &rows(x, &chosen)))
        .into_iter()
        .map(f64::from)
        .collect();
    let mut potential: f64 = closest.iter().sum();
    while chosen.len() < k {
        let mut cumulative = Vec::with_capacity(n);
        let mut acc = 0.0;
        for d in &closest {
            acc += d;
            cumulative.push(acc);
        }
        let candidates: Vec<u32> = (0..trials)
            .map(|_| {
                let r = rng.random::<f64>() * potential;
                cumulative.partition_point(|&c| c < r).min(n - 1) as u32
            })
            .collect();
        // [n, trials] distances to every candidate in one product.
        let dist = to_vec(&squared_distances(x, x_sq, &rows(x, &candidates)));
        let mut best: Option<(f64, usize)> = None;
        for t in 0..trials {
            let pot: f64 = (0..n)
                .map(|i| closest[i].min(dist[i * trials + t] as f64))
                .sum();
            if best.is_none_or(|(p, _)| pot < p) {
                best = Some((pot, t));
            }
        }
        let (pot, t) = best.expect("at least two trials");
        for (i, c) in closest.iter_mut().enumerate() {
            *c = c.min(dist[i * trials + t] as f64);
        }
        potential = pot;
        chosen.push(candidates[t]);
    }
    chosen
}
