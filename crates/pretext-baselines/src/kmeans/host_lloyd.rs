//! Lloyd's iterations on host memory, for the CPU backends. One pass over the rows per iteration
//! finds each row's nearest centre and adds the row to that centre's sum while it is still in
//! cache, where the device path reads the data twice (the distance product, then the one-hot
//! product) and materialises both products. Blocks of rows run on rayon's threads and their
//! partial sums are combined in block order, so results do not depend on the number of threads.

use rayon::prelude::*;

use super::kernel::{add_into, dots, squared_distance, squared_norm};
use super::rows::Rows;
use super::{Run, empty_clusters, means, reseed_empty};

/// Rows per unit of parallel work, each with its own partial sums.
const BLOCK: usize = 256;
/// Rows whose distances are computed together (see [`dots`]): 4 rows of 784 features (12.5 KB)
/// stay in L1 beside a tile of centres. Measured on 60,000 x 784, k = 10: a pass of 10.9 ms
/// with 4 (decoded bytes), 11.8 with 8, 12.4 with 16; with f32 rows 15.9 with 4, 17.6 with 16.
const STRIP: usize = 4;

/// What one assignment pass leaves: per-cluster sums (f64) and counts.
struct Sums {
    sums: Vec<f64>,
    counts: Vec<f64>,
}

/// Calls `f(first, strip)` for each strip of rows of block `b`, in order, with the next strip
/// prefetched while `f` works on the current one.
fn for_strips<R: Rows>(x: &R, b: usize, mut f: impl FnMut(usize, &[f32])) {
    let (n, mut buf) = (x.n(), Vec::new());
    let block_end = ((b + 1) * BLOCK).min(n);
    for first in (b * BLOCK..block_end).step_by(STRIP) {
        let end = (first + STRIP).min(block_end);
        x.prefetch(end, (end + STRIP).min(block_end));
        f(first, x.strip(first, end, &mut buf));
    }
}

/// Assigns every row to its nearest centre, writing `labels` and the squared distance to that
/// centre into `nearest`; with `accumulate`, also sums each cluster's rows.
fn pass<R: Rows>(
    x: &R,
    centers: &[f32],
    labels: &mut [u32],
    nearest: &mut [f32],
    accumulate: bool,
) -> Sums {
    let d = x.d();
    let k = centers.len() / d;
    let c_sq: Vec<f32> = centers.chunks_exact(d).map(squared_norm).collect();
    let parts: Vec<(Vec<f32>, Vec<u32>)> = labels
        .par_chunks_mut(BLOCK)
        .zip(nearest.par_chunks_mut(BLOCK))
        .enumerate()
        .map(|(b, (labels, nearest))| {
            let mut sums = vec![0f32; if accumulate { k * d } else { 0 }];
            let mut counts = vec![0u32; k];
            let (mut dot, mut norms) = (vec![0f32; STRIP * k], vec![0f32; STRIP]);
            for_strips(x, b, |first, strip| {
                dots(strip, d, centers, &mut dot, &mut norms);
                let at = first - b * BLOCK;
                for (r, row) in strip.chunks_exact(d).enumerate() {
                    let (mut best, mut best_d) = (0, f32::INFINITY);
                    for j in 0..k {
                        let dist = (norms[r] - 2.0 * dot[r * k + j] + c_sq[j]).max(0.0);
                        if dist < best_d {
                            best = j;
                            best_d = dist;
                        }
                    }
                    labels[at + r] = best as u32;
                    nearest[at + r] = best_d;
                    counts[best] += 1;
                    if accumulate {
                        add_into(&mut sums[best * d..(best + 1) * d], row);
                    }
                }
            });
            (sums, counts)
        })
        .collect();
    let mut total = Sums {
        sums: vec![0f64; k * d],
        counts: vec![0f64; k],
    };
    for (sums, counts) in parts {
        for (t, s) in total.sums.iter_mut().zip(&sums) {
            *t += f64::from(*s);
        }
        for (t, c) in total.counts.iter_mut().zip(&counts) {
            *t += f64::from(*c);
        }
    }
    total
}

