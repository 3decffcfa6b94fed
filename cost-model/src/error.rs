//! Errors for inputs that cannot describe a schedule. Each message names the bad value and the fix.

/// A plan that cannot be built from the given inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("stages = 0: a schedule needs at least 1 stage; pass --stages 1..={layers}")]
    NoStages { layers: u32 },
    #[error("layers = 0: the model needs at least 1 layer; pass --layers 1 or more")]
    NoLayers,
    #[error("stages = {stages} exceeds layers = {layers}: every stage must add at least one layer; pass --stages 1..={layers}")]
    MoreStagesThanLayers { stages: u32, layers: u32 },
    #[error("backward/forward ratio r = {0} must be a finite number >= 0; pass e.g. --r 1 (paper) or --r 2")]
    BadBackwardRatio(f64),
    #[error("phase-1 share p = {0} must be in (0, 1]; pass e.g. --p 0.5 (paper)")]
    BadPhase1Share(f64),
    #[error("incremental share = {0} must be in (0, 1]; pass e.g. --incremental-share 1 (paper)")]
    BadIncrementalShare(f64),
    #[error("--until 0: a run needs at least 1 step; pass --until equal-compute or a step count >= 1")]
    NoUntilSteps,
    #[error("base steps = 0: nothing to train; pass --base-steps 1 or more")]
    NoBaseSteps,
    #[error(
        "{steps} incremental steps cannot give each of {stages} stages a step; raise --base-steps or lower --stages"
    )]
    TooFewSteps { steps: u64, stages: u32 },
    #[error("model shape: {what} = 0; pass a positive --{flag}")]
    ZeroShape { what: &'static str, flag: &'static str },
    #[error(
        "--{what}-schedule: {reason}; give one value per stage, e.g. --{what}-schedule 256,512,1024,1024 for 4 stages"
    )]
    BadStageList { what: &'static str, reason: String },
    #[error("step times: {0}; pass --calibrate FORWARD_MS,FORWARD_BACKWARD_MS with 0 < forward < forward+backward")]
    BadCalibration(String),
}
