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

/// Progress of `train data`: bytes read of the total, documents and tokens so far, ETA; a bar on
/// a terminal, a plain line about every 10% (and at the end) otherwise.
pub struct DataProgress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    quiet: bool,
    next_line: std::cell::Cell<u64>,
}

impl DataProgress {
    /// Progress over `total` bytes of input; `quiet` prints nothing.
    pub fn new(total: u64, quiet: bool) -> DataProgress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {bytes}/{total_bytes}  {msg}  eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        DataProgress { bar, total, started: Instant::now(), quiet, next_line: std::cell::Cell::new(0) }
    }

    /// `bytes` of the input read, `documents` and `tokens` made of them.
    pub fn update(&self, bytes: u64, documents: u64, tokens: u64) {
        let message = format!("{documents} documents, {tokens} tokens");
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
            bar.set_message(message);
        } else if !self.quiet && bytes >= self.next_line.get() {
            let seconds = self.started.elapsed().as_secs_f64();
            let eta = seconds / bytes.max(1) as f64 * self.total.saturating_sub(bytes) as f64;
            let percent = 100.0 * bytes as f64 / self.total.max(1) as f64;
            eprintln!("data: {percent:.0}% of {} bytes, {message}, eta {}", self.total, format_seconds(eta));
            self.next_line.set(bytes + (self.total / 10).max(1));
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Where a whole study is: runs and branches finished of the total, the ones training now (arm
/// and seed in their names), elapsed, and an ETA from the plan's FLOPs of what is left at the
/// rate measured so far. A bar on a terminal; otherwise a plain line whenever a run finishes (at
/// most one every 10 s) and every 5 minutes.
pub struct StudyProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
    /// Every run and branch directory with its planned FLOPs, and whether it was seen finished.
    dirs: Vec<(std::path::PathBuf, f64, bool)>,
    /// FLOPs already trained when this invocation started (not counted in its rate).
    at_start: f64,
    last_line: Option<(Instant, usize)>,
}

impl StudyProgress {
    /// Progress of the study whose run directories and FLOPs are `planned` under `runs_dir`.
    pub fn new(runs_dir: &std::path::Path, planned: &[(String, f64)], quiet: bool) -> StudyProgress {
        let dirs: Vec<(std::path::PathBuf, f64, bool)> =
            planned.iter().map(|(d, f)| (runs_dir.join(d), *f, false)).collect();
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(dirs.len() as u64);
            bar.set_style(
                ProgressStyle::with_template("study {bar:30.cyan/blue} {pos}/{len} runs and branches  {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        let mut progress = StudyProgress { bar, quiet, started: Instant::now(), dirs, at_start: 0.0, last_line: None };
        progress.refresh();
        progress.at_start = progress.done_flops();
        progress
    }

    fn refresh(&mut self) {
        for (dir, _, done) in self.dirs.iter_mut().filter(|(_, _, done)| !*done) {
            *done = run_dir::RunDir::new(&*dir).is_finished();
        }
    }

    fn done_flops(&self) -> f64 {
        self.dirs.iter().filter(|(_, _, d)| *d).map(|(_, f, _)| f).sum()
    }

    /// Look again; `running` names the runs training now.
    pub fn tick(&mut self, running: &[String]) {
        self.refresh();
        let done = self.dirs.iter().filter(|(_, _, d)| *d).count();
        let (total_flops, done_flops) = (self.dirs.iter().map(|(_, f, _)| f).sum::<f64>(), self.done_flops());
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = (done_flops - self.at_start) / seconds.max(1e-9);
        let eta = match rate > 0.0 {
            true => format_seconds((total_flops - done_flops) / rate),
            false => "after the first run".into(),
        };
        let now = match running.is_empty() {
            true => String::new(),
            false => format!("now {}; ", running.join(", ")),
        };
        let message = format!("{now}{} so far, eta {eta}", format_seconds(seconds));
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(message);
            return;
        }
        let due = match self.last_line {
            None => true,
            Some((at, count)) => (count != done && at.elapsed().as_secs() >= 10) || at.elapsed().as_secs() >= 300,
        };
        if !self.quiet && due {
            eprintln!("study: {done}/{} runs and branches finished; {message}", self.dirs.len());
            self.last_line = Some((Instant::now(), done));
        }
    }

    /// A line that should not disturb the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if !self.quiet => eprintln!("{line}"),
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
