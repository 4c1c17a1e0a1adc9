//! The flex kernels behind [`super::softmax_last`], [`super::log_softmax_last`] and
//! [`super::gelu`]: one pass forward and one backward each, where Burn composes the softmax
//! from five operations (max, subtract, exp, sum, divide) and its backward from as many again,
//! and evaluates GELU's error function one scalar `erff` call at a time. The Transformers spent
//! a fifth of their step in them.
//!
//! All three use [`exp`], a polynomial the compiler vectorises, in place of the scalar `expf`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use super::flex_util::{
    LANES, TASK_VALUES, dispatched, for_lanes, lane_sum, mul_add, reduce_lanes, task_rows, tensor,
    with_f32, zip_lanes,
};

/// `e^x` within 2 ulp over the range that does not overflow (Cephes' `expf` polynomial after
/// reduction by `ln 2`); 0 below -87.3 and `inf` above 88.7, NaN for NaN. Branch-free and
/// without calls (no `round`; `mul_add` only where `FMA` makes it one instruction), so loops
/// over it vectorise.
#[inline(always)]
pub(super) fn exp<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that x - n ln 2 is exact for the n reached here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.7);
    let shifted = mul_add::<FMA>(clamped, LOG2E, ROUND);
    let n = shifted - ROUND;
    let r = mul_add::<FMA>(-n, LN2_LO, mul_add::<FMA>(-n, LN2_HI, clamped));
    let p = 1.987_569_1e-4_f32;
    let p = mul_add::<FMA>(p, r, 1.398_199_9e-3);
    let p = mul_add::<FMA>(p, r, 8.333_452e-3);
    let p = mul_add::<FMA>(p, r, 4.166_579_6e-2);
    let p = mul_add::<FMA>(p, r, 1.666_666_5e-1);
    let p = mul_add::<FMA>(p, r, 0.5);
    let e = mul_add::<FMA>(p * r, r, r) + 1.0;
    // 2^n in two normal factors through the exponent bits: n lies in [-126, 128], whose ends
    // one factor cannot hold. n is read from the low mantissa bits of `shifted` (whose exponent
    // is 2^23's), not by `as i32`: a saturating conversion does not vectorise, and left the
    // loops over this function one lane at a time. For NaN the bits are meaningless and the
    // result is replaced below.
    let n = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let half = n >> 1;
    let factor = |k: i32| f32::from_bits((k.wrapping_add(127) as u32) << 23);
    let y = e * factor(half) * factor(n.wrapping_sub(half));
    let y = if x < -87.3 { 0.0 } else { y };
    let y = if x > 88.7 { f32::INFINITY } else { y };
    if x.is_nan() { x } else { y }
}

/// `Φ(x)`, the standard normal distribution function, and `φ(x)`, its density, from
/// Abramowitz and Stegun's 7.1.26 (absolute error below 1.5e-7 in `erfc`), written as the tail
/// `Φ(-|x|)` so that both halves keep their precision.
#[inline(always)]
fn normal_cdf_pdf<const FMA: bool>(x: f32) -> (f32, f32) {
    const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    let z = x.abs() * FRAC_1_SQRT_2;
    let t = 1.0 / mul_add::<FMA>(0.327_591_1, z, 1.0);
    let poly = 1.061_405_4f32;
    let poly = mul_add::<FMA>(poly, t, -1.453_152_1);
    let poly = mul_add::<FMA>(poly, t, 1.421_413_7);
    let poly = mul_add::<FMA>(poly, t, -0.284_496_74);
    let poly = mul_add::<FMA>(poly, t, 0.254_829_6);
    let gaussian = exp::<FMA>(-z * z);
    let tail = 0.5 * poly * t * gaussian;
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    (cdf, FRAC_1_SQRT_2PI * gaussian)
}

/// GELU, `x Φ(x)`, the exact form (Burn's `gelu`).
#[inline(always)]
fn gelu_value<const FMA: bool>(x: f32) -> f32 {
    x * normal_cdf_pdf::<FMA>(x).0
}

/// GELU's derivative, `Φ(x) + x φ(x)`.
#[inline(always)]
fn gelu_slope<const FMA: bool>(x: f32) -> f32 {
    let (cdf, pdf) = normal_cdf_pdf::<FMA>(x);
    x * pdf + cdf
}

