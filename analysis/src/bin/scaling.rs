//! `scaling`: the data-parallel scaling figure and table from `train bench --nproc N` output.
//!
//! ```text
//! scaling reports/bench/2026-11-27-cpu-2core-dist.txt          # → reports/bench/scaling.{svg,png}
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use analysis::scaling::{draw, predicted_step_ms, read_bench, summarise, LINKS};
use anyhow::Context;
use clap::Parser;
use stagewise_cli::{self as cli, CliError};

/// Draw measured tokens/s against processes (from bench JSON lines) beside the cost model's
/// all-reduce prediction for GPT-2 124M on 1-8 GPUs; print both as markdown tables.
#[derive(Parser, Debug)]
#[command(name = "scaling", version, after_help = "Example:\n  scaling reports/bench/2026-11-27-cpu-2core-dist.txt")]
struct Args {
    /// Output of `train bench --nproc N` runs (JSON lines; other lines are skipped).
    bench: PathBuf,
    /// Where scaling.svg and scaling.png go.
    #[arg(long, default_value = "reports/bench")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args: Args = cli::parse_args("scaling");
    cli::report("scaling", run(&args))
}

fn run(args: &Args) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.bench)
        .with_context(|| format!("{}: cannot read the bench output", args.bench.display()))
        .map_err(CliError::bad_input)?;
    let points = read_bench(&text).with_context(|| args.bench.display().to_string()).map_err(CliError::bad_input)?;
    let rows = summarise(&points);
    if rows.is_empty() {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "{}: no full-model bench lines; run `train bench --schedule baseline --nproc N`",
            args.bench.display()
        )));
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))
        .map_err(CliError::bad_input)?;
    let files = draw(&rows, &args.out)?;
    println!("| model | processes | tokens/s, all ranks: median (min–max) | all-reduce of a step: median (min–max) | gradient bytes | repetitions |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let t = r.tokens_per_s_total;
        let reduce = r.allreduce_ms.map_or("–".into(), |a| format!("{:.1} ms ({:.1}–{:.1})", a.median, a.min, a.max));
        println!(
            "| {} | {} | {:.0} ({:.0}–{:.0}) | {reduce} | {} | {} |",
            r.model, r.world_size, t.median, t.min, t.max, r.gradient_bytes, t.n
        );
    }
    println!("\n| GPUs | {} |", LINKS.map(|(name, _)| format!("{name}: all-reduce ms (% of step)")).join(" | "));
    println!("|---|{}", "---|".repeat(LINKS.len()));
    for gpus in [1u32, 2, 4, 8] {
        let cells: Vec<String> = LINKS
            .iter()
            .map(|(_, bandwidth)| {
                let (reduce, compute) = predicted_step_ms(gpus, *bandwidth);
                format!("{reduce:.2} ({:.1}%)", 100.0 * reduce / (reduce + compute))
            })
            .collect();
        println!("| {gpus} | {} |", cells.join(" | "));
    }
    for f in files {
        eprintln!("scaling: wrote {}", f.display());
    }
    Ok(())
}
