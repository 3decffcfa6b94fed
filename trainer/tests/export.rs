//! An export is the same function as the run: the trainer's softmax sees the tokenizer's real
//! vocabulary only (the embedding's padded rows never take probability mass), so the export,
//! which drops the padded rows, scores exactly what the trainer logged, and Hugging Face
//! `transformers` scores it the same way.
//!
//! The fixture: `make_export_fixture` (ignored; run by hand) trains a tiny run, exports it into
//! `fixtures/export/` and writes 8 validation windows to `fixtures/export_windows.safetensors`;
//! `fixtures/make_export_fixture.py` loads the export with `GPT2LMHeadModel.from_pretrained` and
//! writes its loss on those windows to `fixtures/export_transformers.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use run_dir::{GptShape, LineKind, ScheduleSpec, TrainConfig};
use tch::nn::VarStore;
use tch::{Device, Tensor};
use trainer::data::loader::validation_batches;
use trainer::data::TokenDataset;
use trainer::engine::model::Gpt;
use trainer::run::trainer::start;

mod common;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn config(data: &Path) -> TrainConfig {
    common::tiny_config(
        data,
        &[
            "model.layers=2",
            "model.heads=2",
            "model.d_model=16",
            "model.context=16",
            "micro_batch=8",
            "tokens_per_step=128",
            "steps=30",
            "warmup_steps=3",
            "val_every=30",
            "val_tokens=128",
        ],
    )
}

/// A model whose embedding has `vocab` rows, with an export's weights (its `wte` holds the real
/// rows; any further rows keep their random values).
fn load_export(export: &Path, vocab: usize) -> (VarStore, Gpt) {
    let hf: serde_json::Value = serde_json::from_slice(&std::fs::read(export.join("config.json")).unwrap()).unwrap();
    let n = |k: &str| hf[k].as_u64().unwrap() as usize;
    let config =
        GptShape { layers: n("n_layer"), heads: n("n_head"), d_model: n("n_embd"), context: n("n_positions"), vocab };
    tch::manual_seed(99);
    let vs = VarStore::new(Device::Cpu);
    let model = Gpt::new(&vs, config);
    let saved: HashMap<String, Tensor> =
        Tensor::read_safetensors(export.join("model.safetensors")).unwrap().into_iter().collect();
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, value) in &saved {
            let target = &vars[name];
            target.narrow(0, 0, value.size()[0]).copy_(value);
        }
    });
    (vs, model)
}

fn loss_on(model: &Gpt, x: &Tensor, y: &Tensor, vocab: usize) -> f64 {
    tch::no_grad(|| trainer::engine::loss::mean_loss(model, x, y, model.config.layers, vocab).double_value(&[]))
}

#[test]
#[ignore = "writes the fixture; run by hand, then make_export_fixture.py"]
fn make_export_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::text_dataset(dir.path(), "to be or not to be, that is the question. ", 100, 1200);
    let run = dir.path().join("run");
    start(&run, config(&data), ScheduleSpec::baseline(), &common::cpu_options(None)).unwrap();
    let export = trainer::jobs::export::export(&run, None).unwrap();
    let out = fixture("export");
    std::fs::create_dir_all(&out).unwrap();
    for file in ["model.safetensors", "config.json"] {
        std::fs::copy(export.join(file), out.join(file)).unwrap();
    }
    let val = TokenDataset::open(&data, 257).unwrap().val;
    let batches = validation_batches(&val, 8 * 16, 16, 8, true, Device::Cpu).unwrap();
    let (x, y) = &batches[0];
    Tensor::write_safetensors(&[("x", x), ("y", y)], fixture("export_windows.safetensors")).unwrap();
}

#[test]
fn the_trimmed_export_scores_what_transformers_scores() {
    let windows: HashMap<String, Tensor> =
        Tensor::read_safetensors(fixture("export_windows.safetensors")).unwrap().into_iter().collect();
    let (x, y) = (&windows["x"], &windows["y"]);
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("export_transformers.json")).unwrap()).unwrap();
    let want = want["loss"].as_f64().unwrap();
    // Loaded with the padded vocabulary (random padded rows) or exactly the real one: the same
    // function, and the one transformers computes.
    let (_vs, padded) = load_export(&fixture("export"), 320);
    let (_vs2, trimmed) = load_export(&fixture("export"), 257);
    let (a, b) = (loss_on(&padded, x, y, 257), loss_on(&trimmed, x, y, 257));
    assert!((a - want).abs() < 1e-5, "ours (padded model) {a} vs transformers {want}");
    assert!((b - want).abs() < 1e-5, "ours (trimmed model) {b} vs transformers {want}");
    // The softmax over the padded rows would be another function.
    assert!((loss_on(&padded, x, y, 320) - want).abs() > 1e-3);
}

#[test]
fn an_export_scores_what_the_trainer_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::text_dataset(dir.path(), "to be or not to be, that is the question. ", 100, 1200);
    let run = dir.path().join("run");
    let c = config(&data);
    start(&run, c.clone(), ScheduleSpec::baseline(), &common::cpu_options(None)).unwrap();
    let logged = common::read_metrics(&run).into_iter().rfind(|l| l.kind == LineKind::Val).unwrap();
    let export = trainer::jobs::export::export(&run, None).unwrap();
    let (_vs, model) = load_export(&export, 257);
    let val = TokenDataset::open(&data, 257).unwrap().val;
    let batches = validation_batches(&val, c.val_tokens, 16, c.micro_batch, c.val_spread, Device::Cpu).unwrap();
    let losses: Vec<f64> = batches.iter().map(|(x, y)| loss_on(&model, x, y, 257)).collect();
    let ours = losses.iter().sum::<f64>() / losses.len() as f64;
    assert!((ours - logged.val_loss.unwrap()).abs() < 1e-6, "export {ours} vs logged {}", logged.val_loss.unwrap());
}
