//! `train study` end to end on a design file of a tiny model: the sweep chooses each arm's rate
//! (the lowest annealed loss), the seeds then run at it, a growing arm once per budget, a
//! full-model arm once with a branch; `--jobs 2` trains the same runs, bit for bit, as one job;
//! a finished study says so and trains nothing.

use std::path::Path;
use std::process::Command;

use run_dir::study::{final_val_loss, StudyDesign};
use run_dir::{LineKind, RunDir};

mod common;

const DESIGN: &str = r#"
format = 4
runs_dir = "unused"
protocol = "fair"
quick = true
preset = "tiny"
device = "cpu"
overrides = [
  "model.layers=4", "model.heads=2", "model.d_model=32", "model.context=16", "micro_batch=4",
  "tokens_per_step=128", "warmup_steps=2", "val_tokens=128", "steps=16", "val_every=8",
  "checkpoint_every=0", "data_dir=DATA",
]
seeds = [1]
budgets = [0.5, 1.0]
budget_unit = "flops"
regime = "a test"
trade_offs = "a test"

[sweep]
rates = [0.002, 0.004]
seeds = [7]
budget = 1.0
arms = "each"

[[arms]]
name = "baseline"
label = "full model"
schedule = { kind = "baseline" }

[[arms]]
name = "one-layer"
label = "one-layer expansion"
schedule = { kind = "incremental", method = "one-layer" }
"#;

fn study(design: &Path, runs: &Path, jobs: &str, cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["study", "--design"])
        .arg(design)
        .arg("--runs-dir")
        .arg(runs)
        .args(["--jobs", jobs, "--quiet"])
        .env("STAGEWISE_THREADS", "1")
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn losses(run: &Path) -> Vec<u64> {
    common::read_metrics(run).iter().filter(|l| l.kind == LineKind::Train).map(|l| l.loss.unwrap().to_bits()).collect()
}

#[test]
fn the_sweep_picks_each_arms_rate_and_two_jobs_train_what_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::text_dataset(dir.path(), "the cat sat on the mat. a dog ran in the fog. ", 200, 1000);
    let design = dir.path().join("design.toml");
    std::fs::write(&design, DESIGN.replace("DATA", data.to_str().unwrap())).unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    for (runs, jobs) in [(&one, "1"), (&two, "2")] {
        let out = study(&design, runs, jobs, dir.path());
        assert!(out.status.success(), "--jobs {jobs}: {}", String::from_utf8_lossy(&out.stderr));
    }

    let d = StudyDesign::read(&one).unwrap().unwrap();
    let rates = d.chosen_rates(&one);
    for arm in ["baseline", "one-layer"] {
        // The chosen rate is the one whose annealed sweep branch had the lower loss.
        let loss = |rate: &str| final_val_loss(&RunDir::new(one.join(format!("{arm}-lr{rate}-s7")))).unwrap();
        let best = if loss("0.002") <= loss("0.004") { 0.002 } else { 0.004 };
        assert_eq!(rates[arm], best, "{arm}");
    }
    // The seeds ran at it: one run with a branch for the full model, one per budget for the grown.
    for (run, arm) in
        [("baseline-s1", "baseline"), ("one-layer-b0.5-s1", "one-layer"), ("one-layer-b1-s1", "one-layer")]
    {
        let header = RunDir::new(one.join(run)).read_header().unwrap();
        assert_eq!(header.config.lr_max, rates[arm], "{run}");
    }
    assert!(RunDir::new(one.join("baseline-s1/cooldowns/flops-0.5")).is_finished());
    let planned = RunDir::new(one.join("one-layer-b0.5-s1")).read_header().unwrap();
    assert_eq!(planned.config.steps, 8, "the budget-0.5 run is planned for half the steps");
    // The full-model run logs its un-annealed loss where its branch ends.
    let branch_end =
        RunDir::new(one.join("baseline-s1/cooldowns/flops-0.5")).read_header().unwrap().branch.unwrap().to_step;
    let main = common::read_metrics(&one.join("baseline-s1"));
    assert!(main.iter().any(|l| l.kind == LineKind::Val && l.step == branch_end), "no val line at step {branch_end}");

    // Two workers trained every run and branch exactly as one process did.
    for run in d.runs() {
        for name in run.dirs(d.budget_unit) {
            assert_eq!(losses(&one.join(&name)), losses(&two.join(&name)), "{name}");
        }
    }
    // Finished: said in one line, nothing trained.
    let again = study(&design, &two, "2", dir.path());
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success() && said.contains("nothing to train"), "{said}");

    // A run trained at a rate its arm no longer has (as after a sweep extended since) is named,
    // never counted as finished.
    let header = two.join("baseline-s1/run.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&header).unwrap()).unwrap();
    json["config"]["lr_max"] = serde_json::json!(0.5);
    std::fs::write(&header, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let stale = study(&design, &two, "2", dir.path());
    let said = String::from_utf8_lossy(&stale.stderr);
    assert!(!stale.status.success(), "a stale run passed: {said}");
    assert!(said.contains("baseline-s1 (trained at 0.5, its arm's rate is now"), "{said}");
}

#[test]
fn a_full_disk_stops_the_study_in_one_line_it_resumes_and_a_damaged_log_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::text_dataset(dir.path(), "the cat sat on the mat. a dog ran in the fog. ", 200, 1000);
    let design = dir.path().join("design.toml");
    std::fs::write(&design, DESIGN.replace("DATA", data.to_str().unwrap())).unwrap();
    let (reference, full) = (dir.path().join("reference"), dir.path().join("full"));
    let out = study(&design, &reference, "1", dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The disk fills up where a run writes its last checkpoint (step 16): the study stops, the
    // failure said once, then the other worker stopped.
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["study", "--design"])
        .arg(&design)
        .arg("--runs-dir")
        .arg(&full)
        .args(["--jobs", "2", "--quiet"])
        .env("STAGEWISE_THREADS", "1")
        .env("STAGEWISE_FAILPOINT", "disk-full@16")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    let full_lines: Vec<&str> = said.lines().filter(|l| l.contains("the disk is full at step 16")).collect();
    assert!(!full_lines.is_empty() && full_lines.len() <= 2, "{said}");
    assert!(said.contains("run the same command again to continue"), "{said}");
    // Space freed: the same command finishes the study, every log as the uninterrupted study's.
    let out = study(&design, &full, "2", dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d = StudyDesign::read(&reference).unwrap().unwrap();
    for run in d.runs() {
        for name in run.dirs(d.budget_unit) {
            assert_eq!(losses(&reference.join(&name)), losses(&full.join(&name)), "{name}");
        }
    }

    // A finished run's log with a torn line is named, file and line, and the study refused.
    let log = full.join("baseline-s1/metrics.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let half = lines[2].len() / 2;
    lines[2].truncate(half);
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = study(&design, &full, "2", dir.path());
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("baseline-s1/metrics.jsonl:3") && said.contains("move"), "{said}");
}
