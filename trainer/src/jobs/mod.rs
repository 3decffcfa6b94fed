//! What the `train` binary runs beside one run: a study of many runs ([`study`]), step-time
//! benchmarks ([`bench`]), a Hugging Face export ([`export`]), and the subcommands that wire
//! them to the command line ([`commands`]).

pub mod bench;
pub mod commands;
pub mod export;
pub mod study;
