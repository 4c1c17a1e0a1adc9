//! Masked-token prediction (BERT): select 15% of the ordinary tokens; of those, 80% become
//! `[MASK]`, 10% a random ordinary token and 10% stay as they are; the model predicts the
//! original token at every selected position, and only there.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::tokenizer::{FIRST_ORDINARY_ID, Special};
use crate::error::{DataError, Result};

/// Masking settings. Defaults: BERT's 15% selected, split 80/10/10.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlmConfig {
    /// Chance that an ordinary token is selected for prediction.
    pub select_probability: f64,
    /// Of the selected tokens, the share replaced by `[MASK]`.
    pub mask_fraction: f64,
    /// Of the selected tokens, the share replaced by a random ordinary token; the rest stay.
    pub random_fraction: f64,
}

impl Default for MlmConfig {
    fn default() -> Self {
        Self {
            select_probability: 0.15,
            mask_fraction: 0.8,
            random_fraction: 0.1,
        }
    }
}

impl MlmConfig {
    pub fn validate(&self) -> Result<()> {
        let p = self.select_probability;
        if !(p > 0.0 && p < 1.0) {
            return Err(DataError::InvalidConfig(format!(
                "mlm select_probability = {p} must lie strictly between 0 and 1"
            )));
        }
        let (m, r) = (self.mask_fraction, self.random_fraction);
        if !(m >= 0.0 && r >= 0.0 && m + r <= 1.0) {
            return Err(DataError::InvalidConfig(format!(
                "mlm mask_fraction = {m} and random_fraction = {r} must be non-negative and sum \
                 to at most 1"
            )));
        }
        Ok(())
    }

    /// The masking for a vocabulary of `vocab_size` tokens.
    pub fn build(&self, vocab_size: usize) -> Result<MlmMasking> {
        self.validate()?;
        if vocab_size <= FIRST_ORDINARY_ID as usize {
            return Err(DataError::InvalidConfig(format!(
                "a vocabulary of {vocab_size} tokens holds no ordinary token to mask"
            )));
        }
        Ok(MlmMasking {
            config: self.clone(),
            vocab_size: vocab_size as u32,
        })
    }
}

/// Masking for one vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct MlmMasking {
    config: MlmConfig,
    vocab_size: u32,
}

/// One sequence after masking.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MaskedSequence {
    /// The model's input: the tokens with the selected ones replaced.
    pub inputs: Vec<u32>,
    /// Selected positions, ascending.
    pub selected: Vec<usize>,
    /// The original token at each selected position.
    pub targets: Vec<u32>,
}

impl MlmMasking {
    pub fn vocab_size(&self) -> usize {
        self.vocab_size as usize
    }

    /// Masks `tokens` with `rng`. Special tokens (`[CLS]`, `[SEP]`, `[PAD]`, `[UNK]`,
    /// `[MASK]`) are never selected.
    pub fn mask(&self, tokens: &[u32], rng: &mut impl Rng) -> MaskedSequence {
        let mut out = MaskedSequence {
            inputs: tokens.to_vec(),
            ..MaskedSequence::default()
        };
        for (i, &token) in tokens.iter().enumerate() {
            if token < FIRST_ORDINARY_ID || !rng.random_bool(self.config.select_probability) {
                continue;
            }
            out.selected.push(i);
            out.targets.push(token);
            let u: f64 = rng.random();
            if u < self.config.mask_fraction {
                out.inputs[i] = Special::Mask.id();
            } else if u < self.config.mask_fraction + self.config.random_fraction {
                out.inputs[i] = rng.random_range(FIRST_ORDINARY_ID..self.vocab_size);
            }
        }
        out
    }

