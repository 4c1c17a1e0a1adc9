//! Feature scaling before a baseline, as scikit-learn's `StandardScaler` and `MinMaxScaler`:
//! fitted on the training rows, applied to any rows, saved with the model.
//!
//! Distances, variances and covariances weigh every column by its scale, so a column measured
//! in thousands outweighs one measured in units; standardising gives each column one unit of
//! variance first. Pixels share one scale already and need none.

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::input::{check_features, check_input, to_vec};
use crate::traits::{Fit, Transform};

/// Which scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// The values as they are.
    #[default]
    None,
    /// Each column to mean 0 and standard deviation 1 (population variance; a constant column
    /// is only centred).
    Standard,
    /// Each column to the range [0, 1] of its training values (a constant column maps to 0).
    MinMax,
}

/// A fitted scaler: `(x - offset) * factor` per column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub scaling: Scaling,
    pub offset: Vec<f32>,
    pub factor: Vec<f32>,
}

impl Fit for Scaling {
    type Fitted = Scaler;

    fn fit(&self, x: &Tensor<2>) -> Result<Scaler> {
        let [n, d] = check_input(x)?;
        let values = to_vec(x);
        let column = |j: usize| values.iter().skip(j).step_by(d).map(|&v| v as f64);
        let (offset, factor): (Vec<f32>, Vec<f32>) = (0..d)
            .map(|j| match self {
                Scaling::None => (0.0, 1.0),
                Scaling::Standard => {
                    let mean = column(j).sum::<f64>() / n as f64;
                    let var = column(j).map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
                    // scikit-learn leaves a column of (near) zero variance unscaled.
                    let std = var.sqrt();
                    let factor = if std > 10.0 * f64::EPSILON * mean.abs().max(1.0) {
                        1.0 / std
                    } else {
                        1.0
                    };
                    (mean as f32, factor as f32)
                }
                Scaling::MinMax => {
                    let lo = column(j).fold(f64::INFINITY, f64::min);
                    let hi = column(j).fold(f64::NEG_INFINITY, f64::max);
                    let range = hi - lo;
                    (
                        lo as f32,
                        if range > 0.0 {
                            (1.0 / range) as f32
                        } else {
                            1.0
                        },
                    )
                }
            })
            .unzip();
        Ok(Scaler {
            scaling: *self,
            offset,
            factor,
        })
    }
}

impl Transform for Scaler {
    fn transform(&self, x: &Tensor<2>) -> Result<Tensor<2>> {
        check_features(x, self.offset.len())?;
        if self.scaling == Scaling::None {
            return Ok(x.clone());
        }
        let device = x.device();
        let d = self.offset.len();
        let row = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, d]), &device);
        Ok((x.clone() - row(&self.offset)) * row(&self.factor))
    }
}
