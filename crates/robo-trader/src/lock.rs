//! The process lock: one robo-trader per database, enforced by an exclusive `flock` on
//! `<db>.lock` that holds our pid.
//!
//! `flock` locks belong to the open file description and the kernel drops them when the
//! process dies, so a `kill -9`'d holder never leaves a stale lock behind; the pid in the file
//! is only there to name the holder in the error. The database itself is not locked: `sqlite3`
//! and `robo-trader status` can read it while the lock is held. (`flock` may not work across
//! NFS; keep the database on a local disk.)

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another robo-trader ({}) is running on this database; stop it first (lock file {})",
        pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}")),
        path.display()
    )]
    Held { pid: Option<u32>, path: PathBuf },
    #[error("cannot use the lock file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held while this process owns the database. Released on drop (or when the process dies).
#[derive(Debug)]
pub struct ProcessLock {
    file: File,
    path: PathBuf,
}

/// The lock file for a database: the database path with `.lock` appended.
pub fn lock_path(db_path: &Path) -> PathBuf {
    let mut s = db_path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

impl ProcessLock {
    /// Takes the lock without waiting, and writes our pid into the lock file.
    pub fn acquire(db_path: &Path) -> Result<ProcessLock, LockError> {
        let path = lock_path(db_path);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // No truncate on open: the file may be another process's, holding its pid.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: `flock` on a file descriptor we own; no memory is shared with the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                // The holder may not have written its pid yet: then the pid is unknown.
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(LockError::Held { pid, path });
            }
            return Err(io(err));
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(ProcessLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        // Clear our pid while still holding the lock, so a reader never sees a dead pid with
        // no holder; closing the file then releases the lock. The file stays: deleting it
        // would race with a process that has just opened it.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_path_appends_suffix() {
        assert_eq!(
            lock_path(Path::new("/a/b/robo.db")),
            PathBuf::from("/a/b/robo.db.lock")
        );
    }
}
