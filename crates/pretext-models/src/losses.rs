//! The pretext tasks' losses. Each returns a one-element tensor (the batch mean).

use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::kernels::{log_softmax_last, matmul};

/// Mean cross-entropy of `logits` `[batch, classes]` against class indices `[batch]` (Burn's
/// `CrossEntropyLoss` with its defaults, through the log-softmax kernel).
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let picked: Tensor<2> = log_softmax_last(logits).gather(1, targets.reshape([n, 1]));
    picked.mean().neg().reshape([1])
}

/// Rows scaled to unit L2 norm (a small epsilon keeps zero rows finite).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).add_scalar(1e-12).sqrt();
    x / norm
}

/// NT-Xent (SimCLR's normalised temperature-scaled cross-entropy) over the 2N projections of a
/// batch: `first[i]` and `second[i]` are a positive pair, every other view a negative. Mean over
/// all 2N anchors.
pub fn nt_xent(first: Tensor<2>, second: Tensor<2>, temperature: f32) -> Tensor<1> {
    let [n, _] = first.dims();
    let device = first.device();
    let z = l2_normalize(Tensor::cat(vec![first, second], 0));
    let similarity = matmul(z.clone(), z.transpose()).div_scalar(temperature);
    // A view is not its own negative: push the diagonal far below every other logit.
    let eye = Tensor::<2>::eye(2 * n, &device);
    let logits = similarity - eye.mul_scalar(1e9);
    let targets: Vec<i64> = (0..2 * n as i64)
        .map(|i| (i + n as i64) % (2 * n as i64))
        .collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [2 * n]), &device);
    let log_p = log_softmax_last(logits);
    let picked: Tensor<2> = log_p.gather(1, targets.reshape([2 * n, 1]));
    picked.mean().neg().reshape([1])
}

/// BYOL's regression loss (Grill et al. 2020): `2 - 2 cos(prediction, target)` per row, mean
/// over rows. The caller detaches `target` (the momentum network's projection).
pub fn byol_loss(prediction: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    let cos = (l2_normalize(prediction) * l2_normalize(target)).sum_dim(1);
    cos.mul_scalar(-2.0).add_scalar(2.0).mean().reshape([1])
}

/// The weights of VICReg's three terms. Defaults: the paper's 25, 25 and 1.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VicregWeights {
    pub invariance: f32,
    pub variance: f32,
    pub covariance: f32,
}

impl Default for VicregWeights {
    fn default() -> Self {
        Self {
            invariance: 25.0,
            variance: 25.0,
            covariance: 1.0,
        }
    }
}

/// VICReg's invariance term: the mean squared difference of the two embeddings.
pub fn vicreg_invariance(first: Tensor<2>, second: Tensor<2>) -> Tensor<1> {
    mse(first, second)
}

/// VICReg's variance term of one branch: the hinge `max(0, 1 - std)` of every dimension's
/// standard deviation over the batch (unbiased variance plus 1e-4, as the paper), averaged.
pub fn vicreg_variance(z: Tensor<2>) -> Tensor<1> {
    let std = z.var(0).add_scalar(1e-4).sqrt();
    std.neg().add_scalar(1.0).clamp_min(0.0).mean().reshape([1])
}

/// VICReg's covariance term of one branch: the squared off-diagonal entries of the batch
/// covariance matrix (unbiased), summed and divided by the dimension.
pub fn vicreg_covariance(z: Tensor<2>) -> Tensor<1> {
    let [n, d] = z.dims();
    let centred = z.clone() - z.mean_dim(0);
    let cov =
        matmul(centred.clone().transpose(), centred).div_scalar(n.saturating_sub(1).max(1) as f32);
    off_diagonal(cov)
        .powi_scalar(2)
        .sum()
        .div_scalar(d as f32)
        .reshape([1])
}

/// VICReg (Bardes et al. 2022): `invariance * s(z1, z2) + variance * (v(z1) + v(z2)) / 2 +
/// covariance * (c(z1) + c(z2))`, as the authors' code weighs the terms.
pub fn vicreg_loss(first: Tensor<2>, second: Tensor<2>, weights: VicregWeights) -> Tensor<1> {
    let invariance = vicreg_invariance(first.clone(), second.clone());
    let variance =
        (vicreg_variance(first.clone()) + vicreg_variance(second.clone())).div_scalar(2.0);
    let covariance = vicreg_covariance(first) + vicreg_covariance(second);
    invariance.mul_scalar(weights.invariance)
        + variance.mul_scalar(weights.variance)
        + covariance.mul_scalar(weights.covariance)
}

