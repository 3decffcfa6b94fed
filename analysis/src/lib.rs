//! # analysis
//!
//! Reads run directories (`runs/*/run.json` and `metrics.jsonl`) into one polars frame, aligns
//! incremental runs with the baseline on steps and on compute (paper units, FLOPs, seconds), and
//! writes figures and `report.md` into `reports/`. It never links the trainer: the log schema is
//! [`cost_model::metrics::MetricsLine`].

pub mod align;
pub mod figures;
pub mod frame;
pub mod report;
pub mod runs;

pub use align::interpolate;
