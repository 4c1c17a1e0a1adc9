//! The flex kernel behind [`super::attention`]: scaled dot-product attention of every head of
//! every sequence in one pass, forward and backward, straight from the projections'
//! `[batch, len, heads · d_k]` layout.
//!
//! Composed from tensor operations, each head's `len x len` scores come from a batched product
//! of depth `d_k` (16 in the shipped models), with the heads moved to their own axis and back
//! (a copy each way), the scaling, masking and softmax as further passes, and as many again
//! backward. Here one task takes one sequence: its heads' scores, softmax and weighted values
//! stay in the first-level cache, the loops run along the keys or along `d_k` so that they
//! vectorise, and only the attention weights are kept for the backward pass.
//!
//! Rows along the keys are padded to a whole number of [`LANES`] (MAE's sequences of 12 and
//! 49 tokens become 16 and 64): a padded row is whole vector operations, where the unpadded
//! row's tail ran one value at a time; the padding's keys are zeros, and its scores `-∞`, so
//! their weights are exactly 0. The backward pass reads the weights' columns through their
//! stride instead of transposing them (a transpose is one scalar load and store per weight).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{Bool, DType, Tensor};
use rayon::prelude::*;

use super::flex_activation::exp;
use super::flex_util::{
    LANES, dispatched, lane_sum, mul_add, reduce_lanes, tensor, with_f32, zip_lanes,
};

/// The shape of one call.
#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: usize,
    len: usize,
    heads: usize,
    d_k: usize,
    /// `1 / sqrt(d_k)`.
    scale: f32,
    /// The score a padded key takes before the softmax (Burn's `min_float`).
    masked: f32,
}

impl Shape {
    fn dim(&self) -> usize {
        self.heads * self.d_k
    }

    /// The length of a row along the keys: `len` rounded up to whole [`LANES`].
    fn padded(&self) -> usize {
        self.len.next_multiple_of(LANES)
    }
}

/// What the backward pass needs.
#[derive(Debug, Clone)]
struct AttentionState {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    /// The attention weights, `[batch, heads, len, padded]` (zero in the padding).
    weights: Vec<f32>,
    shape: Shape,
}

/// The context `[batch, len, heads · d_k]` on flex float32 tensors, or `None` to leave it to
/// the composition. `padding` (`[batch, len]`, true at padding) masks keys.
pub(super) fn attention(
    q: &Tensor<3>,
    k: &Tensor<3>,
    v: &Tensor<3>,
    heads: usize,
    padding: Option<&Tensor<2, Bool>>,
    masked: f64,
) -> Option<Tensor<3>> {
    let [batch, len, dim] = q.dims();
    let fits = [q.dtype(), k.dtype(), v.dtype()] == [DType::F32; 3]
        && k.dims() == q.dims()
        && v.dims() == q.dims()
        && heads > 0
        && dim % heads == 0
        && batch * len * dim > 0;
    if !fits {
        return None;
    }
    let d_k = dim / heads;
    let shape = Shape {
        batch,
        len,
        heads,
        d_k,
        scale: 1.0 / (d_k as f32).sqrt(),
        masked: masked as f32,
    };
    let mask: Option<Vec<bool>> = match padding {
        Some(p) if p.dims() == [batch, len] => Some(p.to_data().try_to_vec::<bool>().ok()?),
        Some(_) => return None,
        None => None,
    };
    if q.device().is_autodiff() {
        let prim = |t: &Tensor<3>| t.clone().try_into_primitive::<Autodiff<Flex>>().ok();
        let (q, q_guard) = prim(q)?.into_parts();
        let (k, k_guard) = prim(k)?.into_parts();
        let (v, v_guard) = prim(v)?.into_parts();
        let out = match AttentionBackward
            .prepare::<NoCheckpointing>([q_guard, k_guard, v_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, weights) = forward(&q, &k, &v, mask.as_deref(), shape);
                let state = AttentionState {
                    q,
                    k,
                    v,
                    weights,
                    shape,
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&q, &k, &v, mask.as_deref(), shape).0),
        };
        return Some(Tensor::from_primitive::<Autodiff<Flex>>(out));
    }
    let prim = |t: &Tensor<3>| t.clone().try_into_primitive::<Flex>().ok();
    let (out, _) = forward(&prim(q)?, &prim(k)?, &prim(v)?, mask.as_deref(), shape);
    Some(Tensor::from_primitive::<Flex>(out))
}

