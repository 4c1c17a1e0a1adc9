//! Unsupervised baselines for pretext: PCA, K-means, Gaussian mixtures and clustering metrics, in scikit-learn's
//! shape (configurations validated, then fitted into models that transform or predict) and
//! matching its results.
//!
//! Data is a `[rows, features]` Burn tensor, so the heavy products run on whichever device holds
//! it; small dense decompositions run on the host in f64 ([faer]).

pub mod error;
pub mod gmm;
pub mod input;
pub mod kmeans;
pub mod metrics;
pub mod pca;
pub mod scale;
pub mod traits;
pub mod tsne;

pub use error::{BaselineError, Result};
pub use gmm::{CovarianceType, GaussianMixture, GaussianMixtureConfig, GmmInit};
pub use kmeans::{KMeans, KMeansAlgorithm, KMeansConfig, KMeansInit};
pub use pca::{Components, Pca, PcaConfig, PcaSolver};
pub use scale::{Scaler, Scaling};
pub use traits::{Fit, InverseTransform, Predict, Transform};
pub use tsne::{TsneConfig, TsneMap, TsneMethod, trustworthiness};
