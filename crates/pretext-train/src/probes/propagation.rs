//! Label propagation (Zhou et al. 2004; on deep features as Iscen et al. 2019): the few labels
//! spread over the graph of the training pool's nearest neighbours, so an unlabelled image
//! takes the class of the labelled images it reaches through its neighbours' neighbours. The
//! graph needs no labels, so one graph serves every label budget and seed. Test images are not
//! in it: each takes the propagated classes of its nearest pool images, weighted by similarity,
//! so nothing is learnt from them.
//!
//! Neighbours are mined as SCAN mines them (the standardised features' first principal
//! components, cosine similarity). Edges weigh `max(similarity, 0)^power`; the graph is made
//! symmetric and normalised (`D^-1/2 W D^-1/2`), and the class scores follow
//! `F <- alpha W F + (1 - alpha) Y` from the one-hot labels `Y`; each class's scores are then
//! scaled to the same total over the pool (`balance`).

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::probes::mining::{MiningSpace, Standardiser, nearest, nearest_in};

/// Settings of label propagation. Defaults (chosen on the validation split of the 30-minute
/// recipe's encoder): 10 neighbours, alpha 0.99 and edge weights of similarity cubed as Iscen et
/// al., 30 iterations, neighbours mined on 128 principal components, test images read from
/// their 20 nearest pool images, classes balanced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PropagationConfig {
    /// Each pool image's neighbours in the graph.
    pub neighbours: usize,
    /// How far the labels spread: near 0 they stay where they are given, near 1 the graph
    /// decides.
    pub alpha: f32,
    /// Edge weights are cosine similarities to this power: higher trusts the closest more.
    pub power: f32,
    pub iterations: usize,
    /// Neighbours are mined on at most this many principal components of the features.
    pub mining_components: usize,
    /// The pool images a test image's classes are read from.
    pub query_neighbours: usize,
    /// Each class's propagated scores scaled to the same total over the pool before classes
    /// are read (Iscen et al. balance classes too), so that a class whose few labels sit in a
    /// dense region does not take over its neighbours'.
    pub balance: bool,
}

impl Default for PropagationConfig {
    fn default() -> Self {
        Self {
            neighbours: 10,
            alpha: 0.99,
            power: 3.0,
            iterations: 30,
            mining_components: 128,
            query_neighbours: 20,
            balance: true,
        }
    }
}

impl PropagationConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn validate(&self) -> Result<()> {
        if self.neighbours == 0
            || self.iterations == 0
            || self.mining_components == 0
            || self.query_neighbours == 0
        {
            return Err(TrainError::config(
                "propagation: neighbours, iterations, mining_components and query_neighbours \
                 must be positive",
            ));
        }
        let alpha_valid = self.alpha > 0.0 && self.alpha < 1.0;
        let power_valid = self.power.is_finite() && self.power > 0.0;
        if !(alpha_valid && power_valid) {
            return Err(TrainError::config(format!(
                "propagation: alpha = {} must lie strictly between 0 and 1 and power = {} be \
                 positive",
                self.alpha, self.power
            )));
        }
        Ok(())
    }

    /// The graph of `pool` (`rows x dim` features), built once for every propagation.
    pub fn graph(&self, pool: &[f32], dim: usize, seed: u64, device: &Device) -> Result<Graph> {
        self.validate()?;
        let n = pool.len().checked_div(dim).unwrap_or(0);
        if dim == 0 || pool.len() != n * dim {
            return Err(TrainError::config(format!(
                "propagation: {} values do not make rows of {dim}",
                pool.len()
            )));
        }
        if n <= self.neighbours {
            return Err(TrainError::config(format!(
                "propagation needs more than {} training images ({n} given)",
                self.neighbours
            )));
        }
        let standardiser = Standardiser::fit(pool, dim);
        let x = standardiser.apply(pool);
        let space = MiningSpace::fit(&x, dim, self.mining_components, seed, device)?;
        let mined = space.project(&x, device)?;
        let k = self.neighbours;
        let (index, similarity) = nearest(&mined, space.dim, k, device);
        // W + W^T as adjacency lists: each mined edge in both directions (an edge mined both
        // ways counts twice, as in the sum of the two matrices).
        let mut edges: Vec<Vec<(u32, f32)>> = vec![Vec::with_capacity(2 * k); n];
        for i in 0..n {
            for e in i * k..(i + 1) * k {
                let w = similarity[e].max(0.0).powf(self.power);
                let j = index[e] as usize;
                edges[i].push((j as u32, w));
                edges[j].push((i as u32, w));
            }
        }
        let degree: Vec<f32> = edges
            .iter()
            .map(|row| row.iter().map(|&(_, w)| w).sum())
            .collect();
        let inv_sqrt = |d: f32| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 };
        for (i, row) in edges.iter_mut().enumerate() {
            for (j, w) in row.iter_mut() {
                *w *= inv_sqrt(degree[i]) * inv_sqrt(degree[*j as usize]);
            }
        }
        Ok(Graph {
            config: self.clone(),
            standardiser,
            space,
            mined,
            edges,
        })
    }
}

