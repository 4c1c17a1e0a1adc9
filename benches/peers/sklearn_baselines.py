#!/usr/bin/env python3
"""scikit-learn's side of `cargo bench --bench baselines`: the same K-means and PCA work on the
same data, timed the same way (median of repetitions after a warm-up), printed as one JSON line.

Usage: sklearn_baselines.py DATA_DIR INIT_CENTERS.npy REPEATS PCA50.npy GMM_MEANS.npy
"""
import gzip
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from sklearn.mixture import GaussianMixture


def read_idx_images(path):
    data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    n, rows, cols = struct.unpack(">III", data[4:16])
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows * cols)


def timed(fn, repeats):
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def main():
    data_dir, init_path, repeats = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    z = np.load(sys.argv[4]).astype(np.float64)
    gmm_means = np.load(sys.argv[5]).astype(np.float64)
    name = next(p for p in data_dir.iterdir() if p.name.startswith("train-images"))
    # float32, as pretext computes, scaled to [0, 1].
    x = read_idx_images(name).astype(np.float32) / 255.0
    init = np.load(init_path).astype(np.float32)
    out = {"rows": x.shape[0], "features": x.shape[1]}
    try:
        from threadpoolctl import threadpool_info
        out["blas"] = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads"))
                       for i in threadpool_info()]
    except ImportError:
        pass

    t, km = timed(lambda: KMeans(init.shape[0], init=init, n_init=1, algorithm="lloyd").fit(x), repeats)
    out["kmeans_lloyd"] = {"seconds": t, "inertia": float(km.inertia_), "n_iter": int(km.n_iter_)}
    t, km = timed(lambda: KMeans(init.shape[0], init=init, n_init=1, algorithm="elkan").fit(x), repeats)
    out["kmeans_elkan"] = {"seconds": t, "inertia": float(km.inertia_), "n_iter": int(km.n_iter_)}
    for solver in ["full", "randomized"]:
        t, p = timed(lambda: PCA(50, svd_solver=solver, random_state=0).fit(x), repeats)
        out[f"pca50_{solver}"] = {"seconds": t, "explained_variance_ratio": float(p.explained_variance_ratio_.sum())}
    k, dz = gmm_means.shape
    start = dict(weights_init=np.full(k, 1.0 / k), means_init=gmm_means,
                 precisions_init=np.tile(np.eye(dz), (k, 1, 1)))
    t, gm = timed(lambda: GaussianMixture(k, covariance_type="full", **start).fit(z), repeats)
    out["gmm_full"] = {"seconds": t, "lower_bound": float(gm.lower_bound_), "n_iter": int(gm.n_iter_)}
    first = x[:10000]
    t, y = timed(lambda: TSNE(n_components=2, random_state=0).fit_transform(first), 1)
    out["tsne"] = {"seconds": t, "trustworthiness": float(trustworthiness(first, y, n_neighbors=5))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
