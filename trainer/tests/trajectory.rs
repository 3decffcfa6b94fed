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
//!
//! The growth cases do the same on a 4-layer model, one expansion of each operator (random,
//! zero, copy, stack) and each placement (top, middle, interleave), PyTorch growing the model
//! and moving its AdamW state by the documented rules (`make_growth_inputs`, then
//! `make_trajectory_fixture.py trajectory_growth`).

use std::path::{Path, PathBuf};

use cost_model::{Growth, IncrementalSchedule, Phase, Placement, Until};
use run_dir::{IncrementalSpec, LineKind, MetricsLine, RunDir, RunHeader, ScheduleSpec, TrainConfig};
use tch::{Device, Tensor};
use trainer::data::{BatchLoader, TokenDataset};
use trainer::run::checkpoint::{self, TrainState};
use trainer::run::trainer::resume;

mod common;

const STEPS: u64 = 40;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn dataset(dir: &Path) -> PathBuf {
    common::text_dataset(dir, "the cat sat on the mat. a dog ran to the cat. ", 80, 800)
}

fn config(data: &Path) -> TrainConfig {
    config_of(data, 3)
}

fn config_of(data: &Path, layers: usize) -> TrainConfig {
    let mut c = common::tiny_config(
        data,
        &[
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
            // The fixture's decay: the last 20% of the steps (fixtures/make_trajectory_fixture.py).
            "cooldown_fraction_of=steps",
            "grad_clip=1.0",
            "loss_kernel=chunked:5",
            "val_every=0",
            "val_tokens=64",
            "checkpoint_every=0",
            "seed=11",
            "data_seed=7",
        ],
    );
    c.model.layers = layers;
    c
}

/// The growth cases: one expansion each, on 4 layers, 40 steps.
fn growth_cases() -> Vec<(&'static str, ScheduleSpec)> {
    let case = |layers: Vec<u32>, end: f64, p: f64, growth: Growth, placement: Placement, reset: bool| {
        ScheduleSpec::Incremental(IncrementalSpec {
            stages: IncrementalSchedule {
                stage_ends: vec![end],
                phase1_share: p,
                ..IncrementalSchedule::with_layers(layers)
            },
            until: Until::Steps(STEPS),
            growth,
            placement,
            reset_optimizer_at_continual: reset,
            ..Default::default()
        })
    };
    vec![
        ("zero-top", case(vec![2, 4], 0.5, 0.5, Growth::Zero, Placement::Top, true)),
        ("copy-middle", case(vec![3, 4], 0.5, 0.0, Growth::Copy, Placement::Middle, false)),
        ("stack-top", case(vec![2, 4], 0.3, 0.0, Growth::Stack, Placement::Top, false)),
        ("random-interleave", case(vec![2, 4], 0.5, 0.0, Growth::Random, Placement::Interleave, false)),
    ]
}

/// What PyTorch needs of a schedule: per step what trains, the growths, the continual start.
fn schedule_json(c: &TrainConfig, schedule: &ScheduleSpec) -> serde_json::Value {
    let plan = schedule.plan(c).unwrap();
    let spec = schedule.incremental().unwrap();
    let steps: Vec<serde_json::Value> = (1..=STEPS)
        .map(|s| {
            let info = plan.step(s).unwrap();
            serde_json::json!({"step": s, "phase": info.phase.as_str(), "active_layers": info.trainable.active_layers,
                "first_trainable": info.trainable.first_trainable, "embeddings": info.trainable.embeddings})
        })
        .collect();
    let growths: Vec<serde_json::Value> = plan
        .segments
        .iter()
        .filter(|s| s.stage > 1)
        .filter_map(|s| s.grows.map(|g| (s.first_step, g)))
        .map(|(step, g)| {
            serde_json::json!({"step": step, "from": g.from_layers, "to": g.to_layers,
            "growth": spec.growth.name(), "placement": spec.placement.name()})
        })
        .collect();
    serde_json::json!({
        "continual_start": plan.continual_start(), "rewarmup_steps": spec.rewarmup_steps,
        "reset_optimizer_at_continual": spec.reset_optimizer_at_continual, "total_steps": STEPS,
        "steps": steps, "growths": growths,
    })
}

/// Our run of `schedule` from the fixture's initial weights (a checkpoint at step 0, resumed):
/// its training lines.
fn train_from(inputs: &[(String, Tensor)], c: &TrainConfig, schedule: ScheduleSpec, dir: &Path) -> Vec<MetricsLine> {
    let run = RunDir::new(dir.join("runs/trajectory"));
    std::fs::create_dir_all(run.path()).unwrap();
    let plan = schedule.plan(c).unwrap();
    run.write_header(&RunHeader::new("trajectory", c.clone(), schedule, plan, "cpu".into(), "2.11.0")).unwrap();
    let (vs, _, optimizer) = trainer::engine::init::init_model(c, Device::Cpu).unwrap();
    tch::no_grad(|| {
        for (name, value) in inputs.iter().filter(|(n, _)| !n.starts_with("batch.")) {
            vs.variables()[name].shallow_clone().copy_(value);
        }
    });
    checkpoint::save(&run, &vs, &optimizer, &TrainState::start()).unwrap();
    resume(run.path(), &common::cpu_options(None)).unwrap();
    common::read_metrics(run.path()).into_iter().filter(|l| l.kind == LineKind::Train).collect()
}

