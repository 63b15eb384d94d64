//! The source database as delivery sees it: which file, which log, which
//! tables. Re-identified on every wake-up with a `stat` (a replaced file is
//! reopened) and `PRAGMA schema_version` (a schema change re-reads the
//! followed tables and checks each for drift).
//!
//! Between bursts of work the connection is closed ("parked"): an open
//! connection keeps the file's `-shm` open, and the first connection to
//! a file moved into place under the same path (`mv new.db app.db`) would
//! then take over the old file's WAL index (its page count, its frames)
//! instead of building its own, which breaks the new file. Parked, the
//! sidecar holds nothing of the source, and the next wake-up opens
//! whatever file the path names.
//!
//! A table whose schema changed is either followed through the change
//! (schema following on: capture re-attached, the table reseeded; a table
//! dropped is dropped on the target too; under "every table", new tables
//! are captured) or halted: its delivery stops, with one line saying what
//! changed and the command that resumes it, and the other tables flow on.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::halted::Halted;
pub(super) use crate::db::named;
use crate::db::{self, Access, classify};
use crate::error::{Error, Result};
use crate::lock::FileId;
use crate::log::{Registered, select};
use crate::target::{Source, SourceTable};

/// What [`SourceDb::refresh`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Same file, same schema.
    Same,
    /// The schema changed; the tables were sorted out again.
    SchemaChanged,
    /// The path names another file now; it was opened instead.
    Reopened,
}

pub(crate) struct SourceDb {
    pub path: PathBuf,
    pub conn: Connection,
    pub(super) file: FileId,
    pub log_id: String,
    pub(super) schema_version: i64,
    /// Tables asked for (empty: every captured table).
    pub(super) requested: Vec<String>,
    pub(super) follow_schema: bool,
    /// The engine holds its lock and its target accepted the source:
    /// schema following may write, and tables asked for by name that
    /// vanish halt instead of failing.
    pub(super) armed: bool,
    /// The tables delivered.
    pub followed: Vec<Registered>,
    /// Tables whose delivery is stopped.
    pub halted: Vec<Halted>,
    /// Tables the source dropped (schema following on), for the target to
    /// drop too; cleared once the target was told.
    pub dropped: Vec<String>,
    /// The connection is closed (an in-memory placeholder stands in); the
    /// next [`SourceDb::refresh`] opens the file again.
    pub(super) parked: bool,
    /// See [`SourceDb::read_version`].
    read_version: Option<i64>,
}

pub(super) fn pragma(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
}

impl SourceDb {
    /// Opens and validates the source: a SQLite file, capture installed,
    /// the tables captured and unchanged, the log readable. Writes nothing.
    pub fn open(path: &Path, requested: &[String], follow_schema: bool) -> Result<SourceDb> {
        let (conn, file) = connect(path)?;
        crate::log::ensure_current(&conn).map_err(|e| named(e, path))?;
        let selected = select(&conn, requested).map_err(|e| named(e, path))?;
        // Schema following waits for new tables of a file whose tables
        // were all dropped; it never installs capture in a file that has
        // none (a file restored without it, say): that is an operator's
        // decision, said with the command.
        let installed = || crate::log::log_format(&conn).map(|f| f != crate::log::LogFormat::None);
        if selected.is_empty() && !(follow_schema && installed().map_err(|e| named(e, path))?) {
            return Err(Error::NothingCaptured(path.to_path_buf()));
        }
        let log_id = crate::source::log_id(&conn).map_err(|e| match e {
            Error::CorruptLog { seq, problem } => {
                Error::CorruptLog { seq, problem: format!("{}: {problem}", path.display()) }
            }
            e => named(e, path),
        })?;
        // Reading both ends of the log fails here, before anything is
        // written anywhere, on a file whose log is damaged.
        crate::log::high_water(&conn).map_err(|e| named(e, path))?;
        crate::log::low_water(&conn).map_err(|e| named(e, path))?;
        let schema_version = pragma(&conn, "schema_version").map_err(|e| classify(e, path))?;
        let mut source = SourceDb {
            path: path.to_path_buf(),
            conn,
            file,
            log_id,
            schema_version,
            requested: requested.to_vec(),
            follow_schema,
            armed: false,
            followed: Vec::new(),
            halted: Vec::new(),
            dropped: Vec::new(),
            parked: false,
            read_version: None,
        };
        source.sort_out()?;
        Ok(source)
    }

