//! The device script's summary (scripts/gpu-summary.py) reads what `train bench` and the PyTorch
//! anchor really print: a field renamed on either side breaks this test here, not the one call a
//! GPU task gets. The anchor's lines are written as scripts/anchors/torch_gpt.py prints them (its
//! CPU dry run, `DEVICE=cpu bash .gpu/run.sh`, prints real ones).

use std::path::Path;
use std::process::Command;

mod common;

fn bench(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["bench"];
    args.extend(common::SMALL_MODEL_ARGS);
    args.extend(["--set", "model.layers=4", "--set", "tokens_per_step=16", "--warmup", "1", "--steps", "2"]);
    args.extend(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_train")).args(&args).current_dir(dir).output().expect("run train");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn summary(out: &Path) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/gpu-summary.py");
    let run = Command::new("python3").arg(script).arg(out).output().expect("python3 runs the summary");
    let text = String::from_utf8(run.stdout).unwrap();
    assert_eq!(std::fs::read_to_string(out.join("summary.md")).unwrap(), text);
    (run.status.success(), text)
}

fn metrics(out: &Path, run: &str, losses: &[f64]) {
    let dir = out.join("runs").join(run);
    std::fs::create_dir_all(&dir).unwrap();
    let lines: Vec<String> = losses
        .iter()
        .enumerate()
        .map(|(i, l)| format!(r#"{{"run":"{run}","kind":"train","step":{},"loss":{l}}}"#, i + 1))
        .collect();
    std::fs::write(dir.join("metrics.jsonl"), lines.join("\n")).unwrap();
}

#[test]
fn summary_puts_our_bench_beside_the_pytorch_anchor_and_counts_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let graphs = bench(out, &["--schedule", "baseline"]);
    std::fs::write(out.join("ours-gpt2-graphs.jsonl"), &graphs).unwrap();
    std::fs::write(
        out.join("ours-gpt2-eager.jsonl"),
        bench(out, &["--schedule", "baseline", "--set", "cuda_graphs=false"]),
    )
    .unwrap();
    std::fs::write(out.join("ours.jsonl"), bench(out, &["--schedule", "incremental", "--stages", "2"])).unwrap();
    std::fs::write(out.join("ours-ce-torch.jsonl"), bench(out, &["--set", "loss_kernel=cross_entropy"])).unwrap();
    std::fs::write(out.join("variants.tsv"), "ce-torch\tPyTorch cross_entropy\n").unwrap();
    // The anchor: eager at half our speed, compile with CUDA graphs at our speed.
    let full: serde_json::Value = serde_json::from_str(graphs.lines().next().unwrap()).unwrap();
    let ours = full["tokens_per_s"].as_f64().unwrap();
    let shape = r#""layers": 4, "d_model": 16, "context": 8, "vocab": 320, "batch": 2"#;
    let anchor = [
        format!(r#"{{"what": "device", "device": "Test GPU", "torch": "2.11.0", {shape}}}"#),
        format!(
            r#"{{"what": "full_step", "mode": "eager", "ms": 50.0, "tok_s": {}, "first_step_s": 1.0, "params": 9, {shape}}}"#,
            ours / 2.0
        ),
        format!(
            r#"{{"what": "full_step", "mode": "compile-graphs", "ms": 40.0, "tok_s": {ours}, "first_step_s": 30.0, "params": 9, {shape}}}"#
        ),
        format!(r#"{{"what": "full_step", "mode": "compile", "error": "no compiler", {shape}}}"#),
    ];
    std::fs::write(out.join("torch-gpt2.jsonl"), anchor.join("\n")).unwrap();
    let phases = [
        format!(r#"{{"what": "full_step", "mode": "eager", "ms": 50.0, "tok_s": 1.0, "first_step_s": 1.0, "params": 9, {shape}}}"#),
        format!(r#"{{"what": "phase_step", "stages": 2, "stage": 1, "phase": 1, "active": 2, "ms": 25.0, "tok_s": 1.0, {shape}}}"#),
    ]
    .join("\n");
    std::fs::write(out.join("torch.jsonl"), phases).unwrap();
    metrics(out, "det-a", &[5.0, 4.5, 4.25]);
    metrics(out, "det-b", &[5.0, 4.5, 4.25]);
    metrics(out, "det-c", &[5.0, 4.5, 4.2500001]);
    std::fs::write(out.join("ours-stderr.log"), "training gpt2-124m\n").unwrap();

    let (ok, text) = summary(out);
    assert!(ok, "no warning line: success\n{text}");
    assert!(text.starts_with("# Device run: Test GPU"), "{text}");
    // gpt2 row: ours / eager 2.00x, ours / PyTorch's best (compile + graphs) 1.00x.
    let row = text.lines().find(|l| l.starts_with("| gpt2, 2 x 8")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("| 2.00x | 1.00x |"), "{row}");
    assert!(text.contains("GPT-2 124M at >= 1.2x PyTorch eager: met (2.00x)"), "{text}");
    assert!(text.contains("| PyTorch cross_entropy |"), "{text}");
    for phase in ["stage 1 phase1", "stage 1 phase2", "stage 2 phase1", "stage 2 phase2"] {
        assert!(text.contains(&format!("| {phase} (")), "{phase} missing:\n{text}");
    }
    let stage1 = text.lines().find(|l| l.starts_with("| stage 1 phase1 (2 active)"));
    assert!(stage1.is_some_and(|l| l.ends_with("| 25.0 | 0.500 |")), "{text}");
    assert!(text.contains("a second run: 3 steps compared, bit-identical."), "{text}");
    assert!(text.contains("a run stopped at 15 and resumed: 3 steps compared, NOT identical"), "{text}");
    assert!(text.contains("zero warning lines: met (0)"), "{text}");

    // One deprecation warning fails the summary.
    std::fs::write(out.join("ours-stderr.log"), "[W] at::autocast::is_enabled() is deprecated\n").unwrap();
    let (ok, text) = summary(out);
    assert!(!ok && text.contains("zero warning lines: NOT met (1)"), "{text}");
}
