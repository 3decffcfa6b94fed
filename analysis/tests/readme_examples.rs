//! Every `just ...` example in the README's shell blocks and in the justfile's comments works as
//! written: the quick ones (`cost`, `report`, `--list`) run for real through `just`, outputs
//! redirected into a temp directory; the slow ones (training, data, GPU) are checked with
//! `just --dry-run`, which rejects unknown recipes and arguments a recipe does not take.
//!
//! This is what a new user does first; a recipe that passes its own defaults as flags (so that
//! `just report --out x` says "--out cannot be used multiple times") fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// `just ...` commands in the README's ```sh blocks (comments dropped, `a && just b` split).
fn readme_examples(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_shell = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_shell = line.trim() == "```sh";
            continue;
        }
        if !in_shell {
            continue;
        }
        let command = line.split(" #").next().unwrap_or("").trim();
        out.extend(command.split("&&").map(str::trim).filter(|c| c.starts_with("just ")).map(String::from));
    }
    out
}

/// `just ...` commands quoted in backticks in the justfile's comments.
fn justfile_examples(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with('#')) {
        for (i, quoted) in line.split('`').enumerate() {
            if i % 2 == 1 && quoted.starts_with("just ") {
                out.push(quoted.to_string());
            }
        }
    }
    out
}

fn just(args: &[String]) -> std::process::Output {
    Command::new("just")
        .arg("--justfile")
        .arg(repo().join("justfile"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("`just` on PATH (scripts/bootstrap installs it next to cargo)")
}

/// The example with its outputs sent to `scratch` (the examples write reports into the repo).
fn redirected(args: &[&str], scratch: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut iter = args.iter().peekable();
    let mut has_out = false;
    while let Some(arg) = iter.next() {
        out.push(arg.to_string());
        if *arg == "--out" {
            let target = iter.next().expect("--out takes a value");
            out.push(scratch.join(target).display().to_string());
            has_out = true;
        }
    }
    if args.first() == Some(&"report") {
        if !has_out {
            out.extend(["--out".into(), scratch.join("reports").display().to_string()]);
        }
        // `--runs runs` names a user's own runs; the committed study stands in for them here.
        if let Some(i) = out.iter().position(|a| a == "--runs") {
            out[i + 1] = repo().join("reports/runs").display().to_string();
        }
    }
    out
}

#[test]
fn readme_and_justfile_examples_work_as_written() {
    let mut examples = readme_examples(&std::fs::read_to_string(repo().join("README.md")).unwrap());
    examples.extend(justfile_examples(&std::fs::read_to_string(repo().join("justfile")).unwrap()));
    examples.push("just --list".into());
    assert!(examples.len() >= 15, "found only {examples:?}");
    let scratch = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for example in &examples {
        let words: Vec<&str> = example.split_whitespace().skip(1).collect();
        let quick = matches!(words.first(), Some(&"cost") | Some(&"report") | Some(&"--list"));
        let args: Vec<String> = if quick {
            ran += 1;
            redirected(&words, scratch.path())
        } else {
            std::iter::once("--dry-run".to_string()).chain(words.iter().map(|w| w.to_string())).collect()
        };
        let out = just(&args);
        assert!(
            out.status.success(),
            "`{example}` failed (ran as just {}):\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(ran >= 8, "ran {ran} quick examples");
}
