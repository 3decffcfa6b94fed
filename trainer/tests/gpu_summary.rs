//! The device script's summary (scripts/gpu-summary.py) reads what `train bench` really prints:
//! a field renamed on either side breaks this test here, not the one call a GPU task gets.

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

#[test]
fn summary_puts_our_bench_beside_the_pytorch_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let ours = bench(out, &["--schedule", "incremental", "--stages", "2"]);
    std::fs::write(out.join("ours.jsonl"), &ours).unwrap();
    std::fs::write(out.join("ours-ce-torch.jsonl"), bench(out, &["--set", "loss_kernel=cross_entropy"])).unwrap();
    std::fs::write(out.join("variants.tsv"), "ce-torch\tbf16, PyTorch cross_entropy\n").unwrap();
    // The anchor's lines as scripts/anchors/torch_gpt.py prints them (numbers made up, ratios
    // known; its CPU dry run in scripts/gpu-bench.sh prints the real ones).
    let full: serde_json::Value = serde_json::from_str(ours.lines().next().unwrap()).unwrap();
    let tokens_per_s = full["tokens_per_s"].as_f64().unwrap();
    let eager = tokens_per_s / 2.0;
    let shape = r#""layers": 4, "d_model": 8, "context": 8, "vocab": 320, "batch": 2"#;
    let anchor = [
        format!(r#"{{"what": "device", "device": "Test GPU", "torch": "2.11.0", {shape}}}"#),
        format!(
            r#"{{"what": "full_step", "mode": "eager", "ms": 50.0, "tok_s": {eager}, "first_step_s": 1.0, "params": 9, {shape}}}"#
        ),
        format!(
            r#"{{"what": "phase_step", "stages": 2, "stage": 1, "phase": 1, "active": 2, "ms": 25.0, "tok_s": 1.0, {shape}}}"#
        ),
        format!(
            r#"{{"what": "full_step", "mode": "compile", "ms": 40.0, "tok_s": 1.0, "first_step_s": 30.0, "params": 9, {shape}}}"#
        ),
        format!(r#"{{"what": "full_step", "mode": "compile-graphs", "error": "no compiler", {shape}}}"#),
    ];
    std::fs::write(out.join("torch.jsonl"), anchor.join("\n")).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/gpu-summary.py");
    let run = Command::new("python3").arg(script).arg(out).output().expect("python3 runs the summary");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let text = String::from_utf8(run.stdout).unwrap();
    assert_eq!(std::fs::read_to_string(out.join("summary.md")).unwrap(), text);
    assert!(text.starts_with("# Device run: Test GPU"), "{text}");
    assert!(text.contains("| 2.000x |"), "our tokens/s is twice the made-up eager figure:\n{text}");
    assert!(text.contains("| stagewise, bf16, PyTorch cross_entropy |"), "{text}");
    // Every phase of the 2-stage schedule gets a row; stage 1 phase 1 (2 active) has PyTorch's
    // 25 ms next to its 50 ms full step.
    for phase in ["stage 1 phase1", "stage 1 phase2", "stage 2 phase1", "stage 2 phase2"] {
        assert!(text.contains(&format!("| {phase} (")), "{phase} missing:\n{text}");
    }
    let stage1 = text.lines().find(|l| l.starts_with("| stage 1 phase1 (2 active)"));
    assert!(stage1.is_some_and(|l| l.ends_with("| 25.0 | 0.500 |")), "{text}");
}
