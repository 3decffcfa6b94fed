//! The study's design, `<runs>/study.json`: which arms, seeds and budgets answer *does growing a
//! transformer layer by layer save compute?* (`train study` runs it; the report reads it).
//!
//! **Fair protocol** (default): the baseline, incremental schedules with S = 4, 8, 12 stages and
//! depth controls (full models with fewer layers, trained to the baseline's compute), each with
//! several seeds (`seed` and `data_seed` varied together, so seed `i` of every arm starts from the
//! same draws and sees the same batches). Every main run uses warmup-stable-decay to the largest
//! budget and saves checkpoints at the branch points of the smaller budgets; a cooldown branch
//! per smaller budget then anneals it there. Every arm is thus compared annealed at every budget.
//! Ablations of the incremental schedule run at one seed.
//!
//! **Paper protocol** (`--protocol paper`): the paper's own comparison: constant learning rate,
//! the reference code's floor phase steps and new+embeddings phase 1, continual training for
//! another base budget of steps, compared un-annealed in paper units.
//!
//! The design is written to `<runs>/study.json` before anything trains.

use std::path::Path;

use anyhow::{bail, Context};
use cost_model::{ComputeUnit, IncrementalSchedule, Phase1Trainable, PhaseStepRounding, Until};
use serde::{Deserialize, Serialize};

use crate::{BaselineSpec, Growth, IncrementalSpec, ScheduleSpec, TrainConfig};

/// The study file's name in the runs directory.
pub const STUDY_FILE: &str = "study.json";
/// Its format version. Format 1 held the HellaSwag file among the overrides (so the design
/// depended on where the file lay); format 2 never does: `hellaswag_every=0` (evaluate at the end
/// of every run and branch) is part of every design, the file an input of `train study`.
pub const STUDY_FORMAT: u32 = 2;
/// The override that puts HellaSwag at the end of every run and branch (when a file is given).
const HELLASWAG_AT_THE_END: &str = "hellaswag_every=0";
/// Wall time of each `train study` invocation that finished (JSON lines: `finished`, `seconds`),
/// beside the study file.
pub const STUDY_TIME_FILE: &str = "study-time.jsonl";

/// The summed wall seconds of the finished `train study` invocations logged in `runs_dir`
/// ([`STUDY_TIME_FILE`]); `None` when none is.
pub fn logged_wall_seconds(runs_dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(runs_dir.join(STUDY_TIME_FILE)).ok()?;
    let seconds: Vec<f64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("seconds")?.as_f64())
        .collect();
    (!seconds.is_empty()).then(|| seconds.iter().sum())
}

/// Which comparison the study makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Annealed at every budget, several seeds, FLOPs, depth controls and ablations.
    Fair,
    /// The paper's: constant learning rate, compared un-annealed at equal compute in paper units.
    Paper,
}

/// One arm of the study: what its runs train. Runs are named `<arm>-s<seed>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    pub name: String,
    /// What the arm is, in a few words (for the report).
    pub label: String,
    pub schedule: ScheduleSpec,
    /// Config overrides of this arm (`key=value`, as `--set`), after the study's.
    #[serde(default)]
    pub overrides: Vec<String>,
}

/// The whole design: written to `study.json` before anything trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyDesign {
    pub format: u32,
    pub protocol: Protocol,
    pub quick: bool,
    pub preset: String,
    /// Config overrides of every run (`key=value`, as `--set`).
    pub overrides: Vec<String>,
    /// Seed `i` sets both `seed` and `data_seed` of every arm's run `i`.
    pub seeds: Vec<u64>,
    /// Budgets the arms are compared at, as multiples of the baseline's budget in `budget_unit`;
    /// main runs train to the largest (annealed there), cooldown branches anneal the others.
    pub budgets: Vec<f64>,
    pub budget_unit: ComputeUnit,
    pub arms: Vec<Arm>,
    /// Variations of one arm, at the first seed only.
    pub ablations: Vec<Arm>,
    /// Why this model and these steps (for the report).
    pub regime: String,
    /// What was left out to fit the time, and why (for the report).
    pub trade_offs: String,
    /// The device the study was planned for.
    pub device: String,
}

