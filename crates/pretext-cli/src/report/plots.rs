//! The report's figures, each drawn once with `plotters` and written both as SVG (for pages)
//! and PNG (for viewers and READMEs): label-efficiency curves, pretraining curves and 2-D
//! scatters of the test embeddings.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;

use pretext_data::LabelBudget;
use pretext_train::compare::PretrainingCost;
use pretext_train::projection::Projection;
use pretext_train::study::{Protocol, Summary};

/// DejaVu Sans (its licence is beside it): bitmap text needs a font, and a system one may be
/// missing or differ between machines.
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Ten colours that stay apart in print and for the common colour-vision deficiencies
/// (matplotlib's `tab10`).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One figure in both formats.
pub struct Figure {
    pub svg: String,
    pub png: Vec<u8>,
}

/// Something drawable on any plotters backend.
trait Draw {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

fn failed<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

fn render(figure: &impl Draw) -> Result<Figure> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if !ok {
        return Err(anyhow!("the embedded plot font is invalid"));
    }
    let (w, h) = figure.size();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        figure.draw(&root)?;
        root.present().map_err(failed)?;
    }
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        figure.draw(&root)?;
        root.present().map_err(failed)?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .context("encoding a plot as PNG")?;
    Ok(Figure { svg, png })
}

/// Accuracy against labels per class on a log axis, one panel per protocol that trains on
/// labels, one line per representation with one-standard-deviation error bars. "All labels" is
/// drawn at `all_per_class`, the mean number of labelled images per class.
pub fn label_efficiency(summaries: &[Summary], all_per_class: f64) -> Result<Figure> {
    render(&LabelEfficiency {
        summaries,
        all_per_class: all_per_class.max(2.0),
    })
}

struct LabelEfficiency<'a> {
    summaries: &'a [Summary],
    all_per_class: f64,
}

impl LabelEfficiency<'_> {
    /// The panels: (title, the protocols drawn in it).
    fn panels(&self) -> Vec<(&'static str, Vec<Protocol>)> {
        let has = |p: Protocol| self.summaries.iter().any(|s| s.protocol == p);
        let mut panels = Vec::new();
        if has(Protocol::Linear) {
            panels.push(("linear probe", vec![Protocol::Linear]));
        }
        if has(Protocol::Knn) {
            panels.push(("kNN probe", vec![Protocol::Knn]));
        }
        if has(Protocol::Propagation) {
            panels.push(("label propagation", vec![Protocol::Propagation]));
        }
        if has(Protocol::Finetune) || has(Protocol::Supervised) || has(Protocol::SelfTraining) {
            panels.push((
                "fine-tuning (and from scratch)",
                vec![
                    Protocol::Finetune,
                    Protocol::SelfTraining,
                    Protocol::Supervised,
                ],
            ));
        }
        panels
    }

    fn x_of(&self, budget: LabelBudget) -> f64 {
        match budget {
            LabelBudget::PerClass(k) => k as f64,
            LabelBudget::All => self.all_per_class,
        }
    }
}

/// A stable colour per line name, the same in every panel.
fn colours<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, RGBColor> {
    let mut names: Vec<&str> = names.collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), colour(i)))
        .collect()
}

impl Draw for LabelEfficiency<'_> {
    fn size(&self) -> (u32, u32) {
        (440 * self.panels().len().max(1) as u32, 440)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let panels = self.panels();
        let line_name = |s: &Summary| match s.protocol {
            Protocol::Supervised => "from scratch".to_string(),
            Protocol::SelfTraining => format!("{} self-training", s.representation),
            _ => s.representation.clone(),
        };
        let all_lines = self
            .summaries
            .iter()
            .filter(|s| panels.iter().any(|(_, ps)| ps.contains(&s.protocol)))
            .map(line_name)
            .collect::<Vec<_>>();
        let palette = colours(all_lines.iter().map(String::as_str));
        let lowest = self
            .summaries
            .iter()
            .filter(|s| panels.iter().any(|(_, ps)| ps.contains(&s.protocol)))
            .map(|s| s.mean - s.std)
            .fold(1.0f64, f64::min);
        let y_min = ((lowest * 10.0).floor() / 10.0).clamp(0.0, 0.9);
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (area, (title, protocols)) in areas.iter().zip(&panels) {
            let mut chart = ChartBuilder::on(area)
                .caption(*title, (FAMILY, 18))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(
                    (0.7f64..self.all_per_class * 1.4).log_scale(),
                    y_min..1.0f64,
                )
                .map_err(failed)?;
            chart
                .configure_mesh()
                .x_desc("labels per class")
                .y_desc("test accuracy")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style((FAMILY, 12))
                .draw()
                .map_err(failed)?;
            let mut lines: BTreeMap<String, Vec<&Summary>> = BTreeMap::new();
            for s in self.summaries {
                if protocols.contains(&s.protocol) {
                    lines.entry(line_name(s)).or_default().push(s);
                }
            }
            for (name, mut points) in lines {
                points.sort_by(|a, b| self.x_of(a.budget).total_cmp(&self.x_of(b.budget)));
                let c = palette.get(&name).copied().unwrap_or(BLACK);
                chart
                    .draw_series(LineSeries::new(
                        points.iter().map(|s| (self.x_of(s.budget), s.mean)),
                        c.stroke_width(2),
                    ))
                    .map_err(failed)?
                    .label(name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|s| {
                        let x = self.x_of(s.budget);
                        ErrorBar::new_vertical(
                            x,
                            s.mean - s.std,
                            s.mean,
                            s.mean + s.std,
                            c.filled(),
                            6,
                        )
                    }))
                    .map_err(failed)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font((FAMILY, 11))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(failed)?;
        }
        Ok(())
    }
}

