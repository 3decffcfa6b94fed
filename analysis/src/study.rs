//! The numbers of a study (`<runs>/study.json`): the learning-rate sweep and each arm's rate,
//! what annealing gained at it, every arm annealed at every budget over the seeds, paired
//! differences from the baseline, the compute each arm needs to match the baseline's annealed
//! loss at budget 1, the verdict that follows and the smallest effect the seeds could detect, the
//! ablations, and the losses around every growth. All of it read from the run logs through the
//! frame.

use anyhow::Context;
use polars::prelude::DataFrame;
use run_dir::study::{Protocol, Rates, RunRate, StudyDesign};
use run_dir::LineKind;

use crate::frame::{growth_lines, hellaswag_coverage, last_value, series};
use crate::runs::RunLog;
use crate::stats::{
    minimum_detectable, paired_differences, reach, sample_sd, seeds_needed, t_interval, Interval, Reach, Verdict,
};

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
    /// The smallest mean difference (nats) the seeds could detect at the differences' spread
    /// (80% power, two-sided 5%); `None` below 2 seeds.
    pub mde: Option<f64>,
}

/// One arm at one rate of the sweep, over the sweep's seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRow {
    pub arm: String,
    pub rate: f64,
    /// Mean annealed loss at the sweep's budget (`None`: not logged yet, or diverged).
    pub annealed: Option<f64>,
    /// Mean loss at the same step without the decay (the run going on at its constant rate).
    pub constant: Option<f64>,
    pub chosen: bool,
}

/// The compute an arm needs to match the baseline's annealed loss at budget 1, per seed, as a
/// multiple of the baseline's budget.
#[derive(Debug, Clone, PartialEq)]
pub struct CatchUp {
    pub arm: String,
    pub per_seed: Vec<(u64, Reach)>,
    pub verdict: Verdict,
    /// The smallest compute effect the seeds could detect (fraction of the compute, 80% power,
    /// two-sided 5%, on the log multiples' spread); `None` below 2 uncensored seeds.
    pub mde: Option<f64>,
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
    /// Each arm's rate, chosen by the sweep (empty without one).
    pub rates: Rates,
    pub sweep: Vec<SweepRow>,
    /// The spread of the log compute multiples pooled over arms, and the seeds a
    /// `target_effect` would need at it.
    pub pooled_sd: Option<f64>,
    pub seeds_for_target: Option<usize>,
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
    /// Wall seconds of the `train study` invocations (`study-time.jsonl`; a killed one up to its last update).
    pub wall_seconds: Option<f64>,
    /// Runs and branches the study expects that have no log yet.
    pub missing: Vec<String>,
}

