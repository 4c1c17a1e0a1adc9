//! The flex kernels behind [`super::max_pool2_relu`], and the autodiff step that runs the
//! backward kernel.
//!
//! In training the forward pass also records, in one byte per output, which of the window's
//! four inputs won (or that the ReLU blocked it). The backward pass then reads those bytes
//! and the output gradient instead of the whole input: both passes are bound by memory
//! traffic, and the input is four times the output's size.

use std::mem::MaybeUninit;
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

use super::flex_util::{dims, dispatched, tensor, with_f32, written};

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
    Some(Tensor::from_primitive::<Flex>(pool(&x, None, |_| {
        (1.0, 0.0)
    })))
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
            let output = pool(&input, Some(&mut winners), |_| (1.0, 0.0));
            let state = Winners {
                codes: Arc::new(winners),
                input: [b, c, h, w],
            };
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(pool(&input, None, |_| (1.0, 0.0))),
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
/// No data-dependent branch: written as a running `if`, the compiler emits branches, and on
/// real activations the winner is unpredictable; the mispredictions made the pass that
/// records winners five times slower than the one that does not.
#[inline(always)]
fn window_max([a, b, c, d]: [f32; 4]) -> (f32, u32) {
    let best = a.max(b).max(c.max(d));
    // The first position holding the maximum, from comparisons alone.
    let miss = |v: f32| u32::from(v != best);
    let first = miss(a) * (1 + miss(b) * (1 + miss(c)));
    let nan = |v: f32, k: u32| if v.is_nan() { k } else { 0 };
    let last_nan = nan(b, 1).max(nan(c, 2)).max(nan(d, 3));
    let any_nan = a.is_nan() | b.is_nan() | c.is_nan() | d.is_nan();
    if any_nan {
        (f32::NAN, last_nan)
    } else {
        (best, first)
    }
}

/// ReLU passes a value (and its gradient) unless it is 0 or below; NaN passes, as in Burn.
#[inline(always)]
pub(super) fn relu_passes(v: f32) -> bool {
    v > 0.0 || v.is_nan()
}

/// Windows per block: one AVX2 vector of outputs. A row's windows go in blocks of this many
/// (4 in rows of 4 to 7 windows, one at a time in shorter ones), so that the loops over a
/// block have a fixed length, which the compiler unrolls; the rows are short (14 and 7
/// windows in the CNN encoder). Of these loops only the fused batch norm's input gradient,
/// which runs along the input row, uses vector operations in part; the others stay mostly
/// scalar, and cost about what the loops over whole rows did.
const BLOCK: usize = 8;

/// The first window of each block of `n` in a row of `ow >= n` windows, and how many of the
/// block's first windows an earlier block already covered: the last block is moved back to
/// end at `ow`, overlapping the one before it.
#[inline(always)]
fn blocks(ow: usize, n: usize) -> impl Iterator<Item = (usize, usize)> {
    let whole = ow / n;
    let last = (!ow.is_multiple_of(n)).then_some((ow - n, n - ow % n));
    (0..whole).map(move |k| (k * n, 0)).chain(last)
}

/// Runs `row::<N>` on each pair of input rows of a `w`-wide plane with `N` the block size that
/// fits the row.
macro_rules! by_block {
    ($w:expr, $row:ident $(::<$g:tt>)?, $($arg:expr),*) => {
        match $w / 2 {
            ow if ow >= BLOCK => $row::<BLOCK $(, $g)?>($($arg),*),
            ow if ow >= 4 => $row::<4 $(, $g)?>($($arg),*),
            _ => $row::<1 $(, $g)?>($($arg),*),
        }
    };
}

/// The four values of window `i` of a block starting at input column `2 · start`.
#[inline(always)]
fn window_at(upper: &[f32], lower: &[f32], i: usize) -> [f32; 4] {
    [
        upper[2 * i],
        upper[2 * i + 1],
        lower[2 * i],
        lower[2 * i + 1],
    ]
}

