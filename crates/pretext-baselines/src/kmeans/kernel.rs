//! Distance kernels on host rows. On x86-64 they are written again with AVX2/FMA and with
//! AVX-512 intrinsics, the widest the CPU has chosen at run time, so one portable binary still
//! runs the wide instructions; elsewhere the portable version (auto-vectorised lanes) runs.
//!
//! Every version computes a row pair against a tile of centres at once: the pair's independent
//! accumulators hide the FMA latency, and each centre load serves both rows. One driver,
//! [`for_pairs`], walks the pairs and tiles for all of them.

use std::sync::OnceLock;

/// Lanes of the portable accumulators, as in one AVX2 register of f32.
const LANES: usize = 8;
/// The widest tile of centres any version takes.
const MAX_TILE: usize = 8;

/// What a pair kernel computes for rows `a` and `b` against one tile of centres.
#[derive(Default)]
struct PairOut {
    /// `[a's, b's]` dot products with the tile's centres.
    dots: [[f32; MAX_TILE]; 2],
    /// `[a · a, b · b]`, from the same loads (a spare accumulator per row).
    norms: [f32; 2],
}

/// The widest instructions the CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Portable,
    Avx2,
    Avx512,
}

fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if avx2 && is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if avx2 {
                return Level::Avx2;
            }
        }
        Level::Portable
    })
}

fn wide() -> bool {
    level() >= Level::Avx2
}

/// Calls `$f::<T>(args…)` with the constant `T` equal to the tile width `$t` (0 to 8): constant
/// widths keep the accumulators in registers.
macro_rules! with_tile_width {
    ($t:expr, $f:ident($($arg:expr),*)) => {
        match $t {
            8 => $f::<8>($($arg),*),
            7 => $f::<7>($($arg),*),
            6 => $f::<6>($($arg),*),
            5 => $f::<5>($($arg),*),
            4 => $f::<4>($($arg),*),
            3 => $f::<3>($($arg),*),
            2 => $f::<2>($($arg),*),
            1 => $f::<1>($($arg),*),
            _ => $f::<0>($($arg),*),
        }
    };
}

/// `dots` and its row-pair kernel for one x86 instruction set, from its vector type and
/// intrinsics (zero, unaligned load, fused multiply-add, horizontal sum); the module that calls
/// it defines `LANES` (f32 per vector) and `PAIR_TILE` (centres per pass).
#[cfg(target_arch = "x86_64")]
macro_rules! pair_kernels {
    ($features:literal, $vec:ty, $zero:ident, $load:ident, $fma:ident, $sum:ident) => {
        /// # Safety
        /// The CPU must support the module's instructions; shapes as [`super::dots`] asserts.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn dots(
            rows: &[f32],
            d: usize,
            centers: &[f32],
            out: &mut [f32],
            norms: &mut [f32],
        ) {
            super::for_pairs(
                rows,
                d,
                centers,
                out,
                norms,
                PAIR_TILE,
                |t, a, b, c, slots| {
                    // SAFETY: the caller's CPU features; `for_pairs` passes `t` rows of `d`
                    // values.
                    unsafe { with_tile_width!(t, pair_tile(a, b, c, slots)) }
                },
            );
        }

        /// Two rows against `T` centres into `slots.dots`, and both rows' norms into
        /// `slots.norms`.
        ///
        /// # Safety
        /// The module's instructions; `a` and `b` have the same length `d`; `centers` holds `T`
        /// rows of `d` values.
        #[target_feature(enable = $features)]
        unsafe fn pair_tile<const T: usize>(
            a: &[f32],
            b: &[f32],
            centers: &[f32],
            slots: &mut PairOut,
        ) {
            let d = a.len();
            assert!(b.len() == d && centers.len() >= T * d && T <= super::MAX_TILE);
            let full = d - d % LANES;
            let (pa, pb, c) = (a.as_ptr(), b.as_ptr(), centers.as_ptr());
            let mut acc_a: [$vec; T] = [$zero(); T];
            let mut acc_b: [$vec; T] = [$zero(); T];
            let (mut sq_a, mut sq_b) = ($zero(), $zero());
            let mut i = 0;
            while i < full {
                // SAFETY: `i + LANES <= full <= d`, and each centre row is `d` long.
                unsafe {
                    let xa = $load(pa.add(i));
                    let xb = $load(pb.add(i));
                    sq_a = $fma(xa, xa, sq_a);
                    sq_b = $fma(xb, xb, sq_b);
                    for t in 0..T {
                        let ct = $load(c.add(t * d + i));
                        acc_a[t] = $fma(xa, ct, acc_a[t]);
                        acc_b[t] = $fma(xb, ct, acc_b[t]);
                    }
                }
                i += LANES;
            }
            for t in 0..T {
                let (mut sa, mut sb) = ($sum(acc_a[t]), $sum(acc_b[t]));
                for i in full..d {
                    sa = a[i].mul_add(centers[t * d + i], sa);
                    sb = b[i].mul_add(centers[t * d + i], sb);
                }
                slots.dots[0][t] = sa;
                slots.dots[1][t] = sb;
            }
            let (mut na, mut nb) = ($sum(sq_a), $sum(sq_b));
            for i in full..d {
                na = a[i].mul_add(a[i], na);
                nb = b[i].mul_add(b[i], nb);
            }
            slots.norms = [na, nb];
        }
    };
}

