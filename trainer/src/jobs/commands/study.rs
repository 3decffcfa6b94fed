//! `train study`: its modes, what it prints, and its worker processes.

use std::path::{Path, PathBuf};

use anyhow::Context;
use run_dir::study::StudyFile;
use stagewise_cli::CliError;

use super::*;
use crate::jobs::study::{self as study_run, StudyStatus};
use crate::run::options::TrainOptions;
use crate::world::children::{Ended, Group};

/// What `train study` is asked to do.
pub struct Study {
    /// The design: a built-in name or a TOML file.
    pub design: String,
    /// Its runs directory instead of the design's.
    pub runs_dir: Option<PathBuf>,
    /// Train it again into `<runs_dir>/../rerun/runs`.
    pub rerun: bool,
    /// Runs at once (worker processes); `None`: the design file's `jobs`.
    pub jobs: Option<usize>,
    /// What to do with it.
    pub mode: StudyMode,
}

/// What `train study` does with its design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StudyMode {
    /// Train what is not finished (the default).
    Train,
    /// Print the design and its predicted cost; train nothing.
    Plan,
    /// Print the runs directory and exit (for scripts).
    PrintRunsDir,
    /// Print what the runs read (`<source> <tokenizer> <dir> <tokens>`, see [`DataNeed`]) and exit.
    PrintData,
    /// Be worker `i` of a `--jobs` study (started by it, not by a user).
    Worker(usize),
}

impl StudyMode {
    /// Whether this mode trains nothing, so needs one process however the job was launched.
    pub fn prints_only(self) -> bool {
        matches!(self, StudyMode::Plan | StudyMode::PrintRunsDir | StudyMode::PrintData)
    }
}

/// The token shards a design's runs read, and how `train data` makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataNeed {
    /// `None`: a directory of the user's own (`--set data_dir=...`), made some other way.
    pub source: Option<Source>,
    pub tokenizer: run_dir::TokenizerKind,
    pub dir: PathBuf,
    /// Training tokens of the longest run (how much data to prepare so that none repeats).
    pub tokens: u64,
}

impl DataNeed {
    /// What a run of `config` reads, `tokens` at most.
    pub fn of(config: &run_dir::TrainConfig, tokens: u64) -> DataNeed {
        let (tokenizer, dir) = (config.tokenizer, config.data_dir.clone());
        let source = [Source::Corpus, Source::Fineweb].into_iter().find(|s| s.default_dir(tokenizer) == dir);
        DataNeed { source, tokenizer, dir, tokens }
    }
}

impl std::fmt::Display for DataNeed {
    /// `corpus bytes data/corpus-bytes 2457600`, `fineweb gpt2 data/edufineweb 2621440000`, `own
    /// gpt2 DIR N`: one line a script reads with `read source tokenizer dir tokens`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.source {
            Some(Source::Corpus) => "corpus",
            Some(Source::Fineweb) => "fineweb",
            Some(Source::Files) | None => "own",
        };
        write!(f, "{source} {} {} {}", self.tokenizer.name(), self.dir.display(), self.tokens)
    }
}

/// The design `request` names, and where its runs go: `(study dir, runs dir)` (they differ for
/// a rerun).
pub fn study_design(request: &Study) -> Result<(StudyFile, PathBuf, PathBuf), CliError> {
    let file = StudyFile::load(&request.design).map_err(CliError::bad_input)?;
    let study_dir = request.runs_dir.clone().unwrap_or_else(|| file.runs_dir.clone());
    let runs_dir = if request.rerun { study_run::rerun_dir(&study_dir) } else { study_dir.clone() };
    Ok((file, study_dir, runs_dir))
}

