//! The training loop, top to bottom as in build-nanogpt's `train_gpt2.py`.
//!
//! [`Trainer::build`] makes what a run needs from rank 0's [`Decision`] (new run, resume, or
//! cooldown branch): the model and optimizer (from the checkpoint the decision names, the same
//! on every rank), the data and the step engine. [`Trainer::train`] then walks the plan:
//!
//! ```text
//! for step in first..=last {
//!     maybe_enter_segment(step)   // a stage grows, the optimizer resets, freezing and batch shape change
//!     train_step(step)            // one optimizer step, queued; its loss is read a step later on CUDA
//!     maybe_validate(step)
//!     maybe_evaluate(step)        // HellaSwag
//!     maybe_checkpoint(step)      // including the branch points of cooldown branches
//! }
//! ```
//!
//! Data parallel ([`World`]): micro-batch `i` of a step is rank `i mod world`'s, the gradients are
//! summed before clipping (see [`crate::engine::step`]); validation and HellaSwag are split over the ranks
//! and their sums reduced. Rank 0 alone writes the run directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use cost_model::{ComputeUnit, Phase, Segment, Until};
use run_dir::config::{MicroBatches, OnNan};
use run_dir::{
    cooldown, GrowthOptimizer, LineKind, MetricsLine, MetricsWriter, RunDir, RunHeader, RunLock, ScheduleSpec,
    TrainConfig,
};
use serde::Serialize;
use tch::nn::VarStore;

use crate::data::BatchLoader;
use crate::engine::growth::grow;
use crate::engine::init::init_model;
use crate::engine::loss::MicroStep;
use crate::engine::model::Gpt;
use crate::engine::optim::AdamW;
use crate::engine::step::{Pending, StepInput, Stepper};
use crate::error::bad_input;
use crate::run::begin::{self, Decided, Decision, From, Inputs};
use crate::run::checkpoint::{self, TrainState};
use crate::run::eval;
use crate::run::options::TrainOptions;
use crate::run::progress::{format_seconds, Progress};
use crate::run::validation::{self, ValidationSample};
use crate::world::World;

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

/// Start a new run in `run_dir` (which must not hold a run yet) and train it.
pub fn start(
    run_dir: &Path,
    config: TrainConfig,
    schedule: ScheduleSpec,
    options: &TrainOptions,
) -> anyhow::Result<TrainSummary> {
    Trainer::build(begin::start(run_dir, config, schedule, options)?, options)?.train()
}

/// Continue the run in `run_dir` from its last complete checkpoint, on any number of ranks.
pub fn resume(run_dir: &Path, options: &TrainOptions) -> anyhow::Result<TrainSummary> {
    Trainer::build(begin::resume(run_dir, options)?, options)?.train()
}

/// Under torchrun's restart `attempt`: resume the run in `run_dir`, or start it.
pub fn start_or_resume(
    run_dir: &Path,
    config: TrainConfig,
    schedule: ScheduleSpec,
    options: &TrainOptions,
    attempt: usize,
) -> anyhow::Result<TrainSummary> {
    Trainer::build(begin::start_or_resume(run_dir, config, schedule, options, attempt)?, options)?.train()
}

/// The cooldown branch of the run in `run_dir` at `budget` × its budget in `unit`, trained.
pub fn cooldown(
    run_dir: &Path,
    budget: f64,
    unit: ComputeUnit,
    options: &TrainOptions,
) -> anyhow::Result<TrainSummary> {
    Trainer::build(begin::branch(run_dir, budget, unit, options)?, options)?.train()
}

