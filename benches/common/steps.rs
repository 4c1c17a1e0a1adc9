//! Timing training steps the way the training loop takes them.

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use pretext_models::tasks::TaskModel;
use pretext_train::config::OptimizerConfig;
use pretext_train::optimizer::build_optimizer;

/// Median milliseconds of `repeats` optimizer steps at learning rate `lr` after `warmup`, each
/// reading the loss back (as the training loop does to stop on a non-finite one) and moving a
/// momentum target when the model has one.
pub fn time_steps(
    mut model: TaskModel,
    optimizer: &OptimizerConfig,
    lr: f64,
    loss: impl Fn(&TaskModel) -> Tensor<1>,
    warmup: usize,
    repeats: usize,
) -> f64 {
    let mut optimizer = build_optimizer(optimizer, None);
    let mut times = Vec::new();
    for i in 0..warmup + repeats {
        let start = Instant::now();
        let l = loss(&model);
        std::hint::black_box(l.clone().into_data());
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = optimizer.step(lr, model, grads);
        // BYOL's and MoCo v3's momentum target moves after every step, as in the loop.
        if model.has_target() {
            model = model.update_target(0.99);
        }
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
