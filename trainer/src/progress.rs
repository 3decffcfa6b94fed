//! Progress on long work: an indicatif bar on a terminal, plain lines otherwise (logs, CI).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports training progress.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    start_step: u64,
    started: Instant,
    every: u64,
}

impl Progress {
    /// Progress over steps `start_step+1..=total`; `quiet` prints nothing.
    pub fn new(total: u64, start_step: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} steps  {msg}  eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_position(start_step);
            bar
        });
        let every = if quiet { u64::MAX } else { (total / 20).max(1) };
        Progress { bar, total, start_step, started: Instant::now(), every }
    }

    /// Report step `step` with a message (loss, tokens/s, ...).
    pub fn step(&self, step: u64, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            bar.set_message(message.to_string());
        } else if self.every != u64::MAX && (step % self.every == 0 || step == self.total) {
            let done = (step - self.start_step) as f64;
            let left = (self.total - step) as f64;
            let eta = self.started.elapsed().as_secs_f64() / done.max(1.0) * left;
            eprintln!("step {step}/{}  {message}  eta {}", self.total, format_seconds(eta));
        }
    }

    /// A line that should not disturb the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if self.every != u64::MAX => eprintln!("{line}"),
            None => {}
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// 83.2 → "1m23s".
pub fn format_seconds(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
