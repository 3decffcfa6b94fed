//! What `cost --json` prints, an interface other tools rely on: one JSON object per schedule,
//! keys sorted, with the inputs, the per-stage plan and the equal-compute step.
//!
//! ```json
//! {"base_steps": 10000, "equal_compute_step": 14688, "equal_compute_step_exact": 14687.5,
//!  "inputs": {"shape": {...}, "schedule": {"base_steps": 10000, "stages": 4, ...}},
//!  "model": "paper_units", "stages": [{"stage": 1, "layers_added": 3, ...}], ...}
//! ```

use serde::{Deserialize, Serialize};

use crate::{Compute, ComputeUnit, EqualComputeTargets, IncrementalSchedule, ModelShape, Plan};

/// The `cost --json` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// What the plan was computed from.
    pub inputs: CostInputs,
    /// The unit `equal_compute_step` and the stages' costs are counted in.
    pub model: ComputeUnit,
    /// Layers added per stage.
    pub layer_split: Vec<u32>,
    /// True when the stages add different numbers of layers (e.g. 12 in 8 stages: 2,1,2,1,...).
    pub uneven_split: bool,
    pub stages: Vec<StageCost>,
    /// Steps of all stages together, before continual training.
    pub incremental_steps: u64,
    /// Steps of the baseline whose compute is the budget.
    pub base_steps: u64,
    /// Continual (full-model) steps up to the equal-compute step.
    pub continual_steps: u64,
    /// The step at which the run has spent the baseline's compute in `model`, rounded (halves up).
    pub equal_compute_step: u64,
    /// The same, unrounded.
    pub equal_compute_step_exact: f64,
    /// The paper's closed form, unrounded (only for `model = paper_units`).
    pub closed_form_equal_compute_step_exact: Option<f64>,
    /// The equal-compute step in every unit.
    pub equal_compute: EqualComputeTargets,
    /// Compute of one full-model step.
    pub full_step: Compute,
    /// With `cost --bench FILE`: the step at which the run has spent the baseline's measured
    /// time on the bench's device (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equal_time: Option<crate::EqualCompute>,
}

/// The inputs of a [`CostReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostInputs {
    pub shape: CostShape,
    pub schedule: BudgetedSchedule,
}

/// The model and its step as the cost model reads them: `cost`'s model flags, and `inputs.shape`
/// of its JSON. No `heads`: no cost depends on them ([`CostShape::model`] assumes GPT-2's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct CostShape {
    /// Transformer layers L of the full model.
    #[arg(long, default_value_t = 12, help_heading = "Model (FLOP model)")]
    pub layers: usize,
    /// Residual width d.
    #[arg(long, default_value_t = 768, help_heading = "Model (FLOP model)")]
    pub d_model: usize,
    /// Context length T.
    #[arg(long, default_value_t = 1024, help_heading = "Model (FLOP model)")]
    pub context: usize,
    /// Vocabulary size V (padded).
    #[arg(long, default_value_t = 50_304, help_heading = "Model (FLOP model)")]
    pub vocab: usize,
    /// Tokens per optimizer step.
    #[arg(long, default_value_t = 524_288, help_heading = "Model (FLOP model)")]
    pub tokens_per_step: u64,
}

impl CostShape {
    /// What the cost model reads of `model` trained on `tokens_per_step` tokens a step.
    pub fn of(model: &ModelShape, tokens_per_step: u64) -> CostShape {
        let ModelShape { layers, d_model, context, vocab, .. } = *model;
        CostShape { layers, d_model, context, vocab, tokens_per_step }
    }

    /// The model, its heads GPT-2's 64-wide ones (no cost depends on them).
    pub fn model(&self) -> ModelShape {
        let CostShape { layers, d_model, context, vocab, .. } = *self;
        ModelShape { layers, heads: (d_model / 64).max(1), d_model, context, vocab }
    }
}

/// A schedule and the baseline steps it is held to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetedSchedule {
    pub base_steps: u64,
    #[serde(flatten)]
    pub schedule: IncrementalSchedule,
}

/// One stage of a [`CostReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageCost {
    pub stage: u32,
    pub layers_added: u32,
    pub active_layers: u32,
    pub phase1_steps: u64,
    pub phase2_steps: u64,
    /// The stage's cost in full-model steps, in the report's unit.
    pub cost_in_full_steps: f64,
    /// Stages 1..=this one together, in full-model steps.
    pub cumulative_cost_in_full_steps: f64,
    pub paper_units: f64,
    pub flops: f64,
    pub tokens: u64,
}

