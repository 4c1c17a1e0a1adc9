//! The text comparison: with 1, 10, 100 or all labels per class, does pretraining (masked
//! tokens, contrastive views) beat TF-IDF, TF-IDF + PCA, a random Transformer, and the same
//! Transformer trained from scratch on the labelled documents? The protocols, budgets, seeds
//! and cells are the image study's ([`crate::study::run_candidates`]).

use std::path::Path;
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use pretext_baselines::{Components, Fit, PcaConfig, Transform};
use pretext_data::LoaderConfig;
use pretext_data::text::{TextDataset, TextLoader, TextTask, TokenBatch, encode_documents};
use pretext_models::tasks::TaskModel;
use pretext_models::text::{
    MlmModel, Pooling, TextClassifierModel, TextEncoder, TextEncoderConfig,
};

use super::pretrain::{
    ENCODER_WEIGHTS, LoadedMlm, LoadedTextEncoder, TextPretrainConfig, TextTaskKind, fill_mask,
    load_mlm, load_text_encoder, pretrain_text,
};
use super::tfidf::TfIdf;
use crate::compare::PretrainingCost;
use crate::error::{Result, TrainError};
use crate::model::seeded;
use crate::observer::TrainObserver;
use crate::probes::LinearHead;
use crate::projection::{PROJECTED_EXAMPLES, Projection, evenly_spaced, project_features};
use crate::run_dir::RunMode;
use crate::study::{
    Baseline, Candidate, Cell, Examples, Features, StudyConfig, StudyLabels, StudyObserver,
    Summary, predictions, run_candidates, summarize,
};
use crate::trainer::{LoopSettings, train_quietly};

/// The text study's settings: the pretraining run, the study, and the TF-IDF vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextCompareConfig {
    /// The pretext tasks pretrained and compared, each into `pretrain/<task>` (default mlm).
    pub tasks: Vec<TextTaskKind>,
    /// The pretraining runs' settings; its `task` is each of `tasks` in turn.
    pub pretrain: TextPretrainConfig,
    pub study: StudyConfig,
    /// Words kept by TF-IDF (the most frequent).
    pub tfidf_features: usize,
    /// Sentences with `[MASK]` the report fills in with the pretrained model's top-5 tokens.
    pub fill_masks: Vec<String>,
    /// When `tasks` names both mlm and simcse, start the contrastive run from the study's
    /// masked-token encoder and its tokenizer instead of random weights (SimCSE on BERT), into
    /// `pretrain/simcse-from-mlm`. With simcse alone it starts from random weights.
    pub simcse_from_mlm: bool,
}

impl Default for TextCompareConfig {
    fn default() -> Self {
        Self {
            tasks: vec![TextTaskKind::Mlm, TextTaskKind::Simcse],
            pretrain: TextPretrainConfig::default(),
            study: StudyConfig {
                train_steps: 60,
                train_lr: 5e-4,
                train_batch_size: 32,
                finetune_encoder_lr_scale: 0.2,
                ..StudyConfig::default()
            },
            tfidf_features: 5000,
            fill_masks: [
                "The [MASK] sat on the mat.",
                "The computer [MASK] crashed again.",
                "Captain Kirk beamed up to the [MASK].",
                "The judge sent the lawyer to [MASK].",
                "I would like a [MASK] of coffee.",
            ]
            .map(String::from)
            .to_vec(),
            simcse_from_mlm: true,
        }
    }
}

impl TextCompareConfig {
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| TrainError::config(e.to_string()))
    }

    /// A few minutes on a laptop: one seed, one pretraining epoch, shorter probes and runs.
    pub fn quick(mut self) -> Self {
        self.study.seeds = 1;
        self.pretrain.epochs = 1;
        self.study.linear_iterations = self.study.linear_iterations.min(100);
        self.study.cluster_n_init = 1;
        self.study.train_steps = self.study.train_steps.min(20);
        self
    }

    /// Whether the contrastive run starts from the masked-token run (see `simcse_from_mlm`).
    pub fn simcse_starts_from_mlm(&self) -> bool {
        self.simcse_from_mlm
            && self.tasks.contains(&TextTaskKind::Mlm)
            && self.tasks.contains(&TextTaskKind::Simcse)
    }

    pub fn validate(&self) -> Result<()> {
        if self.tfidf_features == 0 {
            return Err(TrainError::config("tfidf_features must be at least 1"));
        }
        if self.tasks.is_empty() {
            return Err(TrainError::config("tasks must name at least one text task"));
        }
        if let Some(t) = self
            .tasks
            .iter()
            .find(|t| self.tasks.iter().filter(|u| u == t).count() > 1)
        {
            return Err(TrainError::config(format!(
                "tasks names {} twice",
                t.name()
            )));
        }
        if self.pretrain.init_from.is_some() {
            return Err(TrainError::config(
                "pretrain.init_from: the study pretrains its own encoders (simcse_from_mlm \
                 starts simcse from its mlm run)",
            ));
        }
        if self.study.train_views.is_some() {
            return Err(TrainError::config(
                "study.train_views augments images; the text study has none to augment",
            ));
        }
        self.pretrain.validate()?;
        self.study.validate()
    }
}

