//! The learning-rate sweep, on seeds of its own: every arm at every rate (each arm then trains at
//! its rate with the lowest mean annealed loss over the sweep's seeds), or the baseline alone at
//! every rate, every arm then at the baseline's, with each other arm checked at multiples of it
//! (a rate the arm prefers shows up as a check that beats its ×1 by more than the noise).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{RunRate, StudyDesign, StudyRun};

/// A learning-rate sweep: on seeds of its own, each run planned for `budget` and annealed at its
/// end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// Peak rates (`lr_max`; `lr_min` keeps its ratio to it), increasing, each twice the one before.
    pub rates: Vec<f64>,
    /// Seeds of the sweep runs: not the study's, so the rate is not chosen on the runs it is
    /// judged by. Three or more give each rate's mean a standard error.
    pub seeds: Vec<u64>,
    /// The budget the rates are compared at (annealed), as a multiple of the baseline's.
    pub budget: f64,
    /// Which arms sweep the rates.
    #[serde(default, skip_serializing_if = "SweepArms::is_each")]
    pub arms: SweepArms,
    /// With `arms = "baseline"`: multiples of the baseline's chosen rate each other arm is also
    /// trained at on the sweep's seeds (beside ×1), e.g. `[0.5, 2.0]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<f64>,
}

/// Which arms a sweep tries every rate on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepArms {
    /// Every arm: each arm trains at its own best rate.
    #[default]
    Each,
    /// The baseline alone: every arm trains at the baseline's best rate.
    Baseline,
}

impl SweepArms {
    fn is_each(&self) -> bool {
        *self == SweepArms::Each
    }
}

/// Each arm's chosen peak rate (`lr_max`), by arm name.
pub type Rates = std::collections::BTreeMap<String, f64>;

/// The rate with the lowest mean annealed loss over the `(rate, loss)` results (one per rate and
/// seed); ties go to the smaller rate. `None` without results.
pub fn choose_rate(results: &[(f64, f64)]) -> Option<f64> {
    let mut rates: Vec<f64> = results.iter().map(|r| r.0).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let mean = |rate: f64| {
        let losses: Vec<f64> = results.iter().filter(|r| r.0 == rate).map(|r| r.1).collect();
        losses.iter().sum::<f64>() / losses.len() as f64
    };
    rates
        .into_iter()
        .map(|r| (r, mean(r)))
        .filter(|(_, l)| l.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| r)
}

/// The last validation loss a run logged (its annealed loss when it finished), if any.
pub fn final_val_loss(run: &crate::RunDir) -> Option<f64> {
    let (lines, _) = run.read_metrics().ok()?;
    lines.iter().rev().find(|l| l.kind == crate::LineKind::Val).and_then(|l| l.val_loss)
}

impl StudyDesign {
    /// Each arm's rate chosen by the sweep whose runs are in `runs_dir` (arms whose sweep has not
    /// finished are left out; with no sweep, none). With `arms = "baseline"`, every arm's rate is
    /// the baseline's.
    pub fn chosen_rates(&self, runs_dir: &Path) -> Rates {
        let mut rates = Rates::new();
        let Some(sweep) = &self.sweep else { return rates };
        let sweep_runs: Vec<StudyRun> =
            self.runs().into_iter().filter(|r| matches!(r.rate, RunRate::Swept(_))).collect();
        for arm in &self.arms {
            let mine: Vec<&StudyRun> = sweep_runs.iter().filter(|r| r.arm.name == arm.name).collect();
            let results: Option<Vec<(f64, f64)>> = mine
                .iter()
                .map(|run| {
                    let dir = crate::RunDir::new(runs_dir.join(&run.name));
                    let RunRate::Swept(rate) = run.rate else { return None };
                    dir.is_finished().then(|| final_val_loss(&dir)).flatten().map(|loss| (rate, loss))
                })
                .collect();
            if let Some(rate) = results.filter(|r| !r.is_empty()).and_then(|r| choose_rate(&r)) {
                rates.insert(arm.name.clone(), rate);
            }
        }
        if sweep.arms == SweepArms::Baseline {
            let baseline = self.baseline().and_then(|b| rates.get(&b.name)).copied();
            rates = baseline.map_or_else(Rates::new, |rate| self.arms.iter().map(|a| (a.name.clone(), rate)).collect());
        }
        rates
    }
}
