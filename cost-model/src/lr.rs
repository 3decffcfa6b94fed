//! Learning-rate schedules: the learning rate of every step of a run, as a pure function.

use serde::{Deserialize, Serialize};

/// How the learning rate moves over the steps of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The same rate every step (the reference code: 6e-4).
    Constant { lr: f64 },
    /// Linear warmup from `lr_max / warmup_steps` to `lr_max`, then cosine decay to `lr_min` at
    /// `decay_steps`, then `lr_min` (build-nanogpt's `get_lr`).
    WarmupCosine { lr_max: f64, lr_min: f64, warmup_steps: u64, decay_steps: u64 },
}

impl LrSchedule {
    /// Learning rate of step `step` (1-based: the first optimizer step is 1).
    pub fn lr(&self, step: u64) -> f64 {
        match *self {
            LrSchedule::Constant { lr } => lr,
            LrSchedule::WarmupCosine { lr_max, lr_min, warmup_steps, decay_steps } => {
                let it = step.saturating_sub(1); // build-nanogpt counts from 0
                if it < warmup_steps {
                    return lr_max * (it + 1) as f64 / warmup_steps as f64;
                }
                if it >= decay_steps {
                    return lr_min;
                }
                let ratio = (it - warmup_steps) as f64 / (decay_steps - warmup_steps).max(1) as f64;
                let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
                lr_min + coeff * (lr_max - lr_min)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let s = LrSchedule::WarmupCosine { lr_max: 6e-4, lr_min: 6e-5, warmup_steps: 10, decay_steps: 110 };
        assert_relative_eq!(s.lr(1), 6e-5);
        assert_relative_eq!(s.lr(10), 6e-4);
        assert_relative_eq!(s.lr(11), 6e-4);
        assert_relative_eq!(s.lr(61), 6e-5 + 0.5 * (6e-4 - 6e-5), epsilon = 1e-12);
        assert_relative_eq!(s.lr(111), 6e-5);
        assert_relative_eq!(s.lr(5000), 6e-5);
        assert_relative_eq!(LrSchedule::Constant { lr: 6e-4 }.lr(77), 6e-4);
    }
}
