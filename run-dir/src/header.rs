//! `run.json`: the run header, what a run is. Written once by the trainer when the run starts,
//! read when it resumes and by the analysis.
//!
//! Versioned like llm.c's files: `format` says which layout the file (and its run's
//! `metrics.jsonl` lines) follow. Format 3 is upgraded on read to format 4: the HellaSwag file
//! moves out of the config into [`RunHeader::hellaswag`] (where it lies is not part of what a run
//! trains), its digest and counts unknown, and [`RunHeader::kernels`] is absent (those runs did
//! not record them). Format 3 is the format `just study` wrote until 2026-11-30, so anyone who
//! ran the README holds such runs. Formats 1 and 2 (before 2026-11-27: before versioning, and
//! before WSD, seeds and the validation sample) only ever existed in the developers' own
//! directories; they are refused with the commit that reads them, as is a format newer than this
//! build's: never guessed at. Format 4 is read as format 5 with 5's new knobs at the values
//! that reproduce it: a WSD decay over the last `cooldown_fraction` of the *steps*
//! (`cooldown_fraction_of = steps`), stages ending at shares of the base steps, new blocks with
//! fresh optimizer state and no ramp after a growth.

use std::path::{Path, PathBuf};

use cost_model::lr::{LrSchedule, Rewarmup};
use cost_model::Plan;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::TrainConfig;
use crate::cooldown::CooldownBranch;
use crate::schedule::ScheduleSpec;

/// The format this build writes.
pub const FORMAT: u32 = 5;

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
    /// The pretrained weights the run started from, if any (`train --init-from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<InitSource>,
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

/// The pretrained weights a run started from (`train --init-from`), instead of its own
/// initialisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitSource {
    /// As given (a Hugging Face directory, a run or a checkpoint).
    pub path: PathBuf,
    /// The weights file read.
    pub weights: PathBuf,
    /// SHA-256 of the weights file (hex).
    pub sha256: String,
    /// Blocks the source has (the model's first ones start from them).
    pub layers: usize,
}

/// The CPU kernels and threads a run computes with. libtorch picks its kernels per machine, and
/// the trainer pins the thread count and oneMKL's code branch per process (`trainer::numerics`),
/// so bits are only comparable between runs that had the same ones: a resume under other kernels
/// or thread counts says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernels {
    /// ATen's CPU capability (`avx2`, `avx512`, ...; `ATEN_CPU_CAPABILITY` pins it).
    pub cpu_capability: String,
    /// Intra-op threads (`STAGEWISE_THREADS`, else `OMP_NUM_THREADS`, else the physical cores).
    pub threads: usize,
    /// oneMKL's conditional numerical reproducibility mode (`MKL_CBWR`; the trainer sets the
    /// CPU's widest branch, e.g. `AVX512,STRICT`, when unset, so that two processes on one
    /// machine compute the same bits).
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
    #[error("{}: format {found} (written before 2026-11-27) is older than this build reads (3 to 5); read it with stagewise at commit bf4c737", .path.display())]
    Older { path: PathBuf, found: u64 },
}

impl RunHeader {
    /// Whether the run evaluates its validation sample: periodically (`val_every`), or at a
    /// growth (from no blocks too), whose line reports the validation loss before and after it.
    pub fn uses_validation(&self) -> bool {
        self.config.val_every > 0 || self.plan.segments.iter().any(|s| s.growth().is_some())
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
            init_from: None,
            kernels: None,
        }
    }

    /// The learning rate of every step: the config's curve over the plan's steps, and the
    /// schedule's re-warmup when continual training starts.
    pub fn lr_schedule(&self) -> LrSchedule {
        let curve = self.config.lr_curve(&self.plan);
        let mut rewarmups = Vec::new();
        if let Some(spec) = self.schedule.incremental() {
            // It follows the optimizer reset: `ScheduleSpec::plan` refuses a ramp without one.
            if let (Some(first_step), true) = (self.plan.continual_start(), spec.rewarmup_steps > 0) {
                rewarmups.push(Rewarmup { first_step, steps: spec.rewarmup_steps });
            }
            let steps = spec.growth_rewarmup.steps(self.config.warmup_steps);
            let growths = self.plan.segments.iter().filter(|s| s.growth().is_some());
            rewarmups.extend(growths.filter(|_| steps > 0).map(|s| Rewarmup { first_step: s.first_step, steps }));
        }
        LrSchedule { curve, rewarmups }
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
        if format < 3 {
            return Err(HeaderError::Older { path: path.into(), found: format });
        }
        if format <= 3 {
            upgrade_v3(&mut value);
        }
        // 4 → 5: the knobs 5 added take their defaults, which are format 4's behaviour.
        value["format"] = json!(FORMAT);
        serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
    }
}

/// Format 3 → 4 in place: the config's HellaSwag path becomes the header's evaluation input.
fn upgrade_v3(value: &mut Value) {
    let path = value.get_mut("config").and_then(Value::as_object_mut).and_then(|c| c.remove("hellaswag"));
    if let Some(path) = path.filter(|p| !p.is_null()) {
        value["hellaswag"] = json!({ "path": path, "sha256": null, "counts": null });
    }
    value["format"] = json!(4);
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
        // Formats 1 and 2 are refused, naming the commit that reads them.
        for old in [json!(2), Value::Null] {
            let mut value = serde_json::to_value(&header).unwrap();
            match old {
                Value::Null => drop(value.as_object_mut().unwrap().remove("format")),
                v => value["format"] = v,
            }
            let err = RunHeader::parse(path, &serde_json::to_vec(&value).unwrap()).unwrap_err().to_string();
            assert!(err.contains("commit bf4c737"), "{err}");
        }
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
