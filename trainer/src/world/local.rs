//! `train --nproc N ...`: start N local ranks of the same command, as `torchrun --nproc-per-node
//! N` would: each child gets `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`,
//! `MASTER_ADDR=127.0.0.1` and a free `MASTER_PORT`; on CPU the cores are split between them.
//! The launcher forwards SIGINT and SIGTERM, and when one rank dies the whole group is stopped
//! (no orphans: a child also dies with the launcher), naming the rank.

use std::ffi::OsString;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The signal the launcher received (0: none yet), forwarded to the ranks.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: i32) {
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// `args` without `--nproc N` / `--nproc=N`.
pub fn without_nproc(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for arg in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        match arg.to_str() {
            Some("--nproc") => skip_next = true,
            Some(a) if a.starts_with("--nproc=") => {}
            _ => out.push(arg.clone()),
        }
    }
    out
}

/// A port nobody listens on right now (the rendezvous of rank 0).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// How a rank ended, for the message.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(9)) => "was killed (SIGKILL)".into(),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".into(),
    }
}

/// Run `args` (this binary's arguments without `--nproc`) as `nproc` local ranks; returns the
/// exit code for the launcher: 0 when every rank succeeded, 128 + the signal when the launcher
/// was interrupted (SIGINT, SIGTERM: forwarded, the ranks stop), else the failing rank's (2 for
/// bad input, 1 otherwise).
pub fn run_local(nproc: usize, args: &[OsString], cuda: bool) -> anyhow::Result<u8> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let port = free_port()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / nproc).max(1);
    // SAFETY: installing a handler that only stores into an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let launcher = std::process::id() as i32;
    let mut children: Vec<Option<Child>> = Vec::new();
    for rank in 0..nproc {
        let mut command = Command::new(&exe);
        command
            .args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string());
        if !cuda {
            command.env("STAGEWISE_THREADS", threads.to_string());
        }
        if std::env::var_os("GLOO_SOCKET_IFNAME").is_none() {
            command.env("GLOO_SOCKET_IFNAME", "lo");
        }
        // SAFETY: prctl and getppid in the child before exec: it receives SIGKILL when the
        // launcher dies, and exits at once if the launcher died before the prctl took hold.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != launcher {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        match command.spawn() {
            Ok(child) => children.push(Some(child)),
            Err(e) => {
                stop_all(&mut children);
                return Err(e).with_context(|| format!("starting rank {rank}"));
            }
        }
    }
    let mut failure: Option<(usize, ExitStatus)> = None;
    let mut interrupted = None;
    while children.iter().any(Option::is_some) {
        let forwarded = RECEIVED.swap(0, Ordering::SeqCst);
        if forwarded != 0 {
            interrupted = Some(forwarded);
            signal_all(&children, forwarded);
        }
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Some(status) = child.try_wait()? {
                *slot = None;
                // The cause first: a rank killed by a signal, before the ranks that then failed
                // to reach it.
                let killed = |s: &ExitStatus| std::os::unix::process::ExitStatusExt::signal(s).is_some();
                let replace = match failure {
                    None => true,
                    Some((_, first)) => killed(&status) && !killed(&first),
                };
                if !status.success() && replace {
                    failure = Some((rank, status));
                }
            }
        }
        // Interrupted: the ranks stop because they were told to; nothing failed on its own.
        if let Some(signal) = interrupted.filter(|_| failure.is_some()) {
            stop_all(&mut children);
            return Ok(128 + signal as u8);
        }
        if let Some((rank, status)) = failure {
            if children.iter().any(Option::is_some) {
                eprintln!("train: rank {rank} {}; stopping the other ranks", describe(status));
                stop_all(&mut children);
            }
            return Ok(status.code().map_or(1, |c| if c == 2 { 2 } else { 1 }));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(interrupted.map_or(0, |signal| 128 + signal as u8))
}

fn signal_all(children: &[Option<Child>], signal: i32) {
    for child in children.iter().flatten() {
        // SAFETY: signalling a child we started.
        unsafe { libc::kill(child.id() as i32, signal) };
    }
}

/// SIGTERM every remaining rank, then SIGKILL what is left after 5 seconds; reap them all.
fn stop_all(children: &mut [Option<Child>]) {
    signal_all(children, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && children.iter_mut().flatten().any(|c| matches!(c.try_wait(), Ok(None))) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for child in children.iter_mut().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nproc_is_taken_out_of_the_arguments() {
        let args: Vec<OsString> =
            ["--nproc", "2", "--set", "steps=3", "--nproc=4", "--run", "a"].map(OsString::from).to_vec();
        let left: Vec<OsString> = ["--set", "steps=3", "--run", "a"].map(OsString::from).to_vec();
        assert_eq!(without_nproc(&args), left);
        assert!(free_port().unwrap() > 0);
    }
}
