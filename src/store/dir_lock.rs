//! One gateway per data directory: an exclusive advisory lock on `data_dir/holdline.lock`,
//! held for the life of the process.
//!
//! Two gateways on one database each believe they own every live call: at start-up the
//! second marks the first one's calls disconnected, and both then serve the same callers.
//! SQLite's own locking only serialises their writes. The lock is `flock(2)` through
//! `std::fs::File::try_lock`, so the kernel drops it when the process dies (even by
//! `kill -9`): a stale lock file never keeps the gateway down. The file holds the PID of
//! the holder, for the error message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "holdline.lock";

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DirLockError {
    #[error(
        "another holdline (pid {holder}) is already running on the data directory {dir}: \
         stop it, or give this one another `data.dir`"
    )]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock the data directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl DirLock {
    /// Takes the lock, creating the directory and the lock file if needed; fails at once
    /// (without waiting) if another process holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, DirLockError> {
        let io = |source| DirLockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(DirLockError::Held {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() { "unknown" } else { holder }.to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDir;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = TempDir::new("dirlock");
        let first = DirLock::acquire(dir.path()).expect("first");
        let pid = std::process::id().to_string();
        match DirLock::acquire(dir.path()) {
            Err(DirLockError::Held { holder, .. }) => assert_eq!(holder, pid),
            other => panic!("expected Held, got {other:?}"),
        }
        assert!(first.path().ends_with(LOCK_FILE));
        drop(first);
        DirLock::acquire(dir.path()).expect("free again once dropped");
    }
}