/// The context and the attention weights.
fn forward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    mask: Option<&[bool]>,
    shape: Shape,
) -> (FlexTensor, Vec<f32>) {
    let Shape {
        batch, len, heads, ..
    } = shape;
    let (dim, padded) = (shape.dim(), shape.padded());
    let mut out = vec![0.0f32; batch * len * dim];
    let mut weights = vec![0.0f32; batch * heads * len * padded];
    with_f32(q, |q| {
        with_f32(k, |k| {
            with_f32(v, |v| {
                out.par_chunks_mut(len * dim)
                    .zip(weights.par_chunks_mut(heads * len * padded))
                    .enumerate()
                    .for_each(|(b, (out, weights))| {
                        let seq = b * len * dim..(b + 1) * len * dim;
                        let keep = mask.map(|m| &m[b * len..(b + 1) * len]);
                        let mut scratch = vec![0.0f32; padded * (shape.d_k + 1)];
                        forward_sequence(
                            out,
                            weights,
                            &q[seq.clone()],
                            &k[seq.clone()],
                            &v[seq],
                            keep,
                            &mut scratch,
                            shape,
                        );
                    });
            })
        })
    });
    (tensor(out, &[batch, len, dim]), weights)
}

/// `m[c * padded + j] = x[j, h·d_k + c]`: head `h`'s columns of a `[len, dim]` sequence,
/// transposed so that rows run along the positions. The padding (`j ≥ len`) is left as it is.
#[inline(always)]
fn head_columns(m: &mut [f32], x: &[f32], h: usize, shape: Shape) {
    let (d_k, dim, padded) = (shape.d_k, shape.dim(), shape.padded());
    for (j, row) in x.chunks_exact(dim).take(shape.len).enumerate() {
        for (column, &value) in m.chunks_exact_mut(padded).zip(&row[h * d_k..(h + 1) * d_k]) {
            column[j] = value;
        }
    }
}

/// The weights of a weighted sum of rows: `values[r · step]` for `r < count`, a row of a
/// matrix (`step` 1) or a column read through the rows' stride.
#[derive(Clone, Copy)]
struct Coefficients<'a> {
    values: &'a [f32],
    step: usize,
    count: usize,
}

impl<'a> Coefficients<'a> {
    fn row(values: &'a [f32]) -> Self {
        Self {
            values,
            step: 1,
            count: values.len(),
        }
    }

    /// Column `j` of the first `count` rows of a matrix whose rows are `step` apart.
    fn column(values: &'a [f32], j: usize, step: usize, count: usize) -> Self {
        Self {
            values: &values[j..],
            step,
            count,
        }
    }
}

