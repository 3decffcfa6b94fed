//! Named growth methods: one word for a depth schedule, a growth operator and placement, and what
//! the optimizer and learning rate do at a growth, so a study arm or a run is `--method gstack-4x`.
//! Each expands, for a model of `L` layers, to the knobs below, each as its paper (or official
//! code) has it; the README's "Growth methods" table gives the sources and names every difference.
//!
//! | method | depths | stage ends | phase 1 | growth, placement | at a growth | grows in warmup |
//! |---|---|---|---|---|---|---|
//! | `paper-s<S>` | S even stages | even, of the base steps; then continual | half of each stage | random, top | new blocks fresh; fresh AdamW at continual | yes (even stages) |
//! | `one-layer` | 1, L | 0.8 of the run | none | copy, top | copies take their source's moments; no ramp | no |
//! | `one-layer-iters` | as `one-layer`, held to equal iterations (Bu's comparison) instead of equal compute | | | | | |
//! | `gstack-2x`, `gstack-4x` | L/g, L | 0.25 of the run | none | stack, top | fresh AdamW, the run's warmup again | no |
//! | `midas` | L/6, 2L/6, ..., L (6 stages) | Prop-1 of the run: stage i gets i/21 | none | copy, middle | copies take their source's moments; no ramp | yes (Prop-1) |

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{
    ComputeUnit, Growth, GrowthOptimizer, GrowthRewarmup, IncrementalSchedule, Placement, PlanError, StageEndsOf,
};

/// A named growth method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Method {
    /// The paper's: `stages` even stages, each half new blocks only, half all active, then
    /// continual training with a fresh optimizer (Section III; the reference code).
    Paper { stages: u32 },
    /// Zero/one-layer expansion (Bu, arXiv 2511.04981): one layer for 80% of the run's
    /// iterations, then the full depth at once, the new layers copies of the trained one.
    OneLayer,
    /// The same run compared as Bu compares it: at equal iterations (steps), not equal compute.
    OneLayerIters,
    /// G_stack (Du et al. 2024, arXiv 2405.15319): depth L/`factor` for the first quarter of the
    /// run, then that stack repeated `factor` times; a fresh AdamW and warmup after growing, as
    /// the official code (tongxuluo/prts) trains the grown model as a new run.
    GStack { factor: u32 },
    /// MIDAS, middle gradual stacking (Saunshi et al. 2024, arXiv 2409.19044): six stages of
    /// L/6 layers, each copying the middle run of blocks in place, Prop-1 stage lengths.
    Midas,
}

/// The names `Method` reads, for help texts and errors (`paper-s<S>` for any S).
pub const METHODS: [&str; 8] =
    ["paper-s4", "paper-s8", "paper-s12", "one-layer", "one-layer-iters", "gstack-2x", "gstack-4x", "midas"];

/// What a method expands to on a model of given depth.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodSpec {
    pub schedule: IncrementalSchedule,
    pub growth: Growth,
    pub placement: Placement,
    /// Fresh AdamW moments when continual training starts (the paper's reference code).
    pub reset_optimizer_at_continual: bool,
    /// The optimizer state at each growth.
    pub growth_optimizer: GrowthOptimizer,
    /// The learning-rate ramp after each growth.
    pub growth_rewarmup: GrowthRewarmup,
    /// Whether the method's own schedule may grow while the learning rate still warms up (its
    /// stage lengths are fixed by its paper); otherwise a plan that does is refused.
    pub grows_in_warmup: bool,
    /// The budget the method is held to, when not the study's (Bu compares at equal
    /// iterations: equal tokens, at a fixed number of tokens a step).
    pub budget_unit: Option<ComputeUnit>,
}

/// Stages of MIDAS (Saunshi et al. grow their 24-layer model in 6 blocks of 4 layers).
const MIDAS_STAGES: u32 = 6;

/// Where G_stack grows, as a share of the run's steps. Du et al. grow a small model trained on
/// d = 10B tokens (their Section 4.1; 3% to 9% of the grown run's tokens, just past its
/// 3,000-step warmup), and their fit of d (Eq. 2) asks, at GPT-2 124M, for more tokens than the
/// whole budget holds: so a rule of our own, a trained source well into the stable phase (past
/// warmup at every budget of every design, checked by the plan) at a quarter of the run.
const GSTACK_GROWTH_SHARE: f64 = 0.25;

/// Where one-layer expansion grows (Bu: "at a late stage (≈80% iterations)", inside WSD's
/// stable phase, with the same learning rate after).
const ONE_LAYER_GROWTH_SHARE: f64 = 0.8;

