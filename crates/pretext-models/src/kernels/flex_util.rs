//! Reading and making flex tensors in the kernels, and the lane sums they share.

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
