//! Contrastive views (SimCLR, Chen et al. 2020): two independently augmented views of every
//! image. Augmentations run on the [0, 1] pixel scale, in SimCLR's order: random resized crop,
//! horizontal flip, brightness/contrast jitter, Gaussian blur, then optional Gaussian noise;
//! the views are normalised last.

use rand::Rng;
use serde::{Deserialize, Serialize};

use burn::tensor::{Device, Tensor, TensorData};

use super::{PretextTask, Samples, TaskKind, check_probability, check_range, invalid};
use crate::dataset::{ImageShape, Normalization};
use crate::error::Result;
use crate::pixels::{Rect, add_gaussian_noise, flip_horizontal, gaussian_blur, resize_bilinear};

/// Augmentation settings; the defaults follow SimCLR, scaled for small grey images (no colour
/// saturation or hue, which mean nothing for one channel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewsConfig {
    /// Output side lengths `[height, width]`; the input size when absent.
    pub size: Option<[usize; 2]>,
    /// Crop area as a fraction of the image, `[low, high]` (default 0.2 to 1.0).
    pub crop_scale: [f32; 2],
    /// Crop aspect ratio width / height, `[low, high]`, drawn log-uniformly (default 3/4 to 4/3).
    pub crop_ratio: [f32; 2],
    /// Probability of a horizontal flip (default 0.5).
    pub flip_prob: f32,
    /// Probability of brightness and contrast jitter (default 0.8).
    pub jitter_prob: f32,
    /// Brightness factor drawn from `[1 - b, 1 + b]` (default 0.4).
    pub brightness: f32,
    /// Contrast factor drawn from `[1 - c, 1 + c]` (default 0.4).
    pub contrast: f32,
    /// Probability of a Gaussian blur (default 0.5).
    pub blur_prob: f32,
    /// Blur standard deviation in pixels, `[low, high]` (default 0.1 to 2.0).
    pub blur_sigma: [f32; 2],
    /// Probability of additive Gaussian noise (default 0: off).
    pub noise_prob: f32,
    /// Noise standard deviation on the [0, 1] scale (default 0.1).
    pub noise_std: f32,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        Self {
            size: None,
            crop_scale: [0.2, 1.0],
            crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
            flip_prob: 0.5,
            jitter_prob: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            blur_prob: 0.5,
            blur_sigma: [0.1, 2.0],
            noise_prob: 0.0,
            noise_std: 0.1,
        }
    }
}

impl ViewsConfig {
    /// The settings' own checks, which need no image: sizes, ranges and probabilities.
    pub fn validate(&self) -> Result<()> {
        let task = "simclr";
        if let Some([height, width]) = self.size.filter(|s| s.contains(&0)) {
            return Err(invalid(
                task,
                format!("size = [{height}, {width}] must be positive"),
            ));
        }
        check_range(task, "crop_scale", self.crop_scale, f32::MIN_POSITIVE)?;
        if self.crop_scale[1] > 1.0 {
            return Err(invalid(
                task,
                "crop_scale cannot exceed 1 (the whole image)",
            ));
        }
        check_range(task, "crop_ratio", self.crop_ratio, f32::MIN_POSITIVE)?;
        check_range(task, "blur_sigma", self.blur_sigma, f32::MIN_POSITIVE)?;
        for (name, p) in [
            ("flip_prob", self.flip_prob),
            ("jitter_prob", self.jitter_prob),
            ("blur_prob", self.blur_prob),
            ("noise_prob", self.noise_prob),
        ] {
            check_probability(task, name, p)?;
        }
        for (name, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("noise_std", self.noise_std),
        ] {
            if !(v.is_finite() && v >= 0.0) || (name != "noise_std" && v > 1.0) {
                return Err(invalid(task, format!("{name} = {v} is out of range")));
            }
        }
        Ok(())
    }

    pub fn build(&self, shape: ImageShape) -> Result<ViewsTask> {
        if shape.is_empty() {
            return Err(invalid(
                "simclr",
                format!("image shape {shape} has no pixels"),
            ));
        }
        self.validate()?;
        let [height, width] = self.size.unwrap_or([shape.height, shape.width]);
        // SimCLR's kernel is about a tenth of the image side, odd, at least 3.
        let kernel = (height.min(width) / 10) | 1;
        Ok(ViewsTask {
            input: shape,
            output: ImageShape::new(shape.channels, height, width),
            kernel: kernel.max(3),
            config: self.clone(),
            method: TaskKind::Simclr,
        })
    }
}

/// Buffers one image's views are made in: the image on the [0, 1] scale, and the blur's.
pub(super) struct ViewWork {
    unit: Vec<f32>,
    scratch: Vec<f32>,
}

/// Makes two augmented views of each image.
#[derive(Debug, Clone)]
pub struct ViewsTask {
    input: ImageShape,
    output: ImageShape,
    kernel: usize,
    config: ViewsConfig,
    /// The method the views are for (SimCLR unless told otherwise): the views are the same,
    /// the model that learns from them differs.
    method: TaskKind,
}

/// Two views per image on the host: `first[i]` and `second[i]` come from the same image.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewsBatch {
    pub shape: ImageShape,
    pub first: Vec<f32>,
    pub second: Vec<f32>,
}

/// [`ViewsBatch`] on a device, each `[batch, channels, height, width]`.
#[derive(Debug, Clone)]
pub struct ViewsTensors {
    pub first: Tensor<4>,
    pub second: Tensor<4>,
}

