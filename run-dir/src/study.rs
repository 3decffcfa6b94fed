//! A study's design: which arms, seeds and budgets answer *does growing a transformer layer by
//! layer save compute?* (`train study` runs it; the report reads it).
//!
//! Designs are data: `studies/*.toml` ([`StudyFile`], typed, validated, versioned by `format`),
//! the CPU study (`cpu`), its smoke run (`quick`), the paper's protocol (`paper`) and GPU designs;
//! they are built into the binary by name, and `train study --design FILE` takes a user's own.
//! The design is written to `<runs>/study.json` before anything trains, and a study directory
//! holds exactly one design.
//!
//! **Fair protocol**: every arm's main run uses warmup-stable-decay to the largest budget and saves
//! checkpoints at the branch points of the smaller budgets; a cooldown branch per smaller budget
//! then anneals it there, so every arm is compared annealed at every budget. Seed `i` sets `seed`
//! and `data_seed` of every arm's run `i`, so arms are paired. Ablations run at the first seed.
//!
//! **Paper protocol**: the paper's own comparison: continual training for another base budget of
//! steps after the stages, compared un-annealed at equal compute in paper units.

use std::path::Path;

use anyhow::{bail, Context};
use cost_model::{ComputeUnit, Until};
use serde::{Deserialize, Serialize};

use crate::{BaselineSpec, IncrementalSpec, ScheduleSpec, TrainConfig};

/// The study file's name in the runs directory.
pub const STUDY_FILE: &str = "study.json";
/// The format of a design (`study.json` and the design files). Format 1 held the HellaSwag file
/// among the overrides (so the design depended on where the file lay); format 2 never does: the
/// file is an input of `train study`.
pub const STUDY_FORMAT: u32 = 2;
/// The override that puts HellaSwag at the end of every run and branch (format 2 designs have it).
const HELLASWAG_AT_THE_END: &str = "hellaswag_every=0";

/// The designs built into the binary, by name: `studies/<name>.toml`.
pub const BUILTIN_DESIGNS: [(&str, &str); 4] = [
    ("cpu", include_str!("../../studies/cpu.toml")),
    ("quick", include_str!("../../studies/quick.toml")),
    ("paper", include_str!("../../studies/paper.toml")),
    ("gpt2-124m", include_str!("../../studies/gpt2-124m.toml")),
];
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
    #[serde(default)]
    pub ablations: Vec<Arm>,
    /// Why this model and these steps (for the report).
    pub regime: String,
    /// What was left out to fit the time, and why (for the report).
    pub trade_offs: String,
    /// The device the study was planned for.
    pub device: String,
}

/// A design file (`studies/*.toml`): the design, and where its runs go by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyFile {
    /// The runs directory (`train study --runs-dir` overrides it); its parent gets the report.
    pub runs_dir: std::path::PathBuf,
    #[serde(flatten)]
    pub design: StudyDesign,
}

