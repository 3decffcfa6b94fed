//! The study report on hand-written logs whose answers are known: annealed losses per arm and
//! seed at three budgets (main runs and cooldown branches), paired differences, the compute to
//! match the baseline, the verdict sentence, and the HellaSwag coverage rule.

use std::path::Path;

use analysis::report::{build, ReportOptions};
use analysis::stats::{t_interval, Reach, Verdict};
use approx::assert_relative_eq;
use cost_model::Phase;
use run_dir::cooldown::CooldownBranch;
use run_dir::study::{StudyDesign, StudyFile, StudyRun};
use run_dir::{LineKind, MetricsLine, RunDir, RunHeader};

/// Baseline annealed losses at budgets 0.5, 1, 2; seed s adds 0.01·s.
fn baseline_loss(budget: f64, seed: u64) -> f64 {
    let base = if budget < 0.75 {
        3.0
    } else if budget < 1.5 {
        2.5
    } else {
        2.0
    };
    base + 0.01 * seed as f64
}

/// The incremental arm: 0.25 below the baseline at every budget, plus a seed-dependent wobble.
fn inc_loss(budget: f64, seed: u64) -> f64 {
    baseline_loss(budget, seed) - 0.25 + [0.0, 0.02, -0.02][seed as usize - 1]
}

fn design() -> StudyDesign {
    let mut d = StudyFile::load("cpu").unwrap().design;
    d.arms.truncate(2); // baseline, inc4
    d.ablations.clear();
    d
}

fn write_log(dir: &RunDir, header: &RunHeader, step: u64, loss: f64, hellaswag: Option<(u64, u64)>) {
    std::fs::create_dir_all(dir.path()).unwrap();
    dir.write_header(header).unwrap();
    let line = |kind| MetricsLine {
        step,
        flops: header.plan.cumulative(step).flops,
        seconds: step as f64 * 0.01,
        ..MetricsLine::empty(&header.name, kind, Phase::Baseline)
    };
    let mut text = serde_json::to_string(&MetricsLine { loss: Some(loss), ..line(LineKind::Train) }).unwrap() + "\n";
    text += &(serde_json::to_string(&MetricsLine { val_loss: Some(loss), ..line(LineKind::Val) }).unwrap() + "\n");
    if let Some((n, skipped)) = hellaswag {
        let hs = MetricsLine {
            n: Some(n),
            n_skipped: Some(skipped),
            acc: Some(0.3),
            acc_norm: Some(0.3),
            ..line(LineKind::Hellaswag)
        };
        text += &(serde_json::to_string(&hs).unwrap() + "\n");
    }
    std::fs::write(dir.metrics_path(), text).unwrap();
}

fn write_study(runs: &Path, d: &StudyDesign, hellaswag: (u64, u64)) {
    std::fs::create_dir_all(runs).unwrap();
    d.write(runs).unwrap();
    for run in d.runs() {
        let StudyRun { name, arm, seed, budgets } = &run;
        let (config, schedule) = d.run_config(&run).unwrap();
        let plan = schedule.plan(&config).unwrap();
        let loss = |b: f64| if arm.name == "baseline" { baseline_loss(b, *seed) } else { inc_loss(b, *seed) };
        let main = RunDir::new(runs.join(name));
        let header = RunHeader::new(name, config.clone(), schedule.clone(), plan.clone(), "cpu".into(), "2.11.0");
        write_log(&main, &header, plan.total_steps(), loss(2.0), Some(hellaswag));
        for &budget in budgets.iter().filter(|&&b| b < 2.0) {
            let point =
                run_dir::cooldown::branch_point(&plan, config.cooldown_unit, budget, config.cooldown_fraction).unwrap();
            let branch = main.cooldown(config.cooldown_unit, budget);
            let mut h = RunHeader::new(
                &run_dir::cooldown::branch_run_name(name, config.cooldown_unit, budget),
                config.clone(),
                schedule.clone(),
                plan.truncated(point.to_step),
                "cpu".into(),
                "2.11.0",
            );
            h.branch = Some(CooldownBranch {
                parent: name.clone(),
                budget,
                unit: config.cooldown_unit,
                from_step: point.from_step,
                to_step: point.to_step,
            });
            write_log(&branch, &h, point.to_step, loss(budget), None);
        }
    }
}

