//! PCA and K-means on full Fashion-MNIST (60,000 x 784), a Gaussian mixture on its first 50
//! principal components and a t-SNE map of 10,000 images, pretext and scikit-learn side by side
//! in one run: the same data (float32 pixels in [0, 1]), the same initial centres and mixture
//! parameters, the same thread count; medians of several repetitions after a warm-up (one run
//! after a warm-up for t-SNE).
//!
//! Run: `cargo bench --bench baselines` (needs Debian's dataset-fashion-mnist; the scikit-learn
//! side needs python3 and creates a virtual environment under target/bench-venv with pip).
//! Environment: PRETEXT_BENCH_REPEATS (default 3), PRETEXT_BENCH_DATA (default
//! /usr/share/datasets/fashion-mnist).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use pretext_baselines::{
    Components, CovarianceType, Fit, GaussianMixtureConfig, GmmInit, KMeansConfig, KMeansInit,
    PcaConfig, PcaSolver, Transform, TsneConfig, trustworthiness,
};
use pretext_data::npy::write_npy;
use pretext_data::{DataSource, Normalization};

#[path = "common/peer.rs"]
mod peer;
use peer::peer_python;

// The allocator the `pretext` binary uses, so figures match what users see.
#[global_allocator]
static ALLOCATOR: pretext_cli::allocator::Allocator = pretext_cli::allocator::Allocator {};

fn to_f32(t: &Tensor<2>) -> Vec<f32> {
    t.to_data().try_into_vec_as::<f32>().expect("float values")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `repeats` runs after one warm-up, and the last result.
fn timed<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut result = f();
    let mut times = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        result = f();
        times.push(start.elapsed().as_secs_f64());
    }
    (median(times), result)
}

