//! Starting a run, a cooldown branch of a run, or resuming either: check the input, write the run
//! header, hold the run's lock, restore the last checkpoint, then hand over to the loop in
//! [`crate::train`].
//!
//! In a data-parallel job rank 0 alone touches the run directory (header, lock, checkpoints,
//! log): it decides, and every rank receives the decision ([`decide`]): the header, the state to
//! continue from, or rank 0's error. Then rank 0's parameters and optimizer state are broadcast,
//! so every rank starts identical, whatever the world size the run was started with.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{bail, Context};
use cost_model::{ComputeUnit, Until};
use run_dir::config::LrKind;
use run_dir::cooldown::{self, CooldownBranch};
use run_dir::{HellaswagInput, RunDir, RunHeader, ScheduleSpec, TrainConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::Device;

use crate::checkpoint::{self, TrainState};
use crate::data::loader::validation_starts;
use crate::data::TokenDataset;
use crate::device;
use crate::dist::World;
use crate::error::{bad_input, BadInput};
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
    /// The data-parallel job this process is part of (a world of one by default).
    pub world: Rc<World>,
    /// A new run (or a study's new runs) evaluates HellaSwag on this file: an input of the
    /// evaluation, recorded in the run header (path, SHA-256, examples that fit), not in the
    /// config. Resumes and cooldown branches read the file their run recorded.
    pub hellaswag: Option<PathBuf>,
    /// Read each step's loss only after the next step is queued (`None`: on CUDA, where the
    /// device then never waits for the host; the CPU computes as it queues). Logs, checkpoints
    /// and the NaN stop mean the same either way.
    pub lag_reads: Option<bool>,
}

impl TrainOptions {
    /// One process on `device`.
    pub fn single(device: Device, stop_after_step: Option<u64>, quiet: bool) -> TrainOptions {
        TrainOptions {
            device,
            stop_after_step,
            quiet,
            world: Rc::new(World::single()),
            hellaswag: None,
            lag_reads: None,
        }
    }
}

/// What rank 0 decides (`on_main`, which alone may touch the run directory), on every rank: rank 0
/// sends its result, or its error (bad input stays bad input), to the others.
pub(crate) fn decide<T: Serialize + DeserializeOwned>(
    world: &World,
    on_main: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if world.size == 1 {
        return on_main();
    }
    if world.is_main() {
        let result = on_main();
        let message = match &result {
            Ok(value) => [vec![0u8], serde_json::to_vec(value)?].concat(),
            Err(e) => {
                let kind = if e.downcast_ref::<BadInput>().is_some() { 2u8 } else { 1 };
                [vec![kind], format!("{e:#}").into_bytes()].concat()
            }
        };
        world.broadcast_bytes(Some(&message))?;
        return result;
    }
    let message = world.broadcast_bytes(None)?;
    let (kind, body) = message.split_first().context("empty decision from rank 0")?;
    match kind {
        0 => Ok(serde_json::from_slice(body).context("rank 0's decision")?),
        2 => Err(bad_input(anyhow::anyhow!("rank 0: {}", String::from_utf8_lossy(body)))),
        _ => bail!("rank 0: {}", String::from_utf8_lossy(body)),
    }
}

/// The data and the HellaSwag set a run reads.
struct Inputs {
    dataset: TokenDataset,
    hellaswag: Option<eval::HellaswagSet>,
}

/// Open a run's inputs (every rank opens its own; opening checks every token of every shard):
/// the data of `config`, and the HellaSwag file at `hellaswag`, which must still have the
/// SHA-256 a run recorded, if it did.
fn open_inputs(config: &TrainConfig, hellaswag: Option<&HellaswagInput>) -> anyhow::Result<Inputs> {
    let dataset = TokenDataset::open(&config.data_dir, config.tokenizer.vocab_size())?;
    let hellaswag = hellaswag.map(|h| eval::HellaswagSet::open(&h.path, h.sha256.as_deref(), config)).transpose()?;
    Ok(Inputs { dataset, hellaswag })
}

/// The inputs rank 0 opened while deciding (checking them is part of the decision), or, on the
/// other ranks, this rank's own, from the decided header: no rank reads the data twice.
fn inputs(opened: Option<Inputs>, header: &RunHeader) -> Result<Inputs, anyhow::Error> {
    match opened {
        Some(inputs) => Ok(inputs),
        None => open_inputs(&header.config, header.hellaswag.as_ref()).map_err(bad_input),
    }
}

