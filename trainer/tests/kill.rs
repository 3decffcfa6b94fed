//! Crash safety: SIGKILL the trainer mid-step, mid-checkpoint-write and mid-log-line, resume after
//! each, and check the run ends exactly as an uninterrupted one would.
//!
//! `kills_at_every_failpoint_then_resumes_bit_exact` runs in `just test`; the random-time soak
//! (`soak_random_kills`, ignored by default) runs from `just soak`.

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use run_dir::{LineKind, MetricsLine};

mod common;

/// The small model, 32 tokens a step, checkpoints every 2 steps, validation every 3.
fn config() -> Vec<&'static str> {
    let mut args = common::SMALL_MODEL_ARGS.to_vec();
    args.extend(["--set", "tokens_per_step=32", "--set", "checkpoint_every=2", "--set", "val_every=3"]);
    args
}

fn dataset(dir: &Path) {
    common::text_dataset(dir, "crash, resume, repeat. ", 200, 800);
}

fn train(dir: &Path, args: &[&str], failpoint: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_train"));
    cmd.args(args).arg("--quiet").current_dir(dir);
    match failpoint {
        Some(f) => cmd.env("STAGEWISE_FAILPOINT", f),
        None => cmd.env_remove("STAGEWISE_FAILPOINT"),
    };
    cmd.output().unwrap()
}

fn start_args<'a>(run: &'a str, steps: &'a str) -> Vec<&'a str> {
    let mut args = config();
    args.extend(["--set", steps, "--run", run]);
    args
}

/// Every line parses, no (kind, step) twice, every checkpoint directory complete.
fn assert_consistent(run: &Path) -> Vec<MetricsLine> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let mut seen = HashSet::new();
    let mut lines = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line: MetricsLine = serde_json::from_str(l).unwrap_or_else(|e| panic!("line {}: {e}: {l}", i + 1));
        assert!(seen.insert((format!("{:?}", line.kind), line.step)), "duplicate {:?} step {}", line.kind, line.step);
        lines.push(line);
    }
    if let Ok(entries) = std::fs::read_dir(run.join("checkpoints")) {
        for e in entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("step_")) {
            for f in ["model.safetensors", "optimizer.safetensors", "state.json"] {
                assert!(e.path().join(f).is_file(), "{:?} lacks {f}", e.path());
            }
        }
    }
    lines
}

fn losses(lines: &[MetricsLine]) -> Vec<(u64, u64)> {
    lines.iter().filter(|l| l.kind == LineKind::Train).map(|l| (l.step, l.loss.unwrap().to_bits())).collect()
}

#[test]
fn kills_at_every_failpoint_then_resumes_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    assert!(train(dir.path(), &start_args("straight", "steps=12"), None).status.success());
    let straight = assert_consistent(&dir.path().join("runs/straight"));

    let run = dir.path().join("runs/killed");
    let resume = ["--resume", run.to_str().unwrap()];
    let mut kills = 0;
    for (i, failpoint) in ["step@3", "checkpoint@6", "log@9", "step@10", "checkpoint@12"].into_iter().enumerate() {
        let out = if i == 0 {
            train(dir.path(), &start_args("killed", "steps=12"), Some(failpoint))
        } else {
            train(dir.path(), &resume, Some(failpoint))
        };
        assert_eq!(out.status.signal(), Some(9), "{failpoint}: {}", String::from_utf8_lossy(&out.stderr));
        kills += 1;
        if failpoint.starts_with("checkpoint") {
            let tmp = std::fs::read_dir(run.join("checkpoints"))
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"));
            assert!(tmp, "{failpoint}: the interrupted checkpoint stays a hidden temp directory");
        }
        // The torn line, if any, is still in the file: the trainer repairs it on resume, and the
        // report skips it; here only whole lines must be consistent.
        let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let whole: String = text.lines().filter(|l| serde_json::from_str::<MetricsLine>(l).is_ok()).collect();
        assert!(!whole.is_empty());
    }
    let out = train(dir.path(), &resume, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let resumed = assert_consistent(&run);
    assert_eq!(losses(&resumed), losses(&straight), "losses after {kills} kills differ");
    assert_eq!(kills, 5);
    assert!(!std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-")));
}

/// `just soak`: many kills at random moments (timing, not failpoints), then the same checks.
#[test]
#[ignore = "slow: run with `just soak`"]
fn soak_random_kills() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    assert!(train(dir.path(), &start_args("straight", "steps=400"), None).status.success());
    let straight = assert_consistent(&dir.path().join("runs/straight"));
    let run = dir.path().join("runs/killed");
    let mut seed: u64 = 0x5eed;
    let mut kills = 0;
    let mut first = true;
    loop {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_train"));
        if first {
            cmd.args(start_args("killed", "steps=400"));
        } else {
            cmd.args(["--resume", run.to_str().unwrap()]);
        }
        first = false;
        let mut child = cmd.arg("--quiet").current_dir(dir.path()).env_remove("STAGEWISE_FAILPOINT").spawn().unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(100 + (seed >> 33) % 900));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        assert_consistent(&run);
    }
    let out = train(dir.path(), &["--resume", run.to_str().unwrap()], None);
    assert!(out.status.success());
    assert_eq!(losses(&assert_consistent(&run)), losses(&straight), "losses after {kills} random kills differ");
    eprintln!("soak: survived {kills} random SIGKILLs");
}