impl StudyFile {
    /// The design `name` names: a built-in one (`cpu`, `quick`, `paper`, `gpt2-124m`), else a
    /// TOML file at that path; read and validated.
    pub fn load(name: &str) -> anyhow::Result<StudyFile> {
        let (text, origin) = match BUILTIN_DESIGNS.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => (text.to_string(), format!("the built-in design {name}")),
            None => {
                let text = std::fs::read_to_string(name).with_context(|| {
                    let names: Vec<&str> = BUILTIN_DESIGNS.iter().map(|(n, _)| *n).collect();
                    format!("--design {name}: neither a built-in design ({}) nor a readable file", names.join(", "))
                })?;
                (text, name.to_string())
            }
        };
        StudyFile::parse(&text).with_context(|| origin)
    }

    /// A design file's text, validated.
    pub fn parse(text: &str) -> anyhow::Result<StudyFile> {
        let mut file: StudyFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
        file.design.expand_methods()?;
        file.design.validate()?;
        file.design.normalise();
        Ok(file)
    }
}

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
        design.expand_methods().with_context(|| format!("{}", path.display()))?;
        design.normalise();
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

    /// Reject a design that cannot run, naming the field: a format this build does not read, no
    /// seeds or budgets, a first arm that is not the full model, arm names that are not one
    /// directory name or repeat, and any run whose configuration or plan does not build.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.format != STUDY_FORMAT {
            bail!("format = {}: this build reads design format {STUDY_FORMAT}", self.format);
        }
        if self.seeds.is_empty() {
            bail!("seeds = []: give at least one seed, e.g. seeds = [1, 2, 3]");
        }
        if self.budgets.is_empty() || self.budgets.iter().any(|b| !(b.is_finite() && *b > 0.0)) {
            bail!("budgets = {:?}: positive multiples of the baseline's budget, e.g. [0.5, 1.0, 2.0]", self.budgets);
        }
        match self.arms.first().map(|a| &a.schedule) {
            Some(ScheduleSpec::Baseline(BaselineSpec { budget_layers: None, .. })) => {}
            _ => bail!("arms: the first arm must be the baseline (schedule = {{ kind = \"baseline\" }}), the one every other arm is compared with"),
        }
        let mut names = std::collections::BTreeSet::new();
        for arm in self.arms.iter().chain(&self.ablations) {
            if arm.name.is_empty() || arm.name.contains('/') || arm.name.contains(char::is_whitespace) {
                bail!("arm name {:?}: one directory name, without '/' or spaces", arm.name);
            }
            if !names.insert(&arm.name) {
                bail!("arm name {:?} appears twice", arm.name);
            }
        }
        for run in self.runs() {
            let (config, schedule) = self.run_config(&run).with_context(|| format!("arm {}", run.arm.name))?;
            config.validate().with_context(|| format!("arm {}", run.arm.name))?;
            schedule.plan(&config).with_context(|| format!("arm {}", run.arm.name))?;
        }
        Ok(())
    }

    /// Arms named by a method (`schedule = { kind = "incremental", method = "midas" }`) take
    /// that method's knobs for the arm's model; a depth list sets its stage count.
    fn expand_methods(&mut self) -> anyhow::Result<()> {
        let configs: Vec<TrainConfig> = self
            .arms
            .iter()
            .chain(&self.ablations)
            .map(|arm| self.arm_config(arm).with_context(|| format!("arm {}", arm.name)))
            .collect::<anyhow::Result<_>>()?;
        for (arm, config) in self.arms.iter_mut().chain(self.ablations.iter_mut()).zip(configs) {
            let ScheduleSpec::Incremental(spec) = &arm.schedule else { continue };
            let Some(method) = spec.method else {
                arm.schedule = ScheduleSpec::Incremental(spec.clone().normalised());
                continue;
            };
            let expanded = IncrementalSpec::of_method(method, config.model.blocks(), spec.until)
                .with_context(|| format!("arm {}", arm.name))?;
            let bare = IncrementalSpec { method: Some(method), until: spec.until, ..IncrementalSpec::default() };
            if *spec != expanded && *spec != bare {
                bail!("arm {}: method = \"{method}\" sets the whole schedule; drop the arm's other schedule keys, or drop method and give every key", arm.name);
            }
            arm.schedule = ScheduleSpec::Incremental(expanded);
        }
        Ok(())
    }

    /// Where an arm stops is the study's to set (`run_config`), not the arm's: one canonical
    /// value, so that designs that differ only there are the same design.
    fn normalise(&mut self) {
        for arm in self.arms.iter_mut().chain(self.ablations.iter_mut()) {
            arm.schedule = arm.schedule.with_until(Until::default());
        }
    }

    /// The config and schedule of `run` (a main run: to its largest budget, with branch points
    /// for the others).
    pub fn run_config(&self, run: &StudyRun) -> anyhow::Result<(TrainConfig, ScheduleSpec)> {
        let (arm, seed) = (&run.arm, run.seed);
        let mut config = self.arm_config(arm)?;
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

    /// The configuration of `arm`'s runs before seeds and budgets: the preset, the study's
    /// overrides, then the arm's.
    fn arm_config(&self, arm: &Arm) -> anyhow::Result<TrainConfig> {
        let mut config = TrainConfig::preset(&self.preset)?;
        for assignment in self.overrides.iter().chain(&arm.overrides) {
            config.set(assignment)?;
        }
        Ok(config)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn design(name: &str) -> StudyDesign {
        StudyFile::load(name).unwrap().design
    }

    #[test]
    fn the_fair_study_pairs_arms_by_seed_and_anneals_every_budget() {
        let design = design("cpu");
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
        assert!(config.steps as f64 * 2048.0 / config.parameters() as f64 >= 20.0);
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
        let design = design("paper");
        let (config, schedule) = design.run_config(&design.runs()[1]).unwrap();
        assert_eq!(config.lr_schedule, crate::config::LrKind::Constant);
        let plan = schedule.plan(&config).unwrap();
        // Continual training runs another base budget of steps after the stages.
        assert_eq!(plan.total_steps(), plan.incremental_steps + config.steps);
        assert!(config.cooldown_budgets.is_empty());
        let quick = StudyFile::load("quick").unwrap();
        assert_eq!((quick.design.seeds.len(), quick.design.runs().len()), (1, 3));
        assert_eq!(quick.runs_dir, Path::new("reports/quick/runs"));
    }

    #[test]
    fn the_committed_studies_are_the_built_in_designs() {
        // `just study` on a clone must find the committed study finished, not another design.
        let reports = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports");
        for (dir, name) in [("runs", "cpu"), ("paper/runs", "paper")] {
            let file = StudyFile::load(name).unwrap();
            assert_eq!(reports.join(dir), Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&file.runs_dir));
            let committed = StudyDesign::read(&reports.join(dir)).unwrap().unwrap();
            assert_eq!(committed, file.design, "reports/{dir}/study.json is not studies/{name}.toml");
        }
        // Every built-in design is valid.
        for (name, _) in BUILTIN_DESIGNS {
            StudyFile::load(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn a_design_file_says_what_is_wrong_with_it() {
        let cpu = include_str!("../../studies/cpu.toml");
        let broken = |from: &str, to: &str| {
            assert!(cpu.contains(from), "{from}");
            format!("{:#}", StudyFile::parse(&cpu.replacen(from, to, 1)).unwrap_err())
        };
        assert!(broken("format = 2", "format = 9").contains("format = 9"));
        assert!(broken("seeds = [1, 2, 3]", "seeds = []").contains("seeds"));
        assert!(broken("budgets = [0.5, 1.0, 2.0]", "budgets = [0.5, -1.0]").contains("budgets"));
        assert!(broken("name = \"inc4\"", "name = \"inc8\"").contains("appears twice"));
        assert!(broken("name = \"inc4\"", "name = \"a/b\"").contains("one directory name"));
        assert!(broken("\"model.heads=2\"", "\"model.heads=3\"").contains("model.heads"));
        assert!(broken("stages = 12 }", "stages = 13 }").contains("arm inc12"));
        assert!(broken("budget_unit = \"flops\"", "budget_unit = \"joules\"").contains("joules"));
        assert!(
            broken("schedule = { kind = \"baseline\" }", "schedule = { kind = \"incremental\" }").contains("first arm")
        );
        let err = format!("{:#}", StudyFile::load("no-such-design").unwrap_err());
        assert!(err.contains("cpu, quick, paper"), "{err}");
    }

    #[test]
    fn an_arm_is_one_method_word_expanded_for_its_model() {
        let cpu = include_str!("../../studies/cpu.toml");
        let with = |schedule: &str| {
            let text = cpu.replacen("schedule = { kind = \"incremental\", stages = 4 }", schedule, 1);
            StudyFile::parse(&text)
        };
        let file = with("schedule = { kind = \"incremental\", method = \"midas\" }").unwrap();
        let arm = file.design.arms.iter().find(|a| a.name == "inc4").unwrap();
        let spec = arm.schedule.incremental().unwrap();
        assert_eq!(spec.method, Some(cost_model::Method::Midas));
        assert_eq!(spec.stages.stage_layers, vec![2, 4, 6, 8, 10, 12]);
        assert_eq!((spec.growth, spec.placement), (crate::Growth::Copy, crate::Placement::Middle));
        // Written to study.json and read back: the same design.
        let dir = tempfile::tempdir().unwrap();
        file.design.write(dir.path()).unwrap();
        assert_eq!(StudyDesign::read(dir.path()).unwrap(), Some(file.design));
        // A method with knobs of its own is ambiguous; an unknown one names the choices.
        let both = with("schedule = { kind = \"incremental\", method = \"midas\", stages = 3 }");
        assert!(format!("{:#}", both.unwrap_err()).contains("drop the arm's other schedule keys"));
        let unknown = with("schedule = { kind = \"incremental\", method = \"mitosis\" }");
        assert!(format!("{:#}", unknown.unwrap_err()).contains("one-layer"));
        // A depth list sets the stage count.
        let listed = with("schedule = { kind = \"incremental\", stage_layers = [1, 12], stage_ends = [0.8] }").unwrap();
        let arm = listed.design.arms.iter().find(|a| a.name == "inc4").unwrap();
        assert_eq!(arm.schedule.incremental().unwrap().stages.stages, 2);
    }

    #[test]
    fn a_format_1_design_with_a_hellaswag_file_reads_as_todays_design() {
        for name in ["cpu", "paper"] {
            let today = design(name);
            // Format 1 held the file among the overrides when `train study --hellaswag` was given.
            let mut old = today.clone();
            old.format = 1;
            let at = old.overrides.len() - 1;
            old.overrides.insert(at, "hellaswag=somewhere/else/hellaswag_val.jsonl".into());
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(STUDY_FILE), serde_json::to_vec_pretty(&old).unwrap()).unwrap();
            assert_eq!(StudyDesign::read(dir.path()).unwrap(), Some(today.clone()), "{name}");
            // Without a file, format 1 had no HellaSwag overrides at all.
            old.overrides.retain(|o| !o.starts_with("hellaswag"));
            std::fs::write(dir.path().join(STUDY_FILE), serde_json::to_vec_pretty(&old).unwrap()).unwrap();
            assert_eq!(StudyDesign::read(dir.path()).unwrap(), Some(today));
        }
    }
}
