//! The paper's closed-form equal-compute point (Section III-F), generalised to a backward/forward
//! ratio `r` and a phase-1 share `p`. It assumes `S` divides `L` and fractional phase lengths;
//! [`crate::Plan`] sums the actual per-stage costs instead, and both are shown when they differ.

/// Incremental compute relative to the same number of baseline steps, `C_inc / (T_inc · C_step)`:
/// `[(1 + r(1−p))·(S+1)/(2S) + p·r/S] / (1 + r)`; `(3S+5)/(8S)` for the paper's `r = 1, p = 1/2`.
pub fn incremental_cost_fraction(stages: u32, backward_ratio: f64, phase1_share: f64) -> f64 {
    let s = f64::from(stages);
    let (r, p) = (backward_ratio, phase1_share);
    ((1.0 + r * (1.0 - p)) * (s + 1.0) / (2.0 * s) + p * r / s) / (1.0 + r)
}

/// Steps (incremental + continual) at which the incremental run has used the compute of
/// `base_steps` baseline steps: `T_inc + T − T_inc · fraction`.
pub fn equal_compute_step(
    stages: u32,
    base_steps: f64,
    incremental_steps: f64,
    backward_ratio: f64,
    phase1_share: f64,
) -> f64 {
    let fraction = incremental_cost_fraction(stages, backward_ratio, phase1_share);
    incremental_steps + base_steps - incremental_steps * fraction
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn paper_assumptions_give_three_s_plus_five_over_eight_s() {
        for s in [1u32, 2, 3, 4, 6, 8, 12] {
            let sf = f64::from(s);
            assert_relative_eq!(incremental_cost_fraction(s, 1.0, 0.5), (3.0 * sf + 5.0) / (8.0 * sf));
        }
    }

    #[test]
    fn equal_compute_matches_paper_for_4_8_12_stages() {
        assert_relative_eq!(equal_compute_step(4, 1e4, 1e4, 1.0, 0.5), 14_687.5);
        assert_relative_eq!(equal_compute_step(8, 1e4, 1e4, 1.0, 0.5), 15_468.75);
        assert_relative_eq!(equal_compute_step(12, 1e4, 1e4, 1.0, 0.5), 15_729.166_666_666_666, epsilon = 1e-9);
    }
}
