//! Fault injection for the crash tests: `STAGEWISE_FAILPOINT=<point>@<step>` makes the trainer
//! SIGKILL itself at that point of that step, so a test can die exactly mid-step, mid-checkpoint
//! or mid-log-line and check that resuming repairs everything. Unset (always, outside tests), a
//! failpoint costs one environment lookup at start-up.
//!
//! Points: `step` (after backward, before the update), `checkpoint` (model written, optimizer and
//! state not, before the rename), `log` (half a metrics line written, no newline); and
//! `disk-full`, which does not kill: the checkpoint of that step fails as on a full disk (ENOSPC).

use std::sync::OnceLock;

fn armed() -> Option<&'static (String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("STAGEWISE_FAILPOINT").ok()?;
            // `STAGEWISE_FAILPOINT_RANK=r`: only the data-parallel rank `r` (RANK) dies.
            if let Ok(rank) = std::env::var("STAGEWISE_FAILPOINT_RANK") {
                if std::env::var("RANK").unwrap_or_else(|_| "0".into()) != rank {
                    return None;
                }
            }
            let (point, step) = spec.split_once('@')?;
            Some((point.to_string(), step.parse().ok()?))
        })
        .as_ref()
}

/// True when `point` is armed for `step` (to do half of something first).
pub fn armed_at(point: &str, step: u64) -> bool {
    armed().is_some_and(|(p, s)| p == point && *s == step)
}

/// Die now, as `kill -9` would, if `point` is armed for `step`.
pub fn hit(point: &str, step: u64) {
    if armed_at(point, step) {
        // SAFETY: sending a signal to ourselves.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
