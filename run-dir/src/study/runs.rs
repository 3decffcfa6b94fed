//! A design's runs: which run trains what (arm, seed, rate, the budget it is planned for, where
//! it stops, the budgets it is compared at), and each run's config and schedule.

use anyhow::{bail, Context};
use cost_model::{ComputeUnit, Until};

use super::{Arm, Protocol, Rates, StudyDesign, SweepArms};
use crate::{IncrementalSpec, ScheduleSpec, TrainConfig};

impl StudyDesign {
    /// The config and schedule of `run`: its arm's, at its seed and rate (the arm's chosen rate
    /// from `rates`; the config's until it is chosen, which is how a study is planned), its steps
    /// those of the budget it is planned for, to its end with branch points for the budgets
    /// below.
    pub fn run_config(&self, run: &StudyRun, rates: &Rates) -> anyhow::Result<(TrainConfig, ScheduleSpec)> {
        let (arm, seed) = (&run.arm, run.seed);
        let mut config = self.arm_config(arm)?;
        config.seed = seed;
        config.data_seed = Some(seed);
        let rate = match run.rate {
            RunRate::Config => None,
            RunRate::Swept(rate) => Some(rate),
            RunRate::Chosen => rates.get(&arm.name).copied(),
            RunRate::Check(multiple) => {
                let baseline = self.baseline().map(|b| b.name.as_str()).unwrap_or_default();
                rates.get(baseline).map(|rate| rate * multiple)
            }
        };
        if let Some(rate) = rate {
            config.lr_min *= rate / config.lr_max;
            config.lr_max = rate;
        }
        if run.is_sweep() {
            // A sweep tries rates that may diverge: skip a non-finite batch and go on (its loss
            // then says the rate failed) instead of stopping the study.
            config.on_nan = crate::config::OnNan::Skip;
        }
        config.steps = cost_model::round_half_up(run.planned_for * config.steps as f64);
        // A method held to another budget than the study's (Bu's equal iterations: tokens).
        let unit =
            arm.schedule.incremental().and_then(|s| s.method).and_then(|m| m.budget_unit()).unwrap_or(self.budget_unit);
        let until = match self.protocol {
            Protocol::Fair => Until::Budget { multiple: run.until / run.planned_for, unit },
            Protocol::Paper => match &arm.schedule {
                ScheduleSpec::Baseline(_) => Until::EqualCompute(ComputeUnit::PaperUnits),
                ScheduleSpec::Incremental(spec) => {
                    let stages = ScheduleSpec::Incremental(IncrementalSpec {
                        until: Until::Steps(config.steps),
                        ..spec.clone()
                    });
                    Until::Steps(stages.plan(&config)?.incremental_steps + config.steps)
                }
            },
        };
        if self.protocol == Protocol::Fair {
            config.cooldown_budgets = run.branches();
            config.cooldown_unit = self.budget_unit;
        }
        Ok((config, arm.schedule.with_until(until)))
    }

    /// Every run of the study, in the order they train: the sweep (arm by arm, rate by rate,
    /// seed by seed; then the checks of the other arms at multiples of the baseline's rate), then
    /// seed by seed, arm by arm (every budget: one run per budget for an arm that grows, one run
    /// with branches for a full-model arm), then the ablations at the first seed (compared at
    /// budget 1 only, so they train to it and anneal there, with no branches).
    pub fn runs(&self) -> Vec<StudyRun> {
        let mut out = Vec::new();
        let per_budget = |arm: &Arm| self.protocol == Protocol::Fair && arm.schedule.incremental().is_some();
        // A sweep run is planned for the sweep's budget and annealed at its own end.
        let sweep_run = |arm: &Arm, name: String, seed: u64, rate: RunRate, budget: f64| {
            let planned_for = if per_budget(arm) { budget } else { 1.0 };
            StudyRun { name, arm: arm.clone(), seed, rate, planned_for, until: budget, budgets: vec![budget] }
        };
        if let Some(sweep) = &self.sweep {
            let sweeping = match sweep.arms {
                SweepArms::Each => &self.arms[..],
                SweepArms::Baseline => &self.arms[..self.arms.len().min(1)],
            };
            for arm in sweeping {
                for &rate in &sweep.rates {
                    for &seed in &sweep.seeds {
                        let name = format!("{}-lr{rate}-s{seed}", arm.name);
                        out.push(sweep_run(arm, name, seed, RunRate::Swept(rate), sweep.budget));
                    }
                }
            }
            if !sweep.checks.is_empty() {
                let mut multiples = vec![1.0];
                multiples.extend(&sweep.checks);
                for arm in self.arms.iter().skip(1) {
                    for &multiple in &multiples {
                        for &seed in &sweep.seeds {
                            let name = format!("{}-x{multiple}-s{seed}", arm.name);
                            out.push(sweep_run(arm, name, seed, RunRate::Check(multiple), sweep.budget));
                        }
                    }
                }
            }
        }
        let rate = if self.sweep.is_some() { RunRate::Chosen } else { RunRate::Config };
        for &seed in &self.seeds {
            for arm in self.arms.iter().filter(|a| a.seeds.as_ref().map_or(true, |s| s.contains(&seed))) {
                let budgets = self.budgets_of(arm);
                let largest = budgets.iter().copied().fold(0.0, f64::max);
                if per_budget(arm) {
                    for &budget in &budgets {
                        let name = format!("{}-b{budget}-s{seed}", arm.name);
                        let run = StudyRun {
                            name,
                            arm: arm.clone(),
                            seed,
                            rate,
                            planned_for: budget,
                            until: budget,
                            budgets: vec![budget],
                        };
                        out.push(run);
                    }
                } else {
                    let name = format!("{}-s{seed}", arm.name);
                    out.push(StudyRun {
                        name,
                        arm: arm.clone(),
                        seed,
                        rate,
                        planned_for: 1.0,
                        until: largest,
                        budgets,
                    });
                }
            }
        }
        if let Some(&first) = self.seeds.first() {
            for arm in &self.ablations {
                let name = format!("{}-s{first}", arm.name);
                out.push(StudyRun {
                    name,
                    arm: arm.clone(),
                    seed: first,
                    rate,
                    planned_for: 1.0,
                    until: 1.0,
                    budgets: vec![1.0],
                });
            }
        }
        out
    }

