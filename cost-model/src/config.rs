//! Inputs of a plan: the model's shape and the schedule's knobs, with their paper defaults.

use serde::{Deserialize, Serialize};

use crate::PlanError;

/// The shape of the GPT-2 model being trained: everything the FLOP model needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    /// Transformer blocks in the full model (`L`).
    pub layers: u32,
    /// Residual stream width (`d`).
    pub d_model: u64,
    /// Sequence length of a training example (`T`).
    pub context: u64,
    /// Vocabulary size the LM head projects to (padded, e.g. 50,304 for GPT-2).
    pub vocab: u64,
    /// Tokens in one optimizer step (micro-batch × context × accumulation steps).
    pub tokens_per_step: u64,
}

impl ModelShape {
    /// GPT-2 124M as trained by the reference code: 12 layers, d = 768, context 1,024, vocab padded
    /// to 50,304, 524,288 tokens per step.
    pub fn gpt2_124m() -> Self {
        ModelShape { layers: 12, d_model: 768, context: 1024, vocab: 50_304, tokens_per_step: 524_288 }
    }

    /// Rejects a shape with a zero dimension.
    pub fn validate(&self) -> Result<(), PlanError> {
        let zero = |what, flag| Err(PlanError::ZeroShape { what, flag });
        if self.layers == 0 {
            return Err(PlanError::NoLayers);
        }
        if self.d_model == 0 {
            return zero("d_model", "d-model");
        }
        if self.context == 0 {
            return zero("context", "context");
        }
        if self.vocab == 0 {
            return zero("vocab", "vocab");
        }
        if self.tokens_per_step == 0 {
            return zero("tokens_per_step", "tokens-per-step");
        }
        Ok(())
    }
}

impl Default for ModelShape {
    fn default() -> Self {
        Self::gpt2_124m()
    }
}

/// How the steps of a stage are cut into phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PhaseStepRounding {
    /// Phase boundaries at the rounded exact positions, so the stages add up to the incremental
    /// steps exactly (the paper's assumption).
    #[default]
    Exact,
    /// `floor(p · steps / S)` steps per phase, as the reference code's `base_steps // (2S)`;
    /// the incremental stages may then run a few steps short (9,984 for S = 12).
    Floor,
}

/// Which parameters train in phase 1 besides the new blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
pub enum Phase1Trainable {
    /// Only the new blocks: nothing below them needs a gradient, so backward stops there.
    /// (In stage 1 the embeddings and head are new too, so they train in its phase 1.)
    #[default]
    #[serde(rename = "new")]
    #[value(name = "new")]
    New,
    /// The new blocks plus wte/wpe/ln_f/head (what the reference code did): gradients flow back
    /// through every frozen block to reach the embeddings.
    #[serde(rename = "new+embeddings")]
    #[value(name = "new+embeddings")]
    NewAndEmbeddings,
}

impl Phase1Trainable {
    /// True when the embeddings (and the tied head, `ln_f`) train in phase 1.
    pub fn embeddings_trainable(self) -> bool {
        matches!(self, Phase1Trainable::NewAndEmbeddings)
    }
}

/// A unit of compute that the plan can equalise on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ComputeUnit {
    /// The paper's layer-count model; one baseline step = 1.0.
    #[default]
    #[value(name = "paper")]
    PaperUnits,
    /// Architecture-aware floating point operations.
    #[value(name = "flops")]
    Flops,
}

/// Where the continual phase after the incremental stages stops.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Until {
    /// At the step where cumulative compute in this unit equals the baseline's.
    EqualCompute(ComputeUnit),
    /// At this total step count (e.g. twice the base steps, to see whether it catches up);
    /// a count inside the incremental stages cuts them short.
    Steps(u64),
}

impl Default for Until {
    fn default() -> Self {
        Until::EqualCompute(ComputeUnit::PaperUnits)
    }
}

