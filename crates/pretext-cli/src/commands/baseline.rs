//! `pretext baseline pca|kmeans|gmm`: the unsupervised baselines from the command line.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use burn::tensor::Tensor;
use pretext_baselines::metrics::{ari, hungarian_accuracy, nmi, silhouette};
use pretext_baselines::{
    Components, CovarianceType, Fit, GaussianMixtureConfig, GmmInit, KMeansAlgorithm, KMeansConfig,
    PcaConfig, PcaSolver, Scaling, Transform,
};
use pretext_data::npy::{write_atomic, write_npy};
use serde_json::json;

use crate::cli::{
    BaselineCommand, CovarianceArg, FeatureArgs, GmmArgs, GmmInitArg, KMeansAlgorithmArg,
    KMeansArgs, PcaArgs, PcaSolverArg, ScaleArg,
};
use crate::commands::features::{self, Features};
use crate::device::{DeviceSpec, resolve};

pub fn run(cmd: BaselineCommand) -> anyhow::Result<()> {
    match cmd {
        BaselineCommand::Pca(args) => pca(args),
        BaselineCommand::Kmeans(args) => kmeans(args),
        BaselineCommand::Gmm(args) => gmm(args),
    }
}

/// `50` keeps 50 components; `0.95` keeps 95% of the variance.
fn parse_components(s: &str) -> anyhow::Result<Components> {
    if let Ok(k) = s.parse::<usize>() {
        return Ok(Components::Count(k));
    }
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(Components::Variance(f)),
        _ => anyhow::bail!(
            "--components '{s}' must be a count (50) or a fraction of variance in (0, 1) (0.95)"
        ),
    }
}

/// Resolves the device, creates the output directory (before any work, so a bad path fails
/// fast), loads the features and scales them as `--scale` says (writing the fitted scaler to
/// `scaler.json` in the output directory).
fn setup(input: &FeatureArgs) -> anyhow::Result<(DeviceSpec, Features)> {
    let (spec, device) = resolve(&input.device)?;
    if let Some(dir) = &input.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    let mut f = features::load(&input.data, input.label_column.as_deref(), &device)?;
    let scaling = match input.scale {
        ScaleArg::None => Scaling::None,
        ScaleArg::Standard => Scaling::Standard,
        ScaleArg::Minmax => Scaling::MinMax,
    };
    if scaling != Scaling::None {
        let scaler = scaling.fit(&f.x).context("scaling failed")?;
        f.x = scaler.transform(&f.x)?;
        let how = match scaling {
            Scaling::Standard => "standardised (mean 0, standard deviation 1)",
            _ => "min-max scaled to [0, 1]",
        };
        println!("columns {how}, fitted on the {} rows", f.rows);
        if let Some(dir) = &input.out {
            write_json(&dir.join("scaler.json"), &scaler)?;
        }
    }
    Ok((spec, f))
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write_atomic(path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

fn pca(args: PcaArgs) -> anyhow::Result<()> {
    let components = parse_components(&args.components)?;
    let (spec, f) = setup(&args.input)?;
    let config = PcaConfig::new(components)
        .whiten(args.whiten)
        .seed(args.input.seed)
        .solver(match args.solver {
            PcaSolverArg::Auto => PcaSolver::Auto,
            PcaSolverArg::Exact => PcaSolver::Exact,
            PcaSolverArg::Randomized => PcaSolver::Randomized,
        });
    let start = Instant::now();
    let model = config.fit(&f.x).context("PCA failed")?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "PCA of {} ({} rows x {} features) on {spec}: {} components ({:?} solver) in {seconds:.2} s",
        f.name, f.rows, f.dims, model.n_components, model.solver
    );
    println!(
        "explained variance: {:.4} of the total",
        model.total_explained_variance_ratio()
    );
    let mut cumulative = 0.0;
    for (i, r) in model.explained_variance_ratio.iter().take(10).enumerate() {
        cumulative += r;
        println!(
            "  component {:>3}: {:.4} (cumulative {cumulative:.4})",
            i + 1,
            r
        );
    }
    if !model.constant_features.is_empty() {
        println!(
            "note: {} constant feature(s), e.g. column {}",
            model.constant_features.len(),
            model.constant_features[0]
        );
    }
    if let Some(dir) = &args.input.out {
        let z = model.transform(&f.x)?;
        let values = pretext_baselines::input::to_vec(&z);
        write_npy(
            &dir.join("features.npy"),
            &values,
            &[f.rows, model.n_components],
        )?;
        write_labels(dir, &f)?;
        write_json(&dir.join("pca.json"), &model)?;
        write_json(
            &dir.join("summary.json"),
            &json!({
                "data": f.name, "rows": f.rows, "features": f.dims, "device": spec.to_string(),
                "n_components": model.n_components, "solver": model.solver,
                "whiten": model.whiten, "seconds": seconds,
                "explained_variance_ratio_total": model.total_explained_variance_ratio(),
                "explained_variance_ratio": model.explained_variance_ratio,
                "constant_features": model.constant_features,
            }),
        )?;
        println!(
            "wrote features.npy, pca.json and summary.json to {}",
            dir.display()
        );
    }
    Ok(())
}

fn write_labels(dir: &Path, f: &Features) -> anyhow::Result<()> {
    if let Some(labels) = &f.labels {
        write_npy(&dir.join("labels.npy"), labels, &[labels.len()])?;
    }
    Ok(())
}

/// The features to cluster: the first `pca` principal components, or the features themselves.
fn reduced(f: &Features, pca: Option<usize>, seed: u64, what: &str) -> anyhow::Result<Tensor<2>> {
    let Some(k) = pca else {
        return Ok(f.x.clone());
    };
    let pca = PcaConfig::new(Components::Count(k))
        .seed(seed)
        .fit(&f.x)
        .with_context(|| format!("PCA before {what} failed"))?;
    println!(
        "PCA to {k} components keeps {:.4} of the variance",
        pca.total_explained_variance_ratio()
    );
    Ok(pca.transform(&f.x)?)
}

/// ACC, NMI and ARI of `assignments` against the labels, printed; `None` without labels.
fn label_scores(f: &Features, assignments: &[u32]) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(labels) = &f.labels else {
        return Ok(None);
    };
    let (acc, n, a) = (
        hungarian_accuracy(labels, assignments)?,
        nmi(labels, assignments)?,
        ari(labels, assignments)?,
    );
    println!("against the labels: ACC {acc:.4}  NMI {n:.4}  ARI {a:.4}");
    Ok(Some(json!({"acc": acc, "nmi": n, "ari": a})))
}

