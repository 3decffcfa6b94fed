//! All runs' metrics in one polars frame, and the queries the comparisons ask of it: the one path
//! from the logs to every number in the report.

use cost_model::Phase;
use polars::prelude::*;
use run_dir::LineKind;

use crate::runs::RunLog;

/// One row per metrics line of every run and cooldown branch. Columns: `run, kind, step, tokens,
/// paper_units, flops, seconds, stage, phase, active_layers, trainable_params, loss, val_loss,
/// val_loss_before, acc, acc_norm, n, n_skipped` (absent values are null).
pub fn all_runs(runs: &[RunLog]) -> PolarsResult<DataFrame> {
    let every: Vec<&RunLog> = runs.iter().flat_map(|r| std::iter::once(r).chain(&r.branches)).collect();
    let lines = || every.iter().flat_map(|r| r.lines.iter().map(move |l| (*r, l)));
    let run: Vec<&str> = lines().map(|(r, _)| r.name()).collect();
    let kinds: Vec<&str> = lines().map(|(_, l)| l.kind.as_str()).collect();
    let step: Vec<f64> = lines().map(|(_, l)| l.step as f64).collect();
    let tokens: Vec<f64> = lines().map(|(_, l)| l.tokens as f64).collect();
    let paper: Vec<f64> = lines().map(|(_, l)| l.paper_units).collect();
    let flops: Vec<f64> = lines().map(|(_, l)| l.flops).collect();
    let seconds: Vec<f64> = lines().map(|(_, l)| l.seconds).collect();
    let stage: Vec<u32> = lines().map(|(_, l)| l.stage).collect();
    let phase: Vec<&str> = lines().map(|(_, l)| l.phase.as_str()).collect();
    let active: Vec<u32> = lines().map(|(_, l)| l.active_layers).collect();
    let trainable: Vec<i64> = lines().map(|(_, l)| l.trainable_params).collect();
    let loss: Vec<Option<f64>> = lines().map(|(_, l)| l.loss).collect();
    let val_loss: Vec<Option<f64>> = lines().map(|(_, l)| l.val_loss).collect();
    let val_loss_before: Vec<Option<f64>> = lines().map(|(_, l)| l.val_loss_before).collect();
    // An accuracy over no examples (none fit the context) is undefined, not 0.
    let scored = |l: &run_dir::MetricsLine| l.n != Some(0);
    let acc: Vec<Option<f64>> = lines().map(|(_, l)| l.acc.filter(|_| scored(l))).collect();
    let acc_norm: Vec<Option<f64>> = lines().map(|(_, l)| l.acc_norm.filter(|_| scored(l))).collect();
    let n: Vec<Option<u64>> = lines().map(|(_, l)| l.n).collect();
    let n_skipped: Vec<Option<u64>> = lines().map(|(_, l)| l.n_skipped).collect();
    DataFrame::new_infer_height(vec![
        Column::new("run".into(), run),
        Column::new("kind".into(), kinds),
        Column::new("step".into(), step),
        Column::new("tokens".into(), tokens),
        Column::new("paper_units".into(), paper),
        Column::new("flops".into(), flops),
        Column::new("seconds".into(), seconds),
        Column::new("stage".into(), stage),
        Column::new("phase".into(), phase),
        Column::new("active_layers".into(), active),
        Column::new("trainable_params".into(), trainable),
        Column::new("loss".into(), loss),
        Column::new("val_loss".into(), val_loss),
        Column::new("val_loss_before".into(), val_loss_before),
        Column::new("acc".into(), acc),
        Column::new("acc_norm".into(), acc_norm),
        Column::new("n".into(), n),
        Column::new("n_skipped".into(), n_skipped),
    ])
}

/// `(x, y)` points of one run's lines of one kind, sorted by `x`, nulls dropped.
pub fn series(frame: &DataFrame, run: &str, kind: LineKind, x: &str, y: &str) -> PolarsResult<Vec<(f64, f64)>> {
    let picked = frame
        .clone()
        .lazy()
        .filter(col("run").eq(lit(run)).and(col("kind").eq(lit(kind.as_str()))).and(col(y).is_not_null()))
        .select([col(x).cast(DataType::Float64).alias("x"), col(y).cast(DataType::Float64).alias("y")])
        .sort(["x"], SortMultipleOptions::default())
        .collect()?;
    let (xs, ys) = (picked.column("x")?.f64()?, picked.column("y")?.f64()?);
    Ok(xs.iter().zip(ys.iter()).filter_map(|(a, b)| Some((a?, b?))).collect())
}

/// Per run: train lines logged, the last step of any line, and the largest HellaSwag `n`.
pub fn run_totals(frame: &DataFrame, run: &str) -> PolarsResult<RunTotals> {
    let totals = frame
        .clone()
        .lazy()
        .filter(col("run").eq(lit(run)))
        .select([
            col("kind").eq(lit(LineKind::Train.as_str())).cast(DataType::UInt32).sum().alias("train_lines"),
            col("step").max().alias("last_step"),
            col("n").max().alias("hellaswag_n"),
        ])
        .collect()?;
    let get_u64 =
        |name: &str| -> PolarsResult<Option<u64>> { Ok(totals.column(name)?.cast(&DataType::UInt64)?.u64()?.get(0)) };
    Ok(RunTotals {
        train_lines: get_u64("train_lines")?.unwrap_or(0),
        last_step: get_u64("last_step")?.unwrap_or(0),
        hellaswag_n: get_u64("hellaswag_n")?,
    })
}

