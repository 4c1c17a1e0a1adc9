//! SCAN (Van Gansbeke et al. 2020) on frozen features: clustering by neighbours, with no labels.
//!
//! 1. **Mine**: each training image's `neighbours` nearest others by cosine similarity of its
//!    standardised features (on their first principal components when the features are wide).
//! 2. **Cluster**: linear heads map features to cluster probabilities; each is trained so that an
//!    image and a random one of its neighbours fall in the same cluster, while the entropy term
//!    keeps the clusters in use. Of several heads trained from different starts, the one with
//!    the lowest loss is kept (never chosen by labels).
//! 3. **Self-label** (optional): the kept head is trained further with cross-entropy on the
//!    images it assigns with confidence above a threshold, classes weighted by their inverse
//!    frequency among those.
//!
//! The heads learn on the training images and then assign the test images; the labels only
//! score the result.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use pretext_baselines::metrics::{ari, hungarian_accuracy, nmi};
use pretext_models::heads::ClusteringHeads;
use pretext_models::losses::scan_losses;

use crate::error::{Result, TrainError};
use crate::model::seeded;
use crate::probes::mining::{MiningSpace, Standardiser, nearest, tensor};

/// What SCAN's heads read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScanInput {
    /// The standardised features themselves.
    Features,
    /// The space the neighbours were mined in: the features' first principal components, each
    /// row scaled to a common length.
    Components,
}

/// Settings of SCAN. Defaults: 20 neighbours, entropy weight 5 (the paper's CIFAR settings),
/// 50 linear heads on the standardised features (the paper trains 10 with the encoder; on
/// frozen features a head's start decides which of a few solutions it reaches, and 50 let the
/// lowest loss find the good one on every seed tried), 30 epochs of batches of 256 at Adam's
/// 1e-3 with weight decay 1e-4, neighbours mined on 128 principal components, then 10 epochs
/// of self-labelling above 0.99.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    pub neighbours: usize,
    pub heads: usize,
    /// Each head's hidden width (0: a linear head).
    pub head_hidden: usize,
    pub head_input: ScanInput,
    pub entropy_weight: f32,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f32,
    /// Neighbours are mined on at most this many principal components of the features.
    pub mining_components: usize,
    /// Self-labelling epochs (0: none) and the confidence a pseudo-label needs.
    pub self_label_epochs: usize,
    pub self_label_threshold: f32,
    /// The representations SCAN clusters, by the names the study gives them; every one when
    /// absent. SCAN costs minutes a seed where K-means costs seconds, so a large study may keep
    /// it for the representations that matter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub representations: Option<Vec<String>>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            neighbours: 20,
            heads: 50,
            head_hidden: 0,
            head_input: ScanInput::Features,
            entropy_weight: 5.0,
            epochs: 30,
            batch_size: 256,
            lr: 1e-3,
            weight_decay: 1e-4,
            mining_components: 128,
            self_label_epochs: 10,
            self_label_threshold: 0.99,
            representations: None,
        }
    }
}

impl ScanConfig {
    pub fn validate(&self) -> Result<()> {
        if self.neighbours == 0
            || self.heads == 0
            || self.epochs == 0
            || self.batch_size < 2
            || self.mining_components == 0
        {
            return Err(TrainError::config(
                "scan: neighbours, heads, epochs and mining_components must be positive and \
                 batch_size at least 2",
            ));
        }
        let non_negative = |v: f32| v.is_finite() && v >= 0.0;
        let valid = self.lr.is_finite()
            && self.lr > 0.0
            && non_negative(self.entropy_weight)
            && non_negative(self.weight_decay)
            && self.self_label_threshold > 0.0
            && self.self_label_threshold < 1.0;
        if !valid {
            return Err(TrainError::config(
                "scan: lr must be positive, entropy_weight and weight_decay non-negative, and \
                 self_label_threshold strictly between 0 and 1",
            ));
        }
        if self.representations.as_ref().is_some_and(|r| r.is_empty()) {
            return Err(TrainError::config(
                "scan: representations is empty; leave it out to cluster every representation",
            ));
        }
        Ok(())
    }

    /// Whether SCAN clusters the representation called `name`.
    pub fn clusters(&self, name: &str) -> bool {
        self.representations
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }
}

