//! Checks on input data, and conversions between tensors and host matrices.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{BaselineError, Result};

/// `[rows, features]` of `x`, after checking that it has rows and only finite values.
pub fn check_input(x: &Tensor<2>) -> Result<[usize; 2]> {
    let [n, d] = x.dims();
    if n == 0 || d == 0 {
        return Err(BaselineError::EmptyInput);
    }
    // One sum on the device, with no temporary the size of the data: any NaN or infinity makes
    // it non-finite. Only then (or on an overflowing sum of finite values) does the host scan
    // run, to locate the bad value.
    let sum: f32 = x.clone().sum().into_scalar();
    if !sum.is_finite() {
        let values = to_vec(x);
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(BaselineError::NonFinite {
                row: i / d,
                column: i % d,
                value: values[i],
            });
        }
    }
    Ok([n, d])
}

/// Checks that `x` has `features` columns, for a fitted model applied to new data.
pub fn check_features(x: &Tensor<2>, features: usize) -> Result<usize> {
    let [n, d] = check_input(x)?;
    if d != features {
        return Err(BaselineError::ShapeMismatch(format!(
            "the model was fitted on {features} features, the input has {d}"
        )));
    }
    Ok(n)
}

/// Whether `device` keeps tensors in host memory (the flex and ndarray backends), where a fused
/// loop over the host's copy of the data beats a sequence of tensor operations.
pub fn on_host(device: &Device) -> bool {
    // Burn names the backend only in the dispatch device's debug form; its variants exist
    // only for the backends compiled in, so they cannot be matched from here.
    let name = format!("{:?}", device.clone().inner().as_dispatch());
    name.starts_with("Flex") || name.starts_with("NdArray")
}

/// The values of a float tensor, row-major.
pub fn to_vec<const D: usize>(x: &Tensor<D>) -> Vec<f32> {
    x.to_data()
        .try_into_vec_as::<f32>()
        .expect("float tensors convert to f32")
}

/// A `[rows, cols]` tensor from row-major values.
pub fn tensor(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_backends_are_on_the_host() {
        assert!(on_host(&Device::flex()));
    }
}
