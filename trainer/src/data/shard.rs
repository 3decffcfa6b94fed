//! Token shards in llm.c's `.bin` format.
//!
//! ```text
//! offset  size        field
//! 0       4           magic   = 20240520 (little-endian int32)
//! 4       4           version = 1
//! 8       4           number of tokens N
//! 12      1012        zero (the header is 256 int32 = 1,024 bytes)
//! 1024    2·N         tokens, little-endian uint16
//! ```
//! Every read checks magic, version and that the file is exactly `1024 + 2·N` bytes, and names the
//! file in the error. Shards are memory-mapped: a 100M-token shard costs no heap.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

/// llm.c's magic number for uint16 token shards.
pub const SHARD_MAGIC: i32 = 20_240_520;
/// llm.c's version for uint16 token shards.
pub const SHARD_VERSION: i32 = 1;
/// Header size in bytes (256 little-endian int32).
pub const HEADER_BYTES: usize = 1024;

/// Why a shard cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{path}: cannot open token shard ({source}); run `just data` to create the shards")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a token shard (file is {len} bytes, shorter than the 1,024-byte header); delete it and rerun `just data`")]
    TooShort { path: PathBuf, len: u64 },
    #[error("{path}: bad magic {found} (expected {SHARD_MAGIC}); not an llm.c uint16 shard, delete it and rerun `just data`")]
    BadMagic { path: PathBuf, found: i32 },
    #[error("{path}: unsupported shard version {found} (expected {SHARD_VERSION}); rerun `just data` to rewrite it")]
    BadVersion { path: PathBuf, found: i32 },
    #[error("{path}: header says {count} tokens ({expected} bytes) but the file has {len} bytes; the shard is truncated or corrupt, delete it and rerun `just data`")]
    BadLength { path: PathBuf, count: i64, expected: u64, len: u64 },
    #[error("{path}: token id {token} at position {position} is >= vocab size {vocab}; the shard was made with another tokenizer, rerun `just data`")]
    TokenOutOfRange { path: PathBuf, token: u16, position: usize, vocab: usize },
}

/// A validated, memory-mapped token shard.
pub struct Shard {
    path: PathBuf,
    map: Mmap,
    len: usize,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("path", &self.path).field("len", &self.len).finish()
    }
}

impl Shard {
    /// Open and validate a shard's header and length.
    pub fn open(path: &Path) -> Result<Shard, ShardError> {
        let file = File::open(path).map_err(|source| ShardError::Open { path: path.into(), source })?;
        let io = |source| ShardError::Io { path: path.into(), source };
        let file_len = file.metadata().map_err(io)?.len();
        if file_len < HEADER_BYTES as u64 {
            return Err(ShardError::TooShort { path: path.into(), len: file_len });
        }
        // SAFETY: shards are written once (temp file + rename) and never modified in place.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| ShardError::Io { path: path.into(), source })?;
        let header = |i: usize| i32::from_le_bytes(map[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        if header(0) != SHARD_MAGIC {
            return Err(ShardError::BadMagic { path: path.into(), found: header(0) });
        }
        if header(1) != SHARD_VERSION {
            return Err(ShardError::BadVersion { path: path.into(), found: header(1) });
        }
        let count = i64::from(header(2));
        let expected = HEADER_BYTES as u64 + 2 * count.max(0) as u64;
        if count < 0 || expected != file_len {
            return Err(ShardError::BadLength { path: path.into(), count, expected, len: file_len });
        }
        Ok(Shard { path: path.into(), map, len: count as usize })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the shard holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the shard lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw little-endian uint16 bytes of tokens `start..start + count`.
    pub fn token_bytes(&self, start: usize, count: usize) -> &[u8] {
        &self.map[HEADER_BYTES + 2 * start..HEADER_BYTES + 2 * (start + count)]
    }

    /// Token `i`.
    pub fn token(&self, i: usize) -> u16 {
        let b = self.token_bytes(i, 1);
        u16::from_le_bytes([b[0], b[1]])
    }

    /// Check every token is below `vocab` (a shard from another tokenizer would index out of range).
    pub fn check_vocab(&self, vocab: usize) -> Result<(), ShardError> {
        let bytes = self.token_bytes(0, self.len);
        for (position, pair) in bytes.chunks_exact(2).enumerate() {
            let token = u16::from_le_bytes([pair[0], pair[1]]);
            if usize::from(token) >= vocab {
                return Err(ShardError::TokenOutOfRange { path: self.path.clone(), token, position, vocab });
            }
        }
        Ok(())
    }
}

/// The header of a shard of `count` tokens.
fn header(count: usize) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..4].copy_from_slice(&SHARD_MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&SHARD_VERSION.to_le_bytes());
    let count = i32::try_from(count).expect("a shard holds fewer than 2^31 tokens");
    header[8..12].copy_from_slice(&count.to_le_bytes());
    header
}

/// A shard written as its tokens come (the validation shard of a streamed corpus, whose size is
/// known only at the end): the header's count is filled in by [`ShardWriter::finish`]. Write it
/// in a directory that is renamed into place whole: the file is not complete before then.
pub struct ShardWriter {
    file: std::io::BufWriter<File>,
    path: PathBuf,
    count: usize,
}

impl ShardWriter {
    /// A new shard at `path`.
    pub fn create(path: &Path) -> Result<ShardWriter, ShardError> {
        let io = |source| ShardError::Io { path: path.into(), source };
        let mut file = std::io::BufWriter::new(File::create(path).map_err(io)?);
        file.write_all(&header(0)).map_err(io)?;
        Ok(ShardWriter { file, path: path.into(), count: 0 })
    }

