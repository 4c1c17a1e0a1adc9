//! Models for pretext: encoders that turn images (and text, [`text`]) into representation vectors, the heads and
//! losses of the pretext tasks, and the task models that combine them. Modules carry no backend
//! type: the tensors' device decides where they run.

pub mod encoders;
pub mod error;
pub mod heads;
pub mod kernels;
pub mod losses;
pub mod momentum;
mod settings;
pub mod tasks;
#[cfg(test)]
mod test_data;
pub mod text;

pub use encoders::{CnnEncoder, CnnEncoderConfig, Encoder, EncoderConfig, EncoderKind};
pub use error::ModelError;
pub use tasks::TaskModel;
