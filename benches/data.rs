//! Data path throughput on the embedded Fashion-MNIST subset: decoding the IDX files, turning a
//! batch of 256 images into a normalised tensor, and making each pretext task's batches, alone on
//! one thread and through the loader's worker threads. Run with `cargo bench --bench data`;
//! divan prints images per second (`item/s`).

use std::sync::Arc;

use burn::tensor::Device;
use divan::counter::ItemsCount;
use pretext_data::tasks::{DenoiseConfig, TaskConfig};
use pretext_data::{
    BatchLoader, DataSource, ImageDataset, LoaderConfig, PretextTask, Samples, TaskKind,
};

// The allocator the `pretext` binary uses, so figures match what users see.
#[global_allocator]
static ALLOCATOR: pretext_cli::allocator::Allocator = pretext_cli::allocator::Allocator {};

const BATCH: usize = 256;

fn main() {
    pretext_cli::allocator::keep_freed_memory();
    divan::main();
}

fn data() -> &'static ImageDataset {
    static DATA: std::sync::OnceLock<ImageDataset> = std::sync::OnceLock::new();
    DATA.get_or_init(|| DataSource::EmbeddedFashionMnist.load().unwrap())
}

#[divan::bench(sample_count = 10)]
fn load_embedded_fashion_mnist(bencher: divan::Bencher) {
    bencher
        .counter(ItemsCount::new(12_000usize))
        .bench(|| DataSource::EmbeddedFashionMnist.load().unwrap());
}

#[divan::bench]
fn normalized_batch_256_to_flex_tensor(bencher: divan::Bencher) {
    let ds = data();
    let norm = ds.normalization();
    let device = Device::flex();
    let indices: Vec<usize> = (0..BATCH).map(|i| (i * 37) % ds.train.len()).collect();
    bencher
        .counter(ItemsCount::new(indices.len()))
        .bench(|| ds.train.images_tensor(&indices, &norm, &device).into_data());
}

/// Calls back with the task of `kind` (default settings), whatever its concrete type.
trait WithTask {
    fn run<T: PretextTask + 'static>(self, task: T);
}

fn with_task(kind: TaskKind, f: impl WithTask) {
    let shape = data().train.shape;
    match TaskConfig::default_for(kind) {
        TaskConfig::Rotation(c) => f.run(c.build(shape).unwrap()),
        TaskConfig::Jigsaw(c) => f.run(c.build(shape).unwrap()),
        TaskConfig::Mae(c) => f.run(c.build(shape).unwrap()),
        TaskConfig::Simclr(c)
        | TaskConfig::Byol(c)
        | TaskConfig::MocoV3(c)
        | TaskConfig::Vicreg(c)
        | TaskConfig::BarlowTwins(c) => f.run(c.build(shape).unwrap()),
        TaskConfig::Denoise(c) => f.run(c.build(shape).unwrap()),
        TaskConfig::Autoencoder => f.run(DenoiseConfig::autoencoder().build(shape).unwrap()),
    }
}

/// One batch of 256 images made on the calling thread; the counter is input images.
#[divan::bench(args = TaskKind::ALL, sample_count = 50)]
fn task_batch_256_one_thread(bencher: divan::Bencher, kind: TaskKind) {
    struct OneThread<'a, 'b>(divan::Bencher<'a, 'b>);
    impl WithTask for OneThread<'_, '_> {
        fn run<T: PretextTask + 'static>(self, task: T) {
            let ds = data();
            let norm = ds.normalization();
            let indices: Vec<usize> = (0..BATCH).map(|i| (i * 37) % ds.train.len()).collect();
            let samples = Samples::of(&ds.train, &indices, &norm, 0, 0);
            self.0
                .counter(ItemsCount::new(BATCH))
                .bench(|| task.make_batch(&samples));
        }
    }
    with_task(kind, OneThread(bencher));
}

/// A whole epoch (39 batches of 256) through the loader's workers, one per core.
#[divan::bench(args = TaskKind::ALL, sample_count = 5)]
fn task_epoch_through_loader(bencher: divan::Bencher, kind: TaskKind) {
    struct Loader<'a, 'b>(divan::Bencher<'a, 'b>);
    impl WithTask for Loader<'_, '_> {
        fn run<T: PretextTask + 'static>(self, task: T) {
            let ds = data();
            let config = LoaderConfig {
                batch_size: BATCH,
                ..LoaderConfig::default()
            };
            let train = Arc::new(ds.train.clone());
            let loader =
                BatchLoader::new(task, train, None, ds.normalization(), config, 0).unwrap();
            let mut epoch = 0;
            self.0
                .counter(ItemsCount::new(loader.images_per_epoch()))
                .bench_local(|| {
                    epoch += 1;
                    loader.epoch(epoch).count()
                });
        }
    }
    with_task(kind, Loader(bencher));
}
