//! Which schedule a run follows: the baseline, or cost_model's [`IncrementalSchedule`] plus what
//! only the trainer needs (where continual training stops, the optimizer reset, how new blocks
//! start). The plan, every step's phase, layers and compute, comes from cost_model.

use cost_model::{ComputeUnit, IncrementalSchedule, Plan, PlanError, Until};
pub use cost_model::{Growth, GrowthOptimizer, GrowthRewarmup, InitRule, Method, Placement};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;

/// An incremental run: the stages (cost_model's knobs) and what the trainer alone needs. A knob
/// left out (of a design file) takes its default, the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct IncrementalSpec {
    /// The named method these knobs were expanded from (`train --method`), if any: a label for
    /// logs and reports; the knobs below are what runs.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    #[command(flatten)]
    #[serde(flatten)]
    pub stages: IncrementalSchedule,
    /// Where the continual phase (all layers) stops. On the command line: `--until` and
    /// `--compute-unit` (see the `train` binary).
    #[arg(skip = Until::EqualCompute(ComputeUnit::Flops))]
    pub until: Until,
    /// Fresh AdamW moments when continual training starts (reference code: true).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, help_heading = "Incremental schedule")]
    pub reset_optimizer_at_continual: bool,
    /// How new blocks start: random (reference), zero (identity), copy (of the blocks they sit
    /// beside), stack (the trained stack repeated).
    #[arg(long, value_enum, default_value_t = Growth::Random, help_heading = "Incremental schedule")]
    pub growth: Growth,
    /// Where new blocks go: top (reference), middle (MIDAS), interleave.
    #[arg(long, value_enum, default_value_t = Placement::Top, help_heading = "Incremental schedule")]
    #[serde(default, skip_serializing_if = "Placement::is_top")]
    pub placement: Placement,
    /// Steps of a linear learning-rate ramp when continual training starts (after the optimizer
    /// reset); 0 = none (the reference code).
    #[arg(long, default_value_t = 0, help_heading = "Incremental schedule")]
    pub rewarmup_steps: u64,
    /// Zero the AdamW moments (and step count) of parameters that train again after being frozen
    /// (the older blocks at each phase 2), instead of resuming moments frozen since phase 1 began.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, help_heading = "Incremental schedule")]
    pub reset_moments_on_unfreeze: bool,
    /// The AdamW state at each growth: fresh (new blocks start without moments), copy (a copied
    /// block's moments come with it), reset (a fresh AdamW for every parameter).
    #[arg(long, value_enum, default_value_t = GrowthOptimizer::Fresh, help_heading = "Incremental schedule")]
    #[serde(default, skip_serializing_if = "GrowthOptimizer::is_fresh")]
    pub growth_optimizer: GrowthOptimizer,
    /// A linear learning-rate ramp after each growth: none, warmup (as long as the run's warmup:
    /// the schedule restarted) or a number of steps.
    #[arg(long, default_value = "none", value_name = "none|warmup|N", help_heading = "Incremental schedule")]
    #[serde(default, skip_serializing_if = "GrowthRewarmup::is_none")]
    pub growth_rewarmup: GrowthRewarmup,
    /// Let the schedule grow while the learning rate still warms up (the paper's even stages, also
    /// written `--stages S`, and MIDAS's Prop-1 do at short budgets); otherwise such a plan is
    /// refused.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, help_heading = "Incremental schedule")]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_growth_in_warmup: bool,
}

impl Default for IncrementalSpec {
    fn default() -> Self {
        IncrementalSpec {
            method: None,
            stages: IncrementalSchedule::default(),
            until: Until::EqualCompute(ComputeUnit::Flops),
            reset_optimizer_at_continual: true,
            growth: Growth::Random,
            placement: Placement::Top,
            rewarmup_steps: 0,
            reset_moments_on_unfreeze: false,
            growth_optimizer: GrowthOptimizer::Fresh,
            growth_rewarmup: GrowthRewarmup::None,
            allow_growth_in_warmup: false,
        }
    }
}

