//! `report.md`: the numbers of [`crate::compare`] as tables and plain sentences.

use std::fmt::Write as _;

use anyhow::Context;
use run_dir::Skipped;
use serde::Serialize;

use crate::align::Unit;
use crate::compare::Comparisons;
use crate::figures::Figure;
use crate::runs::RunLog;

/// `value` as one line of JSON with its keys sorted, as `run.json` values are shown.
fn sorted_json(value: &impl Serialize) -> anyhow::Result<String> {
    // serde_json's `Value` keeps object keys sorted.
    Ok(serde_json::to_string(&serde_json::to_value(value)?)?)
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// Why Figure 1 is left out when fewer than half the HellaSwag examples fit the context.
pub fn hellaswag_omitted(scored: u64, skipped: u64) -> String {
    format!(
        "Figure 1 (HellaSwag vs step) is omitted: {scored} of {} examples fit the model's context (fewer than half), so an accuracy would describe a different test.",
        scored + skipped
    )
}

/// What every section reads.
struct Inputs<'a> {
    r: &'a Comparisons,
    runs: &'a [RunLog],
    figures: &'a [Figure],
    skipped: &'a [Skipped],
    preface: Option<&'a str>,
}

type Section = fn(&Inputs, &mut String) -> anyhow::Result<()>;

/// The sections, in the order the report reads.
const SECTIONS: [Section; 8] =
    [title, what_was_run, at_equal_compute, catching_up, figures, what_the_data_shows, skipped_lines, footer];

/// `report.md`: what was run, the equal-compute and catch-up tables, figures, step times, and
/// what the data shows. `figures` are those drawn beside it; `skipped` the log lines left out;
/// `preface` a paragraph after the title (a study's protocol).
pub fn render(
    r: &Comparisons,
    runs: &[RunLog],
    figures: &[Figure],
    skipped: &[Skipped],
    preface: Option<&str>,
) -> anyhow::Result<String> {
    let inputs = Inputs { r, runs, figures, skipped, preface };
    let mut md = String::new();
    for section in SECTIONS {
        section(&inputs, &mut md)?;
    }
    Ok(md)
}

fn title(i: &Inputs, md: &mut String) -> anyhow::Result<()> {
    writeln!(md, "# stagewise report\n")?;
    writeln!(md, "Does growing a transformer layer by layer save compute? Incremental runs compared with the full-model baseline `{}` at its budget (step {}).\n", i.r.baseline, i.r.budget_step)?;
    if let Some(preface) = i.preface {
        writeln!(md, "{preface}\n")?;
    }
    Ok(())
}

fn what_was_run(i: &Inputs, md: &mut String) -> anyhow::Result<()> {
    writeln!(md, "## What was run\n")?;
    writeln!(md, "| run | schedule | preset | steps logged | device | libtorch | commit | started |")?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    for (run, summary) in i.runs.iter().zip(&i.r.runs) {
        let h = &run.header;
        let commit: String = h.git_commit.chars().take(10).collect();
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | `{commit}` | {} |",
            summary.name,
            summary.schedule,
            h.config.preset,
            summary.train_lines,
            h.device,
            h.libtorch_version,
            h.start_time
        )?;
    }
    if let Some(run) = i.runs.first() {
        writeln!(md, "\nModel and optimizer (from `{}/run.json`):\n", run.name())?;
        writeln!(md, "```json\n{}\n```", sorted_json(&run.header.config)?)?;
    }
    for run in i.runs.iter().filter(|r| !r.is_baseline()) {
        writeln!(md, "\n`{}` schedule: `{}`", run.name(), sorted_json(&run.header.schedule)?)?;
    }
    Ok(())
}

fn at_equal_compute(i: &Inputs, md: &mut String) -> anyhow::Result<()> {
    let r = i.r;
    writeln!(md, "\n## At equal compute\n")?;
    writeln!(md, "Each incremental run at the point where its cumulative compute equals the baseline's budget, in each unit. Baseline at its budget: train loss {}, val loss {}, HellaSwag acc_norm {}. Negative gaps favour the incremental run.\n", fmt(r.baseline_train_loss, 4), fmt(r.baseline_val_loss, 4), fmt(r.baseline_acc_norm, 4))?;
    for unit in Unit::ALL {
        let Some(budget) = r.budget(unit) else { continue };
        writeln!(md, "### {} (budget {budget:.4e})\n", unit.label())?;
        writeln!(md, "| run | step at budget | train loss | val loss | val loss gap | acc_norm |")?;
        writeln!(md, "|---|---|---|---|---|---|")?;
        for c in &r.comparisons {
            let p = c.at(unit).context("every unit is aligned")?;
            let gap = p.val_loss.zip(r.baseline_val_loss).map(|(a, b)| a - b);
            let step = p.step.map_or("not reached".into(), |s| format!("{s:.1}"));
            writeln!(
                md,
                "| {} | {step} | {} | {} | {} | {} |",
                c.run,
                fmt(p.train_loss, 4),
                fmt(p.val_loss, 4),
                gap.map_or("–".into(), |g| format!("{g:+.4}")),
                fmt(p.acc_norm, 4)
            )?;
        }
        writeln!(md)?;
    }
    Ok(())
}

