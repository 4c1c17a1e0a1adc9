//! `pretext embed`: a pretrained encoder's representations of a split, for other tools.

use anyhow::Context;
use pretext_data::npy::write_npy;
use pretext_train::embed::embed;
use pretext_train::export::load_encoder_for;

use crate::cli::{EmbedArgs, SplitArg};
use crate::commands::data::load;
use crate::device::resolve;

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let (_, device) = resolve(args.device.device)?;
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
    if let Some(labels) = &set.labels {
        let stem = args
            .out
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("embeddings");
        let path = args.out.with_file_name(format!("{stem}-labels.npy"));
        write_npy(&path, labels, &[labels.len()])
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
