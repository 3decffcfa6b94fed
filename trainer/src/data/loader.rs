//! Deterministic (inputs, targets) batches from token shards, from a position that can be saved
//! and restored.
//!
//! The training stream is a seeded shuffle of **windows**: every train shard is cut into
//! non-overlapping windows of `model.context + 1` tokens (the `+ 1` is the last target), and each
//! epoch visits all windows in an order drawn from `(data_seed, epoch)`. Windows rather than
//! documents because every token is then used once per epoch with no padding and no packing, every
//! batch has the same shape, and the position is one integer, so a run resumes exactly. The order
//! depends only on the data, the context and the seed, so every run with the same data and
//! `data_seed` (any schedule, depth or batch size) sees the same stream, and runs are paired
//! across arms. A stage with a shorter context cuts each window into rows of its own context.
//!
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::shard::Shard;

/// Where the next batch starts: the next window in `epoch`'s order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    pub window: u64,
}

/// The shards of one dataset directory: shard 0 (`*_val_*`) for validation, the rest for training.
#[derive(Debug)]
pub struct TokenDataset {
    pub dir: PathBuf,
    pub val: Shard,
    /// Shared with the run's batch loader.
    pub train: Arc<[Shard]>,
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
        let val = open(&val)?;
        let train: Vec<Shard> = train.iter().map(open).collect::<Result<_, _>>()?;
        Ok(TokenDataset { dir: dir.into(), val, train: train.into() })
    }
}

/// Every window of a set of shards: window `w` is tokens `[w·C, w·C + C]` of its shard.
#[derive(Debug, Clone)]
pub struct Windows {
    /// Tokens per window, the `+ 1` target aside (the model's context).
    pub context: usize,
    /// First global window index of each shard, and the total at the end.
    starts: Vec<u64>,
}

impl Windows {
    /// The windows of `shards` for a model of `context` tokens.
    pub fn new(shards: &[Shard], context: usize) -> Windows {
        let mut starts = vec![0u64];
        for shard in shards {
            let count = (shard.len().saturating_sub(1) / context) as u64;
            starts.push(starts.last().expect("non-empty") + count);
        }
        Windows { context, starts }
    }

    /// Number of windows.
    pub fn len(&self) -> u64 {
        *self.starts.last().expect("non-empty")
    }

    /// True when no shard holds a whole window.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (shard, first token) of window `w`.
    pub fn locate(&self, w: u64) -> (usize, usize) {
        let shard = self.starts.partition_point(|&s| s <= w) - 1;
        (shard, (w - self.starts[shard]) as usize * self.context)
    }
}

/// The order in which an epoch visits the windows: a shuffle seeded by `(data_seed, epoch)`
/// (ChaCha8 with the epoch as its stream).
pub fn epoch_order(windows: u64, data_seed: u64, epoch: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..windows as u32).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(data_seed);
    rng.set_stream(epoch);
    order.shuffle(&mut rng);
    order
}

/// Yields (inputs, targets) batches, both int64 `[rows, context]`: the shuffled window stream.
pub struct BatchLoader {
    shards: Arc<[Shard]>,
    windows: Windows,
    /// This epoch's window order.
    order: Vec<u32>,
    windows_per_batch: usize,
    row_context: usize,
    device: Device,
    seed: u64,
    epoch: u64,
    /// Index into `order` of the next window.
    next: u64,
}

