//! The exported encoder: `encoder.safetensors` (weights, readable by any SafeTensors tool) and
//! `encoder.json` (its config, the input normalisation and where it came from), enough to
//! rebuild it for probes and other programs.

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use pretext_data::{ImageShape, Normalization, TaskKind};
use pretext_models::Encoder;
use pretext_models::encoders::EncoderConfig;

use crate::error::{Result, TrainError};

pub const WEIGHTS: &str = "encoder.safetensors";
pub const DESCRIPTION: &str = "encoder.json";

/// What `encoder.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderDescription {
    pub encoder: EncoderConfig,
    /// Which layer the encoder's output (the representation probes see) is, in words.
    #[serde(default)]
    pub representation: String,
    pub input: ImageShape,
    /// Applied to pixels on the [0, 1] scale before the encoder: `(x - mean) / std`.
    pub normalization: Normalization,
    /// The pretext task it was trained on.
    pub task: TaskKind,
    pub epochs: u64,
    pub data: String,
}

/// Writes the encoder's weights and description into `dir` (each file atomically).
pub fn export_encoder(
    encoder: &Encoder,
    description: &EncoderDescription,
    dir: &Path,
) -> Result<()> {
    let weights = dir.join(WEIGHTS);
    let tmp = dir.join(format!("{WEIGHTS}.partial"));
    let mut store = SafetensorsStore::from_file(&tmp).overwrite(true);
    encoder
        .save_into(&mut store)
        .map_err(|e| TrainError::checkpoint(&weights, format!("cannot write the weights: {e}")))?;
    std::fs::rename(&tmp, &weights).map_err(|e| TrainError::io(&weights, e))?;
    let json = serde_json::to_vec_pretty(description).unwrap_or_default();
    pretext_data::npy::write_atomic(&dir.join(DESCRIPTION), &json)?;
    Ok(())
}

/// Rebuilds an exported encoder for images of `shape`: a different input shape is an error
/// naming the run.
pub fn load_encoder_for(
    dir: &Path,
    shape: ImageShape,
    device: &Device,
) -> Result<(Encoder, EncoderDescription)> {
    let (encoder, description) = load_encoder(dir, device)?;
    if description.input != shape {
        return Err(TrainError::config(format!(
            "{}: the encoder takes {} images but the data holds {} images",
            dir.display(),
            description.input,
            shape
        )));
    }
    Ok((encoder, description))
}

/// Rebuilds an exported encoder on `device`.
pub fn load_encoder(dir: &Path, device: &Device) -> Result<(Encoder, EncoderDescription)> {
    let json_path = dir.join(DESCRIPTION);
    let text = std::fs::read(&json_path).map_err(|e| TrainError::io(&json_path, e))?;
    let description: EncoderDescription = serde_json::from_slice(&text)
        .map_err(|e| TrainError::checkpoint(&json_path, format!("unreadable description: {e}")))?;
    let mut encoder = description.encoder.init(device)?;
    let weights = dir.join(WEIGHTS);
    let mut store = SafetensorsStore::from_file(&weights);
    encoder
        .load_from(&mut store)
        .map_err(|e| TrainError::checkpoint(&weights, format!("cannot load the weights: {e}")))?;
    Ok((encoder.valid(), description))
}
