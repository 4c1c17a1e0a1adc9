//! The Markdown report: one table per protocol, representations by label budget, the best of
//! each column in bold.

use std::fmt::Write;

use pretext_data::LabelBudget;
use pretext_train::compare::PretrainingCost;
use pretext_train::study::{Protocol, Summary};

/// The encoders the study counts as self-supervised (the autoencoder is an unsupervised
/// baseline; pixels, PCA, random and supervised encoders are baselines too). Runs given with
/// `--checkpoint` are named "task (path)", and a text run started from another "task from ...".
fn is_self_supervised(representation: &str) -> bool {
    [
        "rotation",
        "jigsaw",
        "mae",
        "simclr",
        "byol",
        "moco-v3",
        "vicreg",
        "barlow-twins",
        "mlm",
        "simcse",
    ]
    .iter()
    .any(|t| {
        representation == *t
            || representation.starts_with(&format!("{t} ("))
            || representation.starts_with(&format!("{t} from "))
    })
}

/// The baselines a modality's answer compares with, as (representation, words) pairs.
pub struct Terms {
    /// Frozen features the best self-supervised linear probe is compared with.
    pub baselines: &'static [(&'static str, &'static str)],
    /// The from-scratch model that fine-tuning is compared with.
    pub scratch: (&'static str, &'static str),
    /// Representations whose clustering NMI is quoted beside the best self-supervised one's.
    pub clustered: &'static [(&'static str, &'static str)],
    /// What the pretraining runs' held-out number measures.
    pub monitor: &'static str,
    /// Whether the report has the embeddings figure.
    pub embeddings: bool,
}

pub const IMAGE_TERMS: Terms = Terms {
    baselines: &[
        ("pixels", "raw pixels"),
        ("pca", "PCA features"),
        ("autoencoder", "the autoencoder"),
    ],
    scratch: ("supervised cnn", "the same CNN trained from scratch"),
    clustered: &[("pixels", "pixels"), ("pca", "PCA features")],
    monitor: "held-out kNN accuracy",
    embeddings: true,
};

pub const TEXT_TERMS: Terms = Terms {
    baselines: &[
        ("tf-idf", "TF-IDF"),
        ("tf-idf + pca", "TF-IDF + PCA"),
        ("random transformer", "a random Transformer"),
    ],
    scratch: (
        "transformer from scratch",
        "the same Transformer trained from scratch",
    ),
    clustered: &[("tf-idf", "TF-IDF"), ("tf-idf + pca", "TF-IDF + PCA")],
    monitor: "held-out measure (mlm: masked-token accuracy; simcse: views matched)",
    embeddings: false,
};

/// What predicting the commonest test class for everything scores: the floor a representation
/// must clear before the report calls it better than nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Chance {
    /// The commonest class's name.
    pub commonest: String,
    /// Its share of the test labels: that predictor's accuracy.
    pub share: f64,
    /// How many classes: that predictor's balanced accuracy is one over this.
    pub classes: usize,
}

impl Chance {
    /// The commonest of `labels` (ties go to the lowest class id), named from `names`.
    pub fn of(labels: &[u32], names: &[String]) -> Self {
        let mut counts = std::collections::BTreeMap::<u32, usize>::new();
        for &l in labels {
            *counts.entry(l).or_default() += 1;
        }
        let (class, count) = counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map_or((0, 0), |(&l, &c)| (l, c));
        Self {
            commonest: names
                .get(class as usize)
                .cloned()
                .unwrap_or_else(|| class.to_string()),
            share: count as f64 / labels.len().max(1) as f64,
            classes: names.len().max(counts.len()).max(1),
        }
    }

    /// That predictor's balanced accuracy.
    pub fn balanced(&self) -> f64 {
        1.0 / self.classes as f64
    }

    /// Whether a classifier's summary does better than the commonest-class predictor: by more
    /// than a point of balanced accuracy where that was measured, else of accuracy.
    fn is_beaten_by(&self, s: &Summary) -> bool {
        match s.balanced_accuracy {
            Some([mean, _]) => mean > self.balanced() + 0.01,
            None => s.mean > self.share + 0.01,
        }
    }
}

