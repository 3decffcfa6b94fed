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
use crate::optim::AdamW;

/// The `state.json` format this build writes. Format 1 (no `format` key) also held the seed and
/// the segment index, which nothing read; they are ignored.
pub const STATE_FORMAT: u32 = 2;

/// Where a run stands after a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Layout version of `state.json` ([`STATE_FORMAT`]; 1 when absent).
    #[serde(default = "format_1")]
    pub format: u32,
    /// Optimizer steps done.
    pub step: u64,
    /// Where the next training batch starts.
    pub data: DataPosition,
    /// Cumulative measured seconds of training steps.
    pub seconds: f64,
}

fn format_1() -> u32 {
    1
}

impl TrainState {
    /// A run that has not taken a step yet, its data stream shuffled by `data_seed` (or in file
    /// order without one).
    pub fn start(data_seed: Option<u64>) -> TrainState {
        TrainState { format: STATE_FORMAT, step: 0, data: DataPosition::start(data_seed), seconds: 0.0 }
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
fn read_state(dir: &Path) -> anyhow::Result<TrainState> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_of_format_1_still_load() {
        // Format 1 also held `seed` and `segment`, which nothing ever read.
        let old = r#"{"step": 6, "data": {"shard": 0, "offset": 768, "epoch": 0}, "seed": 1337, "seconds": 0.5, "segment": 2}"#;
        let state: TrainState = serde_json::from_str(old).unwrap();
        assert_eq!((state.format, state.step, state.seconds), (1, 6, 0.5));
        assert_eq!(state.data, DataPosition::Sequential { shard: 0, offset: 768, epoch: 0 });
    }
}
