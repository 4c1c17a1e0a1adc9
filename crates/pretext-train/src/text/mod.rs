//! Text in the same harness as images: pretraining by masked tokens or contrastive views
//! ([`pretrain`]) and the text comparison study.

pub mod pretrain;
pub mod study;
mod tfidf;

pub use pretrain::{
    LoadedMlm, LoadedTextEncoder, SimcseConfig, TextEncoderDescription, TextPretrainConfig,
    TextPretrainOutcome, TextTaskKind, fill_mask, load_mlm, load_text_encoder, masked_accuracy,
    pretrain_text, pretrain_text_on, views_matched,
};
pub use study::{FilledMask, TextCompareConfig, TextCompareOutcome, compare_text};
pub use tfidf::TfIdf;
