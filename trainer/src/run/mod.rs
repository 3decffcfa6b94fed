//! A run: begin it, train it, validate and checkpoint it, report its progress.
//!
//! [`begin`] (new run, resume or branch: rank 0's decision) → [`trainer`] (the loop, like
//! build-nanogpt's `train_gpt2.py`) → [`validation`] and [`eval`] (HellaSwag) → [`checkpoint`];
//! [`init_from`] reads pretrained weights, [`options`] what does not change what a run computes,
//! [`progress`] what a terminal (or a log) shows.

pub mod begin;
pub mod checkpoint;
pub mod eval;
pub mod init_from;
pub mod options;
pub mod progress;
pub mod trainer;
pub mod validation;