/// What `train study` can be asked for.
#[derive(Debug, Clone)]
pub struct StudyRequest {
    pub protocol: Protocol,
    pub quick: bool,
    pub preset: String,
    /// Fraction of the paper's 10,000 steps × 524,288 tokens (GPU presets).
    pub scale: Option<f64>,
    pub device: String,
}

/// The CPU study's model: 12 layers (so 4, 8 and 12 stages all divide it evenly or nearly), d = 16,
/// 2 heads, context 64, byte vocabulary; 2,048 tokens a step (32 rows of 64). Measured with `train
/// bench` on 2 cores: 27.0K tokens/s (12 layers), 93.8K (3 layers); width 32 runs 17.7K, width 24
/// 15.5K (its head size is slower).
const CPU_MODEL: [&str; 6] = [
    "model.d_model=16",
    "model.heads=2",
    "micro_batch=32",
    "tokens_per_step=2048",
    "warmup_steps=20",
    "val_tokens=65536",
];

/// Base steps of the CPU study: 600 steps × 2,048 tokens = 1.23M tokens at budget 1, 27.6 tokens
/// per parameter of the 44.5K-parameter model.
const CPU_BASE_STEPS: u64 = 600;

impl StudyDesign {
    /// The seed whose runs stand for the study where one run per arm is shown (the paper's
    /// figures) and the ablations run.
    pub fn first_seed(&self) -> u64 {
        self.seeds.first().copied().unwrap_or(1)
    }

    /// The arm every other arm is compared with: the first, the full model.
    pub fn baseline(&self) -> Option<&Arm> {
        self.arms.first()
    }