impl IncrementalSpec {
    /// The knobs of `method` on a model of `layers` blocks, stopping at `until`.
    pub fn of_method(method: Method, layers: u32, until: Until) -> Result<IncrementalSpec, PlanError> {
        let spec = method.expand(layers)?;
        Ok(IncrementalSpec {
            method: Some(method),
            stages: spec.schedule,
            until,
            growth: spec.growth,
            placement: spec.placement,
            reset_optimizer_at_continual: spec.reset_optimizer_at_continual,
            growth_optimizer: spec.growth_optimizer,
            growth_rewarmup: spec.growth_rewarmup,
            allow_growth_in_warmup: spec.grows_in_warmup,
            ..IncrementalSpec::default()
        })
    }

    /// How each block of the stack grown from `from` to `to` active blocks starts (its growth,
    /// placement and optimizer knobs as rules: `cost_model::growth::init_rules`). A fresh AdamW
    /// for every parameter (`growth_optimizer = reset`) is the trainer's to do besides.
    pub fn init_rules(&self, from: usize, to: usize) -> Vec<InitRule> {
        cost_model::init_rules(self.growth, self.placement, self.growth_optimizer, from, to)
    }
}

/// A full-model run: all layers train from the first step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineSpec {
    /// Where it stops; by default at its budget (the config's `steps`).
    #[serde(default = "at_budget")]
    pub until: Until,
    /// A depth control: the budget is `steps` steps of a model of this many layers (same width),
    /// so a shallower model (`model.layers`) trains to the deeper one's compute. `null`: the
    /// model's own layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_layers: Option<u32>,
}

/// A baseline stops at its budget unless told otherwise (what runs before `until` existed did).
fn at_budget() -> Until {
    Until::EqualCompute(ComputeUnit::Flops)
}

/// The schedule of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ScheduleSpec {
    /// All layers trainable from the first step.
    Baseline(BaselineSpec),
    /// Stages of phase 1 (new blocks) and phase 2 (all active blocks), then continual.
    Incremental(IncrementalSpec),
}

impl ScheduleSpec {
    /// The baseline: the full model, trained to its budget.
    pub fn baseline() -> ScheduleSpec {
        ScheduleSpec::Baseline(BaselineSpec { until: at_budget(), budget_layers: None })
    }

    /// Short name for run names and logs: `baseline`, `depth`, `inc4`, `one-layer`, `grow1-12`.
    pub fn name(&self) -> String {
        match self {
            ScheduleSpec::Baseline(BaselineSpec { budget_layers: None, .. }) => "baseline".into(),
            ScheduleSpec::Baseline(BaselineSpec { budget_layers: Some(_), .. }) => "depth".into(),
            ScheduleSpec::Incremental(IncrementalSpec { method: Some(method), .. }) => method.to_string(),
            ScheduleSpec::Incremental(spec) => match spec.stages.stage_layers.listed() {
                Some(depths) => {
                    let depths: Vec<String> = depths.iter().map(u32::to_string).collect();
                    format!("grow{}", depths.join("-"))
                }
                None => format!("inc{}", spec.stages.stages()),
            },
        }
    }

    /// What the schedule is, in words, for reports: `baseline`, `incremental, 4 stages`,
    /// `one-layer (depths 1,12)`, `incremental, depths 1,12`.
    pub fn describe(&self, layers: u32) -> String {
        let Some(spec) = self.incremental() else { return "baseline".into() };
        let depths: Vec<String> = spec.stages.depths(layers).iter().map(u32::to_string).collect();
        match (&spec.method, spec.stages.is_even(layers)) {
            (Some(method), _) => format!("{method} (depths {})", depths.join(",")),
            (None, true) => format!("incremental, {} stages", spec.stages.stages()),
            (None, false) => format!("incremental, depths {}", depths.join(",")),
        }
    }

