//! The SQLite replica target (`sqlite:PATH`): exactly-once, transaction
//! consistent, and a plain SQLite file any program can read.

//!
//! - [`apply`]: events applied; [`overtaken`]: inserts a TEMP trigger rewrote;
//! - [`reconcile`]: the replica's schema against the source's;
//! - [`state`]: the delivery state and the tables it made, stored with the rows;
//! - [`bulk`]: bootstrap rows copied by SQLite itself.

mod apply;
mod bulk;
mod overtaken;
mod reconcile;
mod sql;
mod state;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::db::{DEFAULT_BUSY_TIMEOUT, classify};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::lock::{FileId, OwnerLock, target_lock_path};
use crate::state::DeliveryState;
use crate::target::{BulkCopy, Source, SourceTable, Target};
use overtaken::Overtaken;
use sql::TableSql;

pub use cdc_schema::replica::{OWNED_TABLE, STATE_TABLE};

/// Applies events to a replica database. Inserts are upserts (`INSERT OR
/// REPLACE`, so the source's own `OR REPLACE` evictions, which fire no
/// delete trigger, end the same here), updates go by the before image's
/// identity (key changes included), deletes are idempotent, foreign keys
/// are off. Everything between two source commit points is one replica
/// transaction, with the position stored in it: a reader never sees half a
/// source transaction or half a bootstrap, and a crash never applies a
/// change twice.
pub struct SqliteTarget {
    path: PathBuf,
    /// The replica file as opened: a replica deleted or replaced while in
    /// use is noticed instead of written to in vain.
    file: FileId,
    conn: Connection,
    tables: HashMap<String, TableSql>,
    /// The state as last committed.
    stored: DeliveryState,
    /// Tables purged by a `BootstrapBegin` in the open transaction: the
    /// only ones whose position may go back.
    purged: HashSet<String>,
    /// Tables this replica made whose schema no longer matches the
    /// source's (columns, constraints, indexes): their `BootstrapBegin`
    /// drops and recreates them from the source's SQL, in the bootstrap's
    /// transaction, so a reader sees the old table until the new one is full.
    rebuild: HashMap<String, SourceTable>,
    /// Tables reseeded for the source's rowids already said (once each).
    said_rowids: std::collections::HashSet<String>,
    in_tx: bool,
    /// The source attached (read only) for a bootstrap copied inside
    /// SQLite ([`BulkCopy`]); detached when the transaction ends, so the
    /// replica holds nothing of the source file between bootstraps.
    attached: Option<PathBuf>,
    /// The replica is in WAL mode (commits flushed by `sync`).
    wal: bool,
    /// Inserts a TEMP trigger overtook, in the open transaction.
    overtaken: Overtaken,
    /// The source, as the one line that says so names it.
    source: PathBuf,
    _lock: OwnerLock,
}

impl SqliteTarget {
    /// Opens the replica, creating the file if it is missing (its folder
    /// must exist). WAL, so readers never block replication; commits are
    /// flushed to disk by [`Target::sync`] (one fsync of the `-wal`) before
    /// the source is told about them, so what the source may prune
    /// survives power loss.
    ///
    /// One replicator per replica: a lock beside the file (see
    /// [`crate::lock`]) refuses a second one, naming the first one's pid.
    pub fn open(path: &Path) -> Result<SqliteTarget> {
        Self::open_file(path).map_err(|e| match e {
            Error::NotADatabase(_) | Error::ReadOnly(_) | Error::Corrupt(_) | Error::MissingFolder(_) => {
                Error::Unusable { role: "replica", inner: Box::new(e) }
            }
            e => e,
        })
    }

    fn open_file(path: &Path) -> Result<SqliteTarget> {
        if path.is_dir() {
            return Err(Error::NotADatabase(path.into()));
        }
        if path.exists() && !crate::db::writable(path) {
            return Err(Error::ReadOnly(path.into()));
        }
        let what = format!("replica {}", path.display());
        let lock = OwnerLock::acquire(&target_lock_path(path), &what)?;
        // URIs on, for attaching the source read only (`BulkCopy`).
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(crate::db::not_a_uri(path), flags).map_err(|e| classify(e, path))?;
        conn.busy_timeout(DEFAULT_BUSY_TIMEOUT)?;
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
            .map_err(|e| classify(e, path))?;
        if conn.is_readonly(rusqlite::MAIN_DB)? {
            return Err(Error::ReadOnly(path.into()));
        }
        let file = FileId::of(path).map_err(|e| Error::Io { context: path.display().to_string(), source: e })?;
        Ok(SqliteTarget {
            path: path.into(),
            file,
            conn,
            tables: HashMap::new(),
            stored: DeliveryState::default(),
            purged: HashSet::new(),
            rebuild: HashMap::new(),
            said_rowids: Default::default(),
            in_tx: false,
            attached: None,
            wal: false,
            overtaken: Overtaken::default(),
            source: PathBuf::new(),
            _lock: lock,
        })
    }

    /// The replica connection (for reading it back in tests and tools).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn sql_error(&self, e: rusqlite::Error) -> Error {
        classify(e, &self.path)
    }
}

impl SqliteTarget {
    pub(super) fn begin(&mut self) -> Result<()> {
        self.begin_with("BEGIN IMMEDIATE")
    }

    pub(super) fn begin_with(&mut self, begin: &str) -> Result<()> {
        if !self.in_tx {
            if FileId::of(&self.path).ok() != Some(self.file) {
                return Err(Error::ReplicaReplaced(self.path.clone()));
            }
            self.conn.execute_batch(begin).map_err(|e| self.sql_error(e))?;
            self.in_tx = true;
        }
        Ok(())
    }
}

impl Target for SqliteTarget {
    fn open(&mut self, source: &Source) -> Result<Option<DeliveryState>> {
        self.open_source(source).map_err(|e| self.named(e))
    }

    fn apply(&mut self, events: &[Event]) -> Result<()> {
        self.apply_events(events).map_err(|e| self.named(e))
    }

    fn commit(&mut self, state: &DeliveryState) -> Result<()> {
        self.commit_state(state, &|_| Ok(())).map_err(|e| self.named(e))
    }

    /// Flushes the `-wal`, which holds every commit not yet checkpointed
    /// (a checkpoint flushes the main file itself, whatever `synchronous`
    /// says): one fsync per acknowledgement instead of one per commit.
    fn sync(&mut self) -> Result<()> {
        if !self.wal {
            return Ok(());
        }
        // SQLite's own name for the file (symbolic links resolved): its
        // `-wal` is beside the real file. It exists while the connection
        // is open; missing, it is an error, never a silent no-op.
        let wal = crate::db::wal_path(&crate::db::path_of(&self.conn));
        std::fs::File::open(&wal)
            .and_then(|f| f.sync_data())
            .map_err(|e| Error::Io { context: wal.display().to_string(), source: e })
    }

    fn rollback(&mut self) -> Result<()> {
        self.purged.clear();
        self.overtaken.clear();
        let mut done = Ok(());
        if self.in_tx {
            self.in_tx = false;
            // SQLite may have rolled back by itself already (disk full).
            if !self.conn.is_autocommit() {
                done = self.conn.execute_batch("ROLLBACK").map_err(|e| self.sql_error(e));
            }
        }
        let detached = self.detach();
        done.and(detached)
    }

    fn bulk_copy(&mut self) -> Option<&mut dyn BulkCopy> {
        Some(self)
    }
}

impl SqliteTarget {
    /// An SQLite error about the replica, naming it.
    pub(super) fn named(&self, e: Error) -> Error {
        crate::db::named(e, &self.path)
    }
}