impl Method {
    /// The budget unit the method is compared in when it is not the study's: Bu's equal
    /// iterations are equal tokens (a fixed number of tokens a step).
    pub fn budget_unit(&self) -> Option<ComputeUnit> {
        (*self == Method::OneLayerIters).then_some(ComputeUnit::Tokens)
    }

    /// The knobs of this method on a model of `layers` blocks.
    pub fn expand(&self, layers: u32) -> Result<MethodSpec, PlanError> {
        // Stages that fill the run, every stage training all its active blocks.
        let of_run = |depths: Vec<u32>, ends: Vec<f64>| IncrementalSchedule {
            stage_ends: ends,
            stage_ends_of: StageEndsOf::Run,
            phase1_share: 0.0,
            ..IncrementalSchedule::with_layers(depths)
        };
        let copy_grown = |schedule, placement, grows_in_warmup| MethodSpec {
            schedule,
            growth: Growth::Copy,
            placement,
            reset_optimizer_at_continual: false,
            growth_optimizer: GrowthOptimizer::Copy,
            growth_rewarmup: GrowthRewarmup::None,
            grows_in_warmup,
            budget_unit: None,
        };
        let needs = |at_least: u32| match layers >= at_least {
            true => Ok(()),
            false => Err(PlanError::MethodTooShallow { method: self.to_string(), layers, at_least }),
        };
        Ok(match *self {
            Method::Paper { stages } => MethodSpec {
                schedule: IncrementalSchedule { stages, ..IncrementalSchedule::default() },
                growth: Growth::Random,
                placement: Placement::Top,
                reset_optimizer_at_continual: true,
                growth_optimizer: GrowthOptimizer::Fresh,
                growth_rewarmup: GrowthRewarmup::None,
                grows_in_warmup: true,
                budget_unit: None,
            },
            Method::OneLayer | Method::OneLayerIters => {
                needs(2)?;
                let mut spec = copy_grown(of_run(vec![1, layers], vec![ONE_LAYER_GROWTH_SHARE]), Placement::Top, false);
                spec.budget_unit = self.budget_unit();
                spec
            }
            Method::GStack { factor } => {
                needs(factor)?;
                // A depth `factor` does not divide stacks its lower part once more (stack repeats
                // from the bottom).
                MethodSpec {
                    schedule: of_run(vec![layers / factor, layers], vec![GSTACK_GROWTH_SHARE]),
                    growth: Growth::Stack,
                    placement: Placement::Top,
                    reset_optimizer_at_continual: false,
                    growth_optimizer: GrowthOptimizer::Reset,
                    growth_rewarmup: GrowthRewarmup::Warmup,
                    grows_in_warmup: false,
                    budget_unit: None,
                }
            }
            Method::Midas => {
                needs(MIDAS_STAGES)?;
                let depths =
                    IncrementalSchedule { stages: MIDAS_STAGES, ..IncrementalSchedule::default() }.depths(layers);
                // Prop-1: stage i of k runs i / (1 + 2 + ... + k) of the run's steps.
                let total = f64::from(MIDAS_STAGES * (MIDAS_STAGES + 1) / 2);
                let ends = (1..MIDAS_STAGES).map(|i| f64::from(i * (i + 1) / 2) / total).collect();
                copy_grown(of_run(depths, ends), Placement::Middle, true)
            }
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Paper { stages } => write!(f, "paper-s{stages}"),
            Method::OneLayer => f.write_str("one-layer"),
            Method::OneLayerIters => f.write_str("one-layer-iters"),
            Method::GStack { factor } => write!(f, "gstack-{factor}x"),
            Method::Midas => f.write_str("midas"),
        }
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(name: &str) -> Result<Method, String> {
        let stages = name.strip_prefix("paper-s").map(|s| s.parse::<u32>());
        let factor = name.strip_prefix("gstack-").and_then(|s| s.strip_suffix('x')).map(|s| s.parse::<u32>());
        match (name, stages, factor) {
            (_, Some(Ok(stages)), _) if stages > 0 => Ok(Method::Paper { stages }),
            (_, _, Some(Ok(factor))) if factor >= 2 => Ok(Method::GStack { factor }),
            ("one-layer", _, _) => Ok(Method::OneLayer),
            ("one-layer-iters", _, _) => Ok(Method::OneLayerIters),
            ("midas", _, _) => Ok(Method::Midas),
            _ => Err(format!(
                "unknown method `{name}`; choose one of {} (paper-s<S> for any S, gstack-<g>x for any g >= 2)",
                METHODS.join(", ")
            )),
        }
    }
}

impl TryFrom<String> for Method {
    type Error = String;
    fn try_from(name: String) -> Result<Method, String> {
        name.parse()
    }
}

impl From<Method> for String {
    fn from(method: Method) -> String {
        method.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelShape, Plan, Until, GPT2_TOKENS_PER_STEP};

    fn plan(method: &str) -> Plan {
        let spec = method.parse::<Method>().unwrap().expand(12).unwrap();
        Plan::incremental(&ModelShape::gpt2_124m(), GPT2_TOKENS_PER_STEP, 10_000, &spec.schedule, Until::default())
            .unwrap()
    }

    #[test]
    fn every_name_reads_back_and_expands_on_12_layers() {
        for name in METHODS {
            let method: Method = name.parse().unwrap();
            assert_eq!(method.to_string(), name);
            let spec = method.expand(12).unwrap();
            assert!(spec.schedule.validate(&ModelShape::gpt2_124m(), 10_000).is_ok(), "{name}");
        }
        assert_eq!("paper-s3".parse::<Method>(), Ok(Method::Paper { stages: 3 }));
        assert_eq!("gstack-3x".parse::<Method>(), Ok(Method::GStack { factor: 3 }));
        for bad in ["paper-s0", "paper-sx", "gstack", "gstack-1x", "MIDAS", ""] {
            assert!(bad.parse::<Method>().unwrap_err().contains("one-layer"), "{bad}");
        }
    }

    #[test]
    fn methods_grow_as_their_papers_say() {
        // The paper's 4 stages: its own 14,688 steps in paper units.
        assert_eq!(plan("paper-s4").equal_compute.paper_units.step, 14_688);
        // One-layer: 1 layer for 80% of the run, then all 12 at once, the run as long as the
        // baseline's budget of FLOPs allows (a 1-layer step costs far less): growth at 0.8 of it,
        // no continual tail.
        let one = plan("one-layer");
        assert_eq!(one.layer_split, vec![1, 11]);
        let total = one.total_steps();
        assert_eq!(one.stages[0].phase2_steps, crate::round_half_up(0.8 * total as f64));
        // (`plan` holds methods to the paper's units: a 1-layer step is 1/12 of a full one.)
        assert_eq!((one.continual_steps(), one.equal_compute.paper_units.step), (0, total));
        assert_eq!(total, 37_500, "10,000 / (0.8 / 12 + 0.2)");
        let budget = one.budget().paper_units;
        assert!((one.cumulative(total).paper_units - budget).abs() < 1.0, "within a step of the budget");
        // Bu's own comparison: the same run held to the baseline's iterations.
        let iters = Method::OneLayerIters.expand(12).unwrap();
        assert_eq!(
            (iters.budget_unit, iters.schedule.clone()),
            (Some(ComputeUnit::Tokens), Method::OneLayer.expand(12).unwrap().schedule)
        );
        // G_stack: L/g layers for a quarter of the run, then stacked g times, a fresh AdamW and
        // the warmup again.
        for (name, first) in [("gstack-2x", 6), ("gstack-4x", 3)] {
            let stack = plan(name);
            assert_eq!(stack.layer_split, vec![first, 12 - first], "{name}");
            let share = stack.stages[0].phase2_steps as f64 / stack.total_steps() as f64;
            assert!((share - 0.25).abs() < 1e-3, "{name}: {share}");
        }
        let g4 = "gstack-4x".parse::<Method>().unwrap().expand(12).unwrap();
        assert_eq!(
            (g4.growth, g4.growth_optimizer, g4.growth_rewarmup),
            (Growth::Stack, GrowthOptimizer::Reset, GrowthRewarmup::Warmup)
        );
        // MIDAS: 2 layers a stage, Prop-1 stage ends at 1, 3, 6, 10, 15 (and 21) of 21 parts of
        // the whole run: the last stage is exactly 6/21 of it.
        let midas = plan("midas");
        assert_eq!(midas.layer_split, vec![2; 6]);
        let steps: Vec<u64> = midas.stages.iter().map(|s| s.phase1_steps + s.phase2_steps).collect();
        let total = midas.total_steps() as f64;
        for (i, s) in steps.iter().enumerate() {
            assert!((*s as f64 / total - (i + 1) as f64 / 21.0).abs() < 1.0 / total, "stage {}: {s} of {total}", i + 1);
        }
        assert_eq!(midas.continual_steps(), 0);
        let midas = Method::Midas.expand(12).unwrap();
        assert_eq!((midas.growth, midas.placement), (Growth::Copy, Placement::Middle));
        // Too shallow a model for a method says so, naming the method.
        assert!(Method::Midas.expand(4).unwrap_err().to_string().contains("midas"));
    }
}
