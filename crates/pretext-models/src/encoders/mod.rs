//! Encoders: images in (`[batch, channels, height, width]`), representations out
//! (`[batch, embedding_dim]`).

pub mod cnn;
