//! Cooldown branches: a run as it would have been had its learning rate ended at a given compute
//! budget. The run's plan says at which step `E` its compute reaches `budget` × its baseline
//! budget; the branch restarts from the run's checkpoint at `K`, where the decay of a run ending
//! at `E` starts (`E − round(cooldown_fraction · E)`, or the step where the run has spent
//! `1 − cooldown_fraction` of its FLOPs up to `E`: `cooldown_fraction_of`), and decays the
//! learning rate to `lr_min` by `E`, following the run's own plan. With a WSD run
//! the branch's rate equals the run's up to `K`, so the branch is exactly the annealed run.

use anyhow::bail;
use cost_model::{ComputeUnit, Plan};
use serde::{Deserialize, Serialize};

use crate::config::{LrKind, TrainConfig};
use crate::RunHeader;

/// What makes a run a cooldown branch of another (in its `run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CooldownBranch {
    /// The run branched from (the directory two levels up: `<run>/cooldowns/<unit>-<budget>/`).
    pub parent: String,
    pub budget: f64,
    pub unit: ComputeUnit,
    /// `K`: the parent's checkpoint the branch starts from.
    pub from_step: u64,
    /// `E`: the branch's last step (its plan ends here, its learning rate at `lr_min`).
    pub to_step: u64,
}

/// Where a branch at `budget` starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchPoint {
    /// `K`: the checkpoint it starts from.
    pub from_step: u64,
    /// `E`: the step where the run's compute reaches the budget.
    pub to_step: u64,
}

/// Where the branches of the `cooldown_budgets` of a run of `config` on `plan` start (the steps
/// it must checkpoint and keep) and end (where it logs its un-annealed loss beside theirs).
pub fn branch_points(config: &TrainConfig, plan: &Plan) -> anyhow::Result<Vec<BranchPoint>> {
    config.cooldown_budgets.iter().map(|&budget| branch_point(plan, config.cooldown_unit, budget, config)).collect()
}

/// The branch point of `plan` at `budget` × its baseline budget in `unit`, decaying as `config`
/// says (`cooldown_fraction` of the branch's steps or FLOPs). Errors say why there is none (the
/// budget lies past the run's end, or leaves no step to start from); they name fields, not flags.
pub fn branch_point(plan: &Plan, unit: ComputeUnit, budget: f64, config: &TrainConfig) -> anyhow::Result<BranchPoint> {
    let cooldown_fraction = config.cooldown_fraction;
    if !(budget.is_finite() && budget > 0.0) {
        bail!("budget {budget}: a budget is a positive multiple of the baseline budget, e.g. 0.5, 1, 2");
    }
    let total = plan.total_steps();
    let full = plan.cumulative(total).get(unit) / plan.budget().get(unit);
    let Some(end) = plan.step_at_compute(unit, budget * plan.budget().get(unit)) else {
        bail!(
            "budget {budget}: the run's plan ends at step {total}, at {full:.3} × its baseline budget in {}; the budget must be at most that",
            unit.as_str()
        );
    };
    let to_step = end.step.max(1);
    // The same decay the branch's learning-rate curve will have (`TrainConfig::lr_curve`).
    let decay = config.decay_steps(plan, to_step);
    if decay == 0 || decay >= to_step {
        bail!(
            "budget {budget}: ends at step {to_step}, too early for a decay of cooldown_fraction {cooldown_fraction} of it"
        );
    }
    Ok(BranchPoint { from_step: to_step - decay, to_step })
}

/// A cooldown branch of a run, derived from the run's header: its configuration (the learning
/// rate decays to `lr_min` at the branch's end), its plan (the run's, cut at `E`) and where it
/// starts.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedBranch {
    pub name: String,
    pub config: TrainConfig,
    pub schedule: crate::ScheduleSpec,
    pub plan: Plan,
    pub branch: CooldownBranch,
}

/// The branch of the run `main` at `budget` × its baseline budget in `unit`. A constant learning
/// rate is flat until any branch point too, so its branch decays from it (WSD with no warmup); a
/// cosine run's rate is already decaying, so it has no branches; a branch has none of its own.
pub fn derive_branch(main: &RunHeader, unit: ComputeUnit, budget: f64) -> anyhow::Result<DerivedBranch> {
    if main.branch.is_some() {
        bail!("{} is itself a cooldown branch; branch the run it came from", main.name);
    }
    let mut config = main.config.clone();
    match config.lr_schedule {
        LrKind::Wsd => {}
        LrKind::Constant => {
            config.lr_schedule = LrKind::Wsd;
            config.warmup_steps = 0;
            config.lr_min = config.lr_min.min(config.lr_max);
        }
        LrKind::Cosine => bail!(
            "{}: a cosine run's learning rate is already decaying before any branch point; cooldown branches need lr_schedule wsd (or constant)",
            main.name
        ),
    }
    let point = branch_point(&main.plan, unit, budget, &config)?;
    config.cooldown_budgets.clear();
    Ok(DerivedBranch {
        name: branch_run_name(&main.name, unit, budget),
        config,
        schedule: main.schedule.clone(),
        plan: main.plan.truncated(point.to_step),
        branch: CooldownBranch {
            parent: main.name.clone(),
            budget,
            unit,
            from_step: point.from_step,
            to_step: point.to_step,
        },
    })
}