/// A run being trained.
pub struct Trainer {
    options: TrainOptions,
    run: RunDir,
    header: RunHeader,
    /// The run's learning rate by step (from the header's config and plan: built once).
    lr: cost_model::lr::LrSchedule,
    /// Rank 0's hold on the run directory, until the trainer is dropped.
    _lock: Option<RunLock>,
    vs: VarStore,
    model: Gpt,
    optimizer: AdamW,
    stepper: Stepper,
    /// The batches of the segment the loop is in (one data stream for the whole run).
    loader: BatchLoader,
    segment: Option<InSegment>,
    validation: ValidationSample,
    /// This rank's share of the HellaSwag examples.
    hellaswag: Option<eval::Rendered>,
    /// Steps after which cooldown branches start: always checkpointed, never pruned.
    branch_points: BTreeSet<u64>,
    /// Steps where cooldown branches end: validated here too, the un-annealed loss beside the
    /// branch's annealed one.
    branch_ends: BTreeSet<u64>,
    metrics: MetricsWriter,
    progress: Progress,
    state: TrainState,
    /// The step queued on the device whose loss has not been read yet.
    in_flight: Option<InFlight>,
    /// Read each loss one step late (on CUDA), or at once.
    lag: bool,
    last_loss: Option<f64>,
    last_val_loss: Option<f64>,
    /// When the last step was read: a step's time starts no earlier.
    last_read: Instant,
}

/// The segment the loop is in: how its micro-batches are shaped and how many parameters train.
struct InSegment {
    segment: Segment,
    micro_batches: MicroBatches,
    trainable_params: i64,
}

/// A step queued on the device whose loss has not been read yet.
struct InFlight {
    step: u64,
    segment: Segment,
    trainable_params: i64,
    lr: f64,
    /// When the host began queueing it.
    started: Instant,
    pending: Pending,
}

impl Trainer {
    /// Everything the run of `decided` needs, the same on every rank: the model and optimizer
    /// (rank 0's, from the decided checkpoint, broadcast), the data, the step engine.
    pub fn build(decided: Decided, options: &TrainOptions) -> anyhow::Result<Trainer> {
        let Decided { decision, lock, inputs } = decided;
        let Decision { run_dir, header, from } = decision.clone();
        let (world, device, config) = (&options.world, options.device, &header.config);
        if world.is_main() && !options.quiet {
            eprintln!("{}", announce(&decision, world));
        }
        let Inputs { dataset, hellaswag } = match inputs {
            Some(inputs) => inputs,
            None => Inputs::open(config, header.hellaswag.as_ref()).map_err(bad_input)?,
        };
        let (mut vs, model, mut optimizer) = init_model(config, device)?;
        let state = match &from {
            From::Scratch => {
                if let Some(source) = &header.init_from {
                    world.decide(|| crate::run::init_from::load(source, &vs).map_err(bad_input))?;
                }
                TrainState::start()
            }
            From::Checkpoint { dir, .. } => world.decide(|| checkpoint::load(dir, &mut vs, &mut optimizer))?,
        };
        // Rank 0's parameters and optimizer state on every rank.
        let mut tensors = validation::parameters_by_name(&vs);
        tensors.extend(optimizer.state_handles());
        world.broadcast(&tensors)?;

        let run = RunDir::new(&run_dir);
        let plan = &header.plan;
        let points = cooldown::branch_points(config, plan)?;
        let branch_points = points.iter().map(|p| p.from_step).collect();
        let branch_ends = points.iter().map(|p| p.to_step).collect();
        let validation = ValidationSample::new(&header, &dataset, device)?;
        let data_seed =
            config.data_seed.context("data_seed = null: set a data seed (--data-seed N)").map_err(bad_input)?;
        let context = config.model.context;
        let loader = BatchLoader::new(
            dataset.train.clone(),
            config.micro_batch,
            context,
            context,
            device,
            state.data,
            data_seed,
        )?;
        let started = chrono::DateTime::parse_from_rfc3339(&header.start_time).map_or(0.0, |t| t.timestamp() as f64);
        let metrics = match world.is_main() {
            true => run.metrics_writer(header.config.tensorboard, started)?,
            false => MetricsWriter::discard(),
        };
        let last = last_step(plan, options);
        let progress = Progress::new(last, state.step, options.quiet || !world.is_main());
        // Steps as CUDA graphs on CUDA (eager on the CPU), their values read a step late on CUDA.
        let stepper = Stepper::new(config, device)?;
        if let Some(reason) = stepper.eager_reason.as_deref().filter(|_| world.is_main()) {
            progress.println(&format!("note: {reason}"));
        }
        let hellaswag = hellaswag.map(|set| set.rendered.share(|i| world.owns(i)));
        let mut trainer = Trainer {
            lag: options.lag_reads.unwrap_or(device.is_cuda()),
            options: options.clone(),
            run,
            lr: header.lr_schedule(),
            header,
            _lock: lock,
            vs,
            model,
            optimizer,
            stepper,
            loader,
            segment: None,
            validation,
            hellaswag,
            branch_points,
            branch_ends,
            metrics,
            progress,
            state,
            in_flight: None,
            last_loss: None,
            last_val_loss: None,
            last_read: Instant::now(),
        };
        if let From::Checkpoint { dir, logged: false } = &from {
            trainer.log_missing_checkpoint(dir)?;
        }
        Ok(trainer)
    }

