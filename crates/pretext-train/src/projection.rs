//! Each representation's test features projected to two dimensions by PCA, for a scatter plot
//! coloured by class: a picture of which classes a representation keeps apart.

use burn::tensor::{Device, Tensor, TensorData};
use pretext_baselines::{Components, Fit, PcaConfig, Transform};
use pretext_data::ImageDataset;
use serde::{Deserialize, Serialize};

use crate::embed::embed;
use crate::error::{Result, TrainError};
use crate::study::Representation;

/// Test images per scatter: enough to show the classes' shapes, few enough to read.
pub const PROJECTED_IMAGES: usize = 2000;

/// One representation's test features in two dimensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub representation: String,
    /// `(first, second)` principal coordinates, one pair per image.
    pub points: Vec<[f32; 2]>,
    pub labels: Vec<u32>,
}

/// Projects at most `limit` test images, evenly spaced through the test split, through
/// `representation`. `None` for PCA features (their first two components are the pixels' own)
/// and for data without a labelled test split.
pub fn project_test(
    representation: &Representation,
    data: &ImageDataset,
    limit: usize,
    device: &Device,
) -> Result<Option<Projection>> {
    let Some(test) = data.test.as_ref() else {
        return Ok(None);
    };
    let Some(all_labels) = test.labels.as_deref() else {
        return Ok(None);
    };
    let n = test.len().min(limit);
    if n < 3 {
        return Ok(None);
    }
    let indices: Vec<usize> = (0..n).map(|i| i * test.len() / n).collect();
    let norm = data.normalization();
    let (features, dim) = match representation {
        Representation::Pca => return Ok(None),
        Representation::Pixels => (test.normalized(&indices, &norm), test.shape.len()),
        Representation::Encoder { encoder, .. } => {
            embed(encoder, test, &indices, &norm, device, 512)
        }
    };
    let x = Tensor::<2>::from_data(TensorData::new(features, [n, dim]), device);
    let pca = PcaConfig::new(Components::Count(2.min(dim))).fit(&x)?;
    let z = pca
        .transform(&x)?
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| TrainError::config(format!("projection: {e:?}")))?;
    let width = z.len() / n;
    let points = z
        .chunks(width.max(1))
        .map(|row| [row[0], row.get(1).copied().unwrap_or(0.0)])
        .collect();
    Ok(Some(Projection {
        representation: representation.name().to_string(),
        points,
        labels: indices.iter().map(|&i| all_labels[i]).collect(),
    }))
}
