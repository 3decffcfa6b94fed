//! `train study`: run (or continue) the study of `run_dir::study`'s design: the sweep first, then
//! seed by seed, arm by arm, each run followed by its cooldown branches. A run whose arm's rate
//! comes from the sweep waits until that arm's sweep has finished. With `--jobs N`, N worker
//! processes share the list: each claims the next run no other worker holds (a claim file per run
//! under `<runs>/.claims/`, kept alive by a heartbeat: `run_dir::claim`), so any number of
//! workers, on one machine or several sharing the directory, started, killed and restarted in
//! any order, train every run once. A study that was interrupted continues where it stopped (finished runs are
//! skipped, partial ones resumed), so rerunning the command is always safe.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use run_dir::study::{logged_wall_seconds, Rates, RunRate, StudyDesign, StudyRun, STUDY_TIME_FILE};
use run_dir::{claim, RunDir};

use crate::run::options::TrainOptions;
use crate::run::progress::format_seconds;
use crate::run::trainer;

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

/// Every run and branch of `design` in `runs_dir`, in the order they train: each run, then its
/// cooldown branches.
fn run_dirs(design: &StudyDesign, runs_dir: &Path) -> anyhow::Result<Vec<RunDir>> {
    Ok(design
        .runs()
        .iter()
        .flat_map(|run| run.dirs(design.budget_unit))
        .map(|d| RunDir::new(runs_dir.join(d)))
        .collect())
}

/// True when `run` and every branch of it finished (by their logs).
fn finished(design: &StudyDesign, run: &StudyRun, runs_dir: &Path) -> bool {
    run.dirs(design.budget_unit).iter().all(|d| RunDir::new(runs_dir.join(d)).is_finished())
}

/// How far the study of `design` in `runs_dir` has come (finished runs are read from their logs:
/// a committed study keeps no checkpoints).
pub fn status(design: &StudyDesign, runs_dir: &Path) -> anyhow::Result<StudyStatus> {
    match StudyDesign::read(runs_dir)? {
        None => return Ok(StudyStatus::New),
        Some(existing) if existing != *design => return Ok(StudyStatus::OtherDesign),
        Some(_) => {}
    }
    refuse_damaged_logs(design, runs_dir)?;
    let dirs = run_dirs(design, runs_dir)?;
    let finished = dirs.iter().filter(|d| d.is_finished()).count();
    if finished < dirs.len() {
        return Ok(StudyStatus::Partial { finished, total: dirs.len() });
    }
    refuse_other_rates(design, &design.chosen_rates(runs_dir), runs_dir)?;
    let commit = dirs.first().and_then(|d| d.read_header().ok()).map_or("unknown".into(), |h| h.git_commit);
    Ok(StudyStatus::Finished { total: dirs.len(), commit })
}

/// Take `design` into `runs_dir`: write it there when the directory holds no study yet (rank 0),
/// refuse one that holds another design.
pub fn adopt(design: &StudyDesign, runs_dir: &Path, options: &TrainOptions) -> anyhow::Result<()> {
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
    Ok(())
}

/// Run (or continue) the study into `runs_dir` in this process (one job, or one data-parallel
/// job over all ranks), as worker 0: claiming each run as `--jobs` workers do, so that another
/// study process on this machine or another sharing the directory trains other runs beside it.
/// Returns the measured seconds.
pub fn run(design: &StudyDesign, runs_dir: &Path, options: &TrainOptions) -> anyhow::Result<f64> {
    adopt(design, runs_dir, options)?;
    let clock = WallClock::start(runs_dir);
    let planned = design.planned_flops().map_err(crate::error::bad_input)?;
    let quiet = !options.world.is_main();
    let mut progress = crate::run::progress::StudyProgress::new(runs_dir, &planned, quiet);
    work(design, runs_dir, options, 0, |run, _, _| {
        if options.world.is_main() {
            clock.record(false)?;
            progress.tick(&[describe(run)]);
        }
        Ok(())
    })?;
    progress.finish();
    if options.world.is_main() {
        clock.record(true)?;
    }
    Ok(clock.seconds())
}