/// Dot products of each of the `m` rows of `rows` (`[m, d]`) with each row of `centers`
/// (`[k, d]`) into `out` (`[m, k]`), and each row's `row · row` into `norms` (`[m]`).
///
/// A few centres at a time meet every row of the block, so each tile of centres is loaded once
/// per block rather than once per row: one row against all centres would cycle more than L1
/// holds.
pub(crate) fn dots(rows: &[f32], d: usize, centers: &[f32], out: &mut [f32], norms: &mut [f32]) {
    let (m, k) = (rows.len() / d, centers.len() / d);
    assert!(out.len() >= m * k && norms.len() >= m && rows.len() == m * d);
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: the CPU supports the instructions (checked by `level`); shapes asserted.
        Level::Avx512 => return unsafe { avx512::dots(rows, d, centers, out, norms) },
        // SAFETY: as above.
        Level::Avx2 => return unsafe { avx2::dots(rows, d, centers, out, norms) },
        Level::Portable => {}
    }
    dots_portable(rows, d, centers, out, norms)
}

/// Runs `pair(t, a, b, tile, slots)` for every pair of rows `a`, `b` (the last row of an odd
/// count pairs with itself) and every tile of `t` (at most `max_tile`) centres, and copies the
/// dot products into `out` (`[m, k]`) and the first tile's norms into `norms` (`[m]`).
fn for_pairs(
    rows: &[f32],
    d: usize,
    centers: &[f32],
    out: &mut [f32],
    norms: &mut [f32],
    max_tile: usize,
    pair: impl Fn(usize, &[f32], &[f32], &[f32], &mut PairOut),
) {
    let (m, k) = (rows.len() / d, centers.len() / d);
    let mut j = 0;
    // With no centres, one empty tile still yields the norms.
    while j < k || (j == 0 && k == 0) {
        let t = tile_width(k, j, max_tile);
        let tile = &centers[j * d..(j + t) * d];
        for r in (0..m).step_by(2) {
            let s = (r + 1).min(m - 1);
            let (a, b) = (&rows[r * d..(r + 1) * d], &rows[s * d..(s + 1) * d]);
            let mut slots = PairOut::default();
            pair(t, a, b, tile, &mut slots);
            out[r * k + j..r * k + j + t].copy_from_slice(&slots.dots[0][..t]);
            out[s * k + j..s * k + j + t].copy_from_slice(&slots.dots[1][..t]);
            if j == 0 {
                (norms[r], norms[s]) = (slots.norms[0], slots.norms[1]);
            }
        }
        if t == 0 {
            break;
        }
        j += t;
    }
}