/// `out[x] = Σ_r c_r · m[r · stride + offset + x]`, in blocks of [`LANES`] outputs summed in
/// registers. Four sums run side by side (four blocks, or one block's rows split four ways),
/// because each vector addition waits on the one before it in the same sum; one running sum
/// per block left the loop bound by that wait. The bounds are checked once, up front: checked
/// per row, they and the registers they took doubled the loop's instructions.
#[inline(always)]
fn weighted_sum<const FMA: bool>(
    out: &mut [f32],
    c: Coefficients,
    m: &[f32],
    stride: usize,
    offset: usize,
) {
    const WAYS: usize = 4;
    let (n, count) = (out.len(), c.count);
    if count == 0 {
        out.fill(0.0);
        return;
    }
    let last = count - 1;
    assert!(
        last.checked_mul(c.step)
            .is_some_and(|at| at < c.values.len()),
        "coefficients out of bounds"
    );
    assert!(
        last.checked_mul(stride)
            .and_then(|at| at.checked_add(offset + n))
            .is_some_and(|end| end <= m.len()),
        "rows out of bounds"
    );
    // SAFETY: r < count and start + LANES <= n, within the bounds asserted above.
    let coefficient = |r: usize| unsafe { *c.values.get_unchecked(r * c.step) };
    let block = |r: usize, start: usize| -> &[f32; LANES] {
        // SAFETY: as above; an array of f32 has f32's alignment.
        unsafe {
            &*m.as_ptr()
                .add(r * stride + offset + start)
                .cast::<[f32; LANES]>()
        }
    };
    let mut start = 0;
    // Four blocks at a time.
    while start + WAYS * LANES <= n {
        let mut acc = [[0.0f32; LANES]; WAYS];
        for r in 0..count {
            let c = coefficient(r);
            for (w, acc) in acc.iter_mut().enumerate() {
                let row = block(r, start + w * LANES);
                for l in 0..LANES {
                    acc[l] = mul_add::<FMA>(c, row[l], acc[l]);
                }
            }
        }
        for (w, acc) in acc.iter().enumerate() {
            out[start + w * LANES..start + (w + 1) * LANES].copy_from_slice(acc);
        }
        start += WAYS * LANES;
    }
    // The remaining blocks one at a time, their rows split four ways.
    while start + LANES <= n {
        let mut acc = [[0.0f32; LANES]; WAYS];
        // Rows in fours, each to its own sum (a fixed index, so the sums stay in registers).
        let fours = count / WAYS;
        for f in 0..fours {
            for (w, acc) in acc.iter_mut().enumerate() {
                let r = f * WAYS + w;
                let (c, row) = (coefficient(r), block(r, start));
                for l in 0..LANES {
                    acc[l] = mul_add::<FMA>(c, row[l], acc[l]);
                }
            }
        }
        for r in fours * WAYS..count {
            let (c, row) = (coefficient(r), block(r, start));
            for l in 0..LANES {
                acc[0][l] = mul_add::<FMA>(c, row[l], acc[0][l]);
            }
        }
        for l in 0..LANES {
            out[start + l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
        }
        start += LANES;
    }
    for (x, o) in out.iter_mut().enumerate().skip(start) {
        *o = (0..count)
            .map(|r| coefficient(r) * m[r * stride + offset + x])
            .sum();
    }
}

/// Scores to attention weights in place: each score scaled, or replaced by `fill` where that
/// is not NaN (`masked` at a padded key, `-∞` in the lane padding), then the softmax. The row
/// is whole blocks of [`LANES`]; the maximum and the sum stay in lanes until one reduction
/// each.
#[inline(always)]
fn softmax_scores(row: &mut [f32], fill: &[f32], scale: f32) {
    let mut max = [f32::NEG_INFINITY; LANES];
    for (s, f) in row.chunks_exact_mut(LANES).zip(fill.chunks_exact(LANES)) {
        let s: &mut [f32; LANES] = s.try_into().expect("a block of lanes");
        let f: &[f32; LANES] = f.try_into().expect("a block of lanes");
        for l in 0..LANES {
            s[l] = if f[l].is_nan() { s[l] * scale } else { f[l] };
            max[l] = max[l].max(s[l]);
        }
    }
    let max = reduce_lanes(max, f32::max);
    let mut sum = [0.0f32; LANES];
    for s in row.chunks_exact_mut(LANES) {
        let s: &mut [f32; LANES] = s.try_into().expect("a block of lanes");
        for l in 0..LANES {
            s[l] = exp(s[l] - max);
            sum[l] += s[l];
        }
    }
    let inv = 1.0 / reduce_lanes(sum, |a, b| a + b);
    for s in row.chunks_exact_mut(LANES) {
        let s: &mut [f32; LANES] = s.try_into().expect("a block of lanes");
        for v in s.iter_mut() {
            *v *= inv;
        }
    }
}

/// One sequence, every head: `out[i, h] = Σ_j P[h, i, j] v[j, h]` with
/// `P[h, i] = softmax_j(q[i, h] · k[j, h] / sqrt(d_k))`, padded keys at `masked`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_rows<const FMA: bool>(
    out: &mut [f32],
    weights: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    padding: Option<&[bool]>,
    scratch: &mut [f32],
    shape: Shape,
) {
    let (len, d_k, dim, padded) = (shape.len, shape.d_k, shape.dim(), shape.padded());
    // Zero in the padding, which `head_columns` leaves alone.
    let (k_t, fill) = scratch.split_at_mut(padded * d_k);
    for (j, f) in fill.iter_mut().enumerate() {
        *f = match padding {
            _ if j >= len => f32::NEG_INFINITY,
            Some(padding) if padding[j] => shape.masked,
            _ => f32::NAN,
        };
    }
    for h in 0..shape.heads {
        head_columns(k_t, k, h, shape);
        let p = &mut weights[h * len * padded..(h + 1) * len * padded];
        let cols = |i: usize| i * dim + h * d_k..i * dim + (h + 1) * d_k;
        // Every row's scores, then every row's softmax, then the weighted values: a row's
        // softmax is a chain of dependent steps (maximum, exponentials, sum), which the
        // processor overlaps with the next row's when nothing else stands between them.
        for (i, row) in p.chunks_exact_mut(padded).enumerate() {
            weighted_sum::<FMA>(row, Coefficients::row(&q[cols(i)]), k_t, padded, 0);
        }
        for row in p.chunks_exact_mut(padded) {
            softmax_scores(row, fill, shape.scale);
        }
        for (i, row) in p.chunks_exact(padded).enumerate() {
            weighted_sum::<FMA>(
                &mut out[cols(i)],
                Coefficients::row(&row[..len]),
                v,
                dim,
                h * d_k,
            );
        }
    }
}

