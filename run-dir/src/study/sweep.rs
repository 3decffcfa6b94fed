//! The learning-rate sweep: every arm at every rate on seeds of its own, and the rate each arm
//! then trains at (the lowest annealed loss).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{RunRate, StudyDesign, StudyRun};

/// A learning-rate sweep: every arm at every rate, on seeds of its own, compared annealed at
/// `budget`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// Peak rates (`lr_max`; `lr_min` keeps its ratio to it), increasing, each twice the one before.
    pub rates: Vec<f64>,
    /// Seeds of the sweep runs: not the study's, so the rate is not chosen on the runs it is
    /// judged by.
    pub seeds: Vec<u64>,
    /// The budget the rates are compared at (annealed), as a multiple of the baseline's.
    pub budget: f64,
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
    /// finished are left out; with no sweep, none).
    pub fn chosen_rates(&self, runs_dir: &Path) -> Rates {
        let mut rates = Rates::new();
        let sweep_runs: Vec<StudyRun> = self.runs().into_iter().filter(StudyRun::is_sweep).collect();
        for arm in &self.arms {
            let mine: Vec<&StudyRun> = sweep_runs.iter().filter(|r| r.arm.name == arm.name).collect();
            let results: Option<Vec<(f64, f64)>> = mine
                .iter()
                .map(|run| {
                    let (budget, name) = run.compared(self.budget_unit).into_iter().next()?;
                    let dir = crate::RunDir::new(runs_dir.join(name));
                    let RunRate::Swept(rate) = run.rate else { return None };
                    (dir.is_finished() && budget > 0.0).then(|| final_val_loss(&dir)).flatten().map(|loss| (rate, loss))
                })
                .collect();
            if let Some(rate) = results.filter(|r| !r.is_empty()).and_then(|r| choose_rate(&r)) {
                rates.insert(arm.name.clone(), rate);
            }
        }
        rates
    }
}
