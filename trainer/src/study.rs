//! `train study`: run (or continue) the study of `run_dir::study`'s design, one run after another:
//! seed by seed, arm by arm, each main run followed by its cooldown branches. A study that was
//! interrupted continues where it stopped (finished runs are skipped, partial ones resumed), so
//! rerunning the command is always safe.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use run_dir::study::{logged_wall_seconds, StudyDesign, STUDY_TIME_FILE};
use run_dir::RunDir;

use crate::options::TrainOptions;
use crate::progress::format_seconds;
use crate::trainer;

/// Where a study's runs directory stands against a design.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StudyStatus {
    /// No study there yet.
    New,
    /// This design, `finished` of its `total` runs and branches trained to their end.
    Partial { finished: usize, total: usize },
    /// This design, every run and branch trained to its end; `commit` trained the first run.
    Finished { total: usize, commit: String },
    /// A study of another design.
    OtherDesign,
}

/// Every run and branch of `design` in `runs_dir`, in the order they train: each main run, then
/// its cooldown branches.
fn run_dirs(design: &StudyDesign, runs_dir: &Path) -> anyhow::Result<Vec<RunDir>> {
    let mut dirs = Vec::new();
    for run in design.runs() {
        let (config, _) = design.run_config(&run)?;
        let main = RunDir::new(runs_dir.join(&run.name));
        let branches: Vec<RunDir> =
            config.cooldown_budgets.iter().map(|&b| main.cooldown(config.cooldown_unit, b)).collect();
        dirs.push(main);
        dirs.extend(branches);
    }
    Ok(dirs)
}

/// How far the study of `design` in `runs_dir` has come (finished runs are read from their logs:
/// a committed study keeps no checkpoints).
pub fn status(design: &StudyDesign, runs_dir: &Path) -> anyhow::Result<StudyStatus> {
    match StudyDesign::read(runs_dir)? {
        None => return Ok(StudyStatus::New),
        Some(existing) if existing != *design => return Ok(StudyStatus::OtherDesign),
        Some(_) => {}
    }
    let dirs = run_dirs(design, runs_dir)?;
    let finished = dirs.iter().filter(|d| d.is_finished()).count();
    if finished < dirs.len() {
        return Ok(StudyStatus::Partial { finished, total: dirs.len() });
    }
    let commit = dirs.first().and_then(|d| d.read_header().ok()).map_or("unknown".into(), |h| h.git_commit);
    Ok(StudyStatus::Finished { total: dirs.len(), commit })
}