/// `train study`: say what the study will cost, then train what is not finished (a finished
/// study says so in one line and trains nothing; another design in the directory is refused).
/// `options` are made by `make_options` (joining the data-parallel job) only when there is
/// something to train.
pub fn study(
    request: &Study,
    make_options: impl FnOnce(&str) -> Result<TrainOptions, CliError>,
) -> Result<(), CliError> {
    let (file, study_dir, runs_dir) = study_design(request)?;
    let jobs = request.jobs.unwrap_or(file.jobs);
    if jobs == 0 {
        return Err(CliError::bad_input(anyhow::anyhow!("--jobs 0: at least one run at a time")));
    }
    match request.mode {
        StudyMode::PrintRunsDir => {
            println!("{}", runs_dir.display());
            Ok(())
        }
        StudyMode::PrintData => print_data_need(&file.design, &request.design),
        StudyMode::Worker(worker) => {
            // A worker of `--jobs`: the parent has checked and written the design, and shows
            // where the study is (the runs its workers claimed, the ETA).
            let options = make_options(&file.design.device)?;
            study_run::work(&file.design, &runs_dir, &options, worker, |_, _, _| Ok(())).map_err(classify)?;
            Ok(())
        }
        StudyMode::Plan | StudyMode::Train => match announce_study(request, &file, &study_dir, &runs_dir, jobs)? {
            true => train_study(&file, &runs_dir, jobs, make_options),
            false => Ok(()),
        },
    }
}

/// `train study --print-data`: the shards the design's runs read (the longest run's tokens).
fn print_data_need(design: &run_dir::study::StudyDesign, name: &str) -> Result<(), CliError> {
    let mut need: Option<DataNeed> = None;
    for run in design.runs() {
        let (config, schedule) = design.run_config(&run, &Default::default()).map_err(CliError::bad_input)?;
        let plan = schedule.plan(&config).map_err(|e| classify(crate::error::bad_input(e)))?;
        let tokens = plan.cumulative(plan.total_steps()).tokens;
        let longest = need.as_ref().map_or(0, |n| n.tokens).max(tokens);
        need = Some(DataNeed::of(&config, longest));
    }
    let need = need.ok_or_else(|| CliError::bad_input(anyhow::anyhow!("{name}: the design has no runs")))?;
    println!("{need}");
    Ok(())
}

/// The parent's (rank 0's) line on what the study costs, then the design itself for `--plan`
/// or what is left to train; false when there is nothing to train (planned, or finished).
fn announce_study(
    request: &Study,
    file: &StudyFile,
    study_dir: &Path,
    runs_dir: &Path,
    jobs: usize,
) -> Result<bool, CliError> {
    let design = &file.design;
    let flops = design.predicted_flops().map_err(|e| classify(crate::error::bad_input(e)))?;
    let estimate = study_run::estimate(design, flops, study_dir, file.throughput.as_ref(), jobs, file.gpus_per_run);
    let status = study_run::status(design, runs_dir).map_err(CliError::bad_input)?;
    let main = crate::world::Launch::from_vars(|v| std::env::var(v).ok()).ok().flatten().map_or(true, |l| l.rank == 0);
    if main {
        eprintln!(
            "study ({:?}{}): {} runs and their cooldown branches into {}; {flops:.3e} training FLOPs predicted, {estimate}",
            design.protocol,
            if design.quick { ", quick" } else { "" },
            design.runs().len(),
            runs_dir.display(),
        );
    }
    if request.mode == StudyMode::Plan {
        println!("{}", serde_json::to_string_pretty(design).expect("plain data"));
        return Ok(false);
    }
    match status {
        StudyStatus::Finished { total, commit } => {
            if main {
                println!(
                    "study: {} holds the finished study of this design ({total} runs and branches, trained at commit {}); nothing to train. `just study --rerun` trains it again at this commit into {} and compares the verdicts",
                    runs_dir.display(),
                    &commit[..commit.len().min(7)],
                    study_run::rerun_dir(study_dir).display()
                );
            }
            Ok(false)
        }
        StudyStatus::OtherDesign => Err(CliError::bad_input(anyhow::anyhow!(
            "{} holds a study of another design than {}; continue it with the design (and commit) that started it, train this one elsewhere with --runs-dir DIR, or move {0} away",
            runs_dir.display(),
            request.design
        ))),
        StudyStatus::Partial { finished, total } => {
            if main {
                eprintln!("study: {finished} of {total} runs and branches already finished; continuing the rest");
            }
            Ok(true)
        }
        StudyStatus::New => Ok(true),
    }
}

