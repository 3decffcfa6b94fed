//! A run stopped after a checkpoint and resumed produces the same losses as an uninterrupted run,
//! bit for bit on CPU, and its metrics.jsonl never holds a step twice.

use std::path::{Path, PathBuf};

use run_dir::ScheduleSpec;
use run_dir::TrainConfig;
use run_dir::{LineKind, MetricsLine};
use trainer::data::write_shard;
use trainer::run::trainer::{resume, start};

mod common;

/// Byte-level shards of pseudo-text: a val shard and two train shards.
fn write_dataset(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let text = "the quick brown fox jumps over the lazy dog. ".repeat(200);
    let tokens: Vec<u16> = text.bytes().map(u16::from).collect();
    write_shard(&data.join("t_val_000000.bin"), &tokens[..2000]).unwrap();
    write_shard(&data.join("t_train_000001.bin"), &tokens[..3000]).unwrap();
    write_shard(&data.join("t_train_000002.bin"), &tokens[1000..5000]).unwrap();
    data
}

fn tiny_config(data: &Path) -> TrainConfig {
    common::tiny_config(
        data,
        &[
            "model.layers=2",
            "model.heads=2",
            "model.d_model=32",
            "model.context=16",
            "micro_batch=4",
            "tokens_per_step=128", // 2 micro-batches accumulated per step
            "steps=12",
            "warmup_steps=3",
            "val_every=4",
            "val_tokens=128",
            "checkpoint_every=4",
            "grad_clip=1.0",
        ],
    )
}

fn losses(lines: &[MetricsLine], kind: LineKind) -> Vec<(u64, u64)> {
    lines.iter().filter(|l| l.kind == kind).map(|l| (l.step, l.loss.or(l.val_loss).unwrap().to_bits())).collect()
}

#[test]
fn resumed_run_matches_uninterrupted_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_dataset(dir.path());
    let config = tiny_config(&data);

    let straight = dir.path().join("straight");
    let summary = start(&straight, config.clone(), ScheduleSpec::baseline(), &common::cpu_options(None)).unwrap();
    assert_eq!(summary.last_step, 12);

    // Stop after step 6 (a checkpoint is written there), then resume twice: once cleanly, once
    // after simulating a crash that left log lines beyond the checkpoint and a torn last line.
    let resumed = dir.path().join("resumed");
    start(&resumed, config.clone(), ScheduleSpec::baseline(), &common::cpu_options(Some(6))).unwrap();
    assert!(resumed.join("checkpoints/step_00000006/model.safetensors").is_file());
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(resumed.join("metrics.jsonl")).unwrap();
        let fake = common::read_metrics(&resumed).into_iter().find(|l| l.kind == LineKind::Train).unwrap();
        let beyond = MetricsLine { step: 7, loss: Some(123.0), ..fake };
        writeln!(f, "{}", serde_json::to_string(&beyond).unwrap()).unwrap();
        write!(f, "{{\"run\":\"torn").unwrap();
    }
    resume(&resumed, &common::cpu_options(Some(9))).unwrap();
    resume(&resumed, &common::cpu_options(None)).unwrap();

    let (a, b) = (common::read_metrics(&straight), common::read_metrics(&resumed));
    assert_eq!(losses(&a, LineKind::Train), losses(&b, LineKind::Train), "train losses differ");
    assert_eq!(losses(&a, LineKind::Val), losses(&b, LineKind::Val), "val losses differ");
    assert_eq!(losses(&a, LineKind::Train).len(), 12);

    // No step twice per kind; steps increase monotonically.
    for kind in [LineKind::Train, LineKind::Val] {
        let steps: Vec<u64> = b.iter().filter(|l| l.kind == kind).map(|l| l.step).collect();
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{kind:?} steps repeat: {steps:?}");
    }
    // Cumulative compute is continuous across the resumes.
    let tokens: Vec<u64> = b.iter().filter(|l| l.kind == LineKind::Train).map(|l| l.tokens).collect();
    assert_eq!(tokens, (1..=12).map(|s| s * 128).collect::<Vec<_>>());
    let seconds: Vec<f64> = b.iter().filter(|l| l.kind == LineKind::Train).map(|l| l.seconds).collect();
    assert!(seconds.windows(2).all(|w| w[0] < w[1]), "seconds must keep growing: {seconds:?}");

    // Training works: the loss falls on this repetitive text.
    let train_losses: Vec<f64> = a.iter().filter_map(|l| l.loss).collect();
    assert!(train_losses[11] < train_losses[0] - 0.5, "loss did not fall: {train_losses:?}");
}

#[test]
fn export_writes_hugging_face_layout() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_dataset(dir.path());
    let mut config = tiny_config(&data);
    config.set("steps=2").unwrap();
    let run = dir.path().join("run");
    start(&run, config, ScheduleSpec::baseline(), &common::cpu_options(None)).unwrap();
    let out = trainer::jobs::export::export(&run, None).unwrap();
    let tensors = tch::Tensor::read_safetensors(out.join("model.safetensors")).unwrap();
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"transformer.h.1.attn.c_attn.weight"));
    let wte = &tensors.iter().find(|(n, _)| n == "transformer.wte.weight").unwrap().1;
    assert_eq!(wte.size(), vec![257, 32], "padded rows are dropped");
    let hf: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!((hf["n_layer"].as_u64(), hf["vocab_size"].as_u64()), (Some(2), Some(257)));
    assert!(trainer::jobs::export::export(&run, Some(99)).is_err());
}
