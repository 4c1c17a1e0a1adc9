//! Reading and making flex tensors in the kernels, the lane sums they share, and their builds
//! for each instruction set.

use std::mem::MaybeUninit;

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape};

/// `[b, c, h, w]` of a 4-d tensor.
pub(super) fn dims(t: &FlexTensor) -> [usize; 4] {
    let shape = t.layout().shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

/// A contiguous float32 view of `t`, copying only when its layout is strided.
pub(super) fn with_f32<R>(t: &FlexTensor, f: impl FnOnce(&[f32]) -> R) -> R {
    match t.as_slice::<f32>() {
        Some(values) => f(values),
        None => f(t.to_contiguous().as_slice::<f32>().expect("contiguous f32")),
    }
}

/// A contiguous float32 tensor of `dims` holding `values`.
pub(super) fn tensor(values: Vec<f32>, dims: &[usize]) -> FlexTensor {
    debug_assert_eq!(values.len(), dims.iter().product::<usize>());
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(dims.to_vec())),
        DType::F32,
    )
}

/// `len` values that `write` puts in place, without filling the buffer with zeros first: a
/// fill is one more pass over an output that the kernel then writes whole, and these passes
/// are bound by memory traffic. Debug builds fill with NaN first, so that a value the kernel
/// missed shows in the tests' comparisons.
///
/// # Safety
/// `write` must write every one of the `len` values.
pub(super) unsafe fn written(len: usize, write: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    let slots = &mut out.spare_capacity_mut()[..len];
    if cfg!(debug_assertions) {
        slots.fill(MaybeUninit::new(f32::NAN));
    }
    write(slots);
    // SAFETY: the caller's promise: all `len` values are written.
    unsafe { out.set_len(len) };
    out
}

/// The two sums `Σ term(a, b)` over a plane, in f32 lanes (the compiler vectorises
/// fixed-size lane arrays) added up in f64 at the end.
#[inline(always)]
pub(super) fn plane_sums(
    a: &[f32],
    b: &[f32],
    term: impl Fn(f32, f32) -> (f32, f32),
) -> (f64, f64) {
    const LANES: usize = 16;
    let (mut s1, mut s2) = ([0.0f32; LANES], [0.0f32; LANES]);
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            let (t1, t2) = term(ca[i], cb[i]);
            s1[i] += t1;
            s2[i] += t2;
        }
    }
    let mut sums = (
        s1.iter().map(|&v| f64::from(v)).sum::<f64>(),
        s2.iter().map(|&v| f64::from(v)).sum::<f64>(),
    );
    for (&va, &vb) in a_rest.iter().zip(b_rest) {
        let (t1, t2) = term(va, vb);
        sums.0 += f64::from(t1);
        sums.1 += f64::from(t2);
    }
    sums
}

/// Values per parallel task: small enough to share a step's tensors between the cores, large
/// enough that scheduling costs nothing.
pub(super) const TASK_VALUES: usize = 1 << 14;

/// Whole rows of `n` values per parallel task (at least one). Fixed by the shape, so that sums
/// kept per task do not depend on the thread count.
pub(super) fn task_rows(n: usize) -> usize {
    (TASK_VALUES / n).max(1)
}

/// Lanes of the reductions: independent partial results the compiler keeps in vector
/// registers (a plain running sum is one dependent chain of scalar additions).
pub(super) const LANES: usize = 16;

/// `op` over the lanes, folding halves onto each other: each step is one vector operation,
/// where a fold one lane at a time is a chain of [`LANES`] dependent scalar operations that
/// short rows (attention over 12 or 49 tokens) wait on.
#[inline(always)]
pub(super) fn reduce_lanes(lanes: [f32; LANES], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut v = lanes;
    let mut half = LANES / 2;
    while half > 0 {
        for i in 0..half {
            v[i] = op(v[i], v[i + half]);
        }
        half /= 2;
    }
    v[0]
}

