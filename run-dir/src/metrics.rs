//! `metrics.jsonl`: one [`MetricsLine`] a line, appended and flushed as it happens.
//!
//! The trainer writes it, the analysis reads it; the type lives here, in the crate both depend
//! on, so the two can never disagree. Every line carries the cumulative compute in every unit and
//! where in the schedule the run was, so runs can be aligned without knowing their schedules.
//! The schema's version is the run header's `format` (see [`crate::header`]).
//!
//! ```json
//! {"run":"tiny-baseline","kind":"train","step":10,"tokens":10240,"paper_units":10.0,"flops":3.1e9,
//!  "seconds":1.9,"stage":0,"phase":"baseline","active_layers":12,"trainable_params":615744,
//!  "loss":4.12,"lr":0.002,"grad_norm":0.93,"tokens_per_s":5400.0}
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use cost_model::Phase;
use serde::{Deserialize, Serialize};

/// What a line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    /// An optimizer step: `loss, lr, grad_norm, tokens_per_s`.
    Train,
    /// A validation pass: `val_loss`.
    Val,
    /// A HellaSwag evaluation: `acc, acc_norm, n, n_skipped`.
    Hellaswag,
    /// A checkpoint was written: `path`.
    Checkpoint,
    /// A stage grew the model before step `step + 1`: `val_loss_before` (the old depth) and
    /// `val_loss` (the new depth, before any training); `active_layers` is the new depth.
    Growth,
}

impl LineKind {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Train => "train",
            LineKind::Val => "val",
            LineKind::Hellaswag => "hellaswag",
            LineKind::Checkpoint => "checkpoint",
            LineKind::Growth => "growth",
        }
    }
}

/// One line of `metrics.jsonl`. `step` counts optimizer steps done (1-based); `tokens`,
/// `paper_units`, `flops` and `seconds` are cumulative up to and including that step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    pub run: String,
    pub kind: LineKind,
    pub step: u64,
    pub tokens: u64,
    pub paper_units: f64,
    pub flops: f64,
    /// Measured wall time of the training steps (evaluation and checkpointing excluded).
    pub seconds: f64,
    /// 0 for a baseline, 1..=S for incremental stages and the continual tail.
    pub stage: u32,
    pub phase: Phase,
    pub active_layers: u32,
    pub trainable_params: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// HellaSwag examples skipped because they do not fit the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_skipped: Option<u64>,
    /// Growth: the validation loss at the old depth, just before the new blocks were added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl MetricsLine {
    /// A line of `kind` for `run` in `phase`, counters at zero and every value absent; fill in the
    /// rest with struct update syntax (`MetricsLine { step, loss: Some(l), ..MetricsLine::empty(..) }`).
    pub fn empty(run: &str, kind: LineKind, phase: Phase) -> MetricsLine {
        MetricsLine {
            run: run.to_string(),
            kind,
            step: 0,
            tokens: 0,
            paper_units: 0.0,
            flops: 0.0,
            seconds: 0.0,
            stage: 0,
            phase,
            active_layers: 0,
            trainable_params: 0,
            loss: None,
            lr: None,
            grad_norm: None,
            tokens_per_s: None,
            val_loss: None,
            acc: None,
            acc_norm: None,
            n: None,
            n_skipped: None,
            val_loss_before: None,
            path: None,
        }
    }
}

/// Appends lines to a run's `metrics.jsonl` (and their scalars to its TensorBoard event files,
/// when it keeps them).
pub struct MetricsWriter {
    path: PathBuf,
    /// `None`: a writer that discards (the ranks of a data-parallel job other than rank 0).
    file: Option<File>,
    tensorboard: Option<crate::tensorboard::EventWriter>,
}

impl MetricsWriter {
    /// Open for appending, creating the file if needed.
    pub fn open(path: &Path) -> anyhow::Result<MetricsWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {} for writing", path.display()))?;
        Ok(MetricsWriter { path: path.into(), file: Some(file), tensorboard: None })
    }

    /// The same writer mirroring every line into `tensorboard`'s event files.
    pub fn with_tensorboard(self, tensorboard: crate::tensorboard::EventWriter) -> MetricsWriter {
        MetricsWriter { tensorboard: Some(tensorboard), ..self }
    }

    /// A writer that writes nothing: a data-parallel rank other than rank 0, which computes every
    /// line but leaves the log to rank 0.
    pub fn discard() -> MetricsWriter {
        MetricsWriter { path: PathBuf::new(), file: None, tensorboard: None }
    }

    /// Write one line and flush it, so a crash loses at most the line being written.
    pub fn write(&mut self, line: &MetricsLine) -> anyhow::Result<()> {
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        let mut text = serde_json::to_string(line)?;
        if crate::failpoint::armed_at("log", line.step) {
            file.write_all(&text.as_bytes()[..text.len() / 2])?;
            file.flush()?;
            crate::failpoint::hit("log", line.step);
        }
        text.push('\n');
        file.write_all(text.as_bytes()).with_context(|| format!("writing {}", self.path.display()))?;
        file.flush()?;
        if let Some(tb) = self.tensorboard.as_mut() {
            tb.line(line, crate::tensorboard::now_seconds())?;
        }
        Ok(())
    }
}

