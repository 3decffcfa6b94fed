//! `train`: the command line of the trainer: its arguments, and which library function each runs
//! (`trainer::jobs::commands`).
//!
//! ```text
//! train                                     # tiny preset, baseline, into runs/
//! train --preset gpt2-124m --device cuda --set steps=2000
//! train --schedule incremental --stages 4   # tiny, 4 stages, continual to equal compute
//! train --resume runs/tiny-baseline-20261126-120000
//! train data --tokenizer gpt2               # embedded corpus → data/corpus-gpt2/
//! train study                               # the CPU study (studies/cpu.toml)
//! train export runs/<run> --step 1000       # Hugging Face GPT-2 layout
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cost_model::{ComputeUnit, Until};
use run_dir::config::{OnNan, TokenizerKind, PRESETS};
use run_dir::{BaselineSpec, IncrementalSpec, ScheduleSpec, TrainConfig};
use stagewise_cli::{self as cli, CliError};
use tch::Device;
use trainer::device::{self, DeviceChoice};
use trainer::jobs::commands::{self, classify, Source, Study, Train};
use trainer::run::options::TrainOptions;
use trainer::run::trainer::{describe, TrainSummary};
use trainer::world::{self, Backend, Launch, World};

/// Train GPT-2 with baseline or layer-wise schedules, prepare token shards, export checkpoints.
#[derive(Parser, Debug)]
#[command(
    name = "train",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  train                                   # tiny baseline on the embedded corpus\n  train --preset gpt2-124m --device cuda --set steps=2000\n  train --schedule incremental --stages 8 --until 2000 --growth zero\n  train --set model.d_model=128 --set steps=300 --run wide\n  train --resume runs/wide\n  train data --tokenizer gpt2\n  train study --quick\n  train export runs/wide"
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
    /// Nodes (machines) of the job, each started with the same command and its own --node-rank,
    /// as torchrun's --nnodes; with --master-addr and --master-port (or MASTER_ADDR/MASTER_PORT).
    #[arg(long, global = true, value_name = "M", default_value_t = 1)]
    nnodes: usize,
    /// This node's number, 0..M (node 0 serves the rendezvous at --master-addr).
    #[arg(long, global = true, value_name = "R", default_value_t = 0)]
    node_rank: usize,
    /// Node 0's address, which every node can reach (not 127.0.0.1 across machines).
    #[arg(long, global = true, value_name = "HOST")]
    master_addr: Option<String>,
    /// A free port on node 0 for the rendezvous.
    #[arg(long, global = true, value_name = "PORT")]
    master_port: Option<u16>,
    /// Process-group backend: auto (NCCL for CUDA tensors, Gloo for CPU), gloo or nccl.
    #[arg(long, global = true, value_enum, default_value_t = Backend::Auto)]
    dist_backend: Backend,
    /// Seconds a rank waits for the others (rendezvous, each collective) before it gives up.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = world::DEFAULT_TIMEOUT.as_secs())]
    dist_timeout: u64,
}

