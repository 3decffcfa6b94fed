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
//!   vocabulary, no re-warmup or moment resets, and WSD's defaults (unused by those runs);
//! - 3 → 4: the HellaSwag file moves out of the config into [`RunHeader::hellaswag`] (where it
//!   lies is not part of what a run trains), its digest and counts unknown; [`RunHeader::kernels`]
//!   is absent (those runs did not record them).
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
pub const FORMAT: u32 = 4;

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
    /// The HellaSwag file the run evaluates on, if any: an input of the evaluation, not of the
    /// training, so it is recorded here and not in the config (a study's design never depends on
    /// where the file lies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hellaswag: Option<HellaswagInput>,
    /// The CPU kernels and threads the run computed with (absent in runs before format 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Kernels>,
}

/// What a run evaluated HellaSwag on: the file, what it held, and how much of it fit the context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HellaswagInput {
    /// Where the run reads the file (as given; a resume reads it there again and checks `sha256`).
    pub path: PathBuf,
    /// SHA-256 of the whole file (hex); `null` in runs upgraded from format 3, which did not record it.
    pub sha256: Option<String>,
    /// Examples of each evaluation (after `hellaswag_limit`), the ones scored and the ones skipped
    /// because a row does not fit the model's context; `null` in runs upgraded from format 3.
    pub counts: Option<HellaswagCounts>,
}

/// How many HellaSwag examples an evaluation reads, scores and skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HellaswagCounts {
    pub examples: u64,
    pub scored: u64,
    pub skipped: u64,
}

/// The CPU kernels and threads a run computes with. libtorch picks them per machine (and oneMKL
/// per run, unless `MKL_CBWR` pins its code path), so bits are only comparable between runs that
/// had the same ones: a resume under other kernels or thread counts says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernels {
    /// ATen's CPU capability (`avx2`, `avx512`, ...; `ATEN_CPU_CAPABILITY` pins it).
    pub cpu_capability: String,
    /// Intra-op threads (`STAGEWISE_THREADS` or libtorch's default: the physical cores).
    pub threads: usize,
    /// oneMKL's conditional numerical reproducibility mode (`MKL_CBWR`; the trainer sets
    /// `AUTO,STRICT` when unset, so that two runs on one machine compute the same bits).
    pub mkl_cbwr: String,
}

impl Kernels {
    /// How `self` (a run's recorded kernels) differ from `now` (this process's), in words; `None`
    /// when they are the same.
    pub fn differences(&self, now: &Kernels) -> Option<String> {
        let mut diffs = Vec::new();
        if self.cpu_capability != now.cpu_capability {
            diffs.push(format!(
                "CPU capability {} (now {}; set ATEN_CPU_CAPABILITY={0})",
                self.cpu_capability, now.cpu_capability
            ));
        }
        if self.threads != now.threads {
            diffs.push(format!("{} threads (now {}; set STAGEWISE_THREADS={0})", self.threads, now.threads));
        }
        if self.mkl_cbwr != now.mkl_cbwr {
            diffs.push(format!("MKL_CBWR={} (now {})", self.mkl_cbwr, now.mkl_cbwr));
        }
        (!diffs.is_empty()).then(|| diffs.join(", "))
    }
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
            hellaswag: None,
            kernels: None,
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
        if format <= 3 {
            upgrade_v3(&mut value);
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

/// Format 3 → 4 in place: the config's HellaSwag path becomes the header's evaluation input.
fn upgrade_v3(value: &mut Value) {
    let path = value.get_mut("config").and_then(Value::as_object_mut).and_then(|c| c.remove("hellaswag"));
    if let Some(path) = path.filter(|p| !p.is_null()) {
        value["hellaswag"] = json!({ "path": path, "sha256": null, "counts": null });
    }
    value["format"] = json!(4);
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

/// The commit of the working tree the trainer runs in (`unknown` outside git), asked of `git`
/// once per process. Once matters beyond speed (a study writes dozens of headers): a child
/// process inherits the parent's open files until it execs, and `git`'s search along `PATH`
/// keeps it from exec'ing for a while, so a spawn on one thread can keep another thread's
/// just-released run lock (an `flock`) held in the child.
pub fn git_commit() -> String {
    static COMMIT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    COMMIT
        .get_or_init(|| {
            std::process::Command::new("git")
                .args(["rev-parse", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_header() -> RunHeader {
        let config = TrainConfig::preset("tiny").unwrap();
        let schedule = ScheduleSpec::baseline();
        let plan = schedule.plan(&config).unwrap();
        RunHeader::new("r", config, schedule, plan, "cpu".into(), "2.11.0")
    }

    /// `header` as a format-3 `run.json`: the HellaSwag path in the config, no kernels.
    fn as_format_3(header: &RunHeader, hellaswag: Value) -> Vec<u8> {
        let mut value = serde_json::to_value(header).unwrap();
        value["format"] = json!(3);
        value["config"]["hellaswag"] = hellaswag;
        let object = value.as_object_mut().unwrap();
        object.remove("hellaswag");
        object.remove("kernels");
        serde_json::to_vec_pretty(&value).unwrap()
    }

    #[test]
    fn a_format_3_header_moves_its_hellaswag_path_out_of_the_config() {
        let header = tiny_header();
        let path = Path::new("run.json");
        let upgraded = RunHeader::parse(path, &as_format_3(&header, json!("elsewhere/hellaswag_val.jsonl"))).unwrap();
        assert_eq!(upgraded.format, FORMAT);
        assert_eq!(
            upgraded.hellaswag,
            Some(HellaswagInput { path: "elsewhere/hellaswag_val.jsonl".into(), sha256: None, counts: None })
        );
        assert_eq!(upgraded.config, header.config, "nothing else in the config changes");
        assert_eq!(upgraded.kernels, None);
        let without = RunHeader::parse(path, &as_format_3(&header, Value::Null)).unwrap();
        assert_eq!((without.hellaswag, without.plan), (None, header.plan.clone()));
        // Today's format reads back as written; a newer one is refused.
        assert_eq!(RunHeader::parse(path, &header.to_json()).unwrap(), header);
        let mut newer = serde_json::to_value(&header).unwrap();
        newer["format"] = json!(FORMAT + 1);
        let err = RunHeader::parse(path, &serde_json::to_vec(&newer).unwrap()).unwrap_err();
        assert!(matches!(err, HeaderError::Newer { .. }), "{err}");
    }

    #[test]
    fn kernel_differences_name_the_variable_that_pins_them() {
        let recorded = Kernels { cpu_capability: "avx2".into(), threads: 2, mkl_cbwr: "AUTO,STRICT".into() };
        assert_eq!(recorded.differences(&recorded.clone()), None);
        let now = Kernels { cpu_capability: "avx512".into(), threads: 8, ..recorded.clone() };
        let said = recorded.differences(&now).unwrap();
        assert!(said.contains("ATEN_CPU_CAPABILITY=avx2") && said.contains("STAGEWISE_THREADS=2"), "{said}");
    }
}
