//! The incremental schedule: the depth of each stage and where it ends, how each stage's steps
//! split into phases, what trains in phase 1, and (optionally) a context length and batch size
//! per stage.
//!
//! The paper's schedule is `stages = S`: S even stages of about L/S new blocks each, over the
//! incremental steps split evenly. Any other depth schedule is a list: `stage_layers = [1, 12]`
//! (the depth at the end of each stage) with `stage_ends = [0.8]` (where each stage but the last
//! ends, as a share of the base steps); `phase1_share = 0` trains all active blocks at once.
//!
//! One type, [`IncrementalSchedule`], from the command line to the report: `cost` and `train`
//! flatten it into their arguments (so both spell every flag the same), `run.json` stores it, and
//! [`crate::Plan::incremental`] turns it into steps. Defaults are the paper's.

use serde::{Deserialize, Serialize};

use crate::error::StageList;
use crate::{ModelShape, Phase1Trainable, PhaseStepRounding, PlanError, StageEndsOf};

/// The knobs of a layer-wise incremental schedule. The budget it is held to (the baseline's
/// steps) and where its continual tail stops are not knobs of the stages: they are passed to
/// [`crate::Plan::incremental`] beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[command(next_help_heading = "Incremental schedule")]
#[serde(default)]
pub struct IncrementalSchedule {
    /// Number of stages S; each adds about L/S blocks (uneven splits are spread out and stated).
    /// The shorthand of an even `--stage-layers`; with a list, the list's length.
    #[arg(long, default_value_t = 4, conflicts_with = "stage_layers")]
    pub stages: u32,
    /// Active blocks at the end of each stage, e.g. 1,12 or 6,12 or 3,6,9,12 (default: the even
    /// split of --stages). The last is the model's depth; the first may be 0 (embeddings and head
    /// alone).
    #[arg(long, value_delimiter = ',', value_name = "L1,L2,...")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_layers: Vec<u32>,
    /// Where each stage but the last ends, as a share of the base steps, e.g. 0.8 for two stages
    /// (default: the paper's even split of the incremental steps). The last stage ends where the
    /// incremental steps do (`incremental_share`).
    #[arg(long, value_delimiter = ',', value_name = "E1,E2,...")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_ends: Vec<f64>,
    /// What --stage-ends are shares of: `base` (the base steps, then a continual tail to where the
    /// run stops) or `run` (the whole run: the last stage runs to its end, and the run's length
    /// follows from its budget; Bu's growth at 80% of the iterations, MIDAS's Prop-1).
    #[arg(long, value_enum, default_value_t = StageEndsOf::Base)]
    #[serde(default, skip_serializing_if = "StageEndsOf::is_base")]
    pub stage_ends_of: StageEndsOf,
    /// Incremental steps as a share of the base steps, in (0, 1] (paper: 1).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub incremental_share: f64,
    /// Share p of each stage's steps spent in phase 1 (only the new blocks train), in [0, 1]
    /// (paper: 0.5; 0: every stage trains all its active blocks at once).
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
            stage_layers: Vec::new(),
            stage_ends: Vec::new(),
            stage_ends_of: StageEndsOf::Base,
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
    /// The schedule of these active depths (`stages` follows the list).
    pub fn with_layers(stage_layers: Vec<u32>) -> IncrementalSchedule {
        IncrementalSchedule { stages: stage_layers.len() as u32, stage_layers, ..IncrementalSchedule::default() }
    }

    /// `stages` set from `stage_layers` when there is a list (what the command line and a
    /// design file leave to be inferred): call once where a schedule comes in.
    pub fn normalised(mut self) -> IncrementalSchedule {
        if !self.stage_layers.is_empty() {
            self.stages = self.stage_layers.len() as u32;
        }
        self
    }

    /// True for the paper's schedule on a model of `layers` blocks: even stages over evenly split
    /// incremental steps (however it was written).
    pub fn is_even(&self, layers: u32) -> bool {
        let even = IncrementalSchedule { stage_layers: Vec::new(), ..self.clone() };
        self.stage_ends.is_empty()
            && self.stage_ends_of == StageEndsOf::Base
            && (self.stage_layers.is_empty() || self.stage_layers == even.depths(layers))
    }

    /// Active blocks at the end of each stage of a model of `layers` blocks.
    pub fn depths(&self, layers: u32) -> Vec<u32> {
        if !self.stage_layers.is_empty() {
            return self.stage_layers.clone();
        }
        crate::split::split_layers(layers, self.stages)
            .into_iter()
            .scan(0, |active, added| {
                *active += added;
                Some(*active)
            })
            .collect()
    }

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
        if self.stage_layers.is_empty() && self.stages > layers {
            return Err(PlanError::MoreStagesThanLayers { stages: self.stages, layers });
        }
        self.validate_depths(layers)?;
        if !(self.backward_ratio.is_finite() && self.backward_ratio >= 0.0) {
            return Err(PlanError::BadBackwardRatio(self.backward_ratio));
        }
        if !(0.0..=1.0).contains(&self.phase1_share) {
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
        if self.stage_ends_of == StageEndsOf::Run && self.incremental_share != 1.0 {
            let reason = "stage_ends_of = run: the stages fill the whole run; leave incremental_share at 1".into();
            return Err(PlanError::BadStageList { list: StageList::Ends, reason });
        }
        self.validate_ends()?;
        self.validate_stage_shapes(shape)
    }

