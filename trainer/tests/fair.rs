//! What makes comparisons fair, end to end on a small model: WSD runs cooled down at a budget
//! (cooldown branches), re-warmup and moment resets at schedule events, growth lines, and the
//! equal-compute target in FLOPs.

use std::path::{Path, PathBuf};

use cost_model::{ComputeUnit, IncrementalSchedule, Phase, Until};
use run_dir::config::LrKind;
use run_dir::{
    Growth, GrowthOptimizer, GrowthRewarmup, IncrementalSpec, LineKind, MetricsLine, RunDir, ScheduleSpec, TrainConfig,
};
use trainer::run::trainer::{cooldown, resume, start};

mod common;

fn dataset(dir: &Path) -> PathBuf {
    common::text_dataset(dir, "the cat sat on the mat. a dog ran. ", 200, 1500)
}

/// A 4-layer model, 128 tokens a step, WSD over `steps` base steps, validation every 5 steps.
fn config(data: &Path, steps: u64) -> TrainConfig {
    let mut c = common::tiny_config(
        data,
        &[&common::GROWABLE_MODEL[..], &["val_every=5", "checkpoint_every=0", "lr_schedule=wsd"]].concat(),
    );
    c.steps = steps;
    c
}

fn lines_of(run: &Path, kind: LineKind) -> Vec<MetricsLine> {
    common::read_metrics(run).into_iter().filter(|l| l.kind == kind).collect()
}

fn incremental(stages: u32, until: Until) -> IncrementalSpec {
    IncrementalSpec { stages: IncrementalSchedule::even(stages), until, ..Default::default() }
}

#[test]
fn a_cooldown_branch_is_the_run_annealed_at_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let mut c = config(&data, 20);
    c.cooldown_budgets = vec![0.5, 1.0];
    let run = dir.path().join("base");
    start(&run, c.clone(), ScheduleSpec::baseline(), &common::cpu_options(None)).unwrap();
    // Branch points: budget 0.5 ends at step 10 and starts at 10 − round(0.2·10) = 8; budget 1
    // ends at 20 and starts at 16. The run saved checkpoints there (and at its end).
    let saved: Vec<u64> = lines_of(&run, LineKind::Checkpoint).iter().map(|l| l.step).collect();
    assert_eq!(saved, vec![8, 16, 20]);

    // At the run's own end the branch is the run's own decay: the same steps, bit for bit.
    cooldown(&run, 1.0, ComputeUnit::Flops, &common::cpu_options(None)).unwrap();
    let branch = RunDir::new(&run).cooldown(ComputeUnit::Flops, 1.0);
    let header = branch.read_header().unwrap();
    let b = header.branch.as_ref().unwrap();
    assert_eq!((b.from_step, b.to_step, b.parent.as_str()), (16, 20, "base"));
    let bits = |lines: &[MetricsLine]| -> Vec<(u64, u64, u64)> {
        lines.iter().map(|l| (l.step, l.loss.unwrap().to_bits(), l.lr.unwrap().to_bits())).collect()
    };
    let main = lines_of(&run, LineKind::Train);
    assert_eq!(bits(&lines_of(branch.path(), LineKind::Train)), bits(&main[16..]));

    // Half the budget: steps 9 and 10, the learning rate falling to lr_min at step 10.
    let summary = cooldown(&run, 0.5, ComputeUnit::Flops, &common::cpu_options(None)).unwrap();
    assert_eq!(summary.last_step, 10);
    let half = RunDir::new(&run).cooldown(ComputeUnit::Flops, 0.5);
    let train = lines_of(half.path(), LineKind::Train);
    assert_eq!(train.iter().map(|l| l.step).collect::<Vec<_>>(), vec![9, 10]);
    let (lr_max, lr_min) = (c.lr_max, c.lr_min);
    assert_eq!(train[1].lr, Some(lr_min), "the branch ends annealed");
    let at_9 = lr_min + (lr_max - lr_min) * (1.0 - 0.5f64.sqrt());
    assert!((train[0].lr.unwrap() - at_9).abs() < 1e-15);
    assert_eq!(main[8].lr, Some(lr_max), "the run itself is still at lr_max there");
    let vals = lines_of(half.path(), LineKind::Val);
    assert_eq!(vals.last().map(|l| l.step), Some(10), "a branch ends with a validation");
    // Compute and tokens continue the run's: step 10 of the branch has spent half the budget.
    let budget = RunDir::new(&run).read_header().unwrap().plan.budget();
    assert!((train[1].flops - 0.5 * budget.flops).abs() < 1e-6 * budget.flops);
}

