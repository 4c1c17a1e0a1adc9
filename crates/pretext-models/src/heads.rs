//! Heads built from a list of widths: the projectors and predictors of the joint-embedding
//! methods (lightly's `ProjectionHead` shape). Every layer but the last is linear, batch norm,
//! ReLU; the last is linear alone, or linear and an affine-free batch norm where a method asks
//! for one (MoCo v3's projector). A linear layer followed by batch norm has no bias: the norm's
//! shift makes it redundant.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::encoders::norm::batch_norm_1d;
use crate::error::ModelError;
use crate::kernels::{linear, matmul};

/// A head: `widths[0]` inputs, `widths[last]` outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpHeadConfig {
    pub widths: Vec<usize>,
    /// Batch norm after the hidden layers' linear maps.
    pub hidden_norm: bool,
    /// An affine-free batch norm after the last linear map.
    pub output_norm: bool,
}

impl MlpHeadConfig {
    /// `input → hidden… → output` with batch norm in the hidden layers.
    pub fn new(input: usize, hidden: &[usize], output: usize) -> Self {
        let mut widths = vec![input];
        widths.extend_from_slice(hidden);
        widths.push(output);
        Self {
            widths,
            hidden_norm: true,
            output_norm: false,
        }
    }

    pub fn with_output_norm(mut self, on: bool) -> Self {
        self.output_norm = on;
        self
    }

    pub fn output(&self) -> usize {
        self.widths.last().copied().unwrap_or(0)
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        if self.widths.len() < 2 || self.widths.contains(&0) {
            return Err(ModelError::invalid(
                "head",
                format!(
                    "widths {:?} must hold an input and at least one positive layer width",
                    self.widths
                ),
            ));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> Result<MlpHead, ModelError> {
        self.validate()?;
        let last = self.widths.len() - 2;
        let layers = self
            .widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let norm = if i < last {
                    self.hidden_norm
                } else {
                    self.output_norm
                };
                HeadLayer {
                    linear: LinearConfig::new(w[0], w[1]).with_bias(!norm).init(device),
                    norm: norm.then(|| {
                        let bn = BatchNormConfig::new(w[1]).init(device);
                        if i < last {
                            bn
                        } else {
                            // Affine-free: a fixed scale of 1 and shift of 0, never trained.
                            affine_free(bn)
                        }
                    }),
                    relu: i < last,
                }
            })
            .collect();
        Ok(MlpHead { layers })
    }
}

/// Batch norm whose scale and shift stay 1 and 0.
fn affine_free(bn: BatchNorm) -> BatchNorm {
    BatchNorm {
        gamma: bn.gamma.set_require_grad(false),
        beta: bn.beta.set_require_grad(false),
        ..bn
    }
}

#[derive(Module, Debug)]
struct HeadLayer {
    linear: Linear,
    norm: Option<BatchNorm>,
    #[module(skip)]
    relu: bool,
}

/// See [`MlpHeadConfig`].
#[derive(Module, Debug)]
pub struct MlpHead {
    layers: Vec<HeadLayer>,
}

impl MlpHead {
    /// `[batch, input]` → `[batch, output]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut x = x;
        for layer in &self.layers {
            x = linear(&layer.linear, x);
            if let Some(norm) = &layer.norm {
                x = batch_norm_1d(norm, x);
            }
            if layer.relu {
                x = relu(x);
            }
        }
        x
    }
}

/// Several independent linear clustering heads over one input (SCAN trains many and keeps the
/// one with the lowest loss): one matrix product computes them all.
#[derive(Module, Debug)]
pub struct ClusteringHeads {
    /// Every head's first layer side by side: `input -> heads * width`.
    linear: Linear,
    /// With a hidden layer, each head's own `hidden -> clusters` layer.
    outputs: Vec<Linear>,
    #[module(skip)]
    clusters: usize,
    #[module(skip)]
    heads: usize,
    #[module(skip)]
    hidden: usize,
}

impl ClusteringHeads {
    /// `heads` independent heads from `input` features to `clusters` logits: linear when
    /// `hidden` is 0, otherwise `input -> hidden -> ReLU -> clusters`.
    pub fn new(
        input: usize,
        clusters: usize,
        heads: usize,
        hidden: usize,
        device: &Device,
    ) -> Self {
        let width = head_width(clusters, hidden);
        let outputs = if hidden == 0 {
            Vec::new()
        } else {
            (0..heads)
                .map(|_| LinearConfig::new(hidden, clusters).init(device))
                .collect()
        };
        Self {
            linear: LinearConfig::new(input, width * heads).init(device),
            outputs,
            clusters,
            heads,
            hidden,
        }
    }

    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Every head's cluster logits at once, `[batch, heads, clusters]`.
    pub fn forward_all(&self, x: Tensor<2>) -> Tensor<3> {
        if self.hidden == 0 {
            let batch = x.dims()[0];
            return linear(&self.linear, x).reshape([batch, self.heads, self.clusters]);
        }
        Tensor::stack(self.forward(x), 1)
    }

