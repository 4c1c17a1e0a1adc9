//! Each representation's test features in two dimensions, by PCA (the directions of largest
//! variance) and by t-SNE (which keeps each point's neighbours near), for scatter plots coloured
//! by class: a picture of which classes a representation keeps apart.

use burn::tensor::{Device, Tensor, TensorData};
use pretext_baselines::{Components, Fit, PcaConfig, Transform, TsneConfig};
use pretext_data::ImageDataset;
use serde::{Deserialize, Serialize};

use crate::embed::embed;
use crate::error::{Result, TrainError};
use crate::study::Representation;

/// Test examples per scatter: enough to show the classes' shapes, few enough to read.
pub const PROJECTED_EXAMPLES: usize = 2000;

/// One representation's test features in two dimensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub representation: String,
    /// `(first, second)` principal coordinates, one pair per image.
    pub points: Vec<[f32; 2]>,
    /// t-SNE coordinates (scikit-learn's defaults, the perplexity lowered for a few points),
    /// one pair per image.
    pub tsne: Vec<[f32; 2]>,
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
    let indices = evenly_spaced(test.len(), n);
    let norm = data.normalization();
    let (features, dim) = match representation {
        Representation::Pca => return Ok(None),
        Representation::Pixels => (test.normalized(&indices, &norm), test.shape.len()),
        Representation::Encoder { encoder, .. } => {
            embed(encoder, test, &indices, &norm, device, 512)
        }
    };
    let labels = indices.iter().map(|&i| all_labels[i]).collect();
    project_features(representation.name(), features, dim, labels, device).map(Some)
}

/// `count` indices evenly spaced through `0..len`.
pub fn evenly_spaced(len: usize, count: usize) -> Vec<usize> {
    let count = count.min(len);
    (0..count).map(|i| i * len / count).collect()
}

/// Projects `features` (`[rows, dim]`, row-major) of examples of classes `labels` to their
/// first two principal coordinates and to a t-SNE map.
pub fn project_features(
    name: &str,
    features: Vec<f32>,
    dim: usize,
    labels: Vec<u32>,
    device: &Device,
) -> Result<Projection> {
    let n = labels.len();
    let x = Tensor::<2>::from_data(TensorData::new(features, [n, dim]), device);
    let pca = PcaConfig::new(Components::Count(2.min(dim))).fit(&x)?;
    let z = pca
        .transform(&x)?
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| TrainError::config(format!("projection: {e:?}")))?;
    let width = z.len() / n.max(1);
    let points = z
        .chunks(width.max(1))
        .map(|row| [row[0], row.get(1).copied().unwrap_or(0.0)])
        .collect();
    let tsne = if n > 6 {
        let map = TsneConfig::default().fitted_to(n).fit(&x)?;
        map.embedding
            .chunks_exact(2)
            .map(|p| [p[0], p[1]])
            .collect()
    } else {
        Vec::new()
    };
    Ok(Projection {
        representation: name.to_string(),
        points,
        tsne,
        labels,
    })
}
