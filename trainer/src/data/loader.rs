//! Deterministic (B, T) batches from token shards, from a position that can be saved and restored.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::shard::Shard;

/// Where the next batch starts: a train shard (index into the train shards) and a token offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataPosition {
    pub shard: usize,
    pub offset: usize,
    /// Completed passes over all train shards.
    pub epoch: u64,
}

/// The shards of one dataset directory: shard 0 (`*_val_*`) for validation, the rest for training.
#[derive(Debug)]
pub struct TokenDataset {
    pub dir: PathBuf,
    pub val: Shard,
    pub train: Vec<Shard>,
}

impl TokenDataset {
    /// Open and validate every `*.bin` shard in `dir`, checking token ids against `vocab`.
    pub fn open(dir: &Path, vocab: usize) -> anyhow::Result<TokenDataset> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("{}: dataset directory not found; run `just data` first", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect();
        paths.sort();
        let (val, train): (Vec<PathBuf>, Vec<PathBuf>) =
            paths.into_iter().partition(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains("_val_")));
        let [val] = <[PathBuf; 1]>::try_from(val).map_err(|v| {
            anyhow::anyhow!(
                "{}: expected exactly one *_val_*.bin shard, found {}; rerun `just data`",
                dir.display(),
                v.len()
            )
        })?;
        if train.is_empty() {
            bail!("{}: no *_train_*.bin shards; rerun `just data`", dir.display());
        }
        let open = |p: &PathBuf| -> anyhow::Result<Shard> {
            let shard = Shard::open(p)?;
            shard.check_vocab(vocab)?;
            Ok(shard)
        };
        Ok(TokenDataset { dir: dir.into(), val: open(&val)?, train: train.iter().map(open).collect::<Result<_, _>>()? })
    }
}

/// Yields (inputs, targets) batches of `batch × context` tokens, walking the shards in order and
/// wrapping around. The same position always yields the same batch.
pub struct BatchLoader<'a> {
    shards: &'a [Shard],
    batch: usize,
    context: usize,
    device: Device,
    position: DataPosition,
}

impl<'a> BatchLoader<'a> {
    /// A loader over `shards` starting at `position`; every shard must hold at least one batch.
    pub fn new(
        shards: &'a [Shard],
        batch: usize,
        context: usize,
        device: Device,
        position: DataPosition,
    ) -> anyhow::Result<Self> {
        let needed = batch * context + 1;
        for shard in shards {
            if shard.len() < needed {
                bail!(
                    "{}: {} tokens, fewer than one batch of {batch}×{context}+1; lower micro_batch or context",
                    shard.path().display(),
                    shard.len()
                );
            }
        }
        if position.shard >= shards.len() {
            bail!(
                "data position names shard {} but there are {}; the dataset changed since the checkpoint",
                position.shard,
                shards.len()
            );
        }
        Ok(BatchLoader { shards, batch, context, device, position })
    }

    /// Where the next batch starts.
    pub fn position(&self) -> DataPosition {
        self.position
    }

    /// The next batch: inputs and targets (shifted by one), both int64 `[batch, context]`.
    pub fn next_batch(&mut self) -> (Tensor, Tensor) {
        let n = self.batch * self.context;
        let shard = &self.shards[self.position.shard];
        let bytes = shard.token_bytes(self.position.offset, n + 1);
        let tokens = if self.device.is_cuda() {
            // Copy the raw uint16 tokens from pinned memory without waiting: a pageable copy would
            // make the host wait for the GPU's queue to drain at every micro-batch. Widening to
            // int64 then happens on the GPU. If pinning fails, the plain copy is still correct.
            let raw = Tensor::from_data_size(bytes, &[(n + 1) as i64], Kind::Int16);
            let on_device = match crate::native::pin_memory(&raw) {
                Ok(pinned) => pinned.to_device_(self.device, Kind::Int16, true, false),
                Err(_) => raw.to_device(self.device),
            };
            widen_token_ids(&on_device)
        } else {
            tokens_to_tensor(bytes)
        };
        let x = tokens.narrow(0, 0, n as i64).view([self.batch as i64, self.context as i64]);
        let y = tokens.narrow(0, 1, n as i64).view([self.batch as i64, self.context as i64]);
        self.position.offset += n;
        if self.position.offset + n + 1 > shard.len() {
            self.position.offset = 0;
            self.position.shard += 1;
            if self.position.shard == self.shards.len() {
                self.position.shard = 0;
                self.position.epoch += 1;
            }
        }
        (x, y)
    }
}

/// Little-endian uint16 bytes → an int64 tensor. tch has no uint16 kind: read as int16 and mask
/// (ids ≥ 32,768 come out negative before the mask).
pub fn tokens_to_tensor(bytes: &[u8]) -> Tensor {
    let n = (bytes.len() / 2) as i64;
    widen_token_ids(&Tensor::from_data_size(bytes, &[n], Kind::Int16))
}

/// uint16 ids stored as int16 → int64 ids.
fn widen_token_ids(raw: &Tensor) -> Tensor {
    raw.to_kind(Kind::Int64).bitwise_and(0xFFFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shard::write_shard;

    #[test]
    fn large_token_ids_survive_the_int16_route() {
        let bytes: Vec<u8> = [0u16, 1, 32_767, 32_768, 50_256, 65_535].iter().flat_map(|t| t.to_le_bytes()).collect();
        let t = tokens_to_tensor(&bytes);
        assert_eq!(Vec::<i64>::try_from(&t).unwrap(), vec![0, 1, 32_767, 32_768, 50_256, 65_535]);
    }

    #[test]
    fn batches_are_shifted_and_resume_from_a_saved_position() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<u16> = (0..50).collect();
        let b: Vec<u16> = (100..140).collect();
        write_shard(&dir.path().join("a.bin"), &a).unwrap();
        write_shard(&dir.path().join("b.bin"), &b).unwrap();
        let shards =
            vec![Shard::open(&dir.path().join("a.bin")).unwrap(), Shard::open(&dir.path().join("b.bin")).unwrap()];
        let mut loader = BatchLoader::new(&shards, 2, 4, Device::Cpu, DataPosition::default()).unwrap();
        let (x, y) = loader.next_batch();
        assert_eq!(Vec::<i64>::try_from(x.flatten(0, -1)).unwrap(), (0..8).collect::<Vec<_>>());
        assert_eq!(Vec::<i64>::try_from(y.flatten(0, -1)).unwrap(), (1..9).collect::<Vec<_>>());
        let mut seen = Vec::new();
        for _ in 0..20 {
            let saved = loader.position();
            let (x, _) = loader.next_batch();
            let mut again = BatchLoader::new(&shards, 2, 4, Device::Cpu, saved).unwrap();
            assert!(again.next_batch().0.equal(&x), "same position, same batch");
            seen.push(saved);
        }
        assert!(seen.iter().any(|p| p.shard == 1), "moves on to the second shard");
        assert!(seen.iter().any(|p| p.epoch == 1), "wraps around after the last shard");
    }
}
