//! `train bench`: time warm training steps (forward + backward + AdamW) of the full model and of
//! every distinct phase configuration of a schedule, next to what the cost model predicts.
//!
//! One timed step is one micro-batch of random tokens, so the numbers measure the model, not the
//! data pipeline. A step is exactly the training loop's (forward, backward, gradient norm, clipping,
//! fused AdamW with the on-device non-finite check); like PyTorch's own benchmark, the timed steps
//! are queued back to back and the device is synchronised once before and once after them. Each
//! configuration prints one JSON line.

use std::time::Instant;

use anyhow::Context;
use cost_model::flops::{token_flops, Trainable};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use cost_model::Phase;
use run_dir::{ScheduleSpec, TrainConfig};

use crate::device;
use crate::engine::loss::MicroStep;
use crate::engine::step::StepInput;

/// H100 SXM dense bf16 peak, FLOP/s (the MFU denominator on CUDA unless overridden).
pub const H100_BF16_PEAK: f64 = 989e12;

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub warmup_steps: usize,
    pub timed_steps: usize,
    /// Peak FLOP/s for MFU; `None` leaves MFU out (CPU).
    pub peak_flops: Option<f64>,
}

/// One configuration's timing.
#[derive(Debug, Clone, Serialize)]
pub struct BenchLine {
    pub preset: String,
    pub device: String,
    /// Data-parallel ranks timed together (each runs one micro-batch a step; gradients summed).
    pub world_size: usize,
    /// `full`, or `stage S phase1|phase2` (for people; scripts read `stage` and `phase`).
    pub config: String,
    /// 0 for the full model, else the stage the configuration belongs to.
    pub stage: u32,
    /// `baseline` for the full model, else `phase1` or `phase2`.
    pub phase: Phase,
    pub active_layers: u32,
    pub first_trainable: u32,
    pub embeddings_trainable: bool,
    pub d_model: usize,
    pub micro_batch: usize,
    pub context: usize,
    pub bf16: bool,
    /// Bytes of the gradients one step all-reduces (this configuration's trainable parameters).
    pub gradient_bytes: u64,
    pub ms_per_step: f64,
    /// Tokens per second of one rank.
    pub tokens_per_s: f64,
    /// Tokens per second of all ranks together.
    pub tokens_per_s_total: f64,
    /// Milliseconds of one all-reduce of this configuration's gradients (0 with one rank).
    pub allreduce_ms: f64,
    /// Whether the timed steps replayed CUDA graphs (the training loop's default on CUDA).
    pub cuda_graphs: bool,
    pub model_flops_per_s: f64,
    pub mfu: Option<f64>,
    /// Peak resident memory of the process so far, bytes (on CUDA: host memory only).
    pub peak_memory_bytes: Option<u64>,
    /// GPU memory in use after the timed steps, bytes (includes libtorch's cache, so it bounds
    /// the peak allocation from above); `None` on CPU.
    pub gpu_memory_bytes: Option<u64>,
    /// Cost model (FLOPs): this configuration's step cost / a full step's.
    pub predicted_ratio: f64,
    /// Measured: this configuration's step time / the full step's.
    pub measured_ratio: f64,
}

/// One configuration to time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Configuration {
    /// 0 for the full model.
    pub stage: u32,
    /// `Baseline` for the full model.
    pub phase: Phase,
    pub trainable: Trainable,
}

impl Configuration {
    /// `full` or `stage S phase1|phase2`.
    pub fn label(&self) -> String {
        match self.phase {
            Phase::Baseline => "full".into(),
            phase => format!("stage {} {}", self.stage, phase.as_str()),
        }
    }
}

/// The distinct trainable configurations of a schedule: the full model first, then each
/// (stage, phase) in order.
pub fn configurations(config: &TrainConfig, schedule: &ScheduleSpec) -> anyhow::Result<Vec<Configuration>> {
    let plan = schedule.plan(config)?;
    let full = Trainable::all(config.model.layers as u32);
    let mut out = vec![Configuration { stage: 0, phase: Phase::Baseline, trainable: full }];
    for seg in &plan.segments {
        if seg.phase == Phase::Continual || seg.phase == Phase::Baseline {
            continue;
        }
        if !out.iter().any(|c| (c.stage, c.phase) == (seg.stage, seg.phase)) {
            out.push(Configuration { stage: seg.stage, phase: seg.phase, trainable: seg.trainable });
        }
    }
    Ok(out)
}

