//! The shapes every baseline shares, after scikit-learn: configurations fit data into fitted
//! models, which transform, invert or predict. Data is a `[rows, features]` tensor on any device.

use burn::tensor::Tensor;

use crate::error::Result;

/// A validated configuration that learns a model from data.
pub trait Fit {
    type Fitted;
    fn fit(&self, x: &Tensor<2>) -> Result<Self::Fitted>;
}

/// A fitted model that maps data to new features.
pub trait Transform {
    fn transform(&self, x: &Tensor<2>) -> Result<Tensor<2>>;
}

/// A fitted model whose transform can be undone (approximately, for a lossy one).
pub trait InverseTransform {
    fn inverse_transform(&self, z: &Tensor<2>) -> Result<Tensor<2>>;
}

/// A fitted model that assigns each row a label.
pub trait Predict {
    fn predict(&self, x: &Tensor<2>) -> Result<Vec<u32>>;
}
