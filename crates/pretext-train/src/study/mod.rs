//! The comparison study: with 1, 10, 100 or all labels per class, which representation wins?
//!
//! Every representation (raw pixels, PCA features, an encoder with random weights, pretrained
//! encoders) is evaluated on the same splits and label subsets by the frozen-feature protocols:
//! the linear probe, the kNN probe and K-means clustering. A validation split carved from the
//! training set (stratified, never the test set) tunes the linear probe; label budgets are drawn
//! from the rest of the training set, nested across budgets for each seed. Each result is one
//! cell, appended to a results file as soon as it exists, so an interrupted study skips the cells
//! it already has.

mod cells;
mod features;
mod protocols;
mod training;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use pretext_data::tasks::ViewsConfig;
use pretext_data::{ImageDataset, ImageSet, LabelBudget, stratified_subset, validation_split};

use pretext_models::encoders::{EncoderConfig, EncoderKind};

use crate::error::{Result, TrainError};
use crate::model::seeded;
use crate::probes::{LinearHead, PropagationConfig, ScanConfig};
use protocols::Evaluation;

pub use cells::{Cell, CellKey, CellLog, Score};
pub use features::{Features, Representation};
use training::{Start, train_and_test};
pub use training::{accuracy, predict};
pub(crate) use training::{correct, predictions};

/// Settings of the study. Defaults: budgets 1, 10, 100 and all labels per class, 3 seeds,
/// PCA to 50 components, kNN with k = 20, a 10% validation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudyConfig {
    pub budgets: Vec<LabelBudget>,
    pub seeds: u64,
    pub pca_components: usize,
    pub knn_k: usize,
    pub knn_temperature: f32,
    pub validation_fraction: f64,
    /// Adam iterations of the linear probe (per L2 strength).
    pub linear_iterations: usize,
    /// Restarts of K-means and of the Gaussian mixture in the clustering protocols.
    pub cluster_n_init: usize,
    /// Principal components of the test features the Gaussian mixture is fitted on.
    pub gmm_components: usize,
    /// SCAN's settings.
    pub scan: ScanConfig,
    /// Label propagation's settings; left out of the settings' TOML at their defaults, so
    /// cells cached before it existed keep their names.
    #[serde(skip_serializing_if = "PropagationConfig::is_default")]
    pub propagation: PropagationConfig,
    /// The protocols to run: `linear`, `knn`, `propagation` (label propagation), `cluster`
    /// (K-means' ACC, NMI and ARI), `gmm`, `scan`, `finetune` (each pretrained encoder with a
    /// linear head), `supervised` (the same CNN from scratch), `self-training` (fine-tuning on
    /// propagated labels too).
    pub protocols: Vec<Protocol>,
    /// Optimizer steps of each fine-tuning or supervised run, the same at every budget (equal
    /// compute; with all labels that can be part of one pass over them).
    pub train_steps: usize,
    pub train_lr: f64,
    pub train_batch_size: usize,
    /// The pretrained encoder's learning rate as a fraction of the head's when fine-tuning.
    pub finetune_encoder_lr_scale: f64,
    /// Augmentations of the labelled images in fine-tuning and in the supervised baseline
    /// alike (`[study.train_views]`, the contrastive views' settings); none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_views: Option<ViewsConfig>,
    /// The budgets at which fine-tuning and the supervised baseline run, each one of `budgets`;
    /// every budget when absent. A training run costs minutes where a frozen-feature probe
    /// costs seconds, so a large study may train at the budgets that matter only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_budgets: Option<Vec<LabelBudget>>,
}

impl Default for StudyConfig {
    fn default() -> Self {
        Self {
            budgets: vec![
                LabelBudget::PerClass(1),
                LabelBudget::PerClass(10),
                LabelBudget::PerClass(100),
                LabelBudget::All,
            ],
            seeds: 3,
            pca_components: 50,
            knn_k: 20,
            knn_temperature: 0.07,
            validation_fraction: 0.1,
            linear_iterations: 300,
            cluster_n_init: 3,
            gmm_components: 50,
            scan: ScanConfig::default(),
            propagation: PropagationConfig::default(),
            protocols: vec![
                Protocol::Linear,
                Protocol::Knn,
                Protocol::Cluster,
                Protocol::Finetune,
                Protocol::Supervised,
            ],
            train_steps: 40,
            train_lr: 1e-3,
            train_batch_size: 64,
            finetune_encoder_lr_scale: 0.1,
            train_views: None,
            train_budgets: None,
        }
    }
}

