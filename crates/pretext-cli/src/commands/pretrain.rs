//! `pretext pretrain`: train an encoder on a pretext task.

use anyhow::Context;
use pretext_data::tasks::TaskConfig;
use pretext_models::encoders::EncoderConfig;
use pretext_train::{PretrainConfig, RunMode, pretrain_on};

use pretext_train::text::{TextPretrainConfig, TextTaskKind, pretrain_text_on};

use super::read_config;
use crate::cli::{PretrainArgs, PretrainTask};
use crate::commands::data::{load, load_text};
use crate::device::{describe, guarded, resolve_all};
use crate::progress::Progress;

pub fn run(args: PretrainArgs) -> anyhow::Result<()> {
    if let Some(PretrainTask::Text(task)) = args.task {
        return run_text(&args, task);
    }
    if args.init_from.is_some() {
        anyhow::bail!(
            "--init-from starts a text task (mlm, simcse) from a text run; image pretraining \
             starts from random weights"
        );
    }
    let config = resolve_config(&args)?;
    let (specs, devices) = resolve_all(&args.device, args.devices.as_deref())?;
    let spec = describe(&specs);
    let data = load(&args.data)?;
    let mode = mode(&args);
    let mut progress = Progress::new(args.quiet);
    if !args.quiet {
        eprintln!(
            "pretraining {} on {} ({} training images{}) with the {} encoder on {spec}, {} epochs",
            config.task.kind(),
            data.name,
            data.train.len(),
            crate::commands::data::carved_note(&data),
            config.resolved_encoder(data.train.shape).kind(),
            config.epochs
        );
    }
    let checkpoints = args.out.join("checkpoints");
    let outcome = guarded(&specs, &checkpoints, || {
        Ok(pretrain_on(
            &config,
            &data,
            &devices,
            &args.out,
            mode,
            &mut progress,
        )?)
    })
    .with_context(|| format!("pretraining into {} failed", args.out.display()))?;
    println!("run directory  {}", outcome.run_dir.display());
    println!(
        "encoder        {} parameters, {:.1} MFLOPs per image",
        outcome.encoder_params,
        outcome.encoder_flops_per_image as f64 / 1e6
    );
    println!("representation {}", outcome.representation);
    if let Some(acc) = outcome.knn_accuracy {
        println!("kNN accuracy   {acc:.4} (held-out validation split)");
    }
    println!(
        "exported       {}",
        outcome
            .run_dir
            .join(pretext_train::export::WEIGHTS)
            .display()
    );
    Ok(())
}

fn mode(args: &PretrainArgs) -> RunMode {
    if args.resume {
        RunMode::Resume
    } else if args.force {
        RunMode::Force
    } else {
        RunMode::New
    }
}

/// Pretraining on text, by `task`.
fn run_text(args: &PretrainArgs, task: TextTaskKind) -> anyhow::Result<()> {
    let mut config = read_config(
        args.config.as_deref(),
        "text pretraining config",
        TextPretrainConfig::from_toml,
    )?;
    config.task = task;
    if let Some(dir) = &args.init_from {
        config.init_from = Some(dir.clone());
    }
    if args.encoder.is_some() {
        anyhow::bail!(
            "--encoder names an image encoder; {} trains the text Transformer",
            task.name()
        );
    }
    apply_flags(
        args,
        &mut config.epochs,
        &mut config.loader.batch_size,
        &mut config.optimizer.lr,
        &mut config.seed,
    );
    config.validate()?;
    let (specs, devices) = resolve_all(&args.device, args.devices.as_deref())?;
    let spec = describe(&specs);
    let data = load_text(&args.data, &args.text)?;
    let mut progress = Progress::new(args.quiet).for_text(task.monitor());
    if !args.quiet {
        eprintln!(
            "pretraining {} on {} ({} labelled training documents, {} unlabelled) on {spec}, \
             {} epochs",
            task.name(),
            data.name,
            data.train.len(),
            data.unlabelled.len(),
            config.epochs
        );
    }
    let checkpoints = args.out.join("checkpoints");
    let outcome = guarded(&specs, &checkpoints, || {
        Ok(pretrain_text_on(
            &config,
            &data,
            &devices,
            &args.out,
            mode(args),
            &mut progress,
        )?)
    })
    .with_context(|| format!("pretraining into {} failed", args.out.display()))?;
    println!("run directory  {}", outcome.run_dir.display());
    println!(
        "corpus         {} sequences, {} tokens, vocabulary of {}",
        outcome.sequences, outcome.tokens, outcome.vocab_size
    );
    println!("encoder        {} parameters", outcome.encoder_params);
    match (task, outcome.held_out) {
        (TextTaskKind::Mlm, Some(acc)) => {
            println!("masked tokens  {acc:.4} predicted exactly (held-out sequences)")
        }
        (TextTaskKind::Simcse, Some(acc)) => println!(
            "views matched  {acc:.4} found their twin among up to 128 (held-out sequences)"
        ),
        _ => {}
    }
    Ok(())
}

/// The flags every pretraining config takes, over the config's values.
fn apply_flags(
    args: &PretrainArgs,
    epochs: &mut u64,
    batch_size: &mut usize,
    lr: &mut f64,
    seed: &mut u64,
) {
    *epochs = args.epochs.unwrap_or(*epochs);
    *batch_size = args.batch_size.unwrap_or(*batch_size);
    *lr = args.lr.unwrap_or(*lr);
    *seed = args.seed.unwrap_or(*seed);
}

/// The config file (if any), then the flags on top.
fn resolve_config(args: &PretrainArgs) -> anyhow::Result<PretrainConfig> {
    let mut config = read_config(
        args.config.as_deref(),
        "pretraining config",
        PretrainConfig::from_toml,
    )?;
    if let Some(PretrainTask::Image(task)) = args.task
        && task != config.task.kind()
    {
        config.task = TaskConfig::default_for(task);
    }
    if let Some(kind) = args.encoder
        && config.encoder.as_ref().is_none_or(|e| e.kind() != kind)
    {
        config.encoder = Some(EncoderConfig::default_for(kind));
    }
    apply_flags(
        args,
        &mut config.epochs,
        &mut config.loader.batch_size,
        &mut config.optimizer.lr,
        &mut config.seed,
    );
    config.validate()?;
    Ok(config)
}
