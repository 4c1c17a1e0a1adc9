//! The linear probe: multinomial logistic regression on standardised frozen features, with L2
//! regularisation. Its strength and its number of iterations are chosen on a validation split
//! carved from the labelled training examples, never on the test split, by balanced accuracy;
//! and each class weighs the same in the loss however many examples it has, so with unbalanced
//! classes and few labels the probe does not settle on predicting the commonest class.
//!
//! Training is Adam on the device's matrix products (the gradient of the cross-entropy is written
//! out, so no autodiff graph is kept): full-batch up to `batch_size` examples, and on seeded
//! mini-batches of that size beyond, so fifty thousand examples of a few thousand features cost
//! a few passes over the data rather than one per iteration.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TrainError};

/// Settings of the probe. Defaults: L2 strengths 1e-5 to 1e-1 by decades, up to 300 Adam
/// iterations at learning rate 0.05 on batches of at most 1,024 examples, validation accuracy
/// checked every 10 iterations.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearProbe {
    pub l2: Vec<f32>,
    pub max_iterations: usize,
    pub lr: f32,
    pub eval_every: usize,
    pub batch_size: usize,
}

impl Default for LinearProbe {
    fn default() -> Self {
        Self {
            l2: vec![1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
            max_iterations: 300,
            lr: 0.05,
            eval_every: 10,
            batch_size: 1024,
        }
    }
}

/// The rows one Adam step sees: all of them, or the next mini-batch of a seeded order that is
/// reshuffled after each pass.
struct Batches {
    rows: usize,
    batch: usize,
    order: Vec<usize>,
    next: usize,
    rng: ChaCha8Rng,
}

impl Batches {
    fn new(rows: usize, batch: usize) -> Self {
        Self {
            rows,
            batch: batch.clamp(1, rows.max(1)),
            order: (0..rows).collect(),
            next: rows,
            rng: ChaCha8Rng::seed_from_u64(0x6c69_6e65_6172),
        }
    }

    fn is_full(&self) -> bool {
        self.batch >= self.rows
    }

    /// Indices of the next mini-batch.
    fn next_indices(&mut self) -> &[usize] {
        if self.next + self.batch > self.rows {
            self.order.shuffle(&mut self.rng);
            self.next = 0;
        }
        self.next += self.batch;
        &self.order[self.next - self.batch..self.next]
    }
}

/// Labelled features: `rows x dim` values, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Labelled<'a> {
    pub features: &'a [f32],
    pub labels: &'a [u32],
}

/// A fitted probe and how it was chosen.
#[derive(Debug, Clone)]
pub struct FittedLinearProbe {
    /// Standardisation from the training features.
    mean: Vec<f32>,
    scale: Vec<f32>,
    /// `[dim + 1, classes]`: weights with the bias as the last row.
    weights: Vec<f32>,
    dim: usize,
    classes: usize,
    pub l2: f32,
    pub iterations: usize,
    /// Balanced accuracy on the validation split at the chosen strength and iteration.
    pub validation_balanced_accuracy: f64,
}

impl LinearProbe {
    /// Fits on `train`, standardised with its own statistics, choosing the L2 strength and
    /// iteration count by balanced accuracy on `val`.
    pub fn fit(
        &self,
        train: Labelled<'_>,
        val: Labelled<'_>,
        dim: usize,
        classes: usize,
        device: &Device,
    ) -> Result<FittedLinearProbe> {
        self.fit_standardised_on(train.features, train, val, dim, classes, device)
    }

