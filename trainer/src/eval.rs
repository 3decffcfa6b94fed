//! HellaSwag evaluation, as the reference (build-nanogpt's `hellaswag.py`): each of the 4 endings
//! is rendered as `ctx + " " + ending`, and scored by the cross-entropy of the ending's own tokens
//! given everything before them.
//!
//! - `acc_norm`: the ending with the lowest **mean** loss per ending token wins (build-nanogpt's
//!   "acc_norm", normalised by token count; the paper's HellaSwag number);
//! - `acc`: the ending with the lowest **summed** loss wins.
//!
//! Rows longer than the model's context keep their last `context` tokens (the start of the context
//! is dropped first).

use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use crate::data::Tokenizer;
use crate::model::Gpt;

/// One multiple-choice example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub ctx: String,
    pub endings: [String; 4],
    pub label: usize,
}

/// The fields we read from a line of the official `hellaswag_val.jsonl` (others are ignored).
#[derive(Deserialize)]
struct RawExample {
    ctx: Option<String>,
    endings: Option<Vec<String>>,
    label: Option<serde_json::Value>,
}

/// The HellaSwag examples a config asks for (none when it names no file).
pub fn load_configured(config: &run_dir::TrainConfig) -> anyhow::Result<Vec<Example>> {
    match &config.hellaswag {
        Some(path) => load(path, config.hellaswag_limit),
        None => Ok(Vec::new()),
    }
}

/// Read at most `limit` examples; a malformed line is an error naming the file and line.
pub fn load(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Example>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{}: cannot read HellaSwag file", path.display()))?;
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if limit.is_some_and(|l| examples.len() >= l) {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let raw: RawExample = serde_json::from_str(line).with_context(|| format!("{}: not a JSON object", at()))?;
        let ctx = raw.ctx.with_context(|| format!("{}: missing `ctx`", at()))?;
        let endings = raw.endings.with_context(|| format!("{}: missing `endings`", at()))?;
        let endings: [String; 4] = endings
            .try_into()
            .map_err(|e: Vec<String>| anyhow::anyhow!("{}: expected 4 endings, found {}", at(), e.len()))?;
        let label = match raw.label {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let label = match label {
            Some(l) if l < 4 => l as usize,
            _ => bail!("{}: `label` must be 0, 1, 2 or 3", at()),
        };
        examples.push(Example { ctx, endings, label });
    }
    if examples.is_empty() {
        bail!("{}: no HellaSwag examples", path.display());
    }
    Ok(examples)
}

/// Token rows of an example: for each ending, the tokens and the index of the first ending token.
pub fn render(tokenizer: &Tokenizer, example: &Example, context: usize) -> Vec<(Vec<u16>, usize)> {
    let ctx = tokenizer.encode(&example.ctx);
    example
        .endings
        .iter()
        .map(|ending| {
            let mut row = ctx.clone();
            let start = row.len();
            row.extend(tokenizer.encode(&format!(" {ending}")));
            let cut = row.len().saturating_sub(context);
            // At least one context token must stay so the first ending token has a prediction.
            let start = start.max(cut + 1).min(row.len() - 1) - cut;
            (row[cut..].to_vec(), start)
        })
        .collect()
}

/// Index of the smallest value (the first on ties).
pub fn argmin(values: &[f64]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, &v)| if v < values[best] { i } else { best })
}

/// Accuracy over a set of examples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Right by summed ending loss.
    pub acc: f64,
    /// Right by mean ending loss per token (the reference's metric).
    pub acc_norm: f64,
    pub n: usize,
}

/// Summed and mean loss of each row's ending tokens, for rows of token ids (any lengths).
pub fn ending_losses(
    model: &Gpt,
    active_layers: usize,
    rows: &[(Vec<u16>, usize)],
    device: Device,
    autocast: bool,
) -> Vec<(f64, f64)> {
    let width = rows.iter().map(|(t, _)| t.len()).max().unwrap_or(1);
    let mut ids = vec![0i64; rows.len() * width];
    let mut mask = vec![0f32; rows.len() * (width - 1)];
    for (r, (tokens, start)) in rows.iter().enumerate() {
        for (c, &t) in tokens.iter().enumerate() {
            ids[r * width + c] = i64::from(t);
        }
        // Position c predicts token c + 1; ending tokens are start..len.
        for c in start - 1..tokens.len() - 1 {
            mask[r * (width - 1) + c] = 1.0;
        }
    }
    let n = rows.len() as i64;
    let ids = Tensor::from_slice(&ids).view([n, width as i64]).to_device(device);
    let mask = Tensor::from_slice(&mask).view([n, width as i64 - 1]).to_device(device);
    tch::no_grad(|| {
        let logits = tch::autocast(autocast, || model.forward(&ids, active_layers)).to_kind(Kind::Float);
        let logp = logits.narrow(1, 0, width as i64 - 1).log_softmax(-1, Kind::Float);
        let targets = ids.narrow(1, 1, width as i64 - 1).unsqueeze(-1);
        let losses = -logp.gather(-1, &targets, false).squeeze_dim(-1) * &mask;
        let sums: Vec<f64> =
            Vec::try_from(losses.sum_dim_intlist(1, false, Kind::Double).to_device(Device::Cpu)).unwrap();
        let counts: Vec<f64> =
            Vec::try_from(mask.sum_dim_intlist(1, false, Kind::Double).to_device(Device::Cpu)).unwrap();
        sums.into_iter().zip(counts).map(|(s, c)| (s, s / c.max(1.0))).collect()
    })
}

