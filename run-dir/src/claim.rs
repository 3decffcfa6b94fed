//! A study worker's claim on one run, in a runs directory that workers on several machines may
//! share (a network file system included, where `flock` cannot be trusted): a file created
//! exclusively (`O_EXCL`), naming the holder's host, process and worker, whose modification time
//! a heartbeat thread refreshes while the claim is held. A claim whose holder is gone is *stale*
//! and the next worker takes it over, saying so in one line: on the holder's own host as soon as
//! its process no longer runs, from any other host once it has missed its heartbeat for the
//! timeout (`STAGEWISE_CLAIM_TIMEOUT` seconds, default 120; hosts' clocks must agree to well
//! within it, as NTP keeps them).
//!
//! A takeover is itself exclusive (a `<claim>.takeover` file, stale after the same timeout), so
//! two workers that find one stale claim never both take it.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How long a claim lives without a heartbeat when nobody sets `STAGEWISE_CLAIM_TIMEOUT`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The claim timeout of this process: `STAGEWISE_CLAIM_TIMEOUT` (seconds, > 0) or the default.
pub fn timeout_from_env() -> Duration {
    std::env::var("STAGEWISE_CLAIM_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64)
}

/// Who holds a claim (the claim file's contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// The study worker's number (`train study --jobs N`: 0..N).
    pub worker: usize,
    /// When the claim was made (RFC 3339, UTC).
    pub since: String,
}

impl Holder {
    /// This process, as worker `worker`.
    pub fn me(worker: usize) -> Holder {
        Holder {
            host: host_name(),
            pid: std::process::id(),
            worker,
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    fn describe(&self) -> String {
        format!("worker {} (pid {} on {})", self.worker, self.pid, self.host)
    }
}

/// This machine's host name (the kernel's: a UTS namespace has its own).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into a buffer we own.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown-host".into()
    }
}

/// True unless process `pid` certainly does not exist on this host.
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists (and whether we may signal it).
    let status = unsafe { libc::kill(pid as libc::pid_t, 0) };
    status == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A claim this worker holds; its heartbeat stops and its file goes when it is dropped.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.heartbeat.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What trying to claim a run gave.
#[derive(Debug)]
pub enum Attempt {
    /// Ours now; `took_over` says from whom and why, when the claim was another's stale one.
    Held { claim: Claim, took_over: Option<String> },
    /// Another worker holds it and is alive.
    Busy(Holder),
}

/// Why a claim is stale, in words, or `None` while its holder lives.
fn staleness(holder: Option<&Holder>, age: Duration, timeout: Duration, here: &str) -> Option<String> {
    if let Some(h) = holder.filter(|h| h.host == here) {
        if !alive(h.pid) {
            return Some("its process is gone".into());
        }
    }
    (age > timeout).then(|| format!("no heartbeat for {:.0} s", age.as_secs_f64()))
}

fn age(path: &Path) -> std::io::Result<Duration> {
    let modified = std::fs::metadata(path)?.modified()?;
    Ok(SystemTime::now().duration_since(modified).unwrap_or(Duration::ZERO))
}

fn read_holder(path: &Path) -> Option<Holder> {
    std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok())
}

/// Create `path` holding `me` (claimed now), exclusively; `Ok(None)` when it exists already.
fn create(path: &Path, me: &Holder) -> std::io::Result<Option<File>> {
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(mut file) => {
            let now =
                Holder { since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), ..me.clone() };
            file.write_all(serde_json::to_string(&now).expect("plain data").as_bytes())?;
            file.sync_all()?;
            Ok(Some(file))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(e),
    }
}

/// Try to claim the run `name` in the claims directory `dir` for `me`: created when free, taken
/// over when stale (see the module), else the live holder.
pub fn try_claim(dir: &Path, name: &str, me: &Holder, timeout: Duration) -> std::io::Result<Attempt> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.claim"));
    let mut took_over = None;
    for _ in 0..2 {
        if let Some(file) = create(&path, me)? {
            return Ok(Attempt::Held { claim: Claim::hold(path, file, timeout), took_over });
        }
        let holder = read_holder(&path);
        let age = match age(&path) {
            Ok(age) => age,
            Err(e) if e.kind() == ErrorKind::NotFound => continue, // released meanwhile
            Err(e) => return Err(e),
        };
        let Some(why) = staleness(holder.as_ref(), age, timeout, &me.host) else {
            // Being written (no contents yet) or alive.
            return Ok(Attempt::Busy(holder.unwrap_or_else(|| Holder { host: "?".into(), ..me.clone() })));
        };
        // Take it over, exclusively: whoever creates the takeover file does it.
        let takeover = dir.join(format!("{name}.claim.takeover"));
        if create(&takeover, me)?.is_none() {
            if age_or_zero(&takeover) <= timeout {
                return Ok(Attempt::Busy(holder.unwrap_or_else(|| me.clone())));
            }
            // A takeover that died half-way: its file is stale too.
            let _ = std::fs::remove_file(&takeover);
            continue;
        }
        // Still the same stale claim? (Another worker may have taken it over and released it.)
        if read_holder(&path) == holder {
            let _ = std::fs::remove_file(&path);
            let who = holder.as_ref().map_or("a worker (unreadable claim)".into(), Holder::describe);
            took_over = Some(format!("the claim of {who} is stale ({why}); taking it over"));
        }
        let _ = std::fs::remove_file(&takeover);
    }
    match create(&path, me)? {
        Some(file) => Ok(Attempt::Held { claim: Claim::hold(path, file, timeout), took_over }),
        None => Ok(Attempt::Busy(read_holder(&path).unwrap_or_else(|| me.clone()))),
    }
}