/// What SCAN found: the test split's clusters scored against its labels, and the kept head's
/// loss on the training images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanScores {
    pub accuracy: f64,
    pub nmi: f64,
    pub ari: f64,
    pub head: usize,
    pub loss: f64,
    pub consistency: f64,
    pub entropy: f64,
    /// Training images above the self-labelling threshold at the end (0 without it).
    pub confident: usize,
}

/// Runs SCAN on the training pool's features and scores its clusters of the test features.
#[allow(clippy::too_many_arguments)]
pub fn scan_probe(
    pool: &[f32],
    test: &[f32],
    test_labels: &[u32],
    dim: usize,
    clusters: usize,
    config: &ScanConfig,
    seed: u64,
    device: &Device,
) -> Result<ScanScores> {
    config.validate()?;
    let n = pool.len().checked_div(dim).unwrap_or(0);
    if dim == 0 || pool.len() != n * dim || test.len() != test_labels.len() * dim {
        return Err(TrainError::config(format!(
            "scan: {} training and {} test values do not make rows of {dim}",
            pool.len(),
            test.len()
        )));
    }
    if n <= config.neighbours || clusters < 2 {
        return Err(TrainError::config(format!(
            "scan needs more than {} training images ({n} given) and at least two clusters",
            config.neighbours
        )));
    }
    let standardiser = Standardiser::fit(pool, dim);
    let standardise = |rows: &[f32]| standardiser.apply(rows);
    let x = standardise(pool);
    let space = MiningSpace::fit(&x, dim, config.mining_components, seed, device)?;
    let mined = space.project(&x, device)?;
    let (neighbours, _) = nearest(&mined, space.dim, config.neighbours, device);
    let (x, test, dim) = match config.head_input {
        ScanInput::Features => (x, standardise(test), dim),
        ScanInput::Components => {
            // Unit rows times the square root of their width: coordinates of about unit size.
            let lengthen = |mut v: Vec<f32>| {
                let s = (space.dim as f32).sqrt();
                v.iter_mut().for_each(|a| *a *= s);
                v
            };
            let test = space.project(&standardise(test), device)?;
            (lengthen(mined), lengthen(test), space.dim)
        }
    };
    let train_device = device.clone().autodiff();
    let fitted = Clustering {
        x: &x,
        dim,
        clusters,
        neighbours: &neighbours,
        config,
        seed,
        device: &train_device,
    }
    .train()?;
    let logits = fitted
        .heads
        .valid()
        .forward_head(tensor(test, dim, device), fitted.head);
    let assigned: Vec<u32> = logits
        .argmax(1)
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c as u32)
        .collect();
    Ok(ScanScores {
        accuracy: hungarian_accuracy(test_labels, &assigned)?,
        nmi: nmi(test_labels, &assigned)?,
        ari: ari(test_labels, &assigned)?,
        head: fitted.head,
        loss: fitted.loss[0],
        consistency: fitted.loss[1],
        entropy: fitted.loss[2],
        confident: fitted.confident,
    })
}

/// The clustering step and self-labelling on standardised training features.
struct Clustering<'a> {
    x: &'a [f32],
    dim: usize,
    clusters: usize,
    neighbours: &'a [u32],
    config: &'a ScanConfig,
    seed: u64,
    device: &'a Device,
}

struct Fitted {
    heads: ClusteringHeads,
    head: usize,
    /// The kept head's total, consistency and entropy over the last clustering epoch.
    loss: [f64; 3],
    confident: usize,
}

