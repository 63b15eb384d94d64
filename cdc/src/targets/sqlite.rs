//! The SQLite replica target (`sqlite:PATH`): exactly-once, transaction
//! consistent, and a plain SQLite file any program can read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Statement, params};

use cdc_schema::quote_ident;

use crate::Op;
use crate::capture::{Against, mismatches};
use crate::db::{DEFAULT_BUSY_TIMEOUT, classify};
use crate::error::{Error, Result};
use crate::event::{Event, Row};
use crate::schema::describe;
use crate::target::{Source, Target};

/// The replica's own bookkeeping table: the position it holds, per source log.
pub const POSITION_TABLE: &str = "_cdc_replica";

/// Whether `conn` has an ordinary table named `table`.
fn table_exists(conn: &Connection, table: &str) -> Result<bool> {
    let sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1";
    Ok(conn.query_row(sql, [table], |_| Ok(())).optional()?.is_some())
}

/// Per-table SQL, generated once at open by `cdc-schema` (no per-row SQL
/// building); statements are prepared once and cached by rusqlite.
struct TableSql {
    upsert: String,
    update: String,
    delete: String,
    purge: String,
    /// Image positions of the identity (rowid, or key columns in key order).
    identity: Vec<usize>,
    has_rowid: bool,
}

impl TableSql {
    /// Binds `row` as an image (rowid first for rowid tables) from
    /// parameter `first`, in place: no value is copied. Returns the next
    /// parameter index.
    fn bind_image(&self, stmt: &mut Statement<'_>, row: &Row, first: usize) -> rusqlite::Result<usize> {
        let mut i = first;
        if self.has_rowid {
            stmt.raw_bind_parameter(i, row.rowid)?;
            i += 1;
        }
        for v in &row.values {
            stmt.raw_bind_parameter(i, v)?;
            i += 1;
        }
        Ok(i)
    }

    /// Binds `row`'s identity (rowid, or key values in key order) from `first`.
    fn bind_identity(&self, stmt: &mut Statement<'_>, row: &Row, first: usize) -> rusqlite::Result<()> {
        for (k, &pos) in self.identity.iter().enumerate() {
            match (self.has_rowid, pos) {
                (true, 0) => stmt.raw_bind_parameter(first + k, row.rowid)?,
                (true, p) => stmt.raw_bind_parameter(first + k, &row.values[p - 1])?,
                (false, p) => stmt.raw_bind_parameter(first + k, &row.values[p])?,
            }
        }
        Ok(())
    }
}

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
    conn: Connection,
    tables: HashMap<String, TableSql>,
    log_id: String,
    in_tx: bool,
}

impl SqliteTarget {
    /// Opens the replica, creating the file if it is missing (its folder
    /// must exist). WAL, so readers never block replication, and
    /// `synchronous=FULL`, so a commit the source is told about survives
    /// power loss.
    pub fn open(path: &Path) -> Result<SqliteTarget> {
        if path.is_dir() {
            return Err(Error::NotADatabase(path.into()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(e, path))?;
        conn.busy_timeout(DEFAULT_BUSY_TIMEOUT)?;
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
            .map_err(|e| classify(e, path))?;
        if conn.is_readonly(rusqlite::MAIN_DB)? {
            return Err(Error::ReadOnly(path.into()));
        }
        Ok(SqliteTarget { path: path.into(), conn, tables: HashMap::new(), log_id: String::new(), in_tx: false })
    }

    /// The replica connection (for reading it back in tests and tools).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn sql_error(&self, e: rusqlite::Error) -> Error {
        classify(e, &self.path)
    }

    fn stmts(&self, table: &str) -> Result<&TableSql> {
        self.tables
            .get(table)
            .ok_or_else(|| Error::Config(format!("replica {}: event for unknown table {table:?}", self.path.display())))
    }

    fn upsert(&self, sql: &TableSql, row: &Row) -> Result<usize> {
        let mut stmt = self.conn.prepare_cached(&sql.upsert)?;
        sql.bind_image(&mut stmt, row, 1)?;
        Ok(stmt.raw_execute()?)
    }

    fn apply_one(&self, event: &Event) -> Result<()> {
        let sql = self.stmts(event.table())?;
        let missing = |what: &str| Error::CorruptLog { seq: 0, problem: format!("change without {what} image") };
        match event {
            Event::Change(c) => match c.op {
                Op::Insert => {
                    self.upsert(sql, c.after.as_ref().ok_or_else(|| missing("after"))?)?;
                }
                Op::Update => {
                    let before = c.before.as_ref().ok_or_else(|| missing("before"))?;
                    let after = c.after.as_ref().ok_or_else(|| missing("after"))?;
                    let mut stmt = self.conn.prepare_cached(&sql.update)?;
                    let next = sql.bind_image(&mut stmt, after, 1)?;
                    sql.bind_identity(&mut stmt, before, next)?;
                    if stmt.raw_execute()? == 0 {
                        // The row is not here (it never can be once caught
                        // up; be robust anyway): the after image wins.
                        self.upsert(sql, after)?;
                    }
                }
                Op::Delete => {
                    let before = c.before.as_ref().ok_or_else(|| missing("before"))?;
                    let mut stmt = self.conn.prepare_cached(&sql.delete)?;
                    sql.bind_identity(&mut stmt, before, 1)?;
                    stmt.raw_execute()?;
                }
            },
            Event::BootstrapBegin { .. } => {
                self.conn.prepare_cached(&sql.purge)?.execute([])?;
            }
            Event::Bootstrap { row, .. } => {
                self.upsert(sql, row)?;
            }
            Event::BootstrapEnd { .. } => {}
        }
        Ok(())
    }
}

impl Target for SqliteTarget {
    fn open(&mut self, source: &Source) -> Result<Option<i64>> {
        // Check every existing table before writing anything, so a refused
        // replica is left exactly as it was.
        for t in &source.tables {
            if table_exists(&self.conn, &t.desc.name)? {
                let live = describe(&self.conn, &t.desc.name)?;
                let problems = mismatches(&t.desc, &live, Against::Source);
                if !problems.is_empty() {
                    return Err(Error::ReplicaMismatch {
                        path: self.path.clone(),
                        table: t.desc.name.to_string(),
                        problems,
                    });
                }
            }
        }
        let wal: String =
            self.conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(|e| self.sql_error(e))?;
        if !wal.eq_ignore_ascii_case("wal") {
            tracing::warn!(replica = %self.path.display(), mode = %wal, "replica is not in WAL mode; its readers will block replication");
        }
        self.conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;")?;
        let tx = self.conn.transaction().map_err(|e| classify(e, &self.path))?;
        tx.execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {}(log_id TEXT PRIMARY KEY, position INTEGER NOT NULL, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
                quote_ident(POSITION_TABLE)
            ),
            [],
        )?;
        for t in &source.tables {
            if !table_exists(&tx, &t.desc.name)? {
                tx.execute(&t.create_sql, [])?;
                for index in &t.index_sql {
                    tx.execute(index, [])?;
                }
            }
        }
        tx.commit().map_err(|e| classify(e, &self.path))?;
        self.conn.set_prepared_statement_cache_capacity(8 + 4 * source.tables.len());
        self.tables = source
            .tables
            .iter()
            .map(|t| {
                let d = &t.desc;
                let sql = TableSql {
                    upsert: d.upsert_sql(),
                    update: d.update_sql(),
                    delete: d.delete_sql(),
                    purge: d.purge_sql(),
                    identity: d.identity_positions(),
                    has_rowid: !d.without_rowid,
                };
                (d.name.to_string(), sql)
            })
            .collect();
        self.log_id = source.log_id.clone();
        let sql = format!("SELECT position FROM {} WHERE log_id = ?1", quote_ident(POSITION_TABLE));
        Ok(self.conn.query_row(&sql, [&self.log_id], |r| r.get(0)).optional()?)
    }