/// `forward` on a flex float32 tensor, or `tracked` on one under autodiff; `None` leaves any
/// other tensor to the generic path.
fn on_flex<const D: usize>(
    x: &Tensor<D>,
    forward: impl Fn(&FlexTensor) -> FlexTensor,
    tracked: impl Fn(FloatTensor<Autodiff<Flex>>) -> FloatTensor<Autodiff<Flex>>,
) -> Option<Tensor<D>> {
    if x.dtype() != DType::F32 {
        return None;
    }
    if x.device().is_autodiff() {
        let prim = x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
        return Some(Tensor::from_primitive::<Autodiff<Flex>>(tracked(prim)));
    }
    let prim = x.clone().try_into_primitive::<Flex>().ok()?;
    Some(Tensor::from_primitive::<Flex>(forward(&prim)))
}

/// The shape of `t` as a vector.
fn shape(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

/// The row's largest value, ignoring NaN (as `f32::max` does); `-inf` for a row of `-inf`.
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            lanes[i] = lanes[i].max(c[i]);
        }
    }
    rest.iter()
        .copied()
        .fold(reduce_lanes(lanes, f32::max), f32::max)
}

/// The shift of a row's exponentials: its largest value, or 0 for a row with no finite
/// maximum (which keeps Burn's NaN for a row of -inf alone).
#[inline(always)]
fn shift(row: &[f32]) -> f32 {
    let max = row_max(row);
    if max.is_finite() { max } else { 0.0 }
}

/// `e^(v - max)` of each value `v` of `row` into `y`; returns the [`shift`] `max`.
#[inline(always)]
fn shifted_exp<const FMA: bool>(y: &mut [f32], row: &[f32]) -> f32 {
    let max = shift(row);
    zip_lanes(y, row, |_, v| exp::<FMA>(v - max));
    max
}

/// Divides the exponentials `y` by their sum.
#[inline(always)]
fn normalise(y: &mut [f32]) {
    let inv = 1.0 / lane_sum(y, y, |a, _| a);
    for_lanes(y, |v| v * inv);
}

/// Softmax of each `n`-value row of `x` into `out`.
#[inline(always)]
fn softmax_rows<const FMA: bool>(out: &mut [f32], x: &[f32], n: usize) {
    for (y, row) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
        shifted_exp::<FMA>(y, row);
        normalise(y);
    }
}

/// Softmax's input gradient per row: `dx = y (dy - Σ dy y)`.
#[inline(always)]
fn softmax_grad_rows(dx: &mut [f32], y: &[f32], dy: &[f32], n: usize) {
    let rows = dx.chunks_exact_mut(n).zip(y.chunks_exact(n));
    for ((dx, y), dy) in rows.zip(dy.chunks_exact(n)) {
        let dot = lane_sum(y, dy, |y, g| y * g);
        for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
            *dx = y * (g - dot);
        }
    }
}

/// Log-softmax of each `n`-value row of `x` into `out`.
#[inline(always)]
fn log_softmax_rows<const FMA: bool>(out: &mut [f32], x: &[f32], n: usize) {
    for (y, row) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
        let max = shifted_exp::<FMA>(y, row);
        // Shifted by the maximum first: the largest logit's value stays exact.
        let log_sum = lane_sum(y, y, |a, _| a).ln();
        for (y, &v) in y.iter_mut().zip(row) {
            *y = (v - max) - log_sum;
        }
    }
}

/// Log-softmax's input gradient per row: `dx = dy - e^y Σ dy`.
#[inline(always)]
fn log_softmax_grad_rows<const FMA: bool>(dx: &mut [f32], y: &[f32], dy: &[f32], n: usize) {
    let rows = dx.chunks_exact_mut(n).zip(y.chunks_exact(n));
    for ((dx, y), dy) in rows.zip(dy.chunks_exact(n)) {
        let total = lane_sum(dy, dy, |g, _| g);
        for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
            *dx = g - exp::<FMA>(y) * total;
        }
    }
}

#[inline(always)]
fn gelu_values<const FMA: bool>(out: &mut [f32], x: &[f32]) {
    for (y, &v) in out.iter_mut().zip(x) {
        *y = gelu_value::<FMA>(v);
    }
}

