//! HellaSwag evaluation, as the reference (build-nanogpt's `hellaswag.py`): each of the 4 endings
//! is rendered as `ctx + " " + ending`, and scored by the cross-entropy of the ending's own tokens
//! given everything before them.
//!
//! - `acc_norm`: the ending with the lowest **mean** loss per ending token wins (build-nanogpt's
//!   "acc_norm", normalised by token count; the paper's HellaSwag number);
//! - `acc`: the ending with the lowest **summed** loss wins.
//!
//! An example whose longest row does not fit the model's context is skipped and counted
//! (`n_skipped`), never truncated: a truncated context scores something else. The softmax runs
//! over the tokenizer's vocabulary, as in training.
//!
//! The official `hellaswag_val.jsonl` (rowanz/hellaswag, as build-nanogpt downloads it) comes in
//! with `train data --hellaswag` ([`download_checked`] from [`OFFICIAL_URL`], or a mirror given
//! by `--hellaswag-url`), checked against its size and SHA-256.

use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use run_dir::{HellaswagCounts, HellaswagInput, TrainConfig};

use crate::data::Tokenizer;
use crate::engine::model::Gpt;

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

/// A run's HellaSwag set: the file's examples rendered for the model's context, and what the run
/// header records of the file (where, its SHA-256, how many examples fit).
#[derive(Debug, Clone)]
pub struct HellaswagSet {
    pub rendered: Rendered,
    pub input: HellaswagInput,
}

impl HellaswagSet {
    /// Read `path` (the first `config.hellaswag_limit` examples), digest it, and render it for
    /// `config`'s tokenizer and context. With `expected_sha256` (what a run recorded when it
    /// started), a file that changed since is an error: its scores would not continue the run's.
    pub fn open(path: &Path, expected_sha256: Option<&str>, config: &TrainConfig) -> anyhow::Result<HellaswagSet> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "{}: cannot read the HellaSwag file (`just data --hellaswag` downloads the official one)",
                path.display()
            )
        })?;
        let sha256 = sha256_hex(&bytes);
        if let Some(expected) = expected_sha256.filter(|e| *e != sha256) {
            bail!(
                "{}: the HellaSwag file changed since the run started (SHA-256 {expected} then, {sha256} now); put the run's file back at that path",
                path.display()
            );
        }
        let text = String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8 text", path.display()))?;
        let examples = parse(path, &text, config.hellaswag_limit)?;
        let tokenizer = Tokenizer::new(config.tokenizer)?;
        let rendered = Rendered::new(&tokenizer, &examples, config.model.context);
        let counts = HellaswagCounts {
            examples: examples.len() as u64,
            scored: rendered.fitting.len() as u64,
            skipped: rendered.skipped.len() as u64,
        };
        let input = HellaswagInput { path: path.to_path_buf(), sha256: Some(sha256), counts: Some(counts) };
        Ok(HellaswagSet { rendered, input })
    }
}

/// SHA-256 of `data`, as lowercase hex.
fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Read at most `limit` examples; a malformed line is an error naming the file and line.
pub fn load(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("{}: cannot read HellaSwag file (`just data --hellaswag` downloads the official one)", path.display())
    })?;
    parse(path, &text, limit)
}

