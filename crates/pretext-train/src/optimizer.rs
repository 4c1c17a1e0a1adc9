//! Builds Burn's optimizers from [`OptimizerConfig`].

use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};

use crate::config::{OptimizerConfig, OptimizerKind};

/// The optimizer, with each parameter's gradient norm clipped to `grad_clip` when given.
pub fn build_optimizer(config: &OptimizerConfig, grad_clip: Option<f32>) -> ModuleOptimizer {
    let clip = grad_clip.map(GradientClippingConfig::Norm);
    match config.kind {
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_beta_1(config.betas[0] as f32)
            .with_beta_2(config.betas[1] as f32)
            .with_epsilon(1e-8)
            .with_weight_decay(config.weight_decay as f32)
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum((config.momentum > 0.0).then_some(MomentumConfig {
                momentum: config.momentum,
                dampening: 0.0,
                nesterov: config.nesterov,
            }))
            .with_weight_decay((config.weight_decay > 0.0).then_some(WeightDecayConfig {
                penalty: config.weight_decay as f32,
            }))
            .with_gradient_clipping(clip)
            .init(),
    }
}
