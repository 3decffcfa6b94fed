//! Where a run begins: a new run, a resume, or a cooldown branch of another run, decided by rank 0
//! alone (it owns the run directory) and sent to every rank as one value, [`Decision`].
//!
//! Rank 0 checks the input, writes the run header, takes the run's lock ([`RunLock`], held until
//! training ends) and opens the data, all before anything else happens: a bad input leaves no run
//! directory behind and exits 2. Every other rank receives the decision and opens its own inputs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use cost_model::ComputeUnit;
use run_dir::cooldown;
use run_dir::{HellaswagInput, RunDir, RunHeader, RunLock, ScheduleSpec, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::data::loader::validation_starts;
use crate::data::TokenDataset;
use crate::device;
use crate::error::bad_input;
use crate::run::checkpoint;
use crate::run::eval;
use crate::run::options::TrainOptions;
use crate::world::World;

/// How a run begins, as rank 0 decided it: the run, and the checkpoint it continues from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub run_dir: PathBuf,
    pub header: RunHeader,
    pub from: From,
}

/// What the run's first step continues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum From {
    /// A new run (or one that never reached a checkpoint): the initialisation.
    Scratch,
    /// A checkpoint: the run's own, or, for a branch that has none yet, its parent's at the branch
    /// point. `logged`: whether the log holds its line (a process that died between writing the
    /// checkpoint and logging it left none; the run writes it when it continues).
    Checkpoint { dir: PathBuf, logged: bool },
}

impl Decision {
    /// One line for people: what is about to happen.
    pub fn describe(&self) -> String {
        let run = self.run_dir.display();
        match (&self.from, &self.header.branch) {
            (From::Scratch, None) => format!("starting {run}"),
            (From::Scratch, Some(_)) => format!("starting the cooldown branch {run} from scratch"),
            (From::Checkpoint { dir, .. }, Some(b)) if !dir.starts_with(&self.run_dir) => {
                format!("starting the cooldown branch {run} of {} from its step {}", b.parent, b.from_step)
            }
            (From::Checkpoint { dir, .. }, _) => format!("resuming {run} from {}", dir.display()),
        }
    }
}

/// A decision, with what rank 0 holds while the run trains: the run's lock and the inputs it
/// opened while deciding (the other ranks open theirs from the decided header).
pub struct Decided {
    pub decision: Decision,
    pub lock: Option<RunLock>,
    pub inputs: Option<Inputs>,
}

/// The data and the HellaSwag set a run reads.
pub struct Inputs {
    pub dataset: TokenDataset,
    pub hellaswag: Option<eval::HellaswagSet>,
}

impl Inputs {
    /// Open `config`'s data (checking every token of every shard) and the HellaSwag file at
    /// `hellaswag`, which must still have the SHA-256 a run recorded, if it did.
    pub fn open(config: &TrainConfig, hellaswag: Option<&HellaswagInput>) -> anyhow::Result<Inputs> {
        let dataset = TokenDataset::open(&config.data_dir, config.tokenizer.vocab_size())?;
        let hellaswag =
            hellaswag.map(|h| eval::HellaswagSet::open(&h.path, h.sha256.as_deref(), config)).transpose()?;
        Ok(Inputs { dataset, hellaswag })
    }
}

