//! Data-parallel scaling: what `train bench --nproc N` measured (its JSON lines, grouped by model
//! and process count) next to what the cost model predicts for GPT-2 124M on N GPUs (the
//! gradient all-reduce of one step over NVLink and over PCIe, against the step's compute).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cost_model::comm;
use cost_model::ModelShape;
use serde::Deserialize;

use crate::figures::{run_color, save, Line, Panel};

/// The fields of a bench line this module reads (the trainer's `BenchLine`).
#[derive(Debug, Clone, Deserialize)]
pub struct BenchPoint {
    pub preset: String,
    pub device: String,
    pub world_size: usize,
    pub phase: String,
    pub active_layers: u32,
    pub d_model: usize,
    pub micro_batch: usize,
    pub context: usize,
    pub tokens_per_s_total: f64,
    pub allreduce_ms: f64,
    pub gradient_bytes: u64,
}

impl BenchPoint {
    /// What was timed, for a legend: model and micro-batch.
    pub fn model(&self) -> String {
        format!(
            "{} layers, d = {}, micro-batch {} x {} ({})",
            self.active_layers, self.d_model, self.micro_batch, self.context, self.device
        )
    }
}

/// The full-model lines of a bench output (`{...}` lines; commands and other text are skipped).
pub fn read_bench(text: &str) -> anyhow::Result<Vec<BenchPoint>> {
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| l.trim_start().starts_with('{')) {
        let point: BenchPoint =
            serde_json::from_str(line).with_context(|| format!("line {}: not a bench line", i + 1))?;
        if point.phase == "baseline" {
            points.push(point);
        }
    }
    Ok(points)
}

/// Median, smallest and largest of the repetitions of one measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// `None` for no values. The median of an even count is the mean of the middle two.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Spread { median, min: v[0], max: v[n - 1], n })
    }
}

/// One model at one process count: total tokens/s and the all-reduce of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingRow {
    pub model: String,
    pub world_size: usize,
    pub tokens_per_s_total: Spread,
    /// `None` with one process (nothing to reduce).
    pub allreduce_ms: Option<Spread>,
    pub gradient_bytes: u64,
}

/// The measurements grouped by model, then process count.
pub fn summarise(points: &[BenchPoint]) -> Vec<ScalingRow> {
    let mut groups: BTreeMap<(String, usize), Vec<&BenchPoint>> = BTreeMap::new();
    for p in points {
        groups.entry((p.model(), p.world_size)).or_default().push(p);
    }
    groups
        .into_iter()
        .filter_map(|((model, world_size), ps)| {
            let tokens: Vec<f64> = ps.iter().map(|p| p.tokens_per_s_total).collect();
            let reduce: Vec<f64> = ps.iter().filter(|p| p.world_size > 1).map(|p| p.allreduce_ms).collect();
            Some(ScalingRow {
                model,
                world_size,
                tokens_per_s_total: Spread::of(&tokens)?,
                allreduce_ms: Spread::of(&reduce),
                gradient_bytes: ps[0].gradient_bytes,
            })
        })
        .collect()
}

/// A link for the prediction: its name and bandwidth each way, bytes per second.
pub const LINKS: [(&str, f64); 2] = [("NVLink 4 (H100 SXM), 450 GB/s", 450e9), ("PCIe 4 x16, 25 GB/s", 25e9)];

/// PyTorch eager's GPT-2 124M training throughput on one H100 (the 2026-11-26 reference run):
/// the compute a step's all-reduce is compared with.
pub const EAGER_H100_TOKENS_PER_S: f64 = 305_600.0;

/// Predicted milliseconds of a GPT-2 124M step over `gpus` GPUs: `(all-reduce, compute)`, the
/// all-reduce of fp32 gradients over a link of `bandwidth` bytes/s, compute at PyTorch eager's
/// tokens/s per GPU.
pub fn predicted_step_ms(gpus: u32, bandwidth: f64) -> (f64, f64) {
    let shape = ModelShape::gpt2_124m();
    let reduce = comm::allreduce_seconds(&shape, 4.0, gpus, bandwidth) * 1e3;
    let compute = cost_model::GPT2_TOKENS_PER_STEP as f64 / (f64::from(gpus) * EAGER_H100_TOKENS_PER_S) * 1e3;
    (reduce, compute)
}

