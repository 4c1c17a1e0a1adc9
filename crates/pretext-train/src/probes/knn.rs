//! The kNN probe: cosine similarity to a labelled memory bank, the k nearest vote with weights
//! `exp(similarity / temperature)` (as InstDisc and DINO evaluate).

use burn::tensor::Device;

use crate::probes::mining::{nearest_in, unit};

/// Settings of the probe. Defaults: k = 20, temperature 0.07.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnProbe {
    pub k: usize,
    pub temperature: f32,
}

impl Default for KnnProbe {
    fn default() -> Self {
        Self {
            k: 20,
            temperature: 0.07,
        }
    }
}

impl KnnProbe {
    /// Predicted class of every query row: its `k` most similar bank rows (cosine; ties to the
    /// lower bank index) vote.
    pub fn predict(
        &self,
        bank: &[f32],
        bank_labels: &[u32],
        queries: &[f32],
        dim: usize,
        num_classes: usize,
        device: &Device,
    ) -> Vec<u32> {
        let n_bank = bank_labels.len();
        if n_bank == 0 || dim == 0 {
            return vec![0; queries.len() / dim.max(1)];
        }
        let k = self.k.min(n_bank);
        let (index, similarity) = nearest_in(
            &unit(bank.to_vec(), dim),
            &unit(queries.to_vec(), dim),
            dim,
            k,
            device,
        );
        let mut votes = vec![0f64; num_classes.max(1)];
        index
            .chunks_exact(k)
            .zip(similarity.chunks_exact(k))
            .map(|(neighbours, sims)| {
                votes.fill(0.0);
                for (&i, &s) in neighbours.iter().zip(sims) {
                    if let Some(v) = votes.get_mut(bank_labels[i as usize] as usize) {
                        *v += ((s / self.temperature) as f64).exp();
                    }
                }
                (0..votes.len())
                    .max_by(|&a, &b| votes[a].total_cmp(&votes[b]).then(b.cmp(&a)))
                    .unwrap_or(0) as u32
            })
            .collect()
    }
}

/// Fraction of queries whose kNN prediction equals their label.
#[allow(clippy::too_many_arguments)]
pub fn knn_accuracy(
    probe: &KnnProbe,
    bank: &[f32],
    bank_labels: &[u32],
    queries: &[f32],
    query_labels: &[u32],
    dim: usize,
    num_classes: usize,
    device: &Device,
) -> f64 {
    let predicted = probe.predict(bank, bank_labels, queries, dim, num_classes, device);
    let correct = predicted
        .iter()
        .zip(query_labels)
        .filter(|(p, l)| p == l)
        .count();
    correct as f64 / query_labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_neighbours_vote_by_similarity() {
        let device = Device::flex();
        // Class 0 points along x, class 1 along y; k = 3 with two class-1 points far away.
        let bank = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0, -0.1, 1.0];
        let labels = [0, 0, 1, 1];
        let queries = [1.0, 0.05, 0.05, 1.0, 0.7, 0.72];
        let probe = KnnProbe {
            k: 3,
            temperature: 0.1,
        };
        let p = probe.predict(&bank, &labels, &queries, 2, 2, &device);
        assert_eq!(&p[..2], &[0, 1]);
        let acc = knn_accuracy(
            &probe,
            &bank,
            &labels,
            &queries[..4],
            &[0, 1],
            2,
            2,
            &device,
        );
        assert_eq!(acc, 1.0);
    }

    #[test]
    fn queries_identical_to_the_bank_are_recognised() {
        let device = Device::flex();
        let bank: Vec<f32> = (0..40).map(|i| ((i * 7919) % 97) as f32 - 48.0).collect();
        let labels: Vec<u32> = (0..10).map(|i| i % 4).collect();
        let probe = KnnProbe {
            k: 1,
            temperature: 0.07,
        };
        let acc = knn_accuracy(&probe, &bank, &labels, &bank, &labels, 4, 4, &device);
        assert_eq!(acc, 1.0);
    }
}