impl DerivedBranch {
    /// `K`: the parent's checkpoint the branch starts from.
    pub fn from_step(&self) -> u64 {
        self.branch.from_step
    }

    /// The branch's header, for a branch starting now on `device`.
    pub fn into_header(self, device: String, libtorch_version: &str) -> RunHeader {
        let mut header = RunHeader::new(&self.name, self.config, self.schedule, self.plan, device, libtorch_version);
        header.branch = Some(self.branch);
        header
    }
}

/// The branch's directory name under `<run>/cooldowns/`: `<unit>-<budget>`, e.g. `flops-1.5`.
pub fn branch_name(unit: ComputeUnit, budget: f64) -> String {
    format!("{}-{budget}", unit.as_str())
}

/// The branch's run name, as logs and reports name it: `<parent>/cooldowns/<unit>-<budget>`.
pub fn branch_run_name(parent: &str, unit: ComputeUnit, budget: f64) -> String {
    format!("{parent}/{}/{}", crate::COOLDOWNS_DIR, branch_name(unit, budget))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cost_model::ModelShape;

    fn header(lr_schedule: &str) -> RunHeader {
        let mut config = TrainConfig::preset("tiny").unwrap();
        config.set(&format!("lr_schedule={lr_schedule}")).unwrap();
        config.set("cooldown_budgets=[0.5, 1.0]").unwrap();
        let schedule = crate::ScheduleSpec::baseline();
        let plan = schedule.plan(&config).unwrap();
        RunHeader::new("r", config, schedule, plan, "cpu".into(), "2.11.0")
    }

    #[test]
    fn a_branch_is_its_run_cut_at_the_budget_with_the_rate_annealed() {
        let main = header("wsd");
        let derived = derive_branch(&main, ComputeUnit::Flops, 0.5).unwrap();
        assert_eq!(derived.name, "r/cooldowns/flops-0.5");
        assert_eq!((derived.branch.from_step, derived.branch.to_step), (400, 500));
        assert_eq!(derived.plan.total_steps(), 500);
        assert!(derived.config.cooldown_budgets.is_empty(), "a branch takes no branches of its own");
        let branch = derived.into_header("cpu".into(), "2.11.0");
        assert_eq!(branch.branch.as_ref().map(|b| b.parent.as_str()), Some("r"));
        // A constant rate decays from where it is; a cosine one cannot be branched, nor a branch.
        let constant = derive_branch(&header("constant"), ComputeUnit::Flops, 1.0).unwrap();
        assert_eq!((constant.config.lr_schedule, constant.config.warmup_steps), (LrKind::Wsd, 0));
        assert!(derive_branch(&header("cosine"), ComputeUnit::Flops, 1.0).unwrap_err().to_string().contains("cosine"));
        assert!(derive_branch(&branch, ComputeUnit::Flops, 0.5)
            .unwrap_err()
            .to_string()
            .contains("itself a cooldown branch"));
    }

    #[test]
    fn branch_points_follow_the_plan() {
        let plan =
            Plan::baseline(&ModelShape::gpt2_124m(), cost_model::GPT2_TOKENS_PER_STEP, 1000).unwrap().truncated(1000);
        let config = TrainConfig::preset("tiny").unwrap();
        let at = |b| branch_point(&plan, ComputeUnit::Flops, b, &config);
        assert_eq!(at(1.0).unwrap(), BranchPoint { from_step: 800, to_step: 1000 });
        assert_eq!(at(0.5).unwrap(), BranchPoint { from_step: 400, to_step: 500 });
        assert_eq!(at(0.25).unwrap(), BranchPoint { from_step: 200, to_step: 250 });
        let err = at(2.0).unwrap_err().to_string();
        assert!(err.contains("ends at step 1000") && err.contains("1.000"), "{err}");
        assert!(at(0.0).is_err() && at(f64::NAN).is_err());
        assert!(at(0.001).is_err(), "one step is too short to decay");
        assert_eq!(branch_name(ComputeUnit::Flops, 1.0), "flops-1");
        assert_eq!(branch_name(ComputeUnit::PaperUnits, 0.5), "paper_units-0.5");
    }
}
