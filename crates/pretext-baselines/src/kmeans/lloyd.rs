//! Lloyd's iterations on the data's device: assign every row to its nearest centre, then move
//! each centre to the mean of its rows (a one-hot matrix product).

use burn::tensor::Tensor;

use super::{
    Run, assign, empty_clusters, inertia, labels_of, labels_tensor, means, reseed_empty,
    squared_distances,
};
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
    let mut sums: Vec<f64> = to_vec(&one_hot.transpose().matmul(x.clone())) // [k, d]
        .into_iter()
        .map(f64::from)
        .collect();
    let mut counts = vec![0f64; k];
    for &l in labels {
        counts[l as usize] += 1.0;
    }
    let empty = empty_clusters(&counts);
    if !empty.is_empty() {
        let dist = to_vec(dist);
        let mut far: Vec<usize> = (0..n).collect();
        far.sort_by(|&a, &b| {
            let da = dist[a * k + labels[a] as usize];
            let db = dist[b * k + labels[b] as usize];
            db.total_cmp(&da)
        });
        far.truncate(empty.len());
        // Only the rows that re-seed a cluster come back from the device.
        let indices: Vec<u32> = far.iter().map(|&i| i as u32).collect();
        let rows = to_vec(&x.clone().select(0, labels_tensor(&indices, x)));
        let farthest: Vec<(usize, &[f32])> = far
            .iter()
            .zip(rows.chunks_exact(d))
            .map(|(&i, row)| (labels[i] as usize, row))
            .collect();
        reseed_empty(&mut sums, &mut counts, &empty, &farthest);
    }
    tensor(means(&sums, &counts), k, d, &x.device())
}