/// Token sequences of the training and test documents, one per document, cut to the
/// encoder's length.
struct Sequences {
    train: Arc<Vec<Vec<u32>>>,
    test: Vec<Vec<u32>>,
}

/// A Transformer encoder as a candidate.
struct EncoderCandidate<'a> {
    name: String,
    encoder: TextEncoder,
    pooling: Pooling,
    pretrained: bool,
    sequences: &'a Sequences,
    labels: Arc<Vec<u32>>,
    test_labels: &'a [u32],
    config: &'a StudyConfig,
    device: &'a Device,
}

/// Row-major pooled features of `sequences` at `indices`.
fn embed_text(
    encoder: &TextEncoder,
    sequences: &[Vec<u32>],
    indices: &[usize],
    pooling: Pooling,
    device: &Device,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(indices.len() * encoder.dim());
    for chunk in indices.chunks(256) {
        let batch: Vec<&[u32]> = chunk.iter().map(|&i| sequences[i].as_slice()).collect();
        let t = TokenBatch::pad(&batch).into_tensors(device);
        out.extend(
            encoder
                .pooled(t.tokens, t.padding, pooling)
                .into_data()
                .try_into_vec_as::<f32>()
                .unwrap_or_default(),
        );
    }
    out
}

impl Candidate for EncoderCandidate<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_pretrained(&self) -> bool {
        self.pretrained
    }

    fn features(&self, pool: &[usize], val: &[usize]) -> Result<Features> {
        let all_test: Vec<usize> = (0..self.sequences.test.len()).collect();
        let embed = |set: &[Vec<u32>], idx: &[usize]| {
            embed_text(&self.encoder, set, idx, self.pooling, self.device)
        };
        Ok(Features {
            pool: embed(&self.sequences.train, pool),
            val: embed(&self.sequences.train, val),
            test: embed(&self.sequences.test, &all_test),
            dim: self.encoder.dim(),
        })
    }

    fn fine_tune(&self, head: LinearHead, examples: Examples, seed: u64) -> Result<Vec<u32>> {
        let classes = head.bias.len();
        let dim = head.weight.len() / classes.max(1);
        let device = self.device.clone().autodiff();
        let model = seeded(seed, &device, || {
            let encoder = self.encoder.clone().fork(&device).train();
            Ok(TaskModel::TextClassifier(TextClassifierModel::with_head(
                encoder,
                Tensor::from_data(
                    TensorData::new(head.weight.clone(), [dim, classes]),
                    &device,
                ),
                Tensor::from_data(TensorData::new(head.bias.clone(), [classes]), &device),
            )))
        })?;
        let labels = match examples.relabelled(&self.labels)? {
            Some(labels) => Arc::new(labels),
            None => Arc::clone(&self.labels),
        };
        train_text_classifier(
            model,
            self.sequences,
            &labels,
            self.test_labels,
            examples.indices,
            self.config,
            self.config.finetune_encoder_lr_scale,
            seed,
            self.device,
        )
    }
}

/// Trains a text classifier on `labelled` training sequences for the study's number of steps
/// and returns its predicted class of each test document.
#[allow(clippy::too_many_arguments)]
fn train_text_classifier(
    model: TaskModel,
    sequences: &Sequences,
    labels: &Arc<Vec<u32>>,
    test_labels: &[u32],
    labelled: Vec<usize>,
    config: &StudyConfig,
    encoder_lr_scale: f64,
    seed: u64,
    device: &Device,
) -> Result<Vec<u32>> {
    let n = labelled.len();
    let loader = TextLoader::new(
        TextTask::Classify,
        Arc::clone(&sequences.train),
        Some(Arc::clone(labels)),
        Some(labelled),
        LoaderConfig {
            batch_size: config.train_batch_size.min(n).max(1),
            drop_last: false,
            ..LoaderConfig::default()
        },
        seed,
    )?;
    let settings = LoopSettings::fixed_steps(
        config.train_steps,
        pretext_data::BatchSource::batches_per_epoch(&loader),
        crate::config::OptimizerConfig {
            lr: config.train_lr,
            weight_decay: 0.01,
            ..crate::config::OptimizerConfig::default()
        },
        Some(1.0),
        encoder_lr_scale,
    );
    let train_device = device.clone().autodiff();
    let TaskModel::TextClassifier(classifier) =
        train_quietly(model, &loader, &settings, &train_device)?
    else {
        return Err(TrainError::config("text fine-tuning builds a classifier"));
    };
    let mut predicted = Vec::with_capacity(test_labels.len());
    for chunk in sequences.test.chunks(256) {
        let batch: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let t = TokenBatch::pad(&batch).into_tensors(device);
        predicted.extend(predictions(classifier.forward(t.tokens, t.padding)));
    }
    Ok(predicted)
}