/// At most `limit` examples of `text`, the contents of `path`.
fn parse(path: &Path, text: &str, limit: Option<usize>) -> anyhow::Result<Vec<Example>> {
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

/// One rendered ending: the row's token ids and the index of its first ending token.
pub type Row = (Vec<u16>, usize);

/// Token rows of an example: for each ending, the tokens and the index of the first ending token.
/// `None` when a row is longer than `context` (the example does not fit) or the context is empty.
pub fn render(tokenizer: &Tokenizer, example: &Example, context: usize) -> Option<Vec<Row>> {
    let ctx = tokenizer.encode(&example.ctx);
    if ctx.is_empty() {
        return None;
    }
    let rows: Vec<Row> = example
        .endings
        .iter()
        .map(|ending| {
            let mut row = ctx.clone();
            row.extend(tokenizer.encode(&format!(" {ending}")));
            (row, ctx.len())
        })
        .collect();
    rows.iter().all(|(row, _)| row.len() <= context).then_some(rows)
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
    /// Examples scored.
    pub n: usize,
    /// Examples skipped because they do not fit the context.
    pub n_skipped: usize,
    /// Examples right by summed and by mean loss (the counts behind `acc` and `acc_norm`).
    pub right: usize,
    pub right_norm: usize,
}

impl Score {
    /// The score of `right` and `right_norm` correct out of `n` scored, `n_skipped` skipped.
    pub fn from_counts(right: usize, right_norm: usize, n: usize, n_skipped: usize) -> Score {
        let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
        Score { acc: share(right), acc_norm: share(right_norm), n, n_skipped, right, right_norm }
    }
}

/// Summed and mean loss of each row's ending tokens, for rows of token ids (any lengths), the
/// softmax over the first `vocab` ids.
pub fn ending_losses(
    model: &Gpt,
    active_layers: usize,
    rows: &[Row],
    vocab: usize,
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
        let logits = crate::device::native::autocast(autocast, || model.forward(&ids, active_layers));
        let logits = crate::engine::loss::scored(&logits, vocab).to_kind(Kind::Float);
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

/// Evaluate the rendered `examples`, `batch_examples` at a time (4 rows each), the softmax over
/// the first `vocab` ids; the examples that did not fit the context count as skipped.
pub fn evaluate(
    model: &Gpt,
    active_layers: usize,
    examples: &Rendered,
    batch_examples: usize,
    vocab: usize,
    device: Device,
    autocast: bool,
) -> Score {
    let (mut right, mut right_norm) = (0usize, 0usize);
    for chunk in examples.fitting.chunks(batch_examples.max(1)) {
        let rows: Vec<Row> = chunk.iter().flat_map(|e| e.rows.iter().cloned()).collect();
        let losses = ending_losses(model, active_layers, &rows, vocab, device, autocast);
        for (RenderedExample { label, .. }, scores) in chunk.iter().zip(losses.chunks(4)) {
            let sums: Vec<f64> = scores.iter().map(|s| s.0).collect();
            let means: Vec<f64> = scores.iter().map(|s| s.1).collect();
            right += usize::from(argmin(&sums) == *label);
            right_norm += usize::from(argmin(&means) == *label);
        }
    }
    Score::from_counts(right, right_norm, examples.fitting.len(), examples.skipped.len())
}

/// Examples tokenized for a model's context, once per run (tokenizing them is the slow part of an
/// evaluation with GPT-2's BPE): the examples that fit, and the indices of those that did not.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub fitting: Vec<RenderedExample>,
    pub skipped: Vec<usize>,
}

/// One example that fits: its index in the file, its label and its four rows.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedExample {
    pub index: usize,
    pub label: usize,
    pub rows: Vec<Row>,
}

impl Rendered {
    /// `examples` rendered for `context` (see [`render`]).
    pub fn new(tokenizer: &Tokenizer, examples: &[Example], context: usize) -> Rendered {
        let mut rendered = Rendered::default();
        for (index, example) in examples.iter().enumerate() {
            match render(tokenizer, example, context) {
                Some(rows) => rendered.fitting.push(RenderedExample { index, label: example.label, rows }),
                None => rendered.skipped.push(index),
            }
        }
        rendered
    }

    /// The examples (fitting or skipped) whose index in the file `mine` accepts: one rank's share.
    pub fn share(self, mine: impl Fn(usize) -> bool) -> Rendered {
        Rendered {
            fitting: self.fitting.into_iter().filter(|e| mine(e.index)).collect(),
            skipped: self.skipped.into_iter().filter(|&i| mine(i)).collect(),
        }
    }
}

/// The official validation file: rowanz/hellaswag's `data/hellaswag_val.jsonl`, where
/// build-nanogpt's `hellaswag.py` downloads it from.
pub const OFFICIAL_URL: &str = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl";
/// Its size in bytes (10,042 examples).
pub const OFFICIAL_BYTES: u64 = 12_246_618;
/// Its SHA-256 (the same in Hugging Face `datasets`' checksums of the file).
pub const OFFICIAL_SHA256: &str = "0aa3b88843990f3f10a97b9575c94d7b71fb2205240ba04ae4884d9e9c992588";
/// Where training looks for it by default.
pub const DEFAULT_PATH: &str = "data/hellaswag_val.jsonl";

