//! The study's protocols, each a unit behind [`Evaluation`]: which cells it fills for a
//! candidate and how it computes those of one label budget and seed. The driver
//! ([`super::run_candidates`]) only walks candidates, seeds and budgets.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use burn::tensor::{Device, Tensor, TensorData};

use pretext_baselines::metrics::{ari, hungarian_accuracy, nmi};
use pretext_baselines::{Components, Fit, GaussianMixtureConfig, PcaConfig, Transform};
use pretext_data::LabelBudget;

use super::{Candidate, Examples, Features, Protocol, Score, StudyConfig};
use crate::error::Result;
use crate::probes::{
    FittedLinearProbe, Graph, KnnProbe, Labelled, LinearProbe, Propagated, cluster_probe,
    scan_probe,
};

/// What every protocol of one candidate sees: its features and the study's splits.
pub(super) struct Context<'a> {
    pub config: &'a StudyConfig,
    pub features: &'a Features,
    pub candidate: &'a dyn Candidate,
    /// Labels of the training pool's rows, of the validation rows and of the test rows.
    pub pool_labels: &'a [u32],
    pub val_labels: &'a [u32],
    pub test_labels: &'a [u32],
    pub classes: usize,
    /// The pool rows of each (budget, seed) subset.
    pub subsets: &'a BTreeMap<(LabelBudget, u64), Vec<usize>>,
    /// Training-set indices of each pool row.
    pub pool_indices: &'a [usize],
    pub device: &'a Device,
    /// Linear probes fitted so far, which fine-tuning starts from.
    pub probes: RefCell<BTreeMap<(LabelBudget, u64), FittedLinearProbe>>,
    /// The pool's neighbour graph once label propagation has built it: it needs no labels, so
    /// every budget and seed shares it.
    pub graph: RefCell<Option<Rc<Graph>>>,
}

