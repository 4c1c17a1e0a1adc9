//! Data path throughput: decoding the embedded IDX files and turning a batch of 256 images into a
//! normalised tensor. Run with `cargo bench --bench data`; divan prints images per second.

use burn::tensor::Device;
use divan::counter::ItemsCount;
use pretext_data::DataSource;

fn main() {
    divan::main();
}

#[divan::bench(sample_count = 10)]
fn load_embedded_fashion_mnist(bencher: divan::Bencher) {
    bencher
        .counter(ItemsCount::new(12_000usize))
        .bench(|| DataSource::EmbeddedFashionMnist.load().unwrap());
}

#[divan::bench]
fn normalized_batch_256_to_flex_tensor(bencher: divan::Bencher) {
    let ds = DataSource::EmbeddedFashionMnist.load().unwrap();
    let norm = ds.normalization();
    let device = Device::flex();
    let indices: Vec<usize> = (0..256).map(|i| (i * 37) % ds.train.len()).collect();
    bencher
        .counter(ItemsCount::new(indices.len()))
        .bench(|| ds.train.images_tensor(&indices, &norm, &device).into_data());
}
