//! Batch normalisation of `[batch, channels, height, width]` activations and of
//! `[batch, features]` rows while training, with [`crate::kernels::batch_norm_train`] and
//! [`crate::kernels::batch_norm_train_rows`] (kernels of their own on flex, operations that
//! keep the channels-first layout elsewhere). The layer, its state and its records stay
//! `burn::nn::BatchNorm`'s; inference and frozen layers use its own forward pass.

use burn::nn::BatchNorm;
use burn::tensor::Tensor;

use crate::kernels::{batch_norm_train, batch_norm_train_rows};

/// `norm.forward(x)`, with the training-mode statistics computed as described above; running
/// statistics are updated exactly as `BatchNorm` does (biased batch variance, `momentum`).
pub fn batch_norm_2d(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if !(x.device().is_autodiff() && norm.training.is_enabled()) {
        return norm.forward(x);
    }
    let (out, mean, variance) =
        batch_norm_train(x, norm.gamma.val(), norm.beta.val(), norm.epsilon);
    update_running(norm, mean, variance);
    out
}

/// [`batch_norm_2d`] for `[batch, features]` rows (the projectors' hidden layers), through
/// [`batch_norm_train_rows`].
pub(crate) fn batch_norm_1d(norm: &BatchNorm, x: Tensor<2>) -> Tensor<2> {
    if !(x.device().is_autodiff() && norm.training.is_enabled()) {
        return norm.forward(x);
    }
    let (out, mean, variance) =
        batch_norm_train_rows(x, norm.gamma.val(), norm.beta.val(), norm.epsilon);
    update_running(norm, mean, variance);
    out
}

/// Moves the running statistics toward the batch's by `momentum`, detached.
fn update_running(norm: &BatchNorm, mean: Tensor<1>, variance: Tensor<1>) {
    let device = mean.device();
    let m = norm.momentum;
    let running = |state: Tensor<1>, batch: Tensor<1>| {
        state
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(batch.mul_scalar(m))
            .detach()
    };
    norm.running_mean
        .update(running(norm.running_mean.value_sync(), mean));
    norm.running_var
        .update(running(norm.running_var.value_sync(), variance));
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, Distribution};

    use super::*;

    #[test]
    fn matches_burns_batch_norm_values_gradients_and_running_statistics() {
        let device = Device::flex().autodiff();
        let norm = BatchNormConfig::new(3).init(&device);
        let ours_norm = norm.clone();
        let x = crate::test_data::seeded([4, 3, 5, 6], Distribution::Normal(2.0, 3.0), 1, &device)
            .require_grad();
        let weights = crate::test_data::seeded([4, 3, 5, 6], Distribution::Default, 2, &device);

        let theirs = norm.forward(x.clone());
        let ours = batch_norm_2d(&ours_norm, x.clone());
        let close = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
        assert!(close(theirs.clone(), ours.clone()) < 1e-5);

        let g_theirs = (theirs * weights.clone()).sum().backward();
        let g_ours = (ours * weights).sum().backward();
        let dx = (x.grad(&g_theirs).unwrap() - x.grad(&g_ours).unwrap())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(dx < 1e-5, "input gradients differ by {dx}");
        for (a, b) in [
            (norm.gamma.grad(&g_theirs), ours_norm.gamma.grad(&g_ours)),
            (norm.beta.grad(&g_theirs), ours_norm.beta.grad(&g_ours)),
        ] {
            let d = (a.unwrap() - b.unwrap()).abs().max().into_scalar::<f32>();
            assert!(d < 1e-4, "parameter gradients differ by {d}");
        }

        // Running statistics, read after syncing as a checkpoint does.
        let (theirs, ours) = (norm.valid(), ours_norm.valid());
        for (a, b) in [
            (theirs.running_mean.value(), ours.running_mean.value()),
            (theirs.running_var.value(), ours.running_var.value()),
        ] {
            let d = (a - b).abs().max().into_scalar::<f32>();
            assert!(d < 1e-5, "running statistics differ by {d}");
        }
        // Inference uses the running statistics, as BatchNorm does.
        let plain = Tensor::<4>::ones([2, 3, 5, 6], &Device::flex());
        let d = (theirs.forward(plain.clone()) - batch_norm_2d(&ours, plain))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(d < 1e-6);
    }

    #[test]
    fn rows_match_burns_batch_norm_values_gradients_and_running_statistics() {
        let device = Device::flex().autodiff();
        let norm = BatchNormConfig::new(37).init(&device);
        let ours_norm = norm.clone();
        // A large mean beside the spread, and enough rows for several blocks.
        let x = crate::test_data::seeded([600, 37], Distribution::Normal(30.0, 2.0), 3, &device)
            .require_grad();
        let weights = crate::test_data::seeded([600, 37], Distribution::Default, 4, &device);
        let theirs = norm.forward(x.clone());
        let ours = batch_norm_1d(&ours_norm, x.clone());
        let close = |a: Tensor<2>, b: Tensor<2>| (a - b).abs().max().into_scalar::<f32>();
        assert!(close(theirs.clone(), ours.clone()) < 1e-4);
        let g_theirs = (theirs * weights.clone()).sum().backward();
        let g_ours = (ours * weights).sum().backward();
        let dx = close(x.grad(&g_theirs).unwrap(), x.grad(&g_ours).unwrap());
        assert!(dx < 1e-5, "input gradients differ by {dx}");
        for (a, b) in [
            (norm.gamma.grad(&g_theirs), ours_norm.gamma.grad(&g_ours)),
            (norm.beta.grad(&g_theirs), ours_norm.beta.grad(&g_ours)),
        ] {
            let d = (a.unwrap() - b.unwrap()).abs().max().into_scalar::<f32>();
            assert!(d < 1e-3, "parameter gradients differ by {d}");
        }
        let (theirs, ours) = (norm.valid(), ours_norm.valid());
        for (a, b) in [
            (theirs.running_mean.value(), ours.running_mean.value()),
            (theirs.running_var.value(), ours.running_var.value()),
        ] {
            let d = (a - b).abs().max().into_scalar::<f32>();
            assert!(d < 1e-4, "running statistics differ by {d}");
        }
    }
}
