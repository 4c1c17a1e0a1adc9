//! Batch normalisation of `[batch, channels, height, width]` activations and of
//! `[batch, features]` rows while training, with [`crate::kernels::batch_norm_train`] and
//! [`crate::kernels::batch_norm_train_rows`] (kernels of their own on flex, operations that
//! keep the channels-first layout elsewhere), and of the encoders' activations together with
//! the ReLU, pooling or residual add that follows them. The layer, its state and its records
//! stay `burn::nn::BatchNorm`'s. Inference and frozen layers use the running statistics, through
//! [`crate::kernels::batch_norm_running`] (one pass on flex, Burn's own layer elsewhere).

use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::kernels::{
    Then, batch_norm_running, batch_norm_train, batch_norm_train_add_relu,
    batch_norm_train_pool_relu, batch_norm_train_relu, batch_norm_train_rows,
};

/// `norm.forward(x)`, with the training-mode statistics computed as described above; running
/// statistics are updated exactly as `BatchNorm` does (biased batch variance, `momentum`).
pub fn batch_norm_2d(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    batch_norm(norm, x, batch_norm_train, |x| {
        batch_norm_running(norm, x, Then::Nothing)
    })
}

/// `relu(batch_norm_2d(norm, x))`, in one kernel on flex.
pub fn batch_norm_2d_relu(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    batch_norm(norm, x, batch_norm_train_relu, |x| {
        batch_norm_running(norm, x, Then::Relu)
    })
}

/// `max_pool2_relu(batch_norm_2d(norm, x))`, in one kernel on flex.
pub fn batch_norm_2d_pool_relu(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    batch_norm(norm, x, batch_norm_train_pool_relu, |x| {
        batch_norm_running(norm, x, Then::MaxPool2Relu)
    })
}

/// `relu(batch_norm_2d(norm, x) + residual)`, a residual block's end, in one kernel while
/// training on flex.
pub fn batch_norm_2d_add_relu(norm: &BatchNorm, x: Tensor<4>, residual: Tensor<4>) -> Tensor<4> {
    let kept = residual.clone();
    batch_norm(
        norm,
        x,
        |x, gamma, beta, epsilon| batch_norm_train_add_relu(x, gamma, beta, epsilon, residual),
        |x| relu(batch_norm_running(norm, x, Then::Nothing) + kept),
    )
}

/// [`batch_norm_2d`] for `[batch, features]` rows (the projectors' hidden layers), through
/// [`batch_norm_train_rows`].
pub(crate) fn batch_norm_1d(norm: &BatchNorm, x: Tensor<2>) -> Tensor<2> {
    batch_norm(norm, x, batch_norm_train_rows, |x| norm.forward(x))
}

/// In training, `train`'s output, with the running statistics moved toward its batch mean and
/// variance by `momentum`, detached; otherwise `running(x)`, the layer on its running
/// statistics.
fn batch_norm<const D: usize>(
    norm: &BatchNorm,
    x: Tensor<D>,
    train: impl FnOnce(Tensor<D>, Tensor<1>, Tensor<1>, f64) -> (Tensor<D>, Tensor<1>, Tensor<1>),
    running: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    if !(x.device().is_autodiff() && norm.training.is_enabled()) {
        return running(x);
    }
    let device = x.device();
    let (out, mean, variance) = train(x, norm.gamma.val(), norm.beta.val(), norm.epsilon);
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
    out
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// Largest differences allowed between pretext's layer and Burn's.
    struct Limits {
        output: f32,
        input_grad: f32,
        param_grad: f32,
        running: f32,
    }

    /// `ours` against `BatchNorm::forward` on the same input of `dims` (drawn from `input`
    /// with seed `seed`) and output weighting (seed `seed + 1`): values, the input's, scale's
    /// and shift's gradients, and the running statistics. Returns Burn's layer and ours after
    /// the step.
    fn check<const D: usize>(
        dims: [usize; D],
        (input, seed): (Distribution, u64),
        ours: impl Fn(&BatchNorm, Tensor<D>) -> Tensor<D>,
        limits: Limits,
    ) -> (BatchNorm, BatchNorm) {
        let device = Device::flex().autodiff();
        let norm = BatchNormConfig::new(dims[1]).init(&device);
        let ours_norm = norm.clone();
        let x = crate::test_data::seeded(dims, input, seed, &device).require_grad();
        let weights = crate::test_data::seeded(dims, Distribution::Default, seed + 1, &device);

        let theirs = norm.forward(x.clone());
        let ours = ours(&ours_norm, x.clone());
        let close = |a: Tensor<D>, b: Tensor<D>| (a - b).abs().max().into_scalar::<f32>();
        assert!(close(theirs.clone(), ours.clone()) < limits.output);

        let g_theirs = (theirs * weights.clone()).sum().backward();
        let g_ours = (ours * weights).sum().backward();
        let dx = close(x.grad(&g_theirs).unwrap(), x.grad(&g_ours).unwrap());
        assert!(dx < limits.input_grad, "input gradients differ by {dx}");
        for (a, b) in [
            (norm.gamma.grad(&g_theirs), ours_norm.gamma.grad(&g_ours)),
            (norm.beta.grad(&g_theirs), ours_norm.beta.grad(&g_ours)),
        ] {
            let d = (a.unwrap() - b.unwrap()).abs().max().into_scalar::<f32>();
            assert!(d < limits.param_grad, "parameter gradients differ by {d}");
        }

        // Running statistics, read after syncing as a checkpoint does.
        let (theirs, ours) = (norm.valid(), ours_norm.valid());
        for (a, b) in [
            (theirs.running_mean.value(), ours.running_mean.value()),
            (theirs.running_var.value(), ours.running_var.value()),
        ] {
            let d = (a - b).abs().max().into_scalar::<f32>();
            assert!(d < limits.running, "running statistics differ by {d}");
        }
        (theirs, ours)
    }

    #[test]
    fn matches_burns_batch_norm_values_gradients_and_running_statistics() {
        let limits = Limits {
            output: 1e-5,
            input_grad: 1e-5,
            param_grad: 1e-4,
            running: 1e-5,
        };
        let (theirs, ours) = check(
            [4, 3, 5, 6],
            (Distribution::Normal(2.0, 3.0), 1),
            batch_norm_2d,
            limits,
        );
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
        // A large mean beside the spread, and enough rows for several blocks.
        let limits = Limits {
            output: 1e-4,
            input_grad: 1e-5,
            param_grad: 1e-3,
            running: 1e-4,
        };
        check(
            [600, 37],
            (Distribution::Normal(30.0, 2.0), 3),
            batch_norm_1d,
            limits,
        );
    }
}