#[test]
fn a_branch_resumes_after_a_crash_and_bad_branches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let mut c = config(&data, 20);
    c.cooldown_budgets = vec![0.5];
    let run = dir.path().join("base");
    start(&run, c.clone(), ScheduleSpec::baseline(), &common::cpu_options(None)).unwrap();
    let straight = dir.path().join("straight");
    start(&straight, c.clone(), ScheduleSpec::baseline(), &common::cpu_options(None)).unwrap();
    cooldown(&straight, 0.5, ComputeUnit::Flops, &common::cpu_options(None)).unwrap();
    // Stopped after its first step (no checkpoint of its own yet at step 8 → it has one at 9), then resumed.
    cooldown(&run, 0.5, ComputeUnit::Flops, &common::cpu_options(Some(9))).unwrap();
    let branch = RunDir::new(&run).cooldown(ComputeUnit::Flops, 0.5);
    resume(branch.path(), &common::cpu_options(None)).unwrap();
    let losses =
        |p: &Path| -> Vec<u64> { lines_of(p, LineKind::Train).iter().map(|l| l.loss.unwrap().to_bits()).collect() };
    let reference = RunDir::new(&straight).cooldown(ComputeUnit::Flops, 0.5);
    assert_eq!(losses(branch.path()), losses(reference.path()));

    let refused = |budget: f64, needle: &str| {
        let err = cooldown(&run, budget, ComputeUnit::Flops, &common::cpu_options(None)).unwrap_err();
        assert!(err.downcast_ref::<trainer::error::BadInput>().is_some(), "{err:#}");
        assert!(format!("{err:#}").contains(needle), "budget {budget}: {err:#} should mention {needle}");
    };
    refused(0.5, "--resume"); // exists
    refused(2.0, "--budget"); // past the run's end
    refused(0.75, "--cooldown-budgets"); // no checkpoint at its branch point
    let cosine = dir.path().join("cosine");
    let mut cos = c.clone();
    cos.lr_schedule = LrKind::Cosine;
    cos.cooldown_budgets.clear();
    start(&cosine, cos, ScheduleSpec::baseline(), &common::cpu_options(None)).unwrap();
    let err = cooldown(&cosine, 1.0, ComputeUnit::Flops, &common::cpu_options(None)).unwrap_err();
    assert!(format!("{err:#}").contains("wsd"), "{err:#}");
}

#[test]
fn rewarmup_ramps_the_rate_after_the_reset_and_zero_growth_keeps_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let spec = IncrementalSpec { growth: Growth::Zero, rewarmup_steps: 4, ..incremental(2, Until::Steps(24)) };
    let run = dir.path().join("inc");
    start(&run, config(&data, 16), ScheduleSpec::Incremental(spec), &common::cpu_options(None)).unwrap();
    let header = RunDir::new(&run).read_header().unwrap();
    let json = std::fs::read_to_string(run.join("run.json")).unwrap();
    assert!(json.contains("\"rewarmup_steps\": 4") && json.contains("\"reset_moments_on_unfreeze\": false"));
    let curve = header.config.lr_curve(&header.plan);
    let train = lines_of(&run, LineKind::Train);
    let continual = train.iter().position(|l| l.phase == Phase::Continual).unwrap();
    assert_eq!(train[continual].step, 17);
    for (i, line) in train[continual..continual + 5].iter().enumerate() {
        let ramp = ((i + 1) as f64 / 4.0).min(1.0);
        assert!((line.lr.unwrap() - curve.lr(line.step) * ramp).abs() < 1e-15, "step {}", line.step);
    }
    // Zero growth adds identity blocks: the validation loss is the same just before and after.
    let growth = lines_of(&run, LineKind::Growth);
    assert_eq!(growth.len(), 1);
    let g = &growth[0];
    assert_eq!((g.step, g.active_layers), (8, 4));
    assert_eq!(g.val_loss_before, g.val_loss, "zero growth changed the function");
}