impl StudyConfig {
    pub fn validate(&self) -> Result<()> {
        if self.budgets.is_empty() {
            return Err(TrainError::config(
                "budgets must list at least one label budget",
            ));
        }
        if self.seeds == 0 {
            return Err(TrainError::config(
                "seeds = 0: the study needs at least one seed",
            ));
        }
        if self.protocols.is_empty() {
            return Err(TrainError::config(
                "protocols must list at least one protocol",
            ));
        }
        if let Some(p) = self.protocols.iter().find(|p| p.is_part()) {
            return Err(TrainError::config(format!(
                "protocol {} is part of another; list cluster, gmm or scan instead",
                p.name()
            )));
        }
        self.scan.validate()?;
        self.propagation.validate()?;
        if self.pca_components == 0
            || self.gmm_components == 0
            || self.knn_k == 0
            || self.linear_iterations == 0
            || self.train_steps == 0
            || self.train_batch_size == 0
        {
            return Err(TrainError::config(
                "pca_components, gmm_components, knn_k, linear_iterations, train_steps and \
                 train_batch_size must be positive",
            ));
        }
        if !(self.train_lr > 0.0 && self.finetune_encoder_lr_scale > 0.0) {
            return Err(TrainError::config(
                "train_lr and finetune_encoder_lr_scale must be positive",
            ));
        }
        if let Some(views) = &self.train_views {
            views
                .validate()
                .map_err(|e| TrainError::config(format!("train_views: {e}")))?;
        }
        if let Some(train) = &self.train_budgets {
            if train.is_empty() {
                return Err(TrainError::config(
                    "train_budgets is empty; leave it out to train at every budget",
                ));
            }
            if let Some(b) = train.iter().find(|b| !self.budgets.contains(b)) {
                return Err(TrainError::config(format!(
                    "train_budgets lists {b} labels per class, which budgets does not"
                )));
            }
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return Err(TrainError::config(format!(
                "validation_fraction = {} must lie strictly between 0 and 1",
                self.validation_fraction
            )));
        }
        Ok(())
    }

    /// Whether fine-tuning and the supervised baseline run at `budget`.
    pub fn trains_at(&self, budget: LabelBudget) -> bool {
        self.train_budgets
            .as_ref()
            .is_none_or(|b| b.contains(&budget))
    }
}

/// The evaluation protocols on frozen features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Linear,
    Knn,
    /// Label propagation over the training pool's neighbour graph, the test images classified
    /// by their nearest pool images' propagated classes.
    Propagation,
    /// K-means on the test features, scored by Hungarian-matched accuracy (needs no labels, so
    /// its budget is "all" by convention).
    Cluster,
    /// The same clustering scored by normalised mutual information.
    ClusterNmi,
    /// The same clustering scored by the adjusted Rand index.
    ClusterAri,
    /// A Gaussian mixture of the test features (their first `gmm_components` principal
    /// components), one component per class, scored like K-means.
    Gmm,
    GmmNmi,
    GmmAri,
    /// SCAN: clustering heads trained on the training pool's features by their nearest
    /// neighbours, applied to the test features, scored like K-means.
    Scan,
    ScanNmi,
    ScanAri,
    /// The pretrained encoder and a linear head, all trained on the labelled subset.
    Finetune,
    /// The same encoder trained from scratch on the labelled subset.
    Supervised,
    /// The pretrained encoder and a linear head fine-tuned on the labelled subset and on the
    /// rest of the training pool labelled by label propagation.
    SelfTraining,
}

impl Protocol {
    /// A score computed with another protocol's (NMI and ARI of a clustering), never listed on
    /// its own.
    pub fn is_part(self) -> bool {
        matches!(
            self,
            Protocol::ClusterNmi
                | Protocol::ClusterAri
                | Protocol::GmmNmi
                | Protocol::GmmAri
                | Protocol::ScanNmi
                | Protocol::ScanAri
        )
    }

