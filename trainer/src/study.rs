//! `train study`: run (or continue) the study of `run_dir::study`'s design, one run after another:
//! seed by seed, arm by arm, each main run followed by its cooldown branches. A study that was
//! interrupted continues where it stopped (finished runs are skipped, partial ones resumed), so
//! rerunning the command is always safe.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use run_dir::study::{Protocol, StudyDesign, StudyRequest, STUDY_TIME_FILE};
use run_dir::RunDir;

use crate::checkpoint;
use crate::progress::format_seconds;
use crate::session::{self, TrainOptions};

/// Run (or continue) the study into `runs_dir`: main runs, then their cooldown branches, seed by
/// seed; returns the measured seconds of training this invocation.
pub fn run(design: &StudyDesign, runs_dir: &Path, options: &TrainOptions) -> anyhow::Result<f64> {
    std::fs::create_dir_all(runs_dir).with_context(|| format!("creating {}", runs_dir.display()))?;
    // Every rank checks the design (they share the directory); rank 0 writes it.
    match StudyDesign::read(runs_dir)? {
        Some(existing) if existing != *design => bail!(
            "{} holds another study's design; continue it with the same options, or use another --runs-dir",
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
        train_to_end(&RunDir::new(&dir), options, || session::start(&dir, config.clone(), schedule.clone(), options))?;
        for &budget in &config.cooldown_budgets {
            let branch = RunDir::new(&dir).cooldown(config.cooldown_unit, budget);
            train_to_end(&branch, options, || session::cooldown(&dir, budget, config.cooldown_unit, options))?;
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

/// Train `run` to its end: start it (`start`) when it has no header yet, resume it when it
/// stopped early, nothing when it is done.
fn train_to_end(
    run: &RunDir,
    options: &TrainOptions,
    start: impl FnOnce() -> anyhow::Result<session::TrainSummary>,
) -> anyhow::Result<()> {
    // Rank 0 looks at the directory and every rank follows its decision.
    let action = session::decide(&options.world, || -> anyhow::Result<u8> {
        if !run.has_header() {
            return Ok(START);
        }
        let header = run.read_header()?;
        let done = checkpoint::list(run).last().is_some_and(|(step, _)| *step == header.plan.total_steps());
        Ok(if done { DONE } else { RESUME })
    })?;
    match action {
        START => {
            start()?;
        }
        RESUME => {
            session::resume(run.path(), options)?;
        }
        _ => {}
    }
    Ok(())
}

const START: u8 = 0;
const RESUME: u8 = 1;
const DONE: u8 = 2;

/// Where the study's runs go: `reports/runs` (fair) or `reports/paper/runs` (paper protocol), or
/// a GPU study's `reports/gpu/runs`. A `--quick` smoke run goes to `reports/quick/runs` (not
/// committed), so it never meets the committed study's design.
pub fn default_runs_dir(request: &StudyRequest) -> PathBuf {
    match (request.preset.as_str(), request.protocol) {
        ("tiny", Protocol::Fair) if request.quick => PathBuf::from("reports/quick/runs"),
        ("tiny", Protocol::Fair) => PathBuf::from("reports/runs"),
        ("tiny", Protocol::Paper) => PathBuf::from("reports/paper/runs"),
        (_, Protocol::Fair) => PathBuf::from("reports/gpu/runs"),
        (_, Protocol::Paper) => PathBuf::from("reports/gpu/paper/runs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_study_has_its_own_runs_directory() {
        let dir = |protocol, quick, preset: &str| {
            let request =
                StudyRequest { protocol, quick, preset: preset.into(), scale: Some(0.01), device: "cpu".into() };
            default_runs_dir(&request)
        };
        assert_eq!(dir(Protocol::Fair, false, "tiny"), PathBuf::from("reports/runs"));
        assert_eq!(dir(Protocol::Fair, true, "tiny"), PathBuf::from("reports/quick/runs"));
        assert_eq!(dir(Protocol::Paper, false, "tiny"), PathBuf::from("reports/paper/runs"));
        assert_eq!(dir(Protocol::Fair, false, "gpt2-124m"), PathBuf::from("reports/gpu/runs"));
        assert_eq!(dir(Protocol::Paper, false, "gpt2-124m"), PathBuf::from("reports/gpu/paper/runs"));
    }
}
