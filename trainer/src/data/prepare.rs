//! Documents → token shards, streamed: one thread reads the sources in order and hands batches of
//! documents (a few MB of text) through a bounded channel; the caller's thread tokenizes each batch
//! on every core (rayon) and appends the tokens in order, so memory stays bounded by a few batches
//! however large the corpus. Every `val_every`-th document (0, n, 2n, …) goes to the validation
//! shard 0 (written as it comes, its count filled in at the end), the others to train shards of
//! `shard_tokens` (or, as build-nanogpt's FineWeb, the first shard's worth of tokens is the
//! validation shard). Shards are written into a hidden directory beside the output and moved into
//! place only when everything is written, so a failure leaves no half-written shard; then
//! `manifest.json` names every source (path, bytes, SHA-256, documents) and shard.

use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{bail, Context};
use rayon::prelude::*;
use serde::Serialize;

use super::documents::{self, ReadOptions, Source};
use super::shard::ShardWriter;
use super::sink::{shard_path, ShardSink};
use super::tokenizer::Tokenizer;

/// The manifest's file name in a data directory, and its format.
pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_FORMAT: u32 = 1;

/// Text read per batch before it is tokenized.
const BATCH_BYTES: usize = 4 << 20;

/// Which documents make the validation shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Documents 0, n, 2n, ...
    EveryNth(usize),
    /// The first shard's worth of tokens (build-nanogpt's FineWeb).
    FirstShard,
}

/// How documents become shards: the dataset's name (`<name>_val_000000.bin`, ...), which
/// documents validate, and the tokens of a train shard.
#[derive(Debug, Clone, Copy)]
pub struct ShardLayout<'a> {
    pub name: &'a str,
    pub split: Split,
    pub shard_tokens: usize,
}

/// One source as the manifest records it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRecord {
    pub path: PathBuf,
    pub format: String,
    pub bytes: u64,
    pub sha256: String,
    pub documents: u64,
}

/// What a preparation wrote (also `manifest.json`, with `format`).
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    pub format: u32,
    pub name: String,
    pub tokenizer: String,
    pub split: Split,
    pub documents: u64,
    pub tokens: u64,
    pub sources: Vec<SourceRecord>,
    pub shards: Vec<(PathBuf, usize)>,
    /// Seconds spent tokenizing (the tokenizer's own speed: `tokens / tokenize_seconds`).
    pub tokenize_seconds: f64,
    pub seconds: f64,
}

impl Prepared {
    /// Tokens a second of the tokenizer alone.
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.tokenize_seconds.max(1e-9)
    }
}

/// What the reader thread sends.
enum Message {
    /// A batch of documents, and the bytes of all sources read so far.
    Documents {
        texts: Vec<String>,
        bytes_read: u64,
    },
    SourceDone(SourceRecord),
}

