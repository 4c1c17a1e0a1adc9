//! Text pretraining (masked tokens, contrastive views) learns a tiny corpus, exports what the
//! study needs, resumes, and trains on replicas what one device trains.

use burn::tensor::Device;

use pretext_data::LoaderConfig;
use pretext_data::text::{
    TextDataset, TextSet, TextViewsBatch, TextViewsConfig, TokenBatch, TokenizerConfig,
    TokenizerKind, encode_documents,
};
use pretext_models::text::TextEncoderConfig;
use pretext_train::config::OptimizerConfig;
use pretext_train::schedule::ScheduleConfig;
use pretext_train::study::StudyObserver;
use pretext_train::text::{TextCompareConfig, compare_text};
use pretext_train::text::{
    TextPretrainConfig, TextTaskKind, fill_mask, load_mlm, load_text_encoder, pretrain_text,
    pretrain_text_on, views_matched,
};
use pretext_train::{RunMode, Silent};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

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

fn config(epochs: u64) -> TextPretrainConfig {
    TextPretrainConfig {
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
        ..TextPretrainConfig::default()
    }
}

#[test]
fn mlm_learns_a_tiny_corpus_and_exports_a_usable_model() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mlm");
    let data = corpus();
    let before = pretrain_text(&config(1), &data, &device, &out, RunMode::New, &mut Silent)
        .unwrap()
        .held_out
        .unwrap();
    let outcome = pretrain_text(
        &config(200),
        &data,
        &device,
        &out,
        RunMode::Force,
        &mut Silent,
    )
    .unwrap();
    let after = outcome.held_out.unwrap();
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
    let resumed = pretrain_text(
        &config(200),
        &data,
        &device,
        &out,
        RunMode::Resume,
        &mut Silent,
    )
    .unwrap();
    assert!((resumed.held_out.unwrap() - after).abs() < 1e-9);
}

#[test]
fn character_tokens_and_bad_settings() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(1);
    c.tokenizer.kind = TokenizerKind::Chars;
    c.encoder = c.encoder.with_max_len(40);
    let outcome = pretrain_text(
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
    let err = pretrain_text(
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
        pretrain_text_on(&config(3), &data, devices, &out, RunMode::New, &mut Silent).unwrap();
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

/// Distinct sentences, so that every view has one twin in a batch.
fn distinct_corpus() -> TextDataset {
    let subjects = [
        "the cat",
        "a dog",
        "my computer",
        "the server",
        "our judge",
        "a chef",
    ];
    let verbs = ["likes", "eats", "stores", "sees", "cooks", "runs"];
    let objects = [
        "the mat",
        "fresh bread",
        "old code",
        "the law",
        "hot soup",
        "big data",
    ];
    let mut documents = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        for (j, v) in verbs.iter().enumerate() {
            documents.push(format!(
                "{s} {v} {} today",
                objects[(i + j) % objects.len()]
            ));
        }
    }
    let labels = (0..documents.len() as u32).map(|i| i % 2).collect();
    TextDataset {
        train: TextSet {
            documents,
            labels: Some(labels),
        },
        ..corpus()
    }
}

fn simcse_config(epochs: u64) -> TextPretrainConfig {
    let mut c = config(epochs);
    c.task = TextTaskKind::Simcse;
    // No dropout: it draws from the global generator, which tests running beside one another
    // share (the encoder's own tests cover it).
    c.simcse.dropout = 0.0;
    // Sentences of six words: spans of most of them (the default's short spans suit documents).
    c.simcse.views = TextViewsConfig {
        crop: [0.6, 1.0],
        deletion: 0.1,
    };
    c.simcse.temperature = 0.1;
    c.simcse.projection_dim = 16;
    c.simcse.projector_hidden = 32;
    c.loader.batch_size = 12;
    c
}

#[test]
fn simcse_learns_to_match_views_exports_its_encoder_and_resumes() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("simcse");
    let data = distinct_corpus();
    let run = |epochs: u64, mode: RunMode| {
        pretrain_text(
            &simcse_config(epochs),
            &data,
            &device,
            &out,
            mode,
            &mut Silent,
        )
        .unwrap()
        .held_out
        .unwrap()
    };
    // How often fresh views of the training sentences find their twin, by the exported
    // encoder.
    let matched = || {
        let loaded = load_text_encoder(&out, &device).unwrap();
        let sequences = encode_documents(&loaded.tokenizer, &data.train.documents, 16, false);
        let views = simcse_config(1).simcse.views.build().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let pairs: Vec<_> = sequences
            .iter()
            .map(|s| (views.view(s, &mut rng), views.view(s, &mut rng)))
            .collect();
        views_matched(
            &loaded.encoder,
            &[TextViewsBatch::from_pairs(&pairs)],
            &device,
        )
    };
    run(1, RunMode::New);
    let before = matched();
    let held_out = run(60, RunMode::Force);
    let after = matched();
    assert!(
        after > before + 0.3,
        "views matched {before} after one epoch, {after} after 60"
    );
    assert!(out.join("encoder.safetensors").exists());
    assert!(!out.join("mlm.safetensors").exists());
    let loaded = load_text_encoder(&out, &device).unwrap();
    assert_eq!(loaded.description.task, "simcse");
    assert_eq!(loaded.description.views_matched, Some(held_out));
    assert_eq!(loaded.description.masked_accuracy, None);
    assert!(load_mlm(&out, &device).is_err());
    // A finished run resumed does no more training and measures the same.
    assert_eq!(run(60, RunMode::Resume), held_out);
    assert_eq!(matched(), after);
}