    /// The protocol and the scores computed with it: a clustering's ACC, NMI and ARI.
    pub fn with_parts(self) -> &'static [Protocol] {
        match self {
            Protocol::Cluster => &[
                Protocol::Cluster,
                Protocol::ClusterNmi,
                Protocol::ClusterAri,
            ],
            Protocol::Gmm => &[Protocol::Gmm, Protocol::GmmNmi, Protocol::GmmAri],
            Protocol::Scan => &[Protocol::Scan, Protocol::ScanNmi, Protocol::ScanAri],
            Protocol::Linear => &[Protocol::Linear],
            Protocol::Knn => &[Protocol::Knn],
            Protocol::Propagation => &[Protocol::Propagation],
            Protocol::Finetune => &[Protocol::Finetune],
            Protocol::Supervised => &[Protocol::Supervised],
            Protocol::SelfTraining => &[Protocol::SelfTraining],
            Protocol::ClusterNmi => &[Protocol::ClusterNmi],
            Protocol::ClusterAri => &[Protocol::ClusterAri],
            Protocol::GmmNmi => &[Protocol::GmmNmi],
            Protocol::GmmAri => &[Protocol::GmmAri],
            Protocol::ScanNmi => &[Protocol::ScanNmi],
            Protocol::ScanAri => &[Protocol::ScanAri],
        }
    }

    /// Whether it uses no labels (its cells have the budget "all").
    pub fn is_label_free(self) -> bool {
        !matches!(
            self,
            Protocol::Linear
                | Protocol::Knn
                | Protocol::Propagation
                | Protocol::Finetune
                | Protocol::Supervised
                | Protocol::SelfTraining
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Linear => "linear probe",
            Protocol::Knn => "kNN probe",
            Protocol::Propagation => "label propagation",
            Protocol::Cluster => "K-means ACC",
            Protocol::ClusterNmi => "K-means NMI",
            Protocol::ClusterAri => "K-means ARI",
            Protocol::Gmm => "GMM ACC",
            Protocol::GmmNmi => "GMM NMI",
            Protocol::GmmAri => "GMM ARI",
            Protocol::Scan => "SCAN ACC",
            Protocol::ScanNmi => "SCAN NMI",
            Protocol::ScanAri => "SCAN ARI",
            Protocol::Finetune => "fine-tuning",
            Protocol::Supervised => "supervised from scratch",
            Protocol::SelfTraining => "self-training",
        }
    }
}

/// Mean and standard deviation over seeds of one (representation, protocol, budget).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub representation: String,
    pub protocol: Protocol,
    pub budget: LabelBudget,
    pub mean: f64,
    pub std: f64,
    pub seeds: usize,
    /// The classifying protocols' balanced accuracy and macro-F1, mean and standard deviation
    /// over the same seeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balanced_accuracy: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<[f64; 2]>,
}

/// Reports progress: `done` of `total` cells, the one just finished.
pub trait StudyObserver {
    fn cell(&mut self, _done: usize, _total: usize, _cell: &Cell) {}
    fn note(&mut self, _message: &str) {}
}

/// Salt of the study's validation split, apart from other seeded choices.
const VALIDATION_SALT: u64 = 0x7374_7564_795f_7661;

/// Something the study evaluates: it gives features for the frozen-feature protocols and, when
/// pretrained, can be fine-tuned. Images and text implement it alike.
pub trait Candidate {
    fn name(&self) -> &str;
    /// Pretrained candidates are also fine-tuned.
    fn is_pretrained(&self) -> bool;
    /// Whether the report shows the candidate's test features in two dimensions (not for
    /// PCA-reduced features, whose first two components are their source's own).
    fn is_projected(&self) -> bool {
        true
    }
    /// Features of the training pool, the validation split (training-set indices) and the
    /// whole test split.
    fn features(&self, pool: &[usize], val: &[usize]) -> Result<Features>;
    /// Fine-tunes the candidate's encoder with a linear head starting from `head` on
    /// `examples`; returns its predicted class of each test example.
    fn fine_tune(&self, head: LinearHead, examples: Examples, seed: u64) -> Result<Vec<u32>>;
}

/// The training examples a training protocol learns from: training-set indices, and the labels
/// to learn where they are not the data's own (labels propagated to unlabelled examples).
#[derive(Debug, Clone, PartialEq)]
pub struct Examples {
    pub indices: Vec<usize>,
    pub labels: Option<Vec<u32>>,
}

impl Examples {
    /// Examples with the data's own labels.
    pub fn labelled(indices: Vec<usize>) -> Self {
        Self {
            indices,
            labels: None,
        }
    }

