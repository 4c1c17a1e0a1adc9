//! Two views of each token sequence for contrastive sentence embeddings (`--task simcse`): a
//! random contiguous span of its ordinary tokens, then each remaining token deleted with a small
//! probability (the crop and deletion augmentations of CLEAR, Wu et al. 2020), framed again by
//! `[CLS]` and `[SEP]`. SimCSE's dropout noise (Gao et al. 2021) comes on top, from the encoder.
//! A view keeps at least one ordinary token of a sequence that has one.
//!
//! Short spans make the task: two spans of 20-50% of a document often share few words, so the
//! encoder must learn which words occur together (its topic). Views of 60-100% share most of
//! their tokens and were matched by surface overlap alone (the validation study in the README).

use burn::tensor::Device;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::batch::{TokenBatch, TokenTensors};
use super::tokenizer::Special;
use crate::error::{DataError, Result};

/// How views are cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextViewsConfig {
    /// The share of a sequence's ordinary tokens a crop keeps, drawn uniformly from
    /// `[low, high]` (default 0.2 to 0.5).
    pub crop: [f32; 2],
    /// Chance that each token of the crop is deleted (default 0.1).
    pub deletion: f32,
}

impl Default for TextViewsConfig {
    fn default() -> Self {
        Self {
            crop: [0.2, 0.5],
            deletion: 0.1,
        }
    }
}

impl TextViewsConfig {
    pub fn validate(&self) -> Result<()> {
        let [lo, hi] = self.crop;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(DataError::InvalidConfig(format!(
                "text views: crop = [{lo}, {hi}] must satisfy 0 < low <= high <= 1"
            )));
        }
        if !(0.0..1.0).contains(&self.deletion) {
            return Err(DataError::InvalidConfig(format!(
                "text views: deletion = {} must lie in [0, 1)",
                self.deletion
            )));
        }
        Ok(())
    }

    pub fn build(&self) -> Result<TextViews> {
        self.validate()?;
        Ok(TextViews {
            config: self.clone(),
        })
    }
}

/// Cuts views of sequences framed `[CLS] … [SEP]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TextViews {
    config: TextViewsConfig,
}

impl TextViews {
    /// One view of `sequence`.
    pub fn view(&self, sequence: &[u32], rng: &mut impl Rng) -> Vec<u32> {
        let (cls, sep) = (Special::Cls.id(), Special::Sep.id());
        let start = usize::from(sequence.first() == Some(&cls));
        let end =
            sequence.len() - usize::from(sequence.len() > start && sequence.last() == Some(&sep));
        let body = &sequence[start..end];
        let mut out = Vec::with_capacity(body.len() + 2);
        out.push(cls);
        if !body.is_empty() {
            let [lo, hi] = self.config.crop;
            let share = if hi > lo {
                rng.random_range(lo..=hi)
            } else {
                lo
            };
            let keep = ((body.len() as f32 * share).round() as usize).clamp(1, body.len());
            let from = rng.random_range(0..=body.len() - keep);
            let crop = &body[from..from + keep];
            let first = out.len();
            out.extend(
                crop.iter()
                    .copied()
                    .filter(|_| rng.random::<f32>() >= self.config.deletion),
            );
            if out.len() == first {
                out.push(crop[rng.random_range(0..crop.len())]);
            }
        }
        out.push(sep);
        out
    }
}

/// Two views of each sequence of a batch, each side padded to its own longest view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextViewsBatch {
    pub first: TokenBatch,
    pub second: TokenBatch,
}

/// [`TextViewsBatch`] on a device.
#[derive(Debug, Clone)]
pub struct TextViewsTensors {
    pub first: TokenTensors,
    pub second: TokenTensors,
}

impl TextViewsBatch {
    /// Pairs of views, `pairs[i]` both of sequence `i`.
    pub fn from_pairs(pairs: &[(Vec<u32>, Vec<u32>)]) -> Self {
        let first: Vec<&[u32]> = pairs.iter().map(|(a, _)| a.as_slice()).collect();
        let second: Vec<&[u32]> = pairs.iter().map(|(_, b)| b.as_slice()).collect();
        Self {
            first: TokenBatch::pad(&first),
            second: TokenBatch::pad(&second),
        }
    }

    /// Sequences in the batch (each gives a pair of views).
    pub fn pairs(&self) -> usize {
        self.first.batch
    }

    pub fn into_tensors(self, device: &Device) -> TextViewsTensors {
        TextViewsTensors {
            first: self.first.into_tensors(device),
            second: self.second.into_tensors(device),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn framed(body: &[u32]) -> Vec<u32> {
        let mut s = vec![Special::Cls.id()];
        s.extend_from_slice(body);
        s.push(Special::Sep.id());
        s
    }

    #[test]
    fn a_view_is_a_framed_ordered_subsequence_of_a_crop_long_enough() {
        let views = TextViewsConfig {
            crop: [0.5, 0.8],
            deletion: 0.2,
        }
        .build()
        .unwrap();
        let body: Vec<u32> = (10..50).collect();
        let sequence = framed(&body);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut differ = 0;
        for _ in 0..200 {
            let v = views.view(&sequence, &mut rng);
            assert_eq!(v.first(), Some(&Special::Cls.id()));
            assert_eq!(v.last(), Some(&Special::Sep.id()));
            let inner = &v[1..v.len() - 1];
            // Strictly increasing ids: in order, no repeats, all from the body.
            assert!(inner.windows(2).all(|w| w[0] < w[1]), "{inner:?}");
            assert!(inner.iter().all(|t| body.contains(t)));
            // The crop keeps at most 80%; the span from first to last kept token fits in it.
            let span = (inner[inner.len() - 1] - inner[0] + 1) as usize;
            assert!(span <= 32, "span {span}");
            differ += usize::from(v != views.view(&sequence, &mut rng));
        }
        assert!(
            differ > 190,
            "views of one sequence should differ: {differ}"
        );
    }

    #[test]
    fn short_and_empty_sequences_keep_their_frame_and_a_token() {
        let views = TextViewsConfig {
            crop: [0.1, 0.1],
            deletion: 0.99,
        }
        .build()
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(views.view(&framed(&[]), &mut rng), framed(&[]));
        for _ in 0..20 {
            assert_eq!(views.view(&framed(&[7]), &mut rng), framed(&[7]));
            assert_eq!(views.view(&framed(&[7, 8, 9]), &mut rng).len(), 3);
        }
    }

    #[test]
    fn no_crop_and_no_deletion_is_the_identity() {
        let views = TextViewsConfig {
            crop: [1.0, 1.0],
            deletion: 0.0,
        }
        .build()
        .unwrap();
        let sequence = framed(&[5, 9, 6]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(views.view(&sequence, &mut rng), sequence);
    }

    #[test]
    fn bad_settings_are_refused() {
        for (crop, deletion) in [
            ([0.0, 1.0], 0.1),
            ([0.8, 0.5], 0.1),
            ([0.5, 1.2], 0.1),
            ([0.5, 1.0], 1.0),
        ] {
            let err = TextViewsConfig { crop, deletion }.build().unwrap_err();
            assert!(err.to_string().contains("text views"), "{err}");
        }
    }
}
