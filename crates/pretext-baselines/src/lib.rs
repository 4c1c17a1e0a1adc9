//! Unsupervised baselines for pretext: PCA, K-means and clustering metrics.
