//! Checkpoints: everything needed to continue a run bit for bit.
//!
//! `runs/<run>/checkpoints/step_XXXXXXXX/` holds `model.safetensors`, `optimizer.safetensors`
//! (AdamW moments and per-parameter step counts) and `state.json` ([`TrainState`]). A checkpoint is
//! written into a hidden temp directory and renamed into place, so a directory named `step_*`
//! is always complete; leftovers of an interrupted write are removed on the next save.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use crate::data::DataPosition;
use crate::optim::AdamW;

/// Where a run stands after a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: u64,
    /// Where the next training batch starts.
    pub data: DataPosition,
    /// The seed the model was initialised with (no other randomness is drawn during training).
    pub seed: u64,
    /// Cumulative measured seconds of training steps.
    pub seconds: f64,
    /// Index of the plan segment the next step belongs to (the schedule position).
    pub segment: usize,
}

const MODEL_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";

/// Directory name of the checkpoint after `step` steps.
pub fn checkpoint_name(step: u64) -> String {
    format!("step_{step:08}")
}

/// Write a checkpoint atomically; returns its directory.
pub fn save(run_dir: &Path, vs: &VarStore, optimizer: &AdamW, state: &TrainState) -> anyhow::Result<PathBuf> {
    let dir = run_dir.join("checkpoints");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    remove_partial(&dir);
    let final_dir = dir.join(checkpoint_name(state.step));
    let tmp = dir.join(format!(".tmp-{}-{}", checkpoint_name(state.step), std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    vs.save(tmp.join(MODEL_FILE)).with_context(|| format!("writing {}", tmp.join(MODEL_FILE).display()))?;
    crate::failpoint::hit("checkpoint", state.step);
    let opt_tensors = optimizer.state_tensors();
    Tensor::write_safetensors(&opt_tensors, tmp.join(OPTIMIZER_FILE))
        .with_context(|| format!("writing {}", tmp.join(OPTIMIZER_FILE).display()))?;
    std::fs::write(tmp.join(STATE_FILE), serde_json::to_vec_pretty(state)?)?;
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

/// Remove temp directories left by an interrupted save (in `<run>/checkpoints`).
pub fn remove_partial(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Complete checkpoints of a run, oldest first: (step, directory).
pub fn list(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(run_dir.join("checkpoints"))
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

/// Load a checkpoint into `vs` and `optimizer`; returns its state.
pub fn load(dir: &Path, vs: &mut VarStore, optimizer: &mut AdamW) -> anyhow::Result<TrainState> {
    let state: TrainState = serde_json::from_slice(
        &std::fs::read(dir.join(STATE_FILE)).with_context(|| format!("reading {}", dir.join(STATE_FILE).display()))?,
    )
    .with_context(|| format!("{}: corrupt state.json", dir.display()))?;
    vs.load(dir.join(MODEL_FILE)).with_context(|| format!("loading {}", dir.join(MODEL_FILE).display()))?;
    let opt: HashMap<String, Tensor> = Tensor::read_safetensors(dir.join(OPTIMIZER_FILE))
        .with_context(|| format!("loading {}", dir.join(OPTIMIZER_FILE).display()))?
        .into_iter()
        .collect();
    optimizer.load_state(opt).with_context(|| format!("{}", dir.display()))?;
    Ok(state)
}

/// Load only the model weights of a checkpoint into `vs`.
pub fn load_model(dir: &Path, vs: &mut VarStore) -> anyhow::Result<TrainState> {
    let state: TrainState = serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE))?)?;
    vs.load(dir.join(MODEL_FILE)).with_context(|| format!("loading {}", dir.join(MODEL_FILE).display()))?;
    Ok(state)
}
