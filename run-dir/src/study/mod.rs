//! A study's design: which arms, seeds and budgets answer *does growing a transformer layer by
//! layer save compute?* (`train study` runs it; the report reads it).
//!
//! Designs are data: `studies/*.toml` ([`StudyFile`], typed, validated, versioned by `format`;
//! every run's config in a `[config]` table of `run.json`'s keys, [`ConfigTable`]),
//! the CPU study (`cpu`), its smoke run (`quick`), the paper's protocol (`paper`) and GPU designs;
//! they are built into the binary by name, and `train study --design FILE` takes a user's own.
//! The design is written to `<runs>/study.json` before anything trains, and a study directory
//! holds exactly one design.
//!
//! **Fair protocol**: every arm is its method at every budget, annealed there, at its own learning
//! rate. An arm that grows runs the schedule planned for each budget `B` (its stages scaled to `B`:
//! one run per budget, `<arm>-b<B>-s<seed>`). A full-model arm's plan for `B` is its longer plan
//! cut at `B`, so one warmup-stable-decay run to the largest budget (`<arm>-s<seed>`) with a
//! cooldown branch per smaller budget anneals it at every budget; the main run also logs its
//! un-annealed loss where each branch ends. With a `[sweep]`, every arm first trains at each rate
//! on the sweep's own seeds (`<arm>-lr<rate>-s<seed>`, planned for the sweep's budget, on at a
//! constant rate past it with a branch annealed at it), and the study's seeds then run at the rate
//! whose annealed loss was lowest ([`choose_rate`]). Seed `i` sets `seed` and `data_seed` of every
//! arm's run `i`, so arms are paired. Ablations run at the first seed, compared at budget 1.
//!
//! **Paper protocol**: the paper's own comparison: continual training for another base budget of
//! steps after the stages, compared un-annealed at equal compute in paper units.

use std::path::Path;

use anyhow::{bail, Context};
use cost_model::{ComputeUnit, Until};
use serde::{Deserialize, Serialize};

use crate::{BaselineSpec, IncrementalSpec, ScheduleSpec, TrainConfig};

mod file;
mod runs;
mod sweep;

pub use file::{ConfigTable, StudyFile, Throughput};
pub use runs::{RunRate, StudyRun};
pub use sweep::{choose_rate, final_val_loss, Rates, Sweep, SweepArms};

/// The study file's name in the runs directory.
pub const STUDY_FILE: &str = "study.json";
/// The format of a design (`study.json` and the design files). Format 1 held the HellaSwag file
/// among the overrides (so the design depended on where the file lay); format 2 never does: the
/// file is an input of `train study`. Format 3 plans growing arms per budget and may sweep the
/// learning rate; a format-2 design of the fair protocol (growing arms branched from one plan)
/// is refused, a paper-protocol one (no budgets) reads as format 3. Format 4 has the methods as
/// their papers run them (stages as shares of the run, G_stack's restart, Bu's moments), sweep
/// runs annealed at their own end, sweeps of one rate with checks, and budgets per arm; a
/// format-3 fair design with a growing arm or a sweep (trained with the methods of commit
/// ac4f779) is refused, others read as format 4 with their methods re-expanded. Format 5 design
/// files give the config as a typed `[config]` table (and an arm's as `config`), set as the
/// `key=value` overrides before the listed ones; `study.json` holds them as overrides, so a
/// format-4 design (file or `study.json`: overrides only) reads as format 5 unchanged.
pub const STUDY_FORMAT: u32 = 5;
/// The override that puts HellaSwag at the end of every run and branch (format 2 designs have it).
const HELLASWAG_AT_THE_END: &str = "hellaswag_every=0";

/// The designs built into the binary, by name: `studies/<name>.toml`.
pub const BUILTIN_DESIGNS: [(&str, &str); 6] = [
    ("cpu", include_str!("../../../studies/cpu.toml")),
    ("quick", include_str!("../../../studies/quick.toml")),
    ("paper", include_str!("../../../studies/paper.toml")),
    ("gpu-r0", include_str!("../../../studies/gpu-r0.toml")),
    ("gpu", include_str!("../../../studies/gpu.toml")),
    ("gpu-pilot", include_str!("../../../studies/gpu-pilot.toml")),
];
/// Wall time of each `train study` invocation (JSON lines: `started`, `finished`, `seconds`,
/// `complete`; rewritten as it goes, so a killed invocation counts too), beside the study file.
pub const STUDY_TIME_FILE: &str = "study-time.jsonl";

