//! Seeded test tensors. Burn's generator is one per process and tests run side by side, so a
//! test drawing from it gets other values on every run; these draw from their own seed.

use burn::tensor::{Device, Distribution, Tensor, TensorData};

/// SplitMix64: each call a uniform `u64`.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1).
fn uniform(state: &mut u64) -> f64 {
    (next(state) >> 11) as f64 / (1u64 << 53) as f64
}

/// A tensor of `dims` drawn from `distribution` (`Default`, `Uniform` or `Normal`) with
/// `seed`, the same on every run.
pub(crate) fn seeded<const D: usize>(
    dims: [usize; D],
    distribution: Distribution,
    seed: u64,
    device: &Device,
) -> Tensor<D> {
    let values = seeded_values(dims.iter().product(), distribution, seed);
    Tensor::from_data(TensorData::new(values, dims), device)
}

/// `len` values drawn as [`seeded`] draws a tensor's, for kernels' tests on plain buffers.
pub(crate) fn seeded_values(len: usize, distribution: Distribution, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| match distribution {
            Distribution::Normal(mean, std) => {
                // Box-Muller.
                let (u, v) = (uniform(&mut state).max(1e-300), uniform(&mut state));
                let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                (mean + std * z) as f32
            }
            Distribution::Uniform(low, high) => (low + (high - low) * uniform(&mut state)) as f32,
            _ => uniform(&mut state) as f32,
        })
        .collect()
}

/// `module` with every float parameter redrawn uniformly from `[-scale, scale]` with seeds
/// from `seed` on: weights that stay the same on every run, where a module's own
/// initialisation draws from Burn's generator, which tests running side by side share.
pub(crate) fn redrawn<M: burn::module::Module>(module: M, seed: u64, scale: f64) -> M {
    struct Redraw {
        seed: u64,
        scale: f64,
    }
    impl burn::module::ModuleMapper for Redraw {
        fn map_float<const D: usize>(
            &mut self,
            p: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            self.seed += 1;
            let (seed, scale) = (self.seed, self.scale);
            p.map(|t| {
                let values = seeded(
                    t.dims(),
                    Distribution::Uniform(-scale, scale),
                    seed,
                    &t.device(),
                );
                values.detach().require_grad()
            })
        }
    }
    module.map(&mut Redraw { seed, scale })
}