#[test]
fn random_growth_changes_the_loss_and_moments_reset_on_unfreeze() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let step_count = |run: &Path, at: u64, name: &str| -> i64 {
        let file = run.join(format!("checkpoints/step_{at:08}/optimizer.safetensors"));
        let tensors = tch::Tensor::read_safetensors(file).unwrap();
        tensors.into_iter().find(|(n, _)| n == &format!("{name}.step")).unwrap().1.int64_value(&[])
    };
    let mut counts = Vec::new();
    for reset in [false, true] {
        let mut c = config(&data, 16);
        c.checkpoint_every = 1;
        // Step 13's checkpoint is read after the run: keep every one.
        c.keep_checkpoints = 16;
        let spec = IncrementalSpec { reset_moments_on_unfreeze: reset, ..incremental(2, Until::Steps(16)) };
        let run = dir.path().join(format!("reset-{reset}"));
        start(&run, c, ScheduleSpec::Incremental(spec), &common::cpu_options(None)).unwrap();
        let g = &lines_of(&run, LineKind::Growth)[0];
        assert_ne!(g.val_loss_before, g.val_loss, "random growth adds working blocks");
        // Stage 2 (steps 9-16): phase 1 trains blocks 2-3 (steps 9-12), phase 2 everything. Block
        // 0 trained steps 1-8, sat frozen through 9-12, and trains again from 13.
        counts.push(step_count(&run, 13, "transformer.h.0.attn.c_attn.weight"));
    }
    assert_eq!(counts, vec![9, 1], "without the reset block 0 keeps its 8 updates; with it, it starts afresh");
}

#[test]
fn equal_compute_counts_flops_by_default() {
    let spec = IncrementalSpec::default();
    assert_eq!(spec.until, Until::EqualCompute(ComputeUnit::Flops));
    // With a big LM head (vocab 320 vs d = 32) phase-1 steps are relatively dearer in FLOPs than
    // in layer counts, so the FLOP-equal run is shorter.
    let c = config(Path::new("unused"), 16);
    let schedule = ScheduleSpec::Incremental(incremental(4, Until::EqualCompute(ComputeUnit::Flops)));
    let flops = schedule.plan(&c).unwrap();
    let paper =
        ScheduleSpec::Incremental(incremental(4, Until::EqualCompute(ComputeUnit::PaperUnits))).plan(&c).unwrap();
    assert_eq!(flops.total_steps(), flops.equal_compute.flops.step);
    assert_ne!(flops.total_steps(), paper.total_steps());
}

#[test]
fn gstack_restarts_adamw_and_warms_up_after_growing_and_every_run_anneals_over_its_last_fifth_of_flops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let mut c = config(&data, 24);
    c.warmup_steps = 4;
    c.checkpoint_every = 1;
    c.keep_checkpoints = 64;
    let method = "gstack-2x".parse::<cost_model::Method>().unwrap();
    let spec = IncrementalSpec::of_method(method, 4, Until::EqualCompute(ComputeUnit::Flops)).unwrap();
    assert_eq!((spec.growth_optimizer, spec.growth_rewarmup), (GrowthOptimizer::Reset, GrowthRewarmup::Warmup));
    let run = dir.path().join("gstack");
    start(&run, c, ScheduleSpec::Incremental(spec), &common::cpu_options(None)).unwrap();
    let header = RunDir::new(&run).read_header().unwrap();
    let grown = header.plan.segments[1].first_step;
    let total = header.plan.total_steps();
    // Growth at a quarter of the run, then a fresh AdamW: a parameter's step count restarts there.
    assert_eq!(grown, cost_model::round_half_up(0.25 * total as f64) + 1);
    let steps_of = |at: u64| -> i64 {
        let file = run.join(format!("checkpoints/step_{at:08}/optimizer.safetensors"));
        let tensors = tch::Tensor::read_safetensors(file).unwrap();
        tensors.into_iter().find(|(n, _)| n == "transformer.h.0.attn.c_attn.weight.step").unwrap().1.int64_value(&[])
    };
    assert_eq!(steps_of(grown - 1), (grown - 1) as i64);
    assert_eq!(steps_of(grown + 2), 3, "a fresh AdamW at the growth");
    // The rate ramps again over the run's warmup from the growth.
    let lr = |step: u64| lines_of(&run, LineKind::Train).iter().find(|l| l.step == step).unwrap().lr.unwrap();
    let peak = header.config.lr_max;
    for i in 0..4 {
        assert!((lr(grown + i) - peak * (i + 1) as f64 / 4.0).abs() < 1e-12, "step {}", grown + i);
    }
    // The decay covers the last 20% of the run's FLOPs: it starts where 80% of them are spent
    // (no earlier than the last 20% of its steps would: its cheap steps come first).
    let plan = &header.plan;
    let flops = plan.cumulative(total).flops;
    let first_decaying = (1..=total).find(|&s| lr(s) < peak && s > grown + 4).unwrap();
    let at = plan.step_at_compute(ComputeUnit::Flops, 0.8 * flops).unwrap().exact;
    assert_eq!(first_decaying, total - cost_model::round_half_up(total as f64 - at) + 1);
    assert!(first_decaying > total - cost_model::round_half_up(0.2 * total as f64), "{first_decaying}");
}
