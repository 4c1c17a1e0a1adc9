//! The batch loader: ordered, deterministic whatever the worker count, resumable mid-epoch.

use std::sync::Arc;

use pretext_data::tasks::{RotationConfig, RotationMode, SupervisedTask, ViewsConfig};
use pretext_data::{BatchLoader, ImageSet, ImageShape, LoaderConfig, Normalization};

fn set(n: usize, labelled: bool) -> Arc<ImageSet> {
    let shape = ImageShape::new(1, 6, 6);
    let pixels = (0..n * shape.len()).map(|i| (i * 31 % 256) as u8).collect();
    let labels = labelled.then(|| (0..n as u32).map(|i| i % 3).collect());
    Arc::new(ImageSet::new(shape, pixels, labels).unwrap())
}

fn config(batch_size: usize, workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        workers,
        ..LoaderConfig::default()
    }
}

#[test]
fn batches_do_not_depend_on_the_number_of_workers() {
    let data = set(50, false);
    let norm = Normalization::of(&data);
    let views = ViewsConfig::default().build(data.shape).unwrap();
    let one = BatchLoader::new(
        views.clone(),
        data.clone(),
        None,
        norm.clone(),
        config(8, 1),
        3,
    )
    .unwrap();
    let four = BatchLoader::new(views, data, None, norm, config(8, 4), 3).unwrap();
    assert_eq!(one.batches_per_epoch(), 6);
    assert_eq!(one.images_per_epoch(), 48);
    for epoch in 0..2 {
        let a: Vec<_> = one.epoch(epoch).collect();
        let b: Vec<_> = four.epoch(epoch).collect();
        assert_eq!(a.len(), 6);
        assert_eq!(a, b);
        // Made ahead or on the caller's thread, a batch is the same.
        assert_eq!(a[4], one.batch(epoch, 4));
    }
    assert_ne!(one.epoch_order(0), one.epoch_order(1));
    assert_ne!(one.batch(0, 0), one.batch(1, 0));
}

#[test]
fn an_epoch_resumes_from_any_batch() {
    let data = set(40, false);
    let norm = Normalization::of(&data);
    let task = RotationConfig {
        mode: RotationMode::RandomOne,
    }
    .build(data.shape)
    .unwrap();
    let loader = BatchLoader::new(task, data, None, norm, config(5, 2), 11).unwrap();
    let all: Vec<_> = loader.epoch(2).collect();
    let mut tail = loader.epoch_from(2, 3);
    assert_eq!(tail.position(), 3);
    assert_eq!(tail.len(), 5);
    assert_eq!(tail.next().as_ref(), Some(&all[3]));
    assert_eq!(tail.collect::<Vec<_>>(), all[4..]);
    // Stopping early is fine: dropping the iterator stops its workers.
    let mut partial = loader.epoch(3);
    partial.next();
    drop(partial);
}

#[test]
fn sequential_loading_keeps_order_and_the_last_partial_batch() {
    let data = set(10, true);
    let norm = Normalization::of(&data);
    let loader = BatchLoader::new(
        SupervisedTask::new(data.shape),
        data.clone(),
        Some(vec![9, 8, 7, 6, 5, 4, 3]),
        norm.clone(),
        LoaderConfig::sequential(3),
        0,
    )
    .unwrap();
    let batches: Vec<_> = loader.epoch(0).collect();
    assert_eq!(
        batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [3, 3, 1]
    );
    let targets: Vec<u32> = batches.iter().flat_map(|b| b.targets.clone()).collect();
    assert_eq!(targets, [0, 2, 1, 0, 2, 1, 0]);
    assert_eq!(batches[2].images, data.normalized(&[3], &norm));
}

#[test]
fn loader_misuse_is_a_clear_error() {
    let data = set(10, false);
    let norm = Normalization::of(&data);
    let shape = data.shape;
    let rot = || RotationConfig::default().build(shape).unwrap();
    fn e<T>(r: Result<BatchLoader<T>, pretext_data::DataError>) -> String {
        r.err().expect("expected an error").to_string()
    }

    let msg = e(BatchLoader::new(
        rot(),
        data.clone(),
        None,
        norm.clone(),
        config(16, 1),
        0,
    ));
    assert!(
        msg.contains("10 images are fewer than one batch of 16"),
        "{msg}"
    );
    let msg = e(BatchLoader::new(
        rot(),
        data.clone(),
        None,
        norm.clone(),
        config(0, 1),
        0,
    ));
    assert!(msg.contains("batch_size"), "{msg}");
    let msg = e(BatchLoader::new(
        rot(),
        data.clone(),
        Some(vec![3, 10]),
        norm.clone(),
        config(1, 1),
        0,
    ));
    assert!(msg.contains("index 10"), "{msg}");
    let msg = e(BatchLoader::new(
        SupervisedTask::new(shape),
        data.clone(),
        None,
        norm.clone(),
        config(2, 1),
        0,
    ));
    assert!(msg.contains("needs class labels"), "{msg}");
    let other = RotationConfig::default()
        .build(ImageShape::new(1, 4, 4))
        .unwrap();
    let msg = e(BatchLoader::new(other, data, None, norm, config(2, 1), 0));
    assert!(msg.contains("built for 1x4x4"), "{msg}");
}