/// Evaluate `examples`, `batch_examples` at a time (4 rows each).
pub fn evaluate(
    model: &Gpt,
    active_layers: usize,
    tokenizer: &Tokenizer,
    examples: &[Example],
    batch_examples: usize,
    device: Device,
    autocast: bool,
) -> Score {
    let context = model.config.context;
    let (mut right, mut right_norm) = (0usize, 0usize);
    for chunk in examples.chunks(batch_examples.max(1)) {
        let rows: Vec<(Vec<u16>, usize)> = chunk.iter().flat_map(|e| render(tokenizer, e, context)).collect();
        let losses = ending_losses(model, active_layers, &rows, device, autocast);
        for (example, scores) in chunk.iter().zip(losses.chunks(4)) {
            let sums: Vec<f64> = scores.iter().map(|s| s.0).collect();
            let means: Vec<f64> = scores.iter().map(|s| s.1).collect();
            right += usize::from(argmin(&sums) == example.label);
            right_norm += usize::from(argmin(&means) == example.label);
        }
    }
    let n = examples.len();
    Score { acc: right as f64 / n as f64, acc_norm: right_norm as f64 / n as f64, n }
}

#[cfg(test)]
mod tests {
    use super::*;
    use run_dir::config::TokenizerKind;

    fn write(lines: &[&str]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), lines.join("\n")).unwrap();
        f
    }

    #[test]
    fn reads_the_official_format_and_names_bad_lines() {
        let good = r#"{"ind": 4, "activity_label": "x", "ctx_a": "a", "ctx_b": "b", "ctx": "A man", "split": "val", "split_type": "indomain", "label": 2, "endings": ["a", "b", "c", "d"], "source_id": "s"}"#;
        let f = write(&[good, r#"{"ctx": "c", "endings": ["1","2","3","4"], "label": "1"}"#]);
        let ex = load(f.path(), None).unwrap();
        assert_eq!((ex.len(), ex[0].label, ex[1].label, ex[0].ctx.as_str()), (2, 2, 1, "A man"));
        assert_eq!(load(f.path(), Some(1)).unwrap().len(), 1);

        for (bad, needle) in [
            (r#"{"ctx": "c", "endings": ["1","2","3","4"], "label": 7}"#, "label"),
            (r#"{"ctx": "c", "endings": ["1","2","3"], "label": 0}"#, "4 endings"),
            (r#"{"ctx": "c", "label": 0}"#, "endings"),
            (r#"{"endings": ["1","2","3","4"], "label": 0}"#, "ctx"),
            ("not json", "JSON"),
        ] {
            let f = write(&[good, bad]);
            let err = format!("{:#}", load(f.path(), None).unwrap_err());
            assert!(err.contains(":2:") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn rendering_marks_the_ending_and_truncates_from_the_left() {
        let tok = Tokenizer::new(TokenizerKind::Bytes).unwrap();
        let ex = Example { ctx: "abc".into(), endings: ["d".into(), "ef".into(), "g".into(), "hij".into()], label: 0 };
        let rows = render(&tok, &ex, 64);
        assert_eq!(rows[1], (b"abc ef".iter().map(|&b| u16::from(b)).collect(), 3));
        let short = render(&tok, &ex, 4);
        assert_eq!(short[3], (b" hij".iter().map(|&b| u16::from(b)).collect(), 1));
    }

    #[test]
    fn sum_and_mean_can_disagree() {
        // Ending 0: 2 tokens, loss 1.0 each (sum 2, mean 1); ending 1: 10 tokens, 0.5 each (sum 5, mean 0.5).
        let sums = [2.0, 5.0, 9.0, 9.0];
        let means = [1.0, 0.5, 3.0, 3.0];
        assert_eq!((argmin(&sums), argmin(&means)), (0, 1));
    }
}
