//! `report.md`: the numbers of [`crate::compare`] as tables and plain sentences.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use run_dir::Skipped;
use serde::Serialize;
use stagewise_cli::thousands;

use crate::align::Unit;
use crate::compare::Comparisons;
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

/// `report.md`: what was run, the equal-compute and catch-up tables, figures, step times, and
/// what the data shows. `figures` are the files written in `out`; `skipped` the log lines left
/// out; `preface` a paragraph after the title (a study's protocol).
pub fn render(
    r: &Comparisons,
    runs: &[RunLog],
    figures: &[PathBuf],
    skipped: &[Skipped],
    out: &Path,
    preface: Option<&str>,
) -> anyhow::Result<String> {
    let mut md = String::new();
    writeln!(md, "# stagewise report\n")?;
    writeln!(md, "Does growing a transformer layer by layer save compute? Incremental runs compared with the full-model baseline `{}` at its budget (step {}).\n", r.baseline, r.budget_step)?;
    if let Some(preface) = preface {
        writeln!(md, "{preface}\n")?;
    }
    writeln!(md, "## What was run\n")?;
    writeln!(md, "| run | schedule | preset | steps logged | device | libtorch | commit | started |")?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    for (run, summary) in runs.iter().zip(&r.runs) {
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
    if let Some(run) = runs.first() {
        writeln!(md, "\nModel and optimizer (from `{}/run.json`):\n", run.name())?;
        writeln!(md, "```json\n{}\n```", sorted_json(&run.header.config)?)?;
    }
    for run in runs.iter().filter(|r| !r.is_baseline()) {
        writeln!(md, "\n`{}` schedule: `{}`", run.name(), sorted_json(&run.header.schedule)?)?;
    }

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

    writeln!(md, "## Catching up\n")?;
    writeln!(md, "When each run first reaches the baseline's final val loss ({}), and the compute it had spent by then as a multiple of the baseline's.\n", fmt(r.baseline_val_loss, 4))?;
    writeln!(md, "| run | step | × paper units | × FLOPs | × seconds |")?;
    writeln!(md, "|---|---|---|---|---|")?;
    for c in &r.comparisons {
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

    writeln!(md, "\n## Figures\n")?;
    for f in figures.iter().filter(|f| f.extension().is_some_and(|e| e == "png")) {
        writeln!(md, "{}", figure_link(f, out))?;
    }
    if !r.step_times.is_empty() {
        writeln!(md, "Step time per phase (median, relative to the run's own full-model steps):\n")?;
        step_time_table(&mut md, &r.step_times)?;
    }

    writeln!(md, "\n## What the data shows\n")?;
    for line in findings(r) {
        writeln!(md, "- {line}")?;
    }
    if !skipped.is_empty() {
        writeln!(md, "\n## Skipped log lines\n")?;
        for s in skipped {
            writeln!(md, "- `{s}`")?;
        }
    }
    writeln!(
        md,
        "\n*Generated by `just report` from the run logs in this folder's runs; rerun it to reproduce every number.*"
    )?;
    Ok(md)
}

/// A figure's markdown image line, its path relative to the report in `out`.
fn figure_link(figure: &Path, out: &Path) -> String {
    let name = figure.strip_prefix(out).unwrap_or(figure).display().to_string();
    format!("![{name}]({name})\n")
}

/// The measured step time of every phase next to the FLOP model's, relative to full steps.
fn step_time_table(md: &mut String, times: &[crate::compare::PhaseStepTime]) -> std::fmt::Result {
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

/// `report.md` of a study: the verdicts first (each with the smallest effect its seeds could
/// detect), then the design, the learning-rate sweep and what annealing gained, the annealed
/// comparisons with their intervals, the compute multiples, ablations, growth, the paper's
/// figures (`figures`: files written in `out`; `runs` the seed-1 alignment behind them), what
/// the study does not show, and what was skipped.
pub fn render_study(
    s: &crate::study::StudyNumbers,
    runs: &Comparisons,
    figures: &[PathBuf],
    skipped: &[Skipped],
    out: &Path,
) -> anyhow::Result<String> {
    use crate::stats::{Reach, Verdict};
    let d = &s.design;
    let label = |arm: &str| {
        d.arms.iter().chain(&d.ablations).find(|a| a.name == arm).map_or(arm.to_string(), |a| a.label.clone())
    };
    let budgets = d.budgets.iter().map(|b| format!("{b}")).collect::<Vec<_>>().join(", ");
    let seeds = d.seeds.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ");
    let interval = |i: &crate::stats::Interval, digits: usize| match i.ci {
        Some((low, high)) => format!("{:.digits$} ({:.digits$} to {:.digits$})", i.mean, low, high),
        None => format!("{:.digits$} (one seed)", i.mean),
    };
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    let mde_words = |mde: Option<f64>| match mde {
        Some(m) => format!("the seeds detect a compute effect of {} or more", pct(m)),
        None => "no detectable effect can be stated (fewer than 2 seeds inside the budgets)".to_string(),
    };
    let figure = |stem: &str| -> Option<String> {
        figures
            .iter()
            .find(|f| f.file_stem().is_some_and(|n| n == stem) && f.extension().is_some_and(|e| e == "png"))
            .map(|f| figure_link(f, out))
    };
    let mut md = String::new();
    writeln!(md, "# stagewise study: does growing a transformer layer by layer save compute?\n")?;
    writeln!(md, "## Answer\n")?;
    for c in &s.catch_up {
        writeln!(md, "- **{}**: {} ({}).", label(&c.arm), c.verdict.sentence(), mde_words(c.mde))?;
    }
    writeln!(
        md,
        "\nEach verdict comes from the compute an arm needs to reach the baseline's *annealed* validation loss at 1x its budget: per seed (seed i of every arm starts from the same draws and sees the same batches), interpolated in log compute between the budgets compared ({budgets} x the baseline's {}), then a 95% Student-t interval of the log multiple over the seeds logged ({} designed; runs not logged yet are listed at the end). A saving is 1 − multiple, a speedup 1 / multiple. The detectable effect is the smallest compute change a two-sided 5% test over these seeds finds with 80% power at the spread the seeds showed. Every loss here is taken where that run's learning rate has decayed to lr_min, each arm at its own rate.\n",
        d.budget_unit.as_str(),
        d.seeds.len()
    )?;

    writeln!(md, "## Design\n")?;
    let seconds_total = s.training_seconds;
    writeln!(md, "| | |\n|---|---|")?;
    writeln!(md, "| protocol | {:?}{} |", d.protocol, if d.quick { " (quick smoke run)" } else { "" })?;
    writeln!(md, "| parameters (12 layers) | {} |", thousands(s.parameters))?;
    writeln!(
        md,
        "| budget 1 | {} tokens = {:.1} tokens per parameter; {:.3e} FLOPs |",
        thousands(s.budget_tokens),
        s.budget_tokens as f64 / s.parameters as f64,
        s.budget_flops
    )?;
    writeln!(md, "| budgets compared | {budgets} x budget 1 ({}); a growing arm runs the schedule planned for each budget, a full-model arm one run to the largest with cooldown branches at the others |", d.budget_unit.as_str())?;
    writeln!(md, "| seeds | {seeds} (seed = data_seed) |")?;
    if let Some(sweep) = &d.sweep {
        let rates = sweep.rates.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
        let sweep_seeds = sweep.seeds.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
        writeln!(md, "| learning rates | swept: peak {rates} on seed(s) {sweep_seeds}, annealed at budget {}; each arm then at its best |", sweep.budget)?;
    }
    if let Some(effect) = d.target_effect {
        let needed = match (s.seeds_for_target, s.pooled_sd) {
            (Some(n), Some(sd)) => format!(
                "at the pooled spread of the log multiples ({sd:.3}) that takes {n} seeds; this study has {}",
                d.seeds.len()
            ),
            _ => "the spread is not known yet".to_string(),
        };
        writeln!(md, "| effect the seeds were chosen for | {} of the compute: {needed} |", pct(effect))?;
    }
    writeln!(
        md,
        "| arms | {} |",
        d.arms.iter().map(|a| format!("{} ({})", a.name, a.label)).collect::<Vec<_>>().join("; ")
    )?;
    if !d.ablations.is_empty() {
        writeln!(md, "| ablations (seed {}, budget 1) | {} |", d.first_seed(), d.ablations.len())?;
    }
    writeln!(md, "| overrides of the `{}` preset | `{}` |", d.preset, d.overrides.join(" "))?;
    writeln!(
        md,
        "| measured training time | {:.1} min of training steps, all runs and branches (device: {}) |",
        seconds_total / 60.0,
        d.device
    )?;
    if let Some(wall) = s.wall_seconds {
        writeln!(
            md,
            "| wall time of `train study` | {:.1} min (training, validation, HellaSwag, checkpoints) |",
            wall / 60.0
        )?;
    }
    writeln!(md, "\n{}\n\n{}\n", d.regime, d.trade_offs)?;

    if let Some(sweep) = &d.sweep {
        writeln!(md, "## Learning rate per arm\n")?;
        writeln!(md, "Validation loss at budget {} on the sweep seed(s): annealed (the cooldown branch) / un-annealed (the same step at the constant rate); **bold**: the rate chosen (lowest annealed loss).\n", sweep.budget)?;
        let header: Vec<String> = sweep.rates.iter().map(|r| format!("{r}")).collect();
        writeln!(md, "| arm | {} | annealing gain at the chosen rate |", header.join(" | "))?;
        writeln!(md, "|---|{}---|", "---|".repeat(sweep.rates.len()))?;
        for arm in &d.arms {
            let rows: Vec<&crate::study::SweepRow> = s.sweep.iter().filter(|r| r.arm == arm.name).collect();
            let cells: Vec<String> = rows
                .iter()
                .map(|r| {
                    let loss = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.4}"));
                    let cell = format!("{} / {}", loss(r.annealed), loss(r.constant));
                    if r.chosen {
                        format!("**{cell}**")
                    } else {
                        cell
                    }
                })
                .collect();
            let gain = match rows.iter().find(|r| r.chosen).and_then(|r| Some(r.annealed? - r.constant?)) {
                Some(g) if g < 0.0 => format!("{g:+.4}: annealing helps"),
                Some(g) => format!("{g:+.4}: annealing does not help at this rate"),
                None => "–".to_string(),
            };
            writeln!(md, "| {} | {} | {gain} |", label(&arm.name), cells.join(" | "))?;
        }
        let edge: Vec<String> = d
            .arms
            .iter()
            .filter(|a| {
                s.rates.get(&a.name).is_some_and(|r| Some(r) == sweep.rates.first() || Some(r) == sweep.rates.last())
            })
            .map(|a| a.name.clone())
            .collect();
        match edge.is_empty() {
            true => writeln!(md, "\nEvery chosen rate lies inside the swept range.\n")?,
            false => writeln!(
                md,
                "\nThe chosen rate lies at the edge of the swept range for {}: its best rate may lie outside it.\n",
                edge.join(", ")
            )?,
        }
    }

    writeln!(md, "## Annealed validation loss vs compute\n")?;
    for stem in ["fig_annealed_vs_flops", "fig_annealed_vs_seconds"] {
        if let Some(f) = figure(stem) {
            writeln!(md, "{f}")?;
        }
    }
    writeln!(md, "Mean over seeds and 95% interval; differences are paired by seed (negative favours the arm); the detectable difference is the smallest mean difference the seeds find with 80% power.\n")?;
    writeln!(
        md,
        "| arm | budget | val loss: mean (95% CI) | minus baseline: mean (95% CI) | detectable | FLOPs | measured s |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    for a in &s.at_budget {
        let diff = a.minus_baseline.as_ref().map_or("–".into(), |i| interval(i, 4));
        let mde = a.mde.map_or("–".into(), |m| format!("±{m:.4}"));
        writeln!(
            md,
            "| {} | {} | {} | {diff} | {mde} | {:.3e} | {:.0} |",
            label(&a.arm),
            a.budget,
            interval(&a.val_loss, 4),
            a.flops,
            a.seconds
        )?;
    }

    writeln!(md, "\n## Compute to reach the baseline's annealed loss at budget 1\n")?;
    writeln!(
        md,
        "| arm | per seed (x budget) | geometric mean (95% CI) | saving | speedup | detectable effect | verdict |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    for c in &s.catch_up {
        let per_seed: Vec<String> = c
            .per_seed
            .iter()
            .map(|(seed, r)| match r {
                Reach::At(m) => format!("s{seed}: {m:.3}"),
                Reach::AtMost(m) => format!("s{seed}: ≤ {m}"),
                Reach::MoreThan(m) => format!("s{seed}: > {m}"),
            })
            .collect();
        // The verdict's own numbers: its mean when it has an interval; a bound when seeds lie
        // outside the compared budgets.
        let bound = |multiple: f64| (format!("≥ {}", pct(1.0 - multiple)), format!("≥ {:.2}x", 1.0 / multiple));
        let (saving, speedup) = match &c.verdict {
            Verdict::SavesAtLeast { budget } => bound(*budget),
            Verdict::SavesEverySeed { at_most, .. } => bound(*at_most),
            verdict => match verdict.multiple() {
                Some(m) => (pct(1.0 - m.mean), format!("{:.2}x", 1.0 / m.mean)),
                None => ("–".to_string(), "–".to_string()),
            },
        };
        writeln!(
            md,
            "| {} | {} | {} | {saving} | {speedup} | {} | {} |",
            label(&c.arm),
            per_seed.join(", "),
            c.verdict.multiple().map_or("–".to_string(), |m| interval(m, 3)),
            c.mde.map_or("–".to_string(), pct),
            c.verdict.sentence()
        )?;
    }

    if !s.ablations.is_empty() {
        writeln!(md, "\n## Ablations (seed {}, annealed at budget 1)\n", d.first_seed())?;
        writeln!(md, "| ablation | val loss | minus the unablated arm (same seed) |")?;
        writeln!(md, "|---|---|---|")?;
        for a in &s.ablations {
            writeln!(
                md,
                "| {} | {:.4} | {} |",
                a.label,
                a.val_loss,
                a.minus_reference.map_or("–".into(), |x| format!("{x:+.4}"))
            )?;
        }
        writeln!(md, "\nOne seed each: compare the differences with the seed-to-seed intervals above before reading anything into them.")?;
    }

    if !s.growth.is_empty() {
        writeln!(md, "\n## Validation loss just before and after each growth (seed {})\n", d.first_seed())?;
        writeln!(md, "| run | after step | blocks | before | after | change |")?;
        writeln!(md, "|---|---|---|---|---|---|")?;
        for g in &s.growth {
            writeln!(
                md,
                "| {} | {:.0} | {} | {:.4} | {:.4} | {:+.4} |",
                g.run,
                g.step,
                g.to_layers,
                g.before,
                g.after,
                g.after - g.before
            )?;
        }
    }

    writeln!(md, "\n## The paper's figures (seed 1 main runs)\n")?;
    match s.hellaswag {
        Some((n, skipped)) if crate::stats::hellaswag_covered(n, skipped) => {
            writeln!(md, "HellaSwag: {n} of {} examples fit the context.\n", n + skipped)?;
            if let Some(f) = figure("fig1_hellaswag_vs_step") {
                writeln!(md, "{f}")?;
            }
        }
        Some((n, skipped)) => writeln!(md, "{}\n", hellaswag_omitted(n, skipped))?,
        None => writeln!(md, "Figure 1 (HellaSwag vs step) is omitted: HellaSwag was not evaluated.\n")?,
    }
    if let Some(f) = figure("fig2_loss_vs_step") {
        writeln!(md, "{f}")?;
        writeln!(md, "Main runs decay only at their end (the largest budget); dots mark each run at the baseline's budget in paper units, un-annealed, as the paper compared.\n")?;
    }
    if let Some(f) = figure("fig5_step_time_vs_predicted") {
        writeln!(md, "{f}")?;
        step_time_table(&mut md, &runs.step_times)?;
    }
    writeln!(md, "\n## What this does not show\n")?;
    for line in crate::study::confounds(s) {
        writeln!(md, "- {line}")?;
    }
    if !s.missing.is_empty() || !skipped.is_empty() {
        writeln!(md, "\n## Missing and skipped\n")?;
        for m in &s.missing {
            writeln!(md, "- no log yet: `{m}` (rerun `just study` to finish the study)")?;
        }
        for sk in skipped {
            writeln!(md, "- `{sk}`")?;
        }
    }
    writeln!(md, "\n*Generated by `just report` from the run logs in `runs/` and `runs/study.json`; rerun it to reproduce every number.*")?;
    Ok(md)
}
