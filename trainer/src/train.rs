//! The training loop, top to bottom as in build-nanogpt's `train_gpt2.py`.
//!
//! Walk the plan's steps. When a segment of the plan begins, its schedule events happen (grow the
//! stage's new blocks, logging the validation loss just before and after; reset the optimizer
//! when continual training starts; zero the moments of parameters that train again), then the
//! model is set up for it (freeze what the segment does not train, shape its batches). Each step
//! accumulates the gradients of its micro-batches, clips them and updates at the step's learning
//! rate; then the step is logged, and validation, HellaSwag and checkpoints (including the
//! branch points of cooldown branches) happen when they are due. Where the run starts and how it
//! resumes is in [`crate::session`].
//!
//! Data parallel ([`crate::dist::World`]): micro-batch `i` of a step is computed by rank
//! `i mod world`, the gradients (and the step's loss) are summed over the ranks in one all-reduce
//! before clipping, so every rank makes the same update; validation and HellaSwag are split over
//! the ranks and their sums reduced. Rank 0 alone writes the run directory.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use cost_model::{Phase, Segment};
use run_dir::config::{MicroBatches, OnNan};
use run_dir::{cooldown, LineKind, MetricsLine, MetricsWriter, RunDir, RunHeader};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{self, TrainState};
use crate::data::loader::validation_batches;
use crate::data::{BatchLoader, DataPosition, TokenDataset};
use crate::dist::{Reduce, World};
use crate::eval;
use crate::growth::grow;
use crate::init::init_model;
use crate::loss::{self, MicroStep};
use crate::model::Gpt;
use crate::optim::AdamW;
use crate::progress::Progress;
use crate::session::{TrainOptions, TrainSummary};
use crate::step::{Pending, StepInput, Stepper};

/// A run being trained: its directory and header, its data, and the model and optimizer.
pub(crate) struct Trainer {
    world: Rc<World>,
    run: RunDir,
    header: RunHeader,
    dataset: Arc<TokenDataset>,
    /// The HellaSwag examples, rendered for the model's context (all ranks' until `run`).
    hellaswag: Option<eval::Rendered>,
    device: Device,
    pub(crate) vs: VarStore,
    model: Gpt,
    pub(crate) optimizer: AdamW,
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

/// What the loop keeps of the steps it has read.
struct Reads {
    last_loss: Option<f64>,
    /// When the last step was read: a step's time starts no earlier.
    last_read: Instant,
}

/// The segment the loop is in: its batches and how many parameters train.
struct InSegment<'a> {
    segment: Segment,
    loader: BatchLoader<'a>,
    micro_batches: MicroBatches,
    trainable_params: i64,
}

impl Trainer {
    pub(crate) fn new(
        run: RunDir,
        header: RunHeader,
        dataset: TokenDataset,
        hellaswag: Option<eval::Rendered>,
        options: &TrainOptions,
    ) -> anyhow::Result<Trainer> {
        let (vs, model, optimizer) = init_model(&header.config, options.device)?;
        let world = Rc::clone(&options.world);
        let device = options.device;
        Ok(Trainer { world, run, header, dataset: Arc::new(dataset), hellaswag, device, vs, model, optimizer })
    }

    /// Rank 0's parameters and optimizer state on every rank (at the start and after a resume).
    pub(crate) fn sync_from_main(&self) -> anyhow::Result<()> {
        let mut tensors = self.parameters_by_name();
        tensors.extend(self.optimizer.state_handles());
        self.world.broadcast(&tensors)
    }

