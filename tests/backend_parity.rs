//! The same computations on every compiled-in backend agree with flex, the reference CPU
//! backend: a set of tensor ops, a small conv net's forward and backward pass, and two
//! training steps of the rotation model through the training crate.
//!
//! Kept small on purpose: on wgpu through Mesa's lavapipe each distinct kernel is compiled on the
//! CPU, which takes seconds.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::LinearConfig;
use burn::tensor::Gradients;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use pretext_cli::device::DeviceSpec;
use pretext_models::CnnEncoderConfig;

const TOLERANCE: f32 = 1e-4;

/// Deterministic values in [-1, 1) without a random generator, so every backend gets the same.
fn values(n: usize, salt: u64) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ salt;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tensor<const D: usize>(shape: [usize; D], salt: u64, device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(values(n, salt), shape), device)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

fn assert_close(what: &str, reference: &[f32], other: &[f32]) {
    assert_eq!(reference.len(), other.len(), "{what}: lengths differ");
    for (i, (a, b)) in reference.iter().zip(other).enumerate() {
        // Relative for large values, absolute near zero.
        let tol = TOLERANCE * a.abs().max(1.0);
        assert!(
            (a - b).abs() <= tol,
            "{what}[{i}]: flex {a} vs {b} (|diff| {} > {tol})",
            (a - b).abs()
        );
    }
}

/// Float results of a fixed set of ops, in a fixed order.
fn tensor_ops(device: &Device) -> Vec<(&'static str, Vec<f32>)> {
    let a = tensor([8, 16], 1, device);
    let b = tensor([16, 4], 2, device);
    let argmax: Tensor<2, Int> = a.clone().argmax(1);
    vec![
        ("matmul", host(a.clone().matmul(b.clone()))),
        ("softmax", host(softmax(a.clone(), 1))),
        ("log_softmax", host(log_softmax(a.clone(), 1))),
        ("exp", host(a.clone().exp())),
        ("sqrt_abs", host(a.clone().abs().sqrt())),
        ("sum_dim", host(a.clone().sum_dim(0))),
        ("mean", host(a.clone().mean())),
        ("max_dim", host(a.clone().max_dim(1))),
        ("argmax", host(argmax.float())),
        (
            "transpose_add",
            host(a.clone().transpose() + b.clone().repeat_dim(1, 2)),
        ),
        ("clamp_mul", host(a.clone().clamp(-0.5, 0.5) * 3.0)),
        (
            "cat_slice",
            host(Tensor::cat(vec![a.clone(), a], 0).slice([4..12, 2..6])),
        ),
    ]
}

/// Collects each parameter's gradient, in the module's visiting order.
struct GradCollector<'a> {
    grads: &'a Gradients,
    out: Vec<Vec<f32>>,
}

impl ModuleVisitor for GradCollector<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            self.out.push(host(g));
        }
    }
}

#[derive(Module, Debug)]
struct Net {
    encoder: pretext_models::CnnEncoder,
    head: burn::nn::Linear,
}

/// Loss, logits and every parameter gradient of a small conv net with a linear head, from
/// parameters initialised once on flex and moved to `device`.
fn conv_net_step(device: &Device) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
    // Parameters initialise lazily from the backend's global generator: `seeded` initialises
    // them all under one lock, so tests running in parallel draw the same parameters.
    let reference = Device::flex();
    let config = CnnEncoderConfig::new()
        .with_height(12)
        .with_width(12)
        .with_channels(vec![4, 8])
        .with_embedding_dim(16);
    let device = device.clone().autodiff();
    let net = pretext_train::model::seeded(7, &reference, || {
        Ok(Net {
            encoder: config.init(&reference)?,
            head: LinearConfig::new(16, 3).init(&reference),
        })
    })
    .unwrap();
    let (encoder, head) = (net.encoder, net.head);
    let encoder = encoder.fork(&device).train();
    let head = head.fork(&device).train();

    let images = tensor([6, 1, 12, 12], 3, &device);
    let labels =
        Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 0, 1, 2], [6]), &device);
    let logits = head.forward(encoder.forward(images));
    let loss = burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits.clone(), labels);
    let grads = loss.backward();
    let mut collector = GradCollector {
        grads: &grads,
        out: Vec::new(),
    };
    encoder.visit(&mut collector);
    head.visit(&mut collector);
    (host(loss), host(logits), collector.out)
}