    /// Rejects a depth list that does not grow to the model's `layers` one stage at a time.
    fn validate_depths(&self, layers: u32) -> Result<(), PlanError> {
        let depths = &self.stage_layers;
        if depths.is_empty() {
            return Ok(());
        }
        let bad = |reason: String| Err(PlanError::BadStageList { list: StageList::Layers, reason });
        if depths.len() != self.stages as usize {
            return bad(format!(
                "{} depths for stages = {} (leave stages out: the list's length is the stages)",
                depths.len(),
                self.stages
            ));
        }
        if depths.last() != Some(&layers) {
            return bad(format!(
                "the last stage must reach the model's {layers} layers, not {}",
                depths[depths.len() - 1]
            ));
        }
        if let Some(w) = depths.windows(2).find(|w| w[1] <= w[0]) {
            return bad(format!("{} then {}: each stage must add at least one layer", w[0], w[1]));
        }
        Ok(())
    }

    /// Rejects stage ends that are not one increasing share per stage boundary, inside the
    /// incremental steps.
    fn validate_ends(&self) -> Result<(), PlanError> {
        let ends = &self.stage_ends;
        if ends.is_empty() {
            return Ok(());
        }
        let bad = |reason: String| Err(PlanError::BadStageList { list: StageList::Ends, reason });
        if ends.len() + 1 != self.stages as usize {
            return bad(format!(
                "{} ends for {} stages (the last stage ends with the incremental steps)",
                ends.len(),
                self.stages
            ));
        }
        if self.phase_steps == PhaseStepRounding::Floor {
            return bad("phase_steps = floor is the reference code's even split; use exact with stage ends".into());
        }
        let (share, of) = match self.stage_ends_of {
            StageEndsOf::Base => (self.incremental_share, "incremental_share = "),
            StageEndsOf::Run => (1.0, "the run's end, "),
        };
        let mut previous = 0.0;
        for &end in ends {
            if !(end.is_finite() && end > previous && end < share) {
                return bad(format!("{end} is not between {previous} and {of}{share}"));
            }
            previous = end;
        }
        Ok(())
    }

    /// Where each stage starts and ends, in (fractional) steps, when the stages fill `total`
    /// steps and `stage_ends` are shares of `scale` steps (the base steps, or the run's own).
    pub fn stage_bounds(&self, scale: u64, total: u64) -> Vec<(f64, f64)> {
        let total = total as f64;
        let stages = self.stages as usize;
        if self.stage_ends.is_empty() {
            // The paper's even split, as (s + offset)·total/S: bit for bit what runs had.
            return (0..stages)
                .map(|s| (s as f64 * total / stages as f64, (s + 1) as f64 * total / stages as f64))
                .collect();
        }
        let ends: Vec<f64> = self.stage_ends.iter().map(|e| e * scale as f64).chain([total]).collect();
        let starts = std::iter::once(0.0).chain(ends.iter().copied());
        starts.zip(ends.iter().copied()).collect()
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
    fn a_depth_list_sets_the_stages_and_conflicts_with_the_shorthand() {
        let parsed = Cli::try_parse_from(["x", "--stage-layers", "1,12", "--stage-ends", "0.8", "--phase1-share", "0"])
            .unwrap()
            .schedule
            .normalised();
        assert_eq!(
            (parsed.stages, parsed.stage_layers.clone(), parsed.stage_ends.clone()),
            (2, vec![1, 12], vec![0.8])
        );
        assert_eq!(parsed.depths(12), vec![1, 12]);
        assert!(parsed.validate(&ModelShape::gpt2_124m(), 10_000).is_ok());
        assert!(Cli::try_parse_from(["x", "--stages", "4", "--stage-layers", "1,12"]).is_err());
        // The shorthand's depths are the even split.
        assert_eq!(IncrementalSchedule { stages: 8, ..Default::default() }.depths(12), vec![2, 3, 5, 6, 8, 9, 11, 12]);
        // Lists that cannot grow a 12-layer model, each refused naming its field.
        let shape = ModelShape::gpt2_124m();
        for (layers, ends) in [
            (vec![1, 11], vec![0.8]),
            (vec![6, 6, 12], vec![0.3, 0.6]),
            (vec![1, 12], vec![0.8, 0.9]),
            (vec![1, 12], vec![1.0]),
            (vec![3, 6, 12], vec![0.5, 0.4]),
        ] {
            let s = IncrementalSchedule { stage_ends: ends, ..IncrementalSchedule::with_layers(layers) };
            let field = s.validate(&shape, 10_000).unwrap_err().field();
            assert!(field == "stage_layers" || field == "stage_ends", "{s:?}: {field}");
        }
        let unnormalised = IncrementalSchedule { stage_layers: vec![1, 12], ..Default::default() };
        assert_eq!(unnormalised.validate(&shape, 10_000).unwrap_err().field(), "stage_layers");
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
