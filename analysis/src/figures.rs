//! Figures with plotters, each written as SVG and PNG: the drawing primitives ([`save`] a row of
//! [`Panel`]s) and the reports' figures (each a [`Figure`]). Text is drawn with an embedded DejaVu Sans
//! (via ab_glyph), so PNGs render the same on machines without system fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::align::{EqualComputePoint, RunCurves, Unit};
use crate::compare::Comparisons;
use crate::study::{ArmAtBudget, StudyNumbers};

/// The font every figure uses, bundled so PNG text never depends on the machine.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FONT_NAME: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TTF compiled into the binary; failure would be a build error in spirit.
        let _ = plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT);
    });
}

/// Colours per run, colour-blind friendly (Okabe–Ito), baseline in black.
pub fn run_color(index: usize, is_baseline: bool) -> RGBColor {
    const PALETTE: [RGBColor; 7] = [
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(0, 158, 115),
        RGBColor(213, 94, 0),
        RGBColor(0, 114, 178),
        RGBColor(204, 121, 167),
        RGBColor(170, 150, 20),
    ];
    if is_baseline {
        BLACK
    } else {
        PALETTE[index % PALETTE.len()]
    }
}

/// One line on a chart, with optional large markers (the equal-compute points).
#[derive(Debug, Clone)]
pub struct Line {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
    pub markers: Vec<(f64, f64)>,
    /// Draw points only (scatter), no connecting line.
    pub scatter: bool,
    /// A shaded band around the line: `(x, low, high)` (e.g. a 95% interval over seeds).
    pub band: Vec<(f64, f64, f64)>,
}

/// One panel.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    /// Draw the diagonal y = x (for measured-vs-predicted plots).
    pub diagonal: bool,
}

/// Draw `panels` side by side into `<dir>/<stem>.svg` and `<dir>/<stem>.png`; returns both paths.
pub fn save(
    dir: &Path,
    stem: &str,
    panels: &[Panel],
    width_per_panel: u32,
    height: u32,
) -> anyhow::Result<Vec<PathBuf>> {
    register_font();
    let size = (width_per_panel * panels.len() as u32, height);
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    draw(SVGBackend::new(&svg, size).into_drawing_area(), panels).map_err(|e| anyhow!("{}: {e}", svg.display()))?;
    draw(BitMapBackend::new(&png, size).into_drawing_area(), panels).map_err(|e| anyhow!("{}: {e}", png.display()))?;
    Ok(vec![svg, png])
}

fn bounds(panel: &Panel) -> ((f64, f64), (f64, f64)) {
    let band_edges: Vec<(f64, f64)> =
        panel.lines.iter().flat_map(|l| l.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)])).collect();
    let all = panel.lines.iter().flat_map(|l| l.points.iter().chain(&l.markers)).chain(&band_edges);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    if panel.diagonal {
        let (lo, hi) = (x0.min(y0), x1.max(y1));
        let pad = (hi - lo).max(1e-9) * 0.05;
        return ((lo - pad, hi + pad), (lo - pad, hi + pad));
    }
    let pad = |a: f64, b: f64| ((b - a).abs().max(a.abs() * 1e-3).max(1e-9)) * 0.04;
    ((x0 - pad(x0, x1), x1 + pad(x0, x1)), (y0 - pad(y0, y1), y1 + pad(y0, y1)))
}

