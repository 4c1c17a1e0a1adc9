//! Convolutions as one matrix product per kernel tap over shifted views of the image's
//! stride phases, with no column buffer.
//!
//! Pad the image and split it by stride phase: phase `(py, px)` holds the padded pixels
//! `(sy·i + py, sx·j + px)`. Tap `(ky, kx)` of output pixel `(y, x)` reads the padded pixel
//! `(sy·y + ky, sx·x + kx)`, which is phase `(ky mod sy, kx mod sx)` at `(y + ky / sy,
//! x + kx / sx)`. With the output's rows laid out as wide as a phase's (`wq`, the last
//! `(kw - 1) / sx` columns of each row unused), the tap reads a contiguous run of each
//! channel's phase plane that starts `(ky / sy)·wq + kx / sx` in. So each tap is the
//! product of its weights with a strided view of one phase, `[c_in, oh·wq]` with row stride
//! the plane's size, summed into the wide output, whose used columns are then copied out.
//! Each tap's weight gradient is the wide output gradient (zero in the unused columns)
//! times the same view, transposed; the input gradient adds each tap's weights, transposed,
//! times the wide output gradient into the same view of the phases of a zeroed buffer, which
//! are then woven back into the image.
//!
//! The column buffer path copies each input value `kh·kw / (sy·sx)` times, then `gemm` packs
//! the copy again; here the phases are the only copy (for a 1x1 stride-2 shortcut, only the
//! phase it reads), and `gemm` packs the views straight from them. The products are as deep
//! as the channels are many, so convolutions with few channels (a first layer on RGB or grey
//! images) keep the column buffer.

use std::ops::Range;

use super::{Geometry, gather, scatter};
use crate::kernels::flex_gemm::{View, matmul, matmul_strided};

/// The stride phases of one image: for each phase a plane per channel of `rows` rows of
/// `wq`, phase after phase, and `kw - 1` zeros after the last, which the unused columns of
/// the last rows read.
#[derive(Debug, Clone, Copy)]
struct Phases {
    /// Rows and columns of a phase plane.
    rows: usize,
    wq: usize,
    /// Output rows and columns.
    oh: usize,
    ow: usize,
    /// Phases per axis that some tap reads: the stride, or the kernel where smaller.
    phases: [usize; 2],
    g: Geometry,
}

impl Phases {
    fn new(g: &Geometry) -> Self {
        let (oh, ow) = g.out_hw();
        let [kh, kw] = g.kernel;
        let [sy, sx] = g.stride;
        Phases {
            rows: oh + (kh - 1) / sy,
            wq: ow + (kw - 1) / sx,
            oh,
            ow,
            phases: [sy.min(kh), sx.min(kw)],
            g: *g,
        }
    }

    fn plane(&self) -> usize {
        self.rows * self.wq
    }

    /// Floats of a buffer of every phase of `channels` channels.
    fn len(&self, channels: usize) -> usize {
        self.phases[0] * self.phases[1] * channels * self.plane() + self.g.kernel[1] - 1
    }

    /// Values of the wide layout of one channel: `oh` rows of `wq`.
    fn wide(&self) -> usize {
        self.oh * self.wq
    }

    /// Where tap `t`'s view of `channels` channels starts in a phase buffer.
    fn tap_offset(&self, t: usize, channels: usize) -> usize {
        let (kw, [sy, sx]) = (self.g.kernel[1], self.g.stride);
        let (ky, kx) = (t / kw, t % kw);
        let phase = (ky % sy) * self.phases[1] + kx % sx;
        phase * channels * self.plane() + (ky / sy) * self.wq + kx / sx
    }

    /// Calls `f(at, from, len)` for each run of a phase row that lies inside the image: `len`
    /// entries from `at` in the buffer hold the pixels from `from` on, a stride apart. The
    /// one place that knows which pixel each phase entry holds.
    fn for_each_run(&self, channels: usize, mut f: impl FnMut(usize, usize, usize)) {
        let g = &self.g;
        let sy = g.stride[0];
        for py in 0..self.phases[0] {
            for px in 0..self.phases[1] {
                let inside = g.columns_inside(px, self.wq);
                if inside.is_empty() {
                    continue;
                }
                let phase = py * self.phases[1] + px;
                for c in 0..channels {
                    for i in 0..self.rows {
                        let Some(r) = g.image_row(sy * i + py) else {
                            continue;
                        };
                        let at = (phase * channels + c) * self.plane() + i * self.wq;
                        let from = g.image_column((c * g.height + r) * g.width, inside.start, px);
                        f(at + inside.start, from, inside.len());
                    }
                }
            }
        }
    }

