//! Data-parallel training on several devices. Every batch is split into one contiguous shard
//! per replica; each replica (the model forked onto its device) runs its shard forward; the
//! outputs the loss needs come back to the main device, where the loss of the whole batch is
//! made; one backward pass reaches every replica, and burn-optim's [`MultiGradientsParams`]
//! sums their gradients onto the main device, where the optimizer steps the one model.
//!
//! The two-view methods (SimCSE on text too) gather their projections, so contrastive
//! negatives and VICReg's and Barlow Twins' batch statistics span the whole batch; other tasks
//! average their shards' losses by the terms each holds. Either way the gradient is the whole
//! batch's, as on one device. Batch normalisation is the exception: each replica normalises
//! by its own shard's statistics (Burn 0.22 has no synchronised batch norm), and the running
//! statistics take one update per shard.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, MultiGradientsParams};
use burn::tensor::{Device, Gradients, Tensor};

use pretext_data::tasks::AnyBatch;
use pretext_models::tasks::{JointProjections, TaskModel};

use crate::error::{Result, TrainError};
use crate::trainer::{StepLoss, projections, task_output};

/// The devices a run trains on, the main one first (all autodiff devices).
#[derive(Debug, Clone)]
pub struct Replicas {
    devices: Vec<Device>,
}

/// The replicas of one batch's forward pass, whose parameters receive the gradient.
pub struct Sharded {
    replicas: Vec<(TaskModel, Device)>,
}

impl Replicas {
    /// Replicas on `devices` (made autodiff devices) when there are several; `None` for one,
    /// which the loop trains on by itself.
    pub fn data_parallel(devices: &[Device]) -> Option<Self> {
        (devices.len() > 1).then(|| Self {
            devices: devices.iter().map(|d| d.clone().autodiff()).collect(),
        })
    }

    pub fn main(&self) -> &Device {
        &self.devices[0]
    }

    /// After a step the model's running statistics may sit on a replica's device (forking
    /// moves them): brings the whole model back to the main device.
    pub fn home(&self, model: TaskModel) -> TaskModel {
        if self.devices.iter().all(|d| d == self.main()) {
            model
        } else {
            model.map(&mut Home(self.main().clone()))
        }
    }

    /// Runs `batch` forward, one shard per replica of `model`, and makes the batch's loss on
    /// the main device.
    pub fn forward(&self, model: &TaskModel, batch: AnyBatch) -> Result<(StepLoss, Sharded)> {
        let main = self.main();
        let total = batch.loss_terms().max(1) as f64;
        let shards = batch.shards(self.devices.len());
        let mut replicas = Vec::with_capacity(shards.len());
        // Each replica is forked just before its forward pass: forking moves the running
        // statistics the replicas share with the model onto the replica's device.
        let mut fork = |device: &Device| {
            replicas.push((model.clone().fork(device), device.clone()));
            replicas.last().map(|(r, _)| r.clone())
        };
        let mismatch =
            || TrainError::config("the model was built for another task than the data loader's");
        let output = if model.projects_views() {
            let mut parts = Vec::with_capacity(shards.len());
            for (shard, device) in shards.into_iter().zip(&self.devices) {
                let tensors = shard.into_tensors(device);
                let part = fork(device).and_then(|replica| projections(&replica, &tensors));
                parts.push(part.ok_or_else(mismatch)?);
            }
            model
                .loss_of_projections(JointProjections::gather(parts, main))
                .ok_or_else(mismatch)?
                .into()
        } else {
            let mut loss: Option<Tensor<1>> = None;
            for (shard, device) in shards.into_iter().zip(&self.devices) {
                let share = shard.loss_terms() as f64 / total;
                if share == 0.0 {
                    // No terms (an MLM shard without masked tokens): nothing to average.
                    continue;
                }
                let Some(replica) = fork(device) else {
                    continue;
                };
                let part = task_output(&replica, shard.into_tensors(device))?
                    .loss
                    .to_device(main)
                    .mul_scalar(share);
                loss = Some(match loss {
                    Some(l) => l + part,
                    None => part,
                });
            }
            StepLoss {
                loss: loss.ok_or_else(|| TrainError::config("an empty batch"))?,
                embedding_std: None,
            }
        };
        Ok((output, Sharded { replicas }))
    }
}

impl Sharded {
    /// The gradient of the batch's loss for `model`'s parameters, on the main device: each
    /// replica's part, summed by [`MultiGradientsParams`].
    pub fn gradients(
        self,
        mut grads: Gradients,
        model: &TaskModel,
        main: &Device,
    ) -> GradientsParams {
        let mut multi = MultiGradientsParams::default();
        for (replica, device) in &self.replicas {
            multi.grads.push((
                GradientsParams::from_module(&mut grads, replica),
                device.clone(),
            ));
        }
        let mut reduce = Reduce {
            multi,
            out: GradientsParams::new(),
            main: main.clone(),
        };
        model.visit(&mut reduce);
        reduce.out
    }
}

/// Moves what sits off the main device back to it and leaves the rest untouched: the
/// parameters, which the optimizer stepped on the main device, stay the leaves they are.
struct Home(Device);

impl ModuleMapper for Home {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if param.val().device() == self.0 {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.to_device(&self.0), mapper)
    }
}

/// Sums each parameter's gradients from every replica onto the main device.
struct Reduce {
    multi: MultiGradientsParams,
    out: GradientsParams,
    main: Device,
}

impl ModuleVisitor for Reduce {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some((grad, _)) = self.multi.remove::<D>(param.id) {
            self.out.register::<D>(param.id, grad.to_device(&self.main));
        }
    }
}