    /// [`Self::fit`] with the features standardised by the mean and variance of `reference`
    /// (`rows x dim`): with one or ten labels per class, the statistics of the unlabelled
    /// training images are far better estimates than those of the few labelled ones.
    pub fn fit_standardised_on(
        &self,
        reference: &[f32],
        train: Labelled<'_>,
        val: Labelled<'_>,
        dim: usize,
        classes: usize,
        device: &Device,
    ) -> Result<FittedLinearProbe> {
        let n = train.labels.len();
        if dim == 0 || n == 0 || train.features.len() != n * dim {
            return Err(TrainError::config(format!(
                "linear probe: {} feature values do not make {n} rows of {dim}",
                train.features.len()
            )));
        }
        if val.labels.is_empty() || val.features.len() != val.labels.len() * dim {
            return Err(TrainError::config(format!(
                "linear probe: the validation split is empty or misshapen ({} values for {} \
                     labels of {dim} features)",
                val.features.len(),
                val.labels.len()
            )));
        }
        if let Some(&bad) = train
            .labels
            .iter()
            .chain(val.labels)
            .find(|&&l| l as usize >= classes)
        {
            return Err(TrainError::config(format!(
                "linear probe: label {bad} is out of range for {classes} classes"
            )));
        }
        if reference.is_empty() || !reference.len().is_multiple_of(dim) {
            return Err(TrainError::config(format!(
                "linear probe: {} reference values do not make rows of {dim}",
                reference.len()
            )));
        }
        let (mean, scale) = standardisation(reference, dim);
        let x = design(train.features, &mean, &scale, dim, device);
        let xv = design(val.features, &mean, &scale, dim, device);
        let y = one_hot(train.labels, classes, device);
        let weight = class_weights(train.labels, classes, device);
        let mut best: Option<FittedLinearProbe> = None;
        for &l2 in &self.l2 {
            let (weights, iterations, score) = self.train_one(
                &x,
                &y,
                &weight,
                &xv,
                val.labels,
                l2,
                [dim, classes, n],
                device,
            );
            if best
                .as_ref()
                .is_none_or(|b| score > b.validation_balanced_accuracy)
            {
                best = Some(FittedLinearProbe {
                    mean: mean.clone(),
                    scale: scale.clone(),
                    weights,
                    dim,
                    classes,
                    l2,
                    iterations,
                    validation_balanced_accuracy: score,
                });
            }
        }
        best.ok_or_else(|| TrainError::config("linear probe: no L2 strength to try"))
    }

    /// Adam on one L2 strength, each row's loss scaled by `weight` (`[n, 1]`); returns the
    /// weights at the best validation balanced accuracy.
    #[allow(clippy::too_many_arguments)]
    fn train_one(
        &self,
        x: &Tensor<2>,
        y: &Tensor<2>,
        weight: &Tensor<2>,
        xv: &Tensor<2>,
        val_labels: &[u32],
        l2: f32,
        [dim, classes, n]: [usize; 3],
        device: &Device,
    ) -> (Vec<f32>, usize, f64) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let mut w = Tensor::<2>::zeros([dim + 1, classes], device);
        let mut m = w.zeros_like();
        let mut v = w.zeros_like();
        // The bias row is not regularised.
        let mut mask = vec![1.0f32; (dim + 1) * classes];
        mask[dim * classes..].fill(0.0);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [dim + 1, classes]), device);
        let xt = x.clone().transpose();
        let mut batches = Batches::new(n, self.batch_size);
        let mut best = (host(&w), 0, balanced(xv, &w, val_labels));
        for t in 1..=self.max_iterations {
            let (xb, xbt, yb, wb) = if batches.is_full() {
                (x.clone(), xt.clone(), y.clone(), weight.clone())
            } else {
                let chosen: Vec<i64> = batches.next_indices().iter().map(|&i| i as i64).collect();
                let rows = chosen.len();
                let index = Tensor::<1, Int>::from_data(TensorData::new(chosen, [rows]), device);
                let xb = x.clone().select(0, index.clone());
                let yb = y.clone().select(0, index.clone());
                (
                    xb.clone(),
                    xb.transpose(),
                    yb,
                    weight.clone().select(0, index),
                )
            };
            // The weighted mean of the rows' cross-entropies: sum_i w_i (p_i - y_i) / sum_i w_i.
            let total = wb.clone().sum().into_scalar::<f32>().max(f32::MIN_POSITIVE);
            let p = softmax(xb.matmul(w.clone()), 1);
            let grad = xbt.matmul((p - yb).mul(wb)).div_scalar(total)
                + w.clone().mul(mask.clone()).mul_scalar(l2);
            m = m.mul_scalar(b1) + grad.clone().mul_scalar(1.0 - b1);
            v = v.mul_scalar(b2) + grad.powi_scalar(2).mul_scalar(1.0 - b2);
            let m_hat = m.clone().div_scalar(1.0 - b1.powi(t as i32));
            let v_hat = v.clone().div_scalar(1.0 - b2.powi(t as i32));
            w = w - m_hat.div(v_hat.sqrt().add_scalar(eps)).mul_scalar(self.lr);
            if t % self.eval_every.max(1) == 0 || t == self.max_iterations {
                let score = balanced(xv, &w, val_labels);
                if score > best.2 {
                    best = (host(&w), t, score);
                }
            }
        }
        best
    }
}

