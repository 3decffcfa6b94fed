//! Errors for inputs that cannot describe a schedule. Each message names the bad value and the
//! schedule field it came from, never a command-line flag: this library serves several binaries,
//! and each one adds its own flag for [`PlanError::field`] (see `cost` and `train`).

/// A per-stage list of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageList {
    /// `stage_context`: the context length of each stage.
    Context,
    /// `stage_tokens_per_step`: the tokens per step of each stage.
    TokensPerStep,
    /// `stage_layers`: the active blocks at the end of each stage.
    Layers,
    /// `stage_ends`: where each stage but the last ends, as a share of the base steps.
    Ends,
}

impl StageList {
    /// The schedule field holding the list.
    pub fn field(self) -> &'static str {
        match self {
            StageList::Context => "stage_context",
            StageList::TokensPerStep => "stage_tokens_per_step",
            StageList::Layers => "stage_layers",
            StageList::Ends => "stage_ends",
        }
    }

    /// A good value of the list, for the error message.
    pub fn example(self) -> &'static str {
        match self {
            StageList::Context => "one value per stage, e.g. 256,512,1024,1024 for 4 stages",
            StageList::TokensPerStep => "one value per stage, e.g. 262144,524288,524288,524288 for 4 stages",
            StageList::Layers => "the depth after each stage, e.g. 1,12 or 3,6,9,12 for 12 layers",
            StageList::Ends => "one share of the base steps per stage but the last, e.g. 0.8 for 2 stages",
        }
    }
}

/// A plan that cannot be built from the given inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("stages = 0: a schedule needs at least 1 stage and at most one per layer (1..={layers})")]
    NoStages { layers: u32 },
    #[error("layers = 0: the model needs at least 1 layer")]
    NoLayers,
    #[error(
        "stages = {stages} exceeds layers = {layers}: every stage must add at least one layer (stages 1..={layers})"
    )]
    MoreStagesThanLayers { stages: u32, layers: u32 },
    #[error("backward_ratio = {0}: must be a finite number >= 0 (paper: 1; measured: about 2)")]
    BadBackwardRatio(f64),
    #[error("phase1_share = {0}: must be in [0, 1] (paper: 0.5; 0: no phase 1)")]
    BadPhase1Share(f64),
    #[error("incremental_share = {0}: must be in (0, 1] (paper: 1)")]
    BadIncrementalShare(f64),
    #[error("until = 0 steps: a run needs at least 1 step (or until = equal-compute)")]
    NoUntilSteps,
    #[error("until = {0} × the budget: the multiple must be a positive number, e.g. 2")]
    BadBudgetMultiple(f64),
    #[error("base_steps = 0: nothing to train; the budget needs at least 1 step")]
    NoBaseSteps,
    #[error("{steps} incremental steps cannot give each of {stages} stages a step: raise base_steps or lower stages")]
    TooFewSteps { steps: u64, stages: u32 },
    #[error("model shape: {field} = 0; it must be positive")]
    ZeroShape { field: &'static str },
    #[error("{}: {reason}; give {}", list.field(), list.example())]
    BadStageList { list: StageList, reason: String },
    #[error("growth = {0} copies trained blocks, but the first stage has none: start at 1 layer or more (stage_layers), or grow by random or zero")]
    NothingToCopy(&'static str),
    #[error("placement = {0} with phase1_share > 0: phase 1 trains the top blocks, which are the new ones only with placement top; set phase1_share = 0 (all active blocks train) or placement top")]
    Phase1NeedsTop(&'static str),
    #[error("rewarmup_steps > 0 with reset_optimizer_at_continual = false: the re-warmup ramps a fresh optimizer after its reset; reset it, or set rewarmup_steps = 0")]
    RewarmupWithoutReset,
    #[error("the schedule grows at step {step}, while the learning rate still warms up (warmup_steps = {warmup_steps}), so it grows an untrained model: move the growth later (stage_ends, a longer budget) or shorten warmup_steps; or allow it (allow_growth_in_warmup)")]
    GrowthInWarmup { step: u64, warmup_steps: u64 },
    #[error("method {method} needs a model of at least {at_least} layers, not {layers}")]
    MethodTooShallow { method: String, layers: u32, at_least: u32 },
    #[error("step times: {0}; need 0 < forward < forward+backward")]
    BadCalibration(String),
}

impl PlanError {
    /// The input field the error is about (`stages`, `base_steps`, `d_model`, ...): binaries map
    /// it to their own flag.
    pub fn field(&self) -> &'static str {
        match self {
            PlanError::NoStages { .. } | PlanError::MoreStagesThanLayers { .. } => "stages",
            PlanError::NoLayers => "layers",
            PlanError::BadBackwardRatio(_) => "backward_ratio",
            PlanError::BadPhase1Share(_) => "phase1_share",
            PlanError::BadIncrementalShare(_) => "incremental_share",
            PlanError::NoUntilSteps | PlanError::BadBudgetMultiple(_) => "until",
            PlanError::NoBaseSteps | PlanError::TooFewSteps { .. } => "base_steps",
            PlanError::ZeroShape { field } => field,
            PlanError::BadStageList { list, .. } => list.field(),
            PlanError::BadCalibration(_) => "calibrate",
            PlanError::NothingToCopy(_) => "growth",
            PlanError::MethodTooShallow { .. } => "method",
            PlanError::Phase1NeedsTop(_) => "phase1_share",
            PlanError::RewarmupWithoutReset => "rewarmup_steps",
            PlanError::GrowthInWarmup { .. } => "allow_growth_in_warmup",
        }
    }
}
