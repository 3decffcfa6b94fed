//! # cost_model
//!
//! What does layer-wise incremental training cost next to training the full model, and how many
//! continual (full) steps after the incremental stages bring both to equal compute?
//!
//! Pure math, no torch. The trainer builds its schedule from [`Plan`] and never re-derives step
//! counts; the analysis reads the compute this crate assigns to every step from the run logs.
//!
//! Two cost models, side by side:
//! - **paper** ([`ComputeUnit::PaperUnits`]): the paper's layer-count model (Section III-F), with a
//!   configurable backward/forward ratio `r` and phase-1 share `p`. One baseline step = 1.0.
//! - **flops** ([`ComputeUnit::Flops`]): architecture-aware FLOPs of GPT-2 (blocks, attention, LM head)
//!   that charge backward work only where gradients are really needed (see [`flops`]).
//!
//! ```
//! use cost_model::{ModelShape, Plan, ScheduleConfig, Until};
//! let shape = ModelShape::gpt2_124m();
//! let schedule = ScheduleConfig { stages: 12, ..ScheduleConfig::default() };
//! let plan = Plan::incremental(&shape, &schedule, Until::default()).unwrap();
//! assert_eq!(plan.equal_compute.paper_units.step, 15_729);
//! ```

pub mod cli;
pub mod closed_form;
pub mod config;
pub mod error;
pub mod flops;
pub mod metrics;
pub mod plan;
pub mod split;

pub use config::{ComputeUnit, ModelShape, Phase1Trainable, PhaseStepRounding, ScheduleConfig, Until};
pub use error::PlanError;
pub use plan::{
    backward_ratio_from_times, round_half_up, Compute, EqualCompute, EqualComputeTargets, Phase, Plan, Segment,
    StagePlan, StepInfo,
};
pub use split::split_layers;
