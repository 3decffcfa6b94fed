//! Learning-rate schedules: the learning rate of every step of a run, as a pure function.
//!
//! - constant (the reference code),
//! - warmup + cosine to `lr_min` at the run's last step (build-nanogpt),
//! - warmup-stable-decay (WSD; Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training
//!   Beyond Fixed Training Durations"): warmup, `lr_max` held, then the last `decay_steps` steps
//!   decay to `lr_min` at `last_step`, from the rate warmup had reached (`lr_max` unless the decay
//!   starts before warmup ends: the rate never jumps up). Because the rate is flat until the decay, a run can be
//!   branched at any step and cooled down there: the cooldown branches that compare annealed
//!   models at equal compute.
//!
//! Optionally a re-warmup multiplies the rate by a linear ramp after the optimizer is reset (it
//! follows the reset: a run that keeps its optimizer has none).

use serde::{Deserialize, Serialize};

use crate::round_half_up;

/// How a WSD decay falls from `lr_max` to `lr_min` as its progress `t` goes from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum DecayShape {
    /// `1 − √t` (Hägele et al.'s best): falls fast first, then flattens into `lr_min`.
    #[default]
    #[serde(rename = "1-sqrt")]
    #[value(name = "1-sqrt")]
    OneMinusSqrt,
    /// `1 − t`.
    #[serde(rename = "linear")]
    #[value(name = "linear")]
    Linear,
}

/// The rate as a function of the step, before any re-warmup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrCurve {
    /// The same rate every step (the reference code: 6e-4).
    Constant { lr: f64 },
    /// Linear warmup from `lr_max / warmup_steps` to `lr_max`, then cosine decay to `lr_min` at
    /// `decay_steps`, then `lr_min` (build-nanogpt's `get_lr`).
    WarmupCosine { lr_max: f64, lr_min: f64, warmup_steps: u64, decay_steps: u64 },
    /// Linear warmup as above, `lr_max` held, then `decay_steps` steps of `shape` ending at
    /// `last_step` with exactly `lr_min`. A decay that starts before warmup ends starts from the
    /// rate warmup reached (at least `lr_min`), never from `lr_max`.
    WarmupStableDecay {
        lr_max: f64,
        lr_min: f64,
        warmup_steps: u64,
        decay_steps: u64,
        last_step: u64,
        shape: DecayShape,
    },
}

/// Steps of the decay of a WSD run that ends at `last_step`: `fraction` of them, rounded (halves
/// up), at most all of them. A cooldown branch starts its decay this many steps before its end.
pub fn decay_steps(fraction: f64, last_step: u64) -> u64 {
    round_half_up(fraction * last_step as f64).min(last_step)
}

impl LrCurve {
    /// WSD over a run of `last_step` steps whose decay is `fraction` of them (see [`decay_steps`]).
    pub fn wsd(lr_max: f64, lr_min: f64, warmup_steps: u64, fraction: f64, last_step: u64, shape: DecayShape) -> Self {
        let decay_steps = decay_steps(fraction, last_step);
        LrCurve::WarmupStableDecay { lr_max, lr_min, warmup_steps, decay_steps, last_step, shape }
    }

    /// Learning rate of step `step` (1-based: the first optimizer step is 1).
    pub fn lr(&self, step: u64) -> f64 {
        let it = step.saturating_sub(1); // build-nanogpt counts from 0
        let warmup = |lr_max: f64, warmup_steps: u64| lr_max * (it + 1) as f64 / warmup_steps as f64;
        match *self {
            LrCurve::Constant { lr } => lr,
            LrCurve::WarmupCosine { lr_max, lr_min, warmup_steps, decay_steps } => {
                if it < warmup_steps {
                    return warmup(lr_max, warmup_steps);
                }
                if it >= decay_steps {
                    return lr_min;
                }
                let ratio = (it - warmup_steps) as f64 / (decay_steps - warmup_steps).max(1) as f64;
                let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
                lr_min + coeff * (lr_max - lr_min)
            }
            LrCurve::WarmupStableDecay { lr_max, lr_min, warmup_steps, decay_steps, last_step, shape } => {
                let stable_end = last_step - decay_steps;
                if step > stable_end {
                    // Progress through the decay: 1/decay_steps at its first step, 1 at `last_step`.
                    let t = ((step - stable_end) as f64 / decay_steps as f64).min(1.0);
                    let left = match shape {
                        DecayShape::OneMinusSqrt => 1.0 - t.sqrt(),
                        DecayShape::Linear => 1.0 - t,
                    };
                    // From the rate of the last step before the decay (the first warmup rate
                    // when the decay is the whole run).
                    let reached = lr_max * (stable_end.max(1) as f64 / warmup_steps.max(1) as f64).min(1.0);
                    let top = reached.max(lr_min);
                    return lr_min + (top - lr_min) * left;
                }
                if it < warmup_steps {
                    return warmup(lr_max, warmup_steps);
                }
                lr_max
            }
        }
    }
}

/// A linear ramp of the rate over `steps` steps from `first_step` (after an optimizer reset):
/// the rate is multiplied by `(step − first_step + 1) / steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewarmup {
    pub first_step: u64,
    pub steps: u64,
}

/// How the learning rate moves over the steps of a run: its curve, times a ramp after each
/// optimizer reset or growth that asks for one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub curve: LrCurve,
    pub rewarmups: Vec<Rewarmup>,
}