/// Download `url` to `dest` unless `dest` already holds the expected file; the download must
/// have `bytes` bytes and SHA-256 `sha256` (hex), else nothing is written and the error says
/// what came instead.
pub fn download_checked(url: &str, dest: &Path, bytes: u64, sha256: &str) -> anyhow::Result<()> {
    let hex = sha256_hex;
    if let Ok(existing) = std::fs::read(dest) {
        if existing.len() as u64 == bytes && hex(&existing) == sha256 {
            return Ok(());
        }
    }
    let response = ureq::get(url).call().with_context(|| format!("downloading {url}"))?;
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut body).with_context(|| format!("downloading {url}"))?;
    if body.len() as u64 != bytes || hex(&body) != sha256 {
        bail!(
            "{url}: got {} bytes with SHA-256 {}, expected {bytes} bytes with {sha256}; nothing written to {}",
            body.len(),
            hex(&body),
            dest.display()
        );
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    run_dir::write_atomically(dest, |f| std::io::Write::write_all(f, &body))
        .with_context(|| format!("writing {}", dest.display()))
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
    fn rendering_marks_the_ending_and_skips_examples_that_do_not_fit() {
        let tok = Tokenizer::new(TokenizerKind::Bytes).unwrap();
        let ex = Example { ctx: "abc".into(), endings: ["d".into(), "ef".into(), "g".into(), "hij".into()], label: 0 };
        let rows = render(&tok, &ex, 64).unwrap();
        assert_eq!(rows[1], (b"abc ef".iter().map(|&b| u16::from(b)).collect(), 3));
        // The longest row, "abc hij", is 7 tokens: it fits in 7, not in 6 (never truncated).
        assert!(render(&tok, &ex, 7).is_some());
        assert!(render(&tok, &ex, 6).is_none());
    }

    #[test]
    fn downloads_are_checked_against_size_and_sha256() {
        // A one-shot HTTP server on loopback stands in for GitHub.
        let serve = |body: &'static [u8]| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/hellaswag_val.jsonl", listener.local_addr().unwrap());
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(body).unwrap();
            });
            url
        };
        let body: &'static [u8] = b"{\"ctx\": \"a\", \"endings\": [\"b\", \"c\", \"d\", \"e\"], \"label\": 1}\n";
        let sha = "c1d2bc2a5d1479b41a19a7a2d7d36c5e94fd9de5fa6ea2e31b6c2d5f2e12b2b0";
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("data/hellaswag_val.jsonl");
        let real = sha256_hex(body);
        let err = download_checked(&serve(body), &dest, body.len() as u64, sha).unwrap_err().to_string();
        assert!(err.contains(&real) && err.contains("nothing written"), "{err}");
        assert!(!dest.exists());
        download_checked(&serve(body), &dest, body.len() as u64, &real).unwrap();
        assert_eq!(load(&dest, None).unwrap()[0].label, 1);
        // Already there and right: no download at all (no server is listening).
        download_checked("http://127.0.0.1:9/nothing", &dest, body.len() as u64, &real).unwrap();
    }

    #[test]
    fn a_hellaswag_set_records_its_file_and_what_fits_and_refuses_a_changed_file() {
        let f = write(&[
            r#"{"ctx": "ab", "endings": ["c", "d", "e", "f"], "label": 1}"#,
            r#"{"ctx": "a much longer context", "endings": ["c", "d", "e", "f"], "label": 0}"#,
            r#"{"ctx": "xy", "endings": ["z", "w", "v", "u"], "label": 3}"#,
        ]);
        let mut config = TrainConfig::preset("tiny").unwrap();
        config.model.context = 8;
        let set = HellaswagSet::open(f.path(), None, &config).unwrap();
        let sha = sha256_hex(&std::fs::read(f.path()).unwrap());
        assert_eq!(set.input.path, f.path());
        assert_eq!(set.input.sha256.as_deref(), Some(sha.as_str()));
        assert_eq!(set.input.counts, Some(HellaswagCounts { examples: 3, scored: 2, skipped: 1 }));
        assert_eq!(set.rendered.skipped, vec![1]);
        // Ranks split the file by example index, skipped examples too.
        let even = set.rendered.clone().share(|i| i % 2 == 0);
        assert_eq!(even.fitting.iter().map(|e| (e.index, e.label)).collect::<Vec<_>>(), vec![(0, 1), (2, 3)]);
        assert!(even.skipped.is_empty());
        assert_eq!(set.rendered.clone().share(|i| i % 2 == 1).skipped, vec![1]);
        // The limit applies before counting; the recorded digest must still match.
        config.hellaswag_limit = Some(1);
        let first = HellaswagSet::open(f.path(), Some(&sha), &config).unwrap();
        assert_eq!(first.input.counts, Some(HellaswagCounts { examples: 1, scored: 1, skipped: 0 }));
        std::fs::write(f.path(), r#"{"ctx": "q", "endings": ["c", "d", "e", "f"], "label": 2}"#).unwrap();
        let err = HellaswagSet::open(f.path(), Some(&sha), &config).unwrap_err().to_string();
        assert!(err.contains("changed since the run started") && err.contains(&sha), "{err}");
    }

    #[test]
    fn sum_and_mean_can_disagree() {
        // Ending 0: 2 tokens, loss 1.0 each (sum 2, mean 1); ending 1: 10 tokens, 0.5 each (sum 5, mean 0.5).
        let sums = [2.0, 5.0, 9.0, 9.0];
        let means = [1.0, 0.5, 3.0, 3.0];
        assert_eq!((argmin(&sums), argmin(&means)), (0, 1));
    }
}