    /// Checks the followed tables and the log page by page (`PRAGMA
    /// quick_check` of each). Done for a consumer the source has never
    /// seen, whose first bootstrap reads every row anyway, so that a
    /// damaged source is refused before anything is written anywhere.
    pub fn quick_check(&self) -> Result<()> {
        let tables = self.followed.iter().map(|r| r.desc.name.to_string()).chain([cdc_schema::LOG_TABLE.to_string()]);
        for table in tables {
            let sql = format!("PRAGMA quick_check({})", cdc_schema::quote_literal(&table));
            let verdict: String = self.conn.query_row(&sql, [], |r| r.get(0)).map_err(|e| classify(e, &self.path))?;
            if verdict != "ok" {
                return Err(Error::Corrupt(self.path.clone()));
            }
        }
        Ok(())
    }

    /// Whether the path names another file than the one open (a `stat`).
    pub fn replaced(&self) -> bool {
        self.replaced_check()()
    }

    /// [`Self::replaced`], to call while the connection is borrowed.
    pub fn replaced_check(&self) -> impl Fn() -> bool + use<> {
        let (path, file) = (self.path.clone(), self.file);
        move || FileId::of(&path).is_ok_and(|id| id != file)
    }

    /// Re-identifies the source: reopens a replaced file, re-checks the
    /// followed tables when the schema changed. The check starts the
    /// drain's read transaction ([`Self::begin_read`]), left open when the
    /// schema is the same.
    pub fn refresh(&mut self) -> Result<Refresh> {
        if !self.unpark()? {
            return self.reopen();
        }
        self.begin_read()?;
        let version = pragma(&self.conn, "schema_version").map_err(|e| classify(e, &self.path))?;
        if version == self.schema_version {
            return Ok(Refresh::Same);
        }
        // Sorting out may write (schema following attaches capture to new
        // tables): not from a read transaction's old snapshot.
        self.end_read();
        // Capture removed from the whole file (`uninstall --force`): waited
        // for, with the command that attaches it, as for a file moved in
        // without capture (the schema cookie is kept, so this is asked
        // again until it moves).
        if crate::log::log_format(&self.conn).map_err(|e| named(e, &self.path))? == crate::log::LogFormat::None {
            return Err(Error::NotReady(Box::new(Error::NothingCaptured(self.path.clone()))));
        }
        let (halted_before, followed_before) =
            (self.halted.clone(), self.followed.iter().map(|r| r.desc.name.to_string()).collect::<Vec<_>>());
        self.sort_out()?;
        let names = |f: &[Registered]| f.iter().map(|r| r.desc.name.to_lowercase()).collect::<Vec<_>>();
        let changed = followed_before.iter().map(|n| n.to_lowercase()).collect::<Vec<_>>() != names(&self.followed)
            || !self.dropped.is_empty();
        if changed {
            tracing::info!(tables = ?self.followed.iter().map(|r| r.desc.name.as_ref()).collect::<Vec<&str>>(), "the set of followed tables changed");
        }
        if halted_before != self.halted {
            self.halted.iter().for_each(Halted::announce);
        }
        Ok(Refresh::SchemaChanged)
    }

    /// Opens the file now at the path, in place of the one open.
    fn reopen(&mut self) -> Result<Refresh> {
        let old_log = self.log_id.clone();
        // Close the old connection before opening the new one: both
        // files use the same `-wal` and `-shm` names, and POSIX drops
        // every lock a process holds on a file when it closes any
        // descriptor of it, so an old connection closed after the new
        // one opened would silently take the new one's locks with it.
        let file = (!self.parked).then_some(self.file);
        let old = self.take_conn()?;
        close(old, &self.path, file);
        let path = self.path.clone();
        *self = SourceDb::open(&path, &self.requested, self.follow_schema).map_err(gone(&path))?;
        tracing::warn!(db = %self.path.display(), same_log = old_log == self.log_id,
            "the source file was replaced (a new file at the same path); reopened it");
        Ok(Refresh::Reopened)
    }

