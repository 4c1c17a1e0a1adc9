//! Evaluation of frozen representations.

pub mod cluster;
pub mod knn;
pub mod linear;
mod mining;
pub mod propagation;
pub mod scan;

pub use cluster::{ClusterScores, cluster_probe};
pub use knn::{KnnProbe, knn_accuracy};
pub use linear::{FittedLinearProbe, Labelled, LinearHead, LinearProbe};
pub use propagation::{Graph, Propagated, PropagationConfig};
pub use scan::{ScanConfig, ScanScores, scan_probe};