/// Each task's pretraining loss (relative to its first steps, smoothed) against the step, and
/// its held-out kNN accuracy against the epoch.
pub fn pretraining(costs: &[PretrainingCost]) -> Result<Figure> {
    render(&Pretraining { costs })
}

struct Pretraining<'a> {
    costs: &'a [PretrainingCost],
}

/// Moving average over `window` steps, divided by the first window's mean so tasks with
/// different losses share an axis.
fn relative_curve(losses: &[(u64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let finite: Vec<(u64, f64)> = losses.iter().copied().filter(|l| l.1.is_finite()).collect();
    if finite.is_empty() {
        return Vec::new();
    }
    let first =
        finite.iter().take(window).map(|l| l.1).sum::<f64>() / finite.len().min(window) as f64;
    let scale = if first.abs() > f64::EPSILON {
        first
    } else {
        1.0
    };
    finite
        .windows(window.min(finite.len()))
        .map(|w| {
            let mean = w.iter().map(|l| l.1).sum::<f64>() / w.len() as f64;
            (w[w.len() - 1].0 as f64, mean / scale)
        })
        .collect()
}

impl Draw for Pretraining<'_> {
    fn size(&self) -> (u32, u32) {
        (880, 400)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let halves = root.split_evenly((1, 2));
        let curves: Vec<Vec<(f64, f64)>> = self
            .costs
            .iter()
            .map(|c| relative_curve(&c.losses, (c.losses.len() / 20).clamp(1, 50)))
            .collect();
        let max_step = curves.iter().flatten().map(|p| p.0).fold(1.0f64, f64::max);
        let max_rel = curves
            .iter()
            .flatten()
            .map(|p| p.1)
            .fold(1.0f64, f64::max)
            .min(3.0);
        let min_rel = curves
            .iter()
            .flatten()
            .map(|p| p.1)
            .fold(1.0f64, f64::min)
            .max(0.0);
        let mut chart = ChartBuilder::on(&halves[0])
            .caption("pretraining loss (relative to the start)", (FAMILY, 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..max_step, (min_rel * 0.95)..(max_rel * 1.02))
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc("optimizer step")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("loss / initial loss")
            .label_style((FAMILY, 12))
            .draw()
            .map_err(failed)?;
        for (i, (cost, curve)) in self.costs.iter().zip(&curves).enumerate() {
            let c = colour(i);
            chart
                .draw_series(LineSeries::new(curve.iter().copied(), c.stroke_width(2)))
                .map_err(failed)?
                .label(cost.task.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FAMILY, 11))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(failed)?;

        let epochs = self
            .costs
            .iter()
            .map(|c| c.knn_curve.len())
            .max()
            .unwrap_or(0);
        let accs = self
            .costs
            .iter()
            .flat_map(|c| c.knn_curve.iter().map(|p| p.1));
        let low = accs.fold(1.0f64, f64::min);
        let y_min = ((low * 10.0).floor() / 10.0).clamp(0.0, 0.9);
        let mut chart = ChartBuilder::on(&halves[1])
            .caption("held-out kNN accuracy", (FAMILY, 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5f64..(epochs as f64 + 0.5), y_min..1.0f64)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("kNN accuracy")
            .x_labels(epochs.clamp(1, 10))
            .label_style((FAMILY, 12))
            .draw()
            .map_err(failed)?;
        for (i, cost) in self.costs.iter().enumerate() {
            let c = colour(i);
            let points: Vec<(f64, f64)> =
                cost.knn_curve.iter().map(|&(e, a)| (e as f64, a)).collect();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                .map_err(failed)?;
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(failed)?;
        }
        Ok(())
    }
}

/// Two scatters per representation of its test features in two dimensions, by PCA and by
/// t-SNE, coloured by class.
pub fn embeddings(projections: &[Projection], class_names: &[String]) -> Result<Figure> {
    render(&Embeddings {
        projections,
        class_names,
    })
}

struct Embeddings<'a> {
    projections: &'a [Projection],
    class_names: &'a [String],
}

/// A scatter's caption, points and their classes.
type Panel<'a> = (String, &'a [[f32; 2]], &'a [u32]);

impl Embeddings<'_> {
    /// Two representations a row, each as its PCA and t-SNE panels.
    const COLUMNS: usize = 4;

    /// Every panel.
    fn panels(&self) -> Vec<Panel<'_>> {
        let mut out = Vec::new();
        for p in self.projections {
            out.push((
                format!("{} (PCA)", p.representation),
                &p.points[..],
                &p.labels[..],
            ));
            out.push((
                format!("{} (t-SNE)", p.representation),
                &p.tsne[..],
                &p.labels[..],
            ));
        }
        out
    }

    fn rows(&self) -> usize {
        (2 * self.projections.len()).div_ceil(Self::COLUMNS).max(1)
    }
}