/// Tick labels that stay short for any magnitude (steps, seconds, 1e15 FLOPs) and keep enough
/// decimals to tell neighbouring ticks apart on an axis spanning `span`.
fn tick(v: f64, span: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    // About ten ticks per axis: one more decimal than the tick spacing needs.
    let decimals = (-(span / 10.0).log10()).ceil().max(0.0) as usize + 1;
    if a >= 100.0 && span >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.decimals$}")
    }
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, panels: &[Panel]) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    for (area, panel) in root.split_evenly((1, panels.len())).iter().zip(panels) {
        let ((x0, x1), (y0, y1)) = bounds(panel);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, (FONT_NAME, 22))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(panel.x_label.as_str())
            .y_desc(panel.y_label.as_str())
            .x_label_formatter(&|v| tick(*v, x1 - x0))
            .y_label_formatter(&|v| tick(*v, y1 - y0))
            .label_style((FONT_NAME, 15))
            .axis_desc_style((FONT_NAME, 17))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        if panel.diagonal {
            let grey = RGBColor(150, 150, 150);
            chart
                .draw_series(LineSeries::new([(x0, x0), (x1, x1)], grey.stroke_width(1)))
                .map_err(err)?
                .label("measured = predicted")
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(1)));
        }
        for line in &panel.lines {
            let color = line.color;
            let style = color.stroke_width(2);
            if !line.band.is_empty() {
                let outline: Vec<(f64, f64)> = line
                    .band
                    .iter()
                    .map(|&(x, lo, _)| (x, lo))
                    .chain(line.band.iter().rev().map(|&(x, _, hi)| (x, hi)))
                    .collect();
                chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.18).filled()))).map_err(err)?;
            }
            if line.scatter {
                chart
                    .draw_series(line.points.iter().map(|&p| Circle::new(p, 5, color.filled())))
                    .map_err(err)?
                    .label(line.label.as_str())
                    .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
            } else {
                chart
                    .draw_series(LineSeries::new(line.points.iter().copied(), style))
                    .map_err(err)?
                    .label(line.label.as_str())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
            }
            // Large solid markers with a black rim: the equal-compute points.
            chart.draw_series(line.markers.iter().map(|&p| Circle::new(p, 8, color.filled()))).map_err(err)?;
            chart.draw_series(line.markers.iter().map(|&p| Circle::new(p, 8, BLACK.stroke_width(1)))).map_err(err)?;
        }
        chart
            .configure_series_labels()
            .label_font((FONT_NAME, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Every figure a report draws. Each owns its file name, its captions and its drawing (in
/// `Figure::spec`), so the reports name a figure by its value, never by its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// The paper's Figure 1: HellaSwag acc_norm vs step.
    HellaswagVsStep,
    /// The paper's Figure 2: train and val loss vs step.
    LossVsStep,
    /// Val loss vs cumulative FLOPs.
    ValLossVsFlops,
    /// Val loss vs cumulative seconds.
    ValLossVsSeconds,
    /// Measured vs predicted step time per phase.
    StepTime,
    /// A study's annealed loss per arm vs FLOPs, with its band over seeds.
    AnnealedVsFlops,
    /// A study's annealed loss per arm vs measured seconds, with its band over seeds.
    AnnealedVsSeconds,
}

/// What a figure is: its files, the caption above each panel, its size, and how its panels are drawn.
struct Spec {
    /// The file name without extension, of both its SVG and its PNG.
    stem: &'static str,
    /// One per panel, left to right.
    captions: &'static [&'static str],
    width_per_panel: u32,
    height: u32,
    /// Its panels (uncaptioned), or `None` when the data lacks what it shows.
    panels: fn(&FigureData) -> Option<Vec<Panel>>,
}

/// What the figures are drawn from.
#[derive(Debug, Clone, Copy)]
pub struct FigureData<'a> {
    /// Runs aligned with a baseline (for a study: its first seed's main runs).
    pub runs: &'a Comparisons,
    /// A study's numbers, when the runs are one.
    pub study: Option<&'a StudyNumbers>,
}

impl Figure {
    /// The figures of runs aligned with a baseline, in the order a report shows them.
    pub const RUNS: [Figure; 5] = [
        Figure::HellaswagVsStep,
        Figure::LossVsStep,
        Figure::ValLossVsFlops,
        Figure::ValLossVsSeconds,
        Figure::StepTime,
    ];