/// The runs the workers sharing `runs_dir` have claimed now (their claim files' names).
pub fn claimed(runs_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(runs_dir.join(".claims"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".claim")).map(String::from))
        .collect();
    names.sort();
    names
}

/// One worker of `train study --jobs N` (on one machine or several sharing `runs_dir`): claim
/// and train runs until none is left to claim; waits while the runs left need a sweep another
/// worker is still training, or are claimed by live workers. A worker may itself be a
/// data-parallel job (a design's `gpus_per_run`): its rank 0 claims, every rank trains.
/// `starting(run, finished, total)` runs on every rank before each run it trains.
pub fn work(
    design: &StudyDesign,
    runs_dir: &Path,
    options: &TrainOptions,
    worker: usize,
    mut starting: impl FnMut(&StudyRun, usize, usize) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let claims = runs_dir.join(".claims");
    let me = claim::Holder::me(worker);
    let timeout = claim::timeout_from_env();
    options.world.decide(|| refuse_damaged_logs(design, runs_dir))?;
    loop {
        let mut held: Option<claim::Claim> = None;
        let next = options.world.decide(|| next_run(design, runs_dir, &claims, &me, timeout, &mut held))?;
        match next {
            Next::Train(name) => {
                let rates = options.world.decide(|| Ok(design.chosen_rates(runs_dir)))?;
                let runs = design.runs();
                let run = runs.iter().find(|r| r.name == name).context("a claimed run of the design")?;
                let done = runs.iter().filter(|r| finished(design, r, runs_dir)).count();
                starting(run, done, runs.len())?;
                train_run(design, run, &rates, runs_dir, options)?;
                drop(held);
            }
            Next::Wait => std::thread::sleep(std::time::Duration::from_secs(2)),
            // Nothing left: the runs finished before a sweep chose again must match it.
            Next::Done => return refuse_other_rates(design, &design.chosen_rates(runs_dir), runs_dir),
        }
    }
}

/// What a worker does next.
#[derive(serde::Serialize, serde::Deserialize)]
enum Next {
    /// Train this run (claimed).
    Train(String),
    /// Runs are left, but each needs a sweep not finished yet or is another live worker's.
    Wait,
    Done,
}

/// The next run this worker may train, claimed into `held` (rank 0 only).
fn next_run(
    design: &StudyDesign,
    runs_dir: &Path,
    claims: &Path,
    me: &claim::Holder,
    timeout: std::time::Duration,
    held: &mut Option<claim::Claim>,
) -> anyhow::Result<Next> {
    let rates = design.chosen_rates(runs_dir);
    let mut waiting = false;
    for run in design.runs().iter().filter(|r| !finished(design, r, runs_dir)) {
        if run.rate.waits_for() && !rates.contains_key(&run.arm.name) {
            waiting = true;
            continue;
        }
        let attempt = claim::try_claim(claims, &run.name, me, timeout)
            .with_context(|| format!("claiming {} in {}", run.name, claims.display()))?;
        let claim::Attempt::Held { claim, took_over } = attempt else {
            waiting = true;
            continue;
        };
        if let Some(line) = took_over {
            eprintln!("study: {}: {line}", run.name);
        }
        // Another worker may have finished it between the look and the claim.
        if finished(design, run, runs_dir) {
            continue;
        }
        *held = Some(claim);
        return Ok(Next::Train(run.name.clone()));
    }
    Ok(if waiting { Next::Wait } else { Next::Done })
}

/// A finished run whose log holds a line that does not read (torn by a crash, edited, corrupted)
/// is never counted silently: refused, naming the file and line and what to do.
pub fn refuse_damaged_logs(design: &StudyDesign, runs_dir: &Path) -> anyhow::Result<()> {
    for dir in run_dirs(design, runs_dir)? {
        if !dir.is_finished() {
            continue;
        }
        let (_, skipped) = dir.read_metrics().with_context(|| format!("reading {}", dir.metrics_path().display()))?;
        if let Some(bad) = skipped.first() {
            return Err(crate::error::bad_input(anyhow::anyhow!(
                "{}:{}: {}; this finished run's log is damaged: restore it (e.g. git checkout) or move {} away to train the run again",
                dir.metrics_path().display(),
                bad.line,
                bad.reason,
                dir.path().display()
            )));
        }
    }
    Ok(())
}

