//! A researcher's own corpus: files, directories and glob patterns, read one document at a time.
//!
//! | extension | documents |
//! |---|---|
//! | `.txt` (or `.text`, `.md`) | the whole file, or the pieces between `--doc-separator` |
//! | `.jsonl`, `.jsonl.gz`, `.jsonl.zst` (also `.json*`) | one per line: its `--text-field` (default `text`) |
//! | `.parquet` | one per row: its `--text-column` (default `text`), a row group at a time |
//!
//! Every input is read as a stream (a line, a row group or a separator-delimited piece at a
//! time), so memory stays bounded however large the corpus. The inputs expand to files in a fixed
//! order (each argument's matches sorted), so the same inputs give the same documents and shards
//! on every machine. What cannot be read is named with its file (and line or row) and what to do:
//! a missing field, a line that is not JSON, text that is not UTF-8 (a binary file), a path that
//! does not exist or matches nothing.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

/// How documents are cut out of the files of each kind.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Text files: documents are separated by this string (none: a file is one document).
    pub doc_separator: Option<String>,
    /// JSON lines: the field holding a document's text.
    pub text_field: String,
    /// Parquet: the column holding a document's text.
    pub text_column: String,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { doc_separator: None, text_field: "text".into(), text_column: "text".into() }
    }
}

/// How a file holds its documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    JsonLines(Compression),
    Parquet,
}

/// How a JSON-lines file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Format {
    /// The format of `path`, from its name; `None` for a name this reader does not know.
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let json = |rest: &str| rest.ends_with(".jsonl") || rest.ends_with(".json");
        Some(if let Some(rest) = name.strip_suffix(".gz") {
            json(rest).then_some(Format::JsonLines(Compression::Gzip))?
        } else if let Some(rest) = name.strip_suffix(".zst") {
            json(rest).then_some(Format::JsonLines(Compression::Zstd))?
        } else if json(&name) {
            Format::JsonLines(Compression::None)
        } else if name.ends_with(".parquet") {
            Format::Parquet
        } else if name.ends_with(".txt") || name.ends_with(".text") || name.ends_with(".md") {
            Format::Text
        } else {
            return None;
        })
    }

    /// Its name in `manifest.json`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::JsonLines(Compression::None) => "jsonl",
            Format::JsonLines(Compression::Gzip) => "jsonl.gz",
            Format::JsonLines(Compression::Zstd) => "jsonl.zst",
            Format::Parquet => "parquet",
        }
    }
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub format: Format,
    pub bytes: u64,
}

/// The files `inputs` name, in order: a file as it is; a directory's files of known formats,
/// recursively, sorted; a glob pattern's matches, sorted. Each file once (its first place).
pub fn expand(inputs: &[String]) -> anyhow::Result<Vec<Source>> {
    let mut out: Vec<Source> = Vec::new();
    let push = |path: PathBuf, named: bool, out: &mut Vec<Source>| -> anyhow::Result<()> {
        let Some(format) = Format::of(&path) else {
            if named {
                bail!(
                    "{}: not a format this reads; give .txt, .jsonl, .jsonl.gz, .jsonl.zst or .parquet files",
                    path.display()
                );
            }
            return Ok(()); // a directory's other files
        };
        let bytes = std::fs::metadata(&path).with_context(|| format!("{}: cannot read it", path.display()))?.len();
        if !out.iter().any(|s| s.path == path) {
            out.push(Source { path, format, bytes });
        }
        Ok(())
    };
    for input in inputs {
        let path = PathBuf::from(input);
        if path.is_dir() {
            let mut files = Vec::new();
            walk(&path, &mut files)?;
            files.sort();
            for file in files {
                push(file, false, &mut out)?;
            }
        } else if input.contains(['*', '?', '[']) {
            let mut matches: Vec<PathBuf> = glob::glob(input)
                .with_context(|| format!("--input {input}: not a valid glob pattern"))?
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            if matches.is_empty() {
                bail!("--input {input}: the pattern matches no file");
            }
            matches.sort();
            for file in matches {
                push(file, true, &mut out)?;
            }
        } else if path.exists() {
            push(path, true, &mut out)?;
        } else {
            bail!("--input {input}: no such file or directory");
        }
    }
    Ok(out)
}

/// Every file under `dir`, recursively (symbolic links followed to files only).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot read the directory", dir.display()))? {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// A reader that hashes what passes through it (a file's SHA-256 as it is streamed).
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// What reading one file gave: its documents went to the callback; its SHA-256 (of the file's
/// bytes as stored) and its document count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSummary {
    pub sha256: String,
    pub documents: u64,
}