    /// Train to the end of the plan (or `stop_after_step`).
    pub fn train(mut self) -> anyhow::Result<TrainSummary> {
        let (first, last) = (self.state.step + 1, self.last_step());
        let (seconds_before, tokens_before) = (self.state.seconds, self.header.plan.cumulative(first - 1).tokens);
        for step in first..=last {
            self.maybe_enter_segment(step)?;
            self.train_step(step)?;
            self.maybe_validate(step)?;
            self.maybe_evaluate(step)?;
            self.maybe_checkpoint(step)?;
        }
        self.finish_step()?;
        self.progress.finish();
        let seconds = self.state.seconds - seconds_before;
        let tokens = self.header.plan.cumulative(last).tokens - tokens_before;
        Ok(TrainSummary {
            run_dir: self.run.path().to_path_buf(),
            last_step: last,
            total_steps: self.header.plan.total_steps(),
            last_loss: self.last_loss,
            last_val_loss: self.last_val_loss,
            seconds_per_step: seconds / (last + 1 - first).max(1) as f64,
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
        })
    }

    fn last_step(&self) -> u64 {
        last_step(&self.header.plan, &self.options)
    }

    /// When `step` begins a segment of the plan: its schedule events (once, not when a resume
    /// lands inside it), then what it trains and how its batches are shaped.
    fn maybe_enter_segment(&mut self, step: u64) -> anyhow::Result<()> {
        let seg = *self.header.plan.segment_of(step).context("step outside the plan")?;
        if self.segment.as_ref().is_some_and(|s| s.segment.first_step == seg.first_step) {
            return Ok(());
        }
        if step == seg.first_step {
            // The events read and change the model: the step before them must be done.
            self.finish_step()?;
            self.schedule_events(&seg)?;
        }
        self.model.apply_trainable(seg.trainable);
        let config = &self.header.config;
        // Micro-batches keep micro_batch × context tokens; a shorter stage context means more rows.
        let micro_batches = config.micro_batches(&seg)?;
        self.loader.set_row_context(config.model.context, seg.context as usize)?;
        self.segment = Some(InSegment { segment: seg, micro_batches, trainable_params: self.model.trainable_params() });
        Ok(())
    }

