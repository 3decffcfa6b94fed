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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "InputsJson")]
pub struct CostInputs {
    pub shape: ModelShape,
    /// Tokens of one full step.
    pub tokens_per_step: u64,
    pub schedule: BudgetedSchedule,
}

/// `inputs` as the interface spells it (see [`CostInputs`]'s `Serialize`).
#[derive(Deserialize)]
struct InputsJson {
    shape: ShapeJson,
    schedule: BudgetedSchedule,
}

#[derive(Deserialize)]
struct ShapeJson {
    layers: usize,
    d_model: usize,
    context: usize,
    vocab: usize,
    tokens_per_step: u64,
}

impl TryFrom<InputsJson> for CostInputs {
    type Error = String;
    fn try_from(json: InputsJson) -> Result<Self, String> {
        let s = json.shape;
        // Heads as `cost` assumes them: GPT-2's 64-wide ones (no cost depends on them).
        let shape = ModelShape {
            layers: s.layers,
            heads: (s.d_model / 64).max(1),
            d_model: s.d_model,
            context: s.context,
            vocab: s.vocab,
        };
        Ok(CostInputs { shape, tokens_per_step: s.tokens_per_step, schedule: json.schedule })
    }
}

impl Serialize for CostInputs {
    /// The interface's `shape` is what the FLOP model reads of the model and its step:
    /// `layers, d_model, context, vocab, tokens_per_step` (no `heads`, which no cost depends on).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let m = &self.shape;
        let shape = serde_json::json!({
            "layers": m.layers, "d_model": m.d_model, "context": m.context, "vocab": m.vocab,
            "tokens_per_step": self.tokens_per_step,
        });
        let mut out = serializer.serialize_struct("CostInputs", 2)?;
        out.serialize_field("shape", &shape)?;
        out.serialize_field("schedule", &self.schedule)?;
        out.end()
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
                shape,
                tokens_per_step: full.tokens,
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
        assert_eq!(value["inputs"]["schedule"]["base_steps"], 10_000);
        assert_eq!(value["inputs"]["schedule"]["stages"], 4);
        assert_eq!(value["equal_compute_step"], 14_688);
        // Other tools read it back as the type.
        assert_eq!(serde_json::from_value::<CostReport>(value).unwrap(), report);
    }
}
