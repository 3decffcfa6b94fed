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
pub const SMALL_MODEL_ARGS: [&str; 16] = [
    "--set",
    "val_tokens=64",
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

/// Config overrides of a 4-layer model that trains in milliseconds and can grow in 2 or 4
/// stages: 128 tokens a step (2 micro-batches of 4 × 16), 2 warmup steps, 128 validation tokens.
pub const GROWABLE_MODEL: [&str; 8] = [
    "model.layers=4",
    "model.heads=2",
    "model.d_model=32",
    "model.context=16",
    "micro_batch=4",
    "tokens_per_step=128",
    "warmup_steps=2",
    "val_tokens=128",
];

/// The tiny preset with `overrides` (`key=value`, as `--set` takes them) and `data` as data_dir.
pub fn tiny_config(data: &Path, overrides: &[&str]) -> run_dir::TrainConfig {
    let mut c = run_dir::TrainConfig::preset("tiny").unwrap();
    for s in overrides {
        c.set(s).unwrap();
    }
    c.data_dir = data.to_path_buf();
    c
}

/// A learning rate so large that the first update sends the weights to ±1e30: the loss of the
/// second step is not finite, with no test hook. `extra` overrides (steps, checkpoints) come last.
pub fn exploding_config(data: &Path, on_nan: run_dir::config::OnNan, extra: &[&str]) -> run_dir::TrainConfig {
    let mut overrides = vec![
        "model.layers=2",
        "model.heads=2",
        "model.d_model=16",
        "model.context=8",
        "micro_batch=2",
        "tokens_per_step=16",
        "lr_schedule=constant",
        "lr_max=1e30",
        "grad_clip=null",
        "val_every=0",
    ];
    overrides.extend(extra);
    let mut c = tiny_config(data, &overrides);
    c.on_nan = on_nan;
    c
}

/// Quiet CPU training, optionally stopping after `stop`.
pub fn cpu_options(stop: Option<u64>) -> trainer::run::options::TrainOptions {
    trainer::run::options::TrainOptions::single(tch::Device::Cpu, stop, true)
}

/// Every line of a run's metrics.jsonl (all must parse).
pub fn read_metrics(run: &Path) -> Vec<run_dir::MetricsLine> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
