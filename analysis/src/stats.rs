//! Statistics of comparisons over seeds: Student-t intervals of means and of paired differences,
//! the compute multiple at which an arm matches a target loss, and the verdict that follows from
//! it, worded from the numbers. Every function here is tested on data whose answer is known.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// A mean over `n` values with its two-sided 95% Student-t interval (`None` below 2 values: one
/// seed has no spread to measure).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub n: usize,
    pub mean: f64,
    pub ci: Option<(f64, f64)>,
}

impl Interval {
    /// True when the whole interval lies below `x`.
    pub fn below(&self, x: f64) -> bool {
        self.ci.is_some_and(|(_, high)| high < x)
    }

    /// True when the whole interval lies above `x`.
    pub fn above(&self, x: f64) -> bool {
        self.ci.is_some_and(|(low, _)| low > x)
    }
}

/// The mean of `values` and its 95% t-interval: `mean ± t(0.975, n−1) · s / √n`, `s` the sample
/// standard deviation. `None` for no values.
pub fn t_interval(values: &[f64]) -> Option<Interval> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Some(Interval { n, mean, ci: None });
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("n - 1 >= 1 degrees of freedom").inverse_cdf(0.975);
    let half = t * variance.sqrt() / (n as f64).sqrt();
    Some(Interval { n, mean, ci: Some((mean - half, mean + half)) })
}

/// The geometric mean of positive `values` and its 95% t-interval, both taken on the log scale
/// (a compute multiple of 0.5 and one of 2 are equally far from 1). `None` for no values.
pub fn log_t_interval(values: &[f64]) -> Option<Interval> {
    let logs: Vec<f64> = values.iter().map(|v| v.ln()).collect();
    t_interval(&logs).map(|i| Interval { n: i.n, mean: i.mean.exp(), ci: i.ci.map(|(l, h)| (l.exp(), h.exp())) })
}

/// The sample standard deviation of `values` (`None` below 2 values).
pub fn sample_sd(values: &[f64]) -> Option<f64> {
    let n = values.len();
    (n >= 2).then(|| {
        let mean = values.iter().sum::<f64>() / n as f64;
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    })
}

/// The two-sided p-value of a one-sample t-test that the mean of `values` is 0 (`None` below 2
/// values; 0 when every value is the same non-zero number, 1 when they are all 0).
pub fn t_test_p(values: &[f64]) -> Option<f64> {
    let n = values.len();
    let sd = sample_sd(values)?;
    let mean = values.iter().sum::<f64>() / n as f64;
    if sd == 0.0 {
        return Some(if mean == 0.0 { 1.0 } else { 0.0 });
    }
    let t = mean / (sd / (n as f64).sqrt());
    let dist = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("n - 1 >= 1 degrees of freedom");
    Some((2.0 * (1.0 - dist.cdf(t.abs()))).min(1.0))
}

/// Holm's step-down adjustment of `p` values (Holm 1979), in their order: the k-th smallest is
/// multiplied by (m − k + 1), then made non-decreasing in that order and capped at 1. A family
/// rejected at adjusted p < α keeps its family-wise error rate at α.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// The smallest true mean a two-sided 5% one-sample (or paired) t-test over `n` values of
/// standard deviation `sd` detects with 80% power: `(t(0.975, n−1) + t(0.80, n−1)) · sd / √n`
/// (the usual approximation). `None` below 2 values.
pub fn minimum_detectable(sd: f64, n: usize) -> Option<f64> {
    (n >= 2).then(|| {
        let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("n - 1 >= 1 degrees of freedom");
        (t.inverse_cdf(0.975) + t.inverse_cdf(0.80)) * sd / (n as f64).sqrt()
    })
}

/// Seeds needed for [`minimum_detectable`] to reach `effect` at standard deviation `sd` (at most
/// 1,000; `None` beyond).
pub fn seeds_needed(sd: f64, effect: f64) -> Option<usize> {
    (2..=1000).find(|&n| minimum_detectable(sd, n).is_some_and(|m| m <= effect))
}

/// `a − b` for every seed both hold (values are `(seed, value)`), in seed order.
pub fn paired_differences(a: &[(u64, f64)], b: &[(u64, f64)]) -> Vec<f64> {
    let mut out: Vec<(u64, f64)> =
        a.iter().filter_map(|&(seed, x)| b.iter().find(|(s, _)| *s == seed).map(|&(_, y)| (seed, x - y))).collect();
    out.sort_by_key(|(seed, _)| *seed);
    out.into_iter().map(|(_, d)| d).collect()
}

