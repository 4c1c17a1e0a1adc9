//! Layers with a kernel of their own on the CPU backend, where Burn's generic operation leaves
//! most of the time on the table. Each function takes and returns ordinary tensors: on a flex
//! tensor (with or without autodiff) it runs the hand-written kernel and its backward pass; on
//! every other backend it composes Burn's own operations, so results agree across backends.

#[cfg(feature = "flex")]
mod flex_activation;
#[cfg(feature = "flex")]
mod flex_conv;
#[cfg(feature = "flex")]
mod flex_norm;
#[cfg(feature = "flex")]
mod flex_pool;
#[cfg(feature = "flex")]
mod flex_util;

#[cfg(feature = "flex")]
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2dConfig;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::activation::{gelu as burn_gelu, log_softmax, softmax};

/// `conv.forward(x)`. On flex, a convolution with no dilation, one group and the same padding
/// on both sides of each axis (3x3 with `Same` padding, a ResNet's stride-2 3x3 and 1x1
/// convolutions) runs as one matrix product per image, forward and backward; every other case
/// is Burn's own.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if let Some(pad) = symmetric_padding(conv) {
        let bias = conv.bias.as_ref().map(|b| b.val());
        let weight = conv.weight.val();
        if let Some(out) = flex_conv::conv2d(&x, &weight, bias.as_ref(), pad, conv.stride) {
            return out;
        }
    }
    conv.forward(x)
}

/// The per-axis padding when `conv` is one the flex kernel covers.
#[cfg(feature = "flex")]
fn symmetric_padding(conv: &Conv2d) -> Option<[usize; 2]> {
    if conv.dilation != [1, 1] || conv.groups != 1 {
        return None;
    }
    let [kh, kw] = conv.kernel_size;
    let unit_stride = conv.stride == [1, 1];
    match conv.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        // At stride 1, `Same` pads k - 1 in all: evenly on both sides for odd kernels.
        PaddingConfig2d::Same => {
            (unit_stride && kh % 2 == 1 && kw % 2 == 1).then_some([kh / 2, kw / 2])
        }
        PaddingConfig2d::Explicit(top, left, bottom, right) => {
            (top == bottom && left == right).then_some([top, left])
        }
    }
}

/// Training-mode batch normalisation of `[b, c, h, w]` activations with scale `gamma` and
/// shift `beta` (each `[c]`): the normalised output, and the batch's mean and biased variance
/// per channel (detached) for the running statistics.
///
/// On a flex autodiff tensor this is a kernel of two passes forward and two backward. Elsewhere
/// it is composed from tensor operations that reduce over the contiguous spatial axis first:
/// Burn's fused `batch_norm_train` moves the channel axis to the front (a copy of the whole
/// activation) for each statistic, and again in its backward pass.
pub fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    #[cfg(feature = "flex")]
    if let Some(out) = flex_norm::batch_norm_train(&x, &gamma, &beta, epsilon) {
        return out;
    }
    batch_norm_composed(x, gamma, beta, epsilon)
}

/// [`batch_norm_train`] from tensor operations, for every backend.
fn batch_norm_composed(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let [b, c, h, w] = x.dims();
    let flat = x.reshape([b, c, h * w]);
    // [1, c, 1]: the mean of per-image means is the mean over batch and space.
    let mean = flat.clone().mean_dim(2).mean_dim(0);
    let centred = flat - mean.clone();
    let variance = centred.clone().square().mean_dim(2).mean_dim(0);
    let scale = variance.clone().add_scalar(epsilon).sqrt().recip() * gamma.reshape([1, c, 1]);
    let out = centred * scale + beta.reshape([1, c, 1]);
    (
        out.reshape([b, c, h, w]),
        mean.detach().reshape([c]),
        variance.detach().reshape([c]),
    )
}

