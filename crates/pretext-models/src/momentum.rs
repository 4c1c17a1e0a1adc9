//! Momentum targets (BYOL, MoCo v3): a copy of part of a model that follows the trained part by
//! an exponential moving average, `target ← m · target + (1 − m) · online`, and never by
//! gradients.
//!
//! The target is a module of its own, built from the same config as the online part (so its
//! parameters have their own ids and the optimizer, which finds parameters by id, never touches
//! it), then given the online values. Both functions pair the two modules' tensors in visiting
//! order, which is the same for two modules built from one config; batch-norm running
//! statistics follow too.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// `target` with every tensor set to `online`'s and gradients off: the start of a momentum
/// target.
pub fn momentum_copy<M: Module>(target: M, online: &M) -> M {
    ema_update(target, online, 0.0).no_grad()
}

/// One step of the moving average: every tensor of `target` becomes
/// `keep * target + (1 - keep) * online`. `keep` is the momentum `m` (1 leaves the target as it
/// is, 0 copies the online values).
pub fn ema_update<M: Module>(target: M, online: &M, keep: f64) -> M {
    let mut collect = Collect(Vec::new());
    online.visit(&mut collect);
    let mut blend = Blend {
        sources: collect.0.into_iter(),
        keep,
    };
    let target = target.map(&mut blend);
    debug_assert!(
        blend.sources.next().is_none(),
        "the online module has more tensors than its target"
    );
    target
}

/// Every float tensor, flattened and detached, in visiting order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().detach();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

struct Blend {
    sources: std::vec::IntoIter<Tensor<1>>,
    keep: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(source) = self.sources.next() else {
            debug_assert!(
                false,
                "the target module has more tensors than its online module"
            );
            return param;
        };
        let keep = self.keep;
        param.map(|t| {
            let source: Tensor<D> = source.reshape(t.shape());
            let blended = if keep == 0.0 {
                source
            } else {
                t.detach().mul_scalar(keep) + source.mul_scalar(1.0 - keep)
            };
            blended.detach().set_require_grad(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, TensorData};

    fn values(linear: &Linear) -> Vec<f32> {
        let mut v = linear
            .weight
            .val()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        if let Some(b) = &linear.bias {
            v.extend(b.val().into_data().try_into_vec_as::<f32>().unwrap());
        }
        v
    }

    #[test]
    fn the_copy_has_the_online_values_its_own_ids_and_no_gradients() {
        let device = Device::flex().autodiff();
        let online = LinearConfig::new(3, 2).init(&device);
        let target = momentum_copy(LinearConfig::new(3, 2).init(&device), &online);
        assert_eq!(values(&online), values(&target));
        assert_ne!(online.weight.id, target.weight.id);
        assert!(!target.weight.val().is_require_grad());
        assert!(online.weight.val().is_require_grad());
    }

    #[test]
    fn the_moving_average_is_exact() {
        let device = Device::flex().autodiff();
        let set = |w: Vec<f32>, b: Vec<f32>| Linear {
            weight: Param::from_data(TensorData::new(w, [2, 2]), &device),
            bias: Some(Param::from_data(TensorData::new(b, [2]), &device)),
        };
        let online = set(vec![1.0, 2.0, 3.0, 4.0], vec![10.0, -10.0]);
        let target = set(vec![0.0, 0.0, 1.0, 1.0], vec![0.0, 0.0]).no_grad();
        let target = ema_update(target, &online, 0.75);
        // 0.75 t + 0.25 o
        assert_eq!(values(&target), [0.25, 0.5, 1.5, 1.75, 2.5, -2.5]);
        assert!(!target.weight.val().is_require_grad());
        let same = ema_update(target, &online, 1.0);
        assert_eq!(values(&same), [0.25, 0.5, 1.5, 1.75, 2.5, -2.5]);
    }
}
