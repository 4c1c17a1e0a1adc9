//! Tokenizers trained on the corpus: WordPiece (a deterministic vocabulary learner, then the
//! `tokenizers` crate's BERT normaliser, pre-tokeniser, model and decoder) or single characters.
//! Both put the special tokens first, at fixed ids, and save to one JSON file (WordPiece in the
//! `tokenizers` format, which Python's `tokenizers` loads as it is).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ahash::AHashMap;
use serde::{Deserialize, Serialize};
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{
    AddedToken, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString,
    PreTokenizer, Tokenizer,
};

use super::wordpiece;

use crate::error::{DataError, Result};

/// The special tokens, at ids 0 to 4 of every vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Pad = 0,
    Unk = 1,
    Cls = 2,
    Sep = 3,
    Mask = 4,
}

impl Special {
    pub const ALL: [Special; 5] = [
        Special::Pad,
        Special::Unk,
        Special::Cls,
        Special::Sep,
        Special::Mask,
    ];

    pub fn id(self) -> u32 {
        self as u32
    }

    pub fn text(self) -> &'static str {
        match self {
            Special::Pad => "[PAD]",
            Special::Unk => "[UNK]",
            Special::Cls => "[CLS]",
            Special::Sep => "[SEP]",
            Special::Mask => "[MASK]",
        }
    }
}

/// Ids below this are special tokens.
pub const FIRST_ORDINARY_ID: u32 = Special::ALL.len() as u32;

/// Which tokenizer to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    #[default]
    Wordpiece,
    /// One token per character (after lowercasing, when asked).
    Chars,
}

/// Tokenizer settings. Defaults: WordPiece, 8,000 tokens, pieces seen at least twice,
/// lowercased text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerConfig {
    pub kind: TokenizerKind,
    /// Largest vocabulary, special tokens included.
    pub vocab_size: usize,
    pub min_frequency: u64,
    pub lowercase: bool,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            kind: TokenizerKind::Wordpiece,
            vocab_size: 4000,
            min_frequency: 2,
            lowercase: true,
        }
    }
}

impl TokenizerConfig {
    pub fn validate(&self) -> Result<()> {
        if self.vocab_size < 2 * FIRST_ORDINARY_ID as usize {
            return Err(DataError::InvalidConfig(format!(
                "tokenizer vocab_size = {} is too small; it holds the {FIRST_ORDINARY_ID} \
                 special tokens and at least as many others",
                self.vocab_size
            )));
        }
        Ok(())
    }
}

/// A trained tokenizer.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Wordpiece(Box<Tokenizer>),
    Chars(CharVocab),
}

/// The character vocabulary: specials, then characters by falling frequency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CharVocab {
    kind: String,
    lowercase: bool,
    tokens: Vec<String>,
    #[serde(skip)]
    ids: HashMap<char, u32>,
}

impl CharVocab {
    const KIND: &'static str = "chars";

    fn index(mut self) -> Self {
        self.ids = self
            .tokens
            .iter()
            .enumerate()
            .skip(FIRST_ORDINARY_ID as usize)
            .filter_map(|(i, t)| t.chars().next().map(|c| (c, i as u32)))
            .collect();
        self
    }
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TextTokenizer({:?}, {} tokens)",
            self.kind(),
            self.vocab_size()
        )
    }
}

impl TextTokenizer {
    /// Trains a tokenizer on `documents`. Deterministic: the same documents give the same
    /// vocabulary.
    pub fn train(config: &TokenizerConfig, documents: &[String]) -> Result<Self> {
        config.validate()?;
        if documents.is_empty() {
            return Err(DataError::InvalidConfig(
                "no documents to train the tokenizer on".into(),
            ));
        }
        Ok(match config.kind {
            TokenizerKind::Wordpiece => Self::train_wordpiece(config, documents)?,
            TokenizerKind::Chars => Self::train_chars(config, documents),
        })
    }

