//! Layers with a kernel of their own on the CPU backend, where Burn's generic operation leaves
//! most of the time on the table. Each function takes and returns ordinary tensors: on a flex
//! tensor (with or without autodiff) it runs the hand-written kernel and its backward pass; on
//! every other backend it composes Burn's own operations, so results agree across backends.

#[cfg(feature = "flex")]
mod flex_activation;
#[cfg(feature = "flex")]
mod flex_attention;
#[cfg(feature = "flex")]
mod flex_conv;
#[cfg(feature = "flex")]
mod flex_gemm;
#[cfg(feature = "flex")]
mod flex_layer_norm;
#[cfg(feature = "flex")]
mod flex_matmul;
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
use burn::nn::{BatchNorm, LayerNorm, Linear};
use burn::tensor::activation::relu;
use burn::tensor::activation::{gelu as burn_gelu, log_softmax, softmax};
use burn::tensor::{Bool, Tensor};

/// `conv.forward(x)`. On flex, a convolution with no dilation, one group and the same padding
/// on both sides of each axis (3x3 with `Same` padding, a ResNet's stride-2 3x3 and 1x1
/// convolutions) runs as matrix products per image, forward and backward; every other case is
/// Burn's own.
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
    batch_norm_then(x, gamma, beta, epsilon, Then::Nothing)
}

/// [`batch_norm_train`] followed by `relu`, with the batch's statistics. On flex the kernel
/// applies the ReLU as it writes the output, and takes the gradient back through it as it
/// reads the output's gradient.
pub fn batch_norm_train_relu(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    batch_norm_then(x, gamma, beta, epsilon, Then::Relu)
}

/// [`batch_norm_train`] followed by [`max_pool2_relu`], with the batch's statistics. On flex
/// the kernel normalises each value as the pooling reads it, so neither the normalised
/// activation nor its gradient is ever written whole.
pub fn batch_norm_train_pool_relu(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    batch_norm_then(x, gamma, beta, epsilon, Then::MaxPool2Relu)
}

/// What a batch norm kernel applies to the normalised values in the same pass, so that the
/// activation after the layer is never written and read back whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// The normalised values themselves.
    Nothing,
    /// `relu(y)`.
    Relu,
    /// `max_pool2_relu(y)`.
    MaxPool2Relu,
}

impl Then {
    /// This applied to `y` on its own, where no batch norm kernel took it in.
    fn apply(self, y: Tensor<4>) -> Tensor<4> {
        match self {
            Then::Nothing => y,
            Then::Relu => relu(y),
            Then::MaxPool2Relu => max_pool2_relu(y),
        }
    }
}

/// The batch norm and what follows it: the flex kernel where it covers `x`, else the
/// composition, then the ReLU or pooling.
fn batch_norm_then(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    then: Then,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    #[cfg(feature = "flex")]
    if let Some(out) = flex_norm::batch_norm_train(&x, &gamma, &beta, epsilon, then) {
        return out;
    }
    match then {
        Then::Nothing => batch_norm_composed(x, gamma, beta, epsilon),
        // The plain kernel may still cover what a fused one does not (pooling a plane under
        // 2x2).
        Then::Relu | Then::MaxPool2Relu => {
            let (out, mean, variance) = batch_norm_train(x, gamma, beta, epsilon);
            (then.apply(out), mean, variance)
        }
    }
}

/// `then` applied to `norm.forward(x)` for a batch norm that uses its running statistics
/// (inference, and layers whose training is off). On a flex tensor outside autodiff, one pass
/// that writes `a·x + d` per channel with the ReLU or pooling applied, where Burn's layer
/// makes four passes and the ReLU or pooling one more.
pub fn batch_norm_running(norm: &BatchNorm, x: Tensor<4>, then: Then) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if let Some(out) = flex_norm::batch_norm_running(norm, &x, then) {
        return out;
    }
    then.apply(norm.forward(x))
}