/// Train what is left: `jobs` worker processes, or this process (with its data-parallel job).
fn train_study(
    file: &StudyFile,
    runs_dir: &Path,
    jobs: usize,
    make_options: impl FnOnce(&str) -> Result<TrainOptions, CliError>,
) -> Result<(), CliError> {
    if jobs > 1 {
        let seconds = run_workers(file, runs_dir, jobs)?;
        println!(
            "study: done in {} with {jobs} runs at a time; runs in {}",
            crate::run::progress::format_seconds(seconds),
            runs_dir.display()
        );
        return Ok(());
    }
    let options = make_options(&file.design.device)?;
    let seconds = study_run::run(&file.design, runs_dir, &options).map_err(classify)?;
    options.world.shutdown()?;
    if options.world.is_main() {
        println!(
            "study: done in {} of training and evaluation; runs in {}",
            crate::run::progress::format_seconds(seconds),
            runs_dir.display()
        );
    }
    Ok(())
}

/// `train study --jobs N`: this command again as N worker processes (each quiet; on a CPU each
/// with its share of the cores, on GPUs each with its own `gpus_per_run` of the visible ones),
/// the design written first; their wall time logged. The workers die with this process; a
/// failed worker stops the others (rerunning continues the study).
fn run_workers(file: &StudyFile, runs_dir: &Path, jobs: usize) -> Result<f64, CliError> {
    let design = &file.design;
    if std::env::var_os("WORLD_SIZE").is_some_and(|w| w != "1") {
        return Err(CliError::bad_input(anyhow::anyhow!("--jobs with a data-parallel launch: use one or the other")));
    }
    let single = TrainOptions::single(tch::Device::Cpu, None, true);
    study_run::adopt(design, runs_dir, &single).map_err(classify)?;
    let exe = std::env::current_exe().context("the path of this program")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gpus = match design.device.as_str() {
        "cpu" => None,
        _ => Some(visible_gpus()?),
    };
    let clock = study_run::WallClock::start(runs_dir);
    let mut group = Group::forwarding_signals();
    for worker in 0..jobs {
        let mut command = std::process::Command::new(&exe);
        command.args(&args).args(["--worker", &worker.to_string()]);
        if !args.iter().any(|a| a == "--quiet") {
            command.arg("--quiet");
        }
        match &gpus {
            None if std::env::var_os("STAGEWISE_THREADS").is_none() => {
                command.env("STAGEWISE_THREADS", (cores / jobs).max(1).to_string());
            }
            None => {}
            Some(visible) => {
                let mine = worker_gpus(worker, visible, file.gpus_per_run).map_err(CliError::bad_input)?;
                command.env("CUDA_VISIBLE_DEVICES", mine.join(","));
                if file.gpus_per_run > 1 {
                    command.args(["--nproc", &file.gpus_per_run.to_string()]);
                }
            }
        }
        group.spawn(format!("worker {worker}"), command)?;
    }
    let planned = design.planned_flops().map_err(|e| classify(crate::error::bad_input(e)))?;
    let quiet = args.iter().any(|a| a == "--quiet");
    let mut progress = crate::run::progress::StudyProgress::new(runs_dir, &planned, quiet);
    let mut recorded = std::time::Instant::now();
    let ended = group.wait(|| {
        progress.tick(&study_run::claimed(runs_dir));
        // The wall time so far, every half minute (a killed study still counts it).
        if recorded.elapsed().as_secs() >= 30 {
            let _ = clock.record(false);
            recorded = std::time::Instant::now();
        }
    })?;
    progress.finish();
    match ended {
        Ended::Succeeded => clock.record(true).map_err(classify),
        ended => {
            clock.record(false).map_err(classify)?;
            let why = match &ended {
                Ended::Failed { name, .. } => format!("{name} failed (its message is above)"),
                _ => "interrupted".into(),
            };
            let e = anyhow::anyhow!("study: {why}; run the same command again to continue");
            Err(if ended.exit_code() == 2 { CliError::bad_input(e) } else { CliError::from(e) })
        }
    }
}

