//! The flex kernels behind [`super::conv2d`]: convolutions (any stride, no dilation, one group)
//! as matrix products per image, forward and backward: over a column buffer that stays in
//! cache (in bands of output rows where a whole image's would not), or, for layers of 16
//! channels or more with 512 output pixels or more per image, one product per kernel tap over
//! shifted views of the image ([`shifted`]).
//!
//! Burn's flex convolution lowers the whole batch into one column matrix and permutes the
//! product back to channels-first order, and its backward pass computes the weight gradient
//! as a convolution with an image-sized kernel. Here every image is a small product
//! (`[c_out, c_in·kh·kw] × [c_in·kh·kw, h·w]`) on one thread, and the threads share out the
//! images (in the backward pass, fixed groups of images whose weight-gradient sums are added
//! in order). For the CNN encoder's layers at batch 128, forward and backward together take
//! 4-5 ms instead of 16-21 (1→32 channels, 28x28) and 19-23 ms instead of 33-41 (32→64,
//! 14x14); `cargo bench --bench kernels` prints both.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor};
use std::ops::Range;

use rayon::prelude::*;

use super::flex_gemm::{View, matmul, matmul_strided};
use super::flex_util::{dims, plane_sums, tensor, with_f32};

mod shifted;

/// The shape of one convolution: no dilation, one group, `pad` on both sides of each axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    batch: usize,
    c_in: usize,
    c_out: usize,
    height: usize,
    width: usize,
    kernel: [usize; 2],
    pad: [usize; 2],
    stride: [usize; 2],
    /// Floats of column buffer per product ([`COLUMN_FLOATS`]; the tests lower it).
    column_floats: usize,
    /// Channels in and out, and output pixels per image, from which a convolution runs on
    /// shifted views instead of a column buffer ([`SHIFT_CHANNELS`] and
    /// [`shifted::MIN_PIXELS`]; the tests change them).
    shift_channels: usize,
    shift_pixels: usize,
}

impl Geometry {
    fn out_hw(&self) -> (usize, usize) {
        (
            (self.height + 2 * self.pad[0] - self.kernel[0]) / self.stride[0] + 1,
            (self.width + 2 * self.pad[1] - self.kernel[1]) / self.stride[1] + 1,
        )
    }

    /// Rows of the column buffer: one per input channel and kernel tap.
    fn taps(&self) -> usize {
        self.c_in * self.kernel[0] * self.kernel[1]
    }

    fn in_len(&self) -> usize {
        self.c_in * self.height * self.width
    }

    fn out_len(&self) -> usize {
        let (oh, ow) = self.out_hw();
        self.c_out * oh * ow
    }

    /// The output rows of each band of the column buffer: as few bands of equal height as
    /// keep one within `column_floats` (or one row), the last band shorter.
    fn band_rows(&self) -> usize {
        let (oh, ow) = self.out_hw();
        let bands = (self.taps() * oh * ow)
            .div_ceil(self.column_floats.max(1))
            .clamp(1, oh);
        oh.div_ceil(bands)
    }

    /// The bands of output rows, top to bottom.
    fn bands(&self) -> impl Iterator<Item = Range<usize>> + use<> {
        let (oh, band) = (self.out_hw().0, self.band_rows());
        (0..oh).step_by(band).map(move |y| y..(y + band).min(oh))
    }
}

/// Floats of column buffer per product. A whole image's buffer (`c_in·kh·kw` by `oh·ow`) is
/// 1.2 MB for the ResNet's 32→32 layers at 32x32, more than a core's L2 cache holds, so such
/// buffers are built and used a band of output rows at a time, each band's products reading a
/// buffer still in cache: that layer's forward and backward pass took 114-131 ms instead of
/// 143-144 (batch 128, AMD EPYC with AVX2, 512 KiB L2). 64 Ki floats did as well there, but
/// split the stride-2 layers' 74 Ki-float buffers in two, which made them 10-20% slower.
const COLUMN_FLOATS: usize = 1 << 17;

/// Channels in and out from which a convolution runs as one product per kernel tap over
/// shifted views ([`shifted`]), each as deep as the channels are many. Below this a first
/// layer's products (depth 1 or 3 per tap) would be too shallow to use the cores; the column
/// buffer stacks all taps into one product.
const SHIFT_CHANNELS: usize = 16;