    /// The design in `runs_dir` (its `study.json`), or `None` when the directory holds none.
    pub fn read(runs_dir: &Path) -> anyhow::Result<Option<StudyDesign>> {
        let path = runs_dir.join(STUDY_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut design: StudyDesign =
            serde_json::from_slice(&bytes).with_context(|| format!("{}: corrupt study file", path.display()))?;
        if design.format > STUDY_FORMAT {
            bail!(
                "{}: study format {}, newer than this build reads (up to {STUDY_FORMAT}); use a newer stagewise",
                path.display(),
                design.format
            );
        }
        if design.format == 1 {
            design.upgrade_v1();
        }
        Ok(Some(design))
    }

    /// Format 1 → 2: the HellaSwag file leaves the overrides; evaluating at the end stays.
    fn upgrade_v1(&mut self) {
        self.overrides.retain(|o| !o.starts_with("hellaswag="));
        if !self.overrides.iter().any(|o| o.starts_with("hellaswag_every=")) {
            self.overrides.push(HELLASWAG_AT_THE_END.into());
        }
        self.format = 2;
    }

    /// Write the design to `runs_dir/study.json` (whole or not at all).
    pub fn write(&self, runs_dir: &Path) -> anyhow::Result<()> {
        let path = runs_dir.join(STUDY_FILE);
        crate::write_atomically(&path, |f| std::io::Write::write_all(f, &serde_json::to_vec_pretty(self)?))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The design for `request`.
    pub fn new(request: &StudyRequest) -> anyhow::Result<StudyDesign> {
        let gpu = request.preset != "tiny";
        if gpu && request.scale.is_none() {
            bail!(
                "--preset {}: give --scale F, the fraction of the paper's 10,000 steps to run (e.g. 0.05)",
                request.preset
            );
        }
        if let Some(f) = request.scale {
            if !(f > 0.0 && f <= 1.0) {
                bail!("--scale {f}: a fraction of the paper's budget in (0, 1], e.g. 0.05");
            }
        }
        let base_steps = match request.scale {
            Some(f) => cost_model::round_half_up(f * 10_000.0).max(4),
            None => CPU_BASE_STEPS,
        };
        let mut overrides: Vec<String> =
            if gpu { Vec::new() } else { CPU_MODEL.iter().map(|s| s.to_string()).collect() };
        overrides.push(format!("steps={base_steps}"));
        overrides.push(format!("val_every={}", (base_steps / 4).max(1)));
        overrides.push("checkpoint_every=0".into());
        if gpu {
            overrides.push(format!("warmup_steps={}", (base_steps / 14).max(1)));
        }
        let quick = request.quick;
        let mut design = match request.protocol {
            Protocol::Fair => {
                let seeds = if quick { vec![1] } else { vec![1, 2, 3] };
                let budgets = if quick { vec![0.5, 1.0] } else { vec![0.5, 1.0, 2.0] };
                let incremental = |stages: u32| IncrementalSpec {
                    stages: IncrementalSchedule { stages, ..Default::default() },
                    ..Default::default()
                };
                let inc = |stages: u32| Arm {
                    name: format!("inc{stages}"),
                    label: format!("incremental, {stages} stages"),
                    schedule: ScheduleSpec::Incremental(incremental(stages)),
                    overrides: Vec::new(),
                };
                let depth = |layers: u32| Arm {
                    name: format!("depth{layers}"),
                    label: format!("full {layers}-layer model (depth control)"),
                    // `until` is a placeholder: `run_config` sets it from the protocol and budgets.
                    schedule: ScheduleSpec::Baseline(BaselineSpec { until: Until::Steps(1), budget_layers: Some(12) }),
                    overrides: vec![format!("model.layers={layers}")],
                };
                let baseline = Arm {
                    name: "baseline".into(),
                    label: "full 12-layer model".into(),
                    schedule: ScheduleSpec::baseline(),
                    overrides: Vec::new(),
                };
                let arms = if quick {
                    vec![baseline, inc(4), depth(6)]
                } else {
                    vec![baseline, inc(4), inc(8), inc(12), depth(3), depth(6), depth(9)]
                };
                let ablation = |name: &str, label: &str, spec: IncrementalSpec| Arm {
                    name: format!("inc4-{name}"),
                    label: label.into(),
                    schedule: ScheduleSpec::Incremental(spec),
                    overrides: Vec::new(),
                };
                let base4 = incremental(4);
                let ablations = if quick {
                    Vec::new()
                } else {
                    vec![
                        ablation(
                            "keep-optimizer",
                            "optimizer kept at continual (no reset)",
                            IncrementalSpec { reset_optimizer_at_continual: false, ..base4.clone() },
                        ),
                        ablation(
                            "rewarmup",
                            "re-warmup over 5% of the base steps after the reset",
                            IncrementalSpec { rewarmup_steps: (base_steps / 20).max(1), ..base4.clone() },
                        ),
                        ablation(
                            "new-embeddings",
                            "phase 1 trains new blocks + embeddings (reference code)",
                            IncrementalSpec {
                                stages: IncrementalSchedule {
                                    phase1_trainable: Phase1Trainable::NewAndEmbeddings,
                                    ..base4.stages.clone()
                                },
                                ..base4.clone()
                            },
                        ),
                        ablation(
                            "zero-growth",
                            "zero growth (new blocks start as identities)",
                            IncrementalSpec { growth: Growth::Zero, ..base4.clone() },
                        ),
                        ablation(
                            "stack-growth",
                            "stack growth (new blocks copy the trained stack)",
                            IncrementalSpec { growth: Growth::Stack, ..base4.clone() },
                        ),
                    ]
                };
                StudyDesign {
                    format: STUDY_FORMAT,
                    protocol: Protocol::Fair,
                    quick,
                    preset: request.preset.clone(),
                    overrides: overrides.clone(),
                    seeds,
                    budgets,
                    budget_unit: ComputeUnit::Flops,
                    arms,
                    ablations,
                    regime: regime(gpu, base_steps),
                    trade_offs: if quick {
                        "--quick: one seed, budgets 0.5 and 1, one depth control, no ablations: a smoke run, not an answer.".into()
                    } else if gpu {
                        "None on the GPU: 3 seeds, budgets 0.5, 1, 2, three depth controls, five ablations.".into()
                    } else {
                        CPU_TRADE_OFFS.into()
                    },
                    device: request.device.clone(),
                }
            }
            Protocol::Paper => {
                let paper = |stages: u32| Arm {
                    name: format!("paper-inc{stages}"),
                    label: format!("incremental, {stages} stages (reference code)"),
                    schedule: ScheduleSpec::Incremental(IncrementalSpec {
                        stages: IncrementalSchedule {
                            stages,
                            phase_steps: PhaseStepRounding::Floor,
                            phase1_trainable: Phase1Trainable::NewAndEmbeddings,
                            ..Default::default()
                        },
                        // A placeholder: `run_config` sets where the run stops (the reference
                        // code's continual training, another base budget of steps).
                        until: Until::Steps(1),
                        ..Default::default()
                    }),
                    overrides: Vec::new(),
                };
                let mut paper_overrides = overrides.clone();
                paper_overrides.extend(["lr_schedule=constant".into(), "warmup_steps=0".into()]);
                StudyDesign {
                    format: STUDY_FORMAT,
                    protocol: Protocol::Paper,
                    quick,
                    preset: request.preset.clone(),
                    overrides: paper_overrides,
                    seeds: vec![1],
                    budgets: vec![1.0],
                    budget_unit: ComputeUnit::PaperUnits,
                    arms: vec![
                        Arm { name: "paper-baseline".into(), label: "full 12-layer model".into(), schedule: ScheduleSpec::baseline(), overrides: Vec::new() },
                        paper(4),
                        paper(8),
                        paper(12),
                    ],
                    ablations: Vec::new(),
                    regime: regime(gpu, base_steps),
                    trade_offs: "The paper's protocol, kept to read beside the fair one: one seed, constant learning rate (never annealed), compared at equal compute in paper units as the paper did.".into(),
                    device: request.device.clone(),
                }
            }
        };
        // HellaSwag, when `train study` is given a file, at the end of every run and branch.
        design.overrides.push(HELLASWAG_AT_THE_END.into());
        Ok(design)
    }

    /// The config and schedule of `run` (a main run: to its largest budget, with branch points
    /// for the others).
    pub fn run_config(&self, run: &StudyRun) -> anyhow::Result<(TrainConfig, ScheduleSpec)> {
        let (arm, seed) = (&run.arm, run.seed);
        let mut config = TrainConfig::preset(&self.preset)?;
        for assignment in self.overrides.iter().chain(&arm.overrides) {
            config.set(assignment)?;
        }
        config.seed = seed;
        config.data_seed = Some(seed);
        let until = match self.protocol {
            Protocol::Fair => Until::Budget { multiple: run.largest_budget(), unit: self.budget_unit },
            Protocol::Paper => match &arm.schedule {
                ScheduleSpec::Baseline(_) => Until::EqualCompute(ComputeUnit::PaperUnits),
                ScheduleSpec::Incremental(spec) => {
                    let stages = ScheduleSpec::Incremental(IncrementalSpec {
                        until: Until::Steps(config.steps),
                        ..spec.clone()
                    });
                    Until::Steps(stages.plan(&config)?.incremental_steps + config.steps)
                }
            },
        };
        if self.protocol == Protocol::Fair {
            config.cooldown_budgets = run.budgets.iter().copied().filter(|&b| b < run.largest_budget()).collect();
            config.cooldown_unit = self.budget_unit;
        }
        Ok((config, arm.schedule.with_until(until)))
    }

    /// Every run of the study, in the order they train: seed by seed, arm by arm (compared at
    /// every budget), then the ablations at the first seed (compared at budget 1 only, so they
    /// train to it and anneal there, with no branches).
    pub fn runs(&self) -> Vec<StudyRun> {
        let mut out = Vec::new();
        for &seed in &self.seeds {
            for arm in &self.arms {
                out.push(StudyRun::new(arm, seed, self.budgets.clone()));
            }
        }
        if let Some(&first) = self.seeds.first() {
            for arm in &self.ablations {
                out.push(StudyRun::new(arm, first, vec![1.0]));
            }
        }
        out
    }

    /// FLOPs the whole study trains (main runs and cooldown branches), from the plans.
    pub fn predicted_flops(&self) -> anyhow::Result<f64> {
        let mut total = 0.0;
        for run in self.runs() {
            let (config, schedule) = self.run_config(&run)?;
            let plan = schedule.plan(&config)?;
            total += plan.cumulative(plan.total_steps()).flops;
            for &budget in &config.cooldown_budgets {
                let point =
                    crate::cooldown::branch_point(&plan, config.cooldown_unit, budget, config.cooldown_fraction)?;
                total += plan.cumulative(point.to_step).flops - plan.cumulative(point.from_step).flops;
            }
        }
        Ok(total)
    }
}

/// One run of a study: an arm at a seed, compared at `budgets`. Named `<arm>-s<seed>`.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyRun {
    pub name: String,
    pub arm: Arm,
    pub seed: u64,
    pub budgets: Vec<f64>,
}

impl StudyRun {
    fn new(arm: &Arm, seed: u64, budgets: Vec<f64>) -> StudyRun {
        StudyRun { name: format!("{}-s{seed}", arm.name), arm: arm.clone(), seed, budgets }
    }

