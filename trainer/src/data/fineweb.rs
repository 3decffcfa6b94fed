//! FineWeb-edu preparation: download `sample-10BT` parquet files from the Hugging Face hub, read
//! their `text` column, tokenize with GPT-2 BPE and write 100M-token shards (shard 0 = val),
//! as build-nanogpt's `fineweb.py` does.
//!
//! The download needs huggingface.co; everything after it is tested offline on a parquet file the
//! tests write.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use parquet::schema::types::Type;

use super::corpus::PrepareReport;
use super::sink::ShardSink;
use super::tokenizer::Tokenizer;

/// Where the `sample-10BT` parquet files of `HuggingFaceFW/fineweb-edu` live.
pub const FINEWEB_SAMPLE_URL: &str =
    "https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu/resolve/main/sample/10BT";
/// Number of parquet files in `sample-10BT`.
pub const FINEWEB_SAMPLE_FILES: usize = 14;

/// URL of parquet file `index` of the sample.
pub fn fineweb_file_url(index: usize) -> String {
    format!("{FINEWEB_SAMPLE_URL}/{index:03}_00000.parquet")
}

/// Download `url` to `dest` (temp file + rename); does nothing when `dest` exists.
pub fn download(url: &str, dest: &Path) -> anyhow::Result<()> {
    if dest.is_file() {
        return Ok(());
    }
    let dir = dest.parent().context("download destination has no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let response =
        ureq::get(url).call().with_context(|| format!("downloading {url} (is huggingface.co reachable?)"))?;
    run_dir::write_atomically(dest, |f| std::io::copy(&mut response.into_reader(), f).map(|_| ()))
        .with_context(|| format!("downloading {url} to {}", dest.display()))
}

/// Download the first `files` parquet files of the sample into `dir`; returns their paths.
pub fn download_sample(dir: &Path, files: usize) -> anyhow::Result<Vec<PathBuf>> {
    if files == 0 || files > FINEWEB_SAMPLE_FILES {
        bail!("--fineweb-files {files}: sample-10BT has 1..={FINEWEB_SAMPLE_FILES} files");
    }
    (0..files)
        .map(|i| {
            let dest = dir.join(format!("{i:03}_00000.parquet"));
            download(&fineweb_file_url(i), &dest)?;
            Ok(dest)
        })
        .collect()
}

/// The `text` column of a parquet file, one string per row.
pub fn read_parquet_texts(path: &Path) -> anyhow::Result<Vec<String>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = SerializedFileReader::new(file).with_context(|| format!("{}: not a parquet file", path.display()))?;
    let schema = reader.metadata().file_metadata().schema();
    let text_field = schema
        .get_fields()
        .iter()
        .find(|f| f.name() == "text")
        .with_context(|| format!("{}: no `text` column; is this a FineWeb parquet file?", path.display()))?
        .clone();
    let projection = Type::group_type_builder(schema.name()).with_fields(vec![text_field]).build()?;
    let mut texts = Vec::new();
    for row in reader.get_row_iter(Some(projection))? {
        let row = row.with_context(|| format!("{}: corrupt row", path.display()))?;
        texts.push(row.get_string(0).map(|s| s.to_owned()).unwrap_or_default());
    }
    Ok(texts)
}

/// Tokenize the parquet files' documents into shards of `shard_tokens` (the first is validation).
pub fn prepare_parquet(
    files: &[PathBuf],
    out_dir: &Path,
    name: &str,
    tokenizer: &Tokenizer,
    shard_tokens: usize,
) -> anyhow::Result<PrepareReport> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut sink = ShardSink::new(out_dir, name, shard_tokens);
    let (mut documents, mut tokens, mut tokenize_seconds) = (0, 0, 0.0);
    for file in files {
        let texts = read_parquet_texts(file)?;
        let start = Instant::now();
        let ids = tokenizer.encode_documents(&texts);
        tokenize_seconds += start.elapsed().as_secs_f64();
        documents += texts.len();
        tokens += ids.len();
        sink.push(&ids)?;
    }
    let shards = sink.finish()?;
    Ok(PrepareReport {
        shards,
        documents,
        tokens,
        tokenize_seconds,
        tokens_per_second: tokens as f64 / tokenize_seconds.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shard::Shard;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use run_dir::config::TokenizerKind;
    use std::sync::Arc;

    /// A parquet file shaped like FineWeb's (an id column and an optional `text` column).
    fn write_parquet(path: &Path, texts: &[&str]) {
        let schema = Arc::new(
            parse_message_type("message schema { REQUIRED INT64 id; OPTIONAL BYTE_ARRAY text (UTF8); }").unwrap(),
        );
        let props = Arc::new(WriterProperties::builder().build());
        let mut writer = SerializedFileWriter::new(File::create(path).unwrap(), schema, props).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let ids: Vec<i64> = (0..texts.len() as i64).collect();
        let mut col = group.next_column().unwrap().unwrap();
        col.typed::<Int64Type>().write_batch(&ids, None, None).unwrap();
        col.close().unwrap();
        let values: Vec<ByteArray> = texts.iter().map(|t| ByteArray::from(*t)).collect();
        let defs = vec![1i16; texts.len()];
        let mut col = group.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>().write_batch(&values, Some(&defs), None).unwrap();
        col.close().unwrap();
        group.close().unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn parquet_documents_become_gpt2_shards_with_val_first() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("000_00000.parquet");
        write_parquet(&parquet, &["Hello world", "The cat sat.", "Hello world"]);
        assert_eq!(read_parquet_texts(&parquet).unwrap(), vec!["Hello world", "The cat sat.", "Hello world"]);

        let tok = Tokenizer::new(TokenizerKind::Gpt2).unwrap();
        let out = dir.path().join("shards");
        let report = prepare_parquet(&[parquet], &out, "edufineweb", &tok, 4).unwrap();
        let expected: Vec<u16> = tok.encode_documents(&["Hello world", "The cat sat.", "Hello world"]);
        assert_eq!(report.tokens, expected.len());
        assert!(report.shards[0].0.ends_with("edufineweb_val_000000.bin"));
        let mut all = Vec::new();
        for (path, count) in &report.shards {
            let shard = Shard::open(path).unwrap();
            assert_eq!(shard.len(), *count);
            all.extend((0..shard.len()).map(|i| shard.token(i)));
        }
        assert_eq!(all, expected);
    }

    #[test]
    fn missing_text_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        std::fs::write(&path, b"not parquet").unwrap();
        let err = read_parquet_texts(&path).unwrap_err();
        assert!(format!("{err:#}").contains("x.parquet"));
    }
}
