//! # run_dir
//!
//! What a run is and what it leaves behind. The trainer writes `runs/<run>/`, the analysis reads
//! it; both go through this crate (no torch here), so the two can never disagree:
//!
//! ```text
//! runs/<run>/
//!   run.json                     RunHeader: config, schedule, plan, commit, device (versioned: `format`)
//!   metrics.jsonl                MetricsLine, one JSON object a line, appended and flushed
//!   checkpoints/step_XXXXXXXX/   model, optimizer and state (written by the trainer, renamed into place)
//!   export/                      Hugging Face layout, on request
//!   cooldowns/<unit>-<budget>/   cooldown branches: run directories of their own
//!   tb/                          TensorBoard event files mirroring metrics.jsonl (`tensorboard`)
//!   .lock                        flock held by the one trainer working here
//! <runs>/.claims/<run>.claim      a study worker's claim on a run (see [`claim`])
//! ```
//!
//! [`config`] and [`schedule`] are the inputs a run records; [`header`] and [`metrics`] the files'
//! formats; [`RunDir`] owns the names; [`write_atomically`] is how every file is replaced.

pub mod claim;
pub mod config;
pub mod cooldown;
pub mod failpoint;
pub mod header;
pub mod lock;
pub mod metrics;
pub mod schedule;
pub mod study;
pub mod tensorboard;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

pub use config::{GptShape, LossKernel, TokenizerKind, TrainConfig};
pub use header::{HeaderError, HellaswagCounts, HellaswagInput, InitSource, Kernels, RunHeader};
pub use lock::RunLock;
pub use metrics::{LineKind, MetricsLine, MetricsWriter, Skipped};
pub use schedule::{
    BaselineSpec, Growth, GrowthOptimizer, GrowthRewarmup, IncrementalSpec, InitRule, Placement, ScheduleSpec,
};

/// The run header's file name.
pub const HEADER_FILE: &str = "run.json";
/// The metrics log's file name.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The directory of checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Where `train export` writes.
pub const EXPORT_DIR: &str = "export";
/// The directory of a run's cooldown branches.
pub const COOLDOWNS_DIR: &str = "cooldowns";

