//! # trainer
//!
//! GPT-2 in tch (libtorch): baseline and layer-wise schedules built from [`cost_model::Plan`],
//! token shards, our own checkpointable AdamW, and checkpoints that resume bit for bit. What a run
//! is (config, schedule) and the files it leaves behind are the `run_dir` crate's.
//!
//! The folders are layers; each uses only those before it:
//! 1. [`device`]: what the process computes with (CPU threads, native ATen ops, CUDA plugins);
//! 2. [`data`] (shards, tokenizers, the loader) and [`world`] (data parallel on c10d, child
//!    processes);
//! 3. [`engine`]: the model, the loss, the optimizer, one step, growth;
//! 4. [`run`]: one run from its first step to its last checkpoint;
//! 5. [`jobs`]: studies, benchmarks, exports and the `train` subcommands.

pub mod data;
pub mod device;
pub mod engine;
pub mod error;
pub mod jobs;
pub mod run;
pub mod world;