    fn apply(&mut self, events: &[Event]) -> Result<()> {
        if !self.in_tx {
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| self.sql_error(e))?;
            self.in_tx = true;
        }
        events.iter().try_for_each(|e| self.apply_one(e))
    }

    fn commit(&mut self, position: i64) -> Result<()> {
        if !self.in_tx {
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| self.sql_error(e))?;
            self.in_tx = true;
        }
        let sql = format!(
            "INSERT INTO {}(log_id, position) VALUES(?1, ?2) ON CONFLICT(log_id) DO UPDATE SET position = excluded.position, updated_at = CURRENT_TIMESTAMP",
            quote_ident(POSITION_TABLE)
        );
        self.conn.prepare_cached(&sql)?.execute(params![self.log_id, position])?;
        self.conn.execute_batch("COMMIT").map_err(|e| self.sql_error(e))?;
        self.in_tx = false;
        Ok(())
    }

    fn rollback(&mut self) -> Result<()> {
        if self.in_tx {
            self.in_tx = false;
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }
}

/// Exact equality: same storage class, REALs bit for bit (`-0.0 != 0.0`).
fn same(a: rusqlite::types::ValueRef<'_>, b: rusqlite::types::ValueRef<'_>) -> bool {
    use rusqlite::types::ValueRef::Real;
    match (a, b) {
        (Real(x), Real(y)) => x.to_bits() == y.to_bits(),
        (a, b) => a == b && a.data_type() == b.data_type(),
    }
}

/// Compares a replica table with its source, row by row in identity
/// order, value by value and storage class by storage class. Returns the
/// first difference, or `None` when they are equal.
pub fn compare_table(source: &Connection, replica: &Connection, table: &str) -> Result<Option<String>> {
    let desc = describe(source, table)?;
    let sql = desc.snapshot_sql();
    let (mut a, mut b) = (source.prepare(&sql)?, replica.prepare(&sql)?);
    let (mut ra, mut rb) = (a.query([])?, b.query([])?);
    let width = desc.image_len();
    let mut n = 0u64;
    loop {
        match (ra.next()?, rb.next()?) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Ok(Some(format!("{table}: the replica has only {n} rows"))),
            (None, Some(_)) => {
                return Ok(Some(format!("{table}: the replica has more than the source's {n} rows")));
            }
            (Some(x), Some(y)) => {
                for i in 0..width {
                    let (vx, vy) = (x.get_ref(i)?, y.get_ref(i)?);
                    if !same(vx, vy) {
                        return Ok(Some(format!("{table}: row {n}, column {i}: source {vx:?}, replica {vy:?}")));
                    }
                }
                n += 1;
            }
        }
    }
}
