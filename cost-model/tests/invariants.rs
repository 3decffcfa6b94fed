//! Invariants of the cost model that must hold for every input, not just the paper's.

use approx::assert_relative_eq;
use cost_model::{
    closed_form, split_layers, ComputeUnit, IncrementalSchedule, ModelShape, Phase1Trainable, PhaseStepRounding, Plan,
    StageLayers, Until, GPT2_TOKENS_PER_STEP,
};
use proptest::prelude::*;

fn shape(layers: u32) -> ModelShape {
    ModelShape { layers: layers as usize, ..ModelShape::gpt2_124m() }
}

/// A schedule and the budget it is held to.
#[derive(Debug, Clone)]
struct Schedule {
    base_steps: u64,
    stages: IncrementalSchedule,
}

impl Schedule {
    fn plan(&self, layers: u32, until: Until) -> Plan {
        Plan::incremental(&shape(layers), GPT2_TOKENS_PER_STEP, self.base_steps, &self.stages, until).unwrap()
    }
}

fn trainable() -> impl Strategy<Value = Phase1Trainable> {
    prop_oneof![Just(Phase1Trainable::New), Just(Phase1Trainable::NewAndEmbeddings)]
}

fn rounding() -> impl Strategy<Value = PhaseStepRounding> {
    prop_oneof![Just(PhaseStepRounding::Exact), Just(PhaseStepRounding::Floor)]
}

/// Layers, stages ≤ layers, and a schedule (with its base steps) with enough steps for every
/// stage: the paper's even stages, or (one in two) a depth list with stage ends of its own.
fn any_schedule() -> impl Strategy<Value = (u32, Schedule)> {
    (1u32..=48).prop_flat_map(|layers| {
        let p = prop_oneof![Just(0.0), 0.05f64..=1.0];
        (
            Just(layers),
            1..=layers,
            200u64..20_000,
            0.0f64..4.0,
            p,
            0.2f64..=1.0,
            rounding(),
            trainable(),
            depth_list(layers),
        )
            .prop_map(|(layers, stages, base_steps, r, p, share, phase_steps, phase1_trainable, list)| {
                let even = IncrementalSchedule {
                    incremental_share: share,
                    phase1_share: p,
                    backward_ratio: r,
                    phase_steps,
                    phase1_trainable,
                    ..IncrementalSchedule::even(stages)
                };
                let stages = match list {
                    None => even,
                    Some((depths, weights)) => {
                        // Ends at the cumulative weights' shares of the incremental steps.
                        let total: u32 = weights.iter().sum();
                        let mut sum = 0;
                        let ends = weights[..weights.len() - 1]
                            .iter()
                            .map(|w| {
                                sum += w;
                                share * f64::from(sum) / f64::from(total)
                            })
                            .collect();
                        IncrementalSchedule {
                            stage_ends: ends,
                            phase_steps: PhaseStepRounding::Exact,
                            stage_layers: StageLayers::Listed(depths),
                            ..even
                        }
                    }
                };
                (layers, Schedule { base_steps, stages })
            })
    })
}

/// Maybe a depth list for `layers` (increasing, ending at `layers`, starting at 0 or more; at
/// most 8 stages) and a weight per stage (1..4) for its share of the steps.
fn depth_list(layers: u32) -> impl Strategy<Value = Option<(Vec<u32>, Vec<u32>)>> {
    let list =
        (proptest::collection::btree_set(0..layers, 0..=7usize.min(layers as usize))).prop_flat_map(move |below| {
            let depths: Vec<u32> = below.into_iter().chain([layers]).collect();
            let n = depths.len();
            (Just(depths), proptest::collection::vec(1u32..=4, n))
        });
    proptest::option::of(list)
}

#[test]
fn closed_form_equals_summed_stage_costs_for_every_divisor() {
    for layers in [12u32, 24] {
        for stages in (1..=layers).filter(|s| layers % s == 0) {
            for r in [0.0, 1.0, 1.78, 2.0] {
                // Base steps divisible by 2S, so the whole-step phases are exactly the fractional ones.
                let schedule = IncrementalSchedule { backward_ratio: r, ..IncrementalSchedule::even(stages) };
                let plan =
                    Plan::incremental(&shape(layers), GPT2_TOKENS_PER_STEP, 24 * 500, &schedule, Until::default())
                        .unwrap();
                assert!(!plan.uneven_split());
                assert_relative_eq!(
                    plan.equal_compute.paper_units.exact,
                    plan.closed_form_equal_compute.unwrap(),
                    epsilon = 1e-6
                );
            }
        }
    }
}

