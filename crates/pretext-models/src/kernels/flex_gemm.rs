//! Matrix products on flex buffers through the `gemm` crate: strided views of the operands,
//! a product on the calling thread, and a product split over the cores in tasks fixed by its
//! shape.
//!
//! Burn's flex `matmul` hands a product to `gemm` whole and lets it spread the work, which on
//! the Transformers' token products (a few thousand rows by 64 to 256 columns and depth) kept
//! one core idle: a 2048 x 64 x 256 product ran at 185 GFLOP/s through `gemm`'s threads and
//! at 350 split in row blocks. The tasks here depend on the shape alone, never on the thread
//! count, and every output value's sum runs over the whole depth in the same order in any
//! block, so results are the same on any number of cores.

use rayon::prelude::*;

/// A matrix in a buffer: element `[i, j]` at `data[i * row + j * col]`.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub(super) data: &'a [f32],
    pub(super) row: usize,
    pub(super) col: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix with `cols` columns.
    pub(super) fn rows(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            row: cols,
            col: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub(super) fn transposed(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            row: 1,
            col: cols,
        }
    }

    /// This matrix's transpose.
    pub(super) fn t(self) -> Self {
        View {
            data: self.data,
            row: self.col,
            col: self.row,
        }
    }

    /// The matrix from element `[i, j]` on.
    fn from(self, i: usize, j: usize) -> Self {
        View {
            data: &self.data[(i * self.row + j * self.col).min(self.data.len())..],
            ..self
        }
    }

    /// Whether a `[rows, cols]` matrix fits in the buffer.
    pub(super) fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.row + (cols - 1) * self.col < self.data.len()
    }
}

/// `dst[m, n] (row-major) = [dst +] lhs[m, k] × rhs[k, n]`, on the calling thread.
pub(super) fn matmul(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
) {
    matmul_strided(dst, n, [m, n, k], accumulate, lhs, rhs);
}

/// `dst[m, n] (row stride dst_row) = [dst +] lhs[m, k] × rhs[k, n]`, on the calling thread:
/// the product into a block of a wider matrix.
pub(super) fn matmul_strided(
    dst: &mut [f32],
    dst_row: usize,
    [m, n, k]: [usize; 3],
    accumulate: bool,
    lhs: View,
    rhs: View,
) {
    let fits = m == 0 || n == 0 || (n <= dst_row && (m - 1) * dst_row + n <= dst.len());
    assert!(fits && lhs.covers(m, k) && rhs.covers(k, n));
    // SAFETY: the assertion above keeps every index the product touches inside the slices.
    unsafe { product(dst.as_mut_ptr(), dst_row, m, n, k, accumulate, lhs, rhs) }
}

/// `gemm` on a destination of row stride `dst_row`. Without `accumulate` every value of the
/// block is written before it is read, so the destination may be uninitialised.
///
/// # Safety
/// `dst` must be valid for writes of a `[m, n]` matrix of row stride `dst_row`, and `lhs` and
/// `rhs` must cover `[m, k]` and `[k, n]`.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    dst: *mut f32,
    dst_row: usize,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of the destination, as the caller guarantees (written, not
                // read: the destination may be uninitialised).
                unsafe { std::ptr::write_bytes(dst.add(i * dst_row), 0, n) };
            }
        }
        return;
    }
    // SAFETY: as the caller guarantees.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col as isize,
            lhs.row as isize,
            rhs.data.as_ptr(),
            rhs.col as isize,
            rhs.row as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// How a product is cut into tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// One call.
    Whole,
    /// Blocks of this many output rows.
    Rows(usize),
    /// Blocks of this many output columns.
    Cols(usize),
    /// Blocks of this much depth, each into a buffer of its own, added in order.
    Depth(usize),
}

/// Multiply-adds below which one call on one core is quickest.
const SMALL: usize = 1 << 18;

/// Up to 8 blocks of at least `least` (a multiple of 16) along an axis of `len`.
fn block(len: usize, least: usize) -> usize {
    len.div_ceil(8).next_multiple_of(16).max(least)
}

/// The tasks for an `[m, k] × [k, n]` product: the longer output axis in blocks where it has
/// two or more; otherwise the depth, each block's product summed afterwards, where the depth
/// is long and the output small (a weight's gradient over a batch of rows).
fn split(m: usize, n: usize, k: usize) -> Split {
    const LEAST: usize = 128;
    if m * n * k < SMALL {
        return Split::Whole;
    }
    let (rows, cols) = (m >= 2 * LEAST, n >= 2 * LEAST);
    match (rows, cols) {
        (true, false) => Split::Rows(block(m, LEAST)),
        (false, true) => Split::Cols(block(n, LEAST)),
        (true, true) if m >= n => Split::Rows(block(m, LEAST)),
        (true, true) => Split::Cols(block(n, LEAST)),
        (false, false) if k >= 4 * LEAST => Split::Depth(block(k, 4 * LEAST)),
        (false, false) => Split::Whole,
    }
}

/// A destination pointer the column tasks share; each writes its own columns.
#[derive(Clone, Copy)]
struct Dst(*mut f32);
// SAFETY: the column tasks write disjoint columns of the destination.
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}

