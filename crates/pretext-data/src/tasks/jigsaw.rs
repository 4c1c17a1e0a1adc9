//! Jigsaw puzzles (Noroozi & Favaro 2016): cut a G x G grid of tiles from a centred square crop,
//! shuffle them by one of P fixed permutations, and ask which one. Each tile is cut from its cell
//! at a random offset (the jitter), so a model cannot solve the puzzle by matching edge pixels.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{PretextTask, Samples, invalid};
use crate::dataset::ImageShape;
use crate::error::Result;
use crate::pixels::{Rect, crop};

/// Jigsaw settings. Defaults: a 3 x 3 grid, 100 permutations, 1 pixel of jitter, the largest
/// centred square crop whose side is a multiple of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JigsawConfig {
    /// Tiles per side (G).
    pub grid: usize,
    /// Size of the permutation set (P), at most (G * G)!.
    pub permutations: usize,
    /// Side of the centred square crop the grid is cut from; must be a multiple of `grid`.
    pub crop: Option<usize>,
    /// Each tile is `jitter` pixels smaller than its cell and placed at a random offset in it.
    pub jitter: usize,
}

impl Default for JigsawConfig {
    fn default() -> Self {
        Self {
            grid: 3,
            permutations: 100,
            crop: None,
            jitter: 1,
        }
    }
}

/// Permutation sets beyond this many tiles are chosen from a seeded sample of candidates rather
/// than from all (G * G)! permutations.
const EXHAUSTIVE_TILES: usize = 9;
const SAMPLED_CANDIDATES: usize = 20_000;

impl JigsawConfig {
    pub fn build(&self, shape: ImageShape) -> Result<JigsawTask> {
        let task = "jigsaw";
        if shape.is_empty() {
            return Err(invalid(task, format!("image shape {shape} has no pixels")));
        }
        if self.grid < 2 {
            return Err(invalid(
                task,
                format!("grid = {} must be at least 2", self.grid),
            ));
        }
        let fits = shape.height.min(shape.width);
        let side = self.crop.unwrap_or(fits / self.grid * self.grid);
        if side == 0 || side > fits {
            return Err(invalid(
                task,
                format!(
                    "a {side} x {side} crop does not fit {}x{} images with a {} x {} grid",
                    shape.height, shape.width, self.grid, self.grid
                ),
            ));
        }
        if !side.is_multiple_of(self.grid) {
            return Err(invalid(
                task,
                format!("grid = {} does not divide the crop side {side}", self.grid),
            ));
        }
        let cell = side / self.grid;
        if self.jitter >= cell {
            return Err(invalid(
                task,
                format!(
                    "jitter = {} leaves nothing of {cell}-pixel cells; use less than {cell}",
                    self.jitter
                ),
            ));
        }
        let permutations = PermutationSet::generate(self.grid, self.permutations)?;
        Ok(JigsawTask {
            shape,
            grid: self.grid,
            crop: Rect {
                top: (shape.height - side) / 2,
                left: (shape.width - side) / 2,
                height: side,
                width: side,
            },
            cell,
            jitter: self.jitter,
            permutations,
        })
    }
}

/// A fixed set of tile permutations, chosen greedily so that the smallest Hamming distance between
/// any two is as large as possible (each new one maximises its distance to the nearest chosen
/// one, starting from the identity). Deterministic: the same G and P always give the same set, so
/// a run's labels mean the same thing everywhere; it is also saved with the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermutationSet {
    pub grid: usize,
    /// `permutations[label][position]` is the index (row-major) of the tile placed at `position`.
    pub permutations: Vec<Vec<u8>>,
    /// The smallest Hamming distance between two permutations of the set.
    pub min_hamming: usize,
}