/// Where along a loss-vs-budget curve a target loss is reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reach {
    /// At this multiple of the budget (interpolated linearly in log budget between the two
    /// budgets around the crossing).
    At(f64),
    /// Already at the smallest budget compared: at this multiple or less.
    AtMost(f64),
    /// Not by the largest budget compared: more than this multiple.
    MoreThan(f64),
}

impl Reach {
    /// The multiple this reach counts as in a mean: the bound itself when censored.
    pub fn multiple(&self) -> f64 {
        match *self {
            Reach::At(m) | Reach::AtMost(m) | Reach::MoreThan(m) => m,
        }
    }
}

/// The budget multiple at which `curve` (`(budget, loss)`, any order) first reaches `target` or
/// below.
pub fn reach(curve: &[(f64, f64)], target: f64) -> Option<Reach> {
    let mut points = curve.to_vec();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first = *points.first()?;
    if first.1 <= target {
        return Some(Reach::AtMost(first.0));
    }
    for pair in points.windows(2) {
        let ((b0, l0), (b1, l1)) = (pair[0], pair[1]);
        if l1 <= target {
            let t = (l0 - target) / (l0 - l1);
            return Some(Reach::At((b0.ln() + t * (b1.ln() - b0.ln())).exp()));
        }
    }
    Some(Reach::MoreThan(points.last()?.0))
}

/// What an arm's compute to reach the baseline's loss says, over the seeds.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The multiple's whole interval (geometric, over seeds) lies below 1.
    Saves { multiple: Interval },
    /// The whole interval lies above 1.
    Costs { multiple: Interval },
    /// The interval holds 1 (or there is only one seed).
    NoDifference { multiple: Interval },
    /// Every seed matched the target already at the smallest budget compared.
    SavesAtLeast { budget: f64 },
    /// Some seeds matched already at the smallest budget compared, the others within the range,
    /// all below 1: every seed saves at least `1 − at_most` (no interval: the censored seeds'
    /// multiples are not known).
    SavesEverySeed { at_most: f64, at_smallest: usize, seeds: usize, budget: f64 },
    /// No seed matched it by the largest budget compared.
    CostsMoreThan { budget: f64 },
    /// Seeds disagree beyond the compared range (some matched, some never did).
    Unresolved { reached: usize, seeds: usize, largest: f64 },
}

impl Verdict {
    /// The verdict from each seed's [`Reach`].
    pub fn from_reaches(reaches: &[Reach]) -> Verdict {
        let seeds = reaches.len();
        if let Some(&Reach::MoreThan(largest)) = reaches.iter().find(|r| matches!(r, Reach::MoreThan(_))) {
            if reaches.iter().all(|r| matches!(r, Reach::MoreThan(_))) {
                return Verdict::CostsMoreThan { budget: largest };
            }
            return Verdict::Unresolved {
                reached: seeds - reaches.iter().filter(|r| matches!(r, Reach::MoreThan(_))).count(),
                seeds,
                largest,
            };
        }
        let values: Vec<f64> = reaches.iter().map(Reach::multiple).collect();
        if let Some(&Reach::AtMost(smallest)) = reaches.iter().find(|r| matches!(r, Reach::AtMost(_))) {
            let at_smallest = reaches.iter().filter(|r| matches!(r, Reach::AtMost(_))).count();
            if at_smallest == seeds {
                return Verdict::SavesAtLeast { budget: smallest };
            }
            // Censored seeds have no multiple, only a bound: no interval over them (counting them
            // at the bound would narrow it). Every seed's multiple is at most the largest value.
            let at_most = values.iter().copied().fold(0.0, f64::max);
            return match at_most < 1.0 {
                true => Verdict::SavesEverySeed { at_most, at_smallest, seeds, budget: smallest },
                false => Verdict::Unresolved { reached: seeds, seeds, largest: at_most },
            };
        }
        let multiple = log_t_interval(&values).expect("at least one seed");
        if multiple.below(1.0) {
            Verdict::Saves { multiple }
        } else if multiple.above(1.0) {
            Verdict::Costs { multiple }
        } else {
            Verdict::NoDifference { multiple }
        }
    }

