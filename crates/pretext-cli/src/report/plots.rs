//! An SVG line plot of test accuracy against labels per class (1, 10, 100, all: evenly spaced, a
//! log scale), one line per representation with one-standard-deviation error bars (written by
//! hand: a plot needs no plotting library).

use std::fmt::Write;

use pretext_data::LabelBudget;
use pretext_train::study::{Protocol, Summary};

const COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

pub fn accuracy_by_budget(
    budgets: &[LabelBudget],
    summaries: &[Summary],
    protocol: Protocol,
) -> String {
    let (w, h) = (720.0, 420.0);
    let (left, right, top, bottom) = (60.0, 200.0, 30.0, 50.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let x_of = |i: usize| left + plot_w * (i as f64 + 0.5) / budgets.len().max(1) as f64;
    let y_of = |acc: f64| top + plot_h * (1.0 - acc.clamp(0.0, 1.0));
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">{} test accuracy by labels per class</text>"#,
        left + plot_w / 2.0,
        protocol.name()
    );
    for tick in 0..=10 {
        let acc = tick as f64 / 10.0;
        let y = y_of(acc);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{acc:.1}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0
        );
    }
    for (i, b) in budgets.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{b}</text>"#,
            x_of(i),
            top + plot_h + 20.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">labels per class</text>"#,
        left + plot_w / 2.0,
        h - 10.0
    );
    let mut names: Vec<&str> = Vec::new();
    for s in summaries.iter().filter(|s| s.protocol == protocol) {
        if !names.contains(&s.representation.as_str()) {
            names.push(&s.representation);
        }
    }
    for (k, name) in names.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let points: Vec<(f64, f64, f64, f64)> = budgets
            .iter()
            .enumerate()
            .filter_map(|(i, &b)| {
                summaries
                    .iter()
                    .find(|s| s.protocol == protocol && s.budget == b && s.representation == *name)
                    .map(|s| {
                        (
                            x_of(i),
                            y_of(s.mean),
                            y_of(s.mean - s.std),
                            y_of(s.mean + s.std),
                        )
                    })
            })
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(x, y, _, _)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (x, y, low, high) in &points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"/>"#
            );
            // Error bar: one standard deviation over seeds.
            if (low - high).abs() > 0.5 {
                let _ = writeln!(
                    svg,
                    r#"<line x1="{x:.1}" y1="{low:.1}" x2="{x:.1}" y2="{high:.1}" stroke="{colour}"/>"#
                );
            }
        }
        let ly = top + 16.0 * k as f64 + 10.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            w - right + 10.0,
            w - right + 30.0,
            w - right + 36.0,
            ly + 4.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
