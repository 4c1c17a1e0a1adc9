//! A host batch split into contiguous shards, one per data-parallel replica: the shards hold
//! the batch's examples in order, so gathering the replicas' outputs in shard order restores
//! the batch.

use std::ops::Range;

use super::{AnyBatch, ClassificationBatch, DenoiseBatch, JigsawBatch, MaskedBatch, ViewsBatch};
use crate::text::{MlmBatch, TextClassBatch, TextViewsBatch, TokenBatch};

/// `n` rows in at most `parts` contiguous near-equal ranges (the first `n % parts` one row
/// longer); none is empty.
fn shard_ranges(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    let (size, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = size + usize::from(i < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// The rows `range` of `values`, which hold `rows` rows of equal width.
fn rows<T: Clone>(values: &[T], rows: usize, range: &Range<usize>) -> Vec<T> {
    let width = values.len().checked_div(rows).unwrap_or(0);
    values[range.start * width..range.end * width].to_vec()
}

impl TokenBatch {
    fn rows(&self, range: &Range<usize>) -> Self {
        Self {
            tokens: rows(&self.tokens, self.batch, range),
            batch: range.len(),
            len: self.len,
        }
    }
}

impl AnyBatch {
    /// The terms the batch's loss averages over: masked tokens for MLM, examples otherwise. A
    /// shard's loss weighted by its share of these makes the batch's loss.
    pub fn loss_terms(&self) -> usize {
        match self {
            AnyBatch::Mlm(b) => b.positions.len(),
            _ => self.examples(),
        }
    }

    /// The batch in at most `parts` contiguous shards of near-equal size, in order.
    pub fn shards(self, parts: usize) -> Vec<AnyBatch> {
        let n = self.examples();
        let ranges = shard_ranges(n, parts);
        if ranges.len() <= 1 {
            return vec![self];
        }
        ranges.iter().map(|r| self.shard(n, r)).collect()
    }

    fn shard(&self, n: usize, r: &Range<usize>) -> AnyBatch {
        match self {
            AnyBatch::Classification(b) => AnyBatch::Classification(ClassificationBatch {
                shape: b.shape,
                images: rows(&b.images, n, r),
                targets: b.targets[r.clone()].to_vec(),
            }),
            AnyBatch::Jigsaw(b) => AnyBatch::Jigsaw(JigsawBatch {
                tile_shape: b.tile_shape,
                tiles_per_image: b.tiles_per_image,
                tiles: rows(&b.tiles, n, r),
                targets: b.targets[r.clone()].to_vec(),
            }),
            AnyBatch::Masked(b) => AnyBatch::Masked(MaskedBatch {
                images: r.len(),
                num_patches: b.num_patches,
                patch_dim: b.patch_dim,
                visible: rows(&b.visible, n, r),
                visible_indices: rows(&b.visible_indices, n, r),
                masked_indices: rows(&b.masked_indices, n, r),
                mask: rows(&b.mask, n, r),
                restore: rows(&b.restore, n, r),
                targets: rows(&b.targets, n, r),
            }),
            AnyBatch::Views(b) => AnyBatch::Views(ViewsBatch {
                shape: b.shape,
                first: rows(&b.first, n, r),
                second: rows(&b.second, n, r),
            }),
            AnyBatch::Denoise(b) => AnyBatch::Denoise(DenoiseBatch {
                shape: b.shape,
                inputs: rows(&b.inputs, n, r),
                targets: rows(&b.targets, n, r),
            }),
            AnyBatch::Mlm(b) => {
                // Positions index the flattened batch; a shard's index its own rows.
                let len = b.inputs.len;
                let (lo, hi) = (r.start * len, r.end * len);
                let (positions, targets) = b
                    .positions
                    .iter()
                    .zip(&b.targets)
                    .filter(|&(&p, _)| (lo..hi).contains(&p))
                    .map(|(&p, &t)| (p - lo, t))
                    .unzip();
                AnyBatch::Mlm(MlmBatch {
                    inputs: b.inputs.rows(r),
                    positions,
                    targets,
                })
            }
            AnyBatch::TextViews(b) => AnyBatch::TextViews(TextViewsBatch {
                first: b.first.rows(r),
                second: b.second.rows(r),
            }),
            AnyBatch::TextClassification(b) => AnyBatch::TextClassification(TextClassBatch {
                tokens: b.tokens.rows(r),
                labels: b.labels[r.clone()].to_vec(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::ImageShape;

    #[test]
    fn ranges_cover_the_rows_in_order_and_differ_by_at_most_one() {
        assert_eq!(shard_ranges(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(shard_ranges(2, 4), vec![0..1, 1..2]);
        assert_eq!(shard_ranges(5, 1), vec![0..5]);
        assert_eq!(shard_ranges(0, 3), Vec::<Range<usize>>::new());
    }

    #[test]
    fn shards_of_views_rebuild_the_batch() {
        let shape = ImageShape::new(1, 2, 2);
        let batch = ViewsBatch {
            shape,
            first: (0..20).map(|v| v as f32).collect(),
            second: (100..120).map(|v| v as f32).collect(),
        };
        let shards = AnyBatch::Views(batch.clone()).shards(2);
        let parts: Vec<ViewsBatch> = shards
            .into_iter()
            .map(|s| match s {
                AnyBatch::Views(v) => v,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            parts.iter().map(ViewsBatch::len).collect::<Vec<_>>(),
            [3, 2]
        );
        let first: Vec<f32> = parts.iter().flat_map(|p| p.first.clone()).collect();
        let second: Vec<f32> = parts.iter().flat_map(|p| p.second.clone()).collect();
        assert_eq!((first, second), (batch.first, batch.second));
    }

    #[test]
    fn mlm_shards_keep_their_own_positions_and_the_loss_terms_add_up() {
        let batch = MlmBatch {
            inputs: TokenBatch {
                tokens: (0..12).collect(),
                batch: 3,
                len: 4,
            },
            positions: vec![1, 5, 6, 11],
            targets: vec![10, 50, 60, 110],
        };
        let whole = AnyBatch::Mlm(batch);
        assert_eq!(whole.loss_terms(), 4);
        let shards = whole.shards(2);
        let terms: Vec<usize> = shards.iter().map(AnyBatch::loss_terms).collect();
        assert_eq!(terms, [3, 1]);
        let AnyBatch::Mlm(last) = &shards[1] else {
            panic!("an MLM shard")
        };
        assert_eq!(last.inputs.tokens, (8..12).collect::<Vec<u32>>());
        assert_eq!(
            (last.positions.clone(), last.targets.clone()),
            (vec![3], vec![110])
        );
    }
}
