//! `cost`: equal-compute targets for incremental vs full training.
//!
//! ```text
//! cost --stages 12                 # paper and FLOP model side by side
//! cost --stages 8 --r 2 --json     # one JSON object, paper model with backward = 2x forward
//! ```

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use cost_model::measured::StepTimes;
use cost_model::report::{CostReport, CostShape};
use cost_model::{
    backward_ratio_from_times, ComputeUnit, IncrementalSchedule, ModelShape, Phase1Trainable, PhaseStepRounding, Plan,
    PlanError, Until,
};
use stagewise_cli::{self as cli, thousands, CliError};

/// Equal-compute targets for layer-wise incremental vs full training of GPT-2.
///
/// Prints, per stage, the layers added, the steps of phase 1 (only new layers train) and phase 2
/// (all active layers train), their cost in baseline-step equivalents under the paper's layer-count
/// model and under an architecture-aware FLOP model, and the step at which continual training of
/// the full model brings the incremental run to the baseline's compute.
#[derive(Parser, Debug)]
#[command(
    name = "cost",
    version,
    after_help = "Examples:\n  cost --stages 12\n  cost --stages 8 --phase-steps floor\n  cost --stages 4 --backward-ratio 2 --compute-unit flops --json\n  cost --stages 4 --calibrate 18.6,51.7   # r from measured forward / forward+backward ms\n  cost --stages 4 --bench reports/bench/2026-11-30-h200/ours.jsonl   # equal time on an H200\n  cost --stage-layers 1,12 --stage-ends 0.8 --phase1-share 0   # one-layer expansion at 80% of the budget\n  cost --method midas   # a named growth method (see train --method)"
)]
struct Args {
    #[command(flatten)]
    schedule: IncrementalSchedule,
    /// Steps of the baseline run, whose compute is the budget (= incremental steps by default).
    #[arg(long, default_value_t = 10_000)]
    base_steps: u64,
    /// A named growth method's schedule: paper-s4, paper-s8, paper-s12 (paper-s<S>), one-layer,
    /// gstack-2x, midas (what `train --method` runs).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["stages", "stage_layers", "stage_ends", "phase1_share", "phase_steps"])]
    method: Option<cost_model::Method>,
    /// Set the backward/forward ratio from measured times: FORWARD_MS,FORWARD_BACKWARD_MS of one
    /// step (overrides --backward-ratio).
    #[arg(long, value_name = "FORWARD_MS,FORWARD_BACKWARD_MS", value_parser = parse_pair)]
    calibrate: Option<(f64, f64)>,
    /// Unit of the equal-compute step --json reports (the table shows both): paper or flops.
    #[arg(long, alias = "model", value_enum, default_value_t = ComputeUnit::PaperUnits)]
    compute_unit: ComputeUnit,
    #[command(flatten)]
    shape: CostShape,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Data parallel: also predict the per-step gradient all-reduce over this many ranks (with
    /// the table; --json prints the plan only).
    #[arg(long, value_name = "RANKS", help_heading = "Data parallel", conflicts_with = "json",
          value_parser = clap::value_parser!(u32).range(1..))]
    world: Option<u32>,
    /// Bandwidth of each rank's link, GB/s each way (NVLink 4 on an H100 SXM: 450).
    #[arg(long, default_value_t = 450.0, value_name = "GB_PER_S", help_heading = "Data parallel")]
    link_gb_per_s: f64,
    /// Seconds: the step times `train bench` measured for this schedule on some device (its JSON
    /// lines, e.g. reports/bench/2026-11-30-h200/ours.jsonl); prints the equal-time step beside
    /// the paper's and the FLOP model's (--json: `equal_time`).
    #[arg(long, value_name = "FILE")]
    bench: Option<std::path::PathBuf>,
}

fn parse_pair(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s.split_once(',').ok_or_else(|| format!("'{s}' is not FORWARD_MS,FORWARD_BACKWARD_MS"))?;
    let num = |x: &str| x.trim().parse::<f64>().map_err(|_| format!("'{x}' is not a number"));
    Ok((num(a)?, num(b)?))
}

fn main() -> ExitCode {
    let args: Args = cli::parse_args("cost");
    cli::report("cost", run(&args))
}

/// A plan error as bad input, naming this binary's flag for the field it is about (every field
/// is spelled as its flag here: `d_model` is `--d-model`).
fn bad_input(e: PlanError) -> CliError {
    let flag = format!("--{}", e.field().replace('_', "-"));
    CliError::bad_input(anyhow::anyhow!("{e}; set {flag}"))
}

