//! How to run a run, beside what it computes (its config and schedule, in `run.json`).

use std::path::PathBuf;
use std::rc::Rc;

use tch::Device;

use crate::world::World;

/// Options that do not change what a run computes.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub device: Device,
    /// Stop (with a checkpoint) after this step instead of at the end of the plan.
    pub stop_after_step: Option<u64>,
    /// No progress output.
    pub quiet: bool,
    /// The data-parallel job this process is part of (a world of one by default).
    pub world: Rc<World>,
    /// A new run (or a study's new runs) evaluates HellaSwag on this file: an input of the
    /// evaluation, recorded in the run header (path, SHA-256, examples that fit), not in the
    /// config. Resumes and cooldown branches read the file their run recorded.
    pub hellaswag: Option<PathBuf>,
    /// A new run starts from these pretrained weights (`--init-from`: a Hugging Face GPT-2
    /// directory, a run or a checkpoint), recorded in its header with their SHA-256.
    pub init_from: Option<PathBuf>,
    /// Read each step's loss only after the next step is queued (`None`: on CUDA, where the
    /// device then never waits for the host; the CPU computes as it queues). Logs, checkpoints
    /// and the NaN stop mean the same either way.
    pub lag_reads: Option<bool>,
}

impl TrainOptions {
    /// One process on `device`.
    pub fn single(device: Device, stop_after_step: Option<u64>, quiet: bool) -> TrainOptions {
        TrainOptions {
            init_from: None,
            device,
            stop_after_step,
            quiet,
            world: Rc::new(World::single()),
            hellaswag: None,
            lag_reads: None,
        }
    }
}
