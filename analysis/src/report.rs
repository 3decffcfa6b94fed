//! The report, end to end: read the run logs (and the study's design when there is one), compute
//! the numbers, draw the figures, write `report.md` next to them.
//!
//! - a fair study (`runs/study.json`, protocol `fair`): the study report (verdicts with intervals
//!   over seeds, annealed comparisons, ablations, growth; the paper's figures from seed 1);
//! - otherwise (a paper-protocol study, or runs without a study): every run aligned with the
//!   baseline at its budget, un-annealed, as the paper compared.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use run_dir::study::{Protocol, StudyDesign};
use run_dir::Skipped;

use crate::compare::{compare, Comparisons};
use crate::figures::{draw_figures, Figure, FigureData};
use crate::frame::{all_runs, hellaswag_coverage};
use crate::markdown;
use crate::runs::{load_runs, RunLog};
use crate::study::{study_numbers, StudyNumbers};

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub runs_dir: PathBuf,
    pub out_dir: PathBuf,
    /// The baseline run's name; default: the first baseline run (by name).
    pub baseline: Option<String>,
    /// Budget = the baseline's compute at this step (default: its last step).
    pub budget_step: Option<f64>,
}

/// Everything the report computed and wrote.
#[derive(Debug, Clone)]
pub struct Report {
    /// Runs aligned with the baseline (for a study: its seed-1 main runs).
    pub numbers: Comparisons,
    /// A study's numbers, when the runs are one.
    pub study: Option<StudyNumbers>,
    /// The figures drawn (each as SVG and PNG) beside `report.md`.
    pub figures: Vec<Figure>,
    pub skipped: Vec<Skipped>,
    pub markdown: String,
}

