//! Figures with plotters, each written as SVG and PNG: the drawing primitives ([`save`] a row of
//! [`Panel`]s) and the report's figures ([`draw_figures`]). Text is drawn with an embedded DejaVu Sans
//! (via ab_glyph), so PNGs render the same on machines without system fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::align::{EqualComputePoint, RunCurves, Unit};
use crate::compare::Comparisons;

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

/// The figures of runs aligned with a baseline (see [`draw_figures`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunFigure {
    /// Figure 1: HellaSwag acc_norm vs step.
    Hellaswag,
    /// Figure 2: train and val loss vs step.
    LossVsStep,
    /// Val loss vs cumulative FLOPs and vs seconds.
    ValVsCompute,
    /// Measured vs predicted step time per phase.
    StepTime,
}

impl RunFigure {
    /// All of them.
    pub const ALL: [RunFigure; 4] =
        [RunFigure::Hellaswag, RunFigure::LossVsStep, RunFigure::ValVsCompute, RunFigure::StepTime];
}

/// One arm's curve over budgets: `(x, mean, low, high)` (the band is a 95% interval over seeds).
#[derive(Debug, Clone, PartialEq)]
pub struct ArmCurve {
    pub label: String,
    pub is_baseline: bool,
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// A figure of annealed loss per arm over budgets, each with its band, as SVG and PNG.
pub fn annealed(out: &Path, stem: &str, title: &str, x_label: &str, arms: &[ArmCurve]) -> anyhow::Result<Vec<PathBuf>> {
    let lines = arms
        .iter()
        .enumerate()
        .map(|(i, arm)| Line {
            label: arm.label.clone(),
            color: run_color(i, arm.is_baseline),
            points: arm.points.iter().map(|&(x, mean, _, _)| (x, mean)).collect(),
            markers: arm.points.iter().map(|&(x, mean, _, _)| (x, mean)).collect(),
            scatter: false,
            band: arm.points.iter().map(|&(x, _, low, high)| (x, low, high)).collect(),
        })
        .collect();
    let panel = Panel {
        title: title.into(),
        x_label: x_label.into(),
        y_label: "annealed val loss (nats/token; mean, 95% band)".into(),
        lines,
        diagonal: false,
    };
    save(out, stem, &[panel], 1000, 640)
}

/// Figures of runs aligned with a baseline: HellaSwag and losses vs step (the paper's Figures 1
/// and 2, with the equal-compute points), val loss vs FLOPs and vs seconds, and measured vs
/// predicted step time per phase; those in `which`. Returns the files written.
pub fn draw_figures(out: &Path, numbers: &Comparisons, which: &[RunFigure]) -> anyhow::Result<Vec<PathBuf>> {
    let (baseline, curves, comparisons) = (numbers.baseline.as_str(), &numbers.curves, &numbers.comparisons);
    let step_times = &numbers.step_times;
    let marker = |run: &str, unit: Unit| comparisons.iter().find(|c| c.run == run).and_then(|c| c.at(unit)).cloned();
    let line = |i: usize, run: &str, points: Vec<(f64, f64)>, markers: Vec<(f64, f64)>| Line {
        label: run.to_string(),
        color: run_color(i, run == baseline),
        points,
        markers,
        scatter: false,
        band: Vec::new(),
    };
    let by_step = |pick: &dyn Fn(&RunCurves) -> Vec<(f64, f64)>, value: &dyn Fn(&EqualComputePoint) -> Option<f64>| {
        curves
            .iter()
            .enumerate()
            .map(|(i, (run, c))| {
                let m = marker(run, Unit::PaperUnits).and_then(|p| Some((p.step?, value(&p)?)));
                line(i, run, pick(c), m.into_iter().collect())
            })
            .collect::<Vec<_>>()
    };
    let panel = |title: &str, x: &str, y: &str, lines: Vec<Line>| Panel {
        title: title.into(),
        x_label: x.into(),
        y_label: y.into(),
        lines,
        diagonal: false,
    };
    let mut files = Vec::new();
    let marker_note = "(dots: equal compute, paper units)";
    if which.contains(&RunFigure::Hellaswag) && curves.iter().any(|(_, c)| !c.acc_norm.is_empty()) {
        let lines = by_step(&|c| c.acc_norm.clone(), &|p| p.acc_norm);
        let p = panel(&format!("Figure 1: HellaSwag acc_norm vs step {marker_note}"), "step", "acc_norm", lines);
        files.extend(save(out, "fig1_hellaswag_vs_step", &[p], 900, 560)?);
    }
    let train = panel(
        &format!("Figure 2a: train loss vs step {marker_note}"),
        "step",
        "train loss (trailing mean, nats/token)",
        by_step(&|c| c.train_loss.clone(), &|p| p.train_loss),
    );
    let val = panel(
        &format!("Figure 2b: val loss vs step {marker_note}"),
        "step",
        "val loss (nats/token)",
        by_step(&|c| c.val_loss.clone(), &|p| p.val_loss),
    );
    if which.contains(&RunFigure::LossVsStep) {
        files.extend(save(out, "fig2_loss_vs_step", &[train, val], 800, 560)?);
    }

    let compute_figures = if which.contains(&RunFigure::ValVsCompute) { 2 } else { 0 };
    for (unit, x_label, stem, title) in [
        (Unit::Flops, "cumulative training FLOPs", "fig3_val_loss_vs_flops", "Validation loss vs compute (FLOPs)"),
        (Unit::Seconds, "cumulative training time (s)", "fig4_val_loss_vs_seconds", "Validation loss vs wall time"),
    ]
    .into_iter()
    .take(compute_figures)
    {
        let lines = curves
            .iter()
            .enumerate()
            .map(|(i, (run, c))| {
                let points: Vec<(f64, f64)> =
                    c.val_loss.iter().filter_map(|&(s, v)| Some((c.compute_at(unit, s)?, v))).collect();
                let m = marker(run, unit).and_then(|p| Some((p.budget, p.val_loss?)));
                line(i, run, points, m.into_iter().collect())
            })
            .collect();
        let p = panel(&format!("{title} (dots: baseline budget)"), x_label, "val loss (nats/token)", lines);
        files.extend(save(out, stem, &[p], 900, 560)?);
    }

    if which.contains(&RunFigure::StepTime) && !step_times.is_empty() {
        let lines = curves
            .iter()
            .enumerate()
            .filter(|(_, (run, _))| run != baseline)
            .map(|(i, (run, _))| Line {
                label: run.clone(),
                color: run_color(i, false),
                points: step_times.iter().filter(|s| &s.run == run).map(|s| (s.predicted, s.measured)).collect(),
                markers: Vec::new(),
                scatter: true,
                band: Vec::new(),
            })
            .collect();
        let p = Panel {
            title: "Step time per phase: measured vs FLOP model".into(),
            x_label: "predicted (step FLOPs / full-step FLOPs)".into(),
            y_label: "measured (step time / full-step time)".into(),
            lines,
            diagonal: true,
        };
        files.extend(save(out, "fig5_step_time_vs_predicted", &[p], 760, 620)?);
    }
    Ok(files)
}
