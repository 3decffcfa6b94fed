//! The `train` command line: its arguments (clap), and how they become the library's requests
//! (config assignments, a schedule, a study's mode, the options of a process in a job).

use std::path::PathBuf;
use std::rc::Rc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cost_model::{ComputeUnit, Until};
use run_dir::config::{OnNan, TokenizerKind, PRESETS};
use run_dir::{BaselineSpec, IncrementalSpec, ScheduleSpec, TrainConfig};
use stagewise_cli::CliError;
use trainer::device::{self, DeviceChoice};
use trainer::jobs::commands::{self, classify, Source, Study, StudyMode};
use trainer::run::options::TrainOptions;
use trainer::world::{self, BackendChoice, World};

/// Train GPT-2 with baseline or layer-wise schedules, prepare token shards, export checkpoints.
#[derive(Parser, Debug)]
#[command(
    name = "train",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  train                                   # tiny baseline on the embedded corpus\n  train --preset gpt2-124m --device cuda --set steps=2000\n  train --schedule incremental --stages 8 --until 2000 --growth zero\n  train --set model.d_model=128 --set steps=300 --run wide\n  train --resume runs/wide\n  train data --tokenizer gpt2\n  train study --quick\n  train export runs/wide"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: TrainArgs,
    #[command(flatten)]
    pub dist: DistArgs,
}

/// Data parallel: how this process joins a job (torchrun's variables, or `--nproc`).
#[derive(Args, Debug)]
#[command(next_help_heading = "Data parallel (torchrun: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")]
pub struct DistArgs {
    /// Start N local ranks of this command (one per GPU on CUDA; the cores split on CPU); for
    /// training, bench, cooldown and study (data, export and study --plan run in one process).
    #[arg(long, global = true, value_name = "N")]
    pub nproc: Option<usize>,
    /// Nodes (machines) of the job, each started with the same command and its own --node-rank,
    /// as torchrun's --nnodes; with --master-addr and --master-port (or MASTER_ADDR/MASTER_PORT).
    #[arg(long, global = true, value_name = "M", default_value_t = 1)]
    pub nnodes: usize,
    /// This node's number, 0..M (node 0 serves the rendezvous at --master-addr).
    #[arg(long, global = true, value_name = "R", default_value_t = 0)]
    pub node_rank: usize,
    /// Node 0's address, which every node can reach (not 127.0.0.1 across machines).
    #[arg(long, global = true, value_name = "HOST")]
    pub master_addr: Option<String>,
    /// A free port on node 0 for the rendezvous.
    #[arg(long, global = true, value_name = "PORT")]
    pub master_port: Option<u16>,
    /// Process-group backend: auto (NCCL for CUDA tensors, Gloo for CPU), gloo or nccl.
    #[arg(long, global = true, value_enum, default_value_t = BackendChoice::Auto)]
    pub dist_backend: BackendChoice,
    /// Seconds a rank waits for the others (rendezvous, each collective) before it gives up.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = world::DEFAULT_TIMEOUT.as_secs())]
    pub dist_timeout: u64,
}

