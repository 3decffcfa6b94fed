//! A run directory written before run files were versioned (format 1: no `format` in run.json,
//! `seed` and `segment` in state.json, the plan without stage starts) resumes with today's
//! trainer and continues bit for bit: the fixture was stopped at step 4 by the old trainer, and
//! resuming it must reproduce the old trainer's uninterrupted run through the stage-2 growth (zero
//! growth, step 5) and the continual optimizer reset (step 9) to step 14.
//!
//! Bits written on another machine are only reproducible under the kernels they were made with:
//! the fixture's machine ran ATen's AVX2 kernels and oneMKL's AVX2 path, and on a CPU with
//! AVX-512 libtorch picks other kernels by default (the losses then differ from step 6 or 9 in
//! the last bits). So the resume pins both, `ATEN_CPU_CAPABILITY=avx2` and `MKL_CBWR=AVX2`,
//! which any x86-64 CPU with AVX2 computes alike.

use std::path::Path;
use std::process::Command;

use run_dir::{LineKind, MetricsLine, RunDir};

mod common;

fn fixture(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1").join(path)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn losses(lines: &[MetricsLine], kind: LineKind) -> Vec<(u64, u64)> {
    lines.iter().filter(|l| l.kind == kind).map(|l| (l.step, l.loss.or(l.val_loss).unwrap().to_bits())).collect()
}

#[test]
fn a_format_1_run_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    // The data the fixture was trained on (see make_format1_fixture.sh).
    common::text_dataset(dir.path(), "the cat sat on the mat. ", 300, 1500);
    let run = dir.path().join("runs/format1-run");
    copy_dir(&fixture("run"), &run);
    let header_before = std::fs::read(run.join("run.json")).unwrap();

    let header = RunDir::new(&run).read_header().unwrap();
    assert_eq!(header.format, run_dir::header::FORMAT, "read as the current format");
    let starts: Vec<u64> = header.plan.segments.iter().filter(|s| s.grows.is_some()).map(|s| s.first_step).collect();
    assert_eq!(starts, vec![1, 5], "the rebuilt plan says where each stage grows");

    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--resume", "runs/format1-run", "--device", "cpu", "--quiet"])
        .env("ATEN_CPU_CAPABILITY", "avx2")
        .env("MKL_CBWR", "AVX2")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let resumed = common::read_metrics(&run);
    let expected: Vec<MetricsLine> = std::fs::read_to_string(fixture("uninterrupted-metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(losses(&resumed, LineKind::Train), losses(&expected, LineKind::Train));
    assert_eq!(losses(&resumed, LineKind::Val), losses(&expected, LineKind::Val));
    assert_eq!(losses(&resumed, LineKind::Train).len(), 14);
    // The run's own header is left as it was written.
    assert_eq!(std::fs::read(run.join("run.json")).unwrap(), header_before);
}