/// The kernel's result on flex float32 tensors; `None` leaves the convolution to the
/// generic path.
pub(super) fn conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    pad: [usize; 2],
    stride: [usize; 2],
) -> Option<Tensor<4>> {
    let [batch, c_in, height, width] = x.dims();
    let [c_out, w_in, kh, kw] = weight.dims();
    let fits = x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.is_none_or(|b| b.dtype() == DType::F32)
        && w_in == c_in
        // Empty tensors go to Burn: the kernels split buffers into per-image chunks.
        && [batch, c_in, c_out, height, width, kh, kw].iter().all(|&d| d > 0)
        && stride.iter().all(|&s| s > 0)
        && height + 2 * pad[0] >= kh
        && width + 2 * pad[1] >= kw;
    if !fits {
        return None;
    }
    let geometry = Geometry {
        batch,
        c_in,
        c_out,
        height,
        width,
        kernel: [kh, kw],
        pad,
        stride,
        column_floats: COLUMN_FLOATS,
        shift_channels: SHIFT_CHANNELS,
        shift_pixels: shifted::MIN_PIXELS,
    };
    if x.device().is_autodiff() {
        let prim = |t: &Tensor<4>| t.clone().try_into_primitive::<Autodiff<Flex>>().ok();
        let bias = match bias {
            Some(b) => Some(b.clone().try_into_primitive::<Autodiff<Flex>>().ok()?),
            None => None,
        };
        let out = tracked(prim(x)?, prim(weight)?, bias, geometry);
        return Some(Tensor::from_primitive::<Autodiff<Flex>>(out));
    }
    let prim = |t: &Tensor<4>| t.clone().try_into_primitive::<Flex>().ok();
    let bias = match bias {
        Some(b) => Some(b.clone().try_into_primitive::<Flex>().ok()?),
        None => None,
    };
    let out = forward(&prim(x)?, &prim(weight)?, bias.as_ref(), geometry);
    Some(Tensor::from_primitive::<Flex>(out))
}

fn tracked(
    x: FloatTensor<Autodiff<Flex>>,
    w: FloatTensor<Autodiff<Flex>>,
    b: Option<FloatTensor<Autodiff<Flex>>>,
    geometry: Geometry,
) -> FloatTensor<Autodiff<Flex>> {
    let (x, x_guard) = x.into_parts();
    let (w, w_guard) = w.into_parts();
    match b {
        None => match ConvBackward
            .prepare::<NoCheckpointing>([x_guard, w_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = forward(&x, &w, None, geometry);
                prep.finish((x, w, geometry), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&x, &w, None, geometry)),
        },
        Some(b) => {
            let (b, b_guard) = b.into_parts();
            match ConvBackward
                .prepare::<NoCheckpointing>([x_guard, w_guard, b_guard])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let out = forward(&x, &w, Some(&b), geometry);
                    prep.finish((x, w, geometry), out)
                }
                OpsKind::UnTracked(prep) => prep.finish(forward(&x, &w, Some(&b), geometry)),
            }
        }
    }
}

#[derive(Debug)]
struct ConvBackward;

type ConvState = (FlexTensor, FlexTensor, Geometry);

/// Hands a computed gradient to its parent node, where the parent tracks one.
macro_rules! register {
    ($grads:expr, $parent:expr, $grad:expr) => {
        if let (Some(node), Some(grad)) = ($parent, $grad) {
            $grads.register::<Flex>(node.id, grad);
        }
    };
}

impl Backward<Flex, 2> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pw] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, w, geometry) = ops.state;
        let out = backward(&x, &w, &grad, geometry, px.is_some(), pw.is_some(), false);
        register!(grads, px, out.x);
        register!(grads, pw, out.weight);
    }
}

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pw, pb] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, w, geometry) = ops.state;
        let out = backward(
            &x,
            &w,
            &grad,
            geometry,
            px.is_some(),
            pw.is_some(),
            pb.is_some(),
        );
        register!(grads, px, out.x);
        register!(grads, pw, out.weight);
        register!(grads, pb, out.bias);
    }
}