/// Width of the tile of centres starting at `j` of `k`: balanced, so 10 centres run as 5 + 5
/// rather than 8 + 2.
fn tile_width(k: usize, j: usize, max: usize) -> usize {
    let tiles = k.div_ceil(max).max(1);
    (k - j).div_ceil(tiles).min(k - j).min(max)
}

/// Asks the CPU to bring `data` into its L2 cache ahead of use: the next rows' strip, fetched
/// while the current one is computed.
pub(crate) fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let bytes = std::mem::size_of_val(data);
        let start = data.as_ptr().cast::<i8>();
        // One request per 64-byte line.
        for offset in (0..bytes).step_by(64) {
            // SAFETY: a prefetch never faults; the address is inside `data`.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(start.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// `out[i] = codes[i] as f32 * scale`, rounded as that product is, so decoded rows equal the
/// values they were encoded from bit for bit.
pub(crate) fn decode(codes: &[u8], scale: f32, out: &mut [f32]) {
    assert_eq!(codes.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU supports AVX2 (checked by `wide`).
        return unsafe { avx2::decode(codes, scale, out) };
    }
    decode_generic(codes, scale, out)
}

/// Writes `codes[i]` with `codes[i] as f32 * scale == values[i]`; false when some value has no
/// such code in 0..=255 (the codes written are then meaningless).
pub(crate) fn encode(values: &[f32], scale: f32, codes: &mut [u8]) -> bool {
    assert_eq!(values.len(), codes.len());
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU supports AVX2 (checked by `wide`).
        return unsafe { avx2::encode(values, scale, codes) };
    }
    encode_generic(values, scale, codes)
}

#[inline(always)]
fn encode_generic(values: &[f32], scale: f32, codes: &mut [u8]) -> bool {
    let inv = 1.0 / scale;
    let mut exact = true;
    // No early exit and no branches, so the loop vectorises; the nearest code of an exact value
    // is found by truncation after adding 0.5, and the product checks it.
    for (code, &v) in codes.iter_mut().zip(values) {
        let q = (v * inv + 0.5) as i32;
        exact &= (0..=255).contains(&q) && q as f32 * scale == v;
        *code = q as u8;
    }
    exact
}

/// The smallest positive value of `values` (infinity when none is).
pub(crate) fn min_positive(values: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU supports AVX2 (checked by `wide`).
        return unsafe { avx2::min_positive(values) };
    }
    min_positive_generic(values)
}

#[inline(always)]
fn min_positive_generic(values: &[f32]) -> f32 {
    // Lanes of running minima, so the loop vectorises.
    let mut min = [f32::INFINITY; LANES];
    for chunk in values.chunks(LANES) {
        for (m, &v) in min.iter_mut().zip(chunk) {
            *m = if v > 0.0 && v < *m { v } else { *m };
        }
    }
    min.into_iter().fold(f32::INFINITY, f32::min)
}

#[inline(always)]
fn decode_generic(codes: &[u8], scale: f32, out: &mut [f32]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = f32::from(c) * scale;
    }
}

/// `a · a`.
pub(crate) fn squared_norm(a: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU supports AVX2 and FMA; an empty `b` asks for the norm.
        return unsafe { avx2::squared_distance(a, &[]) };
    }
    norm_generic(a)
}

/// Squared Euclidean distance between `a` and `b` (of equal lengths).
pub(crate) fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: as above.
        return unsafe { avx2::squared_distance(a, b) };
    }
    squared_distance_generic(a, b)
}

/// Adds `row` to `sum`, element by element.
pub(crate) fn add_into(sum: &mut [f32], row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: as above.
        return unsafe { avx2::add_into(sum, row) };
    }
    for (s, v) in sum.iter_mut().zip(row) {
        *s += *v;
    }
}

fn dots_portable(rows: &[f32], d: usize, centers: &[f32], out: &mut [f32], norms: &mut [f32]) {
    for_pairs(
        rows,
        d,
        centers,
        out,
        norms,
        MAX_TILE,
        |t, a, b, c, slots| with_tile_width!(t, pair_tile(a, b, c, slots)),
    );
}