impl CostReport {
    /// The report of `plan`, made from `schedule` for `shape` (held to the plan's base steps), in `unit`.
    pub fn new(shape: ModelShape, schedule: &IncrementalSchedule, plan: &Plan, unit: ComputeUnit) -> Self {
        let full = plan.full_step;
        // In paper units a full step is 1.0, so this is the paper's own number, exactly.
        let in_full_steps = |c: &Compute| c.get(unit) / full.get(unit);
        let mut cumulative = 0.0;
        let stages = plan
            .stages
            .iter()
            .map(|s| {
                let cost = in_full_steps(&s.compute);
                cumulative += cost;
                StageCost {
                    stage: s.stage,
                    layers_added: s.layers_added,
                    active_layers: s.active_layers,
                    phase1_steps: s.phase1_steps,
                    phase2_steps: s.phase2_steps,
                    cost_in_full_steps: cost,
                    cumulative_cost_in_full_steps: cumulative,
                    paper_units: s.compute.paper_units,
                    flops: s.compute.flops,
                    tokens: s.compute.tokens,
                }
            })
            .collect();
        let target = plan.equal_compute_in(unit);
        CostReport {
            inputs: CostInputs {
                shape: CostShape::of(&shape, full.tokens),
                schedule: BudgetedSchedule { base_steps: plan.base_steps, schedule: schedule.clone() },
            },
            model: unit,
            layer_split: plan.layer_split.clone(),
            uneven_split: plan.uneven_split(),
            stages,
            incremental_steps: plan.incremental_steps,
            base_steps: plan.base_steps,
            continual_steps: plan.continual_steps(),
            equal_compute_step: target.step,
            equal_compute_step_exact: target.exact,
            closed_form_equal_compute_step_exact: match unit {
                ComputeUnit::PaperUnits => plan.closed_form_equal_compute,
                ComputeUnit::Flops | ComputeUnit::Tokens => None,
            },
            equal_compute: plan.equal_compute,
            full_step: full,
            equal_time: None,
        }
    }

    /// Pretty JSON with every object's keys sorted (the order does not depend on field order).
    pub fn to_json(&self) -> String {
        let value = sorted(serde_json::to_value(self).expect("a cost report is plain data"));
        serde_json::to_string_pretty(&value).expect("plain JSON")
    }
}

/// `value` with the keys of every object in sorted order. serde_json's map sorts them already
/// unless some crate in the build turns on its `preserve_order` feature (features unify across
/// the workspace): this keeps `cost --json`, an interface, independent of that.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Until;

    #[test]
    fn field_names_are_the_documented_interface() {
        let shape = ModelShape::gpt2_124m();
        let schedule = IncrementalSchedule::default();
        let plan = Plan::incremental(&shape, crate::GPT2_TOKENS_PER_STEP, 10_000, &schedule, Until::default()).unwrap();
        let report = CostReport::new(shape, &schedule, &plan, ComputeUnit::PaperUnits);
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "base_steps",
                "closed_form_equal_compute_step_exact",
                "continual_steps",
                "equal_compute",
                "equal_compute_step",
                "equal_compute_step_exact",
                "full_step",
                "incremental_steps",
                "inputs",
                "layer_split",
                "model",
                "stages",
                "uneven_split"
            ]
        );
        let stage: Vec<&str> = value["stages"][0].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            stage,
            [
                "active_layers",
                "cost_in_full_steps",
                "cumulative_cost_in_full_steps",
                "flops",
                "layers_added",
                "paper_units",
                "phase1_steps",
                "phase2_steps",
                "stage",
                "tokens"
            ]
        );
        // The model as the cost reads it: no heads (they come back as GPT-2's 64-wide ones).
        let shape: Vec<&str> = value["inputs"]["shape"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(shape, ["context", "d_model", "layers", "tokens_per_step", "vocab"]);
        assert_eq!(value["inputs"]["shape"]["tokens_per_step"], 524_288);
        assert_eq!(report.inputs.shape.model(), ModelShape::gpt2_124m());
        assert_eq!(value["inputs"]["schedule"]["base_steps"], 10_000);
        assert_eq!(value["inputs"]["schedule"]["stages"], 4);
        assert_eq!(value["equal_compute_step"], 14_688);
        // Other tools read it back as the type.
        assert_eq!(serde_json::from_value::<CostReport>(value).unwrap(), report);
    }
}