    /// Append tokens.
    pub fn push(&mut self, tokens: &[u16]) -> Result<(), ShardError> {
        let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        self.file.write_all(&bytes).map_err(|source| ShardError::Io { path: self.path.clone(), source })?;
        self.count += tokens.len();
        Ok(())
    }

    /// Tokens so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True before any token.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Fill in the count, flush and sync; returns the path and the tokens.
    pub fn finish(self) -> Result<(PathBuf, usize), ShardError> {
        use std::io::{Seek, SeekFrom};
        let io = |source| ShardError::Io { path: self.path.clone(), source };
        let mut file = self.file.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header(self.count)).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok((self.path, self.count))
    }
}

/// Write `tokens` as a shard at `path`, atomically (temp file in the same directory, then rename).
pub fn write_shard(path: &Path, tokens: &[u16]) -> Result<(), ShardError> {
    let io = |source| ShardError::Io { path: path.into(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut body = Vec::with_capacity(HEADER_BYTES + 2 * tokens.len());
    body.extend_from_slice(&header(tokens.len()));
    for t in tokens {
        body.extend_from_slice(&t.to_le_bytes());
    }
    run_dir::write_atomically(path, |f| f.write_all(&body)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        let tokens: Vec<u16> = (0..1000u32).map(|i| (i * 97 % 65_536) as u16).collect();
        write_shard(&path, &tokens).unwrap();
        let shard = Shard::open(&path).unwrap();
        assert_eq!(shard.len(), 1000);
        assert_eq!((0..1000).map(|i| shard.token(i)).collect::<Vec<_>>(), tokens);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024 + 2000);
    }

    #[test]
    fn rejects_bad_magic_version_length_and_vocab() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        write_shard(&path, &[1, 2, 3, 300]).unwrap();
        let good = std::fs::read(&path).unwrap();

        let mut bad = good.clone();
        bad[0] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(Shard::open(&path), Err(ShardError::BadMagic { .. })));

        let mut bad = good.clone();
        bad[4] = 7;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(Shard::open(&path), Err(ShardError::BadVersion { .. })));

        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        let err = Shard::open(&path).unwrap_err();
        assert!(matches!(err, ShardError::BadLength { .. }));
        assert!(err.to_string().contains("s.bin"), "names the file: {err}");

        std::fs::write(&path, &good[..100]).unwrap();
        assert!(matches!(Shard::open(&path), Err(ShardError::TooShort { .. })));

        std::fs::write(&path, &good).unwrap();
        let shard = Shard::open(&path).unwrap();
        assert!(shard.check_vocab(301).is_ok());
        assert!(matches!(shard.check_vocab(257), Err(ShardError::TokenOutOfRange { token: 300, position: 3, .. })));
    }
}
