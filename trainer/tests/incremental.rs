//! The paper's method end to end on tiny models: stages and phases from the cost model, frozen
//! weights that get no gradient, exact resume across stage boundaries,
//! per-stage context and batch growth, and HellaSwag scoring.

use std::path::{Path, PathBuf};

use cost_model::flops::Trainable;
use cost_model::{ComputeUnit, IncrementalSchedule, Phase, Phase1Trainable, Until};
use run_dir::GptShape;
use run_dir::Growth;
use run_dir::TrainConfig;
use run_dir::{IncrementalSpec, ScheduleSpec};
use run_dir::{LineKind, MetricsLine};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use trainer::engine::model::Gpt;
use trainer::run::trainer::{resume, start};

const TEXT: &str = "the cat sat on the mat. ";

mod common;

fn dataset(dir: &Path) -> PathBuf {
    common::text_dataset(dir, TEXT, 300, 1500)
}

fn config(data: &Path, steps: u64) -> TrainConfig {
    let mut c =
        common::tiny_config(data, &[&common::GROWABLE_MODEL[..], &["val_every=8", "checkpoint_every=5"]].concat());
    c.steps = steps;
    c
}

fn incremental(stages: u32) -> IncrementalSpec {
    IncrementalSpec { stages: IncrementalSchedule::even(stages), ..Default::default() }
}

fn train_lines(lines: &[MetricsLine]) -> Vec<&MetricsLine> {
    lines.iter().filter(|l| l.kind == LineKind::Train).collect()
}

#[test]
fn runs_all_stages_then_continual_to_the_equal_compute_step() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let run = dir.path().join("inc4");
    // The paper's compute model, so the step count can be checked by hand.
    let spec = IncrementalSpec { until: Until::EqualCompute(ComputeUnit::PaperUnits), ..incremental(4) };
    start(&run, config(&data, 16), ScheduleSpec::Incremental(spec), &common::cpu_options(None)).unwrap();
    let lines = common::read_metrics(&run);
    let train = train_lines(&lines);
    // Paper formula by hand: 16 + 16 − 16·(3·4+5)/(8·4) = 23.5 → 24 steps (2 per phase, 8 continual).
    assert_eq!(train.len(), 24);
    let expected: Vec<(u32, Phase, u32)> = (1..=4)
        .flat_map(|s| [(s, Phase::Phase1, s), (s, Phase::Phase1, s), (s, Phase::Phase2, s), (s, Phase::Phase2, s)])
        .chain(std::iter::repeat_n((4, Phase::Continual, 4), 8))
        .collect();
    let got: Vec<(u32, Phase, u32)> = train.iter().map(|l| (l.stage, l.phase, l.active_layers)).collect();
    assert_eq!(got, expected);
    // Phase 1 trains the new block only (in stage 1 the embeddings too: they are new as well);
    // phase 2 all active blocks plus embeddings.
    let block = 12 * 32 * 32 + 13 * 32;
    assert_eq!(train[0].trainable_params, train[2].trainable_params);
    assert_eq!(train[4].trainable_params, block);
    assert_eq!(train[6].trainable_params, train[2].trainable_params + block);
    // The compute at the end is the baseline's 16 full steps, within half a step.
    assert!((train[23].paper_units - 16.0).abs() <= 0.5);
    let info = run_dir::RunDir::new(&run).read_header().unwrap();
    assert_eq!(info.plan.equal_compute_in(ComputeUnit::PaperUnits).step, 24);
    assert!(lines.iter().any(|l| l.kind == LineKind::Val && l.phase == Phase::Phase2 && l.stage == 2));
}

#[test]
fn uneven_split_is_recorded_and_every_layer_trains() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let run = dir.path().join("inc3");
    let spec = IncrementalSpec { until: Until::Steps(14), ..incremental(3) };
    start(&run, config(&data, 12), ScheduleSpec::Incremental(spec), &common::cpu_options(None)).unwrap();
    let info = run_dir::RunDir::new(&run).read_header().unwrap();
    assert_eq!(info.plan.layer_split, vec![1, 2, 1]);
    assert!(info.plan.uneven_split());
    let actives: Vec<u32> = train_lines(&common::read_metrics(&run)).iter().map(|l| l.active_layers).collect();
    assert_eq!(actives.first(), Some(&1));
    assert_eq!(actives.last(), Some(&4));
    assert_eq!(actives.len(), 14);
}

#[test]
fn phase_one_touches_no_frozen_gradient() {
    for embeddings in [false, true] {
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let mut model = Gpt::new(&vs, GptShape { layers: 4, heads: 2, d_model: 16, context: 8, vocab: 64 });
        model.apply_trainable(Trainable { active_layers: 4, first_trainable: 2, embeddings });
        let idx = Tensor::randint(64, [2, 8], (Kind::Int64, Device::Cpu));
        trainer::engine::loss::mean_loss(&model, &idx, &idx, 4, 64).backward();
        let mut with_grad: Vec<String> =
            vs.variables().into_iter().filter(|(_, t)| t.grad().defined()).map(|(n, _)| n).collect();
        with_grad.sort();
        let trains = |n: &str| {
            n.starts_with("transformer.h.2.")
                || n.starts_with("transformer.h.3.")
                || (embeddings && (n.contains("wte") || n.contains("wpe") || n.contains("ln_f")))
        };
        let mut expected: Vec<String> = vs.variables().into_keys().filter(|n| trains(n)).collect();
        expected.sort();
        assert_eq!(with_grad, expected, "embeddings trainable: {embeddings}");
    }
}