/// What [`run_totals`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTotals {
    pub train_lines: u64,
    pub last_step: u64,
    pub hellaswag_n: Option<u64>,
}

/// Median measured seconds and FLOPs of one step, per (stage, phase) of one run: over the train
/// lines that directly follow the run's previous step (so a resume's gap is never a step), for
/// groups of at least `min_steps` steps. The median is the upper middle value.
pub fn step_medians(frame: &DataFrame, run: &str, min_steps: u32) -> PolarsResult<Vec<StepMedian>> {
    let previous = |c: &str| col(c).shift(lit(1));
    let upper_median = |c: &str| col(c).quantile(lit(0.5), QuantileMethod::Higher);
    let medians = frame
        .clone()
        .lazy()
        .filter(col("run").eq(lit(run)).and(col("kind").eq(lit(LineKind::Train.as_str()))))
        .with_columns([
            (col("step") - previous("step")).alias("step_gap"),
            (col("seconds") - previous("seconds")).alias("step_seconds"),
            (col("flops") - previous("flops")).alias("step_flops"),
        ])
        .filter(col("step_gap").eq(lit(1.0)))
        .group_by_stable([col("stage"), col("phase")])
        .agg([upper_median("step_seconds").alias("seconds"), upper_median("step_flops").alias("flops"), len()])
        .filter(col("len").gt_eq(lit(min_steps)))
        .sort(["stage", "phase"], SortMultipleOptions::default())
        .collect()?;
    let stage = medians.column("stage")?.u32()?;
    let phase = medians.column("phase")?.str()?;
    let seconds = medians.column("seconds")?.f64()?;
    let flops = medians.column("flops")?.f64()?;
    let mut out = Vec::new();
    for i in 0..medians.height() {
        let phase = phase.get(i).and_then(|p| serde_json::from_value::<Phase>(p.into()).ok());
        if let (Some(stage), Some(phase), Some(seconds), Some(flops)) =
            (stage.get(i), phase, seconds.get(i), flops.get(i))
        {
            out.push(StepMedian { stage, phase, seconds, flops });
        }
    }
    Ok(out)
}

/// One (stage, phase)'s median step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepMedian {
    pub stage: u32,
    pub phase: Phase,
    pub seconds: f64,
    pub flops: f64,
}

/// The last line of `kind` of `run` (by step) with a value in `column`: `(step, value, flops,
/// seconds)`. `None` when the run has none.
pub fn last_value(frame: &DataFrame, run: &str, kind: LineKind, column: &str) -> PolarsResult<Option<LastValue>> {
    let rows = frame
        .clone()
        .lazy()
        .filter(col("run").eq(lit(run)).and(col("kind").eq(lit(kind.as_str()))).and(col(column).is_not_null()))
        .sort(["step"], SortMultipleOptions::default())
        .tail(1)
        .select([col("step"), col(column).cast(DataType::Float64).alias("value"), col("flops"), col("seconds")])
        .collect()?;
    if rows.height() == 0 {
        return Ok(None);
    }
    let get = |name: &str| -> PolarsResult<f64> { Ok(rows.column(name)?.f64()?.get(0).unwrap_or(f64::NAN)) };
    Ok(Some(LastValue { step: get("step")?, value: get("value")?, flops: get("flops")?, seconds: get("seconds")? }))
}

/// A run's last value of something, where it was logged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastValue {
    pub step: f64,
    pub value: f64,
    pub flops: f64,
    pub seconds: f64,
}

/// The growth lines of `run`: `(step, active layers after, val loss before, val loss after)`.
pub fn growth_lines(frame: &DataFrame, run: &str) -> PolarsResult<Vec<(f64, u32, f64, f64)>> {
    let rows = frame
        .clone()
        .lazy()
        .filter(col("run").eq(lit(run)).and(col("kind").eq(lit(LineKind::Growth.as_str()))))
        .sort(["step"], SortMultipleOptions::default())
        .select([col("step"), col("active_layers"), col("val_loss_before"), col("val_loss")])
        .collect()?;
    let (step, layers) = (rows.column("step")?.f64()?, rows.column("active_layers")?.u32()?);
    let (before, after) = (rows.column("val_loss_before")?.f64()?, rows.column("val_loss")?.f64()?);
    Ok((0..rows.height()).filter_map(|i| Some((step.get(i)?, layers.get(i)?, before.get(i)?, after.get(i)?))).collect())
}

/// HellaSwag examples scored and skipped, `(n, n_skipped)`: the largest counts any evaluation of
/// any run logged (every evaluation of a run scores the same examples).
pub fn hellaswag_coverage(frame: &DataFrame) -> PolarsResult<Option<(u64, u64)>> {
    let rows = frame
        .clone()
        .lazy()
        .filter(col("kind").eq(lit(LineKind::Hellaswag.as_str())))
        .select([col("n").max().alias("n"), col("n_skipped").max().alias("n_skipped")])
        .collect()?;
    let n = rows.column("n")?.cast(&DataType::UInt64)?.u64()?.get(0);
    let skipped = rows.column("n_skipped")?.cast(&DataType::UInt64)?.u64()?.get(0).unwrap_or(0);
    Ok(n.map(|n| (n, skipped)))
}
