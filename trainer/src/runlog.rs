//! `metrics.jsonl`: one [`MetricsLine`] a line, appended and flushed as it happens.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use cost_model::metrics::{LineKind, MetricsLine};

/// Appends lines to a run's `metrics.jsonl`.
pub struct MetricsWriter {
    path: PathBuf,
    file: File,
}

impl MetricsWriter {
    /// Open for appending, creating the file if needed.
    pub fn open(path: &Path) -> anyhow::Result<MetricsWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {} for writing", path.display()))?;
        Ok(MetricsWriter { path: path.into(), file })
    }

    /// Write one line and flush it, so a crash loses at most the line being written.
    pub fn write(&mut self, line: &MetricsLine) -> anyhow::Result<()> {
        let mut text = serde_json::to_string(line)?;
        if crate::failpoint::armed_at("log", line.step) {
            self.file.write_all(&text.as_bytes()[..text.len() / 2])?;
            self.file.flush()?;
            crate::failpoint::hit("log", line.step);
        }
        text.push('\n');
        self.file.write_all(text.as_bytes()).with_context(|| format!("writing {}", self.path.display()))?;
        self.file.flush()?;
        Ok(())
    }
}

/// Prepare a log for resuming after `step`: keep whole lines up to and including `step`, drop
/// everything after (and a torn last line), so the file never holds a step twice. Returns whether
/// a checkpoint line for `step` survived. Rewritten through a temp file and a rename.
pub fn truncate_after(path: &Path, step: u64) -> anyhow::Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let reader = BufReader::new(File::open(path).with_context(|| format!("reading {}", path.display()))?);
    let mut kept = String::new();
    let mut has_checkpoint = false;
    for line in reader.split(b'\n') {
        let line = line?;
        let Ok(parsed) = serde_json::from_slice::<MetricsLine>(&line) else {
            continue;
        };
        if parsed.step <= step {
            has_checkpoint |= parsed.kind == LineKind::Checkpoint && parsed.step == step;
            kept.push_str(std::str::from_utf8(&line)?);
            kept.push('\n');
        }
    }
    let dir = path.parent().context("metrics file has no directory")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(kept.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("rewriting {}", path.display()))?;
    Ok(has_checkpoint)
}
