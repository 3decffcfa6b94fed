//! Aligning runs on compute: where does an incremental run spend the baseline's budget, what had it
//! learned by then, and when (if ever) does it match the baseline's final validation loss?
//!
//! Everything here is pure: curves in, numbers out. Curves are `(x, y)` points sorted by `x`.

/// Linear interpolation of `y` at `x` over points sorted by `x`; `None` outside their range.
pub fn interpolate(points: &[(f64, f64)], x: f64) -> Option<f64> {
    let i = points.partition_point(|&(px, _)| px < x);
    if i < points.len() && points[i].0 == x {
        return Some(points[i].1);
    }
    if i == 0 || i == points.len() {
        return None;
    }
    let ((x0, y0), (x1, y1)) = (points[i - 1], points[i]);
    Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
}

/// Trailing mean over `window` points (the train loss is noisy step to step).
pub fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= points[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

/// A unit the report aligns runs on: the cost model's compute units (paper units, FLOPs) and measured time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    /// The paper's layer-count model (one baseline step = 1).
    PaperUnits,
    /// Architecture-aware floating point operations.
    Flops,
    /// Measured seconds of training steps.
    Seconds,
}

impl Unit {
    /// Every unit, in the report's order.
    pub const ALL: [Unit; 3] = [Unit::PaperUnits, Unit::Flops, Unit::Seconds];

    /// The metrics column holding the cumulative amount.
    pub fn column(self) -> &'static str {
        match self {
            Unit::PaperUnits => "paper_units",
            Unit::Flops => "flops",
            Unit::Seconds => "seconds",
        }
    }

    /// Its name in prose.
    pub fn label(self) -> &'static str {
        match self {
            Unit::PaperUnits => "paper units",
            Unit::Flops => "FLOPs",
            Unit::Seconds => "measured seconds",
        }
    }
}

/// An incremental run at the baseline's budget in one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct EqualComputePoint {
    pub unit: Unit,
    /// The budget: the baseline's cumulative compute at its last (or chosen) step.
    pub budget: f64,
    /// Fractional step at which the run's cumulative compute reaches the budget; `None` if it
    /// stopped before.
    pub step: Option<f64>,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub acc_norm: Option<f64>,
}

/// The curves of one run the alignment needs (x = step).
#[derive(Debug, Clone, Default)]
pub struct RunCurves {
    /// Cumulative compute by step, per unit: `(step, compute)`.
    pub compute: Vec<(Unit, Vec<(f64, f64)>)>,
    /// Smoothed train loss by step.
    pub train_loss: Vec<(f64, f64)>,
    pub val_loss: Vec<(f64, f64)>,
    pub acc_norm: Vec<(f64, f64)>,
}

impl RunCurves {
    /// Cumulative compute curve of `unit`.
    pub fn compute(&self, unit: Unit) -> &[(f64, f64)] {
        self.compute.iter().find(|(u, _)| *u == unit).map_or(&[], |(_, c)| c)
    }

    /// Cumulative compute in `unit` at (fractional) `step`.
    pub fn compute_at(&self, unit: Unit, step: f64) -> Option<f64> {
        interpolate(self.compute(unit), step)
    }

    /// The (fractional) step at which cumulative compute in `unit` reaches `budget`.
    pub fn step_at_compute(&self, unit: Unit, budget: f64) -> Option<f64> {
        // Compute only grows with steps, so the inverse curve is sorted too.
        let inverse: Vec<(f64, f64)> = self.compute(unit).iter().map(|&(s, c)| (c, s)).collect();
        // Before the first logged step, compute grows linearly from (0, 0).
        let mut with_origin = vec![(0.0, 0.0)];
        with_origin.extend(inverse);
        interpolate(&with_origin, budget)
    }
}

/// Where `run` stands when it has spent `budget` in `unit`.
pub fn at_budget(run: &RunCurves, unit: Unit, budget: f64) -> EqualComputePoint {
    let step = run.step_at_compute(unit, budget);
    let at = |curve: &[(f64, f64)]| step.and_then(|s| interpolate(curve, s));
    EqualComputePoint {
        unit,
        budget,
        step,
        train_loss: at(&run.train_loss),
        val_loss: at(&run.val_loss),
        acc_norm: at(&run.acc_norm),
    }
}