    /// Train from `state` to the end of the plan (or `options.stop_after_step`).
    pub(crate) fn run(
        mut self,
        mut state: TrainState,
        missing_checkpoint_line: Option<PathBuf>,
        options: &TrainOptions,
    ) -> anyhow::Result<TrainSummary> {
        let config = self.header.config.clone();
        let plan = self.header.plan.clone();
        let total = plan.total_steps();
        let last = options.stop_after_step.map_or(total, |s| s.min(total));
        let lr = self.header.lr_schedule();
        let autocast = config.bf16 && self.device.is_cuda();
        let vocab = config.scored_vocab();
        // Rank 0 writes the run directory; the other ranks compute the same numbers and log nothing.
        let mut metrics = if self.world.is_main() { self.run.metrics_writer()? } else { MetricsWriter::discard() };
        let val_batches = self.val_batches()?;
        // Cooldown branches start from checkpoints at their branch points: save those.
        let branch_points: BTreeSet<u64> = config
            .cooldown_budgets
            .iter()
            .map(|&b| Ok(cooldown::branch_point(&plan, config.cooldown_unit, b, config.cooldown_fraction)?.from_step))
            .collect::<anyhow::Result<_>>()?;
        // This rank's share of the HellaSwag examples (example i goes to rank i mod world).
        let world = Rc::clone(&self.world);
        let hellaswag = self.hellaswag.take().map(|all| all.share(|i| world.owns(i)));
        if let Some(dir) = missing_checkpoint_line.filter(|_| self.world.is_main()) {
            // The process died between writing the checkpoint and logging it.
            let seg = *plan.segment_of(state.step.max(1)).context("checkpoint beyond the plan")?;
            self.model.apply_trainable(seg.trainable);
            let line = self.line(LineKind::Checkpoint, state.step, state.seconds, &seg, self.model.trainable_params());
            metrics.write(&MetricsLine { path: Some(self.run.relative(&dir)), ..line })?;
        }

        let progress = Progress::new(last, state.step, options.quiet || !self.world.is_main());
        // Steps as CUDA graphs on CUDA (eager on the CPU); their values read one step late on CUDA,
        // so the device is never idle while the host logs.
        let mut stepper = Stepper::new(&config, self.device)?;
        if let Some(reason) = stepper.eager_reason.as_deref().filter(|_| self.world.is_main()) {
            progress.println(&format!("note: {reason}"));
        }
        let lag = options.lag_reads.unwrap_or(self.device.is_cuda());
        let first_step = state.step + 1;
        let invocation_start = state.seconds;
        let mut reads = Reads { last_loss: None, last_read: Instant::now() };
        let mut last_val_loss = None;
        let dataset = Arc::clone(&self.dataset);
        let mut current: Option<InSegment> = None;
        let mut in_flight: Option<InFlight> = None;
        for step in first_step..=last {
            // The schedule: which segment this step belongs to, and what that segment trains.
            let seg = *plan.segment_of(step).context("step outside the plan")?;
            if current.as_ref().map(|c| c.segment.first_step) != Some(seg.first_step) {
                // Schedule events happen once, when the segment starts, not when a resume lands
                // inside it; they read the model, so the step before them must be finished.
                if step == seg.first_step {
                    self.finish(in_flight.take(), &mut state, &mut reads, &mut metrics, &progress)?;
                    self.schedule_events(&seg, &state, &val_batches, &mut metrics, &progress)?;
                }
                // One data stream for the whole run, from the state's position.
                let loader = match current.take() {
                    Some(previous) => previous.loader,
                    None => self.loader(&dataset, state.data)?,
                };
                current = Some(self.enter_segment(&seg, loader)?);
            }
            let now = current.as_mut().expect("entered above");

            // One optimizer step, queued: micro-batch i is rank (i mod world)'s, so the stream
            // does not depend on the world size.
            let started = Instant::now();
            let mut batches = Vec::new();
            for i in 0..now.micro_batches.per_step {
                if self.world.owns(i) {
                    batches.push(now.loader.next_batch());
                } else {
                    now.loader.skip_batch();
                }
            }
            let input = StepInput {
                step,
                micro: MicroStep {
                    active_layers: seg.trainable.active_layers as usize,
                    autocast,
                    grad_scale: 1.0 / now.micro_batches.per_step as f64,
                    kernel: config.loss_kernel,
                    vocab,
                },
                trainable: seg.trainable,
                batches,
                lr: lr.lr(step),
                grad_clip: config.grad_clip,
            };
            let pending = stepper.step(&self.model, &mut self.optimizer, &self.world, &input)?;
            state.step = step;
            state.data = now.loader.position();
            let queued =
                InFlight { step, segment: seg, trainable_params: now.trainable_params, lr: input.lr, started, pending };
            // The previous step's loss, read now that this one is queued; this one's when the
            // next is, or now if something below needs the model or the state after it.
            let previous = in_flight.replace(queued);
            self.finish(previous, &mut state, &mut reads, &mut metrics, &progress)?;
            let validate = config.val_every > 0 && (step % config.val_every == 0 || step == total);
            let evaluate = hellaswag.is_some()
                && ((config.hellaswag_every > 0 && step % config.hellaswag_every == 0) || step == total);
            let checkpoint = (config.checkpoint_every > 0 && step % config.checkpoint_every == 0)
                || step == last
                || branch_points.contains(&step);
            if !lag || validate || evaluate || checkpoint {
                self.finish(in_flight.take(), &mut state, &mut reads, &mut metrics, &progress)?;
            }

            // Validate, evaluate and checkpoint when due.
            let base = self.line(LineKind::Train, step, state.seconds, &seg, now.trainable_params);
            let active = seg.trainable.active_layers as usize;
            if validate {
                let val_loss = self.val_loss(&val_batches, active)?;
                metrics.write(&MetricsLine { kind: LineKind::Val, val_loss: Some(val_loss), ..base.clone() })?;
                progress.println(&format!("step {step}: val loss {val_loss:.4}"));
                last_val_loss = Some(val_loss);
            }
            if let (Some(hellaswag), true) = (&hellaswag, evaluate) {
                // Every rank scores its share of the examples; the counts are summed.
                let mine = eval::evaluate(&self.model, active, hellaswag, 16, vocab, self.device, autocast);
                let counts = Tensor::from_slice(&[
                    mine.right as f64,
                    mine.right_norm as f64,
                    mine.n as f64,
                    mine.n_skipped as f64,
                ]);
                self.world.all_reduce(std::slice::from_ref(&counts), Reduce::Sum)?;
                let count = |i: i64| counts.double_value(&[i]) as usize;
                let score = eval::Score::from_counts(count(0), count(1), count(2), count(3));
                metrics.write(&MetricsLine {
                    kind: LineKind::Hellaswag,
                    acc: Some(score.acc),
                    acc_norm: Some(score.acc_norm),
                    n: Some(score.n as u64),
                    n_skipped: Some(score.n_skipped as u64),
                    ..base.clone()
                })?;
                progress.println(&format!("step {step}: hellaswag acc_norm {:.4} (n = {})", score.acc_norm, score.n));
            }
            if checkpoint {
                self.check_ranks_agree(step)?;
                if self.world.is_main() {
                    let dir = checkpoint::save(&self.run, &self.vs, &self.optimizer, &state)?;
                    let path = Some(self.run.relative(&dir));
                    metrics.write(&MetricsLine { kind: LineKind::Checkpoint, path, ..base })?;
                }
            }
        }
        self.finish(in_flight.take(), &mut state, &mut reads, &mut metrics, &progress)?;
        progress.finish();
        let steps_done = last.saturating_sub(first_step - 1);
        let seconds = state.seconds - invocation_start;
        let tokens = plan.cumulative(last).tokens - plan.cumulative(first_step - 1).tokens;
        Ok(TrainSummary {
            run_dir: self.run.path().to_path_buf(),
            last_step: last,
            total_steps: total,
            last_loss: reads.last_loss,
            last_val_loss,
            seconds_per_step: seconds / steps_done.max(1) as f64,
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
        })
    }