proptest! {
    #[test]
    fn closed_form_equals_stage_sum_when_stages_divide_layers(
        k in 1u32..=6, stages in 1u32..=12, m in 1u64..=400, r in 0.0f64..4.0
    ) {
        let layers = k * stages;
        let schedule = IncrementalSchedule { backward_ratio: r, ..IncrementalSchedule::even(stages) };
        let plan = Plan::incremental(&shape(layers), GPT2_TOKENS_PER_STEP, 2 * u64::from(stages) * m, &schedule, Until::default()).unwrap();
        prop_assert!((plan.equal_compute.paper_units.exact - plan.closed_form_equal_compute.unwrap()).abs() < 1e-6);
    }

    #[test]
    fn equal_compute_step_is_at_least_the_incremental_steps((layers, schedule) in any_schedule()) {
        let plan = schedule.plan(layers, Until::default());
        for unit in [ComputeUnit::PaperUnits, ComputeUnit::Flops] {
            prop_assert!(plan.equal_compute_in(unit).exact >= plan.incremental_steps as f64 - 1e-9);
        }
    }

    #[test]
    fn equal_compute_step_grows_with_backward_ratio((layers, schedule) in any_schedule(), dr in 0.0f64..3.0) {
        let low = schedule.plan(layers, Until::default());
        let mut higher = schedule.clone();
        higher.stages.backward_ratio += dr;
        let high = higher.plan(layers, Until::default());
        prop_assert!(high.equal_compute.paper_units.exact >= low.equal_compute.paper_units.exact - 1e-9);
        let closed = |s: &Schedule| {
            let s = &s.stages;
            closed_form::equal_compute_step(s.stages(), 1e4, 1e4, s.backward_ratio, s.phase1_share)
        };
        prop_assert!(closed(&higher) >= closed(&schedule) - 1e-9);
    }

    #[test]
    fn totals_add_up((layers, schedule) in any_schedule(), unit_is_flops in any::<bool>()) {
        let unit = if unit_is_flops { ComputeUnit::Flops } else { ComputeUnit::PaperUnits };
        let plan = schedule.plan(layers, Until::EqualCompute(unit));
        let stage_steps: u64 = plan.stages.iter().map(|s| s.phase1_steps + s.phase2_steps).sum();
        prop_assert_eq!(stage_steps, plan.incremental_steps);
        prop_assert_eq!(plan.total_steps(), plan.equal_compute_in(unit).step.max(plan.incremental_steps));
        prop_assert_eq!(plan.total_steps(), plan.incremental_steps + plan.continual_steps());
        // Segments tile steps 1..=total without gaps or overlaps.
        let mut next = 1;
        for segment in &plan.segments {
            prop_assert_eq!(segment.first_step, next);
            next += segment.steps;
        }
        // Stage compute plus the continual tail is the cumulative compute of the whole plan.
        let stage_units: f64 = plan.stages.iter().map(|s| s.compute.paper_units).sum();
        let total = plan.cumulative(plan.total_steps());
        prop_assert!((stage_units + plan.continual_steps() as f64 - total.paper_units).abs() < 1e-6 * total.paper_units.max(1.0));
        // Spending up to the rounded equal-compute step lands within half a full step of the budget.
        let spent = match unit { ComputeUnit::PaperUnits => total.paper_units, _ => total.get(unit) / plan.full_step.get(unit) };
        if plan.continual_steps() > 0 {
            prop_assert!((spent - plan.base_steps as f64).abs() <= 0.5 + 1e-6);
        }
        if schedule.stages.phase_steps == PhaseStepRounding::Exact {
            prop_assert_eq!(plan.incremental_steps, schedule.stages.incremental_steps(schedule.base_steps));
        }
    }

    #[test]
    fn uneven_splits_use_every_layer_exactly_once(layers in 1u32..=200, stages_frac in 0.0f64..1.0) {
        let stages = 1 + ((layers - 1) as f64 * stages_frac) as u32;
        let split = split_layers(layers, stages);
        prop_assert_eq!(split.len(), stages as usize);
        prop_assert_eq!(split.iter().sum::<u32>(), layers);
        prop_assert!(split.iter().all(|&k| k >= 1));
        let (min, max) = (split.iter().min().unwrap(), split.iter().max().unwrap());
        prop_assert!(max - min <= 1, "split {:?} is not as even as possible", split);
    }

    #[test]
    fn depth_lists_grow_to_the_model_one_stage_at_a_time((layers, schedule) in any_schedule()) {
        let plan = schedule.plan(layers, Until::default());
        let depths = schedule.stages.depths(layers);
        prop_assert_eq!(plan.stages.len(), depths.len());
        prop_assert_eq!(plan.layer_split.iter().sum::<u32>(), layers);
        for (stage, depth) in plan.stages.iter().zip(&depths) {
            prop_assert_eq!(stage.active_layers, *depth);
            prop_assert!(stage.phase1_steps + stage.phase2_steps >= 1);
            // No phase 1 at p = 0: every stage trains all its active blocks.
            if schedule.stages.phase1_share == 0.0 {
                prop_assert_eq!(stage.phase1_steps, 0);
            }
        }
        // Each stage ends where its share of the base steps says (rounded), the last with the
        // incremental steps; the paper's closed form only for its own even schedule.
        for (stage, end) in plan.stages.iter().zip(&schedule.stages.stage_ends) {
            let last = plan.segments.iter().filter(|s| s.stage == stage.stage).map(|s| s.last_step()).max().unwrap();
            prop_assert_eq!(last, cost_model::round_half_up(end * schedule.base_steps as f64));
        }
        prop_assert_eq!(plan.closed_form_equal_compute.is_some(), schedule.stages.is_even(layers));
    }

    #[test]
    fn each_step_costs_at_most_a_full_step((layers, schedule) in any_schedule()) {
        let plan = schedule.plan(layers, Until::default());
        for segment in &plan.segments {
            prop_assert!(segment.paper_units_per_step <= 1.0 + 1e-12);
            prop_assert!(segment.flops_per_step <= plan.full_step.flops * (1.0 + 1e-12));
        }
    }
}
