//! `pretext probe`: one protocol, one label budget, several seeds, for one pretrained encoder.

use anyhow::Context;
use pretext_train::export::load_encoder_for;
use pretext_train::study::{
    Protocol, Representation, StudyConfig, StudyObserver, run_study, summarize,
};

use crate::cli::{ProbeArgs, ProtocolArg};
use crate::commands::data::load;
use crate::device::resolve;

struct Quiet;

impl StudyObserver for Quiet {}

pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let (_, device) = resolve(args.device.device)?;
    let data = load(&args.data)?;
    let (encoder, description) = load_encoder_for(&args.checkpoint, data.train.shape, &device)
        .with_context(|| format!("cannot load the encoder of {}", args.checkpoint.display()))?;
    let protocol = match args.protocol {
        ProtocolArg::Linear => Protocol::Linear,
        ProtocolArg::Knn => Protocol::Knn,
        ProtocolArg::Finetune => Protocol::Finetune,
        ProtocolArg::Cluster => Protocol::Cluster,
    };
    let config = StudyConfig {
        budgets: vec![args.labels_per_class],
        seeds: args.seeds,
        protocols: vec![protocol],
        ..StudyConfig::default()
    };
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
        &args.checkpoint.join("probes.jsonl"),
        &mut Quiet,
    )
    .with_context(|| format!("probing {} failed", args.checkpoint.display()))?;
    let wanted: &[Protocol] = if protocol == Protocol::Cluster {
        &[
            Protocol::Cluster,
            Protocol::ClusterNmi,
            Protocol::ClusterAri,
        ]
    } else {
        &[protocol]
    };
    // The cache may hold other seeds and budgets from earlier probes.
    let cells: Vec<_> = cells
        .into_iter()
        .filter(|c| c.key.seed < args.seeds && c.key.representation == name)
        .collect();
    for s in summarize(&cells) {
        let budget_matches = protocol == Protocol::Cluster || s.budget == args.labels_per_class;
        if wanted.contains(&s.protocol) && budget_matches {
            println!(
                "{name}  {}  {} labels per class  {:.4} ± {:.4} ({} seeds, test split of {})",
                s.protocol.name(),
                s.budget,
                s.mean,
                s.std,
                s.seeds,
                data.name
            );
        }
    }
    Ok(())
}
