//! TF-IDF features, the unsupervised classic for text, as scikit-learn's `TfidfVectorizer`
//! computes them by default (smoothed idf, `tf * idf`, rows scaled to unit length), over
//! lowercased alphanumeric words, keeping the `max_features` words found in most documents.

use std::collections::{BTreeMap, HashMap};

/// A fitted vocabulary and its inverse document frequencies.
#[derive(Debug, Clone, PartialEq)]
pub struct TfIdf {
    words: HashMap<String, usize>,
    idf: Vec<f32>,
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
}

impl TfIdf {
    /// Fits on `documents` (no labels): the `max_features` words with the highest document
    /// frequency (ties by word), among those in at least `min_df` documents.
    pub fn fit<S: AsRef<str>>(documents: &[S], max_features: usize, min_df: usize) -> Self {
        let mut df: BTreeMap<String, usize> = BTreeMap::new();
        for doc in documents {
            let mut seen: Vec<String> = words(doc.as_ref()).collect();
            seen.sort_unstable();
            seen.dedup();
            for w in seen {
                *df.entry(w).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> = df
            .into_iter()
            .filter(|&(_, n)| n >= min_df.max(1))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(max_features.max(1));
        // Columns in word order, as scikit-learn sorts its vocabulary.
        ranked.sort_by(|a, b| a.0.cmp(&b.0));
        let n = documents.len() as f32;
        let idf = ranked
            .iter()
            .map(|&(_, d)| ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0)
            .collect();
        let words = ranked
            .into_iter()
            .enumerate()
            .map(|(i, (w, _))| (w, i))
            .collect();
        Self { words, idf }
    }

    pub fn dim(&self) -> usize {
        self.idf.len()
    }

    /// Row-major features `[documents, dim]`.
    pub fn transform<S: AsRef<str>>(&self, documents: &[S]) -> Vec<f32> {
        let dim = self.dim();
        let mut out = vec![0.0f32; documents.len() * dim];
        for (row, doc) in out.chunks_mut(dim.max(1)).zip(documents) {
            for w in words(doc.as_ref()) {
                if let Some(&j) = self.words.get(&w) {
                    row[j] += 1.0;
                }
            }
            let mut norm = 0.0;
            for (x, idf) in row.iter_mut().zip(&self.idf) {
                *x *= idf;
                norm += *x * *x;
            }
            if norm > 0.0 {
                let inv = 1.0 / norm.sqrt();
                row.iter_mut().for_each(|x| *x *= inv);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn_defaults() {
        // sklearn: TfidfVectorizer().fit_transform(["the cat sat", "the dog sat", "a cat"])
        // (single letters dropped, as its token pattern does).
        let docs = ["the cat sat", "the dog sat", "a cat"];
        let t = TfIdf::fit(&docs, 100, 1);
        assert_eq!(t.dim(), 4); // cat, dog, sat, the
        let x = t.transform(&docs);
        let expected_row0 = [0.57735026, 0.0, 0.57735026, 0.57735026];
        for (a, b) in x[..4].iter().zip(expected_row0) {
            assert!((a - b).abs() < 1e-6, "{:?}", &x[..4]);
        }
        // dog is rarer than sat and the, so it weighs more.
        let (dog, sat) = (x[4 + 1], x[4 + 2]);
        assert!((dog - 0.680_918_6).abs() < 1e-6 && (sat - 0.517_856_1).abs() < 1e-6);
        assert_eq!(&x[8..], &[1.0, 0.0, 0.0, 0.0]);
        // An unseen document is all zeros, not NaN.
        assert!(t.transform(&["zebra"]).iter().all(|&v| v == 0.0));
        // max_features keeps the most frequent words.
        assert_eq!(TfIdf::fit(&docs, 2, 1).dim(), 2);
    }
}
