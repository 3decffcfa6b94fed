//! One trainer per run directory: an advisory `flock` on `<run>/.lock`.
//!
//! The kernel releases the lock when its process dies, however it dies (SIGKILL included), so a
//! lock file left by a dead trainer is never "stale": the next trainer simply takes it over. The
//! file holds the owner's PID, only to name it in the error.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Held while a trainer works in a run directory; released on drop or process exit.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

impl RunLock {
    /// Take the lock of `run_dir`, or fail naming the process that holds it.
    pub fn acquire(run_dir: &Path) -> anyhow::Result<RunLock> {
        match RunLock::try_acquire(run_dir)? {
            Ok(lock) => Ok(lock),
            Err(owner) => {
                let who = if owner.is_empty() { "another process".to_string() } else { format!("process {owner}") };
                bail!("{} is in use by {who}; wait for it to finish or stop it, then resume", run_dir.display())
            }
        }
    }

    /// Take the lock of `run_dir` if no other process holds it; else the holder's PID as its
    /// lock file says (empty when it says nothing). Errors are the file's own (cannot open it).
    pub fn try_acquire(run_dir: &Path) -> anyhow::Result<Result<RunLock, String>> {
        let path = run_dir.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("{}: cannot open the run lock", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            return Ok(Err(owner.trim().to_string()));
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(Ok(RunLock { _file: file, path }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_a_dead_owners_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("process {}", std::process::id())), "{err}");
        drop(first);
        // A lock file whose owner is gone (here: released) does not block the next trainer.
        std::fs::write(dir.path().join(".lock"), "999999").unwrap();
        let again = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&again.path).unwrap(), std::process::id().to_string());
    }
}
