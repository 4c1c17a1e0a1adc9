//! Evaluation of frozen representations.

pub mod knn;
pub mod linear;

pub use knn::{KnnProbe, knn_accuracy};
pub use linear::{FittedLinearProbe, Labelled, LinearProbe};