/// Walks one image's column buffer for the output rows `rows` (`[c_in·kh·kw, rows·ow]`, see
/// [`im2col`]) output row by output row, calling `f(col_start, image_start, len)` for the run
/// of entries whose source pixels lie inside the image, `stride[1]` apart in the image; the
/// entries outside it are padding. The one place that knows which pixel each entry reads.
fn for_each_span(g: &Geometry, rows: Range<usize>, mut f: impl FnMut(usize, usize, usize)) {
    let (_, ow) = g.out_hw();
    let band = rows.len() * ow;
    let [kh, kw] = g.kernel;
    let sh = g.stride[0];
    for c in 0..g.c_in {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = ((c * kh + ky) * kw + kx) * band;
                let inside = g.columns_inside(kx, ow);
                for (i, y) in rows.clone().enumerate() {
                    let Some(sy) = g.image_row(y * sh + ky) else {
                        continue;
                    };
                    let source = g.image_column((c * g.height + sy) * g.width, inside.start, kx);
                    f(row + i * ow + inside.start, source, inside.len());
                }
            }
        }
    }
}

impl Geometry {
    /// The image row at `padded` rows into the padded image, if it is not padding.
    fn image_row(&self, padded: usize) -> Option<usize> {
        padded.checked_sub(self.pad[0]).filter(|&r| r < self.height)
    }

    /// Of `count` positions `j` along a row, those whose image column `j·sx + offset - pw`
    /// (column `offset` of their stride step in the padded row) lies inside the image.
    fn columns_inside(&self, offset: usize, count: usize) -> Range<usize> {
        let [pw, sx] = [self.pad[1], self.stride[1]];
        let lo = pw.saturating_sub(offset).div_ceil(sx).min(count);
        let hi = (self.width + pw)
            .saturating_sub(offset)
            .div_ceil(sx)
            .min(count)
            .max(lo);
        lo..hi
    }

    /// The index of position `j`'s image column (see [`Geometry::columns_inside`]) in a row
    /// that starts at `row_start`; `j` must be inside.
    fn image_column(&self, row_start: usize, j: usize, offset: usize) -> usize {
        row_start + j * self.stride[1] + offset - self.pad[1]
    }
}

/// `dst[i] = src[i·step]` for every `i` of `dst`. Inlined: the runs are short (16 values for
/// the ResNet's stride-2 layers), and a call per run would cost as much as the copy.
#[inline(always)]
fn gather(dst: &mut [f32], src: &[f32], step: usize) {
    match step {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        // Blocks of 8 from 16 in vector shuffles; `step_by` copied one value at a time, and
        // took 4% of the ResNet's step in its stride-2 layers' column buffers.
        2 => {
            let taken = 8 * in_blocks(dst, src, evens);
            for (i, d) in dst[taken..].iter_mut().enumerate() {
                *d = src[2 * (taken + i)];
            }
        }
        _ => {
            for (d, &v) in dst.iter_mut().zip(src.iter().step_by(step)) {
                *d = v;
            }
        }
    }
}

/// Calls `f` on whole blocks of `A` values of `dst` and `B` of `src`, pair by pair, and
/// returns how many pairs it took (the rest, shorter than a block, is the caller's).
#[inline(always)]
fn in_blocks<const A: usize, const B: usize>(
    dst: &mut [f32],
    src: &[f32],
    f: impl Fn(&mut [f32; A], &[f32; B]),
) -> usize {
    let mut pairs = 0;
    for (d, s) in dst.chunks_exact_mut(A).zip(src.chunks_exact(B)) {
        f(
            d.try_into().expect("a whole block"),
            s.try_into().expect("a whole block"),
        );
        pairs += 1;
    }
    pairs
}

/// `d[i] = s[2·i]`: on x86-64 two shuffles of SSE2, which every x86-64 CPU has (the compiler
/// left the plain loop scalar).
#[inline(always)]
fn evens(d: &mut [f32; 8], s: &[f32; 16]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_shuffle_ps, _mm_storeu_ps};
        // Lanes 0 and 2 of the first operand, then of the second.
        const EVENS: i32 = 0b10_00_10_00;
        // SAFETY: SSE2 is part of x86-64; every load reads 4 values inside `s`, and every
        // store writes 4 inside `d`.
        unsafe {
            let p = s.as_ptr();
            let low = _mm_shuffle_ps::<EVENS>(_mm_loadu_ps(p), _mm_loadu_ps(p.add(4)));
            let high = _mm_shuffle_ps::<EVENS>(_mm_loadu_ps(p.add(8)), _mm_loadu_ps(p.add(12)));
            _mm_storeu_ps(d.as_mut_ptr(), low);
            _mm_storeu_ps(d.as_mut_ptr().add(4), high);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for i in 0..8 {
        d[i] = s[2 * i];
    }
}