/// The summed wall seconds of the `train study` invocations logged in `runs_dir`
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
    /// The arm's config in a design file (`config.model.layers = 6`): moved into `overrides`,
    /// before the listed ones, when the file is read (empty after; never in `study.json`).
    #[serde(default, skip_serializing_if = "ConfigTable::is_empty")]
    pub config: ConfigTable,
    /// The budgets this arm is annealed at, when not the study's (e.g. the baseline at seven
    /// budgets, the curve other arms are read on; a growing arm at budget 1 alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets: Option<Vec<f64>>,
    /// The study's seeds this arm runs at, when not all of them (a GPU design's controls once,
    /// the baseline twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<Vec<u64>>,
}

/// The whole design: written to `study.json` before anything trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyDesign {
    pub format: u32,
    pub protocol: Protocol,
    pub quick: bool,
    pub preset: String,
    /// Config overrides of every run (`key=value`, as `--set`): a design file's `[config]`
    /// table's, then its `overrides`.
    #[serde(default)]
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
    /// The learning-rate sweep that picks each arm's rate, if any (else every arm trains at the
    /// config's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,
    /// The compute effect (a fraction, e.g. 0.1 for 10%) the seed count was chosen to detect;
    /// the report says whether the observed noise lets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_effect: Option<f64>,
    /// Why this model and these steps (for the report).
    pub regime: String,
    /// What was left out to fit the time, and why (for the report).
    pub trade_offs: String,
    /// The device the study was planned for.
    pub device: String,
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
        if design.format == 2 {
            design.upgrade_v2().with_context(|| format!("{}", path.display()))?;
        }
        let reexpand = design.format == 3;
        if reexpand {
            design.upgrade_v3().with_context(|| format!("{}", path.display()))?;
        }
        if design.format == 4 {
            design.upgrade_v4();
        }
        design.expand_methods_as(reexpand).with_context(|| format!("{}", path.display()))?;
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

    /// Format 2 → 3: the same runs when no arm grows per budget (the paper protocol, or no
    /// growing arm); a fair study whose growing arms branched from one plan is another design.
    fn upgrade_v2(&mut self) -> anyhow::Result<()> {
        let grows_per_budget =
            self.protocol == Protocol::Fair && self.arms.iter().any(|a| a.schedule.incremental().is_some());
        if grows_per_budget {
            bail!("a format-2 fair study: its growing arms branched from the budget-1 plan, which this build no longer trains or reports; read it with commit fb987a7 or train the study again");
        }
        self.format = 3;
        Ok(())
    }

    /// Format 3 → 4: the same runs when no arm grows and nothing is swept (the paper protocol's
    /// runs took no knob format 4 changed); a fair study with a growing arm or a sweep trained
    /// methods and sweep runs that format 4 defines otherwise.
    fn upgrade_v3(&mut self) -> anyhow::Result<()> {
        let grows = self.arms.iter().any(|a| a.schedule.incremental().is_some());
        if self.protocol == Protocol::Fair && (grows || self.sweep.is_some()) {
            bail!("a format-3 fair study: its growing arms and sweep ran the methods of commit ac4f779 (stages as shares of the base steps, G_stack at 1/30 of them, one sweep seed annealed by branches); read it with that commit or train the study again");
        }
        self.format = 4;
        Ok(())
    }

    /// Format 4 → 5: the same design (format 5 only adds a design file's `[config]` tables, which
    /// become overrides when read).
    fn upgrade_v4(&mut self) {
        self.format = 5;
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
            bail!(
                "format = {}: this build reads design format {STUDY_FORMAT} (and 4: `overrides` without `[config]`)",
                self.format
            );
        }
        if self.seeds.is_empty() {
            bail!("seeds = []: give at least one seed, e.g. seeds = [1, 2, 3]");
        }
        let bad_budgets = |b: &[f64]| b.is_empty() || b.iter().any(|b| !(b.is_finite() && *b > 0.0));
        if bad_budgets(&self.budgets) {
            bail!("budgets = {:?}: positive multiples of the baseline's budget, e.g. [0.5, 1.0, 2.0]", self.budgets);
        }
        if let Some(arm) = self.arms.iter().find(|a| a.budgets.as_deref().is_some_and(bad_budgets)) {
            bail!(
                "arm {}: budgets = {:?}: positive multiples of the baseline's budget, e.g. [1.0]",
                arm.name,
                arm.budgets
            );
        }
        if let Some(arm) = self
            .arms
            .iter()
            .find(|a| a.seeds.as_ref().is_some_and(|s| s.is_empty() || s.iter().any(|seed| !self.seeds.contains(seed))))
        {
            bail!("arm {}: seeds = {:?}: some of the study's seeds {:?}", arm.name, arm.seeds, self.seeds);
        }
        if !self.budgets_of(self.baseline().context("arms: the study has none")?).contains(&1.0) {
            bail!("the baseline's budgets lack 1.0: every arm is compared with the baseline annealed at budget 1");
        }
        if let Some(sweep) = &self.sweep {
            let doubling = sweep.rates.windows(2).all(|w| (w[1] / w[0] - 2.0).abs() < 1e-9);
            if sweep.rates.len() < 2 || !doubling || sweep.rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
                bail!("sweep.rates = {:?}: at least two increasing rates, each twice the one before, e.g. [0.001, 0.002, 0.004, 0.008]", sweep.rates);
            }
            if sweep.seeds.is_empty() || sweep.seeds.iter().any(|s| self.seeds.contains(s)) {
                bail!("sweep.seeds = {:?}: at least one, none of the study's seeds {:?} (the rate is not chosen on the runs it is judged by)", sweep.seeds, self.seeds);
            }
            if let Some(bad) = sweep.checks.iter().find(|m| !(m.is_finite() && **m > 0.0 && **m != 1.0)) {
                bail!("sweep.checks: {bad} is not a multiple other than 1 of the baseline's rate, e.g. [0.5, 2.0]");
            }
            if !sweep.checks.is_empty() && sweep.arms != SweepArms::Baseline {
                bail!("sweep.checks with arms = \"each\": checks try the baseline's rate on the other arms; set arms = \"baseline\" or drop the checks");
            }
            if !(sweep.budget.is_finite() && sweep.budget > 0.0) {
                bail!("sweep.budget = {}: a positive multiple of the baseline's budget, e.g. 1.0", sweep.budget);
            }
            // An ablation is no arm of the sweep: it would wait for a rate that is never chosen.
            if let Some(ablation) = self.ablations.first() {
                bail!("ablation {}: a study with a [sweep] has no rate for ablations yet; drop the [[ablations]] or the [sweep]", ablation.name);
            }
        }
        if let Some(effect) = self.target_effect.filter(|e| !(e.is_finite() && *e > 0.0 && *e < 1.0)) {
            bail!("target_effect = {effect}: a fraction of the compute in (0, 1), e.g. 0.1 for 10%");
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
        self.planned_runs()?;
        Ok(())
    }

    /// The budgets `arm` is annealed at: its own, else the study's.
    pub fn budgets_of(&self, arm: &Arm) -> Vec<f64> {
        arm.budgets.clone().unwrap_or_else(|| self.budgets.clone())
    }

    /// Arms named by a method (`schedule = { kind = "incremental", method = "midas" }`) take
    /// that method's knobs for the arm's model.
    fn expand_methods(&mut self) -> anyhow::Result<()> {
        self.expand_methods_as(false)
    }

    /// [`Self::expand_methods`]; `replace`: a method's knobs as written are an older expansion of
    /// it (a design upgraded from an older format), replaced by today's.
    fn expand_methods_as(&mut self, replace: bool) -> anyhow::Result<()> {
        let configs: Vec<TrainConfig> = self
            .arms
            .iter()
            .chain(&self.ablations)
            .map(|arm| self.arm_config(arm).with_context(|| format!("arm {}", arm.name)))
            .collect::<anyhow::Result<_>>()?;
        for (arm, config) in self.arms.iter_mut().chain(self.ablations.iter_mut()).zip(configs) {
            let ScheduleSpec::Incremental(spec) = &arm.schedule else { continue };
            let Some(method) = spec.method else { continue };
            let expanded = IncrementalSpec::of_method(method, config.model.blocks(), spec.until)
                .with_context(|| format!("arm {}", arm.name))?;
            let bare = IncrementalSpec { method: Some(method), until: spec.until, ..IncrementalSpec::default() };
            if *spec != expanded && *spec != bare && !replace {
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

    /// The configuration of `arm`'s runs before seeds, rates and budgets: the preset, the
    /// study's overrides, then the arm's.
    pub fn arm_config(&self, arm: &Arm) -> anyhow::Result<TrainConfig> {
        let mut config = TrainConfig::preset(&self.preset)?;
        for assignment in self.overrides.iter().chain(&arm.overrides) {
            config.set(assignment)?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design(name: &str) -> StudyDesign {
        StudyFile::load(name).unwrap().design
    }

    #[test]
    fn every_arm_is_its_method_at_every_budget_at_one_swept_rate() {
        let design = design("cpu");
        assert_eq!(design.seeds, (1..=6).collect::<Vec<u64>>());
        assert_eq!(design.budgets, vec![0.5, 1.0, 2.0]);
        let runs = design.runs();
        let sweep = design.sweep.as_ref().unwrap();
        assert_eq!((sweep.arms, sweep.seeds.len(), sweep.budget), (SweepArms::Baseline, 3, 0.5));
        let arms = design.arms.len();
        // The baseline's sweep (5 rates x 3 seeds), then every other arm at x1, x0.5 and x2 of its
        // rate on the same seeds, then per seed: a run per budget for each growing arm (one-layer
        // at equal iterations at budget 1 only), one run with branches for each full-model arm.
        let sweep_runs = sweep.rates.len() * 3 + (arms - 1) * 3 * 3;
        let growing = design.arms.iter().filter(|a| a.schedule.incremental().is_some()).count();
        assert_eq!(runs.len(), sweep_runs + 6 * ((growing - 1) * 3 + 1 + (arms - growing)));
        assert!(runs[..sweep_runs].iter().all(StudyRun::is_sweep));
        assert!(runs[sweep_runs..].iter().all(|r| r.rate == RunRate::Chosen));
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        for name in ["baseline-lr0.032-s102", "midas-x0.5-s101", "midas-x1-s103", "one-layer-b2-s6", "depth1-s3"] {
            assert!(names.contains(&name), "{name}: {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("midas-lr")), "only the baseline sweeps");

        // Every arm trains at the baseline's rate, a check at its multiple of it.
        let chosen: Rates = design.arms.iter().map(|a| (a.name.clone(), 0.016)).collect();
        let at = |name: &str, rates: &Rates| {
            design.run_config(runs.iter().find(|r| r.name == name).unwrap(), rates).unwrap()
        };
        let check = at("midas-x2-s101", &chosen).0;
        assert_eq!((check.lr_max, check.on_nan), (0.032, crate::config::OnNan::Skip));
        // A growing arm at budget 0.5 runs the schedule planned for 0.5, its growth at 80% of
        // its own run, annealed at its end over the last 20% of its FLOPs.
        let (config, schedule) = at("one-layer-b0.5-s2", &chosen);
        assert_eq!((config.seed, config.data_seed, config.steps), (2, Some(2), 300));
        assert_eq!((config.lr_max, config.lr_min), (0.016, 0.0016));
        assert_eq!(config.cooldown_fraction_of, crate::config::CooldownOf::Flops);
        assert!(config.cooldown_budgets.is_empty());
        assert_eq!(schedule.until(), Until::Budget { multiple: 1.0, unit: ComputeUnit::Flops });
        let plan = schedule.plan(&config).unwrap();
        let grown_at = plan.stages[0].phase2_steps as f64 / plan.total_steps() as f64;
        assert!((grown_at - 0.8).abs() < 1e-3, "{grown_at}");
        let baseline = at("baseline-s1", &chosen);
        let budget = schedule_budget(&baseline);
        assert_eq!(plan.budget().flops * 2.0, budget);
        // Bu's own comparison: held to the baseline's iterations at budget 1.
        let (config, schedule) = at("one-layer-iters-b1-s1", &chosen);
        assert_eq!(schedule.plan(&config).unwrap().total_steps(), 600);
        // The baseline: one WSD run to 2x with branches at six budgets below it, log-spaced.
        assert_eq!(baseline.0.cooldown_budgets, vec![0.25, 0.354, 0.5, 0.707, 1.0, 1.414]);
        assert_eq!(baseline.1.until(), Until::Budget { multiple: 2.0, unit: ComputeUnit::Flops });
        // Depth controls are held to the 12-layer budget, with branches at the study's budgets.
        let (depth, schedule) = at("depth1-s1", &chosen);
        assert_eq!(schedule.plan(&depth).unwrap().budget().flops, budget);
        assert_eq!(depth.cooldown_budgets, vec![0.5, 1.0]);
        // A sweep run is planned for the sweep's budget and annealed at its own end.
        let sweep_run = runs.iter().find(|r| r.name == "baseline-lr0.008-s101").unwrap();
        let (config, schedule) = design.run_config(sweep_run, &Rates::new()).unwrap();
        assert_eq!((config.lr_max, config.cooldown_budgets.clone()), (0.008, vec![]));
        assert_eq!(schedule.plan(&config).unwrap().total_steps(), 300);
        assert_eq!(sweep_run.compared(ComputeUnit::Flops), vec![(0.5, "baseline-lr0.008-s101".to_string())]);
        // Until the sweep has chosen, a run is planned at the config's rate.
        let run = runs.iter().find(|r| r.name == "one-layer-b0.5-s2").unwrap();
        let (planned, _) = design.run_config(run, &Rates::new()).unwrap();
        assert_eq!(planned.lr_max, design.arm_config(&run.arm).unwrap().lr_max);
        assert!(design.predicted_flops().unwrap() > 0.0);
    }

    #[test]
    fn the_gpu_designs_run_once_per_arm_and_seed_on_the_baselines_curve() {
        let gpu = StudyFile::load("gpu").unwrap();
        let design = &gpu.design;
        let runs = design.runs();
        // Budget 1 = 2.5B tokens.
        let config = design.arm_config(design.baseline().unwrap()).unwrap();
        assert_eq!(config.steps * config.tokens_per_step as u64, 2_499_805_184);
        let main: Vec<&StudyRun> = runs.iter().filter(|r| !r.is_sweep()).collect();
        // Two seeds: the baseline once (to 2x, seven budgets), every other arm once at budget 1.
        assert_eq!(main.len(), 2 * design.arms.len());
        assert!(main.iter().filter(|r| r.arm.name != "baseline").all(|r| r.budgets == vec![1.0]));
        let r0 = StudyFile::load("gpu-r0").unwrap().design;
        let names: Vec<String> = r0.runs().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["baseline-s1", "depth6-s1", "depth3-s1", "baseline-s2"]);
    }

    fn schedule_budget((config, schedule): &(TrainConfig, ScheduleSpec)) -> f64 {
        schedule.plan(config).unwrap().budget().flops
    }

    #[test]
    fn the_rate_with_the_lowest_mean_annealed_loss_is_chosen() {
        // Means over seeds: 2.0, 1.905, 1.915: the middle rate.
        let results = [(0.002, 2.0), (0.004, 1.9), (0.004, 1.91), (0.008, 1.92), (0.008, 1.91)];
        assert_eq!(choose_rate(&results), Some(0.004));
        // A diverged rate (NaN) is never chosen; ties go to the smaller rate.
        assert_eq!(choose_rate(&[(0.016, f64::NAN), (0.008, 1.95), (0.004, 1.95)]), Some(0.004));
        assert_eq!(choose_rate(&[]), None);
    }

    #[test]
    fn the_paper_protocol_is_the_reference_codes() {
        let design = design("paper");
        let (config, schedule) = design.run_config(&design.runs()[1], &Rates::new()).unwrap();
        assert_eq!(config.lr_schedule, crate::config::LrKind::Constant);
        let plan = schedule.plan(&config).unwrap();
        // Continual training runs another base budget of steps after the stages.
        assert_eq!(plan.total_steps(), plan.incremental_steps + config.steps);
        assert!(config.cooldown_budgets.is_empty());
        let quick = StudyFile::load("quick").unwrap();
        // A two-rate sweep of the baseline, x1 and x2 checks of 3 arms, then baseline and depth6
        // with a branch, the growing arms at budgets 0.5 and 1.
        assert_eq!((quick.design.seeds.len(), quick.design.runs().len()), (1, 2 + 6 + 6));
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
        let cpu = include_str!("../../../studies/cpu.toml");
        let broken = |from: &str, to: &str| {
            assert!(cpu.contains(from), "{from}");
            format!("{:#}", StudyFile::parse(&cpu.replacen(from, to, 1)).unwrap_err())
        };
        assert!(broken("format = 5", "format = 9").contains("format = 9"));
        assert!(broken("seeds = [1, 2, 3, 4, 5, 6]", "seeds = []").contains("seeds"));
        assert!(broken("budgets = [0.5, 1.0, 2.0]", "budgets = [0.5, -1.0]").contains("budgets"));
        assert!(broken("budgets = [0.5, 1.0, 2.0]", "budgets = [0.123, 1.0]").contains("whole number of steps"));
        assert!(
            broken("budgets = [0.25, 0.354, 0.5, 0.707, 1.0, 1.414, 2.0]", "budgets = [0.5, 2.0]").contains("lack 1.0")
        );
        assert!(broken("checks = [0.5, 2.0]", "checks = [1.0]").contains("sweep.checks"));
        assert!(broken("arms = \"baseline\"", "arms = \"each\"").contains("sweep.checks"));
        // A G_stack that would grow inside the warmup is refused, naming the knob.
        assert!(broken("warmup_steps = 20", "warmup_steps = 200").contains("allow_growth_in_warmup"));
        assert!(broken("name = \"paper-s4\"", "name = \"paper-s12\"").contains("appears twice"));
        assert!(broken("name = \"paper-s4\"", "name = \"a/b\"").contains("one directory name"));
        assert!(broken("model.heads = 2", "model.heads = 3").contains("model.heads"));
        // The typed table: an unknown key or a wrong type is named, with the valid keys.
        let unknown = broken("model.heads = 2", "model.depth = 2");
        assert!(
            unknown.contains("[config]") && unknown.contains("model.depth") && unknown.contains("d_model"),
            "{unknown}"
        );
        assert!(broken("steps = 600", "steps = \"many\"").contains("steps"));
        assert!(broken("config.model.layers = 3", "config.model.layer = 3").contains("arm depth3: config"));
        assert!(broken("method = \"midas\" }", "stages = 13 }").contains("arm midas"));
        assert!(broken("seeds = [101, 102, 103]", "seeds = [101, 2]").contains("sweep.seeds"));
        assert!(broken("rates = [", "rates = [0.0007, ").contains("sweep.rates"));
        let ablation =
            "\n[[ablations]]\nname = \"keep\"\nlabel = \"kept\"\nschedule = { kind = \"incremental\", stages = 4 }\n";
        let with_ablation = format!("{:#}", StudyFile::parse(&format!("{cpu}{ablation}")).unwrap_err());
        assert!(with_ablation.contains("ablation keep") && with_ablation.contains("[sweep]"), "{with_ablation}");
        assert!(broken("target_effect = 0.10", "target_effect = 1.5").contains("target_effect"));
        assert!(broken("budget_unit = \"flops\"", "budget_unit = \"joules\"").contains("joules"));
        assert!(
            broken("schedule = { kind = \"baseline\" }", "schedule = { kind = \"incremental\" }").contains("first arm")
        );
        let err = format!("{:#}", StudyFile::load("no-such-design").unwrap_err());
        assert!(err.contains("cpu, quick, paper"), "{err}");
    }

    #[test]
    fn an_arm_is_one_method_word_expanded_for_its_model() {
        let cpu = include_str!("../../../studies/cpu.toml");
        let with = |schedule: &str| {
            let text = cpu.replacen("schedule = { kind = \"incremental\", method = \"paper-s4\" }", schedule, 1);
            StudyFile::parse(&text)
        };
        let file = with("schedule = { kind = \"incremental\", method = \"midas\" }").unwrap();
        let arm = file.design.arms.iter().find(|a| a.name == "paper-s4").unwrap();
        let spec = arm.schedule.incremental().unwrap();
        assert_eq!(spec.method, "midas".parse().ok());
        assert_eq!(spec.stages.stage_layers, cost_model::StageLayers::Listed(vec![2, 4, 6, 8, 10, 12]));
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
        let arm = listed.design.arms.iter().find(|a| a.name == "paper-s4").unwrap();
        assert_eq!(arm.schedule.incremental().unwrap().stages.stages(), 2);
    }

    #[test]
    fn the_config_table_is_the_overrides_it_replaced() {
        // Format 4 gave every key as an override; format 5 types them. Both read as the same
        // design, whose runs get the same configs: the table's keys, in the order written, set as
        // `--set` sets them, before the listed overrides.
        let cpu = design("cpu");
        let as_overrides = [
            "model.d_model=16",
            "model.heads=2",
            "micro_batch=32",
            "tokens_per_step=2048",
            "warmup_steps=20",
            "cooldown_fraction_of=flops",
            "val_tokens=65536",
            "steps=600",
            "val_every=150",
            "checkpoint_every=0",
            "hellaswag_every=0",
        ];
        assert_eq!(cpu.overrides, as_overrides);
        assert_eq!(cpu.arms.iter().find(|a| a.name == "depth6").unwrap().overrides, ["model.layers=6"]);
        let text = include_str!("../../../studies/cpu.toml");
        let config = &text[text.find("# Every run's config").unwrap()..text.find("# One peak rate").unwrap()];
        let quoted: Vec<String> = as_overrides.iter().map(|o| format!("  \"{o}\",\n")).collect();
        let old = text
            .replacen("format = 5", "format = 4", 1)
            .replacen(config, "", 1)
            .replacen(
                "seeds = [1, 2, 3, 4, 5, 6]",
                &format!("overrides = [\n{}]\nseeds = [1, 2, 3, 4, 5, 6]", quoted.concat()),
                1,
            )
            .replace("config.model.layers = 6", "overrides = [\"model.layers=6\"]")
            .replace("config.model.layers = 3", "overrides = [\"model.layers=3\"]")
            .replace("config.model.layers = 1", "overrides = [\"model.layers=1\"]");
        assert!(!old.contains("[config]") && !old.contains("config.model"), "{old}");
        assert_eq!(StudyFile::parse(&old).unwrap().design, cpu);
        // Nested tables and dotted keys are the same table; strings that would read as another
        // value stay strings; lists and booleans as JSON; overrides come after.
        let table: ConfigTable = toml::from_str("[model]\nd_model = 32\n[adamw]\nbeta2 = 0.99\n").unwrap();
        assert_eq!(table.assignments("tiny").unwrap(), ["model.d_model=32", "adamw.beta2=0.99"]);
        let table: ConfigTable =
            toml::from_str("data_dir = \"123\"\ncooldown_budgets = [0.5, 1.0]\nbf16 = true\nlr_max = 2.0\n").unwrap();
        let assignments = table.assignments("tiny").unwrap();
        assert_eq!(assignments, ["data_dir=\"123\"", "cooldown_budgets=[0.5,1.0]", "bf16=true", "lr_max=2.0"]);
        let mut config = TrainConfig::preset("tiny").unwrap();
        for a in &assignments {
            config.set(a).unwrap();
        }
        assert_eq!(
            (config.data_dir.to_str(), config.cooldown_budgets, config.lr_max),
            (Some("123"), vec![0.5, 1.0], 2.0)
        );
        let nan: ConfigTable = toml::from_str("lr_max = nan\n").unwrap();
        assert!(nan.assignments("tiny").unwrap_err().to_string().contains("lr_max = NaN"));
    }

    #[test]
    fn an_older_fair_study_whose_arms_grow_is_refused_naming_the_commit_that_reads_it() {
        let mut old = design("cpu");
        old.format = 2;
        old.sweep = None;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STUDY_FILE), serde_json::to_vec_pretty(&old).unwrap()).unwrap();
        let err = format!("{:#}", StudyDesign::read(dir.path()).unwrap_err());
        assert!(err.contains("commit fb987a7") && err.contains("train the study again"), "{err}");
    }

    #[test]
    fn a_format_1_design_with_a_hellaswag_file_reads_as_todays_design() {
        {
            let name = "paper";
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
