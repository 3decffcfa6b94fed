//! The engine: GPT-2 and one optimizer step, knowing nothing of runs, files or jobs.
//!
//! In data-flow order: [`model`] (the architecture) → [`loss`] (cross-entropy, chunked) →
//! [`optim`] (our checkpointable AdamW) → [`step`] (one optimizer step, eager or as CUDA graphs,
//! gradients all-reduced over the [`crate::world`]) → [`init`] (initial weights) → [`growth`]
//! (new blocks by the rule a method gives).

pub mod growth;
pub mod init;
pub mod loss;
pub mod model;
pub mod optim;
pub mod step;