/// Barlow Twins (Zbontar et al. 2021): each embedding dimension standardised over the batch
/// (biased variance plus 1e-5, as the authors' affine-free batch norm), the cross-correlation
/// matrix `C` of the two views, then `sum((1 - C_ii)^2) + lambda * sum_{i != j} C_ij^2`.
pub fn barlow_twins_loss(first: Tensor<2>, second: Tensor<2>, lambda: f32) -> Tensor<1> {
    let [n, d] = first.dims();
    let standardise = |z: Tensor<2>| {
        let (var, mean) = z.clone().var_mean_bias(0);
        (z - mean) / var.add_scalar(1e-5).sqrt()
    };
    let c = matmul(standardise(first).transpose(), standardise(second)).div_scalar(n.max(1) as f32);
    let device = c.device();
    let eye = Tensor::<2>::eye(d, &device);
    let on_diagonal = (c.clone() * eye).sum_dim(1).reshape([d]).sub_scalar(1.0);
    on_diagonal.powi_scalar(2).sum().reshape([1])
        + off_diagonal(c)
            .powi_scalar(2)
            .sum()
            .mul_scalar(lambda)
            .reshape([1])
}

/// MoCo v3's contrastive loss (Chen, Xie and He 2021) of queries against keys: `q_i` and `k_i`
/// are a positive pair and every other key in the batch a negative; cross-entropy of the
/// cosine similarities over `temperature`, scaled by `2 * temperature` as the authors do. The
/// caller detaches `keys` (the momentum network's projections) and sums both directions.
pub fn info_nce(queries: Tensor<2>, keys: Tensor<2>, temperature: f32) -> Tensor<1> {
    let [n, _] = queries.dims();
    let device = queries.device();
    let logits =
        matmul(l2_normalize(queries), l2_normalize(keys).transpose()).div_scalar(temperature);
    let targets = Tensor::<1, Int>::arange(0..n as i64, &device);
    cross_entropy(logits, targets).mul_scalar(2.0 * temperature)
}

/// SCAN's clustering loss (Van Gansbeke et al. 2020) of one head, each part a one-element
/// tensor.
pub struct ScanLoss {
    /// `consistency - entropy_weight * entropy`, minimised.
    pub total: Tensor<1>,
    /// `-mean log <p(anchor), p(neighbour)>`: neighbours should fall in the same cluster.
    pub consistency: Tensor<1>,
    /// The entropy of the mean cluster distribution over the batch: high when clusters are used
    /// evenly, which keeps every image from falling in one cluster.
    pub entropy: Tensor<1>,
}

/// [`ScanLoss`] of cluster logits `[batch, clusters]` for anchors and one neighbour of each.
pub fn scan_loss(anchors: Tensor<2>, neighbours: Tensor<2>, entropy_weight: f32) -> ScanLoss {
    scan_losses(
        anchors.unsqueeze_dim(1),
        neighbours.unsqueeze_dim(1),
        entropy_weight,
    )
}

/// [`ScanLoss`] of several heads at once, from logits `[batch, heads, clusters]`: each part is
/// `[heads]`, one value per head.
pub fn scan_losses(anchors: Tensor<3>, neighbours: Tensor<3>, entropy_weight: f32) -> ScanLoss {
    let heads = anchors.dims()[1];
    let p_anchor = softmax(anchors, 2);
    let p_neighbour = softmax(neighbours, 2);
    let agreement = (p_anchor.clone() * p_neighbour).sum_dim(2);
    // SCAN clamps the products away from zero before the log, as here.
    let consistency = agreement
        .clamp_min(1e-7)
        .log()
        .mean_dim(0)
        .neg()
        .reshape([heads]);
    let mean = p_anchor.mean_dim(0).clamp_min(1e-8);
    let entropy = (mean.clone() * mean.log())
        .sum_dim(2)
        .neg()
        .reshape([heads]);
    ScanLoss {
        total: consistency.clone() - entropy.clone().mul_scalar(entropy_weight),
        consistency,
        entropy,
    }
}

/// The matrix with its diagonal set to zero.
fn off_diagonal(m: Tensor<2>) -> Tensor<2> {
    let [d, _] = m.dims();
    let eye = Tensor::<2>::eye(d, &m.device());
    m.clone() - m * eye
}

