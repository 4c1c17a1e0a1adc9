//! The host's copy of the rows that the CPU paths iterate over: plain f32 values, or one byte
//! per value when the data allows it exactly.

use rayon::prelude::*;

use burn::tensor::Tensor;

use super::kernel::{decode, encode, min_positive, prefetch};
use crate::input::to_vec;

/// Rows `[n, d]`, row-major, that a pass reads a strip at a time.
pub(crate) trait Rows: Sync {
    /// Features per row.
    fn d(&self) -> usize;

    /// Number of rows.
    fn n(&self) -> usize;

    /// Rows `first..end` as f32 values: borrowed when stored so, else decoded into `buf`.
    fn strip<'a>(&'a self, first: usize, end: usize, buf: &'a mut Vec<f32>) -> &'a [f32];

    /// Asks for rows `first..end` to be brought into cache ahead of use.
    fn prefetch(&self, first: usize, end: usize);
}

/// Rows stored as f32.
#[derive(Clone, Copy)]
pub(crate) struct HostRows<'a> {
    pub values: &'a [f32],
    pub d: usize,
}

impl Rows for HostRows<'_> {
    fn d(&self) -> usize {
        self.d
    }

    fn n(&self) -> usize {
        self.values.len() / self.d
    }

    fn strip<'a>(&'a self, first: usize, end: usize, _: &'a mut Vec<f32>) -> &'a [f32] {
        &self.values[first * self.d..end * self.d]
    }

    fn prefetch(&self, first: usize, end: usize) {
        prefetch(&self.values[first * self.d..end * self.d]);
    }
}

/// Rows whose every value is `code * scale` for a code in 0..=255 and one scale, as images
/// read as bytes and scaled to [0, 1] are: a byte per value is a quarter of the memory traffic
/// of f32, and decoding (`code as f32 * scale`) gives back each value exactly, so results are
/// those of the f32 rows bit for bit.
pub(crate) struct ByteRows {
    codes: Vec<u8>,
    scale: f32,
    d: usize,
}

/// Values per chunk of rows read from the tensor while encoding: a few MiB, so the f32 chunks
/// are reused allocations rather than one copy of the whole data.
const CHUNK_VALUES: usize = 1 << 20;

impl ByteRows {
    /// The byte form of `x`, or `None` when no scale fits every value. The scales tried, cheapest
    /// first: the first chunk's largest value over 255 (a thousand images or so usually hold the
    /// brightest level), the whole data's (a reduction on the device), then the smallest positive
    /// value (levels of one step, code 1 present). Each is checked on the first chunk before it
    /// is tried on all rows, so data that is not byte levels (standardised features, with
    /// negative values) costs one chunk.
    pub(crate) fn from_tensor(x: &Tensor<2>) -> Option<Self> {
        let [n, d] = x.dims();
        if n == 0 || d == 0 {
            return None;
        }
        let rows = (CHUNK_VALUES / d).max(1);
        let starts: Vec<usize> = (0..n).step_by(rows).collect();
        let chunk = |first: usize| to_vec(&x.clone().slice([first..(first + rows).min(n), 0..d]));
        let head = chunk(0);
        // No scale gives a negative value.
        if head.iter().any(|&v| v < 0.0) {
            return None;
        }
        let mut codes = vec![0u8; n * d];
        let mut try_scale = |scale: f32| {
            (scale.is_finite() && scale > 0.0)
                && encode(&head, scale, &mut codes[..head.len()])
                && codes
                    .par_chunks_mut(rows * d)
                    .zip(&starts)
                    .skip(1)
                    .all(|(codes, &first)| encode(&chunk(first), scale, codes))
        };
        let first_max = head.iter().copied().fold(0f32, f32::max) / 255.0;
        let mut scale = first_max;
        let mut exact = try_scale(scale);
        if !exact {
            let max: f32 = x.clone().max().into_scalar();
            if max / 255.0 != first_max {
                scale = max / 255.0;
                exact = try_scale(scale);
            }
        }
        if !exact {
            scale = starts
                .par_iter()
                .map(|&first| min_positive(&chunk(first)))
                .reduce(|| f32::INFINITY, f32::min);
            exact = try_scale(scale);
        }
        exact.then_some(Self { codes, scale, d })
    }
}

impl Rows for ByteRows {
    fn d(&self) -> usize {
        self.d
    }

    fn n(&self) -> usize {
        self.codes.len() / self.d
    }

    fn strip<'a>(&'a self, first: usize, end: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let codes = &self.codes[first * self.d..end * self.d];
        buf.resize(codes.len(), 0.0);
        decode(codes, self.scale, buf);
        buf
    }

    fn prefetch(&self, first: usize, end: usize) {
        prefetch(&self.codes[first * self.d..end * self.d]);
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::input::tensor;

    fn encode(values: &[f32], d: usize) -> Option<ByteRows> {
        let x = tensor(values.to_vec(), values.len() / d, d, &Device::flex());
        ByteRows::from_tensor(&x)
    }

    #[test]
    fn scaled_bytes_round_trip_exactly() {
        let d = 5;
        // Scaled as image loaders scale bytes to [0, 1].
        let values: Vec<f32> = (0..=255u8)
            .chain([255, 0, 7, 200])
            .map(|b| f32::from(b) * (1.0 / 255.0))
            .collect();
        let bytes = encode(&values, d).expect("every value is a scaled byte");
        let mut buf = Vec::new();
        assert_eq!(bytes.strip(0, values.len() / d, &mut buf), &values[..]);
        assert_eq!(bytes.strip(3, 4, &mut buf), &values[15..20]);
        // Other scales: levels of 0.5 up to 4.5, and bytes whose brightest is 200.
        let halves: Vec<f32> = (0..10).map(|i| i as f32 * 0.5).collect();
        let bytes = encode(&halves, 2).expect("levels of one scale");
        assert_eq!(bytes.strip(0, 5, &mut buf), &halves[..]);
        let dim: Vec<f32> = (0..=200u8).map(|b| f32::from(b) * (1.0 / 255.0)).collect();
        let bytes = encode(&dim, 1).expect("scaled bytes below 255");
        assert_eq!(bytes.strip(0, dim.len(), &mut buf), &dim[..]);
    }

    #[test]
    fn the_brightest_level_may_come_after_the_first_chunk() {
        let d = 1000;
        let n = CHUNK_VALUES / d + 50;
        // Dim rows first; the only 255 in the last row.
        let mut values: Vec<f32> = (0..n * d)
            .map(|i| f32::from((i % 101) as u8) * (1.0 / 255.0))
            .collect();
        values[n * d - 1] = 1.0;
        let bytes = encode(&values, d).expect("scaled bytes");
        let mut buf = Vec::new();
        assert_eq!(bytes.strip(0, n, &mut buf), &values[..]);
    }

    #[test]
    fn other_values_stay_f32() {
        let off_grid = [0.0, 1.0, 0.3];
        assert!(encode(&off_grid, 3).is_none());
        assert!(encode(&[0.0, -1.0 / 255.0, 1.0], 3).is_none());
        // A negative value after the first chunk.
        let d = 1000;
        let mut late: Vec<f32> = vec![1.0; (CHUNK_VALUES / d + 1) * d];
        *late.last_mut().unwrap() = -1.0;
        assert!(encode(&late, d).is_none());
        assert!(encode(&[0.0; 6], 3).is_none());
        // Integers 0..=256 are not multiples of 256 / 255.
        let too_many: Vec<f32> = (0..=256).map(|i| i as f32).collect();
        assert!(encode(&too_many, 1).is_none());
    }
}
