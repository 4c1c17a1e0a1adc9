//! The flex kernel behind [`super::batch_norm_train`]: batch normalisation of
//! `[batch, channels, height, width]` activations in training, two passes forward (statistics,
//! then the normalised output) and two backward (two sums per channel, then the input's
//! gradient). Composed from tensor operations, the same layer took about six passes over the
//! activation forward and ten backward, and this machine's passes are bound by memory traffic.
//!
//! The output pass can also apply the ReLU, or the 2x2 max-pooling and ReLU, that follow the
//! layer in the encoders ([`Then`]); the backward passes then take the gradient back through
//! them as they read it. The normalised activation is never written whole, nor the gradient
//! at it: with pooling, three passes fewer over the activation forward and five backward,
//! counting the zero fills of new buffers, which the kernels no longer need.

use std::mem::MaybeUninit;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::BatchNorm;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use super::Then;
use super::flex_pool;
use super::flex_util::{TASK_VALUES, dims, task_rows, tensor, with_f32, written};

mod planes;

/// The batch's statistics per channel, in f64: the sums behind them run over up to millions
/// of values.
#[derive(Debug, Clone)]
struct Statistics {
    mean: Vec<f64>,
    /// `1 / sqrt(variance + epsilon)`.
    inv_std: Vec<f64>,
    variance: Vec<f64>,
}

impl Statistics {
    /// From each channel's sums of `x − shift` and its square over `n` values.
    fn from_sums(sums: Vec<(f64, f64)>, shift: &[f32], n: f64, epsilon: f64) -> Self {
        let (mean, variance) = sums
            .into_iter()
            .zip(shift)
            .map(|((s1, s2), &shift)| {
                let centred = s1 / n;
                (
                    f64::from(shift) + centred,
                    (s2 / n - centred * centred).max(0.0),
                )
            })
            .unzip();
        Self::from_moments(mean, variance, epsilon)
    }

    /// From each channel's mean and variance.
    fn from_moments(mean: Vec<f64>, variance: Vec<f64>, epsilon: f64) -> Self {
        let inv_std = variance
            .iter()
            .map(|&v| 1.0 / (v + epsilon).sqrt())
            .collect();
        Statistics {
            mean,
            inv_std,
            variance,
        }
    }

    /// Per channel `(a, d)` with `y = a·x + d = (x − mean) · inv_std · γ + β`.
    fn output_coefficients(&self, gamma: &[f32], beta: &[f32]) -> Vec<(f32, f32)> {
        (0..gamma.len())
            .map(|k| {
                let scale = f64::from(gamma[k]) * self.inv_std[k];
                let offset = f64::from(beta[k]) - self.mean[k] * scale;
                (scale as f32, offset as f32)
            })
            .collect()
    }

    /// Per channel `(a, e, d)` with
    /// `dx = a·dy + e·x + d = γ·inv_std · (dy − (Σ dy + x̂ · dγ) / n)`.
    fn grad_coefficients(
        &self,
        gamma: &[f32],
        d_beta: &[f64],
        d_gamma: &[f64],
        n: f64,
    ) -> Vec<(f32, f32, f32)> {
        (0..gamma.len())
            .map(|k| {
                let scale = f64::from(gamma[k]) * self.inv_std[k];
                let slope = scale * d_gamma[k] * self.inv_std[k] / n;
                let offset = (slope * self.mean[k] * n - scale * d_beta[k]) / n;
                (scale as f32, -slope as f32, offset as f32)
            })
            .collect()
    }
}

/// What the backward pass needs to know of [`Then`]: the output coefficients, to recompute
/// where the ReLU passed, or the pooling's winner codes.
#[derive(Debug, Clone)]
enum After {
    Nothing,
    Relu(Vec<(f32, f32)>),
    MaxPool2Relu(Arc<Vec<u8>>),
}