/// The mean over dimensions of the per-dimension standard deviation of the rows after scaling
/// them to unit length: about `1 / sqrt(dim)` for spread-out embeddings and 0 for a collapsed
/// one (every row the same), as SimSiam monitors collapse.
pub fn normalized_std(z: Tensor<2>) -> Tensor<1> {
    l2_normalize(z).var_bias(0).sqrt().mean().reshape([1])
}

/// Mean squared error per patch, averaged over the masked patches only: `predictions` and
/// `targets` are `[batch, patches, patch_dim]`, `mask` `[batch, patches]` holds 1 for masked.
pub fn masked_patch_mse(predictions: Tensor<3>, targets: Tensor<3>, mask: Tensor<2>) -> Tensor<1> {
    let [b, n, _] = predictions.dims();
    let per_patch: Tensor<2> = (predictions - targets)
        .powi_scalar(2)
        .mean_dim(2)
        .reshape([b, n]);
    let masked = mask.clone().sum();
    (per_patch * mask).sum().div(masked).reshape([1])
}

/// Mean squared error over every value.
pub fn mse<const D: usize>(predictions: Tensor<D>, targets: Tensor<D>) -> Tensor<1> {
    (predictions - targets).powi_scalar(2).mean().reshape([1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn t2(values: &[f32], rows: usize, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [rows, values.len() / rows]),
            device,
        )
    }

    fn scalar(t: Tensor<1>) -> f64 {
        t.into_data().try_into_vec_as::<f64>().unwrap()[0]
    }

    #[test]
    fn nt_xent_matches_a_hand_computed_value() {
        let device = Device::flex();
        // Two pairs in 2-D; after normalising: a = (1, 0), a' = (0.6, 0.8), b = (0, 1), b' = (-1, 0).
        let first = t2(&[2.0, 0.0, 0.0, 3.0], 2, &device);
        let second = t2(&[0.6, 0.8, -0.5, 0.0], 2, &device);
        let tau = 0.5f64;
        let z = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]];
        let dot = |i: usize, j: usize| z[i][0] * z[j][0] + z[i][1] * z[j][1];
        let mut want = 0.0;
        for i in 0..4 {
            let pos = (i + 2) % 4;
            let denom: f64 = (0..4)
                .filter(|&k| k != i)
                .map(|k| (dot(i, k) / tau).exp())
                .sum();
            want += -((dot(i, pos) / tau).exp() / denom).ln();
        }
        want /= 4.0;
        let got = scalar(nt_xent(first, second, tau as f32));
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    /// `tests/fixtures/joint_losses.json`: reference values from the papers' formulas in
    /// float64 NumPy (`make_joint_losses.py` beside it).
    fn joint_fixture() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/joint_losses.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn matrix(value: &serde_json::Value, device: &Device) -> Tensor<2> {
        let rows: Vec<Vec<f32>> = serde_json::from_value(value.clone()).unwrap();
        let flat: Vec<f32> = rows.concat();
        t2(&flat, rows.len(), device)
    }

    #[test]
    fn joint_embedding_losses_match_the_reference_fixture() {
        let device = Device::flex();
        let f = joint_fixture();
        let (a, b) = (matrix(&f["first"], &device), matrix(&f["second"], &device));
        let want = |key: &str| f[key].as_f64().unwrap();
        let checks: Vec<(&str, Tensor<1>)> = vec![
            ("byol", byol_loss(a.clone(), b.clone())),
            ("vicreg_invariance", vicreg_invariance(a.clone(), b.clone())),
            ("vicreg_variance_first", vicreg_variance(a.clone())),
            ("vicreg_covariance_first", vicreg_covariance(a.clone())),
            (
                "vicreg",
                vicreg_loss(a.clone(), b.clone(), VicregWeights::default()),
            ),
            (
                "vicreg_weights_2_3_4",
                vicreg_loss(
                    a.clone(),
                    b.clone(),
                    VicregWeights {
                        invariance: 2.0,
                        variance: 3.0,
                        covariance: 4.0,
                    },
                ),
            ),
            (
                "barlow_twins_lambda_0.005",
                barlow_twins_loss(a.clone(), b.clone(), 0.005),
            ),
            (
                "barlow_twins_lambda_0.5",
                barlow_twins_loss(a.clone(), b.clone(), 0.5),
            ),
            ("info_nce_t_0.2", info_nce(a.clone(), b.clone(), 0.2)),
            ("info_nce_t_1.0", info_nce(a.clone(), b.clone(), 1.0)),
            ("normalized_std_first", normalized_std(a.clone())),
            (
                "normalized_std_collapsed",
                normalized_std(a.clone().narrow(0, 0, 1).repeat_dim(0, 6)),
            ),
        ];
        for (key, got) in checks {
            let (got, want) = (scalar(got), want(key));
            let tolerance = 1e-5 * want.abs().max(1.0);
            assert!((got - want).abs() < tolerance, "{key}: {got} vs {want}");
        }
    }

    #[test]
    fn each_head_of_the_batched_scan_loss_is_its_own_scan_loss() {
        let device = Device::flex();
        let a = crate::test_data::seeded([6, 3, 4], Distribution::Normal(0.0, 1.0), 1, &device);
        let n = crate::test_data::seeded([6, 3, 4], Distribution::Normal(0.0, 1.0), 2, &device);
        let all = scan_losses(a.clone(), n.clone(), 2.0);
        let values = |t: Tensor<1>| t.into_data().try_into_vec_as::<f32>().unwrap();
        let totals = values(all.total);
        for (h, total) in totals.into_iter().enumerate() {
            let head = |t: &Tensor<3>| t.clone().narrow(1, h, 1).reshape([6, 4]);
            let one = scan_loss(head(&a), head(&n), 2.0);
            assert!((values(one.total)[0] - total).abs() < 1e-6, "head {h}");
        }
    }

    #[test]
    fn the_scan_loss_matches_the_reference_fixture() {
        let device = Device::flex();
        let f = joint_fixture();
        let (a, b) = (matrix(&f["first"], &device), matrix(&f["second"], &device));
        let want: Vec<f64> = serde_json::from_value(f["scan_weight_5"].clone()).unwrap();
        let got = scan_loss(a, b, 5.0);
        for (part, (got, want)) in [got.total, got.consistency, got.entropy]
            .into_iter()
            .map(scalar)
            .zip(want)
            .enumerate()
        {
            assert!((got - want).abs() < 1e-5, "part {part}: {got} vs {want}");
        }
    }

    #[test]
    fn barlow_twins_is_invariant_to_scaling_and_shifting_each_view() {
        let device = Device::flex();
        let f = joint_fixture();
        let (a, b) = (matrix(&f["first"], &device), matrix(&f["second"], &device));
        let plain = scalar(barlow_twins_loss(a.clone(), b.clone(), 0.005));
        let moved = scalar(barlow_twins_loss(
            a.mul_scalar(2.0).add_scalar(4.0),
            b.mul_scalar(0.5).sub_scalar(3.0),
            0.005,
        ));
        assert!((plain - moved).abs() < 1e-4, "{plain} vs {moved}");
    }

    #[test]
    fn joint_losses_fall_under_gradient_descent() {
        // A few steps on the embeddings themselves lower every loss: the gradients point the
        // right way.
        let device = Device::flex().autodiff();
        let f = joint_fixture();
        let target = matrix(&f["second"], &device);
        type PairLoss = fn(Tensor<2>, Tensor<2>) -> Tensor<1>;
        let losses: [(&str, PairLoss); 4] = [
            ("byol", byol_loss),
            ("vicreg", |a, b| vicreg_loss(a, b, VicregWeights::default())),
            ("barlow", |a, b| barlow_twins_loss(a, b, 0.005)),
            ("info_nce", |a, b| info_nce(a, b, 0.2)),
        ];
        for (name, loss) in losses {
            let mut z = matrix(&f["first"], &device).require_grad();
            let first = scalar(loss(z.clone(), target.clone()));
            for _ in 0..20 {
                let l = loss(z.clone(), target.clone());
                let grads = l.backward();
                let g = z.grad(&grads).unwrap();
                z = z.detach().sub(g.mul_scalar(0.05)).detach().require_grad();
            }
            let last = scalar(loss(z, target.clone()));
            assert!(last < first * 0.95, "{name}: {first} -> {last}");
        }
    }

    #[test]
    fn masked_patch_mse_ignores_visible_patches() {
        let device = Device::flex();
        let targets = Tensor::<3>::zeros([1, 3, 2], &device);
        // Patch 0 (masked) is off by 1 everywhere; patch 1 (visible) by 100.
        let predictions = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 1.0, 100.0, 100.0, 0.0, 0.0], [1, 3, 2]),
            &device,
        );
        let mask = t2(&[1.0, 0.0, 1.0], 1, &device);
        let got = scalar(masked_patch_mse(predictions, targets, mask));
        // Masked patches 0 and 2 have errors 1 and 0: mean 0.5.
        assert!((got - 0.5).abs() < 1e-6, "{got}");
    }
}