impl DistArgs {
    /// The options of a process on `choice` that joins the job its environment describes.
    fn options(
        &self,
        choice: DeviceChoice,
        stop_after_step: Option<u64>,
        quiet: bool,
    ) -> Result<TrainOptions, CliError> {
        let device = device::select(choice).map_err(CliError::bad_input)?;
        let timeout = std::time::Duration::from_secs(self.dist_timeout);
        let (world, device) = World::from_env(device, self.dist_backend, timeout).map_err(classify)?;
        let quiet = quiet || !world.is_main();
        Ok(TrainOptions {
            device,
            stop_after_step,
            quiet,
            world: Rc::new(world),
            hellaswag: None,
            init_from: None,
            lag_reads: None,
        })
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Tokenize the embedded corpus (or FineWeb-edu) into token shards.
    Data(DataArgs),
    /// Write a checkpoint in Hugging Face GPT-2 layout to <run>/export/.
    Export(ExportArgs),
    /// Time warm training steps of the full model and of every phase of a schedule (JSON lines).
    Bench(Box<BenchArgs>),
    /// Cool a run down at a compute budget: from its checkpoint at the branch point, its learning
    /// rate decays to lr_min where its compute reaches BUDGET × its baseline budget
    /// (into RUN_DIR/cooldowns/<unit>-<budget>/; resume with --resume that directory).
    Cooldown(CooldownArgs),
    /// A study (a design file: studies/*.toml, built in by name): every arm at every budget, over
    /// several seeds; continues where it stopped, and says so when it is finished.
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
    /// A named growth method: paper-s4, paper-s8, paper-s12 (paper-s<S>), one-layer, gstack-2x,
    /// midas. It sets the schedule's stages, growth and placement (see the README's growth methods).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["schedule", "stages", "stage_layers", "stage_ends", "phase1_share", "growth", "placement", "reset_optimizer_at_continual"])]
    method: Option<cost_model::Method>,
    /// Override a config field, e.g. --set steps=200 --set model.d_model=128 (repeatable; see run.json for keys).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Seed for initialisation (--set seed=N).
    #[arg(long)]
    seed: Option<u64>,
    /// Seed for the data order (--set data_seed=N; every run with the same data and data seed
    /// sees the same batches).
    #[arg(long)]
    data_seed: Option<u64>,
    /// Deterministic GPU kernels (--set deterministic=true): two runs, and a stopped-and-resumed
    /// run, give the same bits on a GPU, at some cost in speed (the CPU is deterministic anyway).
    #[arg(long)]
    deterministic: bool,
}

impl ConfigArgs {
    /// Every config key these flags set, as `key=value`: `--set` first, then the flags.
    fn assignments(&self) -> Vec<String> {
        let mut out = self.overrides.clone();
        out.extend(self.seed.map(|s| format!("seed={s}")));
        out.extend(self.data_seed.map(|s| format!("data_seed={s}")));
        out.extend(self.deterministic.then(|| "deterministic=true".to_string()));
        out
    }
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
    /// On a non-finite loss or gradient norm: stop (keep the last good checkpoint) or skip the
    /// batch (--set on_nan=...).
    #[arg(long, value_enum)]
    on_nan: Option<OnNan>,
    /// Evaluate on HellaSwag during training; without PATH, data/hellaswag_val.jsonl (`just data
    /// --hellaswag` downloads it there). Recorded in run.json, not in the config.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = trainer::run::eval::DEFAULT_PATH)]
    hellaswag: Option<PathBuf>,
    /// Start from pretrained weights instead of random ones: a Hugging Face GPT-2 directory
    /// (config.json + model.safetensors; `train export` writes one), a run (its latest
    /// checkpoint) or a checkpoint. It may be shallower than the model (its blocks fill the first
    /// ones; a schedule grows it from there, e.g. --method gstack-2x from a 6-layer source).
    /// Recorded in run.json with its SHA-256.
    #[arg(long, value_name = "PATH")]
    init_from: Option<PathBuf>,
    /// HellaSwag every N steps (and at the last step) (--set hellaswag_every=N).
    #[arg(long, value_name = "N")]
    hellaswag_every: Option<u64>,
    /// HellaSwag on the first M examples only (--set hellaswag_limit=M).
    #[arg(long, value_name = "M")]
    hellaswag_limit: Option<usize>,
    /// Budgets (multiples of the baseline budget) to take cooldown branches at later: the run
    /// saves a checkpoint at each branch point, e.g. 0.5,1,1.5,2 (--set cooldown_budgets=[...]).
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

impl TrainArgs {
    /// Every config key these flags set, as `key=value`.
    fn assignments(&self) -> Vec<String> {
        let mut out = self.config.assignments();
        out.extend(self.on_nan.map(|v| format!("on_nan={}", v.to_possible_value().expect("named").get_name())));
        out.extend(self.hellaswag_every.map(|n| format!("hellaswag_every={n}")));
        out.extend(self.hellaswag_limit.map(|n| format!("hellaswag_limit={n}")));
        if !self.cooldown_budgets.is_empty() {
            let list: Vec<String> = self.cooldown_budgets.iter().map(f64::to_string).collect();
            out.push(format!("cooldown_budgets=[{}]", list.join(",")));
        }
        out.extend(self.cooldown_unit.map(|u| format!("cooldown_unit={}", u.as_str())));
        out
    }
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
    /// Corpus and files: every n-th document goes to the validation shard (0, n, 2n, ...).
    #[arg(long, default_value_t = 25)]
    val_every: usize,
    /// --source files: the inputs, each a file, a directory (its .txt, .jsonl, .jsonl.gz,
    /// .jsonl.zst and .parquet files, recursively) or a glob pattern (quote it), e.g.
    /// --input 'books/*.txt' crawl/ notes.jsonl.zst
    #[arg(long, num_args = 1.., value_name = "PATH")]
    input: Vec<String>,
    /// Text files: the string between documents (default: a file is one document), e.g.
    /// --doc-separator $'\n\n\n'
    #[arg(long, value_name = "TEXT")]
    doc_separator: Option<String>,
    /// JSON lines: the field holding a document's text.
    #[arg(long, default_value = "text", value_name = "NAME")]
    text_field: String,
    /// Parquet: the column holding a document's text.
    #[arg(long, default_value = "text", value_name = "NAME")]
    text_column: String,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
    /// Internal (scripts/bench-data): print the GPT-2 BPE's ranks, `<hex bytes> <rank>` a line,
    /// for building the reference tokenizer the benchmark compares with.
    #[arg(long, hide = true)]
    print_bpe: bool,
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
    #[arg(long, value_name = "URL", default_value = trainer::run::eval::OFFICIAL_URL)]
    hellaswag_url: String,
}

#[derive(Args, Debug)]
struct StudyArgs {
    /// The design: a built-in one (cpu, quick, paper, gpu-r0, gpu, gpu-pilot: studies/<name>.toml) or a design
    /// file of your own (TOML, as studies/*.toml).
    #[arg(long, default_value = "cpu", value_name = "NAME|FILE")]
    design: String,
    /// The smoke run of the CPU study (--design quick).
    #[arg(long, conflicts_with = "design")]
    quick: bool,
    /// The paper's own comparison (--design paper), or fair (the default design).
    #[arg(long, value_enum, conflicts_with = "design")]
    protocol: Option<run_dir::study::Protocol>,
    /// Directory of the study's runs (default: the design's runs_dir, e.g. reports/runs).
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// Print the design and its predicted cost, train nothing.
    #[arg(long)]
    plan: bool,
    /// Print the runs directory and exit (for scripts).
    #[arg(long)]
    print_runs_dir: bool,
    /// Print the data the runs read, `<source> <tokenizer> <dir> <tokens>` (source: corpus,
    /// fineweb or own), and exit (for scripts: `just study` prepares it).
    #[arg(long)]
    print_data: bool,
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
    /// Runs trained at once, as worker processes sharing the machine (default: the design
    /// file's `jobs`; on a CPU each gets its share of the cores).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Internal: this process is worker I of a `--jobs` study.
    #[arg(long, hide = true, value_name = "I")]
    worker: Option<usize>,
}

impl StudyArgs {
    fn request(&self) -> Study {
        let design = match (self.quick, self.protocol) {
            (true, _) => "quick".to_string(),
            (false, Some(run_dir::study::Protocol::Paper)) => "paper".to_string(),
            _ => self.design.clone(),
        };
        Study {
            design,
            runs_dir: self.runs_dir.clone(),
            rerun: self.rerun,
            plan: self.plan,
            print_runs_dir: self.print_runs_dir,
            print_data: self.print_data,
            jobs: self.jobs,
            worker: self.worker,
        }
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
    // Before any torch call: the thread count and oneMKL's code path decide the bits of a CPU
    // run; a process started without them pinned restarts itself here with them pinned.
    trainer::device::numerics::pin_or_reexec();
    let cli: Cli = cli::parse_args("train");
    let several_nodes = cli.dist.nnodes > 1 || cli.dist.node_rank > 0;
    if let Some(nproc) = cli.dist.nproc.or(several_nodes.then_some(1)) {
        let one_process = match &cli.command {
            Some(Command::Data(_)) => Some("train data"),
            Some(Command::Export(_)) => Some("train export"),
            Some(Command::Study(a)) if a.plan || a.print_runs_dir || a.print_data => {
                Some("train study --plan / --print-runs-dir / --print-data")
            }
            _ => None,
        };
        if let Err(e) = commands::check_nproc(nproc, one_process) {
            return cli::report("train", Err(e));
        }
        // Already one rank of a job (torchrun, srun, or a rank --nproc started): no fan-out.
        let launched = Launch::from_vars(|name| std::env::var(name).ok()).ok().flatten();
        if (nproc > 1 || several_nodes) && std::env::var_os("RANK").is_none() && launched.is_none() {
            return launch_local(nproc, &cli);
        }
    }
    cli::report("train", dispatch(cli))
}

/// Run the command `cli` asks for.
fn dispatch(cli: Cli) -> Result<(), CliError> {
    let dist = &cli.dist;
    match cli.command {
        Some(Command::Data(a)) if a.hellaswag => commands::download_hellaswag(&a.hellaswag_url),
        Some(Command::Data(a)) if a.print_bpe => commands::print_bpe(),
        Some(Command::Data(a)) => commands::data(&commands::Data {
            tokenizer: a.tokenizer,
            source: a.source,
            raw: a.raw,
            out: a.out,
            shard_tokens: a.shard_tokens,
            val_every: a.val_every,
            fineweb_files: a.fineweb_files,
            if_missing: a.if_missing,
            inputs: a.input,
            read: trainer::data::documents::ReadOptions {
                doc_separator: a.doc_separator,
                text_field: a.text_field,
                text_column: a.text_column,
            },
            quiet: a.quiet,
        }),
        Some(Command::Export(a)) => commands::export(&a.run, a.step),
        Some(Command::Bench(a)) => bench(&a, dist),
        Some(Command::Cooldown(a)) => {
            let options = dist.options(a.device, a.stop_after_step, a.quiet)?;
            let summary = commands::cooldown(&a.run, a.budget, a.unit, &options)?;
            finished(&options, &summary)
        }
        Some(Command::Study(a)) => {
            let hellaswag = a.hellaswag.clone();
            commands::study(&a.request(), |device| {
                let choice = DeviceChoice::from_str(device, true)
                    .map_err(|e| CliError::bad_input(anyhow::anyhow!("design device {device:?}: {e}")))?;
                Ok(TrainOptions { hellaswag, ..dist.options(choice, None, a.quiet)? })
            })
        }
        None => {
            let args = &cli.train;
            let options = dist.options(args.config.device, args.stop_after_step, args.quiet)?;
            let request = match &args.resume {
                Some(run_dir) => Train::Resume(run_dir.clone()),
                None => {
                    let config = commands::config_from(&args.config.preset, &args.assignments())?;
                    let schedule =
                        schedule(&args.config, &args.incremental, &args.until, ScheduleArg::Baseline, &config)?;
                    Train::Start {
                        config: Box::new(config),
                        schedule: Box::new(schedule),
                        runs_dir: args.runs_dir.clone(),
                        name: args.run.clone(),
                    }
                }
            };
            let options =
                TrainOptions { hellaswag: args.hellaswag.clone(), init_from: args.init_from.clone(), ..options };
            let summary = commands::train(request, &options)?;
            finished(&options, &summary)
        }
    }
}

/// A summary line (rank 0 only: every rank ends with the same numbers); the job's group ended.
fn finished(options: &TrainOptions, summary: &TrainSummary) -> Result<(), CliError> {
    if options.world.is_main() {
        println!("{}", describe(summary));
    }
    Ok(options.world.shutdown()?)
}

/// The schedule the arguments describe for `config`'s model: a named method, or `--schedule`
/// (incremental when a depth list is given; else `default`).
fn schedule(
    args: &ConfigArgs,
    inc: &IncrementalSpec,
    until: &UntilArgs,
    default: ScheduleArg,
    config: &TrainConfig,
) -> Result<ScheduleSpec, CliError> {
    if let Some(method) = args.method {
        if until.budget_layers.is_some() {
            return Err(CliError::bad_input(anyhow::anyhow!(
                "--budget-layers is a depth control of the baseline schedule; drop it, or drop --method"
            )));
        }
        let spec = IncrementalSpec::of_method(method, config.model.blocks(), until.until())
            .map_err(|e| commands::classify(trainer::error::bad_input(e)))?;
        return Ok(ScheduleSpec::Incremental(spec));
    }
    let listed = !inc.stages.stage_layers.is_empty() || !inc.stages.stage_ends.is_empty();
    let kind = args.schedule.unwrap_or(if listed { ScheduleArg::Incremental } else { default });
    if listed && kind == ScheduleArg::Baseline {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "--stage-layers and --stage-ends describe an incremental schedule; drop them, or drop --schedule baseline"
        )));
    }
    match kind {
        ScheduleArg::Baseline => {
            Ok(ScheduleSpec::Baseline(BaselineSpec { until: until.until(), budget_layers: until.budget_layers }))
        }
        ScheduleArg::Incremental if until.budget_layers.is_some() => Err(CliError::bad_input(anyhow::anyhow!(
            "--budget-layers is a depth control of the baseline schedule; drop it, or drop --schedule incremental"
        ))),
        ScheduleArg::Incremental => {
            Ok(ScheduleSpec::Incremental(IncrementalSpec { until: until.until(), ..inc.clone() }.normalised()))
        }
    }
}