impl ViewsBatch {
    pub fn len(&self) -> usize {
        self.first.len() / self.shape.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    pub fn into_tensors(self, device: &Device) -> ViewsTensors {
        let s = self.shape;
        let dims = [self.len(), s.channels, s.height, s.width];
        ViewsTensors {
            first: Tensor::from_data(TensorData::new(self.first, dims), device),
            second: Tensor::from_data(TensorData::new(self.second, dims), device),
        }
    }
}

impl ViewsTask {
    pub fn output_shape(&self) -> ImageShape {
        self.output
    }

    /// The same views for another two-view method.
    pub fn for_method(mut self, method: TaskKind) -> Self {
        self.method = method;
        self
    }

    pub fn method(&self) -> TaskKind {
        self.method
    }

    /// Writes a normalised augmented view of the image `bytes` into each of `outs` in turn
    /// (each of the output's size), drawing from `rng`. `work` is the caller's, reused from
    /// image to image.
    pub(super) fn normalized_views(
        &self,
        bytes: &[u8],
        rng: &mut impl Rng,
        norm: &Normalization,
        outs: &mut [&mut [f32]],
        work: &mut ViewWork,
    ) {
        for (u, &b) in work.unit.iter_mut().zip(bytes) {
            *u = b as f32 / 255.0;
        }
        for out in outs.iter_mut() {
            self.view(&work.unit, rng, out, &mut work.scratch);
            norm.normalize_unit(out, self.output);
        }
    }

    /// Working space for [`Self::normalized_views`].
    pub(super) fn work(&self) -> ViewWork {
        ViewWork {
            unit: vec![0.0; self.input.len()],
            scratch: vec![0.0; self.output.len()],
        }
    }

    /// Writes one augmented view of `unit` (an image on the [0, 1] scale) into `out`.
    fn view(&self, unit: &[f32], rng: &mut impl Rng, out: &mut [f32], scratch: &mut [f32]) {
        let c = &self.config;
        let rect = self.random_crop(rng);
        resize_bilinear(
            unit,
            self.input,
            rect,
            self.output.height,
            self.output.width,
            out,
        );
        if rng.random::<f32>() < c.flip_prob {
            flip_horizontal(out, self.output.width);
        }
        if rng.random::<f32>() < c.jitter_prob {
            let b = rng.random_range(1.0 - c.brightness..=1.0 + c.brightness);
            let k = rng.random_range(1.0 - c.contrast..=1.0 + c.contrast);
            // Brightness scales; contrast moves pixels towards or away from the image mean.
            let mean = out.iter().sum::<f32>() / out.len() as f32 * b;
            for v in out.iter_mut() {
                *v = ((*v * b - mean) * k + mean).clamp(0.0, 1.0);
            }
        }
        if rng.random::<f32>() < c.blur_prob {
            let sigma = rng.random_range(c.blur_sigma[0]..=c.blur_sigma[1]);
            gaussian_blur(out, self.output, sigma, self.kernel, scratch);
        }
        if rng.random::<f32>() < c.noise_prob {
            add_gaussian_noise(out, c.noise_std, rng);
        }
    }

    /// torchvision's `RandomResizedCrop` parameters: ten tries at a random area and aspect
    /// ratio, then the largest centred crop within the ratio range.
    fn random_crop(&self, rng: &mut impl Rng) -> Rect {
        let (h, w) = (self.input.height, self.input.width);
        let area = (h * w) as f32;
        let [s0, s1] = self.config.crop_scale;
        let [r0, r1] = self.config.crop_ratio;
        for _ in 0..10 {
            let target = area * rng.random_range(s0..=s1);
            let ratio = rng.random_range(r0.ln()..=r1.ln()).exp();
            let cw = (target * ratio).sqrt().round() as usize;
            let ch = (target / ratio).sqrt().round() as usize;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                return Rect {
                    top: rng.random_range(0..=h - ch),
                    left: rng.random_range(0..=w - cw),
                    height: ch,
                    width: cw,
                };
            }
        }
        let in_ratio = w as f32 / h as f32;
        let (ch, cw) = if in_ratio < r0 {
            (((w as f32 / r0).round() as usize).clamp(1, h), w)
        } else if in_ratio > r1 {
            (h, ((h as f32 * r1).round() as usize).clamp(1, w))
        } else {
            (h, w)
        };
        Rect {
            top: (h - ch) / 2,
            left: (w - cw) / 2,
            height: ch,
            width: cw,
        }
    }
}

impl PretextTask for ViewsTask {
    type Batch = ViewsBatch;

    fn input_shape(&self) -> ImageShape {
        self.input
    }

    fn make_batch(&self, samples: &Samples<'_>) -> ViewsBatch {
        let o = self.output.len();
        let mut first = vec![0.0; samples.len() * o];
        let mut second = vec![0.0; samples.len() * o];
        let mut work = self.work();
        let pairs = first.chunks_mut(o).zip(second.chunks_mut(o));
        for (i, (a, b)) in pairs.enumerate() {
            let (bytes, mut rng) = (samples.images[i], samples.rng(i));
            self.normalized_views(bytes, &mut rng, samples.norm, &mut [a, b], &mut work);
        }
        ViewsBatch {
            shape: self.output,
            first,
            second,
        }
    }
}
