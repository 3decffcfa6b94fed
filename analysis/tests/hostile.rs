//! The log reader and the report CLI on hostile input: skipped lines, one-line errors, exit 2.

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use run_dir::metrics::parse as parse_metrics;

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn metrics_reader_never_panics(text in "(.{0,120}\n){0,8}.{0,60}") {
        let (lines, skipped) = parse_metrics(Path::new("m.jsonl"), &text);
        let nonempty = text.lines().filter(|l| !l.trim().is_empty()).count();
        prop_assert_eq!(lines.len() + skipped.len(), nonempty);
    }
}

#[test]
fn report_bad_input_gets_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    std::fs::write(dir.path().join("a-file"), "x").unwrap();
    let cases: &[&[&str]] = &[
        &["--runs", "nowhere"],
        &["--runs", "empty"],
        &["--budget", "abc"],
        &["--bogus"],
        &["--runs", "empty", "--out", "a-file/out"],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_report")).args(*args).current_dir(dir.path()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("report: "), "{args:?}: {err}");
    }
}
