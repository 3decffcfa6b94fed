//! Child processes that live and die as one group with the process that started them: the ranks
//! of `train --nproc N` and the workers of `train study --jobs N`. Each child receives SIGKILL
//! when its parent dies, however the parent dies (SIGKILL included), so no orphan keeps
//! training; the parent forwards SIGINT and SIGTERM, and when one child fails it stops the others
//! and says which one failed, in one line.

use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The signal the parent received (0: none yet), forwarded to the children.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: i32) {
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// How a group of children ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every child succeeded.
    Succeeded,
    /// The parent was interrupted by `signal`; the children were told and stopped.
    Interrupted { signal: i32 },
    /// Child `name` ended as `how` (e.g. "exited with code 1"); the others were stopped. `bad_input`
    /// when it exited with code 2.
    Failed { name: String, how: String, bad_input: bool },
}

impl Ended {
    /// The exit code for the parent: 0, 128 + the signal, or the failed child's (2 for bad input,
    /// else 1).
    pub fn exit_code(&self) -> u8 {
        match self {
            Ended::Succeeded => 0,
            Ended::Interrupted { signal } => 128 + *signal as u8,
            Ended::Failed { bad_input: true, .. } => 2,
            Ended::Failed { .. } => 1,
        }
    }
}

/// A group of started children, each with a name for messages ("rank 1", "worker 0").
pub struct Group {
    children: Vec<(String, Option<Child>)>,
}

impl Group {
    /// An empty group; the parent now forwards SIGINT and SIGTERM to its children.
    pub fn forwarding_signals() -> Group {
        // SAFETY: installing a handler that only stores into an atomic.
        unsafe {
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        }
        Group { children: Vec::new() }
    }

    /// Start `command` as the child `name`, tied to this process: it dies with it.
    pub fn spawn(&mut self, name: String, mut command: Command) -> anyhow::Result<()> {
        let parent = std::process::id() as i32;
        // SAFETY: prctl and getppid in the child before exec: it receives SIGKILL when the
        // parent dies, and exits at once if the parent died before the prctl took hold.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        match command.spawn() {
            Ok(child) => {
                self.children.push((name, Some(child)));
                Ok(())
            }
            Err(e) => {
                self.stop_all();
                Err(e).with_context(|| format!("starting {name}"))
            }
        }
    }

    /// Wait for every child; `every` runs about once a second meanwhile (e.g. to log progress).
    /// A child that fails stops the others (SIGTERM, then SIGKILL after 5 s) with one line naming it.
    pub fn wait(mut self, mut every: impl FnMut()) -> anyhow::Result<Ended> {
        let mut failure: Option<(String, ExitStatus)> = None;
        let mut interrupted = None;
        let mut ticked = Instant::now();
        while self.children.iter().any(|(_, c)| c.is_some()) {
            let forwarded = RECEIVED.swap(0, Ordering::SeqCst);
            if forwarded != 0 {
                interrupted = Some(forwarded);
                self.signal_all(forwarded);
            }
            for (name, slot) in self.children.iter_mut() {
                let Some(child) = slot else { continue };
                if let Some(status) = child.try_wait()? {
                    *slot = None;
                    // The cause first: a child killed by a signal, before the ones that then
                    // failed to reach it.
                    let killed = |s: &ExitStatus| std::os::unix::process::ExitStatusExt::signal(s).is_some();
                    let replace = match &failure {
                        None => true,
                        Some((_, first)) => killed(&status) && !killed(first),
                    };
                    if !status.success() && replace {
                        failure = Some((name.clone(), status));
                    }
                }
            }
            // Interrupted: the children stop because they were told to; nothing failed on its own.
            if let Some(signal) = interrupted.filter(|_| failure.is_some()) {
                self.stop_all();
                return Ok(Ended::Interrupted { signal });
            }
            if let Some((name, status)) = failure {
                let how = describe(status);
                if self.children.iter().any(|(_, c)| c.is_some()) {
                    eprintln!("train: {name} {how}; stopping the others");
                    self.stop_all();
                }
                return Ok(Ended::Failed { name, bad_input: status.code() == Some(2), how });
            }
            if ticked.elapsed() >= Duration::from_secs(1) {
                every();
                ticked = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(interrupted.map_or(Ended::Succeeded, |signal| Ended::Interrupted { signal }))
    }

    fn signal_all(&self, signal: i32) {
        for child in self.children.iter().filter_map(|(_, c)| c.as_ref()) {
            // SAFETY: signalling a child we started.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// SIGTERM every remaining child, then SIGKILL what is left after 5 seconds; reap them all.
    fn stop_all(&mut self) {
        self.signal_all(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && self.children.iter_mut().filter_map(|(_, c)| c.as_mut()).any(|c| matches!(c.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for child in self.children.iter_mut().filter_map(|(_, c)| c.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How a child ended, for the message.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(9)) => "was killed (SIGKILL)".into(),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn a_failing_child_stops_the_others_and_is_named() {
        let mut group = Group::forwarding_signals();
        group.spawn("worker 0".into(), sh("sleep 30")).unwrap();
        group.spawn("worker 1".into(), sh("exit 2")).unwrap();
        let started = Instant::now();
        let ended = group.wait(|| {}).unwrap();
        assert_eq!(ended, Ended::Failed { name: "worker 1".into(), how: "exited with code 2".into(), bad_input: true });
        assert_eq!(ended.exit_code(), 2);
        assert!(started.elapsed() < Duration::from_secs(10), "the sleeping worker was stopped");
    }

    #[test]
    fn children_that_succeed_end_the_group_quietly() {
        let mut group = Group::forwarding_signals();
        for i in 0..3 {
            group.spawn(format!("worker {i}"), sh("exit 0")).unwrap();
        }
        assert_eq!(group.wait(|| {}).unwrap(), Ended::Succeeded);
    }
}
