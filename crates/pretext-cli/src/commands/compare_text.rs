//! `pretext compare --modality text`: pretraining by masked tokens or contrastive views against
//! TF-IDF and a Transformer trained from scratch, with the image study's protocols, report, JSON
//! and figures.

use std::fmt::Write;
use std::time::Instant;

use anyhow::Context;
use pretext_train::text::{TextCompareConfig, TextTaskKind, compare_text};
use serde_json::json;

use super::compare::{StudyProgress, write_outputs};
use super::read_config;
use crate::cli::{CompareArgs, EvalSplitArg, PretrainTask};
use crate::commands::data::load_text;
use crate::device::resolve;
use crate::progress::Progress;
use crate::report::{markdown, plots};

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if !args.checkpoint.is_empty() {
        anyhow::bail!("--checkpoint evaluates image encoders; it does not apply to text");
    }
    let mut config = read_config(args.config.as_deref(), "text comparison config", |text| {
        let config = TextCompareConfig::from_toml(text)?;
        config.validate()?;
        Ok(config)
    })?;
    if args.quick {
        config = config.quick();
    }
    if let Some(tasks) = &args.tasks {
        config.tasks = PretrainTask::texts(tasks)?;
        config.validate()?;
    }
    if args.devices.is_some() {
        anyhow::bail!(
            "the text study runs on one device; `pretrain --task mlm --devices` pretrains its \
             encoder on several"
        );
    }
    let (spec, device) = resolve(&args.device)?;
    let mut data = load_text(&args.data, &args.text)?;
    if args.on == EvalSplitArg::Validation {
        data = data.validation()?;
    }
    if !args.quiet {
        eprintln!(
            "comparing on {} ({} training, {} test documents, {} unlabelled) on {spec}; results in {}",
            data.name,
            data.train.len(),
            data.test.len(),
            data.unlabelled.len(),
            args.out.display()
        );
    }
    let monitor = match config.tasks.as_slice() {
        [only] => only.monitor(),
        _ => "held-out measure",
    };
    let mut train_progress = Progress::new(args.quiet).for_text(monitor);
    let mut study_progress = StudyProgress {
        bar: None,
        quiet: args.quiet,
    };
    let outcome = compare_text(
        &config,
        &data,
        &device,
        &args.out,
        &mut train_progress,
        &mut study_progress,
    )
    .with_context(|| format!("the text comparison in {} failed", args.out.display()))?;
    if let Some(bar) = study_progress.bar.take() {
        bar.finish_and_clear();
    }

    let budgets = &config.study.budgets;
    let chance = markdown::Chance::of(
        data.test.labels.as_deref().unwrap_or_default(),
        &data.classes,
    );
    let context = format!(
        "Data: {} ({} training and {} test documents in {} classes: {}; {} unlabelled \
         documents). Pretraining: {} on the training and unlabelled text for {} epoch(s), a \
         vocabulary of {} tokens. {} seed(s); label subsets drawn per seed from the training \
         set less a stratified {:.0}% validation split. Device: {spec}. Wall time: {:.0} s.",
        data.name,
        data.train.len(),
        data.test.len(),
        data.num_classes(),
        data.classes.join(", "),
        data.unlabelled.len(),
        config
            .tasks
            .iter()
            .map(|t| match t {
                TextTaskKind::Mlm => "masked tokens (mlm: BERT's 15%, 80/10/10)",
                TextTaskKind::Simcse if config.simcse_starts_from_mlm() =>
                    "contrastive views (simcse: dropout, crops and deletions, NT-Xent) started \
                     from the masked-token encoder",
                TextTaskKind::Simcse =>
                    "contrastive views (simcse: dropout, crops and deletions, NT-Xent)",
            })
            .collect::<Vec<_>>()
            .join(" and "),
        config.pretrain.epochs,
        outcome.vocab_size,
        config.study.seeds,
        config.study.validation_fraction * 100.0,
        started.elapsed().as_secs_f64()
    );
    let pretraining = outcome.pretraining.clone();
    let mut report = markdown::render(
        "pretext compare --modality text",
        &context,
        budgets,
        &outcome.summaries,
        &pretraining,
        &markdown::TEXT_TERMS,
        &chance,
    );
    if let Some(acc) = outcome.views_matched {
        let _ = writeln!(
            report,
            "\nHeld-out views matched by the simcse encoder: {acc:.4} (the share of views whose \
             most similar other view, among up to 128, is their twin)."
        );
    }
    if !outcome.filled.is_empty() {
        let _ = writeln!(report, "\n## What the pretrained model fills in\n");
    }
    if let Some(acc) = outcome.masked_accuracy {
        let _ = writeln!(
            report,
            "Held-out masked-token accuracy (top-1): {acc:.4}. The five likeliest tokens for \
             each `[MASK]`:\n"
        );
    }
    for filled in &outcome.filled {
        let guesses: Vec<String> = filled
            .top
            .iter()
            .map(|top| {
                top.iter()
                    .map(|(token, p)| format!("{token} ({p:.2})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        let _ = writeln!(report, "- `{}` → {}", filled.text, guesses.join(" | "));
    }
    let all_per_class = data.train.len() as f64 * (1.0 - config.study.validation_fraction)
        / data.num_classes().max(1) as f64;
    let figures = [
        (
            "label_efficiency",
            plots::label_efficiency(&outcome.summaries, all_per_class)?,
        ),
        ("pretraining", plots::pretraining(&pretraining)?),
        (
            "embeddings",
            plots::embeddings(&outcome.projections, &data.classes)?,
        ),
    ];
    let results = json!({
        "data": data.name,
        "classes": data.classes,
        "versions": { "pretext": env!("CARGO_PKG_VERSION"), "burn": "0.22.1" },
        "device": spec.to_string(),
        "pretraining": outcome.pretraining,
        "masked_accuracy": outcome.masked_accuracy,
        "views_matched": outcome.views_matched,
        "filled_masks": outcome.filled,
        "config": config,
        "summaries": outcome.summaries,
        "cells": outcome.cells,
    });
    write_outputs(&args.out, &report, &results, &figures)
}
