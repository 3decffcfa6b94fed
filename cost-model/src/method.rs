//! Named growth methods: one word for a depth schedule, a growth operator and placement, and what
//! the optimizer and learning rate do at a growth, so a study arm or a run is `--method gstack-4x`.
//!
//! [`METHODS`] is the one table of them: a row per method holds its name, how it expands for a
//! model of `L` layers (the stages and how the new blocks start), the paper or official code it is
//! run as, and what differs from that paper with the knob that changes it. Naming, parsing,
//! printing and expanding a method all read its row, so a new method is one row (and its test).
//! The README's "Growth methods" table says the same in prose.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{
    ComputeUnit, Growth, GrowthOptimizer, GrowthRewarmup, IncrementalSchedule, Placement, PlanError, StageEndsOf,
};

/// One row of [`METHODS`]: everything about a growth method.
pub struct MethodRow {
    /// How the method is written.
    pub name: MethodName,
    /// The knobs the method sets on a model of the given depth (its number, if any, is the
    /// method's: [`Method::number`]).
    pub expand: fn(Method, u32) -> Result<MethodSpec, PlanError>,
    /// The budget the method is held to when not the study's.
    pub budget_unit: Option<ComputeUnit>,
    /// The paper (or official code) the method is run as.
    pub source: &'static str,
    /// Where it is run otherwise than its paper says.
    pub differs: &'static [Difference],
}

/// How a method is written: one word, or a word with a number in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodName {
    /// E.g. `midas`.
    Word(&'static str),
    /// `<prefix><number><suffix>`, e.g. `paper-s4` (`paper-s`, 4, ``): the number is called
    /// `symbol` in help texts, is at least `min`, and `shown` lists the values help texts name.
    Numbered { prefix: &'static str, suffix: &'static str, symbol: &'static str, min: u32, shown: &'static [u32] },
}

/// A way a method is run otherwise than its paper says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difference {
    /// What differs, and why.
    pub what: &'static str,
    /// The knob (a `run.json` key, as `train` spells it) that runs it the paper's way, if any.
    pub knob: Option<&'static str>,
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

/// Every growth method, in the order help texts list them.
pub static METHODS: [MethodRow; 5] = [
    MethodRow {
        name: MethodName::Numbered { prefix: "paper-s", suffix: "", symbol: "S", min: 1, shown: &[4, 8, 12] },
        expand: paper,
        budget_unit: None,
        source: "the paper, Section III, and its reference code",
        differs: &[
            Difference {
                what: "the fair protocol's one WSD schedule, not the reference code's constant rate (`just study --protocol paper` runs the paper's)",
                knob: Some("lr_schedule"),
            },
            Difference {
                what: "phase 1 trains the new blocks only; the reference code also the embeddings (`new+embeddings`)",
                knob: Some("phase1_trainable"),
            },
        ],
    },
    MethodRow {
        name: MethodName::Word("one-layer"),
        expand: one_layer,
        budget_unit: None,
        source: "Bu, arXiv 2511.04981 (ICML 2026), from its abstract, Fig. 1 and published notes",
        differs: &[
            Difference { what: "held to equal compute (Bu compares at equal iterations: `one-layer-iters`)", knob: None },
            Difference { what: "AdamW (Bu: Muon)", knob: None },
            Difference {
                what: "the new layers' optimizer state is not stated by Bu: the copies take their source's moments (`fresh` for none)",
                knob: Some("growth_optimizer"),
            },
            Difference {
                what: "no muP (Bu's spectral muP keeps one set of hyperparameters across the expansion; the width does not change here, so the one rate holds before and after as muP intends, and the study's checks try x0.5 and x2)",
                knob: None,
            },
        ],
    },
    MethodRow {
        name: MethodName::Word("one-layer-iters"),
        expand: one_layer,
        // Bu's equal iterations are equal tokens (a fixed number of tokens a step).
        budget_unit: Some(ComputeUnit::Tokens),
        source: "Bu's own comparison: `one-layer` held to the baseline's steps",
        differs: &[Difference {
            what: "spends less compute than the baseline (read by its effective compute)",
            knob: None,
        }],
    },
    MethodRow {
        name: MethodName::Numbered { prefix: "gstack-", suffix: "x", symbol: "g", min: 2, shown: &[2, 4] },
        expand: gstack,
        budget_unit: None,
        source: "Du et al., arXiv 2405.15319 (NeurIPS 2024), Section 4, Algorithm 1; tongxuluo/prts `pretrain/run_pretrain.py` (AdamW built at L229-231, `iter_num = 0` at L239), `prts_lit/scaling/stackingpt.py` L25-40",
        differs: &[
            Difference {
                what: "grows at a quarter of the run (Du et al. train the source on d = 10B tokens, 3-9% of the grown run's tokens just past its warmup; their fit of d, Eq. 2, asks at GPT-2 124M for more tokens than the whole budget): a trained source well into the stable phase at every budget of every design, which the plan check enforces",
                knob: None,
            },
            Difference {
                what: "WSD's stable rate after the re-warmup instead of a new cosine",
                knob: Some("growth_rewarmup"),
            },
        ],
    },
    MethodRow {
        name: MethodName::Word("midas"),
        expand: midas,
        budget_unit: None,
        source: "Saunshi et al., arXiv 2409.19044 (NeurIPS 2024); Prop-α (T_i ∝ i^α) as quoted by two reimplementations",
        differs: &[
            Difference { what: "blocks of L/6 layers (Saunshi et al.: 24 layers in blocks of 4); α = 1", knob: None },
            Difference {
                what: "one learning-rate schedule and copied moments are our reading (the paper's handling could not be checked)",
                knob: Some("growth_optimizer"),
            },
        ],
    },
];

