//! Learns a WordPiece vocabulary the way the `tokenizers` crate's trainer does (byte-pair merges
//! over words, `##` marking a piece inside a word), but deterministically: that trainer numbers
//! the `##` pieces in hash-map order and breaks ties between equally frequent pairs by those
//! numbers, so the same corpus can give another vocabulary on every run. Here ties go to the
//! pair whose text sorts first.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Continuation prefix of a piece inside a word.
pub(crate) const PREFIX: &str = "##";

/// The learned pieces, in the order they were added: every initial piece (sorted), then one
/// per merge. At most `max_pieces` pieces; merges need a pair seen `min_frequency` times.
pub(crate) fn learn(
    word_counts: &BTreeMap<String, u64>,
    max_pieces: usize,
    min_frequency: u64,
) -> Vec<String> {
    // Initial pieces: each word's first character, then `##`-prefixed characters.
    let split = |word: &str| -> Vec<String> {
        word.chars()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    c.to_string()
                } else {
                    format!("{PREFIX}{c}")
                }
            })
            .collect()
    };
    let initial: BTreeSet<String> = word_counts.keys().flat_map(|w| split(w)).collect();
    let mut pieces: Vec<String> = initial.into_iter().collect();
    let mut ids: HashMap<String, u32> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), i as u32))
        .collect();
    let mut words: Vec<(Vec<u32>, u64)> = word_counts
        .iter()
        .map(|(w, &n)| (split(w).iter().map(|p| ids[p]).collect(), n))
        .collect();

    let mut pair_counts: HashMap<(u32, u32), u64> = HashMap::new();
    let mut where_: HashMap<(u32, u32), BTreeSet<usize>> = HashMap::new();
    for (w, (symbols, n)) in words.iter().enumerate() {
        for pair in symbols.windows(2) {
            *pair_counts.entry((pair[0], pair[1])).or_default() += n;
            where_.entry((pair[0], pair[1])).or_default().insert(w);
        }
    }

    while pieces.len() < max_pieces {
        // The most frequent pair; equal counts go to the pair whose text sorts first, so the
        // choice never depends on hash order.
        let best = pair_counts
            .iter()
            .filter(|&(_, &n)| n >= min_frequency.max(1))
            .max_by(|(a, na), (b, nb)| {
                na.cmp(nb).then_with(|| {
                    let text = |p: &(u32, u32)| (&pieces[p.0 as usize], &pieces[p.1 as usize]);
                    text(b).cmp(&text(a))
                })
            })
            .map(|(&pair, _)| pair);
        let Some(pair) = best else { break };
        let merged = format!(
            "{}{}",
            pieces[pair.0 as usize],
            pieces[pair.1 as usize].trim_start_matches(PREFIX)
        );
        let new_id = match ids.get(&merged) {
            Some(&id) => id,
            None => {
                let id = pieces.len() as u32;
                ids.insert(merged.clone(), id);
                pieces.push(merged);
                id
            }
        };
        let affected = where_.remove(&pair).unwrap_or_default();
        for w in affected {
            let (symbols, n) = &mut words[w];
            if !symbols.windows(2).any(|p| (p[0], p[1]) == pair) {
                continue;
            }
            for p in symbols.windows(2) {
                if let Some(c) = pair_counts.get_mut(&(p[0], p[1])) {
                    *c = c.saturating_sub(*n);
                }
            }
            let mut merged_symbols = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && (symbols[i], symbols[i + 1]) == pair {
                    merged_symbols.push(new_id);
                    i += 2;
                } else {
                    merged_symbols.push(symbols[i]);
                    i += 1;
                }
            }
            *symbols = merged_symbols;
            for p in symbols.windows(2) {
                *pair_counts.entry((p[0], p[1])).or_default() += *n;
                where_.entry((p[0], p[1])).or_default().insert(w);
            }
        }
        pair_counts.retain(|_, c| *c > 0);
        pair_counts.remove(&pair);
    }
    pieces.truncate(max_pieces);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(words: &[(&str, u64)]) -> BTreeMap<String, u64> {
        words.iter().map(|&(w, n)| (w.to_string(), n)).collect()
    }

    #[test]
    fn merges_the_most_frequent_pairs_first() {
        let pieces = learn(&counts(&[("hug", 10), ("pug", 5), ("hugs", 5)]), 100, 1);
        // Initial pieces sorted; then ##u+##g (20), h+##ug (15), and the tie between
        // hug+##s and p+##ug (5 each) goes to the text that sorts first.
        let expected = ["##g", "##s", "##u", "h", "p", "##ug", "hug", "hugs", "pug"];
        assert_eq!(pieces, expected.map(String::from));
    }

    #[test]
    fn ties_break_by_text_and_limits_hold() {
        // "ab" and "cd" are equally frequent: "ab" sorts first.
        let pieces = learn(&counts(&[("cd", 3), ("ab", 3)]), 5, 1);
        assert_eq!(pieces, ["##b", "##d", "a", "c", "ab"].map(String::from));
        // No pair reaches the minimum frequency: only the initial pieces.
        let pieces = learn(&counts(&[("cd", 1), ("ab", 1)]), 50, 2);
        assert_eq!(pieces.len(), 4);
    }
}