    /// Read a queued step's loss and gradient norm (waiting for it alone), stop on a non-finite
    /// one, count its time and log it. Nothing to do without one.
    fn finish(
        &self,
        done: Option<InFlight>,
        state: &mut TrainState,
        reads: &mut Reads,
        metrics: &mut MetricsWriter,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        let Some(done) = done else { return Ok(()) };
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
            progress.println(&format!(
                "step {step}: loss {loss}, gradient norm {grad_norm}: batch skipped (--on-nan skip)"
            ));
        }
        // A step's time: from when it was queued (or the previous one was read, if later) to now.
        let now = Instant::now();
        let step_seconds = now.duration_since(started.max(reads.last_read)).as_secs_f64();
        reads.last_read = now;
        state.seconds += step_seconds;
        let tokens_per_s = seg.tokens_per_step as f64 / step_seconds.max(1e-9);
        let line = self.line(LineKind::Train, step, state.seconds, &seg, trainable_params);
        metrics.write(&MetricsLine {
            loss: Some(loss),
            lr: Some(lr),
            grad_norm: Some(grad_norm),
            tokens_per_s: Some(tokens_per_s),
            ..line
        })?;
        reads.last_loss = Some(loss);
        progress.step(step, &format!("{} loss {loss:.4} {:.0} tok/s", seg.phase.as_str(), tokens_per_s));
        Ok(())
    }

    /// The schedule events of `seg`, which starts at the step after `state.step`: a stage grows
    /// its new blocks (and the validation loss is logged at the old and the new depth), continual
    /// training resets the optimizer, and parameters that train again after being frozen may get
    /// fresh moments.
    fn schedule_events(
        &mut self,
        seg: &Segment,
        state: &TrainState,
        val_batches: &[(Tensor, Tensor)],
        metrics: &mut MetricsWriter,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        let Some(spec) = self.header.schedule.incremental().cloned() else { return Ok(()) };
        if let Some(g) = seg.grows.filter(|g| g.from_layers > 0) {
            let (from, to) = (g.from_layers as usize, g.to_layers as usize);
            let before = if val_batches.is_empty() { None } else { Some(self.val_loss(val_batches, from)?) };
            grow(&mut self.model, spec.growth, from, to);
            if let Some(before) = before {
                let after = self.val_loss(val_batches, to)?;
                let line = MetricsLine {
                    kind: LineKind::Growth,
                    active_layers: g.to_layers,
                    val_loss_before: Some(before),
                    val_loss: Some(after),
                    ..self.line(LineKind::Growth, state.step, state.seconds, seg, 0)
                };
                metrics.write(&line)?;
                progress.println(&format!(
                    "stage {}: grew {from} → {to} blocks ({:?}); val loss {before:.4} → {after:.4}",
                    seg.stage, spec.growth
                ));
            }
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

    /// The run's train batches from `position`.
    fn loader<'a>(&self, dataset: &'a TokenDataset, position: DataPosition) -> anyhow::Result<BatchLoader<'a>> {
        let config = &self.header.config;
        let context = config.model.context;
        BatchLoader::new(&dataset.train, config.micro_batch, context, context, self.device, position, config.data_seed)
    }

    /// Set the model up for `seg`: freeze what it does not train and shape its batches.
    fn enter_segment<'a>(&mut self, seg: &Segment, mut loader: BatchLoader<'a>) -> anyhow::Result<InSegment<'a>> {
        self.model.apply_trainable(seg.trainable);
        let config = &self.header.config;
        // Micro-batches keep micro_batch × context tokens; a shorter stage context means more rows.
        let micro_batches = config.micro_batches(seg)?;
        loader.set_row_context(config.model.context, seg.context as usize)?;
        Ok(InSegment { segment: *seg, loader, micro_batches, trainable_params: self.model.trainable_params() })
    }

    /// The fixed validation sample (none when validation is off and no stage grows).
    fn val_batches(&self) -> anyhow::Result<Vec<(Tensor, Tensor)>> {
        let config = &self.header.config;
        if !self.header.uses_validation() {
            return Ok(Vec::new());
        }
        validation_batches(
            &self.dataset.val,
            config.val_tokens,
            config.model.context,
            config.micro_batch,
            config.val_spread,
            self.device,
        )
    }

    /// Mean loss over the validation sample through `active` blocks: every window weighs the same.
    /// Each rank computes its share of the batches (batch `j` is rank `j mod world`'s); the sums
    /// are reduced.
    fn val_loss(&self, batches: &[(Tensor, Tensor)], active: usize) -> anyhow::Result<f64> {
        let config = &self.header.config;
        let autocast = config.bf16 && self.device.is_cuda();
        let full_rows = batches.first().map_or(1, |(x, _)| x.size()[0]) as f64;
        let mine: Vec<&(Tensor, Tensor)> =
            batches.iter().enumerate().filter(|(j, _)| self.world.owns(*j)).map(|(_, b)| b).collect();
        let (sum, weights) = tch::no_grad(|| {
            // Summed on the device and read once: one sync for the whole validation pass. A batch
            // weighs its rows (1.0 for a full one, so equal batches give the plain mean).
            let weighted: Vec<Tensor> = mine
                .iter()
                .map(|(x, y)| {
                    let mean = crate::native::autocast(autocast, || {
                        loss::mean_loss(&self.model, x, y, active, config.scored_vocab())
                    });
                    mean.to_kind(Kind::Double) * (x.size()[0] as f64 / full_rows)
                })
                .collect();
            let weights: f64 = mine.iter().map(|(x, _)| x.size()[0] as f64 / full_rows).sum();
            let sum =
                if weighted.is_empty() { 0.0 } else { Tensor::stack(&weighted, 0).sum(Kind::Double).double_value(&[]) };
            (sum, weights)
        });
        if self.world.size == 1 {
            return Ok(sum / weights);
        }
        let totals = Tensor::from_slice(&[sum, weights]);
        self.world.all_reduce(std::slice::from_ref(&totals), Reduce::Sum)?;
        Ok(totals.double_value(&[0]) / totals.double_value(&[1]))
    }

    /// The model's parameters in name order: the same order on every rank.
    fn parameters_by_name(&self) -> Vec<Tensor> {
        let by_name: std::collections::BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        by_name.into_values().collect()
    }

    /// Every rank must hold the same parameters (they all apply the same summed update): a
    /// checksum per rank, compared. A mismatch stops the run before rank 0 checkpoints it.
    fn check_ranks_agree(&self, step: u64) -> anyhow::Result<()> {
        if self.world.size == 1 {
            return Ok(());
        }
        let checksum = tch::no_grad(|| {
            // Summed in name order, so every rank adds the same numbers the same way; one read
            // back to the host, not one per parameter.
            let sums: Vec<Tensor> = self.parameters_by_name().iter().map(|t| t.sum(Kind::Double)).collect();
            Tensor::stack(&sums, 0).sum(Kind::Double).double_value(&[])
        });
        if !self.world.agree(checksum)? {
            bail!(
                "step {step}: the ranks' parameters differ (rank {} checksum {checksum}); after every step they must be identical: is the data the same on every rank?",
                self.world.rank
            );
        }
        Ok(())
    }

    /// A log line of `kind` after `step` in `seg`, `seconds` of training in: the step's cumulative
    /// compute and place.
    fn line(&self, kind: LineKind, step: u64, seconds: f64, seg: &Segment, trainable_params: i64) -> MetricsLine {
        let compute = self.header.plan.cumulative(step);
        MetricsLine {
            step,
            tokens: compute.tokens,
            paper_units: compute.paper_units,
            flops: compute.flops,
            seconds,
            stage: seg.stage,
            active_layers: seg.trainable.active_layers,
            trainable_params,
            ..MetricsLine::empty(&self.header.name, kind, seg.phase)
        }
    }
}