/// One run directory, `runs/<run>/`: where each of its files lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run directory at `path` (nothing is created or read).
    pub fn new(path: impl Into<PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run's name: the directory's name.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned())
    }

    /// `run.json`.
    pub fn header_path(&self) -> PathBuf {
        self.path.join(HEADER_FILE)
    }

    /// `metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.path.join(METRICS_FILE)
    }

    /// `checkpoints/`.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.path.join(CHECKPOINTS_DIR)
    }

    /// `checkpoints/step_XXXXXXXX/`, the checkpoint after `step` steps.
    pub fn checkpoint_dir(&self, step: u64) -> PathBuf {
        self.checkpoints_dir().join(format!("step_{step:08}"))
    }

    /// `export/`.
    pub fn export_dir(&self) -> PathBuf {
        self.path.join(EXPORT_DIR)
    }

    /// `cooldowns/<unit>-<budget>/`: the branch of this run at `budget` in `unit`.
    pub fn cooldown(&self, unit: cost_model::ComputeUnit, budget: f64) -> RunDir {
        RunDir::new(self.path.join(COOLDOWNS_DIR).join(cooldown::branch_name(unit, budget)))
    }

    /// Every cooldown branch of this run that has been started, by name.
    pub fn cooldowns(&self) -> Vec<RunDir> {
        let mut found: Vec<RunDir> = std::fs::read_dir(self.path.join(COOLDOWNS_DIR))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| RunDir::new(e.path()))
            .filter(RunDir::has_header)
            .collect();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        found
    }

    /// The run a branch directory belongs to (two levels up).
    pub fn branch_parent(&self) -> Option<RunDir> {
        let cooldowns = self.path.parent()?;
        if cooldowns.file_name()? != COOLDOWNS_DIR {
            return None;
        }
        Some(RunDir::new(cooldowns.parent()?))
    }

    /// `path` relative to the run directory, as the log names files.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.path).unwrap_or(path).display().to_string()
    }

    /// True when a run was started here (its header exists).
    pub fn has_header(&self) -> bool {
        self.header_path().exists()
    }

    /// Read and (for old formats) upgrade `run.json`.
    pub fn read_header(&self) -> Result<RunHeader, HeaderError> {
        let path = self.header_path();
        let bytes = std::fs::read(&path).map_err(|_| HeaderError::Missing { dir: self.path.clone() })?;
        RunHeader::parse(&path, &bytes)
    }

    /// Write `run.json` atomically.
    pub fn write_header(&self, header: &RunHeader) -> std::io::Result<()> {
        write_atomically(&self.header_path(), |f| f.write_all(&header.to_json()))
    }

    /// Take the run's lock (one trainer per run directory).
    pub fn lock(&self) -> anyhow::Result<RunLock> {
        RunLock::acquire(&self.path)
    }

    /// Open `metrics.jsonl` for appending; with `tensorboard`, its event files in `tb/` rewritten
    /// from the log as it stands (a resumed run's, cut at its checkpoint; wall times from
    /// `started`, seconds since the epoch, plus each line's seconds) and mirroring every new line.
    pub fn metrics_writer(&self, tensorboard: bool, started: f64) -> anyhow::Result<MetricsWriter> {
        let writer = MetricsWriter::open(&self.metrics_path())?;
        if !tensorboard {
            return Ok(writer);
        }
        let lines = match self.metrics_path().exists() {
            true => self.read_metrics().with_context(|| format!("reading {}", self.metrics_path().display()))?.0,
            false => Vec::new(),
        };
        Ok(writer.with_tensorboard(tensorboard::rebuild(&self.path, &lines, started)?))
    }

    /// Drop log lines after `step` (see [`metrics::truncate_after`]); whether a checkpoint line
    /// for `step` survived.
    pub fn truncate_metrics_after(&self, step: u64) -> anyhow::Result<bool> {
        metrics::truncate_after(&self.metrics_path(), step)
    }

    /// True when the run trained to the end of its plan: its log holds the checkpoint of its last
    /// step (the loop's final act). Read from the log, not the checkpoints, which a committed
    /// study does not keep.
    pub fn is_finished(&self) -> bool {
        let Ok(header) = self.read_header() else { return false };
        let last = header.plan.total_steps();
        self.read_metrics()
            .is_ok_and(|(lines, _)| lines.iter().any(|l| l.kind == LineKind::Checkpoint && l.step == last))
    }

    /// Every parseable line of `metrics.jsonl`, and the skipped ones with their line numbers.
    pub fn read_metrics(&self) -> std::io::Result<(Vec<MetricsLine>, Vec<Skipped>)> {
        let path = self.metrics_path();
        let text = std::fs::read_to_string(&path)?;
        Ok(metrics::parse(&path, &text))
    }
}

/// Replace `path` atomically: `write` fills a temp file in the same directory, which is synced
/// and renamed over `path`, so a reader (or a crash) sees the old file or the new one, never a
/// part. The one way this project replaces a file.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut File) -> std::io::Result<()>) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    write(tmp.as_file_mut())?;
    // A temp file is private (0600); the file it becomes is an ordinary one (0644).
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = File::open(dir) {
        // The rename itself is durable once the directory is synced (best effort).
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        write_atomically(&path, |f| f.write_all(b"one")).unwrap();
        write_atomically(&path, |f| f.write_all(b"two")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        // A writer that fails leaves the old file as it was.
        let err = write_atomically(&path, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temp files left behind");
    }

    #[test]
    fn names_live_in_one_place() {
        let run = RunDir::new("runs/tiny-baseline");
        assert_eq!(run.name(), "tiny-baseline");
        assert_eq!(run.header_path(), Path::new("runs/tiny-baseline/run.json"));
        assert_eq!(run.checkpoint_dir(250), Path::new("runs/tiny-baseline/checkpoints/step_00000250"));
        assert_eq!(run.relative(&run.checkpoint_dir(3)), "checkpoints/step_00000003");
        let branch = run.cooldown(cost_model::ComputeUnit::Flops, 1.5);
        assert_eq!(branch.path(), Path::new("runs/tiny-baseline/cooldowns/flops-1.5"));
        assert_eq!(branch.branch_parent(), Some(run.clone()));
        assert_eq!(run.branch_parent(), None);
    }
}
