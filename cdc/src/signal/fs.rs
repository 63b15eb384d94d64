//! The file-system signal: a notify watcher on the database's directory,
//! filtered to the database file, its `-wal` and its `-journal`. Watching
//! the directory rather than the file keeps working when the file is
//! replaced, or the WAL is deleted and recreated.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use super::{Signal, Waker};
use crate::error::{Error, Result};

/// Rings on writes to the database file, its `-wal` or its `-journal`.
pub struct FsSignal {
    db: PathBuf,
    watcher: Option<RecommendedWatcher>,
}

impl FsSignal {
    /// A signal for the database at `db`. Nothing is watched until
    /// [`Signal::start`], which is where a watcher that cannot start fails.
    pub fn new(db: &Path) -> Self {
        FsSignal { db: db.to_path_buf(), watcher: None }
    }
}

impl Signal for FsSignal {
    fn start(&mut self, waker: Waker) -> Result<()> {
        let db = std::path::absolute(&self.db)
            .map_err(|e| Error::Io { context: self.db.display().to_string(), source: e })?;
        let dir = db.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        let name = db.file_name().map(OsString::from).unwrap_or_default();
        let names: Vec<OsString> = ["", "-wal", "-journal"]
            .iter()
            .map(|suffix| {
                let mut n = name.clone();
                n.push(suffix);
                n
            })
            .collect();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = match &event {
                // Opening and closing (any reader, the sidecar itself
                // reconnecting), owner and mode changes (SQLite running as
                // root gives a `-wal` it opens the database's owner), and a
                // `-wal` or `-journal` appearing or going (a first
                // connection opening, a last one closing) change no data:
                // commits modify files. Otherwise the sidecar's own
                // reconnections would wake it again.
                Ok(e) if e.kind.is_access() || matches!(e.kind, EventKind::Modify(ModifyKind::Metadata(_))) => false,
                Ok(e) if e.kind.is_create() || e.kind.is_remove() => {
                    e.paths.iter().any(|p| p.file_name().is_some_and(|f| f == names[0]))
                }
                Ok(e) => e.paths.iter().any(|p| p.file_name().is_some_and(|f| names.iter().any(|n| n == f))),
                // An error (queue overflow and the like): better to look.
                Err(_) => true,
            };
            if relevant && !waker.is_stopped() {
                waker.wake();
            }
        })
        .map_err(|e| Error::Watcher { path: dir.clone(), message: format!("cannot start: {e}") })?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| Error::Watcher { path: dir.clone(), message: e.to_string() })?;
        self.watcher = Some(watcher);
        Ok(())
    }

    fn join(&mut self) {
        // Dropping the watcher stops and joins notify's thread.
        self.watcher.take();
    }
}