    /// The whole training set's labels with this one's in place of `own` at its indices, or
    /// `None` when it keeps the data's own.
    pub fn relabelled(&self, own: &[u32]) -> Result<Option<Vec<u32>>> {
        let Some(labels) = &self.labels else {
            return Ok(None);
        };
        if labels.len() != self.indices.len() {
            return Err(TrainError::config(format!(
                "{} labels for {} training examples",
                labels.len(),
                self.indices.len()
            )));
        }
        let mut all = own.to_vec();
        for (&i, &label) in self.indices.iter().zip(labels) {
            *all.get_mut(i).ok_or_else(|| {
                TrainError::config(format!(
                    "training example {i} is out of range ({} examples)",
                    own.len()
                ))
            })? = label;
        }
        Ok(Some(all))
    }
}

/// The supervised baseline: a name and a run that trains from scratch on the training examples
/// it is given (with a seed) and returns its predicted class of each test example.
pub struct Baseline<'a> {
    pub name: &'a str,
    pub train: &'a dyn Fn(Vec<usize>, u64) -> Result<Vec<u32>>,
}

/// The labels the study evaluates against.
#[derive(Clone, Copy)]
pub struct StudyLabels<'a> {
    pub train: &'a [u32],
    pub test: &'a [u32],
    pub classes: usize,
}

/// Runs every protocol on every representation, budget and seed, skipping cells already in the
/// log at `cells_path`. Returns every cell.
pub fn run_study(
    config: &StudyConfig,
    data: &ImageDataset,
    representations: &[Representation],
    device: &Device,
    cells_path: &Path,
    observer: &mut dyn StudyObserver,
) -> Result<Vec<Cell>> {
    config.validate()?;
    let (_, train_labels, test_labels) = check_data(data)?;
    let train = std::sync::Arc::new(data.train.clone());
    let candidates: Vec<ImageCandidate> = representations
        .iter()
        .map(|rep| ImageCandidate {
            rep,
            data,
            train: std::sync::Arc::clone(&train),
            config,
            device,
        })
        .collect();
    let candidates: Vec<&dyn Candidate> = candidates.iter().map(|c| c as &dyn Candidate).collect();
    let supervised = SupervisedBaseline::new(data);
    let scratch = |labelled: Vec<usize>, seed: u64| -> Result<Vec<u32>> {
        let encoder = seeded(seed, device, || Ok(supervised.encoder.init(device)?))?;
        let start = Start {
            encoder: &encoder,
            embedding_dim: supervised.encoder.embedding_dim(),
            encoder_lr_scale: 1.0,
            head: None,
        };
        train_and_test(
            start,
            data,
            &train,
            Examples::labelled(labelled),
            config,
            seed,
            device,
        )
    };
    run_candidates(
        config,
        StudyLabels {
            train: train_labels,
            test: test_labels,
            classes: data.num_classes(),
        },
        &candidates,
        Some(Baseline {
            name: SupervisedBaseline::NAME,
            train: &scratch,
        }),
        device,
        cells_path,
        observer,
    )
}

/// An image representation as a study candidate.
struct ImageCandidate<'a> {
    rep: &'a Representation,
    data: &'a ImageDataset,
    train: std::sync::Arc<ImageSet>,
    config: &'a StudyConfig,
    device: &'a Device,
}

impl Candidate for ImageCandidate<'_> {
    fn name(&self) -> &str {
        self.rep.name()
    }

    fn is_pretrained(&self) -> bool {
        self.rep.is_pretrained()
    }

    fn features(&self, pool: &[usize], val: &[usize]) -> Result<Features> {
        self.rep
            .features(self.data, pool, val, self.config, self.device)
    }

    fn fine_tune(&self, head: LinearHead, examples: Examples, seed: u64) -> Result<Vec<u32>> {
        let Representation::Encoder { encoder, .. } = self.rep else {
            return Err(TrainError::config("only an encoder can be fine-tuned"));
        };
        // The head is `[dim, classes]`.
        let embedding_dim = head.weight.len() / head.bias.len().max(1);
        let start = Start {
            encoder,
            embedding_dim,
            encoder_lr_scale: self.config.finetune_encoder_lr_scale,
            head: Some(head),
        };
        train_and_test(
            start,
            self.data,
            &self.train,
            examples,
            self.config,
            seed,
            self.device,
        )
    }
}

