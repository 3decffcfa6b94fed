//! The study report on hand-written logs whose answers are known: annealed losses per arm and
//! seed (the baseline's run with cooldown branches at seven budgets, a growing arm's run per
//! budget), paired differences and their detectable size, both readings of the compute each arm
//! needs (on the baseline's curve, and along its own) with their Holm-adjusted verdicts, the
//! learning-rate sweep with its standard errors and the checks of other arms, and the HellaSwag
//! coverage rule.

use std::path::Path;

use analysis::figures::Figure;
use analysis::report::{build, ReportOptions};
use analysis::stats::{log_t_interval, minimum_detectable, sample_sd, Reach, Verdict};
use approx::assert_relative_eq;
use cost_model::Phase;
use run_dir::cooldown::CooldownBranch;
use run_dir::study::{Rates, RunRate, StudyDesign, StudyFile, Sweep, SweepArms};
use run_dir::{LineKind, MetricsLine, RunDir, RunHeader};

/// Baseline annealed losses at budgets 0.25, 0.5, 1, 2; seed s adds 0.01·s.
fn baseline_loss(budget: f64, seed: u64) -> f64 {
    3.0 - 0.5 * budget.log2() + 0.01 * seed as f64
}

/// The growing arm: 0.25 below the baseline at every budget, plus a seed-dependent wobble.
fn grown_loss(budget: f64, seed: u64) -> f64 {
    baseline_loss(budget, seed) - 0.25 + [0.0, 0.02, -0.02][seed as usize - 1]
}

/// The CPU design with two arms (the baseline at seven budgets, the paper's S = 4 at 0.5, 1 and
/// 2), three seeds, no sweep.
fn design() -> StudyDesign {
    let mut d = StudyFile::load("cpu").unwrap().design;
    d.arms.truncate(2);
    d.seeds.truncate(3);
    d.sweep = None;
    d
}

/// One training and one validation line at `step` (plus HellaSwag), and a validation at
/// `val_at` with `val_loss` (the un-annealed loss where a branch ends), if given.
fn write_log(
    dir: &RunDir,
    header: &RunHeader,
    step: u64,
    loss: f64,
    hellaswag: Option<(u64, u64)>,
    val_at: &[(u64, f64)],
) {
    std::fs::create_dir_all(dir.path()).unwrap();
    dir.write_header(header).unwrap();
    let line = |kind, step: u64| MetricsLine {
        step,
        flops: header.plan.cumulative(step).flops,
        seconds: step as f64 * 0.01,
        ..MetricsLine::empty(&header.name, kind, Phase::Baseline)
    };
    let mut text = String::new();
    for &(at, value) in val_at {
        text +=
            &(serde_json::to_string(&MetricsLine { val_loss: Some(value), ..line(LineKind::Val, at) }).unwrap() + "\n");
    }
    text += &(serde_json::to_string(&MetricsLine { loss: Some(loss), ..line(LineKind::Train, step) }).unwrap() + "\n");
    text +=
        &(serde_json::to_string(&MetricsLine { val_loss: Some(loss), ..line(LineKind::Val, step) }).unwrap() + "\n");
    // The final checkpoint's line: what marks a run finished.
    text += &(serde_json::to_string(&MetricsLine {
        path: Some("checkpoints/last".into()),
        ..line(LineKind::Checkpoint, step)
    })
    .unwrap()
        + "\n");
    if let Some((n, skipped)) = hellaswag {
        let hs = MetricsLine {
            n: Some(n),
            n_skipped: Some(skipped),
            acc: Some(0.3),
            acc_norm: Some(0.3),
            ..line(LineKind::Hellaswag, step)
        };
        text += &(serde_json::to_string(&hs).unwrap() + "\n");
    }
    std::fs::write(dir.metrics_path(), text).unwrap();
}