    /// One optimizer step, queued: this rank's micro-batches (micro-batch i is rank i mod
    /// world's, so the stream does not depend on the world size); then the previous step's loss
    /// is read and logged, while the device works on this one.
    fn train_step(&mut self, step: u64) -> anyhow::Result<()> {
        let started = Instant::now();
        let config = &self.header.config;
        let now = self.segment.as_ref().expect("entered before the step");
        let mut batches = Vec::new();
        for i in 0..now.micro_batches.per_step {
            if self.options.world.owns(i) {
                batches.push(self.loader.next_batch());
            } else {
                self.loader.skip_batch();
            }
        }
        let input = StepInput {
            step,
            micro: MicroStep {
                active_layers: now.segment.trainable.active_layers as usize,
                autocast: config.bf16 && self.options.device.is_cuda(),
                grad_scale: 1.0 / now.micro_batches.per_step as f64,
                kernel: config.loss_kernel,
                vocab: config.scored_vocab(),
            },
            trainable: now.segment.trainable,
            batches,
            lr: self.lr.lr(step),
            grad_clip: config.grad_clip,
        };
        let pending = self.stepper.step(&self.model, &mut self.optimizer, &self.options.world, &input)?;
        let (segment, trainable_params) = (now.segment, now.trainable_params);
        self.state.step = step;
        self.state.data = self.loader.position();
        let queued = InFlight { step, segment, trainable_params, lr: input.lr, started, pending };
        if let Some(previous) = self.in_flight.replace(queued) {
            self.log_step(previous)?;
        }
        if !self.lag {
            self.finish_step()?;
        }
        Ok(())
    }

    /// The validation loss, every `val_every` steps and at the end.
    fn maybe_validate(&mut self, step: u64) -> anyhow::Result<()> {
        let config = &self.header.config;
        let due = config.val_every > 0 && step % config.val_every == 0;
        let at_end = config.val_every > 0 && step == self.header.plan.total_steps();
        if !(due || at_end || self.branch_ends.contains(&step)) {
            return Ok(());
        }
        self.finish_step()?;
        let active = self.active_layers();
        let val_loss = self.validation.loss(&self.model, active, &self.header.config, &self.options.world)?;
        self.write(MetricsLine { val_loss: Some(val_loss), ..self.line(LineKind::Val, step) })?;
        self.progress.println(&format!("step {step}: val loss {val_loss:.4}"));
        self.last_val_loss = Some(val_loss);
        Ok(())
    }

    /// HellaSwag, every `hellaswag_every` steps and at the end, when the run has a file.
    fn maybe_evaluate(&mut self, step: u64) -> anyhow::Result<()> {
        let every = self.header.config.hellaswag_every;
        let due = (every > 0 && step % every == 0) || step == self.header.plan.total_steps();
        if self.hellaswag.is_none() || !due {
            return Ok(());
        }
        self.finish_step()?;
        let (active, config, examples) =
            (self.active_layers(), &self.header.config, self.hellaswag.as_ref().expect("checked"));
        let score =
            validation::hellaswag(&self.model, active, examples, config, self.options.device, &self.options.world)?;
        let line = MetricsLine {
            acc: Some(score.acc),
            acc_norm: Some(score.acc_norm),
            n: Some(score.n as u64),
            n_skipped: Some(score.n_skipped as u64),
            ..self.line(LineKind::Hellaswag, step)
        };
        self.write(line)?;
        self.progress.println(&format!("step {step}: hellaswag acc_norm {:.4} (n = {})", score.acc_norm, score.n));
        Ok(())
    }

    /// A checkpoint every `checkpoint_every` steps, at the last step and at every branch point;
    /// then checkpoints no longer needed are pruned (`keep_checkpoints`).
    fn maybe_checkpoint(&mut self, step: u64) -> anyhow::Result<()> {
        let (every, keep) = (self.header.config.checkpoint_every, self.header.config.keep_checkpoints);
        let due = (every > 0 && step % every == 0) || step == self.last_step() || self.branch_points.contains(&step);
        if !due {
            return Ok(());
        }
        self.finish_step()?;
        validation::check_ranks_agree(&self.vs, &self.options.world, step)?;
        if !self.options.world.is_main() {
            return Ok(());
        }
        let dir = checkpoint::save(&self.run, &self.vs, &self.optimizer, &self.state).map_err(|e| {
            match checkpoint::is_disk_full(&e) {
                true => e.context(format!(
                    "the disk is full at step {step}: free space, lower keep_checkpoints (now {keep}) or raise checkpoint_every (now {every}), then resume with --resume {}",
                    self.run.path().display()
                )),
                false => e,
            }
        })?;
        let path = Some(self.run.relative(&dir));
        self.write(MetricsLine { path, ..self.line(LineKind::Checkpoint, step) })?;
        let mut protected = self.branch_points.clone();
        protected.insert(self.header.plan.total_steps());
        checkpoint::prune(&self.run, keep, &protected)?;
        Ok(())
    }