/// `relu(max_pool2d(x))` with 2x2 windows and stride 2 (odd trailing rows and columns are
/// dropped, as Burn's `MaxPool2d` does): `[b, c, h, w]` → `[b, c, h/2, w/2]`.
///
/// On flex this is one pass over the input and, in training, one pass back, where Burn's
/// general pooling computes each window's bounds with integer divisions and keeps an `i64`
/// index per output (about a quarter of the reference CNN's training step).
pub fn max_pool2_relu(x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if let Some(out) = flex_pool::max_pool2_relu(&x) {
        return out;
    }
    max_pool2_relu_composed(x)
}

/// [`max_pool2_relu`] from Burn's pooling module and ReLU, for every backend.
fn max_pool2_relu_composed(x: Tensor<4>) -> Tensor<4> {
    relu(MaxPool2dConfig::new([2, 2]).init().forward(x))
}

/// `softmax(x, D - 1)`: the softmax over the last axis, as attention takes it. On flex one pass
/// forward and one backward per row.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if let Some(out) = flex_activation::softmax_last(&x) {
        return out;
    }
    softmax(x, D - 1)
}

/// `log_softmax(x, D - 1)`, as cross-entropy takes it. On flex one pass forward and one
/// backward per row.
pub fn log_softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if let Some(out) = flex_activation::log_softmax_last(&x) {
        return out;
    }
    log_softmax(x, D - 1)
}

/// GELU, the exact form `x Φ(x)` (Burn's `gelu`). On flex one vectorised pass forward and one
/// backward, with the normal distribution function to within 1e-6.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if let Some(out) = flex_activation::gelu(&x) {
        return out;
    }
    burn_gelu(x)
}