/// One plane's pooled, rectified output of `a·x + d` (the fused batch norm's affine map, or
/// `a = 1, d = 0`, which gives back every input but −0, which the ReLU zeroes anyway), every
/// value of `out` written, in blocks of `N` windows; with `CODES`, each window's winner code
/// in `codes`.
#[inline(always)]
fn pool_rows<const N: usize, const CODES: bool>(
    out: &mut [MaybeUninit<f32>],
    codes: &mut [u8],
    plane: &[f32],
    w: usize,
    a: f32,
    d: f32,
) {
    let ow = w / 2;
    for (oy, out) in out.chunks_exact_mut(ow).enumerate() {
        let (upper, lower) = (&plane[2 * oy * w..][..w], &plane[(2 * oy + 1) * w..][..w]);
        for (start, _) in blocks(ow, N) {
            let (upper, lower) = (&upper[2 * start..][..2 * N], &lower[2 * start..][..2 * N]);
            let (mut values, mut won) = ([0.0f32; N], [0u32; N]);
            for i in 0..N {
                let (v, k) = window_max(window_at(upper, lower, i).map(|x| x * a + d));
                let passes = relu_passes(v);
                values[i] = if passes { v } else { 0.0 };
                // A blocked window's code is 4 or more: no input matches it.
                won[i] = k | (u32::from(!passes) * u32::from(BLOCKED));
            }
            for (o, &v) in out[start..][..N].iter_mut().zip(&values) {
                o.write(v);
            }
            if CODES {
                let codes = &mut codes[oy * ow + start..][..N];
                for (c, &k) in codes.iter_mut().zip(&won) {
                    *c = k as u8;
                }
            }
        }
    }
}

#[inline(always)]
fn pool_plane_codes_body(
    out: &mut [MaybeUninit<f32>],
    codes: &mut [u8],
    plane: &[f32],
    w: usize,
    a: f32,
    d: f32,
) {
    by_block!(w, pool_rows::<true>, out, codes, plane, w, a, d)
}

#[inline(always)]
fn pool_plane_values_body(out: &mut [MaybeUninit<f32>], plane: &[f32], w: usize, a: f32, d: f32) {
    by_block!(w, pool_rows::<false>, out, &mut [], plane, w, a, d)
}

dispatched!(pool_plane_codes => pool_plane_codes_body(out: &mut [MaybeUninit<f32>], codes: &mut [u8], plane: &[f32], w: usize, a: f32, d: f32));
dispatched!(pool_plane_values => pool_plane_values_body(out: &mut [MaybeUninit<f32>], plane: &[f32], w: usize, a: f32, d: f32));

/// `relu(max_pool2(a·x + d))` with `(a, d)` = `coefficients(channel)` (the fused batch norm's
/// affine map, or `(1, 0)`); with `codes`, also each window's winner code.
pub(super) fn pool(
    x: &FlexTensor,
    codes: Option<&mut [u8]>,
    coefficients: impl Fn(usize) -> (f32, f32) + Sync,
) -> FlexTensor {
    let [b, c, h, w] = dims(x);
    let (oh, ow) = (h / 2, w / 2);
    let write = |out: &mut [MaybeUninit<f32>]| {
        with_f32(x, |x| {
            let planes = out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w));
            match codes {
                Some(codes) => planes
                    .zip(codes.par_chunks_mut(oh * ow))
                    .enumerate()
                    .for_each(|(i, ((out, plane), codes))| {
                        let (a, d) = coefficients(i % c);
                        pool_plane_codes(out, codes, plane, w, a, d)
                    }),
                None => planes.enumerate().for_each(|(i, (out, plane))| {
                    let (a, d) = coefficients(i % c);
                    pool_plane_values(out, plane, w, a, d)
                }),
            }
        })
    };
    // SAFETY: the planes cover the output, and each pool call writes its plane whole.
    let out = unsafe { written(b * c * oh * ow, write) };
    tensor(out, &[b, c, oh, ow])
}

