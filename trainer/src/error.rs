//! The one error type the trainer library adds: "fix your input".

/// An error in what the user asked for (config, data, run directory), as opposed to a failure
/// while training; binaries exit with code 2 for it.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct BadInput(pub anyhow::Error);

/// Mark `e` as bad input.
pub fn bad_input(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(BadInput(e.into()))
}