    /// The plan of this schedule for `config` (`config.steps` is the baseline budget).
    pub fn plan(&self, config: &TrainConfig) -> Result<Plan, PlanError> {
        let (shape, tokens) = (&config.model, config.tokens_per_step as u64);
        match self {
            ScheduleSpec::Baseline(spec) => {
                Plan::full_model(shape, tokens, spec.budget_layers.unwrap_or(shape.blocks()), config.steps, spec.until)
            }
            ScheduleSpec::Incremental(spec) => {
                if spec.growth.copies() && spec.stages.depths(shape.blocks()).first() == Some(&0) {
                    return Err(PlanError::NothingToCopy(spec.growth.name()));
                }
                if spec.rewarmup_steps > 0 && !spec.reset_optimizer_at_continual {
                    return Err(PlanError::RewarmupWithoutReset);
                }
                if !spec.placement.is_top() && spec.stages.phase1_share > 0.0 {
                    return Err(PlanError::Phase1NeedsTop(spec.placement.name()));
                }
                let plan = Plan::incremental(shape, tokens, config.steps, &spec.stages, spec.until)?;
                // A growth while the rate still warms up grows an untrained model (G_stack grown
                // at the end of warmup stacked a source that had not trained yet).
                let warmup = match config.lr_schedule {
                    crate::config::LrKind::Constant => 0,
                    _ => config.warmup_steps,
                };
                // The paper's even stages grow where the paper puts them (as `paper-s<S>` does).
                let allowed =
                    spec.allow_growth_in_warmup || (spec.stages.is_even(shape.blocks()) && spec.method.is_none());
                let early = plan.segments.iter().find(|s| s.growth().is_some() && s.first_step <= warmup);
                if let (Some(early), false) = (early, allowed) {
                    return Err(PlanError::GrowthInWarmup { step: early.first_step, warmup_steps: warmup });
                }
                Ok(plan)
            }
        }
    }

    /// The incremental knobs, if any.
    pub fn incremental(&self) -> Option<&IncrementalSpec> {
        match self {
            ScheduleSpec::Incremental(spec) => Some(spec),
            ScheduleSpec::Baseline(_) => None,
        }
    }

    /// Where the run stops.
    pub fn until(&self) -> Until {
        match self {
            ScheduleSpec::Incremental(spec) => spec.until,
            ScheduleSpec::Baseline(spec) => spec.until,
        }
    }

    /// The same schedule stopping at `until`.
    pub fn with_until(&self, until: Until) -> ScheduleSpec {
        match self {
            ScheduleSpec::Incremental(spec) => ScheduleSpec::Incremental(IncrementalSpec { until, ..spec.clone() }),
            ScheduleSpec::Baseline(spec) => ScheduleSpec::Baseline(BaselineSpec { until, ..spec.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewarmup_follows_the_optimizer_reset() {
        let config = TrainConfig::preset("tiny").unwrap();
        let spec = |reset: bool| IncrementalSpec {
            rewarmup_steps: 10,
            reset_optimizer_at_continual: reset,
            ..Default::default()
        };
        // Alone it would ramp an optimizer that was never reset: refused, naming the knob.
        let err = ScheduleSpec::Incremental(spec(false)).plan(&config).unwrap_err();
        assert_eq!((err.clone(), err.field()), (PlanError::RewarmupWithoutReset, "rewarmup_steps"));
        // With the reset, the run's rate ramps over the first 10 continual steps.
        let schedule = ScheduleSpec::Incremental(spec(true));
        let plan = schedule.plan(&config).unwrap();
        let first = plan.continual_start().unwrap();
        let header = crate::RunHeader::new("r", config, schedule, plan, "cpu".into(), "2.11.0");
        let lr = header.lr_schedule();
        assert_eq!(lr.rewarmups, vec![cost_model::lr::Rewarmup { first_step: first, steps: 10 }]);
        assert!(lr.lr(first) < lr.lr(first + 9) && lr.lr(first + 9) <= lr.lr(first - 1));
    }

    #[test]
    fn run_json_holds_each_knob_once() {
        let spec = ScheduleSpec::Incremental(IncrementalSpec::default());
        let text = serde_json::to_string(&spec).unwrap();
        for key in ["\"stages\"", "\"phase1_share\"", "\"backward_ratio\"", "\"until\"", "\"growth\""] {
            assert_eq!(text.matches(key).count(), 1, "{key} in {text}");
        }
        assert_eq!(serde_json::from_str::<ScheduleSpec>(&text).unwrap(), spec);
        let base = serde_json::to_string(&ScheduleSpec::baseline()).unwrap();
        assert_eq!(base, r#"{"kind":"baseline","until":{"equal_compute":"flops"}}"#);
        // Baselines written before `until` existed stop at their budget, as they did.
        let old: ScheduleSpec = serde_json::from_str(r#"{"kind":"baseline"}"#).unwrap();
        assert_eq!(old, ScheduleSpec::baseline());
    }
}
