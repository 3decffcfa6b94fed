//! Which schedule a run follows, and its plan from cost_model (the trainer never re-derives step
//! counts: every step's phase, active layers, trainable set and compute come from the plan).

use cost_model::{Plan, PlanError};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;

/// The schedule of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ScheduleSpec {
    /// All layers trainable from the first step, for `steps` steps.
    Baseline,
}

impl ScheduleSpec {
    /// Short name for run names and logs.
    pub fn name(&self) -> String {
        match self {
            ScheduleSpec::Baseline => "baseline".into(),
        }
    }

    /// The plan of this schedule for `config`.
    pub fn plan(&self, config: &TrainConfig) -> Result<Plan, PlanError> {
        match self {
            ScheduleSpec::Baseline => Plan::baseline(&config.model_shape(), config.steps),
        }
    }
}
