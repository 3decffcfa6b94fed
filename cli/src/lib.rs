//! # stagewise_cli
//!
//! What the workspace's binaries (`cost`, `train`, `report`, `scaling`) share, kept out of the
//! libraries (as ripgrep keeps its command-line plumbing in `grep-cli`): one-line errors and exit
//! codes, argument parsing, and numbers printed for people ([`thousands`]).
//!
//! Every binary exits 0 on success, 2 on bad input (one line on stderr naming the problem and the
//! fix), 1 on any other failure. clap's own multi-line usage errors are folded into one line.

use std::process::ExitCode;

/// Exit code for bad input.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for any other failure.
pub const EXIT_FAILURE: u8 = 1;

/// A count with thousands separators, as the tables print it: 15729 → "15,729".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An error with the exit code it should end the process with.
#[derive(Debug)]
pub struct CliError {
    pub exit_code: u8,
    pub error: anyhow::Error,
}

impl CliError {
    /// Bad input: exit code 2.
    pub fn bad_input(error: impl Into<anyhow::Error>) -> Self {
        CliError { exit_code: EXIT_BAD_INPUT, error: error.into() }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        CliError { exit_code: EXIT_FAILURE, error }
    }
}

/// Parse arguments; print help/version as clap does, fold a usage error into one line, exit 2.
pub fn parse_args<T: clap::Parser>(program: &str) -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version: print as usual, exit 0.
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("{program}: {}", one_line_clap_error(&e));
            std::process::exit(i32::from(EXIT_BAD_INPUT));
        }
    }
}

/// The first line of a clap error without its `error: ` prefix, plus the `--help` hint.
pub fn one_line_clap_error(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
    format!("{} (see --help)", first.trim_start_matches("error: ").trim())
}

/// Print an error as one line (its context chain joined by `: `) and turn it into an exit code.
pub fn report(program: &str, result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError { exit_code, error }) => {
            let chain: Vec<String> = error.chain().map(|c| c.to_string().replace('\n', " ")).collect();
            eprintln!("{program}: {}", chain.join(": "));
            ExitCode::from(exit_code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_groups_digits_in_threes() {
        let cases = [(0, "0"), (999, "999"), (1_000, "1,000"), (15_729, "15,729"), (124_475_904, "124,475,904")];
        for (n, text) in cases {
            assert_eq!(thousands(n), text);
        }
    }
}
