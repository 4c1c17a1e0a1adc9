//! The representations the study compares and their feature matrices.

use burn::tensor::{Device, Tensor, TensorData};
use pretext_baselines::{Components, Fit, PcaConfig, Transform};
use pretext_data::ImageDataset;
use pretext_models::Encoder;

use super::StudyConfig;
use crate::embed::embed;
use crate::error::Result;

/// A way of turning images into feature vectors.
pub enum Representation {
    /// Normalised pixels, flattened.
    Pixels,
    /// PCA fitted on the training pool's images (no labels), `StudyConfig::pca_components`.
    Pca,
    /// An encoder, named for the report; `pretrained` ones are also fine-tuned.
    Encoder {
        name: String,
        encoder: Box<Encoder>,
        pretrained: bool,
    },
}

/// Row-major features of the training pool, the validation split and the test split.
pub struct Features {
    pub pool: Vec<f32>,
    pub val: Vec<f32>,
    pub test: Vec<f32>,
    pub dim: usize,
}

impl Representation {
    pub fn is_pretrained(&self) -> bool {
        matches!(
            self,
            Representation::Encoder {
                pretrained: true,
                ..
            }
        )
    }

    pub fn name(&self) -> &str {
        match self {
            Representation::Pixels => "pixels",
            Representation::Pca => "pca",
            Representation::Encoder { name, .. } => name,
        }
    }

    pub fn features(
        &self,
        data: &ImageDataset,
        pool: &[usize],
        val: &[usize],
        config: &StudyConfig,
        device: &Device,
    ) -> Result<Features> {
        let norm = data.normalization();
        let train = &data.train;
        let test_set = data.test.as_ref();
        let all_test: Vec<usize> = (0..test_set.map_or(0, |t| t.len())).collect();
        Ok(match self {
            Representation::Pixels | Representation::Pca => {
                let dim = train.shape.len();
                let pool_x = train.normalized(pool, &norm);
                let val_x = train.normalized(val, &norm);
                let test_x = test_set.map_or_else(Vec::new, |t| t.normalized(&all_test, &norm));
                if matches!(self, Representation::Pixels) {
                    Features {
                        pool: pool_x,
                        val: val_x,
                        test: test_x,
                        dim,
                    }
                } else {
                    let k = config.pca_components.min(dim).min(pool.len());
                    let tensor = |v: Vec<f32>| {
                        let rows = v.len() / dim;
                        Tensor::<2>::from_data(TensorData::new(v, [rows, dim]), device)
                    };
                    let pca = PcaConfig::new(Components::Count(k)).fit(&tensor(pool_x.clone()))?;
                    let project = |v: Vec<f32>| -> Result<Vec<f32>> {
                        let z = pca.transform(&tensor(v))?;
                        Ok(z.into_data().try_into_vec_as::<f32>().unwrap_or_default())
                    };
                    // Fewer than k when the pool's rank is lower (a few images).
                    Features {
                        pool: project(pool_x)?,
                        val: project(val_x)?,
                        test: project(test_x)?,
                        dim: pca.n_components,
                    }
                }
            }
            Representation::Encoder { encoder, .. } => {
                let batch = 512;
                let (pool_x, dim) = embed(encoder, train, pool, &norm, device, batch);
                let (val_x, _) = embed(encoder, train, val, &norm, device, batch);
                let test_x = match test_set {
                    Some(t) => embed(encoder, t, &all_test, &norm, device, batch).0,
                    None => Vec::new(),
                };
                Features {
                    pool: pool_x,
                    val: val_x,
                    test: test_x,
                    dim,
                }
            }
        })
    }
}
