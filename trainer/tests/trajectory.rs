//! The whole training loop against PyTorch: a 3-stage incremental schedule on a tiny model for 40
//! steps (phase-1 freezing, phase 2, continual with the optimizer reset and a re-warmup, WSD
//! warmup and decay, clipping, weight-decay groups, gradient accumulation, the softmax over the
//! real vocabulary of a padded embedding), from the same initial weights and batches. Our per-step
//! training losses must equal PyTorch's to 1e-5 (CPU, fp32): a tolerance, not bits, since PyTorch
//! ran on another machine, whose CPU kernels round differently (largest gap seen: 9.5e-7).
//!
//! The fixture: `make_inputs` (ignored; run by hand) writes our initial weights and batches to
//! `fixtures/trajectory_inputs.safetensors` and the schedule to `fixtures/trajectory_schedule.json`;
//! `fixtures/make_trajectory_fixture.py` trains from them in PyTorch 2.11.0 (its own learning
//! rate, AdamW, clipping) and writes `fixtures/trajectory_torch.json`.

use std::path::{Path, PathBuf};

use cost_model::{IncrementalSchedule, Phase, Until};
use run_dir::{IncrementalSpec, LineKind, RunDir, RunHeader, ScheduleSpec, TrainConfig};
use tch::{Device, Tensor};
use trainer::checkpoint::{self, TrainState};
use trainer::data::{BatchLoader, TokenDataset};
use trainer::trainer::resume;

mod common;

const STEPS: u64 = 40;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn dataset(dir: &Path) -> PathBuf {
    common::text_dataset(dir, "the cat sat on the mat. a dog ran to the cat. ", 80, 800)
}

fn config(data: &Path) -> TrainConfig {
    common::tiny_config(
        data,
        &[
            "model.layers=3",
            "model.heads=2",
            "model.d_model=16",
            "model.context=8",
            "micro_batch=2",
            "tokens_per_step=32", // 2 micro-batches accumulated per step
            "steps=18",
            "lr_schedule=wsd",
            "lr_max=0.003",
            "lr_min=0.0003",
            "warmup_steps=3",
            "cooldown_fraction=0.2",
            "grad_clip=1.0",
            "loss_kernel=chunked:5",
            "val_every=0",
            "val_tokens=64",
            "checkpoint_every=0",
            "seed=11",
            "data_seed=7",
        ],
    )
}

fn schedule() -> ScheduleSpec {
    ScheduleSpec::Incremental(IncrementalSpec {
        stages: IncrementalSchedule { stages: 3, ..Default::default() },
        until: Until::Steps(STEPS),
        rewarmup_steps: 4,
        ..Default::default()
    })
}

/// Our micro-batches in training order (the loader the trainer uses, from the start).
fn batches(c: &TrainConfig, data: &TokenDataset) -> Vec<(Tensor, Tensor)> {
    let start = trainer::data::DataPosition::default();
    let mut loader = BatchLoader::new(
        data.train.clone(),
        c.micro_batch,
        c.model.context,
        c.model.context,
        Device::Cpu,
        start,
        c.data_seed.unwrap(),
    )
    .unwrap();
    let per_step = c.tokens_per_step / (c.micro_batch * c.model.context);
    (0..STEPS as usize * per_step).map(|_| loader.next_batch()).collect()
}

#[test]
#[ignore = "writes the fixture's inputs; run by hand, then make_trajectory_fixture.py"]
fn make_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(&dataset(dir.path()));
    let data = TokenDataset::open(&c.data_dir, c.tokenizer.vocab_size()).unwrap();
    let (vs, _, _) = trainer::init::init_model(&c, Device::Cpu).unwrap();
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let batches = batches(&c, &data);
    tensors
        .push(("batch.x".into(), Tensor::stack(&batches.iter().map(|b| b.0.shallow_clone()).collect::<Vec<_>>(), 0)));
    tensors
        .push(("batch.y".into(), Tensor::stack(&batches.iter().map(|b| b.1.shallow_clone()).collect::<Vec<_>>(), 0)));
    Tensor::write_safetensors(&tensors, fixture("trajectory_inputs.safetensors")).unwrap();
    let plan = schedule().plan(&c).unwrap();
    let steps: Vec<serde_json::Value> = (1..=STEPS)
        .map(|s| {
            let info = plan.step(s).unwrap();
            serde_json::json!({"step": s, "phase": info.phase.as_str(), "active_layers": info.trainable.active_layers,
                "first_trainable": info.trainable.first_trainable, "embeddings": info.trainable.embeddings})
        })
        .collect();
    let schedule = serde_json::json!({
        "config": c, "real_vocab": c.tokenizer.vocab_size(), "micro_batches_per_step": 2,
        "continual_start": plan.continual_start(), "rewarmup_steps": 4, "total_steps": STEPS, "steps": steps,
    });
    std::fs::write(fixture("trajectory_schedule.json"), serde_json::to_string_pretty(&schedule).unwrap()).unwrap();
}