/// Run (or continue) the study into `runs_dir`: main runs, then their cooldown branches, seed by
/// seed; returns the measured seconds of training this invocation. A directory holding another
/// design is refused.
pub fn run(design: &StudyDesign, runs_dir: &Path, options: &TrainOptions) -> anyhow::Result<f64> {
    std::fs::create_dir_all(runs_dir).with_context(|| format!("creating {}", runs_dir.display()))?;
    // Every rank checks the design (they share the directory); rank 0 writes it.
    match StudyDesign::read(runs_dir)? {
        Some(existing) if existing != *design => bail!(
            "{} holds another study's design; continue it with the options that started it, or use another --runs-dir",
            runs_dir.display()
        ),
        Some(_) => {}
        None if options.world.is_main() => design.write(runs_dir)?,
        None => {}
    }
    let started = Instant::now();
    let runs = design.runs();
    let total = runs.len();
    for (i, run) in runs.iter().enumerate() {
        let dir = runs_dir.join(&run.name);
        let (config, schedule) = design.run_config(run)?;
        if options.world.is_main() {
            eprintln!(
                "study: run {}/{total} {} ({}, seed {}); {} so far",
                i + 1,
                run.name,
                run.arm.label,
                run.seed,
                format_seconds(started.elapsed().as_secs_f64())
            );
        }
        train_to_end(&RunDir::new(&dir), options, || trainer::start(&dir, config.clone(), schedule.clone(), options))?;
        for &budget in &config.cooldown_budgets {
            let branch = RunDir::new(&dir).cooldown(config.cooldown_unit, budget);
            train_to_end(&branch, options, || trainer::cooldown(&dir, budget, config.cooldown_unit, options))?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if !options.world.is_main() {
        return Ok(seconds);
    }
    // The wall time of every invocation, for the report (a continued study has several).
    let line = serde_json::json!({ "finished": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "seconds": seconds });
    let log = runs_dir.join(STUDY_TIME_FILE);
    let mut text = std::fs::read_to_string(&log).unwrap_or_default();
    text.push_str(&format!("{line}\n"));
    run_dir::write_atomically(&log, |f| std::io::Write::write_all(f, text.as_bytes()))?;
    Ok(seconds)
}

/// Effective FLOP/s of the CPU study on 2 cores, everything included (training, validation,
/// HellaSwag, checkpoints, start-up): the committed study's predicted 2.691e13 FLOPs over its
/// measured 2,359 s. For estimates before a study of the design has run here.
const CPU_STUDY_FLOPS_PER_SECOND: f64 = 1.14e10;

/// How long the study of `design` should take, in words: what the same design took in `history`
/// (a finished study's logged wall time), else an estimate from its `flops`.
pub fn estimate(design: &StudyDesign, flops: f64, history: &Path) -> String {
    let same = StudyDesign::read(history).ok().flatten().is_some_and(|d| d == *design);
    if let Some(seconds) = logged_wall_seconds(history).filter(|_| same) {
        return format!("about {} (what this design took in {})", format_seconds(seconds), history.display());
    }
    match design.preset.as_str() {
        "tiny" => format!(
            "about {} on 2 CPU cores (at the rate of the committed study)",
            format_seconds(flops / CPU_STUDY_FLOPS_PER_SECOND)
        ),
        // PyTorch eager's GPT-2 124M step on an H100 reaches ~26% of the 989 TFLOP/s bf16 peak.
        _ => format!(
            "{:.2} H100-hours at PyTorch eager's 26% MFU",
            flops / (0.26 * crate::bench::H100_BF16_PEAK) / 3600.0
        ),
    }
}

/// Train `run` to its end: start it (`start`) when it has no header yet, resume it when it
/// stopped early, nothing when its log says it finished.
fn train_to_end(
    run: &RunDir,
    options: &TrainOptions,
    start: impl FnOnce() -> anyhow::Result<trainer::TrainSummary>,
) -> anyhow::Result<()> {
    // Rank 0 looks at the directory and every rank follows its decision.
    let action = options.world.decide(|| {
        Ok(match (run.has_header(), run.is_finished()) {
            (false, _) => Action::Start,
            (true, true) => Action::Done,
            (true, false) => Action::Resume,
        })
    })?;
    match action {
        Action::Start => {
            start()?;
        }
        Action::Resume => {
            trainer::resume(run.path(), options)?;
        }
        Action::Done => {}
    }
    Ok(())
}

/// What a run of a study needs next.
#[derive(serde::Serialize, serde::Deserialize)]
enum Action {
    Start,
    Resume,
    Done,
}

/// Where `--rerun` trains a study whose runs are in `runs_dir` again: `<runs_dir>/../rerun/runs`
/// (`reports/rerun/runs` for the committed study; not committed), so that old and new runs never
/// mix and the report of the rerun lands beside it in `reports/rerun/`.
pub fn rerun_dir(runs_dir: &Path) -> PathBuf {
    runs_dir.parent().unwrap_or(Path::new(".")).join("rerun").join("runs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_trains_beside_the_study_it_repeats() {
        assert_eq!(rerun_dir(Path::new("reports/runs")), PathBuf::from("reports/rerun/runs"));
        assert_eq!(rerun_dir(Path::new("reports/paper/runs")), PathBuf::from("reports/paper/rerun/runs"));
    }
}
