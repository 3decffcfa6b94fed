//! FineWeb-edu: download `sample-10BT` parquet files from the Hugging Face hub; `train data`
//! then streams their `text` column through the GPT-2 tokenizer into 100M-token shards, the first
//! shard's worth being validation (`prepare::Split::FirstShard`), as build-nanogpt's `fineweb.py`.
//!
//! The download needs huggingface.co; everything after it is tested offline on a parquet file the
//! tests write.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::documents::{Format, Source};

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

/// The downloaded parquet files as sources of documents (their `text` column).
pub fn parquet_sources(files: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    files
        .iter()
        .map(|path| {
            let bytes = std::fs::metadata(path).with_context(|| format!("{}: cannot read it", path.display()))?.len();
            Ok(Source { path: path.clone(), format: Format::Parquet, bytes })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::documents::ReadOptions;
    use crate::data::prepare::{prepare, ShardLayout, Split};
    use crate::data::shard::Shard;
    use crate::data::tokenizer::Tokenizer;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use run_dir::config::TokenizerKind;
    use std::fs::File;
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
        let texts = crate::data::parquet_text::read_texts(&parquet, "text").unwrap();
        assert_eq!(texts, vec!["Hello world", "The cat sat.", "Hello world"]);

        let tok = Tokenizer::new(TokenizerKind::Gpt2).unwrap();
        let out = dir.path().join("shards");
        let sources = parquet_sources(&[parquet]).unwrap();
        let read = ReadOptions::default();
        let report = prepare(
            &sources,
            &read,
            &out,
            ShardLayout { name: "edufineweb", split: Split::FirstShard, shard_tokens: 4 },
            &tok,
            &mut |_, _, _| {},
        )
        .unwrap();
        let expected: Vec<u16> = tok.encode_documents(&["Hello world", "The cat sat.", "Hello world"]);
        assert_eq!(report.tokens as usize, expected.len());
        assert!(report.shards[0].0.ends_with("edufineweb_val_000000.bin"));
        let mut all = Vec::new();
        for (path, count) in &report.shards {
            let shard = Shard::open(path).unwrap();
            assert_eq!(shard.len(), *count);
            all.extend((0..shard.len()).map(|i| shard.token(i)));
        }
        assert_eq!(report.shards[0].1, 4, "the first shard's worth validates");
        assert_eq!(all, expected);
    }

    #[test]
    fn a_missing_text_column_and_a_file_that_is_not_parquet_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        std::fs::write(&path, b"not parquet").unwrap();
        let err = crate::data::parquet_text::read_texts(&path, "text").unwrap_err();
        assert!(format!("{err:#}").contains("x.parquet: not a parquet file"), "{err:#}");
        let good = dir.path().join("y.parquet");
        write_parquet(&good, &["a"]);
        let err = crate::data::parquet_text::read_texts(&good, "body").unwrap_err();
        assert!(format!("{err:#}").contains("no `body` column (it has: id, text)"), "{err:#}");
    }
}