/// A run in a few words for the progress lines.
pub fn describe(run: &StudyRun) -> String {
    let rate = match run.rate {
        RunRate::Swept(rate) => format!(", sweep rate {rate}"),
        _ => String::new(),
    };
    format!("{} ({}, seed {}{rate})", run.name, run.arm.label, run.seed)
}

/// Train `run` and its cooldown branches to their ends.
fn train_run(
    design: &StudyDesign,
    run: &StudyRun,
    rates: &Rates,
    runs_dir: &Path,
    options: &TrainOptions,
) -> anyhow::Result<()> {
    if run.rate.waits_for() && !rates.contains_key(&run.arm.name) {
        bail!("{}: the sweep of arm {} has not finished; its rate is not chosen yet", run.name, run.arm.name);
    }
    let dir = runs_dir.join(&run.name);
    let (config, schedule) = design.run_config(run, rates)?;
    train_to_end(&RunDir::new(&dir), options, || trainer::start(&dir, config.clone(), schedule.clone(), options))?;
    for &budget in &config.cooldown_budgets {
        let branch = RunDir::new(&dir).cooldown(config.cooldown_unit, budget);
        train_to_end(&branch, options, || trainer::cooldown(&dir, budget, config.cooldown_unit, options))?;
    }
    Ok(())
}

/// Runs already started at another peak rate than their arm's chosen one (the sweep was extended
/// or rerun since and chose another) would count as finished at the wrong rate: refuse, naming
/// them. Checked once when a study starts (its status) and once when it ends, not per run.
fn refuse_other_rates(design: &StudyDesign, rates: &Rates, runs_dir: &Path) -> anyhow::Result<()> {
    let mut stale = Vec::new();
    for run in design.runs().iter().filter(|r| r.rate == RunRate::Chosen) {
        let (Some(&rate), dir) = (rates.get(&run.arm.name), RunDir::new(runs_dir.join(&run.name))) else { continue };
        if !dir.has_header() {
            continue;
        }
        let trained = dir.read_header().with_context(|| format!("reading {}", dir.path().display()))?.config.lr_max;
        if trained != rate {
            stale.push(format!("{} (trained at {trained}, its arm's rate is now {rate})", run.name));
        }
    }
    if !stale.is_empty() {
        bail!(
            "{}: {} run(s) trained at a rate the sweep no longer chooses: {}; remove them to train them again",
            runs_dir.display(),
            stale.len(),
            stale.join(", ")
        );
    }
    Ok(())
}

/// This invocation's line in the study's wall-time log (a continued study has several), rewritten
/// as the study goes, so an invocation killed before its end (a crash, a machine taken back) still
/// counts up to its last update.
pub struct WallClock {
    log: std::path::PathBuf,
    started: Instant,
    started_at: String,
}

impl WallClock {
    /// Start timing this invocation of the study in `runs_dir`.
    pub fn start(runs_dir: &Path) -> Self {
        let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        WallClock { log: runs_dir.join(STUDY_TIME_FILE), started: Instant::now(), started_at }
    }

    /// Seconds since the start.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Write this invocation's line with the seconds so far (`complete` when it ended on its
    /// own); the other invocations' lines are kept as they are.
    pub fn record(&self, complete: bool) -> anyhow::Result<f64> {
        let seconds = self.seconds();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let line = serde_json::json!({ "started": self.started_at, "finished": now, "seconds": seconds, "complete": complete });
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| {
                let started = serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v.get("started").cloned());
                started.and_then(|s| s.as_str().map(str::to_owned)).as_deref() != Some(self.started_at.as_str())
            })
            .map(str::to_owned)
            .collect();
        lines.push(line.to_string());
        let text = lines.join("\n") + "\n";
        run_dir::write_atomically(&self.log, |f| std::io::Write::write_all(f, text.as_bytes()))
            .with_context(|| format!("writing {}", self.log.display()))?;
        Ok(seconds)
    }
}