/// Build the report from `options.runs_dir` and write it (figures + report.md) to `options.out_dir`.
pub fn build(options: &ReportOptions) -> anyhow::Result<Report> {
    let (runs, skipped) = load_runs(&options.runs_dir)?;
    let design = StudyDesign::read(&options.runs_dir)?;
    let frame = all_runs(&runs)?;
    std::fs::create_dir_all(&options.out_dir).with_context(|| format!("creating {}", options.out_dir.display()))?;
    let preface = design
        .as_ref()
        .filter(|d| d.protocol == Protocol::Paper)
        .map(|d| format!("**{}** {}", "Protocol: the paper's.", d.trade_offs));
    let report = match design.filter(|d| d.protocol == Protocol::Fair) {
        Some(design) => {
            // The study fixes its own comparison: seed 1's baseline, at every budget.
            if options.baseline.is_some() || options.budget_step.is_some() {
                anyhow::bail!(
                    "{} holds a fair study, which compares every arm with its own baseline at the study's budgets; drop --baseline and --budget",
                    options.runs_dir.display()
                );
            }
            let mut study = study_numbers(&design, &runs, &frame, &options.runs_dir)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", options.runs_dir.display()))?;
            study.wall_seconds = run_dir::study::logged_wall_seconds(&options.runs_dir);
            // The paper's figures come from the first seed's run of each arm that budget 1 is
            // compared on (a full-model arm's run to the largest budget, a growing arm's run
            // planned for budget 1).
            let first = design.first_seed();
            let main: Vec<RunLog> = design
                .runs()
                .into_iter()
                .filter(|r| r.seed == first && !r.is_sweep() && r.budgets.contains(&1.0))
                .filter_map(|r| runs.iter().find(|log| log.name() == r.name).cloned())
                .collect();
            let base = main.first().context("no baseline run of the first seed")?;
            let budget_step = base.header.config.steps as f64;
            let numbers = compare(&main, &frame, Some(base.name()), Some(budget_step))
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", options.runs_dir.display()))?;
            let mut which = vec![Figure::AnnealedVsFlops, Figure::AnnealedVsSeconds];
            if study.hellaswag.is_some_and(|(n, skipped)| crate::stats::hellaswag_covered(n, skipped)) {
                which.push(Figure::HellaswagVsStep);
            }
            which.extend([Figure::LossVsStep, Figure::StepTime]);
            let data = FigureData { runs: &numbers, study: Some(&study) };
            let figures = draw_figures(&options.out_dir, data, &which)?;
            let markdown = crate::study_markdown::render_study(&study, &numbers, &figures, &skipped)?;
            Report { numbers, study: Some(study), figures, skipped, markdown }
        }
        None => {
            let numbers = compare(&runs, &frame, options.baseline.as_deref(), options.budget_step)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", options.runs_dir.display()))?;
            let mut which = Figure::RUNS.to_vec();
            let mut preface = preface;
            if let Some((n, skipped)) =
                hellaswag_coverage(&frame)?.filter(|&(n, s)| !crate::stats::hellaswag_covered(n, s))
            {
                which.retain(|f| *f != Figure::HellaswagVsStep);
                let omitted = markdown::hellaswag_omitted(n, skipped);
                preface = Some(preface.map_or(omitted.clone(), |p| format!("{p}\n\n{omitted}")));
            }
            let figures = draw_figures(&options.out_dir, FigureData { runs: &numbers, study: None }, &which)?;
            let markdown = markdown::render(&numbers, &runs, &figures, &skipped, preface.as_deref())?;
            Report { numbers, study: None, figures, skipped, markdown }
        }
    };
    let path = options.out_dir.join("report.md");
    run_dir::write_atomically(&path, |f| f.write_all(report.markdown.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(report)
}

/// The verdicts of the fair study in `runs_dir` (arm by arm, as the report computes them: its
/// primary reading, Holm-corrected), for comparing two studies of one design without drawing
/// anything.
pub fn study_verdicts(runs_dir: &std::path::Path) -> anyhow::Result<Vec<crate::study::Reading>> {
    let design = StudyDesign::read(runs_dir)?
        .filter(|d| d.protocol == Protocol::Fair)
        .with_context(|| format!("{} holds no fair study (study.json)", runs_dir.display()))?;
    let (runs, _) = load_runs(runs_dir)?;
    let frame = all_runs(&runs)?;
    let numbers = study_numbers(&design, &runs, &frame, runs_dir)?;
    Ok(if numbers.effective.is_empty() { numbers.catch_up } else { numbers.effective })
}

/// Lines comparing `ours` (a rerun) with `theirs` (the study it replicates), arm by arm: both
/// verdicts and whether their conclusions agree.
pub fn compare_verdicts(ours: &[crate::study::Reading], theirs: &[crate::study::Reading]) -> Vec<String> {
    ours.iter()
        .map(|o| match theirs.iter().find(|t| t.arm == o.arm) {
            Some(t) => format!(
                "{}: {} ({})\n  this study: {}\n  compared:   {}",
                o.arm,
                if o.conclusion() == t.conclusion() { "same conclusion" } else { "DIFFERENT conclusion" },
                o.conclusion(),
                o.verdict.sentence(),
                t.verdict.sentence()
            ),
            None => format!("{}: not in the compared study\n  this study: {}", o.arm, o.verdict.sentence()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Reach, Verdict};
    use crate::study::Reading;

    fn arm(name: &str, reaches: &[f64]) -> Reading {
        let per_seed: Vec<(u64, Reach)> =
            reaches.iter().enumerate().map(|(i, &r)| (i as u64 + 1, Reach::At(r))).collect();
        let verdict = Verdict::from_reaches(&per_seed.iter().map(|(_, r)| *r).collect::<Vec<_>>());
        Reading { arm: name.into(), per_seed, verdict, mde: None, p: None, p_holm: None }
    }

    #[test]
    fn a_rerun_is_compared_conclusion_by_conclusion() {
        let ours = [arm("depth6", &[0.55, 0.57, 0.6]), arm("inc4", &[0.9, 1.1, 1.0]), arm("new", &[1.0, 1.1, 1.2])];
        let theirs = [arm("depth6", &[0.56, 0.58, 0.57]), arm("inc4", &[1.4, 1.5, 1.45])];
        let lines = compare_verdicts(&ours, &theirs);
        assert!(lines[0].starts_with("depth6: same conclusion (saves)"), "{}", lines[0]);
        assert!(lines[1].starts_with("inc4: DIFFERENT conclusion (no difference)"), "{}", lines[1]);
        assert!(lines[1].contains("costs"), "the other study's verdict is shown: {}", lines[1]);
        assert!(lines[2].starts_with("new: not in the compared study"), "{}", lines[2]);
    }
}