/// Read `source`'s documents in order, each handed to `document` with the number of file bytes
/// read so far (for progress). Empty documents are skipped (they add nothing).
pub fn read(
    source: &Source,
    options: &ReadOptions,
    mut document: impl FnMut(String, u64) -> anyhow::Result<()>,
) -> anyhow::Result<ReadSummary> {
    let path = &source.path;
    let file = File::open(path).with_context(|| format!("{}: cannot read it", path.display()))?;
    let mut documents = 0u64;
    let mut emit = |text: String, at: u64| -> anyhow::Result<()> {
        if !text.is_empty() {
            documents += 1;
            document(text, at)?;
        }
        Ok(())
    };
    let sha256 = match source.format {
        Format::Parquet => {
            super::parquet_text::read_column(path, &options.text_column, &mut emit)?;
            file_sha256(path)?
        }
        Format::Text => {
            let mut reader = Hashing { inner: BufReader::new(file), hash: Sha256::new(), bytes: 0 };
            read_text(path, &mut reader, options.doc_separator.as_deref(), &mut emit)?;
            hex(reader.hash.finalize().as_slice())
        }
        Format::JsonLines(compression) => {
            let mut hashing = Hashing { inner: file, hash: Sha256::new(), bytes: 0 };
            let decoded: Box<dyn Read + '_> = match compression {
                Compression::None => Box::new(&mut hashing),
                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut hashing)),
                Compression::Zstd => Box::new(
                    zstd::stream::read::Decoder::new(&mut hashing)
                        .with_context(|| format!("{}: not zstd-compressed", path.display()))?,
                ),
            };
            read_json_lines(path, BufReader::new(decoded), &options.text_field, &mut emit, source.bytes)?;
            // Whatever the decoder left unread still belongs to the file's hash.
            std::io::copy(&mut hashing, &mut std::io::sink())?;
            hex(hashing.hash.finalize().as_slice())
        }
    };
    Ok(ReadSummary { sha256, documents })
}

