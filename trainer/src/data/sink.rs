//! Streams tokens into numbered shards of a fixed size; shard 0 is the validation shard.

use std::path::{Path, PathBuf};

use super::shard::{ShardError, ShardWriter};

/// Path of shard `index` of dataset `name` in `dir`: `<name>_val_000000.bin` for shard 0,
/// `<name>_train_00000N.bin` after it (build-nanogpt's naming).
pub fn shard_path(dir: &Path, name: &str, index: usize) -> PathBuf {
    let split = if index == 0 { "val" } else { "train" };
    dir.join(format!("{name}_{split}_{index:06}.bin"))
}

/// Fills shards of `shard_tokens` tokens in order, each streamed to its file as tokens come (so
/// memory stays a write buffer, not a shard); the caller writes into a hidden directory and moves
/// the finished shards into place.
pub struct ShardSink {
    dir: PathBuf,
    name: String,
    shard_tokens: usize,
    index: usize,
    current: Option<ShardWriter>,
    written: Vec<(PathBuf, usize)>,
}

impl ShardSink {
    /// A sink writing `<dir>/<name>_*.bin`.
    pub fn new(dir: &Path, name: &str, shard_tokens: usize) -> ShardSink {
        assert!(shard_tokens > 0, "shard size must be positive");
        ShardSink { dir: dir.into(), name: name.into(), shard_tokens, index: 0, current: None, written: Vec::new() }
    }

    /// Number the shards from `index` (the validation shard 0 written elsewhere).
    pub fn starting_at(mut self, index: usize) -> ShardSink {
        self.index = index;
        self
    }

    /// Append tokens, closing every shard that fills up.
    pub fn push(&mut self, mut tokens: &[u16]) -> Result<(), ShardError> {
        while !tokens.is_empty() {
            let shard = match &mut self.current {
                Some(shard) => shard,
                None => self.current.insert(ShardWriter::create(&shard_path(&self.dir, &self.name, self.index))?),
            };
            let take = (self.shard_tokens - shard.len()).min(tokens.len());
            shard.push(&tokens[..take])?;
            tokens = &tokens[take..];
            if shard.len() == self.shard_tokens {
                self.finish_shard()?;
            }
        }
        Ok(())
    }

    /// Close the current shard even if it is not full.
    pub fn finish_shard(&mut self) -> Result<(), ShardError> {
        if let Some(shard) = self.current.take() {
            self.written.push(shard.finish()?);
            self.index += 1;
        }
        Ok(())
    }

    /// Close what is open; return every shard written with its token count.
    pub fn finish(mut self) -> Result<Vec<(PathBuf, usize)>, ShardError> {
        self.finish_shard()?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shard::Shard;

    #[test]
    fn tokens_fill_shards_of_the_given_size_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = ShardSink::new(dir.path(), "d", 4).starting_at(1);
        sink.push(&[1, 2, 3]).unwrap();
        sink.push(&[4, 5, 6, 7, 8, 9, 10]).unwrap();
        let shards = sink.finish().unwrap();
        let counts: Vec<usize> = shards.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [4, 4, 2]);
        assert_eq!(shards[0].0, shard_path(dir.path(), "d", 1));
        let tokens: Vec<u16> = shards
            .iter()
            .flat_map(|(p, _)| {
                let s = Shard::open(p).unwrap();
                (0..s.len()).map(move |i| s.token(i)).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(tokens, (1..=10).collect::<Vec<u16>>());
    }
}
