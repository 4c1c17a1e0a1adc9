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
use super::flex_gemm::View;
use super::flex_util::{
    LANES, dispatched, for_lanes, lane_sum, mul_add, reduce_lanes, tensor, with_f32, zip_lanes,
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

/// `out = A B` for `A` of `rows x depth` and `B` of `depth x width`, both read in place as
/// [`View`]s (`B`'s rows contiguous), into `out`'s rows `out_row` apart. The output is cut into
/// tiles of one row by 4 vector blocks, or 4 rows by one block where a single block is left
/// (the heads' width of 16, MAE's 12 keys): each tile keeps its 4 sums in registers, as 4
/// independent chains of multiply-adds, and a 4-row tile loads each of `B`'s blocks once for
/// its 4 rows (a row at a time, each block loaded gave one multiply-add). Tiles of 8 sums left
/// the compiler's unrolling limit and came out vectorised across the rows, through gathers and
/// scatters, 4 times slower. The bounds are checked once, here. Too small to pay for `gemm`'s
/// packing, so not [`super::flex_gemm::matmul`].
#[inline(always)]
fn product<const FMA: bool>(
    out: &mut [f32],
    out_row: usize,
    a: View,
    b: View,
    [rows, depth, width]: [usize; 3],
) {
    if rows == 0 || width == 0 {
        return;
    }
    assert!(
        (rows - 1) * out_row + width <= out.len(),
        "output out of bounds"
    );
    if depth == 0 {
        for r in 0..rows {
            out[r * out_row..r * out_row + width].fill(0.0);
        }
        return;
    }
    assert!(a.covers(rows, depth), "A out of bounds");
    assert!(b.col == 1 && b.covers(depth, width), "B out of bounds");
    let t = Tiles {
        a,
        b,
        out_row,
        depth,
    };
    let mut x = 0;
    while x + 4 * LANES <= width {
        for r in 0..rows {
            t.tile::<FMA, 1, 4, 4>(out, r, x);
        }
        x += 4 * LANES;
    }
    while x + LANES <= width {
        let mut r = 0;
        while r + 4 <= rows {
            t.tile::<FMA, 4, 1, 4>(out, r, x);
            r += 4;
        }
        while r < rows {
            t.tile::<FMA, 1, 1, 1>(out, r, x);
            r += 1;
        }
        x += LANES;
    }
    for r in 0..rows {
        for x in x..width {
            out[r * out_row + x] = (0..depth)
                .map(|k| a.data[r * a.row + k * a.col] * b.data[k * b.row + x])
                .sum();
        }
    }
}

/// One [`product`]'s operands, bounds already checked.
struct Tiles<'a> {
    a: View<'a>,
    b: View<'a>,
    out_row: usize,
    depth: usize,
}

impl Tiles<'_> {
    /// Output rows `r0..r0 + R` by columns `x0..x0 + B · LANES`, in `N = R · B` sums, one flat
    /// array indexed by constants once the loops unroll, which the compiler keeps in vector
    /// registers.
    #[inline(always)]
    fn tile<const FMA: bool, const R: usize, const B: usize, const N: usize>(
        &self,
        out: &mut [f32],
        r0: usize,
        x0: usize,
    ) {
        debug_assert_eq!(N, R * B);
        let (a, b) = (self.a, self.b);
        let block = |k: usize, j: usize| -> &[f32; LANES] {
            let at = k * b.row + x0 + j * LANES;
            // SAFETY: within B's bounds, checked in `product` for every k < depth and
            // column < width; an array of f32 has f32's alignment.
            unsafe { &*b.data.as_ptr().add(at).cast::<[f32; LANES]>() }
        };
        let mut acc = [[0.0f32; LANES]; N];
        for k in 0..self.depth {
            for (r, row) in acc.chunks_exact_mut(B).enumerate() {
                // SAFETY: within A's bounds, checked in `product` for every row and k.
                let c = unsafe { *a.data.get_unchecked((r0 + r) * a.row + k * a.col) };
                for (j, acc) in row.iter_mut().enumerate() {
                    let block = block(k, j);
                    for l in 0..LANES {
                        acc[l] = mul_add::<FMA>(c, block[l], acc[l]);
                    }
                }
            }
        }
        for r in 0..R {
            for j in 0..B {
                let at = (r0 + r) * self.out_row + x0 + j * LANES;
                out[at..at + LANES].copy_from_slice(&acc[r * B + j]);
            }
        }
    }
}