/// A HellaSwag file given for a new run, before it is opened (nothing recorded yet).
fn new_hellaswag(path: &Option<PathBuf>) -> Option<HellaswagInput> {
    path.as_ref().map(|path| HellaswagInput { path: path.clone(), sha256: None, counts: None })
}

/// Every step must give each rank at least one micro-batch.
fn check_world(config: &TrainConfig, plan: &cost_model::Plan, world: &World) -> anyhow::Result<()> {
    for segment in &plan.segments {
        let per_step = config.micro_batches(segment)?.per_step;
        if per_step < world.size {
            bail!(
                "stage {} has {per_step} micro-batches a step, fewer than the {} ranks; raise tokens_per_step (a multiple of micro_batch × context) or use fewer processes",
                segment.stage,
                world.size
            );
        }
    }
    Ok(())
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
    let world = &options.world;
    let run = RunDir::new(run_dir);
    let mut lock = None;
    let mut opened = None;
    let header = decide(world, || {
        let (header, inputs) = (|| -> anyhow::Result<(RunHeader, Inputs)> {
            config.validate()?;
            let plan = schedule.plan(&config)?;
            check_world(&config, &plan, world)?;
            for &budget in &config.cooldown_budgets {
                cooldown::branch_point(&plan, config.cooldown_unit, budget, config.cooldown_fraction)
                    .context("--cooldown-budgets")?;
            }
            if run.has_header() {
                bail!(
                    "{} already holds a run; resume it with --resume {0} or pick another --run name",
                    run_dir.display()
                );
            }
            // Open the data before creating anything, so a missing dataset leaves no run directory behind.
            let inputs = open_inputs(&config, new_hellaswag(&options.hellaswag).as_ref())?;
            let device = device::name(options.device);
            let mut header = RunHeader::new(
                &run.name(),
                config.clone(),
                schedule.clone(),
                plan,
                device,
                env!("TORCH_BUILD_VERSION"),
            );
            header.hellaswag = inputs.hellaswag.as_ref().map(|h| h.input.clone());
            header.kernels = Some(device::kernels());
            if header.uses_validation() {
                validation_starts(
                    inputs.dataset.val.len(),
                    config.val_tokens,
                    config.model.context,
                    config.val_spread,
                )?;
            }
            Ok((header, inputs))
        })()
        .map_err(bad_input)?;
        // An output directory that cannot be written (read-only, full, a file in the way) is the
        // user's to fix: exit 2, before anything else is written.
        std::fs::create_dir_all(run_dir)
            .with_context(|| {
                format!("cannot create the run directory {}; choose a writable --runs-dir", run_dir.display())
            })
            .map_err(bad_input)?;
        lock = Some(run.lock().map_err(bad_input)?);
        run.write_header(&header)
            .with_context(|| format!("{} is not writable; choose a writable --runs-dir", run_dir.display()))
            .map_err(bad_input)?;
        opened = Some(inputs);
        Ok(header)
    })?;
    let Inputs { dataset, hellaswag } = inputs(opened, &header)?;
    if !options.quiet && world.is_main() {
        eprintln!(
            "training {} ({} schedule, {} steps) on {} into {}{}",
            header.config.preset,
            header.schedule.name(),
            header.plan.total_steps(),
            header.device,
            run_dir.display(),
            if world.size > 1 { format!(", {} ranks", world.size) } else { String::new() }
        );
        if let Some(line) = equal_compute_note(&header) {
            eprintln!("{line}");
        }
    }
    let start = TrainState::start(header.config.data_seed);
    let trainer = Trainer::new(run, header, dataset, hellaswag.map(|h| h.rendered), options)?;
    trainer.sync_from_main()?;
    let summary = trainer.run(start, None, options);
    drop(lock);
    summary
}