    fn train_wordpiece(config: &TokenizerConfig, documents: &[String]) -> Result<Self> {
        let failed = |e: tokenizers::Error| {
            DataError::InvalidConfig(format!("training the WordPiece tokenizer failed: {e}"))
        };
        let normalizer = BertNormalizer::new(true, true, None, config.lowercase);
        // Words as BERT's pipeline sees them, counted.
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for doc in documents {
            let mut text = NormalizedString::from(doc.as_str());
            normalizer.normalize(&mut text).map_err(failed)?;
            let mut words = PreTokenizedString::from(text);
            BertPreTokenizer.pre_tokenize(&mut words).map_err(failed)?;
            for (word, _, _) in words.get_splits(OffsetReferential::Original, OffsetType::Byte) {
                *counts.entry(word.to_string()).or_default() += 1;
            }
        }
        let ordinary = config.vocab_size - FIRST_ORDINARY_ID as usize;
        let vocab: AHashMap<String, u32> = Special::ALL
            .iter()
            .map(|s| s.text().to_string())
            .chain(wordpiece::learn(&counts, ordinary, config.min_frequency))
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token(Special::Unk.text().into())
            .build()
            .map_err(failed)?;
        let mut tokenizer = Tokenizer::new(model);
        tokenizer
            .with_normalizer(Some(normalizer))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_decoder(Some(WordPieceDecoder::default()));
        tokenizer.add_special_tokens(
            &Special::ALL
                .iter()
                .map(|s| AddedToken::from(s.text(), true))
                .collect::<Vec<_>>(),
        );
        let trained = Self {
            inner: Inner::Wordpiece(Box::new(tokenizer)),
        };
        trained.check_specials()?;
        Ok(trained)
    }

    fn train_chars(config: &TokenizerConfig, documents: &[String]) -> Self {
        let mut counts: BTreeMap<char, u64> = BTreeMap::new();
        for doc in documents {
            for c in doc.chars() {
                let c = if config.lowercase {
                    c.to_lowercase().next().unwrap_or(c)
                } else {
                    c
                };
                *counts.entry(c).or_default() += 1;
            }
        }
        let mut by_count: Vec<(char, u64)> = counts
            .into_iter()
            .filter(|&(_, n)| n >= config.min_frequency)
            .collect();
        // Most frequent first; ties by character, so the order is deterministic.
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        by_count.truncate(config.vocab_size - FIRST_ORDINARY_ID as usize);
        let tokens = Special::ALL
            .iter()
            .map(|s| s.text().to_string())
            .chain(by_count.into_iter().map(|(c, _)| c.to_string()))
            .collect();
        Self {
            inner: Inner::Chars(
                CharVocab {
                    kind: CharVocab::KIND.into(),
                    lowercase: config.lowercase,
                    tokens,
                    ids: HashMap::new(),
                }
                .index(),
            ),
        }
    }

    fn check_specials(&self) -> Result<()> {
        for s in Special::ALL {
            if self.token_id(s.text()) != Some(s.id()) {
                return Err(DataError::InvalidConfig(format!(
                    "the tokenizer holds {} at id {:?}, not {}",
                    s.text(),
                    self.token_id(s.text()),
                    s.id()
                )));
            }
        }
        Ok(())
    }

    pub fn kind(&self) -> TokenizerKind {
        match self.inner {
            Inner::Wordpiece(_) => TokenizerKind::Wordpiece,
            Inner::Chars(_) => TokenizerKind::Chars,
        }
    }

