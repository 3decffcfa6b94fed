//! Inputs of a plan besides the schedule: the model's shape, and the enums the schedule's knobs use.

use serde::{Deserialize, Serialize};

use crate::PlanError;

/// The shape of a GPT-2 model: one type from the cost model to the trainer (it is `run.json`'s
/// `model`). The FLOP model reads all of it but `heads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShape {
    /// Transformer blocks in the full model (`L`).
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Residual stream width (`d`).
    pub d_model: usize,
    /// Maximum sequence length (`T`, the rows of `wpe`).
    pub context: usize,
    /// Rows of `wte`: the vocabulary the LM head projects to (padded, e.g. 50,304 for GPT-2).
    pub vocab: usize,
}

/// GPT-2 124M's tokens per optimizer step as the reference code trains it (32 × 16 × 1,024).
pub const GPT2_TOKENS_PER_STEP: u64 = 524_288;

impl ModelShape {
    /// GPT-2 124M: 12 layers of 12 heads, d = 768, context 1,024, vocab padded to 50,304.
    pub fn gpt2_124m() -> Self {
        ModelShape { layers: 12, heads: 12, d_model: 768, context: 1024, vocab: 50_304 }
    }

    /// The full model's blocks, as the plan counts them.
    pub fn blocks(&self) -> u32 {
        self.layers as u32
    }

    /// Rejects a shape with a zero dimension (and a step of no tokens).
    pub fn validate(&self, tokens_per_step: u64) -> Result<(), PlanError> {
        if self.layers == 0 {
            return Err(PlanError::NoLayers);
        }
        let dims = [
            ("d_model", self.d_model as u64),
            ("context", self.context as u64),
            ("vocab", self.vocab as u64),
            ("tokens_per_step", tokens_per_step),
        ];
        match dims.into_iter().find(|(_, value)| *value == 0) {
            Some((field, _)) => Err(PlanError::ZeroShape { field }),
            None => Ok(()),
        }
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

/// What `stage_ends` are shares of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StageEndsOf {
    /// The base steps (the baseline's budget): the stages fill the incremental steps, then a
    /// continual tail of full steps runs to where the run stops (the paper's layout).
    #[default]
    Base,
    /// The whole run: the stages fill every step of it, the last one to its end (no continual
    /// tail), and the run's length follows from where it stops (its compute budget, or steps).
    /// Bu's growth "at 80% of the iterations", MIDAS's Prop-1 stage lengths, G_stack's growth
    /// point: shares of the run a method is compared on.
    Run,
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

impl StageEndsOf {
    /// True for the default (what `run.json` leaves out).
    pub fn is_base(&self) -> bool {
        *self == StageEndsOf::Base
    }
}

impl Phase1Trainable {
    /// True when the embeddings (and the tied head, `ln_f`) train in phase 1.
    pub fn embeddings_trainable(self) -> bool {
        matches!(self, Phase1Trainable::NewAndEmbeddings)
    }
}

/// A unit of compute that the plan can equalise on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ComputeUnit {
    /// The paper's layer-count model; one baseline step = 1.0.
    #[default]
    #[value(name = "paper", alias = "paper_units")]
    PaperUnits,
    /// Architecture-aware floating point operations.
    #[value(name = "flops")]
    Flops,
    /// Training tokens (equal data rather than equal compute).
    #[value(name = "tokens")]
    Tokens,
}

impl ComputeUnit {
    /// The name in file names and logs: `paper_units`, `flops`, `tokens`.
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeUnit::PaperUnits => "paper_units",
            ComputeUnit::Flops => "flops",
            ComputeUnit::Tokens => "tokens",
        }
    }
}

/// Where a run stops: for an incremental run, where its continual tail ends; for a full-model
/// run, where it stops training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Until {
    /// At the step where cumulative compute in this unit equals the baseline's budget.
    EqualCompute(ComputeUnit),
    /// At this total step count (e.g. twice the base steps, to see whether it catches up);
    /// a count inside the incremental stages cuts them short.
    Steps(u64),
    /// At the step where cumulative compute in `unit` reaches `multiple` × the baseline's budget
    /// (a WSD run that cooldown branches are taken from runs to the largest budget).
    Budget { multiple: f64, unit: ComputeUnit },
}

impl Default for Until {
    fn default() -> Self {
        Until::EqualCompute(ComputeUnit::PaperUnits)
    }
}