fn run(args: &Args) -> Result<(), CliError> {
    let mut schedule = match args.method {
        // The method's stages; the cost model's own knobs (r, what phase 1 trains) as given.
        Some(method) => IncrementalSchedule {
            backward_ratio: args.schedule.backward_ratio,
            phase1_trainable: args.schedule.phase1_trainable,
            ..method.expand(args.shape.layers as u32).map_err(bad_input)?.schedule
        },
        None => args.schedule.clone(),
    };
    if let Some((forward, forward_backward)) = args.calibrate {
        schedule.backward_ratio = backward_ratio_from_times(forward, forward_backward).map_err(bad_input)?;
    }
    let shape = args.shape.model();
    let until = Until::EqualCompute(args.compute_unit);
    let tokens = args.shape.tokens_per_step;
    let plan = Plan::incremental(&shape, tokens, args.base_steps, &schedule, until).map_err(bad_input)?;
    if args.world.is_some() && !(args.link_gb_per_s.is_finite() && args.link_gb_per_s > 0.0) {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "--link-gb-per-s {}: give the link's bandwidth in GB/s, a positive number",
            args.link_gb_per_s
        )));
    }
    let measured = match &args.bench {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--bench {}: cannot read it", path.display()))
                .map_err(CliError::bad_input)?;
            let times = StepTimes::parse(&text)
                .and_then(|t| Ok((t.equal_time(&shape, &plan)?, t)))
                .map_err(|e| CliError::bad_input(anyhow::anyhow!("--bench {}: {e}", path.display())))?;
            Some(times)
        }
        None => None,
    };
    let output = if args.json {
        let mut report = CostReport::new(shape, &schedule, &plan, args.compute_unit);
        report.equal_time = measured.as_ref().map(|(at, _)| *at);
        report.to_json()
    } else {
        let mut table = table_report(&shape, tokens, &schedule, &plan, until)?;
        if let (Some((at, times)), Some(path)) = (&measured, &args.bench) {
            table.push_str(&format!(
                "\n  {:<46} {:>7}  ({:>10} unrounded; {} continual steps)\n  (step times from {}: {}, full step {:.1} ms)",
                "measured seconds:",
                thousands(at.step),
                fixed2(at.exact),
                thousands(at.step.saturating_sub(plan.incremental_steps)),
                path.display(),
                times.device,
                times.full_ms
            ));
        }
        table
    };
    println!("{output}");
    if let Some(world) = args.world {
        let params = cost_model::comm::parameters(&shape);
        let bytes = cost_model::comm::ring_bytes_per_rank(params as f64 * 4.0, world);
        let seconds = bytes / (args.link_gb_per_s * 1e9);
        println!(
            "\ndata parallel over {world} ranks: {} parameters, {:.1} MB of fp32 gradients a step; a ring all-reduce moves {:.1} MB through each link: {:.2} ms a step at {} GB/s",
            thousands(params),
            params as f64 * 4.0 / 1e6,
            bytes / 1e6,
            seconds * 1e3,
            args.link_gb_per_s
        );
    }
    Ok(())
}