    fn spec(self) -> Spec {
        match self {
            Figure::HellaswagVsStep => Spec {
                stem: "fig1_hellaswag_vs_step",
                captions: &["Figure 1: HellaSwag acc_norm vs step (dots: equal compute, paper units)"],
                width_per_panel: 900,
                height: 560,
                panels: hellaswag_vs_step,
            },
            Figure::LossVsStep => Spec {
                stem: "fig2_loss_vs_step",
                captions: &[
                    "Figure 2a: train loss vs step (dots: equal compute, paper units)",
                    "Figure 2b: val loss vs step (dots: equal compute, paper units)",
                ],
                width_per_panel: 800,
                height: 560,
                panels: loss_vs_step,
            },
            Figure::ValLossVsFlops => Spec {
                stem: "fig3_val_loss_vs_flops",
                captions: &["Validation loss vs compute (FLOPs) (dots: baseline budget)"],
                width_per_panel: 900,
                height: 560,
                panels: |d| Some(val_loss_vs_compute(d.runs, Unit::Flops, "cumulative training FLOPs")),
            },
            Figure::ValLossVsSeconds => Spec {
                stem: "fig4_val_loss_vs_seconds",
                captions: &["Validation loss vs wall time (dots: baseline budget)"],
                width_per_panel: 900,
                height: 560,
                panels: |d| Some(val_loss_vs_compute(d.runs, Unit::Seconds, "cumulative training time (s)")),
            },
            Figure::StepTime => Spec {
                stem: "fig5_step_time_vs_predicted",
                captions: &["Step time per phase: measured vs FLOP model"],
                width_per_panel: 760,
                height: 620,
                panels: step_time,
            },
            Figure::AnnealedVsFlops => Spec {
                stem: "fig_annealed_vs_flops",
                captions: &["Annealed validation loss vs compute (mean over seeds, 95% band)"],
                width_per_panel: 1000,
                height: 640,
                panels: |d| annealed(d.study?, "training FLOPs", |a| a.flops),
            },
            Figure::AnnealedVsSeconds => Spec {
                stem: "fig_annealed_vs_seconds",
                captions: &["Annealed validation loss vs measured training time (mean over seeds, 95% band)"],
                width_per_panel: 1000,
                height: 640,
                panels: |d| annealed(d.study?, "measured training seconds", |a| a.seconds),
            },
        }
    }

    /// Its file name without extension, of both its SVG and its PNG.
    pub fn stem(self) -> &'static str {
        self.spec().stem
    }

    /// Its markdown image line, ending in a newline, for a report in the folder it was drawn into.
    pub fn link(self) -> String {
        let name = format!("{}.png", self.stem());
        format!("![{name}]({name})\n")
    }

    /// Draw it into `<out>/<stem>.svg` and `.png`; false (nothing written) when `data` lacks what
    /// it shows.
    pub fn draw(self, out: &Path, data: FigureData) -> anyhow::Result<bool> {
        let spec = self.spec();
        let Some(mut panels) = (spec.panels)(&data) else { return Ok(false) };
        debug_assert_eq!(panels.len(), spec.captions.len(), "{}: one caption per panel", spec.stem);
        for (panel, caption) in panels.iter_mut().zip(spec.captions) {
            panel.title = caption.to_string();
        }
        save(out, spec.stem, &panels, spec.width_per_panel, spec.height)?;
        Ok(true)
    }
}

/// Draw each of `which` into `out`; returns those drawn (the others lack their data).
pub fn draw_figures(out: &Path, data: FigureData, which: &[Figure]) -> anyhow::Result<Vec<Figure>> {
    let mut drawn = Vec::new();
    for &figure in which {
        if figure.draw(out, data)? {
            drawn.push(figure);
        }
    }
    Ok(drawn)
}

/// An uncaptioned panel (its figure's [`Spec`] captions it).
fn panel(x_label: &str, y_label: &str, lines: Vec<Line>) -> Panel {
    Panel { title: String::new(), x_label: x_label.into(), y_label: y_label.into(), lines, diagonal: false }
}

/// A run's line: the baseline in black, the others by their index.
fn run_line(runs: &Comparisons, i: usize, run: &str, points: Vec<(f64, f64)>, markers: Vec<(f64, f64)>) -> Line {
    Line {
        label: run.to_string(),
        color: run_color(i, run == runs.baseline),
        points,
        markers,
        scatter: false,
        band: Vec::new(),
    }
}

/// A run's equal-compute point in `unit` (none for the baseline).
fn marker(runs: &Comparisons, run: &str, unit: Unit) -> Option<EqualComputePoint> {
    runs.comparisons.iter().find(|c| c.run == run).and_then(|c| c.at(unit)).cloned()
}