impl Context<'_> {
    /// Features and labels of a (budget, seed) subset of the pool.
    fn subset(&self, budget: LabelBudget, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let (f, dim) = (self.features, self.features.dim);
        let chosen = &self.subsets[&(budget, seed)];
        let x = chosen
            .iter()
            .flat_map(|&i| f.pool[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        (x, chosen.iter().map(|&i| self.pool_labels[i]).collect())
    }

    /// The linear probe of a (budget, seed) subset, fitted once.
    fn probe(&self, budget: LabelBudget, seed: u64) -> Result<FittedLinearProbe> {
        if let Some(p) = self.probes.borrow().get(&(budget, seed)) {
            return Ok(p.clone());
        }
        let (x, y) = self.subset(budget, seed);
        let linear = LinearProbe {
            max_iterations: self.config.linear_iterations,
            ..LinearProbe::default()
        };
        // Standardised by the whole training pool's statistics, which need no labels.
        let fitted = linear.fit_standardised_on(
            &self.features.pool,
            Labelled {
                features: &x,
                labels: &y,
            },
            Labelled {
                features: &self.features.val,
                labels: self.val_labels,
            },
            self.features.dim,
            self.classes,
            self.device,
        )?;
        self.probes
            .borrow_mut()
            .insert((budget, seed), fitted.clone());
        Ok(fitted)
    }

    /// Label propagation from the (budget, seed) subset over the pool's graph.
    fn propagated(&self, budget: LabelBudget, seed: u64) -> Result<(Rc<Graph>, Propagated)> {
        let graph = self.graph()?;
        let chosen = &self.subsets[&(budget, seed)];
        let labels: Vec<u32> = chosen.iter().map(|&i| self.pool_labels[i]).collect();
        let propagated = graph.propagate(chosen, &labels, self.classes)?;
        Ok((graph, propagated))
    }

    /// The pool's neighbour graph, built once.
    fn graph(&self) -> Result<Rc<Graph>> {
        if let Some(g) = self.graph.borrow().as_ref() {
            return Ok(Rc::clone(g));
        }
        let f = self.features;
        // One graph for every seed: its principal components are seeded with 0.
        let graph = Rc::new(
            self.config
                .propagation
                .graph(&f.pool, f.dim, 0, self.device)?,
        );
        *self.graph.borrow_mut() = Some(Rc::clone(&graph));
        Ok(graph)
    }

    /// Clusters of the test rows scored against the test labels: ACC, NMI and ARI.
    fn scores(&self, assigned: &[u32]) -> Result<Vec<Score>> {
        let labels = self.test_labels;
        Ok(clustering([
            hungarian_accuracy(labels, assigned)?,
            nmi(labels, assigned)?,
            ari(labels, assigned)?,
        ]))
    }

    /// Accuracy, balanced accuracy and macro-F1 of predictions of the test rows.
    fn classified(&self, predicted: &[u32]) -> Result<Vec<Score>> {
        Ok(vec![Score::of_predictions(self.test_labels, predicted)?])
    }
}

/// A clustering's ACC, NMI and ARI as the scores of its three protocols.
fn clustering(scores: [f64; 3]) -> Vec<Score> {
    scores.into_iter().map(Score::plain).collect()
}

/// One protocol of the study.
pub(super) trait Evaluation {
    /// The protocols whose cells one run fills (a clustering gives ACC, NMI and ARI at once).
    fn protocols(&self) -> &'static [Protocol];

    /// Whether it evaluates `candidate` at all (fine-tuning needs a pretrained encoder; SCAN
    /// may be kept for some representations).
    fn applies(&self, _config: &StudyConfig, _candidate: &dyn Candidate) -> bool {
        true
    }

    /// Whether it uses no labels, and so runs once per seed (its budget is "all").
    fn label_free(&self) -> bool {
        false
    }

    /// Whether the seed changes its result beyond choosing the labelled subset (a training
    /// run's initialisation, a clustering's starts). One whose result the subset alone decides
    /// is computed once for the seeds that share a subset (every seed, with all labels).
    fn seeded(&self) -> bool {
        true
    }

    /// The budgets it runs at, of the study's `budgets`.
    fn budgets(&self, _config: &StudyConfig, budgets: &[LabelBudget]) -> Vec<LabelBudget> {
        if self.label_free() {
            vec![LabelBudget::All]
        } else {
            budgets.to_vec()
        }
    }

    /// The scores of [`Self::protocols`], in order, for one budget and seed.
    fn evaluate(&self, ctx: &Context<'_>, budget: LabelBudget, seed: u64) -> Result<Vec<Score>>;
}

/// The linear probe ([`LinearProbe`]), tuned on the validation split.
pub(super) struct Linear;

impl Evaluation for Linear {
    fn protocols(&self) -> &'static [Protocol] {
        &[Protocol::Linear]
    }

    fn seeded(&self) -> bool {
        false
    }

    fn evaluate(&self, ctx: &Context<'_>, budget: LabelBudget, seed: u64) -> Result<Vec<Score>> {
        let fitted = ctx.probe(budget, seed)?;
        ctx.classified(&fitted.predict(&ctx.features.test, ctx.device))
    }
}

/// The kNN probe ([`KnnProbe`]) with the labelled subset as its memory bank.
pub(super) struct Knn;

impl Evaluation for Knn {
    fn protocols(&self) -> &'static [Protocol] {
        &[Protocol::Knn]
    }

    fn seeded(&self) -> bool {
        false
    }

    fn evaluate(&self, ctx: &Context<'_>, budget: LabelBudget, seed: u64) -> Result<Vec<Score>> {
        let knn = KnnProbe {
            k: ctx.config.knn_k,
            temperature: ctx.config.knn_temperature,
        };
        let (x, y) = ctx.subset(budget, seed);
        let f = ctx.features;
        ctx.classified(&knn.predict(&x, &y, &f.test, f.dim, ctx.classes, ctx.device))
    }
}

/// Label propagation ([`Graph`]) from the labelled subset over the pool's neighbour graph; the
/// test images take their nearest pool images' propagated classes.
pub(super) struct Propagation;

impl Evaluation for Propagation {
    fn protocols(&self) -> &'static [Protocol] {
        &[Protocol::Propagation]
    }

    fn seeded(&self) -> bool {
        false
    }

    fn evaluate(&self, ctx: &Context<'_>, budget: LabelBudget, seed: u64) -> Result<Vec<Score>> {
        let (graph, propagated) = ctx.propagated(budget, seed)?;
        ctx.classified(&graph.predict(&propagated, &ctx.features.test, ctx.device)?)
    }
}

/// K-means with one cluster per class on the test features.
pub(super) struct KMeans;