impl DistArgs {
    /// The options of a process on `choice` that joins the job its environment describes.
    pub fn options(
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
pub enum Command {
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
pub struct ConfigArgs {
    /// Starting configuration: tiny (CPU), gpt2-124m (GPU defaults), paper (reference code).
    #[arg(long, default_value = "tiny", value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    pub preset: String,
    /// Schedule: baseline (all layers train from step 1) or incremental (stages, then continual).
    /// Default: baseline for training, incremental for bench (it times every phase).
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// A named growth method: paper-s4, paper-s8, paper-s12 (paper-s<S>), one-layer, gstack-2x,
    /// midas. It sets the schedule's stages, growth and placement (see the README's growth methods).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["schedule", "stages", "stage_layers", "stage_ends", "phase1_share", "growth", "placement", "reset_optimizer_at_continual"])]
    pub method: Option<cost_model::Method>,
    /// Override a config field, e.g. --set steps=200 --set model.d_model=128 (repeatable; see run.json for keys).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Seed for initialisation (--set seed=N).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seed for the data order (--set data_seed=N; every run with the same data and data seed
    /// sees the same batches).
    #[arg(long)]
    pub data_seed: Option<u64>,
    /// Deterministic GPU kernels (--set deterministic=true): two runs, and a stopped-and-resumed
    /// run, give the same bits on a GPU, at some cost in speed (the CPU is deterministic anyway).
    #[arg(long)]
    pub deterministic: bool,
}

impl ConfigArgs {
    /// Every config key these flags set, as `key=value`: `--set` first, then the flags.
    pub fn assignments(&self) -> Vec<String> {
        let mut out = self.overrides.clone();
        out.extend(self.seed.map(|s| format!("seed={s}")));
        out.extend(self.data_seed.map(|s| format!("data_seed={s}")));
        out.extend(self.deterministic.then(|| "deterministic=true".to_string()));
        out
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Run name (directory under --runs-dir); default <preset>-<schedule>-<UTC time>. Under
    /// torchrun write --run-name: torchrun's own parser takes --run for its --run-path.
    #[arg(long, visible_alias = "run-name")]
    pub run: Option<String>,
    /// Directory holding runs.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Continue the run in this directory from its last checkpoint (other options are ignored:
    /// the run's own run.json decides).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Stop after this step, with a checkpoint (resume later with --resume).
    #[arg(long, value_name = "STEP")]
    pub stop_after_step: Option<u64>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
    /// On a non-finite loss or gradient norm: stop (keep the last good checkpoint) or skip the
    /// batch (--set on_nan=...).
    #[arg(long, value_enum)]
    pub on_nan: Option<OnNan>,
    /// Evaluate on HellaSwag during training; without PATH, data/hellaswag_val.jsonl (`just data
    /// --hellaswag` downloads it there). Recorded in run.json, not in the config.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = trainer::run::eval::DEFAULT_PATH)]
    pub hellaswag: Option<PathBuf>,
    /// Start from pretrained weights instead of random ones: a Hugging Face GPT-2 directory
    /// (config.json + model.safetensors; `train export` writes one), a run (its latest
    /// checkpoint) or a checkpoint. It may be shallower than the model (its blocks fill the first
    /// ones; a schedule grows it from there, e.g. --method gstack-2x from a 6-layer source).
    /// Recorded in run.json with its SHA-256.
    #[arg(long, value_name = "PATH")]
    pub init_from: Option<PathBuf>,
    /// HellaSwag every N steps (and at the last step) (--set hellaswag_every=N).
    #[arg(long, value_name = "N")]
    pub hellaswag_every: Option<u64>,
    /// HellaSwag on the first M examples only (--set hellaswag_limit=M).
    #[arg(long, value_name = "M")]
    pub hellaswag_limit: Option<usize>,
    /// Budgets (multiples of the baseline budget) to take cooldown branches at later: the run
    /// saves a checkpoint at each branch point, e.g. 0.5,1,1.5,2 (--set cooldown_budgets=[...]).
    #[arg(long, value_delimiter = ',', value_name = "B1,B2,...")]
    pub cooldown_budgets: Vec<f64>,
    /// Unit of --cooldown-budgets: flops (default), paper (alias paper_units) or tokens.
    #[arg(long, value_enum)]
    pub cooldown_unit: Option<ComputeUnit>,
    // Last, so its help heading covers only its own flags.
    #[command(flatten)]
    pub incremental: IncrementalSpec,
    #[command(flatten)]
    pub until: UntilArgs,
}

impl TrainArgs {
    /// Every config key these flags set, as `key=value`.
    pub fn assignments(&self) -> Vec<String> {
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
pub enum ScheduleArg {
    Baseline,
    Incremental,
}

/// Where a run stops, as the command line says it.
#[derive(Args, Debug)]
pub struct UntilArgs {
    /// Where the run stops: equal-compute (the baseline's budget; for an incremental run the
    /// cost-model target), a multiple of the budget (2x: to take cooldown branches up to twice
    /// the budget), or a total step count.
    #[arg(long, default_value = "equal-compute", value_parser = parse_until, value_name = "equal-compute|<M>x|<STEPS>", help_heading = "Schedule")]
    pub until: UntilArg,
    /// Compute unit of --until: flops, paper (the paper's layer count; the paper's 14,688 /
    /// 15,469 / 15,729 steps) or tokens.
    #[arg(long, value_enum, default_value_t = ComputeUnit::Flops, help_heading = "Schedule")]
    pub compute_unit: ComputeUnit,
    /// A depth control: count the budget (--set steps) in steps of a model with this many layers
    /// (same width), so a shallower model (--set model.layers) trains to the deeper one's compute.
    #[arg(long, value_name = "LAYERS", help_heading = "Schedule")]
    pub budget_layers: Option<u32>,
}

impl UntilArgs {
    pub fn until(&self) -> Until {
        match self.until {
            UntilArg::EqualCompute => Until::EqualCompute(self.compute_unit),
            UntilArg::Budget(multiple) => Until::Budget { multiple, unit: self.compute_unit },
            UntilArg::Steps(n) => Until::Steps(n),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum UntilArg {
    EqualCompute,
    Budget(f64),
    Steps(u64),
}

pub fn parse_until(s: &str) -> Result<UntilArg, String> {
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
pub struct DataArgs {
    /// Tokenizer: bytes (tiny preset) or gpt2 (BPE, the GPT-2 presets).
    #[arg(long, value_enum, default_value_t = TokenizerKind::Bytes)]
    pub tokenizer: TokenizerKind,
    /// Text source.
    #[arg(long, value_enum, default_value_t = Source::Corpus)]
    pub source: Source,
    /// Where scripts/fetch-corpus unpacked the corpus (or where FineWeb parquet files are cached).
    #[arg(long, default_value = "data/raw")]
    pub raw: PathBuf,
    /// Output directory; default data/corpus-<tokenizer> or data/edufineweb.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Tokens per train shard.
    #[arg(long, default_value_t = 100_000_000)]
    pub shard_tokens: usize,
    /// Corpus and files: every n-th document goes to the validation shard (0, n, 2n, ...).
    #[arg(long, default_value_t = 25)]
    pub val_every: usize,
    /// --source files: the inputs, each a file, a directory (its .txt, .jsonl, .jsonl.gz,
    /// .jsonl.zst and .parquet files, recursively) or a glob pattern (quote it), e.g.
    /// --input 'books/*.txt' crawl/ notes.jsonl.zst
    #[arg(long, num_args = 1.., value_name = "PATH")]
    pub input: Vec<String>,
    /// Text files: the string between documents (default: a file is one document), e.g.
    /// --doc-separator $'\n\n\n'
    #[arg(long, value_name = "TEXT")]
    pub doc_separator: Option<String>,
    /// JSON lines: the field holding a document's text.
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub text_field: String,
    /// Parquet: the column holding a document's text.
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub text_column: String,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
    /// Internal (scripts/bench-data): print the GPT-2 BPE's ranks, `<hex bytes> <rank>` a line,
    /// for building the reference tokenizer the benchmark compares with.
    #[arg(long, hide = true)]
    pub print_bpe: bool,
    /// FineWeb: how many of the sample's 14 parquet files to download.
    #[arg(long, default_value_t = 1)]
    pub fineweb_files: usize,
    /// Do nothing when the output directory already holds shards.
    #[arg(long)]
    pub if_missing: bool,
    /// Instead of tokenizing: download the official HellaSwag validation file into
    /// data/hellaswag_val.jsonl (checked against its size and SHA-256; nothing to do when present).
    #[arg(long)]
    pub hellaswag: bool,
    /// Where --hellaswag downloads from (a mirror of rowanz/hellaswag's data/hellaswag_val.jsonl).
    #[arg(long, value_name = "URL", default_value = trainer::run::eval::OFFICIAL_URL)]
    pub hellaswag_url: String,
}

#[derive(Args, Debug)]
pub struct StudyArgs {
    /// The design: a built-in one (cpu, quick, paper, gpu-r0, gpu, gpu-pilot: studies/<name>.toml) or a design
    /// file of your own (TOML, as studies/*.toml).
    #[arg(long, default_value = "cpu", value_name = "NAME|FILE")]
    pub design: String,
    /// The smoke run of the CPU study (--design quick).
    #[arg(long, conflicts_with = "design")]
    pub quick: bool,
    /// The paper's own comparison (--design paper), or fair (the default design).
    #[arg(long, value_enum, conflicts_with = "design")]
    pub protocol: Option<run_dir::study::Protocol>,
    /// Directory of the study's runs (default: the design's runs_dir, e.g. reports/runs).
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
    /// Print the design and its predicted cost, train nothing.
    #[arg(long)]
    pub plan: bool,
    /// Print the runs directory and exit (for scripts).
    #[arg(long)]
    pub print_runs_dir: bool,
    /// Print the data the runs read, `<source> <tokenizer> <dir> <tokens>` (source: corpus,
    /// fineweb or own), and exit (for scripts: `just study` prepares it).
    #[arg(long)]
    pub print_data: bool,
    /// Train the study again at this commit into <runs-dir>/../rerun/runs (e.g. reports/rerun/runs),
    /// never over the finished one (`just study --rerun` then compares the two studies' verdicts).
    #[arg(long)]
    pub rerun: bool,
    /// Evaluate HellaSwag (this file) at the end of every run and branch. An input of the
    /// evaluation, recorded in each run's run.json: it does not change the study's design.
    #[arg(long, value_name = "PATH")]
    pub hellaswag: Option<PathBuf>,
    /// No progress output from the runs.
    #[arg(long)]
    pub quiet: bool,
    /// Runs trained at once, as worker processes sharing the machine (default: the design
    /// file's `jobs`; on a CPU each gets its share of the cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Internal: this process is worker I of a `--jobs` study.
    #[arg(long, hide = true, value_name = "I")]
    pub worker: Option<usize>,
}

impl StudyArgs {
    pub fn request(&self) -> Study {
        let design = match (self.quick, self.protocol) {
            (true, _) => "quick".to_string(),
            (false, Some(run_dir::study::Protocol::Paper)) => "paper".to_string(),
            _ => self.design.clone(),
        };
        // One mode: printing wins over training, a worker (started by a study) over a plan.
        let mode = match (self.print_runs_dir, self.print_data, self.worker, self.plan) {
            (true, ..) => StudyMode::PrintRunsDir,
            (_, true, ..) => StudyMode::PrintData,
            (_, _, Some(worker), _) => StudyMode::Worker(worker),
            (_, _, None, true) => StudyMode::Plan,
            (_, _, None, false) => StudyMode::Train,
        };
        Study { design, runs_dir: self.runs_dir.clone(), rerun: self.rerun, jobs: self.jobs, mode }
    }
}

#[derive(Args, Debug)]
pub struct CooldownArgs {
    /// The run to branch (trained with --set lr_schedule=wsd or constant and a checkpoint at the
    /// branch point: train it with --cooldown-budgets).
    pub run: PathBuf,
    /// The compute budget, as a multiple of the run's baseline budget.
    #[arg(long)]
    pub budget: f64,
    /// Unit of --budget: flops, paper (alias paper_units) or tokens.
    #[arg(long, value_enum, default_value_t = ComputeUnit::Flops)]
    pub unit: ComputeUnit,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Stop after this step, with a checkpoint (resume with --resume RUN/cooldowns/<unit>-<budget>).
    #[arg(long, value_name = "STEP")]
    pub stop_after_step: Option<u64>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Untimed steps per configuration first (allocator and kernel warm-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed steps per configuration.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Peak FLOP/s in TFLOP/s for MFU (default on CUDA: H100 SXM bf16 dense, 989; none on CPU).
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Micro-batch (sequences per step) to time; default: the preset's.
    #[arg(long)]
    pub micro_batch: Option<usize>,
    #[command(flatten)]
    pub incremental: IncrementalSpec,
    #[command(flatten)]
    pub until: UntilArgs,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The run directory.
    pub run: PathBuf,
    /// Checkpoint step to export (default: the latest).
    #[arg(long)]
    pub step: Option<u64>,
}

/// The schedule the arguments describe for `config`'s model: a named method, or `--schedule`
/// (incremental when a depth list is given; else `default`).
pub fn schedule(
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
            Ok(ScheduleSpec::Incremental(IncrementalSpec { until: until.until(), ..inc.clone() }))
        }
    }
}
