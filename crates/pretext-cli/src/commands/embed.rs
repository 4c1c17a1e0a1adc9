//! `pretext embed`: a pretrained encoder's representations of a split, for other tools.

use anyhow::Context;
use burn::tensor::{Tensor, TensorData};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pretext_baselines::TsneConfig;
use pretext_data::npy::write_npy;
use pretext_train::embed::embed;
use pretext_train::export::load_encoder_for;

use crate::cli::{EmbedArgs, SplitArg};
use crate::commands::data::load;
use crate::device::resolve;

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let (_, device) = resolve(&args.device)?;
    let data = load(&args.data)?;
    let set = match args.split {
        SplitArg::Train => &data.train,
        SplitArg::Test => data
            .test
            .as_ref()
            .with_context(|| format!("{} has no test split", data.name))?,
    };
    let (encoder, description) = load_encoder_for(&args.checkpoint, set.shape, &device)
        .with_context(|| format!("cannot load the encoder of {}", args.checkpoint.display()))?;
    let indices: Vec<usize> = (0..set.len()).collect();
    // The encoder's own normalisation: the statistics of the data it was trained on.
    let (features, dim) = embed(
        &encoder,
        set,
        &indices,
        &description.normalization,
        &device,
        512,
    );
    write_npy(&args.out, &features, &[set.len(), dim])
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("wrote {} ({} x {dim})", args.out.display(), set.len());
    let stem = args
        .out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("embeddings");
    if let Some(labels) = &set.labels {
        let path = args.out.with_file_name(format!("{stem}-labels.npy"));
        write_npy(&path, labels, &[labels.len()])
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if args.tsne {
        let path = args.out.with_file_name(format!("{stem}-tsne.npy"));
        let x = Tensor::<2>::from_data(TensorData::new(features, [set.len(), dim]), &device);
        let map = tsne_map(&x, args.perplexity)?;
        write_npy(&path, &map, &[set.len(), 2])
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {} (t-SNE, {} x 2)", path.display(), set.len());
    }
    Ok(())
}

/// The t-SNE map of `x`'s rows, with a progress bar.
fn tsne_map(x: &Tensor<2>, perplexity: f32) -> anyhow::Result<Vec<f32>> {
    let [n, _] = x.dims();
    let config = TsneConfig::default().perplexity(perplexity).fitted_to(n);
    if config.perplexity < perplexity {
        eprintln!(
            "note: perplexity lowered to {} for {n} points",
            config.perplexity
        );
    }
    let bar =
        ProgressBar::with_draw_target(Some(config.max_iter as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("t-SNE [{bar:30}] {pos}/{len} iterations (ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let progress = bar.clone();
    let map = config
        .fit_observed(x, &mut move |i| progress.set_position(i as u64))
        .context("t-SNE failed")?;
    bar.finish_and_clear();
    Ok(map.embedding)
}