    /// The budget the main run trains to (annealed there); cooldown branches anneal the others.
    pub fn largest_budget(&self) -> f64 {
        self.budgets.iter().copied().fold(0.0, f64::max)
    }
}

/// The study's reason for its model and steps.
fn regime(gpu: bool, base_steps: u64) -> String {
    if gpu {
        format!("GPT-2 124M on the GPT-2 BPE corpus, {base_steps} base steps of 524,288 tokens (a fraction of the paper's 10,000 steps, ~42 tokens per parameter at the full scale).")
    } else {
        format!(
            "A 12-layer GPT-2 of width 16 (44.5K parameters, 2 heads, byte vocabulary, context 64) on the embedded corpus: budget 1 is {base_steps} steps of 2,048 tokens = {:.2}M tokens, {:.1} tokens per parameter. The paper trained GPT-2 124M on 5.2B tokens (~42 tokens per parameter); the previous tiny study ran at ~1.6, where shallow models fed more tokens win almost by construction. 12 layers keep every schedule (4, 8, 12 stages) possible; the width is what makes more than 20 tokens per parameter fit 60 minutes on 2 cores for 3 seeds of 7 arms at 3 budgets.",
            base_steps as f64 * 2048.0 / 1e6,
            base_steps as f64 * 2048.0 / 44_528.0
        )
    }
}

const CPU_TRADE_OFFS: &str = "To fit 60 minutes of training on 2 CPU cores the model is narrow (d = 16 instead of the tiny preset's 64: at d = 32 the same design would take about 2.6 hours) and the budgets stop at 2x (0.5, 1, 2); kept: 3 seeds of every arm, all three depth controls (3, 6, 9 layers, the S = 4 stage depths), five ablations (at one seed, compared at budget 1 only).";

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(protocol: Protocol, quick: bool) -> StudyDesign {
        StudyDesign::new(&StudyRequest { protocol, quick, preset: "tiny".into(), scale: None, device: "cpu".into() })
            .unwrap()
    }