fn age_or_zero(path: &Path) -> Duration {
    age(path).unwrap_or(Duration::ZERO)
}

impl Claim {
    /// Hold the claim file `path` (open as `file`), refreshing its time every quarter timeout.
    fn hold(path: PathBuf, file: File, timeout: Duration) -> Claim {
        let stop = Arc::new(AtomicBool::new(false));
        let beat = (timeout / 4).max(Duration::from_millis(200));
        let heartbeat = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("claim-heartbeat".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::park_timeout(beat);
                        if !stop.load(Ordering::SeqCst) {
                            let _ = file.set_modified(SystemTime::now());
                        }
                    }
                })
                .ok()
        };
        Claim { path, stop, heartbeat }
    }

    /// The claim file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(worker: usize) -> Holder {
        Holder { worker, ..Holder::me(worker) }
    }

    #[test]
    fn a_claim_is_exclusive_while_held_and_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(60);
        let Attempt::Held { claim, took_over: None } = try_claim(dir.path(), "run-a", &holder(0), timeout).unwrap()
        else {
            panic!("a free run is claimed")
        };
        assert!(
            matches!(try_claim(dir.path(), "run-a", &holder(1), timeout).unwrap(), Attempt::Busy(h) if h.worker == 0)
        );
        assert!(matches!(try_claim(dir.path(), "run-b", &holder(1), timeout).unwrap(), Attempt::Held { .. }));
        drop(claim);
        assert!(!dir.path().join("run-a.claim").exists());
        assert!(matches!(
            try_claim(dir.path(), "run-a", &holder(1), timeout).unwrap(),
            Attempt::Held { took_over: None, .. }
        ));
    }

    #[test]
    fn a_dead_holders_claim_is_taken_over_at_once_on_its_host_and_after_the_timeout_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(60);
        // A process that has exited: its pid no longer runs (the kernel does not reuse it at once).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let gone = Holder { pid: dead, ..holder(3) };
        std::fs::write(dir.path().join("r.claim"), serde_json::to_string(&gone).unwrap()).unwrap();
        let Attempt::Held { took_over: Some(line), .. } = try_claim(dir.path(), "r", &holder(0), timeout).unwrap()
        else {
            panic!("a dead process's claim on this host is stale")
        };
        assert!(line.contains("worker 3") && line.contains("its process is gone"), "{line}");

        // Another host's claim: alive as far as we can tell until its heartbeat is older than the timeout.
        let elsewhere = Holder { host: "node-b".into(), pid: 1, ..holder(5) };
        std::fs::write(dir.path().join("s.claim"), serde_json::to_string(&elsewhere).unwrap()).unwrap();
        assert!(
            matches!(try_claim(dir.path(), "s", &holder(0), timeout).unwrap(), Attempt::Busy(h) if h.host == "node-b")
        );
        let old = SystemTime::now() - Duration::from_secs(90);
        File::options().write(true).open(dir.path().join("s.claim")).unwrap().set_modified(old).unwrap();
        let Attempt::Held { took_over: Some(line), .. } = try_claim(dir.path(), "s", &holder(0), timeout).unwrap()
        else {
            panic!("a claim without a heartbeat for longer than the timeout is stale")
        };
        assert!(line.contains("node-b") && line.contains("no heartbeat for 9"), "{line}");
    }

    #[test]
    fn the_heartbeat_keeps_a_held_claim_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_millis(800);
        let Attempt::Held { claim, .. } = try_claim(dir.path(), "r", &holder(0), timeout).unwrap() else { panic!() };
        std::thread::sleep(Duration::from_millis(1500));
        assert!(age(claim.path()).unwrap() < timeout, "the heartbeat refreshes the claim");
        // Seen from another host, it is alive.
        let other = Holder { host: "node-b".into(), ..holder(1) };
        assert!(matches!(try_claim(dir.path(), "r", &other, timeout).unwrap(), Attempt::Busy(_)));
    }
}
