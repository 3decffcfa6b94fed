//! # trainer
//!
//! GPT-2 in tch (libtorch): baseline and layer-wise schedules built from [`cost_model::Plan`],
//! token shards, our own checkpointable AdamW, and checkpoints that resume bit for bit. What a run
//! is (config, schedule) and the files it leaves behind are the `run_dir` crate's.
//!
//! Read in data-flow order: [`data`] (shards, tokenizers, loader) → [`model`] (architecture) →
//! [`loss`] → [`optim`] → [`step`] (one optimizer step, eager or CUDA graphs) → [`growth`] →
//! [`begin`] (new run, resume or branch: rank 0's decision) → [`trainer`] (the loop) →
//! [`validation`] → [`checkpoint`] → [`eval`] (HellaSwag), [`study`] (the whole study),
//! [`bench`], [`export`]; [`world`] for data-parallel training on c10d; [`commands`] for what
//! the `train` binary runs.

pub mod begin;
pub mod bench;
pub mod checkpoint;
pub mod children;
pub mod commands;
pub mod cuda;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod export;
pub mod growth;
pub mod init;
pub mod init_from;
pub mod loss;
pub mod model;
pub mod native;
pub mod numerics;
pub mod optim;
pub mod options;
pub mod plugin;
pub mod progress;
pub mod step;
pub mod study;
pub mod trainer;
pub mod validation;
pub mod world;
