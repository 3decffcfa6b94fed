//! A run that blows up stops cleanly (or skips the batch), and two trainers never share a run.

use std::path::{Path, PathBuf};
use std::process::Command;

use run_dir::config::OnNan;
use run_dir::RunLock;
use run_dir::ScheduleSpec;
use run_dir::TrainConfig;
use trainer::run::trainer::start;

mod common;

fn dataset(dir: &Path) -> PathBuf {
    common::text_dataset(dir, "all work and no play. ", 200, 1000)
}

/// Four steps that go non-finite at step 2, a checkpoint after every step.
fn exploding(data: &Path, on_nan: OnNan) -> TrainConfig {
    common::exploding_config(data, on_nan, &["steps=4", "checkpoint_every=1"])
}

#[test]
fn non_finite_loss_stops_before_the_update_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let run = dir.path().join("nan");
    let err =
        start(&run, exploding(&data, OnNan::Stop), ScheduleSpec::baseline(), &common::cpu_options(None)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("step 2: loss") && msg.contains("not finite"), "{msg}");
    assert!(msg.contains("Last good checkpoint: step 1"), "{msg}");
    let steps: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(steps, vec!["step_00000001"], "no checkpoint of the failed step, no temp leftovers");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().all(|l| l.contains("\"step\":1,")), "nothing logged for step 2: {metrics}");
}

#[test]
fn on_nan_skip_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let run = dir.path().join("skip");
    let summary =
        start(&run, exploding(&data, OnNan::Skip), ScheduleSpec::baseline(), &common::cpu_options(None)).unwrap();
    assert_eq!(summary.last_step, 4);
}

#[test]
fn a_second_trainer_on_the_same_run_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let run = dir.path().join("busy");
    let mut config = exploding(&data, OnNan::Skip);
    config.set("lr_max=1e-3").unwrap();
    start(&run, config, ScheduleSpec::baseline(), &common::cpu_options(None)).unwrap();

    let held = RunLock::acquire(&run).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--resume", run.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is in use by process"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1);
    drop(held);

    // Once the holder is gone (even by SIGKILL, the kernel drops its flock), resuming works.
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--resume", run.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