/// Sum of squared distances of rows to their assigned centre, from direct differences (no
/// cancellation), summed in f64 in block order.
pub(crate) fn inertia<R: Rows>(x: &R, centers: &[f32], labels: &[u32]) -> f64 {
    let d = x.d();
    let parts: Vec<f64> = (0..labels.len().div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let mut total = 0f64;
            for_strips(x, b, |first, strip| {
                for (row, &l) in strip.chunks_exact(d).zip(&labels[first..]) {
                    let c = &centers[l as usize * d..(l as usize + 1) * d];
                    total += f64::from(squared_distance(row, c));
                }
            });
            total
        })
        .collect();
    parts.into_iter().sum()
}

/// The mean over features of each feature's (biased) variance, in one pass: per-block sums and
/// sums of squares in f64, combined in block order.
pub(crate) fn mean_feature_variance<R: Rows>(x: &R) -> f64 {
    let (n, d) = (x.n(), x.d());
    let parts: Vec<(Vec<f64>, Vec<f64>)> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let (mut sum, mut sq) = (vec![0f64; d], vec![0f64; d]);
            for_strips(x, b, |_, strip| {
                for row in strip.chunks_exact(d) {
                    for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(row) {
                        let v = f64::from(v);
                        *s += v;
                        *q += v * v;
                    }
                }
            });
            (sum, sq)
        })
        .collect();
    let (mut sum, mut sq) = (vec![0f64; d], vec![0f64; d]);
    for (s, q) in parts {
        for j in 0..d {
            sum[j] += s[j];
            sq[j] += q[j];
        }
    }
    let n = n as f64;
    let total: f64 = (0..d)
        .map(|j| {
            let mean = sum[j] / n;
            (sq[j] / n - mean * mean).max(0.0)
        })
        .sum();
    total / d as f64
}

/// Nearest centre of every row.
pub(crate) fn assign<R: Rows>(x: &R, centers: &[f32]) -> Vec<u32> {
    let n = x.n();
    let mut labels = vec![0u32; n];
    let mut nearest = vec![0f32; n];
    pass(x, centers, &mut labels, &mut nearest, false);
    labels
}