/// `op(dst[i·step], src[i])` for every `i` of `src`. Inlined, as [`gather`].
#[inline(always)]
fn scatter(dst: &mut [f32], src: &[f32], step: usize, op: impl Fn(&mut f32, f32)) {
    if step == 1 {
        // Contiguous runs: a plain zip, which the compiler vectorises (`step_by` is not).
        for (d, &v) in dst[..src.len()].iter_mut().zip(src) {
            op(d, v);
        }
    } else {
        for (d, &v) in dst.iter_mut().step_by(step).zip(src) {
            op(d, v);
        }
    }
}

/// `dst[i·step] += src[i]` for every `i` of `src`: [`scatter`]'s sum, with stride 2 in blocks
/// of 8 onto 16 in SSE2 (`step_by` added one value at a time, 2% of the ResNet's step).
#[inline(always)]
fn scatter_add(dst: &mut [f32], src: &[f32], step: usize) {
    if step != 2 {
        return scatter(dst, src, step, |d, v| *d += v);
    }
    let done = 8 * in_blocks(dst, src, add_evens);
    for (i, &v) in src.iter().enumerate().skip(done) {
        dst[2 * i] += v;
    }
}

/// `d[2·i] += s[i]`: on x86-64 four SSE2 additions of `s` interleaved with -0, which adds
/// nothing to the odd values, not even to -0 (the compiler left the plain loop scalar).
#[inline(always)]
fn add_evens(d: &mut [f32; 16], s: &[f32; 8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            _mm_add_ps, _mm_loadu_ps, _mm_set1_ps, _mm_storeu_ps, _mm_unpackhi_ps, _mm_unpacklo_ps,
        };
        // SAFETY: SSE2 is part of x86-64; every load and store covers 4 values inside `d`
        // or `s`.
        unsafe {
            let nothing = _mm_set1_ps(-0.0);
            for half in 0..2 {
                let v = _mm_loadu_ps(s.as_ptr().add(4 * half));
                let spread = [_mm_unpacklo_ps(v, nothing), _mm_unpackhi_ps(v, nothing)];
                for (j, spread) in spread.into_iter().enumerate() {
                    let at = d.as_mut_ptr().add(8 * half + 4 * j);
                    _mm_storeu_ps(at, _mm_add_ps(_mm_loadu_ps(at), spread));
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for i in 0..8 {
        d[2 * i] += s[i];
    }
}

/// Lay the receptive fields of one image's output rows `rows` out as `[c_in·kh·kw, rows·ow]`
/// at the start of `col` (zeros where the kernel overhangs the border).
fn im2col(image: &[f32], g: &Geometry, rows: Range<usize>, col: &mut [f32]) {
    let (_, ow) = g.out_hw();
    col[..g.taps() * rows.len() * ow].fill(0.0);
    for_each_span(g, rows, |at, from, len| {
        gather(&mut col[at..at + len], &image[from..], g.stride[1]);
    });
}

/// The inverse scatter of [`im2col`]: adds each column entry of the output rows `rows` onto
/// its input pixel.
fn col2im(col: &[f32], g: &Geometry, rows: Range<usize>, image: &mut [f32]) {
    for_each_span(g, rows, |at, to, len| {
        scatter_add(&mut image[to..], &col[at..at + len], g.stride[1]);
    });
}

fn forward(x: &FlexTensor, w: &FlexTensor, bias: Option<&FlexTensor>, g: Geometry) -> FlexTensor {
    let (oh, ow) = g.out_hw();
    let (taps, spatial) = (g.taps(), oh * ow);
    let mut out = vec![0.0f32; g.batch * g.out_len()];
    with_f32(x, |x| {
        with_f32(w, |w| {
            let bias = bias.map(|b| with_f32(b, |b| b.to_vec()));
            if shifted::covers(&g) {
                out.par_chunks_mut(g.out_len())
                    .zip(x.par_chunks(g.in_len()))
                    .for_each_init(
                        || shifted::forward_scratch(&g),
                        |scratch, (out, image)| {
                            shifted::forward_image(&g, image, w, bias.as_deref(), scratch, out)
                        },
                    );
                return;
            }
            out.par_chunks_mut(g.out_len())
                .zip(x.par_chunks(g.in_len()))
                .for_each_init(
                    || vec![0.0f32; taps * g.band_rows() * ow],
                    |col, (out, image)| {
                        if let Some(bias) = &bias {
                            for (row, &b) in out.chunks_mut(spatial).zip(bias) {
                                row.fill(b);
                            }
                        }
                        for rows in g.bands() {
                            let (start, len) = (rows.start * ow, rows.len() * ow);
                            im2col(image, &g, rows, col);
                            // out[:, band] (row stride `spatial`) = W[c_out, taps] × col
                            let (lhs, rhs) = (View::rows(w, taps), View::rows(col, len));
                            let dst = &mut out[start..];
                            let shape = [g.c_out, len, taps];
                            matmul_strided(dst, spatial, shape, bias.is_some(), lhs, rhs);
                        }
                    },
                );
        })
    });
    tensor(out, &[g.batch, g.c_out, oh, ow])
}

/// The gradients a backward pass was asked for.
struct Grads {
    x: Option<FlexTensor>,
    weight: Option<FlexTensor>,
    bias: Option<FlexTensor>,
}

/// A backward task's buffers: a column buffer, or the stride phases of the shifted views.
enum Scratch {
    Columns(Vec<f32>),
    Shifted(shifted::BackwardScratch),
}

/// One image's gradients through column buffers, band by band: adds its weight gradient onto
/// `weight` (when `want_w`) and its input gradient onto `dx` (when given).
#[allow(clippy::too_many_arguments)]
fn columns_backward_image(
    g: &Geometry,
    image: &[f32],
    go: &[f32],
    weights: &[f32],
    col: &mut [f32],
    want_w: bool,
    weight: &mut [f32],
    mut dx: Option<&mut [f32]>,
) {
    let (oh, ow) = g.out_hw();
    let (taps, spatial) = (g.taps(), oh * ow);
    for rows in g.bands() {
        let (start, len) = (rows.start * ow, rows.len() * ow);
        // The band's columns of G[c_out, spatial].
        let go_band = View::rows(&go[start..], spatial);
        if want_w {
            im2col(image, g, rows.clone(), col);
            // dW[c_out, taps] += G[c_out, band] × colᵀ[band, taps]
            let rhs = View::transposed(col, len);
            matmul(weight, g.c_out, taps, len, true, go_band, rhs);
        }
        if let Some(dx) = dx.as_deref_mut() {
            // dcol[taps, band] = Wᵀ[taps, c_out] × G[c_out, band]
            let lhs = View::transposed(weights, taps);
            matmul(col, taps, len, g.c_out, false, lhs, go_band);
            col2im(col, g, rows, dx);
        }
    }
}

/// Images per task of the backward pass. The weight and bias gradients are summed per task and
/// the tasks' sums added in order, so the result does not depend on how the threads share the
/// tasks: seeded runs stay bit-identical.
const IMAGES_PER_TASK: usize = 4;

fn backward(
    x: &FlexTensor,
    w: &FlexTensor,
    grad: &FlexTensor,
    g: Geometry,
    want_x: bool,
    want_w: bool,
    want_b: bool,
) -> Grads {
    let (oh, ow) = g.out_hw();
    let (taps, spatial) = (g.taps(), oh * ow);
    debug_assert_eq!(dims(grad), [g.batch, g.c_out, oh, ow]);
    let (chunk_in, chunk_out) = (IMAGES_PER_TASK * g.in_len(), IMAGES_PER_TASK * g.out_len());
    // Zeros: `col2im` adds every band's contribution onto its image, and the shifted views
    // leave the pixels no tap reads.
    let mut dx = vec![0.0f32; if want_x { g.batch * g.in_len() } else { 0 }];
    let weights = with_f32(w, <[f32]>::to_vec);
    let shift = shifted::covers(&g);
    // One task: its images' weight and bias gradient sums (tap-major on shifted views), and
    // their input gradients in `dx`.
    let task = |scratch: &mut Scratch, (xs, gs): (&[f32], &[f32]), mut dx: Option<&mut [f32]>| {
        let mut weight = vec![0.0f32; if want_w { g.c_out * taps } else { 0 }];
        let mut bias = vec![0.0f32; if want_b { g.c_out } else { 0 }];
        let images = xs.chunks(g.in_len()).zip(gs.chunks(g.out_len()));
        for (i, (image, go)) in images.enumerate() {
            let dx = dx
                .as_deref_mut()
                .map(|dx| &mut dx[i * g.in_len()..(i + 1) * g.in_len()]);
            match scratch {
                Scratch::Shifted(scratch) => {
                    let dw = want_w.then_some(weight.as_mut_slice());
                    shifted::backward_image(&g, image, go, &weights, scratch, dw, dx);
                }
                Scratch::Columns(col) => {
                    columns_backward_image(&g, image, go, &weights, col, want_w, &mut weight, dx)
                }
            }
            if want_b {
                for (b, row) in bias.iter_mut().zip(go.chunks(spatial)) {
                    // The row's sum in vector lanes (the second sum is not needed).
                    *b += plane_sums(row, row, |g, _| (g, 0.0)).0 as f32;
                }
            }
        }
        (weight, bias)
    };
    let partials: Vec<(Vec<f32>, Vec<f32>)> = with_f32(x, |x| {
        with_f32(grad, |grad| {
            let tasks = x.par_chunks(chunk_in).zip(grad.par_chunks(chunk_out));
            let scratch = || {
                if shift {
                    Scratch::Shifted(shifted::backward_scratch(&g))
                } else {
                    Scratch::Columns(vec![0.0f32; taps * g.band_rows() * ow])
                }
            };
            if want_x {
                tasks
                    .zip(dx.par_chunks_mut(chunk_in))
                    .map_init(scratch, |s, (pair, dx)| task(s, pair, Some(dx)))
                    .collect()
            } else {
                tasks
                    .map_init(scratch, |s, pair| task(s, pair, None))
                    .collect()
            }
        })
    });
    let mut dw = vec![0.0f32; if want_w { g.c_out * taps } else { 0 }];
    let mut db = vec![0.0f32; if want_b { g.c_out } else { 0 }];
    for (weight, bias) in partials {
        dw.iter_mut().zip(&weight).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(&bias).for_each(|(a, b)| *a += b);
    }
    if shift && want_w {
        dw = shifted::tap_major_to_weight(&g, &dw);
    }
    Grads {
        x: want_x.then(|| tensor(dx, &[g.batch, g.c_in, g.height, g.width])),
        weight: want_w.then(|| tensor(dw, &[g.c_out, g.c_in, g.kernel[0], g.kernel[1]])),
        bias: want_b.then(|| tensor(db, &[g.c_out])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        crate::test_data::seeded_values(len, Distribution::Normal(0.0, 1.0), seed)
    }

    /// `got` against `want`, value by value, within 1e-4 relative.
    fn assert_close(what: &str, got: &[f32], want: &[f32], g: &Geometry) {
        assert_eq!(got.len(), want.len(), "{what} of {g:?}");
        for (i, (x, e)) in got.iter().zip(want).enumerate() {
            assert!(
                (x - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{what}[{i}] of {g:?}: {x} against {e}"
            );
        }
    }

    /// Every stride's gather against its definition, for runs of every length up to 40 from
    /// sources that end at the last value read (blocks of 8, and the rest one at a time).
    #[test]
    fn gather_takes_every_step_th_value() {
        for step in 1usize..=3 {
            for n in 0..=40 {
                let src: Vec<f32> = (0..(step * n).saturating_sub(step - 1))
                    .map(|v: usize| v as f32)
                    .collect();
                let mut dst = vec![f32::NAN; n];
                gather(&mut dst, &src, step);
                let want: Vec<f32> = (0..n).map(|i| (i * step) as f32).collect();
                assert_eq!(dst, want, "step {step}, {n} values");
            }
        }
    }

    /// Every stride's sum onto the destination against its definition, for runs of every
    /// length up to 40 onto destinations that end at the last value written, and -0 kept
    /// where nothing is added.
    #[test]
    fn scatter_add_adds_onto_every_step_th_value() {
        for step in 1usize..=3 {
            for n in 0..=40 {
                let len = (step * n).saturating_sub(step - 1);
                let start: Vec<f32> = (0..len)
                    .map(|v| if v % 3 == 1 { -0.0 } else { v as f32 })
                    .collect();
                let src: Vec<f32> = (0..n).map(|i| 0.5 + i as f32).collect();
                let mut dst = start.clone();
                scatter_add(&mut dst, &src, step);
                let mut want = start;
                for (i, &v) in src.iter().enumerate() {
                    want[i * step] += v;
                }
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&dst), bits(&want), "step {step}, {n} values");
            }
        }
    }

    /// Forward and every gradient with the column buffer in bands of one output row, two rows
    /// and an uneven split, against the whole image's buffer in one product (checked against
    /// Burn's convolution in `kernels::tests`).
    #[test]
    fn banded_column_buffers_give_the_whole_buffers_results() {
        let geometry = |c_in, c_out, [height, width]: [usize; 2], k, pad, stride| Geometry {
            batch: 5,
            c_in,
            c_out,
            height,
            width,
            kernel: [k, k],
            pad: [pad, pad],
            stride: [stride, stride],
            column_floats: usize::MAX,
            shift_channels: usize::MAX,
            shift_pixels: usize::MAX,
        };
        for whole in [
            geometry(3, 4, [9, 7], 3, 1, 1),
            geometry(2, 5, [10, 9], 3, 1, 2),
            geometry(4, 3, [8, 8], 1, 0, 2),
            geometry(2, 3, [7, 11], 5, 2, 1),
        ] {
            let (oh, ow) = whole.out_hw();
            let x = tensor(
                values(whole.batch * whole.in_len(), 1),
                &[whole.batch, whole.c_in, whole.height, whole.width],
            );
            let w = tensor(
                values(whole.c_out * whole.taps(), 2),
                &[whole.c_out, whole.c_in, whole.kernel[0], whole.kernel[1]],
            );
            let b = tensor(values(whole.c_out, 3), &[whole.c_out]);
            let grad = tensor(
                values(whole.batch * whole.out_len(), 4),
                &[whole.batch, whole.c_out, oh, ow],
            );
            let run = |g: Geometry| {
                let out = forward(&x, &w, Some(&b), g);
                let grads = backward(&x, &w, &grad, g, true, true, true);
                [Some(out), grads.x, grads.weight, grads.bias]
                    .map(|t| with_f32(&t.expect("computed"), <[f32]>::to_vec))
            };
            let expected = run(whole);
            // One row per band, two rows, and three bands of unequal height.
            for column_floats in [1, 2 * whole.taps() * ow, (oh * ow * whole.taps()) / 3] {
                let banded = Geometry {
                    column_floats,
                    ..whole
                };
                assert!(banded.bands().count() > 1, "{banded:?} is banded");
                for (what, (got, want)) in ["output", "dx", "dW", "db"]
                    .iter()
                    .zip(run(banded).iter().zip(&expected))
                {
                    assert_close(what, got, want, &banded);
                }
            }
        }
    }

    /// Forward and every gradient on shifted views, whole and in bands of one and two output
    /// rows, against the column buffers (checked against Burn's convolution in
    /// `kernels::tests`): 3x3, 5x5, 1x1, 3x1 and 2x2 kernels at strides 1, 2 and 3, padded,
    /// unpadded and over-padded, square and oblong images, with odd and even sides.
    #[test]
    fn shifted_views_give_the_column_buffers_results() {
        for (c_in, c_out, [height, width], kernel, pad, stride) in [
            (3, 4, [9, 17], [3, 3], [1, 1], [1, 1]),
            (2, 5, [6, 33], [5, 5], [2, 2], [1, 1]),
            (4, 3, [5, 8], [1, 1], [0, 0], [1, 1]),
            (3, 2, [7, 4], [3, 1], [1, 0], [1, 1]),
            (1, 6, [4, 16], [3, 3], [1, 1], [1, 1]),
            (3, 4, [10, 17], [3, 3], [1, 1], [2, 2]),
            (2, 3, [9, 18], [3, 3], [0, 0], [2, 2]),
            (4, 2, [8, 9], [1, 1], [0, 0], [2, 2]),
            (3, 3, [11, 25], [5, 3], [2, 1], [2, 3]),
            (2, 4, [7, 12], [2, 2], [1, 1], [2, 2]),
            (2, 2, [6, 20], [3, 3], [2, 2], [1, 1]),
        ] {
            let columns = Geometry {
                batch: 6,
                c_in,
                c_out,
                height,
                width,
                kernel,
                pad,
                stride,
                column_floats: usize::MAX,
                shift_channels: usize::MAX,
                shift_pixels: usize::MAX,
            };
            let (oh, ow) = columns.out_hw();
            let x = tensor(
                values(columns.batch * columns.in_len(), 5),
                &[columns.batch, c_in, height, width],
            );
            let w = tensor(
                values(c_out * columns.taps(), 6),
                &[c_out, c_in, kernel[0], kernel[1]],
            );
            let b = tensor(values(c_out, 7), &[c_out]);
            let grad = tensor(
                values(columns.batch * columns.out_len(), 8),
                &[columns.batch, c_out, oh, ow],
            );
            let run = |g: Geometry, bias: bool| {
                let out = forward(&x, &w, bias.then_some(&b), g);
                let grads = backward(&x, &w, &grad, g, true, true, bias);
                let weight_only = backward(&x, &w, &grad, g, false, true, false);
                [
                    Some(out),
                    grads.x,
                    grads.weight,
                    grads.bias,
                    weight_only.weight,
                ]
                .map(|t| t.map(|t| with_f32(&t, <[f32]>::to_vec)))
            };
            for bias in [true, false] {
                let expected = run(columns, bias);
                let wide = ow + (kernel[1] - 1) / stride[1];
                for column_floats in [usize::MAX, 2 * (c_in + c_out) * wide, 1] {
                    let shifted = Geometry {
                        column_floats,
                        shift_channels: 1,
                        shift_pixels: 1,
                        ..columns
                    };
                    assert!(shifted::covers(&shifted), "{shifted:?}");
                    let got = run(shifted, bias);
                    for (what, (got, want)) in ["output", "dx", "dW", "db", "dW alone"]
                        .iter()
                        .zip(got.iter().zip(&expected))
                    {
                        assert_eq!(got.is_some(), want.is_some(), "{what}");
                        let (Some(got), Some(want)) = (got, want) else {
                            continue;
                        };
                        assert_close(what, got, want, &shifted);
                    }
                }
            }
        }
    }

    /// Convolutions with enough channels, output pixels and output rows wide enough against
    /// the unused columns take shifted views: the ResNet's 32x32 layers, and stride-2 and
    /// 1x1 layers with outputs as large; not its first layer or its smaller stages.
    #[test]
    fn shifted_views_cover_deep_layers_with_large_outputs() {
        let g = |c_in: usize, side: usize, k: usize, pad: usize, stride: usize| Geometry {
            batch: 1,
            c_in,
            c_out: 32,
            height: side,
            width: side,
            kernel: [k, k],
            pad: [pad, pad],
            stride: [stride, stride],
            column_floats: COLUMN_FLOATS,
            shift_channels: SHIFT_CHANNELS,
            shift_pixels: shifted::MIN_PIXELS,
        };
        assert!(shifted::covers(&g(32, 32, 3, 1, 1)));
        assert!(shifted::covers(&g(32, 64, 3, 1, 2)));
        assert!(shifted::covers(&g(32, 64, 1, 0, 2)));
        assert!(shifted::covers(&g(16, 64, 5, 2, 1)));
        // The first layer on RGB; the ResNet's 16x16 and 8x8 outputs and the CNN's 14x14.
        assert!(!shifted::covers(&g(3, 32, 3, 1, 1)));
        assert!(!shifted::covers(&g(64, 16, 3, 1, 1)));
        assert!(!shifted::covers(&g(32, 32, 3, 1, 2)));
        assert!(!shifted::covers(&g(128, 8, 3, 1, 1)));
        assert!(!shifted::covers(&g(32, 14, 3, 1, 1)));
        // A 5x5 kernel on 24 columns: 4 unused per 24 used.
        let narrow = Geometry {
            width: 24,
            height: 64,
            ..g(32, 24, 5, 2, 1)
        };
        assert!(!shifted::covers(&narrow));
    }
}