fn main() {
    pretext_cli::allocator::keep_freed_memory();
    let data = std::env::var("PRETEXT_BENCH_DATA")
        .unwrap_or_else(|_| "/usr/share/datasets/fashion-mnist".into());
    let repeats: usize = std::env::var("PRETEXT_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    if !Path::new(&data).is_dir() {
        println!("skipped: {data} not found (apt-get install dataset-fashion-mnist)");
        return;
    }
    let ds = DataSource::IdxDir(data.clone().into())
        .load()
        .expect("Fashion-MNIST loads");
    let set = &ds.train;
    let (n, d) = (set.len(), set.shape.len());
    let unit = Normalization {
        mean: vec![0.0],
        std: vec![1.0],
    };
    let all: Vec<usize> = (0..n).collect();
    let device = Device::flex();
    let x = Tensor::<2>::from_data(
        TensorData::new(set.normalized(&all, &unit), [n, d]),
        &device,
    );
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    println!(
        "Fashion-MNIST train {n} x {d}, float32 in [0, 1]; {threads} threads; median of {repeats} after a warm-up"
    );

    let kmeans = KMeansConfig::new(10).seed(0);
    let init = kmeans.initial_centers(&x).expect("k-means++");
    let lloyd = kmeans.clone().init(KMeansInit::Centers(init.clone()));
    let (km_s, km) = timed(repeats, || lloyd.fit(&x).expect("k-means"));
    let elkan = lloyd
        .clone()
        .algorithm(pretext_baselines::KMeansAlgorithm::Elkan);
    let (ke_s, ke) = timed(repeats, || elkan.fit(&x).expect("k-means"));
    let (pe_s, pe) = timed(repeats, || {
        PcaConfig::new(Components::Count(50))
            .solver(PcaSolver::Exact)
            .fit(&x)
            .expect("pca")
    });
    let (pr_s, pr) = timed(repeats, || {
        PcaConfig::new(Components::Count(50))
            .solver(PcaSolver::Randomized)
            .fit(&x)
            .expect("pca")
    });

    // A full-covariance mixture of 10 on the first 50 principal components, started from the
    // K-means centres there with unit covariances and equal weights, for both libraries.
    let z = pe.transform(&x).expect("pca projection");
    let z_means: Vec<f64> = KMeansConfig::new(10)
        .seed(0)
        .fit(&z)
        .expect("k-means")
        .centers
        .iter()
        .map(|&v| v as f64)
        .collect();
    let identity: Vec<f64> = (0..10 * 50 * 50)
        .map(|i| if (i % 2500) % 51 == 0 { 1.0 } else { 0.0 })
        .collect();
    let gmm = GaussianMixtureConfig::new(10)
        .covariance(CovarianceType::Full)
        .init(GmmInit::Parameters {
            weights: vec![0.1; 10],
            means: z_means.clone(),
            covariances: identity,
        });
    let (gm_s, gm) = timed(repeats, || gmm.fit(&z).expect("gmm"));

    // t-SNE of the first 10,000 images.
    let first = x.clone().narrow(0, 0, 10_000);
    let (ts_s, map) = timed(1, || TsneConfig::default().fit(&first).expect("t-sne"));
    let map_t = Tensor::<2>::from_data(TensorData::new(map.embedding, [10_000, 2]), &device);
    let ts_trust = trustworthiness(&first, &map_t, 5).expect("trustworthiness");

    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let init_path = target.join("bench-kmeans-init.npy");
    write_npy(&init_path, &init, &[10, d]).expect("write the initial centres");
    let z_path = target.join("bench-pca50.npy");
    write_npy(&z_path, &to_f32(&z), &[n, 50]).expect("write the projection");
    let means_path = target.join("bench-gmm-means.npy");
    let means_f32: Vec<f32> = z_means.iter().map(|&v| v as f32).collect();
    write_npy(&means_path, &means_f32, &[10, 50]).expect("write the mixture's means");
    let peer = peer_python(
        "sklearn, numpy, threadpoolctl",
        &["numpy", "scikit-learn", "threadpoolctl"],
    )
    .and_then(|python| {
        let out = Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/sklearn_baselines.py"))
            .arg(&data)
            .arg(&init_path)
            .arg(repeats.to_string())
            .arg(&z_path)
            .arg(&means_path)
            // Settings for old OpenBLAS builds that slow a current one down; the peer gets its
            // library's own choice of kernel.
            .env_remove("OPENBLAS_CORETYPE")
            .env_remove("OPENBLAS_L2_SIZE")
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout).map_err(|e| e.to_string())
    });

    println!();
    println!(
        "| work | pretext | inertia / explained variance / bound / trustworthiness | scikit-learn | the same | time ratio (pretext / scikit-learn) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let row = |name: &str, ours_s: f64, ours_q: String, key: &str, q_key: &str| match &peer {
        Ok(p) => {
            let s = p[key]["seconds"].as_f64().unwrap_or(f64::NAN);
            let q = p[key][q_key].as_f64().unwrap_or(f64::NAN);
            println!(
                "| {name} | {ours_s:.2} s | {ours_q} | {s:.2} s | {q:.6} | {:.2}x |",
                ours_s / s
            );
        }
        Err(_) => println!("| {name} | {ours_s:.2} s | {ours_q} | - | - | - |"),
    };
    row(
        &format!("K-means k=10 Lloyd, same init ({} iterations)", km.n_iter),
        km_s,
        format!("{:.6e}", km.inertia),
        "kmeans_lloyd",
        "inertia",
    );
    row(
        &format!("K-means k=10 Elkan, same init ({} iterations)", ke.n_iter),
        ke_s,
        format!("{:.6e}", ke.inertia),
        "kmeans_elkan",
        "inertia",
    );
    row(
        "PCA 50, exact",
        pe_s,
        format!("{:.6}", pe.total_explained_variance_ratio()),
        "pca50_full",
        "explained_variance_ratio",
    );
    row(
        "PCA 50, randomized",
        pr_s,
        format!("{:.6}", pr.total_explained_variance_ratio()),
        "pca50_randomized",
        "explained_variance_ratio",
    );
    row(
        &format!(
            "Gaussian mixture k=10 full on PCA-50, same start ({} iterations)",
            gm.n_iter
        ),
        gm_s,
        format!("{:.6}", gm.lower_bound),
        "gmm_full",
        "lower_bound",
    );
    row(
        "t-SNE of 10,000 images (defaults, PCA start)",
        ts_s,
        format!("{ts_trust:.6}"),
        "tsne",
        "trustworthiness",
    );
    match &peer {
        Ok(p) => println!(
            "\nscikit-learn: {} Lloyd iterations; BLAS {}",
            p["kmeans_lloyd"]["n_iter"],
            p.get("blas").map(|b| b.to_string()).unwrap_or_default()
        ),
        Err(why) => println!("\nscikit-learn side skipped: {why}"),
    }
}
