//! Burn's Transformer blocks run by a forward pass of pretext's own, which takes the products,
//! layer norms, attention softmax and feed-forward GELU to the flex kernels
//! ([`crate::kernels`]). The modules and their parameters stay Burn's (`TransformerEncoder`),
//! so records saved before read the same, and the result is Burn's `forward` to float
//! rounding.

use burn::nn::activation::Activation;
use burn::nn::attention::{MhaInput, MultiHeadAttention};
use burn::nn::transformer::{
    PositionWiseFeedForward, TransformerEncoder, TransformerEncoderConfig, TransformerEncoderLayer,
};
use burn::tensor::{Bool, Device, Tensor};

use crate::kernels::{attention, attention_composed, gelu, layer_norm, linear};

/// Pre-norm Transformer blocks of width `dim` (`heads` heads, a feed-forward `mlp_ratio` times
/// as wide), for [`encode`]. The image models train without dropout (small data sets are
/// better served by augmentation, and dropout would make the training step random).
pub(crate) fn blocks(
    dim: usize,
    heads: usize,
    depth: usize,
    mlp_ratio: usize,
    dropout: f64,
    device: &Device,
) -> TransformerEncoder {
    TransformerEncoderConfig::new(dim, dim * mlp_ratio, heads, depth)
        .with_dropout(dropout)
        .with_norm_first(true)
        .init(device)
}

/// `blocks.forward(x)` with an optional padding mask (`[batch, len]`, true at padding): the
/// token states `[batch, len, dim]`.
pub fn encode(
    blocks: &TransformerEncoder,
    x: Tensor<3>,
    padding: Option<Tensor<2, Bool>>,
) -> Tensor<3> {
    blocks
        .layers
        .iter()
        .fold(x, |x, layer| encode_layer(layer, x, padding.clone()))
}

/// One block, as Burn's `TransformerEncoderLayer::forward` (pre- or post-norm).
fn encode_layer(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    padding: Option<Tensor<2, Bool>>,
) -> Tensor<3> {
    let attend = if layer.norm_first {
        layer_norm(&layer.norm_2, x.clone())
    } else {
        x.clone()
    };
    let attended = layer
        .dropout
        .forward(self_attention(&layer.mha, attend, padding));
    let mut x = x + attended;
    let fed = if layer.norm_first {
        layer_norm(&layer.norm_1, x.clone())
    } else {
        x = layer_norm(&layer.norm_1, x);
        x.clone()
    };
    let fed = layer.dropout.forward(feed_forward(&layer.pwff, fed));
    let x = x + fed;
    if layer.norm_first {
        x
    } else {
        layer_norm(&layer.norm_2, x)
    }
}

/// Burn's multi-head self-attention with the product and attention kernels.
fn self_attention(
    mha: &MultiHeadAttention,
    x: Tensor<3>,
    padding: Option<Tensor<2, Bool>>,
) -> Tensor<3> {
    if mha.quiet_softmax {
        let input = MhaInput::self_attn(x);
        let input = match padding {
            Some(mask) => input.mask_pad(mask),
            None => input,
        };
        return mha.forward(input).context;
    }
    let (query, key, value) = (
        linear(&mha.query, x.clone()),
        linear(&mha.key, x.clone()),
        linear(&mha.value, x.clone()),
    );
    let dropout = &mha.dropout;
    let dropping = dropout.prob > 0.0 && dropout.training.is_enabled() && x.device().is_autodiff();
    let (heads, masked) = (mha.n_heads, mha.min_float);
    let context = if dropping {
        // Dropout on the attention weights (SimCSE's views) needs them as a tensor.
        attention_composed(query, key, value, heads, padding, masked, |w| {
            dropout.forward(w)
        })
    } else {
        attention(query, key, value, heads, padding, masked)
    };
    linear(&mha.output, context)
}

/// Burn's position-wise feed-forward with the GELU kernel (other activations are Burn's).
fn feed_forward(pwff: &PositionWiseFeedForward, x: Tensor<3>) -> Tensor<3> {
    let x = linear(&pwff.linear_inner, x);
    let x = match &pwff.activation {
        Activation::Gelu(g) if !g.approximate => gelu(x),
        other => other.forward(x),
    };
    linear(&pwff.linear_outer, pwff.dropout.forward(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::transformer::TransformerEncoderInput;
    use burn::tensor::{Distribution, Tolerance};

    /// Burn's own forward pass, for the tests.
    fn burn_encode(
        blocks: &TransformerEncoder,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let input = TransformerEncoderInput::new(x);
        let input = match padding {
            Some(mask) => input.mask_pad(mask),
            None => input,
        };
        blocks.forward(input)
    }

    /// The output and every parameter's gradient against Burn's forward pass, pre- and
    /// post-norm, with and without a padding mask.
    #[test]
    fn blocks_match_burns_forward_and_backward() {
        let device = Device::flex().autodiff();
        for norm_first in [true, false] {
            let blocks = TransformerEncoderConfig::new(16, 48, 4, 2)
                .with_dropout(0.0)
                .with_norm_first(norm_first)
                .init(&device);
            let data =
                crate::test_data::seeded([3, 7, 16], Distribution::Normal(0.0, 1.0), 3, &device)
                    .into_data();
            let lengths = [7, 4, 1];
            let padding = Tensor::<2, Bool>::from_data(
                burn::tensor::TensorData::new(
                    lengths
                        .iter()
                        .flat_map(|&n| (0..7).map(move |i| i >= n))
                        .collect::<Vec<bool>>(),
                    [3, 7],
                ),
                &device,
            );
            for mask in [None, Some(padding)] {
                let ours = encode(
                    &blocks,
                    Tensor::from_data(data.clone(), &device),
                    mask.clone(),
                );
                let burn = burn_encode(&blocks, Tensor::from_data(data.clone(), &device), mask);
                let tolerance = Tolerance::<f32>::rel_abs(1e-4, 1e-5);
                ours.to_data()
                    .assert_approx_eq::<f32>(&burn.to_data(), tolerance);
                let weights = crate::test_data::seeded(
                    [3, 7, 16],
                    Distribution::Normal(0.0, 1.0),
                    4,
                    &device,
                );
                let ours = (ours * weights.clone()).sum().backward();
                let burn = (burn * weights).sum().backward();
                let layer = &blocks.layers[0];
                for param in [
                    &layer.mha.query.weight,
                    &layer.mha.value.weight,
                    &layer.pwff.linear_inner.weight,
                    &blocks.layers[1].mha.key.weight,
                ] {
                    param
                        .val()
                        .grad(&ours)
                        .expect("a gradient")
                        .into_data()
                        .assert_approx_eq::<f32>(
                            &param.val().grad(&burn).unwrap().into_data(),
                            tolerance,
                        );
                }
            }
        }
    }
}