/// The study over any candidates: every protocol on every candidate, budget and seed, then the
/// supervised baseline, skipping cells already in the log at `cells_path`.
pub fn run_candidates(
    config: &StudyConfig,
    labels: StudyLabels<'_>,
    candidates: &[&dyn Candidate],
    baseline: Option<Baseline<'_>>,
    device: &Device,
    cells_path: &Path,
    observer: &mut dyn StudyObserver,
) -> Result<Vec<Cell>> {
    config.validate()?;
    let StudyLabels {
        train: train_labels,
        test: test_labels,
        classes,
    } = labels;
    let split = validation_split(
        train_labels.len(),
        Some(train_labels),
        classes,
        config.validation_fraction,
        VALIDATION_SALT,
    )?;
    let pool_labels: Vec<u32> = split.train.iter().map(|&i| train_labels[i]).collect();
    let val_labels: Vec<u32> = split.val.iter().map(|&i| train_labels[i]).collect();

    // A budget some class cannot fill is left out, not the whole study (small own data).
    let smallest = (0..classes)
        .map(|c| pool_labels.iter().filter(|&&l| l as usize == c).count())
        .min()
        .unwrap_or(0);
    let budgets: Vec<LabelBudget> = config
        .budgets
        .iter()
        .copied()
        .filter(|&budget| match budget {
            LabelBudget::PerClass(k) if k > smallest => {
                observer.note(&format!(
                    "skipping {budget} labels per class: the smallest class has {smallest} \
                     labelled training images outside the validation split"
                ));
                false
            }
            _ => true,
        })
        .collect();
    if budgets.is_empty() {
        return Err(TrainError::config(format!(
            "no label budget fits: the smallest class has {smallest} labelled training images"
        )));
    }

    // Label subsets per (budget, seed), as indices into the pool.
    let mut subsets = BTreeMap::new();
    for seed in 0..config.seeds {
        for &budget in &budgets {
            let chosen = stratified_subset(&pool_labels, classes, budget, seed)?;
            subsets.insert((budget, seed), chosen);
        }
    }

    let units = protocols::enabled(config);
    // The (protocols, budget, seed) runs of one candidate, in the order they are computed.
    let runs_of = |rep: &dyn Candidate| -> Vec<(&dyn Evaluation, LabelBudget, u64)> {
        let mut runs = Vec::new();
        for seed in 0..config.seeds {
            for unit in units.iter().filter(|u| u.applies(config, rep)) {
                let budgets = unit.budgets(config, &budgets);
                runs.extend(budgets.into_iter().map(|b| (unit.as_ref(), b, seed)));
            }
        }
        runs
    };
    let keys = |rep: &dyn Candidate, unit: &dyn Evaluation, budget, seed| -> Vec<CellKey> {
        unit.protocols()
            .iter()
            .map(|&p| CellKey::new(rep.name(), p, budget, seed))
            .collect()
    };
    let baseline = baseline.filter(|_| config.protocols.contains(&Protocol::Supervised));
    let baseline_keys: Vec<CellKey> = match &baseline {
        Some(b) => (0..config.seeds)
            .flat_map(|seed| {
                budgets
                    .iter()
                    .filter(|&&budget| config.trains_at(budget))
                    .map(move |&budget| CellKey::new(b.name, Protocol::Supervised, budget, seed))
            })
            .collect(),
        None => Vec::new(),
    };
    if let Some(names) = &config.scan.representations {
        for name in names {
            if !candidates.iter().any(|c| c.name() == name) {
                let have: Vec<&str> = candidates.iter().map(|c| c.name()).collect();
                observer.note(&format!(
                    "scan.representations names {name:?}, which this study does not have \
                     (it has {})",
                    have.join(", ")
                ));
            }
        }
    }
    let mut log = CellLog::open(cells_path)?;
    // This study's cells. The log may hold others, from a run of the same directory with other
    // representations or budgets: they stay in the file but are neither counted nor reported.
    let wanted: std::collections::HashSet<CellKey> = candidates
        .iter()
        .flat_map(|&rep| runs_of(rep).into_iter().map(move |r| (rep, r)))
        .flat_map(|(rep, (unit, b, s))| keys(rep, unit, b, s))
        .chain(baseline_keys.iter().cloned())
        .collect();
    let total = wanted.len();
    let mut done = wanted.iter().filter(|k| log.contains(k)).count();
    for &rep in candidates {
        let runs: Vec<_> = runs_of(rep)
            .into_iter()
            .filter(|&(unit, b, s)| !keys(rep, unit, b, s).iter().all(|k| log.contains(k)))
            .collect();
        if runs.is_empty() {
            continue;
        }
        observer.note(&format!("computing {} features", rep.name()));
        let features = rep.features(&split.train, &split.val)?;
        let ctx = protocols::Context {
            config,
            features: &features,
            candidate: rep,
            pool_labels: &pool_labels,
            val_labels: &val_labels,
            test_labels,
            classes,
            subsets: &subsets,
            pool_indices: &split.train,
            device,
            probes: Default::default(),
            graph: Default::default(),
        };
        let mut shared = protocols::SharedScores::default();
        for (unit, budget, seed) in runs {
            let started = std::time::Instant::now();
            let scores = match shared.get(unit, budget, seed, &subsets) {
                Some(scores) => scores,
                None => {
                    let scores = unit.evaluate(&ctx, budget, seed)?;
                    shared.keep(unit, budget, seed, &scores);
                    scores
                }
            };
            for (key, score) in keys(rep, unit, budget, seed).into_iter().zip(scores) {
                if !log.contains(&key) {
                    record(&mut log, observer, (&mut done, total), key, score, started)?;
                }
            }
        }
    }
    if let Some(b) = baseline {
        for key in baseline_keys {
            if log.contains(&key) {
                continue;
            }
            let started = std::time::Instant::now();
            let labelled = subsets[&(key.budget, key.seed)]
                .iter()
                .map(|&i| split.train[i])
                .collect();
            let predicted = (b.train)(labelled, key.seed)?;
            let score = Score::of_predictions(test_labels, &predicted)?;
            record(&mut log, observer, (&mut done, total), key, score, started)?;
        }
    }
    let mut cells = log.into_cells();
    cells.retain(|c| wanted.contains(&c.key));
    Ok(cells)
}