impl PermutationSet {
    pub fn generate(grid: usize, count: usize) -> Result<Self> {
        let n = grid * grid;
        if n > u8::MAX as usize {
            return Err(invalid(
                "jigsaw",
                format!("grid = {grid} has too many tiles"),
            ));
        }
        let limit = factorial(n);
        if count < 2 || count as u128 > limit {
            return Err(invalid(
                "jigsaw",
                format!(
                    "permutations = {count} must lie between 2 and {n}! = {limit} for a {grid} x {grid} grid"
                ),
            ));
        }
        let candidates = if n <= EXHAUSTIVE_TILES {
            all_permutations(n)
        } else {
            sampled_permutations(n, SAMPLED_CANDIDATES.max(count * 4))
        };
        let m = candidates.len() / n;
        let candidate = |i: usize| &candidates[i * n..(i + 1) * n];
        // Candidate 0 is the identity. min_dist[i]: distance from candidate i to the chosen set.
        let mut min_dist = vec![u8::MAX; m];
        let mut chosen = Vec::with_capacity(count);
        let mut next = 0;
        let mut min_hamming = n;
        while chosen.len() < count {
            let picked = candidate(next).to_vec();
            let mut best = (0u8, 0usize);
            for (i, d) in min_dist.iter_mut().enumerate() {
                let h = hamming(&picked, candidate(i));
                if h < *d {
                    *d = h;
                }
                if *d > best.0 {
                    best = (*d, i);
                }
            }
            chosen.push(picked);
            if chosen.len() < count {
                min_hamming = min_hamming.min(best.0 as usize);
            }
            next = best.1;
        }
        Ok(Self {
            grid,
            permutations: chosen,
            min_hamming,
        })
    }

    pub fn len(&self) -> usize {
        self.permutations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.permutations.is_empty()
    }

    /// `inverse(label)[tile]` is the position where `tile` was placed.
    pub fn inverse(&self, label: usize) -> Vec<u8> {
        let p = &self.permutations[label];
        let mut inv = vec![0u8; p.len()];
        for (position, &tile) in p.iter().enumerate() {
            inv[tile as usize] = position as u8;
        }
        inv
    }
}

fn hamming(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).filter(|(x, y)| x != y).count() as u8
}

fn factorial(n: usize) -> u128 {
    (1..=n as u128).fold(1u128, |acc, k| acc.saturating_mul(k))
}

/// Every permutation of `0..n` in lexicographic order, flattened.
fn all_permutations(n: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..n as u8).collect();
    let mut out = Vec::with_capacity(factorial(n) as usize * n);
    loop {
        out.extend_from_slice(&p);
        // Next lexicographic permutation (Narayana Pandita).
        let Some(i) = (0..n.saturating_sub(1)).rev().find(|&i| p[i] < p[i + 1]) else {
            return out;
        };
        let j = (i + 1..n).rev().find(|&j| p[j] > p[i]).unwrap_or(i + 1);
        p.swap(i, j);
        p[i + 1..].reverse();
    }
}

/// The identity followed by distinct random permutations from a fixed seed, flattened.
fn sampled_permutations(n: usize, count: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let identity: Vec<u8> = (0..n as u8).collect();
    let mut seen = HashSet::from([identity.clone()]);
    let mut out = identity;
    while seen.len() < count {
        let mut p: Vec<u8> = (0..n as u8).collect();
        p.shuffle(&mut rng);
        if seen.insert(p.clone()) {
            out.extend_from_slice(&p);
        }
    }
    out
}

/// Cuts and shuffles tiles; label `k` means permutation `k` of [`JigsawTask::permutations`].
#[derive(Debug, Clone)]
pub struct JigsawTask {
    shape: ImageShape,
    grid: usize,
    crop: Rect,
    cell: usize,
    jitter: usize,
    permutations: PermutationSet,
}

impl JigsawTask {
    pub fn permutations(&self) -> &PermutationSet {
        &self.permutations
    }

    pub fn grid(&self) -> usize {
        self.grid
    }

    pub fn tiles_per_image(&self) -> usize {
        self.grid * self.grid
    }

    /// The centred square the grid is cut from.
    pub fn crop_rect(&self) -> Rect {
        self.crop
    }

