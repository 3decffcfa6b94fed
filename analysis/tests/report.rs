//! The report on hand-written run logs whose answers are known.

use std::path::Path;

use analysis::figures::Figure;
use analysis::report::{build, ReportOptions};
use analysis::Unit;
use approx::assert_relative_eq;
use cost_model::{IncrementalSchedule, Phase, Until};
use run_dir::{IncrementalSpec, LineKind, MetricsLine, RunDir, RunHeader, ScheduleSpec, TrainConfig};

fn line(run: &str, kind: LineKind, step: u64, units: f64, phase: Phase) -> MetricsLine {
    MetricsLine {
        step,
        tokens: step * 10,
        paper_units: units,
        flops: units * 100.0,
        seconds: units,
        stage: 1,
        active_layers: 2,
        trainable_params: 1,
        ..MetricsLine::empty(run, kind, phase)
    }
}

/// Write a run: `cost(step)` is its cumulative compute, `val` its validation points.
fn write_run(dir: &Path, name: &str, schedule: &str, steps: u64, cost: impl Fn(u64) -> f64, val: &[(u64, f64)]) {
    let run = dir.join(name);
    std::fs::create_dir_all(&run).unwrap();
    let config = TrainConfig { steps: 10, ..TrainConfig::preset("tiny").unwrap() };
    let spec = match schedule {
        "baseline" => ScheduleSpec::baseline(),
        _ => ScheduleSpec::Incremental(IncrementalSpec {
            stages: IncrementalSchedule::even(2),
            until: Until::Steps(steps),
            ..Default::default()
        }),
    };
    let plan = spec.plan(&config).unwrap();
    let header = RunHeader::new(name, config, spec, plan, "cpu".into(), "2.11.0");
    RunDir::new(&run).write_header(&header).unwrap();
    let phase = if schedule == "baseline" { Phase::Baseline } else { Phase::Continual };
    let mut text = String::new();
    for s in 1..=steps {
        let l = MetricsLine { loss: Some(5.0 - 0.1 * s as f64), ..line(name, LineKind::Train, s, cost(s), phase) };
        text += &(serde_json::to_string(&l).unwrap() + "\n");
        if let Some(&(_, v)) = val.iter().find(|(vs, _)| *vs == s) {
            let l = MetricsLine { val_loss: Some(v), ..line(name, LineKind::Val, s, cost(s), phase) };
            text += &(serde_json::to_string(&l).unwrap() + "\n");
        }
    }
    std::fs::write(run.join("metrics.jsonl"), text).unwrap();
}

#[test]
fn aligns_on_compute_and_finds_the_catch_up_point() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    // Baseline: 10 full steps of 1 unit; final val loss 2.0.
    write_run(&runs, "base", "baseline", 10, |s| s as f64, &[(5, 3.0), (10, 2.0)]);
    // Incremental: 8 half-cost steps, then full steps; the budget of 10 units is spent at step 14.
    let inc = |s: u64| if s <= 8 { 0.5 * s as f64 } else { 4.0 + (s - 8) as f64 };
    write_run(&runs, "inc", "incremental", 20, inc, &[(7, 4.0), (14, 2.5), (20, 1.5)]);
    // A garbage line and a torn last line in the incremental log are skipped, not fatal.
    let metrics = runs.join("inc/metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).unwrap();
    text.insert_str(0, "garbage\n");
    text.push_str("{\"run\":\"inc\",\"kind\":\"tr");
    std::fs::write(&metrics, text).unwrap();

    let out = dir.path().join("reports");
    let report =
        build(&ReportOptions { runs_dir: runs.clone(), out_dir: out.clone(), baseline: None, budget_step: None })
            .unwrap();
    assert_eq!(report.numbers.baseline, "base");
    assert_eq!(report.skipped.iter().map(|s| s.line).collect::<Vec<_>>(), vec![1, 25]);
    let c = &report.numbers.comparisons[0];
    for unit in Unit::ALL {
        let p = c.at(unit).unwrap();
        assert_relative_eq!(p.step.unwrap(), 14.0);
        assert_relative_eq!(p.val_loss.unwrap(), 2.5);
    }
    // Val loss 2.0 is crossed halfway from step 14 (2.5) to 20 (1.5): step 17, where the run has
    // spent 4 + 9 = 13 units, 1.3× the baseline's 10.
    assert_relative_eq!(c.catch_up.step.unwrap(), 17.0);
    for (_, m) in &c.catch_up.multiples {
        assert_relative_eq!(m.unwrap(), 1.3, epsilon = 1e-12);
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| inc | 14.0 |"), "{md}");
    assert!(md.contains("+0.5000"));
    assert!(md.contains("1.300"));
    for figure in [Figure::LossVsStep, Figure::ValLossVsFlops, Figure::ValLossVsSeconds] {
        for ext in ["svg", "png"] {
            let f = out.join(format!("{}.{ext}", figure.stem()));
            assert!(std::fs::metadata(&f).map(|m| m.len() > 1000).unwrap_or(false), "{f:?} missing");
        }
    }
    assert!(!out.join(format!("{}.png", Figure::HellaswagVsStep.stem())).exists(), "no HellaSwag data, no Figure 1");

    // A budget inside the baseline: its compute at step 5 is 5 units, spent by the incremental run at step 9.
    let early =
        build(&ReportOptions { runs_dir: runs.clone(), out_dir: out.clone(), baseline: None, budget_step: Some(5.0) })
            .unwrap();
    assert_relative_eq!(early.numbers.comparisons[0].at_budget[0].step.unwrap(), 9.0);

    // No baseline: a one-line error naming the fix.
    std::fs::remove_dir_all(runs.join("base")).unwrap();
    let err = build(&ReportOptions { runs_dir: runs, out_dir: out, baseline: None, budget_step: None }).unwrap_err();
    assert!(err.to_string().contains("no baseline run"));
}
