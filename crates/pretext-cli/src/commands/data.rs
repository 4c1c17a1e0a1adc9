//! `pretext data …`: inspect data sets.

use std::path::Path;

use anyhow::{Context, bail};
use pretext_data::tasks::TaskConfig;
use pretext_data::{DataSource, DatasetSummary, TaskKind};
use serde::Deserialize;

use crate::cli::{DataArgs, DataCommand, DataInfoArgs, DataPreviewArgs};

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Info(args) => info(args),
        DataCommand::Preview(args) => preview(args),
    }
}

fn preview(args: DataPreviewArgs) -> anyhow::Result<()> {
    let task = match &args.config {
        Some(path) => task_from_file(path, args.task)?,
        None => TaskConfig::default_for(args.task),
    };
    let ds = load(&args.data)?;
    let preview = pretext_data::preview::render(
        &task,
        &ds.train,
        &ds.normalization(),
        args.samples,
        args.scale,
        args.seed,
    )
    .with_context(|| format!("cannot preview the {} task on {}", args.task, ds.name))?;
    preview.write_png(&args.out)?;
    println!("wrote {}", args.out.display());
    println!("{}", preview.legend);
    Ok(())
}

/// The `[task]` table of a TOML config file, checked against the task named on the command line.
pub fn task_from_file(path: &Path, kind: TaskKind) -> anyhow::Result<TaskConfig> {
    #[derive(Deserialize)]
    struct File {
        task: Option<TaskConfig>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: File =
        toml::from_str(&text).with_context(|| format!("{}: not a valid config", path.display()))?;
    let task = file.task.unwrap_or_else(|| TaskConfig::default_for(kind));
    if task.kind() != kind {
        bail!(
            "{}: its [task] is {} but --task is {kind}",
            path.display(),
            task.kind()
        );
    }
    Ok(task)
}

/// Loads the data named by `--data`, with the argument in the error's context.
pub fn load(args: &DataArgs) -> anyhow::Result<pretext_data::ImageDataset> {
    DataSource::parse(&args.data)
        .and_then(|source| source.with_image_size(args.image_size).load())
        .and_then(|data| data.with_test_split(args.test_fraction))
        .with_context(|| format!("cannot load --data {}", args.data))
}

/// "(a stratified 20% of the training images, as the data has no test split)" when the test
/// split was carved; empty otherwise.
pub fn carved_note(data: &pretext_data::ImageDataset) -> String {
    data.carved_test
        .map(|f| {
            format!(
                " (the test split is a stratified {:.0}% of the training images, as the data \
                 has none; --test-fraction sets it)",
                f * 100.0
            )
        })
        .unwrap_or_default()
}

/// Labelled text for `--data`: `fortunes` (also what the image default means for text) or a
/// directory with one file or sub-directory per class.
pub fn load_text(
    data: &crate::cli::DataArgs,
    text: &crate::cli::TextArgs,
) -> anyhow::Result<pretext_data::text::TextDataset> {
    let (data, test_fraction) = (data.data.as_str(), data.test_fraction);
    let spec = if data == pretext_data::embedded::EMBEDDED_NAMES[0] {
        "fortunes"
    } else {
        data
    };
    let data = pretext_data::text::TextSource::parse(spec, text.classes.clone())
        .and_then(|source| source.load_split(text.options(), test_fraction))
        .with_context(|| format!("cannot load text --data {spec}"))?;
    if data.skipped > 0 {
        eprintln!(
            "skipped {} documents that are not valid UTF-8",
            data.skipped
        );
    }
    Ok(data)
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
    if let Some(f) = s.carved_test {
        let _ = writeln!(
            out,
            "test split   a stratified {:.0}% of the training images, held out because the data \
             has no test split (--test-fraction)",
            f * 100.0
        );
    }
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
