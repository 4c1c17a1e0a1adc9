//! Text in the same harness as images: masked-token pretraining ([`pretrain`]) and the text
//! comparison study.

pub mod pretrain;
pub mod study;
mod tfidf;

pub use pretrain::{
    LoadedMlm, MlmOutcome, MlmPretrainConfig, TextEncoderDescription, fill_mask, load_mlm,
    masked_accuracy, pretrain_mlm, pretrain_mlm_on,
};
pub use study::{FilledMask, TextCompareConfig, TextCompareOutcome, compare_text};
pub use tfidf::TfIdf;