/// Effective FLOP/s of a study of the width-16 model on 2 cores, everything included (training,
/// validation, checkpoints, start-up), for estimates before a study of the design has run here:
/// two runs at a time on one core each, `just study --quick`'s 4.375e12 predicted FLOPs in its
/// measured 114.8 s; one run on both cores, the previous CPU study's 2.691e13 in 2,359 s (tiny
/// models gain little from a second thread).
const CPU_STUDY_FLOPS_PER_SECOND: [(usize, f64); 2] = [(1, 1.14e10), (2, 3.81e10)];

/// How long the study of `design` should take, in words: what the same design took in `history`
/// (a finished study's logged wall time), else its `flops` at a measured `throughput` (the
/// design file's), else at the committed CPU study's rate.
pub fn estimate(
    design: &StudyDesign,
    flops: f64,
    history: &Path,
    throughput: Option<&run_dir::study::Throughput>,
    jobs: usize,
    gpus_per_run: usize,
) -> String {
    let same = StudyDesign::read(history).ok().flatten().is_some_and(|d| d == *design);
    if let Some(seconds) = logged_wall_seconds(history).filter(|_| same) {
        return format!("about {} (what this design took in {})", format_seconds(seconds), history.display());
    }
    if let Some(t) = throughput {
        let hours = flops / t.flops_per_second / 3600.0;
        let spread = match (jobs, gpus_per_run) {
            (1, 1) => String::new(),
            (jobs, 1) => format!(
                "; {jobs} runs at a time share the devices they see (worker i on GPU i mod G): on {jobs} devices about {}",
                format_seconds(hours * 3600.0 / jobs as f64)
            ),
            (jobs, g) => format!(
                "; {jobs} runs at a time, each data parallel on {g} GPUs: on {} GPUs about {} if data parallel scales linearly",
                jobs * g,
                format_seconds(hours * 3600.0 / (jobs * g) as f64)
            ),
        };
        return format!(
            "{hours:.2} {}-hours at the measured {:.3e} FLOP/s ({}; validation and evaluation not included){spread}",
            t.device, t.flops_per_second, t.source
        );
    }
    match design.preset.as_str() {
        "tiny" => {
            let rate = CPU_STUDY_FLOPS_PER_SECOND.iter().rev().find(|(j, _)| *j <= jobs).map_or(1.14e10, |(_, r)| *r);
            format!(
                "about {} on 2 CPU cores with {jobs} run(s) at a time (at the rate measured for the width-16 model)",
                format_seconds(flops / rate)
            )
        }
        // PyTorch eager's GPT-2 124M step on an H100 reaches ~26% of the 989 TFLOP/s bf16 peak.
        _ => format!(
            "{:.2} H100-hours at PyTorch eager's 26% MFU",
            flops / (0.26 * crate::jobs::bench::H100_BF16_PEAK) / 3600.0
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
    fn an_invocation_keeps_one_line_of_wall_time_updated_as_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(STUDY_TIME_FILE);
        // A line from an older version (no start time) stays as it is.
        std::fs::write(&log, "{\"finished\":\"2026-11-30T06:53:19Z\",\"seconds\":100.0}\n").unwrap();
        let first = WallClock::start(dir.path());
        first.record(false).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let so_far = first.record(false).unwrap();
        let second = WallClock { started_at: "2026-11-30T08:00:00.000Z".into(), ..WallClock::start(dir.path()) };
        second.record(true).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.lines().any(|l| l.contains(&first.started_at) && l.contains("\"complete\":false")), "{text}");
        let total = logged_wall_seconds(dir.path()).unwrap();
        assert!(total >= 100.0 + so_far && total < 101.0 + so_far, "{total}");
    }

    #[test]
    fn a_rerun_trains_beside_the_study_it_repeats() {
        assert_eq!(rerun_dir(Path::new("reports/runs")), PathBuf::from("reports/rerun/runs"));
        assert_eq!(rerun_dir(Path::new("reports/paper/runs")), PathBuf::from("reports/paper/rerun/runs"));
    }
}