impl Evaluation for KMeans {
    fn protocols(&self) -> &'static [Protocol] {
        &[
            Protocol::Cluster,
            Protocol::ClusterNmi,
            Protocol::ClusterAri,
        ]
    }

    fn label_free(&self) -> bool {
        true
    }

    fn evaluate(&self, ctx: &Context<'_>, _: LabelBudget, seed: u64) -> Result<Vec<Score>> {
        let f = ctx.features;
        let s = cluster_probe(
            &f.test,
            ctx.test_labels,
            f.dim,
            ctx.classes,
            ctx.config.cluster_n_init,
            seed,
            ctx.device,
        )?;
        Ok(clustering([s.accuracy, s.nmi, s.ari]))
    }
}

/// A full-covariance Gaussian mixture, one component per class, on the test features' first
/// `gmm_components` principal components (fewer when there are under twice that many test rows
/// per class).
pub(super) struct Gmm;

impl Evaluation for Gmm {
    fn protocols(&self) -> &'static [Protocol] {
        &[Protocol::Gmm, Protocol::GmmNmi, Protocol::GmmAri]
    }

    fn label_free(&self) -> bool {
        true
    }

    fn evaluate(&self, ctx: &Context<'_>, _: LabelBudget, seed: u64) -> Result<Vec<Score>> {
        let f = ctx.features;
        let rows = ctx.test_labels.len();
        let x = Tensor::<2>::from_data(TensorData::new(f.test.clone(), [rows, f.dim]), ctx.device);
        // A full covariance needs more rows per component than dimensions; few test rows get
        // fewer principal components.
        let k = ctx
            .config
            .gmm_components
            .min(f.dim)
            .min(rows / (2 * ctx.classes).max(1))
            .max(1);
        let z = PcaConfig::new(Components::Count(k))
            .seed(seed)
            .fit(&x)?
            .transform(&x)?;
        let fitted = GaussianMixtureConfig::new(ctx.classes)
            .n_init(ctx.config.cluster_n_init)
            .seed(seed)
            .fit(&z)?;
        ctx.scores(&fitted.labels)
    }
}

/// SCAN ([`scan_probe`]): clustering heads trained on the pool's features by their mined
/// neighbours, applied to the test features.
pub(super) struct Scan;

impl Evaluation for Scan {
    fn protocols(&self) -> &'static [Protocol] {
        &[Protocol::Scan, Protocol::ScanNmi, Protocol::ScanAri]
    }

    fn label_free(&self) -> bool {
        true
    }

    fn applies(&self, config: &StudyConfig, candidate: &dyn Candidate) -> bool {
        config.scan.clusters(candidate.name())
    }

    fn evaluate(&self, ctx: &Context<'_>, _: LabelBudget, seed: u64) -> Result<Vec<Score>> {
        let f = ctx.features;
        let s = scan_probe(
            &f.pool,
            &f.test,
            ctx.test_labels,
            f.dim,
            ctx.classes,
            &ctx.config.scan,
            seed,
            ctx.device,
        )?;
        Ok(clustering([s.accuracy, s.nmi, s.ari]))
    }
}

/// Fine-tuning a pretrained encoder with a linear head that starts from the linear probe of the
/// same labels.
pub(super) struct Finetune;

impl Evaluation for Finetune {
    fn protocols(&self) -> &'static [Protocol] {
        &[Protocol::Finetune]
    }

    fn applies(&self, _config: &StudyConfig, candidate: &dyn Candidate) -> bool {
        candidate.is_pretrained()
    }

    fn budgets(&self, config: &StudyConfig, budgets: &[LabelBudget]) -> Vec<LabelBudget> {
        budgets
            .iter()
            .copied()
            .filter(|&b| config.trains_at(b))
            .collect()
    }

    fn evaluate(&self, ctx: &Context<'_>, budget: LabelBudget, seed: u64) -> Result<Vec<Score>> {
        let head = ctx.probe(budget, seed)?.head();
        let labelled = ctx.subsets[&(budget, seed)]
            .iter()
            .map(|&i| ctx.pool_indices[i])
            .collect();
        ctx.classified(
            &ctx.candidate
                .fine_tune(head, Examples::labelled(labelled), seed)?,
        )
    }
}

/// Self-training (Iscen et al. 2019): label propagation labels the whole training pool from the
/// labelled subset, and the pretrained encoder is fine-tuned on all of it (the labelled images
/// with their own labels), its head starting from the linear probe of the labelled subset.
pub(super) struct SelfTraining;

