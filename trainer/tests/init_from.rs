//! `train --init-from`: a model starts from a Hugging Face GPT-2 checkpoint that `transformers`
//! saved (fixtures/init_hf/, made by fixtures/make_init_fixture.py) and computes the logits
//! `transformers` computed for it, to 1e-5, inside a deeper model that then grows; our own export
//! round-trips into a new run; a source of another shape is one line naming both, exit 2.

use std::path::{Path, PathBuf};
use std::process::Command;

use run_dir::{GptShape, RunDir};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use trainer::engine::model::Gpt;

mod common;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The fixture's model shape inside a deeper one: 4 layers, width 16, 2 heads, context 8, the
/// byte vocabulary padded to 320.
fn shape() -> GptShape {
    GptShape { layers: 4, heads: 2, d_model: 16, context: 8, vocab: 320 }
}

#[test]
fn a_transformers_checkpoint_gives_transformers_logits_in_a_deeper_model() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("init_transformers.json")).unwrap()).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let model = Gpt::new(&vs, shape());
    let source = trainer::run::init_from::describe(&fixtures().join("init_hf"), shape(), 257).unwrap();
    assert_eq!(source.layers, 2);
    trainer::run::init_from::load(&source, &vs).unwrap();
    let input: Vec<i64> = expected["input"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let x = Tensor::from_slice(&input).reshape([1, input.len() as i64]);
    let logits = tch::no_grad(|| model.forward(&x, 2)).to_kind(Kind::Double).squeeze_dim(0).narrow(1, 0, 257);
    let want: Vec<Vec<f64>> = serde_json::from_value(expected["logits"].clone()).unwrap();
    let want = Tensor::from_slice(&want.concat()).reshape([input.len() as i64, 257]);
    let gap = (&logits - &want).abs().max().double_value(&[]);
    eprintln!("--init-from a transformers checkpoint: logits within {gap:.2e} of transformers' ({} values)", 8 * 257);
    assert!(gap < 1e-5, "logits differ from transformers' by {gap}");
}

#[test]
fn a_run_grows_from_a_checkpoint_and_our_export_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    common::text_dataset(dir.path(), "the cat sat on the mat. a dog ran in the fog. ", 200, 1000);
    let train = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_train")).args(args).current_dir(dir.path()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let model = ["--set", "model.d_model=16", "--set", "model.heads=2", "--set", "model.context=8", "--device", "cpu"];
    let data =
        ["--set", "data_dir=data/d", "--set", "micro_batch=2", "--set", "tokens_per_step=32", "--set", "val_tokens=64"];
    let base: Vec<&str> = model.iter().chain(&data).copied().chain(["--quiet", "--set", "warmup_steps=2"]).collect();
    // A 2-layer source, grown to 4 by G_stack from the start of its stable phase.
    let hf = fixtures().join("init_hf");
    let mut args = base.clone();
    args.extend(["--set", "model.layers=4", "--set", "steps=16", "--method", "gstack-2x", "--run", "grown"]);
    args.extend(["--init-from", hf.to_str().unwrap()]);
    let (code, err) = train(&args);
    assert_eq!(code, Some(0), "{err}");
    let header = RunDir::new(dir.path().join("runs/grown")).read_header().unwrap();
    let init = header.init_from.expect("run.json records the source");
    assert_eq!(init.layers, 2);
    assert_eq!(init.sha256, trainer::data::documents::file_sha256(&hf.join("model.safetensors")).unwrap());

    // Our export of that run, into a new 4-layer run: the same weights.
    let (code, err) = train(&["export", "runs/grown"]);
    assert_eq!(code, Some(0), "{err}");
    let export = dir.path().join("runs/grown/export");
    let vs = VarStore::new(Device::Cpu);
    let _m = Gpt::new(&vs, shape());
    trainer::run::init_from::load(&trainer::run::init_from::describe(&export, shape(), 257).unwrap(), &vs).unwrap();
    let mut trained = VarStore::new(Device::Cpu);
    let _t = Gpt::new(&trained, shape());
    let last = trainer::run::checkpoint::list(&RunDir::new(dir.path().join("runs/grown"))).pop().unwrap().1;
    trainer::run::checkpoint::load_model(&last, &mut trained).unwrap();
    let (ours, theirs) = (trained.variables(), vs.variables());
    for (name, t) in &ours {
        let rows = if name == "transformer.wte.weight" { 257 } else { t.size()[0] };
        assert!(t.narrow(0, 0, rows).equal(&theirs[name].narrow(0, 0, rows)), "{name} differs after the round trip");
    }

    // Another width: one line naming both shapes, exit 2, no run directory.
    let mut wide = base.clone();
    wide.extend(["--set", "model.d_model=32", "--run", "wide", "--init-from", hf.to_str().unwrap()]);
    let (code, err) = train(&wide);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("d_model 16") && err.contains("d_model 32"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!dir.path().join("runs/wide").exists());
}