/// Every run of `d` with its branches: annealed losses from `loss(arm, rate, budget, seed)`;
/// where a branch ends, its main run logs the annealed loss + `constant_gap` (un-annealed).
fn write_study(
    runs: &Path,
    d: &StudyDesign,
    rates: &Rates,
    hellaswag: (u64, u64),
    loss: impl Fn(&str, Option<f64>, f64, u64) -> f64,
    constant_gap: f64,
) {
    std::fs::create_dir_all(runs).unwrap();
    d.write(runs).unwrap();
    for run in d.runs() {
        let (config, schedule) = d.run_config(&run, rates).unwrap();
        let plan = schedule.plan(&config).unwrap();
        let rate = match run.rate {
            RunRate::Swept(r) => Some(r),
            RunRate::Check(m) => rates.get("baseline").map(|r| r * m),
            _ => None,
        };
        let value = |b: f64| loss(&run.arm.name, rate, b, run.seed);
        let main = RunDir::new(runs.join(&run.name));
        let header = RunHeader::new(&run.name, config.clone(), schedule.clone(), plan.clone(), "cpu".into(), "2.11.0");
        let mut val_at = Vec::new();
        // The budgets compared by a branch, with the branch's budget relative to the run's plan.
        let branched: Vec<f64> =
            run.compared(config.cooldown_unit).into_iter().filter(|(_, n)| *n != run.name).map(|(b, _)| b).collect();
        for (&budget, &relative) in branched.iter().zip(&run.branches()) {
            let point = run_dir::cooldown::branch_point(&plan, config.cooldown_unit, relative, &config).unwrap();
            val_at.push((point.to_step, value(budget) + constant_gap));
            let branch = main.cooldown(config.cooldown_unit, relative);
            let mut h = RunHeader::new(
                &run_dir::cooldown::branch_run_name(&run.name, config.cooldown_unit, relative),
                config.clone(),
                schedule.clone(),
                plan.truncated(point.to_step),
                "cpu".into(),
                "2.11.0",
            );
            h.branch = Some(CooldownBranch {
                parent: run.name.clone(),
                budget: relative,
                unit: config.cooldown_unit,
                from_step: point.from_step,
                to_step: point.to_step,
            });
            write_log(&branch, &h, point.to_step, value(budget), None, &[]);
        }
        write_log(&main, &header, plan.total_steps(), value(run.until), Some(hellaswag), &val_at);
    }
}

fn study_loss(arm: &str, _rate: Option<f64>, budget: f64, seed: u64) -> f64 {
    if arm == "baseline" {
        baseline_loss(budget, seed)
    } else {
        grown_loss(budget, seed)
    }
}

