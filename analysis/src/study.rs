//! The numbers of a study (`<runs>/study.json`): every arm annealed at every budget over the
//! seeds, paired differences from the baseline, the compute each arm needs to match the
//! baseline's annealed loss at budget 1 and the verdict that follows, the ablations, and the
//! losses around every growth. All of it read from the run logs through the frame.

use anyhow::Context;
use polars::prelude::DataFrame;
use run_dir::study::{Protocol, StudyDesign, StudyRun};
use run_dir::{cooldown, LineKind};

use crate::frame::{growth_lines, hellaswag_coverage, last_value};
use crate::runs::RunLog;
use crate::stats::{paired_differences, reach, t_interval, Interval, Reach, Verdict};

/// One run (or branch) annealed at one budget.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnealedPoint {
    pub arm: String,
    pub seed: u64,
    /// Multiple of the baseline's budget (in the study's unit).
    pub budget: f64,
    pub val_loss: f64,
    /// Cumulative FLOPs and measured seconds where the loss was taken.
    pub flops: f64,
    pub seconds: f64,
}

/// An arm at one budget, over its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmAtBudget {
    pub arm: String,
    pub budget: f64,
    pub val_loss: Interval,
    pub flops: f64,
    /// Mean measured seconds.
    pub seconds: f64,
    /// Paired (by seed) difference from the baseline's annealed loss at the same budget; `None`
    /// for the baseline itself.
    pub minus_baseline: Option<Interval>,
}

/// The compute an arm needs to match the baseline's annealed loss at budget 1, per seed, as a
/// multiple of the baseline's budget.
#[derive(Debug, Clone, PartialEq)]
pub struct CatchUp {
    pub arm: String,
    pub per_seed: Vec<(u64, Reach)>,
    pub verdict: Verdict,
}

/// An ablation of one arm at the first seed, annealed at budget 1.
#[derive(Debug, Clone, PartialEq)]
pub struct AblationRow {
    pub arm: String,
    pub label: String,
    pub val_loss: f64,
    /// Minus the ablated arm's own annealed loss at budget 1 (same seed).
    pub minus_reference: Option<f64>,
}

/// Validation loss at the old and the new depth when a stage grows.
#[derive(Debug, Clone, PartialEq)]
pub struct GrowthRow {
    pub run: String,
    pub step: f64,
    pub to_layers: u32,
    pub before: f64,
    pub after: f64,
}

/// Everything a study's report shows.
#[derive(Debug, Clone)]
pub struct StudyNumbers {
    pub design: StudyDesign,
    pub points: Vec<AnnealedPoint>,
    pub at_budget: Vec<ArmAtBudget>,
    pub catch_up: Vec<CatchUp>,
    pub ablations: Vec<AblationRow>,
    pub growth: Vec<GrowthRow>,
    /// HellaSwag examples scored and skipped (too long for the context), if evaluated.
    pub hellaswag: Option<(u64, u64)>,
    /// Parameters of the 12-layer model, tokens of budget 1, and their ratio.
    pub parameters: u64,
    pub budget_tokens: u64,
    pub budget_flops: f64,
    /// Measured seconds of training (steps only) of every run and branch.
    pub training_seconds: f64,
    /// Wall seconds of the `train study` invocations that finished (`study-time.jsonl`).
    pub wall_seconds: Option<f64>,
    /// Runs and branches the study expects that have no log yet.
    pub missing: Vec<String>,
}

/// The name of the run `run` of the study (a main run) or of its branch at `budget`.
fn run_name(run: &StudyRun, budget: f64, unit: cost_model::ComputeUnit) -> String {
    if budget == run.largest_budget() {
        run.name.clone()
    } else {
        cooldown::branch_run_name(&run.name, unit, budget)
    }
}

