//! The batch loader: shuffles a split each epoch and makes batches on worker threads, a bounded
//! number ahead of the training step.
//!
//! Worker `w` of `W` makes batches `w, w + W, w + 2W, ...` into its own bounded channel and the
//! consumer takes them round-robin, so batches arrive in order and each batch's content depends
//! only on the seed, the epoch and its images (see [`sample_seed`]), never on the number of
//! workers or their timing.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::{ImageSet, Normalization};
use crate::error::{DataError, Result};
use crate::tasks::{PretextTask, Samples, sample_seed};

/// Loader settings. Defaults: batches of 256 images, shuffled, incomplete last batch dropped,
/// one worker per core, two batches queued per worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    /// Images per batch (a task may make several examples from one image).
    pub batch_size: usize,
    pub shuffle: bool,
    /// Drop the last batch of an epoch when it is smaller than `batch_size` (batch norm and
    /// contrastive losses behave badly on tiny batches).
    pub drop_last: bool,
    /// Worker threads; 0 means one per available core.
    pub workers: usize,
    /// Batches each worker may have ready ahead of the consumer.
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            shuffle: true,
            drop_last: true,
            workers: 0,
            prefetch: 2,
        }
    }
}

impl LoaderConfig {
    /// In split order with every image kept: for evaluation and embedding.
    pub fn sequential(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: false,
            drop_last: false,
            ..Self::default()
        }
    }

    fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

struct Shared<T> {
    task: T,
    set: Arc<ImageSet>,
    norm: Normalization,
    indices: Vec<usize>,
    config: LoaderConfig,
    seed: u64,
}

/// Makes batches of a task from (a subset of) one split. Cheap to clone.
pub struct BatchLoader<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for BatchLoader<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: PretextTask + 'static> BatchLoader<T>
where
    T::Batch: 'static,
{
    /// A loader over `indices` of `set` (all images when `None`). Fails when the images do not
    /// have the task's shape, the task needs labels the set lacks, an index is out of range, or
    /// there are fewer images than one batch while incomplete batches are dropped.
    pub fn new(
        task: T,
        set: Arc<ImageSet>,
        indices: Option<Vec<usize>>,
        norm: Normalization,
        config: LoaderConfig,
        seed: u64,
    ) -> Result<Self> {
        if set.shape != task.input_shape() {
            return Err(DataError::InvalidConfig(format!(
                "the task was built for {} images but the data holds {} images",
                task.input_shape(),
                set.shape
            )));
        }
        if task.needs_labels() && set.labels.is_none() {
            return Err(DataError::InvalidConfig(
                "the task needs class labels but the data has none".into(),
            ));
        }
        if norm.mean.len() != set.shape.channels || norm.std.len() != set.shape.channels {
            return Err(DataError::InvalidConfig(format!(
                "normalisation has {} channels but the images have {}",
                norm.mean.len(),
                set.shape.channels
            )));
        }
        let indices = indices.unwrap_or_else(|| (0..set.len()).collect());
        if let Some(&bad) = indices.iter().find(|&&i| i >= set.len()) {
            return Err(DataError::InvalidConfig(format!(
                "image index {bad} is out of range for {} images",
                set.len()
            )));
        }
        if config.batch_size == 0 {
            return Err(DataError::InvalidConfig(
                "batch_size must be positive".into(),
            ));
        }
        if config.prefetch == 0 {
            return Err(DataError::InvalidConfig("prefetch must be positive".into()));
        }
        if indices.is_empty() || (config.drop_last && indices.len() < config.batch_size) {
            return Err(DataError::InvalidConfig(format!(
                "{} images are fewer than one batch of {}; lower the batch size",
                indices.len(),
                config.batch_size
            )));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                task,
                set,
                norm,
                indices,
                config,
                seed,
            }),
        })
    }

    pub fn task(&self) -> &T {
        &self.shared.task
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.shared.config
    }

    /// Images seen per epoch (after dropping an incomplete last batch).
    pub fn images_per_epoch(&self) -> usize {
        let s = &self.shared;
        if s.config.drop_last {
            s.indices.len() / s.config.batch_size * s.config.batch_size
        } else {
            s.indices.len()
        }
    }

    pub fn batches_per_epoch(&self) -> usize {
        batch_count(self.shared.indices.len(), &self.shared.config)
    }

    /// The split indices of epoch `epoch`'s images, in the order batches take them.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        self.shared.epoch_order(epoch)
    }

    /// Batch `batch` of epoch `epoch`, made on the calling thread.
    pub fn batch(&self, epoch: u64, batch: usize) -> T::Batch {
        let order = self.shared.epoch_order(epoch);
        self.shared.make(epoch, &order, batch)
    }

    /// All batches of `epoch`, made ahead on worker threads.
    pub fn epoch(&self, epoch: u64) -> Batches<T::Batch> {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from `first` on (to resume in the middle of an epoch).
    pub fn epoch_from(&self, epoch: u64, first: usize) -> Batches<T::Batch> {
        let order = Arc::new(self.shared.epoch_order(epoch));
        prefetch(
            self.clone_dyn(),
            epoch,
            order,
            first,
            self.batches_per_epoch(),
            &self.shared.config,
        )
    }

    fn clone_dyn(&self) -> Arc<dyn MakeBatch<T::Batch>> {
        Arc::clone(&self.shared) as Arc<dyn MakeBatch<T::Batch>>
    }
}

