//! The numbers of a study (`<runs>/study.json`): the learning-rate sweep (mean annealed loss and
//! its standard error over the sweep's seeds, and each arm's checks at multiples of the rate),
//! every arm annealed at every budget over the seeds, paired differences from the baseline, and
//! two readings of the compute each arm needs, per seed, with Holm-adjusted verdicts over the
//! arms: its **effective compute** (its annealed loss at budget 1 placed on the baseline's
//! annealed curve: the compute at which the baseline matches it, against what the arm spent), and
//! its **catch-up** (where its own curve over its budgets reaches the baseline's annealed loss at
//! budget 1). Then the smallest effect the seeds could detect, the ablations, and the losses around
//! every growth. All of it read from the run logs through the frame.

use anyhow::Context;
use polars::prelude::DataFrame;
use run_dir::study::{Protocol, Rates, RunRate, StudyDesign};
use run_dir::LineKind;

use crate::frame::{growth_lines, hellaswag_coverage, last_value};
use crate::runs::RunLog;
use crate::stats::{
    holm, minimum_detectable, paired_differences, reach, sample_sd, seeds_needed, t_interval, t_test_p, Interval,
    Reach, Verdict,
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

/// One arm at one rate of the sweep (or one check), over the sweep's seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRow {
    pub arm: String,
    /// The peak rate (for a check: the baseline's rate times `multiple`).
    pub rate: f64,
    /// For a check: its multiple of the baseline's rate (1 for the arm at the baseline's rate).
    pub multiple: Option<f64>,
    /// Annealed loss at the sweep's budget, per sweep seed (a diverged seed's is not finite).
    pub losses: Vec<(u64, f64)>,
    pub chosen: bool,
}

impl SweepRow {
    /// The mean over the seeds (`None`: none logged, or a seed diverged).
    pub fn mean(&self) -> Option<f64> {
        let n = self.losses.len();
        (n > 0).then(|| self.losses.iter().map(|l| l.1).sum::<f64>() / n as f64).filter(|m| m.is_finite())
    }

    /// The mean's standard error (`None` below 2 seeds).
    pub fn standard_error(&self) -> Option<f64> {
        let values: Vec<f64> = self.losses.iter().map(|l| l.1).collect();
        sample_sd(&values).map(|sd| sd / (values.len() as f64).sqrt()).filter(|se| se.is_finite())
    }

    /// The mean paired difference `self − other` over the seeds both have, and its standard
    /// error (`None` below 2 shared seeds).
    pub fn minus(&self, other: &SweepRow) -> Option<(f64, f64)> {
        let d = paired_differences(&self.losses, &other.losses);
        let se = sample_sd(&d)? / (d.len() as f64).sqrt();
        Some((d.iter().sum::<f64>() / d.len() as f64, se)).filter(|(m, se)| m.is_finite() && se.is_finite())
    }
}

/// The compute an arm needs, per seed, as a multiple of the baseline's budget, in one of the two
/// readings (see the module), with its verdict over the seeds and the test behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub arm: String,
    pub per_seed: Vec<(u64, Reach)>,
    pub verdict: Verdict,
    /// The smallest compute effect the seeds could detect (fraction of the compute, 80% power,
    /// two-sided 5%, on the log multiples' spread); `None` below 2 uncensored seeds.
    pub mde: Option<f64>,
    /// Two-sided p-value of the log multiple against 0 (a one-sample t-test over the seeds);
    /// `None` when a seed lies outside the range compared (its multiple is a bound).
    pub p: Option<f64>,
    /// `p` after Holm's adjustment over the arms of the reading that have one.
    pub p_holm: Option<f64>,
}