/// `relu(batch_norm_train(x) + residual)`, a residual block's end, with the batch's
/// statistics. On flex the kernel adds the residual and applies the ReLU as it writes the
/// output, and finds the gradient at the sum (the residual's) in one pass backward.
pub fn batch_norm_train_add_relu(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    residual: Tensor<4>,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    #[cfg(feature = "flex")]
    if let Some(out) = flex_norm::batch_norm_train_add_relu(&x, &gamma, &beta, epsilon, &residual) {
        return out;
    }
    let (out, mean, variance) = batch_norm_train(x, gamma, beta, epsilon);
    (relu(out + residual), mean, variance)
}

/// [`batch_norm_train`] for `[batch, features]` rows, as the projectors' hidden layers take it:
/// the output, and each feature's batch mean and biased variance (detached). On a flex autodiff
/// tensor a kernel that sums down the columns in blocks of rows, one pass forward for the
/// statistics and one for the output, two backward; elsewhere the composition.
pub fn batch_norm_train_rows(
    x: Tensor<2>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<2>, Tensor<1>, Tensor<1>) {
    #[cfg(feature = "flex")]
    if let Some(out) = flex_norm::batch_norm_train_rows(&x, &gamma, &beta, epsilon) {
        return out;
    }
    let [b, c] = x.dims();
    let (out, mean, variance) = batch_norm_composed(x.reshape([b, c, 1, 1]), gamma, beta, epsilon);
    (out.reshape([b, c]), mean, variance)
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

/// `a.matmul(b)` for two matrices. On flex (tracked or not) the product and both gradients
/// are split over the cores in blocks fixed by the shape (see `flex_gemm`), reading
/// transposed operands in place; elsewhere it is Burn's.
pub fn matmul(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if let Some(out) = flex_matmul::matmul(&a, &b) {
        return out;
    }
    a.matmul(b)
}

/// `linear.forward(x)` as one [`matmul`] over all of `x`'s rows (every axis but the last
/// folded into one), then the bias. Burn keeps a batched product of many small ones when the
/// rows per batch are a multiple of 32 (the text encoder's 64 tokens), which packs the weight
/// again for each and runs each on one core.
pub fn linear<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    let mut dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let weight = linear.weight.val();
    let d_out = weight.dims()[1];
    let mut y = matmul(x.reshape([rows, d_in]), weight);
    if let Some(bias) = &linear.bias {
        y = y + bias.val().reshape([1, d_out]);
    }
    dims[D - 1] = d_out;
    y.reshape(dims)
}

/// Multi-head scaled dot-product attention: with `q`, `k` and `v` `[batch, len, heads · d_k]`
/// (the projections' layout), each head's `softmax(q kᵀ / sqrt(d_k)) v`, the heads side by
/// side again in `[batch, len, heads · d_k]`. Keys where `padding` (`[batch, len]`) is true
/// score `masked` before the softmax, as Burn's attention fills them with its `min_float`.
///
/// On flex one task per sequence does every head's scores, softmax and weighted sum in
/// cache, forward and backward, keeping only the attention weights between them; elsewhere it
/// is Burn's operations, as its `MultiHeadAttention` composes them.
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    padding: Option<Tensor<2, Bool>>,
    masked: f64,
) -> Tensor<3> {
    #[cfg(feature = "flex")]
    if let Some(out) = flex_attention::attention(&q, &k, &v, heads, padding.as_ref(), masked) {
        return out;
    }
    attention_composed(q, k, v, heads, padding, masked, |w| w)
}

/// [`attention`] from tensor operations, for every backend, with `weights` applied to the
/// attention weights `[batch, heads, len, len]` before they weigh the values (dropout).
pub fn attention_composed(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    padding: Option<Tensor<2, Bool>>,
    masked: f64,
    weights: impl FnOnce(Tensor<4>) -> Tensor<4>,
) -> Tensor<3> {
    let [b, len, dim] = q.dims();
    let d_k = dim / heads;
    let split = |t: Tensor<3>| t.reshape([b, len, heads, d_k]).swap_dims(1, 2);
    let mut scores = split(q)
        .matmul(split(k).transpose())
        .div_scalar((d_k as f32).sqrt());
    if let Some(mask) = padding {
        scores = scores.mask_fill(mask.reshape([b, 1, 1, len]), masked);
    }
    weights(softmax_last(scores))
        .matmul(split(v))
        .swap_dims(1, 2)
        .reshape([b, len, dim])
}

