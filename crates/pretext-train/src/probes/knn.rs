//! The kNN probe: cosine similarity to a labelled memory bank, the k nearest vote with weights
//! `exp(similarity / temperature)` (as InstDisc and DINO evaluate).

use burn::tensor::{Device, Tensor, TensorData};

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

/// Rows scaled to unit length (zero rows stay zero).
fn normalized_rows(features: &[f32], dim: usize) -> Vec<f32> {
    let mut out = features.to_vec();
    for row in out.chunks_exact_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    out
}

impl KnnProbe {
    /// Predicted class of every query row. Similarities are computed as matrix products on
    /// `device`, a block of queries at a time; the neighbours are chosen on the host.
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
        let bank_t: Tensor<2> = Tensor::from_data(
            TensorData::new(normalized_rows(bank, dim), [n_bank, dim]),
            device,
        )
        .transpose();
        let k = self.k.min(n_bank);
        let mut predictions = Vec::with_capacity(queries.len() / dim);
        let block = 512;
        for rows in normalized_rows(queries, dim).chunks(block * dim) {
            let nq = rows.len() / dim;
            let q: Tensor<2> = Tensor::from_data(TensorData::new(rows.to_vec(), [nq, dim]), device);
            let sims = q
                .matmul(bank_t.clone())
                .into_data()
                .try_into_vec_as::<f32>()
                .unwrap_or_default();
            let mut order: Vec<usize> = (0..n_bank).collect();
            for row in sims.chunks_exact(n_bank) {
                // The k most similar, in any order: a partial selection, not a full sort.
                // Start every row from the same order, so ties break the same way.
                order.iter_mut().enumerate().for_each(|(i, o)| *o = i);
                order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
                let mut votes = vec![0f64; num_classes.max(1)];
                for &i in &order[..k] {
                    if let Some(v) = votes.get_mut(bank_labels[i] as usize) {
                        *v += ((row[i] / self.temperature) as f64).exp();
                    }
                }
                let best = (0..votes.len())
                    .max_by(|&a, &b| votes[a].total_cmp(&votes[b]).then(b.cmp(&a)))
                    .unwrap_or(0);
                predictions.push(best as u32);
            }
        }
        predictions
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
