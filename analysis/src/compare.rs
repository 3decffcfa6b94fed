//! The numbers of the report: every run aligned with the baseline at its budget in each unit,
//! when each run catches up, measured vs predicted step time per phase, and the caveats the logs
//! themselves call for. Pure: runs and their frame in, named structs out.

use anyhow::{bail, Context};
use cost_model::Phase;
use polars::prelude::DataFrame;
use run_dir::config::LrKind;
use run_dir::LineKind;

use crate::align::{at_budget, catch_up, interpolate, smooth, CatchUp, EqualComputePoint, RunCurves, Unit};
use crate::frame::{run_totals, series, step_medians};
use crate::runs::RunLog;

/// One run's alignment with the baseline.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub run: String,
    /// Where the run stands at the baseline's budget, per unit.
    pub at_budget: Vec<EqualComputePoint>,
    pub catch_up: CatchUp,
}

impl Comparison {
    /// The run at the budget in `unit`.
    pub fn at(&self, unit: Unit) -> Option<&EqualComputePoint> {
        self.at_budget.iter().find(|p| p.unit == unit)
    }
}

/// A phase's measured step time next to what the FLOP model predicts, both relative to the
/// same run's full-model steps.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseStepTime {
    pub run: String,
    pub stage: u32,
    pub phase: Phase,
    /// Median step seconds / median full-model step seconds.
    pub measured: f64,
    /// Step FLOPs / full-model step FLOPs.
    pub predicted: f64,
}

/// What the "What was run" table says of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub name: String,
    /// `baseline`, or `incremental, S stages`.
    pub schedule: String,
    pub train_lines: u64,
}

/// Every number the report shows.
#[derive(Debug, Clone)]
pub struct Comparisons {
    pub baseline: String,
    /// The baseline step whose compute is the budget.
    pub budget_step: f64,
    /// The budget in each unit.
    pub budgets: Vec<(Unit, f64)>,
    pub baseline_val_loss: Option<f64>,
    pub baseline_train_loss: Option<f64>,
    pub baseline_acc_norm: Option<f64>,
    /// Every other run against the baseline.
    pub comparisons: Vec<Comparison>,
    /// The curves of every run, baseline first (what the figures draw).
    pub curves: Vec<(String, RunCurves)>,
    pub step_times: Vec<PhaseStepTime>,
    pub runs: Vec<RunSummary>,
    /// Things that limit what the numbers mean (schedules that differ, small evaluation sets).
    pub caveats: Vec<String>,
}

impl Comparisons {
    /// The budget in `unit`, if the baseline logged that unit.
    pub fn budget(&self, unit: Unit) -> Option<f64> {
        self.budgets.iter().find(|(u, _)| *u == unit).map(|(_, b)| *b)
    }
}

/// A run's curves from the frame: compute per unit, smoothed train loss, val loss, HellaSwag.
fn curves(frame: &DataFrame, run: &str) -> anyhow::Result<RunCurves> {
    let train = series(frame, run, LineKind::Train, "step", "loss")?;
    let window = (train.len() / 50).clamp(1, 50);
    Ok(RunCurves {
        compute: Unit::ALL
            .iter()
            .map(|&unit| Ok((unit, series(frame, run, LineKind::Train, "step", unit.column())?)))
            .collect::<anyhow::Result<_>>()?,
        train_loss: smooth(&train, window),
        val_loss: series(frame, run, LineKind::Val, "step", "val_loss")?,
        acc_norm: series(frame, run, LineKind::Hellaswag, "step", "acc_norm")?,
    })
}

