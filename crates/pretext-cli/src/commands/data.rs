//! `pretext data …`: inspect data sets.

use anyhow::Context;
use pretext_data::{DataSource, DatasetSummary};

use crate::cli::{DataArgs, DataCommand, DataInfoArgs};

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Info(args) => info(args),
    }
}

/// Loads the data named by `--data`, with the argument in the error's context.
pub fn load(args: &DataArgs) -> anyhow::Result<pretext_data::ImageDataset> {
    DataSource::parse(&args.data)
        .and_then(|source| source.load())
        .with_context(|| format!("cannot load --data {}", args.data))
}

fn info(args: DataInfoArgs) -> anyhow::Result<()> {
    let summary = load(&args.data)?.summary();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render(&summary));
    }
    Ok(())
}

/// The human-readable table of `data info`.
pub fn render(s: &DatasetSummary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let total: usize = s.splits.iter().map(|sp| sp.images).sum();
    let _ = writeln!(out, "data set     {}", s.name);
    let _ = writeln!(
        out,
        "images       {total} ({})",
        s.splits
            .iter()
            .map(|sp| format!("{} {}", sp.images, sp.split))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out, "image shape  {} (channels x height x width)", s.shape);
    let stats = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "pixels       mean {}, std {} (training split, scaled to [0, 1])",
        stats(&s.pixel_mean),
        stats(&s.pixel_std)
    );
    if s.classes.is_empty() {
        let _ = writeln!(out, "classes      none (unlabelled)");
        return out;
    }
    let _ = writeln!(out, "classes      {}", s.classes.len());
    let name_width = s.classes.iter().map(|c| c.len()).max().unwrap_or(5).max(5);
    let _ = write!(out, "  {:>5}  {:<name_width$}", "label", "class");
    for sp in &s.splits {
        let _ = write!(out, "  {:>7}", sp.split);
    }
    out.push('\n');
    for (label, name) in s.classes.iter().enumerate() {
        let _ = write!(out, "  {label:>5}  {name:<name_width$}");
        for sp in &s.splits {
            match sp.per_class.get(label) {
                Some(n) if sp.labelled => {
                    let _ = write!(out, "  {n:>7}");
                }
                _ => {
                    let _ = write!(out, "  {:>7}", "-");
                }
            }
        }
        out.push('\n');
    }
    out
}