/// Lloyd's iterations from `centers`, with the same stopping rules as the device path: labels
/// unchanged, or the centres' total squared shift at most `tol`.
pub(crate) fn run<R: Rows>(x: &R, mut centers: Vec<f32>, max_iter: usize, tol: f64) -> Run {
    let n = x.n();
    let mut labels = vec![0u32; n];
    let mut nearest = vec![0f32; n];
    let mut labels_old: Option<Vec<u32>> = None;
    let mut strict = false;
    let mut iterations = 0;
    for i in 0..max_iter {
        iterations = i + 1;
        let Sums {
            mut sums,
            mut counts,
        } = pass(x, &centers, &mut labels, &mut nearest, true);
        let empty = empty_clusters(&counts);
        if !empty.is_empty() {
            // An empty cluster is re-seeded with the row farthest from its own centre.
            let mut far: Vec<usize> = (0..n).collect();
            far.sort_by(|&a, &b| nearest[b].total_cmp(&nearest[a]));
            let rows: Vec<(usize, Vec<f32>)> = far
                .iter()
                .take(empty.len())
                .map(|&r| {
                    (
                        labels[r] as usize,
                        x.strip(r, r + 1, &mut Vec::new()).to_vec(),
                    )
                })
                .collect();
            let farthest: Vec<(usize, &[f32])> =
                rows.iter().map(|(l, row)| (*l, row.as_slice())).collect();
            reseed_empty(&mut sums, &mut counts, &empty, &farthest);
        }
        let new_centers = means(&sums, &counts);
        let shift: f64 = centers
            .iter()
            .zip(&new_centers)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum();
        centers = new_centers;
        if labels_old.as_ref() == Some(&labels) {
            strict = true;
            break;
        }
        if shift <= tol {
            break;
        }
        labels_old = Some(labels.clone());
    }
    if !strict {
        // The centres moved after the last assignment: labels must match the final centres.
        labels = assign(x, &centers);
    }
    Run {
        inertia: inertia(x, &centers, &labels),
        centers,
        labels,
        n_iter: iterations,
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::input::tensor;
    use crate::kmeans::rows::{ByteRows, HostRows};

    /// Overlapping clusters (uniform noise around random centres), so that many rows change
    /// cluster over the iterations.
    fn blobs(n: usize, d: usize, k: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let centres: Vec<f32> = (0..k * d).map(|_| rng.random_range(-2.0..2.0)).collect();
        (0..n)
            .flat_map(|i| {
                let c = i % k;
                let noise: Vec<f32> = (0..d).map(|_| rng.random_range(-1.5..1.5)).collect();
                (0..d)
                    .map(|j| centres[c * d + j] + noise[j])
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_fused_host_pass_follows_the_device_path() {
        let (n, d, k) = (3000, 37, 7);
        let values = blobs(n, d, k);
        // Every initial centre is a row of the first blob: the centres must travel.
        let init: Vec<f32> = (0..k)
            .flat_map(|j| values[j * k * d..(j * k + 1) * d].to_vec())
            .collect();
        let host = run(&HostRows { values: &values, d }, init.clone(), 100, 0.0);
        let x = tensor(values, n, d, &Device::flex());
        let x_sq = x.clone().square().sum_dim(1);
        let device = crate::kmeans::lloyd::run(&x, &x_sq, init, 100, 0.0);
        assert!(host.n_iter > 3, "the data should take several iterations");
        assert_eq!(host.n_iter, device.n_iter);
        assert_eq!(host.labels, device.labels);
        assert!((host.inertia - device.inertia).abs() <= 1e-5 * device.inertia);
        for (a, b) in host.centers.iter().zip(&device.centers) {
            assert!((a - b).abs() <= 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn byte_rows_give_the_f32_rows_results_bit_for_bit() {
        let (n, d, k) = (2000, 29, 5);
        // Bytes scaled to [0, 1], as image pixels are, the brightest 255.
        let values: Vec<f32> = blobs(n, d, k)
            .iter()
            .map(|v| ((v + 4.0) * 40.0).clamp(0.0, 255.0).round() * (1.0 / 255.0))
            .collect();
        let f32_rows = HostRows { values: &values, d };
        let x = tensor(values.clone(), n, d, &Device::flex());
        let bytes = ByteRows::from_tensor(&x).expect("scaled bytes");
        // Every initial centre is a row of the first blob: the centres must travel.
        let init: Vec<f32> = (0..k)
            .flat_map(|j| values[j * k * d..(j * k + 1) * d].to_vec())
            .collect();
        let a = run(&f32_rows, init.clone(), 100, 0.0);
        let b = run(&bytes, init, 100, 0.0);
        assert!(a.n_iter > 3, "the data should take several iterations");
        assert_eq!(
            (a.n_iter, &a.labels, &a.centers),
            (b.n_iter, &b.labels, &b.centers)
        );
        assert_eq!(a.inertia.to_bits(), b.inertia.to_bits());
        assert_eq!(
            mean_feature_variance(&f32_rows).to_bits(),
            mean_feature_variance(&bytes).to_bits()
        );
    }

    #[test]
    fn the_host_variance_matches_the_tensor_one() {
        let (n, d) = (1000, 13);
        let values = blobs(n, d, 3);
        let host = mean_feature_variance(&HostRows { values: &values, d });
        let x = tensor(values, n, d, &Device::flex());
        let device = crate::kmeans::mean_feature_variance(&x);
        assert!((host - device).abs() <= 1e-5 * device, "{host} vs {device}");
    }

    #[test]
    fn an_empty_cluster_is_reseeded_with_the_farthest_row() {
        // Two far-apart groups and a third centre nowhere near any row.
        let values = vec![0.0, 0.0, 0.1, 0.0, 10.0, 10.0, 10.1, 10.0, 30.0, 0.0];
        let rows = HostRows {
            values: &values,
            d: 2,
        };
        let run = run(&rows, vec![0.0, 0.0, 10.0, 10.0, -100.0, -100.0], 10, 0.0);
        let mut counts = [0; 3];
        for &l in &run.labels {
            counts[l as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        // The outlier (30, 0) ends up alone.
        assert_eq!(counts[run.labels[4] as usize], 1);
    }
}