    /// Closes the connection until the next [`Self::refresh`]: called when
    /// nothing is owed to the source and the engine is about to wait.
    pub fn park(&mut self) {
        if !self.parked
            && let Ok(conn) = self.take_conn()
        {
            // Never checkpointing: a checkpoint writes the file, and the
            // file event would wake the engine to open it again.
            close(conn, &self.path, None);
        }
    }

    /// The connection, an in-memory placeholder left in its place (parked).
    fn take_conn(&mut self) -> Result<Connection> {
        let conn = std::mem::replace(&mut self.conn, Connection::open_in_memory()?);
        self.parked = true;
        Ok(conn)
    }

    /// Opens a parked connection again; `false` (and nothing opened) when
    /// the path names another file now.
    pub fn unpark(&mut self) -> Result<bool> {
        if self.replaced() {
            return Ok(false);
        }
        if self.parked {
            let (conn, file) = connect(&self.path).map_err(gone(&self.path))?;
            if file != self.file {
                close(conn, &self.path, Some(file));
                return Ok(false);
            }
            drop(std::mem::replace(&mut self.conn, conn));
            self.parked = false;
        }
        Ok(true)
    }

    /// The file's layout as `conn` (this source's connection, or a
    /// transaction on it) sees it: file identity and schema cookie. See
    /// [`crate::DeliveryState::layout`].
    pub fn layout(&self, conn: &Connection) -> Result<String> {
        let cookie = pragma(conn, "schema_version").map_err(|e| classify(e, &self.path))?;
        Ok(format!("{}:{cookie}", self.file))
    }

    /// Holds the application's writers back for a moment: a second
    /// connection takes the source's write lock (waiting at most
    /// [`HOLD_WAIT`]), so that reads started while it is held (the
    /// engine's and a target's own, for a bulk copy) see the same commit.
    /// `None` when the lock cannot be had in time or the path names
    /// another file now. Released when dropped.
    pub fn hold_writers(&self) -> Option<WritersHeld> {
        // Never open another file at the path: closing it would drop this
        // process's locks on a `-shm` it shares with the open connection.
        if self.replaced() {
            return None;
        }
        let conn = db::open(&self.path, Access::ReadWrite).ok()?;
        let held = WritersHeld { conn: Some(conn), path: self.path.clone(), file: self.file };
        let conn = held.conn.as_ref()?;
        if self.replaced() {
            return None;
        }
        conn.busy_timeout(HOLD_WAIT).ok()?;
        conn.execute_batch("BEGIN IMMEDIATE").ok()?;
        Some(held)
    }

    /// Whether the schema changed since it was last read (a table of the
    /// plan may be gone).
    pub fn schema_moved(&self) -> bool {
        pragma(&self.conn, "schema_version").is_ok_and(|v| v != self.schema_version)
    }

    /// The description a target is opened with.
    pub fn describe(&self) -> Result<Source> {
        let mut tables = Vec::new();
        for r in &self.followed {
            let create_sql = crate::schema::table_sql(&self.conn, &r.desc.name)?;
            let indexes = crate::schema::indexes(&self.conn, &r.desc.name)?;
            let unique_keys = Some(crate::schema::unique_keys(&self.conn, &r.desc.name)?);
            tables.push(SourceTable { desc: r.desc.clone(), create_sql, indexes, inserts: r.inserts, unique_keys });
        }
        Ok(Source {
            log_id: self.log_id.clone(),
            path: self.path.clone(),
            upstream_log_ids: crate::schema::replica_of(&self.conn)?,
            views: crate::schema::views(&self.conn)?,
            tables,
            dropped: self.dropped.clone(),
        })
    }

    /// Starts one read transaction for the statements of a drain. Each
    /// statement outside one starts its own, and each start reads the WAL
    /// index header; one that meets the application's writer updating it
    /// takes the write lock for a moment to read it again, and a writer
    /// without a busy timeout, or a deferred transaction turning into a
    /// write, is refused at that moment (SQLite's rule). A drain of 30 or
    /// so statements did that a few times a minute beside a writer at full
    /// speed; one transaction per drain makes it rare. Its `data_version`
    /// is kept for [`Self::read_version`]. Nothing when one is open already.
    pub fn begin_read(&mut self) -> Result<()> {
        if !self.conn.is_autocommit() {
            return Ok(());
        }
        self.read_version = None;
        self.conn.execute_batch("BEGIN DEFERRED").map_err(|e| classify(e, &self.path))?;
        // The first statement starts the read; the version is the one it saw.
        self.read_version = Some(pragma(&self.conn, "data_version").map_err(|e| classify(e, &self.path))?);
        Ok(())
    }

