//! The project lock: `DIR/straddle.lock`, held with an OS file lock
//! (`File::try_lock`, released by the OS when the process dies or the
//! [`ProjectLock`] is dropped) and naming the holder's pid for the message a
//! second process shows. The file itself is left in place on release; only
//! the OS lock matters, so a stale file from a crash never blocks anyone.
//!
//! A lock file can be deleted while held (`git clean -X`), and a second
//! process would then lock a fresh one; so the journal itself is locked
//! too, for as long as it is open for writing (see `Journal::open`). That
//! lock is the one that keeps a second writer out.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::Context;

/// File name of the lock inside the project folder.
pub const LOCK_FILE: &str = "straddle.lock";

/// An acquired project lock; dropping it releases the lock.
#[derive(Debug)]
pub struct ProjectLock {
    _file: File,
}

impl ProjectLock {
    /// Take the lock of the project in `dir` or fail with a user error that
    /// names the pid of the process holding it.
    pub fn acquire(dir: &Path) -> anyhow::Result<ProjectLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match try_lock_briefly(&file) {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another straddle process".to_string()
                } else {
                    format!("another straddle process (pid {holder})")
                };
                return Err(crate::error::user(format!(
                    "project {} is in use by {who}; close it there first (lock file {})",
                    dir.display(),
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(
                    anyhow::Error::new(e).context(format!("cannot lock {}", path.display()))
                );
            }
        }
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|_| file.flush())
            .with_context(|| format!("cannot write lock file {}", path.display()))?;
        Ok(ProjectLock { _file: file })
    }
}

/// `file.try_lock()`, tried again for up to half a second while it would
/// block. A lock this process released can stay held for a moment by a
/// child that another thread is starting (the descriptor is inherited
/// between `fork` and `exec`, where close-on-exec closes it), so a lock
/// that is free again that quickly was never another straddle's; a real
/// holder is still refused, half a second later.
pub(crate) fn try_lock_briefly(file: &File) -> Result<(), std::fs::TryLockError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}
