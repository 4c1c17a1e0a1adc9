//! `pretext compare`: the comparison study, end to end, with its report.

use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use pretext_data::npy::write_atomic;
use pretext_train::compare::{CompareConfig, compare};
use pretext_train::study::{Cell, StudyObserver};
use serde_json::json;

use super::read_config;
use crate::cli::{CompareArgs, EvalSplitArg, Modality, PretrainTask};
use crate::commands::data::{carved_note, load};
use crate::device::{describe, guarded, resolve_all};
use crate::progress::Progress;
use crate::report::{markdown, plots};

pub struct StudyProgress {
    pub bar: Option<ProgressBar>,
    pub quiet: bool,
}

impl StudyObserver for StudyProgress {
    fn cell(&mut self, done: usize, total: usize, cell: &Cell) {
        if self.quiet {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "study [{bar:30}] {pos}/{len} cells {msg} (ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        bar.set_position(done as u64);
        bar.set_message(format!(
            "{} {} {}: {:.4}",
            cell.key.representation,
            cell.key.protocol.name(),
            cell.key.budget,
            cell.value
        ));
    }

    fn note(&mut self, message: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    if args.modality == Modality::Text {
        return super::compare_text::run(args);
    }
    let started = Instant::now();
    let mut config = read_config(args.config.as_deref(), "comparison config", |text| {
        let config = CompareConfig::from_toml(text)?;
        config.study.validate()?;
        Ok(config)
    })?;
    if args.quick {
        config = config.quick();
    }
    if let Some(tasks) = &args.tasks {
        config.tasks = PretrainTask::images(tasks)?;
    }
    if args.on == EvalSplitArg::Validation {
        anyhow::bail!(
            "the image study measures on the test split; `pretext probe --on validation` \
             measures a pretrained run on the images it held out"
        );
    }
    let (specs, devices) = resolve_all(&args.device, args.devices.as_deref())?;
    let spec = describe(&specs);
    let data = load(&args.data)?;
    if !args.quiet {
        eprintln!(
            "comparing on {} ({} training, {} test images{}) on {spec}; results in {}",
            data.name,
            data.train.len(),
            data.test.as_ref().map_or(0, |t| t.len()),
            carved_note(&data),
            args.out.display()
        );
    }
    let mut train_progress = Progress::new(args.quiet);
    let mut study_progress = StudyProgress {
        bar: None,
        quiet: args.quiet,
    };
    let outcome = guarded(&specs, &args.out.join("pretrain"), || {
        Ok(compare(
            &config,
            &data,
            &args.checkpoint,
            &devices,
            &args.out,
            &mut train_progress,
            &mut study_progress,
        )?)
    })
    .with_context(|| format!("the comparison in {} failed", args.out.display()))?;
    if let Some(bar) = study_progress.bar.take() {
        bar.finish_and_clear();
    }

    let budgets = &config.study.budgets;
    let skipped: String = outcome
        .skipped
        .iter()
        .map(|s| format!(" Skipped {}: {}.", s.task, s.reason))
        .collect();
    let pretraining = if config.tasks.is_empty() {
        "none here".to_string()
    } else {
        format!("{} epoch(s) per task", config.epochs)
    };
    let given: String = args
        .checkpoint
        .iter()
        .map(|c| format!(" Pretrained run given: {}.", c.display()))
        .collect();
    let context = format!(
        "Data: {} ({} training images, {} test images{}, {} classes). {} seed(s); label subsets \
         drawn per seed from the training set less a stratified {:.0}% validation split, which \
         tunes the linear probe. Pretraining: {pretraining}.{given}{skipped} Device: {spec}. \
         Wall time: {:.0} s.",
        data.name,
        data.train.len(),
        data.test.as_ref().map_or(0, |t| t.len()),
        carved_note(&data),
        data.num_classes(),
        config.study.seeds,
        config.study.validation_fraction * 100.0,
        started.elapsed().as_secs_f64()
    );
    let test_labels = data
        .test
        .as_ref()
        .and_then(|t| t.labels.as_deref())
        .unwrap_or_default();
    let report = markdown::render(
        "pretext compare",
        &context,
        budgets,
        &outcome.summaries,
        &outcome.pretraining,
        &markdown::IMAGE_TERMS,
        &markdown::Chance::of(test_labels, &data.classes),
    );
    // "All labels" sits on the curves' x axis at the mean labelled images per class.
    let all_per_class = data.train.len() as f64 * (1.0 - config.study.validation_fraction)
        / data.num_classes().max(1) as f64;
    let figures = [
        (
            "label_efficiency",
            plots::label_efficiency(&outcome.summaries, all_per_class)?,
        ),
        ("pretraining", plots::pretraining(&outcome.pretraining)?),
        (
            "embeddings",
            plots::embeddings(&outcome.projections, &data.classes)?,
        ),
    ];
    let results = json!({
        "data": data.name,
        "versions": { "pretext": env!("CARGO_PKG_VERSION"), "burn": "0.22.1" },
        "device": spec.to_string(),
        "pretraining": outcome.pretraining,
        "config": config,
        "summaries": outcome.summaries,
        "cells": outcome.cells,
    });
    write_outputs(&args.out, &report, &results, &figures)
}

/// Writes the report, `results.json` and the figures into `out`, and prints the report.
pub fn write_outputs(
    out: &std::path::Path,
    report: &str,
    results: &serde_json::Value,
    figures: &[(&str, plots::Figure)],
) -> anyhow::Result<()> {
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        write_atomic(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    write("report.md", report.as_bytes())?;
    write(
        "results.json",
        serde_json::to_string_pretty(results)?.as_bytes(),
    )?;
    for (name, figure) in figures {
        write(&format!("{name}.svg"), figure.svg.as_bytes())?;
        write(&format!("{name}.png"), &figure.png)?;
    }
    print!("{report}");
    println!(
        "\nwrote {}, results.json and the figures {}",
        out.join("report.md").display(),
        figures
            .iter()
            .map(|(name, _)| format!("{name}.png/.svg"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
