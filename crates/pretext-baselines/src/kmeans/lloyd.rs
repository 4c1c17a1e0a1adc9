//! Lloyd's iterations on the data's device: assign every row to its nearest centre, then move
//! each centre to the mean of its rows (a one-hot matrix product).

use burn::tensor::Tensor;

use super::{Run, assign, inertia, labels_of, labels_tensor, squared_distances};
use crate::input::{tensor, to_vec};

pub(crate) fn run(
    x: &Tensor<2>,
    x_sq: &Tensor<2>,
    centers: Vec<f32>,
    max_iter: usize,
    tol: f64,
) -> Run {
    let [_, d] = x.dims();
    let k = centers.len() / d;
    let device = x.device();
    let mut centers_t = tensor(centers, k, d, &device);
    let mut labels_old: Option<Vec<u32>> = None;
    let mut labels = Vec::new();
    let mut strict = false;
    let mut iterations = 0;
    for i in 0..max_iter {
        iterations = i + 1;
        let dist = squared_distances(x, x_sq, &centers_t);
        labels = labels_of(dist.clone().argmin(1));
        let new_centers = update(x, &labels, k, &dist);
        let shift: f32 = (new_centers.clone() - centers_t)
            .square()
            .sum()
            .into_scalar();
        centers_t = new_centers;
        if labels_old.as_ref() == Some(&labels) {
            strict = true;
            break;
        }
        if (shift as f64) <= tol {
            break;
        }
        labels_old = Some(labels.clone());
    }
    if !strict {
        // The centres moved after the last assignment: labels must match the final centres.
        labels = assign(x, x_sq, &centers_t);
    }
    Run {
        inertia: inertia(x, &centers_t, &labels),
        centers: to_vec(&centers_t),
        labels,
        n_iter: iterations,
    }
}

/// New centres: the mean of each cluster's rows. An empty cluster is re-seeded, as scikit-learn
/// does, with the row farthest from its own centre (taken out of that centre's cluster).
fn update(x: &Tensor<2>, labels: &[u32], k: usize, dist: &Tensor<2>) -> Tensor<2> {
    let [n, d] = x.dims();
    let one_hot = labels_tensor(labels, x).one_hot::<2>(k).float(); // [n, k]
    let mut sums = to_vec(&one_hot.transpose().matmul(x.clone())); // [k, d]
    let mut counts = vec![0f64; k];
    for &l in labels {
        counts[l as usize] += 1.0;
    }
    let empty: Vec<usize> = (0..k).filter(|&j| counts[j] == 0.0).collect();
    if !empty.is_empty() {
        let dist = to_vec(dist);
        let mut far: Vec<usize> = (0..n).collect();
        far.sort_by(|&a, &b| {
            let da = dist[a * k + labels[a] as usize];
            let db = dist[b * k + labels[b] as usize];
            db.total_cmp(&da)
        });
        let rows = to_vec(
            &x.clone().select(
                0,
                labels_tensor(
                    &far[..empty.len()]
                        .iter()
                        .map(|&i| i as u32)
                        .collect::<Vec<_>>(),
                    x,
                ),
            ),
        );
        for (r, &j) in empty.iter().enumerate() {
            let row = &rows[r * d..(r + 1) * d];
            let old = labels[far[r]] as usize;
            if counts[old] > 1.0 {
                for (s, v) in sums[old * d..(old + 1) * d].iter_mut().zip(row) {
                    *s -= v;
                }
                counts[old] -= 1.0;
            }
            sums[j * d..(j + 1) * d].copy_from_slice(row);
            counts[j] = 1.0;
        }
    }
    for (j, c) in counts.iter().enumerate() {
        let inv = 1.0 / c.max(1.0);
        for v in &mut sums[j * d..(j + 1) * d] {
            *v = (*v as f64 * inv) as f32;
        }
    }
    tensor(sums, k, d, &x.device())
}