    /// Tokens in the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Wordpiece(t) => t.get_vocab_size(true),
            Inner::Chars(v) => v.tokens.len(),
        }
    }

    /// The ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match &self.inner {
            Inner::Wordpiece(t) => t
                .encode_fast(text, false)
                .map(|e| e.get_ids().to_vec())
                // Encoding fails only on a misconfigured pipeline; read it as unknown text.
                .unwrap_or_else(|_| vec![Special::Unk.id()]),
            Inner::Chars(v) => text
                .chars()
                .map(|c| {
                    let c = if v.lowercase {
                        c.to_lowercase().next().unwrap_or(c)
                    } else {
                        c
                    };
                    v.ids.get(&c).copied().unwrap_or(Special::Unk.id())
                })
                .collect(),
        }
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        match &self.inner {
            Inner::Wordpiece(t) => t.decode(ids, true).unwrap_or_default(),
            Inner::Chars(v) => ids
                .iter()
                .filter(|&&id| id >= FIRST_ORDINARY_ID)
                .filter_map(|&id| v.tokens.get(id as usize))
                .map(String::as_str)
                .collect(),
        }
    }

    /// The token at `id` as the vocabulary spells it (`##ing` for a word piece).
    pub fn token(&self, id: u32) -> Option<String> {
        match &self.inner {
            Inner::Wordpiece(t) => t.id_to_token(id),
            Inner::Chars(v) => v.tokens.get(id as usize).cloned(),
        }
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.inner {
            Inner::Wordpiece(t) => t.token_to_id(token),
            Inner::Chars(v) => v.tokens.iter().position(|t| t == token).map(|i| i as u32),
        }
    }

    /// The tokenizer as JSON.
    pub fn to_json(&self) -> String {
        match &self.inner {
            Inner::Wordpiece(t) => t.to_string(true).unwrap_or_default(),
            Inner::Chars(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
        }
    }

    /// Reads a tokenizer written by [`Self::to_json`]; `path` names it in errors.
    pub fn from_json(json: &str, path: &Path) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| DataError::malformed(path, format!("not a tokenizer JSON file: {e}")))?;
        let tokenizer = if value.get("kind").and_then(|k| k.as_str()) == Some(CharVocab::KIND) {
            let vocab: CharVocab = serde_json::from_value(value).map_err(|e| {
                DataError::malformed(path, format!("bad character vocabulary: {e}"))
            })?;
            Self {
                inner: Inner::Chars(vocab.index()),
            }
        } else {
            let t: Tokenizer = json
                .parse()
                .map_err(|e| DataError::malformed(path, format!("bad tokenizer: {e}")))?;
            Self {
                inner: Inner::Wordpiece(Box::new(t)),
            }
        };
        tokenizer
            .check_specials()
            .map_err(|e| DataError::malformed(path, e.to_string()))?;
        Ok(tokenizer)
    }

    /// Writes the tokenizer to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::npy::write_atomic(path, self.to_json().as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::from_json(&json, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        [
            "The cat sat on the mat.",
            "The dog sat on the log.",
            "Cats and dogs are pets; the cat is sitting.",
            "Computers compute; the computer crashed again.",
            "A sitting cat watches the computing dog.",
        ]
        .iter()
        .cycle()
        .take(50)
        .map(|s| s.to_string())
        .collect()
    }

    fn small(kind: TokenizerKind) -> TokenizerConfig {
        TokenizerConfig {
            kind,
            vocab_size: 120,
            ..TokenizerConfig::default()
        }
    }

    #[test]
    fn wordpiece_round_trips_and_keeps_specials_first() {
        let t = TextTokenizer::train(&small(TokenizerKind::Wordpiece), &corpus()).unwrap();
        for s in Special::ALL {
            assert_eq!(t.token(s.id()).as_deref(), Some(s.text()));
        }
        assert!(t.vocab_size() <= 120);
        let ids = t.encode("The cat sat on the mat.");
        assert!(ids.iter().all(|&id| id >= FIRST_ORDINARY_ID));
        assert_eq!(t.decode(&ids), "the cat sat on the mat.");
        // An unseen character is unknown, not an error.
        assert!(t.encode("cat ☃").contains(&Special::Unk.id()));
    }

    #[test]
    fn training_is_deterministic_and_saving_round_trips() {
        for kind in [TokenizerKind::Wordpiece, TokenizerKind::Chars] {
            let a = TextTokenizer::train(&small(kind), &corpus()).unwrap();
            let b = TextTokenizer::train(&small(kind), &corpus()).unwrap();
            assert_eq!(a.to_json(), b.to_json(), "{kind:?}");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tokenizer.json");
            a.save(&path).unwrap();
            let c = TextTokenizer::load(&path).unwrap();
            let text = "The computer sat on the dog.";
            assert_eq!(c.encode(text), a.encode(text), "{kind:?}");
            assert_eq!(c.kind(), kind);
        }
    }

    #[test]
    fn chars_round_trip() {
        let t = TextTokenizer::train(&small(TokenizerKind::Chars), &corpus()).unwrap();
        let ids = t.encode("The cat.");
        assert_eq!(ids.len(), 8);
        assert_eq!(t.decode(&ids), "the cat.");
        assert_eq!(t.token(Special::Mask.id()).as_deref(), Some("[MASK]"));
    }

    #[test]
    fn bad_files_and_settings_are_clear_errors() {
        let path = Path::new("run/tokenizer.json");
        let err = TextTokenizer::from_json("{not json", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("run/tokenizer.json"), "{err}");
        let config = TokenizerConfig {
            vocab_size: 3,
            ..TokenizerConfig::default()
        };
        assert!(TextTokenizer::train(&config, &corpus()).is_err());
        assert!(TextTokenizer::train(&TokenizerConfig::default(), &[]).is_err());
    }
}