/// Prepare a log for resuming after `step`: keep whole lines up to and including `step`, drop
/// everything after (and a torn last line), so the file never holds a step twice. A growth line
/// of `step` is dropped too: growth happens after that step's checkpoint, so the resumed run
/// grows (and logs it) again. Returns whether a checkpoint line for `step` survived. Rewritten
/// atomically.
pub fn truncate_after(path: &Path, step: u64) -> anyhow::Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let reader = BufReader::new(File::open(path).with_context(|| format!("reading {}", path.display()))?);
    let mut kept = Vec::new();
    let mut has_checkpoint = false;
    for line in reader.split(b'\n') {
        let line = line?;
        let Ok(parsed) = serde_json::from_slice::<MetricsLine>(&line) else {
            continue;
        };
        if parsed.step < step || (parsed.step == step && parsed.kind != LineKind::Growth) {
            has_checkpoint |= parsed.kind == LineKind::Checkpoint && parsed.step == step;
            kept.extend_from_slice(&line);
            kept.push(b'\n');
        }
    }
    crate::write_atomically(path, |f| f.write_all(&kept)).with_context(|| format!("rewriting {}", path.display()))?;
    Ok(has_checkpoint)
}

/// A line that was skipped, with where it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub file: PathBuf,
    /// 1-based line number; 0 when the whole file was skipped.
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: skipped ({})", self.file.display(), self.line, self.reason)
    }
}

/// Parse a metrics file's text: the good lines, and the skipped ones with their line numbers.
pub fn parse(path: &Path, text: &str) -> (Vec<MetricsLine>, Vec<Skipped>) {
    let mut lines = Vec::new();
    let mut skipped = Vec::new();
    let torn = !text.is_empty() && !text.ends_with('\n');
    let count = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<MetricsLine>(line) {
            Ok(parsed) => lines.push(parsed),
            Err(e) => {
                let reason = if torn && i + 1 == count { "truncated last line".to_string() } else { e.to_string() };
                skipped.push(Skipped { file: path.to_path_buf(), line: i + 1, reason });
            }
        }
    }
    (lines, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_omits_absent_values() {
        let line = MetricsLine {
            step: 3,
            tokens: 30,
            paper_units: 1.5,
            flops: 2e9,
            seconds: 0.25,
            stage: 1,
            active_layers: 3,
            trainable_params: 100,
            val_loss: Some(2.5),
            ..MetricsLine::empty("r", LineKind::Val, Phase::Phase1)
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.contains(r#""phase":"phase1""#) && text.contains(r#""kind":"val""#));
        assert!(!text.contains("loss\":null"));
        assert_eq!(serde_json::from_str::<MetricsLine>(&text).unwrap(), line);
    }

    #[test]
    fn garbage_and_torn_lines_are_skipped_with_line_numbers() {
        let good = r#"{"run":"r","kind":"train","step":1,"tokens":8,"paper_units":1.0,"flops":1.0,"seconds":0.1,"stage":0,"phase":"baseline","active_layers":2,"trainable_params":10,"loss":3.0}"#;
        let text = format!("{good}\nnot json\n\n{good}\n{{\"run\":\"r\",\"ki");
        let (lines, skipped) = parse(Path::new("m.jsonl"), &text);
        assert_eq!(lines.len(), 2);
        assert_eq!(skipped.iter().map(|s| s.line).collect::<Vec<_>>(), vec![2, 5]);
        assert_eq!(skipped[1].reason, "truncated last line");
        assert!(skipped[0].to_string().starts_with("m.jsonl:2: skipped"));
    }

    #[test]
    fn truncating_keeps_whole_lines_up_to_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut writer = MetricsWriter::open(&path).unwrap();
        for (step, kind) in
            [(1, LineKind::Train), (2, LineKind::Train), (2, LineKind::Checkpoint), (3, LineKind::Train)]
        {
            writer.write(&MetricsLine { step, ..MetricsLine::empty("r", kind, Phase::Baseline) }).unwrap();
        }
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"run\":\"r\",\"ki").unwrap();
        assert!(truncate_after(&path, 2).unwrap());
        let (lines, skipped) = parse(&path, &std::fs::read_to_string(&path).unwrap());
        assert_eq!(lines.iter().map(|l| l.step).collect::<Vec<_>>(), vec![1, 2, 2]);
        assert!(skipped.is_empty());
        assert!(!truncate_after(&path, 1).unwrap(), "no checkpoint line at step 1");
    }
}
