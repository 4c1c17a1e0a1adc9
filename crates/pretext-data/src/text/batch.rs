//! Token sequences, their batches (padded to the longest sequence of the batch) and the text
//! loader, which makes them on worker threads ahead of training like the image loader.

use std::sync::Arc;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::masking::{MaskedSequence, MlmMasking};
use super::tokenizer::{Special, TextTokenizer};
use super::views::{TextViews, TextViewsBatch};
use crate::error::{DataError, Result};
use crate::loader::{
    BatchSource, Batches, LoaderConfig, MakeBatch, batch_count, prefetch, shuffled,
};
use crate::tasks::{AnyBatch, sample_seed};

/// Token ids of documents, each framed `[CLS] … [SEP]` and at most `max_len` long. With
/// `split_long`, a longer document becomes several sequences (pretraining sees all its text);
/// without, it is cut (one sequence per document, for classification).
pub fn encode_documents(
    tokenizer: &TextTokenizer,
    documents: &[String],
    max_len: usize,
    split_long: bool,
) -> Vec<Vec<u32>> {
    let window = max_len.saturating_sub(2).max(1);
    let frame = |piece: &[u32]| {
        let mut s = Vec::with_capacity(piece.len() + 2);
        s.push(Special::Cls.id());
        s.extend_from_slice(piece);
        s.push(Special::Sep.id());
        s
    };
    let mut out = Vec::with_capacity(documents.len());
    for doc in documents {
        let ids = tokenizer.encode(doc);
        if split_long && ids.len() > window {
            out.extend(ids.chunks(window).map(frame));
        } else {
            out.push(frame(&ids[..ids.len().min(window)]));
        }
    }
    out
}

/// Sequences padded to one length, on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// `batch * len` ids, row-major, `[PAD]` after each sequence's end.
    pub tokens: Vec<u32>,
    pub batch: usize,
    pub len: usize,
}

/// [`TokenBatch`] on a device.
#[derive(Debug, Clone)]
pub struct TokenTensors {
    /// `[batch, len]`.
    pub tokens: Tensor<2, Int>,
    /// `[batch, len]`, true at padding.
    pub padding: Tensor<2, Bool>,
}

impl TokenBatch {
    pub fn pad(sequences: &[&[u32]]) -> Self {
        let len = sequences.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut tokens = vec![Special::Pad.id(); sequences.len() * len];
        for (row, s) in tokens.chunks_mut(len).zip(sequences) {
            row[..s.len()].copy_from_slice(s);
        }
        Self {
            tokens,
            batch: sequences.len(),
            len,
        }
    }

    pub fn into_tensors(self, device: &Device) -> TokenTensors {
        let shape = [self.batch, self.len];
        let pad = Special::Pad.id();
        let padding: Vec<bool> = self.tokens.iter().map(|&t| t == pad).collect();
        let ids: Vec<i64> = self.tokens.into_iter().map(i64::from).collect();
        TokenTensors {
            tokens: Tensor::from_data(TensorData::new(ids, shape), device),
            padding: Tensor::from_data(TensorData::new(padding, shape), device),
        }
    }
}

/// Masked sequences and what to predict, on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlmBatch {
    pub inputs: TokenBatch,
    /// Selected positions as indices into the flattened `[batch * len]` tokens.
    pub positions: Vec<usize>,
    /// The original token at each position.
    pub targets: Vec<u32>,
}

/// [`MlmBatch`] on a device.
#[derive(Debug, Clone)]
pub struct MlmTensors {
    pub inputs: TokenTensors,
    /// `[selected]`.
    pub positions: Tensor<1, Int>,
    /// `[selected]`.
    pub targets: Tensor<1, Int>,
}

impl MlmBatch {
    /// Masked sequences as one padded batch, each selected position flattened.
    pub fn from_masked(masked: &[MaskedSequence]) -> Self {
        let inputs: Vec<&[u32]> = masked.iter().map(|m| m.inputs.as_slice()).collect();
        let inputs = TokenBatch::pad(&inputs);
        let len = inputs.len;
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        for (row, m) in masked.iter().enumerate() {
            positions.extend(m.selected.iter().map(|&p| row * len + p));
            targets.extend_from_slice(&m.targets);
        }
        Self {
            inputs,
            positions,
            targets,
        }
    }

    pub fn into_tensors(self, device: &Device) -> MlmTensors {
        let n = self.positions.len();
        let ints = |v: Vec<i64>| Tensor::from_data(TensorData::new(v, [n]), device);
        MlmTensors {
            inputs: self.inputs.into_tensors(device),
            positions: ints(self.positions.iter().map(|&p| p as i64).collect()),
            targets: ints(self.targets.iter().map(|&t| i64::from(t)).collect()),
        }
    }
}

/// Sequences with one class each, on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextClassBatch {
    pub tokens: TokenBatch,
    pub labels: Vec<u32>,
}

