//! The report, end to end: read the run logs, compute the comparisons, draw the figures, write
//! `report.md` next to them.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use run_dir::Skipped;

use crate::compare::{compare, Comparisons};
use crate::figures::draw_report;
use crate::frame::all_runs;
use crate::markdown;
use crate::runs::load_runs;

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub runs_dir: PathBuf,
    pub out_dir: PathBuf,
    /// The baseline run's name; default: the first baseline run (by name).
    pub baseline: Option<String>,
    /// Budget = the baseline's compute at this step (default: its last step).
    pub budget_step: Option<f64>,
}

/// Everything the report computed and wrote.
#[derive(Debug, Clone)]
pub struct Report {
    pub numbers: Comparisons,
    pub figures: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
    pub markdown: String,
}

/// Build the report from `options.runs_dir` and write it (figures + report.md) to `options.out_dir`.
pub fn build(options: &ReportOptions) -> anyhow::Result<Report> {
    let (runs, skipped) = load_runs(&options.runs_dir)?;
    let frame = all_runs(&runs)?;
    let numbers = compare(&runs, &frame, options.baseline.as_deref(), options.budget_step)
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", options.runs_dir.display()))?;
    std::fs::create_dir_all(&options.out_dir).with_context(|| format!("creating {}", options.out_dir.display()))?;
    let figures = draw_report(&options.out_dir, &numbers)?;
    let markdown = markdown::render(&numbers, &runs, &figures, &skipped, &options.out_dir)?;
    let path = options.out_dir.join("report.md");
    run_dir::write_atomically(&path, |f| f.write_all(markdown.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Report { numbers, figures, skipped, markdown })
}
