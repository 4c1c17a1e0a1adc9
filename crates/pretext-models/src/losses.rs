//! The pretext tasks' losses. Each returns a one-element tensor (the batch mean).

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

/// Mean cross-entropy of `logits` `[batch, classes]` against class indices `[batch]`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, targets)
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
    let similarity = z.clone().matmul(z.transpose()).div_scalar(temperature);
    // A view is not its own negative: push the diagonal far below every other logit.
    let eye = Tensor::<2>::eye(2 * n, &device);
    let logits = similarity - eye.mul_scalar(1e9);
    let targets: Vec<i64> = (0..2 * n as i64)
        .map(|i| (i + n as i64) % (2 * n as i64))
        .collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [2 * n]), &device);
    let log_p = log_softmax(logits, 1);
    let picked: Tensor<2> = log_p.gather(1, targets.reshape([2 * n, 1]));
    picked.mean().neg().reshape([1])
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
    use burn::tensor::Device;

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