#[test]
fn the_study_report_computes_intervals_and_a_verdict_from_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let d = design();
    write_study(&runs, &d, (0, 10_042));
    let out = dir.path().join("out");
    // The study fixes its comparison: a baseline or budget asked for is refused, not ignored.
    let other =
        ReportOptions { runs_dir: runs.clone(), out_dir: out.clone(), baseline: Some("x".into()), budget_step: None };
    assert!(build(&other).unwrap_err().to_string().contains("drop --baseline and --budget"));
    let report =
        build(&ReportOptions { runs_dir: runs, out_dir: out.clone(), baseline: None, budget_step: None }).unwrap();
    let s = report.study.as_ref().expect("a study report");
    assert!(s.missing.is_empty(), "{:?}", s.missing);

    // At budget 1 the paired differences are −0.25 + (0, 0.02, −0.02): mean −0.25, s = 0.02.
    let at1 = s.at_budget.iter().find(|a| a.arm == "inc4" && a.budget == 1.0).unwrap();
    let diff = at1.minus_baseline.unwrap();
    assert_relative_eq!(diff.mean, -0.25, epsilon = 1e-12);
    let (low, high) = diff.ci.unwrap();
    assert_relative_eq!((high - low) / 2.0, 4.302653 * 0.02 / 3f64.sqrt(), epsilon = 1e-6);
    let base1 = s.at_budget.iter().find(|a| a.arm == "baseline" && a.budget == 1.0).unwrap();
    assert_relative_eq!(base1.val_loss.mean, 2.52, epsilon = 1e-12);
    assert!(base1.minus_baseline.is_none());

    // The baseline's loss at budget 1 (2.5 + 0.01 s) lies between the arm's at 0.5 and at 1:
    // the arm reaches it at exp(ln 0.5 + t·ln 2), t = (l(0.5) − target) / (l(0.5) − l(1)).
    let c = &s.catch_up[0];
    let expected: Vec<f64> = (1..=3u64)
        .map(|seed| {
            let (l0, l1, target) = (inc_loss(0.5, seed), inc_loss(1.0, seed), baseline_loss(1.0, seed));
            let t = (l0 - target) / (l0 - l1);
            (0.5f64.ln() + t * 2f64.ln()).exp()
        })
        .collect();
    for ((seed, r), want) in c.per_seed.iter().zip(&expected) {
        match r {
            Reach::At(m) => assert_relative_eq!(*m, *want, epsilon = 1e-12),
            other => panic!("seed {seed}: {other:?}"),
        }
    }
    let multiple = t_interval(&expected).unwrap();
    assert!(multiple.below(1.0), "{multiple:?}");
    assert_eq!(c.verdict, Verdict::Saves { multiple, at_smallest: 0 });
    let md = &report.markdown;
    let sentence = c.verdict.sentence();
    assert!(sentence.starts_with("saves 29% compute (95% CI "), "{sentence}");
    assert!(md.contains(&format!("- **incremental, 4 stages**: {sentence}.")), "{md}");
    // No example fit the context: Figure 1 is left out, and the report says why.
    assert!(md.contains("Figure 1 (HellaSwag vs step) is omitted: 0 of 10042 examples fit"), "{md}");
    assert!(!out.join("fig1_hellaswag_vs_step.png").exists());
    for stem in ["fig_annealed_vs_flops", "fig_annealed_vs_seconds", "fig2_loss_vs_step"] {
        assert!(out.join(format!("{stem}.png")).is_file(), "{stem} missing");
    }
}

#[test]
fn a_study_with_runs_missing_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let d = design();
    write_study(&runs, &d, (6000, 4042));
    std::fs::remove_dir_all(runs.join("inc4-s3")).unwrap();
    let out = dir.path().join("out");
    let report = build(&ReportOptions { runs_dir: runs, out_dir: out, baseline: None, budget_step: None }).unwrap();
    let s = report.study.unwrap();
    assert_eq!(s.missing.len(), 3, "{:?}", s.missing);
    assert!(report.markdown.contains("no log yet: `inc4-s3`"));
    assert_eq!(s.catch_up[0].per_seed.len(), 2, "two seeds left to pair");
    // 6,000 of 10,042 fit: the coverage rule keeps the figure.
    assert!(report.markdown.contains("HellaSwag: 6000 of 10042 examples fit the context."));
}