impl Reading {
    /// The conclusion once Holm's correction is applied: a saving or cost whose adjusted p is
    /// 0.05 or more is no difference.
    pub fn conclusion(&self) -> &'static str {
        match (self.verdict.conclusion(), self.p_holm) {
            ("saves" | "costs", Some(p)) if p >= 0.05 => "no difference",
            (c, _) => c,
        }
    }
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
    /// The spread of the log compute multiples pooled over arms (the primary reading's), and the
    /// seeds a `target_effect` would need at it.
    pub pooled_sd: Option<f64>,
    pub seeds_for_target: Option<usize>,
    pub points: Vec<AnnealedPoint>,
    pub at_budget: Vec<ArmAtBudget>,
    /// Each arm's effective compute on the baseline's annealed curve (when the baseline is
    /// annealed at three budgets or more).
    pub effective: Vec<Reading>,
    /// Each arm's catch-up along its own budgets (arms annealed at two budgets or more).
    pub catch_up: Vec<Reading>,
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
    let (points, missing) = annealed_points(design, frame)?;
    let rates = design.chosen_rates(runs_dir);
    let sweep = sweep_rows(design, frame, &rates)?;
    let baseline = design.baseline().context("the study has no arms")?.name.clone();
    let at_budget = arms_at_budgets(design, &points, &baseline);
    let base_run =
        runs.iter().find(|r| r.name() == format!("{baseline}-s{}", design.first_seed())).context("no baseline run")?;
    let budget = base_run.header.plan.budget();
    let (effective, catch_up) = match design.protocol {
        Protocol::Fair => readings(design, &points, &baseline, budget.flops),
        Protocol::Paper => (Vec::new(), Vec::new()),
    };
    // The spread of log multiples pooled over arms (each arm's own mean removed), and the seeds a
    // target effect would need at it, from the primary reading.
    let primary = if effective.is_empty() { &catch_up } else { &effective };
    let pooled_sd = pooled_spread(primary);
    let seeds_for_target = match (pooled_sd, design.target_effect) {
        (Some(sd), Some(effect)) => seeds_needed(sd, -(1.0 - effect).ln()),
        _ => None,
    };
    Ok(StudyNumbers {
        design: design.clone(),
        rates,
        sweep,
        pooled_sd,
        seeds_for_target,
        ablations: ablation_rows(design, &points),
        growth: growth_rows(design, frame)?,
        points,
        at_budget,
        effective,
        catch_up,
        hellaswag: hellaswag_coverage(frame)?,
        parameters: base_run.header.config.parameters(),
        budget_tokens: budget.tokens,
        budget_flops: budget.flops,
        training_seconds: runs.iter().map(training_seconds).sum(),
        wall_seconds: None,
        missing,
    })
}

