//! Masked patches (MAE, He et al. 2021): split each image into p x p patches and hide a ratio of
//! them, chosen uniformly at random per image. A model encodes only the visible patches and is
//! scored on the masked ones.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{PretextTask, Samples, invalid};
use crate::dataset::ImageShape;
use crate::error::Result;

/// Masking settings. Defaults: 4 x 4 patches, 75% masked, raw (not per-patch normalised) targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskingConfig {
    /// Patch side in pixels; must divide the image's height and width.
    pub patch_size: usize,
    /// Fraction of patches masked, in (0, 1); `round(ratio * patches)` are masked per image.
    pub mask_ratio: f32,
    /// Targets normalised per patch (zero mean, unit variance), as MAE's `norm_pix_loss`.
    pub normalize_targets: bool,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        Self {
            patch_size: 4,
            mask_ratio: 0.75,
            normalize_targets: false,
        }
    }
}

impl MaskingConfig {
    pub fn build(&self, shape: ImageShape) -> Result<MaskingTask> {
        let task = "mae";
        if shape.is_empty() {
            return Err(invalid(task, format!("image shape {shape} has no pixels")));
        }
        let p = self.patch_size;
        if p == 0 || !shape.height.is_multiple_of(p) || !shape.width.is_multiple_of(p) {
            return Err(invalid(
                task,
                format!(
                    "patch_size = {p} must be positive and divide the {}x{} images",
                    shape.height, shape.width
                ),
            ));
        }
        if !(self.mask_ratio > 0.0 && self.mask_ratio < 1.0) {
            return Err(invalid(
                task,
                format!(
                    "mask_ratio = {} must lie strictly between 0 and 1",
                    self.mask_ratio
                ),
            ));
        }
        let patches = (shape.height / p) * (shape.width / p);
        let masked = (self.mask_ratio as f64 * patches as f64).round() as usize;
        if masked == 0 || masked == patches {
            return Err(invalid(
                task,
                format!(
                    "mask_ratio = {} of {patches} patches masks {masked}, leaving no {} patch",
                    self.mask_ratio,
                    if masked == 0 { "masked" } else { "visible" }
                ),
            ));
        }
        Ok(MaskingTask {
            shape,
            patch: p,
            patches,
            masked,
            normalize_targets: self.normalize_targets,
        })
    }
}

/// Patchifies and masks. Patches are numbered row-major over the grid; each patch is flattened
/// channel, then row, then column (`[C, p, p]`).
#[derive(Debug, Clone)]
pub struct MaskingTask {
    shape: ImageShape,
    patch: usize,
    patches: usize,
    masked: usize,
    normalize_targets: bool,
}

impl MaskingTask {
    pub fn num_patches(&self) -> usize {
        self.patches
    }

    pub fn num_masked(&self) -> usize {
        self.masked
    }

    pub fn num_visible(&self) -> usize {
        self.patches - self.masked
    }

    pub fn patch_size(&self) -> usize {
        self.patch
    }

    /// Values per flattened patch.
    pub fn patch_dim(&self) -> usize {
        self.shape.channels * self.patch * self.patch
    }

    /// Splits one CHW image into its patches, `[patches, patch_dim]`, appended to `out`.
    pub fn patchify(&self, image: &[f32], out: &mut Vec<f32>) {
        let (p, s) = (self.patch, self.shape);
        let plane = s.height * s.width;
        for gy in 0..s.height / p {
            for gx in 0..s.width / p {
                for c in 0..s.channels {
                    for y in 0..p {
                        let row = c * plane + (gy * p + y) * s.width + gx * p;
                        out.extend_from_slice(&image[row..row + p]);
                    }
                }
            }
        }
    }

    /// The inverse of [`Self::patchify`]: patches `[patches, patch_dim]` back to one CHW image.
    pub fn unpatchify(&self, patches: &[f32]) -> Vec<f32> {
        let (p, s) = (self.patch, self.shape);
        let plane = s.height * s.width;
        let mut image = vec![0.0; s.len()];
        let mut values = patches.chunks_exact(p);
        for gy in 0..s.height / p {
            for gx in 0..s.width / p {
                for c in 0..s.channels {
                    for y in 0..p {
                        let row = c * plane + (gy * p + y) * s.width + gx * p;
                        if let Some(v) = values.next() {
                            image[row..row + p].copy_from_slice(v);
                        }
                    }
                }
            }
        }
        image
    }
}

