//! Streams tokens into numbered shards of a fixed size; shard 0 is the validation shard.

use std::path::{Path, PathBuf};

use super::shard::{write_shard, ShardError};

/// Path of shard `index` of dataset `name` in `dir`: `<name>_val_000000.bin` for shard 0,
/// `<name>_train_00000N.bin` after it (build-nanogpt's naming).
pub fn shard_path(dir: &Path, name: &str, index: usize) -> PathBuf {
    let split = if index == 0 { "val" } else { "train" };
    dir.join(format!("{name}_{split}_{index:06}.bin"))
}

/// Fills shards of `shard_tokens` tokens in order, writing each as soon as it is full.
pub struct ShardSink {
    dir: PathBuf,
    name: String,
    shard_tokens: usize,
    index: usize,
    buffer: Vec<u16>,
    written: Vec<(PathBuf, usize)>,
}

impl ShardSink {
    /// A sink writing `<dir>/<name>_*.bin`.
    pub fn new(dir: &Path, name: &str, shard_tokens: usize) -> ShardSink {
        assert!(shard_tokens > 0, "shard size must be positive");
        ShardSink {
            dir: dir.into(),
            name: name.into(),
            shard_tokens,
            index: 0,
            buffer: Vec::new(),
            written: Vec::new(),
        }
    }

    /// Use a new size for the shards after the current one (the validation shard may differ).
    pub fn with_shard_tokens(mut self, shard_tokens: usize) -> ShardSink {
        assert!(shard_tokens > 0, "shard size must be positive");
        self.shard_tokens = shard_tokens;
        self
    }

    /// Append tokens, writing every shard that fills up.
    pub fn push(&mut self, mut tokens: &[u16]) -> Result<(), ShardError> {
        while !tokens.is_empty() {
            let room = self.shard_tokens - self.buffer.len();
            let take = room.min(tokens.len());
            self.buffer.extend_from_slice(&tokens[..take]);
            tokens = &tokens[take..];
            if self.buffer.len() == self.shard_tokens {
                self.finish_shard()?;
            }
        }
        Ok(())
    }

    /// Write the current shard even if it is not full (e.g. to end the validation shard).
    pub fn finish_shard(&mut self) -> Result<(), ShardError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let path = shard_path(&self.dir, &self.name, self.index);
        write_shard(&path, &self.buffer)?;
        self.written.push((path, self.buffer.len()));
        self.buffer.clear();
        self.index += 1;
        Ok(())
    }

    /// Write what is left; return every shard written with its token count.
    pub fn finish(mut self) -> Result<Vec<(PathBuf, usize)>, ShardError> {
        self.finish_shard()?;
        Ok(self.written)
    }
}