    /// FLOPs the whole study trains (main runs and cooldown branches), from the plans.
    pub fn predicted_flops(&self) -> anyhow::Result<f64> {
        Ok(self.planned_flops()?.iter().map(|(_, flops)| flops).sum())
    }

    /// Every run and branch directory (relative to the runs directory, in training order) with
    /// the FLOPs it trains itself (a branch: from its branch point to its end), from the plans.
    pub fn planned_flops(&self) -> anyhow::Result<Vec<(String, f64)>> {
        let mut out = Vec::new();
        for (run, config, plan) in self.planned_runs()? {
            out.push((run.name.clone(), plan.cumulative(plan.total_steps()).flops));
            for &budget in &config.cooldown_budgets {
                let point = crate::cooldown::branch_point(&plan, config.cooldown_unit, budget, &config)?;
                let flops = plan.cumulative(point.to_step).flops - plan.cumulative(point.from_step).flops;
                out.push((crate::cooldown::branch_run_name(&run.name, config.cooldown_unit, budget), flops));
            }
        }
        Ok(out)
    }

    /// Every run with its config and plan (at the config's rates, as a study is planned), each
    /// checked: its budget a whole number of steps, its config valid, its schedule plannable.
    pub(super) fn planned_runs(&self) -> anyhow::Result<Vec<(StudyRun, TrainConfig, cost_model::Plan)>> {
        let steps = self.arm_config(self.baseline().context("the study has no arms")?)?.steps;
        let mut out = Vec::new();
        for run in self.runs() {
            let what = || format!("arm {} ({})", run.arm.name, run.name);
            if (run.planned_for * steps as f64).fract() != 0.0 {
                bail!("{}: budget {} × {steps} steps is not a whole number of steps; choose steps so that every budget's is (e.g. a multiple of 4 for budgets of 0.25)", what(), run.planned_for);
            }
            let (config, schedule) = self.run_config(&run, &Rates::new()).with_context(what)?;
            config.validate().with_context(what)?;
            let plan = schedule.plan(&config).with_context(what)?;
            out.push((run, config, plan));
        }
        Ok(out)
    }
}

/// Which learning rate a study run trains at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunRate {
    /// The config's (a study without a sweep).
    Config,
    /// This peak rate: a sweep run.
    Swept(f64),
    /// Its arm's rate, chosen by the sweep.
    Chosen,
    /// This multiple of the baseline's chosen rate: a check of another arm (a sweep run too).
    Check(f64),
}

impl RunRate {
    /// True when the rate waits for a sweep: its arm's (chosen) or the baseline's (a check).
    pub fn waits_for(&self) -> bool {
        matches!(self, RunRate::Chosen | RunRate::Check(_))
    }
}

/// One run of a study: an arm at a seed and rate, planned for one budget, trained to `until`
/// and compared at `budgets` (all multiples of the baseline's budget): at its end when it is
/// one of them, by cooldown branches at the others.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyRun {
    pub name: String,
    pub arm: Arm,
    pub seed: u64,
    pub rate: RunRate,
    /// The budget whose steps the run's plan is made for (its stages scale with it).
    pub planned_for: f64,
    /// Where the run stops (a sweep run goes on past it: see [`StudyDesign::run_config`]).
    pub until: f64,
    pub budgets: Vec<f64>,
}

impl StudyRun {
    /// True for a run of the learning-rate sweep (a rate swept, or a check).
    pub fn is_sweep(&self) -> bool {
        matches!(self.rate, RunRate::Swept(_) | RunRate::Check(_))
    }

    /// The budgets below its end, as multiples of its own plan's budget: its cooldown branches.
    pub fn branches(&self) -> Vec<f64> {
        self.budgets.iter().filter(|&&b| self.branches_at(b)).map(|b| b / self.planned_for).collect()
    }

    /// True when the run is compared at `budget` by a cooldown branch (those below its end).
    fn branches_at(&self, budget: f64) -> bool {
        budget < self.until
    }

    /// Each budget it is compared at, with the run (or branch) directory, relative to the study's
    /// runs directory, whose last validation loss is the annealed loss there.
    pub fn compared(&self, unit: ComputeUnit) -> Vec<(f64, String)> {
        let name = |b: f64| match self.branches_at(b) {
            true => crate::cooldown::branch_run_name(&self.name, unit, b / self.planned_for),
            false => self.name.clone(),
        };
        self.budgets.iter().map(|&b| (b, name(b))).collect()
    }

    /// The run directory names it leaves: the run, then its branches.
    pub fn dirs(&self, unit: ComputeUnit) -> Vec<String> {
        let branches = self.branches().into_iter().map(|b| crate::cooldown::branch_run_name(&self.name, unit, b));
        std::iter::once(self.name.clone()).chain(branches).collect()
    }
}
