//! The step engine (`trainer::engine::step`): reading each step's loss one step late changes nothing a run
//! logs or saves (tested on the CPU, where it is off by default); on CUDA, CUDA graphs train what
//! the eager step trains, a failed capture falls back with a reason, and `deterministic` runs
//! repeat and resume bit for bit (those run where a GPU is).

use std::path::Path;

use cost_model::IncrementalSchedule;
use run_dir::config::OnNan;
use run_dir::{IncrementalSpec, LineKind, MetricsLine, ScheduleSpec, TrainConfig};
use tch::Device;
use trainer::run::options::TrainOptions;
use trainer::run::trainer::{resume, start};

mod common;

fn dataset(dir: &Path) -> std::path::PathBuf {
    common::text_dataset(dir, "one step late, and nothing else changes. ", 300, 2000)
}

/// A 3-stage incremental run: growth, phase switches, the continual reset, validation and
/// checkpoints, so every kind of line and event meets the lag.
fn growing(data: &Path) -> (TrainConfig, ScheduleSpec) {
    let mut overrides = common::GROWABLE_MODEL.to_vec();
    overrides.extend(["model.layers=3", "steps=18", "val_every=4", "checkpoint_every=5"]);
    let config = common::tiny_config(data, &overrides);
    let schedule =
        ScheduleSpec::Incremental(IncrementalSpec { stages: IncrementalSchedule::even(3), ..Default::default() });
    (config, schedule)
}

fn options(lag: bool, stop: Option<u64>) -> TrainOptions {
    TrainOptions { lag_reads: Some(lag), ..common::cpu_options(stop) }
}

/// A log line without its measured time: kind, step, the values' bits, the checkpoint's path.
type Computed = (String, u64, Option<u64>, Option<u64>, Option<u64>, Option<String>);

/// Every line but its measured time, as exact bits: what a run computed and when it logged it.
fn computed(run: &Path) -> Vec<Computed> {
    common::read_metrics(run)
        .iter()
        .map(|l: &MetricsLine| {
            let bits = |v: Option<f64>| v.map(f64::to_bits);
            (
                format!("{:?}", l.kind),
                l.step,
                bits(l.loss.or(l.val_loss)),
                bits(l.grad_norm),
                bits(l.lr.or(l.val_loss_before)),
                l.path.clone(),
            )
        })
        .collect()
}

#[test]
fn reading_each_loss_one_step_late_logs_and_saves_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let (config, schedule) = growing(&data);
    let (now, late) = (dir.path().join("now"), dir.path().join("late"));
    start(&now, config.clone(), schedule.clone(), &options(false, None)).unwrap();
    start(&late, config.clone(), schedule.clone(), &options(true, None)).unwrap();
    let lines = computed(&now);
    assert!(lines.iter().any(|l| l.0 == "Growth") && lines.iter().any(|l| l.0 == "Checkpoint"));
    assert_eq!(computed(&late), lines, "the same lines, in the same order, with the same bits");
    // And the same weights at the end.
    let last = common::read_metrics(&now).iter().filter_map(|l| l.path.clone()).next_back().unwrap();
    let weights = |run: &Path| std::fs::read(run.join(&last).join("model.safetensors")).unwrap();
    assert_eq!(weights(&late), weights(&now));

    // Stopped at 7 (a step no periodic work follows) and resumed, still one step late.
    let resumed = dir.path().join("resumed");
    start(&resumed, config, schedule, &options(true, Some(7))).unwrap();
    resume(&resumed, &options(true, None)).unwrap();
    let train =
        |l: &Vec<_>| l.iter().filter(|x: &&(String, _, _, _, _, _)| x.0 == "Train").cloned().collect::<Vec<_>>();
    assert_eq!(train(&computed(&resumed)), train(&lines));
}