/// The kernels with AVX2/FMA intrinsics: no bounds checks in the inner loops.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{LANES, PairOut};

    /// 2 x 5 dot and 2 norm accumulators, two rows and a centre fill 15 of the 16 vector
    /// registers.
    const PAIR_TILE: usize = 5;

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)))
    }

    pair_kernels!(
        "avx2,fma",
        __m256,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        hsum
    );

    /// # Safety
    /// AVX2 and FMA; `b` is empty or as long as `a`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
        let d = a.len();
        let norm = b.is_empty();
        assert!(norm || b.len() == d);
        let full = d - d % LANES;
        // Two independent sums, so consecutive FMAs do not wait on each other.
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let diff = |i: usize| {
            // SAFETY: callers pass `i + LANES <= d` for both slices.
            unsafe {
                let v = _mm256_loadu_ps(a.as_ptr().add(i));
                if norm {
                    v
                } else {
                    _mm256_sub_ps(v, _mm256_loadu_ps(b.as_ptr().add(i)))
                }
            }
        };
        let mut i = 0;
        while i + 2 * LANES <= full {
            let (v0, v1) = (diff(i), diff(i + LANES));
            acc0 = _mm256_fmadd_ps(v0, v0, acc0);
            acc1 = _mm256_fmadd_ps(v1, v1, acc1);
            i += 2 * LANES;
        }
        if i < full {
            let v = diff(i);
            acc0 = _mm256_fmadd_ps(v, v, acc0);
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        for i in full..d {
            let t = if norm { a[i] } else { a[i] - b[i] };
            s = t.mul_add(t, s);
        }
        s
    }

    /// The portable loop, compiled for AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn encode(values: &[f32], scale: f32, codes: &mut [u8]) -> bool {
        super::encode_generic(values, scale, codes)
    }

    /// The portable loop, compiled for AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn min_positive(values: &[f32]) -> f32 {
        super::min_positive_generic(values)
    }

    /// The portable loop, compiled for AVX2: eight codes widen, convert and scale per step.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn decode(codes: &[u8], scale: f32, out: &mut [f32]) {
        super::decode_generic(codes, scale, out)
    }

    /// # Safety
    /// AVX2; `sum` and `row` have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn add_into(sum: &mut [f32], row: &[f32]) {
        let d = row.len();
        assert_eq!(sum.len(), d);
        let full = d - d % LANES;
        let mut i = 0;
        while i < full {
            // SAFETY: `i + LANES <= d` for both slices.
            unsafe {
                let p = sum.as_mut_ptr().add(i);
                _mm256_storeu_ps(
                    p,
                    _mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(row.as_ptr().add(i))),
                );
            }
            i += LANES;
        }
        for i in full..d {
            sum[i] += row[i];
        }
    }
}

/// The AVX-512 kernels: sixteen lanes and thirty-two registers, so a row pair meets up to eight
/// centres per pass (sixteen accumulators).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::PairOut;

    const LANES: usize = 16;
    const PAIR_TILE: usize = 8;

    pair_kernels!(
        "avx512f,avx2,fma",
        __m512,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_fmadd_ps,
        _mm512_reduce_add_ps
    );
}

#[inline(always)]
fn lane_sum(acc: [f32; LANES]) -> f32 {
    let s4: [f32; 4] = std::array::from_fn(|l| acc[l] + acc[l + 4]);
    (s4[0] + s4[2]) + (s4[1] + s4[3])
}

fn norm_generic(row: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for x in chunks {
        for l in 0..LANES {
            acc[l] += x[l] * x[l];
        }
    }
    let mut s = lane_sum(acc);
    for &v in rest {
        s += v * v;
    }
    s
}

