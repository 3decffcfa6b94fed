//! Data parallel on c10d (Gloo, two processes on loopback): a 2-rank run equals a 1-rank run with
//! the same global batch (baseline, and an incremental schedule through a growth and the
//! continual reset), a run without the all-reduce does not (the test can fail), a killed rank
//! ends the group within the timeout with nothing torn, a 2-rank run resumes on 1 rank, and an
//! incomplete rendezvous names the ranks that never came; a torchrun restart resumes the named run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use run_dir::{LineKind, MetricsLine};

mod common;

/// A small model, 4 micro-batches a step (2 per rank), validation and checkpoints along the way.
fn args(run: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = common::SMALL_MODEL_ARGS.iter().map(|s| s.to_string()).collect();
    for s in [
        "--set",
        "model.layers=4",
        "--set",
        "tokens_per_step=64",
        "--set",
        "steps=12",
        "--set",
        "warmup_steps=2",
        "--set",
        "val_every=4",
        "--set",
        "checkpoint_every=4",
        "--run",
        run,
        "--quiet",
        "--dist-timeout",
        "30",
    ] {
        a.push(s.to_string());
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn train(dir: &Path, args: &[String], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_train"));
    command.args(args).current_dir(dir).env("GLOO_SOCKET_IFNAME", "lo");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run train")
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn dataset(dir: &Path) {
    common::text_dataset(dir, "it was the best of times, it was the worst of times. ", 60, 1200);
}

fn lines(run: &Path, kind: LineKind) -> Vec<MetricsLine> {
    common::read_metrics(run).into_iter().filter(|l| l.kind == kind).collect()
}

/// The largest difference of train and val losses step by step (the runs log the same steps).
fn loss_gap(a: &Path, b: &Path) -> f64 {
    let mut worst = 0.0f64;
    for kind in [LineKind::Train, LineKind::Val] {
        let (x, y) = (lines(a, kind), lines(b, kind));
        assert_eq!(x.len(), y.len(), "{kind:?} lines: {} vs {}", x.len(), y.len());
        for (p, q) in x.iter().zip(&y) {
            assert_eq!(p.step, q.step);
            worst = worst.max((p.loss.or(p.val_loss).unwrap() - q.loss.or(q.val_loss).unwrap()).abs());
        }
    }
    worst
}

/// The largest difference between the final parameters of two runs.
fn parameter_gap(a: &Path, b: &Path) -> f64 {
    let last = |run: &Path| -> PathBuf {
        let mut steps: Vec<PathBuf> =
            std::fs::read_dir(run.join("checkpoints")).unwrap().flatten().map(|e| e.path()).collect();
        steps.sort();
        steps.pop().unwrap().join("model.safetensors")
    };
    let read = |p: PathBuf| -> HashMap<String, tch::Tensor> {
        tch::Tensor::read_safetensors(p).unwrap().into_iter().collect()
    };
    let (x, y) = (read(last(a)), read(last(b)));
    x.iter().map(|(name, t)| (t - &y[name]).abs().max().double_value(&[])).fold(0.0, f64::max)
}

#[test]
fn two_ranks_equal_one_rank_for_the_baseline_and_an_incremental_schedule() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    // HellaSwag, sharded over the ranks: 7 short examples (2 too long for context 8, skipped).
    let examples: Vec<String> = (0..7)
        .map(|i| {
            let ctx = if i % 3 == 2 { "it was the best" } else { "it" };
            format!(r#"{{"ctx": "{ctx}", "endings": ["as", "x", "orst", "e"], "label": {}}}"#, i % 4)
        })
        .collect();
    std::fs::write(dir.path().join("hs.jsonl"), examples.join("\n")).unwrap();
    let baseline = ["--hellaswag", "hs.jsonl", "--set", "hellaswag_every=4"];
    let incremental = ["--schedule", "incremental", "--stages", "3", "--until", "20", "--set", "model.layers=3"];
    for (name, extra) in [("base", &baseline[..]), ("inc3", &incremental[..])] {
        ok(&train(dir.path(), &args(&format!("{name}-1"), extra), &[]));
        let mut two = args(&format!("{name}-2"), extra);
        two.extend(["--nproc".into(), "2".into()]);
        ok(&train(dir.path(), &two, &[]));
        let (one, two) = (dir.path().join(format!("runs/{name}-1")), dir.path().join(format!("runs/{name}-2")));
        let (losses, params) = (loss_gap(&one, &two), parameter_gap(&one, &two));
        eprintln!("{name}: 2 ranks vs 1: losses within {losses:.2e}, final parameters within {params:.2e}");
        assert!(losses < 1e-5, "{name}: losses differ by {losses}");
        assert!(params < 1e-5, "{name}: parameters differ by {params}");
        if name == "base" {
            let score = |run: &Path| -> Vec<_> {
                lines(run, LineKind::Hellaswag).iter().map(|l| (l.step, l.acc, l.acc_norm, l.n, l.n_skipped)).collect()
            };
            assert_eq!(score(&one).len(), 3, "HellaSwag at steps 4, 8, 12");
            assert_eq!(score(&one)[0].3, Some(5), "5 of 7 examples fit");
            assert_eq!(score(&one), score(&two), "HellaSwag, sharded over 2 ranks, scores as on 1");
        }
        if name == "inc3" {
            let phases: Vec<cost_model::Phase> = lines(&two, LineKind::Train).iter().map(|l| l.phase).collect();
            assert!(phases.contains(&cost_model::Phase::Phase1) && phases.contains(&cost_model::Phase::Continual));
            assert_eq!(lines(&two, LineKind::Growth).len(), 2, "grew twice, logged once (rank 0)");
        }
    }
    // The negative control: without the all-reduce the ranks train apart, and the run says so.
    let mut apart = args("apart", &[]);
    apart.extend(["--nproc".into(), "2".into()]);
    let out = train(dir.path(), &apart, &[("STAGEWISE_SKIP_ALLREDUCE", "1")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("parameters differ"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (one, apart) = (dir.path().join("runs/base-1"), dir.path().join("runs/apart"));
    let logged = lines(&apart, LineKind::Train);
    let reference = lines(&one, LineKind::Train);
    let worst =
        logged.iter().zip(&reference).map(|(a, b)| (a.loss.unwrap() - b.loss.unwrap()).abs()).fold(0.0, f64::max);
    assert!(worst > 1e-3, "ranks without the all-reduce should diverge, differ by only {worst}");
}

#[test]
fn a_killed_rank_ends_the_group_and_the_run_resumes_on_one_rank() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    ok(&train(dir.path(), &args("straight", &[]), &[]));
    // Rank 1 dies (SIGKILL) mid-step 6: the launcher stops rank 0 and fails, quickly.
    let mut two = args("killed", &[]);
    two.extend(["--nproc".into(), "2".into()]);
    let started = Instant::now();
    let out = train(dir.path(), &two, &[("STAGEWISE_FAILPOINT", "step@6"), ("STAGEWISE_FAILPOINT_RANK", "1")]);
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rank 1 was killed (SIGKILL)"), "{err}");
    // Nothing torn: every checkpoint is complete, and a resume on one rank finishes the run as
    // if it had never stopped.
    let run = dir.path().join("runs/killed");
    for entry in std::fs::read_dir(run.join("checkpoints")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("step_") {
            for file in ["model.safetensors", "optimizer.safetensors", "state.json"] {
                assert!(entry.path().join(file).is_file(), "{name}/{file}");
            }
        }
    }
    ok(&train(dir.path(), &["--resume".into(), "runs/killed".into(), "--quiet".into()], &[]));
    let gap = loss_gap(&dir.path().join("runs/straight"), &run);
    assert!(gap < 1e-5, "resumed run differs by {gap}");

    // Two ranks started by hand (as torchrun or srun would): rank 1 dies, rank 0 exits non-zero
    // within the timeout instead of hanging.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let spawn = |rank: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_train"));
        let mut manual = args("manual", &[]);
        let timeout = manual.iter().position(|a| a == "--dist-timeout").unwrap() + 1;
        manual[timeout] = "15".into();
        command.args(manual).current_dir(dir.path());
        command.env("RANK", rank).env("WORLD_SIZE", "2").env("LOCAL_RANK", rank);
        command.env("MASTER_ADDR", "127.0.0.1").env("MASTER_PORT", &port).env("GLOO_SOCKET_IFNAME", "lo");
        command.env("STAGEWISE_FAILPOINT", "step@3").env("STAGEWISE_FAILPOINT_RANK", "1");
        command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let started = Instant::now();
    let (zero, one) = (spawn("0"), spawn("1"));
    let zero = zero.wait_with_output().unwrap();
    let _ = one.wait_with_output();
    assert!(!zero.status.success(), "rank 0 should fail when rank 1 dies");
    assert!(started.elapsed() < Duration::from_secs(40), "rank 0 took {:?}", started.elapsed());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("rank 0"), "{}", String::from_utf8_lossy(&zero.stderr));
}

#[test]
fn a_two_rank_run_resumes_on_one_rank_exactly() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    ok(&train(dir.path(), &args("one", &[]), &[]));
    let mut two = args("moved", &["--stop-after-step", "5"]);
    two.extend(["--nproc".into(), "2".into()]);
    ok(&train(dir.path(), &two, &[]));
    ok(&train(dir.path(), &["--resume".into(), "runs/moved".into(), "--quiet".into()], &[]));
    let gap = loss_gap(&dir.path().join("runs/one"), &dir.path().join("runs/moved"));
    assert!(gap < 1e-5, "2 ranks then 1 differs from 1 rank by {gap}");
    assert!(parameter_gap(&dir.path().join("runs/one"), &dir.path().join("runs/moved")) < 1e-5);
}

#[test]
fn a_rendezvous_that_is_not_complete_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let alone = |rank: &str| {
        let mut lonely = args("lonely", &[]);
        let timeout = lonely.iter().position(|a| a == "--dist-timeout").unwrap() + 1;
        lonely[timeout] = "3".into();
        let env = [("RANK", rank), ("WORLD_SIZE", "3"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", &port)];
        let out = train(dir.path(), &lonely, &env);
        assert!(!out.status.success(), "rank {rank} alone should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // Rank 0 serves the store and waits: the error names the two ranks that never came.
    let err = alone("0");
    assert!(err.contains("ranks 1, 2 of 3 did not join within 3 s"), "{err}");
    // Rank 1 with nobody serving: the error says where to look.
    let err = alone("1");
    assert!(err.contains("nobody serves the rendezvous"), "{err}");
    assert!(!dir.path().join("runs/lonely/metrics.jsonl").exists(), "a failed rendezvous writes no run");
}

#[test]
fn a_torchrun_restart_resumes_the_named_run_and_refuses_a_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    ok(&train(dir.path(), &args("straight", &[]), &[]));
    // The first attempt fails after step 5 (here: stops there with its checkpoint at 4 and 5).
    ok(&train(dir.path(), &args("restarted", &["--stop-after-step", "5"]), &[]));
    // torchrun --max-restarts reruns the very same command: it resumes, as if never stopped.
    let again = args("restarted", &[]);
    ok(&train(dir.path(), &again, &[("TORCHELASTIC_RESTART_COUNT", "1")]));
    let (straight, restarted) = (dir.path().join("runs/straight"), dir.path().join("runs/restarted"));
    assert!(loss_gap(&straight, &restarted) < 1e-5, "restarted run differs by {}", loss_gap(&straight, &restarted));
    assert!(parameter_gap(&straight, &restarted) < 1e-5);
    // A restart whose command names another configuration is refused, not resumed or overwritten.
    let changed = args("restarted", &["--set", "warmup_steps=3"]);
    let out = train(dir.path(), &changed, &[("TORCHELASTIC_RESTART_COUNT", "2")]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another configuration"));
    // Outside a restart, an existing run is never silently continued.
    let out = train(dir.path(), &again, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a run"));
}