/// `norm.forward(x)`: layer normalisation over the last axis. On a flex autodiff tensor one
/// pass over each row forward and one backward (Burn composes it from nine operations
/// forward and about twice as many backward); elsewhere, and for a norm without a shift, it is
/// Burn's own.
///
/// `LayerNorm` keeps its epsilon private, so the kernel takes `LayerNormConfig`'s default,
/// which every layer norm pretext builds uses (a test holds the two paths equal).
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if let Some(beta) = &norm.beta {
        let epsilon = burn::nn::LayerNormConfig::new(1).epsilon;
        if let Some(out) = flex_layer_norm::layer_norm(&x, &norm.gamma.val(), &beta.val(), epsilon)
        {
            return out;
        }
    }
    norm.forward(x)
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
    use burn::tensor::{Device, Distribution, Gradients, Int, TensorData, Tolerance};

    /// The gradient of `fast` under `fast_grads` against that of `slow` under `slow_grads`.
    fn assert_same_grad<const D: usize>(
        (fast, fast_grads): (&Tensor<D>, &Gradients),
        (slow, slow_grads): (&Tensor<D>, &Gradients),
        tolerance: Tolerance<f32>,
    ) {
        fast.grad(fast_grads)
            .expect("the kernel's gradient")
            .into_data()
            .assert_approx_eq::<f32>(&slow.grad(slow_grads).unwrap().into_data(), tolerance);
    }

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
        let (fast_g, slow_g) = (&fast_grads, &slow_grads);
        let weight = conv.weight.val();
        assert_same_grad((&weight, fast_g), (&weight, slow_g), tolerance);
        if let Some(bias) = &conv.bias {
            let bias = bias.val();
            assert_same_grad((&bias, fast_g), (&bias, slow_g), tolerance);
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
        // The ResNet's first stage, on shifted views of the image.
        check_conv(
            same([32, 32], [3, 3]).with_bias(false),
            [2, 32, 32, 32],
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
        // The same on shifted views of the stride phases (16 channels or more, 512 output
        // pixels or more).
        check_conv(stride2([16, 32], 3, 1), [1, 16, 64, 65], true);
        check_conv(stride2([16, 32], 1, 0), [1, 16, 47, 48], true);
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

    /// `run`'s results on 2, 3 and 5 threads, bit for bit those on one.
    fn assert_thread_count_free(run: impl Fn() -> Vec<burn::tensor::TensorData> + Sync) {
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(&run)
        };
        let one = on(1);
        for threads in [2, 3, 5] {
            for (a, b) in one.iter().zip(on(threads)) {
                a.assert_eq(&b, true);
            }
        }
    }

    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        // Seeded runs are bit-identical only if no sum's order follows the thread schedule.
        let device = Device::flex().autodiff();
        let grad = |t: &Tensor<1>, grads: &Gradients| t.grad(grads).unwrap().into_data();
        let conv = same([3, 8], [3, 3]).init(&device);
        let norm = burn::nn::BatchNormConfig::new(8).init(&device);
        let data =
            crate::test_data::seeded([37, 3, 12, 12], Distribution::Normal(0.0, 1.0), 4, &device)
                .into_data();
        assert_thread_count_free(|| {
            let x = Tensor::<4>::from_data(data.clone(), &device).require_grad();
            let y = conv2d(&conv, x.clone());
            let (gamma, beta) = (norm.gamma.val(), norm.beta.val());
            let (y, _, _) = batch_norm_train_relu(y, gamma.clone(), beta.clone(), norm.epsilon);
            let (y, _, _) = batch_norm_train_pool_relu(y, gamma, beta, norm.epsilon);
            let grads = (y.powf_scalar(2.0)).sum().backward();
            vec![
                x.grad(&grads).unwrap().into_data(),
                conv.weight.val().grad(&grads).unwrap().into_data(),
                grad(&conv.bias.as_ref().unwrap().val(), &grads),
                grad(&norm.gamma.val(), &grads),
            ]
        });
        // Batch norm of rows over several blocks of rows.
        let norm = burn::nn::BatchNormConfig::new(40).init(&device);
        let data = crate::test_data::seeded([900, 40], Distribution::Normal(0.5, 1.0), 13, &device)
            .into_data();
        assert_thread_count_free(|| {
            let x = Tensor::<2>::from_data(data.clone(), &device).require_grad();
            let (gamma, beta) = (norm.gamma.val(), norm.beta.val());
            let (y, _, _) = flex_norm::batch_norm_train_rows(&x, &gamma, &beta, 1e-5)
                .expect("the flex kernel covers rows");
            let grads = y.powf_scalar(3.0).sum().backward();
            vec![
                x.grad(&grads).unwrap().into_data(),
                grad(&norm.gamma.val(), &grads),
                grad(&norm.beta.val(), &grads),
            ]
        });
        // Layer norm over enough rows for several parallel tasks.
        let norm = burn::nn::LayerNormConfig::new(48).init(&device);
        let data =
            crate::test_data::seeded([40, 30, 48], Distribution::Normal(0.5, 1.0), 12, &device)
                .into_data();
        assert_thread_count_free(|| {
            let x = Tensor::<3>::from_data(data.clone(), &device).require_grad();
            let grads = layer_norm(&norm, x.clone())
                .powf_scalar(3.0)
                .sum()
                .backward();
            vec![
                x.grad(&grads).unwrap().into_data(),
                grad(&norm.gamma.val(), &grads),
                grad(&norm.beta.as_ref().unwrap().val(), &grads),
            ]
        });
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
        // the sums' tails, and the pooling's dropped last row and column.
        for (dims, mean) in [
            ([4, 3, 5, 7], 0.0),
            ([3, 2, 28, 28], 50.0),
            ([2, 5, 1, 1], 1.0),
            ([3, 4, 7, 9], 0.3),
        ] {
            let data = crate::test_data::seeded(dims, Distribution::Normal(mean, 2.0), 7, &device)
                .into_data();
            let gamma =
                crate::test_data::seeded([dims[1]], Distribution::Normal(1.0, 0.5), 8, &device)
                    .require_grad();
            let beta =
                crate::test_data::seeded([dims[1]], Distribution::Normal(0.0, 0.5), 9, &device)
                    .require_grad();
            for then in [Then::Nothing, Then::Relu, Then::MaxPool2Relu] {
                if then == Then::MaxPool2Relu && dims[2] < 2 {
                    continue;
                }
                let fast_x = Tensor::<4>::from_data(data.clone(), &device).require_grad();
                let slow_x = Tensor::<4>::from_data(data.clone(), &device).require_grad();
                let (fast, fast_mean, fast_var) =
                    flex_norm::batch_norm_train(&fast_x, &gamma, &beta, 1e-5, then)
                        .expect("the flex kernel covers this input");
                let (slow, slow_mean, slow_var) =
                    batch_norm_composed(slow_x.clone(), gamma.clone(), beta.clone(), 1e-5);
                let slow = match then {
                    Then::Nothing => slow,
                    Then::Relu => relu(slow),
                    Then::MaxPool2Relu => max_pool2_relu_composed(slow),
                };
                let tolerance = Tolerance::<f32>::rel_abs(1e-4, 1e-4);
                assert_eq!(fast.dims(), slow.dims());
                fast.to_data()
                    .assert_approx_eq::<f32>(&slow.to_data(), tolerance);
                fast_mean
                    .into_data()
                    .assert_approx_eq::<f32>(&slow_mean.into_data(), tolerance);
                fast_var
                    .into_data()
                    .assert_approx_eq::<f32>(&slow_var.into_data(), tolerance);
                let weights = crate::test_data::seeded(
                    fast.dims(),
                    Distribution::Normal(0.0, 1.0),
                    10,
                    &device,
                );
                let fast_grads = (fast * weights.clone()).sum().backward();
                let slow_grads = (slow * weights).sum().backward();
                let (fast, slow) = (&fast_grads, &slow_grads);
                assert_same_grad((&fast_x, fast), (&slow_x, slow), tolerance);
                assert_same_grad((&gamma, fast), (&gamma, slow), tolerance);
                assert_same_grad((&beta, fast), (&beta, slow), tolerance);
            }
        }
    }

    #[test]
    fn residual_batch_norm_matches_the_composition() {
        let device = Device::flex().autodiff();
        for dims in [[4, 3, 5, 7], [3, 2, 28, 28], [2, 5, 1, 1]] {
            let seeded = |dims: [usize; 4], seed| {
                crate::test_data::seeded(dims, Distribution::Normal(0.2, 1.5), seed, &device)
                    .into_data()
            };
            let (data, residual) = (seeded(dims, 14), seeded(dims, 15));
            let gamma =
                crate::test_data::seeded([dims[1]], Distribution::Normal(1.0, 0.5), 8, &device)
                    .require_grad();
            let beta =
                crate::test_data::seeded([dims[1]], Distribution::Normal(0.0, 0.5), 9, &device)
                    .require_grad();
            let leaf = |d: &TensorData| Tensor::<4>::from_data(d.clone(), &device).require_grad();
            let (fast_x, slow_x) = (leaf(&data), leaf(&data));
            let (fast_r, slow_r) = (leaf(&residual), leaf(&residual));
            let (fast, fast_mean, _) =
                flex_norm::batch_norm_train_add_relu(&fast_x, &gamma, &beta, 1e-5, &fast_r)
                    .expect("the flex kernel covers this input");
            let (slow, slow_mean, _) =
                batch_norm_composed(slow_x.clone(), gamma.clone(), beta.clone(), 1e-5);
            let slow = relu(slow + slow_r.clone());
            let tolerance = Tolerance::<f32>::rel_abs(1e-4, 1e-4);
            fast.to_data()
                .assert_approx_eq::<f32>(&slow.to_data(), tolerance);
            fast_mean
                .into_data()
                .assert_approx_eq::<f32>(&slow_mean.into_data(), tolerance);
            let weights =
                crate::test_data::seeded(dims, Distribution::Normal(0.0, 1.0), 10, &device);
            let fast_grads = (fast * weights.clone()).sum().backward();
            let slow_grads = (slow * weights).sum().backward();
            let (fast, slow) = (&fast_grads, &slow_grads);
            assert_same_grad((&fast_x, fast), (&slow_x, slow), tolerance);
            assert_same_grad((&fast_r, fast), (&slow_r, slow), tolerance);
            assert_same_grad((&gamma, fast), (&gamma, slow), tolerance);
            assert_same_grad((&beta, fast), (&beta, slow), tolerance);
        }
    }

    #[test]
    fn running_batch_norm_matches_burns_layer() {
        use burn::module::{Param, RunningState};
        let device = Device::flex();
        let seeded = |dist, seed| crate::test_data::seeded([4], dist, seed, &device);
        let mut norm = burn::nn::BatchNormConfig::new(4).init(&device);
        norm.running_mean = RunningState::new(seeded(Distribution::Normal(0.5, 1.0), 16));
        norm.running_var = RunningState::new(seeded(Distribution::Uniform(0.5, 2.0), 17));
        norm.gamma = Param::from_tensor(seeded(Distribution::Normal(1.0, 0.5), 18));
        norm.beta = Param::from_tensor(seeded(Distribution::Normal(0.0, 0.5), 19));
        for dims in [[2, 4, 7, 9], [3, 4, 28, 28], [2, 4, 1, 1]] {
            let x = crate::test_data::seeded(dims, Distribution::Normal(0.3, 2.0), 20, &device);
            for then in [Then::Nothing, Then::Relu, Then::MaxPool2Relu] {
                if then == Then::MaxPool2Relu && dims[2] < 2 {
                    continue;
                }
                let fast = flex_norm::batch_norm_running(&norm, &x, then)
                    .expect("the flex kernel covers this input");
                let burn = norm.forward(x.clone());
                let slow = match then {
                    Then::Nothing => burn,
                    Then::Relu => relu(burn),
                    Then::MaxPool2Relu => max_pool2_relu_composed(burn),
                };
                fast.into_data()
                    .assert_approx_eq::<f32>(&slow.into_data(), Tolerance::rel_abs(1e-5, 1e-5));
            }
        }
        // In autodiff the layer stays Burn's, so that gradients reach a frozen layer's input.
        let tracked = Tensor::<4>::zeros([1, 4, 2, 2], &device.autodiff());
        assert!(flex_norm::batch_norm_running(&norm, &tracked, Then::Relu).is_none());
    }

    #[test]
    fn fused_batch_norm_passes_no_gradient_where_relu_blocks() {
        // One channel, normalised to -1, -1, 1, 1 (γ 1, β 0): the ReLU blocks the first two
        // values; pooled, the window's maximum is the first of the two ones.
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_floats([[[[0.0, 0.0], [2.0, 2.0]]]], &device).require_grad();
        let (gamma, beta) = (
            Tensor::<1>::ones([1], &device).require_grad(),
            Tensor::<1>::zeros([1], &device).require_grad(),
        );
        let normalised = 1.0 / (1.0f32 + 1e-5).sqrt();
        let (y, _, _) = batch_norm_train_relu(x.clone(), gamma.clone(), beta.clone(), 1e-5);
        y.to_data().assert_approx_eq::<f32>(
            &TensorData::new(vec![0.0, 0.0, normalised, normalised], [1, 1, 2, 2]),
            Tolerance::absolute(1e-6),
        );
        let (pooled, _, _) = batch_norm_train_pool_relu(x.clone(), gamma.clone(), beta, 1e-5);
        pooled.to_data().assert_approx_eq::<f32>(
            &TensorData::new(vec![normalised], [1, 1, 1, 1]),
            Tolerance::absolute(1e-6),
        );
        // dγ = Σ dy·x̂ over the values that pass: 1 for the pooled winner alone.
        let grads = pooled.sum().backward();
        let d_gamma = gamma.grad(&grads).unwrap().into_scalar::<f32>();
        assert!((d_gamma - normalised).abs() < 1e-5, "dγ {d_gamma}");
    }

    #[test]
    fn matmul_and_linear_match_burn_forward_and_backward() {
        use burn::nn::LinearConfig;
        let device = Device::flex().autodiff();
        let tolerance = Tolerance::<f32>::rel_abs(1e-4, 1e-4);
        // Token products split by rows, a weight's gradient split by depth, a wide output
        // split by columns, and small ones; then operands that are transposed views.
        for ([m, k, n], transposed) in [
            ([300, 48, 40], false),
            ([2, 3, 5], false),
            ([40, 1_100, 24], false),
            ([24, 40, 600], true),
            ([1, 1, 1], true),
        ] {
            let seeded = |dims: [usize; 2], seed: u64| {
                crate::test_data::seeded(dims, Distribution::Normal(0.0, 1.0), seed, &device)
                    .into_data()
            };
            let (a_data, b_data) = if transposed {
                (seeded([k, m], 20), seeded([n, k], 21))
            } else {
                (seeded([m, k], 20), seeded([k, n], 21))
            };
            let leaf = |data: &burn::tensor::TensorData| {
                Tensor::<2>::from_data(data.clone(), &device).require_grad()
            };
            let (fast_a, fast_b, slow_a, slow_b) =
                (leaf(&a_data), leaf(&b_data), leaf(&a_data), leaf(&b_data));
            let operands = |a: &Tensor<2>, b: &Tensor<2>| {
                if transposed {
                    (a.clone().transpose(), b.clone().transpose())
                } else {
                    (a.clone(), b.clone())
                }
            };
            let (a, b) = operands(&fast_a, &fast_b);
            let fast = flex_matmul::matmul(&a, &b).expect("the flex kernel covers this input");
            let (a, b) = operands(&slow_a, &slow_b);
            let slow = a.matmul(b);
            fast.to_data()
                .assert_approx_eq::<f32>(&slow.to_data(), tolerance);
            let weights =
                crate::test_data::seeded([m, n], Distribution::Normal(0.0, 1.0), 22, &device);
            let fast_grads = (fast * weights.clone()).sum().backward();
            let slow_grads = (slow * weights).sum().backward();
            for (fast, slow) in [(&fast_a, &slow_a), (&fast_b, &slow_b)] {
                assert_same_grad((fast, &fast_grads), (slow, &slow_grads), tolerance);
            }
        }
        // A linear layer on token states, with and without bias, and on inference tensors.
        for bias in [true, false] {
            let layer = LinearConfig::new(16, 24).with_bias(bias).init(&device);
            let x =
                crate::test_data::seeded([3, 64, 16], Distribution::Normal(0.0, 1.0), 23, &device)
                    .require_grad();
            let fast = linear(&layer, x.clone());
            let slow = layer.forward(x.clone());
            fast.to_data()
                .assert_approx_eq::<f32>(&slow.to_data(), tolerance);
            let fast_grads = fast.powf_scalar(2.0).sum().backward();
            let slow_grads = slow.powf_scalar(2.0).sum().backward();
            let (fast, slow) = (&fast_grads, &slow_grads);
            assert_same_grad((&x, fast), (&x, slow), tolerance);
            let weight = layer.weight.val();
            assert_same_grad((&weight, fast), (&weight, slow), tolerance);
            if let Some(b) = &layer.bias {
                let b = b.val();
                assert_same_grad((&b, fast), (&b, slow), tolerance);
            }
        }
        let plain = Device::flex();
        let layer = LinearConfig::new(16, 24).init(&plain);
        let x = crate::test_data::seeded([5, 16], Distribution::Normal(0.0, 1.0), 24, &plain);
        linear(&layer, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&layer.forward(x).into_data(), tolerance);
    }

    #[test]
    fn attention_matches_the_composition_forward_and_backward() {
        let device = Device::flex().autodiff();
        let tolerance = Tolerance::<f32>::rel_abs(1e-4, 1e-5);
        // The text model's heads of 16, one head, odd sizes, MAE's decoder (49 keys: rows of
        // several vector blocks and a padded one), a whole number of vector blocks; with and
        // without padding (one sequence padded to a single key).
        for ([b, len, heads, d_k], padded) in [
            ([3, 7, 4, 16], true),
            ([2, 5, 1, 3], false),
            ([2, 9, 2, 5], true),
            ([2, 49, 4, 16], true),
            ([2, 32, 2, 8], false),
        ] {
            let dim = heads * d_k;
            let data = |seed: u64| {
                crate::test_data::seeded(
                    [b, len, dim],
                    Distribution::Normal(0.0, 1.0),
                    seed,
                    &device,
                )
                .into_data()
            };
            let (qd, kd, vd) = (data(30), data(31), data(32));
            let padding = padded.then(|| {
                let lengths: Vec<usize> =
                    (0..b).map(|i| if i == 1 { 1 } else { len - i }).collect();
                Tensor::<2, Bool>::from_data(
                    burn::tensor::TensorData::new(
                        lengths
                            .iter()
                            .flat_map(|&n| (0..len).map(move |j| j >= n))
                            .collect::<Vec<bool>>(),
                        [b, len],
                    ),
                    &device,
                )
            });
            let leaves = || {
                [&qd, &kd, &vd].map(|d| Tensor::<3>::from_data(d.clone(), &device).require_grad())
            };
            let (fast_in, slow_in) = (leaves(), leaves());
            let [q, k, v] = fast_in.clone();
            let fast = flex_attention::attention(&q, &k, &v, heads, padding.as_ref(), -1.0e4)
                .expect("the flex kernel covers this input");
            let [q, k, v] = slow_in.clone();
            let slow = attention_composed(q, k, v, heads, padding.clone(), -1.0e4, |w| w);
            fast.to_data()
                .assert_approx_eq::<f32>(&slow.to_data(), tolerance);
            let weights = crate::test_data::seeded(
                [b, len, dim],
                Distribution::Normal(0.0, 1.0),
                33,
                &device,
            );
            let fast_grads = (fast * weights.clone()).sum().backward();
            let slow_grads = (slow * weights).sum().backward();
            for (fast, slow) in fast_in.iter().zip(&slow_in) {
                assert_same_grad((fast, &fast_grads), (slow, &slow_grads), tolerance);
            }
            // Inference tensors take the kernel too.
            let plain =
                |d: &burn::tensor::TensorData| Tensor::<3>::from_data(d.clone(), &Device::flex());
            let mask =
                padding.map(|p| Tensor::<2, Bool>::from_data(p.into_data(), &Device::flex()));
            let fast = flex_attention::attention(
                &plain(&qd),
                &plain(&kd),
                &plain(&vd),
                heads,
                mask.as_ref(),
                -1.0e4,
            )
            .expect("the flex kernel takes inference tensors");
            let slow = attention_composed(
                plain(&qd),
                plain(&kd),
                plain(&vd),
                heads,
                mask,
                -1.0e4,
                |w| w,
            );
            fast.into_data()
                .assert_approx_eq::<f32>(&slow.into_data(), tolerance);
        }
    }

    #[test]
    fn layer_norm_matches_burn_forward_and_backward() {
        use burn::nn::LayerNormConfig;
        let device = Device::flex().autodiff();
        // Token states of the text and ViT models, a row longer than the lanes with a large
        // mean, and single rows and widths.
        for (dims, mean) in [
            ([4, 9, 64], 0.0),
            ([3, 5, 37], 40.0),
            ([1, 1, 1], 0.0),
            ([2, 1, 300], 1.0),
        ] {
            let mut norm = LayerNormConfig::new(dims[2]).init(&device);
            // A scale and shift other than the initial ones, so their gradients are tested.
            norm.gamma = norm.gamma.map(|_| {
                crate::test_data::seeded([dims[2]], Distribution::Normal(1.0, 0.5), 8, &device)
                    .require_grad()
            });
            norm.beta = norm.beta.map(|b| {
                b.map(|_| {
                    crate::test_data::seeded([dims[2]], Distribution::Normal(0.0, 0.5), 9, &device)
                        .require_grad()
                })
            });
            let data = crate::test_data::seeded(dims, Distribution::Normal(mean, 2.0), 7, &device)
                .into_data();
            let fast_x = Tensor::<3>::from_data(data.clone(), &device).require_grad();
            let slow_x = Tensor::<3>::from_data(data, &device).require_grad();
            let beta = norm.beta.as_ref().unwrap().val();
            let fast = flex_layer_norm::layer_norm(&fast_x, &norm.gamma.val(), &beta, 1e-5)
                .expect("the flex kernel covers this input");
            let slow = norm.forward(slow_x.clone());
            let tolerance = Tolerance::<f32>::rel_abs(1e-4, 1e-4);
            fast.to_data()
                .assert_approx_eq::<f32>(&slow.to_data(), tolerance);
            let weights =
                crate::test_data::seeded(dims, Distribution::Normal(0.0, 1.0), 10, &device);
            let fast_grads = (fast * weights.clone()).sum().backward();
            let slow_grads = (slow * weights).sum().backward();
            let gamma = norm.gamma.val();
            let (fast, slow) = (&fast_grads, &slow_grads);
            assert_same_grad((&fast_x, fast), (&slow_x, slow), tolerance);
            assert_same_grad((&gamma, fast), (&gamma, slow), tolerance);
            assert_same_grad((&beta, fast), (&beta, slow), tolerance);
        }
        // Without a shift, and on inference tensors, the layer is Burn's.
        let plain = Device::flex();
        let norm = LayerNormConfig::new(8).with_bias(false).init(&plain);
        let x = crate::test_data::seeded([3, 8], Distribution::Normal(0.0, 1.0), 11, &plain);
        layer_norm(&norm, x.clone())
            .into_data()
            .assert_eq(&norm.forward(x).into_data(), true);
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
