//! Seeded, stratified label subsets and validation splits.
//!
//! Every evaluation depends on these: label budgets (k labels per class) are drawn from the
//! training split only, and the validation split that tunes probes is carved from the training
//! split too, never from the test split.

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// How many labelled examples per class an evaluation may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum LabelBudget {
    PerClass(usize),
    All,
}

impl fmt::Display for LabelBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelBudget::PerClass(k) => write!(f, "{k}"),
            LabelBudget::All => f.write_str("all"),
        }
    }
}

impl FromStr for LabelBudget {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(LabelBudget::All);
        }
        match s.parse::<usize>() {
            Ok(0) | Err(_) => Err(DataError::InvalidConfig(format!(
                "label budget '{s}' must be a positive number of labels per class or 'all'"
            ))),
            Ok(k) => Ok(LabelBudget::PerClass(k)),
        }
    }
}

impl From<LabelBudget> for String {
    fn from(b: LabelBudget) -> String {
        b.to_string()
    }
}

impl TryFrom<String> for LabelBudget {
    type Error = DataError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// Indices grouped by class, each group shuffled with `seed`.
fn shuffled_by_class(labels: &[u32], num_classes: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    let mut groups = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        groups
            .get_mut(l as usize)
            .ok_or_else(|| {
                DataError::InvalidConfig(format!(
                    "label {l} at index {i} is out of range for {num_classes} classes"
                ))
            })?
            .push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for g in &mut groups {
        g.shuffle(&mut rng);
    }
    Ok(groups)
}

/// `budget` examples of every class, drawn with `seed`; indices ascending.
///
/// Subsets with the same seed are nested: the 10-per-class subset contains the 1-per-class one,
/// so a label-efficiency curve compares like with like. A class with fewer examples than asked is
/// an error rather than a silently unbalanced subset.
pub fn stratified_subset(
    labels: &[u32],
    num_classes: usize,
    budget: LabelBudget,
    seed: u64,
) -> Result<Vec<usize>> {
    let LabelBudget::PerClass(k) = budget else {
        return Ok((0..labels.len()).collect());
    };
    let groups = shuffled_by_class(labels, num_classes, seed)?;
    let mut out = Vec::with_capacity(k * num_classes);
    for (class, g) in groups.iter().enumerate() {
        if g.len() < k {
            return Err(DataError::InvalidConfig(format!(
                "class {class} has {} labelled examples, fewer than the {k} per class asked",
                g.len()
            )));
        }
        out.extend_from_slice(&g[..k]);
    }
    out.sort_unstable();
    Ok(out)
}

/// Training and validation indices carved out of one training split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainValSplit {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

/// Holds out `fraction` of `n` examples for validation, stratified by class when labels are
/// given (each class keeps at least one training example); indices ascending.
pub fn validation_split(
    n: usize,
    labels: Option<&[u32]>,
    num_classes: usize,
    fraction: f64,
    seed: u64,
) -> Result<TrainValSplit> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(DataError::InvalidConfig(format!(
            "validation fraction {fraction} must lie strictly between 0 and 1"
        )));
    }
    let groups = match labels {
        Some(labels) => {
            if labels.len() != n {
                return Err(DataError::InvalidConfig(format!(
                    "{n} examples but {} labels",
                    labels.len()
                )));
            }
            shuffled_by_class(labels, num_classes, seed)?
        }
        None => {
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            vec![all]
        }
    };
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for g in groups {
        let take = ((g.len() as f64 * fraction).round() as usize).min(g.len().saturating_sub(1));
        val.extend_from_slice(&g[..take]);
        train.extend_from_slice(&g[take..]);
    }
    if val.is_empty() || train.is_empty() {
        return Err(DataError::InvalidConfig(format!(
            "a validation fraction of {fraction} of {n} examples leaves an empty split"
        )));
    }
    train.sort_unstable();
    val.sort_unstable();
    Ok(TrainValSplit { train, val })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn labels(n: usize, classes: u32) -> Vec<u32> {
        (0..n as u32).map(|i| (i * 7 + i / 3) % classes).collect()
    }

    #[test]
    fn subset_takes_k_per_class_and_is_seeded() {
        let y = labels(300, 10);
        let a = stratified_subset(&y, 10, LabelBudget::PerClass(5), 1).unwrap();
        assert_eq!(a.len(), 50);
        for c in 0..10 {
            assert_eq!(a.iter().filter(|&&i| y[i] == c).count(), 5);
        }
        assert_eq!(
            a,
            stratified_subset(&y, 10, LabelBudget::PerClass(5), 1).unwrap()
        );
        assert_ne!(
            a,
            stratified_subset(&y, 10, LabelBudget::PerClass(5), 2).unwrap()
        );
    }

    #[test]
    fn subsets_are_nested() {
        let y = labels(500, 10);
        let one = stratified_subset(&y, 10, LabelBudget::PerClass(1), 9).unwrap();
        let ten = stratified_subset(&y, 10, LabelBudget::PerClass(10), 9).unwrap();
        assert!(one.iter().all(|i| ten.contains(i)));
    }

    #[test]
    fn too_few_examples_is_an_error() {
        let y = vec![0, 0, 0, 1];
        let err = stratified_subset(&y, 2, LabelBudget::PerClass(2), 0).unwrap_err();
        assert!(err.to_string().contains("class 1 has 1"), "{err}");
    }

    #[test]
    fn out_of_range_label_is_an_error() {
        let err = stratified_subset(&[0, 5], 2, LabelBudget::PerClass(1), 0).unwrap_err();
        assert!(err.to_string().contains("label 5"), "{err}");
    }

    #[test]
    fn budgets_parse() {
        assert_eq!("all".parse::<LabelBudget>().unwrap(), LabelBudget::All);
        assert_eq!(
            "10".parse::<LabelBudget>().unwrap(),
            LabelBudget::PerClass(10)
        );
        assert!("0".parse::<LabelBudget>().is_err());
        assert!("-1".parse::<LabelBudget>().is_err());
    }

    #[test]
    fn validation_fraction_outside_0_1_is_an_error() {
        for f in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(validation_split(10, None, 0, f, 0).is_err());
        }
    }

    proptest! {
        #[test]
        fn validation_split_partitions_and_stratifies(
            n in 100usize..400, classes in 1u32..8, fraction in 0.1f64..0.5, seed in any::<u64>()
        ) {
            let y = labels(n, classes);
            let s = validation_split(n, Some(&y), classes as usize, fraction, seed).unwrap();
            let mut all: Vec<usize> = s.train.iter().chain(&s.val).copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..n).collect::<Vec<_>>());
            for c in 0..classes {
                let total = y.iter().filter(|&&l| l == c).count();
                let in_val = s.val.iter().filter(|&&i| y[i] == c).count();
                let want = ((total as f64 * fraction).round() as usize).min(total - 1);
                prop_assert_eq!(in_val, want);
            }
        }
    }
}