/// Appends a finished cell to the log and reports it as `done` of `total`.
fn record(
    log: &mut CellLog,
    observer: &mut dyn StudyObserver,
    (done, total): (&mut usize, usize),
    key: CellKey,
    score: Score,
    started: std::time::Instant,
) -> Result<()> {
    let cell = Cell {
        key,
        value: score.value,
        balanced_accuracy: score.balanced_accuracy,
        macro_f1: score.macro_f1,
        seconds: started.elapsed().as_secs_f64(),
    };
    log.append(&cell)?;
    *done += 1;
    observer.cell(*done, total, &cell);
    Ok(())
}

/// The supervised baseline: the reference CNN with random weights, trained on labels only.
struct SupervisedBaseline {
    encoder: EncoderConfig,
}

impl SupervisedBaseline {
    const NAME: &'static str = "supervised cnn";

    fn new(data: &ImageDataset) -> Self {
        let s = data.train.shape;
        Self {
            encoder: EncoderConfig::for_images(EncoderKind::Cnn, s.channels, s.height, s.width),
        }
    }
}

/// The test split and both splits' labels, which the study needs.
pub fn check_data(data: &ImageDataset) -> Result<(&ImageSet, &[u32], &[u32])> {
    let unlabelled = || {
        TrainError::config(format!(
            "{} is not labelled with at least two classes; the study needs labels to evaluate",
            data.name
        ))
    };
    if data.train.labels.is_none() || data.num_classes() < 2 {
        return Err(unlabelled());
    }
    let test = data.test.as_ref().ok_or_else(|| {
        TrainError::config(format!(
            "{} has no test split, and --test-fraction carved none (it is 0, or the classes are \
             too small); the study reports test accuracy",
            data.name
        ))
    })?;
    match (&data.train.labels, &test.labels) {
        (Some(train), Some(test_labels)) if data.num_classes() >= 2 => {
            Ok((test, train, test_labels))
        }
        _ => Err(unlabelled()),
    }
}

/// Mean and standard deviation (sample; 0 for one value) of `v`.
fn mean_std(v: &[f64]) -> [f64; 2] {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    [mean, var.sqrt()]
}