fn bench(args: &BenchArgs, dist: &DistArgs) -> Result<(), CliError> {
    let mut assignments = args.config.assignments();
    let mut config: TrainConfig = commands::config_from(&args.config.preset, &assignments)?;
    if let Some(micro_batch) = args.micro_batch {
        // A step of exactly one micro-batch of that size.
        assignments.extend([
            format!("micro_batch={micro_batch}"),
            format!("tokens_per_step={}", micro_batch * config.model.context),
        ]);
        config = commands::config_from(&args.config.preset, &assignments)?;
    }
    let schedule = schedule(&args.config, &args.incremental, &args.until, ScheduleArg::Incremental, &config)?;
    let options = dist.options(args.config.device, None, true)?;
    let peak =
        args.peak_tflops.map(|t| t * 1e12).or(options.device.is_cuda().then_some(trainer::jobs::bench::H100_BF16_PEAK));
    let bench =
        trainer::jobs::bench::BenchOptions { warmup_steps: args.warmup, timed_steps: args.steps, peak_flops: peak };
    let main = options.world.is_main();
    trainer::jobs::bench::run(&config, &schedule, options.device, &options.world, &bench, |line| {
        if main {
            println!("{}", serde_json::to_string(line).expect("plain values"));
        }
    })
    .map_err(classify)?;
    Ok(options.world.shutdown()?)
}