fn kmeans(args: KMeansArgs) -> anyhow::Result<()> {
    let (spec, f) = setup(&args.input)?;
    let start = Instant::now();
    let x = reduced(&f, args.pca, args.input.seed, "K-means")?;
    let config = KMeansConfig::new(args.k)
        .n_init(args.n_init)
        .max_iter(args.max_iter)
        .tol(args.tol)
        .batch_size(args.batch_size)
        .seed(args.input.seed)
        .algorithm(match args.algorithm {
            KMeansAlgorithmArg::Lloyd => KMeansAlgorithm::Lloyd,
            KMeansAlgorithmArg::Elkan => KMeansAlgorithm::Elkan,
            KMeansAlgorithmArg::Minibatch => KMeansAlgorithm::MiniBatch,
        });
    let model = config.fit(&x).context("K-means failed")?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "K-means of {} ({} rows x {} features) on {spec}: k = {}, {} iterations, inertia {:.6e}, {seconds:.2} s",
        f.name,
        f.rows,
        x.dims()[1],
        model.k,
        model.n_iter,
        model.inertia
    );
    let scores = label_scores(&f, &model.labels)?;
    let silhouette_score = match args.silhouette {
        Some(sample) => {
            anyhow::ensure!(
                sample >= 2,
                "--silhouette needs a sample of at least 2 rows"
            );
            let values = pretext_baselines::input::to_vec(&x);
            let score = silhouette(
                &values,
                x.dims()[1],
                &model.labels,
                Some((sample, args.input.seed)),
            )?;
            println!("silhouette {score:.4} (on {} rows)", sample.min(f.rows));
            Some(score)
        }
        None => None,
    };
    if let Some(dir) = &args.input.out {
        write_npy(
            &dir.join("assignments.npy"),
            &model.labels,
            &[model.labels.len()],
        )?;
        write_labels(dir, &f)?;
        write_json(&dir.join("kmeans.json"), &model)?;
        write_json(
            &dir.join("summary.json"),
            &json!({
                "data": f.name, "rows": f.rows, "features": x.dims()[1], "device": spec.to_string(),
                "k": model.k, "n_init": args.n_init, "algorithm": config.algorithm, "pca": args.pca,
                "inertia": model.inertia, "n_iter": model.n_iter, "seconds": seconds,
                "scores": scores, "silhouette": silhouette_score,
            }),
        )?;
        println!(
            "wrote assignments.npy, kmeans.json and summary.json to {}",
            dir.display()
        );
    }
    Ok(())
}

fn gmm(args: GmmArgs) -> anyhow::Result<()> {
    let (spec, f) = setup(&args.input)?;
    let start = Instant::now();
    let x = reduced(&f, args.pca, args.input.seed, "the Gaussian mixture")?;
    let config = GaussianMixtureConfig::new(args.k)
        .covariance(match args.covariance {
            CovarianceArg::Full => CovarianceType::Full,
            CovarianceArg::Diag => CovarianceType::Diag,
        })
        .init(match args.init {
            GmmInitArg::Kmeans => GmmInit::KMeans,
            GmmInitArg::KmeansPlusPlus => GmmInit::KMeansPlusPlus,
        })
        .n_init(args.n_init)
        .max_iter(args.max_iter)
        .tol(args.tol)
        .reg_covar(args.reg_covar)
        .seed(args.input.seed);
    let model = config.fit(&x).context("the Gaussian mixture failed")?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "Gaussian mixture of {} ({} rows x {} features) on {spec}: k = {}, {:?} covariances, {} \
         iterations ({}), mean log-likelihood {:.6}, {seconds:.2} s",
        f.name,
        f.rows,
        x.dims()[1],
        model.k,
        model.covariance,
        model.n_iter,
        if model.converged {
            "converged"
        } else {
            "not converged: raise --max-iter"
        },
        model.lower_bound
    );
    let scores = label_scores(&f, &model.labels)?;
    if let Some(dir) = &args.input.out {
        write_npy(
            &dir.join("assignments.npy"),
            &model.labels,
            &[model.labels.len()],
        )?;
        write_labels(dir, &f)?;
        write_json(&dir.join("gmm.json"), &model)?;
        write_json(
            &dir.join("summary.json"),
            &json!({
                "data": f.name, "rows": f.rows, "features": x.dims()[1], "device": spec.to_string(),
                "k": model.k, "covariance": model.covariance, "n_init": args.n_init,
                "pca": args.pca, "lower_bound": model.lower_bound, "n_iter": model.n_iter,
                "converged": model.converged, "seconds": seconds, "scores": scores,
            }),
        )?;
        println!(
            "wrote assignments.npy, gmm.json and summary.json to {}",
            dir.display()
        );
    }
    Ok(())
}