    /// The shape of one tile.
    pub fn tile_shape(&self) -> ImageShape {
        let side = self.cell - self.jitter;
        ImageShape::new(self.shape.channels, side, side)
    }
}

/// Tiles in their shuffled order and the permutation labels, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct JigsawBatch {
    pub tile_shape: ImageShape,
    pub tiles_per_image: usize,
    /// `targets.len() * tiles_per_image` tiles; the tiles of one image are consecutive, in the
    /// order of their positions in the shuffled grid.
    pub tiles: Vec<f32>,
    pub targets: Vec<u32>,
}

/// [`JigsawBatch`] on a device.
#[derive(Debug, Clone)]
pub struct JigsawTensors {
    /// `[batch * tiles_per_image, channels, tile, tile]`.
    pub tiles: Tensor<4>,
    /// `[batch]`.
    pub targets: Tensor<1, Int>,
    pub tiles_per_image: usize,
}

impl JigsawBatch {
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub fn into_tensors(self, device: &Device) -> JigsawTensors {
        let s = self.tile_shape;
        let n = self.len();
        let tiles = TensorData::new(
            self.tiles,
            [n * self.tiles_per_image, s.channels, s.height, s.width],
        );
        let targets: Vec<i64> = self.targets.iter().map(|&t| t as i64).collect();
        JigsawTensors {
            tiles: Tensor::from_data(tiles, device),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
            tiles_per_image: self.tiles_per_image,
        }
    }
}

impl PretextTask for JigsawTask {
    type Batch = JigsawBatch;

    fn input_shape(&self) -> ImageShape {
        self.shape
    }

    fn make_batch(&self, samples: &Samples<'_>) -> JigsawBatch {
        let tile_shape = self.tile_shape();
        let t = self.tiles_per_image();
        let mut tiles = vec![0.0; samples.len() * t * tile_shape.len()];
        let mut targets = Vec::with_capacity(samples.len());
        let mut image = Vec::with_capacity(self.shape.len());
        for (i, bytes) in samples.images.iter().enumerate() {
            let mut rng = samples.rng(i);
            image.clear();
            samples
                .norm
                .extend_normalized(bytes, self.shape, &mut image);
            let label = rng.random_range(0..self.permutations.len());
            targets.push(label as u32);
            for (position, &tile) in self.permutations.permutations[label].iter().enumerate() {
                let (row, col) = (tile as usize / self.grid, tile as usize % self.grid);
                let rect = Rect {
                    top: self.crop.top + row * self.cell + rng.random_range(0..=self.jitter),
                    left: self.crop.left + col * self.cell + rng.random_range(0..=self.jitter),
                    height: tile_shape.height,
                    width: tile_shape.width,
                };
                let at = (i * t + position) * tile_shape.len();
                crop(
                    &image,
                    self.shape,
                    rect,
                    &mut tiles[at..at + tile_shape.len()],
                );
            }
        }
        JigsawBatch {
            tile_shape,
            tiles_per_image: t,
            tiles,
            targets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_permutations_of_three_are_six_distinct_ones() {
        let all = all_permutations(3);
        assert_eq!(all.len(), 18);
        let set: HashSet<&[u8]> = all.chunks(3).collect();
        assert_eq!(set.len(), 6);
        assert_eq!(&all[..3], &[0, 1, 2]);
    }

    #[test]
    fn all_24_permutations_of_a_2x2_grid_can_be_used() {
        let set = PermutationSet::generate(2, 24).unwrap();
        assert_eq!(set.len(), 24);
        assert_eq!(set.min_hamming, 2);
        assert!(PermutationSet::generate(2, 25).is_err());
    }

    #[test]
    fn larger_grids_sample_their_candidates() {
        let set = PermutationSet::generate(4, 10).unwrap();
        assert_eq!(set.len(), 10);
        assert!(set.min_hamming >= 12, "min Hamming {}", set.min_hamming);
    }
}
