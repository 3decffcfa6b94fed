//! TensorBoard's event files, beside `metrics.jsonl` in `<run>/tb/`: every number a log line
//! holds as a scalar at its step (`train/loss`, `train/lr`, `train/grad_norm`,
//! `train/tokens_per_s`, `train/depth`, `val/loss`, `hellaswag/acc_norm`, `growth/depth`, ...),
//! written and flushed with the line, so `tensorboard --logdir runs` (or `reports/runs` for a
//! study: one entry per run directory, arm and seed in the name) shows a job as it trains.
//!
//! The event files mirror the log, which stays the one source of truth: a resumed run drops its
//! log lines past its checkpoint and rewrites the event files from what is left
//! ([`rebuild`]), so TensorBoard never shows a step twice, whatever reader loads them.
//!
//! The format is TensorFlow's: TFRecord framing (the record's length as a little-endian u64,
//! its masked CRC-32C, the bytes, their masked CRC-32C) around `Event` protocol buffers
//! (`tensorflow/core/util/event.proto`: `wall_time` 1, `step` 2, `file_version` 3, `summary` 5;
//! `Summary.value` 1; `Value.tag` 1, `simple_value` 2), the first record naming the file version
//! `brain.Event:2`; files named `events.out.tfevents.<seconds>.<host>.<pid>.<n>`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use prost::Message;

use crate::metrics::{LineKind, MetricsLine};

/// The directory of a run's event files.
pub const TB_DIR: &str = "tb";

#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Value {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(float, tag = "2")]
    simple_value: f32,
}

/// TFRecord's masked CRC-32C (so that a CRC of data holding CRCs is not itself a plain CRC).
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its CRC, the data, its CRC.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// The scalars of one log line, by tag (none for kinds that carry no number worth plotting).
pub fn scalars(line: &MetricsLine) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    let mut add = |tag, v: Option<f64>| out.extend(v.filter(|v| v.is_finite()).map(|v| (tag, v)));
    match line.kind {
        LineKind::Train => {
            add("train/loss", line.loss);
            add("train/lr", line.lr);
            add("train/grad_norm", line.grad_norm);
            add("train/tokens_per_s", line.tokens_per_s);
            add("train/depth", Some(f64::from(line.active_layers)));
            add("train/flops", Some(line.flops));
        }
        LineKind::Val => add("val/loss", line.val_loss),
        LineKind::Hellaswag => {
            add("hellaswag/acc_norm", line.acc_norm);
            add("hellaswag/acc", line.acc);
        }
        LineKind::Growth => {
            add("growth/depth", Some(f64::from(line.active_layers)));
            add("growth/val_loss_before", line.val_loss_before);
            add("growth/val_loss_after", line.val_loss);
        }
        LineKind::Checkpoint => {}
    }
    out
}