impl Dst {
    /// The destination from element `offset` on (a method, so that closures take the whole
    /// `Dst`, which is `Send`, not its pointer field).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `lhs[m, k] × rhs[k, n]`, row-major, over every core.
pub(super) fn matmul_parallel(m: usize, n: usize, k: usize, lhs: View, rhs: View) -> Vec<f32> {
    assert!(lhs.covers(m, k) && rhs.covers(k, n));
    // Written whole by the products below, so never zero-filled first: that fill was a
    // pass over every output, a tenth of a token product's time.
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let dst = Dst(out.as_mut_ptr());
    match split(m, n, k) {
        // SAFETY (all three): each call writes its own rows or columns of the m x n output,
        // which `out` has room for; the operands cover their blocks (asserted above).
        Split::Whole => unsafe { product(dst.at(0), n, m, n, k, false, lhs, rhs) },
        Split::Rows(b) => (0..m.div_ceil(b)).into_par_iter().for_each(|i| {
            let rows = b.min(m - i * b);
            unsafe {
                product(
                    dst.at(i * b * n),
                    n,
                    rows,
                    n,
                    k,
                    false,
                    lhs.from(i * b, 0),
                    rhs,
                )
            };
        }),
        Split::Cols(b) => (0..n.div_ceil(b)).into_par_iter().for_each(|j| {
            let cols = b.min(n - j * b);
            unsafe { product(dst.at(j * b), n, m, cols, k, false, lhs, rhs.from(0, j * b)) };
        }),
        Split::Depth(b) => {
            let parts: Vec<Vec<f32>> = (0..k.div_ceil(b))
                .into_par_iter()
                .map(|d| {
                    let depth = b.min(k - d * b);
                    let mut part = vec![0.0f32; m * n];
                    matmul(
                        &mut part,
                        m,
                        n,
                        depth,
                        false,
                        lhs.from(0, d * b),
                        rhs.from(d * b, 0),
                    );
                    part
                })
                .collect();
            // One part or more: depth blocks exist only for a depth of 512 or more.
            out.extend_from_slice(&parts[0]);
            for part in &parts[1..] {
                for (o, &p) in out.iter_mut().zip(part) {
                    *o += p;
                }
            }
            return out;
        }
    }
    // SAFETY: the products above wrote all m x n values (`product` writes every value of its
    // block, zeros when the depth is 0).
    unsafe { out.set_len(m * n) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain triple loop in f64.
    fn naive(m: usize, n: usize, k: usize, lhs: View, rhs: View) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|p| {
                        f64::from(lhs.data[i * lhs.row + p * lhs.col])
                            * f64::from(rhs.data[p * rhs.row + j * rhs.col])
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn every_split_computes_the_product() {
        let values = |len: usize, seed: u64| {
            crate::test_data::seeded_values(len, burn::tensor::Distribution::Normal(0.0, 1.0), seed)
        };
        // One shape per split: whole, rows, columns, both long (rows and columns), depth, and
        // an empty depth.
        for (m, n, k, expected) in [
            (5, 7, 3, Split::Whole),
            (700, 40, 30, Split::Rows(128)),
            (40, 600, 30, Split::Cols(128)),
            (300, 260, 8, Split::Rows(128)),
            (30, 20, 2_100, Split::Depth(512)),
            (300, 300, 0, Split::Whole),
        ] {
            assert_eq!(split(m, n, k), expected, "{m}x{n}x{k}");
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            // Row-major, then both transposed in memory.
            let (a_t, b_t): (Vec<f32>, Vec<f32>) = (
                (0..m * k).map(|i| a[(i % m) * k + i / m]).collect(),
                (0..k * n).map(|i| b[(i % k) * n + i / k]).collect(),
            );
            for (lhs, rhs) in [
                (View::rows(&a, k), View::rows(&b, n)),
                (View::transposed(&a_t, m), View::transposed(&b_t, k)),
            ] {
                let ours = matmul_parallel(m, n, k, lhs, rhs);
                let exact = naive(m, n, k, lhs, rhs);
                for (i, (&o, &e)) in ours.iter().zip(&exact).enumerate() {
                    assert!(
                        (f64::from(o) - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{m}x{n}x{k} at {i}: {o} against {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let a: Vec<f32> = (0..600 * 300).map(|i| ((i % 97) as f32).sin()).collect();
        let b: Vec<f32> = (0..300 * 500).map(|i| ((i % 89) as f32).cos()).collect();
        let run = |threads: usize, m: usize, n: usize, k: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| matmul_parallel(m, n, k, View::rows(&a, k), View::rows(&b, n)))
        };
        // Row blocks, column blocks and depth blocks.
        for (m, n, k) in [(600, 100, 300), (100, 500, 300), (60, 50, 2_000)] {
            let (a_len, b_len) = (m * k, k * n);
            assert!(a_len <= a.len() && b_len <= b.len());
            let one = run(1, m, n, k);
            for threads in [2, 3] {
                assert_eq!(
                    one,
                    run(threads, m, n, k),
                    "{m}x{n}x{k} on {threads} threads"
                );
            }
        }
    }
}