    /// The kind of conclusion, without its numbers: what two replications must agree on.
    pub fn conclusion(&self) -> &'static str {
        match self {
            Verdict::Saves { .. } | Verdict::SavesAtLeast { .. } | Verdict::SavesEverySeed { .. } => "saves",
            Verdict::Costs { .. } | Verdict::CostsMoreThan { .. } => "costs",
            Verdict::NoDifference { .. } => "no difference",
            Verdict::Unresolved { .. } => "undecided",
        }
    }

    /// The interval of the compute multiple over seeds, where there is one; `None` when a seed
    /// lies outside the compared range.
    pub fn multiple(&self) -> Option<&Interval> {
        match self {
            Verdict::Saves { multiple, .. }
            | Verdict::Costs { multiple, .. }
            | Verdict::NoDifference { multiple, .. } => Some(multiple),
            _ => None,
        }
    }

    /// The verdict as a sentence about "compute" (to reach the baseline's loss): a saving is
    /// `1 − multiple`, a speedup `1 / multiple`. An interval that holds 1 says which effects it
    /// rules out.
    pub fn sentence(&self) -> String {
        let pct = |x: f64| format!("{:.0}%", x * 100.0);
        match self {
            Verdict::Saves { multiple } => {
                let (low, high) = multiple.ci.expect("an interval below 1");
                format!(
                    "saves {} compute (95% CI {}–{}), a {:.2}x speedup",
                    pct(1.0 - multiple.mean),
                    pct(1.0 - high),
                    pct(1.0 - low),
                    1.0 / multiple.mean,
                )
            }
            Verdict::Costs { multiple } => {
                let (low, high) = multiple.ci.expect("an interval above 1");
                format!(
                    "costs {} more compute (95% CI {}–{}), a {:.2}x slowdown",
                    pct(multiple.mean - 1.0),
                    pct(low - 1.0),
                    pct(high - 1.0),
                    multiple.mean
                )
            }
            Verdict::NoDifference { multiple } => match multiple.ci {
                Some((low, high)) => format!(
                    "no difference detectable with {} seeds: {:.2}x the baseline's compute (95% CI {:.2}x–{:.2}x), ruling out savings above {} and costs above {}",
                    multiple.n,
                    multiple.mean,
                    low,
                    high,
                    pct(1.0 - low),
                    pct(high - 1.0)
                ),
                None => format!("no spread with one seed: {:.2}x the baseline's compute, not a verdict", multiple.mean),
            },
            Verdict::SavesAtLeast { budget } => format!(
                "saves at least {} compute: every seed already matched the baseline at {budget}x its budget, the smallest compared",
                pct(1.0 - budget)
            ),
            Verdict::SavesEverySeed { at_most, at_smallest, seeds, budget } => format!(
                "saves at least {} compute in every seed ({at_smallest} of {seeds} matched the baseline already at {budget}x, the smallest budget compared, so no interval: {:.2}x is the largest multiple any seed needed)",
                pct(1.0 - at_most),
                at_most
            ),
            // A largest budget of 1x or less bounds nothing beyond "more": say only that.
            Verdict::CostsMoreThan { budget } if *budget <= 1.0 => format!(
                "costs more compute than the baseline: no seed matched the baseline by {budget}x its budget, the largest compared"
            ),
            Verdict::CostsMoreThan { budget } => format!(
                "costs more than {} more compute: no seed matched the baseline by {budget}x its budget, the largest compared",
                pct(budget - 1.0)
            ),
            Verdict::Unresolved { reached, seeds, largest } => format!(
                "undecided: {reached} of {seeds} seeds matched the baseline by {largest:.2}x its budget, the others did not (or matched before the smallest budget while others need more than the baseline)"
            ),
        }
    }
}

impl Verdict {
    /// [`Verdict::sentence`] for a multiple read on the baseline's annealed curve (effective
    /// compute), whose censored seeds lie beyond the baseline's budgets, not the arm's.
    pub fn effective_sentence(&self) -> String {
        let pct = |x: f64| format!("{:.0}%", x * 100.0);
        match self {
            Verdict::SavesAtLeast { budget } => format!(
                "saves at least {} compute: in every seed the arm beat the baseline's loss at its largest annealed budget (so it needs at most {budget:.2}x the baseline's compute)",
                pct(1.0 - budget)
            ),
            Verdict::SavesEverySeed { at_most, at_smallest, seeds, .. } => format!(
                "saves at least {} compute in every seed ({at_smallest} of {seeds} beat the baseline's loss at its largest annealed budget, so no interval: {at_most:.2}x is the largest multiple any seed needed)",
                pct(1.0 - at_most)
            ),
            Verdict::CostsMoreThan { budget } => format!(
                "costs more than {} more compute: in every seed the arm's loss is above the baseline's at its smallest annealed budget (so it needs more than {budget:.2}x)",
                pct(budget - 1.0)
            ),
            Verdict::Unresolved { reached, seeds, .. } => format!(
                "undecided: {reached} of {seeds} seeds lie on the baseline's annealed curve, the others beyond its budgets"
            ),
            verdict => verdict.sentence(),
        }
    }
}