/// Every main run (and branch) of the study annealed at each budget it is compared at; the run
/// names without a validation line yet.
fn annealed_points(design: &StudyDesign, frame: &DataFrame) -> anyhow::Result<(Vec<AnnealedPoint>, Vec<String>)> {
    let (mut points, mut missing) = (Vec::new(), Vec::new());
    for run in design.runs().into_iter().filter(|r| !r.is_sweep()) {
        for (budget, name) in run.compared(design.budget_unit) {
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
    Ok((points, missing))
}

/// Each arm at each budget it was annealed at, over its seeds, with its paired difference from
/// the baseline there (when the baseline was annealed there too).
fn arms_at_budgets(design: &StudyDesign, points: &[AnnealedPoint], baseline: &str) -> Vec<ArmAtBudget> {
    let of = |arm: &str, budget: f64| -> Vec<&AnnealedPoint> {
        points.iter().filter(|p| p.arm == arm && p.budget == budget).collect()
    };
    let mut budgets: Vec<f64> = points.iter().map(|p| p.budget).collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    let mut out = Vec::new();
    for budget in budgets {
        let base: Vec<(u64, f64)> = of(baseline, budget).iter().map(|p| (p.seed, p.val_loss)).collect();
        for arm in &design.arms {
            let here = of(&arm.name, budget);
            let losses: Vec<f64> = here.iter().map(|p| p.val_loss).collect();
            let Some(val_loss) = t_interval(&losses) else { continue };
            let mean = |f: fn(&AnnealedPoint) -> f64| here.iter().map(|p| f(p)).sum::<f64>() / here.len() as f64;
            let pairs: Vec<(u64, f64)> = here.iter().map(|p| (p.seed, p.val_loss)).collect();
            let differences = paired_differences(&pairs, &base);
            let other = arm.name != baseline && !differences.is_empty();
            out.push(ArmAtBudget {
                arm: arm.name.clone(),
                budget,
                val_loss,
                flops: mean(|p| p.flops),
                seconds: mean(|p| p.seconds),
                minus_baseline: other.then(|| t_interval(&differences)).flatten(),
                mde: other
                    .then(|| sample_sd(&differences).and_then(|sd| minimum_detectable(sd, differences.len())))
                    .flatten(),
            });
        }
    }
    out
}

/// Both readings of every arm other than the baseline, each with Holm's adjustment over its arms.
fn readings(
    design: &StudyDesign,
    points: &[AnnealedPoint],
    baseline: &str,
    budget_flops: f64,
) -> (Vec<Reading>, Vec<Reading>) {
    let curve = |arm: &str, seed: u64| -> Vec<(f64, f64)> {
        points.iter().filter(|p| p.arm == arm && p.seed == seed).map(|p| (p.budget, p.val_loss)).collect()
    };
    let at_one = |arm: &str, seed: u64| points.iter().find(|p| p.arm == arm && p.seed == seed && p.budget == 1.0);
    let baseline_budgets = design.baseline().map_or(0, |b| design.budgets_of(b).len());
    let (mut effective, mut catch_up) = (Vec::new(), Vec::new());
    for arm in design.arms.iter().filter(|a| a.name != baseline) {
        let (mut on_curve, mut along) = (Vec::new(), Vec::new());
        for &seed in &design.seeds {
            let (Some(target), Some(mine)) = (at_one(baseline, seed), at_one(&arm.name, seed)) else { continue };
            // Effective compute: the baseline's budget where it reaches the arm's loss, against
            // the compute the arm spent (less than the budget when held to equal iterations).
            if baseline_budgets >= 3 {
                let spent = mine.flops / budget_flops;
                if let Some(r) = reach(&curve(baseline, seed), mine.val_loss) {
                    on_curve.push((seed, needed_for(spent, r)));
                }
            }
            // Catch-up: where the arm's own curve reaches the baseline's loss at budget 1.
            let own = curve(&arm.name, seed);
            if own.len() >= 2 {
                along.extend(reach(&own, target.val_loss).map(|r| (seed, r)));
            }
        }
        effective.extend((!on_curve.is_empty()).then(|| reading(&arm.name, on_curve)));
        catch_up.extend((!along.is_empty()).then(|| reading(&arm.name, along)));
    }
    for family in [&mut effective, &mut catch_up] {
        let tested: Vec<usize> = (0..family.len()).filter(|&i| family[i].p.is_some()).collect();
        let adjusted = holm(&tested.iter().map(|&i| family[i].p.expect("tested")).collect::<Vec<_>>());
        for (&i, p) in tested.iter().zip(adjusted) {
            family[i].p_holm = Some(p);
        }
    }
    (effective, catch_up)
}

/// The compute an arm that spent `spent` (x budget) needs, as a multiple of the baseline's, when
/// the baseline reaches its loss at `r`: `spent / r`; a baseline that reaches it only beyond its
/// largest budget makes the multiple at most `spent / largest`, one that has reached it by its
/// smallest at least `spent / smallest`.
fn needed_for(spent: f64, r: Reach) -> Reach {
    match r {
        Reach::At(b) => Reach::At(spent / b),
        Reach::AtMost(b) => Reach::MoreThan(spent / b),
        Reach::MoreThan(b) => Reach::AtMost(spent / b),
    }
}

/// The verdict, detectable effect and t-test of one arm's per-seed multiples.
fn reading(arm: &str, per_seed: Vec<(u64, Reach)>) -> Reading {
    let reaches: Vec<Reach> = per_seed.iter().map(|(_, r)| *r).collect();
    let logs = exact_logs(&reaches);
    let mde = sample_sd(&logs).and_then(|sd| minimum_detectable(sd, logs.len())).map(|d| 1.0 - (-d).exp());
    let p = (logs.len() == reaches.len()).then(|| t_test_p(&logs)).flatten();
    Reading { arm: arm.into(), verdict: Verdict::from_reaches(&reaches), per_seed, mde, p, p_holm: None }
}

/// The spread of log multiples pooled over arms (each arm's own mean removed).
fn pooled_spread(readings: &[Reading]) -> Option<f64> {
    let deviations: Vec<f64> = readings
        .iter()
        .flat_map(|c| {
            let logs = exact_logs(&c.per_seed.iter().map(|(_, r)| *r).collect::<Vec<_>>());
            let mean = logs.iter().sum::<f64>() / logs.len().max(1) as f64;
            logs.into_iter().map(move |l| l - mean).collect::<Vec<_>>()
        })
        .collect();
    let freedom = readings.iter().map(|c| c.per_seed.len().saturating_sub(1)).sum::<usize>();
    (freedom > 0).then(|| (deviations.iter().map(|d| d * d).sum::<f64>() / freedom as f64).sqrt())
}

/// The ablations, each against the arm it ablates (the study arm its name extends:
/// `inc4-zero-growth` → `inc4`) at the first seed, budget 1.
fn ablation_rows(design: &StudyDesign, points: &[AnnealedPoint]) -> Vec<AblationRow> {
    let first_seed = design.first_seed();
    let mut ablations = Vec::new();
    for arm in &design.ablations {
        let Some(p) = points.iter().find(|p| p.arm == arm.name && p.budget == 1.0) else { continue };
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
    ablations
}

/// The validation loss around every growth of the first seed's runs planned for budget 1.
fn growth_rows(design: &StudyDesign, frame: &DataFrame) -> anyhow::Result<Vec<GrowthRow>> {
    let mut growth = Vec::new();
    let first = design.first_seed();
    for run in design.runs().iter().filter(|r| !r.is_sweep() && r.seed == first && r.until == 1.0) {
        for (step, to_layers, before, after) in growth_lines(frame, &run.name)? {
            growth.push(GrowthRow { run: run.name.clone(), step, to_layers, before, after });
        }
    }
    Ok(growth)
}

/// A run's measured training seconds, its branches' own steps included.
fn training_seconds(r: &RunLog) -> f64 {
    let branch_seconds = r.branches.iter().map(|b| {
        let from = b.header.branch.as_ref().map_or(0, |b| b.from_step);
        let at_branch = r.lines.iter().rfind(|l| l.kind == LineKind::Train && l.step == from).map(|l| l.seconds);
        last_seconds(b) - at_branch.unwrap_or(0.0)
    });
    last_seconds(r) + branch_seconds.sum::<f64>()
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

/// The sweep, arm by arm and rate by rate, then the checks arm by arm and multiple by multiple:
/// each run's annealed loss at the sweep's budget, per sweep seed.
fn sweep_rows(design: &StudyDesign, frame: &DataFrame, rates: &Rates) -> anyhow::Result<Vec<SweepRow>> {
    if design.sweep.is_none() {
        return Ok(Vec::new());
    }
    let runs = design.runs();
    let mut keys: Vec<(String, RunRate)> = Vec::new();
    for run in runs.iter().filter(|r| r.is_sweep()) {
        if !keys.iter().any(|(a, r)| *a == run.arm.name && *r == run.rate) {
            keys.push((run.arm.name.clone(), run.rate));
        }
    }
    let baseline_rate = design.baseline().and_then(|b| rates.get(&b.name)).copied();
    let mut rows = Vec::new();
    for (arm, rate) in keys {
        let mut losses = Vec::new();
        for run in runs.iter().filter(|r| r.arm.name == arm && r.rate == rate) {
            // A diverged seed stays in (its mean is then not finite): a rate is judged over all
            // its seeds, as `run_dir::study::choose_rate` chose it.
            if let Some(v) = last_value(frame, &run.name, LineKind::Val, "val_loss")? {
                losses.push((run.seed, v.value));
            }
        }
        let (rate, multiple) = match rate {
            RunRate::Check(m) => (baseline_rate.map_or(f64::NAN, |r| r * m), Some(m)),
            RunRate::Swept(r) => (r, None),
            _ => continue,
        };
        let chosen = multiple.is_none() && rates.get(&arm) == Some(&rate);
        rows.push(SweepRow { arm, rate, multiple, losses, chosen });
    }
    Ok(rows)
}

/// What the study cannot show, each item worded from its own numbers where it has any.
pub fn confounds(s: &StudyNumbers) -> Vec<String> {
    let d = &s.design;
    let mut out = Vec::new();
    match &d.sweep {
        Some(sweep) if sweep.arms == run_dir::study::SweepArms::Baseline => out.push(format!(
            "Every arm trains at the baseline's best rate, chosen at budget {} on {} sweep seed(s), and used at every budget; the checks above show whether an arm would rather have another, but only at the multiples tried, at that budget and on those seeds.",
            sweep.budget,
            sweep.seeds.len()
        )),
        Some(sweep) => out.push(format!(
            "Each arm's rate was chosen at budget {} on {} sweep seed(s) and used at every budget; the best rate may move with the budget, and the sweep's own noise is not in the intervals.",
            sweep.budget,
            sweep.seeds.len()
        )),
        None => out.push("Every arm trains at the same learning rate (no sweep): an arm whose best rate differs is judged at a rate that is not its own.".into()),
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
    let config = d.arms.first().and_then(|a| d.arm_config(a).ok());
    let fraction = config.as_ref().map_or(0.2, |c| c.cooldown_fraction);
    if config.is_some_and(|c| c.cooldown_fraction_of == run_dir::config::CooldownOf::Steps) {
        out.push(format!(
            "Annealing decays the rate over the last {:.0}% of each run's steps, which for a growing arm is more than {:.0}% of its compute (its last steps are its full-model ones): every arm is annealed, but not over the same share of its compute.",
            fraction * 100.0,
            fraction * 100.0
        ));
    }
    out.push(format!(
        "One model width, one context, one dataset (`{}` preset with the overrides above) and one device: the answer may change with scale, and the seconds measured are this machine's.",
        d.preset
    ));
    out.push("The growth methods are run as their papers (or official code) run them where the paper says; the README's \"Growth methods\" table names every difference and its knob (one learning-rate schedule for every arm, G_stack's growth point at a quarter of the run, Bu's and MIDAS's optimizer state at a growth, which their papers do not state).".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saving_holms_correction_does_not_keep_is_no_difference() {
        // Three seeds at 0.8, 0.85, 0.9: the raw interval lies below 1 (saves), p ≈ 0.03.
        let r = reading("a", [0.8, 0.85, 0.9].iter().enumerate().map(|(i, &m)| (i as u64, Reach::At(m))).collect());
        assert_eq!(r.verdict.conclusion(), "saves");
        let p = r.p.unwrap();
        assert!(p < 0.05, "{p}");
        // Alone in its family it stands; with two more arms of p = 0.5 Holm multiplies it by 3.
        let kept = Reading { p_holm: Some(p), ..r.clone() };
        assert_eq!(kept.conclusion(), "saves");
        let adjusted = holm(&[p, 0.5, 0.5])[0];
        assert!(adjusted >= 0.05, "{adjusted}");
        assert_eq!(Reading { p_holm: Some(adjusted), ..r }.conclusion(), "no difference");
    }

    #[test]
    fn a_multiple_on_the_baselines_curve_is_what_the_arm_spent_over_where_the_baseline_matches_it() {
        assert_eq!(needed_for(1.0, Reach::At(2.0)), Reach::At(0.5));
        // Better than the baseline at its largest budget (2): needs at most spent / 2.
        assert_eq!(needed_for(0.8, Reach::MoreThan(2.0)), Reach::AtMost(0.4));
        // Worse than the baseline at its smallest (0.25): needs more than spent / 0.25.
        assert_eq!(needed_for(1.0, Reach::AtMost(0.25)), Reach::MoreThan(4.0));
    }
}