/// TF-IDF features, optionally reduced by PCA, as a candidate.
struct TfIdfCandidate<'a> {
    name: &'static str,
    data: &'a TextDataset,
    max_features: usize,
    pca: Option<usize>,
    device: &'a Device,
}

impl Candidate for TfIdfCandidate<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn is_pretrained(&self) -> bool {
        false
    }

    fn is_projected(&self) -> bool {
        self.pca.is_none()
    }

    fn features(&self, pool: &[usize], val: &[usize]) -> Result<Features> {
        let docs = |idx: &[usize]| -> Vec<&str> {
            idx.iter()
                .map(|&i| self.data.train.documents[i].as_str())
                .collect()
        };
        // Fitted on the training pool's text, without labels.
        let tfidf = TfIdf::fit(&docs(pool), self.max_features, 2);
        let dim = tfidf.dim();
        let pool_x = tfidf.transform(&docs(pool));
        let val_x = tfidf.transform(&docs(val));
        let test_x = tfidf.transform(&self.data.test.documents);
        let Some(k) = self.pca else {
            return Ok(Features {
                pool: pool_x,
                val: val_x,
                test: test_x,
                dim,
            });
        };
        let k = k.min(dim).min(pool.len());
        let tensor = |v: Vec<f32>| {
            let rows = v.len() / dim.max(1);
            Tensor::<2>::from_data(TensorData::new(v, [rows, dim]), self.device)
        };
        let pca = PcaConfig::new(Components::Count(k)).fit(&tensor(pool_x.clone()))?;
        let project = |v: Vec<f32>| -> Result<Vec<f32>> {
            Ok(pca
                .transform(&tensor(v))?
                .into_data()
                .try_into_vec_as::<f32>()
                .unwrap_or_default())
        };
        Ok(Features {
            pool: project(pool_x)?,
            val: project(val_x)?,
            test: project(test_x)?,
            dim: k,
        })
    }

    fn fine_tune(&self, _: LinearHead, _: Examples, _: u64) -> Result<Vec<u32>> {
        Err(TrainError::config(
            "TF-IDF features have no encoder to fine-tune",
        ))
    }
}

/// A filled-in mask for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilledMask {
    pub text: String,
    /// Per `[MASK]`, the five likeliest tokens and their probabilities.
    pub top: Vec<Vec<(String, f64)>>,
}

/// What the text study returns.
#[derive(Debug, Clone)]
pub struct TextCompareOutcome {
    pub cells: Vec<Cell>,
    pub summaries: Vec<Summary>,
    /// Held-out masked-token accuracy of the MLM model, if the study pretrained one.
    pub masked_accuracy: Option<f64>,
    /// Share of held-out views matched by the SimCSE encoder, if the study pretrained one.
    pub views_matched: Option<f64>,
    /// Each pretraining run's cost and curves (each with its task's held-out number).
    pub pretraining: Vec<PretrainingCost>,
    pub filled: Vec<FilledMask>,
    pub vocab_size: usize,
    /// Test features of each candidate in two dimensions.
    pub projections: Vec<Projection>,
}

/// Names of the text candidates, as the report shows them.
pub const MLM_MEAN: &str = "mlm (mean)";
pub const MLM_CLS: &str = "mlm (cls)";
pub const SIMCSE: &str = "simcse (mean)";
pub const SIMCSE_FROM_MLM: &str = "simcse from mlm (mean)";
pub const SCRATCH: &str = "transformer from scratch";

/// A pretrained encoder of the study and the documents as its tokenizer cuts them.
struct Pretrained {
    task: TextTaskKind,
    loaded: LoadedTextEncoder,
    /// The whole masked-token model (encoder and head), which fills in the report's masks.
    mlm: Option<MlmModel>,
    sequences: Sequences,
}

