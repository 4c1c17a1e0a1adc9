//! Mini-batch K-means (Sculley, 2010) on the data's device: each step assigns a random batch and
//! moves each centre towards its batch points with a per-centre learning rate of 1 / (points it
//! has seen). Stops after `max_iter` passes over the data or, as scikit-learn does, when the
//! smoothed batch inertia has not improved for `max_no_improvement` steps. scikit-learn's random
//! reassignment of rarely used centres is not done.

use burn::tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{KMeansConfig, Run, assign, inertia, labels_of, labels_tensor, squared_distances};
use crate::input::{tensor, to_vec};

pub(crate) fn run(
    x: &Tensor<2>,
    x_sq: &Tensor<2>,
    centers: Vec<f32>,
    config: &KMeansConfig,
    seed: u64,
) -> Run {
    let [n, d] = x.dims();
    let k = config.k;
    let batch = config.batch_size.min(n);
    let device = x.device();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6d69_6e69_6261_7463);
    let mut c = centers;
    let mut seen = vec![0f64; k];
    let steps = (config.max_iter.saturating_mul(n) / batch).max(1);
    let alpha = (2.0 * batch as f64 / (n as f64 + 1.0)).min(1.0);
    let mut ewa: Option<f64> = None;
    let mut best = f64::INFINITY;
    let mut stale = 0;
    let mut step = 0;
    while step < steps {
        step += 1;
        let idx: Vec<u32> = (0..batch).map(|_| rng.random_range(0..n) as u32).collect();
        let xb = x.clone().select(0, labels_tensor(&idx, x));
        let xb_sq = x_sq.clone().select(0, labels_tensor(&idx, x));
        let c_t = tensor(c.clone(), k, d, &device);
        let dist = squared_distances(&xb, &xb_sq, &c_t);
        let (min_d, arg) = dist.min_dim_with_indices(1);
        let labels = labels_of(arg);
        let batch_inertia: f64 =
            to_vec(&min_d).iter().map(|&v| v as f64).sum::<f64>() / batch as f64;
        let one_hot = labels_tensor(&labels, &xb).one_hot::<2>(k).float();
        let sums = to_vec(&one_hot.transpose().matmul(xb));
        let mut counts = vec![0f64; k];
        for &l in &labels {
            counts[l as usize] += 1.0;
        }
        for j in 0..k {
            if counts[j] == 0.0 {
                continue;
            }
            let total = seen[j] + counts[j];
            for t in 0..d {
                let v = &mut c[j * d + t];
                *v = ((*v as f64 * seen[j] + sums[j * d + t] as f64) / total) as f32;
            }
            seen[j] = total;
        }
        let smoothed = match ewa {
            None => batch_inertia,
            Some(e) => e * (1.0 - alpha) + batch_inertia * alpha,
        };
        ewa = Some(smoothed);
        if smoothed < best {
            best = smoothed;
            stale = 0;
        } else {
            stale += 1;
            if stale >= config.max_no_improvement {
                break;
            }
        }
    }
    let c_t = tensor(c.clone(), k, d, &device);
    let labels = assign(x, x_sq, &c_t);
    Run {
        inertia: inertia(x, &c_t, &labels),
        centers: c,
        labels,
        n_iter: step,
    }
}
