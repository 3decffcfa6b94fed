//! The training loop: walk the plan's steps, accumulate gradients to the step's token budget,
//! update, log, validate, checkpoint. Resuming restores model, optimizer, data position and
//! schedule position from the last checkpoint, so the losses continue bit for bit.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use cost_model::metrics::{LineKind, MetricsLine};
use cost_model::{Phase, Plan, Segment};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{self, TrainState};
use crate::config::{OnNan, TrainConfig};
use crate::data::{BatchLoader, DataPosition, TokenDataset};
use crate::device;
use crate::eval;
use crate::growth::grow;
use crate::lock::RunLock;
use crate::model::Gpt;
use crate::optim::AdamW;
use crate::progress::{format_seconds, Progress};
use crate::runlog::{self, MetricsWriter};
use crate::schedule::{IncrementalSpec, ScheduleSpec};

/// `run.json`: what a run is, saved when it starts and read when it resumes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
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
}

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

const RUN_FILE: &str = "run.json";
const METRICS_FILE: &str = "metrics.jsonl";

/// An error in what the user asked for (config, data, run directory), as opposed to a failure
/// while training; binaries exit with code 2 for it.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct BadInput(pub anyhow::Error);

fn bad_input(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(BadInput(e))
}

/// Start a new run in `run_dir` (which must not hold a run yet).
pub fn start(
    run_dir: &Path,
    config: TrainConfig,
    schedule: ScheduleSpec,
    options: &TrainOptions,
) -> anyhow::Result<TrainSummary> {
    let prepare = || -> anyhow::Result<(RunInfo, TokenDataset, Vec<eval::Example>)> {
        config.validate()?;
        let plan = schedule.plan(&config)?;
        for segment in &plan.segments {
            micro_batch_shape(&config, segment)?;
        }
        if run_dir.join(RUN_FILE).exists() {
            bail!("{} already holds a run; resume it with --resume {0} or pick another --run name", run_dir.display());
        }
        // Open the data before creating anything, so a missing dataset leaves no run directory behind.
        let dataset = TokenDataset::open(&config.data_dir, config.tokenizer.vocab_size())?;
        let hellaswag = load_hellaswag(&config)?;
        let name = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
        let info = RunInfo {
            name,
            config: config.clone(),
            schedule: schedule.clone(),
            plan,
            git_commit: git_commit(),
            device: device::name(options.device),
            libtorch_version: env!("TORCH_BUILD_VERSION").to_string(),
            start_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        Ok((info, dataset, hellaswag))
    };
    let (info, dataset, hellaswag) = prepare().map_err(bad_input)?;
    // An output directory that cannot be written (read-only, full, a file in the way) is the
    // user's to fix: exit 2, before anything else is written.
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create the run directory {}; choose a writable --runs-dir", run_dir.display()))
        .map_err(bad_input)?;
    let _lock = RunLock::acquire(run_dir).map_err(bad_input)?;
    write_atomically(&run_dir.join(RUN_FILE), &serde_json::to_vec_pretty(&info)?)
        .with_context(|| format!("{} is not writable; choose a writable --runs-dir", run_dir.display()))
        .map_err(bad_input)?;
    if !options.quiet {
        eprintln!(
            "training {} ({} schedule, {} steps) on {} into {}",
            info.config.preset,
            info.schedule.name(),
            info.plan.total_steps(),
            info.device,
            run_dir.display()
        );
    }
    let initial =
        TrainState { step: 0, data: DataPosition::default(), seed: info.config.seed, seconds: 0.0, segment: 0 };
    Trainer::new(run_dir, info, dataset, hellaswag, options)?.run(initial, None, options)
}

/// Continue the run in `run_dir` from its last complete checkpoint (or from scratch if it has none).
pub fn resume(run_dir: &Path, options: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let prepare = || -> anyhow::Result<(RunInfo, TokenDataset, Vec<eval::Example>)> {
        let info = read_run_info(run_dir)?;
        let dataset = TokenDataset::open(&info.config.data_dir, info.config.tokenizer.vocab_size())?;
        let hellaswag = load_hellaswag(&info.config)?;
        Ok((info, dataset, hellaswag))
    };
    let (info, dataset, hellaswag) = prepare().map_err(bad_input)?;
    let _lock = RunLock::acquire(run_dir).map_err(bad_input)?;
    checkpoint::remove_partial(&run_dir.join("checkpoints"));
    let latest = checkpoint::list(run_dir).pop();
    let resume_step = latest.as_ref().map_or(0, |(step, _)| *step);
    let has_checkpoint_line = runlog::truncate_after(&run_dir.join(METRICS_FILE), resume_step)?;
    let mut trainer = Trainer::new(run_dir, info, dataset, hellaswag, options)?;
    let state = match &latest {
        Some((_, dir)) => checkpoint::load(dir, &mut trainer.vs, &mut trainer.optimizer)?,
        None => TrainState {
            step: 0,
            data: DataPosition::default(),
            seed: trainer.info.config.seed,
            seconds: 0.0,
            segment: 0,
        },
    };
    let missing_line = latest.filter(|_| !has_checkpoint_line).map(|(_, dir)| dir);
    trainer.run(state, missing_line, options)
}

/// A freshly initialised model and its optimizer. All randomness of a run is drawn here: a
/// resumed run draws the same numbers, then overwrites them from the checkpoint. On CUDA, sets
/// bf16 autocast and TF32 as the config asks.
pub fn init_model(config: &TrainConfig, device: Device) -> anyhow::Result<(VarStore, Gpt, AdamW)> {
    // libtorch's generator is global: hold a lock from seeding to the last draw so another
    // thread initialising a model at the same time cannot interleave its draws with ours.
    static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = INIT_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(config.seed as i64);
    let vs = VarStore::new(device);
    let model = Gpt::new(&vs, config.model);
    drop(guard);
    let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let optimizer = AdamW::new(params, config.adamw);
    if device.is_cuda() {
        if config.bf16 {
            crate::native::use_bf16_autocast_on_cuda()?;
        }
        crate::native::allow_tf32(config.tf32)?;
    }
    Ok((vs, model, optimizer))
}

/// The HellaSwag examples a config asks for (none when it names no file).
fn load_hellaswag(config: &TrainConfig) -> anyhow::Result<Vec<eval::Example>> {
    match &config.hellaswag {
        Some(path) => eval::load(path, config.hellaswag_limit),
        None => Ok(Vec::new()),
    }
}

/// Read `run.json`.
pub fn read_run_info(run_dir: &Path) -> anyhow::Result<RunInfo> {
    let path = run_dir.join(RUN_FILE);
    let bytes =
        std::fs::read(&path).with_context(|| format!("{}: no run here (missing run.json)", run_dir.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: corrupt run.json", path.display()))
}

struct Trainer {
    run_dir: PathBuf,
    info: RunInfo,
    dataset: std::sync::Arc<TokenDataset>,
    hellaswag: Vec<eval::Example>,
    device: Device,
    vs: VarStore,
    model: Gpt,
    optimizer: AdamW,
}

impl Trainer {
    fn new(
        run_dir: &Path,
        info: RunInfo,
        dataset: TokenDataset,
        hellaswag: Vec<eval::Example>,
        options: &TrainOptions,
    ) -> anyhow::Result<Trainer> {
        let (vs, model, optimizer) = init_model(&info.config, options.device)?;
        Ok(Trainer {
            run_dir: run_dir.into(),
            info,
            dataset: std::sync::Arc::new(dataset),
            hellaswag,
            device: options.device,
            vs,
            model,
            optimizer,
        })
    }

    fn run(
        mut self,
        mut state: TrainState,
        missing_checkpoint_line: Option<PathBuf>,
        options: &TrainOptions,
    ) -> anyhow::Result<TrainSummary> {
        let config = self.info.config.clone();
        let plan = self.info.plan.clone();
        let total = plan.total_steps();
        let last = options.stop_after_step.map_or(total, |s| s.min(total));
        let lr = config.lr(total);
        let autocast = config.bf16 && self.device.is_cuda();
        let mut metrics = MetricsWriter::open(&self.run_dir.join(METRICS_FILE))?;
        let val_batches = self.val_batches(&config)?;
        let hellaswag = std::mem::take(&mut self.hellaswag);
        // Building GPT-2's BPE takes a moment: only when there is something to evaluate.
        let tokenizer = if hellaswag.is_empty() { None } else { Some(crate::data::Tokenizer::new(config.tokenizer)?) };

        let mut segment: Option<Segment> = None;
        let mut trainable_params = 0;
        if let Some(dir) = missing_checkpoint_line {
            // The process died between writing the checkpoint and logging it.
            let seg = *plan.segment_of(state.step.max(1)).context("checkpoint beyond the plan")?;
            self.model.apply_trainable(seg.trainable);
            let line = self.line(LineKind::Checkpoint, &state, &seg, self.model.trainable_params());
            metrics.write(&MetricsLine { path: Some(relative(&self.run_dir, &dir)), ..line })?;
        }

        let progress = Progress::new(last, state.step, options.quiet);
        let first_step = state.step + 1;
        let invocation_start = state.seconds;
        let (mut last_loss, mut last_val_loss) = (None, None);
        let spec = self.info.schedule.incremental().cloned();
        let dataset = std::sync::Arc::clone(&self.dataset);
        let mut loader: Option<BatchLoader> = None;
        let mut accum = 1;
        let mut segment_index = 0;
        for step in first_step..=last {
            let seg = *plan.segment_of(step).context("step outside the plan")?;
            if segment.map(|s| s.first_step) != Some(seg.first_step) {
                if let Some(spec) = &spec {
                    self.enter_segment(&plan, &seg, step, spec);
                }
                self.model.apply_trainable(seg.trainable);
                trainable_params = self.model.trainable_params();
                // Micro-batches keep micro_batch × context tokens; a shorter stage context means more rows.
                let (rows, micro_steps) = micro_batch_shape(&config, &seg)?;
                let position = loader.as_ref().map_or(state.data, |l| l.position());
                loader = Some(BatchLoader::new(&dataset.train, rows, seg.context as usize, self.device, position)?);
                accum = micro_steps;
                segment_index = plan.segments.iter().position(|s| s.first_step == seg.first_step).unwrap_or(0);
                segment = Some(seg);
            }
            let loader = loader.as_mut().expect("set at the first step");
            let active = seg.trainable.active_layers as usize;

            let started = Instant::now();
            self.optimizer.zero_grad()?;
            let mut loss_sum = Tensor::zeros([], (Kind::Float, self.device));
            let scale = 1.0 / accum as f64;
            for _ in 0..accum {
                let (x, y) = loader.next_batch();
                let loss = self.model.loss_backward(&x, &y, active, autocast, scale, config.loss_chunk_tokens)?;
                loss_sum += loss.to_kind(Kind::Float) * scale;
            }
            crate::failpoint::hit("step", step);
            let step_lr = lr.lr(step);
            // Queued without a host sync: a non-finite loss or norm makes the device skip the update.
            let values = self.optimizer.clipped_step(&loss_sum, step_lr, config.grad_clip)?;
            // The step's only sync: everything above is queued by now.
            let (loss, grad_norm) = values.read();
            if !(loss.is_finite() && grad_norm.is_finite()) {
                if config.on_nan == OnNan::Stop {
                    let last_good = checkpoint::list(&self.run_dir)
                        .pop()
                        .map_or("none yet".to_string(), |(s, _)| format!("step {s}"));
                    bail!(
                        "step {step}: loss {loss}, gradient norm {grad_norm} (not finite); stopped before the update. Last good checkpoint: {last_good}. Lower lr_max or set grad_clip, or pass --on-nan skip, then resume"
                    );
                }
                progress.println(&format!(
                    "step {step}: loss {loss}, gradient norm {grad_norm}: batch skipped (--on-nan skip)"
                ));
            }
            let step_seconds = started.elapsed().as_secs_f64();

            state.step = step;
            state.data = loader.position();
            state.seconds += step_seconds;
            state.segment = segment_index;
            let tokens_per_s = seg.tokens_per_step as f64 / step_seconds.max(1e-9);
            let base = self.line(LineKind::Train, &state, &seg, trainable_params);
            metrics.write(&MetricsLine {
                loss: Some(loss),
                lr: Some(step_lr),
                grad_norm: Some(grad_norm),
                tokens_per_s: Some(tokens_per_s),
                ..base.clone()
            })?;
            last_loss = Some(loss);

            if config.val_every > 0 && (step % config.val_every == 0 || step == total) {
                let val_loss = self.val_loss(&val_batches, active, autocast);
                metrics.write(&MetricsLine { kind: LineKind::Val, val_loss: Some(val_loss), ..base.clone() })?;
                progress.println(&format!("step {step}: val loss {val_loss:.4}"));
                last_val_loss = Some(val_loss);
            }
            let hellaswag_due = (config.hellaswag_every > 0 && step % config.hellaswag_every == 0) || step == total;
            if let (Some(tokenizer), true) = (&tokenizer, hellaswag_due) {
                let score = eval::evaluate(&self.model, active, tokenizer, &hellaswag, 16, self.device, autocast);
                metrics.write(&MetricsLine {
                    kind: LineKind::Hellaswag,
                    acc: Some(score.acc),
                    acc_norm: Some(score.acc_norm),
                    n: Some(score.n as u64),
                    ..base.clone()
                })?;
                progress.println(&format!("step {step}: hellaswag acc_norm {:.4} (n = {})", score.acc_norm, score.n));
            }
            let checkpoint_due = (config.checkpoint_every > 0 && step % config.checkpoint_every == 0) || step == last;
            if checkpoint_due {
                let dir = checkpoint::save(&self.run_dir, &self.vs, &self.optimizer, &state)?;
                let path = Some(relative(&self.run_dir, &dir));
                metrics.write(&MetricsLine { kind: LineKind::Checkpoint, path, ..base })?;
            }
            progress.step(step, &format!("{} loss {loss:.4} {:.0} tok/s", seg.phase.as_str(), tokens_per_s));
        }
        progress.finish();
        let steps_done = last.saturating_sub(first_step - 1);
        let seconds = state.seconds - invocation_start;
        let tokens = plan.cumulative(last).tokens - plan.cumulative(first_step - 1).tokens;
        Ok(TrainSummary {
            run_dir: self.run_dir.clone(),
            last_step: last,
            total_steps: total,
            last_loss,
            last_val_loss,
            seconds_per_step: seconds / steps_done.max(1) as f64,
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
        })
    }

    /// What happens once when a segment starts at `step` (not when a resume lands inside it):
    /// new blocks grow at the first step of a stage, the optimizer resets when continual starts.
    fn enter_segment(&mut self, plan: &Plan, seg: &Segment, step: u64, spec: &IncrementalSpec) {
        if step != seg.first_step {
            return;
        }
        let mut stage_first_step = 1;
        for stage in &plan.stages {
            if stage.stage == seg.stage && stage_first_step == step && seg.phase != Phase::Continual && stage.stage >= 2
            {
                let old_active = plan.stages[stage.stage as usize - 2].active_layers as usize;
                grow(&mut self.model, spec.growth, old_active, stage.active_layers as usize);
            }
            stage_first_step += stage.phase1_steps + stage.phase2_steps;
        }
        if seg.phase == Phase::Continual && spec.reset_optimizer_at_continual {
            self.optimizer.reset();
        }
    }

    /// The fixed validation slice: the first `val_batches` micro-batches of the val shard.
    fn val_batches(&self, config: &TrainConfig) -> anyhow::Result<Vec<(Tensor, Tensor)>> {
        if config.val_every == 0 {
            return Ok(Vec::new());
        }
        let per_batch = config.micro_batch * config.model.context;
        let available = (self.dataset.val.len() - 1) / per_batch;
        if available == 0 {
            bail!(
                "{}: the validation shard holds {} tokens, fewer than one micro-batch of {per_batch}; lower micro_batch or context",
                self.dataset.val.path().display(),
                self.dataset.val.len()
            );
        }
        let shards = std::slice::from_ref(&self.dataset.val);
        let mut loader =
            BatchLoader::new(shards, config.micro_batch, config.model.context, self.device, DataPosition::default())?;
        Ok((0..config.val_batches.min(available)).map(|_| loader.next_batch()).collect())
    }

    fn val_loss(&self, batches: &[(Tensor, Tensor)], active: usize, autocast: bool) -> f64 {
        tch::no_grad(|| {
            // Summed on the device and read once: one sync for the whole validation pass.
            let losses: Vec<Tensor> = batches
                .iter()
                .map(|(x, y)| tch::autocast(autocast, || self.model.loss(x, y, active)).to_kind(Kind::Double))
                .collect();
            Tensor::stack(&losses, 0).sum(Kind::Double).double_value(&[]) / batches.len() as f64
        })
    }

    fn line(&self, kind: LineKind, state: &TrainState, seg: &Segment, trainable_params: i64) -> MetricsLine {
        let compute = self.info.plan.cumulative(state.step);
        MetricsLine {
            step: state.step,
            tokens: compute.tokens,
            paper_units: compute.paper_units,
            flops: compute.flops,
            seconds: state.seconds,
            stage: seg.stage,
            active_layers: seg.trainable.active_layers,
            trainable_params,
            ..MetricsLine::empty(&self.info.name, kind, seg.phase)
        }
    }
}

/// Rows per micro-batch and micro-batches per step for a segment: every micro-batch holds
/// `micro_batch × context` tokens (the config's), cut into rows of the segment's context.
pub fn micro_batch_shape(config: &TrainConfig, segment: &Segment) -> anyhow::Result<(usize, usize)> {
    let micro_tokens = config.micro_batch * config.model.context;
    let context = segment.context as usize;
    let tokens = segment.tokens_per_step as usize;
    if micro_tokens % context != 0 {
        bail!(
            "stage {} context {context} does not divide micro_batch × context = {micro_tokens}; use powers of two in --context-schedule",
            segment.stage
        );
    }
    if tokens == 0 || tokens % micro_tokens != 0 {
        bail!(
            "stage {} has {tokens} tokens per step, not a multiple of micro_batch × context = {micro_tokens}; fix --batch-schedule",
            segment.stage
        );
    }
    Ok((micro_tokens / context, tokens / micro_tokens))
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

fn relative(base: &Path, path: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Write a file via a temp file in the same directory and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().context("path has no directory")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
