//! Feature matrices for the baselines: an image data set's training split flattened to pixel
//! vectors in [0, 1], or a CSV table's numeric columns.

use std::path::Path;

use anyhow::Context;
use burn::tensor::{Device, Tensor, TensorData};
use pretext_data::{DataSource, Normalization, read_csv};

/// Rows of features on a device, with labels when the data has them.
pub struct Features {
    pub name: String,
    pub x: Tensor<2>,
    pub rows: usize,
    pub dims: usize,
    pub labels: Option<Vec<u32>>,
    pub classes: Vec<String>,
}

fn is_table(spec: &str) -> bool {
    Path::new(spec)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

pub fn load(spec: &str, label_column: Option<&str>, device: &Device) -> anyhow::Result<Features> {
    if is_table(spec) {
        let table = read_csv(Path::new(spec), label_column)
            .with_context(|| format!("cannot load --data {spec}"))?;
        let dims = table.columns.len();
        return Ok(Features {
            name: spec.to_string(),
            x: Tensor::from_data(TensorData::new(table.values, [table.rows, dims]), device),
            rows: table.rows,
            dims,
            labels: table.labels,
            classes: table.classes,
        });
    }
    anyhow::ensure!(
        label_column.is_none(),
        "--label-column applies to CSV tables; image data sets carry their labels"
    );
    let ds = DataSource::parse(spec)
        .and_then(|s| s.load())
        .with_context(|| format!("cannot load --data {spec}"))?;
    let set = &ds.train;
    let c = set.shape.channels;
    // Pixels scaled to [0, 1]: no centring or per-channel scaling, so PCA and K-means see the
    // images as they are.
    let unit = Normalization {
        mean: vec![0.0; c],
        std: vec![1.0; c],
    };
    let all: Vec<usize> = (0..set.len()).collect();
    let dims = set.shape.len();
    Ok(Features {
        name: ds.name.clone(),
        x: Tensor::from_data(
            TensorData::new(set.normalized(&all, &unit), [set.len(), dims]),
            device,
        ),
        rows: set.len(),
        dims,
        labels: set.labels.clone(),
        classes: ds.classes.clone(),
    })
}
