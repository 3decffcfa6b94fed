//! The `cost` binary as a user sees it: the paper's numbers, JSON, and one-line errors.

use std::process::{Command, Output};

fn cost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cost")).args(args).output().expect("run cost")
}

#[test]
fn prints_paper_equal_compute_steps_for_4_8_12_stages() {
    for (stages, expected) in [("4", "14,688"), ("8", "15,469"), ("12", "15,729")] {
        let out = cost(&["--stages", stages]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let closed_form = text.lines().find(|l| l.contains("closed form")).expect("closed-form line");
        assert!(closed_form.contains(expected), "--stages {stages}: {closed_form}");
        assert!(text.contains("flops model"), "FLOP model printed beside the paper model");
    }
}

#[test]
fn json_reports_equal_compute_step_and_unrounded_value() {
    let out = cost(&["--stages", "12", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["equal_compute_step"], 15_729);
    assert_eq!(v["stages"].as_array().unwrap().len(), 12);
    let closed = v["closed_form_equal_compute_step_exact"].as_f64().unwrap();
    assert!((closed - 15_729.166_7).abs() < 1e-3);

    let flops: serde_json::Value =
        serde_json::from_slice(&cost(&["--stages", "4", "--model", "flops", "--json"]).stdout).unwrap();
    assert_eq!(flops["model"], "flops");
    assert_eq!(flops["equal_compute_step"], flops["equal_compute"]["flops"]["step"]);
}

#[test]
fn errors_name_the_field_and_this_binarys_flag() {
    for (args, field, flag) in [
        (&["--base-steps", "2", "--stages", "4"][..], "base_steps", "--base-steps"),
        (&["--d-model", "0"][..], "d_model", "--d-model"),
        (&["--r", "-1"][..], "backward_ratio", "--backward-ratio"),
        (&["--stages", "4", "--stage-context", "1,2"][..], "stage_context", "--stage-context"),
    ] {
        let err = String::from_utf8(cost(args).stderr).unwrap();
        assert!(err.contains(field) && err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn old_flag_spellings_print_what_the_new_ones_print() {
    let old = cost(&["--stages", "4", "--r", "2", "--p", "0.3", "--model", "flops", "--json"]);
    let new =
        cost(&["--stages", "4", "--backward-ratio", "2", "--phase1-share", "0.3", "--compute-unit", "flops", "--json"]);
    assert!(old.status.success());
    assert_eq!(old.stdout, new.stdout);
}

#[test]
fn uneven_split_is_stated() {
    let text = String::from_utf8(cost(&["--stages", "8"]).stdout).unwrap();
    assert!(text.contains("uneven split: stages add 2,1,2,1,2,1,2,1 layers"), "{text}");
}

#[test]
fn bad_input_gets_one_line_and_exit_code_2() {
    let cases: &[&[&str]] = &[
        &["--stages", "0"],
        &["--stages", "13"],
        &["--stages", "abc"],
        &["--r", "-1"],
        &["--p", "-0.1"],
        &["--p", "1.5"],
        &["--stage-layers", "1,11"],
        &["--stage-layers", "3,3,12"],
        &["--stage-ends", "0.8"],
        &["--stage-layers", "1,12", "--stage-ends", "1.5"],
        &["--method", "nope"],
        &["--method", "midas", "--layers", "4"],
        &["--method", "midas", "--stages", "3"],
        &["--incremental-share", "0"],
        &["--base-steps", "2", "--stages", "4"],
        &["--d-model", "0"],
        &["--calibrate", "50,10"],
        &["--calibrate", "x,10"],
        &["--no-such-flag"],
    ];
    for args in cases {
        let out = cost(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("cost: "), "{args:?}: {err}");
    }
}

#[test]
fn data_parallel_prediction_with_the_table_and_its_bad_inputs() {
    let out = cost(&["--stages", "4", "--world", "8"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("over 8 ranks: 124,475,904 parameters") && text.contains("1.94 ms a step"), "{text}");
    for args in [&["--world", "0"][..], &["--world", "8", "--json"], &["--world", "8", "--link-gb-per-s", "0"]] {
        let out = cost(args);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}
