//! # trainer
//!
//! GPT-2 in tch (libtorch): baseline and layer-wise schedules built from [`cost_model::Plan`],
//! token shards, our own checkpointable AdamW, and checkpoints that resume bit for bit.
//!
//! Read in data-flow order: [`data`] (shards, tokenizers, loader) → [`model`] → [`optim`] →
//! [`schedule`] → [`train`] (the loop) → [`checkpoint`] and [`runlog`] (what a run leaves behind)
//! → [`export`].

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod eval;
pub mod export;
pub mod failpoint;
pub mod growth;
pub mod lock;
pub mod loss;
pub mod model;
pub mod native;
pub mod optim;
pub mod progress;
pub mod runlog;
pub mod schedule;
pub mod train;