    /// Selects one ordinary position of `tokens` (uniformly) and masks it with the usual split:
    /// for a batch in which nothing was selected, so every batch has a loss.
    pub fn mask_one(&self, tokens: &[u32], rng: &mut impl Rng) -> Option<MaskedSequence> {
        let ordinary: Vec<usize> = (0..tokens.len())
            .filter(|&i| tokens[i] >= FIRST_ORDINARY_ID)
            .collect();
        if ordinary.is_empty() {
            return None;
        }
        let i = ordinary[rng.random_range(0..ordinary.len())];
        let mut inputs = tokens.to_vec();
        let u: f64 = rng.random();
        if u < self.config.mask_fraction {
            inputs[i] = Special::Mask.id();
        } else if u < self.config.mask_fraction + self.config.random_fraction {
            inputs[i] = rng.random_range(FIRST_ORDINARY_ID..self.vocab_size);
        }
        Some(MaskedSequence {
            inputs,
            selected: vec![i],
            targets: vec![tokens[i]],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn masking_statistics_follow_bert() {
        let vocab = 1000;
        let masking = MlmConfig::default().build(vocab).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Sequences framed by [CLS] and [SEP], with padding and an unknown token inside.
        let mut tokens = vec![Special::Cls.id()];
        tokens.extend((0..120).map(|i| FIRST_ORDINARY_ID + (i * 37) % (vocab as u32 - 5)));
        tokens.push(Special::Unk.id());
        tokens.push(Special::Sep.id());
        tokens.extend([Special::Pad.id(); 6]);
        let ordinary = 120.0;
        let (mut selected, mut masked, mut random, mut kept) = (0usize, 0usize, 0usize, 0usize);
        let draws = 2000;
        for _ in 0..draws {
            let m = masking.mask(&tokens, &mut rng);
            assert_eq!(m.selected.len(), m.targets.len());
            for (&i, &t) in m.selected.iter().zip(&m.targets) {
                assert!(tokens[i] >= FIRST_ORDINARY_ID, "special token selected");
                assert_eq!(t, tokens[i]);
                match m.inputs[i] {
                    x if x == Special::Mask.id() => masked += 1,
                    x if x == tokens[i] => kept += 1,
                    x => {
                        assert!(x >= FIRST_ORDINARY_ID && x < vocab as u32);
                        random += 1;
                    }
                }
            }
            // Unselected positions are untouched.
            for (i, (&input, &token)) in m.inputs.iter().zip(&tokens).enumerate() {
                if !m.selected.contains(&i) {
                    assert_eq!(input, token);
                }
            }
            selected += m.selected.len();
        }
        let rate = selected as f64 / (draws as f64 * ordinary);
        assert!((rate - 0.15).abs() < 0.005, "selection rate {rate}");
        let share = |n: usize| n as f64 / selected as f64;
        assert!((share(masked) - 0.8).abs() < 0.01, "mask {}", share(masked));
        // A random draw equals the original token 1 time in 995; count it as kept.
        assert!(
            (share(random) - 0.1).abs() < 0.01,
            "random {}",
            share(random)
        );
        assert!((share(kept) - 0.1).abs() < 0.01, "kept {}", share(kept));
    }

    #[test]
    fn masking_is_seeded_and_mask_one_finds_an_ordinary_token() {
        let masking = MlmConfig::default().build(50).unwrap();
        let tokens: Vec<u32> = (0..40).map(|i| 5 + i % 45).collect();
        let a = masking.mask(&tokens, &mut ChaCha8Rng::seed_from_u64(3));
        let b = masking.mask(&tokens, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(a, b);
        let specials = [Special::Cls.id(), Special::Sep.id()];
        assert!(
            masking
                .mask_one(&specials, &mut ChaCha8Rng::seed_from_u64(0))
                .is_none()
        );
        let one = masking
            .mask_one(&[2, 17, 3], &mut ChaCha8Rng::seed_from_u64(0))
            .unwrap();
        assert_eq!((one.selected, one.targets), (vec![1], vec![17]));
    }

    #[test]
    fn bad_settings_are_rejected() {
        let bad = |c: MlmConfig| c.build(100).is_err();
        assert!(bad(MlmConfig {
            select_probability: 0.0,
            ..MlmConfig::default()
        }));
        assert!(bad(MlmConfig {
            mask_fraction: 0.95,
            ..MlmConfig::default()
        }));
        assert!(MlmConfig::default().build(5).is_err());
    }
}
