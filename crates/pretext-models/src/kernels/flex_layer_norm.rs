//! The flex kernel behind [`super::layer_norm`] in training: layer normalisation over the last
//! axis, one pass over each row forward (its mean and spread, then the output) and one back
//! (the input's gradient and the row's share of the scale's and shift's). Under autodiff Burn
//! composes the layer from nine operations forward, each a pass over the activation, and about
//! twice as many backward, with the scale's and shift's broadcasts summed back separately;
//! Transformers take one before every attention and feed-forward block.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use super::flex_util::{dispatched, lane_sum, task_rows, tensor, with_f32};

/// What the backward pass needs: the input, the scale, and each row's mean and
/// `1 / sqrt(variance + epsilon)`.
#[derive(Debug, Clone)]
struct NormState {
    x: FlexTensor,
    gamma: Vec<f32>,
    /// `[mean, inv_std]` per row.
    stats: Vec<[f32; 2]>,
}

/// The kernel's output on a flex autodiff tensor with a shift, or `None` to leave the layer to
/// the generic path.
pub(super) fn layer_norm<const D: usize>(
    x: &Tensor<D>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
) -> Option<Tensor<D>> {
    let n = x.dims()[D - 1];
    let fits = [x.dtype(), gamma.dtype(), beta.dtype()] == [DType::F32; 3]
        && gamma.dims() == [n]
        && beta.dims() == [n]
        && n > 0;
    if !fits || !x.device().is_autodiff() {
        return None;
    }
    let prim = |t: Tensor<1>| t.try_into_primitive::<Autodiff<Flex>>().ok();
    let (gamma, beta) = (prim(gamma.clone())?, prim(beta.clone())?);
    let x = x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
    let (x, x_guard) = x.into_parts();
    let (gamma, gamma_guard) = gamma.into_parts();
    let (beta, beta_guard) = beta.into_parts();
    let gamma = with_f32(&gamma, <[f32]>::to_vec);
    let beta = with_f32(&beta, <[f32]>::to_vec);
    let (out, stats) = forward(&x, &gamma, &beta, epsilon as f32);
    let out = match LayerNormBackward
        .prepare::<NoCheckpointing>([x_guard, gamma_guard, beta_guard])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(NormState { x, gamma, stats }, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
}

fn forward(
    x: &FlexTensor,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) -> (FlexTensor, Vec<[f32; 2]>) {
    let dims = x.layout().shape().to_vec();
    let n = gamma.len();
    let total: usize = dims.iter().product();
    let mut out = vec![0.0f32; total];
    let mut stats = vec![[0.0f32; 2]; total / n];
    let rows = task_rows(n);
    with_f32(x, |x| {
        out.par_chunks_mut(rows * n)
            .zip(x.par_chunks(rows * n))
            .zip(stats.par_chunks_mut(rows))
            .for_each(|((out, x), stats)| forward_chunk(out, stats, x, gamma, beta, epsilon));
    });
    (tensor(out, &dims), stats)
}

/// `y = (x − mean) · inv_std · γ + β` per row, the statistics two-pass within the row (which
/// sits in the first-level cache) so that a large mean costs no precision.
#[inline(always)]
fn forward_rows(
    out: &mut [f32],
    stats: &mut [[f32; 2]],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) {
    let n = gamma.len();
    let rows = out.chunks_exact_mut(n).zip(x.chunks_exact(n));
    for ((y, row), stat) in rows.zip(stats.iter_mut()) {
        let mean = lane_sum(row, row, |v, _| v) / n as f32;
        let variance = lane_sum(row, row, |v, _| (v - mean) * (v - mean)) / n as f32;
        let inv_std = 1.0 / (variance + epsilon).sqrt();
        for (((y, &v), &g), &b) in y.iter_mut().zip(row).zip(gamma).zip(beta) {
            *y = (v - mean) * inv_std * g + b;
        }
        *stat = [mean, inv_std];
    }
}

/// Per row, with `x̂ = (x − mean) · inv_std` and `g = dy · γ`:
/// `dx = inv_std · (g − mean(g) − x̂ · mean(g · x̂))`; adds `dy · x̂` into `d_gamma` and `dy`
/// into `d_beta`. `scratch` holds two rows, `x̂` and `g`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_rows(
    dx: &mut [f32],
    x: &[f32],
    dy: &[f32],
    stats: &[[f32; 2]],
    gamma: &[f32],
    scratch: &mut [f32],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
) {
    let n = gamma.len();
    let (x_hat, g) = scratch.split_at_mut(n);
    let rows = dx.chunks_exact_mut(n).zip(x.chunks_exact(n));
    for (((dx, x), dy), &[mean, inv_std]) in rows.zip(dy.chunks_exact(n)).zip(stats) {
        for ((((h, g), &v), &d), &w) in x_hat.iter_mut().zip(g.iter_mut()).zip(x).zip(dy).zip(gamma)
        {
            *h = (v - mean) * inv_std;
            *g = d * w;
        }
        let mean_g = lane_sum(g, g, |g, _| g) / n as f32;
        let mean_gx = lane_sum(g, x_hat, |g, h| g * h) / n as f32;
        for ((dx, &g), &h) in dx.iter_mut().zip(g.iter()).zip(x_hat.iter()) {
            *dx = inv_std * (g - mean_g - h * mean_gx);
        }
        let sums = d_gamma.iter_mut().zip(d_beta.iter_mut());
        for (((dg, db), &d), &h) in sums.zip(dy).zip(x_hat.iter()) {
            *dg += d * h;
            *db += d;
        }
    }
}