/// The paper's: `S` even stages, each half new blocks only, half all active, then continual
/// training with a fresh optimizer (Section III; the reference code). New blocks start random.
fn paper(method: Method, _layers: u32) -> Result<MethodSpec, PlanError> {
    Ok(MethodSpec {
        schedule: IncrementalSchedule::even(method.number),
        growth: Growth::Random,
        placement: Placement::Top,
        reset_optimizer_at_continual: true,
        growth_optimizer: GrowthOptimizer::Fresh,
        growth_rewarmup: GrowthRewarmup::None,
        // The paper's even stages grow where the paper puts them, at any budget.
        grows_in_warmup: true,
    })
}

/// Zero/one-layer expansion (Bu, arXiv 2511.04981): one layer for 80% of the run's iterations,
/// then the full depth at once, the new layers copies of the trained one with its moments; the
/// rate goes on ("continue training with the same learning rate").
fn one_layer(method: Method, layers: u32) -> Result<MethodSpec, PlanError> {
    method.needs(layers, 2)?;
    Ok(copies_with_moments(of_run(vec![1, layers], vec![ONE_LAYER_GROWTH_SHARE]), Placement::Top, false))
}

/// G_stack (Du et al. 2024, arXiv 2405.15319): depth L/g for the first quarter of the run, then
/// that stack repeated g times; a fresh AdamW and the warmup again after growing, as the official
/// code (tongxuluo/prts) trains the grown model as a new run.
fn gstack(method: Method, layers: u32) -> Result<MethodSpec, PlanError> {
    let factor = method.number;
    method.needs(layers, factor)?;
    // A depth `factor` does not divide stacks its lower part once more (stack repeats from the
    // bottom).
    Ok(MethodSpec {
        schedule: of_run(vec![layers / factor, layers], vec![GSTACK_GROWTH_SHARE]),
        growth: Growth::Stack,
        placement: Placement::Top,
        reset_optimizer_at_continual: false,
        growth_optimizer: GrowthOptimizer::Reset,
        growth_rewarmup: GrowthRewarmup::Warmup,
        grows_in_warmup: false,
    })
}

/// MIDAS, middle gradual stacking (Saunshi et al. 2024, arXiv 2409.19044): six stages of L/6
/// layers, each copying the middle run of blocks in place, Prop-1 stage lengths.
fn midas(method: Method, layers: u32) -> Result<MethodSpec, PlanError> {
    method.needs(layers, MIDAS_STAGES)?;
    let depths = crate::split::even_depths(layers, MIDAS_STAGES);
    // Prop-1: stage i of k runs i / (1 + 2 + ... + k) of the run's steps.
    let total = f64::from(MIDAS_STAGES * (MIDAS_STAGES + 1) / 2);
    let ends = (1..MIDAS_STAGES).map(|i| f64::from(i * (i + 1) / 2) / total).collect();
    // Prop-1 puts the first growths of a short run inside its warmup.
    Ok(copies_with_moments(of_run(depths, ends), Placement::Middle, true))
}

