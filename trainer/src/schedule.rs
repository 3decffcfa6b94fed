//! Which schedule a run follows, and its plan from cost_model. The trainer never re-derives step
//! counts: every step's phase, stage, active layers, trainable set, context, tokens and compute
//! come from the plan.

use cost_model::{Phase1Trainable, PhaseStepRounding, Plan, PlanError, ScheduleConfig, Until};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::growth::Growth;

/// The layer-wise schedule's knobs (the paper's method; defaults are the reference code's
/// where it is explicit, the paper's otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncrementalSpec {
    /// Number of stages S; stage s adds about L/S blocks (uneven splits allowed and stated).
    pub stages: u32,
    /// What trains in phase 1 besides the new blocks.
    pub phase1_trainable: Phase1Trainable,
    /// Where the continual phase (all layers) stops.
    pub until: Until,
    /// A fresh optimizer (zero moments) when continual training starts (the reference code: yes).
    pub reset_optimizer_at_continual: bool,
    /// How new blocks start.
    pub growth: Growth,
    /// Paper-model backward/forward ratio (only changes the `paper` equal-compute target).
    pub backward_ratio: f64,
    /// Share of each stage in phase 1.
    pub phase1_share: f64,
    /// Whole steps per phase: exact, or the reference code's floor.
    pub phase_steps: PhaseStepRounding,
    /// Context length per stage (empty: the model's throughout).
    #[serde(default)]
    pub context_schedule: Vec<u64>,
    /// Tokens per step per stage (empty: the config's throughout).
    #[serde(default)]
    pub batch_schedule: Vec<u64>,
}

impl Default for IncrementalSpec {
    fn default() -> Self {
        IncrementalSpec {
            stages: 4,
            phase1_trainable: Phase1Trainable::New,
            until: Until::default(),
            reset_optimizer_at_continual: true,
            growth: Growth::Random,
            backward_ratio: 1.0,
            phase1_share: 0.5,
            phase_steps: PhaseStepRounding::Exact,
            context_schedule: Vec::new(),
            batch_schedule: Vec::new(),
        }
    }
}

/// The schedule of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ScheduleSpec {
    /// All layers trainable from the first step, for `steps` steps.
    Baseline,
    /// Stages of phase 1 (new blocks) and phase 2 (all active blocks), then continual.
    Incremental(IncrementalSpec),
}

impl ScheduleSpec {
    /// Short name for run names and logs: `baseline`, `inc4`, ...
    pub fn name(&self) -> String {
        match self {
            ScheduleSpec::Baseline => "baseline".into(),
            ScheduleSpec::Incremental(spec) => format!("inc{}", spec.stages),
        }
    }

    /// The plan of this schedule for `config` (`config.steps` is the baseline budget).
    pub fn plan(&self, config: &TrainConfig) -> Result<Plan, PlanError> {
        let shape = config.model_shape();
        match self {
            ScheduleSpec::Baseline => Plan::baseline(&shape, config.steps),
            ScheduleSpec::Incremental(spec) => {
                let schedule = ScheduleConfig {
                    stages: spec.stages,
                    base_steps: config.steps,
                    incremental_share: 1.0,
                    phase1_share: spec.phase1_share,
                    backward_ratio: spec.backward_ratio,
                    phase_steps: spec.phase_steps,
                    phase1_trainable: spec.phase1_trainable,
                    stage_context: spec.context_schedule.clone(),
                    stage_tokens_per_step: spec.batch_schedule.clone(),
                };
                Plan::incremental(&shape, &schedule, spec.until)
            }
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