dispatched!(forward_chunk => forward_rows(out: &mut [f32], stats: &mut [[f32; 2]], x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f32));
dispatched!(backward_chunk => backward_rows(dx: &mut [f32], x: &[f32], dy: &[f32], stats: &[[f32; 2]], gamma: &[f32], scratch: &mut [f32], d_gamma: &mut [f32], d_beta: &mut [f32]));

/// One task's sums for the scale's and the shift's gradients.
type Sums = (Vec<f32>, Vec<f32>);

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pgamma, pbeta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let NormState { x, gamma, stats } = ops.state;
        let dims = x.layout().shape().to_vec();
        let n = gamma.len();
        let rows = task_rows(n);
        let mut dx = vec![0.0f32; dims.iter().product()];
        // Each task's sums for the scale and shift, added in task order so that the result
        // does not depend on the thread count.
        let partials: Vec<Sums> = with_f32(&x, |x| {
            with_f32(&grad, |dy| {
                dx.par_chunks_mut(rows * n)
                    .zip(x.par_chunks(rows * n).zip(dy.par_chunks(rows * n)))
                    .zip(stats.par_chunks(rows))
                    .map(|((dx, (x, dy)), stats)| {
                        let (mut d_gamma, mut d_beta) = (vec![0.0f32; n], vec![0.0f32; n]);
                        let mut scratch = vec![0.0f32; 2 * n];
                        backward_chunk(
                            dx,
                            x,
                            dy,
                            stats,
                            &gamma,
                            &mut scratch,
                            &mut d_gamma,
                            &mut d_beta,
                        );
                        (d_gamma, d_beta)
                    })
                    .collect()
            })
        });
        if let Some(node) = px {
            grads.register::<Flex>(node.id, tensor(dx, &dims));
        }
        let total = |pick: fn(&Sums) -> &Vec<f32>| {
            let mut sums = vec![0.0f64; n];
            for part in &partials {
                for (s, &v) in sums.iter_mut().zip(pick(part)) {
                    *s += f64::from(v);
                }
            }
            tensor(sums.into_iter().map(|s| s as f32).collect(), &[n])
        };
        if let Some(node) = pgamma {
            grads.register::<Flex>(node.id, total(|p| &p.0));
        }
        if let Some(node) = pbeta {
            grads.register::<Flex>(node.id, total(|p| &p.1));
        }
    }
}
