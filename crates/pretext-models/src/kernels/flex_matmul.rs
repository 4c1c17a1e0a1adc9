//! The flex kernel behind [`super::matmul`]: a product of two matrices and its backward pass
//! (`dA = dC Bᵀ`, `dB = Aᵀ dC`), each a [`matmul_parallel`] that reads transposed operands
//! through their strides, never copying them.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor};

use super::flex_gemm::{View, matmul_parallel};
use super::flex_util::tensor;

/// `a × b` on flex float32 matrices (tracked or not), or `None` to leave it to Burn.
pub(super) fn matmul(a: &Tensor<2>, b: &Tensor<2>) -> Option<Tensor<2>> {
    let fits = a.dtype() == DType::F32 && b.dtype() == DType::F32 && a.dims()[1] == b.dims()[0];
    if !fits {
        return None;
    }
    if a.device().is_autodiff() {
        let prim = |t: &Tensor<2>| t.clone().try_into_primitive::<Autodiff<Flex>>().ok();
        let (a, a_guard) = prim(a)?.into_parts();
        let (b, b_guard) = prim(b)?.into_parts();
        let out = match MatmulBackward
            .prepare::<NoCheckpointing>([a_guard, b_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = product(&a, &b);
                prep.finish((a, b), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(product(&a, &b)),
        };
        return Some(Tensor::from_primitive::<Autodiff<Flex>>(out));
    }
    let prim = |t: &Tensor<2>| t.clone().try_into_primitive::<Flex>().ok();
    Some(Tensor::from_primitive::<Flex>(product(
        &prim(a)?,
        &prim(b)?,
    )))
}

/// `[rows, cols]` of a matrix.
fn dims(t: &FlexTensor) -> [usize; 2] {
    let shape = t.layout().shape();
    [shape[0], shape[1]]
}

/// The matrix as a view of its own buffer when its strides are not negative (transposes and
/// row or column slices included), else of a contiguous copy.
fn with_view<R>(t: &FlexTensor, f: impl FnOnce(View) -> R) -> R {
    let layout = t.layout();
    let strides = layout.strides();
    if t.dtype() == DType::F32 && strides.iter().all(|&s| s >= 0) {
        let data = &t.storage::<f32>()[layout.start_offset()..];
        return f(View {
            data,
            row: strides[0] as usize,
            col: strides[1] as usize,
        });
    }
    let copy = t.to_contiguous();
    let cols = dims(&copy)[1];
    f(View::rows(copy.storage::<f32>(), cols))
}

/// `a × b`, row-major.
fn product(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let ([m, k], [_, n]) = (dims(a), dims(b));
    let out = with_view(a, |a| with_view(b, |b| matmul_parallel(m, n, k, a, b)));
    tensor(out, &[m, n])
}

#[derive(Debug)]
struct MatmulBackward;

impl Backward<Flex, 2> for MatmulBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [pa, pb] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (a, b) = ops.state;
        let ([m, k], [_, n]) = (dims(&a), dims(&b));
        with_view(&grad, |dc| {
            if let Some(node) = pa {
                let da = with_view(&b, |b| matmul_parallel(m, k, n, dc, b.t()));
                grads.register::<Flex>(node.id, tensor(da, &[m, k]));
            }
            if let Some(node) = pb {
                let db = with_view(&a, |a| matmul_parallel(k, n, m, a.t(), dc));
                grads.register::<Flex>(node.id, tensor(db, &[k, n]));
            }
        });
    }
}
