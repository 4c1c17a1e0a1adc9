//! What a training loop reports as it goes. The library never prints; the CLI shows progress
//! bars by implementing [`TrainObserver`].

/// One optimizer-step's (or batch's) figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    pub epoch: u64,
    /// Batch index within the epoch (0-based).
    pub batch: usize,
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub images_per_second: f64,
    /// Two-view methods: the per-dimension standard deviation of the unit-length embeddings
    /// (about `1 / sqrt(dim)` when spread out, 0 when collapsed).
    pub embedding_std: Option<f64>,
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    pub epoch: u64,
    pub mean_loss: f64,
    pub knn_accuracy: Option<f64>,
    pub seconds: f64,
    pub images_per_second: f64,
    /// Two-view methods: how spread out the epoch's embeddings were.
    pub embedding: Option<EmbeddingSpread>,
}

/// The collapse monitor of an epoch: the mean of [`StepReport::embedding_std`] and the
/// embedding's width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmbeddingSpread {
    pub std: f64,
    pub dim: usize,
}

impl EmbeddingSpread {
    /// Below a tenth of the `1 / sqrt(dim)` of spread-out embeddings, the embeddings have
    /// collapsed (all images mapped to nearly one point, or to a few dimensions).
    pub const COLLAPSED: f64 = 0.1;

    /// `std * sqrt(dim)`: about 1 when spread out, 0 when collapsed.
    pub fn relative(&self) -> f64 {
        self.std * (self.dim as f64).sqrt()
    }

    pub fn collapsed(&self) -> bool {
        self.relative() < Self::COLLAPSED
    }
}

/// Receives progress. Every method has an empty default.
pub trait TrainObserver {
    /// An epoch of `batches` batches starts at batch `first` (non-zero after a resume).
    fn epoch_started(&mut self, _epoch: u64, _epochs: u64, _first: usize, _batches: usize) {}
    fn step(&mut self, _report: &StepReport) {}
    fn epoch_finished(&mut self, _report: &EpochReport) {}
    /// Something a person should know (a skipped corrupt checkpoint, where a run resumed).
    fn note(&mut self, _message: &str) {}
}

/// Reports nothing.
pub struct Silent;

impl TrainObserver for Silent {}