fn table_report(
    shape: &ModelShape,
    tokens_per_step: u64,
    schedule: &IncrementalSchedule,
    plan: &Plan,
    until: Until,
) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    let depths = schedule.depths(shape.blocks());
    let run = schedule.stage_ends_of == cost_model::StageEndsOf::Run;
    let (scale, of) = match run {
        true => (plan.incremental_steps, "the run's steps"),
        false => (plan.base_steps, "the base steps"),
    };
    let ends: Vec<String> = schedule
        .stage_bounds(scale, plan.incremental_steps)
        .iter()
        .map(|(_, end)| fixed_share(end / scale as f64))
        .collect();
    let split = if !schedule.is_even(shape.blocks()) {
        format!("depths {}, ending at {} × {of}", join(&depths), ends.join(", "))
    } else if plan.uneven_split() {
        format!("uneven split: stages add {} layers", join(&plan.layer_split))
    } else {
        format!("{} layers per stage", plan.layer_split[0])
    };
    writeln!(
        out,
        "{} layers in {} stages ({split}); base budget {} steps, {} incremental steps",
        shape.layers,
        schedule.stages(),
        thousands(plan.base_steps),
        thousands(plan.incremental_steps)
    )?;
    writeln!(
        out,
        "paper model: backward/forward r = {}, phase-1 share p = {}, phase steps {}",
        schedule.backward_ratio,
        schedule.phase1_share,
        match schedule.phase_steps {
            PhaseStepRounding::Exact => "exact (phases add up to the incremental steps)",
            PhaseStepRounding::Floor => "floor (reference code: steps // 2S per phase)",
        }
    )?;
    writeln!(
        out,
        "flops model: d = {}, context = {}, vocab = {}, {} tokens/step, phase 1 trains {}",
        shape.d_model,
        thousands(shape.context as u64),
        thousands(shape.vocab as u64),
        thousands(tokens_per_step),
        trainable_name(schedule.phase1_trainable)
    )?;
    writeln!(out, "costs in full-model steps (one baseline step = 1)\n")?;
    writeln!(
        out,
        "{:>5} {:>6} {:>7} {:>9} {:>9}  {:>11} {:>11}  {:>11} {:>11}",
        "stage", "added", "active", "phase-1", "phase-2", "paper", "cumulative", "flops", "cumulative"
    )?;
    let (mut paper_total, mut flops_total) = (0.0, 0.0);
    for s in &plan.stages {
        let paper = s.compute.paper_units;
        let flops = s.compute.flops / plan.full_step.flops;
        paper_total += paper;
        flops_total += flops;
        writeln!(
            out,
            "{:>5} {:>6} {:>7} {:>9} {:>9}  {:>11.2} {:>11.2}  {:>11.2} {:>11.2}",
            s.stage,
            s.layers_added,
            s.active_layers,
            thousands(s.phase1_steps),
            thousands(s.phase2_steps),
            paper,
            paper_total,
            flops,
            flops_total
        )?;
    }
    writeln!(out, "\nequal-compute step (incremental + continual steps that spend the baseline's compute):")?;
    let continual = |step: u64| thousands(step.saturating_sub(plan.incremental_steps));
    let paper = plan.equal_compute.paper_units;
    writeln!(
        out,
        "  {:<46} {:>7}  ({:>10} unrounded; {} continual steps)",
        "paper model, per-stage sum:",
        thousands(paper.step),
        fixed2(paper.exact),
        continual(paper.step)
    )?;
    if let Some(closed) = plan.closed_form_equal_compute {
        let note = if (closed - paper.exact).abs() <= 1e-6 {
            "agrees"
        } else if plan.uneven_split() {
            "assumes S divides L; the row above sums the layers really added"
        } else {
            "assumes fractional phases; the row above uses whole steps"
        };
        writeln!(
            out,
            "  {:<46} {:>7}  ({:>10} unrounded; {note})",
            "paper model, closed form (the paper's):",
            thousands(cost_model::round_half_up(closed)),
            fixed2(closed)
        )?;
    }
    for trainable in [schedule.phase1_trainable, other_trainable(schedule.phase1_trainable)] {
        let flops = if trainable == schedule.phase1_trainable {
            plan.equal_compute.flops
        } else {
            let other = IncrementalSchedule { phase1_trainable: trainable, ..schedule.clone() };
            Plan::incremental(shape, tokens_per_step, plan.base_steps, &other, until)
                .context("the other phase-1 choice")?
                .equal_compute
                .flops
        };
        writeln!(
            out,
            "  {:<46} {:>7}  ({:>10} unrounded; {} continual steps)",
            format!("flops model, phase 1 trains {}:", trainable_name(trainable)),
            thousands(flops.step),
            fixed2(flops.exact),
            continual(flops.step)
        )?;
    }
    Ok(out.trim_end().to_string())
}

/// A share with at most 3 decimals: 0.8, 0.333, 1.
fn fixed_share(x: f64) -> String {
    let text = format!("{x:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// 15729.1666 → "15,729.17".
fn fixed2(x: f64) -> String {
    let cents = (x * 100.0).round() as u64;
    format!("{}.{:02}", thousands(cents / 100), cents % 100)
}

fn trainable_name(t: Phase1Trainable) -> &'static str {
    match t {
        Phase1Trainable::New => "new blocks",
        Phase1Trainable::NewAndEmbeddings => "new + embeddings",
    }
}

fn other_trainable(t: Phase1Trainable) -> Phase1Trainable {
    match t {
        Phase1Trainable::New => Phase1Trainable::NewAndEmbeddings,
        Phase1Trainable::NewAndEmbeddings => Phase1Trainable::New,
    }
}

fn join(xs: &[u32]) -> String {
    xs.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}