#[inline(always)]
fn gelu_grads<const FMA: bool>(dx: &mut [f32], x: &[f32], dy: &[f32]) {
    for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
        *dx = g * gelu_slope::<FMA>(x);
    }
}

dispatched!(softmax_chunk => softmax_rows::<FMA>(out: &mut [f32], x: &[f32], n: usize));
dispatched!(softmax_grad_chunk => softmax_grad_rows(dx: &mut [f32], y: &[f32], dy: &[f32], n: usize));
dispatched!(log_softmax_chunk => log_softmax_rows::<FMA>(out: &mut [f32], x: &[f32], n: usize));
dispatched!(log_softmax_grad_chunk => log_softmax_grad_rows::<FMA>(dx: &mut [f32], y: &[f32], dy: &[f32], n: usize));
dispatched!(gelu_chunk => gelu_values::<FMA>(out: &mut [f32], x: &[f32]));
dispatched!(gelu_grad_chunk => gelu_grads::<FMA>(dx: &mut [f32], x: &[f32], dy: &[f32]));

// ---------------------------------------------------------------------------------------------
// The operations: each runs in parallel tasks of whole rows (or of values, for GELU), and its
// backward pass reads one saved tensor and the output's gradient.

#[derive(Debug, Clone, Copy)]
enum Kernel {
    /// Over the last axis; backward from the output: `dx = y (dy - Σ dy y)`.
    Softmax,
    /// Over the last axis; backward from the output: `dx = dy - e^y Σ dy`.
    LogSoftmax,
    /// Element-wise; backward from the input: `dx = dy (Φ(x) + x φ(x))`.
    Gelu,
}

impl Kernel {
    /// Values per parallel task when the last axis holds `n`.
    fn task(self, n: usize) -> usize {
        match self {
            // Whole rows.
            Kernel::Softmax | Kernel::LogSoftmax => task_rows(n) * n,
            Kernel::Gelu => TASK_VALUES,
        }
    }

    /// Whether the backward pass reads the input (else the output).
    fn saves_input(self) -> bool {
        matches!(self, Kernel::Gelu)
    }

    fn forward(self, out: &mut [f32], x: &[f32], n: usize) {
        match self {
            Kernel::Softmax => softmax_chunk(out, x, n),
            Kernel::LogSoftmax => log_softmax_chunk(out, x, n),
            Kernel::Gelu => gelu_chunk(out, x),
        }
    }

    fn backward(self, dx: &mut [f32], saved: &[f32], dy: &[f32], n: usize) {
        match self {
            Kernel::Softmax => softmax_grad_chunk(dx, saved, dy, n),
            Kernel::LogSoftmax => log_softmax_grad_chunk(dx, saved, dy, n),
            Kernel::Gelu => gelu_grad_chunk(dx, saved, dy),
        }
    }
}

pub(super) fn softmax_last<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    run(x, Kernel::Softmax)
}

pub(super) fn log_softmax_last<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    run(x, Kernel::LogSoftmax)
}

pub(super) fn gelu<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    run(x, Kernel::Gelu)
}

fn run<const D: usize>(x: &Tensor<D>, op: Kernel) -> Option<Tensor<D>> {
    if x.dims()[D - 1] == 0 {
        return None;
    }
    on_flex(
        x,
        |x| forward(x, op),
        |x| {
            let (input, guard) = x.into_parts();
            match KernelBackward(op)
                .prepare::<NoCheckpointing>([guard])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let output = forward(&input, op);
                    let saved = if op.saves_input() {
                        input
                    } else {
                        output.clone()
                    };
                    prep.finish(saved, output)
                }
                OpsKind::UnTracked(prep) => prep.finish(forward(&input, op)),
            }
        },
    )
}

fn forward(x: &FlexTensor, op: Kernel) -> FlexTensor {
    let dims = shape(x);
    let n = *dims.last().expect("at least one axis");
    let mut out = vec![0.0f32; dims.iter().product()];
    with_f32(x, |x| {
        let task = op.task(n);
        out.par_chunks_mut(task)
            .zip(x.par_chunks(task))
            .for_each(|(out, x)| op.forward(out, x, n));
    });
    tensor(out, &dims)
}

/// The backward pass of a [`Kernel`], from the tensor it saved.
#[derive(Debug)]
struct KernelBackward(Kernel);

