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
    /// The multiple's whole interval lies below 1. `at_smallest` seeds had matched the baseline
    /// already at the smallest budget compared and count at it, so the saving is a lower bound.
    Saves { multiple: Interval, at_smallest: usize },
    /// The whole interval lies above 1.
    Costs { multiple: Interval, at_smallest: usize },
    /// The interval holds 1 (or there is only one seed).
    NoDifference { multiple: Interval, at_smallest: usize },
    /// Every seed matched the target already at the smallest budget compared.
    SavesAtLeast { budget: f64 },
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
        if let Some(&Reach::AtMost(smallest)) = reaches.iter().find(|r| matches!(r, Reach::AtMost(_))) {
            if reaches.iter().all(|r| matches!(r, Reach::AtMost(_))) {
                return Verdict::SavesAtLeast { budget: smallest };
            }
        }
        // Seeds at or below the smallest budget count at that budget: a conservative (smaller
        // saving) reading.
        let values: Vec<f64> = reaches.iter().map(Reach::multiple).collect();
        let at_smallest = reaches.iter().filter(|r| matches!(r, Reach::AtMost(_))).count();
        let multiple = t_interval(&values).expect("at least one seed");
        if multiple.below(1.0) {
            Verdict::Saves { multiple, at_smallest }
        } else if multiple.above(1.0) {
            Verdict::Costs { multiple, at_smallest }
        } else {
            Verdict::NoDifference { multiple, at_smallest }
        }
    }

    /// The kind of conclusion, without its numbers: what two replications must agree on.
    pub fn conclusion(&self) -> &'static str {
        match self {
            Verdict::Saves { .. } | Verdict::SavesAtLeast { .. } => "saves",
            Verdict::Costs { .. } | Verdict::CostsMoreThan { .. } => "costs",
            Verdict::NoDifference { .. } => "no difference",
            Verdict::Unresolved { .. } => "undecided",
        }
    }

    /// The interval of the compute multiple over seeds, where there is one (seeds matched at
    /// the smallest budget counted there); `None` when every seed lies outside the compared range.
    pub fn multiple(&self) -> Option<&Interval> {
        match self {
            Verdict::Saves { multiple, .. }
            | Verdict::Costs { multiple, .. }
            | Verdict::NoDifference { multiple, .. } => Some(multiple),
            _ => None,
        }
    }

    /// The verdict as a sentence about "compute" (to reach the baseline's loss): a saving is
    /// `1 − multiple`, a speedup `1 / multiple`.
    pub fn sentence(&self) -> String {
        let pct = |x: f64| format!("{:.0}%", x * 100.0);
        // Seeds counted at the smallest budget make the multiple an upper bound: say so.
        let censored = |at_smallest: usize, n: usize| {
            match at_smallest {
            0 => String::new(),
            k => format!(
                "; {k} of {n} seeds had matched it already at the smallest budget compared and count there, so the true multiple is smaller"
            ),
        }
        };
        match self {
            // Seeds counted at the smallest budget give no interval of the saving itself, only a
            // conservative end: the upper end of the multiple's interval with them counted there.
            Verdict::Saves { multiple, at_smallest: k @ 1.. } => {
                let (_, high) = multiple.ci.expect("an interval below 1");
                format!(
                    "saves at least {} compute (the conservative end of the 95% CI{}), a {:.2}x speedup or more",
                    pct(1.0 - high),
                    censored(*k, multiple.n),
                    1.0 / high,
                )
            }
            Verdict::Saves { multiple, .. } => {
                let (low, high) = multiple.ci.expect("an interval below 1");
                format!(
                    "saves {} compute (95% CI {}–{}), a {:.2}x speedup",
                    pct(1.0 - multiple.mean),
                    pct(1.0 - high),
                    pct(1.0 - low),
                    1.0 / multiple.mean,
                )
            }
            Verdict::Costs { multiple, at_smallest } => {
                let (low, high) = multiple.ci.expect("an interval above 1");
                format!(
                    "costs {} more compute (95% CI {}–{}{}), a {:.2}x slowdown",
                    pct(multiple.mean - 1.0),
                    pct(low - 1.0),
                    pct(high - 1.0),
                    censored(*at_smallest, multiple.n),
                    multiple.mean
                )
            }
            Verdict::NoDifference { multiple, at_smallest } => match multiple.ci {
                Some((low, high)) => format!(
                    "no difference detectable with {} seeds (95% CI of the compute needed: {:.2}x–{:.2}x the baseline's{})",
                    multiple.n,
                    low,
                    high,
                    censored(*at_smallest, multiple.n)
                ),
                None => format!("no spread with one seed: {:.2}x the baseline's compute, not a verdict", multiple.mean),
            },
            Verdict::SavesAtLeast { budget } => format!(
                "saves at least {} compute: every seed already matched the baseline at {budget}x its budget, the smallest compared",
                pct(1.0 - budget)
            ),
            Verdict::CostsMoreThan { budget } => format!(
                "costs more than {} more compute: no seed matched the baseline by {budget}x its budget, the largest compared",
                pct(budget - 1.0)
            ),
            Verdict::Unresolved { reached, seeds, largest } => format!(
                "undecided: {reached} of {seeds} seeds matched the baseline by {largest}x its budget, the others did not"
            ),
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
        // Multiples 0.75, 0.8, 0.85: mean 0.8, CI 0.8 ± 0.124: entirely below 1.
        let saves = Verdict::from_reaches(&[Reach::At(0.75), Reach::At(0.8), Reach::At(0.85)]);
        assert!(matches!(saves, Verdict::Saves { .. }));
        assert_eq!(saves.sentence(), "saves 20% compute (95% CI 8%–32%), a 1.25x speedup");
        // 0.7, 0.8, 0.9: the same mean, but the CI (0.55–1.05) holds 1.
        assert!(matches!(
            Verdict::from_reaches(&[Reach::At(0.7), Reach::At(0.8), Reach::At(0.9)]),
            Verdict::NoDifference { .. }
        ));
        let costs = Verdict::from_reaches(&[Reach::At(1.3), Reach::At(1.4), Reach::At(1.5)]);
        assert_eq!(costs.sentence(), "costs 40% more compute (95% CI 15%–65%), a 1.40x slowdown");
        let unsure = Verdict::from_reaches(&[Reach::At(0.8), Reach::At(1.0), Reach::At(1.3)]);
        assert!(unsure.sentence().starts_with("no difference detectable with 3 seeds (95% CI of the compute needed: "));
        assert_eq!(
            Verdict::from_reaches(&[Reach::MoreThan(2.0), Reach::MoreThan(2.0)]).sentence(),
            "costs more than 100% more compute: no seed matched the baseline by 2x its budget, the largest compared"
        );
        assert_eq!(
            Verdict::from_reaches(&[Reach::AtMost(0.5), Reach::AtMost(0.5)]),
            Verdict::SavesAtLeast { budget: 0.5 }
        );
        assert!(matches!(
            Verdict::from_reaches(&[Reach::At(1.2), Reach::MoreThan(2.0)]),
            Verdict::Unresolved { reached: 1, .. }
        ));
        assert!(Verdict::from_reaches(&[Reach::At(0.9)]).sentence().starts_with("no spread with one seed"));
        // Two seeds matched already at 0.5x (the smallest budget) and count there: the saving is
        // a lower bound and the sentence says so.
        let bound = Verdict::from_reaches(&[Reach::AtMost(0.5), Reach::AtMost(0.5), Reach::At(0.515)]);
        assert!(matches!(bound, Verdict::Saves { at_smallest: 2, .. }), "{bound:?}");
        let sentence = bound.sentence();
        let (_, high) = bound.multiple().unwrap().ci.unwrap();
        let expected =
            format!("saves at least {:.0}% compute (the conservative end of the 95% CI; ", (1.0 - high) * 100.0);
        assert!(sentence.starts_with(&expected), "{sentence}");
        assert!(sentence.contains("2 of 3 seeds had matched it already"), "{sentence}");
        assert!(sentence.ends_with("speedup or more"), "{sentence}");
    }

    #[test]
    fn hellaswag_needs_half_the_examples_to_fit() {
        assert!(hellaswag_covered(50, 50));
        assert!(!hellaswag_covered(49, 51));
        assert!(!hellaswag_covered(0, 0));
    }
}
