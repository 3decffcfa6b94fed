//! The `train` binary as a user sees it: a tiny run end to end, and one-line errors with exit
//! code 2 for bad input, leaving nothing half-written.

use std::path::Path;
use std::process::{Command, Output};

fn train(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train")).args(args).current_dir(cwd).output().expect("run train")
}

mod common;

fn dataset(dir: &Path) {
    common::text_dataset(dir, "a rose is a rose is a rose. ", 100, 1000);
}

/// The small model with 16 tokens per step.
fn small() -> Vec<&'static str> {
    let mut args = common::SMALL_MODEL_ARGS.to_vec();
    args.extend(["--set", "tokens_per_step=16"]);
    args
}

#[test]
fn trains_a_small_run_and_exports_it() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let mut args = small();
    args.extend(["--set", "steps=3", "--run", "r", "--quiet"]);
    let out = train(&args, dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("step 3/3"));
    let run = dir.path().join("runs/r");
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["config"]["model"]["d_model"], 16);
    assert_eq!(info["libtorch_version"], "2.11.0");
    assert!(train(&["export", "runs/r"], dir.path()).status.success());
    assert!(run.join("export/config.json").is_file());
}

#[test]
fn bad_input_gets_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    std::fs::create_dir_all(dir.path().join("data/corrupt")).unwrap();
    std::fs::write(dir.path().join("data/corrupt/c_val_000000.bin"), vec![7u8; 2048]).unwrap();
    std::fs::write(dir.path().join("data/corrupt/c_train_000001.bin"), vec![7u8; 2048]).unwrap();
    std::fs::write(dir.path().join("a-file"), "not a directory").unwrap();

    let with_small = |extra: &[&'static str]| {
        let mut v = small();
        v.extend_from_slice(extra);
        v
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--preset", "huge"], "huge"),
        (vec!["--set", "model.depth=3"], "model.depth"),
        (vec!["--set", "steps=many"], "steps"),
        (vec!["--set", "steps"], "key=value"),
        (with_small(&["--set", "tokens_per_step=10"]), "tokens_per_step"),
        (with_small(&["--set", "data_dir=data/missing"]), "just data"),
        (with_small(&["--set", "data_dir=data/corrupt"]), "c_val_000000.bin: bad magic"),
        (with_small(&["--set", "steps=0"]), "steps"),
        (vec!["--run", "a/b"], "run name"),
        (with_small(&["--runs-dir", "a-file/runs"]), "writable --runs-dir"),
        (vec!["--on-nan", "ignore"], "ignore"),
        (vec!["--schedule", "incremental", "--stages", "13"], "set --stages"),
        // A schedule the cost model rejects names this binary's flag for the field, not `cost`'s.
        (vec!["--schedule", "incremental", "--stages", "4", "--set", "steps=2"], "set --set steps=N"),
        (vec!["--schedule", "incremental", "--phase1-share", "1.5"], "set --phase1-share"),
        (vec!["--schedule", "incremental", "--stage-context", "8,8"], "set --stage-context"),
        (vec!["--method", "mitosis"], "one-layer, one-layer-iters, gstack-2x, gstack-4x, midas"),
        // A growth inside the warmup grows an untrained model: refused, naming the knob.
        (vec!["--stage-layers", "6,12", "--stage-ends", "0.01", "--phase1-share", "0"], "set --allow-growth-in-warmup"),
        (
            vec!["--schedule", "incremental", "--rewarmup-steps", "5", "--reset-optimizer-at-continual", "false"],
            "set --rewarmup-steps",
        ),
        (vec!["--method", "midas", "--stages", "3"], "cannot be used with"),
        (vec!["--method", "midas", "--set", "model.layers=4"], "set --method"),
        (vec!["--stage-layers", "1,11"], "set --stage-layers"),
        (vec!["--stage-layers", "1,12", "--stage-ends", "0.8,0.9"], "set --stage-ends"),
        (vec!["--schedule", "baseline", "--stage-layers", "1,12"], "drop --schedule baseline"),
        (vec!["--stage-layers", "2,12", "--placement", "middle"], "set --phase1-share"),
        (vec!["--stage-layers", "0,12", "--phase1-share", "0", "--growth", "stack"], "set --growth"),
        (vec!["--schedule", "incremental", "--until", "soon"], "soon"),
        (vec!["--schedule", "incremental", "--budget-layers", "12"], "--budget-layers"),
        (vec!["--device", "tpu"], "tpu"),
        (vec!["--resume", "runs/none"], "runs/none"),
        (vec!["--stop-after-step", "x"], "x"),
        (vec!["data", "--raw", "nowhere"], "just data"),
        (vec!["data", "--shard-tokens", "0"], "shard"),
        (vec!["export", "runs/none"], "runs/none"),
        // --nproc where it cannot apply: one-process commands, zero ranks.
        (vec!["data", "--nproc", "2"], "drop --nproc 2"),
        (vec!["export", "runs/none", "--nproc", "2"], "drop --nproc 2"),
        (vec!["--nproc", "0"], "--nproc 0"),
    ];
    for (args, needle) in cases {
        let out = train(&args, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?} should mention {needle}: {err}");
    }
    assert!(!dir.path().join("runs").exists(), "a failed start must not leave a run directory");

    // NCCL asked for on the CPU, as rank 0 of 2: refused before any rendezvous (no waiting).
    let nccl = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--device", "cpu", "--dist-backend", "nccl"])
        .envs([("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&nccl.stderr);
    assert_eq!(nccl.status.code(), Some(2), "{err}");
    assert!(err.contains("--dist-backend gloo"), "{err}");

    // A second start into the same run directory is refused.
    let mut args = small();
    args.extend(["--set", "steps=1", "--run", "once", "--quiet"]);
    assert!(train(&args, dir.path()).status.success());
    let again = train(&args, dir.path());
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));

    // Cooldown branches: a run that is not there, a budget past the run's end, a unit that is not one.
    for (args, needle) in [
        (vec!["cooldown", "runs/none", "--budget", "1"], "runs/none"),
        (vec!["cooldown", "runs/once", "--budget", "9"], "--budget"),
        (vec!["cooldown", "runs/once", "--budget", "1", "--unit", "joules"], "joules"),
    ] {
        let out = train(&args, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?} should mention {needle}: {err}");
    }
}