/// On replicas the views' projections are gathered, so the negatives span the whole batch and
/// the model trained is one device's.
#[test]
fn replicas_pretrain_the_simcse_model_one_device_trains() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let data = distinct_corpus();
    let run = |devices: &[Device], name: &str| {
        let out = dir.path().join(name);
        pretrain_text_on(
            &simcse_config(3),
            &data,
            devices,
            &out,
            RunMode::New,
            &mut Silent,
        )
        .unwrap();
        let loaded = load_text_encoder(&out, &device).unwrap();
        let sequences = encode_documents(&loaded.tokenizer, &data.train.documents[..8], 16, false);
        let rows: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
        let t = pretext_data::text::TokenBatch::pad(&rows).into_tensors(&device);
        loaded
            .encoder
            .forward(t.tokens, t.padding)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let one = run(std::slice::from_ref(&device), "one");
    let three = run(&[device.clone(), device.clone(), device.clone()], "three");
    let worst = one
        .iter()
        .zip(&three)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "features differ by {worst}");
}

/// A contrastive run started from a masked-token run (`init_from`) takes that run's tokenizer
/// and encoder: with a vanishing learning rate its exported encoder is the masked-token one,
/// where a run from random weights is not. A run of another shape, or no finished run, is
/// refused by name.
#[test]
fn a_contrastive_run_starts_from_a_masked_token_encoder() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let data = distinct_corpus();
    let mlm = dir.path().join("mlm");
    pretrain_text(&config(3), &data, &device, &mlm, RunMode::New, &mut Silent).unwrap();
    let settings = |init: bool| {
        let mut c = simcse_config(1);
        c.optimizer.lr = 1e-9;
        // Ignored when starting from a run: that run's tokenizer is taken.
        c.tokenizer.vocab_size = 40;
        c.init_from = init.then(|| mlm.clone());
        c
    };
    let run = |c: &TextPretrainConfig, name: &str| {
        let out = dir.path().join(name);
        pretrain_text(c, &data, &device, &out, RunMode::New, &mut Silent).map(|_| out)
    };
    let states = |dir: &std::path::Path| {
        let loaded = load_text_encoder(dir, &device).unwrap();
        let sequences = encode_documents(&loaded.tokenizer, &data.train.documents, 16, false);
        let batch: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
        let t = TokenBatch::pad(&batch).into_tensors(&device);
        let pooled = loaded.encoder.forward(t.tokens, t.padding);
        (
            loaded.description,
            pooled.into_data().try_to_vec::<f32>().unwrap(),
        )
    };
    let started = run(&settings(true), "from-mlm").unwrap();
    assert_eq!(
        std::fs::read(started.join("tokenizer.json")).unwrap(),
        std::fs::read(mlm.join("tokenizer.json")).unwrap()
    );
    let (description, from_mlm) = states(&started);
    assert_eq!(
        description.initialised_from.as_deref(),
        Some(mlm.display().to_string().as_str())
    );
    let (_, original) = states(&mlm);
    let largest = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(largest(&from_mlm, &original) < 1e-4);
    let (description, random) = states(&run(&settings(false), "random").unwrap());
    assert_eq!(description.initialised_from, None);
    assert_eq!(random.len(), original.len());
    assert!(largest(&random, &original) > 0.1);

    let mut other_shape = settings(true);
    other_shape.encoder = other_shape.encoder.with_dim(16);
    let err = run(&other_shape, "other-shape").unwrap_err().to_string();
    assert!(
        err.contains("init_from") && err.contains("dim 32") && err.contains("dim 16"),
        "{err}"
    );
    let mut unfinished = settings(true);
    unfinished.init_from = Some(dir.path().join("nothing"));
    let err = run(&unfinished, "unfinished").unwrap_err().to_string();
    assert!(err.contains("nothing"), "{err}");
}