/// The GPUs this process sees: `CUDA_VISIBLE_DEVICES` when set, else every GPU CUDA counts.
fn visible_gpus() -> Result<Vec<String>, CliError> {
    if let Ok(list) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return Ok(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect());
    }
    let count = crate::device::select(crate::device::DeviceChoice::Cuda).map_or(0, |_| tch::Cuda::device_count());
    Ok((0..count).map(|i| i.to_string()).collect())
}

/// The GPUs worker `worker` trains on: group `worker mod G` of the `visible` ones cut into `G`
/// groups of `per_run` (worker i on GPU i mod G with one GPU per run).
pub fn worker_gpus(worker: usize, visible: &[String], per_run: usize) -> anyhow::Result<Vec<String>> {
    let groups = visible.len() / per_run.max(1);
    if groups == 0 {
        anyhow::bail!(
            "the design trains each run on {per_run} GPU(s) and {} are visible; lower gpus_per_run or make more GPUs visible (CUDA_VISIBLE_DEVICES)",
            visible.len()
        );
    }
    let first = (worker % groups) * per_run;
    Ok(visible[first..first + per_run].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_designs_data_is_named_by_the_source_that_makes_it() {
        let need = |preset: &str, set: Option<&str>| {
            let mut c = run_dir::TrainConfig::preset(preset).unwrap();
            if let Some(set) = set {
                c.set(set).unwrap();
            }
            DataNeed::of(&c, 1000).to_string()
        };
        assert_eq!(need("tiny", None), "corpus bytes data/corpus-bytes 1000");
        assert_eq!(need("gpt2-124m", None), "fineweb gpt2 data/edufineweb 1000");
        assert_eq!(need("gpt2-124m", Some("data_dir=data/corpus-gpt2")), "corpus gpt2 data/corpus-gpt2 1000");
        assert_eq!(need("tiny", Some("data_dir=/mnt/tokens")), "own bytes /mnt/tokens 1000");
        // What `train data` writes by default is what a run of that source reads.
        for source in [Source::Corpus, Source::Fineweb] {
            let mut c = run_dir::TrainConfig::preset("gpt2-124m").unwrap();
            c.data_dir = source.default_dir(c.tokenizer);
            assert_eq!(DataNeed::of(&c, 1).source, Some(source));
        }
    }

    #[test]
    fn each_worker_trains_on_its_own_gpus() {
        let eight: Vec<String> = (0..8).map(|i| i.to_string()).collect();
        // One GPU per run: worker i on GPU i mod 8.
        let one: Vec<Vec<String>> = (0..10).map(|w| worker_gpus(w, &eight, 1).unwrap()).collect();
        assert_eq!(one[0], ["0"]);
        assert_eq!(one[7], ["7"]);
        assert_eq!(one[9], ["1"]);
        // Four per run: two groups.
        assert_eq!(worker_gpus(0, &eight, 4).unwrap(), ["0", "1", "2", "3"]);
        assert_eq!(worker_gpus(1, &eight, 4).unwrap(), ["4", "5", "6", "7"]);
        assert_eq!(worker_gpus(2, &eight, 4).unwrap(), ["0", "1", "2", "3"]);
        // The visible list is the user's (CUDA_VISIBLE_DEVICES=4,5).
        let two = ["4".to_string(), "5".to_string()];
        assert_eq!(worker_gpus(3, &two, 1).unwrap(), ["5"]);
        let err = worker_gpus(0, &two, 4).unwrap_err().to_string();
        assert!(err.contains("4 GPU(s) and 2 are visible"), "{err}");
    }
}
