//! Helpers shared by the integration tests. (Each test crate uses a subset.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use trainer::data::write_shard;

/// Byte-level shards of `text` repeated `times` in `<dir>/data/d/`: a val shard of the first
/// `val_tokens` tokens and one train shard of all of them. Returns the dataset directory.
pub fn text_dataset(dir: &Path, text: &str, times: usize, val_tokens: usize) -> PathBuf {
    let data = dir.join("data/d");
    let tokens: Vec<u16> = text.repeat(times).bytes().map(u16::from).collect();
    write_shard(&data.join("d_val_000000.bin"), &tokens[..val_tokens]).unwrap();
    write_shard(&data.join("d_train_000001.bin"), &tokens).unwrap();
    data
}

/// CLI flags of a model small enough to train in milliseconds on the dataset above
/// (run from `dir`); callers add `tokens_per_step` and whatever they test.
pub const SMALL_MODEL_ARGS: [&str; 14] = [
    "--set",
    "model.layers=2",
    "--set",
    "model.d_model=16",
    "--set",
    "model.heads=2",
    "--set",
    "model.context=8",
    "--set",
    "micro_batch=2",
    "--set",
    "data_dir=data/d",
    "--device",
    "cpu",
];
