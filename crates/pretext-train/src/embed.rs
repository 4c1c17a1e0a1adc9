//! Representations of a split: the encoder (in evaluation mode) over batches of images.

use burn::tensor::Device;

use pretext_data::{ImageSet, Normalization};
use pretext_models::Encoder;

/// Row-major features of `indices`, `[indices.len(), dim]`, and `dim`.
pub fn embed(
    encoder: &Encoder,
    set: &ImageSet,
    indices: &[usize],
    norm: &Normalization,
    device: &Device,
    batch_size: usize,
) -> (Vec<f32>, usize) {
    let mut out = Vec::new();
    let mut dim = 0;
    for chunk in indices.chunks(batch_size.max(1)) {
        let images = set.images_tensor(chunk, norm, device);
        let features = encoder.forward(images);
        dim = features.dims()[1];
        // Feature tensors are f32 on every backend this crate builds.
        out.extend(
            features
                .into_data()
                .try_into_vec_as::<f32>()
                .unwrap_or_default(),
        );
    }
    (out, dim)
}
