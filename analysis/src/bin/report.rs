//! `report`: align logged runs on compute and write figures and `report.md`.
//!
//! ```text
//! report                              # reports/runs/ → reports/
//! report --runs runs --out reports/mine --budget 800
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use analysis::markdown::findings;
use analysis::report::{build, compare_verdicts, study_verdicts, ReportOptions};
use clap::Parser;
use stagewise_cli::{self as cli, CliError};

/// Align incremental runs with the baseline on compute; write figures (SVG + PNG) and report.md.
#[derive(Parser, Debug)]
#[command(
    name = "report",
    version,
    after_help = "Examples:\n  report\n  report --runs runs --out reports/mine\n  report --runs reports/paper/runs --out reports/paper --baseline paper-baseline-s1 --budget 500"
)]
struct Args {
    /// Directory of run directories (each with run.json and metrics.jsonl).
    #[arg(long, default_value = "reports/runs")]
    runs: PathBuf,
    /// Where figures and report.md go.
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    /// Name of the baseline run (default: the first baseline found; not with a fair study, which
    /// fixes its own comparison).
    #[arg(long)]
    baseline: Option<String>,
    /// Compare at the baseline's compute at this step instead of its last step.
    #[arg(long, value_name = "STEP")]
    budget: Option<f64>,
    /// Another fair study of the same design (e.g. reports/runs, when --runs holds its rerun):
    /// print both studies' verdicts arm by arm and whether their conclusions agree.
    #[arg(long, value_name = "RUNS_DIR")]
    compare: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Args = cli::parse_args("report");
    cli::report("report", run(&args))
}

fn run(args: &Args) -> Result<(), CliError> {
    let options = ReportOptions {
        runs_dir: args.runs.clone(),
        out_dir: args.out.clone(),
        baseline: args.baseline.clone(),
        budget_step: args.budget,
    };
    let report = build(&options).map_err(CliError::bad_input)?;
    for s in &report.skipped {
        eprintln!("report: {s}");
    }
    match &report.study {
        Some(study) => {
            for c in &study.catch_up {
                println!("{}: {}", c.arm, c.verdict.sentence());
            }
            if !study.missing.is_empty() {
                println!("{} runs or branches have no log yet (rerun just study to finish)", study.missing.len());
            }
        }
        None => {
            for f in findings(&report.numbers) {
                println!("{f}");
            }
        }
    }
    println!("wrote {} and {} figures (SVG and PNG each)", args.out.join("report.md").display(), report.figures.len());
    if let Some(other) = &args.compare {
        let ours = report.study.as_ref().map(|s| s.catch_up.clone()).ok_or_else(|| {
            CliError::bad_input(anyhow::anyhow!("--compare: {} holds no fair study", args.runs.display()))
        })?;
        let theirs = study_verdicts(other).map_err(CliError::bad_input)?;
        println!("verdicts of {} (this study) against {}:", args.runs.display(), other.display());
        for line in compare_verdicts(&ours, &theirs) {
            println!("{line}");
        }
    }
    Ok(())
}
