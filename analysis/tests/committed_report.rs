//! The committed reports are reproduced byte for byte from the committed run logs: the fair study
//! (`just report`, into `reports/`) and the paper's protocol (`reports/paper/`).

use std::path::Path;

use analysis::report::{build, ReportOptions};

fn reproduces(reports: &Path) {
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
            "{} differs from the committed one; rerun the report and commit it",
            committed.display()
        );
    }
}

#[test]
fn the_committed_study_report_is_reproduced_byte_for_byte() {
    reproduces(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports"));
}

#[test]
fn the_committed_paper_protocol_report_is_reproduced_byte_for_byte() {
    reproduces(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/paper"));
}
