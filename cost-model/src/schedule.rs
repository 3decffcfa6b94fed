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
    /// The depth at the end of each stage: S even stages, or a list (`--stages`, `--stage-layers`).
    #[command(flatten)]
    #[serde(flatten)]
    pub stage_layers: StageLayers,
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
            stage_layers: StageLayers::default(),
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

/// The active blocks at the end of each stage: the paper's S even stages of whatever depth the
/// model has, or a list. Written (in `run.json`, design files and on the command line) as
/// `stages = S`, or `stage_layers = [1, 12]` beside `stages` = its length ([`StageKeys`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StageKeys", into = "StageKeys")]
pub enum StageLayers {
    /// S even stages, each adding about L/S blocks (uneven splits spread out: [`crate::split`]).
    Even(u32),
    /// The active blocks at the end of each stage, e.g. [1, 12] or [3, 6, 9, 12]: the last is
    /// the model's depth, the first may be 0 (embeddings and head alone).
    Listed(Vec<u32>),
}

/// Stages of the paper's schedule when none are given.
const DEFAULT_STAGES: u32 = 4;

impl Default for StageLayers {
    /// The paper's 4 stages.
    fn default() -> Self {
        StageLayers::Even(DEFAULT_STAGES)
    }
}

impl StageLayers {
    /// The listed depths, if the stages are a list.
    pub fn listed(&self) -> Option<&[u32]> {
        match self {
            StageLayers::Even(_) => None,
            StageLayers::Listed(depths) => Some(depths),
        }
    }

    /// True when no list is given (the even stages): what `--stage-layers` left empty. Kept for
    /// callers written when this was the list; [`StageLayers::listed`] says the same.
    pub fn is_empty(&self) -> bool {
        self.listed().is_none()
    }
}

/// How [`StageLayers`] is spelled: `stages` and `stage_layers`, as `run.json` always had them
/// (`stages` written as the list's length when there is one) and as the flags are named.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct StageKeys {
    /// Number of stages S; each adds about L/S blocks (uneven splits are spread out and stated).
    /// The shorthand of an even `--stage-layers`; with a list, the list's length.
    #[arg(long, default_value = "4", conflicts_with = "stage_layers")] // DEFAULT_STAGES
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stages: Option<u32>,
    /// Active blocks at the end of each stage, e.g. 1,12 or 6,12 or 3,6,9,12 (default: the even
    /// split of --stages). The last is the model's depth; the first may be 0 (embeddings and head
    /// alone).
    #[arg(long, value_delimiter = ',', value_name = "L1,L2,...")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stage_layers: Vec<u32>,
}

impl TryFrom<StageKeys> for StageLayers {
    type Error = String;
    /// A list whose length is not `stages` is refused (a file that says both must agree).
    fn try_from(count: StageKeys) -> Result<Self, String> {
        match (count.stages, count.stage_layers) {
            (stages, depths) if depths.is_empty() => Ok(StageLayers::Even(stages.unwrap_or(DEFAULT_STAGES))),
            (Some(stages), depths) if stages as usize != depths.len() => Err(format!(
                "stage_layers: {} depths for stages = {stages} (leave stages out: the list's length is the stages)",
                depths.len()
            )),
            (_, depths) => Ok(StageLayers::Listed(depths)),
        }
    }
}

impl From<StageLayers> for StageKeys {
    fn from(layers: StageLayers) -> StageKeys {
        match layers {
            StageLayers::Even(stages) => StageKeys { stages: Some(stages), stage_layers: Vec::new() },
            StageLayers::Listed(depths) => StageKeys { stages: Some(depths.len() as u32), stage_layers: depths },
        }
    }
}