/// Text: the whole file one document, or the pieces between `separator`. Not UTF-8 is refused,
/// naming the byte where it stops being text.
fn read_text<R: Read>(
    path: &Path,
    reader: &mut Hashing<R>,
    separator: Option<&str>,
    emit: &mut dyn FnMut(String, u64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let not_text = |offset: u64, e: std::str::Utf8Error| {
        anyhow::anyhow!(
            "{}: not UTF-8 text at byte {} (a binary file?); convert it to UTF-8 or leave it out of --input",
            path.display(),
            offset + e.valid_up_to() as u64
        )
    };
    let Some(separator) = separator.filter(|s| !s.is_empty()) else {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).with_context(|| format!("{}: cannot read it", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|e| not_text(0, e.utf8_error()))?;
        return emit(text, reader.bytes);
    };
    // Streamed: a buffer holds at most one document and a read's worth of the next.
    let mut pending: Vec<u8> = Vec::new();
    let mut offset = 0u64;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut chunk).with_context(|| format!("{}: cannot read it", path.display()))?;
        pending.extend_from_slice(&chunk[..n]);
        while let Some(at) = find(&pending, separator.as_bytes()) {
            let piece: Vec<u8> = pending.drain(..at + separator.len()).take(at).collect();
            let text = String::from_utf8(piece).map_err(|e| not_text(offset, e.utf8_error()))?;
            offset += (at + separator.len()) as u64;
            emit(text, reader.bytes)?;
        }
        if n == 0 {
            let text = String::from_utf8(std::mem::take(&mut pending)).map_err(|e| not_text(offset, e.utf8_error()))?;
            return emit(text, reader.bytes);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// JSON lines: each non-blank line an object whose `field` is a string.
fn read_json_lines(
    path: &Path,
    reader: impl BufRead,
    field: &str,
    emit: &mut dyn FnMut(String, u64) -> anyhow::Result<()>,
    file_bytes: u64,
) -> anyhow::Result<()> {
    let mut consumed = 0u64;
    for (i, line) in reader.split(b'\n').enumerate() {
        let number = i + 1;
        let line =
            line.with_context(|| format!("{}:{number}: cannot read it (corrupt compression?)", path.display()))?;
        consumed += line.len() as u64 + 1;
        let text = std::str::from_utf8(&line).map_err(|e| {
            anyhow::anyhow!(
                "{}:{number}: not UTF-8 at byte {} of the line (a binary file?); convert it to UTF-8 or leave it out",
                path.display(),
                e.valid_up_to()
            )
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(text).with_context(|| {
            format!("{}:{number}: not a JSON line; each line must be one JSON object", path.display())
        })?;
        let Some(document) = value.get(field) else {
            let fields: Vec<String> = value.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
            bail!(
                "{}:{number}: no `{field}` field (this line has: {}); name the text's field with --text-field",
                path.display(),
                if fields.is_empty() { "no fields".into() } else { fields.join(", ") }
            );
        };
        let Some(document) = document.as_str() else {
            bail!("{}:{number}: `{field}` is not a string; name the text's field with --text-field", path.display());
        };
        // Progress in the file's own (compressed) bytes: the decompressed share of them.
        emit(document.to_owned(), consumed.min(file_bytes))?;
    }
    Ok(())
}

/// The SHA-256 of a whole file, hex.
pub fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("{}: cannot read it", path.display()))?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash).with_context(|| format!("{}: cannot read it", path.display()))?;
    Ok(hex(hash.finalize().as_slice()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn documents(source: &Source, options: &ReadOptions) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        read(source, options, |d, _| {
            out.push(d);
            Ok(())
        })?;
        Ok(out)
    }

    fn one(path: &Path) -> Source {
        expand(&[path.to_string_lossy().into_owned()]).unwrap().remove(0)
    }

    #[test]
    fn every_format_gives_its_documents() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("a.txt");
        std::fs::write(&txt, "one\n---\ntwo\n---\n").unwrap();
        let jsonl = dir.path().join("b.jsonl");
        std::fs::write(&jsonl, "{\"text\": \"x\", \"id\": 1}\n\n{\"text\": \"y\"}\n").unwrap();
        let gz = dir.path().join("c.jsonl.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::default());
        enc.write_all(b"{\"body\": \"g1\"}\n{\"body\": \"g2\"}\n").unwrap();
        enc.finish().unwrap();
        let zst = dir.path().join("d.jsonl.zst");
        std::fs::write(&zst, zstd::encode_all(&b"{\"text\": \"z\"}\n"[..], 3).unwrap()).unwrap();

        let whole = ReadOptions::default();
        assert_eq!(documents(&one(&txt), &whole).unwrap(), vec!["one\n---\ntwo\n---\n"]);
        let separated = ReadOptions { doc_separator: Some("\n---\n".into()), ..Default::default() };
        assert_eq!(documents(&one(&txt), &separated).unwrap(), vec!["one", "two"]);
        assert_eq!(documents(&one(&jsonl), &whole).unwrap(), vec!["x", "y"]);
        let body = ReadOptions { text_field: "body".into(), ..Default::default() };
        assert_eq!(documents(&one(&gz), &body).unwrap(), vec!["g1", "g2"]);
        assert_eq!(documents(&one(&zst), &whole).unwrap(), vec!["z"]);
        // The digest is of the file as stored (compressed or not).
        let summary = read(&one(&gz), &body, |_, _| Ok(())).unwrap();
        assert_eq!((summary.sha256.clone(), summary.documents), (file_sha256(&gz).unwrap(), 2));

        // A directory expands to its files of known formats, sorted, each once.
        std::fs::write(dir.path().join("notes.csv"), "skip me").unwrap();
        let all = expand(&[dir.path().to_string_lossy().into_owned(), txt.to_string_lossy().into_owned()]).unwrap();
        let names: Vec<_> = all.iter().map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a.txt", "b.jsonl", "c.jsonl.gz", "d.jsonl.zst"]);
        let pattern = format!("{}/*.jsonl*", dir.path().display());
        assert_eq!(expand(&[pattern]).unwrap().len(), 3);
    }

    #[test]
    fn what_cannot_be_read_is_named_with_its_place_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let bad = |name: &str, bytes: &[u8], options: &ReadOptions| -> String {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            format!("{:#}", documents(&one(&path), options).unwrap_err())
        };
        let plain = ReadOptions::default();
        let err = bad("m.jsonl", b"{\"text\": \"ok\"}\n{\"content\": \"no\"}\n", &plain);
        assert!(
            err.contains("m.jsonl:2: no `text` field (this line has: content)") && err.contains("--text-field"),
            "{err}"
        );
        let err = bad("n.jsonl", b"{\"text\": \"ok\"}\nnot json\n", &plain);
        assert!(err.contains("n.jsonl:2: not a JSON line"), "{err}");
        let err = bad("bin.txt", b"text\x00\xff\xfe more", &plain);
        assert!(err.contains("bin.txt: not UTF-8 text at byte 5"), "{err}");
        let err = bad("z.jsonl.zst", b"not zstd at all", &plain);
        assert!(err.contains("z.jsonl.zst"), "{err}");
        let missing = dir.path().join("nowhere.txt").to_string_lossy().into_owned();
        assert!(expand(&[missing]).unwrap_err().to_string().contains("no such file"));
        let none = format!("{}/*.parquet", dir.path().display());
        assert!(expand(&[none]).unwrap_err().to_string().contains("matches no file"));
        let csv = dir.path().join("x.csv");
        std::fs::write(&csv, "a,b").unwrap();
        assert!(expand(&[csv.to_string_lossy().into_owned()]).unwrap_err().to_string().contains(".jsonl.zst"));
    }
}
