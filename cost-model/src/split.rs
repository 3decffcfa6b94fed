//! How `L` layers are spread over `S` stages.

/// Layers added in each of `stages` stages, as evenly as possible.
///
/// Stage `s` ends with `round(s·L/S)` active layers (halves up), so when `S` divides `L` every
/// stage adds `L/S`, and otherwise the extra layers are spread out rather than bunched at one end:
/// 12 layers in 8 stages → `2,1,2,1,2,1,2,1`. Every layer is used exactly once; no stage adds zero
/// as long as `stages <= layers`. Callers validate that; here `stages == 0` yields an empty split.
pub fn split_layers(layers: u32, stages: u32) -> Vec<u32> {
    let (l, s) = (u64::from(layers), u64::from(stages));
    // Integer form of round-half-up(i·L/S): floor((2·i·L + S) / (2·S)).
    let active_after = |i: u64| if s == 0 { 0 } else { (2 * i * l + s) / (2 * s) };
    (1..=s).map(|i| (active_after(i) - active_after(i - 1)) as u32).collect()
}

/// Active layers at the end of each of `stages` even stages of `layers` ([`split_layers`] summed).
pub fn even_depths(layers: u32, stages: u32) -> Vec<u32> {
    split_layers(layers, stages)
        .into_iter()
        .scan(0, |active, added| {
            *active += added;
            Some(*active)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_layers_in_eight_stages_alternate_two_and_one() {
        assert_eq!(split_layers(12, 8), vec![2, 1, 2, 1, 2, 1, 2, 1]);
    }

    #[test]
    fn divisors_split_evenly() {
        assert_eq!(split_layers(12, 4), vec![3; 4]);
        assert_eq!(split_layers(12, 12), vec![1; 12]);
        assert_eq!(split_layers(12, 1), vec![12]);
        assert_eq!(split_layers(12, 3), vec![4; 3]);
        assert_eq!(split_layers(12, 5), vec![2, 3, 2, 3, 2]);
    }
}