impl BatchLoader {
    /// A loader over the train `shards` for micro-batches of `windows_per_batch` windows of
    /// `model_context` tokens, cut into rows of `row_context` (a stage's context), starting at
    /// `position` of the stream `data_seed` shuffles.
    pub fn new(
        shards: Arc<[Shard]>,
        windows_per_batch: usize,
        model_context: usize,
        row_context: usize,
        device: Device,
        position: DataPosition,
        data_seed: u64,
    ) -> anyhow::Result<Self> {
        let windows = Windows::new(&shards, model_context);
        if windows.len() < windows_per_batch as u64 {
            bail!(
                "the train shards hold {} windows of {model_context}+1 tokens, fewer than one micro-batch of {windows_per_batch}; lower micro_batch or model.context",
                windows.len()
            );
        }
        if position.window > windows.len() {
            bail!("the saved data position (window {}) lies past the {} windows of the train shards; the dataset changed since the checkpoint", position.window, windows.len());
        }
        let mut loader = BatchLoader {
            order: epoch_order(windows.len(), data_seed, position.epoch),
            shards,
            windows,
            windows_per_batch,
            row_context: model_context,
            device,
            seed: data_seed,
            epoch: position.epoch,
            next: position.window,
        };
        loader.set_row_context(model_context, row_context)?;
        Ok(loader)
    }

    /// Cut the next micro-batches (the same windows of `model_context` tokens) into rows of
    /// `row_context`, for a stage with a shorter context: the data stream itself goes on as it
    /// was, so a run keeps one loader from its first step to its last.
    pub fn set_row_context(&mut self, model_context: usize, row_context: usize) -> anyhow::Result<()> {
        if row_context == 0 || model_context % row_context != 0 {
            bail!("context {row_context} does not divide model.context {model_context}");
        }
        self.row_context = row_context;
        Ok(())
    }

    /// Where the next batch starts.
    pub fn position(&self) -> DataPosition {
        DataPosition { epoch: self.epoch, window: self.next }
    }

    /// Move past the next batch without reading it (another rank computes it).
    pub fn skip_batch(&mut self) {
        for _ in 0..self.windows_per_batch {
            self.next_window();
        }
    }

    fn next_window(&mut self) -> u64 {
        if self.next == self.windows.len() {
            self.epoch += 1;
            self.next = 0;
            self.order = epoch_order(self.windows.len(), self.seed, self.epoch);
        }
        let w = u64::from(self.order[self.next as usize]);
        self.next += 1;
        w
    }

    /// The next batch.
    pub fn next_batch(&mut self) -> (Tensor, Tensor) {
        let context = self.windows.context;
        let mut bytes = Vec::with_capacity(self.windows_per_batch * (context + 1) * 2);
        for _ in 0..self.windows_per_batch {
            let window = self.next_window();
            let (shard, start) = self.windows.locate(window);
            bytes.extend_from_slice(self.shards[shard].token_bytes(start, context + 1));
        }
        let tokens = token_tensor(&bytes, self.device).view([self.windows_per_batch as i64, (context + 1) as i64]);
        // Rows of the stage's context: each window's C inputs (and its C targets, one later) cut
        // into C / c rows.
        let (rows, c) = ((self.windows_per_batch * context / self.row_context) as i64, self.row_context as i64);
        let x = tokens.narrow(1, 0, context as i64).reshape([rows, c]).contiguous();
        let y = tokens.narrow(1, 1, context as i64).reshape([rows, c]).contiguous();
        (x, y)
    }
}

/// Where the validation sample's windows start in a val shard of `shard_len` tokens: `tokens /
/// context` windows of `context` tokens spread evenly over the whole shard (first and last
/// included), or with `spread = false` the shard's first windows (the leading slice of runs before
/// format 3). An error when the shard cannot hold them without overlap.
pub fn validation_starts(shard_len: usize, tokens: usize, context: usize, spread: bool) -> anyhow::Result<Vec<usize>> {
    let windows = tokens / context;
    let last_start = shard_len
        .checked_sub(context + 1)
        .with_context(|| format!("the val shard's {shard_len} tokens are fewer than one window of {context}+1"))?;
    if windows == 0 {
        bail!("val_tokens = {tokens} holds no window of {context} tokens; raise val_tokens");
    }
    if !spread {
        let available = last_start / context + 1;
        return Ok((0..windows.min(available)).map(|i| i * context).collect());
    }
    if windows > 1 && last_start / (windows - 1) < context {
        bail!(
            "val_tokens = {tokens}: the val shard's {shard_len} tokens cannot hold {windows} separate windows of {context}; lower val_tokens to at most {}",
            (last_start / context + 1) * context
        );
    }
    Ok((0..windows).map(|i| if windows == 1 { 0 } else { i * last_start / (windows - 1) }).collect())
}

