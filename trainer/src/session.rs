//! Starting a run or resuming one: check the input, write the run header, hold the run's lock,
//! restore the last checkpoint, then hand over to the loop in [`crate::train`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use run_dir::{RunDir, RunHeader, ScheduleSpec, TrainConfig};
use serde::Serialize;
use tch::Device;

use crate::checkpoint::{self, TrainState};
use crate::data::TokenDataset;
use crate::device;
use crate::error::bad_input;
use crate::eval;
use crate::progress::format_seconds;
use crate::train::Trainer;

/// Options that do not change what a run computes.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub device: Device,
    /// Stop (with a checkpoint) after this step instead of at the end of the plan.
    pub stop_after_step: Option<u64>,
    /// No progress output.
    pub quiet: bool,
}

/// What a run (or a part of it) ended with.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    pub last_step: u64,
    pub total_steps: u64,
    pub last_loss: Option<f64>,
    pub last_val_loss: Option<f64>,
    /// Mean measured seconds per step over this invocation.
    pub seconds_per_step: f64,
    pub tokens_per_second: f64,
}

/// Start a new run in `run_dir` (which must not hold a run yet).
pub fn start(
    run_dir: &Path,
    config: TrainConfig,
    schedule: ScheduleSpec,
    options: &TrainOptions,
) -> anyhow::Result<TrainSummary> {
    let run = RunDir::new(run_dir);
    let prepare = || -> anyhow::Result<(RunHeader, TokenDataset, Vec<eval::Example>)> {
        config.validate()?;
        let plan = schedule.plan(&config)?;
        for segment in &plan.segments {
            config.micro_batches(segment)?;
        }
        if run.has_header() {
            bail!("{} already holds a run; resume it with --resume {0} or pick another --run name", run_dir.display());
        }
        // Open the data before creating anything, so a missing dataset leaves no run directory behind.
        let dataset = TokenDataset::open(&config.data_dir, config.tokenizer.vocab_size())?;
        let hellaswag = eval::load_configured(&config)?;
        let device = device::name(options.device);
        let header =
            RunHeader::new(&run.name(), config.clone(), schedule.clone(), plan, device, env!("TORCH_BUILD_VERSION"));
        Ok((header, dataset, hellaswag))
    };
    let (header, dataset, hellaswag) = prepare().map_err(bad_input)?;
    // An output directory that cannot be written (read-only, full, a file in the way) is the
    // user's to fix: exit 2, before anything else is written.
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create the run directory {}; choose a writable --runs-dir", run_dir.display()))
        .map_err(bad_input)?;
    let _lock = run.lock().map_err(bad_input)?;
    run.write_header(&header)
        .with_context(|| format!("{} is not writable; choose a writable --runs-dir", run_dir.display()))
        .map_err(bad_input)?;
    if !options.quiet {
        eprintln!(
            "training {} ({} schedule, {} steps) on {} into {}",
            header.config.preset,
            header.schedule.name(),
            header.plan.total_steps(),
            header.device,
            run_dir.display()
        );
    }
    Trainer::new(run, header, dataset, hellaswag, options.device)?.run(TrainState::start(), None, options)
}

/// Continue the run in `run_dir` from its last complete checkpoint (or from scratch if it has none).
pub fn resume(run_dir: &Path, options: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let run = RunDir::new(run_dir);
    let prepare = || -> anyhow::Result<(RunHeader, TokenDataset, Vec<eval::Example>)> {
        let header = run.read_header()?;
        let dataset = TokenDataset::open(&header.config.data_dir, header.config.tokenizer.vocab_size())?;
        let hellaswag = eval::load_configured(&header.config)?;
        Ok((header, dataset, hellaswag))
    };
    let (header, dataset, hellaswag) = prepare().map_err(bad_input)?;
    let _lock = run.lock().map_err(bad_input)?;
    checkpoint::remove_partial(&run);
    let latest = checkpoint::list(&run).pop();
    let resume_step = latest.as_ref().map_or(0, |(step, _)| *step);
    let has_checkpoint_line = run.truncate_metrics_after(resume_step)?;
    let mut trainer = Trainer::new(run, header, dataset, hellaswag, options.device)?;
    let state = match &latest {
        Some((_, dir)) => checkpoint::load(dir, &mut trainer.vs, &mut trainer.optimizer)?,
        None => TrainState::start(),
    };
    let missing_line = latest.filter(|_| !has_checkpoint_line).map(|(_, dir)| dir);
    trainer.run(state, missing_line, options)
}

/// Human summary of a finished invocation.
pub fn describe(summary: &TrainSummary) -> String {
    format!(
        "{}: step {}/{}, train loss {}, val loss {}, {:.1} ms/step, {:.0} tokens/s (total {})",
        summary.run_dir.display(),
        summary.last_step,
        summary.total_steps,
        summary.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
        summary.last_val_loss.map_or("-".into(), |l| format!("{l:.4}")),
        summary.seconds_per_step * 1e3,
        summary.tokens_per_second,
        format_seconds(summary.seconds_per_step * summary.last_step as f64)
    )
}