/// The input's gradient: each output's gradient goes to its window's winner.
fn backward(winners: &Winners, grad: &FlexTensor) -> FlexTensor {
    let [b, c, h, w] = winners.input;
    let (oh, ow) = (h / 2, w / 2);
    let write = |out: &mut [MaybeUninit<f32>]| {
        with_f32(grad, |grad| {
            out.par_chunks_mut(h * w)
                .zip(
                    winners
                        .codes
                        .par_chunks(oh * ow)
                        .zip(grad.par_chunks(oh * ow)),
                )
                .for_each(|(out, (codes, grad))| spread_plane(out, codes, grad, w));
        })
    };
    // SAFETY: `spread_plane` writes every value of its plane.
    let out = unsafe { written(b * c * h * w, write) };
    tensor(out, &[b, c, h, w])
}

/// One input plane's value `a·dy + e·x + d` at each input (every one of `out`'s `h x w`
/// written), with `dy` each window's pooled gradient at its winner and 0 elsewhere,
/// including an odd last row or column, which no window reaches. Without `AFFINE`, `dy`
/// itself, and `x` (then empty) is never read.
#[inline(always)]
fn spread_body<const AFFINE: bool>(
    out: &mut [MaybeUninit<f32>],
    codes: &[u8],
    grad: &[f32],
    x: &[f32],
    w: usize,
    (a, e, d): (f32, f32, f32),
) {
    by_block!(w, spread_rows::<AFFINE>, out, codes, grad, x, w, (a, e, d));
    // The inputs no window reaches: `dy` is 0 there.
    let rest = |out: &mut [MaybeUninit<f32>], x: Option<&[f32]>| match x {
        Some(x) => out.iter_mut().zip(x).for_each(|(o, &v)| {
            o.write(e * v + d);
        }),
        None => out.iter_mut().for_each(|o| {
            o.write(0.0);
        }),
    };
    let h = out.len() / w;
    let pairs = h / 2;
    if w % 2 == 1 {
        for y in 0..2 * pairs {
            let at = y * w + w - 1;
            rest(&mut out[at..at + 1], AFFINE.then(|| &x[at..at + 1]));
        }
    }
    if h % 2 == 1 {
        let at = 2 * pairs * w;
        rest(&mut out[at..], AFFINE.then(|| &x[at..]));
    }

    #[inline(always)]
    fn spread_rows<const N: usize, const AFFINE: bool>(
        out: &mut [MaybeUninit<f32>],
        codes: &[u8],
        grad: &[f32],
        x: &[f32],
        w: usize,
        (a, e, d): (f32, f32, f32),
    ) {
        let ow = w / 2;
        for oy in 0..out.len() / w / 2 {
            let (upper, lower) = out[2 * oy * w..][..2 * w].split_at_mut(w);
            let (codes, grad) = (&codes[oy * ow..][..ow], &grad[oy * ow..][..ow]);
            for (start, _) in blocks(ow, N) {
                let (codes, grad) = (&codes[start..][..N], &grad[start..][..N]);
                let (upper, lower) = (
                    &mut upper[2 * start..][..2 * N],
                    &mut lower[2 * start..][..2 * N],
                );
                // Along the input row, so that every load and store is contiguous (the
                // window's codes and gradients are each read twice).
                for j in 0..2 * N {
                    let (code, g, k) = (codes[j / 2], grad[j / 2], (j % 2) as u8);
                    let (mut up, mut low) = (
                        if code == k { g } else { 0.0 },
                        if code == k + 2 { g } else { 0.0 },
                    );
                    if AFFINE {
                        let at = 2 * oy * w + 2 * start + j;
                        up = a * up + e * x[at] + d;
                        low = a * low + e * x[at + w] + d;
                    }
                    upper[j].write(up);
                    lower[j].write(low);
                }
            }
        }
    }
}