#[test]
fn the_study_report_computes_intervals_and_a_verdict_from_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let d = design();
    write_study(&runs, &d, &Rates::new(), (0, 10_042), study_loss, 0.0);
    let out = dir.path().join("out");
    // The study fixes its comparison: a baseline or budget asked for is refused, not ignored.
    let other =
        ReportOptions { runs_dir: runs.clone(), out_dir: out.clone(), baseline: Some("x".into()), budget_step: None };
    assert!(build(&other).unwrap_err().to_string().contains("drop --baseline and --budget"));
    let report =
        build(&ReportOptions { runs_dir: runs, out_dir: out.clone(), baseline: None, budget_step: None }).unwrap();
    let s = report.study.as_ref().expect("a study report");
    assert!(s.missing.is_empty(), "{:?}", s.missing);
    assert_eq!(s.at_budget.iter().filter(|a| a.arm == "paper-s4").count(), 3, "every budget compared");
    assert_eq!(s.at_budget.iter().filter(|a| a.arm == "baseline").count(), 7, "the baseline's curve");

    // At budget 1 the paired differences are −0.25 + (0, 0.02, −0.02): mean −0.25, s = 0.02,
    // and the smallest detectable difference at that spread over 3 seeds.
    let at1 = s.at_budget.iter().find(|a| a.arm == "paper-s4" && a.budget == 1.0).unwrap();
    let diff = at1.minus_baseline.unwrap();
    assert_relative_eq!(diff.mean, -0.25, epsilon = 1e-12);
    let (low, high) = diff.ci.unwrap();
    assert_relative_eq!((high - low) / 2.0, 4.302653 * 0.02 / 3f64.sqrt(), epsilon = 1e-6);
    assert_relative_eq!(at1.mde.unwrap(), minimum_detectable(0.02, 3).unwrap(), epsilon = 1e-9);
    let base1 = s.at_budget.iter().find(|a| a.arm == "baseline" && a.budget == 1.0).unwrap();
    assert_relative_eq!(base1.val_loss.mean, 3.02, epsilon = 1e-12);
    assert!(base1.minus_baseline.is_none());

    // The baseline's loss at budget 1 lies between the arm's at 0.5 and at 1: the arm reaches it
    // at exp(ln 0.5 + t·ln 2), t = (l(0.5) − target) / (l(0.5) − l(1)).
    let c = &s.catch_up[0];
    let expected: Vec<f64> = (1..=3u64)
        .map(|seed| {
            let (l0, l1, target) = (grown_loss(0.5, seed), grown_loss(1.0, seed), baseline_loss(1.0, seed));
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
    let multiple = log_t_interval(&expected).unwrap();
    assert!(multiple.below(1.0), "{multiple:?}");
    assert_eq!(c.verdict, Verdict::Saves { multiple });
    let logs: Vec<f64> = expected.iter().map(|m| m.ln()).collect();
    let mde = 1.0 - (-minimum_detectable(sample_sd(&logs).unwrap(), 3).unwrap()).exp();
    assert_relative_eq!(c.mde.unwrap(), mde, epsilon = 1e-12);
    assert!(c.verdict.sentence().starts_with("saves 29% compute (95% CI "), "{}", c.verdict.sentence());

    // Effective compute: the arm at budget 1 lies 0.25 − wobble below the baseline's loss there,
    // and the baseline's curve falls 0.5 per doubling, so the baseline reaches it at
    // 2^(0.5 − 2·wobble) (the curve is linear in log budget: interpolation is exact); the arm
    // spent its budget-1 FLOPs, so it needs spent / that.
    let e = &s.effective[0];
    for (seed, r) in &e.per_seed {
        let wobble = [0.0, 0.02, -0.02][*seed as usize - 1];
        let arm = s.points.iter().find(|p| p.arm == "paper-s4" && p.seed == *seed && p.budget == 1.0).unwrap();
        let want = arm.flops / s.budget_flops / 2f64.powf(0.5 - 2.0 * wobble);
        match r {
            Reach::At(m) => assert_relative_eq!(*m, want, epsilon = 1e-9),
            other => panic!("seed {seed}: {other:?}"),
        }
    }
    // One arm tested in each reading: Holm leaves its p as it is; the t-test's p is the textbook's.
    let logs: Vec<f64> = e.per_seed.iter().map(|(_, r)| r.multiple().ln()).collect();
    assert_relative_eq!(e.p.unwrap(), analysis::stats::t_test_p(&logs).unwrap(), epsilon = 1e-15);
    assert_eq!(e.p_holm, e.p);
    assert_eq!(e.conclusion(), "saves");
    let md = &report.markdown;
    assert!(
        md.starts_with(
            "# stagewise study: does growing a transformer layer by layer save compute?\n\n## Findings at this scale\n"
        ),
        "{md}"
    );
    let line = format!("- **the paper's method, 4 stages** (effective compute): {}", e.verdict.effective_sentence());
    assert!(md.contains(&line) && md.contains("Holm-adjusted over 1 arm:"), "{md}");
    assert!(md.contains("| the paper's method, 4 stages | saves: "), "{md}");
    assert!(md.contains("## What this does not show"), "{md}");
    // No example fit the context: Figure 1 is left out, and the report says why.
    assert!(md.contains("Figure 1 (HellaSwag vs step) is omitted: 0 of 10042 examples fit"), "{md}");
    assert!(!out.join(format!("{}.png", Figure::HellaswagVsStep.stem())).exists());
    assert!(!report.figures.contains(&Figure::HellaswagVsStep));
    for figure in [Figure::AnnealedVsFlops, Figure::AnnealedVsSeconds, Figure::LossVsStep] {
        assert!(out.join(format!("{}.png", figure.stem())).is_file(), "{figure:?} missing");
    }
}

/// The sweep's losses: the baseline best at 0.008, the growing arm at 0.016 (the edge of the
/// range); sweep seed 101, 102, 103 adds 0, 0.01, 0.02.
fn sweep_loss(arm: &str, rate: Option<f64>, budget: f64, seed: u64) -> f64 {
    let off = match (arm, rate) {
        (_, None) => 0.0,
        ("baseline", Some(r)) => (r.log2() - 0.008f64.log2()).abs() * 0.1,
        (_, Some(r)) => (0.016f64.log2() - r.log2()) * 0.1,
    };
    let wobble = if seed > 100 { 0.01 * (seed - 101) as f64 } else { 0.0 };
    study_loss(arm, None, budget, seed.min(3)) + off + wobble
}

/// `d` trained: first the sweep alone (its logs decide the rates), then the study at them.
fn trained(runs: &Path, d: &StudyDesign) -> (Rates, analysis::report::Report) {
    write_study(runs, d, &Rates::new(), (6000, 4042), sweep_loss, 0.0);
    let rates = d.chosen_rates(runs);
    std::fs::remove_dir_all(runs).unwrap();
    write_study(runs, d, &rates, (6000, 4042), sweep_loss, 0.0);
    let out = runs.parent().unwrap().join("out");
    let report =
        build(&ReportOptions { runs_dir: runs.to_path_buf(), out_dir: out, baseline: None, budget_step: None });
    (rates, report.unwrap())
}

#[test]
fn the_sweep_table_shows_each_rates_mean_and_its_standard_error() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut d = design();
    let seeds = vec![101, 102, 103];
    d.sweep =
        Some(Sweep { rates: vec![0.004, 0.008, 0.016], seeds, budget: 1.0, arms: SweepArms::Each, checks: vec![] });
    let (rates, report) = trained(&runs, &d);
    assert_eq!(rates.get("baseline"), Some(&0.008));
    assert_eq!(rates.get("paper-s4"), Some(&0.016));
    let s = report.study.unwrap();
    let chosen = s.sweep.iter().find(|r| r.arm == "baseline" && r.chosen).unwrap();
    assert_eq!(chosen.rate, 0.008);
    // Seeds add 0, 0.01, 0.02: a standard error of 0.01 / √3.
    assert_relative_eq!(chosen.standard_error().unwrap(), 0.01 / 3f64.sqrt(), epsilon = 1e-12);
    let md = &report.markdown;
    assert!(md.contains("## Learning rate"), "{md}");
    assert!(md.contains(&format!("**{:.4} ± {:.4}**", chosen.mean().unwrap(), 0.01 / 3f64.sqrt())), "{md}");
    // Beside the choice, the difference it rests on and its noise (paired: the seeds cancel).
    assert!(md.contains("baseline: the chosen 0.008 against the next best 0.004"), "{md}");
    assert!(md.contains("at the edge of the swept range for paper-s4"), "{md}");
    // The seeds ran at the chosen rates.
    let header = RunDir::new(runs.join("paper-s4-b1-s2")).read_header().unwrap();
    assert_eq!(header.config.lr_max, 0.016);
}

