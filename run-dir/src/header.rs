//! `run.json`: the run header, what a run is. Written once by the trainer when the run starts,
//! read when it resumes and by the analysis.
//!
//! Versioned like llm.c's files: `format` says which layout the file (and its run's
//! `metrics.jsonl` lines) follow. Older formats are upgraded on read, one version at a time, to
//! what those runs really ran with, so old runs still resume bit for bit and still report:
//! - 1 → 2 (files written before `format` existed): renamed keys (`loss_chunk_tokens` →
//!   `loss_kernel`, `context_schedule` → `stage_context`, ...), defaults of keys added later, and
//!   a plan rebuilt with today's cost model and checked step for step against the stored one;
//! - 2 → 3: the data in file order (`data_seed: null`), the leading validation slice
//!   (`val_spread: false`, `val_tokens` from `val_batches`), the softmax over the padded
//!   vocabulary, no re-warmup or moment resets, and WSD's defaults (unused by those runs).
//!
//! A format newer than this build's is refused, never guessed at.

use std::path::{Path, PathBuf};

use cost_model::lr::{LrSchedule, Rewarmup};
use cost_model::{Plan, Segment};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::TrainConfig;
use crate::cooldown::CooldownBranch;
use crate::schedule::ScheduleSpec;

/// The format this build writes.
pub const FORMAT: u32 = 3;

/// `run.json`: what a run is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    /// Layout version of `run.json` and of the run's `metrics.jsonl` lines ([`FORMAT`]).
    pub format: u32,
    pub name: String,
    pub config: TrainConfig,
    pub schedule: ScheduleSpec,
    /// The plan from cost_model: every step's phase, layers and compute.
    pub plan: Plan,
    pub git_commit: String,
    pub device: String,
    pub libtorch_version: String,
    /// When the run started (UTC, RFC 3339).
    pub start_time: String,
    /// Set when this run is a cooldown branch of another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<CooldownBranch>,
}

/// Why a `run.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("{}: no run here (missing run.json)", .dir.display())]
    Missing { dir: PathBuf },
    #[error("{}: corrupt run.json: {detail}", .path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{}: format {found} is newer than this build reads (up to {FORMAT}); use a newer stagewise", .path.display())]
    Newer { path: PathBuf, found: u64 },
    #[error("{}: the stored plan differs from the one this build computes for the same schedule ({detail}); resume it with the commit that started it ({commit})", .path.display())]
    PlanMismatch { path: PathBuf, detail: String, commit: String },
}

impl RunHeader {
    /// Whether the run evaluates its validation sample: periodically (`val_every`), or at a
    /// growth, whose line reports the validation loss before and after it.
    pub fn uses_validation(&self) -> bool {
        self.config.val_every > 0 || self.plan.segments.iter().any(|s| s.grows.is_some_and(|g| g.from_layers > 0))
    }

    /// A header for a run starting now, at the current git commit.
    pub fn new(
        name: &str,
        config: TrainConfig,
        schedule: ScheduleSpec,
        plan: Plan,
        device: String,
        libtorch_version: &str,
    ) -> RunHeader {
        RunHeader {
            format: FORMAT,
            name: name.to_string(),
            config,
            schedule,
            plan,
            git_commit: git_commit(),
            device,
            libtorch_version: libtorch_version.to_string(),
            start_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            branch: None,
        }
    }

    /// The learning rate of every step: the config's curve over the plan's steps, and the
    /// schedule's re-warmup when continual training starts.
    pub fn lr_schedule(&self) -> LrSchedule {
        let curve = self.config.lr_curve(self.plan.total_steps());
        let rewarmup = match (self.schedule.incremental(), self.plan.continual_start()) {
            (Some(spec), Some(first_step)) if spec.rewarmup_steps > 0 => {
                Some(Rewarmup { first_step, steps: spec.rewarmup_steps })
            }
            _ => None,
        };
        LrSchedule { curve, rewarmup }
    }

