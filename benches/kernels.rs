//! Pretext's flex kernels beside the Burn operations they replace, in one run: the CNN
//! encoder's layers at batch 128 and the Transformers' activations, layer norm, attention and
//! token products at the benchmark steps' shapes, forward and backward (`sum().backward()`),
//! on flex with every core. Prints the median of several repetitions after warm-up for each
//! side and the speed-up.
//!
//! Run: `cargo bench --bench kernels`.

use std::time::Instant;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, LayerNormConfig, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::activation::{gelu as burn_gelu, log_softmax, softmax};
use burn::tensor::{Device, Distribution, Tensor};
use pretext_models::kernels::{
    Then, attention, attention_composed, batch_norm_running, batch_norm_train,
    batch_norm_train_add_relu, batch_norm_train_pool_relu, batch_norm_train_relu,
    batch_norm_train_rows, conv2d, gelu, layer_norm, linear, log_softmax_last, max_pool2_relu,
    softmax_last,
};

// The allocator the `pretext` binary uses, so figures match what users see.
#[global_allocator]
static ALLOCATOR: pretext_cli::allocator::Allocator = pretext_cli::allocator::Allocator {};

const WARMUP: usize = 3;
const REPEATS: usize = 15;

/// Median milliseconds of `f` over `REPEATS` calls after `WARMUP`.
fn time(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..WARMUP + REPEATS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .skip(WARMUP)
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn row(name: &str, burn: f64, ours: f64) {
    println!("{name:<44} {burn:>9.2} {ours:>9.2} {:>8.2}x", burn / ours);
}

fn conv(device: &Device, channels: [usize; 2], bias: bool) -> Conv2d {
    Conv2dConfig::new(channels, [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .with_bias(bias)
        .init(device)
}

fn main() {
    pretext_cli::allocator::keep_freed_memory();
    let device = Device::flex().autodiff();
    let random =
        |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
    println!("batch 128, flex, forward and backward; median of {REPEATS} after {WARMUP} warm-up");
    println!(
        "{:<44} {:>9} {:>9} {:>9}",
        "operation", "Burn ms", "ours ms", "speed-up"
    );

    let conv_row = |name: &str, layer: Conv2d, input: Tensor<4>| {
        row(
            name,
            time(|| drop(layer.forward(input.clone()).sum().backward())),
            time(|| drop(conv2d(&layer, input.clone()).sum().backward())),
        )
    };
    // The first layer: images take no gradient.
    conv_row(
        "conv 1→32, 28x28, bias",
        conv(&device, [1, 32], true),
        random([128, 1, 28, 28]),
    );
    conv_row(
        "conv 32→64, 14x14, input gradient",
        conv(&device, [32, 64], false),
        random([128, 32, 14, 14]).require_grad(),
    );
    // The ResNet's first stage, a third of its multiply-adds.
    conv_row(
        "conv 32→32, 32x32, input gradient",
        conv(&device, [32, 32], false),
        random([128, 32, 32, 32]).require_grad(),
    );
    // The ResNet's downsampling at 32x32 input: a stride-2 3x3 and its 1x1 shortcut.
    let strided = |channels: [usize; 2], kernel: usize, pad: usize| {
        Conv2dConfig::new(channels, [kernel, kernel])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(false)
            .init(&device)
    };
    conv_row(
        "conv 32→64, stride 2, 32x32, input gradient",
        strided([32, 64], 3, 1),
        random([128, 32, 32, 32]).require_grad(),
    );
    conv_row(
        "conv 1x1 32→64, stride 2, 32x32",
        strided([32, 64], 1, 0),
        random([128, 32, 32, 32]).require_grad(),
    );
    // The ResNet's later stages, two thirds of its multiply-adds: their outputs are too small
    // for shifted views, so they run on column buffers.
    conv_row(
        "conv 64→64, 16x16, input gradient",
        conv(&device, [64, 64], false),
        random([128, 64, 16, 16]).require_grad(),
    );
    conv_row(
        "conv 64→128, stride 2, 16x16, input gradient",
        strided([64, 128], 3, 1),
        random([128, 64, 16, 16]).require_grad(),
    );
    conv_row(
        "conv 128→128, 8x8, input gradient",
        conv(&device, [128, 128], false),
        random([128, 128, 8, 8]).require_grad(),
    );

    let activations = random([128, 32, 28, 28]).require_grad();
    let pool = MaxPool2dConfig::new([2, 2]).init();
    row(
        "max-pool 2x2 + ReLU, 32x28x28",
        time(|| drop(relu(pool.forward(activations.clone())).sum().backward())),
        time(|| drop(max_pool2_relu(activations.clone()).sum().backward())),
    );

    let norm = BatchNormConfig::new(32).init(&device);
    row(
        "batch norm (training), 32x28x28",
        time(|| drop(norm.forward(activations.clone()).sum().backward())),
        time(|| {
            let (out, _, _) = batch_norm_train(
                activations.clone(),
                norm.gamma.val(),
                norm.beta.val(),
                norm.epsilon,
            );
            drop(out.sum().backward())
        }),
    );

    // The CNN encoder's block after its convolution, and the ResNet's after each first one:
    // one kernel each in training.
    row(
        "batch norm + max-pool 2x2 + ReLU, 32x28x28",
        time(|| {
            drop(
                relu(pool.forward(norm.forward(activations.clone())))
                    .sum()
                    .backward(),
            )
        }),
        time(|| {
            let (gamma, beta) = (norm.gamma.val(), norm.beta.val());
            let (out, _, _) =
                batch_norm_train_pool_relu(activations.clone(), gamma, beta, norm.epsilon);
            drop(out.sum().backward())
        }),
    );
    let wide = random([128, 32, 32, 32]).require_grad();
    row(
        "batch norm + ReLU, 32x32x32",
        time(|| drop(relu(norm.forward(wide.clone())).sum().backward())),
        time(|| {
            let (gamma, beta) = (norm.gamma.val(), norm.beta.val());
            let (out, _, _) = batch_norm_train_relu(wide.clone(), gamma, beta, norm.epsilon);
            drop(out.sum().backward())
        }),
    );

    // The same block at inference (feature extraction for the probes), on running statistics.
    let frozen = BatchNormConfig::new(32).init(&Device::flex());
    let plain = Tensor::<4>::random(
        [128, 32, 28, 28],
        Distribution::Normal(0.0, 1.0),
        &Device::flex(),
    );
    row(
        "inference: batch norm + max-pool 2x2 + ReLU",
        time(|| drop(relu(pool.forward(frozen.forward(plain.clone()))).into_data())),
        time(|| drop(batch_norm_running(&frozen, plain.clone(), Then::MaxPool2Relu).into_data())),
    );
    let residual = random([128, 32, 32, 32]).require_grad();
    row(
        "batch norm + residual + ReLU, 32x32x32",
        time(|| {
            let sum = norm.forward(wide.clone()) + residual.clone();
            drop(relu(sum).sum().backward())
        }),
        time(|| {
            let (gamma, beta) = (norm.gamma.val(), norm.beta.val());
            let (out, _, _) = batch_norm_train_add_relu(
                wide.clone(),
                gamma,
                beta,
                norm.epsilon,
                residual.clone(),
            );
            drop(out.sum().backward())
        }),
    );

    // A two-view projector's hidden layer: two views of 256 images, 1,024 features.
    let rows =
        Tensor::<2>::random([512, 1024], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let norm = BatchNormConfig::new(1024).init(&device);
    row(
        "batch norm (training), 512x1024 rows",
        time(|| drop(norm.forward(rows.clone()).sum().backward())),
        time(|| {
            let (out, _, _) = batch_norm_train_rows(
                rows.clone(),
                norm.gamma.val(),
                norm.beta.val(),
                norm.epsilon,
            );
            drop(out.sum().backward())
        }),
    );

    // The text step's attention scores (32 sequences x 4 heads x 64 x 64), its feed-forward
    // activations (32 x 64 tokens x 256), its loss's logits (293 masked tokens x 4,000) and
    // NT-Xent's (512 views x 512) at the two-view steps' batch.
    let scores = random([32, 4, 64, 64]).require_grad();
    row(
        "softmax, 32x4x64x64",
        time(|| drop(softmax(scores.clone(), 3).sum().backward())),
        time(|| drop(softmax_last(scores.clone()).sum().backward())),
    );
    let hidden = random([32, 64, 16, 16])
        .reshape([32, 64, 256])
        .require_grad();
    row(
        "GELU, 32x64x256",
        time(|| drop(burn_gelu(hidden.clone()).sum().backward())),
        time(|| drop(gelu(hidden.clone()).sum().backward())),
    );
    let tokens = random([32, 64, 8, 8]).reshape([32, 64, 64]).require_grad();
    let layer = LayerNormConfig::new(64).init(&device);
    row(
        "layer norm, 32x64x64",
        time(|| drop(layer.forward(tokens.clone()).sum().backward())),
        time(|| drop(layer_norm(&layer, tokens.clone()).sum().backward())),
    );
    // The text step's attention: 32 sequences of 64 tokens, 4 heads of 16, from the
    // projections' layout, with a padding mask.
    let projection = || random([32, 64, 8, 8]).reshape([32, 64, 64]).require_grad();
    let (q, k, v) = (projection(), projection(), projection());
    let padding = Tensor::<2, burn::tensor::Int>::zeros([32, 64], &device).equal_elem(1);
    row(
        "attention, 32x64, 4 heads of 16",
        time(|| {
            let out = attention_composed(
                q.clone(),
                k.clone(),
                v.clone(),
                4,
                Some(padding.clone()),
                -1.0e4,
                |w| w,
            );
            drop(out.sum().backward())
        }),
        time(|| {
            let out = attention(
                q.clone(),
                k.clone(),
                v.clone(),
                4,
                Some(padding.clone()),
                -1.0e4,
            );
            drop(out.sum().backward())
        }),
    );
    // MAE's attention at the step's batch of 128: the encoder's 12 visible patches and the
    // decoder's 49, rows shorter than or not a multiple of a vector.
    for len in [12, 49] {
        let projection = || {
            random([128, len, 8, 8])
                .reshape([128, len, 64])
                .require_grad()
        };
        let (q, k, v) = (projection(), projection(), projection());
        row(
            &format!("attention, 128x{len}, 4 heads of 16"),
            time(|| {
                let out =
                    attention_composed(q.clone(), k.clone(), v.clone(), 4, None, -1.0e4, |w| w);
                drop(out.sum().backward())
            }),
            time(|| {
                drop(
                    attention(q.clone(), k.clone(), v.clone(), 4, None, -1.0e4)
                        .sum()
                        .backward(),
                )
            }),
        );
    }
    // A product as the Transformers' feed-forward layer takes it: 2,048 tokens, 64 → 256.
    let layer = LinearConfig::new(64, 256).init(&device);
    let tokens = random([32, 64, 8, 8]).reshape([32, 64, 64]).require_grad();
    row(
        "linear 64→256 on 32x64 tokens",
        time(|| drop(layer.forward(tokens.clone()).sum().backward())),
        time(|| drop(linear(&layer, tokens.clone()).sum().backward())),
    );
    for (name, dims) in [
        ("log-softmax, 293x4000", [293, 4000]),
        ("log-softmax, 512x512", [512, 512]),
    ] {
        let logits = Tensor::<2>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        let logits = logits.require_grad();
        row(
            name,
            time(|| drop(log_softmax(logits.clone(), 1).sum().backward())),
            time(|| drop(log_softmax_last(logits.clone()).sum().backward())),
        );
    }
}
