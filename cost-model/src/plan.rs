//! The plan of a run: its stages, phases and continual tail, and the compute of every step.
//!
//! A plan is a list of [`Segment`]s, each a run of identical steps (same phase, active layers,
//! trainable set and tokens). The trainer walks the segments; the per-step API ([`Plan::step`],
//! [`Plan::cumulative`]) gives the phase and compute of any step without re-deriving anything.

use serde::{Deserialize, Serialize};

use crate::flops::{token_flops, Trainable};
use crate::{
    closed_form, ComputeUnit, IncrementalSchedule, ModelShape, PhaseStepRounding, PlanError, StageEndsOf, Until,
};

/// Round to the nearest integer, halves up (14,687.5 → 14,688). Negative values clamp to 0.
pub fn round_half_up(x: f64) -> u64 {
    if x <= 0.0 {
        0
    } else {
        (x + 0.5).floor() as u64
    }
}

/// Backward/forward ratio `r` from measured times of a forward pass and a forward+backward pass.
pub fn backward_ratio_from_times(forward_seconds: f64, forward_backward_seconds: f64) -> Result<f64, PlanError> {
    let ok = forward_seconds.is_finite()
        && forward_backward_seconds.is_finite()
        && forward_seconds > 0.0
        && forward_backward_seconds > forward_seconds;
    if !ok {
        return Err(PlanError::BadCalibration(format!(
            "forward {forward_seconds} and forward+backward {forward_backward_seconds}"
        )));
    }
    Ok((forward_backward_seconds - forward_seconds) / forward_seconds)
}

/// What a step trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// All layers train from the first step (the full-model run).
    Baseline,
    /// Only the stage's new blocks train (plus the embeddings with `new+embeddings`).
    Phase1,
    /// All active blocks train.
    Phase2,
    /// After the stages: all layers train, like the baseline.
    Continual,
}

impl Phase {
    /// The name used in logs and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Phase1 => "phase1",
            Phase::Phase2 => "phase2",
            Phase::Continual => "continual",
        }
    }
}

/// Cumulative (or per-step) compute in every unit the cost model owns.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Compute {
    pub tokens: u64,
    /// Paper layer-count units; one baseline step = 1.0.
    pub paper_units: f64,
    pub flops: f64,
}

impl Compute {
    /// The amount in `unit`.
    pub fn get(&self, unit: ComputeUnit) -> f64 {
        match unit {
            ComputeUnit::PaperUnits => self.paper_units,
            ComputeUnit::Flops => self.flops,
            ComputeUnit::Tokens => self.tokens as f64,
        }
    }
}

/// Blocks a stage adds at its first step: the model grows from `from_layers` to `to_layers`
/// active blocks (from 0 in stage 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerGrowth {
    pub from_layers: u32,
    pub to_layers: u32,
}

/// A run of identical steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub phase: Phase,
    /// 1..=S for incremental stages and the continual tail (which runs stage S's layers);
    /// 0 for the baseline.
    pub stage: u32,
    /// First step of the segment, 1-based (steps count optimizer steps).
    pub first_step: u64,
    pub steps: u64,
    /// Which blocks run and which train.
    pub trainable: Trainable,
    /// Sequence length of this segment's batches.
    pub context: u64,
    pub tokens_per_step: u64,
    pub paper_units_per_step: f64,
    pub flops_per_step: f64,
    /// Set on the first segment of every incremental stage: the stage starts here and adds
    /// blocks (what the trainer grows at this segment's first step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grows: Option<LayerGrowth>,
}

impl Segment {
    /// The growth of the model at this segment's first step: a stage after the first adding
    /// blocks (to a model of none, too). Stage 1's `grows` starts the model: no growth.
    pub fn growth(&self) -> Option<LayerGrowth> {
        self.grows.filter(|g| self.stage > 1 && g.to_layers > g.from_layers)
    }

    /// Last step of the segment (inclusive); `first_step - 1` when empty.
    pub fn last_step(&self) -> u64 {
        self.first_step + self.steps - 1
    }
}

/// One incremental stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StagePlan {
    pub stage: u32,
    pub layers_added: u32,
    pub active_layers: u32,
    pub phase1_steps: u64,
    pub phase2_steps: u64,
    /// Compute of the whole stage (both phases).
    pub compute: Compute,
}

/// The step at which an incremental run has spent the baseline's compute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EqualCompute {
    /// Unrounded: incremental steps + (baseline compute − incremental compute) / one full step.
    pub exact: f64,
    /// `exact` rounded to the nearest step, halves up.
    pub step: u64,
}

impl EqualCompute {
    fn new(exact: f64) -> Self {
        EqualCompute { exact, step: round_half_up(exact) }
    }
}

/// Equal-compute points in the two compute models (any unit: [`Plan::equal_compute_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EqualComputeTargets {
    pub paper_units: EqualCompute,
    pub flops: EqualCompute,
}

/// Everything about one step of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    pub step: u64,
    pub phase: Phase,
    pub stage: u32,
    pub trainable: Trainable,
    /// Compute of this step alone.
    pub compute: Compute,
}

