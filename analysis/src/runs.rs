//! Run directories as the analysis sees them: the typed run header and the metrics lines, read
//! through `run_dir` (the same types the trainer writes).
//!
//! The analysis never links the trainer: it reads what the trainer wrote. A malformed or torn line
//! is reported with its file and line number and skipped; one bad run never stops the others.

use std::path::Path;

use anyhow::Context;
use run_dir::{MetricsLine, RunDir, RunHeader, Skipped};

/// One run's log.
#[derive(Debug, Clone)]
pub struct RunLog {
    pub header: RunHeader,
    pub lines: Vec<MetricsLine>,
    /// Its cooldown branches (`<run>/cooldowns/*`), by name.
    pub branches: Vec<RunLog>,
}

impl RunLog {
    /// The run's name.
    pub fn name(&self) -> &str {
        &self.header.name
    }

    /// True for a full-model run.
    pub fn is_baseline(&self) -> bool {
        self.header.schedule.incremental().is_none()
    }

    /// Stages of an incremental run.
    pub fn stages(&self) -> Option<u32> {
        self.header.schedule.incremental().map(|spec| spec.stages.stages())
    }
}

/// Every run under `runs_dir` that has a `metrics.jsonl`, baselines first, plus skipped lines.
/// A run whose files cannot be read at all is skipped (and reported) too.
pub fn load_runs(runs_dir: &Path) -> anyhow::Result<(Vec<RunLog>, Vec<Skipped>)> {
    let entries = std::fs::read_dir(runs_dir).with_context(|| {
        format!("{}: no runs directory; train runs first (just train, just study)", runs_dir.display())
    })?;
    let mut dirs: Vec<RunDir> =
        entries.flatten().map(|e| RunDir::new(e.path())).filter(|r| r.metrics_path().is_file()).collect();
    dirs.sort_by(|a, b| a.path().cmp(b.path()));
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for run in dirs {
        let mut branches = Vec::new();
        for branch in run.cooldowns() {
            if let Some(log) = read_run(&branch, Vec::new(), &mut skipped) {
                branches.push(log);
            }
        }
        if let Some(log) = read_run(&run, branches, &mut skipped) {
            runs.push(log);
        }
    }
    // Baselines first, then by number of stages (inc4 before inc12), then by name.
    runs.sort_by(|a, b| {
        let key = |r: &RunLog| (!r.is_baseline(), r.stages().unwrap_or(0), r.name().to_string());
        key(a).cmp(&key(b))
    });
    Ok((runs, skipped))
}

/// One run directory's header and lines, or `None` (and why, in `skipped`).
fn read_run(run: &RunDir, branches: Vec<RunLog>, skipped: &mut Vec<Skipped>) -> Option<RunLog> {
    {
        let (lines, bad) = match run.read_metrics() {
            Ok(parsed) => parsed,
            Err(e) => {
                skipped.push(Skipped { file: run.metrics_path(), line: 0, reason: format!("unreadable: {e}") });
                return None;
            }
        };
        let header = match run.read_header() {
            Ok(header) => header,
            Err(e) => {
                skipped.push(Skipped { file: run.header_path(), line: 0, reason: e.to_string() });
                return None;
            }
        };
        skipped.extend(bad);
        Some(RunLog { header, lines, branches })
    }
}