/// On the command line: `--stages` and `--stage-layers` (clap refuses both at once; `--stages`'s
/// default does not count beside a list).
impl clap::FromArgMatches for StageLayers {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let count = StageKeys::from_arg_matches(matches)?;
        Ok(match count.stage_layers.is_empty() {
            true => StageLayers::Even(count.stages.unwrap_or(DEFAULT_STAGES)),
            false => StageLayers::Listed(count.stage_layers),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for StageLayers {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        StageKeys::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        StageKeys::augment_args_for_update(cmd)
    }
}

impl IncrementalSchedule {
    /// The paper's schedule of `stages` even stages.
    pub fn even(stages: u32) -> IncrementalSchedule {
        IncrementalSchedule { stage_layers: StageLayers::Even(stages), ..IncrementalSchedule::default() }
    }

    /// The schedule of these active depths.
    pub fn with_layers(stage_layers: Vec<u32>) -> IncrementalSchedule {
        IncrementalSchedule { stage_layers: StageLayers::Listed(stage_layers), ..IncrementalSchedule::default() }
    }

    /// The number of stages: the even schedule's S, or the list's length.
    pub fn stages(&self) -> u32 {
        match &self.stage_layers {
            StageLayers::Even(stages) => *stages,
            StageLayers::Listed(depths) => depths.len() as u32,
        }
    }

    /// True for the paper's schedule on a model of `layers` blocks: even stages over evenly split
    /// incremental steps (however it was written).
    pub fn is_even(&self, layers: u32) -> bool {
        let even = crate::split::even_depths(layers, self.stages());
        self.stage_ends.is_empty() && self.stage_ends_of == StageEndsOf::Base && self.depths(layers) == even
    }

    /// Active blocks at the end of each stage of a model of `layers` blocks.
    pub fn depths(&self, layers: u32) -> Vec<u32> {
        match &self.stage_layers {
            StageLayers::Even(stages) => crate::split::even_depths(layers, *stages),
            StageLayers::Listed(depths) => depths.clone(),
        }
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
        if self.stages() == 0 {
            return Err(PlanError::NoStages { layers });
        }
        if let StageLayers::Even(stages) = self.stage_layers {
            if stages > layers {
                return Err(PlanError::MoreStagesThanLayers { stages, layers });
            }
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
        if steps < u64::from(self.stages()) {
            return Err(PlanError::TooFewSteps { steps, stages: self.stages() });
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
        let StageLayers::Listed(depths) = &self.stage_layers else { return Ok(()) };
        let bad = |reason: String| Err(PlanError::BadStageList { list: StageList::Layers, reason });
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
        if ends.len() + 1 != self.stages() as usize {
            return bad(format!(
                "{} ends for {} stages (the last stage ends with the incremental steps)",
                ends.len(),
                self.stages()
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
        let stages = self.stages() as usize;
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
            if values.len() != self.stages() as usize {
                let reason = format!("{} values for {} stages", values.len(), self.stages());
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
            .schedule;
        assert_eq!(
            (parsed.stages(), parsed.stage_layers.clone(), parsed.stage_ends.clone()),
            (2, StageLayers::Listed(vec![1, 12]), vec![0.8])
        );
        assert_eq!(parsed.depths(12), vec![1, 12]);
        assert!(parsed.validate(&ModelShape::gpt2_124m(), 10_000).is_ok());
        assert!(Cli::try_parse_from(["x", "--stages", "4", "--stage-layers", "1,12"]).is_err());
        assert_eq!(Cli::try_parse_from(["x", "--stages", "8"]).unwrap().schedule, IncrementalSchedule::even(8));
        // The shorthand's depths are the even split.
        assert_eq!(IncrementalSchedule::even(8).depths(12), vec![2, 3, 5, 6, 8, 9, 11, 12]);
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
    }

    #[test]
    fn serialises_each_knob_under_its_flag_name() {
        let text = serde_json::to_string(&IncrementalSchedule::even(8)).unwrap();
        for key in ["stages", "incremental_share", "phase1_share", "backward_ratio", "phase_steps", "phase1_trainable"]
        {
            assert!(text.contains(&format!("\"{key}\"")), "{key} missing from {text}");
        }
        assert!(!text.contains("stage_context"), "empty lists are left out: {text}");
        let back: IncrementalSchedule = serde_json::from_str(&text).unwrap();
        assert_eq!(back.stages(), 8);
    }

    #[test]
    fn the_stage_count_is_written_as_before_and_read_from_the_list() {
        // A list is written with its length beside it, as `run.json` always had it.
        let listed = IncrementalSchedule::with_layers(vec![1, 12]);
        let text = serde_json::to_string(&listed).unwrap();
        assert!(text.starts_with(r#"{"stages":2,"stage_layers":[1,12],"#), "{text}");
        assert_eq!(serde_json::from_str::<IncrementalSchedule>(&text).unwrap(), listed);
        let even = serde_json::to_string(&IncrementalSchedule::even(4)).unwrap();
        assert!(even.starts_with(r#"{"stages":4,"incremental_share""#), "{even}");
        // Read: either key alone, or both when they agree.
        let read = |json: &str| serde_json::from_str::<IncrementalSchedule>(json).map(|s| s.stage_layers);
        assert_eq!(read(r#"{"stage_layers":[1,12]}"#).unwrap(), StageLayers::Listed(vec![1, 12]));
        assert_eq!(read(r#"{"stages":3}"#).unwrap(), StageLayers::Even(3));
        assert_eq!(read("{}").unwrap(), StageLayers::Even(4));
        let err = read(r#"{"stages":3,"stage_layers":[1,12]}"#).unwrap_err().to_string();
        assert!(err.contains("2 depths for stages = 3 (leave stages out"), "{err}");
    }
}