/// A baseline or incremental schedule with the compute of every step. It holds what follows from
/// its inputs (model shape, budget, schedule, where it stops), not the inputs themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Layers added per stage (empty for a baseline).
    pub layer_split: Vec<u32>,
    pub stages: Vec<StagePlan>,
    pub segments: Vec<Segment>,
    /// Steps of the baseline run whose compute is the budget.
    pub base_steps: u64,
    /// Steps of all incremental stages together (before continual).
    pub incremental_steps: u64,
    /// Compute of one full-model step.
    pub full_step: Compute,
    pub equal_compute: EqualComputeTargets,
    /// The paper's closed form (assumes `S | L` and fractional phases); `None` for a baseline.
    pub closed_form_equal_compute: Option<f64>,
}

impl Plan {
    /// The full model trained for `steps` steps (its budget).
    pub fn baseline(shape: &ModelShape, tokens_per_step: u64, steps: u64) -> Result<Plan, PlanError> {
        Plan::full_model(shape, tokens_per_step, shape.blocks(), steps, Until::Steps(steps))
    }

    /// A full model of `shape` (all of its layers train from the first step, on `tokens_per_step`
    /// tokens a step) until `until`, held
    /// to the budget of `base_steps` steps of the same model with `budget_layers` layers. With
    /// `budget_layers = shape.layers` this is the baseline; with fewer layers in `shape` it is a
    /// depth control: a shallower model trained to the deeper model's compute. Paper units count
    /// layer-tokens of the budget's model (one of its steps = 1).
    pub fn full_model(
        shape: &ModelShape,
        tokens_per_step: u64,
        budget_layers: u32,
        base_steps: u64,
        until: Until,
    ) -> Result<Plan, PlanError> {
        shape.validate(tokens_per_step)?;
        if base_steps == 0 {
            return Err(PlanError::NoBaseSteps);
        }
        let reference = ModelShape { layers: budget_layers as usize, ..*shape };
        reference.validate(tokens_per_step)?;
        let full_step = full_step_compute(&reference, tokens_per_step);
        let mut segment = full_segment(shape, tokens_per_step, Phase::Baseline, 0, 1, base_steps);
        segment.paper_units_per_step = f64::from(shape.blocks()) / f64::from(budget_layers);
        let mut plan = Plan {
            layer_split: Vec::new(),
            stages: Vec::new(),
            segments: vec![segment],
            base_steps,
            incremental_steps: 0,
            full_step,
            equal_compute: EqualComputeTargets {
                paper_units: EqualCompute::new(base_steps as f64),
                flops: EqualCompute::new(base_steps as f64),
            },
            closed_form_equal_compute: None,
        };
        if budget_layers != shape.blocks() {
            // Steps of this model that spend the budget: its steps cost less (or more) than the
            // budget's model's.
            let steps_for = |unit| base_steps as f64 * full_step.get(unit) / segment_compute(&segment, 1).get(unit);
            plan.equal_compute = EqualComputeTargets {
                paper_units: EqualCompute::new(steps_for(ComputeUnit::PaperUnits)),
                flops: EqualCompute::new(steps_for(ComputeUnit::Flops)),
            };
        }
        let end = plan.end_step(until)?;
        plan.segments[0].steps = end;
        Ok(plan)
    }

    /// Stages of `schedule`, held to the compute of `base_steps` full steps of `tokens_per_step`
    /// tokens, then a continual tail that runs until `until`; or, with `stage_ends_of = run`,
    /// stages that fill the whole run, whose length `until` decides.
    pub fn incremental(
        shape: &ModelShape,
        tokens_per_step: u64,
        base_steps: u64,
        schedule: &IncrementalSchedule,
        until: Until,
    ) -> Result<Plan, PlanError> {
        shape.validate(tokens_per_step)?;
        schedule.validate(shape, base_steps)?;
        if schedule.stage_ends_of == StageEndsOf::Run {
            return Plan::run_relative(shape, tokens_per_step, base_steps, schedule, until);
        }
        let total = schedule.incremental_steps(base_steps);
        let mut plan = Plan::stages(shape, tokens_per_step, base_steps, schedule, total, base_steps)?;
        let full_step = plan.full_step;
        let target = |unit| equal_compute_exact(&plan.stages, plan.incremental_steps, base_steps, full_step, unit);
        plan.equal_compute = EqualComputeTargets {
            paper_units: EqualCompute::new(target(ComputeUnit::PaperUnits)),
            flops: EqualCompute::new(target(ComputeUnit::Flops)),
        };
        // The paper's closed form describes its even schedule only.
        plan.closed_form_equal_compute = schedule.is_even(shape.blocks()).then(|| {
            closed_form::equal_compute_step(
                schedule.stages(),
                base_steps as f64,
                schedule.incremental_steps(base_steps) as f64,
                schedule.backward_ratio,
                schedule.phase1_share,
            )
        });
        let end = plan.end_step(until)?;
        plan.truncate_or_extend(shape, tokens_per_step, end);
        Ok(plan)
    }

