//! `just report` reproduces the committed report byte for byte from the committed run logs (some
//! written before run files were versioned: they are read through the format upgrade).

use std::path::Path;

use analysis::report::{build, ReportOptions};

#[test]
fn the_committed_report_is_reproduced_byte_for_byte() {
    let reports = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports");
    let out = tempfile::tempdir().unwrap();
    let options = ReportOptions {
        runs_dir: reports.join("runs"),
        out_dir: out.path().to_path_buf(),
        baseline: None,
        budget_step: None,
    };
    let report = build(&options).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let mut written: Vec<_> = std::fs::read_dir(out.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    written.sort();
    assert!(written.len() >= 5, "{written:?}");
    for name in written {
        let (ours, committed) = (out.path().join(&name), reports.join(&name));
        assert!(
            std::fs::read(&ours).unwrap() == std::fs::read(&committed).unwrap_or_default(),
            "{} differs from the committed one; rerun `just report` and commit it",
            committed.display()
        );
    }
}
