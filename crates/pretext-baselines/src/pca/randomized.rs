//! Randomized PCA (Halko, Martinsson & Tropp, 2011, algorithms 4.4 and 5.1): a Gaussian sketch
//! of the range of the centred data, refined by power iterations with QR re-orthonormalisation,
//! then the exact SVD of the small projected matrix. The products run on the data's device; the
//! thin QR and SVD of small matrices run on the host (faer).

use burn::tensor::Tensor;
use faer::Mat;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Spectrum;
use crate::error::{BaselineError, Result};
use crate::input::{tensor, to_vec};

/// An orthonormal basis of the columns of `y` (`[rows, cols]`), as a tensor on `y`'s device.
fn orthonormalise(y: Tensor<2>) -> Tensor<2> {
    let [rows, cols] = y.dims();
    let values = to_vec(&y);
    let m = Mat::from_fn(rows, cols, |i, j| values[i * cols + j] as f64);
    let q = m.qr().compute_thin_Q();
    let mut out = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        out.extend((0..cols).map(|j| q[(i, j)] as f32));
    }
    tensor(out, rows, cols, &y.device())
}

/// `len` standard normal values (Box-Muller).
fn gaussian(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln stays finite
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

pub(crate) fn spectrum(
    x: &Tensor<2>,
    mean: &Tensor<2>,
    k: usize,
    oversamples: usize,
    power_iterations: usize,
    seed: u64,
) -> Result<Spectrum> {
    let [n, d] = x.dims();
    let device = x.device();
    let sketch = (k + oversamples).min(n.min(d));
    let xc = x.clone() - mean.clone();
    let total_variance =
        f64::from(xc.clone().square().sum().into_scalar::<f32>()) / (n as f64 - 1.0);

    // Drawn on the host from our own generator: the same sketch on every device and thread.
    let omega = tensor(gaussian(d * sketch, seed), d, sketch, &device);
    let mut q = orthonormalise(xc.clone().matmul(omega)); // [n, sketch]
    for _ in 0..power_iterations {
        let z = orthonormalise(xc.clone().transpose().matmul(q)); // [d, sketch]
        q = orthonormalise(xc.clone().matmul(z));
    }
    let b = to_vec(&q.transpose().matmul(xc)); // [sketch, d]
    let bm = Mat::from_fn(sketch, d, |i, j| b[i * d + j] as f64);
    let svd = bm
        .thin_svd()
        .map_err(|e| BaselineError::Numerical(format!("SVD failed: {e:?}")))?;
    let s = svd.S().column_vector();
    let v = svd.V();
    let mut components = Vec::with_capacity(k * d);
    for c in 0..k {
        components.extend((0..d).map(|r| v[(r, c)]));
    }
    Ok(Spectrum {
        singular_values: (0..k).map(|i| s[i]).collect(),
        components,
        total_variance,
    })
}