impl LrSchedule {
    /// Learning rate of step `step` (1-based).
    pub fn lr(&self, step: u64) -> f64 {
        let ramp = |r: &Rewarmup| match *r {
            Rewarmup { first_step, steps } if steps > 0 && step >= first_step && step < first_step + steps => {
                (step - first_step + 1) as f64 / steps as f64
            }
            _ => 1.0,
        };
        self.curve.lr(step) * self.rewarmups.iter().map(ramp).product::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let s = LrCurve::WarmupCosine { lr_max: 6e-4, lr_min: 6e-5, warmup_steps: 10, decay_steps: 110 };
        assert_relative_eq!(s.lr(1), 6e-5);
        assert_relative_eq!(s.lr(10), 6e-4);
        assert_relative_eq!(s.lr(11), 6e-4);
        assert_relative_eq!(s.lr(61), 6e-5 + 0.5 * (6e-4 - 6e-5), epsilon = 1e-12);
        assert_relative_eq!(s.lr(111), 6e-5);
        assert_relative_eq!(s.lr(5000), 6e-5);
        assert_relative_eq!(LrCurve::Constant { lr: 6e-4 }.lr(77), 6e-4);
    }

    #[test]
    fn a_decay_that_starts_during_warmup_falls_from_the_rate_reached() {
        // 10 steps, warmup 50, 20% decay: warmup reaches 8/50 of lr_max at step 8, and the decay
        // falls from there to lr_min, never up to lr_max (it used to: 3.2e-4 → 7.3e-4).
        let s = LrCurve::wsd(2e-3, 2e-4, 50, 0.2, 10, DecayShape::OneMinusSqrt);
        let rates: Vec<f64> = (1..=10).map(|step| s.lr(step)).collect();
        assert_relative_eq!(rates[7], 2e-3 * 8.0 / 50.0, epsilon = 1e-15);
        assert!(rates.windows(2).take(7).all(|w| w[1] > w[0]), "warmup rises: {rates:?}");
        assert!(rates[8] < rates[7] && rates[9] < rates[8], "the decay falls: {rates:?}");
        assert_relative_eq!(rates[9], 2e-4, epsilon = 1e-15);
        // Past warmup nothing changes: the decay starts from lr_max.
        let long = LrCurve::wsd(2e-3, 2e-4, 50, 0.2, 1000, DecayShape::OneMinusSqrt);
        assert_relative_eq!(long.lr(800), 2e-3);
        assert_relative_eq!(long.lr(801), 2e-4 + 1.8e-3 * (1.0 - (1.0f64 / 200.0).sqrt()), epsilon = 1e-15);
        // Warmup still below the floor when the decay starts: it holds lr_min (every WSD run ends there).
        let low = LrCurve::wsd(2e-3, 2e-4, 500, 0.5, 20, DecayShape::Linear);
        assert!((11..=20).all(|step| (low.lr(step) - 2e-4).abs() < 1e-18));
    }

    #[test]
    fn wsd_warms_up_holds_and_decays_to_the_floor_at_the_last_step() {
        // 100 steps, 20% decay: steps 81..=100 decay, step 100 is exactly lr_min.
        let s = LrCurve::wsd(1e-3, 1e-4, 10, 0.2, 100, DecayShape::OneMinusSqrt);
        assert_relative_eq!(s.lr(1), 1e-4);
        assert_relative_eq!(s.lr(10), 1e-3);
        assert_relative_eq!(s.lr(80), 1e-3);
        assert_relative_eq!(s.lr(81), 1e-4 + 9e-4 * (1.0 - (1.0f64 / 20.0).sqrt()));
        assert_relative_eq!(s.lr(85), 1e-4 + 9e-4 * (1.0 - 0.25f64.sqrt()));
        assert_eq!(s.lr(100), 1e-4);
        let linear = LrCurve::wsd(1e-3, 1e-4, 10, 0.2, 100, DecayShape::Linear);
        assert_relative_eq!(linear.lr(90), 1e-4 + 9e-4 * 0.5);
        assert_eq!(linear.lr(100), 1e-4);
        // Monotone through the decay.
        assert!((81..100).all(|t| s.lr(t + 1) < s.lr(t)));
    }

    #[test]
    fn a_branch_of_a_wsd_run_follows_it_until_its_own_decay() {
        // The run decays over its last 200 of 1000 steps; a branch ending at 500 decays over its
        // last 100 (steps 401..=500) and matches the run before that.
        let run = LrCurve::wsd(1e-3, 1e-4, 50, 0.2, 1000, DecayShape::OneMinusSqrt);
        let branch = LrCurve::wsd(1e-3, 1e-4, 50, 0.2, 500, DecayShape::OneMinusSqrt);
        assert!((1..=400).all(|s| run.lr(s) == branch.lr(s)));
        assert!(branch.lr(401) < run.lr(401));
        assert_eq!(branch.lr(500), 1e-4);
    }

    #[test]
    fn rewarmup_ramps_linearly_after_the_reset() {
        let s =
            LrSchedule { curve: LrCurve::Constant { lr: 1.0 }, rewarmups: vec![Rewarmup { first_step: 11, steps: 4 }] };
        let lrs: Vec<f64> = (9..=16).map(|t| s.lr(t)).collect();
        assert_eq!(lrs, [1.0, 1.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }
}
