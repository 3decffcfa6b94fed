//! Run directories as the analysis sees them: `run.json` (a few fields) and `metrics.jsonl`.
//!
//! The analysis never links the trainer: it reads what the trainer wrote. A malformed or torn line
//! is reported with its file and line number and skipped; one bad run never stops the others.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cost_model::metrics::MetricsLine;
use serde_json::Value;

/// What `run.json` says about a run (the fields the report needs).
#[derive(Debug, Clone, PartialEq)]
pub struct RunMeta {
    pub name: String,
    /// `baseline` or `incremental`.
    pub schedule: String,
    /// Stages of an incremental run.
    pub stages: Option<u64>,
    pub preset: String,
    pub device: String,
    pub git_commit: String,
    pub libtorch_version: String,
    pub start_time: String,
    /// The resolved config, for the report.
    pub config: Value,
    /// The schedule spec, for the report.
    pub schedule_spec: Value,
}

impl RunMeta {
    /// Read the fields from a parsed `run.json`; missing ones become empty.
    pub fn from_json(name: &str, v: &Value) -> RunMeta {
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        RunMeta {
            name: name.to_string(),
            schedule: v.pointer("/schedule/kind").and_then(Value::as_str).unwrap_or("baseline").to_string(),
            stages: v.pointer("/schedule/stages").and_then(Value::as_u64),
            preset: s("/config/preset"),
            device: s("/device"),
            git_commit: s("/git_commit"),
            libtorch_version: s("/libtorch_version"),
            start_time: s("/start_time"),
            config: v.get("config").cloned().unwrap_or(Value::Null),
            schedule_spec: v.get("schedule").cloned().unwrap_or(Value::Null),
        }
    }

    /// True for the full-model run.
    pub fn is_baseline(&self) -> bool {
        self.schedule == "baseline"
    }
}

/// One run's log.
#[derive(Debug, Clone)]
pub struct RunLog {
    pub dir: PathBuf,
    pub meta: RunMeta,
    pub lines: Vec<MetricsLine>,
}

/// A line that was skipped, with where it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: skipped ({})", self.file.display(), self.line, self.reason)
    }
}

/// Parse a metrics file: the good lines, and the skipped ones with their line numbers.
pub fn parse_metrics(path: &Path, text: &str) -> (Vec<MetricsLine>, Vec<Skipped>) {
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

/// Every run under `runs_dir` that has a `metrics.jsonl`, sorted by name, plus skipped lines.
/// A run whose files cannot be read at all is skipped (and reported) too.
pub fn load_runs(runs_dir: &Path) -> anyhow::Result<(Vec<RunLog>, Vec<Skipped>)> {
    let entries = std::fs::read_dir(runs_dir).with_context(|| {
        format!("{}: no runs directory; train runs first (just train, just study)", runs_dir.display())
    })?;
    let mut dirs: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.join("metrics.jsonl").is_file()).collect();
    dirs.sort();
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for dir in dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let metrics_path = dir.join("metrics.jsonl");
        let text = match std::fs::read_to_string(&metrics_path) {
            Ok(t) => t,
            Err(e) => {
                skipped.push(Skipped { file: metrics_path, line: 0, reason: format!("unreadable: {e}") });
                continue;
            }
        };
        let meta = match std::fs::read(dir.join("run.json")).map(|b| serde_json::from_slice::<Value>(&b)) {
            Ok(Ok(v)) => RunMeta::from_json(&name, &v),
            _ => {
                skipped.push(Skipped {
                    file: dir.join("run.json"),
                    line: 0,
                    reason: "missing or corrupt run.json".into(),
                });
                continue;
            }
        };
        let (lines, bad) = parse_metrics(&metrics_path, &text);
        skipped.extend(bad);
        runs.push(RunLog { dir, meta, lines });
    }
    // Baselines first, then by number of stages (inc4 before inc12), then by name.
    runs.sort_by(|a, b| {
        let key = |r: &RunLog| (!r.meta.is_baseline(), r.meta.stages.unwrap_or(0), r.meta.name.clone());
        key(a).cmp(&key(b))
    });
    Ok((runs, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_torn_lines_are_skipped_with_line_numbers() {
        let good = r#"{"run":"r","kind":"train","step":1,"tokens":8,"paper_units":1.0,"flops":1.0,"seconds":0.1,"stage":0,"phase":"baseline","active_layers":2,"trainable_params":10,"loss":3.0}"#;
        let text = format!("{good}\nnot json\n\n{good}\n{{\"run\":\"r\",\"ki");
        let (lines, skipped) = parse_metrics(Path::new("m.jsonl"), &text);
        assert_eq!(lines.len(), 2);
        assert_eq!(skipped.iter().map(|s| s.line).collect::<Vec<_>>(), vec![2, 5]);
        assert_eq!(skipped[1].reason, "truncated last line");
        assert!(skipped[0].to_string().starts_with("m.jsonl:2: skipped"));
    }
}
