//! Text for pretext: corpora from plain files, tokenizers trained on them, masked-token
//! prediction, contrastive views and the text loader.
//!
//! A labelled text data set is a directory with one file (or sub-directory) per class. Text has
//! no conventional test split, so a stratified, seeded one is carved out of the labelled
//! documents; every other document (the train split and any unlabelled files) is pretraining
//! text.

#[cfg(feature = "tensors")]
mod batch;
mod corpus;
mod masking;
mod tokenizer;
#[cfg(feature = "tensors")]
mod views;
mod wordpiece;

use std::path::{Path, PathBuf};

#[cfg(feature = "tensors")]
pub use batch::{
    MlmBatch, MlmTensors, TextClassBatch, TextClassTensors, TextLoader, TextTask, TokenBatch,
    TokenTensors, encode_documents,
};
pub use corpus::{
    Documents, LabelledCorpus, ReadOptions, TextFormat, TextSet, read_documents, read_labelled_dir,
    read_tree, split_documents,
};
pub use masking::{MaskedSequence, MlmConfig, MlmMasking};
pub use tokenizer::{FIRST_ORDINARY_ID, Special, TextTokenizer, TokenizerConfig, TokenizerKind};
#[cfg(feature = "tensors")]
pub use views::{TextViews, TextViewsBatch, TextViewsConfig, TextViewsTensors};

use crate::error::{DataError, Result};
use crate::split::validation_split;

/// Where Debian's `fortunes` package puts its fortune files.
pub const FORTUNES_DIR: &str = "/usr/share/games/fortunes";

/// The default labelled task on the fortunes: topical categories (the vocabulary tells them
/// apart, unlike stylistic ones such as `wisdom` or `platitudes`), each with at least 198
/// fortunes so that 100 labels per class fit beside the test and validation splits.
pub const FORTUNE_CATEGORIES: [&str; 8] = [
    "computers",
    "science",
    "politics",
    "law",
    "food",
    "drugs",
    "education",
    "startrek",
];

/// The share of each class held out for testing by default.
pub const TEST_FRACTION: f64 = 0.2;
/// Salt of the test split, apart from every other seeded choice.
const TEST_SALT: u64 = 0x7465_7874_5f74_6573;
/// The share of each class's training documents [`TextDataset::validation`] holds out.
pub const VALIDATION_FRACTION: f64 = 0.2;
const VALIDATION_SALT: u64 = 0x7465_7874_5f76_616c;

/// A labelled text data set with its test split and the unlabelled text beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct TextDataset {
    pub name: String,
    pub classes: Vec<String>,
    pub train: TextSet,
    pub test: TextSet,
    /// Documents with no class (files that are not classes); pretraining text only.
    pub unlabelled: Vec<String>,
    /// Documents skipped for invalid UTF-8 (`lossy` reading).
    pub skipped: usize,
}

impl TextDataset {
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The text pretraining may see: the training split and the unlabelled documents, never
    /// the test split.
    pub fn pretraining_documents(&self) -> Vec<String> {
        self.train
            .documents
            .iter()
            .chain(&self.unlabelled)
            .cloned()
            .collect()
    }

    /// The data set on which settings are chosen: a stratified, seeded
    /// [`VALIDATION_FRACTION`] of each class's training documents stands in for the test
    /// split and the rest are the training split. The real test split is left out, so neither
    /// the measurements nor the pretraining made on this set see it, and the validation
    /// documents are kept out of its pretraining text as test documents are.
    pub fn validation(&self) -> Result<Self> {
        let (train, test) = carve(
            &self.train,
            self.num_classes(),
            VALIDATION_FRACTION,
            VALIDATION_SALT,
        )?;
        Ok(Self {
            name: format!("{} (validation split)", self.name),
            classes: self.classes.clone(),
            train,
            test,
            unlabelled: self.unlabelled.clone(),
            skipped: self.skipped,
        })
    }

    /// Splits a labelled corpus: a stratified, seeded `test_fraction` of each class for
    /// testing (corpora have no test part of their own).
    pub fn from_corpus(name: String, corpus: LabelledCorpus, test_fraction: f64) -> Result<Self> {
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(DataError::InvalidConfig(format!(
                "the test fraction must lie strictly between 0 and 1 for text, not \
                 {test_fraction}: a corpus has no test part, so one is always carved"
            )));
        }
        let (train, test) = carve(&corpus.set, corpus.classes.len(), test_fraction, TEST_SALT)?;
        Ok(Self {
            name,
            classes: corpus.classes,
            train,
            test,
            unlabelled: corpus.unlabelled,
            skipped: corpus.skipped,
        })
    }
}

