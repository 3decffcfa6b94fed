//! All runs' metrics in one polars frame, and the lazy queries the report asks of it.

use cost_model::metrics::LineKind;
use polars::prelude::*;

use crate::runs::RunLog;

/// One row per metrics line of every run. Columns: `run, kind, step, tokens, paper_units, flops,
/// seconds, stage, phase, active_layers, trainable_params, loss, val_loss, acc, acc_norm`
/// (absent values are null).
pub fn all_runs(runs: &[RunLog]) -> PolarsResult<DataFrame> {
    let lines = || runs.iter().flat_map(|r| r.lines.iter().map(move |l| (r, l)));
    let kind = |k: LineKind| match k {
        LineKind::Train => "train",
        LineKind::Val => "val",
        LineKind::Hellaswag => "hellaswag",
        LineKind::Checkpoint => "checkpoint",
    };
    let run: Vec<String> = lines().map(|(r, _)| r.meta.name.clone()).collect();
    let kinds: Vec<&str> = lines().map(|(_, l)| kind(l.kind)).collect();
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
    let acc: Vec<Option<f64>> = lines().map(|(_, l)| l.acc).collect();
    let acc_norm: Vec<Option<f64>> = lines().map(|(_, l)| l.acc_norm).collect();
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
        Column::new("acc".into(), acc),
        Column::new("acc_norm".into(), acc_norm),
    ])
}

/// `(x, y)` points of one run's lines of one kind, sorted by `x`, nulls dropped.
pub fn series(frame: &DataFrame, run: &str, kind: &str, x: &str, y: &str) -> PolarsResult<Vec<(f64, f64)>> {
    let picked = frame
        .clone()
        .lazy()
        .filter(col("run").eq(lit(run)).and(col("kind").eq(lit(kind))).and(col(y).is_not_null()))
        .select([col(x).cast(DataType::Float64).alias("x"), col(y).cast(DataType::Float64).alias("y")])
        .sort(["x"], SortMultipleOptions::default())
        .collect()?;
    let (xs, ys) = (picked.column("x")?.f64()?, picked.column("y")?.f64()?);
    Ok(xs.iter().zip(ys.iter()).filter_map(|(a, b)| Some((a?, b?))).collect())
}