/// When a run first matches a target validation loss.
#[derive(Debug, Clone, PartialEq)]
pub struct CatchUp {
    pub target_val_loss: f64,
    /// Fractional step of the first crossing (linear between validation points); `None` if never.
    pub step: Option<f64>,
    /// Compute spent by then as a multiple of the baseline's budget, per unit.
    pub multiples: Vec<(Unit, Option<f64>)>,
}

/// The first (fractional) step at which `val_loss` reaches `target` or below.
pub fn first_reach(val_loss: &[(f64, f64)], target: f64) -> Option<f64> {
    let i = val_loss.iter().position(|&(_, v)| v <= target)?;
    if i == 0 {
        return Some(val_loss[0].0);
    }
    let ((s0, v0), (s1, v1)) = (val_loss[i - 1], val_loss[i]);
    Some(s0 + (s1 - s0) * (v0 - target) / (v0 - v1))
}

/// When `run` first matches `target` and what it cost relative to `budgets` (unit, budget).
pub fn catch_up(run: &RunCurves, target: f64, budgets: &[(Unit, f64)]) -> CatchUp {
    let step = first_reach(&run.val_loss, target);
    let multiples = budgets
        .iter()
        .map(|&(unit, budget)| (unit, step.and_then(|s| run.compute_at(unit, s)).map(|c| c / budget)))
        .collect();
    CatchUp { target_val_loss: target, step, multiples }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn interpolates_between_points_and_refuses_outside() {
        let pts = [(0.0, 10.0), (10.0, 0.0), (20.0, 5.0)];
        assert_eq!(interpolate(&pts, 5.0), Some(5.0));
        assert_eq!(interpolate(&pts, 15.0), Some(2.5));
        assert_eq!(interpolate(&pts, 20.0), Some(5.0));
        assert_eq!(interpolate(&pts, 25.0), None);
        assert_eq!(interpolate(&pts, -1.0), None);
    }

    /// A hand-written incremental run: 10 cheap steps (0.5 units each), then full steps (1 unit).
    fn cheap_then_full() -> RunCurves {
        let compute: Vec<(f64, f64)> =
            (1..=30).map(|s| (s as f64, if s <= 10 { 0.5 * s as f64 } else { 5.0 + (s - 10) as f64 })).collect();
        RunCurves {
            compute: vec![(Unit::PaperUnits, compute)],
            train_loss: (1..=30).map(|s| (s as f64, 10.0 - 0.2 * s as f64)).collect(),
            val_loss: vec![(10.0, 6.0), (20.0, 4.0), (30.0, 3.0)],
            acc_norm: vec![(10.0, 0.25), (20.0, 0.35)],
        }
    }

    #[test]
    fn equal_compute_point_lands_where_the_budget_is_spent() {
        // A 20-step baseline spends 20 units; the run spends them at step 25 (5 + 15).
        let p = at_budget(&cheap_then_full(), Unit::PaperUnits, 20.0);
        assert_eq!(p.step, Some(25.0));
        assert_relative_eq!(p.train_loss.unwrap(), 5.0);
        assert_relative_eq!(p.val_loss.unwrap(), 3.5);
        assert_eq!(p.acc_norm, None, "no HellaSwag point after step 20");
        // Budgets inside the cheap stretch: 2.25 units at step 4.5.
        assert_eq!(at_budget(&cheap_then_full(), Unit::PaperUnits, 2.25).step, Some(4.5));
        // A budget beyond the run's end is not reached.
        assert_eq!(at_budget(&cheap_then_full(), Unit::PaperUnits, 99.0).step, None);
    }

    #[test]
    fn catch_up_finds_the_first_crossing_and_its_cost() {
        // Baseline final val loss 3.5 is first reached halfway between steps 20 and 30: step 25,
        // where the run has spent 20 units = 1.0 × a 20-unit budget.
        let c = catch_up(&cheap_then_full(), 3.5, &[(Unit::PaperUnits, 20.0)]);
        assert_eq!(c.step, Some(25.0));
        assert_eq!(c.multiples, vec![(Unit::PaperUnits, Some(1.0))]);
        assert_eq!(catch_up(&cheap_then_full(), 1.0, &[]).step, None);
    }

    #[test]
    fn smoothing_is_a_trailing_mean() {
        let s = smooth(&[(1.0, 4.0), (2.0, 2.0), (3.0, 0.0), (4.0, 6.0)], 2);
        assert_eq!(s, vec![(1.0, 4.0), (2.0, 3.0), (3.0, 1.0), (4.0, 3.0)]);
    }
}
