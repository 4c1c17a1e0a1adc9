//! The flex kernels behind [`super::max_pool2_relu`], and the autodiff step that runs the
//! backward kernel.
//!
//! In training the forward pass also records, in one byte per output, which of the window's
//! four inputs won (or that the ReLU blocked it). The backward pass then reads those bytes
//! and the output gradient instead of the whole input: both passes are bound by memory
//! traffic, and the input is four times the output's size.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use super::flex_util::{dims, tensor, with_f32};

/// The kernel's result on a flex float32 tensor; `None` leaves `x` to the generic path.
pub(super) fn max_pool2_relu(x: &Tensor<4>) -> Option<Tensor<4>> {
    if x.dtype() != DType::F32 || x.dims()[2] < 2 || x.dims()[3] < 2 {
        return None;
    }
    if x.device().is_autodiff() {
        let x = x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
        return Some(Tensor::from_primitive::<Autodiff<Flex>>(tracked(x)));
    }
    let x = x.clone().try_into_primitive::<Flex>().ok()?;
    Some(Tensor::from_primitive::<Flex>(forward(&x, None)))
}

fn tracked(x: FloatTensor<Autodiff<Flex>>) -> FloatTensor<Autodiff<Flex>> {
    let (input, guard) = x.into_parts();
    match MaxPool2Relu
        .prepare::<NoCheckpointing>([guard])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let [b, c, h, w] = dims(&input);
            let mut winners = vec![0u8; b * c * (h / 2) * (w / 2)];
            let output = forward(&input, Some(&mut winners));
            let state = Winners {
                codes: Arc::new(winners),
                input: [b, c, h, w],
            };
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&input, None)),
    }
}

/// Per output, which window input won (0-3, row-major), plus [`BLOCKED`] where the ReLU
/// zeroed it; and the input's shape.
#[derive(Debug, Clone)]
struct Winners {
    codes: Arc<Vec<u8>>,
    input: [usize; 4],
}

/// Added to the winner code of a window whose maximum the ReLU zeroed: no input gets a
/// gradient.
const BLOCKED: u8 = 4;

#[derive(Debug)]
struct MaxPool2Relu;

impl Backward<Flex, 1> for MaxPool2Relu {
    type State = Winners;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, backward(&ops.state, &grad));
        }
    }
}

/// Which of a window's four values (row-major) is its maximum, with Burn's rules: the first
/// of equal values wins, and a NaN wins so that it propagates (the last NaN, as in Burn).
///
/// No data-dependent branch on the common path: written as a running `if`, the compiler
/// emits branches, and on real activations the winner is unpredictable; the mispredictions
/// made the pass that records winners five times slower than the one that does not.
#[inline(always)]
fn window_max(values: [f32; 4]) -> (f32, usize) {
    let [a, b, c, d] = values;
    let best = a.max(b).max(c.max(d));
    if values.iter().any(|v| v.is_nan()) {
        let last_nan = values.iter().rposition(|v| v.is_nan()).unwrap_or(0);
        return (f32::NAN, last_nan);
    }
    // The first position holding the maximum, from comparisons alone.
    let miss = |v: f32| usize::from(v != best);
    (best, miss(a) * (1 + miss(b) * (1 + miss(c))))
}

/// The four values of window `ox` in the row pair starting at `top` (row length `w`).
#[inline(always)]
fn window(plane: &[f32], top: usize, w: usize, ox: usize) -> [f32; 4] {
    let (a, b) = (top + 2 * ox, top + w + 2 * ox);
    [plane[a], plane[a + 1], plane[b], plane[b + 1]]
}

/// ReLU passes a value (and its gradient) unless it is 0 or below; NaN passes, as in Burn.
#[inline(always)]
fn relu_passes(v: f32) -> bool {
    v > 0.0 || v.is_nan()
}

/// The pooled, rectified output; with `winners`, also each window's winner code.
fn forward(x: &FlexTensor, winners: Option<&mut [u8]>) -> FlexTensor {
    let [b, c, h, w] = dims(x);
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0f32; b * c * oh * ow];
    with_f32(x, |x| {
        let planes = out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w));
        match winners {
            Some(codes) => planes
                .zip(codes.par_chunks_mut(oh * ow))
                .for_each(|((out, plane), codes)| pool_plane::<true>(out, plane, codes, w)),
            None => planes.for_each(|(out, plane)| pool_plane::<false>(out, plane, &mut [], w)),
        }
    });
    tensor(out, &[b, c, oh, ow])
}

/// One plane of [`forward`]; `CODES` chooses at compile time whether winners are recorded, so
/// the inference loop carries no test for it.
#[inline(always)]
fn pool_plane<const CODES: bool>(out: &mut [f32], plane: &[f32], codes: &mut [u8], w: usize) {
    let ow = w / 2;
    for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
        for (ox, o) in row.iter_mut().enumerate() {
            let (v, i) = window_max(window(plane, 2 * oy * w, w, ox));
            let passes = relu_passes(v);
            *o = if passes { v } else { 0.0 };
            if CODES {
                // A blocked window's code is 4 or more: no input matches it.
                codes[oy * ow + ox] = i as u8 | (u8::from(!passes) * BLOCKED);
            }
        }
    }
}

/// The input's gradient: each output's gradient goes to its window's winner.
fn backward(winners: &Winners, grad: &FlexTensor) -> FlexTensor {
    let [b, c, h, w] = winners.input;
    let (oh, ow) = (h / 2, w / 2);
    // Zeros stay where no window reaches: an odd last row or column.
    let mut out = vec![0.0f32; b * c * h * w];
    with_f32(grad, |grad| {
        out.par_chunks_mut(h * w)
            .zip(
                winners
                    .codes
                    .par_chunks(oh * ow)
                    .zip(grad.par_chunks(oh * ow)),
            )
            .for_each(|(out, (codes, grad))| {
                for oy in 0..oh {
                    let top = 2 * oy * w;
                    let (upper, lower) = out[top..top + 2 * w].split_at_mut(w);
                    let row = oy * ow..(oy + 1) * ow;
                    for (ox, (&code, &g)) in codes[row.clone()].iter().zip(&grad[row]).enumerate() {
                        // All four written, so no branch depends on which one won.
                        let pick = |k: u8| if code == k { g } else { 0.0 };
                        upper[2 * ox] = pick(0);
                        upper[2 * ox + 1] = pick(1);
                        lower[2 * ox] = pick(2);
                        lower[2 * ox + 1] = pick(3);
                    }
                }
            });
    });
    tensor(out, &[b, c, h, w])
}
