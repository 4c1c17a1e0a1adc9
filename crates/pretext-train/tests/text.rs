//! Masked-token pretraining learns a tiny corpus, exports what the study needs, and resumes.

use burn::tensor::Device;

use pretext_data::LoaderConfig;
use pretext_data::text::{TextDataset, TextSet, TokenizerConfig, TokenizerKind};
use pretext_models::text::TextEncoderConfig;
use pretext_train::config::OptimizerConfig;
use pretext_train::schedule::ScheduleConfig;
use pretext_train::text::{MlmPretrainConfig, fill_mask, load_mlm, pretrain_mlm, pretrain_mlm_on};
use pretext_train::{RunMode, Silent};

/// Two classes of formulaic sentences: every masked word is predictable from its context.
fn corpus() -> TextDataset {
    let animals = ["the cat sat on the mat", "the dog lay on the rug"];
    let machines = ["my computer runs the code", "the server stores the data"];
    let mut documents = Vec::new();
    let mut labels = Vec::new();
    for i in 0..48 {
        let (class, texts) = if i % 2 == 0 {
            (0, &animals)
        } else {
            (1, &machines)
        };
        documents.push(texts[(i / 2) % 2].to_string());
        labels.push(class);
    }
    TextDataset {
        name: "tiny".into(),
        classes: vec!["animals".into(), "machines".into()],
        train: TextSet {
            documents,
            labels: Some(labels),
        },
        test: TextSet::default(),
        unlabelled: Vec::new(),
        skipped: 0,
    }
}

fn config(epochs: u64) -> MlmPretrainConfig {
    MlmPretrainConfig {
        tokenizer: TokenizerConfig {
            kind: TokenizerKind::Wordpiece,
            vocab_size: 60,
            min_frequency: 1,
            lowercase: true,
        },
        encoder: TextEncoderConfig::new()
            .with_max_len(16)
            .with_dim(32)
            .with_depth(2)
            .with_heads(2)
            .with_mlp_ratio(2),
        epochs,
        loader: LoaderConfig {
            batch_size: 16,
            ..LoaderConfig::default()
        },
        optimizer: OptimizerConfig {
            lr: 3e-3,
            weight_decay: 0.0,
            ..OptimizerConfig::default()
        },
        schedule: ScheduleConfig {
            warmup_epochs: 1.0,
            final_fraction: 0.1,
        },
        held_out_fraction: 0.25,
        ..MlmPretrainConfig::default()
    }
}

#[test]
fn mlm_learns_a_tiny_corpus_and_exports_a_usable_model() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mlm");
    let data = corpus();
    let before = pretrain_mlm(&config(1), &data, &device, &out, RunMode::New, &mut Silent)
        .unwrap()
        .masked_accuracy
        .unwrap();
    let outcome = pretrain_mlm(
        &config(200),
        &data,
        &device,
        &out,
        RunMode::Force,
        &mut Silent,
    )
    .unwrap();
    let after = outcome.masked_accuracy.unwrap();
    assert!(
        after > 0.9 && after > before + 0.3,
        "masked-token accuracy {before} after one epoch, {after} after 200"
    );
    for file in [
        "tokenizer.json",
        "text_encoder.json",
        "encoder.safetensors",
        "mlm.safetensors",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }

    let loaded = load_mlm(&out, &device).unwrap();
    let filled = fill_mask(
        &loaded.model,
        &loaded.tokenizer,
        "the cat sat on the [MASK]",
        5,
        &device,
    );
    assert_eq!(filled.len(), 1);
    assert_eq!(filled[0].len(), 5);
    assert_eq!(filled[0][0].0, "mat", "top predictions {:?}", filled[0]);
    let total: f64 = filled[0].iter().map(|(_, p)| p).sum();
    assert!(total <= 1.0 + 1e-6);

    // A finished run resumed does no more training and reports the same accuracy.
    let resumed = pretrain_mlm(
        &config(200),
        &data,
        &device,
        &out,
        RunMode::Resume,
        &mut Silent,
    )
    .unwrap();
    assert!((resumed.masked_accuracy.unwrap() - after).abs() < 1e-9);
}

#[test]
fn character_tokens_and_bad_settings() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(1);
    c.tokenizer.kind = TokenizerKind::Chars;
    c.encoder = c.encoder.with_max_len(40);
    let outcome = pretrain_mlm(
        &c,
        &corpus(),
        &device,
        &dir.path().join("chars"),
        RunMode::New,
        &mut Silent,
    )
    .unwrap();
    assert!(
        outcome.vocab_size < 40,
        "{} character tokens",
        outcome.vocab_size
    );

    let mut bad = config(1);
    bad.held_out_fraction = 1.5;
    let err = pretrain_mlm(
        &bad,
        &corpus(),
        &device,
        &dir.path().join("bad"),
        RunMode::New,
        &mut Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("held_out_fraction"), "{err}");
    assert!(
        !dir.path().join("bad").exists(),
        "a bad config leaves no run behind"
    );
}

/// Masked-token pretraining on replicas trains what one device trains on the whole batch:
/// the shards' losses are weighted by their masked tokens.
#[test]
fn replicas_pretrain_the_masked_token_model_one_device_trains() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let data = corpus();
    let run = |devices: &[Device], name: &str| {
        let out = dir.path().join(name);
        pretrain_mlm_on(&config(3), &data, devices, &out, RunMode::New, &mut Silent).unwrap();
        let loaded = load_mlm(&out, &device).unwrap();
        fill_mask(
            &loaded.model,
            &loaded.tokenizer,
            "the dog lay on the [MASK]",
            5,
            &device,
        )
        .remove(0)
    };
    let one = run(std::slice::from_ref(&device), "one");
    let three = run(&[device.clone(), device.clone(), device.clone()], "three");
    for ((a, p), (b, q)) in one.iter().zip(&three) {
        assert_eq!(a, b);
        assert!((p - q).abs() < 1e-4, "{a}: {p} against {q}");
    }
}