/// Mean ± standard deviation (sample, over seeds) of every (representation, protocol, budget).
pub fn summarize(cells: &[Cell]) -> Vec<Summary> {
    let mut groups: BTreeMap<(String, Protocol, LabelBudget), Vec<&Cell>> = BTreeMap::new();
    for c in cells {
        groups
            .entry((c.key.representation.clone(), c.key.protocol, c.key.budget))
            .or_default()
            .push(c);
    }
    groups
        .into_iter()
        .map(|((representation, protocol, budget), group)| {
            let values: Vec<f64> = group.iter().map(|c| c.value).collect();
            // Only when every seed has one: a partial set would be a different average.
            let companion = |f: fn(&Cell) -> Option<f64>| {
                let v: Option<Vec<f64>> = group.iter().map(|c| f(c)).collect();
                v.map(|v| mean_std(&v))
            };
            let [mean, std] = mean_std(&values);
            Summary {
                representation,
                protocol,
                budget,
                mean,
                std,
                seeds: values.len(),
                balanced_accuracy: companion(|c| c.balanced_accuracy),
                macro_f1: companion(|c| c.macro_f1),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_budgets_are_some_of_the_study_budgets() {
        let at = |train: Option<Vec<LabelBudget>>| StudyConfig {
            train_budgets: train,
            ..StudyConfig::default()
        };
        let every = at(None);
        assert!(every.validate().is_ok());
        assert!(every.trains_at(LabelBudget::PerClass(1)) && every.trains_at(LabelBudget::All));
        let ten = at(Some(vec![LabelBudget::PerClass(10)]));
        assert!(ten.validate().is_ok());
        assert!(ten.trains_at(LabelBudget::PerClass(10)));
        assert!(!ten.trains_at(LabelBudget::PerClass(1)) && !ten.trains_at(LabelBudget::All));
        let err = at(Some(vec![LabelBudget::PerClass(5)]))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("train_budgets lists 5"), "{err}");
        let err = at(Some(Vec::new())).validate().unwrap_err().to_string();
        assert!(err.contains("train_budgets is empty"), "{err}");
        // Read from TOML as budgets are; absent from the settings' TOML when absent, so cells
        // cached before the setting existed keep their names.
        let read: StudyConfig = toml::from_str("train_budgets = [\"10\", \"all\"]").unwrap();
        assert_eq!(
            read.train_budgets,
            Some(vec![LabelBudget::PerClass(10), LabelBudget::All])
        );
        let text = toml::to_string(&StudyConfig::default()).unwrap();
        assert!(!text.contains("train_budgets") && !text.contains("representations"));
    }

    #[test]
    fn examples_replace_the_labels_they_carry_and_keep_the_rest() {
        let own = [0, 1, 2, 0, 1];
        assert_eq!(
            Examples::labelled(vec![0, 3]).relabelled(&own).unwrap(),
            None
        );
        let propagated = Examples {
            indices: vec![1, 4, 2],
            labels: Some(vec![2, 0, 2]),
        };
        assert_eq!(
            propagated.relabelled(&own).unwrap(),
            Some(vec![0, 2, 2, 0, 0])
        );
        let short = Examples {
            indices: vec![1, 4],
            labels: Some(vec![2]),
        };
        assert!(short.relabelled(&own).is_err());
        let outside = Examples {
            indices: vec![5],
            labels: Some(vec![0]),
        };
        assert!(outside.relabelled(&own).is_err());
    }

    #[test]
    fn propagation_settings_validate_and_leave_default_settings_unchanged() {
        let bad = StudyConfig {
            propagation: PropagationConfig {
                iterations: 0,
                ..PropagationConfig::default()
            },
            ..StudyConfig::default()
        };
        assert!(bad.validate().is_err());
        let text = toml::to_string(&StudyConfig::default()).unwrap();
        assert!(!text.contains("propagation"), "{text}");
        let read: StudyConfig = toml::from_str("[propagation]\nneighbours = 5\n").unwrap();
        assert_eq!(read.propagation.neighbours, 5);
        assert!(toml::to_string(&read).unwrap().contains("propagation"));
    }

    #[test]
    fn training_views_validate_and_leave_default_settings_unchanged() {
        let bad = StudyConfig {
            train_views: Some(ViewsConfig {
                crop_scale: [0.6, 2.0],
                ..ViewsConfig::default()
            }),
            ..StudyConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("train_views") && err.contains("crop_scale"),
            "{err}"
        );
        let good = StudyConfig {
            train_views: Some(ViewsConfig::default()),
            ..StudyConfig::default()
        };
        assert!(good.validate().is_ok());
        // Absent views are absent from the settings' TOML, which names cached cells: cells
        // measured before the setting existed keep their names.
        let text = toml::to_string(&StudyConfig::default()).unwrap();
        assert!(!text.contains("train_views"), "{text}");
        assert!(toml::to_string(&good).unwrap().contains("train_views"));
    }
}
