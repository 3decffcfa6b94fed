//! Every named growth method end to end on a tiny model: the run ends at equal compute (FLOPs;
//! the plan in paper units too),
//! each expansion logs the validation loss before and after it, and a run stopped right before,
//! right after and inside every expansion resumes to the same losses, bit for bit.

use std::path::Path;

use cost_model::{ComputeUnit, Method, Until};
use run_dir::{IncrementalSpec, LineKind, MetricsLine, RunDir, ScheduleSpec, TrainConfig};
use trainer::run::trainer::{resume, start};

mod common;

const TEXT: &str = "the cat sat on the mat. a dog ran in the fog. ";

/// Six layers (MIDAS grows in six stages), 60 base steps.
fn config(data: &Path) -> TrainConfig {
    let model = ["model.layers=6", "val_every=20", "checkpoint_every=0", "steps=60"];
    common::tiny_config(data, &[&common::GROWABLE_MODEL[1..], &model[..]].concat())
}

fn losses(run: &Path) -> Vec<(u64, u64)> {
    common::read_metrics(run)
        .iter()
        .filter(|l| l.kind == LineKind::Train)
        .map(|l| (l.step, l.loss.unwrap().to_bits()))
        .collect()
}

#[test]
fn every_method_runs_to_equal_compute_and_resumes_across_its_expansions() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::text_dataset(dir.path(), TEXT, 300, 1500);
    for name in ["paper-s3", "one-layer", "gstack-2x", "midas"] {
        let method: Method = name.parse().unwrap();
        let config = config(&data);
        let spec = IncrementalSpec::of_method(method, 6, Until::EqualCompute(ComputeUnit::Flops)).unwrap();
        let schedule = ScheduleSpec::Incremental(spec);
        let straight = dir.path().join(format!("{name}-straight"));
        start(&straight, config.clone(), schedule.clone(), &common::cpu_options(None)).unwrap();

        // Equal compute: the last step's FLOPs are the baseline budget's, within half a full step.
        let header = RunDir::new(&straight).read_header().unwrap();
        let plan = &header.plan;
        let lines = common::read_metrics(&straight);
        let last = lines.iter().rfind(|l| l.kind == LineKind::Train).unwrap();
        assert_eq!(last.step, plan.equal_compute.flops.step, "{name}");
        assert!(
            (last.flops - plan.budget().flops).abs() <= 0.5 * plan.full_step.flops,
            "{name}: {} vs {}",
            last.flops,
            plan.budget().flops
        );

        // In the paper's units too, where they apply (layer-tokens: every method here).
        let in_paper = ScheduleSpec::Incremental(IncrementalSpec {
            until: Until::EqualCompute(ComputeUnit::PaperUnits),
            ..schedule.incremental().unwrap().clone()
        });
        let paper = in_paper.plan(&config).unwrap();
        let spent = paper.cumulative(paper.total_steps()).paper_units;
        assert!(
            (spent - config.steps as f64).abs() <= 0.5,
            "{name}: {spent} paper units for a budget of {}",
            config.steps
        );

        // One growth line per expansion, with the loss before and after it.
        let expansions: Vec<u64> =
            plan.segments.iter().filter(|s| s.stage > 1 && s.grows.is_some()).map(|s| s.first_step).collect();
        let growth: Vec<&MetricsLine> = lines.iter().filter(|l| l.kind == LineKind::Growth).collect();
        assert_eq!(growth.len(), expansions.len(), "{name}");
        for (line, at) in growth.iter().zip(&expansions) {
            assert_eq!(line.step, at - 1, "{name}: the growth line is logged at the step before the first grown one");
            assert!(
                line.val_loss_before.is_some_and(f64::is_finite) && line.val_loss.is_some_and(f64::is_finite),
                "{name}"
            );
        }

        // Stopped right before, right after and inside every expansion, then resumed to the end.
        let mut stops: Vec<u64> =
            expansions.iter().flat_map(|&at| [at - 1, at, at + 2]).filter(|&s| s < last.step).collect();
        stops.dedup();
        let resumed = dir.path().join(format!("{name}-resumed"));
        start(&resumed, config, schedule, &common::cpu_options(Some(stops[0]))).unwrap();
        for &stop in &stops[1..] {
            resume(&resumed, &common::cpu_options(Some(stop))).unwrap();
        }
        resume(&resumed, &common::cpu_options(None)).unwrap();
        assert_eq!(losses(&straight), losses(&resumed), "{name}: resumed at {stops:?}");
        let method_of = |run: &Path| RunDir::new(run).read_header().unwrap().schedule.incremental().unwrap().method;
        assert_eq!(method_of(&resumed), Some(method));
    }
}