/// Masked images on the host. Index lists hold patch numbers; each image's visible and masked
/// lists are sorted and together hold every patch once.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedBatch {
    pub images: usize,
    pub num_patches: usize,
    pub patch_dim: usize,
    /// The visible patches' pixels (normalised images), `[images, visible, patch_dim]`.
    pub visible: Vec<f32>,
    /// `[images, visible]`.
    pub visible_indices: Vec<u32>,
    /// `[images, masked]`.
    pub masked_indices: Vec<u32>,
    /// 1 where a patch is masked, 0 where visible, `[images, patches]`.
    pub mask: Vec<f32>,
    /// Where each patch sits in its image's visible-then-masked sequence, `[images, patches]`:
    /// a decoder that appends mask tokens to the visible tokens gathers with it to restore
    /// patch order.
    pub restore: Vec<u32>,
    /// What to reconstruct for every patch (per-patch normalised when asked),
    /// `[images, patches, patch_dim]`.
    pub targets: Vec<f32>,
}

/// [`MaskedBatch`] on a device.
#[derive(Debug, Clone)]
pub struct MaskedTensors {
    pub visible: Tensor<3>,
    pub visible_indices: Tensor<2, Int>,
    pub masked_indices: Tensor<2, Int>,
    pub mask: Tensor<2>,
    pub restore: Tensor<2, Int>,
    pub targets: Tensor<3>,
}

impl MaskedBatch {
    pub fn num_visible(&self) -> usize {
        self.visible_indices.len() / self.images.max(1)
    }

    pub fn num_masked(&self) -> usize {
        self.masked_indices.len() / self.images.max(1)
    }

    pub fn into_tensors(self, device: &Device) -> MaskedTensors {
        let (b, n, d) = (self.images, self.num_patches, self.patch_dim);
        let (v, m) = (self.num_visible(), self.num_masked());
        let ints = |values: Vec<u32>, k: usize| {
            let values: Vec<i64> = values.into_iter().map(i64::from).collect();
            Tensor::from_data(TensorData::new(values, [b, k]), device)
        };
        MaskedTensors {
            visible: Tensor::from_data(TensorData::new(self.visible, [b, v, d]), device),
            visible_indices: ints(self.visible_indices, v),
            masked_indices: ints(self.masked_indices, m),
            mask: Tensor::from_data(TensorData::new(self.mask, [b, n]), device),
            restore: ints(self.restore, n),
            targets: Tensor::from_data(TensorData::new(self.targets, [b, n, d]), device),
        }
    }
}

impl PretextTask for MaskingTask {
    type Batch = MaskedBatch;

    fn input_shape(&self) -> ImageShape {
        self.shape
    }

    fn make_batch(&self, samples: &Samples<'_>) -> MaskedBatch {
        let (n, d) = (self.patches, self.patch_dim());
        let b = samples.len();
        let mut batch = MaskedBatch {
            images: b,
            num_patches: n,
            patch_dim: d,
            visible: Vec::with_capacity(b * self.num_visible() * d),
            visible_indices: Vec::with_capacity(b * self.num_visible()),
            masked_indices: Vec::with_capacity(b * self.masked),
            mask: Vec::with_capacity(b * n),
            restore: Vec::with_capacity(b * n),
            targets: Vec::with_capacity(b * n * d),
        };
        let mut image = Vec::with_capacity(self.shape.len());
        let mut patches = Vec::with_capacity(n * d);
        let mut order: Vec<u32> = Vec::with_capacity(n);
        for (i, bytes) in samples.images.iter().enumerate() {
            image.clear();
            samples
                .norm
                .extend_normalized(bytes, self.shape, &mut image);
            patches.clear();
            self.patchify(&image, &mut patches);

            order.clear();
            order.extend(0..n as u32);
            order.shuffle(&mut samples.rng(i));
            let (masked, visible) = order.split_at_mut(self.masked);
            masked.sort_unstable();
            visible.sort_unstable();
            batch.masked_indices.extend_from_slice(masked);
            batch.visible_indices.extend_from_slice(visible);
            let start = batch.mask.len();
            batch.mask.resize(start + n, 0.0);
            batch.restore.resize(start + n, 0);
            for &m in masked.iter() {
                batch.mask[start + m as usize] = 1.0;
            }
            for (position, &p) in visible.iter().chain(masked.iter()).enumerate() {
                batch.restore[start + p as usize] = position as u32;
            }
            for &v in visible.iter() {
                batch
                    .visible
                    .extend_from_slice(&patches[v as usize * d..(v as usize + 1) * d]);
            }
            if self.normalize_targets {
                for patch in patches.chunks_exact_mut(d) {
                    normalize_patch(patch);
                }
            }
            batch.targets.extend_from_slice(&patches);
        }
        batch
    }
}

/// Zero mean and unit variance within a patch, with MAE's unbiased variance and its eps of 1e-6
/// (which keeps flat patches finite).
fn normalize_patch(patch: &mut [f32]) {
    let n = patch.len() as f32;
    let mean = patch.iter().sum::<f32>() / n;
    let var = patch.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / (n - 1.0).max(1.0);
    let scale = 1.0 / (var + 1e-6).sqrt();
    patch.iter_mut().for_each(|v| *v = (*v - mean) * scale);
}
