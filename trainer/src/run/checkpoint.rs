//! Checkpoints: everything needed to continue a run bit for bit.
//!
//! `runs/<run>/checkpoints/step_XXXXXXXX/` holds `model.safetensors`, `optimizer.safetensors`
//! (AdamW moments and per-parameter step counts) and `state.json` ([`TrainState`], versioned by
//! its `format`). A checkpoint is written into a hidden temp directory and renamed into place, so
//! a directory named `step_*` is always complete; leftovers of an interrupted write are removed on
//! the next save.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use run_dir::RunDir;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use crate::data::DataPosition;
use crate::engine::optim::AdamW;

/// The `state.json` format this build writes (and reads).
pub const STATE_FORMAT: u32 = 2;

/// Where a run stands after a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Layout version of `state.json` ([`STATE_FORMAT`]).
    pub format: u32,
    /// Optimizer steps done.
    pub step: u64,
    /// Where the next training batch starts.
    pub data: DataPosition,
    /// Cumulative measured seconds of training steps.
    pub seconds: f64,
}

impl TrainState {
    /// A run that has not taken a step yet.
    pub fn start() -> TrainState {
        TrainState { format: STATE_FORMAT, step: 0, data: DataPosition::default(), seconds: 0.0 }
    }
}

const MODEL_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";

/// Write a checkpoint atomically; returns its directory.
pub fn save(run: &RunDir, vs: &VarStore, optimizer: &AdamW, state: &TrainState) -> anyhow::Result<PathBuf> {
    let dir = run.checkpoints_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    remove_partial(run);
    let final_dir = run.checkpoint_dir(state.step);
    let name = final_dir.file_name().context("checkpoint directory has a name")?.to_string_lossy().into_owned();
    let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    vs.save(tmp.join(MODEL_FILE)).with_context(|| format!("writing {}", tmp.join(MODEL_FILE).display()))?;
    run_dir::failpoint::hit("checkpoint", state.step);
    if run_dir::failpoint::armed_at("disk-full", state.step) {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        return Err(anyhow::Error::from(full).context(format!("writing {}", tmp.join(OPTIMIZER_FILE).display())));
    }
    let opt_tensors = optimizer.state_tensors();
    Tensor::write_safetensors(&opt_tensors, tmp.join(OPTIMIZER_FILE))
        .with_context(|| format!("writing {}", tmp.join(OPTIMIZER_FILE).display()))?;
    let state = TrainState { format: STATE_FORMAT, ..state.clone() };
    std::fs::write(tmp.join(STATE_FILE), serde_json::to_vec_pretty(&state)?)?;
    for file in [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE] {
        std::fs::File::open(tmp.join(file))?.sync_all()?;
    }
    if final_dir.exists() {
        // A checkpoint of this step from an earlier attempt: the new one replaces it.
        std::fs::remove_dir_all(&final_dir)?;
    }
    std::fs::rename(&tmp, &final_dir).with_context(|| format!("renaming {} into place", tmp.display()))?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(final_dir)
}

/// Remove temp directories left by an interrupted save.
pub fn remove_partial(run: &RunDir) {
    if let Ok(entries) = std::fs::read_dir(run.checkpoints_dir()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Complete checkpoints of a run, oldest first: (step, directory).
pub fn list(run: &RunDir) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(run.checkpoints_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step_")?.parse().ok()?;
            e.path().join(STATE_FILE).is_file().then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Read a checkpoint's `state.json`.
pub fn read_state(dir: &Path) -> anyhow::Result<TrainState> {
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let state: TrainState =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: corrupt state.json", dir.display()))?;
    if state.format > STATE_FORMAT {
        bail!("{}: state.json format {} is newer than this build reads ({STATE_FORMAT})", dir.display(), state.format);
    }
    Ok(state)
}

/// Load a checkpoint into `vs` and `optimizer`; returns its state.
pub fn load(dir: &Path, vs: &mut VarStore, optimizer: &mut AdamW) -> anyhow::Result<TrainState> {
    let state = load_model(dir, vs)?;
    let opt: HashMap<String, Tensor> = Tensor::read_safetensors(dir.join(OPTIMIZER_FILE))
        .with_context(|| format!("loading {}", dir.join(OPTIMIZER_FILE).display()))?
        .into_iter()
        .collect();
    optimizer.load_state(opt).with_context(|| format!("{}", dir.display()))?;
    Ok(state)
}

/// Load only the model weights of a checkpoint into `vs`.
pub fn load_model(dir: &Path, vs: &mut VarStore) -> anyhow::Result<TrainState> {
    let state = read_state(dir)?;
    vs.load(dir.join(MODEL_FILE)).with_context(|| format!("loading {}", dir.join(MODEL_FILE).display()))?;
    Ok(state)
}

/// Delete the checkpoints of `run` that are not needed any more: all but the `keep` latest, the
/// ones in `protected` (the final step, the branch points of cooldown branches) always kept. Run
/// it after a checkpoint is complete, so a crash in between never leaves fewer than `keep`.
/// Returns the steps deleted.
pub fn prune(run: &RunDir, keep: usize, protected: &std::collections::BTreeSet<u64>) -> anyhow::Result<Vec<u64>> {
    let all = list(run);
    let latest: Vec<u64> = all.iter().rev().take(keep.max(1)).map(|(step, _)| *step).collect();
    let mut deleted = Vec::new();
    for (step, dir) in all {
        if latest.contains(&step) || protected.contains(&step) {
            continue;
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing the old checkpoint {}", dir.display()))?;
        deleted.push(step);
    }
    Ok(deleted)
}

/// True when `error` comes from a full disk (ENOSPC anywhere in its chain).
pub fn is_disk_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.raw_os_error() == Some(libc::ENOSPC))
            || cause.to_string().contains("No space left on device")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_latest_the_final_and_the_branch_points() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        for step in [10, 20, 30, 40, 50, 60] {
            std::fs::create_dir_all(run.checkpoint_dir(step)).unwrap();
            std::fs::write(run.checkpoint_dir(step).join(STATE_FILE), "{}").unwrap();
        }
        let protected = [20, 60].into_iter().collect();
        // The 2 latest (50, 60), the protected (20, 60).
        assert_eq!(prune(&run, 2, &protected).unwrap(), vec![10, 30, 40]);
        let left: Vec<u64> = list(&run).into_iter().map(|(s, _)| s).collect();
        assert_eq!(left, vec![20, 50, 60]);
        // keep = 0 still keeps the newest: a run must always be able to resume.
        assert_eq!(prune(&run, 0, &Default::default()).unwrap(), vec![20, 50]);
    }

    #[test]
    fn a_full_disk_is_recognised_through_the_context() {
        let full =
            anyhow::Error::from(std::io::Error::from_raw_os_error(libc::ENOSPC)).context("writing model.safetensors");
        assert!(is_disk_full(&full));
        assert!(!is_disk_full(&anyhow::anyhow!("permission denied")));
    }

    #[test]
    fn state_files_round_trip() {
        let state =
            TrainState { step: 6, data: DataPosition { epoch: 1, window: 7 }, seconds: 0.5, ..TrainState::start() };
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(text, r#"{"format":2,"step":6,"data":{"epoch":1,"window":7},"seconds":0.5}"#);
        assert_eq!(serde_json::from_str::<TrainState>(&text).unwrap(), state);
    }
}