/// The paper's HellaSwag figure is shown only when at least half the examples fit the context.
pub fn hellaswag_covered(scored: u64, skipped: u64) -> bool {
    scored > 0 && scored * 2 >= scored + skipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn t_intervals_match_the_textbook() {
        // 1, 2, 3: mean 2, s = 1, t(0.975, 2) = 4.302653: 2 ± 4.302653 / √3 = 2 ± 2.484138.
        let i = t_interval(&[1.0, 2.0, 3.0]).unwrap();
        assert_relative_eq!(i.mean, 2.0);
        assert_relative_eq!(i.ci.unwrap().0, 2.0 - 2.484138, epsilon = 1e-6);
        assert_relative_eq!(i.ci.unwrap().1, 2.0 + 2.484138, epsilon = 1e-6);
        // Five values: t(0.975, 4) = 2.776445, s = √2.5.
        let five = t_interval(&[10.0, 12.0, 14.0, 11.0, 13.0]).unwrap();
        let (low, high) = five.ci.unwrap();
        assert_relative_eq!((high - low) / 2.0, 2.776445 * 2.5f64.sqrt() / 5f64.sqrt(), epsilon = 1e-6);
        assert_eq!(t_interval(&[4.0]).unwrap().ci, None);
        assert!(t_interval(&[]).is_none());
        assert!(i.below(4.5) && !i.below(4.0) && i.above(-0.5) && !i.above(0.0));
    }

    #[test]
    fn paired_differences_match_seeds() {
        let a = [(2, 5.0), (1, 3.0), (3, 4.0)];
        let b = [(1, 1.0), (3, 1.5), (4, 9.0), (2, 2.0)];
        assert_eq!(paired_differences(&a, &b), vec![2.0, 3.0, 2.5]);
    }

    #[test]
    fn reaching_a_target_interpolates_in_log_budget() {
        let curve = [(2.0, 2.0), (0.5, 3.0), (1.0, 2.5)];
        // 2.25 is halfway from 2.5 (budget 1) to 2.0 (budget 2) in loss: √2 in budget.
        match reach(&curve, 2.25) {
            Some(Reach::At(m)) => assert_relative_eq!(m, 2f64.sqrt(), epsilon = 1e-12),
            other => panic!("{other:?}"),
        }
        match reach(&curve, 2.5) {
            Some(Reach::At(m)) => assert_relative_eq!(m, 1.0),
            other => panic!("{other:?}"),
        }
        assert_eq!(reach(&curve, 3.5), Some(Reach::AtMost(0.5)));
        assert_eq!(reach(&curve, 1.0), Some(Reach::MoreThan(2.0)));
        assert_eq!(reach(&[], 1.0), None);
    }

    #[test]
    fn verdicts_are_worded_from_the_numbers() {
        // Multiples 0.75, 0.8, 0.85: on the log scale entirely below 1.
        let saves = Verdict::from_reaches(&[Reach::At(0.75), Reach::At(0.8), Reach::At(0.85)]);
        let Verdict::Saves { multiple } = &saves else { panic!("{saves:?}") };
        let logs = [0.75f64.ln(), 0.8f64.ln(), 0.85f64.ln()];
        assert_relative_eq!(multiple.mean, (logs.iter().sum::<f64>() / 3.0).exp(), epsilon = 1e-12);
        assert!(saves.sentence().starts_with("saves 20% compute (95% CI "), "{}", saves.sentence());
        // 0.7, 0.8, 0.9: the interval holds 1, and says which effects it rules out.
        let unsure = Verdict::from_reaches(&[Reach::At(0.7), Reach::At(0.8), Reach::At(0.9)]);
        let Verdict::NoDifference { multiple } = &unsure else { panic!("{unsure:?}") };
        let (low, high) = multiple.ci.unwrap();
        let rules_out = format!(
            "ruling out savings above {:.0}% and costs above {:.0}%",
            (1.0 - low) * 100.0,
            (high - 1.0) * 100.0
        );
        assert!(unsure.sentence().ends_with(&rules_out), "{}", unsure.sentence());
        let costs = Verdict::from_reaches(&[Reach::At(1.3), Reach::At(1.4), Reach::At(1.5)]);
        assert!(costs.sentence().starts_with("costs 40% more compute (95% CI "), "{}", costs.sentence());
        assert_eq!(
            Verdict::from_reaches(&[Reach::MoreThan(2.0), Reach::MoreThan(2.0)]).sentence(),
            "costs more than 100% more compute: no seed matched the baseline by 2x its budget, the largest compared"
        );
        assert_eq!(
            Verdict::from_reaches(&[Reach::MoreThan(1.0), Reach::MoreThan(1.0)]).sentence(),
            "costs more compute than the baseline: no seed matched the baseline by 1x its budget, the largest compared"
        );
        assert_eq!(
            Verdict::from_reaches(&[Reach::AtMost(0.25), Reach::AtMost(0.25)]),
            Verdict::SavesAtLeast { budget: 0.25 }
        );
        assert!(matches!(
            Verdict::from_reaches(&[Reach::At(1.2), Reach::MoreThan(2.0)]),
            Verdict::Unresolved { reached: 1, .. }
        ));
        assert!(Verdict::from_reaches(&[Reach::At(0.9)]).sentence().starts_with("no spread with one seed"));
        // Two seeds matched already at the smallest budget: their multiples are unknown, so no
        // interval is made of them (counting them at 0.25 would narrow it), only a bound.
        let bound = Verdict::from_reaches(&[Reach::AtMost(0.25), Reach::AtMost(0.25), Reach::At(0.3)]);
        assert_eq!(bound, Verdict::SavesEverySeed { at_most: 0.3, at_smallest: 2, seeds: 3, budget: 0.25 });
        assert!(
            bound.sentence().starts_with("saves at least 70% compute in every seed (2 of 3"),
            "{}",
            bound.sentence()
        );
        assert!(bound.multiple().is_none());
        assert!(matches!(Verdict::from_reaches(&[Reach::AtMost(0.25), Reach::At(1.3)]), Verdict::Unresolved { .. }));
    }

    #[test]
    fn the_minimum_detectable_effect_and_the_seeds_it_takes() {
        // n = 3: t(0.975, 2) = 4.302653, t(0.80, 2) = 1.060660; sd 0.1 → (5.363313)·0.1/√3.
        assert_relative_eq!(minimum_detectable(0.1, 3).unwrap(), 5.363313 * 0.1 / 3f64.sqrt(), epsilon = 1e-5);
        assert_eq!(minimum_detectable(0.1, 1), None);
        // More seeds detect smaller effects; seeds_needed is the first count that reaches it.
        assert!(minimum_detectable(0.1, 8).unwrap() < minimum_detectable(0.1, 3).unwrap());
        let n = seeds_needed(0.1, 0.1).unwrap();
        assert!(minimum_detectable(0.1, n).unwrap() <= 0.1 && minimum_detectable(0.1, n - 1).unwrap() > 0.1);
        assert_relative_eq!(sample_sd(&[1.0, 2.0, 3.0]).unwrap(), 1.0);
        let i = log_t_interval(&[0.5, 2.0]).unwrap();
        assert_relative_eq!(i.mean, 1.0, epsilon = 1e-12);
        let (low, high) = i.ci.unwrap();
        assert_relative_eq!(low * high, 1.0, epsilon = 1e-9); // symmetric on the log scale
    }

    #[test]
    fn t_tests_and_holm_match_known_answers() {
        // 1, 2, 3: t = 2 / (1 / √3) = 3.4641, two-sided p with 2 degrees of freedom = 0.07418.
        assert_relative_eq!(t_test_p(&[1.0, 2.0, 3.0]).unwrap(), 0.074180, epsilon = 1e-5);
        assert_eq!(t_test_p(&[1.0]), None);
        assert_eq!(t_test_p(&[0.5, 0.5]), Some(0.0));
        // Holm: p = 0.01, 0.04, 0.03, 0.005 (m = 4): sorted 0.005·4 = 0.02, 0.01·3 = 0.03,
        // 0.03·2 = 0.06, 0.04·1 = 0.04 → 0.06 (kept non-decreasing).
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.005]);
        for (got, want) in adjusted.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            assert_relative_eq!(*got, want, epsilon = 1e-12);
        }
        assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn hellaswag_needs_half_the_examples_to_fit() {
        assert!(hellaswag_covered(50, 50));
        assert!(!hellaswag_covered(49, 51));
        assert!(!hellaswag_covered(0, 0));
    }
}