/// A linear layer on raw (unstandardised) features: `logits = x · weight + bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearHead {
    /// `[dim, classes]`, row-major.
    pub weight: Vec<f32>,
    /// `[classes]`.
    pub bias: Vec<f32>,
}

impl FittedLinearProbe {
    /// The probe with its standardisation folded in, as one linear layer on raw features: the
    /// head fine-tuning starts from (linear probing, then fine-tuning, as Kumar et al. 2022).
    pub fn head(&self) -> LinearHead {
        let (dim, classes) = (self.dim, self.classes);
        let mut weight = vec![0f32; dim * classes];
        let mut bias = self.weights[dim * classes..].to_vec();
        for j in 0..dim {
            for c in 0..classes {
                // (x - m) s w = x (s w) - m s w
                let w = self.scale[j] * self.weights[j * classes + c];
                weight[j * classes + c] = w;
                bias[c] -= self.mean[j] * w;
            }
        }
        LinearHead { weight, bias }
    }

    /// Predicted classes of `features` (`rows x dim`).
    pub fn predict(&self, features: &[f32], device: &Device) -> Vec<u32> {
        let x = design(features, &self.mean, &self.scale, self.dim, device);
        let w = Tensor::<2>::from_data(
            TensorData::new(self.weights.clone(), [self.dim + 1, self.classes]),
            device,
        );
        predictions(&x, &w)
    }

    /// Fraction of `test` classified correctly.
    pub fn accuracy(&self, test: Labelled<'_>, device: &Device) -> f64 {
        let predicted = self.predict(test.features, device);
        crate::study::correct(&predicted, test.labels) as f64 / test.labels.len().max(1) as f64
    }
}