/// One sequence's gradients, every head, from the context's gradient `d_out`:
/// `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ∘ (dP − Σ_j P dP) / sqrt(d_k)`, `dQ = dS K`,
/// `dK = dSᵀ Q`. `scratch` holds `(d_k + len) · padded` zeros.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_rows<const FMA: bool>(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    d_out: &[f32],
    weights: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scratch: &mut [f32],
    shape: Shape,
) {
    let (len, d_k, dim, padded) = (shape.len, shape.d_k, shape.dim(), shape.padded());
    let (v_t, ds) = scratch.split_at_mut(padded * d_k);
    for h in 0..shape.heads {
        head_columns(v_t, v, h, shape);
        let cols = |i: usize| i * dim + h * d_k..i * dim + (h + 1) * d_k;
        let p = &weights[h * len * padded..(h + 1) * len * padded];
        for (i, (p_i, ds_i)) in p
            .chunks_exact(padded)
            .zip(ds.chunks_exact_mut(padded))
            .enumerate()
        {
            // dP[i, :] = dO[i] Vᵀ, then dS[i, :] (zero in the padding, where P is).
            weighted_sum::<FMA>(ds_i, Coefficients::row(&d_out[cols(i)]), v_t, padded, 0);
            let dot = lane_sum(ds_i, p_i, |s, w| s * w);
            zip_lanes(ds_i, p_i, |s, w| w * (s - dot) * shape.scale);
            weighted_sum::<FMA>(
                &mut dq[cols(i)],
                Coefficients::row(&ds_i[..len]),
                k,
                dim,
                h * d_k,
            );
        }
        // Column j of P and of dS, read through the rows' stride.
        let ds = &*ds;
        for j in 0..len {
            let (p_j, ds_j) = (
                Coefficients::column(p, j, padded, len),
                Coefficients::column(ds, j, padded, len),
            );
            weighted_sum::<FMA>(&mut dv[cols(j)], p_j, d_out, dim, h * d_k);
            weighted_sum::<FMA>(&mut dk[cols(j)], ds_j, q, dim, h * d_k);
        }
    }
}

dispatched!(forward_sequence => forward_rows::<FMA>(out: &mut [f32], weights: &mut [f32], q: &[f32], k: &[f32], v: &[f32], padding: Option<&[bool]>, scratch: &mut [f32], shape: Shape));
dispatched!(backward_sequence => backward_rows::<FMA>(dq: &mut [f32], dk: &mut [f32], dv: &mut [f32], d_out: &[f32], weights: &[f32], q: &[f32], k: &[f32], v: &[f32], scratch: &mut [f32], shape: Shape));

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [pq, pk, pv] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let AttentionState {
            q,
            k,
            v,
            weights,
            shape,
        } = ops.state;
        let (len, heads, dim, padded) = (shape.len, shape.heads, shape.dim(), shape.padded());
        let total = shape.batch * len * dim;
        let (mut dq, mut dk) = (vec![0.0f32; total], vec![0.0f32; total]);
        let mut dv = vec![0.0f32; total];
        with_f32(&q, |q| {
            with_f32(&k, |k| {
                with_f32(&v, |v| {
                    with_f32(&grad, |d_out| {
                        dq.par_chunks_mut(len * dim)
                            .zip(dk.par_chunks_mut(len * dim))
                            .zip(dv.par_chunks_mut(len * dim))
                            .enumerate()
                            .for_each(|(b, ((dq, dk), dv))| {
                                let seq = b * len * dim..(b + 1) * len * dim;
                                let per_sequence = heads * len * padded;
                                let p = &weights[b * per_sequence..(b + 1) * per_sequence];
                                let mut scratch = vec![0.0f32; (shape.d_k + len) * padded];
                                backward_sequence(
                                    dq,
                                    dk,
                                    dv,
                                    &d_out[seq.clone()],
                                    p,
                                    &q[seq.clone()],
                                    &k[seq.clone()],
                                    &v[seq],
                                    &mut scratch,
                                    shape,
                                );
                            });
                    })
                })
            })
        });
        let dims = [shape.batch, len, dim];
        for (parent, values) in [(pq, dq), (pk, dk), (pv, dv)] {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, tensor(values, &dims));
            }
        }
    }
}
