//! The flex kernels behind [`super::max_pool2_relu`], and the autodiff step that runs the
//! backward kernel.
//!
//! The backward pass recomputes each window's maximum from the kept input instead of storing
//! an index per output: one more read of the input, no `i64` tensor written and read back.

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
    Some(Tensor::from_primitive::<Flex>(forward(&x)))
}

fn tracked(x: FloatTensor<Autodiff<Flex>>) -> FloatTensor<Autodiff<Flex>> {
    let (input, guard) = x.into_parts();
    match MaxPool2Relu
        .prepare::<NoCheckpointing>([guard])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let output = forward(&input);
            prep.finish(input, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&input)),
    }
}

#[derive(Debug)]
struct MaxPool2Relu;

impl Backward<Flex, 1> for MaxPool2Relu {
    /// The input, from which the backward pass finds each window's maximum again.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, backward(&ops.state, &grad));
        }
    }
}

/// Which of a window's four values (row-major) is its maximum, with Burn's rules: the first
/// of equal values wins, and a NaN wins so that it propagates. Selects instead of branches:
/// on real activations the winner is unpredictable, and mispredicted branches made the
/// backward pass five times slower than the forward one.
#[inline(always)]
fn window_max(values: [f32; 4]) -> (f32, usize) {
    let (mut best, mut index) = (values[0], 0);
    for (i, &v) in values.iter().enumerate().skip(1) {
        let take = v > best || v.is_nan();
        best = if take { v } else { best };
        index += (i - index) * usize::from(take);
    }
    (best, index)
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

fn forward(x: &FlexTensor) -> FlexTensor {
    let [b, c, h, w] = dims(x);
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0f32; b * c * oh * ow];
    with_f32(x, |x| {
        out.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each(|(out, plane)| {
                for oy in 0..oh {
                    let row = &mut out[oy * ow..(oy + 1) * ow];
                    for (ox, o) in row.iter_mut().enumerate() {
                        let (v, _) = window_max(window(plane, 2 * oy * w, w, ox));
                        *o = if relu_passes(v) { v } else { 0.0 };
                    }
                }
            });
    });
    tensor(out, &[b, c, oh, ow])
}

fn backward(x: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
    let [b, c, h, w] = dims(x);
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0f32; b * c * h * w];
    with_f32(x, |x| {
        with_f32(grad, |grad| {
            out.par_chunks_mut(h * w)
                .zip(x.par_chunks(h * w).zip(grad.par_chunks(oh * ow)))
                .for_each(|(out, (plane, grad))| {
                    for oy in 0..oh {
                        let top = 2 * oy * w;
                        let (upper, lower) = out[top..top + 2 * w].split_at_mut(w);
                        let grad = &grad[oy * ow..(oy + 1) * ow];
                        for (ox, &g) in grad.iter().enumerate() {
                            let (v, i) = window_max(window(plane, top, w, ox));
                            let g = if relu_passes(v) { g } else { 0.0 };
                            // All four written, so no branch depends on which one won.
                            let pick = |k: usize| if i == k { g } else { 0.0 };
                            upper[2 * ox] = pick(0);
                            upper[2 * ox + 1] = pick(1);
                            lower[2 * ox] = pick(2);
                            lower[2 * ox + 1] = pick(3);
                        }
                    }
                });
        })
    });
    tensor(out, &[b, c, h, w])
}