/// Under torchrun's restarts (`attempt` > 0 reruns the first attempt's command): resume the run in
/// `run_dir` if rank 0 finds one there with this configuration and schedule, or start it if the
/// first attempt failed before writing it. A run there with another configuration is an error,
/// never overwritten.
pub fn start_or_resume(
    run_dir: &Path,
    config: TrainConfig,
    schedule: ScheduleSpec,
    options: &TrainOptions,
    attempt: usize,
) -> anyhow::Result<TrainSummary> {
    let exists = decide(&options.world, || {
        let run = RunDir::new(run_dir);
        if !run.has_header() {
            return Ok(false);
        }
        let header = run.read_header().map_err(bad_input)?;
        if header.config != config || header.schedule != schedule {
            return Err(bad_input(anyhow::anyhow!(
                "torchrun restart {attempt}: {} holds a run with another configuration or schedule; pick another --run name",
                run_dir.display()
            )));
        }
        Ok(true)
    })?;
    if !exists {
        return start(run_dir, config, schedule, options);
    }
    if !options.quiet && options.world.is_main() {
        eprintln!("torchrun restart {attempt}: resuming {} from its last checkpoint", run_dir.display());
    }
    resume(run_dir, options)
}

/// For an incremental run: where it spends the baseline's budget in each unit, and which one
/// it stops at.
fn equal_compute_note(header: &RunHeader) -> Option<String> {
    let spec = header.schedule.incremental()?;
    let at = |unit| header.plan.equal_compute_in(unit).step;
    let stops = match spec.until {
        Until::EqualCompute(unit) => format!("stops at equal compute in {}", unit.as_str()),
        Until::Budget { multiple, unit } => format!("runs to {multiple} × the budget in {}", unit.as_str()),
        Until::Steps(steps) => format!("runs to step {steps}"),
    };
    Some(format!(
        "equal compute with the {}-step baseline: step {} in FLOPs, {} in paper units; this run {stops}",
        header.plan.base_steps,
        at(ComputeUnit::Flops),
        at(ComputeUnit::PaperUnits)
    ))
}

/// Start the cooldown branch of the run in `run_dir` at `budget` × its baseline budget in `unit`:
/// from the run's checkpoint at the branch point `K`, follow the run's plan to `E`, where its
/// compute reaches the budget, with the learning rate decaying to `lr_min` (into
/// `<run_dir>/cooldowns/<unit>-<budget>/`).
pub fn cooldown(
    run_dir: &Path,
    budget: f64,
    unit: ComputeUnit,
    options: &TrainOptions,
) -> anyhow::Result<TrainSummary> {
    let world = &options.world;
    let parent = RunDir::new(run_dir);
    let branch = parent.cooldown(unit, budget);
    let mut lock = None;
    let mut checkpoint = PathBuf::new();
    let mut opened = None;
    let header = decide(world, || {
        let (header, from, inputs) = prepare_branch(&parent, &branch, budget, unit, options).map_err(bad_input)?;
        std::fs::create_dir_all(branch.path())
            .with_context(|| format!("cannot create {}", branch.path().display()))
            .map_err(bad_input)?;
        lock = Some(branch.lock().map_err(bad_input)?);
        branch.write_header(&header).with_context(|| format!("writing {}", branch.header_path().display()))?;
        checkpoint = from;
        opened = Some(inputs);
        Ok(header)
    })?;
    let Inputs { dataset, hellaswag } = inputs(opened, &header)?;
    if !options.quiet && world.is_main() {
        let b = header.branch.as_ref().expect("a branch header");
        eprintln!(
            "cooldown branch of {} at {budget} × its budget in {}: from step {} to step {}, learning rate to {} at the end, into {}",
            b.parent,
            unit.as_str(),
            b.from_step,
            b.to_step,
            header.config.lr_min,
            branch.path().display()
        );
    }
    let mut trainer = Trainer::new(branch, header, dataset, hellaswag.map(|h| h.rendered), options)?;
    let state = decide(world, || checkpoint::load(&checkpoint, &mut trainer.vs, &mut trainer.optimizer))?;
    trainer.sync_from_main()?;
    let summary = trainer.run(state, None, options);
    drop(lock);
    summary
}