/// [`TextClassBatch`] on a device.
#[derive(Debug, Clone)]
pub struct TextClassTensors {
    pub tokens: TokenTensors,
    /// `[batch]`.
    pub targets: Tensor<1, Int>,
}

impl TextClassBatch {
    pub fn into_tensors(self, device: &Device) -> TextClassTensors {
        let n = self.labels.len();
        let targets: Vec<i64> = self.labels.iter().map(|&t| i64::from(t)).collect();
        TextClassTensors {
            tokens: self.tokens.into_tensors(device),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
        }
    }
}

/// What a text loader makes.
#[derive(Debug, Clone)]
pub enum TextTask {
    /// Masked-token prediction, masked afresh every epoch.
    Mlm(MlmMasking),
    /// Two views of each sequence, cut afresh every epoch.
    Views(TextViews),
    /// Classification by the sequences' labels.
    Classify,
}

struct Shared {
    task: TextTask,
    sequences: Arc<Vec<Vec<u32>>>,
    labels: Option<Arc<Vec<u32>>>,
    indices: Vec<usize>,
    config: LoaderConfig,
    seed: u64,
}

/// Makes batches of a text task from (a subset of) token sequences. Cheap to clone.
#[derive(Clone)]
pub struct TextLoader {
    shared: Arc<Shared>,
}

impl TextLoader {
    /// A loader over `indices` of `sequences` (all when `None`). Classification needs `labels`,
    /// one per sequence.
    pub fn new(
        task: TextTask,
        sequences: Arc<Vec<Vec<u32>>>,
        labels: Option<Arc<Vec<u32>>>,
        indices: Option<Vec<usize>>,
        config: LoaderConfig,
        seed: u64,
    ) -> Result<Self> {
        if matches!(task, TextTask::Classify) {
            match &labels {
                None => {
                    return Err(DataError::InvalidConfig(
                        "classification needs labelled text".into(),
                    ));
                }
                Some(l) if l.len() != sequences.len() => {
                    return Err(DataError::InvalidConfig(format!(
                        "{} labels for {} sequences",
                        l.len(),
                        sequences.len()
                    )));
                }
                _ => {}
            }
        }
        if config.batch_size == 0 || config.prefetch == 0 {
            return Err(DataError::InvalidConfig(
                "batch_size and prefetch must be positive".into(),
            ));
        }
        let indices = indices.unwrap_or_else(|| (0..sequences.len()).collect());
        if let Some(&bad) = indices.iter().find(|&&i| i >= sequences.len()) {
            return Err(DataError::InvalidConfig(format!(
                "sequence index {bad} is out of range for {} sequences",
                sequences.len()
            )));
        }
        if indices.is_empty() || (config.drop_last && indices.len() < config.batch_size) {
            return Err(DataError::InvalidConfig(format!(
                "{} sequences are fewer than one batch of {}; lower the batch size",
                indices.len(),
                config.batch_size
            )));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                task,
                sequences,
                labels,
                indices,
                config,
                seed,
            }),
        })
    }

    /// Batch `batch` of epoch `epoch`, made on the calling thread.
    pub fn batch(&self, epoch: u64, batch: usize) -> AnyBatch {
        let order = self.shared.epoch_order(epoch);
        self.shared.make(epoch, &order, batch)
    }
}

impl BatchSource for TextLoader {
    fn batches_per_epoch(&self) -> usize {
        batch_count(self.shared.indices.len(), &self.shared.config)
    }

    fn epoch_from(&self, epoch: u64, first: usize) -> Batches<AnyBatch> {
        let s = &self.shared;
        let order = Arc::new(s.epoch_order(epoch));
        let maker = Arc::clone(&self.shared) as Arc<dyn MakeBatch<AnyBatch>>;
        prefetch(
            maker,
            epoch,
            order,
            first,
            self.batches_per_epoch(),
            &s.config,
        )
    }
}

/// Batches drawn from windows of this many batches hold sequences of similar length.
const BUCKET_BATCHES: usize = 50;

impl Shared {
    /// The epoch's order. Shuffled, it is also bucketed: each window of [`BUCKET_BATCHES`]
    /// batches is sorted by length before it is cut into batches, and the batches are then
    /// shuffled, so a batch pads to little more than its own sequences' length (fortunes run
    /// from a few tokens to over a hundred) while every epoch still sees every sequence once in
    /// a seeded random order.
    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order = shuffled(&self.indices, self.config.shuffle, self.seed, epoch);
        if !self.config.shuffle {
            return order;
        }
        let bs = self.config.batch_size;
        for window in order.chunks_mut(bs * BUCKET_BATCHES) {
            window.sort_by_key(|&i| self.sequences[i].len());
        }
        // Keep a short last batch last (drop_last drops it; otherwise it stays whole).
        let full = order.len() / bs;
        let batch_ids: Vec<usize> = (0..full).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(sample_seed(self.seed, epoch, u64::MAX - 2));
        let shuffled_ids = {
            let mut ids = batch_ids;
            rand::seq::SliceRandom::shuffle(ids.as_mut_slice(), &mut rng);
            ids
        };
        let mut out = Vec::with_capacity(order.len());
        for b in shuffled_ids {
            out.extend_from_slice(&order[b * bs..(b + 1) * bs]);
        }
        out.extend_from_slice(&order[full * bs..]);
        out
    }
}