/// An event file being written; every event is flushed as it is written.
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// A new event file in `dir` (created), starting with the file-version record.
    pub fn create(dir: &Path) -> anyhow::Result<EventWriter> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let now = now_seconds();
        let host = crate::claim::host_name();
        // A counter keeps two writers of one process in one second apart (a resume rebuilds).
        let n = std::fs::read_dir(dir).map_or(0, |d| d.count());
        let path = dir.join(format!("events.out.tfevents.{:010}.{host}.{}.{n}", now as u64, std::process::id()));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = EventWriter { file: BufWriter::new(file), path };
        writer.event(Event { wall_time: now, step: 0, what: Some(What::FileVersion("brain.Event:2".into())) })?;
        Ok(writer)
    }

    /// The scalars of `line` at its step, at `wall_time` (seconds since the epoch).
    pub fn line(&mut self, line: &MetricsLine, wall_time: f64) -> anyhow::Result<()> {
        let value: Vec<Value> =
            scalars(line).into_iter().map(|(tag, v)| Value { tag: tag.to_string(), simple_value: v as f32 }).collect();
        if value.is_empty() {
            return Ok(());
        }
        self.event(Event { wall_time, step: line.step as i64, what: Some(What::Summary(Summary { value })) })
    }

    fn event(&mut self, event: Event) -> anyhow::Result<()> {
        let bytes = record(&event.encode_to_vec());
        self.file
            .write_all(&bytes)
            .and_then(|_| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Seconds since the epoch, now.
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The event files of the run in `run_dir` rewritten from its (truncated) log `lines`, their
/// wall times `started + seconds` of each line; returns the writer to go on with.
pub fn rebuild(run_dir: &Path, lines: &[MetricsLine], started: f64) -> anyhow::Result<EventWriter> {
    let dir = run_dir.join(TB_DIR);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    let mut writer = EventWriter::create(&dir)?;
    for line in lines {
        writer.line(line, started + line.seconds)?;
    }
    Ok(writer)
}

/// Every scalar of the event files in `dir`, as `(tag, step, value)` in file and record order:
/// this crate's reader of what it writes (TensorBoard's own reads the same files; see the tests
/// in `trainer/tests` and `scripts/check-tensorboard`). Each record's CRCs are checked.
pub fn read_scalars(dir: &Path) -> anyhow::Result<Vec<(String, i64, f32)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents.")))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut at = 0;
        while at + 12 <= bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes")) as usize;
            let crc = |s: usize| u32::from_le_bytes(bytes[s..s + 4].try_into().expect("4 bytes"));
            anyhow::ensure!(
                crc(at + 8) == masked_crc(&bytes[at..at + 8]),
                "{}: bad length CRC at byte {at}",
                path.display()
            );
            let data =
                bytes.get(at + 12..at + 12 + len).with_context(|| format!("{}: truncated record", path.display()))?;
            anyhow::ensure!(crc(at + 12 + len) == masked_crc(data), "{}: bad data CRC at byte {at}", path.display());
            let event = Event::decode(data).with_context(|| format!("{}: not an Event", path.display()))?;
            if let Some(What::Summary(summary)) = event.what {
                out.extend(summary.value.into_iter().map(|v| (v.tag, event.step, v.simple_value)));
            }
            at += 16 + len;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cost_model::Phase;

    #[test]
    fn a_record_is_tensorflows_framing_of_an_event() {
        // TensorFlow's masked CRC-32C of "a" (crc32c("a") = 0xc1d04330).
        assert_eq!(crc32c::crc32c(b"a"), 0xc1d0_4330);
        assert_eq!(masked_crc(b"a"), 0xc1d0_4330u32.rotate_right(15).wrapping_add(0xa282_ead8));
        // The file-version event: wall_time 1.0, step 0, "brain.Event:2", byte for byte as
        // protobuf has it.
        let event = Event { wall_time: 1.0, step: 0, what: Some(What::FileVersion("brain.Event:2".into())) };
        let mut want = vec![0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x1a, 13];
        want.extend_from_slice(b"brain.Event:2");
        assert_eq!(event.encode_to_vec(), want);
        let framed = record(&want);
        assert_eq!(&framed[..8], &(want.len() as u64).to_le_bytes());
        assert_eq!(framed.len(), want.len() + 16);
    }

    #[test]
    fn a_runs_log_becomes_scalars_and_a_rebuild_keeps_each_step_once() {
        let dir = tempfile::tempdir().unwrap();
        let line = |kind, step: u64, loss: f64| MetricsLine {
            step,
            loss: Some(loss).filter(|_| kind == LineKind::Train),
            val_loss: Some(loss).filter(|_| kind == LineKind::Val),
            lr: Some(0.001).filter(|_| kind == LineKind::Train),
            active_layers: 4,
            ..MetricsLine::empty("r", kind, Phase::Baseline)
        };
        let lines: Vec<MetricsLine> = (1..=6)
            .map(|s| line(LineKind::Train, s, 5.0 - s as f64 / 10.0))
            .chain([line(LineKind::Val, 6, 4.2)])
            .collect();
        let mut writer = EventWriter::create(&dir.path().join(TB_DIR)).unwrap();
        for l in &lines {
            writer.line(l, 10.0).unwrap();
        }
        let read = read_scalars(&dir.path().join(TB_DIR)).unwrap();
        assert!(read.contains(&("train/loss".into(), 3, 4.7)));
        assert!(read.contains(&("val/loss".into(), 6, 4.2)));
        assert_eq!(read.iter().filter(|(t, _, _)| t == "train/depth").count(), 6);
        // A resume from step 4 rewrites the files from the log cut there, then goes on.
        let mut writer = rebuild(dir.path(), &lines[..4], 0.0).unwrap();
        writer.line(&line(LineKind::Train, 5, 9.0), 0.0).unwrap();
        let read = read_scalars(&dir.path().join(TB_DIR)).unwrap();
        let steps: Vec<i64> = read.iter().filter(|(t, _, _)| t == "train/loss").map(|(_, s, _)| *s).collect();
        assert_eq!(steps, vec![1, 2, 3, 4, 5]);
        assert!(read.contains(&("train/loss".into(), 5, 9.0)));
    }
}