impl Evaluation for SelfTraining {
    fn protocols(&self) -> &'static [Protocol] {
        &[Protocol::SelfTraining]
    }

    fn applies(&self, _config: &StudyConfig, candidate: &dyn Candidate) -> bool {
        candidate.is_pretrained()
    }

    fn budgets(&self, config: &StudyConfig, budgets: &[LabelBudget]) -> Vec<LabelBudget> {
        Finetune.budgets(config, budgets)
    }

    fn evaluate(&self, ctx: &Context<'_>, budget: LabelBudget, seed: u64) -> Result<Vec<Score>> {
        let head = ctx.probe(budget, seed)?.head();
        let mut labels = ctx.propagated(budget, seed)?.1.labels();
        for &i in &ctx.subsets[&(budget, seed)] {
            labels[i] = ctx.pool_labels[i];
        }
        let examples = Examples {
            indices: ctx.pool_indices.to_vec(),
            labels: Some(labels),
        };
        ctx.classified(&ctx.candidate.fine_tune(head, examples, seed)?)
    }
}

/// Scores of the units whose result the labelled subset alone decides, kept for the seeds that
/// share the subset they were computed on.
#[derive(Default)]
pub(super) struct SharedScores {
    /// By the unit's first protocol and the budget: the seed computed and its scores.
    kept: BTreeMap<(Protocol, LabelBudget), (u64, Vec<Score>)>,
}

impl SharedScores {
    /// The scores of `unit` at `budget` computed for another seed with the same subset.
    pub fn get(
        &self,
        unit: &dyn Evaluation,
        budget: LabelBudget,
        seed: u64,
        subsets: &BTreeMap<(LabelBudget, u64), Vec<usize>>,
    ) -> Option<Vec<Score>> {
        if unit.seeded() {
            return None;
        }
        let (computed, scores) = self.kept.get(&(unit.protocols()[0], budget))?;
        let same = subsets.get(&(budget, *computed)) == subsets.get(&(budget, seed));
        same.then(|| scores.clone())
    }

    /// Keeps `scores` of `unit` at `budget` and `seed`, if the seed does not change them.
    pub fn keep(
        &mut self,
        unit: &dyn Evaluation,
        budget: LabelBudget,
        seed: u64,
        scores: &[Score],
    ) {
        if !unit.seeded() {
            self.kept
                .insert((unit.protocols()[0], budget), (seed, scores.to_vec()));
        }
    }
}

/// The units of the protocols `config` lists, in the order cells are computed.
pub(super) fn enabled(config: &StudyConfig) -> Vec<Box<dyn Evaluation>> {
    let all: Vec<Box<dyn Evaluation>> = vec![
        Box::new(Linear),
        Box::new(Knn),
        Box::new(Propagation),
        Box::new(Finetune),
        Box::new(SelfTraining),
        Box::new(KMeans),
        Box::new(Gmm),
        Box::new(Scan),
    ];
    all.into_iter()
        .filter(|u| config.protocols.contains(&u.protocols()[0]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_the_seed_does_not_change_are_shared_by_seeds_with_one_subset() {
        let all = LabelBudget::All;
        let ten = LabelBudget::PerClass(10);
        let subsets: BTreeMap<(LabelBudget, u64), Vec<usize>> = [
            ((all, 0), vec![0, 1, 2, 3]),
            ((all, 1), vec![0, 1, 2, 3]),
            ((ten, 0), vec![0, 2]),
            ((ten, 1), vec![1, 3]),
        ]
        .into_iter()
        .collect();
        let score = |v: f64| vec![Score::plain(v)];
        let mut shared = SharedScores::default();
        assert!(!Linear.seeded() && !Knn.seeded() && !Propagation.seeded());
        assert!(Finetune.seeded() && SelfTraining.seeded() && KMeans.seeded());
        shared.keep(&Linear, all, 0, &score(0.9));
        shared.keep(&Linear, ten, 0, &score(0.7));
        shared.keep(&Finetune, all, 0, &score(0.8));
        // All labels: the same subset for every seed.
        assert_eq!(shared.get(&Linear, all, 1, &subsets), Some(score(0.9)));
        // Ten labels: another subset for seed 1.
        assert_eq!(shared.get(&Linear, ten, 1, &subsets), None);
        // Another unit, and one the seed changes, share nothing.
        assert_eq!(shared.get(&Knn, all, 1, &subsets), None);
        assert_eq!(shared.get(&Finetune, all, 1, &subsets), None);
    }
}
