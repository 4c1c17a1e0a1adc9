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

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{Bool, DType, Tensor};
use rayon::prelude::*;

use super::flex_activation::softmax_row;
use super::flex_util::{LANES, dispatched, for_lanes, lane_sum, tensor, with_f32, zip_lanes};

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
}

/// What the backward pass needs.
#[derive(Debug, Clone)]
struct AttentionState {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    /// The attention weights, `[batch, heads, len, len]`.
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
    let dim = shape.dim();
    let mut out = vec![0.0f32; batch * len * dim];
    let mut weights = vec![0.0f32; batch * heads * len * len];
    with_f32(q, |q| {
        with_f32(k, |k| {
            with_f32(v, |v| {
                out.par_chunks_mut(len * dim)
                    .zip(weights.par_chunks_mut(heads * len * len))
                    .enumerate()
                    .for_each(|(b, (out, weights))| {
                        let seq = b * len * dim..(b + 1) * len * dim;
                        let keep = mask.map(|m| &m[b * len..(b + 1) * len]);
                        let mut scratch = vec![0.0f32; len * shape.d_k];
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

/// `m[c * len + j] = x[j, h·d_k + c]`: head `h`'s columns of a `[len, dim]` sequence,
/// transposed so that rows run along the positions.
#[inline(always)]
fn head_columns(m: &mut [f32], x: &[f32], h: usize, shape: Shape) {
    let (len, d_k, dim) = (shape.len, shape.d_k, shape.dim());
    for j in 0..len {
        for c in 0..d_k {
            m[c * len + j] = x[j * dim + h * d_k + c];
        }
    }
}

/// `t[j * n + i] = m[i * n + j]` for a square `n x n` matrix.
#[inline(always)]
fn transpose(t: &mut [f32], m: &[f32], n: usize) {
    for i in 0..n {
        for j in 0..n {
            t[j * n + i] = m[i * n + j];
        }
    }
}

/// `out[x] = Σ_r coefficients[r] · m[r · stride + offset + x]`: a weighted sum of rows, in
/// blocks of [`LANES`] outputs summed in registers. Four sums run side by side (four blocks,
/// or one block's rows split four ways), because each vector addition waits on the one before
/// it in the same sum; one running sum per block left the loop bound by that wait.
#[inline(always)]
fn weighted_rows(out: &mut [f32], coefficients: &[f32], m: &[f32], stride: usize, offset: usize) {
    const WAYS: usize = 4;
    let n = out.len();
    let block = |r: usize, start: usize| -> &[f32; LANES] {
        let at = r * stride + offset + start;
        m[at..at + LANES].try_into().expect("a block of lanes")
    };
    let mut start = 0;
    // Four blocks at a time.
    while start + WAYS * LANES <= n {
        let mut acc = [[0.0f32; LANES]; WAYS];
        for (r, &c) in coefficients.iter().enumerate() {
            for (w, acc) in acc.iter_mut().enumerate() {
                let row = block(r, start + w * LANES);
                for l in 0..LANES {
                    acc[l] += c * row[l];
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
        let fours = coefficients.chunks_exact(WAYS);
        let rest = fours.remainder();
        for (f, c) in fours.enumerate() {
            for (w, acc) in acc.iter_mut().enumerate() {
                let row = block(f * WAYS + w, start);
                for l in 0..LANES {
                    acc[l] += c[w] * row[l];
                }
            }
        }
        let first = coefficients.len() - rest.len();
        for (r, &c) in rest.iter().enumerate() {
            let row = block(first + r, start);
            for l in 0..LANES {
                acc[0][l] += c * row[l];
            }
        }
        for l in 0..LANES {
            out[start + l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
        }
        start += LANES;
    }
    for (x, o) in out.iter_mut().enumerate().skip(start) {
        *o = coefficients
            .iter()
            .enumerate()
            .map(|(r, &c)| c * m[r * stride + offset + x])
            .sum();
    }
}

/// One sequence, every head: `out[i, h] = Σ_j P[h, i, j] v[j, h]` with
/// `P[h, i] = softmax_j(q[i, h] · k[j, h] / sqrt(d_k))`, padded keys at `masked`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_rows(
    out: &mut [f32],
    weights: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    padding: Option<&[bool]>,
    scratch: &mut [f32],
    shape: Shape,
) {
    let (len, d_k, dim) = (shape.len, shape.d_k, shape.dim());
    let k_t = &mut scratch[..len * d_k];
    for h in 0..shape.heads {
        head_columns(k_t, k, h, shape);
        let p = &mut weights[h * len * len..(h + 1) * len * len];
        for (i, row) in p.chunks_exact_mut(len).enumerate() {
            let cols = i * dim + h * d_k..i * dim + (h + 1) * d_k;
            weighted_rows(row, &q[cols.clone()], k_t, len, 0);
            for_lanes(row, |s| s * shape.scale);
            if let Some(padding) = padding {
                for (s, &pad) in row.iter_mut().zip(padding) {
                    if pad {
                        *s = shape.masked;
                    }
                }
            }
            softmax_row(row);
            weighted_rows(&mut out[cols], row, v, dim, h * d_k);
        }
    }
}

/// One sequence's gradients, every head, from the context's gradient `d_out`:
/// `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ∘ (dP − Σ_j P dP) / sqrt(d_k)`, `dQ = dS K`,
/// `dK = dSᵀ Q`. `scratch` holds `len · d_k + 3 · len²` values.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_rows(
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
    let (len, d_k, dim) = (shape.len, shape.d_k, shape.dim());
    let (v_t, rest) = scratch.split_at_mut(len * d_k);
    let (ds, rest) = rest.split_at_mut(len * len);
    let (p_t, ds_t) = rest.split_at_mut(len * len);
    for h in 0..shape.heads {
        head_columns(v_t, v, h, shape);
        let cols = |i: usize| i * dim + h * d_k..i * dim + (h + 1) * d_k;
        let p = &weights[h * len * len..(h + 1) * len * len];
        for (i, (p_i, ds_i)) in p
            .chunks_exact(len)
            .zip(ds.chunks_exact_mut(len))
            .enumerate()
        {
            // dP[i, :] = dO[i] Vᵀ, then dS[i, :].
            weighted_rows(ds_i, &d_out[cols(i)], v_t, len, 0);
            let dot = lane_sum(ds_i, p_i, |s, w| s * w);
            zip_lanes(ds_i, p_i, |s, w| w * (s - dot) * shape.scale);
            weighted_rows(&mut dq[cols(i)], ds_i, k, dim, h * d_k);
        }
        transpose(p_t, p, len);
        transpose(ds_t, ds, len);
        for (j, (p_j, ds_j)) in p_t
            .chunks_exact(len)
            .zip(ds_t.chunks_exact(len))
            .enumerate()
        {
            weighted_rows(&mut dv[cols(j)], p_j, d_out, dim, h * d_k);
            weighted_rows(&mut dk[cols(j)], ds_j, q, dim, h * d_k);
        }
    }
}

dispatched!(forward_sequence => forward_rows(out: &mut [f32], weights: &mut [f32], q: &[f32], k: &[f32], v: &[f32], padding: Option<&[bool]>, scratch: &mut [f32], shape: Shape));
dispatched!(backward_sequence => backward_rows(dq: &mut [f32], dk: &mut [f32], dv: &mut [f32], d_out: &[f32], weights: &[f32], q: &[f32], k: &[f32], v: &[f32], scratch: &mut [f32], shape: Shape));

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
        let (len, heads, dim) = (shape.len, shape.heads, shape.dim());
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
                                let p =
                                    &weights[b * heads * len * len..(b + 1) * heads * len * len];
                                let mut scratch = vec![0.0f32; len * shape.d_k + 3 * len * len];
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