/// The larger of two scores, one instruction: `f32::max` also sorts out NaN, in three. A NaN
/// score makes its row NaN through the exponentials either way.
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// Scores to attention weights in place: each score scaled, or replaced by `fill` where that
/// is not NaN (`masked` at a padded key, `-∞` in the lane padding), then the softmax. The row
/// is whole blocks of [`LANES`]; the maximum and the sum stay in lanes until one reduction
/// each.
#[inline(always)]
fn softmax_scores<const FMA: bool>(row: &mut [f32], fill: &[f32], scale: f32) {
    let mut max = [f32::NEG_INFINITY; LANES];
    for (s, f) in row.chunks_exact_mut(LANES).zip(fill.chunks_exact(LANES)) {
        let s: &mut [f32; LANES] = s.try_into().expect("a block of lanes");
        let f: &[f32; LANES] = f.try_into().expect("a block of lanes");
        for l in 0..LANES {
            s[l] = if f[l].is_nan() { s[l] * scale } else { f[l] };
            max[l] = larger(max[l], s[l]);
        }
    }
    let max = reduce_lanes(max, larger);
    let mut sum = [0.0f32; LANES];
    for s in row.chunks_exact_mut(LANES) {
        let s: &mut [f32; LANES] = s.try_into().expect("a block of lanes");
        for l in 0..LANES {
            s[l] = exp::<FMA>(s[l] - max);
            sum[l] += s[l];
        }
    }
    let inv = 1.0 / reduce_lanes(sum, |a, b| a + b);
    for_lanes(row, |v| v * inv);
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
        let head = h * d_k..;
        // S = Q_h K_hᵀ, then every row's softmax, then O_h = P V_h.
        let (q_h, k_t) = (View::rows(&q[head.clone()], dim), View::rows(k_t, padded));
        product::<FMA>(p, padded, q_h, k_t, [len, d_k, padded]);
        for row in p.chunks_exact_mut(padded) {
            softmax_scores::<FMA>(row, fill, shape.scale);
        }
        let (p, v_h) = (View::rows(p, padded), View::rows(&v[head.clone()], dim));
        product::<FMA>(&mut out[head], dim, p, v_h, [len, len, d_k]);
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
        let p = &weights[h * len * padded..(h + 1) * len * padded];
        let head = h * d_k..;
        let d_out_h = View::rows(&d_out[head.clone()], dim);
        // dP = dO_h V_hᵀ, then dS row by row (zero in the padding, where P is).
        product::<FMA>(
            ds,
            padded,
            d_out_h,
            View::rows(v_t, padded),
            [len, d_k, padded],
        );
        for (p_i, ds_i) in p.chunks_exact(padded).zip(ds.chunks_exact_mut(padded)) {
            let dot = lane_sum(ds_i, p_i, |s, w| s * w);
            zip_lanes(ds_i, p_i, |s, w| w * (s - dot) * shape.scale);
        }
        // dQ_h = dS K_h, dV_h = Pᵀ dO_h, dK_h = dSᵀ Q_h, the transposes read in place.
        let (k_h, q_h) = (
            View::rows(&k[head.clone()], dim),
            View::rows(&q[head.clone()], dim),
        );
        let ds = &*ds;
        let dims = [len, len, d_k];
        product::<FMA>(
            &mut dq[head.clone()],
            dim,
            View::rows(ds, padded),
            k_h,
            dims,
        );
        let p_t = View::transposed(p, padded);
        product::<FMA>(&mut dv[head.clone()], dim, p_t, d_out_h, dims);
        product::<FMA>(&mut dk[head], dim, View::transposed(ds, padded), q_h, dims);
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