#[test]
fn a_late_read_still_stops_at_the_step_that_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let config = common::exploding_config(&data, OnNan::Stop, &["steps=6", "checkpoint_every=3"]);
    let run = dir.path().join("nan");
    let err = start(&run, config, ScheduleSpec::baseline(), &options(true, None)).unwrap_err();
    let message = format!("{err:#}");
    // The first update sends the weights to ±1e30: step 2's loss is not finite.
    assert!(message.starts_with("step 2: loss"), "{message}");
    assert!(message.contains("Last good checkpoint: none yet"), "{message}");
    let logged: Vec<u64> =
        common::read_metrics(&run).iter().filter(|l| l.kind == LineKind::Train).map(|l| l.step).collect();
    assert_eq!(logged, vec![1], "nothing logged for the step that went wrong, or after it");
}

/// A CUDA device, when this machine has one (libtorch_cuda.so on the library path and a GPU).
fn cuda() -> Option<Device> {
    trainer::device::select(trainer::device::DeviceChoice::Cuda).ok()
}

fn gpu_config(data: &Path, extra: &[&str]) -> TrainConfig {
    let mut overrides = common::GROWABLE_MODEL.to_vec();
    overrides.extend(["steps=12", "val_every=6", "checkpoint_every=6", "bf16=false", "tf32=false"]);
    overrides.extend(extra);
    common::tiny_config(data, &overrides)
}

fn train_losses(run: &Path) -> Vec<(u64, f64)> {
    common::read_metrics(run).iter().filter(|l| l.kind == LineKind::Train).map(|l| (l.step, l.loss.unwrap())).collect()
}

#[test]
fn cuda_graphs_train_what_the_eager_step_trains() {
    let Some(device) = cuda() else {
        eprintln!("no CUDA device: CUDA graphs are exercised by scripts/gpu-bench.sh on a GPU machine");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let options = TrainOptions { device, ..common::cpu_options(None) };
    let (graphs, eager) = (dir.path().join("graphs"), dir.path().join("eager"));
    start(&graphs, gpu_config(&data, &[]), ScheduleSpec::baseline(), &options).unwrap();
    start(&eager, gpu_config(&data, &["cuda_graphs=false"]), ScheduleSpec::baseline(), &options).unwrap();
    let (a, b) = (train_losses(&graphs), train_losses(&eager));
    assert_eq!(a.len(), 12);
    for ((step, x), (_, y)) in a.iter().zip(&b) {
        // fp32 without TF32: the same kernels either way, up to the order of float sums.
        assert!((x - y).abs() < 1e-4, "step {step}: graphs {x}, eager {y}");
    }
    // The bench says whether its steps replayed graphs: they did, on this device.
    let config = gpu_config(&data, &[]);
    let world = trainer::world::World::single();
    let bench = trainer::jobs::bench::BenchOptions { warmup_steps: 3, timed_steps: 3, peak_flops: None };
    let lines = trainer::jobs::bench::run(&config, &ScheduleSpec::baseline(), device, &world, &bench, |_| {}).unwrap();
    assert!(lines[0].cuda_graphs, "the CUDA plugin must be built (just gpu-build) and on LD_LIBRARY_PATH");
}

#[test]
fn deterministic_gpu_runs_repeat_and_resume_bit_for_bit() {
    let Some(device) = cuda() else {
        eprintln!("no CUDA device: --deterministic is exercised by scripts/gpu-bench.sh on a GPU machine");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let config = gpu_config(&data, &["deterministic=true", "bf16=true"]);
    let options = |stop| TrainOptions { device, ..common::cpu_options(stop) };
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    start(&a, config.clone(), ScheduleSpec::baseline(), &options(None)).unwrap();
    start(&b, config.clone(), ScheduleSpec::baseline(), &options(None)).unwrap();
    start(&c, config, ScheduleSpec::baseline(), &options(Some(6))).unwrap();
    resume(&c, &options(None)).unwrap();
    let bits = |run: &Path| train_losses(run).iter().map(|(s, l)| (*s, l.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b), "two deterministic runs");
    assert_eq!(bits(&a), bits(&c), "stopped at 6 and resumed");
}
