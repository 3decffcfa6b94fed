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

mod args;

use std::process::ExitCode;

use args::{BenchArgs, Cli, Command, DistArgs, ScheduleArg};
use clap::ValueEnum;
use run_dir::TrainConfig;
use stagewise_cli::{self as cli, CliError};
use tch::Device;
use trainer::device::{self, DeviceChoice};
use trainer::jobs::commands::{self, classify, Train};
use trainer::run::options::TrainOptions;
use trainer::run::trainer::{describe, TrainSummary};
use trainer::world::{self, Launch};

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
            Some(Command::Study(a)) if a.request().mode.prints_only() => {
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
                        args::schedule(&args.config, &args.incremental, &args.until, ScheduleArg::Baseline, &config)?;
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
    let schedule = args::schedule(&args.config, &args.incremental, &args.until, ScheduleArg::Incremental, &config)?;
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
    let selected = device::select(choice).ok();
    let cuda = selected.is_some_and(|d: Device| d.is_cuda());
    let one_gpu_per_rank = selected.is_some_and(|d| cli.dist.dist_backend.resolve(d).one_gpu_per_rank());
    if cuda && one_gpu_per_rank && tch::Cuda::device_count() < nproc as i64 {
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