/// Per-feature mean and inverse standard deviation (constant features are left unscaled).
pub(crate) fn standardisation(features: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (features.len() / dim).max(1) as f64;
    let mut sum = vec![0f64; dim];
    let mut sum_sq = vec![0f64; dim];
    for row in features.chunks_exact(dim) {
        for (j, &v) in row.iter().enumerate() {
            sum[j] += v as f64;
            sum_sq[j] += (v as f64) * (v as f64);
        }
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let scale = sum_sq
        .iter()
        .zip(&sum)
        .map(|(s2, s)| {
            let var = (s2 / n - (s / n) * (s / n)).max(0.0);
            if var > 1e-12 {
                (1.0 / var.sqrt()) as f32
            } else {
                1.0
            }
        })
        .collect();
    (mean, scale)
}

/// Standardised features with a column of ones for the bias, `[rows, dim + 1]`.
fn design(features: &[f32], mean: &[f32], scale: &[f32], dim: usize, device: &Device) -> Tensor<2> {
    let rows = features.len() / dim;
    let mut out = Vec::with_capacity(rows * (dim + 1));
    for row in features.chunks_exact(dim) {
        out.extend(
            row.iter()
                .zip(mean.iter().zip(scale))
                .map(|(v, (m, s))| (v - m) * s),
        );
        out.push(1.0);
    }
    Tensor::from_data(TensorData::new(out, [rows, dim + 1]), device)
}

fn one_hot(labels: &[u32], classes: usize, device: &Device) -> Tensor<2> {
    let mut out = vec![0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        out[i * classes + l as usize] = 1.0;
    }
    Tensor::from_data(TensorData::new(out, [labels.len(), classes]), device)
}

fn host(t: &Tensor<2>) -> Vec<f32> {
    t.clone()
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap_or_default()
}

fn predictions(x: &Tensor<2>, w: &Tensor<2>) -> Vec<u32> {
    crate::study::predictions(x.clone().matmul(w.clone()))
}

/// Balanced accuracy of the probe `w` on `x`; with balanced classes, plain accuracy.
fn balanced(x: &Tensor<2>, w: &Tensor<2>, labels: &[u32]) -> f64 {
    pretext_baselines::metrics::balanced_accuracy(labels, &predictions(x, w)).unwrap_or(0.0)
}

/// Each row's loss weight, `n / (present classes x its class's count)`, as a `[n, 1]` column:
/// every class present carries the same total weight (scikit-learn's `class_weight="balanced"`),
/// and with balanced classes every weight is 1.
fn class_weights(labels: &[u32], classes: usize, device: &Device) -> Tensor<2> {
    let mut count = vec![0usize; classes];
    for &l in labels {
        count[l as usize] += 1;
    }
    let present = count.iter().filter(|&&c| c > 0).count().max(1);
    let n = labels.len() as f32;
    let weights: Vec<f32> = labels
        .iter()
        .map(|&l| n / (present as f32 * count[l as usize] as f32))
        .collect();
    Tensor::from_data(TensorData::new(weights, [labels.len(), 1]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled<'a>(features: &'a [f32], labels: &'a [u32]) -> Labelled<'a> {
        Labelled { features, labels }
    }

    /// Three Gaussian-ish clusters in 4-D made from a fixed sequence (no random generator).
    fn clusters(n: usize, offset: usize) -> (Vec<f32>, Vec<u32>) {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let class = (i % 3) as u32;
            for j in 0..4 {
                let noise = (((i + offset) * 7919 + j * 104_729) % 1000) as f32 / 1000.0 - 0.5;
                let centre = if j as u32 == class { 2.0 } else { 0.0 };
                features.push(centre + noise + 10.0 * j as f32);
            }
            labels.push(class);
        }
        (features, labels)
    }

    /// `probe` fitted on 90 training and 30 validation points of [`clusters`].
    fn fitted_on_clusters(probe: &LinearProbe, device: &Device) -> FittedLinearProbe {
        let (xt, yt) = clusters(90, 0);
        let (xv, yv) = clusters(30, 1000);
        probe
            .fit(labelled(&xt, &yt), labelled(&xv, &yv), 4, 3, device)
            .unwrap()
    }

    #[test]
    fn the_folded_head_predicts_as_the_probe_does() {
        let device = Device::flex();
        let fitted = fitted_on_clusters(&LinearProbe::default(), &device);
        let head = fitted.head();
        let (xs, _) = clusters(60, 5000);
        let probe_logits = design(&xs, &fitted.mean, &fitted.scale, 4, &device).matmul(
            Tensor::<2>::from_data(TensorData::new(fitted.weights.clone(), [5, 3]), &device),
        );
        let raw = Tensor::<2>::from_data(TensorData::new(xs.clone(), [60, 4]), &device);
        let head_logits = raw.matmul(Tensor::from_data(
            TensorData::new(head.weight, [4, 3]),
            &device,
        )) + Tensor::<1>::from_data(TensorData::new(head.bias, [3]), &device)
            .unsqueeze();
        let diff = (probe_logits - head_logits)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-3, "logits differ by {diff}");
    }

    #[test]
    fn separates_separable_classes_and_is_chosen_on_validation() {
        let device = Device::flex();
        let (xs, ys) = clusters(60, 5000);
        let probe = LinearProbe::default();
        let fitted = fitted_on_clusters(&probe, &device);
        assert_eq!(fitted.validation_balanced_accuracy, 1.0);
        assert!(probe.l2.contains(&fitted.l2));
        assert!(fitted.iterations > 0);
        let acc = fitted.accuracy(labelled(&xs, &ys), &device);
        assert_eq!(acc, 1.0);
    }

    #[test]
    fn one_label_per_class_standardised_on_unlabelled_rows_separates_the_clusters() {
        let device = Device::flex();
        let (pool, _) = clusters(90, 0);
        // Rows 0, 1 and 2 are one example of each class.
        let (xt, yt) = (pool[..12].to_vec(), vec![0, 1, 2]);
        let (xv, yv) = clusters(30, 1000);
        let (xs, ys) = clusters(60, 5000);
        let fitted = LinearProbe::default()
            .fit_standardised_on(&pool, labelled(&xt, &yt), labelled(&xv, &yv), 4, 3, &device)
            .unwrap();
        // The pool's statistics, not the three rows': feature j < 3 is centred near
        // 10 j + 2/3 (a third of the rows add 2), feature 3 near 30.
        assert!(
            (fitted.mean[0] - 2.0 / 3.0).abs() < 0.1,
            "{:?}",
            fitted.mean
        );
        assert!((fitted.mean[3] - 30.0).abs() < 0.1, "{:?}", fitted.mean);
        let test = labelled(&xs, &ys);
        let accuracy = fitted.accuracy(test, &device);
        assert!(accuracy > 0.95, "{accuracy}");
        let err = LinearProbe::default()
            .fit_standardised_on(
                &pool[..5],
                labelled(&xt, &yt),
                labelled(&xv, &yv),
                4,
                3,
                &device,
            )
            .unwrap_err();
        assert!(err.to_string().contains("5 reference values"), "{err}");
    }

    #[test]
    fn mini_batches_reach_the_full_batch_result_and_are_seeded() {
        let device = Device::flex();
        let (xs, ys) = clusters(60, 5000);
        let probe = LinearProbe {
            batch_size: 16,
            ..LinearProbe::default()
        };
        let fitted = fitted_on_clusters(&probe, &device);
        assert_eq!(fitted.validation_balanced_accuracy, 1.0);
        let test = labelled(&xs, &ys);
        assert_eq!(fitted.accuracy(test, &device), 1.0);
        let again = fitted_on_clusters(&probe, &device);
        assert_eq!(fitted.weights, again.weights, "the same batches every time");
        let mut batches = Batches::new(10, 4);
        let mut seen: Vec<usize> = Vec::new();
        for _ in 0..2 {
            seen.extend(batches.next_indices());
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 8, "one pass visits distinct rows");
    }

    /// One feature: the commonest class (19 rows in 20) spread over [0, 2), the rare one over
    /// [1.5, 2), so predicting the commonest class everywhere is right 95% of the time.
    fn unbalanced(n: usize, offset: usize) -> (Vec<f32>, Vec<u32>) {
        (0..n)
            .map(|i| {
                let u = (((i + offset) * 7919) % 1000) as f32 / 1000.0;
                if i % 20 == 0 {
                    (1.5 + 0.5 * u, 1)
                } else {
                    (2.0 * u, 0)
                }
            })
            .unzip()
    }

    #[test]
    fn unbalanced_classes_do_not_collapse_to_the_commonest() {
        let device = Device::flex();
        let (xt, yt) = unbalanced(400, 0);
        let (xv, yv) = unbalanced(200, 3000);
        let (xs, ys) = unbalanced(400, 7000);
        let weights: Vec<f32> = host(&class_weights(&yt, 2, &device));
        // 380 rows of class 0 weigh 400 / (2 x 380) each, 20 of class 1 weigh 400 / (2 x 20).
        assert!((weights[1] - 400.0 / 760.0).abs() < 1e-6, "{}", weights[1]);
        assert!((weights[0] - 10.0).abs() < 1e-6, "{}", weights[0]);
        let fitted = LinearProbe::default()
            .fit(labelled(&xt, &yt), labelled(&xv, &yv), 1, 2, &device)
            .unwrap();
        let predicted = fitted.predict(&xs, &device);
        let score = pretext_baselines::metrics::balanced_accuracy(&ys, &predicted).unwrap();
        // Always predicting class 0 scores 0.5; the best threshold (1.5) scores 0.875.
        assert!(score > 0.8, "balanced accuracy {score}");
        assert!(fitted.validation_balanced_accuracy > 0.8);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let device = Device::flex();
        let probe = LinearProbe::default();
        let ok = Labelled {
            features: &[0.0, 1.0],
            labels: &[0],
        };
        let e = probe.fit(labelled(&[0.0], &[0]), ok, 2, 2, &device);
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("do not make 1 rows of 2")
        );
        let e = probe.fit(
            ok,
            Labelled {
                features: &[0.0, 1.0],
                labels: &[5],
            },
            2,
            2,
            &device,
        );
        assert!(e.unwrap_err().to_string().contains("label 5"));
    }
}
