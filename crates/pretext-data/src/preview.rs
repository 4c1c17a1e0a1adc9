//! Pictures of what a pretext task asks: a grid with one row per sample image, showing the
//! task's inputs and targets, and its label as a number under each panel where it has one.

use std::path::Path;

use image::{ImageFormat, Rgb, RgbImage};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::dataset::{ImageSet, ImageShape, Normalization};
use crate::error::{DataError, Result};
use crate::npy::write_atomic;
use crate::tasks::{
    Corruption, DenoiseConfig, JigsawBatch, JigsawTask, MaskedBatch, MaskingTask, PretextTask,
    RotationConfig, RotationMode, Samples, TaskConfig, ViewsTask,
};

const BACKGROUND: Rgb<u8> = Rgb([32, 32, 40]);
const TEXT: Rgb<u8> = Rgb([250, 210, 80]);
/// Masked MAE patches are drawn in this colour.
const MASKED: Rgb<u8> = Rgb([150, 40, 60]);
const GAP: u32 = 6;
/// Pixels per font pixel of the labels.
const FONT_SCALE: u32 = 2;

/// A rendered preview and a sentence saying how to read it.
pub struct Preview {
    pub image: RgbImage,
    pub legend: String,
}

impl Preview {
    /// Writes the picture as PNG, atomically (no half-written file on failure).
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let mut bytes = std::io::Cursor::new(Vec::new());
        self.image
            .write_to(&mut bytes, ImageFormat::Png)
            .map_err(|e| DataError::malformed(path, format!("cannot encode PNG: {e}")))?;
        write_atomic(path, bytes.get_ref())
    }
}

/// One panel of a row: an image (normalised values, or `None` for a masked pixel) and a label.
struct Panel {
    shape: ImageShape,
    values: Vec<Option<f32>>,
    label: Option<String>,
}

impl Panel {
    fn new(shape: ImageShape, values: &[f32], label: Option<String>) -> Self {
        Self {
            shape,
            values: values.iter().map(|&v| Some(v)).collect(),
            label,
        }
    }
}

