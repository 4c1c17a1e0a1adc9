//! Reading the scikit-learn fixtures (tests/fixtures/*.json at the workspace root).
#![allow(dead_code)] // each test crate uses some of these

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;

/// One fixture file, parsed.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A JSON array of rows as row-major values with their row and column counts.
pub fn matrix(v: &Value) -> (Vec<f32>, usize, usize) {
    let rows = v.as_array().unwrap();
    let cols = rows[0].as_array().unwrap().len();
    let values = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    (values, rows.len(), cols)
}

/// A JSON array of rows as a tensor on flex.
pub fn matrix_tensor(v: &Value) -> Tensor<2> {
    let (values, n, d) = matrix(v);
    Tensor::from_data(TensorData::new(values, [n, d]), &Device::flex())
}
