//! The run log schema: one [`MetricsLine`] per line of `runs/<run>/metrics.jsonl`.
//!
//! The trainer writes it, the analysis reads it; it lives here, in the crate both depend on, so the
//! two can never disagree. Every line carries the cumulative compute in every unit and where in
//! the schedule the run was, so runs can be aligned without knowing their schedules.
//!
//! ```json
//! {"run":"tiny-baseline","kind":"train","step":10,"tokens":10240,"paper_units":10.0,"flops":3.1e9,
//!  "seconds":1.9,"stage":0,"phase":"baseline","active_layers":12,"trainable_params":615744,
//!  "loss":4.12,"lr":0.002,"grad_norm":0.93,"tokens_per_s":5400.0}
//! ```

use serde::{Deserialize, Serialize};

use crate::Phase;

/// What a line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    /// An optimizer step: `loss, lr, grad_norm, tokens_per_s`.
    Train,
    /// A validation pass: `val_loss`.
    Val,
    /// A HellaSwag evaluation: `acc, acc_norm, n`.
    Hellaswag,
    /// A checkpoint was written: `path`.
    Checkpoint,
}

/// One line of `metrics.jsonl`. `step` counts optimizer steps done (1-based); `tokens`,
/// `paper_units`, `flops` and `seconds` are cumulative up to and including that step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    pub run: String,
    pub kind: LineKind,
    pub step: u64,
    pub tokens: u64,
    pub paper_units: f64,
    pub flops: f64,
    /// Measured wall time of the training steps (evaluation and checkpointing excluded).
    pub seconds: f64,
    /// 0 for a baseline, 1..=S for incremental stages and the continual tail.
    pub stage: u32,
    pub phase: Phase,
    pub active_layers: u32,
    pub trainable_params: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl MetricsLine {
    /// A line of `kind` for `run` in `phase`, counters at zero and every value absent; fill in the
    /// rest with struct update syntax (`MetricsLine { step, loss: Some(l), ..MetricsLine::empty(..) }`).
    pub fn empty(run: &str, kind: LineKind, phase: Phase) -> MetricsLine {
        MetricsLine {
            run: run.to_string(),
            kind,
            step: 0,
            tokens: 0,
            paper_units: 0.0,
            flops: 0.0,
            seconds: 0.0,
            stage: 0,
            phase,
            active_layers: 0,
            trainable_params: 0,
            loss: None,
            lr: None,
            grad_norm: None,
            tokens_per_s: None,
            val_loss: None,
            acc: None,
            acc_norm: None,
            n: None,
            path: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_omits_absent_values() {
        let line = MetricsLine {
            step: 3,
            tokens: 30,
            paper_units: 1.5,
            flops: 2e9,
            seconds: 0.25,
            stage: 1,
            active_layers: 3,
            trainable_params: 100,
            val_loss: Some(2.5),
            ..MetricsLine::empty("r", LineKind::Val, Phase::Phase1)
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.contains(r#""phase":"phase1""#) && text.contains(r#""kind":"val""#));
        assert!(!text.contains("loss\":null"));
        assert_eq!(serde_json::from_str::<MetricsLine>(&text).unwrap(), line);
    }
}
