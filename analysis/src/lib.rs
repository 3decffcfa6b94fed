//! # analysis
//!
//! Reads run directories (`runs/*/run.json` and `metrics.jsonl`, through the `run_dir` types the
//! trainer writes), aligns runs with the baseline on steps and on compute (paper units, FLOPs,
//! seconds), and writes figures and `report.md` into `reports/`. It never links the trainer.
//!
//! One module per job, in data-flow order: [`runs`] (read) → [`frame`] (one polars frame, the
//! only path from the logs to the numbers) → [`align`] (curve math) → [`compare`] (the numbers)
//! → [`figures`] and [`markdown`] (drawing, writing) → [`report`] (all of it, with the I/O). A
//! study's numbers are [`study`] (with [`stats`]), its report [`study_markdown`], in sections.
//! [`scaling`] draws the data-parallel benchmark beside the cost model's all-reduce prediction.

pub mod align;
pub mod compare;
pub mod figures;
pub mod frame;
pub mod markdown;
pub mod report;
pub mod runs;
pub mod scaling;
pub mod stats;
pub mod study;
pub mod study_markdown;

pub use align::{interpolate, Unit};