    /// Read the queued step's loss and log it (nothing to do without one).
    fn finish_step(&mut self) -> anyhow::Result<()> {
        match self.in_flight.take() {
            Some(done) => self.log_step(done),
            None => Ok(()),
        }
    }

    /// Read a step's loss and gradient norm (waiting for that step alone), stop on a non-finite
    /// one, count its time and log it.
    fn log_step(&mut self, done: InFlight) -> anyhow::Result<()> {
        let InFlight { step, segment: seg, trainable_params, lr, started, pending } = done;
        let (loss, grad_norm) = pending.read()?;
        if !(loss.is_finite() && grad_norm.is_finite()) {
            if self.header.config.on_nan == OnNan::Stop {
                let last_good =
                    checkpoint::list(&self.run).pop().map_or("none yet".to_string(), |(s, _)| format!("step {s}"));
                bail!(
                    "step {step}: loss {loss}, gradient norm {grad_norm} (not finite); stopped before the update. Last good checkpoint: {last_good}. Lower lr_max or set grad_clip, or pass --on-nan skip, then resume"
                );
            }
            self.progress.println(&format!(
                "step {step}: loss {loss}, gradient norm {grad_norm}: batch skipped (--on-nan skip)"
            ));
        }
        // A step's time: from when it was queued (or the previous one was read, if later) to now.
        let now = Instant::now();
        let seconds = now.duration_since(started.max(self.last_read)).as_secs_f64();
        self.last_read = now;
        self.state.seconds += seconds;
        let tokens_per_s = seg.tokens_per_step as f64 / seconds.max(1e-9);
        let line = MetricsLine {
            loss: Some(loss),
            lr: Some(lr),
            grad_norm: Some(grad_norm),
            tokens_per_s: Some(tokens_per_s),
            trainable_params,
            ..self.line_in(LineKind::Train, step, &seg)
        };
        self.write(line)?;
        self.last_loss = Some(loss);
        self.progress.step(step, &format!("{} loss {loss:.4} {tokens_per_s:.0} tok/s", seg.phase.as_str()));
        Ok(())
    }

    /// The schedule events of `seg`: a stage grows its new blocks (the validation loss logged at
    /// the old and the new depth), continual training resets the optimizer, and parameters that
    /// train again after being frozen may get fresh moments.
    fn schedule_events(&mut self, seg: &Segment) -> anyhow::Result<()> {
        let Some(spec) = self.header.schedule.incremental().cloned() else { return Ok(()) };
        // Stage 1 starts the model; every later stage grows a trained one (from 0 blocks too).
        if let Some(g) = seg.growth() {
            let (from, to) = (g.from_layers as usize, g.to_layers as usize);
            let config = self.header.config.clone();
            let world = &self.options.world;
            let before = self.validation.loss_if_any(&self.model, from, &config, world)?;
            grow(&self.model, &self.optimizer, &spec.init_rules(from, to));
            if spec.growth_optimizer == GrowthOptimizer::Reset {
                self.optimizer.reset();
            }
            // Every growth has its line (the header loads the validation sample for it).
            let after = self.validation.loss_if_any(&self.model, to, &config, world)?;
            let line = MetricsLine {
                active_layers: g.to_layers,
                val_loss_before: before,
                val_loss: after,
                trainable_params: 0,
                ..self.line_in(LineKind::Growth, self.state.step, seg)
            };
            self.write(line)?;
            let losses = match (before, after) {
                (Some(before), Some(after)) => format!("; val loss {before:.4} → {after:.4}"),
                _ => String::new(),
            };
            let message = format!(
                "stage {}: grew {from} → {to} blocks ({:?}, {:?}){losses}",
                seg.stage, spec.growth, spec.placement
            );
            self.progress.println(&message);
        }
        if seg.phase == Phase::Continual && spec.reset_optimizer_at_continual {
            self.optimizer.reset();
        }
        if spec.reset_moments_on_unfreeze {
            let plan = &self.header.plan;
            if let Some(previous) = plan.segments.iter().take_while(|s| s.first_step < seg.first_step).last() {
                let (now, before) = (seg.trainable, previous.trainable);
                self.optimizer.reset_where(|name| Gpt::trains(name, now) && !Gpt::trains(name, before));
            }
        }
        Ok(())
    }

