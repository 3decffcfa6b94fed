//! Named growth methods: one word for a depth schedule, a growth operator and a placement, so a
//! study arm or a run is `--method gstack-2x`. Each expands, for a model of `L` layers, to the
//! knobs below; the README's "Growth methods" section gives the sources and what we changed.
//!
//! | method | depths | stage ends (share of the base steps) | phase 1 | growth | placement | optimizer at continual |
//! |---|---|---|---|---|---|---|
//! | `paper-s<S>` | S even stages | even | half of each stage | random | top | reset |
//! | `one-layer` | 1, L | 0.8 | none | copy | top | kept |
//! | `gstack-2x` | L/2, L | 1/30 | none | stack | top | kept |
//! | `midas` | L/6, 2L/6, ..., L (6 stages) | Prop-1: stage i gets i/21 | none | copy | middle | kept |
//!
//! Every method keeps the run's one learning-rate schedule (the fair protocol gives every arm
//! the same), and trained blocks keep their optimizer state across a growth; new blocks start
//! with none.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Growth, IncrementalSchedule, Placement, PlanError};

/// A named growth method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Method {
    /// The paper's: `stages` even stages, each half new blocks only, half all active, then
    /// continual training with a fresh optimizer (Section III; the reference code).
    Paper { stages: u32 },
    /// Zero/one-layer expansion (Bu, arXiv 2511.04981): one layer for 80% of the budget, then
    /// the full depth at once, the new layers copies of the trained one.
    OneLayer,
    /// G_stack with growth factor 2 (Du et al. 2024, arXiv 2405.15319; Mallik et al. 2026,
    /// arXiv 2605.13405, find 2x the most reliable): half the depth, then that stack repeated.
    GStack2x,
    /// MIDAS, middle gradual stacking (Saunshi et al. 2024, arXiv 2409.19044): six stages of
    /// L/6 layers, each copying the middle run of blocks in place, Prop-1 stage lengths.
    Midas,
}

/// The names `Method` reads, for help texts and errors (`paper-s<S>` for any S).
pub const METHODS: [&str; 6] = ["paper-s4", "paper-s8", "paper-s12", "one-layer", "gstack-2x", "midas"];

/// What a method expands to on a model of given depth.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodSpec {
    pub schedule: IncrementalSchedule,
    pub growth: Growth,
    pub placement: Placement,
    /// Fresh AdamW moments when continual training starts (the paper's reference code).
    pub reset_optimizer_at_continual: bool,
}

/// Stages of MIDAS (Saunshi et al. grow their 24-layer model in 6 blocks of 4 layers).
const MIDAS_STAGES: u32 = 6;

/// Where G_stack grows, as a share of the target's budget: Du et al. train the small model for
/// about 10B tokens and the grown one to 300B (their growth-timing fit needs billions of
/// parameters; at GPT-2 124M it asks for more tokens than the budget holds).
const GSTACK_GROWTH_SHARE: f64 = 1.0 / 30.0;

/// Where one-layer expansion grows (Bu: at about 80% of the iterations, inside WSD's stable phase).
const ONE_LAYER_GROWTH_SHARE: f64 = 0.8;

impl Method {
    /// The knobs of this method on a model of `layers` blocks.
    pub fn expand(&self, layers: u32) -> Result<MethodSpec, PlanError> {
        let flat = |depths: Vec<u32>, ends: Vec<f64>| IncrementalSchedule {
            stage_ends: ends,
            phase1_share: 0.0,
            ..IncrementalSchedule::with_layers(depths)
        };
        let grown = |schedule, growth, placement| MethodSpec {
            schedule,
            growth,
            placement,
            reset_optimizer_at_continual: false,
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
            },
            Method::OneLayer => {
                needs(2)?;
                grown(flat(vec![1, layers], vec![ONE_LAYER_GROWTH_SHARE]), Growth::Copy, Placement::Top)
            }
            Method::GStack2x => {
                needs(2)?;
                // An odd depth stacks its lower half once and the rest again (stack repeats from the bottom).
                grown(flat(vec![layers / 2, layers], vec![GSTACK_GROWTH_SHARE]), Growth::Stack, Placement::Top)
            }
            Method::Midas => {
                needs(MIDAS_STAGES)?;
                let depths =
                    IncrementalSchedule { stages: MIDAS_STAGES, ..IncrementalSchedule::default() }.depths(layers);
                // Prop-1: stage i of k runs i / (1 + 2 + ... + k) of the steps.
                let total = f64::from(MIDAS_STAGES * (MIDAS_STAGES + 1) / 2);
                let ends = (1..MIDAS_STAGES).map(|i| f64::from(i * (i + 1) / 2) / total).collect();
                grown(flat(depths, ends), Growth::Copy, Placement::Middle)
            }
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Paper { stages } => write!(f, "paper-s{stages}"),
            Method::OneLayer => f.write_str("one-layer"),
            Method::GStack2x => f.write_str("gstack-2x"),
            Method::Midas => f.write_str("midas"),
        }
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(name: &str) -> Result<Method, String> {
        let stages = name.strip_prefix("paper-s").map(|s| s.parse::<u32>());
        match (name, stages) {
            (_, Some(Ok(stages))) if stages > 0 => Ok(Method::Paper { stages }),
            ("one-layer", _) => Ok(Method::OneLayer),
            ("gstack-2x", _) => Ok(Method::GStack2x),
            ("midas", _) => Ok(Method::Midas),
            _ => Err(format!("unknown method `{name}`; choose one of {} (paper-s<S> for any S)", METHODS.join(", "))),
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
        for bad in ["paper-s0", "paper-sx", "gstack", "MIDAS", ""] {
            assert!(bad.parse::<Method>().unwrap_err().contains("one-layer"), "{bad}");
        }
    }

    #[test]
    fn methods_grow_as_their_papers_say() {
        // The paper's 4 stages: its own 14,688 steps in paper units.
        assert_eq!(plan("paper-s4").equal_compute.paper_units.step, 14_688);
        // One-layer: 1 layer for 8,000 steps, then all 12 at once.
        let one = plan("one-layer");
        assert_eq!(one.layer_split, vec![1, 11]);
        assert_eq!(one.stages[0].phase2_steps, 8_000);
        // G_stack 2x: 6 layers for 333 steps (1/30 of 10,000), then 12.
        let stack = plan("gstack-2x");
        assert_eq!((stack.layer_split.clone(), stack.stages[0].phase2_steps), (vec![6, 6], 333));
        // MIDAS: 2 layers a stage, Prop-1 stage ends at 1, 3, 6, 10, 15 (and 21) of 21 parts of the steps.
        let midas = plan("midas");
        assert_eq!(midas.layer_split, vec![2; 6]);
        let steps: Vec<u64> = midas.stages.iter().map(|s| s.phase1_steps + s.phase2_steps).collect();
        assert_eq!(steps, vec![476, 953, 1_428, 1_905, 2_381, 2_857]);
        let midas = Method::Midas.expand(12).unwrap();
        assert_eq!((midas.growth, midas.placement), (Growth::Copy, Placement::Middle));
        // Too shallow a model for a method says so, naming the method.
        assert!(Method::Midas.expand(4).unwrap_err().to_string().contains("midas"));
    }
}
