//! Exact PCA: the eigendecomposition of the covariance (features × features) when there are more
//! rows than features, else of the Gram matrix (rows × rows). The products run on the data's
//! device in chunks; the small symmetric eigenproblem runs on the host in f64 (faer).

use burn::tensor::Tensor;
use faer::{Mat, Side};

use super::Spectrum;
use crate::error::{BaselineError, Result};
use crate::input::{tensor, to_vec};

pub(crate) fn spectrum(x: &Tensor<2>, mean: &Tensor<2>, chunk_rows: usize) -> Result<Spectrum> {
    let [n, d] = x.dims();
    if n >= d {
        covariance_route(x, mean, chunk_rows)
    } else {
        gram_route(x, mean)
    }
}

/// Descending eigenpairs of a symmetric matrix given row-major in f64.
fn eigh_descending(m: &[f64], size: usize) -> Result<(Vec<f64>, Mat<f64>)> {
    let mat = Mat::from_fn(size, size, |i, j| m[i * size + j]);
    let eig = mat
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| BaselineError::Numerical(format!("eigendecomposition failed: {e:?}")))?;
    let values = eig.S().column_vector();
    let order: Vec<usize> = (0..size).rev().collect();
    let vals = order.iter().map(|&i| values[i].max(0.0)).collect();
    let vecs = Mat::from_fn(size, size, |r, c| eig.U()[(r, order[c])]);
    Ok((vals, vecs))
}

/// Xcᵀ Xc accumulated over row chunks: each chunk's product in f32 on the device, the sum in f64.
fn covariance_route(x: &Tensor<2>, mean: &Tensor<2>, chunk_rows: usize) -> Result<Spectrum> {
    let [n, d] = x.dims();
    let mut scatter = vec![0f64; d * d];
    let mut start = 0;
    while start < n {
        let end = (start + chunk_rows).min(n);
        let xc = x.clone().slice([start..end, 0..d]) - mean.clone();
        let part = to_vec(&xc.clone().transpose().matmul(xc));
        for (acc, v) in scatter.iter_mut().zip(part) {
            *acc += v as f64;
        }
        start = end;
    }
    let total_variance = (0..d).map(|i| scatter[i * d + i]).sum::<f64>() / (n as f64 - 1.0);
    let (eigvals, vecs) = eigh_descending(&scatter, d)?;
    let keep = n.min(d);
    let mut components = Vec::with_capacity(keep * d);
    for c in 0..keep {
        components.extend((0..d).map(|r| vecs[(r, c)]));
    }
    Ok(Spectrum {
        singular_values: eigvals[..keep].iter().map(|v| v.sqrt()).collect(),
        components,
        total_variance,
    })
}

/// Xc Xcᵀ = U S² Uᵀ, then components V = Xcᵀ U / S.
fn gram_route(x: &Tensor<2>, mean: &Tensor<2>) -> Result<Spectrum> {
    let [n, d] = x.dims();
    let xc = x.clone() - mean.clone();
    let gram: Vec<f64> = to_vec(&xc.clone().matmul(xc.clone().transpose()))
        .into_iter()
        .map(f64::from)
        .collect();
    let total_variance = (0..n).map(|i| gram[i * n + i]).sum::<f64>() / (n as f64 - 1.0);
    let (eigvals, u) = eigh_descending(&gram, n)?;
    // Directions with no variance (at most the last, from centring) have no defined component.
    let tol = eigvals[0].max(f64::MIN_POSITIVE) * 1e-12;
    let keep = eigvals.iter().take_while(|&&v| v > tol).count().max(1);
    let s: Vec<f64> = eigvals[..keep].iter().map(|v| v.sqrt()).collect();
    let mut u_scaled = Vec::with_capacity(n * keep);
    for r in 0..n {
        u_scaled.extend((0..keep).map(|c| (u[(r, c)] / s[c]) as f32));
    }
    let v = xc
        .transpose()
        .matmul(tensor(u_scaled, n, keep, &x.device())); // [d, keep]
    let v = to_vec(&v);
    let mut components = Vec::with_capacity(keep * d);
    for c in 0..keep {
        components.extend((0..d).map(|r| v[r * keep + c] as f64));
    }
    Ok(Spectrum {
        singular_values: s,
        components,
        total_variance,
    })
}