/// The score a classifier is ranked by: balanced accuracy where measured (accuracy rewards
/// predicting the commonest class when classes are unbalanced), else accuracy.
fn rank(s: &Summary) -> f64 {
    s.balanced_accuracy.map_or(s.mean, |[mean, _]| mean)
}

/// The report of a study over `budgets`; `context` is a paragraph about the data and settings.
pub fn render(
    title: &str,
    context: &str,
    budgets: &[LabelBudget],
    summaries: &[Summary],
    pretraining: &[PretrainingCost],
    terms: &Terms,
    chance: &Chance,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {title}\n\n{context}\n");
    let _ = writeln!(out, "## The answer\n");
    let _ = writeln!(
        out,
        "- Predicting the commonest test class ({}) for everything scores accuracy {:.4} and \
         balanced accuracy {:.4} (one over {} classes); representations are ranked by balanced \
         accuracy and none is called better unless it clears that by more than a point.",
        chance.commonest,
        chance.share,
        chance.balanced(),
        chance.classes
    );
    for line in answer(budgets, summaries, terms, chance) {
        let _ = writeln!(out, "- {line}");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "![Test accuracy by labels per class](label_efficiency.png)\n\n\
         ![Pretraining loss and {}](pretraining.png)\n",
        terms.monitor
    );
    if terms.embeddings {
        let _ = writeln!(
            out,
            "![Test features projected to two dimensions, coloured by class](embeddings.png)\n"
        );
    }
    for protocol in [
        Protocol::Linear,
        Protocol::Knn,
        Protocol::Propagation,
        Protocol::Finetune,
        Protocol::SelfTraining,
        Protocol::Supervised,
    ] {
        if !summaries.iter().any(|s| s.protocol == protocol) {
            continue;
        }
        let _ = writeln!(
            out,
            "## {} (test accuracy, mean ± std over seeds; columns are labels per class)\n",
            protocol.name()
        );
        table(&mut out, protocol, budgets, summaries);
        if summaries
            .iter()
            .any(|s| s.protocol == protocol && s.balanced_accuracy.is_some())
        {
            let _ = writeln!(
                out,
                "{} in balanced accuracy / macro-F1 (means over seeds):\n",
                protocol.name()
            );
            fair_table(&mut out, protocol, budgets, summaries);
        }
    }
    if summaries
        .iter()
        .any(|s| CLUSTERERS.iter().any(|(p, _)| s.protocol == *p))
    {
        let _ = writeln!(
            out,
            "## Clustering the test features (one cluster per class; no labels used)\n\n\
             K-means on the features, a Gaussian mixture on their first principal components, \
             and SCAN's clustering heads trained on the training images' nearest neighbours; \
             accuracy after the best matching of clusters to classes, NMI and ARI.\n"
        );
        cluster_table(&mut out, summaries);
    }
    if !pretraining.is_empty() {
        let _ = writeln!(out, "## Pretraining cost\n");
        let _ = writeln!(
            out,
            "| task | epochs | seconds | final loss | {} |\n| --- | --- | --- | --- | --- |",
            terms.monitor
        );
        for p in pretraining {
            let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} |",
                p.task,
                p.epochs,
                p.seconds,
                opt(p.final_loss),
                opt(p.knn_accuracy)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Which representation wins\n");
    for &budget in budgets {
        let best = |protocols: &[Protocol]| {
            summaries
                .iter()
                .filter(|s| protocols.contains(&s.protocol) && s.budget == budget)
                .max_by(|a, b| rank(a).total_cmp(&rank(b)))
        };
        let score = |s: &Summary| match s.balanced_accuracy {
            Some([b, _]) => format!("{:.4}, balanced {b:.4}", s.mean),
            None => format!("{:.4}", s.mean),
        };
        let none = "none beats predicting the commonest class";
        let mut parts = Vec::new();
        if let Some(b) = best(&[Protocol::Linear]) {
            parts.push(if chance.is_beaten_by(b) {
                format!(
                    "frozen features: **{}** (linear probe {})",
                    b.representation,
                    score(b)
                )
            } else {
                format!(
                    "frozen features: {none} (best: {}, {})",
                    b.representation,
                    score(b)
                )
            });
        }
        if let Some(b) = best(&[Protocol::Finetune, Protocol::Supervised]) {
            parts.push(if chance.is_beaten_by(b) {
                format!(
                    "trained end to end: **{}** ({} {})",
                    b.representation,
                    b.protocol.name(),
                    score(b)
                )
            } else {
                format!(
                    "trained end to end: {none} (best: {}, {})",
                    b.representation,
                    score(b)
                )
            });
        }
        if parts.is_empty() {
            continue;
        }
        let line = format!("- {}: {}", per_class(budget), parts.join("; "));
        let _ = writeln!(out, "{line}");
    }
    out
}

fn representations(summaries: &[Summary]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in summaries {
        if !names.contains(&s.representation) {
            names.push(s.representation.clone());
        }
    }
    names
}

fn table(out: &mut String, protocol: Protocol, budgets: &[LabelBudget], summaries: &[Summary]) {
    let best: Vec<f64> = budgets
        .iter()
        .map(|&b| {
            summaries
                .iter()
                .filter(|s| s.protocol == protocol && s.budget == b)
                .map(|s| s.mean)
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    grid(out, protocol, budgets, summaries, |s, i| {
        Some(cell(s, best[i]))
    });
}

/// Balanced accuracy / macro-F1 of one classifying protocol, representations by budget.
fn fair_table(
    out: &mut String,
    protocol: Protocol,
    budgets: &[LabelBudget],
    summaries: &[Summary],
) {
    grid(out, protocol, budgets, summaries, |s, _| {
        let ([balanced, _], [f1, _]) = s.balanced_accuracy.zip(s.macro_f1)?;
        Some(format!("{balanced:.4} / {f1:.4}"))
    });
}

/// A table of one protocol: a row per representation, a column per budget, each cell what
/// `show` makes of the summary (given the column's index), "–" where there is none.
fn grid(
    out: &mut String,
    protocol: Protocol,
    budgets: &[LabelBudget],
    summaries: &[Summary],
    show: impl Fn(&Summary, usize) -> Option<String>,
) {
    let _ = write!(out, "| representation |");
    for b in budgets {
        let _ = write!(out, " {b} |");
    }
    let _ = write!(out, "\n| --- |");
    for _ in budgets {
        let _ = write!(out, " --- |");
    }
    out.push('\n');
    let measured: Vec<Summary> = summaries
        .iter()
        .filter(|s| s.protocol == protocol)
        .cloned()
        .collect();
    for rep in representations(&measured) {
        let _ = write!(out, "| {rep} |");
        for (i, &b) in budgets.iter().enumerate() {
            let shown = measured
                .iter()
                .find(|s| s.budget == b && s.representation == rep)
                .and_then(|s| show(s, i));
            let _ = write!(out, " {} |", shown.as_deref().unwrap_or("–"));
        }
        out.push('\n');
    }
    out.push('\n');
}

/// The clustering protocols, each with its three scores, as the report names them.
const CLUSTERERS: [(Protocol, &str); 3] = [
    (Protocol::Cluster, "K-means"),
    (Protocol::Gmm, "GMM"),
    (Protocol::Scan, "SCAN"),
];

/// ACC, NMI and ARI of every clustering protocol that ran, side by side, one row per
/// representation.
fn cluster_table(out: &mut String, summaries: &[Summary]) {
    let metrics: Vec<(Protocol, String)> = CLUSTERERS
        .iter()
        .filter(|(p, _)| summaries.iter().any(|s| s.protocol == *p))
        .flat_map(|&(p, name)| {
            p.with_parts()
                .iter()
                .zip(["ACC", "NMI", "ARI"])
                .map(move |(&part, score)| (part, format!("{name} {score}")))
        })
        .collect();
    let clustered: Vec<Summary> = summaries
        .iter()
        .filter(|s| metrics.iter().any(|(p, _)| s.protocol == *p))
        .cloned()
        .collect();
    let best = |p: Protocol| {
        clustered
            .iter()
            .filter(|s| s.protocol == p)
            .map(|s| s.mean)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let _ = write!(out, "| representation |");
    for (_, name) in &metrics {
        let _ = write!(out, " {name} |");
    }
    let _ = write!(out, "\n| --- |");
    for _ in &metrics {
        let _ = write!(out, " --- |");
    }
    out.push('\n');
    for rep in representations(&clustered) {
        let _ = write!(out, "| {rep} |");
        for &(p, _) in &metrics {
            match clustered
                .iter()
                .find(|s| s.protocol == p && s.representation == rep)
            {
                Some(s) => {
                    let _ = write!(out, " {} |", cell(s, best(p)));
                }
                None => {
                    let _ = write!(out, " – |");
                }
            }
        }
        out.push('\n');
    }
    out.push('\n');
}

/// Sentences computed from the numbers: where self-supervision beats the baselines, and by how
/// many points of accuracy.
fn answer(
    budgets: &[LabelBudget],
    summaries: &[Summary],
    terms: &Terms,
    chance: &Chance,
) -> Vec<String> {
    let get = |rep: &str, protocol: Protocol, budget: LabelBudget| {
        summaries
            .iter()
            .find(|s| s.representation == rep && s.protocol == protocol && s.budget == budget)
            .map(rank)
    };
    // The score compared: balanced accuracy where measured, named so.
    let shown = |s: &Summary| match s.balanced_accuracy {
        Some([b, _]) => format!("balanced accuracy {b:.4}"),
        None => format!("{:.4}", s.mean),
    };
    let best_ssl = |protocol: Protocol, budget: LabelBudget| {
        summaries
            .iter()
            .filter(|s| {
                s.protocol == protocol
                    && s.budget == budget
                    && is_self_supervised(&s.representation)
            })
            .max_by(|a, b| rank(a).total_cmp(&rank(b)))
    };
    // "beats X by 4.1 points" or "trails X by 2.0 points".
    let points = |a: f64, b: f64, label: &str| {
        let d = (a - b) * 100.0;
        if d.abs() < 0.05 {
            return format!("matches {label}");
        }
        let verb = if d > 0.0 { "beats" } else { "trails" };
        format!("{verb} {label} by {:.1} points", d.abs())
    };
    let mut lines = Vec::new();
    for &budget in budgets {
        let mut parts = Vec::new();
        if let Some(ssl) = best_ssl(Protocol::Linear, budget) {
            if !chance.is_beaten_by(ssl) {
                lines.push(format!(
                    "With {}, no self-supervised encoder under a linear probe beats predicting \
                     the commonest class (best: {}, accuracy {:.4}{}).",
                    per_class(budget),
                    ssl.representation,
                    ssl.mean,
                    ssl.balanced_accuracy
                        .map(|[b, _]| format!(", balanced accuracy {b:.4}"))
                        .unwrap_or_default()
                ));
                continue;
            }
            let mut against = Vec::new();
            for &(rep, label) in terms.baselines {
                if let Some(v) = get(rep, Protocol::Linear, budget) {
                    against.push(points(rank(ssl), v, label));
                }
            }
            parts.push(format!(
                "the best self-supervised encoder under a linear probe ({}, {}) {}",
                ssl.representation,
                shown(ssl),
                against.join(", ")
            ));
        }
        if let (Some(ssl), Some(scratch)) = (
            best_ssl(Protocol::Finetune, budget),
            get(terms.scratch.0, Protocol::Supervised, budget),
        ) {
            parts.push(format!(
                "fine-tuned ({}, {}) it {}",
                ssl.representation,
                shown(ssl),
                points(rank(ssl), scratch, terms.scratch.1)
            ));
        }
        if !parts.is_empty() {
            lines.push(format!("With {}, {}.", per_class(budget), parts.join("; ")));
        }
    }
    for (clusterer, name) in CLUSTERERS {
        let nmi = clusterer.with_parts()[1];
        let Some(ssl) = best_ssl(nmi, LabelBudget::All) else {
            continue;
        };
        let mut against = Vec::new();
        for &(rep, label) in terms.clustered {
            if let Some(v) = get(rep, nmi, LabelBudget::All) {
                against.push(format!(
                    "{} ({v:.4})",
                    points(ssl.mean, v, &format!("{name} on {label}"))
                ));
            }
        }
        let accuracy = get(&ssl.representation, clusterer, LabelBudget::All)
            .map(|a| format!(", ACC {a:.4}"))
            .unwrap_or_default();
        lines.push(format!(
            "Without labels, {name} on the best self-supervised embedding ({}) reaches NMI {:.4}{accuracy}{}.",
            ssl.representation,
            ssl.mean,
            if against.is_empty() {
                String::new()
            } else {
                format!(": it {}", against.join(", "))
            }
        ));
    }
    if lines.is_empty() {
        lines.push("No self-supervised encoder was evaluated.".into());
    }
    lines
}

/// `mean ± std` (or the mean of a single seed), in bold when it is the column's best.
fn cell(s: &Summary, best: f64) -> String {
    let value = if s.seeds > 1 {
        format!("{:.4} ± {:.4}", s.mean, s.std)
    } else {
        format!("{:.4}", s.mean)
    };
    if s.mean == best {
        format!("**{value}**")
    } else {
        value
    }
}

/// "1 label per class", "10 labels per class", "all labels".
fn per_class(budget: LabelBudget) -> String {
    match budget {
        LabelBudget::PerClass(1) => "1 label per class".into(),
        LabelBudget::PerClass(k) => format!("{k} labels per class"),
        LabelBudget::All => "all labels".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(rep: &str, protocol: Protocol, budget: LabelBudget, mean: f64) -> Summary {
        Summary {
            representation: rep.into(),
            protocol,
            budget,
            mean,
            std: 0.01,
            seeds: 3,
            balanced_accuracy: None,
            macro_f1: None,
        }
    }

    /// Ten balanced classes.
    fn even() -> Chance {
        let names: Vec<String> = (0..10).map(|c| c.to_string()).collect();
        let labels: Vec<u32> = (0..100).map(|i| i % 10).collect();
        Chance::of(&labels, &names)
    }

    #[test]
    fn the_pretrained_text_encoders_count_as_self_supervised() {
        for rep in [
            "simclr",
            "rotation (runs/rot)",
            "mlm (mean)",
            "simcse (mean)",
            "simcse from mlm (mean)",
        ] {
            assert!(is_self_supervised(rep), "{rep}");
        }
        for rep in ["tf-idf", "random transformer", "autoencoder", "pixels"] {
            assert!(!is_self_supervised(rep), "{rep}");
        }
    }

    #[test]
    fn the_commonest_class_and_its_share() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let chance = Chance::of(&[2, 0, 2, 1], &names);
        assert_eq!((chance.commonest.as_str(), chance.share), ("c", 0.5));
        assert_eq!(chance.balanced(), 1.0 / 3.0);
        assert_eq!(
            Chance::of(&[1, 0], &names).commonest,
            "a",
            "ties go to the lowest id"
        );
        assert_eq!(Chance::of(&[], &names).share, 0.0);
    }

    #[test]
    fn nothing_is_crowned_that_does_no_better_than_the_commonest_class() {
        let one = LabelBudget::PerClass(1);
        let names: Vec<String> = (0..4).map(|c| c.to_string()).collect();
        // Class 0 is 70% of the test set.
        let labels: Vec<u32> = (0..100)
            .map(|i| if i < 70 { 0 } else { i % 3 + 1 })
            .collect();
        let chance = Chance::of(&labels, &names);
        let fair = |rep: &str, protocol, mean, balanced| Summary {
            balanced_accuracy: Some([balanced, 0.0]),
            macro_f1: Some([balanced - 0.05, 0.0]),
            ..summary(rep, protocol, one, mean)
        };
        // Both score the commonest class's share; tf-idf's balanced accuracy is chance.
        let summaries = vec![
            fair("tf-idf", Protocol::Linear, 0.70, 0.25),
            fair("mlm", Protocol::Linear, 0.70, 0.255),
            fair("mlm", Protocol::Finetune, 0.55, 0.40),
        ];
        let report = render("t", "c", &[one], &summaries, &[], &TEXT_TERMS, &chance);
        assert!(
            report.contains(
                "- 1 label per class: frozen features: none beats predicting the commonest class \
                 (best: mlm, 0.7000, balanced 0.2550); trained end to end: **mlm** (fine-tuning \
                 0.5500, balanced 0.4000)"
            ),
            "{report}"
        );
        assert!(report.contains("| mlm | 0.2550 / 0.2050 |"), "{report}");
        assert!(
            report.contains(
                "With 1 label per class, no self-supervised encoder under a linear probe beats \
                 predicting the commonest class (best: mlm, accuracy 0.7000, balanced accuracy \
                 0.2550)."
            ),
            "{report}"
        );
    }

    #[test]
    fn the_answer_is_computed_from_the_numbers() {
        let one = LabelBudget::PerClass(1);
        let summaries = vec![
            summary("rotation", Protocol::Linear, one, 0.50),
            summary("simclr", Protocol::Linear, one, 0.45),
            summary("pixels", Protocol::Linear, one, 0.40),
            summary("pca", Protocol::Linear, one, 0.50),
            summary("rotation", Protocol::Finetune, one, 0.55),
            summary("supervised cnn", Protocol::Supervised, one, 0.60),
        ];
        let lines = answer(&[one], &summaries, &IMAGE_TERMS, &even());
        assert_eq!(
            lines,
            [
                "With 1 label per class, the best self-supervised encoder under a linear probe \
              (rotation, 0.5000) beats raw pixels by 10.0 points, matches PCA features; \
              fine-tuned (rotation, 0.5500) it trails the same CNN trained from scratch by 5.0 \
              points."
            ]
        );
        let report = render("t", "c", &[one], &summaries, &[], &IMAGE_TERMS, &even());
        assert!(
            report.contains("| rotation | **0.5000 ± 0.0100** |"),
            "{report}"
        );
    }

    #[test]
    fn a_study_of_some_protocols_reports_only_those() {
        let one = LabelBudget::PerClass(1);
        let summaries = vec![summary("supervised cnn", Protocol::Supervised, one, 0.60)];
        let report = render("t", "c", &[one], &summaries, &[], &IMAGE_TERMS, &even());
        assert!(!report.contains("K-means"), "{report}");
        assert!(
            report.contains(
                "- 1 label per class: trained end to end: **supervised cnn** (supervised from scratch 0.6000)\n"
            ),
            "{report}"
        );
    }

    #[test]
    fn clusterers_stand_side_by_side_and_the_answer_compares_each_with_pixels() {
        let all = LabelBudget::All;
        let mut summaries = Vec::new();
        for (rep, kmeans, scan) in [("pixels", 0.51, 0.55), ("byol", 0.57, 0.71)] {
            summaries.extend([
                summary(rep, Protocol::Cluster, all, kmeans),
                summary(rep, Protocol::ClusterNmi, all, kmeans + 0.01),
                summary(rep, Protocol::ClusterAri, all, kmeans - 0.1),
                summary(rep, Protocol::Scan, all, scan),
                summary(rep, Protocol::ScanNmi, all, scan - 0.01),
                summary(rep, Protocol::ScanAri, all, scan - 0.1),
            ]);
        }
        let report = render("t", "c", &[all], &summaries, &[], &IMAGE_TERMS, &even());
        assert!(
            report.contains(
                "| representation | K-means ACC | K-means NMI | K-means ARI | SCAN ACC | SCAN NMI | SCAN ARI |"
            ),
            "{report}"
        );
        assert!(!report.contains("GMM ACC"), "GMM did not run: {report}");
        assert!(
            report.contains("| byol | **0.5700 ± 0.0100** | **0.5800 ± 0.0100** |"),
            "{report}"
        );
        let lines = answer(&[all], &summaries, &IMAGE_TERMS, &even());
        assert!(
            lines.contains(
                &"Without labels, SCAN on the best self-supervised embedding (byol) reaches NMI \
                  0.7000, ACC 0.7100: it beats SCAN on pixels by 16.0 points (0.5400)."
                    .to_string()
            ),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Without labels, K-means")),
            "{lines:?}"
        );
    }
}
