//! Pixel operations on single images held as f32 values, channels first (CHW): the building blocks
//! of the pretext tasks and augmentations. Each writes into a caller's buffer so a batch is built
//! without per-image allocations.

use rand::Rng;

use crate::dataset::ImageShape;

/// Rotates a square CHW image by `quarter_turns * 90` degrees counter-clockwise into `out`.
pub fn rotate_quarter_turns(image: &[f32], shape: ImageShape, quarter_turns: u8, out: &mut [f32]) {
    debug_assert_eq!(shape.height, shape.width, "rotation needs square images");
    let n = shape.width;
    let plane = n * n;
    for c in 0..shape.channels {
        let src = &image[c * plane..(c + 1) * plane];
        let dst = &mut out[c * plane..(c + 1) * plane];
        match quarter_turns % 4 {
            0 => dst.copy_from_slice(src),
            // 90 degrees counter-clockwise: the last column becomes the first row.
            1 => {
                for y in 0..n {
                    for x in 0..n {
                        dst[y * n + x] = src[x * n + (n - 1 - y)];
                    }
                }
            }
            2 => {
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
            _ => {
                for y in 0..n {
                    for x in 0..n {
                        dst[y * n + x] = src[(n - 1 - x) * n + y];
                    }
                }
            }
        }
    }
}

/// A rectangle inside an image: top-left corner and size, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Copies `rect` of every channel into `out` (`channels * rect.height * rect.width` values).
pub fn crop(image: &[f32], shape: ImageShape, rect: Rect, out: &mut [f32]) {
    let plane = shape.height * shape.width;
    let mut o = 0;
    for c in 0..shape.channels {
        for y in rect.top..rect.top + rect.height {
            let row = c * plane + y * shape.width + rect.left;
            out[o..o + rect.width].copy_from_slice(&image[row..row + rect.width]);
            o += rect.width;
        }
    }
}

/// Resamples `rect` of the image to `out_h x out_w` with bilinear interpolation (pixel centres
/// aligned, as torchvision's `resize` with `align_corners=False`).
pub fn resize_bilinear(
    image: &[f32],
    shape: ImageShape,
    rect: Rect,
    out_h: usize,
    out_w: usize,
    out: &mut [f32],
) {
    let plane = shape.height * shape.width;
    let scale_y = rect.height as f32 / out_h as f32;
    let scale_x = rect.width as f32 / out_w as f32;
    // The horizontal taps are the same for every row and channel: compute them once.
    let taps_x: Vec<(usize, usize, f32)> = (0..out_w)
        .map(|x| axis_tap(x, scale_x, rect.left, rect.width))
        .collect();
    for y in 0..out_h {
        let (y0, y1, fy) = axis_tap(y, scale_y, rect.top, rect.height);
        for c in 0..shape.channels {
            let r0 = &image[c * plane + y0 * shape.width..][..shape.width];
            let r1 = &image[c * plane + y1 * shape.width..][..shape.width];
            let dst = &mut out[(c * out_h + y) * out_w..][..out_w];
            for (d, &(x0, x1, fx)) in dst.iter_mut().zip(&taps_x) {
                let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
                *d = top + (bottom - top) * fy;
            }
        }
    }
}

/// The two source pixels and the weight of the second for output coordinate `o`.
fn axis_tap(o: usize, scale: f32, start: usize, len: usize) -> (usize, usize, f32) {
    let src = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
    let i0 = src.floor() as usize;
    let i1 = (i0 + 1).min(len - 1);
    (start + i0, start + i1, src - i0 as f32)
}

/// Mirrors every row in place.
pub fn flip_horizontal(image: &mut [f32], width: usize) {
    for row in image.chunks_exact_mut(width) {
        row.reverse();
    }
}

/// Separable Gaussian blur with standard deviation `sigma` and the given odd kernel size; borders
/// repeat the edge pixel. `scratch` must hold one image.
pub fn gaussian_blur(
    image: &mut [f32],
    shape: ImageShape,
    sigma: f32,
    kernel: usize,
    scratch: &mut [f32],
) {
    let radius = (kernel / 2) as isize;
    let mut weights: Vec<f32> = (-radius..=radius)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= total);
    let plane = shape.height * shape.width;
    for c in 0..shape.channels {
        let image = &mut image[c * plane..(c + 1) * plane];
        let tmp = &mut scratch[c * plane..(c + 1) * plane];
        // Along each row, then along each column.
        let (h, w) = (shape.height, shape.width);
        blur_pass(
            image,
            tmp,
            &weights,
            Lines {
                count: h,
                stride: w,
                len: w,
                step: 1,
            },
        );
        blur_pass(
            tmp,
            image,
            &weights,
            Lines {
                count: w,
                stride: 1,
                len: h,
                step: w,
            },
        );
    }
}

