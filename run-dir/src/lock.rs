//! One trainer per run directory: an advisory `flock` on `<run>/.lock`.
//!
//! The kernel releases the lock when its process dies, however it dies (SIGKILL included), so a
//! lock file left by a dead trainer never blocks: the next trainer takes it over. The file holds
//! the owner's PID while it works (to name it in the error) and is emptied when the owner lets
//! go, so a PID found there by the next owner names a trainer that died holding it
//! ([`RunLock::stale_owner`], which the trainer reports in one line).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Held while a trainer works in a run directory; released on drop or process exit.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    pub path: PathBuf,
    /// The PID of a trainer that died holding this lock (its file still named it), if one did.
    pub stale_owner: Option<String>,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Let go cleanly: an empty file tells the next owner nobody died here.
        let _ = self.file.set_len(0);
    }
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
        let status = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        // A file system without locks (some network mounts answer ENOLCK): nothing to hold here;
        // a study's claims (`claim`) keep its workers apart there.
        let unsupported = [Some(libc::ENOLCK), Some(libc::EOPNOTSUPP), Some(libc::ENOSYS)].contains(&errno);
        let locked = status == 0 || unsupported;
        let mut owner = String::new();
        let _ = file.read_to_string(&mut owner);
        let owner = owner.trim().to_string();
        if !locked {
            return Ok(Err(owner));
        }
        let me = std::process::id().to_string();
        let stale_owner = (!owner.is_empty() && owner != me).then_some(owner);
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{me}")?;
        file.flush()?;
        Ok(Ok(RunLock { file, path, stale_owner }))
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
        assert_eq!(first.stale_owner, None);
        drop(first);
        // Let go cleanly: the next owner finds nobody died holding it.
        assert_eq!(std::fs::read_to_string(dir.path().join(".lock")).unwrap(), "");
        assert_eq!(RunLock::acquire(dir.path()).unwrap().stale_owner, None);
        // A lock file that names a trainer which died holding it does not block the next one,
        // and names the dead owner.
        std::fs::write(dir.path().join(".lock"), "999999").unwrap();
        let again = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(again.stale_owner.as_deref(), Some("999999"));
        assert_eq!(std::fs::read_to_string(&again.path).unwrap(), std::process::id().to_string());
    }
}
