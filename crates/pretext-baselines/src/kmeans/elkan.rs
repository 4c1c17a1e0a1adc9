//! Elkan's K-means (2003): Lloyd's result, skipping every distance that the triangle inequality
//! proves cannot change an assignment. Upper and lower bounds are per-point branching work, so
//! this runs on the host's threads over fixed blocks of rows; partial sums are combined in block
//! order, so results do not depend on the number of threads.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::kernel::squared_distance;
use super::rows::HostRows;
use super::{Run, empty_clusters, means, reseed_empty};

const BLOCK: usize = 1024;

fn dist(a: &[f32], b: &[f32]) -> f32 {
    squared_distance(a, b).sqrt()
}

struct State<'a> {
    x: &'a [f32],
    d: usize,
    k: usize,
    labels: Vec<u32>,
    upper: Vec<f32>,
    lower: Vec<f32>,
}

/// Runs `f` over every block of rows on all hardware threads; returns the per-block results in
/// block order.
fn for_blocks<T: Send>(
    labels: &mut [u32],
    upper: &mut [f32],
    lower: &mut [f32],
    k: usize,
    f: impl Fn(usize, &mut [u32], &mut [f32], &mut [f32]) -> T + Sync,
) -> Vec<T> {
    let blocks: Vec<_> = labels
        .chunks_mut(BLOCK)
        .zip(upper.chunks_mut(BLOCK))
        .zip(lower.chunks_mut(BLOCK * k))
        .enumerate()
        .map(|(b, ((l, u), lo))| std::sync::Mutex::new(Some((b * BLOCK, l, u, lo))))
        .collect();
    let results: Vec<std::sync::Mutex<Option<T>>> = (0..blocks.len())
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(blocks.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= blocks.len() {
                        break;
                    }
                    let taken = blocks[b].lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some((start, l, u, lo)) = taken {
                        let r = f(start, l, u, lo);
                        *results[b].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every block ran")
        })
        .collect()
}

/// Half the distance between every pair of centres, and for each centre half the distance to
/// its nearest other centre.
fn center_geometry(c: &[f32], k: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut half = vec![0f32; k * k];
    for a in 0..k {
        for b in a + 1..k {
            let h = 0.5 * dist(&c[a * d..(a + 1) * d], &c[b * d..(b + 1) * d]);
            half[a * k + b] = h;
            half[b * k + a] = h;
        }
    }
    let next = (0..k)
        .map(|a| {
            (0..k)
                .filter(|&b| b != a)
                .map(|b| half[a * k + b])
                .fold(f32::INFINITY, f32::min)
        })
        .collect();
    (half, next)
}

impl State<'_> {
    fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// Initial labels and bounds, skipping centres that cannot be nearer.
    fn init_bounds(&mut self, c: &[f32], half: &[f32]) {
        let (d, k, x) = (self.d, self.k, self.x);
        for_blocks(
            &mut self.labels,
            &mut self.upper,
            &mut self.lower,
            k,
            |start, l, u, lo| {
                for r in 0..l.len() {
                    let xi = &x[(start + r) * d..(start + r + 1) * d];
                    let mut best = 0usize;
                    let mut best_d = dist(xi, &c[..d]);
                    lo[r * k] = best_d;
                    for j in 1..k {
                        if best_d > half[best * k + j] {
                            let dj = dist(xi, &c[j * d..(j + 1) * d]);
                            lo[r * k + j] = dj;
                            if dj < best_d {
                                best = j;
                                best_d = dj;
                            }
                        }
                    }
                    l[r] = best as u32;
                    u[r] = best_d;
                }
            },
        );
    }

    /// One assignment pass against centres `c`; returns the rows whose label changed, as
    /// (row, old label, new label) in row order.
    fn iterate(&mut self, c: &[f32], half: &[f32], next: &[f32]) -> Vec<(usize, usize, usize)> {
        let (d, k, x) = (self.d, self.k, self.x);
        let parts = for_blocks(
            &mut self.labels,
            &mut self.upper,
            &mut self.lower,
            k,
            |start, l, u, lo| {
                let mut changes = Vec::new();
                for r in 0..l.len() {
                    let xi = &x[(start + r) * d..(start + r + 1) * d];
                    let old = l[r] as usize;
                    let mut label = old;
                    let mut ub = u[r];
                    if next[label] < ub {
                        let mut tight = false;
                        for j in 0..k {
                            if j != label && ub > lo[r * k + j] && ub > half[label * k + j] {
                                if !tight {
                                    ub = dist(xi, &c[label * d..(label + 1) * d]);
                                    lo[r * k + label] = ub;
                                    tight = true;
                                }
                                if ub > lo[r * k + j] || ub > half[label * k + j] {
                                    let dj = dist(xi, &c[j * d..(j + 1) * d]);
                                    lo[r * k + j] = dj;
                                    if dj < ub {
                                        label = j;
                                        ub = dj;
                                    }
                                }
                            }
                        }
                    }
                    l[r] = label as u32;
                    u[r] = ub;
                    if label != old {
                        changes.push((start + r, old, label));
                    }
                }
                changes
            },
        );
        parts.into_iter().flatten().collect()
    }
}