/// The range holding all but the outermost 1% of `values` on either side, so one outlier does
/// not squash the rest into a corner.
fn robust_range(mut values: Vec<f32>) -> (f64, f64) {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return (-1.0, 1.0);
    }
    values.sort_by(f32::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize] as f64;
    let (lo, hi) = (at(0.01), at(0.99));
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

impl Draw for Embeddings<'_> {
    fn size(&self) -> (u32, u32) {
        (Self::COLUMNS as u32 * 300 + 150, 300 * self.rows() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (plots, legend) = root.split_horizontally(Self::COLUMNS as u32 * 300);
        let cells = plots.split_evenly((self.rows(), Self::COLUMNS));
        for (area, (caption, points, labels)) in cells.iter().zip(self.panels()) {
            let (x0, x1) = robust_range(points.iter().map(|p| p[0]).collect());
            let (y0, y1) = robust_range(points.iter().map(|p| p[1]).collect());
            let mut chart = ChartBuilder::on(area)
                .caption(&caption, (FAMILY, 15))
                .margin(8)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(failed)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .disable_x_axis()
                .disable_y_axis()
                .draw()
                .map_err(failed)?;
            chart
                .draw_series(
                    points
                        .iter()
                        .zip(labels)
                        .filter(|(p, _)| {
                            (x0..=x1).contains(&(p[0] as f64)) && (y0..=y1).contains(&(p[1] as f64))
                        })
                        .map(|(p, &l)| {
                            Circle::new((p[0] as f64, p[1] as f64), 2, colour(l as usize).filled())
                        }),
                )
                .map_err(failed)?;
            area.draw(&Rectangle::new(
                [
                    (0, 0),
                    (
                        area.dim_in_pixel().0 as i32 - 1,
                        area.dim_in_pixel().1 as i32 - 1,
                    ),
                ],
                BLACK.mix(0.2),
            ))
            .map_err(failed)?;
        }
        for (i, name) in self.class_names.iter().enumerate() {
            let y = 30 + 20 * i as i32;
            legend
                .draw(&Circle::new((14, y), 5, colour(i).filled()))
                .map_err(failed)?;
            legend
                .draw(&Text::new(name.clone(), (26, y - 7), (FAMILY, 13)))
                .map_err(failed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_curve_starts_at_one_and_smooths() {
        let losses: Vec<(u64, f64)> = (1..=10).map(|s| (s, 10.0 - s as f64 * 0.5)).collect();
        let curve = relative_curve(&losses, 2);
        assert_eq!(curve.len(), 9);
        // First window mean (9.5 + 9.0) / 2 = 9.25 is the scale.
        assert!((curve[0].1 - 1.0).abs() < 1e-12);
        assert_eq!(curve[0].0, 2.0);
        assert!(curve.windows(2).all(|w| w[1].1 < w[0].1));
        assert!(relative_curve(&[(1, f64::NAN)], 3).is_empty());
    }

    #[test]
    fn robust_range_ignores_a_far_outlier() {
        let mut v: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        v.push(1e6);
        let (lo, hi) = robust_range(v);
        assert!(lo < 0.02 && hi < 1.1, "{lo} {hi}");
    }
}