/// Batches `first..end` of an epoch whose items come in `order`, made by `maker` on worker
/// threads ahead of the consumer.
pub(crate) fn prefetch<B: Send + 'static>(
    maker: Arc<dyn MakeBatch<B>>,
    epoch: u64,
    order: Arc<Vec<usize>>,
    first: usize,
    end: usize,
    config: &LoaderConfig,
) -> Batches<B> {
    let first = first.min(end);
    let workers = config.worker_count().clamp(1, (end - first).max(1));
    let mut receivers = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let (tx, rx): (SyncSender<B>, Receiver<B>) = sync_channel(config.prefetch);
        let maker = Arc::clone(&maker);
        let order = Arc::clone(&order);
        let handle = std::thread::Builder::new()
            .name(format!("pretext-loader-{w}"))
            .spawn(move || {
                for b in (first + w..end).step_by(workers) {
                    // The consumer hung up (dropped the iterator): stop quietly.
                    if tx.send(maker.make(epoch, &order, b)).is_err() {
                        return;
                    }
                }
            });
        match handle {
            Ok(h) => {
                receivers.push(rx);
                handles.push(Some(h));
            }
            // No thread could be started: make the remaining batches on the caller's thread.
            Err(_) => break,
        }
    }
    Batches {
        loader: maker,
        epoch,
        order,
        receivers,
        handles,
        next: first,
        first,
        end,
    }
}

/// Batches per epoch of `items` items.
pub(crate) fn batch_count(items: usize, config: &LoaderConfig) -> usize {
    if config.drop_last {
        items / config.batch_size
    } else {
        items.div_ceil(config.batch_size)
    }
}

/// The order of an epoch's items: `indices`, shuffled from the seed and epoch when asked.
pub(crate) fn shuffled(indices: &[usize], shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order = indices.to_vec();
    if shuffle {
        // A stream apart from the per-item seeds (index u64::MAX is never an item's).
        let mut rng = ChaCha8Rng::seed_from_u64(sample_seed(seed, epoch, u64::MAX));
        order.shuffle(&mut rng);
    }
    order
}

/// Whatever the training loop takes its batches from: image tasks and text tasks alike.
pub trait BatchSource: Send + Sync {
    fn batches_per_epoch(&self) -> usize;
    /// The batches of `epoch` from `first` on, made ahead of the consumer.
    fn epoch_from(&self, epoch: u64, first: usize) -> Batches<crate::tasks::AnyBatch>;
}

impl BatchSource for BatchLoader<crate::tasks::AnyTask> {
    fn batches_per_epoch(&self) -> usize {
        BatchLoader::batches_per_epoch(self)
    }

    fn epoch_from(&self, epoch: u64, first: usize) -> Batches<crate::tasks::AnyBatch> {
        BatchLoader::epoch_from(self, epoch, first)
    }
}

/// Object-safe access to batch making, so [`Batches`] needs no task type parameter.
pub(crate) trait MakeBatch<B>: Send + Sync {
    fn make(&self, epoch: u64, order: &[usize], batch: usize) -> B;
}

impl<T: PretextTask> MakeBatch<T::Batch> for Shared<T> {
    fn make(&self, epoch: u64, order: &[usize], batch: usize) -> T::Batch {
        Shared::make(self, epoch, order, batch)
    }
}

impl<T: PretextTask> Shared<T> {
    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        shuffled(&self.indices, self.config.shuffle, self.seed, epoch)
    }

    fn make(&self, epoch: u64, order: &[usize], batch: usize) -> T::Batch {
        let bs = self.config.batch_size;
        let chosen = &order[batch * bs..((batch + 1) * bs).min(order.len())];
        let samples = Samples::of(&self.set, chosen, &self.norm, self.seed, epoch);
        self.task.make_batch(&samples)
    }
}

/// The batches of one epoch, in order. Dropping it stops the workers.
pub struct Batches<B> {
    loader: Arc<dyn MakeBatch<B>>,
    epoch: u64,
    order: Arc<Vec<usize>>,
    receivers: Vec<Receiver<B>>,
    handles: Vec<Option<JoinHandle<()>>>,
    next: usize,
    first: usize,
    end: usize,
}

impl<B> Batches<B> {
    /// Index (within the epoch) of the batch `next()` returns.
    pub fn position(&self) -> usize {
        self.next
    }
}

impl<B> Iterator for Batches<B> {
    type Item = B;

    fn next(&mut self) -> Option<B> {
        if self.next >= self.end {
            return None;
        }
        let b = self.next;
        self.next += 1;
        if self.receivers.is_empty() {
            return Some(self.loader.make(self.epoch, &self.order, b));
        }
        let w = (b - self.first) % self.receivers.len();
        match self.receivers[w].recv() {
            Ok(batch) => Some(batch),
            Err(_) => {
                // The worker ended early, which only a panic does: surface it here.
                if let Some(Err(panic)) = self.handles[w].take().map(JoinHandle::join) {
                    std::panic::resume_unwind(panic);
                }
                Some(self.loader.make(self.epoch, &self.order, b))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl<B> ExactSizeIterator for Batches<B> {}

impl<B> Drop for Batches<B> {
    fn drop(&mut self) {
        // Closing the channels makes every worker's next send fail, so the joins are short.
        self.receivers.clear();
        for handle in self.handles.drain(..).flatten() {
            let _ = handle.join();
        }
    }
}