/// The validation sample of `shard` (see [`validation_starts`]) as (inputs, targets) batches of at
/// most `rows` windows.
pub fn validation_batches(
    shard: &Shard,
    tokens: usize,
    context: usize,
    rows: usize,
    spread: bool,
    device: Device,
) -> anyhow::Result<Vec<(Tensor, Tensor)>> {
    let starts =
        validation_starts(shard.len(), tokens, context, spread).with_context(|| shard.path().display().to_string())?;
    Ok(starts
        .chunks(rows.max(1))
        .map(|chunk| {
            let mut bytes = Vec::with_capacity(chunk.len() * (context + 1) * 2);
            for &start in chunk {
                bytes.extend_from_slice(shard.token_bytes(start, context + 1));
            }
            let t = token_tensor(&bytes, device).view([chunk.len() as i64, (context + 1) as i64]);
            (t.narrow(1, 0, context as i64).contiguous(), t.narrow(1, 1, context as i64).contiguous())
        })
        .collect())
}

/// Little-endian uint16 token bytes → an int64 tensor on `device`.
fn token_tensor(bytes: &[u8], device: Device) -> Tensor {
    if device.is_cuda() {
        // Copy the raw uint16 tokens from pinned memory without waiting: a pageable copy would
        // make the host wait for the GPU's queue to drain at every micro-batch. Widening to int64
        // then happens on the GPU. If pinning fails, the plain copy is still correct.
        let raw = Tensor::from_data_size(bytes, &[(bytes.len() / 2) as i64], Kind::Int16);
        let on_device = match crate::device::native::pin_memory(&raw) {
            Ok(pinned) => pinned.to_device_(device, Kind::Int16, true, false),
            Err(_) => raw.to_device(device),
        };
        widen_token_ids(&on_device)
    } else {
        tokens_to_tensor(bytes)
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

    fn two_shards(dir: &Path) -> Arc<[Shard]> {
        let a: Vec<u16> = (0..50).collect();
        let b: Vec<u16> = (100..140).collect();
        write_shard(&dir.join("a.bin"), &a).unwrap();
        write_shard(&dir.join("b.bin"), &b).unwrap();
        vec![Shard::open(&dir.join("a.bin")).unwrap(), Shard::open(&dir.join("b.bin")).unwrap()].into()
    }

    fn ids(t: &Tensor) -> Vec<i64> {
        Vec::<i64>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn the_shuffled_stream_visits_every_window_once_per_epoch_and_resumes_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let shards = two_shards(dir.path());
        // Windows of 8+1 tokens: 49/8 = 6 in shard a, 39/8 = 4 in shard b.
        let windows = Windows::new(&shards, 8);
        assert_eq!(windows.len(), 10);
        assert_eq!(windows.locate(7), (1, 8));
        let start = DataPosition::default();
        let mut loader = BatchLoader::new(shards.clone(), 2, 8, 8, Device::Cpu, start, 7).unwrap();
        let mut firsts = Vec::new();
        for _ in 0..5 {
            let (x, y) = loader.next_batch();
            assert_eq!(x.size(), [2, 8]);
            // Targets are the inputs shifted by one within each window.
            assert_eq!(ids(&x.narrow(1, 1, 7)), ids(&y.narrow(1, 0, 7)));
            firsts.extend(ids(&x.narrow(1, 0, 1)));
        }
        let mut expected: Vec<i64> = (0..6).map(|w| w * 8).chain((0..4).map(|w| 100 + w * 8)).collect();
        let mut got = firsts.clone();
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "one epoch is every window once");
        assert_ne!(firsts, (0..6).map(|w| w * 8).chain((0..4).map(|w| 100 + w * 8)).collect::<Vec<_>>());
        assert_eq!(loader.position(), DataPosition { epoch: 0, window: 10 });
        // Epoch 2 is another order; resuming mid-epoch continues it exactly.
        let (x, _) = loader.next_batch();
        let mid = loader.position();
        let (next, _) = loader.next_batch();
        let mut again = BatchLoader::new(shards.clone(), 2, 8, 8, Device::Cpu, mid, 7).unwrap();
        assert!(again.next_batch().0.equal(&next));
        assert_eq!(mid, DataPosition { epoch: 1, window: 2 });
        assert!(!x.equal(&next));
        // The same seed gives the same stream; another seed another one.
        assert_eq!(epoch_order(10, 7, 0), epoch_order(10, 7, 0));
        assert_ne!(epoch_order(10, 7, 0), epoch_order(10, 8, 0));
        assert_ne!(epoch_order(10, 7, 0), epoch_order(10, 7, 1));
    }

    #[test]
    fn a_shorter_stage_context_cuts_the_same_windows_into_rows() {
        let dir = tempfile::tempdir().unwrap();
        let shards = two_shards(dir.path());
        let start = DataPosition::default();
        let (full, full_y) = BatchLoader::new(shards.clone(), 2, 8, 8, Device::Cpu, start, 3).unwrap().next_batch();
        let (short, short_y) = BatchLoader::new(shards.clone(), 2, 8, 4, Device::Cpu, start, 3).unwrap().next_batch();
        assert_eq!(short.size(), [4, 4]);
        assert_eq!(ids(&full), ids(&short));
        assert_eq!(ids(&full_y), ids(&short_y));
        // A loader that changes its rows mid-stream continues exactly as a new one would there.
        for seed in [3, 4] {
            let mut kept = BatchLoader::new(shards.clone(), 2, 8, 8, Device::Cpu, start, seed).unwrap();
            let _ = kept.next_batch();
            let mut fresh = BatchLoader::new(shards.clone(), 2, 8, 4, Device::Cpu, kept.position(), seed).unwrap();
            kept.set_row_context(8, 4).unwrap();
            let ((a, a_y), (b, b_y)) = (kept.next_batch(), fresh.next_batch());
            assert!(a.equal(&b) && a_y.equal(&b_y) && a.size() == [4, 4], "{seed:?}");
            assert!(kept.set_row_context(8, 3).is_err());
        }
    }

    #[test]
    fn the_validation_sample_spreads_over_the_whole_shard() {
        let dir = tempfile::tempdir().unwrap();
        let tokens: Vec<u16> = (0..1000).collect();
        write_shard(&dir.path().join("v.bin"), &tokens).unwrap();
        let shard = Shard::open(&dir.path().join("v.bin")).unwrap();
        let batches = validation_batches(&shard, 40, 8, 2, true, Device::Cpu).unwrap();
        let firsts: Vec<i64> = batches.iter().flat_map(|(x, _)| ids(&x.narrow(1, 0, 1))).collect();
        // 5 windows from token 0 to the last whole window (start 991), evenly spaced.
        assert_eq!(firsts, vec![0, 247, 495, 743, 991]);
        assert_eq!(batches.iter().map(|(x, _)| x.size()[0]).collect::<Vec<_>>(), vec![2, 2, 1]);
        let leading = validation_batches(&shard, 40, 8, 2, false, Device::Cpu).unwrap();
        let firsts: Vec<i64> = leading.iter().flat_map(|(x, _)| ids(&x.narrow(1, 0, 1))).collect();
        assert_eq!(firsts, vec![0, 8, 16, 24, 32]);
        assert!(validation_batches(&shard, 8 * 200, 8, 2, true, Device::Cpu).is_err(), "windows would overlap");
    }
}