/// The losses of two optimizer steps of the real rotation model (encoder, head, loss, AdamW)
/// through the training crate, from parameters initialised on flex and moved to `device`.
fn rotation_training_losses(device: &Device) -> Vec<f32> {
    use pretext_data::tasks::{AnyTask, RotationConfig};
    use pretext_data::{ImageSet, ImageShape, Normalization, PretextTask, Samples};
    use pretext_models::encoders::EncoderConfig;
    use pretext_train::config::{HeadsConfig, OptimizerConfig};
    use pretext_train::model::{build_model, seeded};

    let shape = ImageShape::new(1, 12, 12);
    let pixels: Vec<u8> = values(4 * shape.len(), 11)
        .iter()
        .map(|v| ((v + 1.0) * 127.0) as u8)
        .collect();
    let set = ImageSet::new(shape, pixels, None).unwrap();
    let norm = Normalization::of(&set);
    let task = AnyTask::build(
        &pretext_data::tasks::TaskConfig::Rotation(RotationConfig::default()),
        shape,
    )
    .unwrap();
    let samples = Samples {
        images: (0..4).map(|i| set.image(i)).collect(),
        labels: None,
        seeds: vec![1, 2, 3, 4],
        norm: &norm,
    };
    let batch = task.make_batch(&samples);
    let encoder = EncoderConfig::Cnn(
        CnnEncoderConfig::new()
            .with_height(12)
            .with_width(12)
            .with_channels(vec![4, 8])
            .with_embedding_dim(16),
    );
    let reference = Device::flex().autodiff();
    let model = seeded(7, &reference, || {
        build_model(&task, &encoder, &HeadsConfig::default(), 0, &reference)
    })
    .unwrap();
    let device = device.clone().autodiff();
    let mut model = model.fork(&device).train();
    let mut optimizer =
        pretext_train::optimizer::build_optimizer(&OptimizerConfig::default(), None);
    let mut losses = Vec::new();
    for _ in 0..2 {
        let loss =
            pretext_train::trainer::task_loss(&model, batch.clone().into_tensors(&device)).unwrap();
        losses.extend(host(loss.clone()));
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-2, model, grads);
    }
    losses
}

fn check_parity(spec: &str) {
    let device = spec.parse::<DeviceSpec>().unwrap().device().unwrap();
    let flex = Device::flex();

    for ((name, reference), (_, other)) in tensor_ops(&flex).into_iter().zip(tensor_ops(&device)) {
        assert_close(&format!("{spec} {name}"), &reference, &other);
    }

    let (loss_ref, logits_ref, grads_ref) = conv_net_step(&flex);
    let (loss, logits, grads) = conv_net_step(&device);
    assert_close(&format!("{spec} loss"), &loss_ref, &loss);
    assert_close(&format!("{spec} logits"), &logits_ref, &logits);
    // conv1 weight, bn1 gamma/beta, conv2 weight, bn2 gamma/beta, fc weight/bias, head weight/bias
    assert_eq!(grads_ref.len(), 10, "every parameter has a gradient");
    assert_eq!(grads.len(), grads_ref.len());
    for (i, (r, o)) in grads_ref.iter().zip(&grads).enumerate() {
        assert!(r.iter().any(|v| *v != 0.0), "gradient {i} is all zero");
        assert_close(&format!("{spec} gradient {i}"), r, o);
    }

    let reference = rotation_training_losses(&flex);
    assert!(
        reference[1] < reference[0],
        "the step lowers the loss: {reference:?}"
    );
    assert_close(
        &format!("{spec} rotation training losses"),
        &reference,
        &rotation_training_losses(&device),
    );
}

#[test]
fn flex_agrees_with_itself() {
    // Guards the harness: two runs on the reference device must match exactly.
    let (loss_a, _, grads_a) = conv_net_step(&Device::flex());
    let (loss_b, _, grads_b) = conv_net_step(&Device::flex());
    assert_eq!(loss_a, loss_b);
    assert_eq!(grads_a, grads_b);
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_matches_flex() {
    check_parity("ndarray");
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_matches_flex() {
    check_parity("wgpu");
}