impl Clustering<'_> {
    fn rows(&self, indices: &[usize]) -> Tensor<2> {
        let mut values = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            values.extend_from_slice(&self.x[i * self.dim..(i + 1) * self.dim]);
        }
        tensor(values, self.dim, self.device)
    }

    fn train(&self) -> Result<Fitted> {
        let c = self.config;
        let n = self.x.len() / self.dim;
        let k = c.neighbours;
        let mut heads = seeded(self.seed, self.device, || {
            Ok(ClusteringHeads::new(
                self.dim,
                self.clusters,
                c.heads,
                c.head_hidden,
                self.device,
            ))
        })?;
        let mut optimizer = AdamWConfig::new().with_weight_decay(c.weight_decay).init();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x7363_616e);
        let mut order: Vec<usize> = (0..n).collect();
        let mut last_epoch = vec![[0f64; 3]; c.heads];
        for _ in 0..c.epochs {
            order.shuffle(&mut rng);
            // Each head's total, consistency and entropy summed over the epoch's batches, kept
            // on the device and read once an epoch.
            let mut sums: Option<Tensor<2>> = None;
            let mut batches = 0usize;
            for anchors in order.chunks(c.batch_size).filter(|b| b.len() >= 2) {
                let partners: Vec<usize> = anchors
                    .iter()
                    .map(|&a| self.neighbours[a * k + rng.random_range(0..k)] as usize)
                    .collect();
                let b = anchors.len();
                let both = Tensor::cat(vec![self.rows(anchors), self.rows(&partners)], 0);
                let logits = heads.forward_all(both);
                let loss = scan_losses(
                    logits.clone().narrow(0, 0, b),
                    logits.narrow(0, b, b),
                    c.entropy_weight,
                );
                let parts = Tensor::stack::<2>(
                    vec![
                        loss.total.clone().detach(),
                        loss.consistency.detach(),
                        loss.entropy.detach(),
                    ],
                    1,
                );
                sums = Some(match sums {
                    Some(s) => s + parts,
                    None => parts,
                });
                let grads = GradientsParams::from_grads(loss.total.sum().backward(), &heads);
                heads = optimizer.step(c.lr, heads, grads);
                batches += 1;
            }
            if let Some(sums) = sums {
                let values = sums
                    .into_data()
                    .try_into_vec_as::<f64>()
                    .map_err(|e| TrainError::config(format!("scan: the losses: {e:?}")))?;
                last_epoch = values
                    .chunks_exact(3)
                    .map(|s| [s[0], s[1], s[2]].map(|v| v / batches.max(1) as f64))
                    .collect();
            }
        }
        let head = (0..c.heads)
            .min_by(|&a, &b| last_epoch[a][0].total_cmp(&last_epoch[b][0]))
            .unwrap_or(0);
        let mut confident = 0;
        for _ in 0..c.self_label_epochs {
            let (chosen, labels) = self.confident(&heads, head)?;
            confident = chosen.len();
            if chosen.is_empty() {
                break;
            }
            heads = self.self_label_epoch(heads, head, &chosen, &labels, &mut optimizer, &mut rng);
        }
        if c.self_label_epochs > 0 {
            confident = self.confident(&heads, head)?.0.len();
        }
        Ok(Fitted {
            heads,
            head,
            loss: last_epoch[head],
            confident,
        })
    }

    /// The training images the head assigns with probability above the threshold, and those
    /// assignments.
    fn confident(&self, heads: &ClusteringHeads, head: usize) -> Result<(Vec<usize>, Vec<u32>)> {
        let n = self.x.len() / self.dim;
        let model = heads.valid();
        let mut chosen = Vec::new();
        let mut labels = Vec::new();
        let all: Vec<usize> = (0..n).collect();
        for block in all.chunks(4096) {
            let x = self.rows(block).inner();
            let p = softmax(model.forward_head(x, head), 1);
            let values = p.into_data().try_into_vec_as::<f32>().unwrap_or_default();
            for (&i, row) in block.iter().zip(values.chunks_exact(self.clusters)) {
                let (best, &prob) = row
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .ok_or_else(|| TrainError::config("scan: no clusters"))?;
                if prob > self.config.self_label_threshold {
                    chosen.push(i);
                    labels.push(best as u32);
                }
            }
        }
        Ok((chosen, labels))
    }

    /// One epoch of class-balanced cross-entropy on the confident images.
    fn self_label_epoch(
        &self,
        mut heads: ClusteringHeads,
        head: usize,
        chosen: &[usize],
        labels: &[u32],
        optimizer: &mut burn::optim::ModuleOptimizer,
        rng: &mut ChaCha8Rng,
    ) -> ClusteringHeads {
        let mut counts = vec![0usize; self.clusters];
        for &l in labels {
            counts[l as usize] += 1;
        }
        let mut order: Vec<usize> = (0..chosen.len()).collect();
        order.shuffle(rng);
        for batch in order.chunks(self.config.batch_size) {
            let rows: Vec<usize> = batch.iter().map(|&i| chosen[i]).collect();
            // Inverse class frequency, so a dominant cluster does not absorb the others.
            let weights: Vec<f32> = batch
                .iter()
                .map(|&i| {
                    let c = counts[labels[i] as usize].max(1) as f32;
                    chosen.len() as f32 / (self.clusters as f32 * c)
                })
                .collect();
            let targets: Vec<i64> = batch.iter().map(|&i| labels[i] as i64).collect();
            let logits = heads.forward_head(self.rows(&rows), head);
            let b = batch.len();
            let log_p = burn::tensor::activation::log_softmax(logits, 1);
            let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [b]), self.device);
            let picked: Tensor<2> = log_p.gather(1, targets.reshape([b, 1]));
            let weights = Tensor::<2>::from_data(TensorData::new(weights, [b, 1]), self.device);
            let loss = (picked * weights).mean().neg();
            let grads = GradientsParams::from_grads(loss.backward(), &heads);
            heads = optimizer.step(self.config.lr, heads, grads);
        }
        heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_may_be_kept_for_named_representations() {
        let every = ScanConfig::default();
        assert!(every.clusters("pixels") && every.clusters("simclr"));
        let some = ScanConfig {
            representations: Some(vec!["simclr".into()]),
            ..ScanConfig::default()
        };
        assert!(some.validate().is_ok());
        assert!(some.clusters("simclr") && !some.clusters("pixels"));
        let none = ScanConfig {
            representations: Some(Vec::new()),
            ..ScanConfig::default()
        };
        let err = none.validate().unwrap_err().to_string();
        assert!(err.contains("representations is empty"), "{err}");
    }

    /// `n` points in 8-D around three well-separated centres, from a fixed sequence.
    fn blobs(n: usize, offset: usize) -> (Vec<f32>, Vec<u32>) {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let class = (i % 3) as u32;
            for j in 0..8 {
                let noise = (((i + offset) * 7919 + j * 104_729) % 1000) as f32 / 500.0 - 1.0;
                let centre = if j % 3 == class as usize { 6.0 } else { 0.0 };
                features.push(centre + noise);
            }
            labels.push(class);
        }
        (features, labels)
    }

    fn small() -> ScanConfig {
        ScanConfig {
            neighbours: 5,
            heads: 3,
            epochs: 15,
            batch_size: 64,
            mining_components: 4,
            self_label_epochs: 2,
            self_label_threshold: 0.5,
            ..ScanConfig::default()
        }
    }

    #[test]
    fn separated_clusters_are_found_without_labels_and_runs_repeat() {
        let device = Device::flex();
        let (pool, _) = blobs(300, 0);
        let (test, labels) = blobs(90, 5000);
        let run = || scan_probe(&pool, &test, &labels, 8, 3, &small(), 7, &device).unwrap();
        let s = run();
        assert!(s.accuracy > 0.95 && s.nmi > 0.85, "{s:?}");
        assert!(s.head < 3 && s.entropy > 0.9, "{s:?}");
        assert!(s.confident > 0, "{s:?}");
        assert_eq!(run(), s, "seeded");
    }

    #[test]
    fn hidden_heads_on_the_mining_components_find_the_clusters_too() {
        let device = Device::flex();
        let (pool, _) = blobs(300, 0);
        let (test, labels) = blobs(90, 5000);
        let config = ScanConfig {
            head_hidden: 16,
            head_input: ScanInput::Components,
            ..small()
        };
        let s = scan_probe(&pool, &test, &labels, 8, 3, &config, 7, &device).unwrap();
        assert!(s.accuracy > 0.95 && s.nmi > 0.85, "{s:?}");
    }

    #[test]
    fn bad_settings_and_shapes_are_errors() {
        let device = Device::flex();
        let (pool, _) = blobs(30, 0);
        let (test, labels) = blobs(9, 5);
        let bad = |c: ScanConfig| scan_probe(&pool, &test, &labels, 8, 3, &c, 0, &device).is_err();
        assert!(bad(ScanConfig {
            heads: 0,
            ..small()
        }));
        assert!(bad(ScanConfig {
            self_label_threshold: 1.0,
            ..small()
        }));
        assert!(bad(ScanConfig {
            neighbours: 40,
            ..small()
        }));
        assert!(scan_probe(&pool[1..], &test, &labels, 8, 3, &small(), 0, &device).is_err());
    }
}
