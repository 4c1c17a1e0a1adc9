//! Reading and making flex tensors in the kernels.

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