    /// Ends the read transaction [`Self::begin_read`] started, if still open.
    pub fn end_read(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// The `data_version` the last read transaction began at (taken: a
    /// second call says `None`), for the wake loop to tell later commits
    /// from those it drained without a read of its own.
    pub fn read_version(&mut self) -> Option<i64> {
        self.read_version.take()
    }

    /// `PRAGMA data_version`: changes whenever another connection commits.
    /// `None` while parked: it compares commits seen by one connection
    /// only (the engine parks as soon as it sees the file replaced: the
    /// old file's version says nothing about the new one).
    pub fn data_version(&self) -> Result<Option<i64>> {
        if self.parked {
            return Ok(None);
        }
        pragma(&self.conn, "data_version").map(Some).map_err(|e| classify(e, &self.path))
    }
}

impl Drop for SourceDb {
    fn drop(&mut self) {
        if !self.parked
            && let Ok(conn) = self.take_conn()
        {
            close(conn, &self.path, Some(self.file));
        }
    }
}

/// A source missing from its path once running is waited for, and so is
/// a file moved into place before capture was attached to it (restored,
/// then `cdc-setup install`ed).
fn gone(path: &Path) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::MissingFile(_) => Error::SourceGone(path.to_path_buf()),
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Error::SourceGone(path.to_path_buf())
        }
        // Renamed away between `db::open`'s look and SQLite's open.
        Error::SqliteAt { ref source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen) && !path.exists() =>
        {
            Error::SourceGone(path.to_path_buf())
        }
        e @ (Error::NothingCaptured(_) | Error::NotCapturedIn { .. } | Error::UnknownTables { .. }) => {
            Error::NotReady(Box::new(e))
        }
        other => other,
    }
}

/// Opens the source's connection and identifies its file, the same file:
/// one replaced between the open and the `stat` is opened again.
fn connect(path: &Path) -> Result<(Connection, FileId)> {
    let stat = || FileId::of(path).map_err(|e| Error::Io { context: path.display().to_string(), source: e });
    let mut tries = 0;
    loop {
        // A missing or foreign file is for `db::open` to name.
        let before = FileId::of(path).ok();
        let conn = db::open(path, Access::ReadWrite)?;
        let after = stat()?;
        tries += 1;
        if before != Some(after) && tries < 5 {
            close(conn, path, None);
            continue;
        }
        // The sidecar's own writes (freeing the log) need not reach the
        // disk before the application may write again: in WAL mode, NORMAL
        // keeps the file consistent, and a freeing undone by a power cut
        // only frees the same again later (what it drops, every consumer
        // had, by their records). Not in rollback-journal mode, where
        // NORMAL may corrupt the file on a power cut.
        if db::is_wal(&conn).map_err(|e| named(e, path))? {
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| classify(e, path))?;
        }
        return Ok((conn, after));
    }
}

/// How long [`SourceDb::hold_writers`] waits for the write lock.
const HOLD_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The source's write lock, held by a connection of its own; dropping it
/// rolls back (nothing was written) and closes the connection.
pub(crate) struct WritersHeld {
    conn: Option<Connection>,
    path: PathBuf,
    file: FileId,
}

impl Drop for WritersHeld {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.execute_batch("ROLLBACK");
            close(conn, &self.path, Some(self.file));
        }
    }
}

/// Closes a source connection to `file`. The last connection to a file
/// to close checkpoints it and removes its WAL, *by name*. Let happen only
/// when that changes nothing: the path still names `file` and its `-wal`
/// is empty (so the close only tidies away the `-wal` this connection may
/// have created, and a refused run leaves the directory as it found it).
/// Otherwise the checkpoint could write the pages of one file into
/// another, or rewrite a source file that a refused run must not touch;
/// the application's own connections checkpoint.
fn close(conn: Connection, path: &Path, file: Option<FileId>) {
    let tidy = file.is_some_and(|f| FileId::of(path).ok() == Some(f)) && db::wal_is_empty(path);
    if !tidy {
        let _ = conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
    }
    drop(conn);
}
