//! Which schedule a run follows: the baseline, or cost_model's [`IncrementalSchedule`] plus what
//! only the trainer needs (where continual training stops, the optimizer reset, how new blocks
//! start). The plan, every step's phase, layers and compute, comes from cost_model.

use cost_model::{ComputeUnit, IncrementalSchedule, Plan, PlanError, Until};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;

/// How the blocks a stage adds start out (the operators are in `trainer::growth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Growth {
    /// As the reference code: every block was initialised at step 0; nothing to do.
    #[default]
    Random,
    /// Output projections zeroed: the new block is an exact identity when it is added.
    Zero,
    /// Copy the top trained blocks, in order (gradual stacking).
    CopyTop,
    /// Repeat the trained stack from the bottom (G_stack-like).
    Stack,
}

/// An incremental run: the stages (cost_model's knobs) and what the trainer alone needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct IncrementalSpec {
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
    /// How new blocks start: random (reference), zero (identity), copy-top, stack.
    #[arg(long, value_enum, default_value_t = Growth::Random, help_heading = "Incremental schedule")]
    pub growth: Growth,
    /// Steps of a linear learning-rate ramp when continual training starts (after the optimizer
    /// reset); 0 = none (the reference code).
    #[arg(long, default_value_t = 0, help_heading = "Incremental schedule")]
    pub rewarmup_steps: u64,
    /// Zero the AdamW moments (and step count) of parameters that train again after being frozen
    /// (the older blocks at each phase 2), instead of resuming moments frozen since phase 1 began.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, help_heading = "Incremental schedule")]
    pub reset_moments_on_unfreeze: bool,
}

impl Default for IncrementalSpec {
    fn default() -> Self {
        IncrementalSpec {
            stages: IncrementalSchedule::default(),
            until: Until::EqualCompute(ComputeUnit::Flops),
            reset_optimizer_at_continual: true,
            growth: Growth::Random,
            rewarmup_steps: 0,
            reset_moments_on_unfreeze: false,
        }
    }
}

/// The schedule of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ScheduleSpec {
    /// All layers trainable from the first step, for the config's `steps` steps.
    Baseline,
    /// Stages of phase 1 (new blocks) and phase 2 (all active blocks), then continual.
    Incremental(IncrementalSpec),
}

impl ScheduleSpec {
    /// Short name for run names and logs: `baseline`, `inc4`, ...
    pub fn name(&self) -> String {
        match self {
            ScheduleSpec::Baseline => "baseline".into(),
            ScheduleSpec::Incremental(spec) => format!("inc{}", spec.stages.stages),
        }
    }

    /// The plan of this schedule for `config` (`config.steps` is the baseline budget).
    pub fn plan(&self, config: &TrainConfig) -> Result<Plan, PlanError> {
        let shape = config.model_shape();
        match self {
            ScheduleSpec::Baseline => Plan::baseline(&shape, config.steps),
            ScheduleSpec::Incremental(spec) => Plan::incremental(&shape, config.steps, &spec.stages, spec.until),
        }
    }

    /// The incremental knobs, if any.
    pub fn incremental(&self) -> Option<&IncrementalSpec> {
        match self {
            ScheduleSpec::Incremental(spec) => Some(spec),
            ScheduleSpec::Baseline => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_json_holds_each_knob_once() {
        let spec = ScheduleSpec::Incremental(IncrementalSpec::default());
        let text = serde_json::to_string(&spec).unwrap();
        for key in ["\"stages\"", "\"phase1_share\"", "\"backward_ratio\"", "\"until\"", "\"growth\""] {
            assert_eq!(text.matches(key).count(), 1, "{key} in {text}");
        }
        assert_eq!(serde_json::from_str::<ScheduleSpec>(&text).unwrap(), spec);
        let base = serde_json::to_string(&ScheduleSpec::Baseline).unwrap();
        assert_eq!(base, r#"{"kind":"baseline"}"#);
    }
}