/// Renders `samples` images of `set` (chosen with `seed`) through `task`, each pixel drawn as a
/// `scale` x `scale` square.
pub fn render(
    task: &TaskConfig,
    set: &ImageSet,
    norm: &Normalization,
    samples: usize,
    scale: u32,
    seed: u64,
) -> Result<Preview> {
    if samples == 0 || scale == 0 || scale > 64 {
        return Err(DataError::InvalidConfig(format!(
            "a preview needs at least one sample and a scale in 1..=64 (got {samples} samples, scale {scale})"
        )));
    }
    if set.is_empty() {
        return Err(DataError::InvalidConfig("the data set is empty".into()));
    }
    let mut order: Vec<usize> = (0..set.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order.truncate(samples);
    let s = Samples::of(set, &order, norm, seed, 0);
    let shape = set.shape;
    let originals: Vec<Vec<f32>> = s
        .images
        .iter()
        .map(|bytes| {
            let mut v = Vec::with_capacity(shape.len());
            norm.extend_normalized(bytes, shape, &mut v);
            v
        })
        .collect();

    let (rows, legend): (Vec<Vec<Panel>>, String) = match task {
        // Every rotation of each image, whichever mode training uses.
        TaskConfig::Rotation(_) => {
            let task = RotationConfig {
                mode: RotationMode::AllFour,
            }
            .build(shape)?;
            let batch = task.make_batch(&s);
            let rows = (0..s.len())
                .map(|i| {
                    (0..4)
                        .map(|r| {
                            let e = i * 4 + r;
                            let degrees = batch.targets[e] * 90;
                            Panel::new(shape, batch.image(e), Some(degrees.to_string()))
                        })
                        .collect()
                })
                .collect();
            (
                rows,
                "rotation: each row holds one image's four rotations; the number is the angle \
                 in degrees counter-clockwise (labels 0-3)"
                    .into(),
            )
        }
        TaskConfig::Jigsaw(config) => {
            let task = config.build(shape)?;
            let batch = task.make_batch(&s);
            let rows = (0..s.len())
                .map(|i| jigsaw_row(&task, &originals[i], shape, &batch, i))
                .collect();
            (
                rows,
                format!(
                    "jigsaw: left, the crop; right, its tiles in shuffled order; the number is \
                     the permutation label (of {}, minimum Hamming distance {})",
                    task.permutations().len(),
                    task.permutations().min_hamming
                ),
            )
        }
        TaskConfig::Mae(config) => {
            let task = config.build(shape)?;
            let batch = task.make_batch(&s);
            let rows = (0..s.len())
                .map(|i| mae_row(&task, &originals[i], shape, &batch, i))
                .collect();
            (
                rows,
                format!(
                    "mae: left, the image; right, what the encoder sees ({} of {} patches; \
                     masked ones in red); the number is the masked count",
                    task.num_visible(),
                    task.num_patches()
                ),
            )
        }
        TaskConfig::Simclr(config)
        | TaskConfig::Byol(config)
        | TaskConfig::MocoV3(config)
        | TaskConfig::Vicreg(config)
        | TaskConfig::BarlowTwins(config) => {
            let method = task.kind();
            let task: ViewsTask = config.build(shape)?;
            let batch = task.make_batch(&s);
            let o = task.output_shape();
            let rows = (0..s.len())
                .map(|i| {
                    vec![
                        Panel::new(shape, &originals[i], None),
                        Panel::new(o, &batch.first[i * o.len()..(i + 1) * o.len()], None),
                        Panel::new(o, &batch.second[i * o.len()..(i + 1) * o.len()], None),
                    ]
                })
                .collect();
            (
                rows,
                format!(
                    "{}: left, the image; then its two augmented views, a positive pair",
                    method
                ),
            )
        }
        TaskConfig::Denoise(_) | TaskConfig::Autoencoder => {
            let config = match task {
                TaskConfig::Denoise(c) => c.clone(),
                _ => DenoiseConfig::autoencoder(),
            };
            let task = config.build(shape)?;
            let batch = task.make_batch(&s);
            let n = shape.len();
            let rows = (0..s.len())
                .map(|i| {
                    vec![
                        Panel::new(shape, &batch.inputs[i * n..(i + 1) * n], None),
                        Panel::new(shape, &batch.targets[i * n..(i + 1) * n], None),
                    ]
                })
                .collect();
            (
                rows,
                format!(
                    "{}: left, the input; right, the target to reconstruct",
                    if config.corruption == Corruption::None {
                        "autoencoder"
                    } else {
                        "denoise"
                    }
                ),
            )
        }
    };
    Ok(Preview {
        image: draw(&rows, norm, scale),
        legend,
    })
}

/// The crop, then the shuffled tiles laid out on the grid with gaps between them.
fn jigsaw_row(
    task: &JigsawTask,
    original: &[f32],
    shape: ImageShape,
    batch: &JigsawBatch,
    i: usize,
) -> Vec<Panel> {
    let rect = task.crop_rect();
    let crop_shape = ImageShape::new(shape.channels, rect.height, rect.width);
    let mut crop = vec![0.0; crop_shape.len()];
    crate::pixels::crop(original, shape, rect, &mut crop);

    let g = task.grid();
    let ts = task.tile_shape();
    let side = g * ts.height + (g - 1);
    let grid_shape = ImageShape::new(shape.channels, side, side);
    let mut grid = vec![None; grid_shape.len()];
    for position in 0..g * g {
        let tile = &batch.tiles[(i * g * g + position) * ts.len()..][..ts.len()];
        let (top, left) = (
            (position / g) * (ts.height + 1),
            (position % g) * (ts.width + 1),
        );
        for c in 0..shape.channels {
            for y in 0..ts.height {
                for x in 0..ts.width {
                    grid[(c * side + top + y) * side + left + x] =
                        Some(tile[(c * ts.height + y) * ts.width + x]);
                }
            }
        }
    }
    vec![
        Panel::new(crop_shape, &crop, None),
        Panel {
            shape: grid_shape,
            values: grid,
            label: Some(batch.targets[i].to_string()),
        },
    ]
}

/// The image, then only its visible patches.
fn mae_row(
    task: &MaskingTask,
    original: &[f32],
    shape: ImageShape,
    batch: &MaskedBatch,
    i: usize,
) -> Vec<Panel> {
    let d = task.patch_dim();
    let v = task.num_visible();
    let mut patches = Vec::with_capacity(task.num_patches() * d);
    task.patchify(original, &mut patches);
    let mut masked = vec![false; task.num_patches()];
    for &m in &batch.masked_indices[i * task.num_masked()..(i + 1) * task.num_masked()] {
        masked[m as usize] = true;
    }
    // Mark masked pixels with NaN through unpatchify, then turn them into `None`.
    for (p, patch) in patches.chunks_exact_mut(d).enumerate() {
        if masked[p] {
            patch.fill(f32::NAN);
        }
    }
    let seen = task.unpatchify(&patches);
    debug_assert_eq!(batch.visible.len() / batch.images.max(1), v * d);
    vec![
        Panel::new(shape, original, None),
        Panel {
            shape,
            values: seen
                .iter()
                .map(|&x| if x.is_nan() { None } else { Some(x) })
                .collect(),
            label: Some(task.num_masked().to_string()),
        },
    ]
}

fn draw(rows: &[Vec<Panel>], norm: &Normalization, scale: u32) -> RgbImage {
    let label_h = 5 * FONT_SCALE + 4;
    let row_h = |row: &Vec<Panel>| {
        row.iter()
            .map(|p| p.shape.height as u32 * scale)
            .max()
            .unwrap_or(0)
            + label_h
    };
    let row_w = |row: &Vec<Panel>| {
        row.iter()
            .map(|p| p.shape.width as u32 * scale + GAP)
            .sum::<u32>()
            + GAP
    };
    let width = rows.iter().map(row_w).max().unwrap_or(GAP);
    let height = rows.iter().map(|r| row_h(r) + GAP).sum::<u32>() + GAP;
    let mut img = RgbImage::from_pixel(width, height, BACKGROUND);
    let mut y0 = GAP;
    for row in rows {
        let mut x0 = GAP;
        for panel in row {
            draw_panel(&mut img, panel, norm, scale, x0, y0);
            if let Some(label) = &panel.label {
                let y = y0 + panel.shape.height as u32 * scale + 3;
                draw_text(&mut img, label, x0, y);
            }
            x0 += panel.shape.width as u32 * scale + GAP;
        }
        y0 += row_h(row) + GAP;
    }
    img
}

fn draw_panel(
    img: &mut RgbImage,
    panel: &Panel,
    norm: &Normalization,
    scale: u32,
    x0: u32,
    y0: u32,
) {
    let s = panel.shape;
    let plane = s.height * s.width;
    // Back to [0, 1] for display; colour only when the image has three channels.
    let unit =
        |c: usize, v: Option<f32>| v.map(|v| (v * norm.std[c] + norm.mean[c]).clamp(0.0, 1.0));
    for y in 0..s.height {
        for x in 0..s.width {
            let at = y * s.width + x;
            let colour = if s.channels == 3 {
                let rgb: Option<Vec<f32>> = (0..3)
                    .map(|c| unit(c, panel.values[c * plane + at]))
                    .collect();
                rgb.map(|v| {
                    Rgb([
                        (v[0] * 255.0) as u8,
                        (v[1] * 255.0) as u8,
                        (v[2] * 255.0) as u8,
                    ])
                })
            } else {
                unit(0, panel.values[at]).map(|v| {
                    let g = (v * 255.0).round() as u8;
                    Rgb([g, g, g])
                })
            };
            let colour = colour.unwrap_or(MASKED);
            for dy in 0..scale {
                for dx in 0..scale {
                    img.put_pixel(
                        x0 + x as u32 * scale + dx,
                        y0 + y as u32 * scale + dy,
                        colour,
                    );
                }
            }
        }
    }
}

/// Digits in a 3 x 5 pixel font, one row of three bits per line.
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b001, 0b001, 0b001],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

fn draw_text(img: &mut RgbImage, text: &str, x0: u32, y0: u32) {
    let mut x = x0;
    for ch in text.chars() {
        if let Some(d) = ch.to_digit(10) {
            for (row, bits) in DIGITS[d as usize].iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        for dy in 0..FONT_SCALE {
                            for dx in 0..FONT_SCALE {
                                let (px, py) =
                                    (x + col * FONT_SCALE + dx, y0 + row as u32 * FONT_SCALE + dy);
                                if px < img.width() && py < img.height() {
                                    img.put_pixel(px, py, TEXT);
                                }
                            }
                        }
                    }
                }
            }
        }
        x += 4 * FONT_SCALE;
    }
}