/// Align `runs` (their lines in `frame`) with the baseline (`baseline`, or the first baseline
/// run) at its compute at `budget_step` (default: its last step).
pub fn compare(
    runs: &[RunLog],
    frame: &DataFrame,
    baseline: Option<&str>,
    budget_step: Option<f64>,
) -> anyhow::Result<Comparisons> {
    let base_run = match baseline {
        Some(name) => {
            runs.iter().find(|r| r.name() == name).with_context(|| format!("baseline {name}: no such run"))?
        }
        None => runs
            .iter()
            .find(|r| r.is_baseline())
            .context("no baseline run; train one first (just train, or just study)")?,
    };
    let base = curves(frame, base_run.name())?;
    let last_step = base.compute(Unit::PaperUnits).last().map(|p| p.0).context("the baseline has no train steps")?;
    let budget_step = budget_step.unwrap_or(last_step);
    if budget_step <= 0.0 || budget_step > last_step {
        bail!("budget step {budget_step}: the baseline ran steps 1..={last_step}; pick a step in that range");
    }
    let budgets: Vec<(Unit, f64)> =
        Unit::ALL.iter().filter_map(|&unit| base.compute_at(unit, budget_step).map(|b| (unit, b))).collect();
    let baseline_val_loss = interpolate(&base.val_loss, budget_step);

    let mut comparisons = Vec::new();
    let mut all_curves = vec![(base_run.name().to_string(), base.clone())];
    for run in runs.iter().filter(|r| r.name() != base_run.name()) {
        let c = curves(frame, run.name())?;
        let points = budgets.iter().map(|&(unit, budget)| at_budget(&c, unit, budget)).collect();
        let caught = catch_up(&c, baseline_val_loss.unwrap_or(f64::NAN), &budgets);
        comparisons.push(Comparison { run: run.name().to_string(), at_budget: points, catch_up: caught });
        all_curves.push((run.name().to_string(), c));
    }
    let summaries = runs
        .iter()
        .map(|r| {
            let schedule = r.header.schedule.describe(r.header.config.model.blocks());
            Ok(RunSummary {
                name: r.name().to_string(),
                schedule,
                train_lines: run_totals(frame, r.name())?.train_lines,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Comparisons {
        baseline: base_run.name().to_string(),
        budget_step,
        baseline_train_loss: interpolate(&base.train_loss, budget_step),
        baseline_acc_norm: interpolate(&base.acc_norm, budget_step),
        baseline_val_loss,
        budgets,
        comparisons,
        curves: all_curves,
        step_times: step_times(runs, frame, base_run)?,
        runs: summaries,
        caveats: caveats(runs, frame, base_run)?,
    })
}

/// Measured vs FLOP-predicted step time of every (stage, phase) of every incremental run,
/// relative to the same run's full-model steps (continual), or the baseline's.
fn step_times(runs: &[RunLog], frame: &DataFrame, baseline: &RunLog) -> anyhow::Result<Vec<PhaseStepTime>> {
    const MIN_STEPS: u32 = 3;
    let full_of = |medians: &[crate::frame::StepMedian], phase: Phase| {
        medians.iter().find(|m| m.phase == phase).map(|m| (m.seconds, m.flops))
    };
    let baseline_full = full_of(&step_medians(frame, baseline.name(), MIN_STEPS)?, Phase::Baseline);
    let mut out = Vec::new();
    for run in runs.iter().filter(|r| !r.is_baseline()) {
        let medians = step_medians(frame, run.name(), MIN_STEPS)?;
        let Some((full_seconds, full_flops)) = full_of(&medians, Phase::Continual).or(baseline_full) else { continue };
        for m in medians {
            out.push(PhaseStepTime {
                run: run.name().to_string(),
                stage: m.stage,
                phase: m.phase,
                measured: m.seconds / full_seconds,
                predicted: m.flops / full_flops,
            });
        }
    }
    Ok(out)
}

/// What a reader must keep in mind when reading the numbers, derived from the logs.
fn caveats(runs: &[RunLog], frame: &DataFrame, baseline: &RunLog) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let last_step = |r: &RunLog| run_totals(frame, r.name()).map(|t| t.last_step);
    let cosine = |r: &RunLog| r.header.config.lr_schedule == LrKind::Cosine;
    let base_steps = last_step(baseline)?;
    let mut longer = Vec::new();
    for r in runs.iter().filter(|r| !r.is_baseline() && cosine(r)) {
        let steps = last_step(r)?;
        if steps != base_steps {
            longer.push(format!("`{}` ({steps})", r.name()));
        }
    }
    if cosine(baseline) && !longer.is_empty() {
        out.push(format!(
            "Caveat: learning rates follow each run's own cosine schedule to its last step: the baseline's ends at step {base_steps}, {}; at the equal-compute points those runs are still mid-schedule.",
            longer.join(", ")
        ));
    }
    let mut n = None;
    for r in runs {
        n = n.max(run_totals(frame, r.name())?.hellaswag_n);
    }
    if let Some(n) = n.filter(|&n| n > 0) {
        let se = (0.25f64 * 0.75 / n as f64).sqrt();
        out.push(format!(
            "Caveat: HellaSwag on {n} examples has a standard error of about {se:.3} near chance (0.25); differences smaller than about {:.3} are noise.",
            2.0 * se
        ));
    }
    Ok(out)
}
