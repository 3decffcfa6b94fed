//! The incremental schedule: how many stages, how each stage's steps split into phases, what
//! trains in phase 1, and (optionally) a context length and batch size per stage.
//!
//! One type, [`IncrementalSchedule`], from the command line to the report: `cost` and `train`
//! flatten it into their arguments (so both spell every flag the same), `run.json` stores it, and
//! [`crate::Plan::incremental`] turns it into steps. Defaults are the paper's.

use serde::{Deserialize, Serialize};

use crate::{ModelShape, Phase1Trainable, PhaseStepRounding, PlanError};

/// The knobs of a layer-wise incremental schedule. The budget it is held to (the baseline's
/// steps) and where its continual tail stops are not knobs of the stages: they are passed to
/// [`crate::Plan::incremental`] beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[command(next_help_heading = "Incremental schedule")]
#[serde(default)]
pub struct IncrementalSchedule {
    /// Number of stages S; each adds about L/S blocks (uneven splits are spread out and stated).
    #[arg(long, default_value_t = 4)]
    pub stages: u32,
    /// Incremental steps as a share of the base steps, in (0, 1] (paper: 1).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub incremental_share: f64,
    /// Share p of each stage's steps spent in phase 1, in (0, 1] (paper: 0.5).
    #[arg(long, alias = "p", default_value_t = 0.5, allow_negative_numbers = true)]
    pub phase1_share: f64,
    /// Backward/forward cost ratio r of the paper model (paper: 1; real hardware: about 2).
    /// Only the paper-unit costs depend on it.
    #[arg(long, alias = "r", default_value_t = 1.0, allow_negative_numbers = true)]
    pub backward_ratio: f64,
    /// Whole steps per phase: `exact` (phases add up to the incremental steps) or `floor` (the
    /// reference code's steps // 2S).
    #[arg(long, value_enum, default_value_t = PhaseStepRounding::Exact)]
    pub phase_steps: PhaseStepRounding,
    /// What trains in phase 1 besides the new blocks: `new`, or `new+embeddings` (the reference
    /// code: wte/wpe/ln_f/head stay trainable, so gradients flow through the frozen blocks).
    #[arg(long, value_enum, default_value_t = Phase1Trainable::New)]
    pub phase1_trainable: Phase1Trainable,
    /// Context length of each stage, e.g. 16,32,64,64 (paper III-C; default: the model's).
    #[arg(long, alias = "context-schedule", value_delimiter = ',', value_name = "T1,T2,...")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_context: Vec<u64>,
    /// Tokens per optimizer step of each stage, e.g. 256,512,1024,1024 (default: the model's).
    #[arg(long, alias = "batch-schedule", value_delimiter = ',', value_name = "N1,N2,...")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_tokens_per_step: Vec<u64>,
}

impl Default for IncrementalSchedule {
    fn default() -> Self {
        IncrementalSchedule {
            stages: 4,
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

impl IncrementalSchedule {
    /// Incremental steps `T_inc = round(share · base_steps)`.
    pub fn incremental_steps(&self, base_steps: u64) -> u64 {
        crate::round_half_up(self.incremental_share * base_steps as f64)
    }

    /// Context and tokens per step of stage `stage` (1-based) for a model of `shape` whose full
    /// steps hold `tokens_per_step`.
    pub fn stage_shape(&self, shape: &ModelShape, tokens_per_step: u64, stage: u32) -> (u64, u64) {
        // Stage 0 (the full model outside any stage) and stages past the lists use the model's.
        let at = |list: &[u64]| (stage as usize).checked_sub(1).and_then(|i| list.get(i).copied());
        (
            at(&self.stage_context).unwrap_or(shape.context as u64),
            at(&self.stage_tokens_per_step).unwrap_or(tokens_per_step),
        )
    }

    /// Rejects knobs that cannot describe a schedule for `shape` held to `base_steps`.
    pub fn validate(&self, shape: &ModelShape, base_steps: u64) -> Result<(), PlanError> {
        let layers = shape.blocks();
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
        if base_steps == 0 {
            return Err(PlanError::NoBaseSteps);
        }
        let steps = self.incremental_steps(base_steps);
        if steps < u64::from(self.stages) {
            return Err(PlanError::TooFewSteps { steps, stages: self.stages });
        }
        self.validate_stage_shapes(shape)
    }

    /// Rejects per-stage context or batch lists that do not fit `shape`.
    fn validate_stage_shapes(&self, shape: &ModelShape) -> Result<(), PlanError> {
        let lists = [
            (crate::error::StageList::Context, &self.stage_context, Some(shape.context as u64)),
            (crate::error::StageList::TokensPerStep, &self.stage_tokens_per_step, None),
        ];
        for (list, values, limit) in lists {
            if values.is_empty() {
                continue;
            }
            if values.len() != self.stages as usize {
                let reason = format!("{} values for {} stages", values.len(), self.stages);
                return Err(PlanError::BadStageList { list, reason });
            }
            if let Some(bad) = values.iter().find(|&&v| v == 0 || limit.is_some_and(|l| v > l)) {
                let reason = match limit {
                    Some(l) => format!("{bad} is not in 1..={l}"),
                    None => format!("{bad} is not positive"),
                };
                return Err(PlanError::BadStageList { list, reason });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        schedule: IncrementalSchedule,
    }

    #[test]
    fn defaults_are_the_papers_on_the_command_line_and_in_code() {
        let parsed = Cli::try_parse_from(["x"]).unwrap().schedule;
        assert_eq!(parsed, IncrementalSchedule::default());
    }

    #[test]
    fn old_flag_spellings_still_parse() {
        let old = Cli::try_parse_from([
            "x",
            "--p",
            "0.3",
            "--r",
            "2",
            "--context-schedule",
            "16,32,64,64",
            "--batch-schedule",
            "256,512,1024,1024",
        ])
        .unwrap()
        .schedule;
        let new = Cli::try_parse_from([
            "x",
            "--phase1-share",
            "0.3",
            "--backward-ratio",
            "2",
            "--stage-context",
            "16,32,64,64",
            "--stage-tokens-per-step",
            "256,512,1024,1024",
        ])
        .unwrap()
        .schedule;
        assert_eq!(old, new);
        assert_eq!(new.stage_context, vec![16, 32, 64, 64]);
    }

    #[test]
    fn serialises_each_knob_under_its_flag_name() {
        let text = serde_json::to_string(&IncrementalSchedule { stages: 8, ..Default::default() }).unwrap();
        for key in ["stages", "incremental_share", "phase1_share", "backward_ratio", "phase_steps", "phase1_trainable"]
        {
            assert!(text.contains(&format!("\"{key}\"")), "{key} missing from {text}");
        }
        assert!(!text.contains("stage_context"), "empty lists are left out: {text}");
        let back: IncrementalSchedule = serde_json::from_str(&text).unwrap();
        assert_eq!(back.stages, 8);
    }
}
