//! The source database as delivery sees it: which file, which log, which
//! tables. Re-identified on every wake-up with a `stat` (a replaced file is
//! reopened) and `PRAGMA schema_version` (a schema change re-reads the
//! followed tables and checks them for drift).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

use cdc_schema::log::META_TABLE;
use cdc_schema::quote_ident;

use crate::capture::{Registered, verify};
use crate::db::{self, Access, classify};
use crate::error::{Error, Result};
use crate::lock::FileId;
use crate::target::{Source, SourceTable};

/// What [`SourceDb::refresh`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Same file, same schema.
    Same,
    /// The schema changed; the followed tables are re-checked (`true`:
    /// the set of followed tables changed).
    SchemaChanged(bool),
    /// The path names another file now; it was opened instead.
    Reopened,
}

pub(crate) struct SourceDb {
    pub path: PathBuf,
    pub conn: Connection,
    file: FileId,
    pub log_id: String,
    schema_version: i64,
    /// Tables asked for (empty: every captured table).
    requested: Vec<String>,
    pub followed: Vec<Registered>,
}

fn pragma(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
}

impl SourceDb {
    /// Opens and validates the source: a SQLite file, capture installed,
    /// the tables captured and unchanged, the log readable. Writes nothing.
    pub fn open(path: &Path, requested: &[String]) -> Result<SourceDb> {
        let conn = db::open(path, Access::ReadWrite)?;
        let file = FileId::of(path).map_err(|e| Error::Io { context: path.display().to_string(), source: e })?;
        let followed = verify(&conn, requested).map_err(|e| named(e, path))?;
        if followed.is_empty() {
            return Err(Error::NothingCaptured(path.to_path_buf()));
        }
        let log_id: Option<String> = conn
            .query_row(&format!("SELECT value FROM {} WHERE key = 'log_id'", quote_ident(META_TABLE)), [], |r| r.get(0))
            .optional()
            .map_err(|e| classify(e, path))?;
        let log_id = log_id.ok_or_else(|| Error::CorruptLog {
            seq: 0,
            problem: format!("{}: the log has no id (_cdc_meta was edited?)", path.display()),
        })?;
        // Reading both ends of the log fails here, before anything is
        // written anywhere, on a file whose log is damaged.
        crate::log::high_water(&conn).map_err(|e| named(e, path))?;
        crate::log::low_water(&conn).map_err(|e| named(e, path))?;
        let schema_version = pragma(&conn, "schema_version").map_err(|e| classify(e, path))?;
        Ok(SourceDb {
            path: path.to_path_buf(),
            conn,
            file,
            log_id,
            schema_version,
            requested: requested.to_vec(),
            followed: dedup(followed),
        })
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
        FileId::of(&self.path).is_ok_and(|id| id != self.file)
    }

    /// Re-identifies the source: reopens a replaced file, re-checks the
    /// followed tables when the schema changed.
    pub fn refresh(&mut self) -> Result<Refresh> {
        if self.replaced() {
            let old_log = self.log_id.clone();
            // Close the old connection before opening the new one: both
            // files use the same `-wal` and `-shm` names, and POSIX drops
            // every lock a process holds on a file when it closes any
            // descriptor of it, so an old connection closed after the new
            // one opened would silently take the new one's locks with it.
            let old = std::mem::replace(&mut self.conn, Connection::open_in_memory()?);
            let _ = old.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
            drop(old);
            *self = SourceDb::open(&self.path, &self.requested)?;
            tracing::warn!(db = %self.path.display(), same_log = old_log == self.log_id,
                "the source file was replaced (a new file at the same path); reopened it");
            return Ok(Refresh::Reopened);
        }
        let version = pragma(&self.conn, "schema_version").map_err(|e| classify(e, &self.path))?;
        if version == self.schema_version {
            return Ok(Refresh::Same);
        }
        let followed = dedup(verify(&self.conn, &self.requested).map_err(|e| named(e, &self.path))?);
        if followed.is_empty() {
            return Err(Error::NothingCaptured(self.path.clone()));
        }
        let changed = names(&followed) != names(&self.followed);
        if changed {
            tracing::info!(tables = ?names(&followed), "the set of followed tables changed");
        }
        self.followed = followed;
        self.schema_version = version;
        Ok(Refresh::SchemaChanged(changed))
    }

    /// The description a target is opened with.
    pub fn describe(&self) -> Result<Source> {
        let mut tables = Vec::new();
        for r in &self.followed {
            let create_sql: String = self.conn.query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [r.desc.name.as_ref()],
                |row| row.get(0),
            )?;
            let mut stmt = self.conn.prepare(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY name",
            )?;
            let index_sql =
                stmt.query_map([r.desc.name.as_ref()], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
            tables.push(SourceTable { desc: r.desc.clone(), create_sql, index_sql });
        }
        Ok(Source {
            log_id: self.log_id.clone(),
            path: self.path.clone(),
            upstream_log_ids: crate::targets::sqlite::followed_log_ids(&self.conn)?,
            tables,
        })
    }

    /// `PRAGMA data_version`: changes whenever another connection commits.
    pub fn data_version(&self) -> Result<i64> {
        pragma(&self.conn, "data_version").map_err(|e| classify(e, &self.path))
    }
}

impl Drop for SourceDb {
    fn drop(&mut self) {
        // A connection that closes last checkpoints and then deletes the
        // WAL *by name*. When the file was replaced under its path, that
        // name is the new file's WAL: never checkpoint on close then.
        if self.replaced() || FileId::of(&self.path).is_err() {
            let _ = self.conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
        }
    }
}

fn names(followed: &[Registered]) -> Vec<&str> {
    followed.iter().map(|r| r.desc.name.as_ref()).collect()
}

/// Repeated table names (`--table t --table T`) count once.
fn dedup(mut followed: Vec<Registered>) -> Vec<Registered> {
    let mut seen = std::collections::HashSet::new();
    followed.retain(|r| seen.insert(r.tid));
    followed
}

/// An SQLite error about the source, naming the file.
fn named(e: Error, path: &Path) -> Error {
    match e {
        Error::Sqlite(e) => classify(e, path),
        other => other,
    }
}
