//! Models for pretext: encoders that turn images into representation vectors, with their
//! configurations. Modules carry no backend type: the tensors' device decides where they run.

pub mod encoders;
pub mod error;

pub use encoders::cnn::{CnnEncoder, CnnEncoderConfig};
pub use error::ModelError;