/// Tokenize `sources` (read with `read`) into `<out>/<name>_*.bin`, as the module says;
/// `progress` sees the bytes read, documents and tokens so far.
pub fn prepare(
    sources: &[Source],
    read: &ReadOptions,
    out: &Path,
    layout: ShardLayout,
    tokenizer: &Tokenizer,
    progress: &mut dyn FnMut(u64, u64, u64),
) -> anyhow::Result<Prepared> {
    let ShardLayout { name, split, shard_tokens } = layout;
    if let Split::EveryNth(n) = split {
        anyhow::ensure!(n >= 2, "--val-every {n}: must be 2 or more, so some documents remain for training");
    }
    anyhow::ensure!(shard_tokens > 0, "--shard-tokens 0: a shard needs at least one token");
    let start = Instant::now();
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create the output directory", out.display()))?;
    let partial = out.join(format!(".partial-{}", std::process::id()));
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let result = write_shards(sources, read, &partial, layout, tokenizer, progress);
    let mut prepared = match result {
        Ok(prepared) => prepared,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    prepared.seconds = start.elapsed().as_secs_f64();
    move_into_place(&partial, out, name, &mut prepared)?;
    Ok(prepared)
}

/// The shards into `dir` (the hidden one), streamed.
fn write_shards(
    sources: &[Source],
    read: &ReadOptions,
    dir: &Path,
    layout: ShardLayout,
    tokenizer: &Tokenizer,
    progress: &mut dyn FnMut(u64, u64, u64),
) -> anyhow::Result<Prepared> {
    let ShardLayout { name, split, shard_tokens } = layout;
    let (tx, rx) = sync_channel::<anyhow::Result<Message>>(2);
    let sources_owned = sources.to_vec();
    let read_owned = read.clone();
    let reader = std::thread::spawn(move || read_all(&sources_owned, &read_owned, &tx));
    let mut val = ShardWriter::create(&shard_path(dir, name, 0))?;
    let mut train = ShardSink::new(dir, name, shard_tokens).starting_at(1);
    let (mut documents, mut tokens, mut tokenize_seconds) = (0u64, 0u64, 0.0);
    let mut records = Vec::new();
    for message in rx {
        match message? {
            Message::SourceDone(record) => records.push(record),
            Message::Documents { texts, bytes_read } => {
                let started = Instant::now();
                let ids: Vec<Vec<u16>> = texts.par_iter().map(|t| tokenizer.encode_document(t)).collect();
                tokenize_seconds += started.elapsed().as_secs_f64();
                for doc in ids {
                    let to_val = match split {
                        Split::EveryNth(n) => documents % n as u64 == 0,
                        Split::FirstShard => val.len() < shard_tokens,
                    };
                    match (to_val, split) {
                        (true, Split::FirstShard) => {
                            let room = shard_tokens - val.len();
                            val.push(&doc[..room.min(doc.len())])?;
                            train.push(&doc[room.min(doc.len())..])?;
                        }
                        (true, _) => val.push(&doc)?,
                        (false, _) => train.push(&doc)?,
                    }
                    documents += 1;
                    tokens += doc.len() as u64;
                }
                progress(bytes_read, documents, tokens);
            }
        }
    }
    reader.join().map_err(|_| anyhow::anyhow!("the reading thread panicked"))??;
    if documents == 0 {
        let files: Vec<String> = sources.iter().map(|s| s.path.display().to_string()).collect();
        bail!(
            "no documents in the inputs ({} file(s): {}): every one is empty; give files with text",
            files.len(),
            files.join(", ")
        );
    }
    let mut shards = vec![val.finish()?];
    shards.extend(train.finish()?);
    if shards.len() < 2 {
        bail!(
            "{documents} document(s): all went to the validation shard; give more documents (or a larger --val-every)"
        );
    }
    Ok(Prepared {
        format: MANIFEST_FORMAT,
        name: name.into(),
        tokenizer: tokenizer.kind().name().into(),
        split,
        documents,
        tokens,
        sources: records,
        shards,
        tokenize_seconds,
        seconds: 0.0,
    })
}

/// The reader thread: the documents of all sources in batches of about `BATCH_BYTES` (a batch
/// spans sources, so a corpus of many small files still keeps every core busy), and each source's
/// record once it is read.
fn read_all(
    sources: &[Source],
    read: &ReadOptions,
    tx: &std::sync::mpsc::SyncSender<anyhow::Result<Message>>,
) -> anyhow::Result<()> {
    let send = |m: anyhow::Result<Message>| tx.send(m).map_err(|_| anyhow::anyhow!("the tokenizer stopped"));
    let mut batch: Vec<String> = Vec::new();
    let mut batch_bytes = 0;
    let mut bytes_before = 0u64;
    for source in sources {
        let result = documents::read(source, read, |text, bytes_done| {
            batch_bytes += text.len();
            batch.push(text);
            if batch_bytes >= BATCH_BYTES {
                batch_bytes = 0;
                send(Ok(Message::Documents {
                    texts: std::mem::take(&mut batch),
                    bytes_read: bytes_before + bytes_done,
                }))?;
            }
            Ok(())
        });
        match result {
            Ok(summary) => {
                bytes_before += source.bytes;
                send(Ok(Message::SourceDone(SourceRecord {
                    path: source.path.clone(),
                    format: source.format.name().into(),
                    bytes: source.bytes,
                    sha256: summary.sha256,
                    documents: summary.documents,
                })))?;
            }
            Err(e) => {
                let _ = send(Err(e));
                return Ok(());
            }
        }
    }
    send(Ok(Message::Documents { texts: batch, bytes_read: bytes_before }))
}

/// Replace the dataset `name` in `out` by the shards in `partial`, then write the manifest.
fn move_into_place(partial: &Path, out: &Path, name: &str, prepared: &mut Prepared) -> anyhow::Result<()> {
    let prefix = format!("{name}_");
    for entry in std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&prefix) && file.ends_with(".bin") {
            std::fs::remove_file(entry.path()).with_context(|| format!("replacing {}", entry.path().display()))?;
        }
    }
    for (path, _) in prepared.shards.iter_mut() {
        let target = out.join(path.file_name().context("a shard has a file name")?);
        std::fs::rename(&*path, &target).with_context(|| format!("moving {} into place", target.display()))?;
        *path = target;
    }
    let _ = std::fs::remove_dir_all(partial);
    let manifest = serde_json::to_vec_pretty(prepared)?;
    run_dir::write_atomically(&out.join(MANIFEST_FILE), |f| std::io::Write::write_all(f, &manifest))
        .with_context(|| format!("writing {}", out.join(MANIFEST_FILE).display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shard::Shard;
    use run_dir::config::TokenizerKind;

    fn tokens_of(shards: &[(PathBuf, usize)]) -> Vec<Vec<u16>> {
        shards
            .iter()
            .map(|(p, n)| {
                let s = Shard::open(p).unwrap();
                assert_eq!(s.len(), *n);
                (0..s.len()).map(|i| s.token(i)).collect()
            })
            .collect()
    }

    #[test]
    fn documents_stream_into_a_validation_shard_and_train_shards_with_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let texts = ["alpha", "beta", "gamma", "delta", "epsilon"];
        for (i, t) in texts.iter().enumerate() {
            std::fs::write(dir.path().join(format!("{i}.txt")), t).unwrap();
        }
        let sources = documents::expand(&[dir.path().to_string_lossy().into_owned()]).unwrap();
        let tok = Tokenizer::new(TokenizerKind::Bytes).unwrap();
        let out = dir.path().join("shards");
        let mut calls = 0;
        let prepared = prepare(
            &sources,
            &ReadOptions::default(),
            &out,
            ShardLayout { name: "mine", split: Split::EveryNth(2), shard_tokens: 8 },
            &tok,
            &mut |_, _, _| calls += 1,
        )
        .unwrap();
        assert_eq!((prepared.documents, prepared.sources.len()), (5, 5));
        let shards = tokens_of(&prepared.shards);
        // Documents 0, 2, 4 validate; 1 and 3 train, in shards of 8 tokens.
        assert_eq!(shards[0], tok.encode_documents(&["alpha", "gamma", "epsilon"]));
        assert_eq!(shards[1..].concat(), tok.encode_documents(&["beta", "delta"]));
        assert!(shards[1..].iter().all(|s| s.len() <= 8));
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(MANIFEST_FILE)).unwrap()).unwrap();
        assert_eq!(manifest["sources"][0]["sha256"], documents::file_sha256(&sources[0].path).unwrap());
        assert_eq!(manifest["documents"], 5);
        assert!(calls > 0);
        // Nothing but the shards and the manifest is left behind.
        let left: Vec<String> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(left.iter().all(|f| f.ends_with(".bin") || f == MANIFEST_FILE), "{left:?}");
    }

    /// `prepare` of one file, byte tokens, every other document validating, shards of 8 tokens.
    fn prepare_one(file: &Path, out: &Path) -> anyhow::Result<Prepared> {
        let sources = documents::expand(&[file.to_string_lossy().into_owned()]).unwrap();
        let tok = Tokenizer::new(TokenizerKind::Bytes).unwrap();
        let layout = ShardLayout { name: "x", split: Split::EveryNth(2), shard_tokens: 8 };
        prepare(&sources, &ReadOptions::default(), out, layout, &tok, &mut |_, _, _| {})
    }

    #[test]
    fn a_failure_leaves_no_half_written_shard_and_an_empty_corpus_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "{\"text\": \"fine\"}\n{\"body\": \"no\"}\n").unwrap();
        let out = dir.path().join("shards");
        let err = prepare_one(&dir.path().join("a.jsonl"), &out).unwrap_err();
        assert!(format!("{err:#}").contains("a.jsonl:2: no `text` field"), "{err:#}");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing written");
        std::fs::write(dir.path().join("empty.txt"), "").unwrap();
        let err = prepare_one(&dir.path().join("empty.txt"), &out).unwrap_err();
        assert!(err.to_string().contains("no documents in the inputs"), "{err}");
    }
}