/// The knobs of an incremental schedule. Defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// Number of stages `S`.
    pub stages: u32,
    /// Steps of the baseline (full-model) run, `T`; its compute is the budget.
    pub base_steps: u64,
    /// Incremental steps as a share of the base steps, `T_inc / T`, in (0, 1].
    pub incremental_share: f64,
    /// Share `p` of each stage's steps spent in phase 1, in (0, 1].
    pub phase1_share: f64,
    /// Backward/forward cost ratio `r` of the paper model (paper: 1; measured: about 2).
    pub backward_ratio: f64,
    /// How stage steps are cut into whole phase steps.
    pub phase_steps: PhaseStepRounding,
    /// What trains in phase 1 besides the new blocks (decides the FLOP model's phase-1 cost).
    pub phase1_trainable: Phase1Trainable,
    /// Context length of each stage (paper III-C: grow it with the model); empty = the model's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_context: Vec<u64>,
    /// Tokens per optimizer step of each stage (batch-size growth); empty = the model's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_tokens_per_step: Vec<u64>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            stages: 4,
            base_steps: 10_000,
            incremental_share: 1.0,
            phase1_share: 0.5,
            backward_ratio: 1.0,
            phase_steps: PhaseStepRounding::Exact,
            phase1_trainable: Phase1Trainable::New,
            stage_context: Vec::new(),
            stage_tokens_per_step: Vec::new(),
        }
    }
}

impl ScheduleConfig {
    /// Incremental steps `T_inc = round(share · T)`.
    pub fn incremental_steps(&self) -> u64 {
        crate::round_half_up(self.incremental_share * self.base_steps as f64)
    }

    /// Context and tokens per step of stage `stage` (1-based) for a model of `shape`.
    pub fn stage_shape(&self, shape: &ModelShape, stage: u32) -> (u64, u64) {
        let i = stage as usize - 1;
        (
            self.stage_context.get(i).copied().unwrap_or(shape.context),
            self.stage_tokens_per_step.get(i).copied().unwrap_or(shape.tokens_per_step),
        )
    }

    /// Rejects per-stage context or batch lists that do not fit `shape`.
    pub fn validate_stage_shapes(&self, shape: &ModelShape) -> Result<(), PlanError> {
        for (what, list, limit) in
            [("context", &self.stage_context, Some(shape.context)), ("batch", &self.stage_tokens_per_step, None)]
        {
            if list.is_empty() {
                continue;
            }
            if list.len() != self.stages as usize {
                return Err(PlanError::BadStageList {
                    what,
                    reason: format!("{} values for {} stages", list.len(), self.stages),
                });
            }
            if let Some(bad) = list.iter().find(|&&v| v == 0 || limit.is_some_and(|l| v > l)) {
                let reason = match limit {
                    Some(l) => format!("{bad} is not in 1..={l}"),
                    None => format!("{bad} is not positive"),
                };
                return Err(PlanError::BadStageList { what, reason });
            }
        }
        Ok(())
    }

    /// Rejects knobs that cannot describe a schedule for a model of `layers` layers.
    pub fn validate(&self, layers: u32) -> Result<(), PlanError> {
        if layers == 0 {
            return Err(PlanError::NoLayers);
        }
        if self.stages == 0 {
            return Err(PlanError::NoStages { layers });
        }
        if self.stages > layers {
            return Err(PlanError::MoreStagesThanLayers { stages: self.stages, layers });
        }
        if !(self.backward_ratio.is_finite() && self.backward_ratio >= 0.0) {
            return Err(PlanError::BadBackwardRatio(self.backward_ratio));
        }
        if !(self.phase1_share > 0.0 && self.phase1_share <= 1.0) {
            return Err(PlanError::BadPhase1Share(self.phase1_share));
        }
        if !(self.incremental_share > 0.0 && self.incremental_share <= 1.0) {
            return Err(PlanError::BadIncrementalShare(self.incremental_share));
        }
        if self.base_steps == 0 {
            return Err(PlanError::NoBaseSteps);
        }
        if self.incremental_steps() < u64::from(self.stages) {
            return Err(PlanError::TooFewSteps { steps: self.incremental_steps(), stages: self.stages });
        }
        Ok(())
    }
}