/// `Σ term(a_i, b_i)` in [`LANES`] partial sums.
#[inline(always)]
pub(super) fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (ca, cb) in ca.zip(cb) {
        for i in 0..LANES {
            lanes[i] += term(ca[i], cb[i]);
        }
    }
    let rest: f32 = ra.iter().zip(rb).map(|(&a, &b)| term(a, b)).sum();
    reduce_lanes(lanes, |x, y| x + y) + rest
}

/// `y = f(y)` for each value, in blocks of [`LANES`]: the compiler vectorises a plain loop
/// for 64 values at a time and runs shorter rows (attention over 49 or 12 tokens) one value at
/// a time; a fixed block of [`LANES`] is one vector operation at any length.
#[inline(always)]
pub(super) fn for_lanes(y: &mut [f32], f: impl Fn(f32) -> f32) {
    let mut blocks = y.chunks_exact_mut(LANES);
    for block in &mut blocks {
        // A fixed-size array: one vector operation, whatever the row's length.
        let block: &mut [f32; LANES] = block.try_into().expect("a block of lanes");
        for v in block.iter_mut() {
            *v = f(*v);
        }
    }
    for v in blocks.into_remainder() {
        *v = f(*v);
    }
}

/// `y = f(y, x)` for each pair, in blocks of [`LANES`] as [`for_lanes`].
#[inline(always)]
pub(super) fn zip_lanes(y: &mut [f32], x: &[f32], f: impl Fn(f32, f32) -> f32) {
    let n = y.len().min(x.len());
    let whole = n - n % LANES;
    let (y_body, y_tail) = y[..n].split_at_mut(whole);
    let (x_body, x_tail) = x[..n].split_at(whole);
    for (y, x) in y_body
        .chunks_exact_mut(LANES)
        .zip(x_body.chunks_exact(LANES))
    {
        for i in 0..LANES {
            y[i] = f(y[i], x[i]);
        }
    }
    for (y, &x) in y_tail.iter_mut().zip(x_tail) {
        *y = f(*y, x);
    }
}

/// `a · b + c`, as one fused instruction where the build has one (`FMA`): Rust does not fuse
/// a product and a sum by itself, and a separate multiply and add take two instructions and
/// wait on each other. Without the instruction (`FMA` false: x86 before AVX2), `mul_add`
/// would call a software routine, so the two operations stay apart there.
#[inline(always)]
pub(super) fn mul_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Defines `$name` to run `$kernel` compiled for AVX-512 or for AVX2 with FMA where the CPU has
/// them, and for the baseline target otherwise, so that its loops vectorise to the widest unit
/// this CPU has (the features are detected once and cached by the standard library). A kernel
/// written `$kernel::<FMA>` takes a `const FMA: bool`: true in the AVX-512 and AVX2 builds, and
/// in the baseline build where that target has fused multiply-add (see [`mul_add`]).
macro_rules! dispatched {
    ($name:ident => $kernel:ident::<FMA>($($arg:ident: $ty:ty),*)) => {
        dispatched!(@ $name, [$kernel::<true>],
            [$kernel::<{ cfg!(any(target_feature = "fma", target_arch = "aarch64")) }>],
            $($arg: $ty),*);
    };
    ($name:ident => $kernel:ident($($arg:ident: $ty:ty),*)) => {
        dispatched!(@ $name, [$kernel], [$kernel], $($arg: $ty),*);
    };
    (@ $name:ident, [$($fast:tt)*], [$($base:tt)*], $($arg:ident: $ty:ty),*) => {
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v4($($arg: $ty),*) {
                    $($fast)*($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v3($($arg: $ty),*) {
                    $($fast)*($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has every feature `v4` is compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has every feature `v3` is compiled for.
                    return unsafe { v3($($arg),*) };
                }
            }
            $($base)*($($arg),*)
        }
    };
}
pub(super) use dispatched;