/// Pretrains each task (into `out/pretrain/<task>`, resuming), then runs the study into
/// `out/cells.jsonl`.
pub fn compare_text(
    config: &TextCompareConfig,
    data: &TextDataset,
    device: &Device,
    out: &Path,
    train_observer: &mut dyn TrainObserver,
    observer: &mut dyn StudyObserver,
) -> Result<TextCompareOutcome> {
    config.validate()?;
    if data.test.is_empty() || data.num_classes() < 2 {
        return Err(TrainError::config(format!(
            "{} needs at least two classes and a test split for the study",
            data.name
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let mut pretrained = Vec::with_capacity(config.tasks.len());
    let mut pretraining = Vec::with_capacity(config.tasks.len());
    // Pretrained (and reported) in the order of `tasks`, except that a contrastive run that
    // starts from the masked-token encoder comes after it.
    let mut order = config.tasks.clone();
    let starts_from_mlm = config.simcse_starts_from_mlm();
    if starts_from_mlm {
        order.sort_by_key(|&t| t != TextTaskKind::Mlm);
    }
    let from_mlm = |task: TextTaskKind| starts_from_mlm && task == TextTaskKind::Simcse;
    let run_name = |task: TextTaskKind| {
        if from_mlm(task) {
            "simcse-from-mlm"
        } else {
            TextTaskKind::name(task)
        }
    };
    for &task in &order {
        let run = out.join("pretrain").join(run_name(task));
        let done = match task {
            TextTaskKind::Mlm => super::pretrain::MLM_WEIGHTS,
            TextTaskKind::Simcse => ENCODER_WEIGHTS,
        };
        if !run.join(done).exists() {
            observer.note(&format!(
                "pretraining {} for {} epochs",
                run_name(task),
                config.pretrain.epochs
            ));
            let settings = TextPretrainConfig {
                task,
                init_from: from_mlm(task)
                    .then(|| out.join("pretrain").join(TextTaskKind::Mlm.name())),
                ..config.pretrain.clone()
            };
            pretrain_text(
                &settings,
                data,
                device,
                &run,
                RunMode::Resume,
                train_observer,
            )?;
        }
        pretraining.push(PretrainingCost::of(run_name(task), &run));
        let (loaded, mlm) = match task {
            TextTaskKind::Mlm => {
                let LoadedMlm {
                    model,
                    tokenizer,
                    description,
                } = load_mlm(&run, device)?;
                let loaded = LoadedTextEncoder {
                    encoder: model.encoder.clone(),
                    tokenizer,
                    description,
                };
                (loaded, Some(model))
            }
            TextTaskKind::Simcse => (load_text_encoder(&run, device)?, None),
        };
        let max_len = loaded.description.encoder.max_len;
        let sequences = Sequences {
            train: Arc::new(encode_documents(
                &loaded.tokenizer,
                &data.train.documents,
                max_len,
                false,
            )),
            test: encode_documents(&loaded.tokenizer, &data.test.documents, max_len, false),
        };
        pretrained.push(Pretrained {
            task,
            loaded,
            mlm,
            sequences,
        });
    }
    // The baselines take the first run's tokenizer and encoder shape.
    let first = &pretrained[0];
    let encoder_config: TextEncoderConfig =
        first.loaded.description.encoder.clone().with_dropout(0.0);
    let sequences = &first.sequences;
    let train_labels = data.train.labels.clone().unwrap_or_default();
    let test_labels = data.test.labels.clone().unwrap_or_default();
    let labels = Arc::new(train_labels.clone());
    let random = seeded(config.pretrain.seed, device, || {
        Ok(encoder_config.init(device)?)
    })?;
    let encoder_candidate = |name: &str,
                             encoder: TextEncoder,
                             pooling,
                             pretrained,
                             sequences|
     -> EncoderCandidate<'_> {
        EncoderCandidate {
            name: name.into(),
            encoder,
            pooling,
            pretrained,
            sequences,
            labels: Arc::clone(&labels),
            test_labels: &test_labels,
            config: &config.study,
            device,
        }
    };
    let mut encoders = vec![encoder_candidate(
        "random transformer",
        random,
        Pooling::Mean,
        false,
        sequences,
    )];
    for p in &pretrained {
        let encoder = p.loaded.encoder.clone();
        match p.task {
            TextTaskKind::Mlm => {
                encoders.push(encoder_candidate(
                    MLM_CLS,
                    encoder.clone(),
                    Pooling::Cls,
                    false,
                    &p.sequences,
                ));
                encoders.push(encoder_candidate(
                    MLM_MEAN,
                    encoder,
                    Pooling::Mean,
                    true,
                    &p.sequences,
                ));
            }
            TextTaskKind::Simcse => encoders.push(encoder_candidate(
                if starts_from_mlm {
                    SIMCSE_FROM_MLM
                } else {
                    SIMCSE
                },
                encoder,
                Pooling::Mean,
                true,
                &p.sequences,
            )),
        }
    }
    let tfidf = TfIdfCandidate {
        name: "tf-idf",
        data,
        max_features: config.tfidf_features,
        pca: None,
        device,
    };
    let tfidf_pca = TfIdfCandidate {
        name: "tf-idf + pca",
        data,
        max_features: config.tfidf_features,
        pca: Some(config.study.pca_components),
        device,
    };
    let mut candidates: Vec<&dyn Candidate> = vec![&tfidf, &tfidf_pca];
    candidates.extend(encoders.iter().map(|e| e as &dyn Candidate));
    let scratch = |labelled: Vec<usize>, seed: u64| -> Result<Vec<u32>> {
        let train_device = device.clone().autodiff();
        let classes = data.num_classes();
        let model = seeded(seed, &train_device, || {
            Ok(TaskModel::TextClassifier(TextClassifierModel::new(
                encoder_config
                    .clone()
                    .with_pooling(Pooling::Mean)
                    .init(&train_device)?,
                classes,
                &train_device,
            )))
        })?;
        train_text_classifier(
            model,
            sequences,
            &labels,
            &test_labels,
            labelled,
            &config.study,
            1.0,
            seed,
            device,
        )
    };
    let cells = run_candidates(
        &config.study,
        StudyLabels {
            train: &train_labels,
            test: &test_labels,
            classes: data.num_classes(),
        },
        &candidates,
        Some(Baseline {
            name: SCRATCH,
            train: &scratch,
        }),
        device,
        &out.join("cells.jsonl"),
        observer,
    )?;
    observer.note("projecting test features to two dimensions");
    let all_train: Vec<usize> = (0..train_labels.len()).collect();
    let shown = evenly_spaced(test_labels.len(), PROJECTED_EXAMPLES);
    let mut projections = Vec::new();
    for candidate in candidates.iter().filter(|c| c.is_projected()) {
        if shown.len() < 3 {
            break;
        }
        let features = candidate.features(&all_train, &[])?;
        let dim = features.dim;
        let picked = shown
            .iter()
            .flat_map(|&i| features.test[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let labels = shown.iter().map(|&i| test_labels[i]).collect();
        projections.push(project_features(
            candidate.name(),
            picked,
            dim,
            labels,
            device,
        )?);
    }
    let mut filled = Vec::new();
    let mut masked_accuracy = None;
    if let Some((p, mlm)) = pretrained
        .iter()
        .find_map(|p| p.mlm.as_ref().map(|m| (p, m)))
    {
        masked_accuracy = p.loaded.description.masked_accuracy;
        filled = config
            .fill_masks
            .iter()
            .map(|text| FilledMask {
                text: text.clone(),
                top: fill_mask(mlm, &p.loaded.tokenizer, text, 5, device),
            })
            .collect();
    }
    let views_matched = pretrained
        .iter()
        .find_map(|p| p.loaded.description.views_matched);
    Ok(TextCompareOutcome {
        summaries: summarize(&cells),
        cells,
        masked_accuracy,
        views_matched,
        pretraining,
        filled,
        vocab_size: first.loaded.tokenizer.vocab_size(),
        projections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_augmentations_are_refused_for_text() {
        let config =
            TextCompareConfig::from_toml("[study.train_views]\nflip_prob = 0.5\n").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("train_views"), "{err}");
        assert!(TextCompareConfig::default().validate().is_ok());
    }

    #[test]
    fn simcse_starts_from_mlm_only_beside_it_and_the_study_owns_initialisation() {
        let parse = |text: &str| TextCompareConfig::from_toml(text).unwrap();
        assert!(TextCompareConfig::default().simcse_starts_from_mlm());
        let alone = parse("tasks = [\"simcse\"]\nsimcse_from_mlm = true\n");
        assert!(alone.validate().is_ok());
        assert!(!alone.simcse_starts_from_mlm());
        let random = parse("tasks = [\"mlm\", \"simcse\"]\nsimcse_from_mlm = false\n");
        assert!(!random.simcse_starts_from_mlm());
        let err = parse("[pretrain]\ninit_from = \"runs/mlm\"\n")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("init_from"), "{err}");
    }
}