impl After {
    /// Channel `k`'s output coefficients where a ReLU alone followed: the backward passes
    /// recompute with them where it passed.
    fn relu(&self, k: usize) -> Option<(f32, f32)> {
        match self {
            After::Relu(coefficients) => Some(coefficients[k]),
            _ => None,
        }
    }
}

/// What the backward pass needs: the input, the scale, the batch statistics and what
/// followed the normalisation.
#[derive(Debug, Clone)]
struct NormState {
    x: FlexTensor,
    gamma: Vec<f32>,
    stats: Statistics,
    after: After,
}

/// The kernel's output (`then` applied) with the batch mean and (biased) variance per
/// channel, or `None` to leave the layer to the generic path.
pub(super) fn batch_norm_train(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
    then: Then,
) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)> {
    let [b, c, h, w] = x.dims();
    let fits = [x.dtype(), gamma.dtype(), beta.dtype()] == [DType::F32; 3]
        && gamma.dims() == [c]
        && beta.dims() == [c]
        && b * h * w > 0
        && (then != Then::MaxPool2Relu || (h >= 2 && w >= 2));
    if !fits || !x.device().is_autodiff() {
        return None;
    }
    let ops = Operands::of(x, gamma, beta, epsilon)?;
    let coefficients = ops.stats.output_coefficients(&ops.gamma, &ops.beta);
    let result = ops.stats.clone();
    let out = match BatchNormBackward
        .prepare::<NoCheckpointing>(ops.guards)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, after) = normalise_then(&ops.x, coefficients, then, true);
            let state = NormState {
                x: ops.x,
                gamma: ops.gamma,
                stats: ops.stats,
                after,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(normalise_then(&ops.x, coefficients, then, false).0)
        }
    };
    Some(with_statistics(out, &result, &x.device()))
}

/// A training call's operands taken apart: the input, the scale and the shift as values, each
/// with its autodiff guard, and the batch's statistics.
struct Operands {
    x: FlexTensor,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    stats: Statistics,
    guards: [NodeGuard; 3],
}

impl Operands {
    /// `None` where an operand is not a flex autodiff tensor.
    fn of(x: &Tensor<4>, gamma: &Tensor<1>, beta: &Tensor<1>, epsilon: f64) -> Option<Self> {
        let prim = |t: Tensor<1>| t.try_into_primitive::<Autodiff<Flex>>().ok();
        let (gamma, gamma_guard) = prim(gamma.clone())?.into_parts();
        let (beta, beta_guard) = prim(beta.clone())?.into_parts();
        let (x, x_guard) = x
            .clone()
            .try_into_primitive::<Autodiff<Flex>>()
            .ok()?
            .into_parts();
        let stats = statistics(&x, epsilon);
        Some(Operands {
            x,
            gamma: with_f32(&gamma, <[f32]>::to_vec),
            beta: with_f32(&beta, <[f32]>::to_vec),
            stats,
            guards: [x_guard, gamma_guard, beta_guard],
        })
    }
}

/// The layer's output, with the batch mean and (biased) variance per channel as tensors on
/// `device`.
fn with_statistics<const D: usize>(
    out: FloatTensor<Autodiff<Flex>>,
    stats: &Statistics,
    device: &Device,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    let per_channel = |values: &[f64]| {
        let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let c = values.len();
        Tensor::<1>::from_data(TensorData::new(values, [c]), device)
    };
    (
        Tensor::from_primitive::<Autodiff<Flex>>(out),
        per_channel(&stats.mean),
        per_channel(&stats.variance),
    )
}

