//! The report: equal-compute and catch-up tables, figures, and a plain statement of what the data
//! shows, written to `reports/report.md` next to the figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use polars::prelude::DataFrame;

use crate::align::{at_budget, catch_up, interpolate, smooth, CatchUp, EqualComputePoint, RunCurves, UNITS};
use crate::figures::{run_color, save, Line, Panel};
use crate::frame::{all_runs, series};
use crate::runs::{load_runs, RunLog, Skipped};

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub runs_dir: PathBuf,
    pub out_dir: PathBuf,
    /// The baseline run's name; default: the only (or first, by name) baseline run.
    pub baseline: Option<String>,
    /// Budget = the baseline's compute at this step (default: its last step).
    pub budget_step: Option<f64>,
}

/// One incremental run's alignment with the baseline.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub run: String,
    pub at_budget: Vec<EqualComputePoint>,
    pub catch_up: CatchUp,
}

/// Everything the report computed.
#[derive(Debug, Clone)]
pub struct Report {
    pub baseline: String,
    pub budget_step: f64,
    /// (unit, budget)
    pub budgets: Vec<(String, f64)>,
    pub baseline_val_loss: Option<f64>,
    pub baseline_train_loss: Option<f64>,
    pub baseline_acc_norm: Option<f64>,
    pub comparisons: Vec<Comparison>,
    /// (run, stage, phase, measured ratio, predicted ratio)
    pub step_times: Vec<(String, u32, String, f64, f64)>,
    pub figures: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
    /// Things that limit what the numbers mean (schedules that differ, small evaluation sets).
    pub caveats: Vec<String>,
    pub markdown: String,
}

