//! Every file in configs/ is valid: each task's pretraining config builds its model for the
//! embedded data, compare.toml is the study's defaults spelled out, and compare-full.toml is a
//! valid study.

use burn::tensor::Device;
use pretext_data::DataSource;
use pretext_data::tasks::AnyTask;
use pretext_train::PretrainConfig;
use pretext_train::compare::CompareConfig;
use pretext_train::model::build_model;
use pretext_train::text::{TextCompareConfig, TextPretrainConfig, TextTaskKind};

#[test]
fn every_shipped_config_builds_its_model_for_the_embedded_data() {
    let data = DataSource::EmbeddedFashionMnist.load().unwrap();
    let shape = data.train.shape;
    let device = Device::flex().autodiff();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        if stem == "compare-text" {
            let text_config = TextCompareConfig::from_toml(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                text_config,
                TextCompareConfig::default(),
                "compare-text.toml spells out the defaults"
            );
            continue;
        }
        if stem == "mlm" {
            let mlm = TextPretrainConfig::from_toml(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                mlm,
                TextPretrainConfig::default(),
                "mlm.toml spells out the defaults"
            );
            continue;
        }
        if stem == "simcse" {
            let simcse = TextPretrainConfig::from_toml(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            simcse.validate().unwrap();
            assert_eq!(
                simcse,
                TextPretrainConfig {
                    task: TextTaskKind::Simcse,
                    ..TextPretrainConfig::default()
                },
                "simcse.toml spells out the defaults with task = \"simcse\""
            );
            continue;
        }
        if stem.starts_with("compare") {
            let compare = CompareConfig::from_toml(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            compare.study.validate().unwrap();
            if stem == "compare" {
                let defaults = CompareConfig::default();
                assert_eq!(compare, defaults, "compare.toml spells out the defaults");
            }
            if stem == "compare-full" {
                assert_eq!(
                    compare.pretrain_images, None,
                    "the full study pretrains on all"
                );
            }
            continue;
        }
        let config =
            PretrainConfig::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        config.validate().unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        // Recipes are named for what they are for; every other file for its task.
        if name != "fashion-mnist-30min" {
            assert_eq!(
                config.task.kind().name(),
                name,
                "{name}: the file is named for its task"
            );
        }
        let task = AnyTask::build(&config.task, shape).unwrap();
        let encoder = config.resolved_encoder(shape);
        build_model(&task, &encoder, &config.heads, data.num_classes(), &device)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The resolved config round-trips through TOML, as it is saved with each run.
        let again = PretrainConfig::from_toml(&config.to_toml()).unwrap();
        assert_eq!(again, config, "{name}");
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "autoencoder",
            "barlow-twins",
            "byol",
            "denoise",
            "fashion-mnist-30min",
            "jigsaw",
            "mae",
            "moco-v3",
            "rotation",
            "simclr",
            "vicreg"
        ]
    );
}