/// Wait for everything queued on `device` (nothing to wait for on the CPU).
fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// Peak resident set size of this process (Linux), bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Time every configuration; returns one line per configuration (full model first). A config
/// or schedule that does not validate is bad input; anything later (out of memory, a dead
/// rank) is a failure.
pub fn run(
    config: &TrainConfig,
    schedule: &ScheduleSpec,
    device_: Device,
    world: &crate::world::World,
    options: &BenchOptions,
    mut on_line: impl FnMut(&BenchLine),
) -> anyhow::Result<Vec<BenchLine>> {
    config.validate().map_err(crate::error::bad_input)?;
    let configs = configurations(config, schedule).map_err(crate::error::bad_input)?;
    let (_vs, mut model, mut optimizer) = crate::engine::init::init_model(config, device_)?;
    // The training loop's own step: CUDA graphs on CUDA unless `cuda_graphs = false`.
    let mut stepper = crate::engine::step::Stepper::new(config, device_)?;
    if let Some(reason) = &stepper.eager_reason {
        eprintln!("bench: {reason}");
    }
    let autocast = config.bf16 && device_.is_cuda();
    let (b, t) = (config.micro_batch as i64, config.model.context as i64);
    let vocab = config.tokenizer.vocab_size() as i64;
    let x = Tensor::randint(vocab, [b, t], (Kind::Int64, device_));
    let y = Tensor::randint(vocab, [b, t], (Kind::Int64, device_));
    let shape = config.model;
    let full_flops_per_token = token_flops(&shape, Trainable::all(shape.blocks())).total();
    let tokens = (b * t) as f64;

    let mut lines: Vec<BenchLine> = Vec::new();
    let mut full_ms = None;
    for configuration in configs {
        let trainable = configuration.trainable;
        let label = configuration.label();
        model.apply_trainable(trainable);
        let micro = MicroStep {
            active_layers: trainable.active_layers as usize,
            autocast,
            grad_scale: 1.0,
            kernel: config.loss_kernel,
            vocab: config.scored_vocab(),
        };
        let input = StepInput {
            step: 0,
            micro,
            trainable,
            batches: vec![(x.shallow_clone(), y.shallow_clone())],
            lr: 1e-4,
            grad_clip: config.grad_clip,
        };
        // The warm-up steps include the graphs' warm-up and capture (two steps).
        for _ in 0..options.warmup_steps.max(if stepper.graphs_on() { 2 } else { 0 }) {
            stepper.step(&model, &mut optimizer, world, &input)?;
        }
        synchronize(device_);
        let started = Instant::now();
        let mut last = None;
        for _ in 0..options.timed_steps.max(1) {
            last = Some(stepper.step(&model, &mut optimizer, world, &input)?);
        }
        // Reading the last loss waits for the device: every timed step is done.
        let (loss, _) = last.expect("at least one timed step").read()?;
        let ms = started.elapsed().as_secs_f64() * 1e3 / options.timed_steps.max(1) as f64;
        anyhow::ensure!(loss.is_finite(), "bench {label}: the loss is not finite ({loss})");
        let full = *full_ms.get_or_insert(ms);
        // The all-reduce alone, on buffers the size of this configuration's gradients.
        let gradients = optimizer.gradients();
        let gradient_bytes: u64 = gradients.iter().map(|g| (g.numel() * g.kind().elt_size_in_bytes()) as u64).sum();
        let allreduce_ms = if world.size > 1 {
            let buffers: Vec<Tensor> = gradients.iter().map(|g| g.zeros_like()).collect();
            // On CUDA the collectives are queued: time from an idle device to an idle device.
            synchronize(device_);
            let timed = Instant::now();
            for _ in 0..options.timed_steps.max(1) {
                world.all_reduce(&buffers, crate::world::Reduce::Sum)?;
            }
            synchronize(device_);
            timed.elapsed().as_secs_f64() * 1e3 / options.timed_steps.max(1) as f64
        } else {
            0.0
        };
        let flops_per_token = token_flops(&shape, trainable).total();
        let model_flops_per_s = flops_per_token * tokens / (ms / 1e3);
        let line = BenchLine {
            preset: config.preset.clone(),
            device: device::name(device_),
            world_size: world.size,
            config: label,
            stage: configuration.stage,
            phase: configuration.phase,
            active_layers: trainable.active_layers,
            first_trainable: trainable.first_trainable,
            embeddings_trainable: trainable.embeddings,
            d_model: config.model.d_model,
            micro_batch: config.micro_batch,
            context: config.model.context,
            bf16: autocast,
            gradient_bytes,
            ms_per_step: ms,
            tokens_per_s: tokens / (ms / 1e3),
            tokens_per_s_total: world.size as f64 * tokens / (ms / 1e3),
            allreduce_ms,
            cuda_graphs: stepper.graphs_on(),
            model_flops_per_s,
            mfu: options.peak_flops.map(|p| model_flops_per_s / p),
            peak_memory_bytes: peak_rss(),
            gpu_memory_bytes: if device_.is_cuda() { device::cuda_memory_in_use() } else { None },
            predicted_ratio: flops_per_token / full_flops_per_token,
            measured_ratio: ms / full,
        };
        on_line(&line);
        lines.push(line);
    }
    lines.first().context("no configuration to time")?;
    Ok(lines)
}