/// The normalised neighbour graph of a training pool and the space it was mined in.
pub struct Graph {
    config: PropagationConfig,
    standardiser: Standardiser,
    space: MiningSpace,
    mined: Vec<f32>,
    edges: Vec<Vec<(u32, f32)>>,
}

/// Class scores of every pool image after propagation, each row summing to one (uniform where
/// no label reached).
#[derive(Debug, Clone, PartialEq)]
pub struct Propagated {
    pub scores: Vec<f32>,
    pub classes: usize,
}

impl Propagated {
    /// Each row's most likely class (the lowest on ties).
    pub fn labels(&self) -> Vec<u32> {
        self.scores
            .chunks_exact(self.classes)
            .map(|row| argmax(row) as u32)
            .collect()
    }
}

/// Rows scaled to sum to one; a row of zeros becomes uniform.
fn normalise_rows(f: &mut [f32], classes: usize) {
    for row in f.chunks_exact_mut(classes) {
        let total: f32 = row.iter().sum();
        if total > 0.0 {
            row.iter_mut().for_each(|v| *v /= total);
        } else {
            row.fill(1.0 / classes as f32);
        }
    }
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

impl Graph {
    /// Pool images in the graph.
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Spreads `labels` of the pool rows `labelled` over the graph.
    pub fn propagate(
        &self,
        labelled: &[usize],
        labels: &[u32],
        classes: usize,
    ) -> Result<Propagated> {
        let n = self.len();
        if labelled.len() != labels.len() || labelled.is_empty() || classes == 0 {
            return Err(TrainError::config(format!(
                "propagation: {} labelled rows with {} labels for {classes} classes",
                labelled.len(),
                labels.len()
            )));
        }
        let mut y = vec![0f32; n * classes];
        for (&i, &c) in labelled.iter().zip(labels) {
            if i >= n || c as usize >= classes {
                return Err(TrainError::config(format!(
                    "propagation: row {i} or label {c} is out of range ({n} rows, {classes} \
                     classes)"
                )));
            }
            y[i * classes + c as usize] = 1.0;
        }
        let alpha = self.config.alpha;
        let mut f = y.clone();
        let mut next = vec![0f32; n * classes];
        for _ in 0..self.config.iterations {
            for (i, row) in self.edges.iter().enumerate() {
                let out = &mut next[i * classes..(i + 1) * classes];
                out.iter_mut()
                    .zip(&y[i * classes..(i + 1) * classes])
                    .for_each(|(o, &yv)| *o = (1.0 - alpha) * yv);
                for &(j, w) in row {
                    let j = j as usize;
                    let aw = alpha * w;
                    out.iter_mut()
                        .zip(&f[j * classes..(j + 1) * classes])
                        .for_each(|(o, &fv)| *o += aw * fv);
                }
            }
            std::mem::swap(&mut f, &mut next);
        }
        normalise_rows(&mut f, classes);
        if self.config.balance {
            let mut totals = vec![0f64; classes];
            for row in f.chunks_exact(classes) {
                totals
                    .iter_mut()
                    .zip(row)
                    .for_each(|(t, &v)| *t += v as f64);
            }
            for row in f.chunks_exact_mut(classes) {
                row.iter_mut()
                    .zip(&totals)
                    .for_each(|(v, &t)| *v = if t > 0.0 { (*v as f64 / t) as f32 } else { 0.0 });
            }
            normalise_rows(&mut f, classes);
        }
        Ok(Propagated { scores: f, classes })
    }

    /// The class of each query row (`rows x dim`, the pool's features): the scores of its
    /// nearest pool images, weighted as the graph's edges.
    pub fn predict(
        &self,
        propagated: &Propagated,
        queries: &[f32],
        device: &Device,
    ) -> Result<Vec<u32>> {
        let q = self
            .space
            .project(&self.standardiser.apply(queries), device)?;
        let k = self.config.query_neighbours.min(self.len());
        let (index, similarity) = nearest_in(&self.mined, &q, self.space.dim, k, device);
        let c = propagated.classes;
        let mut votes = vec![0f32; c];
        Ok(index
            .chunks_exact(k)
            .zip(similarity.chunks_exact(k))
            .map(|(nbs, sims)| {
                votes.fill(0.0);
                for (&j, &s) in nbs.iter().zip(sims) {
                    let w = s.max(0.0).powf(self.config.power);
                    let row = &propagated.scores[j as usize * c..(j as usize + 1) * c];
                    votes.iter_mut().zip(row).for_each(|(v, &p)| *v += w * p);
                }
                argmax(&votes) as u32
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Two parallel chains of points, one per class, each far longer than its distance to the
    /// other: with one label at an end of each, labels must travel along the chains.
    fn chains(per: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for c in 0..2u32 {
            for i in 0..per {
                let t = i as f32 / per as f32 * 8.0;
                x.extend([
                    t + rng.random_range(-0.05..0.05),
                    c as f32 * 1.0 + rng.random_range(-0.05..0.05),
                    1.0,
                ]);
                y.push(c);
            }
        }
        (x, y)
    }

    #[test]
    fn labels_spread_along_the_graph_and_reach_queries() {
        let device = Device::default();
        let (x, y) = chains(100, 0);
        let config = PropagationConfig {
            neighbours: 5,
            iterations: 200,
            ..PropagationConfig::default()
        };
        let graph = config.graph(&x, 3, 0, &device).unwrap();
        assert_eq!(graph.len(), 200);
        // One label per chain, at its far left end.
        let propagated = graph.propagate(&[0, 100], &[0, 1], 2).unwrap();
        for row in propagated.scores.chunks_exact(2) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let labels = propagated.labels();
        let correct = labels.iter().zip(&y).filter(|(a, b)| a == b).count();
        assert!(correct >= 190, "{correct} of 200 pool rows");
        let (q, qy) = chains(50, 1);
        let predicted = graph.predict(&propagated, &q, &device).unwrap();
        let correct = predicted.iter().zip(&qy).filter(|(a, b)| a == b).count();
        assert!(correct >= 95, "{correct} of 100 queries");
    }

    #[test]
    fn given_labels_stay_and_runs_repeat() {
        let device = Device::default();
        let (x, _) = chains(40, 2);
        let config = PropagationConfig {
            neighbours: 4,
            ..PropagationConfig::default()
        };
        let graph = config.graph(&x, 3, 0, &device).unwrap();
        let a = graph.propagate(&[3, 50, 70], &[0, 1, 1], 2).unwrap();
        let labels = a.labels();
        assert_eq!((labels[3], labels[50], labels[70]), (0, 1, 1));
        let again = config.graph(&x, 3, 0, &device).unwrap();
        assert_eq!(again.propagate(&[3, 50, 70], &[0, 1, 1], 2).unwrap(), a);
    }

    #[test]
    fn balancing_evens_out_the_classes_share_of_the_pool() {
        let device = Device::default();
        // One well-connected cloud, three labels of class 0 against one of class 1: class 0's
        // scores outweigh class 1's until balanced.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x: Vec<f32> = (0..80 * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let share = |balance: bool| {
            let config = PropagationConfig {
                neighbours: 20,
                balance,
                ..PropagationConfig::default()
            };
            let graph = config.graph(&x, 3, 0, &device).unwrap();
            let p = graph.propagate(&[0, 20, 40, 60], &[0, 0, 0, 1], 2).unwrap();
            let class0: f32 = p.scores.chunks_exact(2).map(|r| r[0]).sum();
            class0 / (p.scores.len() / 2) as f32
        };
        let (raw, balanced) = (share(false), share(true));
        assert!(raw > 0.6, "{raw}");
        assert!(
            (balanced - 0.5).abs() < (raw - 0.5).abs() / 2.0,
            "{raw} {balanced}"
        );
    }

    #[test]
    fn bad_settings_and_inputs_are_errors() {
        let device = Device::default();
        let (x, _) = chains(10, 3);
        for bad in [
            PropagationConfig {
                neighbours: 0,
                ..PropagationConfig::default()
            },
            PropagationConfig {
                alpha: 1.0,
                ..PropagationConfig::default()
            },
            PropagationConfig {
                power: f32::NAN,
                ..PropagationConfig::default()
            },
        ] {
            assert!(bad.validate().is_err());
        }
        let config = PropagationConfig {
            neighbours: 3,
            ..PropagationConfig::default()
        };
        assert!(config.graph(&x[..5], 3, 0, &device).is_err());
        assert!(config.graph(&x[..9], 3, 0, &device).is_err());
        let graph = config.graph(&x, 3, 0, &device).unwrap();
        assert!(graph.propagate(&[], &[], 2).is_err());
        assert!(graph.propagate(&[0], &[2], 2).is_err());
        assert!(graph.propagate(&[20], &[0], 2).is_err());
    }
}