/// `then` applied to `norm`'s output with its running statistics, on a flex tensor outside
/// autodiff; `None` to leave the layer to the generic path.
pub(super) fn batch_norm_running(norm: &BatchNorm, x: &Tensor<4>, then: Then) -> Option<Tensor<4>> {
    let [_, c, h, w] = x.dims();
    if x.dtype() != DType::F32
        || x.device().is_autodiff()
        || (then == Then::MaxPool2Relu && (h < 2 || w < 2))
    {
        return None;
    }
    let x = x.clone().try_into_primitive::<Flex>().ok()?;
    let values = |t: Tensor<1>| {
        let values = t.into_data().try_to_vec::<f32>().ok()?;
        (values.len() == c).then_some(values)
    };
    let (mean, variance) = (
        values(norm.running_mean.value())?,
        values(norm.running_var.value())?,
    );
    let (gamma, beta) = (values(norm.gamma.val())?, values(norm.beta.val())?);
    let wide = |v: Vec<f32>| v.into_iter().map(f64::from).collect();
    let stats = Statistics::from_moments(wide(mean), wide(variance), norm.epsilon);
    let (out, _) = normalise_then(&x, stats.output_coefficients(&gamma, &beta), then, false);
    Some(Tensor::from_primitive::<Flex>(out))
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pgamma, pbeta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (dx, d_gamma, d_beta) = norm_grads(&ops.state, &grad, px.is_some());
        for (node, g) in [(px, dx), (pgamma, Some(d_gamma)), (pbeta, Some(d_beta))] {
            if let (Some(node), Some(g)) = (node, g) {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// The input's gradient (when `want_x`), the scale's and the shift's, from `grad`, the
/// gradient at the layer's output (before what [`After`] names).
fn norm_grads(
    state: &NormState,
    grad: &FlexTensor,
    want_x: bool,
) -> (Option<FlexTensor>, FlexTensor, FlexTensor) {
    let [_, c, _, _] = dims(&state.x);
    let sums = channel_sums(state, grad);
    // dβ = Σ dy; dγ = Σ dy·x̂ = inv_std · (Σ dy·x − mean · Σ dy).
    let d_beta: Vec<f64> = sums.iter().map(|s| s.0).collect();
    let d_gamma: Vec<f64> = (0..c)
        .map(|k| state.stats.inv_std[k] * (sums[k].1 - state.stats.mean[k] * sums[k].0))
        .collect();
    let dx = want_x.then(|| input_grad(state, grad, &d_beta, &d_gamma));
    let as_tensor = |v: &[f64]| tensor(v.iter().map(|&v| v as f32).collect(), &[c]);
    (dx, as_tensor(&d_gamma), as_tensor(&d_beta))
}

// ---------------------------------------------------------------------------------------------
// A residual block's end, `relu(batch_norm(x) + residual)`: one pass forward after the
// statistics, and one before the batch norm's two backward passes that gives the gradient at
// the sum, which is also the residual's. Composed, the add and the ReLU were two more passes
// forward and one more backward, each with a new buffer's zero fill.

/// What the backward pass needs: the batch norm's state and the block's output, whose sign
/// says where the ReLU passed.
#[derive(Debug, Clone)]
struct ResidualState {
    norm: NormState,
    out: FlexTensor,
}

/// `relu(batch_norm(x) + residual)` with the batch mean and (biased) variance per channel, or
/// `None` to leave the layer to the generic path.
pub(super) fn batch_norm_train_add_relu(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
    residual: &Tensor<4>,
) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)> {
    let [b, c, h, w] = x.dims();
    let fits = [x.dtype(), gamma.dtype(), beta.dtype(), residual.dtype()] == [DType::F32; 4]
        && gamma.dims() == [c]
        && beta.dims() == [c]
        && residual.dims() == x.dims()
        && b * h * w > 0;
    if !fits || !x.device().is_autodiff() {
        return None;
    }
    let (residual, residual_guard) = residual
        .clone()
        .try_into_primitive::<Autodiff<Flex>>()
        .ok()?
        .into_parts();
    let ops = Operands::of(x, gamma, beta, epsilon)?;
    let coefficients = ops.stats.output_coefficients(&ops.gamma, &ops.beta);
    let out = normalise_add_relu(&ops.x, &residual, &coefficients);
    let result = ops.stats.clone();
    let [x_guard, gamma_guard, beta_guard] = ops.guards;
    let out = match ResidualBackward
        .prepare::<NoCheckpointing>([x_guard, gamma_guard, beta_guard, residual_guard])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let norm = NormState {
                x: ops.x,
                gamma: ops.gamma,
                stats: ops.stats,
                after: After::Nothing,
            };
            let state = ResidualState {
                norm,
                out: out.clone(),
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Some(with_statistics(out, &result, &x.device()))
}

/// `relu(a·x + d + residual)` per channel (see [`normalise`]).
fn normalise_add_relu(
    x: &FlexTensor,
    residual: &FlexTensor,
    coefficients: &[(f32, f32)],
) -> FlexTensor {
    let [b, c, h, w] = dims(x);
    let plane = h * w;
    let write = |out: &mut [MaybeUninit<f32>]| {
        with_f32(x, |x| {
            with_f32(residual, |r| {
                out.par_chunks_mut(plane)
                    .zip(x.par_chunks(plane).zip(r.par_chunks(plane)))
                    .enumerate()
                    .for_each(|(i, (out, (x, r)))| {
                        planes::normalise(out, x, Some(r), coefficients[i % c], true);
                    });
            })
        })
    };
    // SAFETY: the planes cover the output, and each is written whole.
    let out = unsafe { written(b * c * plane, write) };
    tensor(out, &[b, c, h, w])
}

#[derive(Debug)]
struct ResidualBackward;

impl Backward<Flex, 4> for ResidualBackward {
    type State = ResidualState;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pgamma, pbeta, presidual] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let state = ops.state;
        // The gradient at the sum: the output's where the ReLU passed (where the output is
        // above 0, or NaN), 0 elsewhere.
        let write = |out: &mut [MaybeUninit<f32>]| {
            with_f32(&state.out, |y| {
                with_f32(&grad, |g| {
                    let chunk = TASK_VALUES;
                    out.par_chunks_mut(chunk)
                        .zip(y.par_chunks(chunk).zip(g.par_chunks(chunk)))
                        .for_each(|(out, (y, g))| {
                            planes::relu_grad(out, y, g);
                        });
                })
            })
        };
        let [b, c, h, w] = dims(&state.out);
        // SAFETY: the chunks cover the output, and each is written whole.
        let at_sum = tensor(unsafe { written(b * c * h * w, write) }, &[b, c, h, w]);
        let (dx, d_gamma, d_beta) = norm_grads(&state.norm, &at_sum, px.is_some());
        let nodes = [px, pgamma, pbeta, presidual];
        for (node, g) in nodes
            .into_iter()
            .zip([dx, Some(d_gamma), Some(d_beta), Some(at_sum)])
        {
            if let (Some(node), Some(g)) = (node, g) {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// Adds each plane's pair of sums into its channel's.
fn per_channel(planes: Vec<(f64, f64)>, channels: usize) -> Vec<(f64, f64)> {
    let mut sums = vec![(0.0, 0.0); channels];
    for (i, (s1, s2)) in planes.into_iter().enumerate() {
        sums[i % channels].0 += s1;
        sums[i % channels].1 += s2;
    }
    sums
}

fn statistics(x: &FlexTensor, epsilon: f64) -> Statistics {
    let [b, c, h, w] = dims(x);
    let plane = h * w;
    let n = (b * plane) as f64;
    with_f32(x, |x| {
        // Sums of x − shift and its square, with each channel's first value as the shift, so
        // that the variance keeps its precision when the mean is large beside the spread.
        let shift: Vec<f32> = (0..c).map(|k| x[k * plane]).collect();
        let planes: Vec<(f64, f64)> = x
            .par_chunks(plane)
            .enumerate()
            .map(|(i, values)| {
                let s = shift[i % c];
                planes::shifted_sums(values, s)
            })
            .collect();
        Statistics::from_sums(per_channel(planes, c), &shift, n, epsilon)
    })
}

/// `then` applied to `a·x + d` per channel, and, when `record`, what the backward pass needs of
/// it (the ReLU's coefficients, the pooling's winner codes); otherwise [`After::Nothing`].
fn normalise_then(
    x: &FlexTensor,
    coefficients: Vec<(f32, f32)>,
    then: Then,
    record: bool,
) -> (FlexTensor, After) {
    match then {
        Then::Nothing => (normalise::<false>(x, &coefficients), After::Nothing),
        Then::Relu => {
            let out = normalise::<true>(x, &coefficients);
            let after = if record {
                After::Relu(coefficients)
            } else {
                After::Nothing
            };
            (out, after)
        }
        Then::MaxPool2Relu if record => {
            let [b, c, h, w] = dims(x);
            let mut codes = vec![0u8; b * c * (h / 2) * (w / 2)];
            let out = flex_pool::pool(x, Some(&mut codes), |k| coefficients[k]);
            (out, After::MaxPool2Relu(Arc::new(codes)))
        }
        Then::MaxPool2Relu => (
            flex_pool::pool(x, None, |k| coefficients[k]),
            After::Nothing,
        ),
    }
}

/// `y = a·x + d` per channel (the coefficients of [`Statistics::output_coefficients`]), as
/// one multiply-add per value; with `RELU`, `relu(y)`.
fn normalise<const RELU: bool>(x: &FlexTensor, coefficients: &[(f32, f32)]) -> FlexTensor {
    let [b, c, h, w] = dims(x);
    let plane = h * w;
    let write = |out: &mut [MaybeUninit<f32>]| {
        with_f32(x, |x| {
            out.par_chunks_mut(plane)
                .zip(x.par_chunks(plane))
                .enumerate()
                .for_each(|(i, (out, x))| {
                    planes::normalise(out, x, None, coefficients[i % c], RELU)
                });
        })
    };
    // SAFETY: the planes cover the output, and each is written whole.
    let out = unsafe { written(b * c * plane, write) };
    tensor(out, &[b, c, h, w])
}

/// The output gradient's plane `i` (`len` values).
fn plane_of<T>(grad: &[T], i: usize, len: usize) -> &[T] {
    &grad[i * len..(i + 1) * len]
}

/// Per channel, `(Σ dy, Σ dy·x)`, with `dy` the gradient at the normalised values.
fn channel_sums(state: &NormState, grad: &FlexTensor) -> Vec<(f64, f64)> {
    let [_, c, h, w] = dims(&state.x);
    let plane = h * w;
    with_f32(&state.x, |x| {
        with_f32(grad, |grad| {
            let planes = x
                .par_chunks(plane)
                .enumerate()
                .map(|(i, x)| match &state.after {
                    after @ (After::Nothing | After::Relu(_)) => {
                        planes::grad_sums(plane_of(grad, i, plane), x, after.relu(i % c))
                    }
                    After::MaxPool2Relu(codes) => {
                        let pooled = (h / 2) * (w / 2);
                        let (codes, dy) = (plane_of(codes, i, pooled), plane_of(grad, i, pooled));
                        flex_pool::winner_sums(codes, dy, x, w)
                    }
                })
                .collect();
            per_channel(planes, c)
        })
    })
}

/// `dx = γ·inv_std · (dy − (Σ dy + x̂ · dγ) / N)`, written as `A·dy + B·x + C` per channel.
fn input_grad(state: &NormState, grad: &FlexTensor, d_beta: &[f64], d_gamma: &[f64]) -> FlexTensor {
    let [b, c, h, w] = dims(&state.x);
    let plane = h * w;
    let n = (b * plane) as f64;
    let stats = &state.stats;
    let coefficients = stats.grad_coefficients(&state.gamma, d_beta, d_gamma, n);
    let write = |out: &mut [MaybeUninit<f32>]| {
        with_f32(&state.x, |x| {
            with_f32(grad, |grad| {
                out.par_chunks_mut(plane)
                    .zip(x.par_chunks(plane))
                    .enumerate()
                    .for_each(|(i, (out, x))| {
                        let abd = coefficients[i % c];
                        match &state.after {
                            after @ (After::Nothing | After::Relu(_)) => {
                                let (dy, relu) = (plane_of(grad, i, plane), after.relu(i % c));
                                planes::input_grad(out, x, dy, abd, relu)
                            }
                            After::MaxPool2Relu(codes) => {
                                let pooled = (h / 2) * (w / 2);
                                let (codes, dy) =
                                    (plane_of(codes, i, pooled), plane_of(grad, i, pooled));
                                flex_pool::winner_grad(out, codes, dy, x, w, abd);
                            }
                        }
                    });
            })
        })
    };
    // SAFETY: the planes cover the output, and each is written whole.
    let dx = unsafe { written(b * c * plane, write) };
    tensor(dx, &[b, c, h, w])
}

// ---------------------------------------------------------------------------------------------
// Batch normalisation of `[batch, features]` rows (the projectors' hidden layers): the same
// statistics per feature, summed down the columns in blocks of rows so that the loops run
// along the contiguous features. Burn's `BatchNorm` composes it from tensor operations, about
// six passes forward and ten backward.

/// Each block's column sums `(Σ term₁, Σ term₂)` in f32, added up in f64 in block order.
fn column_sums(
    a: &[f32],
    b: &[f32],
    c: usize,
    term: impl Fn(f32, f32, usize) -> (f32, f32) + Sync,
) -> Vec<(f64, f64)> {
    let rows = task_rows(c);
    let blocks: Vec<(Vec<f32>, Vec<f32>)> = a
        .par_chunks(rows * c)
        .zip(b.par_chunks(rows * c))
        .map(|(a, b)| {
            let (mut s1, mut s2) = (vec![0.0f32; c], vec![0.0f32; c]);
            for (a, b) in a.chunks_exact(c).zip(b.chunks_exact(c)) {
                for (j, ((s1, s2), (&a, &b))) in s1
                    .iter_mut()
                    .zip(s2.iter_mut())
                    .zip(a.iter().zip(b))
                    .enumerate()
                {
                    let (t1, t2) = term(a, b, j);
                    *s1 += t1;
                    *s2 += t2;
                }
            }
            (s1, s2)
        })
        .collect();
    let mut sums = vec![(0.0f64, 0.0f64); c];
    for (s1, s2) in &blocks {
        for (j, sum) in sums.iter_mut().enumerate() {
            sum.0 += f64::from(s1[j]);
            sum.1 += f64::from(s2[j]);
        }
    }
    sums
}

/// `out[i, j] = x[i, j] · a[j] + d[j]`, in blocks of rows.
fn affine_rows(x: &[f32], c: usize, a: &[f32], d: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    let rows = task_rows(c);
    out.par_chunks_mut(rows * c)
        .zip(x.par_chunks(rows * c))
        .for_each(|(out, x)| {
            for (out, x) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for (((o, &v), &a), &d) in out.iter_mut().zip(x).zip(a).zip(d) {
                    *o = v * a + d;
                }
            }
        });
    out
}

/// The kernel's output on `[batch, features]` with the batch mean and (biased) variance per
/// feature, or `None` to leave the layer to the generic path.
pub(super) fn batch_norm_train_rows(
    x: &Tensor<2>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
) -> Option<(Tensor<2>, Tensor<1>, Tensor<1>)> {
    let [b, c] = x.dims();
    let fits = [x.dtype(), gamma.dtype(), beta.dtype()] == [DType::F32; 3]
        && gamma.dims() == [c]
        && beta.dims() == [c]
        && b * c > 0;
    if !fits || !x.device().is_autodiff() {
        return None;
    }
    let prim = |t: Tensor<1>| t.try_into_primitive::<Autodiff<Flex>>().ok();
    let (gamma, beta) = (prim(gamma.clone())?, prim(beta.clone())?);
    let (x_prim, x_guard) = x
        .clone()
        .try_into_primitive::<Autodiff<Flex>>()
        .ok()?
        .into_parts();
    let (gamma, gamma_guard) = gamma.into_parts();
    let (beta, beta_guard) = beta.into_parts();
    let gamma = with_f32(&gamma, <[f32]>::to_vec);
    let beta = with_f32(&beta, <[f32]>::to_vec);
    let (out, stats) = with_f32(&x_prim, |values| {
        // Sums of x − shift, with each feature's first value as the shift (see `statistics`).
        let shift = values[..c].to_vec();
        let sums = column_sums(values, values, c, |v, _, j| {
            let d = v - shift[j];
            (d, d * d)
        });
        let stats = Statistics::from_sums(sums, &shift, b as f64, epsilon);
        let (a, d): (Vec<f32>, Vec<f32>) =
            stats.output_coefficients(&gamma, &beta).into_iter().unzip();
        (tensor(affine_rows(values, c, &a, &d), &[b, c]), stats)
    });
    let result = stats.clone();
    let out = match RowsBackward
        .prepare::<NoCheckpointing>([x_guard, gamma_guard, beta_guard])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            NormState {
                x: x_prim,
                gamma,
                stats,
                after: After::Nothing,
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Some(with_statistics(out, &result, &x.device()))
}

#[derive(Debug)]
struct RowsBackward;

impl Backward<Flex, 3> for RowsBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pgamma, pbeta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let state = ops.state;
        let shape = state.x.layout().shape();
        let (b, c) = (shape[0], shape[1]);
        let stats = &state.stats;
        let mean: Vec<f32> = stats.mean.iter().map(|&m| m as f32).collect();
        // dβ = Σ dy; dγ = inv_std · Σ dy (x − mean).
        let sums = with_f32(&state.x, |x| {
            with_f32(&grad, |dy| {
                column_sums(dy, x, c, |g, v, j| (g, g * (v - mean[j])))
            })
        });
        let d_beta: Vec<f64> = sums.iter().map(|s| s.0).collect();
        let d_gamma: Vec<f64> = (0..c).map(|j| stats.inv_std[j] * sums[j].1).collect();
        if let Some(node) = px {
            // dx = γ·inv_std · (dy − (Σ dy + x̂ · dγ) / N) = a·dy + e·x + d per feature.
            let coefficients = stats.grad_coefficients(&state.gamma, &d_beta, &d_gamma, b as f64);
            let mut dx = vec![0.0f32; b * c];
            let rows = task_rows(c);
            with_f32(&state.x, |x| {
                with_f32(&grad, |dy| {
                    dx.par_chunks_mut(rows * c)
                        .zip(x.par_chunks(rows * c).zip(dy.par_chunks(rows * c)))
                        .for_each(|(dx, (x, dy))| {
                            let rows = dx.chunks_exact_mut(c).zip(x.chunks_exact(c));
                            for ((dx, x), dy) in rows.zip(dy.chunks_exact(c)) {
                                let terms = x.iter().zip(dy).zip(&coefficients);
                                for (dx, ((&v, &g), &(a, e, d))) in dx.iter_mut().zip(terms) {
                                    *dx = a * g + e * v + d;
                                }
                            }
                        });
                })
            });
            grads.register::<Flex>(node.id, tensor(dx, &[b, c]));
        }
        let as_tensor = |v: &[f64]| tensor(v.iter().map(|&v| v as f32).collect(), &[c]);
        if let Some(node) = pgamma {
            grads.register::<Flex>(node.id, as_tensor(&d_gamma));
        }
        if let Some(node) = pbeta {
            grads.register::<Flex>(node.id, as_tensor(&d_beta));
        }
    }
}