#[inline(always)]
fn spread_plane_body(out: &mut [MaybeUninit<f32>], codes: &[u8], grad: &[f32], w: usize) {
    spread_body::<false>(out, codes, grad, &[], w, (1.0, 0.0, 0.0))
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn winner_grad_body(
    out: &mut [MaybeUninit<f32>],
    codes: &[u8],
    grad: &[f32],
    x: &[f32],
    w: usize,
    a: f32,
    e: f32,
    d: f32,
) {
    spread_body::<true>(out, codes, grad, x, w, (a, e, d))
}

dispatched!(spread_plane => spread_plane_body(out: &mut [MaybeUninit<f32>], codes: &[u8], grad: &[f32], w: usize));
dispatched!(winner_grad_plane => winner_grad_body(out: &mut [MaybeUninit<f32>], codes: &[u8], grad: &[f32], x: &[f32], w: usize, a: f32, e: f32, d: f32));

/// One input plane of the fused batch norm's input gradient, `a·dy + e·x + d` (see
/// [`spread_body`]), every value of `out` written.
pub(super) fn winner_grad(
    out: &mut [MaybeUninit<f32>],
    codes: &[u8],
    grad: &[f32],
    x: &[f32],
    w: usize,
    (a, e, d): (f32, f32, f32),
) {
    winner_grad_plane(out, codes, grad, x, w, a, e, d)
}

/// `(Σ dy, Σ dy·x)` over one input plane `x`, with `dy` each window's pooled gradient at its
/// winner and 0 elsewhere: one term per window that passed, in [`BLOCK`] lanes.
#[inline(always)]
fn winner_sums_body(codes: &[u8], grad: &[f32], x: &[f32], w: usize, sums: &mut [f64; 2]) {
    *sums = by_block!(w, sum_rows, codes, grad, x, w);

    #[inline(always)]
    fn sum_rows<const N: usize>(codes: &[u8], grad: &[f32], x: &[f32], w: usize) -> [f64; 2] {
        let ow = w / 2;
        let (mut s1, mut s2) = ([0.0f32; N], [0.0f32; N]);
        for oy in 0..codes.len() / ow.max(1) {
            let (upper, lower) = (&x[2 * oy * w..][..w], &x[(2 * oy + 1) * w..][..w]);
            let (codes, grad) = (&codes[oy * ow..][..ow], &grad[oy * ow..][..ow]);
            for (start, done) in blocks(ow, N) {
                let (upper, lower) = (&upper[2 * start..][..2 * N], &lower[2 * start..][..2 * N]);
                let (codes, grad) = (&codes[start..][..N], &grad[start..][..N]);
                for i in 0..N {
                    let [xa, xb, xc, xd] = window_at(upper, lower, i);
                    let code = codes[i];
                    let top = if code & 1 == 0 { xa } else { xb };
                    let bottom = if code & 1 == 0 { xc } else { xd };
                    let winner = if code & 2 == 0 { top } else { bottom };
                    // Blocked windows, and those an earlier block counted, add nothing.
                    let counts = code < BLOCKED && i >= done;
                    s1[i] += if counts { grad[i] } else { 0.0 };
                    s2[i] += if counts { grad[i] * winner } else { 0.0 };
                }
            }
        }
        let total = |s: [f32; N]| s.iter().map(|&v| f64::from(v)).sum::<f64>();
        [total(s1), total(s2)]
    }
}

dispatched!(winner_sums_plane => winner_sums_body(codes: &[u8], grad: &[f32], x: &[f32], w: usize, sums: &mut [f64; 2]));

/// `(Σ dy, Σ dy·x)` over one input plane (see [`winner_sums_body`]).
pub(super) fn winner_sums(codes: &[u8], grad: &[f32], x: &[f32], w: usize) -> (f64, f64) {
    let mut sums = [0.0; 2];
    winner_sums_plane(codes, grad, x, w, &mut sums);
    (sums[0], sums[1])
}