    /// Stages that fill the whole run (`stage_ends_of = run`): the run's length is the step count
    /// whose compute comes closest to `until`'s target (or `until`'s steps), and its
    /// equal-compute steps are the lengths that spend the budget in each unit.
    fn run_relative(
        shape: &ModelShape,
        tokens_per_step: u64,
        base_steps: u64,
        schedule: &IncrementalSchedule,
        until: Until,
    ) -> Result<Plan, PlanError> {
        let build = |steps: u64| Plan::stages(shape, tokens_per_step, base_steps, schedule, steps, steps);
        let probe = build((base_steps * 16).max(u64::from(schedule.stages()) * 64))?;
        // The run length whose compute in `unit` comes closest to `target` (compute grows by about
        // `target / estimate` per step; the stages' rounding moves it by a step or two).
        let length = |unit: ComputeUnit, target: f64| -> Result<u64, PlanError> {
            let per_step = probe.cumulative(probe.total_steps()).get(unit) / probe.total_steps() as f64;
            let estimate = round_half_up(target / per_step).max(u64::from(schedule.stages()));
            let mut best = (f64::INFINITY, estimate);
            for steps in estimate.saturating_sub(3).max(u64::from(schedule.stages()))..=estimate + 3 {
                let plan = build(steps)?;
                let miss = (plan.cumulative(steps).get(unit) - target).abs();
                if miss < best.0 {
                    best = (miss, steps);
                }
            }
            Ok(best.1)
        };
        let budget = scale(probe.full_step, base_steps);
        let steps = match until {
            Until::Steps(0) => return Err(PlanError::NoUntilSteps),
            Until::Steps(steps) => steps,
            Until::EqualCompute(unit) => length(unit, budget.get(unit))?,
            Until::Budget { multiple, .. } if !(multiple.is_finite() && multiple > 0.0) => {
                return Err(PlanError::BadBudgetMultiple(multiple))
            }
            Until::Budget { multiple, unit } => length(unit, multiple * budget.get(unit))?,
        };
        let mut plan = build(steps)?;
        plan.equal_compute = EqualComputeTargets {
            paper_units: EqualCompute::new(length(ComputeUnit::PaperUnits, budget.paper_units)? as f64),
            flops: EqualCompute::new(length(ComputeUnit::Flops, budget.flops)? as f64),
        };
        Ok(plan)
    }

    /// The stages of `schedule` filling `total` steps, with `stage_ends` shares of `scale` steps;
    /// equal-compute targets left at the stages' end (the callers set them).
    fn stages(
        shape: &ModelShape,
        tokens_per_step: u64,
        base_steps: u64,
        schedule: &IncrementalSchedule,
        total: u64,
        scale: u64,
    ) -> Result<Plan, PlanError> {
        let depths = schedule.depths(shape.blocks());
        let layer_split: Vec<u32> = depths.iter().scan(0, |below, &d| Some(d - std::mem::replace(below, d))).collect();
        let phase_steps = phase_step_counts(schedule, total, scale);
        let full_step = full_step_compute(shape, tokens_per_step);

        let mut segments = Vec::new();
        let mut stages = Vec::new();
        let mut next_step = 1;
        let mut active = 0;
        for (index, (&added, &(phase1_steps, phase2_steps))) in layer_split.iter().zip(&phase_steps).enumerate() {
            let stage = index as u32 + 1;
            if phase1_steps + phase2_steps == 0 {
                return Err(PlanError::TooFewSteps { steps: total, stages: schedule.stages() });
            }
            let first_new = active;
            let grows = Some(LayerGrowth { from_layers: active, to_layers: active + added });
            active += added;
            let phase1 = Trainable {
                active_layers: active,
                first_trainable: first_new,
                // In stage 1 nothing has trained yet: the embeddings and head are as new as the
                // first blocks, so they train in its phase 1 whatever `phase1_trainable` says.
                embeddings: stage == 1 || schedule.phase1_trainable.embeddings_trainable(),
            };
            // Paper units count layer-tokens, so a stage with fewer tokens per step costs less.
            let (context, stage_tokens) = schedule.stage_shape(shape, tokens_per_step, stage);
            let token_share = stage_tokens as f64 / tokens_per_step as f64;
            let stage_shape = ModelShape { context: context as usize, ..*shape };
            let phase1_paper = token_share * (f64::from(active) + schedule.backward_ratio * f64::from(added))
                / ((1.0 + schedule.backward_ratio) * f64::from(shape.blocks()));
            let phase2_paper = token_share * f64::from(active) / f64::from(shape.blocks());
            let mut stage_compute = Compute::default();
            let mut stage_start = grows;
            for (phase, steps, trainable, paper) in [
                (Phase::Phase1, phase1_steps, phase1, phase1_paper),
                (Phase::Phase2, phase2_steps, Trainable::all(active), phase2_paper),
            ] {
                if steps == 0 {
                    continue;
                }
                let segment = Segment {
                    phase,
                    stage,
                    first_step: next_step,
                    steps,
                    trainable,
                    context,
                    tokens_per_step: stage_tokens,
                    paper_units_per_step: paper,
                    flops_per_step: stage_tokens as f64 * token_flops(&stage_shape, trainable).total(),
                    grows: stage_start.take(),
                };
                stage_compute = add(stage_compute, segment_compute(&segment, steps));
                next_step += steps;
                segments.push(segment);
            }
            stages.push(StagePlan {
                stage,
                layers_added: added,
                active_layers: active,
                phase1_steps,
                phase2_steps,
                compute: stage_compute,
            });
        }
        let incremental_steps = next_step - 1;
        let at_end = EqualCompute::new(incremental_steps as f64);
        Ok(Plan {
            layer_split,
            stages,
            segments,
            base_steps,
            incremental_steps,
            full_step,
            equal_compute: EqualComputeTargets { paper_units: at_end, flops: at_end },
            closed_form_equal_compute: None,
        })
    }