impl MakeBatch<AnyBatch> for Shared {
    fn make(&self, epoch: u64, order: &[usize], batch: usize) -> AnyBatch {
        let bs = self.config.batch_size;
        let chosen = &order[batch * bs..((batch + 1) * bs).min(order.len())];
        let sequences: Vec<&[u32]> = chosen
            .iter()
            .map(|&i| self.sequences[i].as_slice())
            .collect();
        match &self.task {
            TextTask::Classify => {
                let labels = self.labels.as_deref().map(Vec::as_slice).unwrap_or(&[]);
                AnyBatch::TextClassification(TextClassBatch {
                    tokens: TokenBatch::pad(&sequences),
                    labels: chosen
                        .iter()
                        .map(|&i| labels.get(i).copied().unwrap_or(0))
                        .collect(),
                })
            }
            TextTask::Mlm(masking) => {
                let mut masked: Vec<_> = chosen
                    .iter()
                    .zip(&sequences)
                    .map(|(&i, s)| {
                        let mut rng =
                            ChaCha8Rng::seed_from_u64(sample_seed(self.seed, epoch, i as u64));
                        masking.mask(s, &mut rng)
                    })
                    .collect();
                if masked.iter().all(|m| m.selected.is_empty()) {
                    // Rare (a batch of very short sequences): predict one token so the batch
                    // has a loss.
                    let salt = u64::MAX - 1;
                    let mut rng = ChaCha8Rng::seed_from_u64(sample_seed(self.seed, epoch, salt));
                    let one = sequences
                        .iter()
                        .enumerate()
                        .find_map(|(row, s)| masking.mask_one(s, &mut rng).map(|m| (row, m)));
                    if let Some((row, m)) = one {
                        masked[row] = m;
                    }
                }
                AnyBatch::Mlm(MlmBatch::from_masked(&masked))
            }
            TextTask::Views(views) => {
                let pairs: Vec<_> = chosen
                    .iter()
                    .zip(&sequences)
                    .map(|(&i, s)| {
                        let mut rng =
                            ChaCha8Rng::seed_from_u64(sample_seed(self.seed, epoch, i as u64));
                        (views.view(s, &mut rng), views.view(s, &mut rng))
                    })
                    .collect();
                AnyBatch::TextViews(TextViewsBatch::from_pairs(&pairs))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::masking::MlmConfig;

    fn sequences() -> Arc<Vec<Vec<u32>>> {
        Arc::new(
            (0..10u32)
                .map(|i| (0..(3 + i)).map(|t| 5 + t).collect())
                .collect(),
        )
    }

    #[test]
    fn mlm_batches_are_padded_seeded_and_point_at_their_targets() {
        let masking = MlmConfig::default().build(40).unwrap();
        let config = LoaderConfig {
            batch_size: 4,
            workers: 2,
            ..LoaderConfig::default()
        };
        let loader =
            TextLoader::new(TextTask::Mlm(masking), sequences(), None, None, config, 9).unwrap();
        assert_eq!(loader.batches_per_epoch(), 2);
        let batches: Vec<AnyBatch> = loader.epoch_from(0, 0).collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1], loader.batch(0, 1));
        assert_ne!(
            loader.batch(0, 0),
            loader.batch(1, 0),
            "masks change per epoch"
        );
        for b in batches {
            let AnyBatch::Mlm(b) = b else { panic!() };
            assert_eq!(b.inputs.batch, 4);
            assert!(!b.positions.is_empty());
            for (&p, &t) in b.positions.iter().zip(&b.targets) {
                assert!(p < b.inputs.tokens.len());
                assert!(t >= 5);
            }
        }
    }

    #[test]
    fn classification_needs_labels_and_encoding_frames_documents() {
        let config = LoaderConfig::sequential(4);
        assert!(
            TextLoader::new(
                TextTask::Classify,
                sequences(),
                None,
                None,
                config.clone(),
                0
            )
            .is_err()
        );
        let labels = Arc::new((0..10).map(|i| i % 2).collect());
        let loader = TextLoader::new(
            TextTask::Classify,
            sequences(),
            Some(labels),
            None,
            config,
            0,
        )
        .unwrap();
        let AnyBatch::TextClassification(b) = loader.batch(0, 2) else {
            panic!()
        };
        assert_eq!(b.labels, vec![0, 1]);
        assert_eq!((b.tokens.batch, b.tokens.len), (2, 12));
        assert_eq!(b.tokens.tokens[11], 0, "the shorter sequence is padded");
    }
}