/// Our losses, learning rates and gradient norms against PyTorch's `expected` steps; the largest
/// loss gap.
fn compare(what: &str, lines: &[MetricsLine], expected: &[serde_json::Value]) -> f64 {
    assert_eq!(lines.len(), STEPS as usize, "{what}");
    assert_eq!(expected.len(), STEPS as usize, "{what}");
    let mut worst = 0.0f64;
    for (line, want) in lines.iter().zip(expected) {
        let (loss, lr) = (want["loss"].as_f64().unwrap(), want["lr"].as_f64().unwrap());
        assert!(
            (line.lr.unwrap() - lr).abs() < 1e-12,
            "{what} step {}: lr {} vs torch {lr}",
            line.step,
            line.lr.unwrap()
        );
        worst = worst.max((line.loss.unwrap() - loss).abs());
        assert!(
            (line.loss.unwrap() - loss).abs() < 1e-5,
            "{what} step {} ({:?}): loss {} vs torch {loss}",
            line.step,
            line.phase,
            line.loss.unwrap()
        );
        let norm = want["grad_norm"].as_f64().unwrap();
        assert!((line.grad_norm.unwrap() - norm).abs() < 1e-4 * norm.max(1.0), "{what} step {}: grad norm", line.step);
    }
    worst
}

/// Our initial weights and batches for `c`, as the fixture holds them.
fn write_inputs(c: &TrainConfig, path: &Path) {
    let data = TokenDataset::open(&c.data_dir, c.tokenizer.vocab_size()).unwrap();
    let (vs, _, _) = trainer::engine::init::init_model(c, Device::Cpu).unwrap();
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let batches = batches(c, &data);
    let stack = |pick: fn(&(Tensor, Tensor)) -> &Tensor| {
        Tensor::stack(&batches.iter().map(|b| pick(b).shallow_clone()).collect::<Vec<_>>(), 0)
    };
    tensors.push(("batch.x".into(), stack(|b| &b.0)));
    tensors.push(("batch.y".into(), stack(|b| &b.1)));
    Tensor::write_safetensors(&tensors, path).unwrap();
}

fn schedule() -> ScheduleSpec {
    ScheduleSpec::Incremental(IncrementalSpec {
        stages: IncrementalSchedule::even(3),
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
    write_inputs(&c, &fixture("trajectory_inputs.safetensors"));
    let mut schedule = schedule_json(&c, &schedule());
    schedule["config"] = serde_json::to_value(&c).unwrap();
    schedule["real_vocab"] = c.tokenizer.vocab_size().into();
    schedule["micro_batches_per_step"] = 2.into();
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
    let lines = train_from(&inputs, &c, schedule(), dir.path());
    let worst = compare("the 3-stage run", &lines, torch["steps"].as_array().unwrap());
    // The schedule really had every event the test is about.
    let phases: Vec<Phase> = lines.iter().map(|l| l.phase).collect();
    assert!(phases.contains(&Phase::Phase1) && phases.contains(&Phase::Phase2) && phases.contains(&Phase::Continual));
    eprintln!("largest |loss − torch| over {STEPS} steps: {worst:.2e}");
}

#[test]
#[ignore = "writes the growth cases' inputs; run by hand, then make_trajectory_fixture.py trajectory_growth"]
fn make_growth_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let c = config_of(&dataset(dir.path()), 4);
    write_inputs(&c, &fixture("trajectory_growth_inputs.safetensors"));
    let cases: Vec<serde_json::Value> = growth_cases()
        .into_iter()
        .map(|(name, schedule)| {
            let mut case = schedule_json(&c, &schedule);
            case["name"] = name.into();
            case
        })
        .collect();
    let schedule = serde_json::json!({
        "config": c, "real_vocab": c.tokenizer.vocab_size(), "micro_batches_per_step": 2, "cases": cases,
    });
    std::fs::write(fixture("trajectory_growth_schedule.json"), serde_json::to_string_pretty(&schedule).unwrap())
        .unwrap();
}

#[test]
fn every_growth_operator_and_placement_matches_pytorch_step_for_step() {
    let torch: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("trajectory_growth_torch.json")).expect("fixture")).unwrap();
    let inputs: Vec<(String, Tensor)> =
        Tensor::read_safetensors(fixture("trajectory_growth_inputs.safetensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = config_of(&dataset(dir.path()), 4);
    // The fixture's schedules are this build's (a changed plan must regenerate the fixture).
    let committed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("trajectory_growth_schedule.json")).unwrap()).unwrap();
    for (name, schedule) in growth_cases() {
        let case = committed["cases"].as_array().unwrap().iter().find(|k| k["name"] == name).expect(name);
        let ours = schedule_json(&c, &schedule);
        for key in ["steps", "growths", "continual_start"] {
            assert_eq!(case[key], ours[key], "{name}: {key} differs from the fixture's");
        }
        let run = dir.path().join(name);
        let lines = train_from(&inputs, &c, schedule, &run);
        let worst = compare(name, &lines, torch["cases"][name].as_array().expect(name));
        eprintln!("{name}: largest |loss − torch| over {STEPS} steps: {worst:.2e}");
    }
}