/// The portable pair kernel, in lanes the compiler vectorises.
#[inline(always)]
fn pair_tile<const T: usize>(a: &[f32], b: &[f32], centers: &[f32], slots: &mut PairOut) {
    let d = a.len();
    let full = d - d % LANES;
    let mut acc = [[[0f32; LANES]; T]; 2];
    let mut i = 0;
    while i < full {
        let (xa, xb) = (&a[i..i + LANES], &b[i..i + LANES]);
        for t in 0..T {
            let c = &centers[t * d + i..t * d + i + LANES];
            for l in 0..LANES {
                acc[0][t][l] += xa[l] * c[l];
                acc[1][t][l] += xb[l] * c[l];
            }
        }
        i += LANES;
    }
    for t in 0..T {
        for (row, (acc, dots)) in [a, b]
            .into_iter()
            .zip(acc.iter().zip(slots.dots.iter_mut()))
        {
            let mut s = lane_sum(acc[t]);
            for i in full..d {
                s += row[i] * centers[t * d + i];
            }
            dots[t] = s;
        }
    }
    slots.norms = [norm_generic(a), norm_generic(b)];
}

#[inline(always)]
fn squared_distance_generic(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            let t = x[l] - y[l];
            acc[l] += t * t;
        }
    }
    let mut s = lane_sum(acc);
    for (x, y) in ra.iter().zip(rb) {
        let t = x - y;
        s += t * t;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Every kernel this CPU can run: `(name, dots)`.
    #[allow(clippy::type_complexity)]
    fn paths() -> Vec<(
        &'static str,
        fn(&[f32], usize, &[f32], &mut [f32], &mut [f32]),
    )> {
        let mut paths: Vec<(
            &'static str,
            fn(&[f32], usize, &[f32], &mut [f32], &mut [f32]),
        )> = vec![("portable", dots_portable), ("dispatched", dots)];
        #[cfg(target_arch = "x86_64")]
        {
            if level() >= Level::Avx2 {
                // SAFETY: the CPU has AVX2 and FMA.
                paths.push(("avx2", |r, d, c, o, n| unsafe { avx2::dots(r, d, c, o, n) }));
            }
            if level() >= Level::Avx512 {
                // SAFETY: the CPU has AVX-512F, AVX2 and FMA.
                paths.push(("avx512", |r, d, c, o, n| unsafe {
                    avx512::dots(r, d, c, o, n)
                }));
            }
        }
        paths
    }

    #[test]
    fn kernels_match_plain_sums_for_every_tile_width_and_remainder() {
        for d in [1, 7, 8, 9, 17, 31, 784] {
            for k in [0, 1, 3, 8, 10, 17] {
                for m in [1, 3, 4] {
                    let rows = values(m * d, 1);
                    let centers = values(k * d, 2);
                    for (name, path) in paths() {
                        let (mut out, mut norms) = (vec![0f32; m * k], vec![0f32; m]);
                        path(&rows, d, &centers, &mut out, &mut norms);
                        for (r, row) in rows.chunks_exact(d).enumerate() {
                            let plain_sq: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum();
                            for sq in [norms[r], squared_norm(row)] {
                                assert!((sq as f64 - plain_sq).abs() <= 1e-4 * (1.0 + plain_sq));
                            }
                            for j in 0..k {
                                let c = &centers[j * d..(j + 1) * d];
                                let plain: f64 =
                                    row.iter().zip(c).map(|(&a, &b)| a as f64 * b as f64).sum();
                                let err = (out[r * k + j] as f64 - plain).abs();
                                assert!(
                                    err <= 1e-4 * (1.0 + plain.abs()),
                                    "{name}: d {d} k {k} m {m}"
                                );
                            }
                        }
                    }
                    for row in rows.chunks_exact(d) {
                        for c in centers.chunks_exact(d) {
                            let dist: f64 = row
                                .iter()
                                .zip(c)
                                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                                .sum();
                            for ours in [squared_distance(row, c), squared_distance_generic(row, c)]
                            {
                                assert!((ours as f64 - dist).abs() <= 1e-4 * (1.0 + dist));
                            }
                        }
                    }
                }
            }
        }
    }
}
