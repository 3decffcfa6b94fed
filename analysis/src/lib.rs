//! # analysis
//!
//! Reads `runs/*/metrics.jsonl`, aligns runs on steps and on compute, and writes `reports/`.
//! This crate grows issue by issue; today it holds the linear interpolation that alignment on
//! compute rests on.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_between_points_and_refuses_outside() {
        let pts = [(0.0, 10.0), (10.0, 0.0), (20.0, 5.0)];
        assert_eq!(interpolate(&pts, 5.0), Some(5.0));
        assert_eq!(interpolate(&pts, 15.0), Some(2.5));
        assert_eq!(interpolate(&pts, 20.0), Some(5.0));
        assert_eq!(interpolate(&pts, 25.0), None);
        assert_eq!(interpolate(&pts, -1.0), None);
    }
}
