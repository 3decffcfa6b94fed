//! # cost_model
//!
//! What does layer-wise incremental training cost next to training the full model, and how many
//! continual (full) steps after the incremental stages bring both to equal compute?
//!
//! Pure math, no torch. The trainer builds its schedule from [`Plan`] and never re-derives step
//! counts; the analysis reads the compute this crate assigns to every step from the run logs.
//!
//! - [`IncrementalSchedule`] ([`schedule`]): the stages' knobs, one type from `cost` to `train`.
//! - [`growth`]: where new blocks go and how they start; [`method`]: named growth methods.
//! - [`Plan`] ([`plan`]): the steps, phases and compute of a schedule.
//! - [`lr`]: learning-rate schedules, a function of the step.
//! - [`report`]: what `cost --json` prints.
//! - [`comm`]: the all-reduce of data-parallel training, bytes over bandwidth.
//! - [`measured`]: seconds, from the step times `train bench` measured on a device.
//!
//! Two cost models, side by side:
//! - **paper** ([`ComputeUnit::PaperUnits`]): the paper's layer-count model (Section III-F), with a
//!   configurable backward/forward ratio `r` and phase-1 share `p`. One baseline step = 1.0.
//! - **flops** ([`ComputeUnit::Flops`]): architecture-aware FLOPs of GPT-2 (blocks, attention, LM head)
//!   that charge backward work only where gradients are really needed (see [`flops`]).
//!
//! ```
//! use cost_model::{IncrementalSchedule, ModelShape, Plan, Until, GPT2_TOKENS_PER_STEP};
//! let shape = ModelShape::gpt2_124m();
//! let schedule = IncrementalSchedule::even(12);
//! let plan = Plan::incremental(&shape, GPT2_TOKENS_PER_STEP, 10_000, &schedule, Until::default()).unwrap();
//! assert_eq!(plan.equal_compute.paper_units.step, 15_729);
//! ```

pub mod closed_form;
pub mod comm;
pub mod config;
pub mod error;
pub mod flops;
pub mod growth;
pub mod lr;
pub mod measured;
pub mod method;
pub mod plan;
pub mod report;
pub mod schedule;
pub mod split;

pub use config::{
    ComputeUnit, ModelShape, Phase1Trainable, PhaseStepRounding, StageEndsOf, Until, GPT2_TOKENS_PER_STEP,
};
pub use error::PlanError;
pub use growth::{init_rules, Growth, GrowthOptimizer, GrowthRewarmup, InitRule, Placement};
pub use method::{Method, MethodSpec, METHODS};
pub use plan::{
    backward_ratio_from_times, round_half_up, Compute, EqualCompute, EqualComputeTargets, LayerGrowth, Phase, Plan,
    Segment, StagePlan, StepInfo,
};
pub use schedule::{IncrementalSchedule, StageLayers};
pub use split::split_layers;