/// `simcse_from_mlm`: the study pretrains the masked-token run first, whatever the order of its
/// tasks, starts the contrastive run from it in a directory of its own, and names the result.
#[test]
fn the_study_starts_simcse_from_its_masked_token_run() {
    struct Quiet;
    impl StudyObserver for Quiet {}
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let mut data = distinct_corpus();
    let labels = data.train.labels.clone().unwrap();
    data.test = TextSet {
        documents: data.train.documents[..12].to_vec(),
        labels: Some(labels[..12].to_vec()),
    };
    let mut config = TextCompareConfig::from_toml(
        r#"
tasks = ["simcse", "mlm"]
simcse_from_mlm = true
tfidf_features = 30
fill_masks = []

[study]
budgets = ["all"]
seeds = 1
pca_components = 4
linear_iterations = 20
protocols = ["linear"]
"#,
    )
    .unwrap();
    config.pretrain = simcse_config(1);
    let out = dir.path().join("study");
    let outcome = compare_text(&config, &data, &device, &out, &mut Silent, &mut Quiet).unwrap();
    let started = load_text_encoder(&out.join("pretrain/simcse-from-mlm"), &device).unwrap();
    assert_eq!(
        started.description.initialised_from,
        Some(out.join("pretrain/mlm").display().to_string())
    );
    assert!(!out.join("pretrain/simcse").exists());
    let runs: Vec<&str> = outcome
        .pretraining
        .iter()
        .map(|p| p.task.as_str())
        .collect();
    assert_eq!(runs, ["mlm", "simcse-from-mlm"]);
    let from_mlm = |cells: &[pretext_train::study::Cell]| {
        cells
            .iter()
            .filter(|c| c.key.representation == "simcse from mlm (mean)")
            .count()
    };
    assert_eq!(from_mlm(&outcome.cells), 1);
    // The same directory studied again without the contrastive run: its cell stays in the
    // log but is not reported, and every other cell is reused as it was.
    config.tasks = vec![TextTaskKind::Mlm];
    config.simcse_from_mlm = false;
    let again = compare_text(&config, &data, &device, &out, &mut Silent, &mut Quiet).unwrap();
    assert_eq!(from_mlm(&again.cells), 0);
    assert_eq!(again.cells.len(), outcome.cells.len() - 1);
    let log = std::fs::read_to_string(out.join("cells.jsonl")).unwrap();
    assert_eq!(log.lines().count(), outcome.cells.len());
}