/// Stages of these depths that fill the whole run, ending at these shares of it, every stage
/// training all its active blocks.
fn of_run(depths: Vec<u32>, ends: Vec<f64>) -> IncrementalSchedule {
    IncrementalSchedule {
        stage_ends: ends,
        stage_ends_of: StageEndsOf::Run,
        phase1_share: 0.0,
        ..IncrementalSchedule::with_layers(depths)
    }
}

/// New blocks that copy trained ones with their moments, the rate going on as scheduled.
fn copies_with_moments(schedule: IncrementalSchedule, placement: Placement, grows_in_warmup: bool) -> MethodSpec {
    MethodSpec {
        schedule,
        growth: Growth::Copy,
        placement,
        reset_optimizer_at_continual: false,
        growth_optimizer: GrowthOptimizer::Copy,
        growth_rewarmup: GrowthRewarmup::None,
        grows_in_warmup,
    }
}

/// A named growth method: a row of [`METHODS`], with its number (`paper-s4`: 4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Method {
    /// Its row's index in [`METHODS`].
    row: usize,
    /// The number in its name; 0 for a word.
    number: u32,
}

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
}

impl Method {
    /// The methods help texts name (`paper-s4`, `paper-s8`, ..., `midas`), in table order.
    pub fn shown() -> Vec<Method> {
        let numbers = |row: &MethodRow| match row.name {
            MethodName::Word(_) => vec![0],
            MethodName::Numbered { shown, .. } => shown.to_vec(),
        };
        (0..METHODS.len())
            .flat_map(|row| numbers(&METHODS[row]).into_iter().map(move |number| Method { row, number }))
            .collect()
    }

    /// Its row of [`METHODS`].
    pub fn row(&self) -> &'static MethodRow {
        &METHODS[self.row]
    }

    /// The number in its name (`paper-s4`: 4), if it has one.
    pub fn number(&self) -> Option<u32> {
        matches!(self.row().name, MethodName::Numbered { .. }).then_some(self.number)
    }

    /// The budget unit the method is compared in when it is not the study's (Bu's equal
    /// iterations are equal tokens: a fixed number of tokens a step).
    pub fn budget_unit(&self) -> Option<ComputeUnit> {
        self.row().budget_unit
    }

    /// The knobs of this method on a model of `layers` blocks.
    pub fn expand(&self, layers: u32) -> Result<MethodSpec, PlanError> {
        (self.row().expand)(*self, layers)
    }

    /// Refuses a model shallower than `at_least` layers, naming the method.
    fn needs(&self, layers: u32, at_least: u32) -> Result<(), PlanError> {
        match layers >= at_least {
            true => Ok(()),
            false => Err(PlanError::MethodTooShallow { method: self.to_string(), layers, at_least }),
        }
    }
}

impl MethodName {
    /// The number `name` spells in this form (0 for a word), if it does.
    fn read(&self, name: &str) -> Option<u32> {
        match *self {
            MethodName::Word(word) => (name == word).then_some(0),
            MethodName::Numbered { prefix, suffix, min, .. } => {
                let number = name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse::<u32>().ok()?;
                (number >= min).then_some(number)
            }
        }
    }