    /// Head `head`'s cluster logits alone, `[batch, clusters]`: its columns of the shared first
    /// layer, so that training or applying one head costs one head's product, not all of them.
    pub fn forward_head(&self, x: Tensor<2>, head: usize) -> Tensor<2> {
        let width = head_width(self.clusters, self.hidden);
        let weight = self.linear.weight.val().narrow(1, head * width, width);
        let mut y = matmul(x, weight);
        if let Some(bias) = &self.linear.bias {
            y = y + bias
                .val()
                .narrow(0, head * width, width)
                .reshape([1, width]);
        }
        if self.hidden == 0 {
            return y;
        }
        linear(&self.outputs[head], relu(y))
    }

    /// Each head's cluster logits, `heads` tensors of `[batch, clusters]`.
    pub fn forward(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        let all = linear(&self.linear, x);
        if self.hidden == 0 {
            return (0..self.heads)
                .map(|h| all.clone().narrow(1, h * self.clusters, self.clusters))
                .collect();
        }
        let all = relu(all);
        self.outputs
            .iter()
            .enumerate()
            .map(|(h, out)| linear(out, all.clone().narrow(1, h * self.hidden, self.hidden)))
            .collect()
    }
}

/// One head's columns in the shared first layer: its clusters when the head is linear, its
/// hidden units otherwise.
fn head_width(clusters: usize, hidden: usize) -> usize {
    if hidden == 0 { clusters } else { hidden }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clustering_heads_are_linear_or_have_a_hidden_layer_each() {
        let device = Device::flex();
        let x = Tensor::ones([5, 12], &device);
        let linear = ClusteringHeads::new(12, 3, 4, 0, &device);
        assert_eq!(linear.num_params(), 12 * 12 + 12);
        let hidden = ClusteringHeads::new(12, 3, 4, 8, &device);
        assert_eq!(hidden.num_params(), 12 * 32 + 32 + 4 * (8 * 3 + 3));
        for heads in [linear, hidden] {
            let out = heads.forward(x.clone());
            assert_eq!(out.len(), 4);
            assert!(out.iter().all(|t| t.dims() == [5, 3]));
        }
    }

    #[test]
    fn one_head_alone_gives_its_logits_and_gradients() {
        let device = Device::flex().autodiff();
        let x = crate::test_data::seeded(
            [6, 12],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            3,
            &device,
        );
        let tolerance = burn::tensor::Tolerance::<f32>::rel_abs(1e-5, 1e-6);
        for hidden in [0, 8] {
            let heads = ClusteringHeads::new(12, 3, 4, hidden, &device);
            for h in 0..4 {
                let alone = heads.forward_head(x.clone(), h);
                let among = heads.forward(x.clone()).swap_remove(h);
                alone
                    .to_data()
                    .assert_approx_eq::<f32>(&among.to_data(), tolerance);
                // The same loss through either path trains the first layer alike.
                let weight = heads.linear.weight.val();
                let g_alone = weight.grad(&alone.powi_scalar(2).sum().backward()).unwrap();
                let g_among = weight.grad(&among.powi_scalar(2).sum().backward()).unwrap();
                g_alone
                    .into_data()
                    .assert_approx_eq::<f32>(&g_among.into_data(), tolerance);
            }
        }
    }

    #[test]
    fn widths_set_the_shapes_and_norms_replace_biases() {
        let device = Device::flex();
        let config = MlpHeadConfig::new(12, &[16, 8], 4);
        let head = config.init(&device).unwrap();
        assert_eq!(config.output(), 4);
        // 12x16 and 16x8 without biases, each with a 4-value batch norm per channel; 8x4 + 4.
        assert_eq!(
            head.num_params(),
            12 * 16 + 4 * 16 + 16 * 8 + 4 * 8 + 8 * 4 + 4
        );
        let out = head.forward(Tensor::ones([5, 12], &device));
        assert_eq!(out.dims(), [5, 4]);
        let normed = config.with_output_norm(true).init(&device).unwrap();
        assert_eq!(
            normed.num_params(),
            12 * 16 + 4 * 16 + 16 * 8 + 4 * 8 + 8 * 4 + 4 * 4
        );
    }

    #[test]
    fn an_affine_free_output_norm_is_standardised_in_training() {
        let device = Device::flex().autodiff();
        let head = MlpHeadConfig::new(3, &[], 2)
            .with_output_norm(true)
            .init(&device)
            .unwrap();
        // Wide inputs: batch norm's epsilon pulls the variance below 1 only for an output
        // whose own spread is near zero, which small inputs and small random weights can give.
        let x = crate::test_data::seeded(
            [64, 3],
            burn::tensor::Distribution::Normal(0.0, 10.0),
            1,
            &device,
        );
        let out = head.forward(x);
        let (var, mean) = out.var_mean_bias(0);
        assert!(mean.abs().max().into_scalar::<f32>() < 1e-4);
        assert!(var.sub_scalar(1.0).abs().max().into_scalar::<f32>() < 1e-2);
    }

    #[test]
    fn empty_or_zero_widths_are_errors() {
        assert!(MlpHeadConfig::new(0, &[], 4).validate().is_err());
        assert!(MlpHeadConfig::new(4, &[0], 4).validate().is_err());
        let one = MlpHeadConfig {
            widths: vec![4],
            hidden_norm: true,
            output_norm: false,
        };
        assert!(one.validate().is_err());
    }
}
