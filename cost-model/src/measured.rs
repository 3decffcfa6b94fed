//! Seconds: the third cost model, measured. `train bench` times a step of every trainable
//! configuration of a schedule on some device (one JSON line each); with those times, a plan's
//! segments cost what they cost on that device, and the step at which an incremental run has
//! spent the baseline's *time* follows as for the other two units (`cost --bench FILE`).
//!
//! Times are used as ratios to the bench's full step, so the bench's micro-batch need not be the
//! plan's step size: a segment costs `ms(configuration) / ms(full)` full steps, times its tokens
//! per step over the full step's.

use serde::Deserialize;

use crate::flops::Trainable;
use crate::plan::EqualCompute;
use crate::{ModelShape, Plan};

/// One line of `train bench` (the fields this module reads; others are ignored).
#[derive(Debug, Clone, Deserialize)]
struct BenchLine {
    active_layers: u32,
    first_trainable: u32,
    embeddings_trainable: bool,
    d_model: usize,
    ms_per_step: f64,
    #[serde(default)]
    device: Option<String>,
}

/// Measured milliseconds of a step per trainable configuration, from one bench.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTimes {
    /// The full model's step (the first line with every layer active and training).
    pub full_ms: f64,
    pub layers: usize,
    pub d_model: usize,
    /// The device the bench ran on, as it names it.
    pub device: String,
    times: Vec<(Trainable, f64)>,
}

/// Why a bench cannot price a plan.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeasuredError {
    #[error("line {line}: {detail}")]
    BadLine { line: usize, detail: String },
    #[error("no full-model step in the bench (a line with phase baseline); time it with `train bench`")]
    NoFullStep,
    #[error("the bench timed a {bench_layers}-layer model of width {bench_d}, the plan is for {layers} layers of width {d}; set --layers {bench_layers} --d-model {bench_d}, or bench the plan's model")]
    OtherModel { bench_layers: usize, bench_d: usize, layers: usize, d: usize },
    #[error("the bench has no time for {what}; time this schedule with `train bench` and the same --stages and --phase1-trainable")]
    Missing { what: String },
}