/// The header of `parent`'s branch at `budget` in `unit`, the checkpoint it starts from and its
/// opened inputs, or why there is none.
fn prepare_branch(
    parent: &RunDir,
    branch: &RunDir,
    budget: f64,
    unit: ComputeUnit,
    options: &TrainOptions,
) -> anyhow::Result<(RunHeader, PathBuf, Inputs)> {
    let run_dir = parent.path();
    let main = parent.read_header()?;
    if main.branch.is_some() {
        bail!("{} is itself a cooldown branch; branch the run it came from", run_dir.display());
    }
    let mut config = main.config.clone();
    match config.lr_schedule {
        LrKind::Wsd => {}
        // A constant rate is flat until any branch point too: the branch decays from it.
        LrKind::Constant => {
            config.lr_schedule = LrKind::Wsd;
            config.warmup_steps = 0;
            config.lr_min = config.lr_min.min(config.lr_max);
        }
        LrKind::Cosine => bail!(
            "{}: a cosine run's learning rate is already decaying before any branch point; cooldown branches need lr_schedule wsd (or constant)",
            run_dir.display()
        ),
    }
    let point = cooldown::branch_point(&main.plan, unit, budget, config.cooldown_fraction).context("--budget")?;
    if branch.has_header() {
        bail!("{} already exists; resume it with --resume {0}, or pick another --budget", branch.path().display());
    }
    let checkpoint = parent.checkpoint_dir(point.from_step);
    if !checkpoint.is_dir() {
        bail!(
            "{}: no checkpoint at the branch point, step {}; rerun the run with --cooldown-budgets {budget} --cooldown-unit {} (it saves one there)",
            run_dir.display(),
            point.from_step,
            unit.as_str()
        );
    }
    config.cooldown_budgets.clear();
    // The branch evaluates on its run's HellaSwag file, which must not have changed since.
    let inputs = open_inputs(&config, main.hellaswag.as_ref())?;
    let name = cooldown::branch_run_name(&main.name, unit, budget);
    let plan = main.plan.truncated(point.to_step);
    check_world(&config, &plan, &options.world)?;
    let device = device::name(options.device);
    let mut header = RunHeader::new(&name, config, main.schedule.clone(), plan, device, env!("TORCH_BUILD_VERSION"));
    header.hellaswag = inputs.hellaswag.as_ref().map(|h| h.input.clone());
    header.kernels = Some(device::kernels());
    header.branch = Some(CooldownBranch {
        parent: main.name.clone(),
        budget,
        unit,
        from_step: point.from_step,
        to_step: point.to_step,
    });
    Ok((header, checkpoint, inputs))
}

/// Continue the run in `run_dir` from its last complete checkpoint (or from scratch if it has
/// none), with any number of ranks: the data stream does not depend on the world size.
pub fn resume(run_dir: &Path, options: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let world = &options.world;
    let run = RunDir::new(run_dir);
    let mut lock = None;
    let mut latest = None;
    let mut has_checkpoint_line = false;
    let mut opened = None;
    let header = decide(world, || {
        let header = run.read_header().map_err(bad_input)?;
        opened = Some(open_inputs(&header.config, header.hellaswag.as_ref()).map_err(bad_input)?);
        check_world(&header.config, &header.plan, world).map_err(bad_input)?;
        lock = Some(run.lock().map_err(bad_input)?);
        checkpoint::remove_partial(&run);
        latest = checkpoint::list(&run).pop();
        let resume_step = latest.as_ref().map_or(0, |(step, _)| *step);
        has_checkpoint_line = run.truncate_metrics_after(resume_step)?;
        Ok(header)
    })?;
    let Inputs { dataset, hellaswag } = inputs(opened, &header)?;
    if world.is_main() {
        warn_if_other_kernels(&header);
    }
    // A branch with no checkpoint of its own starts again from its run's checkpoint.
    let from_parent = match (&latest, &header.branch, run.branch_parent()) {
        (None, Some(b), Some(parent)) => Some(parent.checkpoint_dir(b.from_step)),
        _ => None,
    };
    let data_seed = header.config.data_seed;
    let mut trainer = Trainer::new(run, header, dataset, hellaswag.map(|h| h.rendered), options)?;
    let state = decide(world, || match latest.as_ref().map(|(_, dir)| dir.clone()).or(from_parent) {
        Some(dir) => checkpoint::load(&dir, &mut trainer.vs, &mut trainer.optimizer),
        None => Ok(TrainState::start(data_seed)),
    })?;
    trainer.sync_from_main()?;
    let missing_line = latest.filter(|_| !has_checkpoint_line).map(|(_, dir)| dir);
    let summary = trainer.run(state, missing_line, options);
    drop(lock);
    summary
}

/// Bits are only comparable under the kernels and threads a run started with: say so when a
/// resume computes with others (the losses then continue to float rounding, not bit for bit).
fn warn_if_other_kernels(header: &RunHeader) {
    let now = device::kernels();
    if let Some(differences) = header.kernels.as_ref().and_then(|recorded| recorded.differences(&now)) {
        eprintln!("warning: {} started with {differences}: it resumes correctly, but not bit for bit", header.name);
    }
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