/// The numbers of the study `design` from its run logs.
pub fn study_numbers(design: &StudyDesign, runs: &[RunLog], frame: &DataFrame) -> anyhow::Result<StudyNumbers> {
    let mut points = Vec::new();
    let mut missing = Vec::new();
    for run in design.runs() {
        for &budget in &run.budgets {
            let name = run_name(&run, budget, design.budget_unit);
            match last_value(frame, &name, LineKind::Val, "val_loss")? {
                Some(v) => points.push(AnnealedPoint {
                    arm: run.arm.name.clone(),
                    seed: run.seed,
                    budget,
                    val_loss: v.value,
                    flops: v.flops,
                    seconds: v.seconds,
                }),
                None => missing.push(name),
            }
        }
    }
    let of = |arm: &str, budget: f64| -> Vec<&AnnealedPoint> {
        points.iter().filter(|p| p.arm == arm && p.budget == budget).collect()
    };
    let baseline = design.baseline().context("the study has no arms")?.name.clone();
    let mut at_budget = Vec::new();
    for &budget in &design.budgets {
        let base: Vec<(u64, f64)> = of(&baseline, budget).iter().map(|p| (p.seed, p.val_loss)).collect();
        for arm in &design.arms {
            let here = of(&arm.name, budget);
            let losses: Vec<f64> = here.iter().map(|p| p.val_loss).collect();
            let Some(val_loss) = t_interval(&losses) else { continue };
            let mean = |f: fn(&AnnealedPoint) -> f64| here.iter().map(|p| f(p)).sum::<f64>() / here.len() as f64;
            let pairs: Vec<(u64, f64)> = here.iter().map(|p| (p.seed, p.val_loss)).collect();
            let minus_baseline =
                if arm.name == baseline { None } else { t_interval(&paired_differences(&pairs, &base)) };
            at_budget.push(ArmAtBudget {
                arm: arm.name.clone(),
                budget,
                val_loss,
                flops: mean(|p| p.flops),
                seconds: mean(|p| p.seconds),
                minus_baseline,
            });
        }
    }
    let mut catch_up = Vec::new();
    if design.protocol == Protocol::Fair {
        for arm in design.arms.iter().filter(|a| a.name != baseline) {
            let mut per_seed = Vec::new();
            for &seed in &design.seeds {
                let target = points.iter().find(|p| p.arm == baseline && p.seed == seed && p.budget == 1.0);
                let curve: Vec<(f64, f64)> = points
                    .iter()
                    .filter(|p| p.arm == arm.name && p.seed == seed)
                    .map(|p| (p.budget, p.val_loss))
                    .collect();
                let Some(target) = target else { continue };
                if let Some(r) = reach(&curve, target.val_loss) {
                    per_seed.push((seed, r));
                }
            }
            if !per_seed.is_empty() {
                let reaches: Vec<Reach> = per_seed.iter().map(|(_, r)| *r).collect();
                catch_up.push(CatchUp { arm: arm.name.clone(), per_seed, verdict: Verdict::from_reaches(&reaches) });
            }
        }
    }
    let first_seed = design.first_seed();
    let mut ablations = Vec::new();
    for arm in &design.ablations {
        let Some(p) = points.iter().find(|p| p.arm == arm.name && p.budget == 1.0) else { continue };
        // The ablated arm: the study arm whose name the ablation's extends (`inc4-zero-growth` → `inc4`).
        let reference = design
            .arms
            .iter()
            .filter(|a| arm.name.starts_with(&format!("{}-", a.name)))
            .find_map(|a| points.iter().find(|q| q.arm == a.name && q.seed == first_seed && q.budget == 1.0));
        ablations.push(AblationRow {
            arm: arm.name.clone(),
            label: arm.label.clone(),
            val_loss: p.val_loss,
            minus_reference: reference.map(|r| p.val_loss - r.val_loss),
        });
    }
    let mut growth = Vec::new();
    for run in design.runs().iter().filter(|r| r.seed == first_seed) {
        for (step, to_layers, before, after) in growth_lines(frame, &run.name)? {
            growth.push(GrowthRow { run: run.name.clone(), step, to_layers, before, after });
        }
    }
    let base_run = runs.iter().find(|r| r.name() == format!("{baseline}-s{first_seed}")).context("no baseline run")?;
    let budget = base_run.header.plan.budget();
    let training_seconds = runs
        .iter()
        .flat_map(|r| {
            let branch_seconds = r.branches.iter().map(|b| {
                let from = b.header.branch.as_ref().map_or(0, |b| b.from_step);
                let at_branch =
                    r.lines.iter().rfind(|l| l.kind == LineKind::Train && l.step == from).map(|l| l.seconds);
                last_seconds(b) - at_branch.unwrap_or(0.0)
            });
            std::iter::once(last_seconds(r)).chain(branch_seconds).collect::<Vec<_>>()
        })
        .sum();
    Ok(StudyNumbers {
        design: design.clone(),
        points,
        at_budget,
        catch_up,
        ablations,
        growth,
        hellaswag: hellaswag_coverage(frame)?,
        parameters: base_run.header.config.parameters(),
        budget_tokens: budget.tokens,
        budget_flops: budget.flops,
        training_seconds,
        wall_seconds: None,
        missing,
    })
}

/// A run's cumulative measured training seconds at its last step.
fn last_seconds(run: &RunLog) -> f64 {
    run.lines.iter().filter(|l| l.kind == LineKind::Train).map(|l| l.seconds).fold(0.0, f64::max)
}