/// `set` split into the rest and a stratified, seeded `fraction` of each of its `classes`.
fn carve(set: &TextSet, classes: usize, fraction: f64, salt: u64) -> Result<(TextSet, TextSet)> {
    let labels = set.labels.clone().unwrap_or_default();
    let split = validation_split(set.len(), Some(&labels), classes, fraction, salt)?;
    Ok((set.subset(&split.train), set.subset(&split.val)))
}

/// Where labelled text comes from: `fortunes` (Debian's package, [`FORTUNE_CATEGORIES`]), or a
/// directory with one file or sub-directory per class.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSource {
    pub dir: PathBuf,
    /// The entries that are classes; every entry when `None`.
    pub classes: Option<Vec<String>>,
}

impl TextSource {
    pub fn fortunes() -> Self {
        Self {
            dir: PathBuf::from(FORTUNES_DIR),
            classes: Some(FORTUNE_CATEGORIES.iter().map(|c| c.to_string()).collect()),
        }
    }

    /// `fortunes` or a directory; `classes` overrides the classes either way.
    pub fn parse(spec: &str, classes: Option<Vec<String>>) -> Result<Self> {
        let mut source = if spec == "fortunes" {
            let s = Self::fortunes();
            if !s.dir.is_dir() {
                return Err(DataError::Missing {
                    dir: s.dir,
                    wanted: "fortune files",
                    patterns: "Debian's fortunes package (apt-get install fortunes)".into(),
                });
            }
            s
        } else {
            let dir = PathBuf::from(spec);
            if !dir.exists() {
                return Err(DataError::UnknownSource {
                    spec: spec.into(),
                    known: "fortunes".into(),
                });
            }
            Self { dir, classes: None }
        };
        if classes.is_some() {
            source.classes = classes;
        }
        Ok(source)
    }

    /// The corpus with [`TEST_FRACTION`] of each class held out for testing.
    pub fn load(&self, options: ReadOptions) -> Result<TextDataset> {
        self.load_split(options, TEST_FRACTION)
    }

    /// The corpus with `test_fraction` of each class held out for testing.
    pub fn load_split(&self, options: ReadOptions, test_fraction: f64) -> Result<TextDataset> {
        let corpus = read_labelled_dir(&self.dir, self.classes.as_deref(), options)?;
        TextDataset::from_corpus(display_name(&self.dir), corpus, test_fraction)
    }
}

fn display_name(dir: &Path) -> String {
    dir.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_split_is_stratified_and_apart_from_pretraining_text() {
        let dir = tempfile::tempdir().unwrap();
        for (class, n) in [("a", 20), ("b", 10)] {
            let text: String = (0..n).map(|i| format!("{class} doc {i}\n%\n")).collect();
            std::fs::write(dir.path().join(class), text).unwrap();
        }
        std::fs::write(dir.path().join("extra"), "free text\n").unwrap();
        let source = TextSource {
            dir: dir.path().to_path_buf(),
            classes: Some(vec!["a".into(), "b".into()]),
        };
        let data = source.load(ReadOptions::default()).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (24, 6));
        let test_labels = data.test.labels.clone().unwrap();
        assert_eq!(test_labels.iter().filter(|&&l| l == 0).count(), 4);
        let pretraining = data.pretraining_documents();
        assert!(pretraining.contains(&"free text".to_string()));
        assert!(data.test.documents.iter().all(|d| !pretraining.contains(d)));
        // Seeded: the same split every time.
        assert_eq!(source.load(ReadOptions::default()).unwrap(), data);
        let half = source.load_split(ReadOptions::default(), 0.5).unwrap();
        assert_eq!((half.train.len(), half.test.len()), (15, 15));
        let err = source.load_split(ReadOptions::default(), 0.0).unwrap_err();
        assert!(err.to_string().contains("test fraction"), "{err}");

        // The validation set: carved from the training split alone, stratified, and the test
        // split nowhere in it.
        let val = data.validation().unwrap();
        assert_eq!((val.train.len(), val.test.len()), (19, 5));
        let val_labels = val.test.labels.clone().unwrap();
        assert_eq!(val_labels.iter().filter(|&&l| l == 0).count(), 3);
        let seen = val.pretraining_documents();
        for doc in data.test.documents.iter().chain(&val.test.documents) {
            assert!(
                !seen.contains(doc) && !val.train.documents.contains(doc),
                "{doc}"
            );
        }
        assert!(
            val.test
                .documents
                .iter()
                .all(|d| data.train.documents.contains(d))
        );
        assert_eq!(data.validation().unwrap(), val);
    }

    #[test]
    fn a_missing_source_is_named() {
        let err = TextSource::parse("/no/such/dir", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/dir"), "{err}");
    }
}