impl Backward<Flex, 1> for KernelBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = parent else { return };
        let saved = &ops.state;
        let dims = shape(saved);
        let n = *dims.last().expect("at least one axis");
        let mut dx = vec![0.0f32; dims.iter().product()];
        with_f32(saved, |saved| {
            with_f32(&grad, |dy| {
                let task = self.0.task(n);
                dx.par_chunks_mut(task)
                    .zip(saved.par_chunks(task).zip(dy.par_chunks(task)))
                    .for_each(|(dx, (saved, dy))| self.0.backward(dx, saved, dy, n));
            });
        });
        grads.register::<Flex>(node.id, tensor(dx, &dims));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_the_standard_library() {
        // With and without fused multiply-adds (the dispatched builds and the baseline).
        for exp in [exp::<false> as fn(f32) -> f32, exp::<true>] {
            let mut worst = 0.0f64;
            let mut x = -87.0f32;
            while x < 88.0 {
                let (ours, std) = (exp(x) as f64, (x as f64).exp());
                worst = worst.max(((ours - std) / std).abs());
                x += 0.003_7;
            }
            assert!(worst < 2.5e-7, "relative error {worst}");
            assert_eq!(exp(0.0), 1.0);
            assert_eq!(exp(-100.0), 0.0);
            assert_eq!(exp(f32::NEG_INFINITY), 0.0);
            assert_eq!(exp(100.0), f32::INFINITY);
            assert!(exp(f32::NAN).is_nan());
        }
    }

    /// The kernels as dispatched (AVX-512 or AVX2 where the CPU has them) against the same loops
    /// built for the baseline target, which CPUs without them run.
    #[test]
    fn every_instruction_set_computes_the_same() {
        let n = 70;
        let x: Vec<f32> = (0..3 * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let dy: Vec<f32> = (0..3 * n)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
            .collect();
        let close = |a: &[f32], b: &[f32]| {
            for (i, (a, b)) in a.iter().zip(b).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + a.abs()),
                    "at {i}: {a} against {b}"
                );
            }
        };
        let (mut base, mut wide) = (vec![0.0f32; 3 * n], vec![0.0f32; 3 * n]);
        softmax_rows::<false>(&mut base, &x, n);
        softmax_chunk(&mut wide, &x, n);
        close(&base, &wide);
        let y = base.clone();
        softmax_grad_rows(&mut base, &y, &dy, n);
        softmax_grad_chunk(&mut wide, &y, &dy, n);
        close(&base, &wide);
        log_softmax_rows::<false>(&mut base, &x, n);
        log_softmax_chunk(&mut wide, &x, n);
        close(&base, &wide);
        let y = base.clone();
        log_softmax_grad_rows::<false>(&mut base, &y, &dy, n);
        log_softmax_grad_chunk(&mut wide, &y, &dy, n);
        close(&base, &wide);
        gelu_values::<false>(&mut base, &x);
        gelu_chunk(&mut wide, &x);
        close(&base, &wide);
        gelu_grads::<false>(&mut base, &x, &dy);
        gelu_grad_chunk(&mut wide, &x, &dy);
        close(&base, &wide);
    }

    #[test]
    fn gelu_and_its_slope_match_the_error_function() {
        let phi = |x: f64| 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
        let pdf = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        type Curve = fn(f32) -> f32;
        for (gelu_value, gelu_slope) in [
            (gelu_value::<false> as Curve, gelu_slope::<false> as Curve),
            (gelu_value::<true>, gelu_slope::<true>),
        ] {
            let mut x = -10.0f32;
            while x < 10.0 {
                let xd = x as f64;
                let value = xd * phi(xd);
                let slope = phi(xd) + xd * pdf(xd);
                assert!(
                    (gelu_value(x) as f64 - value).abs() < 1e-6 * (1.0 + value.abs()),
                    "gelu({x}) = {} against {value}",
                    gelu_value(x)
                );
                assert!(
                    (gelu_slope(x) as f64 - slope).abs() < 1e-6,
                    "gelu'({x}) = {} against {slope}",
                    gelu_slope(x)
                );
                x += 0.001_3;
            }
            assert_eq!(gelu_value(0.0), 0.0);
            assert!(gelu_value(f32::NAN).is_nan());
        }
    }
}