#[test]
fn an_incremental_run_states_its_equal_compute_steps_and_stops_at_the_flop_one() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let mut args = small();
    args.extend(["--set", "model.layers=4", "--set", "steps=8", "--schedule", "incremental", "--stages", "2"]);
    args.extend(["--run", "inc", "--set", "val_every=0"]);
    let out = train(&args, dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("equal compute with the 8-step baseline: step") && err.contains("in paper units"), "{err}");
    assert!(err.contains("stops at equal compute in flops"), "{err}");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("runs/inc/run.json")).unwrap()).unwrap();
    assert_eq!(info["schedule"]["until"]["equal_compute"], "flops");
    assert_eq!(info["format"], run_dir::header::FORMAT);
    let flops_step = info["plan"]["equal_compute"]["flops"]["step"].as_u64().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("step {flops_step}/{flops_step}")));
}

#[test]
fn bench_prints_one_json_line_per_phase_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["bench"];
    args.extend(common::SMALL_MODEL_ARGS);
    args.extend(["--set", "model.layers=4", "--set", "tokens_per_step=16"]);
    args.extend(["--schedule", "incremental", "--stages", "2", "--warmup", "1", "--steps", "2"]);
    let out = train(&args, dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let configs: Vec<&str> = lines.iter().map(|l| l["config"].as_str().unwrap()).collect();
    assert_eq!(configs, ["full", "stage 1 phase1", "stage 1 phase2", "stage 2 phase1", "stage 2 phase2"]);
    // Scripts read the stage and phase as fields, not from the label.
    let places: Vec<(u64, &str)> =
        lines.iter().map(|l| (l["stage"].as_u64().unwrap(), l["phase"].as_str().unwrap())).collect();
    assert_eq!(places, [(0, "baseline"), (1, "phase1"), (1, "phase2"), (2, "phase1"), (2, "phase2")]);
    assert_eq!(lines[0]["measured_ratio"], 1.0);
    assert_eq!(lines[0]["predicted_ratio"], 1.0);
    for l in &lines {
        assert!(l["ms_per_step"].as_f64().unwrap() > 0.0 && l["tokens_per_s"].as_f64().unwrap() > 0.0);
        assert!(l["mfu"].is_null(), "no MFU without a peak on CPU");
    }
    // Phase 1 of stage 2 trains 2 of 4 blocks: the FLOP model predicts less than a full step.
    assert!(lines[3]["predicted_ratio"].as_f64().unwrap() < 1.0);
    // A schedule the model cannot take is bad input, named with this binary's flag.
    let mut bad = vec!["bench"];
    bad.extend(common::SMALL_MODEL_ARGS);
    bad.extend(["--set", "tokens_per_step=16", "--schedule", "incremental", "--stages", "3"]);
    let out = train(&bad, dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--stages"), "{err}");
}

/// `train data --source files`: a user's own documents (a directory of text and JSON lines, one
/// file compressed) become shards a run trains on, named with their SHA-256 in the manifest; a
/// bad line is one message naming the file and line, exit 2, and no shard.
#[test]
fn a_users_own_corpus_becomes_shards_a_run_trains_on() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("my-corpus");
    std::fs::create_dir_all(&src).unwrap();
    let text = "the quick brown fox jumps over the lazy dog. ";
    for i in 0..4 {
        std::fs::write(src.join(format!("essay{i}.txt")), text.repeat(30 + i)).unwrap();
    }
    let lines: String = (0..6).map(|i| format!("{{\"text\": \"{}\", \"id\": {i}}}\n", text.repeat(20))).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, lines.as_bytes()).unwrap();
    std::fs::write(src.join("web.jsonl.gz"), gz.finish().unwrap()).unwrap();

    // `train data` on the corpus directory, byte tokens, into `out`.
    let data = |out: &str, extra: &[&str]| {
        let mut args = vec!["data", "--source", "files", "--input", "my-corpus", "--tokenizer", "bytes"];
        args.extend(["--out", out, "--quiet"]);
        args.extend_from_slice(extra);
        train(&args, dir.path())
    };
    let out = data("data/mine", &["--val-every", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10 documents from 5 file(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("data/mine/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["sources"].as_array().unwrap().len(), 5);
    assert_eq!(manifest["sources"][4]["format"], "jsonl.gz");
    assert_eq!(manifest["sources"][4]["sha256"].as_str().unwrap().len(), 64);

    let mut args = small();
    for a in args.iter_mut().filter(|a| a.starts_with("data_dir=")) {
        *a = "data_dir=data/mine";
    }
    args.extend(["--set", "steps=2", "--run", "mine", "--quiet"]);
    let run = train(&args, dir.path());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    std::fs::write(src.join("broken.jsonl"), "{\"text\": \"fine\"}\n{\"body\": \"no text\"}\n").unwrap();
    let bad = data("data/broken", &[]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("broken.jsonl:2") && stderr.contains("--text-field"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data/broken"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing half-written: {left:?}");
}