    /// Copies `channels` images into their phases. Entries outside the image are never
    /// written, so they keep the zeros a new buffer starts with.
    fn split(&self, image: &[f32], channels: usize, phases: &mut [f32]) {
        self.for_each_run(channels, |at, from, len| {
            gather(&mut phases[at..at + len], &image[from..], self.g.stride[1]);
        });
    }

    /// The inverse of [`Phases::split`]: writes every image pixel some tap reads from its
    /// phase entry (and leaves the others, which a stride longer than the kernel skips).
    fn weave(&self, phases: &[f32], channels: usize, image: &mut [f32]) {
        self.for_each_run(channels, |at, to, len| {
            scatter(
                &mut image[to..],
                &phases[at..at + len],
                self.g.stride[1],
                |d, v| *d = v,
            );
        });
    }

    /// Copies `[channels, oh, ow]` into the wide layout `[channels, oh·wq]`, whose unused
    /// columns are never written and so keep their zeros.
    fn widen(&self, values: &[f32], wide: &mut [f32]) {
        for (dst, src) in wide
            .chunks_exact_mut(self.wq)
            .zip(values.chunks_exact(self.ow))
        {
            dst[..self.ow].copy_from_slice(src);
        }
    }

    /// Copies the used columns of a wide `[channels, oh·wq]` result into `[channels, oh, ow]`.
    fn crop(&self, wide: &[f32], out: &mut [f32]) {
        for (dst, src) in out
            .chunks_exact_mut(self.ow)
            .zip(wide.chunks_exact(self.wq))
        {
            dst.copy_from_slice(&src[..self.ow]);
        }
    }

    /// Bands of output rows whose products (`channels` rows of `wq` per output row, in and
    /// out) stay within `floats`: one band for the ResNet's 32x32 layers, several for large
    /// images, whose wide results would otherwise leave the cache between taps.
    fn bands(&self, channels: usize, floats: usize) -> impl Iterator<Item = Range<usize>> + use<> {
        let rows = (floats / (channels * self.wq).max(1)).clamp(1, self.oh.max(1));
        let oh = self.oh;
        (0..oh).step_by(rows).map(move |y| y..(y + rows).min(oh))
    }
}

/// Output pixels per image from which shifted views beat column buffers. At batch 128 on two
/// cores (AMD EPYC, AVX2), 3x3 convolutions at stride 1 and 2 with 16 to 64 channels ran
/// 2-20% faster on shifted views with 32x32 and 64x64 outputs, as fast with 16x16 ones (the
/// ResNet's second stage), and 10-25% slower with 14x14 and 8x8 ones: each tap's product is
/// then too small for `gemm`'s blocks.
pub(super) const MIN_PIXELS: usize = 512;

/// Whether `g` runs here: at least `g.shift_channels` channels in and out (the depth of the
/// products), [`MIN_PIXELS`] output pixels per image, and output rows at least eight times as
/// wide as the unused columns each adds (16 for a 3x3 kernel at stride 1, 8 at stride 2).
pub(super) fn covers(g: &Geometry) -> bool {
    let (oh, ow) = g.out_hw();
    g.c_in.min(g.c_out) >= g.shift_channels
        && oh * ow >= g.shift_pixels
        && ow >= 8 * ((g.kernel[1] - 1) / g.stride[1])
}

/// Tap `t`'s weights, `W[:, :, ky, kx]`, as a `[c_out, c_in]` matrix.
fn tap_weights<'a>(weights: &'a [f32], g: &Geometry, t: usize) -> View<'a> {
    View {
        data: &weights[t..],
        row: g.taps(),
        col: g.kernel[0] * g.kernel[1],
    }
}

/// Per-thread buffers of the forward pass: the image's phases and the wide output.
pub(super) fn forward_scratch(g: &Geometry) -> (Vec<f32>, Vec<f32>) {
    let p = Phases::new(g);
    (vec![0.0; p.len(g.c_in)], vec![0.0; g.c_out * p.wide()])
}