/// The numbers of the study `design` from its run logs (`runs_dir` holds them: the sweep's
/// choices are read there, as the trainer read them).
pub fn study_numbers(
    design: &StudyDesign,
    runs: &[RunLog],
    frame: &DataFrame,
    runs_dir: &std::path::Path,
) -> anyhow::Result<StudyNumbers> {
    let unit = design.budget_unit;
    let mut points = Vec::new();
    let mut missing = Vec::new();
    let studied: Vec<_> = design.runs().into_iter().filter(|r| !r.is_sweep()).collect();
    for run in &studied {
        for (budget, name) in run.compared(unit) {
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
    let rates = design.chosen_rates(runs_dir);
    let sweep = sweep_rows(design, runs, frame, &rates)?;
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
            let differences = paired_differences(&pairs, &base);
            let minus_baseline = if arm.name == baseline { None } else { t_interval(&differences) };
            let mde = (arm.name != baseline)
                .then(|| sample_sd(&differences).and_then(|sd| minimum_detectable(sd, differences.len())))
                .flatten();
            at_budget.push(ArmAtBudget {
                arm: arm.name.clone(),
                budget,
                val_loss,
                flops: mean(|p| p.flops),
                seconds: mean(|p| p.seconds),
                minus_baseline,
                mde,
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
                let logs = exact_logs(&reaches);
                let mde = sample_sd(&logs).and_then(|sd| minimum_detectable(sd, logs.len())).map(|d| 1.0 - (-d).exp());
                catch_up.push(CatchUp {
                    arm: arm.name.clone(),
                    per_seed,
                    verdict: Verdict::from_reaches(&reaches),
                    mde,
                });
            }
        }
    }
    // The spread of log multiples pooled over arms (each arm's own mean removed), and the seeds a
    // target effect would need at it.
    let deviations: Vec<f64> = catch_up
        .iter()
        .flat_map(|c| {
            let logs = exact_logs(&c.per_seed.iter().map(|(_, r)| *r).collect::<Vec<_>>());
            let mean = logs.iter().sum::<f64>() / logs.len().max(1) as f64;
            logs.into_iter().map(move |l| l - mean).collect::<Vec<_>>()
        })
        .collect();
    let freedom = catch_up.iter().map(|c| c.per_seed.len().saturating_sub(1)).sum::<usize>();
    let pooled_sd = (freedom > 0).then(|| (deviations.iter().map(|d| d * d).sum::<f64>() / freedom as f64).sqrt());
    let seeds_for_target = match (pooled_sd, design.target_effect) {
        (Some(sd), Some(effect)) => seeds_needed(sd, -(1.0 - effect).ln()),
        _ => None,
    };
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
    for run in studied.iter().filter(|r| r.seed == first_seed && r.until == 1.0) {
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
        rates,
        sweep,
        pooled_sd,
        seeds_for_target,
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

/// The log multiples of the seeds that reached the target inside the compared budgets (censored
/// seeds have none).
fn exact_logs(reaches: &[Reach]) -> Vec<f64> {
    reaches.iter().filter_map(|r| if let Reach::At(m) = r { Some(m.ln()) } else { None }).collect()
}

/// The sweep, arm by arm and rate by rate: the annealed loss at the sweep's budget (the branch's
/// last validation) and the un-annealed one at the same step (the run's own validation where the
/// branch ends), each a mean over the sweep's seeds.
fn sweep_rows(
    design: &StudyDesign,
    runs: &[RunLog],
    frame: &DataFrame,
    rates: &Rates,
) -> anyhow::Result<Vec<SweepRow>> {
    let Some(sweep) = &design.sweep else { return Ok(Vec::new()) };
    let branches: Vec<&RunLog> = runs.iter().flat_map(|r| &r.branches).collect();
    let mut rows = Vec::new();
    for arm in &design.arms {
        for &rate in &sweep.rates {
            let (mut annealed, mut constant) = (Vec::new(), Vec::new());
            for run in design.runs().iter().filter(|r| r.arm.name == arm.name && r.rate == RunRate::Swept(rate)) {
                for (_, name) in run.compared(design.budget_unit) {
                    // A diverged seed stays in (its mean is then not finite): a rate is judged
                    // over all its seeds, as `run_dir::study::choose_rate` chose it.
                    if let Some(v) = last_value(frame, &name, LineKind::Val, "val_loss")? {
                        annealed.push(v.value);
                    }
                    let end = branches
                        .iter()
                        .find(|b| b.name() == name)
                        .and_then(|b| b.header.branch.as_ref())
                        .map(|b| b.to_step);
                    let at_end = series(frame, &run.name, LineKind::Val, "step", "val_loss")?
                        .into_iter()
                        .find(|(step, _)| Some(*step as u64) == end);
                    constant.extend(at_end.map(|(_, loss)| loss));
                }
            }
            let mean = |v: &[f64]| Some(v.iter().sum::<f64>() / v.len() as f64).filter(|m| m.is_finite());
            rows.push(SweepRow {
                arm: arm.name.clone(),
                rate,
                annealed: mean(&annealed),
                constant: mean(&constant),
                chosen: rates.get(&arm.name) == Some(&rate),
            });
        }
    }
    Ok(rows)
}

/// What the study cannot show, each item worded from its own numbers where it has any.
pub fn confounds(s: &StudyNumbers) -> Vec<String> {
    let d = &s.design;
    let mut out = Vec::new();
    // Does depth itself pay at this scale? The depth controls say.
    for arm in &d.arms {
        let run_dir::ScheduleSpec::Baseline(run_dir::BaselineSpec { budget_layers: Some(_), .. }) = &arm.schedule
        else {
            continue;
        };
        let Some(c) = s.catch_up.iter().find(|c| c.arm == arm.name) else { continue };
        let line = match c.verdict.conclusion() {
            "saves" => format!(
                "Depth does not pay at this scale: the {} {}. Growing toward 12 layers is judged where the 12 layers themselves are a handicap, so a growing arm that saves compute may only be saving the cost of depth.",
                arm.label,
                c.verdict.sentence()
            ),
            "costs" => format!("Depth pays at this scale: the {} {}.", arm.label, c.verdict.sentence()),
            _ => format!("Whether depth pays at this scale is not settled: the {} {}.", arm.label, c.verdict.sentence()),
        };
        out.push(line);
    }
    if let Some(sweep) = &d.sweep {
        out.push(format!(
            "Each arm's rate was chosen at budget {} on {} sweep seed(s) and used at every budget; the best rate may move with the budget, and the sweep's own noise is not in the intervals.",
            sweep.budget,
            sweep.seeds.len()
        ));
    } else {
        out.push("Every arm trains at the same learning rate (no sweep): an arm whose best rate differs is judged at a rate that is not its own.".into());
    }
    if let (Some(effect), Some(n)) = (d.target_effect, s.seeds_for_target) {
        if n > d.seeds.len() {
            out.push(format!(
                "{} seeds are too few for the {:.0}% effect the design aims at: at the observed spread it takes {n}; a verdict of no difference here does not rule out effects of that size.",
                d.seeds.len(),
                effect * 100.0
            ));
        }
    }
    let fraction = d.arms.first().and_then(|a| d.arm_config(a).ok()).map_or(0.2, |c| c.cooldown_fraction);
    out.push(format!(
        "Annealing decays the rate over the last {:.0}% of each run's steps, which for a growing arm is more than {:.0}% of its compute (its last steps are its full-model ones): every arm is annealed, but not over the same share of its compute.",
        fraction * 100.0,
        fraction * 100.0
    ));
    out.push(format!(
        "One model width, one context, one dataset (`{}` preset with the overrides above) and one device: the answer may change with scale, and the seconds measured are this machine's.",
        d.preset
    ));
    out.push("The growth methods follow their papers where the fair protocol allows; where they differ (one learning-rate schedule for every arm, no optimizer reset at growth, G_stack's growth point as a share of the budget) the README's \"Growth methods\" says how.".into());
    out
}
