//! Nearest neighbours of frozen features by cosine similarity, for the kNN probe, SCAN and
//! label propagation; and the space SCAN and label propagation mine them in: features
//! standardised by the training pool's statistics, rows scaled to unit length, projected on
//! their first principal components when the features are wide, and scaled to unit length
//! again, so that a dot product is a cosine similarity.

use burn::tensor::{Device, Tensor, TensorData};

use pretext_baselines::tsne::nearest_neighbours;
use pretext_baselines::{Components, Fit, Pca, PcaConfig, PcaSolver, Transform};

use crate::error::Result;
use crate::probes::linear::standardisation;

pub(crate) fn tensor(values: Vec<f32>, dim: usize, device: &Device) -> Tensor<2> {
    let rows = values.len() / dim;
    Tensor::from_data(TensorData::new(values, [rows, dim]), device)
}

/// Rows scaled to unit length (zero rows stay zero).
pub(crate) fn unit(mut v: Vec<f32>, dim: usize) -> Vec<f32> {
    for row in v.chunks_exact_mut(dim) {
        let norm = row.iter().map(|a| a * a).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|a| *a /= norm);
        }
    }
    v
}

/// Standardisation by a reference set's per-feature mean and variance.
pub(crate) struct Standardiser {
    mean: Vec<f32>,
    scale: Vec<f32>,
}

impl Standardiser {
    pub(crate) fn fit(reference: &[f32], dim: usize) -> Self {
        let (mean, scale) = standardisation(reference, dim);
        Self { mean, scale }
    }

    pub(crate) fn apply(&self, rows: &[f32]) -> Vec<f32> {
        rows.chunks_exact(self.mean.len())
            .flat_map(|r| {
                r.iter()
                    .zip(self.mean.iter().zip(&self.scale))
                    .map(|(v, (m, s))| (v - m) * s)
            })
            .collect()
    }
}

/// Unit rows, on their first principal components when the features are wider than the
/// number asked for, scaled to unit length again.
pub(crate) struct MiningSpace {
    pca: Option<Pca>,
    pub dim: usize,
    input: usize,
}

impl MiningSpace {
    /// Fits on standardised rows `x` of `dim` features.
    pub(crate) fn fit(
        x: &[f32],
        dim: usize,
        components: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        if dim <= components {
            return Ok(Self {
                pca: None,
                dim,
                input: dim,
            });
        }
        let pca = PcaConfig::new(Components::Count(components))
            .solver(PcaSolver::Randomized)
            .seed(seed)
            .fit(&tensor(unit(x.to_vec(), dim), dim, device))?;
        Ok(Self {
            pca: Some(pca),
            dim: components,
            input: dim,
        })
    }

    /// Standardised rows in the space: unit rows of [`Self::dim`] values.
    pub(crate) fn project(&self, rows: &[f32], device: &Device) -> Result<Vec<f32>> {
        let rows = unit(rows.to_vec(), self.input);
        let Some(pca) = &self.pca else {
            return Ok(rows);
        };
        let projected = pca
            .transform(&tensor(rows, self.input, device))?
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap_or_default();
        Ok(unit(projected, self.dim))
    }
}

/// Each unit row's `k` nearest others, most similar first: their indices and cosine
/// similarities, `[rows * k]` each.
pub(crate) fn nearest(z: &[f32], dim: usize, k: usize, device: &Device) -> (Vec<u32>, Vec<f32>) {
    let found = nearest_neighbours(&tensor(z.to_vec(), dim, device), k);
    let mut index = Vec::with_capacity(found.len() * k);
    let mut similarity = Vec::with_capacity(found.len() * k);
    for row in found {
        for nb in row {
            index.push(nb.index as u32);
            // Unit rows: |a - b|² = 2 - 2 cos.
            similarity.push(1.0 - nb.distance * nb.distance / 2.0);
        }
    }
    (index, similarity)
}

/// Each query row's `k` most similar rows of `bank` (both unit rows of `dim`), most similar
/// first: indices into the bank and cosine similarities, `[queries * k]` each. Similarities are
/// matrix products on `device`, a block of queries at a time.
pub(crate) fn nearest_in(
    bank: &[f32],
    queries: &[f32],
    dim: usize,
    k: usize,
    device: &Device,
) -> (Vec<u32>, Vec<f32>) {
    let n_bank = bank.len() / dim.max(1);
    let k = k.min(n_bank);
    let mut index = Vec::with_capacity(queries.len() / dim.max(1) * k);
    let mut similarity = Vec::with_capacity(index.capacity());
    if k == 0 {
        return (index, similarity);
    }
    let bank_t = tensor(bank.to_vec(), dim, device).transpose();
    let mut order: Vec<usize> = Vec::with_capacity(n_bank);
    for rows in queries.chunks(512 * dim) {
        let sims = tensor(rows.to_vec(), dim, device)
            .matmul(bank_t.clone())
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap_or_default();
        for row in sims.chunks_exact(n_bank) {
            order.clear();
            order.extend(0..n_bank);
            let by_similarity = |&a: &usize, &b: &usize| row[b].total_cmp(&row[a]).then(a.cmp(&b));
            if k < n_bank {
                order.select_nth_unstable_by(k, by_similarity);
            }
            order.truncate(k);
            order.sort_unstable_by(by_similarity);
            index.extend(order.iter().map(|&i| i as u32));
            similarity.extend(order.iter().map(|&i| row[i]));
        }
    }
    (index, similarity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_within_a_set_and_from_queries_agree_with_cosine_order() {
        let device = Device::default();
        // Four unit rows in the plane at angles 0, 10, 90 and 100 degrees.
        let at = |deg: f32| [deg.to_radians().cos(), deg.to_radians().sin()];
        let bank: Vec<f32> = [0.0, 10.0, 90.0, 100.0].into_iter().flat_map(at).collect();
        let (index, similarity) = nearest(&bank, 2, 1, &device);
        assert_eq!(index, vec![1, 0, 3, 2]);
        for s in &similarity {
            assert!((s - 10f32.to_radians().cos()).abs() < 1e-4, "{s}");
        }
        let queries: Vec<f32> = [5.0, 96.0].into_iter().flat_map(at).collect();
        let (index, similarity) = nearest_in(&bank, &queries, 2, 2, &device);
        assert_eq!(index, vec![0, 1, 3, 2]);
        assert!((similarity[0] - 5f32.to_radians().cos()).abs() < 1e-5);
        assert!((similarity[2] - 4f32.to_radians().cos()).abs() < 1e-5);
        assert!(similarity[0] >= similarity[1] && similarity[2] >= similarity[3]);
    }
}