#[test]
fn resume_across_stage_boundaries_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let mut spec = IncrementalSpec { growth: Growth::Zero, until: Until::Steps(22), ..incremental(2) };
    spec.stages.phase1_trainable = Phase1Trainable::NewAndEmbeddings;
    let schedule = ScheduleSpec::Incremental(spec);
    let straight = dir.path().join("straight");
    start(&straight, config(&data, 16), schedule.clone(), &common::cpu_options(None)).unwrap();
    // Stop at the last step of stage 1 (growth happens on the next), then right before continual
    // (the optimizer reset happens on the next), then finish.
    let resumed = dir.path().join("resumed");
    start(&resumed, config(&data, 16), schedule, &common::cpu_options(Some(8))).unwrap();
    resume(&resumed, &common::cpu_options(Some(16))).unwrap();
    resume(&resumed, &common::cpu_options(None)).unwrap();
    let bits = |run: &Path| -> Vec<(u64, u64)> {
        train_lines(&common::read_metrics(run)).iter().map(|l| (l.step, l.loss.unwrap().to_bits())).collect()
    };
    assert_eq!(bits(&straight), bits(&resumed));
    assert_eq!(bits(&straight).len(), 22);
}

#[test]
fn a_growth_from_no_blocks_logs_its_growth_line_like_every_other() {
    // Bu's zero-layer variant (`--stage-layers 0,4 --stage-ends 0.5 --phase1-share 0`), with no
    // periodic validation: the growth alone asks for the validation sample.
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let mut config = config(&data, 12);
    config.val_every = 0;
    let spec = IncrementalSpec {
        stages: IncrementalSchedule {
            stage_ends: vec![0.5],
            phase1_share: 0.0,
            ..IncrementalSchedule::with_layers(vec![0, 4])
        },
        until: Until::Steps(12),
        allow_growth_in_warmup: true,
        ..Default::default()
    };
    let run = dir.path().join("grow0-4");
    start(&run, config, ScheduleSpec::Incremental(spec), &common::cpu_options(None)).unwrap();
    let lines = common::read_metrics(&run);
    let growth: Vec<&MetricsLine> = lines.iter().filter(|l| l.kind == LineKind::Growth).collect();
    assert_eq!(growth.len(), 1, "{lines:?}");
    let grew = growth[0];
    assert_eq!((grew.step, grew.stage, grew.active_layers), (6, 2, 4));
    assert!(grew.val_loss_before.is_some_and(f64::is_finite) && grew.val_loss.is_some_and(f64::is_finite));
    assert!(!lines.iter().any(|l| l.kind == LineKind::Val), "no periodic validation");
}

#[test]
fn context_and_batch_schedules_are_charged_per_stage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let mut spec = IncrementalSpec { until: Until::Steps(10), ..incremental(2) };
    spec.stages.stage_context = vec![8, 16];
    spec.stages.stage_tokens_per_step = vec![64, 128];
    let run = dir.path().join("grow-context");
    start(&run, config(&data, 8), ScheduleSpec::Incremental(spec), &common::cpu_options(None)).unwrap();
    let tokens: Vec<u64> = train_lines(&common::read_metrics(&run)).iter().map(|l| l.tokens).collect();
    // Stage 1: 4 steps of 64 tokens; stage 2: 4 of 128; continual: 2 of 128.
    let expected: Vec<u64> = (1..=10u64).map(|s| if s <= 4 { 64 * s } else { 256 + 128 * (s - 4) }).collect();
    assert_eq!(tokens, expected);

    let mut bad = incremental(2);
    bad.stages.stage_context = vec![5, 16];
    let err =
        start(&dir.path().join("bad"), config(&data, 8), ScheduleSpec::Incremental(bad), &common::cpu_options(None));
    assert!(format!("{:#}", err.unwrap_err()).contains("context 5"));
}

#[test]
fn hellaswag_picks_the_ending_the_model_was_taught() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let file = dir.path().join("hellaswag.jsonl");
    let lines = [
        r#"{"ctx": "the cat sat on the", "endings": ["dog?", "mat.", "zq!", "xxkv"], "label": 1}"#,
        r#"{"ctx": "the mat. the cat sat", "endings": ["on the mat.", "in a qzx", "up, up!", "k k k k"], "label": 0}"#,
        // 33 tokens with its longest ending: does not fit a context of 32, so it is skipped.
        r#"{"ctx": "the mat. the cat sat", "endings": ["on the mat!!", "in a qzx", "up, up!", "k k k k"], "label": 0}"#,
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut c = config(&data, 120);
    c.set("lr_max=0.01").unwrap();
    c.set("model.context=32").unwrap();
    c.hellaswag_every = 0;
    let run = dir.path().join("hs");
    let options = trainer::run::options::TrainOptions { hellaswag: Some(file.clone()), ..common::cpu_options(None) };
    start(&run, c, ScheduleSpec::baseline(), &options).unwrap();
    // What was evaluated is in the run header, not the config.
    let header = run_dir::RunDir::new(&run).read_header().unwrap();
    let input = header.hellaswag.unwrap();
    assert_eq!((input.path, input.sha256.map(|s| s.len())), (file, Some(64)));
    assert_eq!(input.counts, Some(run_dir::HellaswagCounts { examples: 3, scored: 2, skipped: 1 }));
    assert!(header.kernels.is_some_and(|k| k.threads >= 1 && !k.cpu_capability.is_empty()));
    let lines = common::read_metrics(&run);
    let hs: Vec<&MetricsLine> = lines.iter().filter(|l| l.kind == LineKind::Hellaswag).collect();
    assert_eq!(hs.len(), 1, "evaluated once, at the last step");
    assert_eq!((hs[0].acc_norm, hs[0].acc, hs[0].n), (Some(1.0), Some(1.0), Some(2)));
    assert_eq!(hs[0].n_skipped, Some(1), "the example longer than the context is counted, not truncated");
}