    /// The last step a run stopping at `until` trains (the plan's stages and full steps as they
    /// are; for budgets past the stages every further step is a full one).
    fn end_step(&self, until: Until) -> Result<u64, PlanError> {
        match until {
            Until::EqualCompute(unit) => Ok(self.equal_compute_in(unit).step),
            Until::Steps(0) => Err(PlanError::NoUntilSteps),
            Until::Steps(steps) => Ok(steps),
            Until::Budget { multiple, .. } if !(multiple.is_finite() && multiple > 0.0) => {
                Err(PlanError::BadBudgetMultiple(multiple))
            }
            Until::Budget { multiple, unit } => {
                let target = multiple * self.budget().get(unit);
                // Inside what the plan already holds, or that many full steps after it.
                let within = self.step_at_compute(unit, target).filter(|at| at.step < self.total_steps());
                let exact = match within {
                    Some(at) => at.exact,
                    None => {
                        let spent = self.cumulative(self.total_steps()).get(unit);
                        // What a step past the plan costs: the steps `truncate_or_extend` adds
                        // to an incremental plan are full ones; a full-model plan repeats its own.
                        let per_step = match self.stages.is_empty() {
                            true => self.segments.first().map_or(self.full_step, |s| segment_compute(s, 1)),
                            false => self.full_step,
                        }
                        .get(unit);
                        self.total_steps() as f64 + (target - spent) / per_step
                    }
                };
                Ok(EqualCompute::new(exact).step.max(1))
            }
        }
    }

    /// The step at which the plan has spent the baseline's budget in `unit` (for a baseline plan,
    /// its last step).
    pub fn equal_compute_in(&self, unit: ComputeUnit) -> EqualCompute {
        match unit {
            ComputeUnit::PaperUnits => self.equal_compute.paper_units,
            ComputeUnit::Flops => self.equal_compute.flops,
            ComputeUnit::Tokens => EqualCompute::new(equal_compute_exact(
                &self.stages,
                self.incremental_steps,
                self.base_steps,
                self.full_step,
                unit,
            )),
        }
    }

    /// The (fractional, then rounded) step at which the plan's cumulative compute in `unit`
    /// reaches `amount`; `None` when the plan ends before (or `amount` is not positive).
    pub fn step_at_compute(&self, unit: ComputeUnit, amount: f64) -> Option<EqualCompute> {
        if amount.is_nan() || amount <= 0.0 {
            return None;
        }
        let mut spent = 0.0;
        for segment in &self.segments {
            let per_step = segment_compute(segment, 1).get(unit);
            let whole = per_step * segment.steps as f64;
            if per_step > 0.0 && spent + whole >= amount {
                let exact = (segment.first_step - 1) as f64 + (amount - spent) / per_step;
                let at = EqualCompute::new(exact);
                return (at.step <= self.total_steps()).then_some(at);
            }
            spent += whole;
        }
        None
    }

    /// The same plan ending after `last_step` (a cooldown branch stops there).
    pub fn truncated(&self, last_step: u64) -> Plan {
        let mut plan = self.clone();
        plan.cut(last_step);
        plan
    }

    /// Drop every step after `last_step`.
    fn cut(&mut self, last_step: u64) {
        self.segments.retain(|s| s.first_step <= last_step);
        if let Some(last) = self.segments.last_mut() {
            last.steps = last.steps.min(last_step + 1 - last.first_step);
        }
    }

    /// Cut the plan at `last_step`, or add continual steps up to it.
    fn truncate_or_extend(&mut self, shape: &ModelShape, tokens_per_step: u64, last_step: u64) {
        self.cut(last_step);
        if last_step > self.incremental_steps {
            let stage = self.stages.len() as u32;
            let first = self.incremental_steps + 1;
            let steps = last_step - self.incremental_steps;
            let continual = full_segment(shape, tokens_per_step, Phase::Continual, stage, first, steps);
            self.segments.push(continual);
        }
    }

    /// Number of steps the plan runs.
    pub fn total_steps(&self) -> u64 {
        self.segments.iter().map(|s| s.steps).sum()
    }

    /// Steps of the continual tail.
    pub fn continual_steps(&self) -> u64 {
        self.segments.iter().filter(|s| s.phase == Phase::Continual).map(|s| s.steps).sum()
    }

    /// True when the stages add different numbers of layers.
    pub fn uneven_split(&self) -> bool {
        self.layer_split.windows(2).any(|w| w[0] != w[1])
    }