/// Per-cluster sums (f64) and counts, kept in step with the labels: after the first pass only
/// the rows that changed cluster are moved, so late iterations cost little beyond the bounds.
struct ClusterSums {
    sums: Vec<f64>,
    counts: Vec<f64>,
}

impl ClusterSums {
    fn of(state: &State<'_>) -> Self {
        let (d, k) = (state.d, state.k);
        let mut sums = vec![0f64; k * d];
        let mut counts = vec![0f64; k];
        for (i, &l) in state.labels.iter().enumerate() {
            let l = l as usize;
            counts[l] += 1.0;
            for (a, v) in sums[l * d..(l + 1) * d].iter_mut().zip(state.row(i)) {
                *a += *v as f64;
            }
        }
        Self { sums, counts }
    }

    fn apply(&mut self, state: &State<'_>, changes: &[(usize, usize, usize)]) {
        let d = state.d;
        for &(i, from, to) in changes {
            let row = state.row(i);
            for (a, v) in self.sums[from * d..(from + 1) * d].iter_mut().zip(row) {
                *a -= *v as f64;
            }
            for (a, v) in self.sums[to * d..(to + 1) * d].iter_mut().zip(row) {
                *a += *v as f64;
            }
            self.counts[from] -= 1.0;
            self.counts[to] += 1.0;
        }
    }
}

pub(crate) fn run(x: HostRows<'_>, centers: Vec<f32>, k: usize, max_iter: usize, tol: f64) -> Run {
    let (d, n) = (x.d, x.values.len() / x.d);
    let mut state = State {
        x: x.values,
        d,
        k,
        labels: vec![0; n],
        upper: vec![0.0; n],
        lower: vec![0.0; n * k],
    };
    let mut c = centers;
    let (mut half, mut next) = center_geometry(&c, k, d);
    state.init_bounds(&c, &half);
    let mut clusters = ClusterSums::of(&state);
    let mut labels_old: Option<Vec<u32>> = None;
    let mut strict = false;
    let mut iterations = 0;
    for i in 0..max_iter {
        iterations = i + 1;
        if i > 0 {
            let changes = state.iterate(&c, &half, &next);
            clusters.apply(&state, &changes);
        }
        // Relocation works on copies: the running sums must keep matching the labels.
        let (mut sums, mut counts) = (clusters.sums.clone(), clusters.counts.clone());
        relocate_empty(&state, &c, &mut sums, &mut counts);
        let new_c = means(&sums, &counts);
        let shift: Vec<f32> = (0..k)
            .map(|j| dist(&c[j * d..(j + 1) * d], &new_c[j * d..(j + 1) * d]))
            .collect();
        // Moving the centres loosens the bounds by as much as each centre moved.
        for (r, lower) in state.lower.chunks_exact_mut(k).enumerate() {
            state.upper[r] += shift[state.labels[r] as usize];
            for (lo, s) in lower.iter_mut().zip(&shift) {
                *lo = (*lo - s).max(0.0);
            }
        }
        c = new_c;
        (half, next) = center_geometry(&c, k, d);
        if labels_old.as_ref() == Some(&state.labels) {
            strict = true;
            break;
        }
        let shift_tot: f64 = shift.iter().map(|s| (*s as f64) * (*s as f64)).sum();
        if shift_tot <= tol {
            break;
        }
        labels_old = Some(state.labels.clone());
    }
    if !strict {
        state.iterate(&c, &half, &next);
    }
    let inertia = (0..n)
        .map(|i| {
            let l = state.labels[i] as usize;
            let dd = dist(state.row(i), &c[l * d..(l + 1) * d]) as f64;
            dd * dd
        })
        .sum();
    Run {
        centers: c,
        labels: state.labels,
        inertia,
        n_iter: iterations,
    }
}

/// Re-seeds each empty cluster with the row farthest from its centre, as Lloyd does.
fn relocate_empty(state: &State<'_>, c: &[f32], sums: &mut [f64], counts: &mut [f64]) {
    let d = state.d;
    let empty = empty_clusters(counts);
    if empty.is_empty() {
        return;
    }
    let mut far: Vec<(f32, usize)> = (0..state.labels.len())
        .map(|i| {
            let l = state.labels[i] as usize;
            (dist(state.row(i), &c[l * d..(l + 1) * d]), i)
        })
        .collect();
    far.sort_by(|a, b| b.0.total_cmp(&a.0));
    let farthest: Vec<(usize, &[f32])> = far
        .iter()
        .take(empty.len())
        .map(|&(_, i)| (state.labels[i] as usize, state.row(i)))
        .collect();
    reseed_empty(sums, counts, &empty, &farthest);
}