/// One image's output `[c_out, oh, ow]` (bias added, when given) into `out`.
pub(super) fn forward_image(
    g: &Geometry,
    image: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    (phases, wide): &mut (Vec<f32>, Vec<f32>),
    out: &mut [f32],
) {
    let p = Phases::new(g);
    p.split(image, g.c_in, phases);
    let khkw = g.kernel[0] * g.kernel[1];
    for rows in p.bands(g.c_in + g.c_out, g.column_floats) {
        let (start, len) = (rows.start * p.wq, rows.len() * p.wq);
        for t in 0..khkw {
            // wide[c_out, band] (+)= W[:, :, ky, kx] × phase[c_in, band shifted by the tap]
            let lhs = tap_weights(weights, g, t);
            let rhs = View {
                data: &phases[p.tap_offset(t, g.c_in) + start..],
                row: p.plane(),
                col: 1,
            };
            let shape = [g.c_out, len, g.c_in];
            matmul_strided(&mut wide[start..], p.wide(), shape, t > 0, lhs, rhs);
        }
    }
    p.crop(wide, out);
    if let Some(bias) = bias {
        for (row, &b) in out.chunks_mut(p.oh * p.ow).zip(bias) {
            row.iter_mut().for_each(|v| *v += b);
        }
    }
}

/// Per-thread buffers of the backward pass.
pub(super) struct BackwardScratch {
    /// The image's phases.
    x: Vec<f32>,
    /// The output gradient in the wide layout.
    grad: Vec<f32>,
    /// The input gradient's phases.
    dx: Vec<f32>,
}

pub(super) fn backward_scratch(g: &Geometry) -> BackwardScratch {
    let p = Phases::new(g);
    BackwardScratch {
        x: vec![0.0; p.len(g.c_in)],
        grad: vec![0.0; g.c_out * p.wide()],
        dx: vec![0.0; p.len(g.c_in)],
    }
}

/// One image's gradients: adds its weight gradient onto `dw` (when given; one
/// `[c_out, c_in]` block per tap, see [`tap_major_to_weight`]) and writes its input
/// gradient `[c_in, height, width]` into `dx` (when given).
pub(super) fn backward_image(
    g: &Geometry,
    image: &[f32],
    grad: &[f32],
    weights: &[f32],
    scratch: &mut BackwardScratch,
    dw: Option<&mut [f32]>,
    dx: Option<&mut [f32]>,
) {
    let p = Phases::new(g);
    let khkw = g.kernel[0] * g.kernel[1];
    p.widen(grad, &mut scratch.grad);
    let go = View::rows(&scratch.grad, p.wide());
    if let Some(dw) = dw {
        p.split(image, g.c_in, &mut scratch.x);
        for t in 0..khkw {
            // dW[:, :, ky, kx] += G_wide[c_out, oh·wq] × phase viewᵀ[oh·wq, c_in]
            let rhs = View {
                data: &scratch.x[p.tap_offset(t, g.c_in)..],
                row: 1,
                col: p.plane(),
            };
            let block = &mut dw[t * g.c_out * g.c_in..(t + 1) * g.c_out * g.c_in];
            matmul(block, g.c_out, g.c_in, p.wide(), true, go, rhs);
        }
    }
    if let Some(dx) = dx {
        scratch.dx.fill(0.0);
        for rows in p.bands(g.c_in + g.c_out, g.column_floats) {
            let (start, len) = (rows.start * p.wq, rows.len() * p.wq);
            for t in 0..khkw {
                // phase view[c_in, band] += W[:, :, ky, kx]ᵀ × G_wide[c_out, band]; the
                // unused columns add zeros.
                let lhs = tap_weights(weights, g, t).t();
                let rhs = View::rows(&scratch.grad[start..], p.wide());
                let dst = &mut scratch.dx[p.tap_offset(t, g.c_in) + start..];
                matmul_strided(dst, p.plane(), [g.c_in, len, g.c_out], true, lhs, rhs);
            }
        }
        p.weave(&scratch.dx, g.c_in, dx);
    }
}

/// Tap-major weight gradient sums (`[kh·kw, c_out, c_in]`) in the weight's layout
/// (`[c_out, c_in, kh, kw]`).
pub(super) fn tap_major_to_weight(g: &Geometry, sums: &[f32]) -> Vec<f32> {
    let khkw = g.kernel[0] * g.kernel[1];
    let mut dw = vec![0.0f32; sums.len()];
    for (t, block) in sums.chunks_exact(g.c_out * g.c_in).enumerate() {
        for (oc, &v) in block.iter().enumerate() {
            dw[oc * khkw + t] = v;
        }
    }
    dw
}