/// One curve per run against step (`pick`), each marked where it spent the baseline's budget in
/// paper units (`value` there).
fn by_step(
    runs: &Comparisons,
    pick: fn(&RunCurves) -> Vec<(f64, f64)>,
    value: fn(&EqualComputePoint) -> Option<f64>,
) -> Vec<Line> {
    runs.curves
        .iter()
        .enumerate()
        .map(|(i, (run, c))| {
            let m = marker(runs, run, Unit::PaperUnits).and_then(|p| Some((p.step?, value(&p)?)));
            run_line(runs, i, run, pick(c), m.into_iter().collect())
        })
        .collect()
}

fn hellaswag_vs_step(d: &FigureData) -> Option<Vec<Panel>> {
    let evaluated = d.runs.curves.iter().any(|(_, c)| !c.acc_norm.is_empty());
    evaluated.then(|| vec![panel("step", "acc_norm", by_step(d.runs, |c| c.acc_norm.clone(), |p| p.acc_norm))])
}

fn loss_vs_step(d: &FigureData) -> Option<Vec<Panel>> {
    let train = by_step(d.runs, |c| c.train_loss.clone(), |p| p.train_loss);
    let val = by_step(d.runs, |c| c.val_loss.clone(), |p| p.val_loss);
    Some(vec![
        panel("step", "train loss (trailing mean, nats/token)", train),
        panel("step", "val loss (nats/token)", val),
    ])
}

/// Val loss per run against its cumulative compute in `unit`, marked at the baseline's budget.
fn val_loss_vs_compute(runs: &Comparisons, unit: Unit, x_label: &str) -> Vec<Panel> {
    let lines = runs
        .curves
        .iter()
        .enumerate()
        .map(|(i, (run, c))| {
            let points: Vec<(f64, f64)> =
                c.val_loss.iter().filter_map(|&(s, v)| Some((c.compute_at(unit, s)?, v))).collect();
            let m = marker(runs, run, unit).and_then(|p| Some((p.budget, p.val_loss?)));
            run_line(runs, i, run, points, m.into_iter().collect())
        })
        .collect();
    vec![panel(x_label, "val loss (nats/token)", lines)]
}

fn step_time(d: &FigureData) -> Option<Vec<Panel>> {
    let (runs, times) = (d.runs, &d.runs.step_times);
    if times.is_empty() {
        return None;
    }
    let lines = runs
        .curves
        .iter()
        .enumerate()
        .filter(|(_, (run, _))| *run != runs.baseline)
        .map(|(i, (run, _))| Line {
            label: run.clone(),
            color: run_color(i, false),
            points: times.iter().filter(|s| &s.run == run).map(|s| (s.predicted, s.measured)).collect(),
            markers: Vec::new(),
            scatter: true,
            band: Vec::new(),
        })
        .collect();
    Some(vec![Panel {
        diagonal: true,
        ..panel("predicted (step FLOPs / full-step FLOPs)", "measured (step time / full-step time)", lines)
    }])
}

/// A study's annealed loss per arm over its budgets against `x`, each budget marked, with its 95%
/// band over seeds.
fn annealed(s: &StudyNumbers, x_label: &str, x: fn(&ArmAtBudget) -> f64) -> Option<Vec<Panel>> {
    let baseline = s.design.baseline().map(|a| a.name.as_str()).unwrap_or_default();
    let lines = s
        .design
        .arms
        .iter()
        .enumerate()
        .map(|(i, arm)| {
            // (x, mean, low, high) at each budget; one seed has no band beyond its mean.
            let at: Vec<(f64, f64, f64, f64)> = s
                .at_budget
                .iter()
                .filter(|a| a.arm == arm.name)
                .map(|a| {
                    let (low, high) = a.val_loss.ci.unwrap_or((a.val_loss.mean, a.val_loss.mean));
                    (x(a), a.val_loss.mean, low, high)
                })
                .collect();
            Line {
                label: arm.name.clone(),
                color: run_color(i, arm.name == baseline),
                points: at.iter().map(|&(x, mean, _, _)| (x, mean)).collect(),
                markers: at.iter().map(|&(x, mean, _, _)| (x, mean)).collect(),
                scatter: false,
                band: at.iter().map(|&(x, _, low, high)| (x, low, high)).collect(),
            }
        })
        .collect();
    Some(vec![panel(x_label, "annealed val loss (nats/token; mean, 95% band)", lines)])
}