    /// The form for help texts: `paper-s<S> for any S`, `gstack-<g>x for any g >= 2`.
    fn pattern(&self) -> Option<String> {
        let MethodName::Numbered { prefix, suffix, symbol, min, .. } = *self else { return None };
        let range = if min <= 1 { String::new() } else { format!(" >= {min}") };
        Some(format!("{prefix}<{symbol}>{suffix} for any {symbol}{range}"))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row().name {
            MethodName::Word(word) => f.write_str(word),
            MethodName::Numbered { prefix, suffix, .. } => write!(f, "{prefix}{}{suffix}", self.number),
        }
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Method({self})")
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(name: &str) -> Result<Method, String> {
        let found =
            METHODS.iter().enumerate().find_map(|(row, r)| r.name.read(name).map(|number| Method { row, number }));
        found.ok_or_else(|| {
            let shown: Vec<String> = Method::shown().iter().map(Method::to_string).collect();
            let patterns: Vec<String> = METHODS.iter().filter_map(|r| r.name.pattern()).collect();
            format!("unknown method `{name}`; choose one of {} ({})", shown.join(", "), patterns.join(", "))
        })
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

    fn method(name: &str) -> Method {
        name.parse().unwrap()
    }

    fn plan(name: &str) -> Plan {
        let spec = method(name).expand(12).unwrap();
        Plan::incremental(&ModelShape::gpt2_124m(), GPT2_TOKENS_PER_STEP, 10_000, &spec.schedule, Until::default())
            .unwrap()
    }

    #[test]
    fn every_name_reads_back_and_expands_on_12_layers() {
        let names: Vec<String> = Method::shown().iter().map(Method::to_string).collect();
        let expected =
            ["paper-s4", "paper-s8", "paper-s12", "one-layer", "one-layer-iters", "gstack-2x", "gstack-4x", "midas"];
        assert_eq!(names, expected);
        for name in names {
            let method = method(&name);
            assert_eq!(method.to_string(), name);
            let spec = method.expand(12).unwrap();
            assert!(spec.schedule.validate(&ModelShape::gpt2_124m(), 10_000).is_ok(), "{name}");
        }
        assert_eq!(method("paper-s3").number(), Some(3));
        assert_eq!(method("gstack-3x").to_string(), "gstack-3x");
        assert_eq!(method("midas").number(), None);
        assert_ne!(method("one-layer"), method("one-layer-iters"));
        for bad in ["paper-s0", "paper-sx", "gstack", "gstack-1x", "MIDAS", ""] {
            let err = bad.parse::<Method>().unwrap_err();
            assert_eq!(
                err,
                format!("unknown method `{bad}`; choose one of paper-s4, paper-s8, paper-s12, one-layer, one-layer-iters, gstack-2x, gstack-4x, midas (paper-s<S> for any S, gstack-<g>x for any g >= 2)")
            );
        }
        // In run.json and design files: the name.
        assert_eq!(serde_json::to_string(&method("gstack-4x")).unwrap(), "\"gstack-4x\"");
        assert_eq!(serde_json::from_str::<Method>("\"paper-s8\"").unwrap(), method("paper-s8"));
    }

    #[test]
    fn every_row_names_its_source_and_its_differences_with_their_knobs() {
        for row in &METHODS {
            assert!(!row.source.is_empty() && !row.differs.is_empty());
            for d in row.differs {
                assert!(!d.what.is_empty());
                assert!(d.knob.map_or(true, |k| !k.is_empty() && !k.contains(' ')), "{:?}", d.knob);
            }
        }
    }

    #[test]
    fn methods_grow_as_their_papers_say() {
        // The paper's 4 stages: its own 14,688 steps in paper units.
        assert_eq!(plan("paper-s4").equal_compute.paper_units.step, 14_688);
        let paper = method("paper-s8").expand(12).unwrap();
        assert_eq!(
            (paper.growth, paper.growth_optimizer, paper.reset_optimizer_at_continual),
            (Growth::Random, GrowthOptimizer::Fresh, true)
        );
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
        let copies = method("one-layer").expand(12).unwrap();
        assert_eq!((copies.growth, copies.growth_optimizer), (Growth::Copy, GrowthOptimizer::Copy));
        // Bu's own comparison: the same run held to the baseline's iterations.
        let iters = method("one-layer-iters");
        assert_eq!(
            (iters.budget_unit(), iters.expand(12).unwrap()),
            (Some(ComputeUnit::Tokens), method("one-layer").expand(12).unwrap())
        );
        assert_eq!(method("one-layer").budget_unit(), None);
        // G_stack: L/g layers for a quarter of the run, then stacked g times, a fresh AdamW and
        // the warmup again.
        for (name, first) in [("gstack-2x", 6), ("gstack-4x", 3)] {
            let stack = plan(name);
            assert_eq!(stack.layer_split, vec![first, 12 - first], "{name}");
            let share = stack.stages[0].phase2_steps as f64 / stack.total_steps() as f64;
            assert!((share - 0.25).abs() < 1e-3, "{name}: {share}");
        }
        let g4 = method("gstack-4x").expand(12).unwrap();
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
        let midas = method("midas").expand(12).unwrap();
        assert_eq!((midas.growth, midas.placement), (Growth::Copy, Placement::Middle));
        // Too shallow a model for a method says so, naming the method.
        assert!(method("midas").expand(4).unwrap_err().to_string().contains("midas"));
        assert!(method("gstack-4x").expand(3).unwrap_err().to_string().contains("gstack-4x"));
    }
}