fn curves(frame: &DataFrame, run: &str) -> anyhow::Result<RunCurves> {
    let train = series(frame, run, "train", "step", "loss")?;
    let window = (train.len() / 50).clamp(1, 50);
    Ok(RunCurves {
        compute: UNITS
            .iter()
            .map(|(unit, _)| Ok((unit.to_string(), series(frame, run, "train", "step", unit)?)))
            .collect::<anyhow::Result<_>>()?,
        train_loss: smooth(&train, window),
        val_loss: series(frame, run, "val", "step", "val_loss")?,
        acc_norm: series(frame, run, "hellaswag", "step", "acc_norm")?,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Measured vs FLOP-predicted step time of every (stage, phase) of every incremental run,
/// relative to the same run's full-model steps (continual), or the baseline's.
fn step_times(runs: &[RunLog], baseline: &RunLog) -> Vec<(String, u32, String, f64, f64)> {
    let per_step = |run: &RunLog| -> Vec<(u32, String, f64, f64)> {
        let train: Vec<_> = run.lines.iter().filter(|l| l.kind == cost_model::metrics::LineKind::Train).collect();
        train
            .windows(2)
            .filter(|w| w[1].step == w[0].step + 1)
            .map(|w| {
                (w[1].stage, w[1].phase.as_str().to_string(), w[1].seconds - w[0].seconds, w[1].flops - w[0].flops)
            })
            .collect()
    };
    let full_of = |steps: &[(u32, String, f64, f64)], phase: &str| -> Option<(f64, f64)> {
        let s: Vec<_> = steps.iter().filter(|s| s.1 == phase).collect();
        (s.len() >= 3).then(|| (median(s.iter().map(|s| s.2).collect()), median(s.iter().map(|s| s.3).collect())))
    };
    let baseline_full = full_of(&per_step(baseline), "baseline");
    let mut out = Vec::new();
    for run in runs.iter().filter(|r| !r.meta.is_baseline()) {
        let steps = per_step(run);
        let Some((full_seconds, full_flops)) = full_of(&steps, "continual").or(baseline_full) else { continue };
        let mut groups: BTreeMap<(u32, String), Vec<(f64, f64)>> = BTreeMap::new();
        for (stage, phase, seconds, flops) in &steps {
            groups.entry((*stage, phase.clone())).or_default().push((*seconds, *flops));
        }
        for ((stage, phase), v) in groups {
            if v.len() < 3 {
                continue;
            }
            let seconds = median(v.iter().map(|x| x.0).collect());
            let flops = median(v.iter().map(|x| x.1).collect());
            out.push((run.meta.name.clone(), stage, phase, seconds / full_seconds, flops / full_flops));
        }
    }
    out
}

/// Build the report from `options.runs_dir` and write it (figures + report.md) to `options.out_dir`.
pub fn build(options: &ReportOptions) -> anyhow::Result<Report> {
    let (runs, skipped) = load_runs(&options.runs_dir)?;
    let baseline = match &options.baseline {
        Some(name) => runs
            .iter()
            .find(|r| &r.meta.name == name)
            .with_context(|| format!("--baseline {name}: no such run in {}", options.runs_dir.display()))?,
        None => runs.iter().find(|r| r.meta.is_baseline()).with_context(|| {
            format!("{}: no baseline run; train one first (just train, or just study)", options.runs_dir.display())
        })?,
    };
    let frame = all_runs(&runs)?;
    let base = curves(&frame, &baseline.meta.name)?;
    let last_step = base.compute("paper_units").last().map(|p| p.0).context("the baseline has no train steps")?;
    let budget_step = options.budget_step.unwrap_or(last_step);
    if budget_step <= 0.0 || budget_step > last_step {
        bail!("--budget {budget_step}: the baseline ran steps 1..={last_step}; pick a step in that range");
    }
    let budgets: Vec<(String, f64)> = UNITS
        .iter()
        .filter_map(|(unit, _)| base.compute_at(unit, budget_step).map(|b| (unit.to_string(), b)))
        .collect();
    let baseline_val_loss = interpolate(&base.val_loss, budget_step);
    let baseline_train_loss = interpolate(&base.train_loss, budget_step);
    let baseline_acc_norm = interpolate(&base.acc_norm, budget_step);

    let mut comparisons = Vec::new();
    let mut all_curves = vec![(baseline.meta.name.clone(), base.clone())];
    for run in runs.iter().filter(|r| r.meta.name != baseline.meta.name) {
        let c = curves(&frame, &run.meta.name)?;
        let points = budgets.iter().map(|(unit, budget)| at_budget(&c, unit, *budget)).collect();
        let caught = catch_up(&c, baseline_val_loss.unwrap_or(f64::NAN), &budgets);
        comparisons.push(Comparison { run: run.meta.name.clone(), at_budget: points, catch_up: caught });
        all_curves.push((run.meta.name.clone(), c));
    }

    std::fs::create_dir_all(&options.out_dir).with_context(|| format!("creating {}", options.out_dir.display()))?;
    let step_times = step_times(&runs, baseline);
    let figures = draw_figures(&options.out_dir, &baseline.meta.name, &all_curves, &comparisons, &step_times)?;
    let mut report = Report {
        baseline: baseline.meta.name.clone(),
        budget_step,
        budgets,
        baseline_val_loss,
        baseline_train_loss,
        baseline_acc_norm,
        comparisons,
        step_times,
        figures,
        skipped,
        caveats: caveats(&runs, baseline),
        markdown: String::new(),
    };
    report.markdown = markdown(&report, &runs, &options.out_dir)?;
    let path = options.out_dir.join("report.md");
    let mut tmp = tempfile::NamedTempFile::new_in(&options.out_dir)?;
    std::io::Write::write_all(&mut tmp, report.markdown.as_bytes())?;
    tmp.persist(&path).with_context(|| format!("writing {}", path.display()))?;
    Ok(report)
}

fn draw_figures(
    out: &Path,
    baseline: &str,
    curves: &[(String, RunCurves)],
    comparisons: &[Comparison],
    step_times: &[(String, u32, String, f64, f64)],
) -> anyhow::Result<Vec<PathBuf>> {
    let marker = |run: &str, unit: &str| {
        comparisons.iter().find(|c| c.run == run).and_then(|c| c.at_budget.iter().find(|p| p.unit == unit)).cloned()
    };
    let line = |i: usize, run: &str, points: Vec<(f64, f64)>, markers: Vec<(f64, f64)>| Line {
        label: run.to_string(),
        color: run_color(i, run == baseline),
        points,
        markers,
        scatter: false,
    };
    let by_step = |pick: &dyn Fn(&RunCurves) -> Vec<(f64, f64)>, value: &dyn Fn(&EqualComputePoint) -> Option<f64>| {
        curves
            .iter()
            .enumerate()
            .map(|(i, (run, c))| {
                let m = marker(run, "paper_units").and_then(|p| Some((p.step?, value(&p)?)));
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
    if curves.iter().any(|(_, c)| !c.acc_norm.is_empty()) {
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
    files.extend(save(out, "fig2_loss_vs_step", &[train, val], 800, 560)?);

    for (unit, x_label, stem, title) in [
        ("flops", "cumulative training FLOPs", "fig3_val_loss_vs_flops", "Validation loss vs compute (FLOPs)"),
        ("seconds", "cumulative training time (s)", "fig4_val_loss_vs_seconds", "Validation loss vs wall time"),
    ] {
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

    if !step_times.is_empty() {
        let lines = curves
            .iter()
            .enumerate()
            .filter(|(_, (run, _))| run != baseline)
            .map(|(i, (run, _))| Line {
                label: run.clone(),
                color: run_color(i, false),
                points: step_times.iter().filter(|s| &s.0 == run).map(|s| (s.4, s.3)).collect(),
                markers: Vec::new(),
                scatter: true,
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

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

fn markdown(r: &Report, runs: &[RunLog], out: &Path) -> anyhow::Result<String> {
    let mut md = String::new();
    writeln!(md, "# stagewise report\n")?;
    writeln!(md, "Does growing a transformer layer by layer save compute? Incremental runs compared with the full-model baseline `{}` at its budget (step {}).\n", r.baseline, r.budget_step)?;
    writeln!(md, "## What was run\n")?;
    writeln!(md, "| run | schedule | preset | steps logged | device | libtorch | commit | started |")?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    for run in runs {
        let m = &run.meta;
        let steps = run.lines.iter().filter(|l| l.kind == cost_model::metrics::LineKind::Train).count();
        let schedule = match m.stages {
            Some(s) => format!("incremental, {s} stages"),
            None => m.schedule.clone(),
        };
        let commit: String = m.git_commit.chars().take(10).collect();
        writeln!(
            md,
            "| {} | {schedule} | {} | {steps} | {} | {} | `{commit}` | {} |",
            m.name, m.preset, m.device, m.libtorch_version, m.start_time
        )?;
    }
    if let Some(run) = runs.first() {
        writeln!(md, "\nModel and optimizer (from `{}/run.json`):\n", run.meta.name)?;
        writeln!(md, "```json\n{}\n```", serde_json::to_string(&run.meta.config)?)?;
    }
    for run in runs.iter().filter(|r| !r.meta.is_baseline()) {
        writeln!(md, "\n`{}` schedule: `{}`", run.meta.name, serde_json::to_string(&run.meta.schedule_spec)?)?;
    }

    writeln!(md, "\n## At equal compute\n")?;
    writeln!(md, "Each incremental run at the point where its cumulative compute equals the baseline's budget, in each unit. Baseline at its budget: train loss {}, val loss {}, HellaSwag acc_norm {}. Negative gaps favour the incremental run.\n", fmt(r.baseline_train_loss, 4), fmt(r.baseline_val_loss, 4), fmt(r.baseline_acc_norm, 4))?;
    for (unit, name) in UNITS {
        let Some((_, budget)) = r.budgets.iter().find(|(u, _)| u == unit) else { continue };
        writeln!(md, "### {name} (budget {budget:.4e})\n")?;
        writeln!(md, "| run | step at budget | train loss | val loss | val loss gap | acc_norm |")?;
        writeln!(md, "|---|---|---|---|---|---|")?;
        for c in &r.comparisons {
            let p = c.at_budget.iter().find(|p| p.unit == unit).expect("every unit aligned");
            let gap = p.val_loss.zip(r.baseline_val_loss).map(|(a, b)| a - b);
            let step = p.step.map_or("not reached".into(), |s| format!("{s:.1}"));
            writeln!(
                md,
                "| {} | {step} | {} | {} | {} | {} |",
                c.run,
                fmt(p.train_loss, 4),
                fmt(p.val_loss, 4),
                gap.map_or("–".into(), |g| format!("{g:+.4}")),
                fmt(p.acc_norm, 4)
            )?;
        }
        writeln!(md)?;
    }

    writeln!(md, "## Catching up\n")?;
    writeln!(md, "When each run first reaches the baseline's final val loss ({}), and the compute it had spent by then as a multiple of the baseline's.\n", fmt(r.baseline_val_loss, 4))?;
    writeln!(md, "| run | step | × paper units | × FLOPs | × seconds |")?;
    writeln!(md, "|---|---|---|---|---|")?;
    for c in &r.comparisons {
        let m = |unit: &str| c.catch_up.multiples.iter().find(|(u, _)| u == unit).and_then(|(_, m)| *m);
        let step = c.catch_up.step.map_or("never (within the logged steps)".into(), |s| format!("{s:.1}"));
        writeln!(
            md,
            "| {} | {step} | {} | {} | {} |",
            c.run,
            fmt(m("paper_units"), 3),
            fmt(m("flops"), 3),
            fmt(m("seconds"), 3)
        )?;
    }

    writeln!(md, "\n## Figures\n")?;
    for f in r.figures.iter().filter(|f| f.extension().is_some_and(|e| e == "png")) {
        let name = f.strip_prefix(out).unwrap_or(f).display().to_string();
        writeln!(md, "![{name}]({name})\n")?;
    }
    if !r.step_times.is_empty() {
        writeln!(md, "Step time per phase (median, relative to the run's own full-model steps):\n")?;
        writeln!(md, "| run | stage | phase | measured | FLOP model |")?;
        writeln!(md, "|---|---|---|---|---|")?;
        for (run, stage, phase, measured, predicted) in &r.step_times {
            writeln!(md, "| {run} | {stage} | {phase} | {measured:.2} | {predicted:.2} |")?;
        }
    }

    writeln!(md, "\n## What the data shows\n")?;
    for line in findings(r) {
        writeln!(md, "- {line}")?;
    }
    if !r.skipped.is_empty() {
        writeln!(md, "\n## Skipped log lines\n")?;
        for s in &r.skipped {
            writeln!(md, "- `{s}`")?;
        }
    }
    writeln!(
        md,
        "\n*Generated by `just report` from the run logs in this folder's runs; rerun it to reproduce every number.*"
    )?;
    Ok(md)
}

/// Plain sentences from the numbers, whatever they say.
pub fn findings(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for c in &r.comparisons {
        for unit in ["paper_units", "flops"] {
            let Some(p) = c.at_budget.iter().find(|p| p.unit == unit) else { continue };
            match (p.val_loss, r.baseline_val_loss) {
                (Some(v), Some(b)) => {
                    let verdict = if v > b {
                        "worse than"
                    } else if v < b {
                        "better than"
                    } else {
                        "equal to"
                    };
                    out.push(format!(
                        "At equal compute in {unit}, `{}` has val loss {v:.4}, {verdict} the baseline's {b:.4} ({:+.4}).",
                        c.run,
                        v - b
                    ));
                }
                _ => out.push(format!(
                    "`{}` never reached the baseline's budget in {unit} within its logged steps.",
                    c.run
                )),
            }
        }
        let flops = c.catch_up.multiples.iter().find(|(u, _)| u == "flops").and_then(|(_, m)| *m);
        match (c.catch_up.step, flops) {
            (Some(s), Some(m)) => out.push(format!(
                "`{}` first matched the baseline's final val loss at step {s:.0}, after {m:.2}× the baseline's FLOPs{}.",
                c.run,
                if m > 1.0 { " (more compute than the baseline, not a saving)" } else { " (a saving)" }
            )),
            _ => out.push(format!("`{}` did not match the baseline's final val loss within its logged steps.", c.run)),
        }
    }
    if out.is_empty() {
        out.push("Only a baseline was found: train incremental runs to compare (just study).".into());
    }
    out.extend(r.caveats.iter().cloned());
    out
}

/// What a reader must keep in mind when reading the numbers, derived from the logs.
fn caveats(runs: &[RunLog], baseline: &RunLog) -> Vec<String> {
    let mut out = Vec::new();
    let last_step = |r: &RunLog| r.lines.iter().map(|l| l.step).max().unwrap_or(0);
    let cosine = |r: &RunLog| r.meta.config.get("lr_schedule").and_then(|v| v.as_str()) == Some("cosine");
    let base_steps = last_step(baseline);
    let longer: Vec<String> = runs
        .iter()
        .filter(|r| !r.meta.is_baseline() && cosine(r) && last_step(r) != base_steps)
        .map(|r| format!("`{}` ({})", r.meta.name, last_step(r)))
        .collect();
    if cosine(baseline) && !longer.is_empty() {
        out.push(format!(
            "Caveat: learning rates follow each run's own cosine schedule to its last step: the baseline's ends at step {base_steps}, {}; at the equal-compute points those runs are still mid-schedule.",
            longer.join(", ")
        ));
    }
    let n = runs.iter().flat_map(|r| &r.lines).filter_map(|l| l.n).max();
    if let Some(n) = n {
        let se = (0.25f64 * 0.75 / n as f64).sqrt();
        out.push(format!(
            "Caveat: HellaSwag on {n} examples has a standard error of about {se:.3} near chance (0.25); differences smaller than about {:.3} are noise.",
            2.0 * se
        ));
    }
    out
}