fn catching_up(i: &Inputs, md: &mut String) -> anyhow::Result<()> {
    writeln!(md, "## Catching up\n")?;
    writeln!(md, "When each run first reaches the baseline's final val loss ({}), and the compute it had spent by then as a multiple of the baseline's.\n", fmt(i.r.baseline_val_loss, 4))?;
    writeln!(md, "| run | step | × paper units | × FLOPs | × seconds |")?;
    writeln!(md, "|---|---|---|---|---|")?;
    for c in &i.r.comparisons {
        let m = |unit: Unit| c.catch_up.multiples.iter().find(|(u, _)| *u == unit).and_then(|(_, m)| *m);
        let step = c.catch_up.step.map_or("never (within the logged steps)".into(), |s| format!("{s:.1}"));
        writeln!(
            md,
            "| {} | {step} | {} | {} | {} |",
            c.run,
            fmt(m(Unit::PaperUnits), 3),
            fmt(m(Unit::Flops), 3),
            fmt(m(Unit::Seconds), 3)
        )?;
    }
    Ok(())
}

fn figures(i: &Inputs, md: &mut String) -> anyhow::Result<()> {
    writeln!(md, "\n## Figures\n")?;
    for f in i.figures {
        writeln!(md, "{}", f.link())?;
    }
    if !i.r.step_times.is_empty() {
        writeln!(md, "Step time per phase (median, relative to the run's own full-model steps):\n")?;
        step_time_table(md, &i.r.step_times)?;
    }
    Ok(())
}

fn what_the_data_shows(i: &Inputs, md: &mut String) -> anyhow::Result<()> {
    writeln!(md, "\n## What the data shows\n")?;
    for line in findings(i.r) {
        writeln!(md, "- {line}")?;
    }
    Ok(())
}

fn skipped_lines(i: &Inputs, md: &mut String) -> anyhow::Result<()> {
    if !i.skipped.is_empty() {
        writeln!(md, "\n## Skipped log lines\n")?;
        for s in i.skipped {
            writeln!(md, "- `{s}`")?;
        }
    }
    Ok(())
}

fn footer(_: &Inputs, md: &mut String) -> anyhow::Result<()> {
    writeln!(
        md,
        "\n*Generated by `just report` from the run logs in this folder's runs; rerun it to reproduce every number.*"
    )?;
    Ok(())
}

/// The measured step time of every phase next to the FLOP model's, relative to full steps.
pub(crate) fn step_time_table(md: &mut String, times: &[crate::compare::PhaseStepTime]) -> std::fmt::Result {
    writeln!(md, "| run | stage | phase | measured | FLOP model |")?;
    writeln!(md, "|---|---|---|---|---|")?;
    for t in times {
        writeln!(md, "| {} | {} | {} | {:.2} | {:.2} |", t.run, t.stage, t.phase.as_str(), t.measured, t.predicted)?;
    }
    Ok(())
}

/// Plain sentences from the numbers, whatever they say.
pub fn findings(r: &Comparisons) -> Vec<String> {
    let mut out = Vec::new();
    for c in &r.comparisons {
        for unit in [Unit::PaperUnits, Unit::Flops] {
            let Some(p) = c.at(unit) else { continue };
            let unit = unit.label();
            match (p.val_loss, r.baseline_val_loss) {
                // One run each: a difference, not a verdict (no spread to judge it by).
                (Some(v), Some(b)) => out.push(format!(
                    "At equal compute in {unit}, `{}` has val loss {v:.4} vs the baseline's {b:.4} ({:+.4}; one run each, no spread: not a verdict).",
                    c.run,
                    v - b
                )),
                _ => out.push(format!(
                    "`{}` never reached the baseline's budget in {unit} within its logged steps.",
                    c.run
                )),
            }
        }
        let flops = c.catch_up.multiples.iter().find(|(u, _)| *u == Unit::Flops).and_then(|(_, m)| *m);
        match (c.catch_up.step, flops) {
            (Some(s), Some(m)) => out.push(format!(
                "`{}` first matched the baseline's final val loss at step {s:.0}, after {m:.2}× the baseline's FLOPs{}.",
                c.run,
                if m > 1.0 { " (more than the baseline spent; one run, no spread)" } else { " (less than the baseline spent; one run, no spread)" }
            )),
            _ => out.push(format!("`{}` did not match the baseline's final val loss within its logged steps.", c.run)),
        }
    }
    if out.is_empty() {
        out.push("Only a baseline was found: train incremental runs to compare (just study).".into());
    }
    out.extend(r.caveats.iter().cloned());
    out
}