/// `--nproc N`: this command again as N local ranks (see `trainer::world::local`).
fn launch_local(nproc: usize, cli: &Cli) -> ExitCode {
    let choice = match &cli.command {
        Some(Command::Bench(a)) => a.config.device,
        Some(Command::Cooldown(a)) => a.device,
        Some(Command::Study(a)) => match run_dir::study::StudyFile::load(&a.request().design) {
            Ok(f) if f.design.device == "cpu" => DeviceChoice::Cpu,
            _ => DeviceChoice::Auto,
        },
        _ => cli.train.config.device,
    };
    let cuda = device::select(choice).is_ok_and(|d: Device| d.is_cuda());
    // NCCL wants a GPU per rank; Gloo ranks may share one.
    if cuda && cli.dist.dist_backend != Backend::Gloo && tch::Cuda::device_count() < nproc as i64 {
        let e = anyhow::anyhow!(
            "--nproc {nproc} on CUDA needs {nproc} GPUs, {} visible; lower --nproc",
            tch::Cuda::device_count()
        );
        return cli::report("train", Err(CliError::bad_input(e)));
    }
    let dist = &cli.dist;
    let nodes = world::local::Nodes {
        nnodes: dist.nnodes,
        node_rank: dist.node_rank,
        master: dist
            .master_addr
            .clone()
            .or_else(|| std::env::var("MASTER_ADDR").ok())
            .zip(dist.master_port.or_else(|| std::env::var("MASTER_PORT").ok().and_then(|p| p.trim().parse().ok())))
            .filter(|_| dist.nnodes > 1),
    };
    if let Err(e) = nodes.check() {
        return cli::report("train", Err(CliError::bad_input(e)));
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match world::local::run_local(nproc, &nodes, &world::local::without_launch_flags(&args), cuda) {
        Ok(code) => ExitCode::from(code),
        Err(e) => cli::report("train", Err(CliError::from(e))),
    }
}