    #[test]
    fn the_fair_study_pairs_arms_by_seed_and_anneals_every_budget() {
        let design = cpu(Protocol::Fair, false);
        assert_eq!(design.seeds, vec![1, 2, 3]);
        let runs = design.runs();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names.len(), 7 * 3 + 5);
        assert!(names.contains(&"depth6-s2") && names.contains(&"inc4-zero-growth-s1"));
        let (config, schedule) = design.run_config(&runs[7 + 1]).unwrap();
        assert_eq!((config.seed, config.data_seed), (2, Some(2)));
        assert_eq!(config.cooldown_budgets, vec![0.5, 1.0]);
        assert_eq!(schedule.until(), Until::Budget { multiple: 2.0, unit: ComputeUnit::Flops });
        // At least 20 tokens per parameter at budget 1.
        assert_eq!(config.parameters(), 44_528);
        assert!(CPU_BASE_STEPS as f64 * 2048.0 / config.parameters() as f64 >= 20.0);
        // A depth control is held to the 12-layer budget.
        let (depth, schedule) = design.run_config(&runs[4]).unwrap();
        let plan = schedule.plan(&depth).unwrap();
        let base = design.run_config(&runs[0]).unwrap();
        assert_eq!(plan.budget(), base.1.plan(&base.0).unwrap().budget());
        assert!(design.predicted_flops().unwrap() > 0.0);
        // Ablations are compared at budget 1: they anneal there, with no branches.
        let ablation = runs.last().unwrap();
        let (config, schedule) = design.run_config(ablation).unwrap();
        assert!(config.cooldown_budgets.is_empty());
        assert_eq!(schedule.until(), Until::Budget { multiple: 1.0, unit: ComputeUnit::Flops });
    }

    #[test]
    fn the_paper_protocol_is_the_reference_codes() {
        let design = cpu(Protocol::Paper, false);
        let (config, schedule) = design.run_config(&design.runs()[1]).unwrap();
        assert_eq!(config.lr_schedule, crate::config::LrKind::Constant);
        let plan = schedule.plan(&config).unwrap();
        // Continual training runs another base budget of steps after the stages.
        assert_eq!(plan.total_steps(), plan.incremental_steps + config.steps);
        assert!(config.cooldown_budgets.is_empty());
        let quick = cpu(Protocol::Fair, true);
        assert_eq!((quick.seeds.len(), quick.runs().len()), (1, 3));
    }

    #[test]
    fn the_committed_studies_are_todays_designs() {
        // `just study` on a clone must find the committed study finished, not another design.
        let reports = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports");
        for (dir, protocol) in [("runs", Protocol::Fair), ("paper/runs", Protocol::Paper)] {
            let committed = StudyDesign::read(&reports.join(dir)).unwrap().unwrap();
            assert_eq!(committed, cpu(protocol, false), "reports/{dir}/study.json is not this commit's design");
        }
    }

    #[test]
    fn a_format_1_design_with_a_hellaswag_file_reads_as_todays_design() {
        for protocol in [Protocol::Fair, Protocol::Paper] {
            let today = cpu(protocol, false);
            // Format 1 held the file among the overrides when `train study --hellaswag` was given.
            let mut old = today.clone();
            old.format = 1;
            let at = old.overrides.len() - 1;
            old.overrides.insert(at, "hellaswag=somewhere/else/hellaswag_val.jsonl".into());
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(STUDY_FILE), serde_json::to_vec_pretty(&old).unwrap()).unwrap();
            assert_eq!(StudyDesign::read(dir.path()).unwrap(), Some(today.clone()), "{protocol:?}");
            // Without a file, format 1 had no HellaSwag overrides at all.
            old.overrides.retain(|o| !o.starts_with("hellaswag"));
            std::fs::write(dir.path().join(STUDY_FILE), serde_json::to_vec_pretty(&old).unwrap()).unwrap();
            assert_eq!(StudyDesign::read(dir.path()).unwrap(), Some(today));
        }
    }
}
