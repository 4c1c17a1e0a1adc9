//! `pretext probe`: one protocol, one label budget, several seeds, for one pretrained encoder.

use anyhow::Context;
use pretext_train::compare::CompareConfig;
use pretext_train::export::load_encoder_for;
use pretext_train::pretrain::held_out_dataset;
use pretext_train::study::{
    Protocol, Representation, StudyConfig, StudyObserver, run_study, summarize,
};

use crate::cli::{EvalSplitArg, ProbeArgs, ProtocolArg};
use crate::commands::data::load;
use crate::device::resolve;

struct Quiet;

impl StudyObserver for Quiet {}

pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let (_, device) = resolve(&args.device)?;
    let mut data = load(&args.data)?;
    // Each split keeps its own cache of cells.
    let mut cache = args.checkpoint.join("probes.jsonl");
    if args.on == EvalSplitArg::Validation {
        data = held_out_dataset(&args.checkpoint, &data)?;
        cache = args.checkpoint.join("probes-validation.jsonl");
    }
    let (encoder, description) = load_encoder_for(&args.checkpoint, data.train.shape, &device)
        .with_context(|| format!("cannot load the encoder of {}", args.checkpoint.display()))?;
    let protocol = match args.protocol {
        ProtocolArg::Linear => Protocol::Linear,
        ProtocolArg::Knn => Protocol::Knn,
        ProtocolArg::Propagation => Protocol::Propagation,
        ProtocolArg::Finetune => Protocol::Finetune,
        ProtocolArg::Supervised => Protocol::Supervised,
        ProtocolArg::SelfTraining => Protocol::SelfTraining,
        ProtocolArg::Cluster => Protocol::Cluster,
        ProtocolArg::Gmm => Protocol::Gmm,
        ProtocolArg::Scan => Protocol::Scan,
    };
    let settings = match &args.settings {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            CompareConfig::from_toml(&text)
                .map(|c| c.study)
                .and_then(|study| study.validate().map(|()| study))
                .with_context(|| format!("{} is not a valid settings file", path.display()))?
        }
        None => StudyConfig::default(),
    };
    // The flags choose what runs: a settings file's limits of the training protocols' budgets
    // and of SCAN's representations (a study's) give way to them.
    let mut config = StudyConfig {
        budgets: vec![args.labels_per_class],
        seeds: args.seeds,
        protocols: vec![protocol],
        train_budgets: None,
        ..settings
    };
    config.scan.representations = None;
    config.validate()?;
    let stem = cache
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("probes");
    cache = cache.with_file_name(format!("{stem}-{}.jsonl", settings_digest(&config)));
    let name = description.task.name().to_string();
    let representation = Representation::Encoder {
        name: name.clone(),
        encoder: Box::new(encoder),
        pretrained: true,
    };
    let cells = run_study(
        &config,
        &data,
        &[representation],
        &device,
        &cache,
        &mut Quiet,
    )
    .with_context(|| format!("probing {} failed", args.checkpoint.display()))?;
    let wanted = protocol.with_parts();
    // The cache may hold other seeds and budgets from earlier probes. The supervised baseline's
    // cells are its own representation's, not the encoder's.
    let cells: Vec<_> = cells
        .into_iter()
        .filter(|c| {
            c.key.seed < args.seeds
                && (c.key.representation == name || c.key.protocol == Protocol::Supervised)
        })
        .collect();
    for s in summarize(&cells) {
        let budget_matches = protocol.is_label_free() || s.budget == args.labels_per_class;
        if wanted.contains(&s.protocol) && budget_matches {
            let fair = match (s.balanced_accuracy, s.macro_f1) {
                (Some([b, bs]), Some([f, fs])) => {
                    format!("  balanced {b:.4} ± {bs:.4}  macro-F1 {f:.4} ± {fs:.4}")
                }
                _ => String::new(),
            };
            println!(
                "{}  {}  {} labels per class  {:.4} ± {:.4}{fair} ({} seeds, {} split of {})",
                s.representation,
                s.protocol.name(),
                s.budget,
                s.mean,
                s.std,
                s.seeds,
                match args.on {
                    EvalSplitArg::Test => "test",
                    EvalSplitArg::Validation => "validation",
                },
                data.name
            );
        }
    }
    Ok(())
}

/// A digest of the protocols' settings (the flags' budgets, seeds and protocols aside), which
/// names the cache: cells measured under other settings, or under earlier defaults, are never
/// taken for these.
fn settings_digest(config: &StudyConfig) -> String {
    let defaults = StudyConfig::default();
    let comparable = StudyConfig {
        budgets: defaults.budgets,
        seeds: defaults.seeds,
        protocols: defaults.protocols,
        ..config.clone()
    };
    let text = toml::to_string(&comparable).unwrap_or_default();
    format!("{:08x}", crc32fast::hash(text.as_bytes()))
}