#[test]
fn one_rate_for_every_arm_with_checks_names_an_arm_that_prefers_another() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut d = design();
    let seeds = vec![101, 102, 103];
    d.sweep = Some(Sweep {
        rates: vec![0.004, 0.008, 0.016],
        seeds,
        budget: 1.0,
        arms: SweepArms::Baseline,
        checks: vec![0.5, 2.0],
    });
    let (rates, report) = trained(&runs, &d);
    // Every arm at the baseline's rate; the growing arm, best at 0.016, is checked at x2 = 0.016.
    assert_eq!((rates.get("baseline"), rates.get("paper-s4")), (Some(&0.008), Some(&0.008)));
    let s = report.study.unwrap();
    let x2 = s.sweep.iter().find(|r| r.arm == "paper-s4" && r.multiple == Some(2.0)).unwrap();
    assert_eq!(x2.rate, 0.016);
    let x1 = s.sweep.iter().find(|r| r.arm == "paper-s4" && r.multiple == Some(1.0)).unwrap();
    let (diff, se) = x2.minus(x1).unwrap();
    assert_relative_eq!(diff, -0.1, epsilon = 1e-9);
    assert!(se < 1e-9, "the seeds' wobble cancels in the pairs: {se}");
    let md = &report.markdown;
    assert!(md.contains("Better at another multiple by more than two standard errors: paper-s4 (x2)"), "{md}");
    let header = RunDir::new(runs.join("paper-s4-b1-s2")).read_header().unwrap();
    assert_eq!(header.config.lr_max, 0.008);
}

#[test]
fn a_study_with_runs_missing_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let d = design();
    write_study(&runs, &d, &Rates::new(), (6000, 4042), study_loss, 0.0);
    std::fs::remove_dir_all(runs.join("paper-s4-b0.5-s3")).unwrap();
    let out = dir.path().join("out");
    let report = build(&ReportOptions { runs_dir: runs, out_dir: out, baseline: None, budget_step: None }).unwrap();
    let s = report.study.unwrap();
    assert_eq!(s.missing, vec!["paper-s4-b0.5-s3".to_string()]);
    assert!(report.markdown.contains("no log yet: `paper-s4-b0.5-s3`"));
    // 6,000 of 10,042 fit: the coverage rule keeps the figure.
    assert!(report.markdown.contains("HellaSwag: 6000 of 10042 examples fit the context."));
}
