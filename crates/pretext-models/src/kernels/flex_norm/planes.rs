//! The batch-norm kernels' loops over one plane (one image's channel), each compiled for
//! AVX-512, AVX2 and the baseline ([`dispatched`]) so that it runs in the widest vectors the
//! CPU has; the baseline build alone ran them four lanes at a time. None uses a fused
//! multiply-add: the backward passes recompute the forward pass's `a·x + d` to find where the
//! ReLU passed, and the two must round alike on every CPU. The sums keep [`plane_sums`]'s
//! fixed lanes, so every build adds in the same order and gives the same bits.

use std::mem::MaybeUninit;

use super::super::flex_pool::relu_passes;
use super::super::flex_util::{dispatched, plane_sums};

/// `v` where the ReLU passes `test` (see [`relu_passes`]), 0 elsewhere, as a mask rather than
/// a branch: with a branch per value the compiler tested each lane of a vector in turn.
#[inline(always)]
fn gate(v: f32, test: f32) -> f32 {
    let keep = u32::from(relu_passes(test)).wrapping_neg();
    f32::from_bits(v.to_bits() & keep)
}

/// `(Σ (x − s), Σ (x − s)²)`.
#[inline(always)]
fn shifted_sums_body(x: &[f32], s: f32, sums: &mut [f64; 2]) {
    let (s1, s2) = plane_sums(x, x, |v, _| (v - s, (v - s) * (v - s)));
    *sums = [s1, s2];
}

/// `(Σ dy, Σ dy·x)`, with `dy` blocked where the ReLU blocked `a·x + d` when `relu` is given.
#[inline(always)]
fn grad_sums_body(dy: &[f32], x: &[f32], relu: Option<(f32, f32)>, sums: &mut [f64; 2]) {
    let (s1, s2) = match relu {
        None => plane_sums(dy, x, |dy, x| (dy, dy * x)),
        Some((a, d)) => plane_sums(dy, x, |dy, x| {
            let dy = gate(dy, x * a + d);
            (dy, dy * x)
        }),
    };
    *sums = [s1, s2];
}

/// `out = a·x + d`, rectified when `relu`, plus `residual` (before the ReLU) when given.
#[inline(always)]
fn normalise_body(
    out: &mut [MaybeUninit<f32>],
    x: &[f32],
    residual: Option<&[f32]>,
    a: f32,
    d: f32,
    relu: bool,
) {
    match (residual, relu) {
        (None, false) => {
            for (o, &v) in out.iter_mut().zip(x) {
                o.write(v * a + d);
            }
        }
        (None, true) => {
            for (o, &v) in out.iter_mut().zip(x) {
                let y = v * a + d;
                o.write(gate(y, y));
            }
        }
        (Some(r), _) => {
            for ((o, &v), &r) in out.iter_mut().zip(x).zip(r) {
                let y = v * a + d + r;
                o.write(if relu { gate(y, y) } else { y });
            }
        }
    }
}

/// `out = a·dy + b·x + d`, with `dy` blocked where the ReLU blocked `fa·x + fd` when `relu`
/// is given.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_grad_body(
    out: &mut [MaybeUninit<f32>],
    x: &[f32],
    dy: &[f32],
    a: f32,
    b: f32,
    d: f32,
    relu: Option<(f32, f32)>,
) {
    let values = out.iter_mut().zip(x).zip(dy);
    match relu {
        None => {
            for ((o, &v), &g) in values {
                o.write(a * g + b * v + d);
            }
        }
        Some((fa, fd)) => {
            for ((o, &v), &g) in values {
                o.write(a * gate(g, v * fa + fd) + b * v + d);
            }
        }
    }
}

/// `out = dy` where the ReLU passed its output `y` (above 0, or NaN), 0 elsewhere.
#[inline(always)]
fn relu_grad_body(out: &mut [MaybeUninit<f32>], y: &[f32], dy: &[f32]) {
    for ((o, &y), &g) in out.iter_mut().zip(y).zip(dy) {
        o.write(gate(g, y));
    }
}

dispatched!(shifted_sums_plane => shifted_sums_body(x: &[f32], s: f32, sums: &mut [f64; 2]));
dispatched!(grad_sums_plane => grad_sums_body(dy: &[f32], x: &[f32], relu: Option<(f32, f32)>, sums: &mut [f64; 2]));
dispatched!(normalise_plane => normalise_body(out: &mut [MaybeUninit<f32>], x: &[f32], residual: Option<&[f32]>, a: f32, d: f32, relu: bool));
dispatched!(input_grad_plane => input_grad_body(out: &mut [MaybeUninit<f32>], x: &[f32], dy: &[f32], a: f32, b: f32, d: f32, relu: Option<(f32, f32)>));
dispatched!(relu_grad_plane => relu_grad_body(out: &mut [MaybeUninit<f32>], y: &[f32], dy: &[f32]));

/// `(Σ (x − s), Σ (x − s)²)` over a plane.
pub(super) fn shifted_sums(x: &[f32], s: f32) -> (f64, f64) {
    let mut sums = [0.0; 2];
    shifted_sums_plane(x, s, &mut sums);
    (sums[0], sums[1])
}

/// `(Σ dy, Σ dy·x)` over a plane, `dy` taken back through the ReLU of `a·x + d` when `relu`
/// holds `(a, d)`.
pub(super) fn grad_sums(dy: &[f32], x: &[f32], relu: Option<(f32, f32)>) -> (f64, f64) {
    let mut sums = [0.0; 2];
    grad_sums_plane(dy, x, relu, &mut sums);
    (sums[0], sums[1])
}

/// Writes every value of `out`: `a·x + d` (`+ residual`), rectified when `relu`.
pub(super) fn normalise(
    out: &mut [MaybeUninit<f32>],
    x: &[f32],
    residual: Option<&[f32]>,
    (a, d): (f32, f32),
    relu: bool,
) {
    debug_assert!(x.len() == out.len() && residual.is_none_or(|r| r.len() == out.len()));
    normalise_plane(out, x, residual, a, d, relu)
}

/// Writes every value of `out`: `a·dy + b·x + d`, `dy` taken back through the ReLU of
/// `fa·x + fd` when `relu` holds `(fa, fd)`.
pub(super) fn input_grad(
    out: &mut [MaybeUninit<f32>],
    x: &[f32],
    dy: &[f32],
    (a, b, d): (f32, f32, f32),
    relu: Option<(f32, f32)>,
) {
    debug_assert!(x.len() == out.len() && dy.len() == out.len());
    input_grad_plane(out, x, dy, a, b, d, relu)
}

/// Writes every value of `out`: `dy` where the ReLU passed its output `y`, 0 elsewhere.
pub(super) fn relu_grad(out: &mut [MaybeUninit<f32>], y: &[f32], dy: &[f32]) {
    debug_assert!(y.len() == out.len() && dy.len() == out.len());
    relu_grad_plane(out, y, dy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gate passes exactly what the ReLU passes: NaN passes, 0 and -0 block, and the
    /// value passed keeps its bits (a NaN gradient, -0).
    #[test]
    fn gate_passes_what_the_relu_passes() {
        let tests = [
            1.0,
            1e-30,
            0.0,
            -0.0,
            -2.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        for test in tests {
            for v in [3.5, -0.0, f32::NAN, f32::NEG_INFINITY] {
                let got = gate(v, test);
                let want = if relu_passes(test) { v } else { 0.0 };
                assert_eq!(got.to_bits(), want.to_bits(), "gate({v}, {test})");
            }
        }
    }
}