impl StepTimes {
    /// The times in `text`, one `train bench` JSON line each (lines that are not JSON objects,
    /// such as progress output, are skipped).
    pub fn parse(text: &str) -> Result<StepTimes, MeasuredError> {
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let raw = raw.trim();
            if !raw.starts_with('{') {
                continue;
            }
            let line: BenchLine = serde_json::from_str(raw).map_err(|e| MeasuredError::BadLine {
                line: i + 1,
                detail: format!("not a `train bench` line: {e}"),
            })?;
            if !(line.ms_per_step.is_finite() && line.ms_per_step > 0.0) {
                let detail = format!("ms_per_step {} is not a positive time", line.ms_per_step);
                return Err(MeasuredError::BadLine { line: i + 1, detail });
            }
            lines.push(line);
        }
        let full = lines
            .iter()
            .max_by_key(|l| l.active_layers)
            .filter(|l| l.first_trainable == 0 && l.embeddings_trainable)
            .ok_or(MeasuredError::NoFullStep)?;
        let (full_ms, layers, d_model) = (full.ms_per_step, full.active_layers as usize, full.d_model);
        let device = full.device.clone().unwrap_or_else(|| "unknown device".into());
        let times = lines
            .iter()
            .map(|l| {
                let trainable = Trainable {
                    active_layers: l.active_layers,
                    first_trainable: l.first_trainable,
                    embeddings: l.embeddings_trainable,
                };
                (trainable, l.ms_per_step)
            })
            .collect();
        Ok(StepTimes { full_ms, layers, d_model, device, times })
    }

    /// The measured step of `trainable` in full steps (1.0 = the full model's step).
    pub fn ratio(&self, trainable: Trainable) -> Option<f64> {
        self.times.iter().find(|(t, _)| *t == trainable).map(|(_, ms)| ms / self.full_ms)
    }

    /// The step at which `plan` (for a model of `shape`) has spent the baseline's time: its
    /// stages at their measured step times, then full steps. Unrounded and rounded, as the
    /// other equal-compute targets.
    pub fn equal_time(&self, shape: &ModelShape, plan: &Plan) -> Result<EqualCompute, MeasuredError> {
        if (self.layers, self.d_model) != (shape.layers, shape.d_model) {
            return Err(MeasuredError::OtherModel {
                bench_layers: self.layers,
                bench_d: self.d_model,
                layers: shape.layers,
                d: shape.d_model,
            });
        }
        let mut spent = 0.0;
        for segment in plan.segments.iter().take_while(|s| s.first_step <= plan.incremental_steps) {
            let ratio = self.ratio(segment.trainable).ok_or_else(|| MeasuredError::Missing {
                what: format!(
                    "stage {} {} ({} active, from block {}, embeddings {})",
                    segment.stage,
                    segment.phase.as_str(),
                    segment.trainable.active_layers,
                    segment.trainable.first_trainable,
                    if segment.trainable.embeddings { "training" } else { "frozen" }
                ),
            })?;
            let tokens = segment.tokens_per_step as f64 / plan.full_step.tokens as f64;
            spent += segment.steps as f64 * ratio * tokens;
        }
        let exact = plan.incremental_steps as f64 + plan.base_steps as f64 - spent;
        Ok(EqualCompute { exact, step: crate::round_half_up(exact) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IncrementalSchedule, Until};
    use approx::assert_relative_eq;

    /// A bench of a 4-stage GPT-2 124M schedule whose every step takes `ms(active, phase)`.
    fn bench(ms: impl Fn(u32, u32) -> f64) -> String {
        let line = |active: u32, first: u32, embeddings: bool, ms: f64| {
            format!(
                r#"{{"config":"x","stage":0,"phase":"phase1","active_layers":{active},"first_trainable":{first},"embeddings_trainable":{embeddings},"d_model":768,"ms_per_step":{ms},"device":"cuda:0"}}"#
            )
        };
        let mut lines = vec![line(12, 0, true, ms(12, 2)), "not json: progress".into()];
        for stage in 1..=4u32 {
            let active = 3 * stage;
            lines.push(line(active, active - 3, stage == 1, ms(active, 1)));
            lines.push(line(active, 0, true, ms(active, 2)));
        }
        lines.join("\n")
    }

    fn plan(stages: u32) -> Plan {
        let schedule = IncrementalSchedule::even(stages);
        Plan::incremental(&ModelShape::gpt2_124m(), crate::GPT2_TOKENS_PER_STEP, 10_000, &schedule, Until::default())
            .unwrap()
    }

    #[test]
    fn times_proportional_to_the_paper_model_give_the_papers_step() {
        // Step time = the paper's layer count (r = 1): forward over the active layers, backward
        // over the trained ones; equal time is then the paper's 14,688 for 4 stages.
        let times = StepTimes::parse(&bench(|active, phase| match phase {
            1 => 10.0 * (active + 3) as f64,
            _ => 10.0 * (2 * active) as f64,
        }))
        .unwrap();
        assert_eq!((times.full_ms, times.layers, times.device.as_str()), (240.0, 12, "cuda:0"));
        let at = times.equal_time(&ModelShape::gpt2_124m(), &plan(4)).unwrap();
        assert_relative_eq!(at.exact, 14_687.5, epsilon = 1e-6);
        assert_eq!(at.step, plan(4).equal_compute.paper_units.step);
    }

    #[test]
    fn a_fixed_cost_per_step_leaves_fewer_continual_steps() {
        // Every step pays 20% of the full step whatever trains: stages cost more than the layer
        // count says, so equal time comes sooner than equal paper units.
        let times = StepTimes::parse(&bench(|active, phase| {
            let layers = if phase == 1 { active + 3 } else { 2 * active };
            48.0 + 192.0 * layers as f64 / 24.0
        }))
        .unwrap();
        let at = times.equal_time(&ModelShape::gpt2_124m(), &plan(4)).unwrap();
        assert!(at.exact < 14_687.5 && at.exact > 10_000.0, "{at:?}");
    }

    #[test]
    fn a_bench_of_another_model_or_schedule_is_refused_naming_the_fix() {
        let times = StepTimes::parse(&bench(|_, _| 10.0)).unwrap();
        let wide = ModelShape { d_model: 1024, ..ModelShape::gpt2_124m() };
        let err = times.equal_time(&wide, &plan(4)).unwrap_err().to_string();
        assert!(err.contains("--d-model 768"), "{err}");
        let err = times.equal_time(&ModelShape::gpt2_124m(), &plan(12)).unwrap_err().to_string();
        assert!(err.contains("stage 1 phase1 (1 active") && err.contains("train bench"), "{err}");
        assert_eq!(StepTimes::parse("no lines").unwrap_err(), MeasuredError::NoFullStep);
        assert!(matches!(StepTimes::parse("{\"x\": 1}"), Err(MeasuredError::BadLine { line: 1, .. })));
    }
}