    /// The segment holding step `step` (1-based), if the plan runs it.
    pub fn segment_of(&self, step: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| step >= s.first_step && step <= s.last_step())
    }

    /// Phase, stage, trainable set and compute of step `step` (1-based).
    pub fn step(&self, step: u64) -> Option<StepInfo> {
        self.segment_of(step).map(|s| StepInfo {
            step,
            phase: s.phase,
            stage: s.stage,
            trainable: s.trainable,
            compute: segment_compute(s, 1),
        })
    }

    /// Compute spent by the first `steps` steps (all of the plan when `steps` exceeds it).
    pub fn cumulative(&self, steps: u64) -> Compute {
        self.segments.iter().fold(Compute::default(), |acc, s| {
            let done = steps.saturating_sub(s.first_step - 1).min(s.steps);
            add(acc, segment_compute(s, done))
        })
    }

    /// Compute of the baseline's budget (`base_steps` full steps).
    pub fn budget(&self) -> Compute {
        scale(self.full_step, self.base_steps)
    }

    /// The first step of the continual tail, if the plan has one.
    pub fn continual_start(&self) -> Option<u64> {
        self.segments.iter().find(|s| s.phase == Phase::Continual).map(|s| s.first_step)
    }
}

/// Incremental steps + the continual (full) steps that spend what the stages left of the budget:
/// `T_inc + (T·full − spent) / full` in `unit`.
fn equal_compute_exact(
    stages: &[StagePlan],
    incremental_steps: u64,
    base_steps: u64,
    full_step: Compute,
    unit: ComputeUnit,
) -> f64 {
    let spent = stages.iter().fold(Compute::default(), |acc, s| add(acc, s.compute));
    // One full step is 1.0 paper unit, and x / 1.0 is exactly x: the paper's numbers come out exact.
    incremental_steps as f64 + base_steps as f64 - spent.get(unit) / full_step.get(unit)
}

/// Whole (phase 1, phase 2) steps of every stage when the stages fill `total` steps and the
/// stage ends are shares of `scale` steps.
fn phase_step_counts(schedule: &IncrementalSchedule, total: u64, scale: u64) -> Vec<(u64, u64)> {
    let stages = u64::from(schedule.stages());
    let total_steps = total;
    let total = total as f64;
    let p = schedule.phase1_share;
    match schedule.phase_steps {
        PhaseStepRounding::Floor => {
            // The reference code's `base_steps // (2S)`, generalised to a phase-1 share p.
            // The epsilon keeps 0.3·1000/10 = 29.999… from flooring to 29.
            let per_stage = total / stages as f64;
            let floor = |x: f64| (x + 1e-9).floor() as u64;
            vec![(floor(p * per_stage), floor((1.0 - p) * per_stage)); stages as usize]
        }
        PhaseStepRounding::Exact if schedule.stage_ends.is_empty() => {
            // Boundaries at the rounded exact positions, so the phases add up to `total`.
            let boundary = |stage: u64, offset: f64| round_half_up((stage as f64 + offset) * total / stages as f64);
            (0..stages)
                .map(|s| {
                    let (start, middle, end) = (boundary(s, 0.0), boundary(s, p), boundary(s, 1.0));
                    (middle - start, end - middle)
                })
                .collect()
        }
        PhaseStepRounding::Exact => schedule
            .stage_bounds(scale, total_steps)
            .into_iter()
            .map(|(start, end)| {
                // The same rounding at the stage's own bounds.
                let at = |x: f64| round_half_up(x);
                let (first, middle, last) = (at(start), at(start + p * (end - start)), at(end));
                (middle - first, last - middle)
            })
            .collect(),
    }
}

fn full_step_compute(shape: &ModelShape, tokens_per_step: u64) -> Compute {
    Compute {
        tokens: tokens_per_step,
        paper_units: 1.0,
        flops: tokens_per_step as f64 * token_flops(shape, Trainable::all(shape.blocks())).total(),
    }
}

fn full_segment(
    shape: &ModelShape,
    tokens_per_step: u64,
    phase: Phase,
    stage: u32,
    first_step: u64,
    steps: u64,
) -> Segment {
    let full = full_step_compute(shape, tokens_per_step);
    Segment {
        phase,
        stage,
        first_step,
        steps,
        trainable: Trainable::all(shape.blocks()),
        context: shape.context as u64,
        tokens_per_step: full.tokens,
        paper_units_per_step: full.paper_units,
        flops_per_step: full.flops,
        grows: None,
    }
}

fn segment_compute(segment: &Segment, steps: u64) -> Compute {
    Compute {
        tokens: segment.tokens_per_step * steps,
        paper_units: segment.paper_units_per_step * steps as f64,
        flops: segment.flops_per_step * steps as f64,
    }
}

fn scale(c: Compute, steps: u64) -> Compute {
    Compute { tokens: c.tokens * steps, paper_units: c.paper_units * steps as f64, flops: c.flops * steps as f64 }
}