    /// The process died between writing the checkpoint at `dir` and logging it: log it now.
    fn log_missing_checkpoint(&mut self, dir: &Path) -> anyhow::Result<()> {
        if !self.options.world.is_main() {
            return Ok(());
        }
        let seg = *self.header.plan.segment_of(self.state.step.max(1)).context("checkpoint beyond the plan")?;
        self.model.apply_trainable(seg.trainable);
        let line = MetricsLine {
            path: Some(self.run.relative(dir)),
            trainable_params: self.model.trainable_params(),
            ..self.line_in(LineKind::Checkpoint, self.state.step, &seg)
        };
        self.write(line)
    }

    fn active_layers(&self) -> usize {
        self.segment.as_ref().map_or(0, |s| s.segment.trainable.active_layers as usize)
    }

    /// A line of `kind` after `step` in the current segment.
    fn line(&self, kind: LineKind, step: u64) -> MetricsLine {
        let now = self.segment.as_ref().expect("a segment before any line");
        MetricsLine { trainable_params: now.trainable_params, ..self.line_in(kind, step, &now.segment) }
    }

    /// A line of `kind` after `step` in `seg`: the step's cumulative compute and place, the
    /// seconds of training so far.
    fn line_in(&self, kind: LineKind, step: u64, seg: &Segment) -> MetricsLine {
        let compute = self.header.plan.cumulative(step);
        MetricsLine {
            step,
            tokens: compute.tokens,
            paper_units: compute.paper_units,
            flops: compute.flops,
            seconds: self.state.seconds,
            stage: seg.stage,
            active_layers: seg.trainable.active_layers,
            trainable_params: 0,
            ..MetricsLine::empty(&self.header.name, kind, seg.phase)
        }
    }

    fn write(&mut self, line: MetricsLine) -> anyhow::Result<()> {
        self.metrics.write(&line)
    }
}

/// One line for people before a run trains: what it is and where it stops.
fn announce(decision: &Decision, world: &World) -> String {
    let header = &decision.header;
    let ranks = if world.size > 1 { format!(", {} ranks", world.size) } else { String::new() };
    let mut out = format!(
        "{}: {} ({} schedule, {} steps) on {}{ranks}",
        decision.describe(),
        header.config.preset,
        header.schedule.name(),
        header.plan.total_steps(),
        header.device
    );
    if let (Some(spec), From::Scratch) = (header.schedule.incremental(), &decision.from) {
        let at = |unit| header.plan.equal_compute_in(unit).step;
        let stops = match spec.until {
            Until::EqualCompute(unit) => format!("stops at equal compute in {}", unit.as_str()),
            Until::Budget { multiple, unit } => format!("runs to {multiple} × the budget in {}", unit.as_str()),
            Until::Steps(steps) => format!("runs to step {steps}"),
        };
        out.push_str(&format!(
            "\nequal compute with the {}-step baseline: step {} in FLOPs, {} in paper units; this run {stops}",
            header.plan.base_steps,
            at(ComputeUnit::Flops),
            at(ComputeUnit::PaperUnits)
        ));
    }
    out
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

/// The last step this process trains: the plan's, or the stop the options ask for before it.
fn last_step(plan: &cost_model::Plan, options: &TrainOptions) -> u64 {
    let total = plan.total_steps();
    options.stop_after_step.map_or(total, |s| s.min(total))
}