/// `count` lines of `len` values: line `l`'s value `i` is at `l * stride + i * step`.
struct Lines {
    count: usize,
    stride: usize,
    len: usize,
    step: usize,
}

/// One pass of a separable filter along every line; borders repeat the edge value.
fn blur_pass(src: &[f32], dst: &mut [f32], weights: &[f32], lines: Lines) {
    let radius = (weights.len() / 2) as isize;
    let last = lines.len as isize - 1;
    for l in 0..lines.count {
        let base = l * lines.stride;
        for i in 0..lines.len {
            let mut acc = 0.0;
            for (k, wt) in weights.iter().enumerate() {
                let j = (i as isize + k as isize - radius).clamp(0, last) as usize;
                acc += wt * src[base + j * lines.step];
            }
            dst[base + i * lines.step] = acc;
        }
    }
}

/// A standard normal sample (Box-Muller), so the crate needs no distribution library.
pub fn standard_normal(rng: &mut impl Rng) -> f32 {
    let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Adds Gaussian noise of standard deviation `std` to every value, keeping values in [0, 1].
pub fn add_gaussian_noise(image: &mut [f32], std: f32, rng: &mut impl Rng) {
    for v in image {
        *v = (*v + std * standard_normal(rng)).clamp(0.0, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(c: usize, h: usize, w: usize) -> ImageShape {
        ImageShape::new(c, h, w)
    }

    #[test]
    fn quarter_turn_is_counter_clockwise() {
        // [[a, b], [c, d]] turned 90 degrees counter-clockwise is [[b, d], [a, c]].
        let mut out = [0.0; 4];
        rotate_quarter_turns(&[1.0, 2.0, 3.0, 4.0], shape(1, 2, 2), 1, &mut out);
        assert_eq!(out, [2.0, 4.0, 1.0, 3.0]);
        rotate_quarter_turns(&[1.0, 2.0, 3.0, 4.0], shape(1, 2, 2), 3, &mut out);
        assert_eq!(out, [3.0, 1.0, 4.0, 2.0]);
    }

    #[test]
    fn resizing_the_whole_image_to_its_own_size_is_the_identity() {
        let s = shape(2, 3, 4);
        let image: Vec<f32> = (0..s.len()).map(|v| v as f32).collect();
        let mut out = vec![0.0; s.len()];
        let all = Rect {
            top: 0,
            left: 0,
            height: 3,
            width: 4,
        };
        resize_bilinear(&image, s, all, 3, 4, &mut out);
        assert_eq!(out, image);
    }

    #[test]
    fn blur_keeps_a_constant_image_constant() {
        let s = shape(1, 5, 5);
        let mut image = vec![0.25; 25];
        let mut scratch = vec![0.0; 25];
        gaussian_blur(&mut image, s, 1.5, 5, &mut scratch);
        assert!(image.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }

    #[test]
    fn blur_spreads_an_impulse_symmetrically_and_keeps_its_mass() {
        let s = shape(1, 7, 9);
        let mut image = vec![0.0; s.len()];
        image[3 * 9 + 4] = 1.0;
        let mut scratch = vec![0.0; s.len()];
        gaussian_blur(&mut image, s, 1.0, 3, &mut scratch);
        let at = |y: usize, x: usize| image[y * 9 + x];
        assert!((image.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((at(3, 3) - at(3, 5)).abs() < 1e-7 && (at(2, 4) - at(4, 4)).abs() < 1e-7);
        assert!(
            (at(2, 4) - at(3, 3)).abs() < 1e-7,
            "the same weights across and down"
        );
        assert!(at(3, 4) > at(3, 3) && at(3, 3) > at(2, 3));
        assert_eq!(at(0, 0), 0.0);
    }

    #[test]
    fn crop_takes_the_rectangle_of_every_channel() {
        let s = shape(2, 2, 3);
        let image: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut out = vec![0.0; 4];
        let rect = Rect {
            top: 1,
            left: 1,
            height: 1,
            width: 2,
        };
        crop(&image, s, rect, &mut out);
        assert_eq!(out, [4.0, 5.0, 10.0, 11.0]);
    }
}