/// `scaling.svg`/`.png` in `out`: measured tokens/s against processes (median, min–max band) and
/// the predicted all-reduce share of a GPT-2 124M step on 1–8 GPUs per link.
pub fn draw(rows: &[ScalingRow], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut by_model: BTreeMap<&str, Vec<&ScalingRow>> = BTreeMap::new();
    for r in rows {
        by_model.entry(r.model.as_str()).or_default().push(r);
    }
    let measured: Vec<Line> = by_model
        .iter()
        .enumerate()
        .map(|(i, (model, rs))| Line {
            label: (*model).to_string(),
            color: run_color(i, false),
            points: rs.iter().map(|r| (r.world_size as f64, r.tokens_per_s_total.median)).collect(),
            markers: rs.iter().map(|r| (r.world_size as f64, r.tokens_per_s_total.median)).collect(),
            scatter: false,
            band: rs
                .iter()
                .map(|r| (r.world_size as f64, r.tokens_per_s_total.min, r.tokens_per_s_total.max))
                .collect(),
        })
        .collect();
    let predicted: Vec<Line> = LINKS
        .iter()
        .enumerate()
        .map(|(i, (name, bandwidth))| {
            let points: Vec<(f64, f64)> = (1..=8u32)
                .map(|n| {
                    let (reduce, compute) = predicted_step_ms(n, *bandwidth);
                    (f64::from(n), 100.0 * reduce / (reduce + compute))
                })
                .collect();
            Line {
                label: (*name).to_string(),
                color: run_color(i + 3, false),
                markers: points.clone(),
                points,
                scatter: false,
                band: Vec::new(),
            }
        })
        .collect();
    let panels = [
        Panel {
            title: "Measured: data parallel on Gloo, total tokens/s (median, min–max)".into(),
            x_label: "processes".into(),
            y_label: "tokens/s, all ranks".into(),
            lines: measured,
            diagonal: false,
        },
        Panel {
            title: "Predicted: GPT-2 124M, all-reduce share of a 524,288-token step".into(),
            x_label: "GPUs".into(),
            y_label: "% of step time in the fp32 gradient all-reduce".into(),
            lines: predicted,
            diagonal: false,
        },
    ];
    save(out, "scaling", &panels, 760, 520)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn line(world: usize, tokens: f64, reduce: f64) -> String {
        format!(
            r#"{{"preset":"tiny","device":"cpu","world_size":{world},"config":"full","stage":0,"phase":"baseline","active_layers":12,"first_trainable":0,"embeddings_trainable":true,"d_model":64,"micro_batch":16,"context":64,"bf16":false,"gradient_bytes":2500000,"ms_per_step":1.0,"tokens_per_s":1.0,"tokens_per_s_total":{tokens},"allreduce_ms":{reduce},"model_flops_per_s":1.0,"mfu":null,"peak_memory_bytes":null,"gpu_memory_bytes":null,"predicted_ratio":1.0,"measured_ratio":1.0}}"#
        )
    }

    #[test]
    fn repetitions_are_summarised_by_model_and_process_count() {
        let text = [
            "$ train bench --nproc 1".to_string(),
            line(1, 100.0, 0.0),
            line(2, 150.0, 6.0),
            line(1, 300.0, 0.0),
            line(2, 130.0, 5.0),
            line(1, 200.0, 0.0),
            line(2, 170.0, 7.0),
            // A phase line of an incremental bench is not a full step: left out.
            line(1, 9999.0, 0.0).replace("\"phase\":\"baseline\"", "\"phase\":\"phase1\""),
        ]
        .join("\n");
        let rows = summarise(&read_bench(&text).unwrap());
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].world_size, rows[1].world_size), (1, 2));
        assert_eq!(rows[0].tokens_per_s_total, Spread { median: 200.0, min: 100.0, max: 300.0, n: 3 });
        assert_eq!(rows[0].allreduce_ms, None, "one process reduces nothing");
        assert_eq!(rows[1].allreduce_ms.unwrap().median, 6.0);
        assert_eq!(Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
        assert!(read_bench("{\"not\": \"a bench line\"}").unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn the_prediction_is_the_cost_models() {
        // 8 GPUs on NVLink 4: 1.94 ms of all-reduce against 214.5 ms of compute.
        let (reduce, compute) = predicted_step_ms(8, 450e9);
        assert_relative_eq!(reduce, 1.936, epsilon = 1e-3);
        assert_relative_eq!(compute, 524_288.0 / (8.0 * 305_600.0) * 1e3, epsilon = 1e-9);
        assert_eq!(predicted_step_ms(1, 450e9).0, 0.0, "one GPU reduces nothing");
        // PCIe is 18x slower than NVLink: the same bytes take 18x longer.
        assert_relative_eq!(predicted_step_ms(8, 25e9).0, reduce * 18.0, epsilon = 1e-9);
    }
}