#[test]
fn the_training_loop_matches_pytorch_step_for_step() {
    let torch: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("trajectory_torch.json")).expect("fixture")).unwrap();
    let inputs: Vec<(String, Tensor)> = Tensor::read_safetensors(fixture("trajectory_inputs.safetensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = config(&dataset(dir.path()));

    // The fixture's batches are exactly what our loader yields for this data and data seed.
    let data = TokenDataset::open(&c.data_dir, c.tokenizer.vocab_size()).unwrap();
    let ours = batches(&c, &data);
    let fixture_x = &inputs.iter().find(|(n, _)| n == "batch.x").unwrap().1;
    for (i, (x, _)) in ours.iter().enumerate() {
        assert!(x.equal(&fixture_x.get(i as i64)), "micro-batch {i} differs from the fixture's");
    }

    // Start the run from the fixture's initial weights: a checkpoint at step 0, then resume.
    let run = RunDir::new(dir.path().join("runs/trajectory"));
    std::fs::create_dir_all(run.path()).unwrap();
    let plan = schedule().plan(&c).unwrap();
    run.write_header(&RunHeader::new("trajectory", c.clone(), schedule(), plan, "cpu".into(), "2.11.0")).unwrap();
    let (vs, _, optimizer) = trainer::init::init_model(&c, Device::Cpu).unwrap();
    let weights: Vec<(String, Tensor)> = inputs.into_iter().filter(|(n, _)| !n.starts_with("batch.")).collect();
    tch::no_grad(|| {
        for (name, value) in &weights {
            vs.variables()[name].shallow_clone().copy_(value);
        }
    });
    checkpoint::save(&run, &vs, &optimizer, &TrainState::start()).unwrap();
    resume(run.path(), &common::cpu_options(None)).unwrap();

    let lines: Vec<run_dir::MetricsLine> =
        common::read_metrics(run.path()).into_iter().filter(|l| l.kind == LineKind::Train).collect();
    let expected = torch["steps"].as_array().unwrap();
    assert_eq!(lines.len(), STEPS as usize);
    assert_eq!(expected.len(), STEPS as usize);
    let mut worst = 0.0f64;
    for (line, want) in lines.iter().zip(expected) {
        let (loss, lr) = (want["loss"].as_f64().unwrap(), want["lr"].as_f64().unwrap());
        assert!((line.lr.unwrap() - lr).abs() < 1e-12, "step {}: lr {} vs torch {lr}", line.step, line.lr.unwrap());
        worst = worst.max((line.loss.unwrap() - loss).abs());
        assert!(
            (line.loss.unwrap() - loss).abs() < 1e-5,
            "step {} ({:?}): loss {} vs torch {loss}",
            line.step,
            line.phase,
            line.loss.unwrap()
        );
        let norm = want["grad_norm"].as_f64().unwrap();
        assert!((line.grad_norm.unwrap() - norm).abs() < 1e-4 * norm.max(1.0), "step {}: grad norm", line.step);
    }
    // The schedule really had every event the test is about.
    let phases: Vec<Phase> = lines.iter().map(|l| l.phase).collect();
    assert!(phases.contains(&Phase::Phase1) && phases.contains(&Phase::Phase2) && phases.contains(&Phase::Continual));
    eprintln!("largest |loss − torch| over {STEPS} steps: {worst:.2e}");
}