// The kernels' own tests; without the feature every function is Burn's composition.
#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution, Int, Tolerance};

    /// A convolution padded to keep the image size.
    fn same(channels: [usize; 2], kernel: [usize; 2]) -> Conv2dConfig {
        Conv2dConfig::new(channels, kernel).with_padding(PaddingConfig2d::Same)
    }

    /// The kernel's output and its gradients for the input, weight and bias, against Burn's
    /// convolution on the same module, input and output weighting.
    fn check_conv(config: Conv2dConfig, dims: [usize; 4], input_grad: bool) {
        let device = Device::flex().autodiff();
        let conv = config.init(&device);
        let data =
            crate::test_data::seeded(dims, Distribution::Normal(0.0, 1.0), 1, &device).into_data();
        let input = || {
            let x = Tensor::<4>::from_data(data.clone(), &device);
            if input_grad { x.require_grad() } else { x }
        };
        let (fast_x, slow_x) = (input(), input());
        let pad = symmetric_padding(&conv).expect("a convolution the kernel covers");
        let bias = conv.bias.as_ref().map(|b| b.val());
        let fast = flex_conv::conv2d(&fast_x, &conv.weight.val(), bias.as_ref(), pad, conv.stride)
            .expect("the flex kernel covers this convolution");
        let slow = conv.forward(slow_x.clone());
        assert_eq!(fast.dims(), slow.dims());
        let tolerance = Tolerance::<f32>::rel_abs(1e-4, 1e-4);
        fast.to_data()
            .assert_approx_eq::<f32>(&slow.to_data(), tolerance);
        let weights =
            crate::test_data::seeded(fast.dims(), Distribution::Normal(0.0, 1.0), 2, &device);
        let fast_grads = (fast * weights.clone()).sum().backward();
        let slow_grads = (slow * weights).sum().backward();
        let weight = conv.weight.val();
        weight
            .grad(&fast_grads)
            .unwrap()
            .into_data()
            .assert_approx_eq::<f32>(&weight.grad(&slow_grads).unwrap().into_data(), tolerance);
        if let Some(bias) = &conv.bias {
            let bias = bias.val();
            bias.grad(&fast_grads)
                .unwrap()
                .into_data()
                .assert_approx_eq::<f32>(&bias.grad(&slow_grads).unwrap().into_data(), tolerance);
        }
        match (fast_x.grad(&fast_grads), slow_x.grad(&slow_grads)) {
            (Some(fast), Some(slow)) => fast
                .into_data()
                .assert_approx_eq::<f32>(&slow.into_data(), tolerance),
            (None, None) => assert!(!input_grad),
            _ => panic!("only one path computed the input's gradient"),
        }
    }

    #[test]
    fn conv_matches_burn_forward_and_backward() {
        // The CNN encoder's two layers, with and without bias and input gradient.
        check_conv(same([1, 32], [3, 3]), [4, 1, 28, 28], false);
        check_conv(
            same([32, 64], [3, 3]).with_bias(false),
            [3, 32, 14, 14],
            true,
        );
        // Colour input, a wider kernel, odd sizes, no padding and explicit padding.
        check_conv(same([3, 5], [5, 5]), [2, 3, 9, 7], true);
        check_conv(Conv2dConfig::new([2, 4], [3, 3]), [2, 2, 6, 5], true);
        check_conv(
            Conv2dConfig::new([2, 3], [3, 1]).with_padding(PaddingConfig2d::Explicit(2, 1, 2, 1)),
            [2, 2, 4, 3],
            true,
        );
        // A ResNet's downsampling: stride-2 3x3 with padding 1 and stride-2 1x1 without, on even
        // and odd sizes (where the last row and column are never read); and unequal strides.
        let stride2 = |c: [usize; 2], k: usize, p: usize| {
            Conv2dConfig::new(c, [k, k])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
        };
        check_conv(stride2([4, 6], 3, 1), [3, 4, 8, 8], true);
        check_conv(stride2([4, 6], 1, 0), [3, 4, 8, 8], true);
        check_conv(stride2([3, 5], 3, 1).with_bias(true), [2, 3, 9, 7], true);
        check_conv(stride2([2, 3], 1, 0), [2, 2, 7, 9], true);
        check_conv(
            Conv2dConfig::new([2, 3], [3, 2])
                .with_stride([3, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 2, 1, 2)),
            [2, 2, 10, 7],
            true,
        );
    }

    #[test]
    fn conv_outside_the_kernel_is_burns() {
        // Dilation and padding that is not the same on both sides go to Burn's convolution
        // unchanged.
        let covered = |conv: &Conv2d| symmetric_padding(conv).is_some();
        let device = Device::flex();
        let x = crate::test_data::seeded([2, 3, 8, 8], Distribution::Normal(0.0, 1.0), 3, &device);
        for conv in [
            Conv2dConfig::new([3, 4], [3, 3])
                .with_dilation([2, 2])
                .init(&device),
            same([3, 4], [2, 2]).init(&device),
        ] {
            assert!(!covered(&conv));
            conv2d(&conv, x.clone())
                .into_data()
                .assert_eq(&conv.forward(x.clone()).into_data(), true);
        }
    }

    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        // Seeded runs are bit-identical only if no sum's order follows the thread schedule.
        let device = Device::flex().autodiff();
        let conv = same([3, 8], [3, 3]).init(&device);
        let norm = burn::nn::BatchNormConfig::new(8).init(&device);
        let data =
            crate::test_data::seeded([37, 3, 12, 12], Distribution::Normal(0.0, 1.0), 4, &device)
                .into_data();
        let grads_with = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let x = Tensor::<4>::from_data(data.clone(), &device).require_grad();
                let y = conv2d(&conv, x.clone());
                let (y, _, _) =
                    batch_norm_train(y, norm.gamma.val(), norm.beta.val(), norm.epsilon);
                let grads = (max_pool2_relu(y).powf_scalar(2.0)).sum().backward();
                [
                    x.grad(&grads).unwrap().into_data(),
                    conv.weight.val().grad(&grads).unwrap().into_data(),
                    conv.bias
                        .as_ref()
                        .unwrap()
                        .val()
                        .grad(&grads)
                        .unwrap()
                        .into_data(),
                    norm.gamma.val().grad(&grads).unwrap().into_data(),
                ]
            })
        };
        let one = grads_with(1);
        for threads in [2, 3, 5] {
            for (a, b) in one.iter().zip(grads_with(threads)) {
                a.assert_eq(&b, true);
            }
        }
    }

    #[test]
    fn empty_batches_pass_through() {
        let device = Device::flex().autodiff();
        let conv = same([1, 4], [3, 3]).init(&device);
        let x = Tensor::<4>::zeros([0, 1, 8, 8], &device);
        assert_eq!(conv2d(&conv, x.clone()).dims(), [0, 4, 8, 8]);
        assert_eq!(max_pool2_relu(x).dims(), [0, 1, 4, 4]);
    }

    #[test]
    fn conv_inference_matches_burn() {
        let device = Device::flex();
        let conv = same([3, 8], [3, 3]).init(&device);
        let x =
            crate::test_data::seeded([5, 3, 12, 10], Distribution::Normal(0.0, 1.0), 5, &device);
        let bias = conv.bias.as_ref().map(|b| b.val());
        flex_conv::conv2d(&x, &conv.weight.val(), bias.as_ref(), [1, 1], [1, 1])
            .expect("the flex kernel takes inference tensors")
            .into_data()
            .assert_approx_eq::<f32>(&conv.forward(x).into_data(), Tolerance::rel_abs(1e-4, 1e-4));
    }

    fn check_pool(device: &Device, dims: [usize; 4]) {
        let data =
            crate::test_data::seeded(dims, Distribution::Normal(0.0, 1.0), 6, device).into_data();
        let fast_x = Tensor::<4>::from_data(data.clone(), device).require_grad();
        let ref_x = Tensor::<4>::from_data(data, device).require_grad();
        let fast = flex_pool::max_pool2_relu(&fast_x).expect("the flex kernel covers this input");
        let slow = max_pool2_relu_composed(ref_x.clone());
        fast.to_data().assert_eq(&slow.to_data(), true);
        // A weight per output, so each position's gradient is distinct.
        let n = fast.shape().num_elements();
        let weights = Tensor::<1, Int>::arange(0..n as i64, device)
            .float()
            .reshape(fast.dims());
        let fast_grad = (fast * weights.clone()).sum().backward();
        let slow_grad = (slow * weights).sum().backward();
        fast_x
            .grad(&fast_grad)
            .unwrap()
            .into_data()
            .assert_approx_eq::<f32>(
                &ref_x.grad(&slow_grad).unwrap().into_data(),
                Tolerance::absolute(0.0),
            );
    }

    #[test]
    fn matches_pool_then_relu_forward_and_backward() {
        let device = Device::flex().autodiff();
        check_pool(&device, [3, 5, 28, 28]);
        // Odd sizes drop the last row and column.
        check_pool(&device, [2, 3, 7, 9]);
        check_pool(&device, [1, 1, 2, 2]);
    }

    #[test]
    fn ties_and_zeros_follow_burn() {
        // Equal maxima pick the first in the window; a window whose maximum is 0 or below
        // passes no gradient (ReLU's derivative at 0 is 0).
        let device = Device::flex().autodiff();
        let x =
            Tensor::<4>::from_floats([[[[1.0, 1.0, -1.0, 0.0], [0.5, 1.0, -2.0, -3.0]]]], &device)
                .require_grad();
        let y = max_pool2_relu(x.clone());
        y.to_data().assert_eq(
            &Tensor::<4>::from_floats([[[[1.0, 0.0]]]], &device).to_data(),
            true,
        );
        let grad = x.grad(&y.sum().backward()).unwrap();
        grad.into_data().assert_eq(
            &Tensor::<4>::from_floats([[[[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]], &device)
                .inner()
                .into_data(),
            true,
        );
    }

    #[test]
    fn batch_norm_matches_the_composition() {
        let device = Device::flex().autodiff();
        // A mean large beside the spread tests the variance's precision; odd plane sizes test
        // the sums' tails.
        for (dims, mean) in [
            ([4, 3, 5, 7], 0.0),
            ([3, 2, 28, 28], 50.0),
            ([2, 5, 1, 1], 1.0),
        ] {
            let data = crate::test_data::seeded(dims, Distribution::Normal(mean, 2.0), 7, &device)
                .into_data();
            let gamma =
                crate::test_data::seeded([dims[1]], Distribution::Normal(1.0, 0.5), 8, &device)
                    .require_grad();
            let beta =
                crate::test_data::seeded([dims[1]], Distribution::Normal(0.0, 0.5), 9, &device)
                    .require_grad();
            let fast_x = Tensor::<4>::from_data(data.clone(), &device).require_grad();
            let slow_x = Tensor::<4>::from_data(data, &device).require_grad();
            let (fast, fast_mean, fast_var) =
                flex_norm::batch_norm_train(&fast_x, &gamma, &beta, 1e-5)
                    .expect("the flex kernel covers this input");
            let (slow, slow_mean, slow_var) =
                batch_norm_composed(slow_x.clone(), gamma.clone(), beta.clone(), 1e-5);
            let tolerance = Tolerance::<f32>::rel_abs(1e-4, 1e-4);
            fast.to_data()
                .assert_approx_eq::<f32>(&slow.to_data(), tolerance);
            fast_mean
                .into_data()
                .assert_approx_eq::<f32>(&slow_mean.into_data(), tolerance);
            fast_var
                .into_data()
                .assert_approx_eq::<f32>(&slow_var.into_data(), tolerance);
            let weights =
                crate::test_data::seeded(dims, Distribution::Normal(0.0, 1.0), 10, &device);
            let fast_grads = (fast * weights.clone()).sum().backward();
            let slow_grads = (slow * weights).sum().backward();
            let pairs = [
                (
                    fast_x.grad(&fast_grads).map(Tensor::into_data),
                    slow_x.grad(&slow_grads).map(Tensor::into_data),
                ),
                (
                    gamma.grad(&fast_grads).map(Tensor::into_data),
                    gamma.grad(&slow_grads).map(Tensor::into_data),
                ),
                (
                    beta.grad(&fast_grads).map(Tensor::into_data),
                    beta.grad(&slow_grads).map(Tensor::into_data),
                ),
            ];
            for (fast, slow) in pairs {
                fast.unwrap()
                    .assert_approx_eq::<f32>(&slow.unwrap(), tolerance);
            }
        }
    }

    #[test]
    fn nan_wins_its_window_as_in_burn() {
        // A NaN is the window's maximum and the last NaN takes the gradient; ReLU lets NaN
        // through. The reference composition agrees on the gradient.
        let device = Device::flex().autodiff();
        let rows = [[[[f32::NAN, 2.0, 1.0, 3.0], [f32::NAN, 1.0, -1.0, -2.0]]]];
        let fast_x = Tensor::<4>::from_floats(rows, &device).require_grad();
        let slow_x = Tensor::<4>::from_floats(rows, &device).require_grad();
        let fast = max_pool2_relu(fast_x.clone());
        let values = fast.to_data().try_to_vec::<f32>().unwrap();
        assert!(values[0].is_nan() && values[1] == 3.0, "{values:?}");
        let fast_grad = fast_x.grad(&fast.sum().backward()).unwrap().into_data();
        let slow_grad = slow_x
            .grad(&max_pool2_relu_composed(slow_x.clone()).sum().backward())
            .unwrap();
        fast_grad.assert_eq(&slow_grad.into_data(), true);
        assert_eq!(
            fast_grad.try_to_vec::<f32>().unwrap(),
            [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn inference_tensors_take_the_kernel_too() {
        let device = Device::flex();
        let x =
            crate::test_data::seeded([2, 4, 10, 6], Distribution::Normal(0.0, 1.0), 11, &device);
        flex_pool::max_pool2_relu(&x)
            .expect("the flex kernel takes inference tensors")
            .into_data()
            .assert_eq(&max_pool2_relu_composed(x).into_data(), true);
    }

    /// A kernel's output and input gradient against Burn's operation on the same input and
    /// output weighting, on tracked and inference tensors.
    fn check_activation<const D: usize>(
        dims: [usize; D],
        scale: f32,
        fast: impl Fn(Tensor<D>) -> Tensor<D>,
        slow: impl Fn(Tensor<D>) -> Tensor<D>,
    ) {
        let device = Device::flex().autodiff();
        let data = crate::test_data::seeded(dims, Distribution::Normal(0.0, 1.0), 5, &device)
            .mul_scalar(scale)
            .into_data();
        let (fast_x, slow_x) = (
            Tensor::<D>::from_data(data.clone(), &device).require_grad(),
            Tensor::<D>::from_data(data.clone(), &device).require_grad(),
        );
        let (fast_y, slow_y) = (fast(fast_x.clone()), slow(slow_x.clone()));
        let tolerance = Tolerance::<f32>::rel_abs(1e-5, 1e-6);
        fast_y
            .to_data()
            .assert_approx_eq::<f32>(&slow_y.to_data(), tolerance);
        let weights = crate::test_data::seeded(dims, Distribution::Normal(0.0, 1.0), 6, &device);
        let fast_grad = fast_x.grad(&(fast_y * weights.clone()).sum().backward());
        let slow_grad = slow_x.grad(&(slow_y * weights).sum().backward());
        fast_grad
            .expect("the kernel's input gradient")
            .into_data()
            .assert_approx_eq::<f32>(&slow_grad.unwrap().into_data(), tolerance);
        let plain = Tensor::<D>::from_data(data, &Device::flex());
        fast(plain.clone())
            .into_data()
            .assert_approx_eq::<f32>(&slow(plain).into_data(), tolerance);
    }

    #[test]
    fn softmax_matches_burn_forward_and_backward() {
        let burn = |x: Tensor<4>| softmax(x, 3);
        // Attention's scores: batch, heads, queries, keys; then odd sizes and large logits.
        check_activation([2, 4, 9, 9], 1.0, softmax_last, burn);
        check_activation([3, 1, 5, 37], 30.0, softmax_last, burn);
        check_activation([1, 1, 3, 1], 1.0, softmax_last, burn);
        // A masked key (Burn's attention fills it with -1e4) gets no weight and no gradient.
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::from_floats([[1.0, -1.0e4, 0.5], [f32::NAN, 0.0, 1.0]], &device)
            .require_grad();
        let y = softmax_last(x.clone());
        let values = y.to_data().try_to_vec::<f32>().unwrap();
        assert_eq!(values[1], 0.0);
        assert!((values[0] + values[2] - 1.0).abs() < 1e-6, "{values:?}");
        assert!(
            values[3..].iter().all(|v| v.is_nan()),
            "NaN spreads over its row"
        );
        let grad = x.grad(&y.narrow(0, 0, 1).sum().backward()).unwrap();
        let grad = grad.into_data().try_to_vec::<f32>().unwrap();
        assert!(grad[..3].iter().all(|g| g.abs() < 1e-6), "{grad:?}");
    }

    #[test]
    fn log_softmax_matches_burn_forward_and_backward() {
        let burn = |x: Tensor<2>| log_softmax(x, 1);
        // Cross-entropy's logits: a batch over a vocabulary; then large logits and one class.
        check_activation([6, 400], 1.0, log_softmax_last, burn);
        check_activation([5, 13], 40.0, log_softmax_last, burn);
        check_activation([3, 1], 1.0, log_softmax_last, burn);
    }

    #[test]
    fn gelu_matches_burn_forward_and_backward() {
        check_activation([3, 7, 33], 1.0, gelu, burn_gelu);
        check_activation([1000], 4.0, gelu, burn_gelu);
    }
}
