//! # trainer
//!
//! GPT-2 in tch (libtorch): baseline and layer-wise schedules built from [`cost_model::Plan`],
//! token shards, our own checkpointable AdamW, and checkpoints that resume bit for bit. What a run
//! is (config, schedule) and the files it leaves behind are the `run_dir` crate's.
//!
//! Read in data-flow order: [`data`] (shards, tokenizers, loader) → [`model`] (architecture) →
//! [`loss`] → [`optim`] → [`growth`] → [`train`] (the loop) with [`session`] (start, resume) →
//! [`checkpoint`] → [`eval`] (HellaSwag), [`study`] (the whole study), [`bench`], [`export`];
//! [`dist`] and [`launch`] for data-parallel training on c10d.

pub mod bench;
pub mod checkpoint;
pub mod cuda;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod eval;
pub mod export;
pub mod growth;
pub mod init;
pub mod launch;
pub mod loss;
pub mod model;
pub mod native;
pub mod optim;
pub mod plugin;
pub mod progress;
pub mod session;
pub mod step;
pub mod study;
pub mod train;
