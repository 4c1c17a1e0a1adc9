//! Evaluation of frozen representations.

pub mod knn;

pub use knn::{KnnProbe, knn_accuracy};