/// Rank 0 decides with `on_main`, which also returns what it keeps (lock, inputs); every rank
/// gets the decision.
fn decide(
    world: &World,
    on_main: impl FnOnce() -> anyhow::Result<(Decision, RunLock, Inputs)>,
) -> anyhow::Result<Decided> {
    let mut kept = None;
    let decision = world.decide(|| {
        let (decision, lock, inputs) = on_main()?;
        kept = Some((lock, inputs));
        Ok(decision)
    })?;
    let (lock, inputs) = kept.map_or((None, None), |(l, i)| (Some(l), Some(i)));
    Ok(Decided { decision, lock, inputs })
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

/// A new run in `run_dir` (which must not hold one yet), evaluating HellaSwag on `hellaswag`.
pub fn start(
    run_dir: &Path,
    config: TrainConfig,
    schedule: ScheduleSpec,
    options: &TrainOptions,
) -> anyhow::Result<Decided> {
    let world = &options.world;
    decide(world, || {
        let run = RunDir::new(run_dir);
        let (header, inputs) = (|| -> anyhow::Result<(RunHeader, Inputs)> {
            config.validate()?;
            let plan = schedule.plan(&config)?;
            check_world(&config, &plan, world)?;
            cooldown::branch_points(&config, &plan).context("--cooldown-budgets")?;
            if run.has_header() {
                bail!(
                    "{} already holds a run; resume it with --resume {0} or pick another --run name",
                    run_dir.display()
                );
            }
            // Open the data before creating anything, so a missing dataset leaves no run directory.
            let given = options.hellaswag.clone().map(|path| HellaswagInput { path, sha256: None, counts: None });
            let inputs = Inputs::open(&config, given.as_ref())?;
            let mut header = RunHeader::new(
                &run.name(),
                config.clone(),
                schedule.clone(),
                plan,
                device::name(options.device),
                env!("TORCH_BUILD_VERSION"),
            );
            header.hellaswag = inputs.hellaswag.as_ref().map(|h| h.input.clone());
            header.kernels = Some(device::kernels());
            if let Some(path) = &options.init_from {
                let vocab = config.tokenizer.vocab_size();
                header.init_from = Some(crate::run::init_from::describe(path, config.model, vocab)?);
            }
            if header.uses_validation() {
                let val = inputs.dataset.val.len();
                validation_starts(val, config.val_tokens, config.model.context, config.val_spread)?;
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
        let lock = run.lock().map_err(bad_input)?;
        run.write_header(&header)
            .with_context(|| format!("{} is not writable; choose a writable --runs-dir", run_dir.display()))
            .map_err(bad_input)?;
        Ok((Decision { run_dir: run_dir.to_path_buf(), header, from: From::Scratch }, lock, inputs))
    })
}

/// Continue the run in `run_dir` from its last complete checkpoint (or from scratch if it has
/// none; a branch without one of its own starts again from its parent's branch point).
pub fn resume(run_dir: &Path, options: &TrainOptions) -> anyhow::Result<Decided> {
    let world = &options.world;
    decide(world, || {
        let run = RunDir::new(run_dir);
        let header = run.read_header().map_err(bad_input)?;
        let inputs = Inputs::open(&header.config, header.hellaswag.as_ref()).map_err(bad_input)?;
        check_world(&header.config, &header.plan, world).map_err(bad_input)?;
        let lock = run.lock().map_err(bad_input)?;
        if let Some(pid) = &lock.stale_owner {
            eprintln!("{}: process {pid} died holding this run's lock; taking it over", run_dir.display());
        }
        checkpoint::remove_partial(&run);
        let latest = checkpoint::list(&run).pop();
        let logged = run.truncate_metrics_after(latest.as_ref().map_or(0, |(step, _)| *step))?;
        let from = match (latest, &header.branch, run.branch_parent()) {
            (Some((_, dir)), _, _) => From::Checkpoint { dir, logged },
            (None, Some(b), Some(parent)) => From::Checkpoint { dir: parent.checkpoint_dir(b.from_step), logged: true },
            (None, _, _) => From::Scratch,
        };
        warn_if_other_kernels(&header);
        Ok((Decision { run_dir: run_dir.to_path_buf(), header, from }, lock, inputs))
    })
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
) -> anyhow::Result<Decided> {
    let exists = options.world.decide(|| {
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
    if exists && options.world.is_main() && !options.quiet {
        eprintln!("torchrun restart {attempt}: resuming {} from its last checkpoint", run_dir.display());
    }
    match exists {
        true => resume(run_dir, options),
        false => start(run_dir, config, schedule, options),
    }
}

/// The cooldown branch of the run in `run_dir` at `budget` × its baseline budget in `unit`: from
/// the run's checkpoint at the branch point `K`, its plan to `E` (where its compute reaches the
/// budget) with the learning rate decaying to `lr_min`, into `<run_dir>/cooldowns/<unit>-<budget>/`.
pub fn branch(run_dir: &Path, budget: f64, unit: ComputeUnit, options: &TrainOptions) -> anyhow::Result<Decided> {
    decide(&options.world, || {
        let parent = RunDir::new(run_dir);
        let branch = parent.cooldown(unit, budget);
        let (header, from, inputs) = branch_header(&parent, &branch, budget, unit, options).map_err(bad_input)?;
        std::fs::create_dir_all(branch.path())
            .with_context(|| format!("cannot create {}", branch.path().display()))
            .map_err(bad_input)?;
        let lock = branch.lock().map_err(bad_input)?;
        branch.write_header(&header).with_context(|| format!("writing {}", branch.header_path().display()))?;
        let decision = Decision {
            run_dir: branch.path().to_path_buf(),
            header,
            from: From::Checkpoint { dir: from, logged: true },
        };
        Ok((decision, lock, inputs))
    })
}

/// The header of `parent`'s branch at `budget` in `unit`, the checkpoint it starts from and its
/// opened inputs, or why there is none.
fn branch_header(
    parent: &RunDir,
    branch: &RunDir,
    budget: f64,
    unit: ComputeUnit,
    options: &TrainOptions,
) -> anyhow::Result<(RunHeader, PathBuf, Inputs)> {
    let run_dir = parent.path();
    let main = parent.read_header()?;
    if branch.has_header() {
        bail!("{} already exists; resume it with --resume {0}, or pick another --budget", branch.path().display());
    }
    let derived = cooldown::derive_branch(&main, unit, budget).context("--budget")?;
    let checkpoint = parent.checkpoint_dir(derived.from_step());
    if !checkpoint.is_dir() {
        bail!(
            "{}: no checkpoint at the branch point, step {}; rerun the run with --cooldown-budgets {budget} --cooldown-unit {} (it saves one there)",
            run_dir.display(),
            derived.from_step(),
            unit.as_str()
        );
    }
    // The branch evaluates on its run's HellaSwag file, which must not have changed since.
    let inputs = Inputs::open(&derived.config, main.hellaswag.as_ref())?;
    check_world(&derived.config, &derived.plan, &options.world)?;
    let mut header = derived.into_header(device::name(options.device), env!("TORCH_BUILD_VERSION"));
    header.hellaswag = inputs.hellaswag.as_ref().map(|h| h.input.clone());
    header.kernels = Some(device::kernels());
    Ok((header, checkpoint, inputs))
}

/// Bits are only comparable under the kernels and threads a run started with: say so when a
/// resume computes with others (the losses then continue to float rounding, not bit for bit).
fn warn_if_other_kernels(header: &RunHeader) {
    let now = device::kernels();
    if let Some(differences) = header.kernels.as_ref().and_then(|recorded| recorded.differences(&now)) {
        eprintln!("warning: {} started with {differences}: it resumes correctly, but not bit for bit", header.name);
    }
}