fn add(a: Compute, b: Compute) -> Compute {
    Compute { tokens: a.tokens + b.tokens, paper_units: a.paper_units + b.paper_units, flops: a.flops + b.flops }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GPT2_TOKENS_PER_STEP;
    use approx::assert_relative_eq;

    fn paper_plan(stages: u32) -> Plan {
        let schedule = IncrementalSchedule::even(stages);
        Plan::incremental(&ModelShape::gpt2_124m(), GPT2_TOKENS_PER_STEP, 10_000, &schedule, Until::default()).unwrap()
    }

    #[test]
    fn equal_compute_matches_paper_for_4_8_12_stages() {
        assert_eq!(paper_plan(4).equal_compute.paper_units.step, 14_688);
        assert_eq!(paper_plan(12).equal_compute.paper_units.step, 15_729);
        assert_relative_eq!(paper_plan(4).equal_compute.paper_units.exact, 14_687.5);
        // 8 does not divide 12: the paper's 15,469 is its closed form (1.5 layers a stage) ...
        let eight = paper_plan(8);
        assert_eq!(round_half_up(eight.closed_form_equal_compute.unwrap()), 15_469);
        // ... while the layers really trained (2,1,2,1,...) cost more, so equal compute comes
        // earlier: 156.25 full steps more in the stages (hand count: 625·2/12 + 625·2/24).
        assert!(eight.uneven_split());
        assert_relative_eq!(eight.equal_compute.paper_units.exact, 15_468.75 - 156.25, epsilon = 1e-9);
    }

    #[test]
    fn one_layer_expansion_at_80_percent_matches_a_hand_count() {
        // Depths 1 then 12, the first stage ending at 8,000 of 10,000 base steps. Paper units,
        // p = 0.5: stage 1 = 4,000·(1 + 1)/24 + 4,000·1/12 = 666.67; stage 2 = 1,000·(12 + 11)/24
        // + 1,000 = 1,958.33; equal compute = 10,000 + 10,000 − 2,625 = 17,375.
        let shape = ModelShape::gpt2_124m();
        let plan_of = |p: f64| {
            let schedule = IncrementalSchedule {
                stage_ends: vec![0.8],
                phase1_share: p,
                ..IncrementalSchedule::with_layers(vec![1, 12])
            };
            Plan::incremental(&shape, GPT2_TOKENS_PER_STEP, 10_000, &schedule, Until::default()).unwrap()
        };
        let plan = plan_of(0.5);
        assert_eq!(plan.layer_split, vec![1, 11]);
        assert_eq!((plan.stages[0].phase1_steps, plan.stages[0].phase2_steps), (4_000, 4_000));
        assert_eq!((plan.stages[1].phase1_steps, plan.stages[1].phase2_steps), (1_000, 1_000));
        assert_relative_eq!(plan.equal_compute.paper_units.exact, 17_375.0, epsilon = 1e-9);
        assert_eq!(plan.closed_form_equal_compute, None, "the closed form is the even schedule's");
        // p = 0: no phase 1; 8,000/12 + 2,000 = 2,666.67 spent in the stages.
        let flat = plan_of(0.0);
        assert!(flat.segments.iter().all(|s| s.phase != Phase::Phase1));
        assert_relative_eq!(flat.equal_compute.paper_units.exact, 20_000.0 - 8_000.0 / 12.0 - 2_000.0, epsilon = 1e-9);
        // The second stage grows 1 → 12 at step 8,001.
        let grows = flat.segments.iter().find(|s| s.stage == 2).unwrap();
        assert_eq!((grows.first_step, grows.grows), (8_001, Some(LayerGrowth { from_layers: 1, to_layers: 12 })));
    }

    #[test]
    fn a_zero_layer_first_stage_costs_the_head_alone() {
        let shape = ModelShape::gpt2_124m();
        let schedule = IncrementalSchedule {
            stage_ends: vec![0.8],
            phase1_share: 0.0,
            ..IncrementalSchedule::with_layers(vec![0, 12])
        };
        let plan = Plan::incremental(&shape, GPT2_TOKENS_PER_STEP, 10_000, &schedule, Until::default()).unwrap();
        // No blocks: no layer-tokens in the paper's model; the embeddings and head in FLOPs.
        assert_eq!(plan.stages[0].compute.paper_units, 0.0);
        let head = token_flops(&shape, Trainable::all(0)).total() * GPT2_TOKENS_PER_STEP as f64;
        assert_relative_eq!(plan.stages[0].compute.flops, 8_000.0 * head, max_relative = 1e-12);
        assert_relative_eq!(plan.equal_compute.paper_units.exact, 18_000.0, epsilon = 1e-9);
    }

    #[test]
    fn the_even_depth_list_is_the_papers_schedule() {
        for stages in [4, 8, 12] {
            let shorthand = IncrementalSchedule::even(stages);
            let list = IncrementalSchedule::with_layers(shorthand.depths(12));
            let plan = |s: &IncrementalSchedule| {
                Plan::incremental(&ModelShape::gpt2_124m(), GPT2_TOKENS_PER_STEP, 10_000, s, Until::default()).unwrap()
            };
            assert_eq!(plan(&list), plan(&shorthand), "{stages} stages");
            assert!(list.is_even(12));
        }
    }

    #[test]
    fn continual_tail_runs_to_the_equal_compute_step() {
        let plan = paper_plan(4);
        assert_eq!(plan.total_steps(), 14_688);
        assert_eq!(plan.continual_steps(), 4_688);
        let last = plan.step(14_688).unwrap();
        assert_eq!(last.phase, Phase::Continual);
        assert_eq!(last.trainable.active_layers, 12);
        assert!(plan.step(14_689).is_none());
    }

    #[test]
    fn reference_floor_phase_steps_run_9984_steps_for_12_stages() {
        let schedule = IncrementalSchedule { phase_steps: PhaseStepRounding::Floor, ..IncrementalSchedule::even(12) };
        let plan =
            Plan::incremental(&ModelShape::gpt2_124m(), GPT2_TOKENS_PER_STEP, 10_000, &schedule, Until::Steps(9_984))
                .unwrap();
        assert_eq!(plan.incremental_steps, 9_984);
        assert!(plan.stages.iter().all(|s| s.phase1_steps == 416 && s.phase2_steps == 416));
    }

    #[test]
    fn step_info_follows_stages_and_phases() {
        let plan = paper_plan(4);
        let first = plan.step(1).unwrap();
        assert_eq!((first.phase, first.stage, first.trainable.active_layers), (Phase::Phase1, 1, 3));
        let s2p1 = plan.step(2_501).unwrap();
        assert_eq!((s2p1.phase, s2p1.stage, s2p1.trainable.first_trainable), (Phase::Phase1, 2, 3));
        let s2p2 = plan.step(3_751).unwrap();
        assert_eq!((s2p2.phase, s2p2.trainable.first_trainable, s2p2.trainable.active_layers), (Phase::Phase2, 0, 6));
        // Phase 1 of stage 2 with r = 1: (6 + 3) / (2 · 12) of a full step.
        assert_relative_eq!(s2p1.compute.paper_units, 9.0 / 24.0);
    }

    #[test]
    fn cumulative_compute_adds_up_step_by_step() {
        let plan = paper_plan(12);
        let mut running = 0.0;
        for n in 1..=plan.total_steps() {
            running += plan.step(n).unwrap().compute.paper_units;
            if n % 997 == 0 {
                assert_relative_eq!(plan.cumulative(n).paper_units, running, epsilon = 1e-6);
            }
        }
        // At the equal-compute step the spent compute is within half a step of the budget.
        let spent = plan.cumulative(plan.total_steps()).paper_units;
        assert!((spent - plan.budget().paper_units).abs() <= 0.5 + 1e-9);
    }

    #[test]
    fn baseline_plan_has_one_segment_of_full_steps() {
        let plan = Plan::baseline(&ModelShape::gpt2_124m(), GPT2_TOKENS_PER_STEP, 100).unwrap();
        assert_eq!(plan.total_steps(), 100);
        assert_relative_eq!(plan.cumulative(100).paper_units, 100.0);
        assert_eq!(plan.step(50).unwrap().phase, Phase::Baseline);
    }

    #[test]
    fn growing_context_and_batch_is_charged_per_stage() {
        let shape = ModelShape::gpt2_124m();
        let schedule = IncrementalSchedule {
            stage_context: vec![256, 512, 1024, 1024],
            stage_tokens_per_step: vec![131_072, 262_144, 524_288, 524_288],
            ..IncrementalSchedule::even(4)
        };
        let plan = Plan::incremental(&shape, GPT2_TOKENS_PER_STEP, 10_000, &schedule, Until::default()).unwrap();
        let first = plan.step(1).unwrap();
        assert_eq!(first.compute.tokens, 131_072);
        // A quarter of the tokens: a quarter of the paper units of the same step at full batch.
        assert_relative_eq!(first.compute.paper_units, 0.25 * (3.0 + 3.0) / 24.0);
        assert_eq!(plan.segment_of(1).unwrap().context, 256);
        // Cheaper stages leave more continual steps before equal compute.
        let plain =
            Plan::incremental(&shape, GPT2_TOKENS_PER_STEP, 10_000, &IncrementalSchedule::even(4), Until::default())
                .unwrap();
        assert!(plan.equal_compute.flops.exact > plain.equal_compute.flops.exact);
        assert_eq!(plan.cumulative(2).tokens, 2 * 131_072);
        let bad = IncrementalSchedule { stage_context: vec![256, 2048, 1024, 1024], ..IncrementalSchedule::even(4) };
        assert!(matches!(
            Plan::incremental(&shape, GPT2_TOKENS_PER_STEP, 10_000, &bad, Until::default()),
            Err(PlanError::BadStageList { .. })
        ));
    }

    #[test]
    fn every_stage_says_where_it_starts_and_how_it_grows() {
        let plan = paper_plan(8);
        let starts: Vec<(u64, LayerGrowth)> =
            plan.segments.iter().filter_map(|s| Some((s.first_step, s.grows?))).collect();
        assert_eq!(starts.len(), 8);
        assert_eq!(starts[0], (1, LayerGrowth { from_layers: 0, to_layers: 2 }));
        // 12 layers in 8 stages add 2,1,2,1,...: stage 2 grows 2 → 3, stage 3 grows 3 → 5.
        assert_eq!(starts[1].1, LayerGrowth { from_layers: 2, to_layers: 3 });
        assert_eq!(starts[2].1, LayerGrowth { from_layers: 3, to_layers: 5 });
        for ((first, _), stage) in starts.iter().zip(&plan.stages) {
            assert_eq!(plan.step(*first).unwrap().stage, stage.stage);
        }
        // Phase 2 and continual segments grow nothing.
        assert!(plan.segments.iter().filter(|s| s.phase != Phase::Phase1).all(|s| s.grows.is_none()));
    }

    #[test]
    fn budgets_map_to_steps_in_every_unit() {
        let base = Plan::baseline(&ModelShape::gpt2_124m(), GPT2_TOKENS_PER_STEP, 1000).unwrap();
        for unit in [ComputeUnit::PaperUnits, ComputeUnit::Flops, ComputeUnit::Tokens] {
            let budget = base.budget().get(unit);
            assert_eq!(base.step_at_compute(unit, budget).unwrap().step, 1000);
            assert_eq!(base.step_at_compute(unit, 0.5 * budget).unwrap().step, 500);
            assert!(base.step_at_compute(unit, 2.0 * budget).is_none(), "past the plan's end");
        }
        // An incremental plan spends the budget where its equal-compute target says.
        let plan = paper_plan(4);
        for unit in [ComputeUnit::PaperUnits, ComputeUnit::Flops] {
            let at = plan.step_at_compute(unit, plan.budget().get(unit));
            let expected = plan.equal_compute_in(unit);
            assert_eq!(at.map(|a| a.step), Some(expected.step), "{unit:?}");
            assert_relative_eq!(at.unwrap().exact, expected.exact, max_relative = 1e-12);
        }
        // In tokens every step of this plan costs the same: the budget is spent at the base steps.
        assert_eq!(plan.equal_compute_in(ComputeUnit::Tokens).step, 10_000);
        let cut = plan.truncated(3_000);
        assert_eq!((cut.total_steps(), cut.segments.last().unwrap().last_step()), (3_000, 3_000));
        assert_eq!(plan.continual_start(), Some(10_001));
    }

    #[test]
    fn runs_stop_at_multiples_of_the_budget() {
        let shape = ModelShape::gpt2_124m();
        let twice = Until::Budget { multiple: 2.0, unit: ComputeUnit::Flops };
        let base = Plan::full_model(&shape, GPT2_TOKENS_PER_STEP, 12, 1000, twice).unwrap();
        assert_eq!((base.total_steps(), base.base_steps), (2000, 1000));
        assert_eq!(
            Plan::full_model(&shape, GPT2_TOKENS_PER_STEP, 12, 1000, Until::EqualCompute(ComputeUnit::Flops))
                .unwrap()
                .total_steps(),
            1000
        );
        let half = Until::Budget { multiple: 0.5, unit: ComputeUnit::PaperUnits };
        assert_eq!(Plan::full_model(&shape, GPT2_TOKENS_PER_STEP, 12, 1000, half).unwrap().total_steps(), 500);
        // An incremental run to twice the budget: its equal-compute step plus a budget of full steps.
        let schedule = IncrementalSchedule::even(4);
        let inc = Plan::incremental(
            &shape,
            GPT2_TOKENS_PER_STEP,
            10_000,
            &schedule,
            Until::Budget { multiple: 2.0, unit: ComputeUnit::PaperUnits },
        )
        .unwrap();
        assert_eq!(inc.total_steps(), 14_688 + 10_000);
        // Even when the last stage's steps are cheaper than full ones (all of phase 1, frozen
        // layers), the steps after the stages are full: twice the budget is spent, to a step.
        for unit in [ComputeUnit::PaperUnits, ComputeUnit::Flops] {
            let cheap_last_stage = IncrementalSchedule { phase1_share: 1.0, ..IncrementalSchedule::even(4) };
            let twice = Until::Budget { multiple: 2.0, unit };
            let inc = Plan::incremental(&shape, GPT2_TOKENS_PER_STEP, 10_000, &cheap_last_stage, twice).unwrap();
            let spent = inc.cumulative(inc.total_steps()).get(unit);
            let target = 2.0 * inc.budget().get(unit);
            assert!((spent - target).abs() <= inc.full_step.get(unit), "{unit:?}: spent {spent}, budget x2 {target}");
        }
        assert!(Plan::full_model(
            &shape,
            GPT2_TOKENS_PER_STEP,
            12,
            1000,
            Until::Budget { multiple: -1.0, unit: ComputeUnit::Flops }
        )
        .is_err());
    }

    #[test]
    fn a_depth_control_is_held_to_the_deeper_models_budget() {
        // 3 of 12 layers: a step costs a quarter of the 12-layer one in paper units and less than
        // a quarter in FLOPs (the LM head does not shrink), so the budget takes more steps.
        let shape = ModelShape { layers: 3, ..ModelShape::gpt2_124m() };
        let plan =
            Plan::full_model(&shape, GPT2_TOKENS_PER_STEP, 12, 1000, Until::EqualCompute(ComputeUnit::Flops)).unwrap();
        let deep = Plan::baseline(&ModelShape::gpt2_124m(), GPT2_TOKENS_PER_STEP, 1000).unwrap();
        assert_eq!(plan.budget(), deep.budget());
        assert_eq!(plan.equal_compute.paper_units.step, 4000);
        let flops_steps = plan.equal_compute.flops.step;
        assert!(flops_steps > 1000 && flops_steps < 4000, "{flops_steps}");
        assert_eq!(plan.total_steps(), flops_steps);
        assert_relative_eq!(plan.step(1).unwrap().compute.paper_units, 0.25);
        let spent = plan.cumulative(plan.total_steps()).flops;
        assert!((spent / deep.budget().flops - 1.0).abs() < 1.0 / flops_steps as f64);
    }

    #[test]
    fn calibration_turns_times_into_a_ratio() {
        assert_relative_eq!(backward_ratio_from_times(18.6, 51.7).unwrap(), 33.1 / 18.6);
        assert!(backward_ratio_from_times(10.0, 5.0).is_err());
        assert!(backward_ratio_from_times(0.0, 5.0).is_err());
    }
}