    /// The header as `run.json` holds it (pretty JSON).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a run header is plain data")
    }

    /// Parse `run.json` of any format this build knows, upgrading old ones.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<RunHeader, HeaderError> {
        let corrupt = |detail: String| HeaderError::Corrupt { path: path.into(), detail };
        let mut value: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let format = match value.get("format") {
            None => 1,
            Some(v) => v.as_u64().ok_or_else(|| corrupt(format!("`format` is {v}, not a version number")))?,
        };
        if format > u64::from(FORMAT) {
            return Err(HeaderError::Newer { path: path.into(), found: format });
        }
        if format == 1 {
            upgrade_v1(&mut value);
        }
        if format <= 2 {
            upgrade_v2(&mut value);
        }
        let mut header: RunHeader = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        if format == 1 {
            // Format 1 plans lack what format 2 segments say (where stages grow): rebuild the plan
            // and insist that it runs the very same steps.
            let rebuilt = header.schedule.plan(&header.config).map_err(|e| corrupt(e.to_string()))?;
            same_steps(&header.plan, &rebuilt).map_err(|detail| HeaderError::PlanMismatch {
                path: path.into(),
                detail,
                commit: header.git_commit.clone(),
            })?;
            header.plan = rebuilt;
        }
        Ok(header)
    }
}

/// Format 1 → 2 in place: renamed keys, and the values those runs ran with where a key did not
/// exist yet.
fn upgrade_v1(value: &mut Value) {
    if let Some(config) = value.get_mut("config").and_then(Value::as_object_mut) {
        // `loss_chunk_tokens` (0 = PyTorch's cross_entropy) became the `loss_kernel` enum.
        let chunk = config.remove("loss_chunk_tokens").unwrap_or(json!(0));
        config.insert("loss_kernel".into(), chunk);
        for (key, ran_with) in [
            ("tf32", json!(false)),
            ("hellaswag", Value::Null),
            ("hellaswag_every", json!(0)),
            ("hellaswag_limit", Value::Null),
            ("on_nan", json!("stop")),
        ] {
            config.entry(key).or_insert(ran_with);
        }
    }
    if let Some(schedule) = value.get_mut("schedule").and_then(Value::as_object_mut) {
        if schedule.get("kind").and_then(Value::as_str) == Some("incremental") {
            for (old, new) in [("context_schedule", "stage_context"), ("batch_schedule", "stage_tokens_per_step")] {
                if let Some(list) = schedule.remove(old) {
                    schedule.insert(new.into(), list);
                }
            }
            // The trainer of format 1 always ran all base steps incrementally.
            schedule.entry("incremental_share").or_insert(json!(1.0));
        }
    }
    value["format"] = json!(2);
}

/// Format 2 → 3 in place: the data order, validation sample, loss and schedule knobs those runs
/// ran with.
fn upgrade_v2(value: &mut Value) {
    if let Some(config) = value.get_mut("config").and_then(Value::as_object_mut) {
        let number = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        let (batches, micro_batch) = (number(config.get("val_batches")), number(config.get("micro_batch")));
        let context = number(config.get("model").and_then(|m| m.get("context")));
        config.remove("val_batches");
        for (key, ran_with) in [
            ("val_tokens", json!(batches * micro_batch * context)),
            ("val_spread", json!(false)),
            ("data_seed", Value::Null),
            ("softmax_over_padding", json!(true)),
            ("cooldown_fraction", json!(0.2)),
            ("decay_shape", json!("1-sqrt")),
            ("cooldown_budgets", json!([])),
            ("cooldown_unit", json!("flops")),
        ] {
            config.insert(key.into(), ran_with);
        }
    }
    if let Some(schedule) = value.get_mut("schedule").and_then(Value::as_object_mut) {
        if schedule.get("kind").and_then(Value::as_str) == Some("incremental") {
            schedule.insert("rewarmup_steps".into(), json!(0));
            schedule.insert("reset_moments_on_unfreeze".into(), json!(false));
        }
    }
    value["format"] = json!(3);
}

/// `Ok` when two plans run the same steps with the same compute; else what differs first.
fn same_steps(stored: &Plan, rebuilt: &Plan) -> Result<(), String> {
    if stored.segments.len() != rebuilt.segments.len() {
        return Err(format!("{} segments stored, {} computed", stored.segments.len(), rebuilt.segments.len()));
    }
    for (a, b) in stored.segments.iter().zip(&rebuilt.segments) {
        // Every field but `grows`, which format 1 did not store (a field added later counts too).
        if (Segment { grows: None, ..*a }) != (Segment { grows: None, ..*b }) {
            return Err(format!("the segment at step {} is stored as {a:?} but computes as {b:?}", a.first_step));
        }
    }
    Ok(())
}

/// The commit of the working tree the trainer runs in (`unknown` outside git).
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
