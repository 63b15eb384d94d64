//! One owner per consumer and per replica: an OS file lock (`flock`) on a
//! small file beside the thing it protects. The kernel releases it when
//! the holder dies, even by SIGKILL, so a lock is never stale; the file
//! holds the holder's pid, only to name it in the refusal.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A held lock; released (and its file removed) when dropped.
#[derive(Debug)]
pub struct OwnerLock {
    path: PathBuf,
    _file: File,
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io { context: format!("lock file {}", path.display()), source }
}

impl OwnerLock {
    /// Takes the lock at `path` without waiting, or fails with
    /// [`Error::AlreadyRunning`] naming `what` and the holder's pid.
    pub fn acquire(path: &Path, what: &str) -> Result<OwnerLock> {
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| io(path, e))?;
            match try_lock_briefly(&file) {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let pid = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok());
                    return Err(Error::AlreadyRunning { what: what.to_string(), pid, lock: path.to_path_buf() });
                }
                Err(TryLockError::Error(e)) => return Err(io(path, e)),
            }
            // The previous holder removes its file as it lets go; if it did
            // so between our open and our lock, we hold an unlinked file
            // that nobody else can see: start again with the path's file.
            let ours = file.metadata().map_err(|e| io(path, e))?;
            match std::fs::metadata(path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {}
                _ => continue,
            }
            file.set_len(0).map_err(|e| io(path, e))?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(|e| io(path, e))?;
            return Ok(OwnerLock { path: path.to_path_buf(), _file: file });
        }
    }

    /// The lock's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        // Remove first, then unlock (the file closes after this): a newcomer
        // that opened the old file sees it unlinked and starts again.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the lock, trying again for a moment: [`held`] in another
/// process takes it shared for an instant to look.
fn try_lock_briefly(file: &File) -> std::result::Result<(), TryLockError> {
    for _ in 0..20 {
        match file.try_lock() {
            Err(TryLockError::WouldBlock) => std::thread::sleep(std::time::Duration::from_millis(5)),
            done => return done,
        }
    }
    file.try_lock()
}

/// Whether a live process holds the lock at `path` (an [`OwnerLock`]).
/// Looking takes the lock for a moment when nobody holds it; it is let go
/// at once (the file is left: removing it here could race a newcomer).
pub fn held(path: &Path) -> bool {
    // Read only (flock needs no write access: a lock file of another
    // user's replicator is judged too); anything but "no such file" counts
    // as held, so a pin is never dropped on a doubt.
    let file = match OpenOptions::new().read(true).open(path) {
        Ok(file) => file,
        Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) | Err(TryLockError::Error(_)) => true,
    }
}

/// `path` made absolute with symbolic links resolved (the file itself may
/// not exist yet: then its folder is resolved).
pub fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir).map(|d| d.join(name)).unwrap_or(abs),
        _ => abs,
    }
}

/// The lock file of a replica (or any target file): beside it, as
/// SQLite's own `-wal` and `-shm` are.
pub fn target_lock_path(target: &Path) -> PathBuf {
    let mut p = resolved(target).into_os_string();
    p.push("-cdc.lock");
    PathBuf::from(p)
}

/// The lock file of a consumer of the source at `db`.
pub fn consumer_lock_path(db: &Path, consumer: &str) -> PathBuf {
    let mut p = resolved(db).into_os_string();
    p.push(format!("-cdc-consumer-{:016x}.lock", cdc_schema::fnv1a64([consumer.as_bytes()])));
    PathBuf::from(p)
}

/// A file's identity (device and inode): the same file through any path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the file at `path` (following symbolic links).
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        let m = std::fs::metadata(path)?;
        Ok(FileId { dev: m.dev(), ino: m.ino() })
    }
}

impl std::fmt::Display for FileId {
    /// `dev:ino`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.dev, self.ino)
    }
}

/// Refuses `target` when it is the source database (through any path:
/// symbolic or hard link, relative path) or one of its companion files.
pub fn refuse_source_as_target(source: &Path, target: &Path) -> Result<()> {
    let Ok(target_id) = FileId::of(target) else { return Ok(()) };
    let mut companions = vec![source.to_path_buf()];
    for suffix in ["-wal", "-journal", "-shm"] {
        let mut p = source.as_os_str().to_owned();
        p.push(suffix);
        companions.push(PathBuf::from(p));
    }
    if companions.iter().any(|c| FileId::of(c).is_ok_and(|id| id == target_id)) {
        return Err(Error::SourceIsTarget { db: source.to_path_buf(), target: target.to_path_buf() });
    }
    Ok(())
}
