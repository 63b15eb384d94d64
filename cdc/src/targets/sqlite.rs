//! The SQLite replica target (`sqlite:PATH`): exactly-once, transaction
//! consistent, and a plain SQLite file any program can read.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Statement, params};

use cdc_schema::{TableDesc, quote_ident};

use crate::Op;
use crate::capture::{Against, mismatches};
use crate::db::{DEFAULT_BUSY_TIMEOUT, classify};
use crate::error::shell_word;
use crate::error::{Error, Result};
use crate::event::{Event, Row};
use crate::lock::{FileId, OwnerLock, target_lock_path};
use crate::schema::{IndexSql, describe, table_exists, unique_index_sql};
use crate::state::{DeliveryState, TableState};
use crate::target::{BulkCopy, CopyBatch, CopyFrom, Source, SourceCut, SourceTable, Target};
use crate::targets::overtaken::{Insert, Overtaken};
use crate::value::Value;

/// The replica's own bookkeeping table: one row with the delivery state
/// (which source log, and per table: seeding or live from a position),
/// written in the same transaction as the rows it describes.
pub const STATE_TABLE: &str = "_cdc_replica_state";

/// The tables a replica created from its source's SQL, one name per row:
/// those it rebuilds when the source's schema changes and drops when the
/// source drops them. Any other table in the file is the user's.
pub const OWNED_TABLE: &str = "_cdc_replica_tables";

/// The source logs a database is a replica of (none when it is not one),
/// read from its state table: a loop back into one of them is refused.
pub fn followed_log_ids(conn: &Connection) -> Result<Vec<String>> {
    if !table_exists(conn, STATE_TABLE)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(&format!("SELECT log_id FROM {}", quote_ident(STATE_TABLE)))?;
    let ids = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// The log id of a database's own capture, if it has capture installed.
fn own_log_id(conn: &Connection) -> Result<Option<String>> {
    if !table_exists(conn, cdc_schema::log::META_TABLE)? {
        return Ok(None);
    }
    let sql = format!("SELECT value FROM {} WHERE key = 'log_id'", quote_ident(cdc_schema::log::META_TABLE));
    Ok(conn.query_row(&sql, [], |r| r.get(0)).optional()?)
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
    /// Rows have a key (rowid alias or primary key), not only values.
    keyed: bool,
    /// Capture logs inserts from `NEW` (see [`super::overtaken`]).
    new_image_inserts: bool,
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
        if path.is_dir() {
            return Err(Error::NotADatabase(path.into()));
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

    fn sql_error(&self, e: rusqlite::Error) -> Error {
        classify(e, &self.path)
    }

    fn stmts(&self, table: &str) -> Result<&TableSql> {
        self.tables
            .get(table)
            .ok_or_else(|| Error::Config(format!("replica {}: event for unknown table {table:?}", self.path.display())))
    }

    /// Says, once per table, that a trigger overtook capture's inserts
    /// (see [`super::overtaken`]).
    fn say_overtaken(&self, table: &str) {
        let (db, t) = (shell_word(&self.source.display().to_string()), shell_word(table));
        tracing::warn!(replica = %self.path.display(), table = %table,
            "a trigger that fires before capture's (a TEMP trigger of the writing connection: no other \
             connection can see it) rewrote or deleted rows of this table as they were inserted; the \
             replica follows the trigger, but capture logged those rows as inserted, and other targets \
             get them so. For exact events capture it with: cdc-setup install --db {db} --table {t} --inserts reread");
    }

    fn upsert(&self, sql: &TableSql, row: &Row) -> Result<usize> {
        let mut stmt = self.conn.prepare_cached(&sql.upsert)?;
        sql.bind_image(&mut stmt, row, 1)?;
        Ok(stmt.raw_execute()?)
    }

    fn apply_one(&mut self, event: &Event) -> Result<()> {
        match event {
            Event::Change(c) => self.apply_change(c),
            other => self.apply_bootstrap(other),
        }
    }

    fn apply_change(&mut self, c: &crate::event::Change) -> Result<()> {
        let missing = |what: &str| Error::CorruptLog { seq: c.seq, problem: format!("change without {what} image") };
        let (keyed, new_image_inserts) = {
            let sql = self.stmts(&c.table)?;
            (sql.keyed, sql.new_image_inserts)
        };
        match c.op {
            Op::Insert => {
                let after = c.after.as_ref().ok_or_else(|| missing("after"))?;
                let insert = match new_image_inserts {
                    true => self.overtaken.insert(&c.table, after, keyed),
                    false => Insert::Apply,
                };
                let sql = self.stmts(&c.table)?;
                match &insert {
                    Insert::Apply => self.upsert(sql, after)?,
                    Insert::Instead(row) => self.upsert(sql, row)?,
                    Insert::Skip => 0,
                };
                if insert != Insert::Apply && self.overtaken.first_for(&c.table) {
                    self.say_overtaken(&c.table);
                }
            }
            Op::Update => {
                let before = c.before.as_ref().ok_or_else(|| missing("before"))?;
                let after = c.after.as_ref().ok_or_else(|| missing("after"))?;
                let sql = self.stmts(&c.table)?;
                let mut stmt = self.conn.prepare_cached(&sql.update)?;
                let next = sql.bind_image(&mut stmt, after, 1)?;
                sql.bind_identity(&mut stmt, before, next)?;
                if stmt.raw_execute()? == 0 {
                    // Not here: an application trigger rewrote a row its
                    // statement had just inserted (or changed a key), and
                    // the statement's own insert, logged after it, follows.
                    // With a key, the after image is the row; without one,
                    // inserting it would add a second copy: the insert
                    // brings it.
                    if keyed {
                        self.upsert(sql, after)?;
                    }
                    if new_image_inserts {
                        self.overtaken.missed_update(&c.table, before, after);
                    }
                }
            }
            Op::Delete => {
                let before = c.before.as_ref().ok_or_else(|| missing("before"))?;
                let sql = self.stmts(&c.table)?;
                let mut stmt = self.conn.prepare_cached(&sql.delete)?;
                sql.bind_identity(&mut stmt, before, 1)?;
                if stmt.raw_execute()? == 0 && new_image_inserts {
                    self.overtaken.missed_delete(&c.table, before);
                }
            }
        }
        Ok(())
    }

    /// A bootstrap event (a change is passed on).
    fn apply_bootstrap(&mut self, event: &Event) -> Result<()> {
        let sql = self.stmts(event.table())?;
        match event {
            Event::Change(c) => return self.apply_change(c),
            Event::BootstrapBegin { table, .. } => match self.rebuild.get(table.as_ref()) {
                Some(t) => {
                    tracing::info!(replica = %self.path.display(), table = %table, "recreating the table with the source's schema");
                    self.conn.execute(&format!("DROP TABLE IF EXISTS {}", quote_ident(table)), [])?;
                    create_table(&self.conn, t)?;
                }
                None => {
                    self.conn.prepare_cached(&sql.purge)?.execute([])?;
                }
            },
            Event::Bootstrap { row, .. } => {
                self.upsert(sql, row)?;
            }
            Event::BootstrapEnd { sequence, .. } => {
                if let Some(seq) = sequence {
                    self.set_sequence(event.table(), *seq)?;
                }
            }
        }
        Ok(())
    }
}

impl SqliteTarget {
    fn begin(&mut self) -> Result<()> {
        self.begin_with("BEGIN IMMEDIATE")
    }

    fn begin_with(&mut self, begin: &str) -> Result<()> {
        if !self.in_tx {
            if FileId::of(&self.path).ok() != Some(self.file) {
                return Err(Error::Config(format!(
                    "replica {} was deleted or replaced while in use; restart the replicator to rebuild it",
                    self.path.display()
                )));
            }
            self.conn.execute_batch(begin).map_err(|e| self.sql_error(e))?;
            self.in_tx = true;
        }
        Ok(())
    }

    /// Refuses a source that is this very file, and a loop: a source that
    /// is itself a replica of this file's own captured log.
    fn refuse_loops(&self, source: &Source) -> Result<()> {
        crate::lock::refuse_source_as_target(&source.path, &self.path)?;
        if let Some(own) = own_log_id(&self.conn)?
            && source.upstream_log_ids.contains(&own)
        {
            return Err(Error::Config(format!(
                "replica {} is captured, and the source {} is itself a replica of it: replicating back would loop",
                self.path.display(),
                source.path.display()
            )));
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

/// The schema name the source is attached under for a bulk copy.
const SOURCE_SCHEMA: &str = "_cdc_source";

impl BulkCopy for SqliteTarget {
    fn open_source(&mut self, source: &Path) -> Result<()> {
        self.attach(source).map_err(|e| self.named(e))
    }

    fn read_source(&mut self) -> Result<SourceCut> {
        self.read_attached().map_err(|e| self.named(e))
    }

    fn copy_rows(&mut self, table: &TableDesc, from: &CopyFrom, limit: usize) -> Result<CopyBatch> {
        self.copy_batch(table, from, limit).map_err(|e| self.copy_error(e, &table.name))
    }
}

impl SqliteTarget {
    fn attach(&mut self, source: &Path) -> Result<()> {
        if self.in_tx {
            return Err(Error::Config(format!(
                "replica {}: a bulk copy must start its own transaction",
                self.path.display()
            )));
        }
        // An attachment left by a failed detach may be another file.
        self.detach()?;
        // Read only: no transaction of this connection ever takes a lock
        // on the source that would stop the application's writers.
        self.conn.execute("ATTACH ?1 AS _cdc_source", [crate::db::read_only_uri(source)])?;
        self.attached = Some(source.into());
        Ok(())
    }

    /// An error copying `table`: a refusal by the replica (the engine
    /// reseeds the table), the source's fault when the attached source
    /// is what is damaged, else the replica's.
    fn copy_error(&self, err: Error, table: &str) -> Error {
        let err = self.refused(err, table);
        if let (Error::Sqlite(e), Some(source)) = (&err, &self.attached)
            && matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            )
        {
            let healthy = self
                .conn
                .query_row("PRAGMA _cdc_source.quick_check(1)", [], |r| r.get::<_, String>(0))
                .is_ok_and(|ok| ok == "ok");
            if !healthy {
                return Error::Corrupt(source.clone());
            }
        }
        self.named(err)
    }

    fn read_attached(&mut self) -> Result<SourceCut> {
        if self.in_tx || self.attached.is_none() {
            return Err(Error::Config(format!("replica {}: no source opened to read", self.path.display())));
        }
        // Deferred, and reading only the source: the replica's own write
        // lock is taken by the first write (the bootstrap's purge), after
        // the engine let the source's writers go, so no wait for the
        // replica ever holds them up.
        self.begin_with("BEGIN")?;
        // Never wait here (a source in rollback-journal mode whose writer
        // waits for the engine's read): a wait means another cut anyway.
        self.conn.busy_timeout(std::time::Duration::ZERO)?;
        let log = quote_ident(cdc_schema::log::LOG_TABLE);
        let read = || -> rusqlite::Result<SourceCut> {
            let sql = format!("SELECT coalesce(max(seq), 0) FROM {SOURCE_SCHEMA}.{log}");
            let high_water = self.conn.query_row(&sql, [], |r| r.get(0))?;
            let sql = format!("PRAGMA {SOURCE_SCHEMA}.schema_version");
            let schema_version = self.conn.query_row(&sql, [], |r| r.get(0))?;
            Ok(SourceCut { high_water, schema_version })
        };
        let cut = read();
        self.conn.busy_timeout(DEFAULT_BUSY_TIMEOUT)?;
        Ok(cut?)
    }

    fn copy_batch(&mut self, table: &TableDesc, from: &CopyFrom, limit: usize) -> Result<CopyBatch> {
        if self.attached.is_none() || !self.in_tx {
            return Err(Error::Config(format!("replica {}: no source attached to copy from", self.path.display())));
        }
        if let Some(bound) = table.copy_bound_sql(SOURCE_SCHEMA) {
            let from = match from {
                CopyFrom::Start => i64::MIN,
                CopyFrom::Rowid(r) => *r,
                CopyFrom::Key(_) => return Err(Error::Config("a rowid table's copy cannot start at a key".into())),
            };
            let next: Option<i64> =
                self.conn.prepare_cached(&bound)?.query_row(params![from, limit as i64], |r| r.get(0)).optional()?;
            // `next` is past `from`, so `next - 1` cannot overflow.
            let to = next.map_or(i64::MAX, |n| n - 1);
            let rows = self.conn.prepare_cached(&table.copy_sql(SOURCE_SCHEMA))?.execute(params![from, to])?;
            return Ok(CopyBatch { rows: rows as u64, next: next.map(CopyFrom::Rowid) });
        }
        match from {
            // Only a first batch that found the key usable hands out a key.
            CopyFrom::Key(lower) => self.copy_key_batch(table, Some(lower), limit),
            CopyFrom::Start if self.batches_by_key(table)? => self.copy_key_batch(table, None, limit),
            CopyFrom::Start => {
                let rows = self.conn.prepare_cached(&table.copy_sql(SOURCE_SCHEMA))?.execute([])?;
                Ok(CopyBatch { rows: rows as u64, next: None })
            }
            CopyFrom::Rowid(_) => Err(Error::Config("a table without rowids cannot start at a rowid".into())),
        }
    }

    /// Whether a table without a usable rowid name is copied in batches
    /// along its primary key: only when SQLite serves every batch as a
    /// range search of the key's own index, in its order. That plan also
    /// proves the batches' comparison uses the index's collations (the
    /// planner uses an index for a range, and skips the sort, only when
    /// they match), under which keys are unique. Otherwise (a column of
    /// the key descending where another is not, a `COLLATE` in the key
    /// that is not the column's) each batch would sort the whole table:
    /// it is copied in one statement. Asked once, at the first batch.
    fn batches_by_key(&self, table: &TableDesc) -> Result<bool> {
        // A rowid table's key may hold NULLs, which no range holds.
        if !table.without_rowid || table.key_columns().is_empty() {
            return Ok(false);
        }
        let plan = self.query_plan(&table.copy_by_key_sql(SOURCE_SCHEMA, true, true))?;
        let served = plan.iter().any(|d| d.starts_with("SEARCH") && d.contains("USING PRIMARY KEY"))
            && !plan.iter().any(|d| d.starts_with("SCAN") || d.contains("TEMP B-TREE"));
        if !served {
            tracing::debug!(table = %table.name, ?plan, "copying the table in one statement: its key cannot batch it");
        }
        Ok(served)
    }

    /// The details of `sql`'s query plan.
    fn query_plan(&self, sql: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        // Unbound parameters are NULL: the plan does not depend on them.
        let mut rows = stmt.raw_query();
        let mut details = Vec::new();
        while let Some(r) = rows.next()? {
            details.push(r.get::<_, String>(3)?);
        }
        Ok(details)
    }

    /// One batch of rows by primary key, from `lower` (inclusive) to the
    /// key `limit` rows on (exclusive). A bound key whose text is not
    /// UTF-8 cannot be carried to the next batch as a [`Value`], and a
    /// bound equal to `lower` would not move: the rest of the table is
    /// then copied at once.
    fn copy_key_batch(&self, table: &TableDesc, lower: Option<&[Value]>, limit: usize) -> Result<CopyBatch> {
        let width = table.key_columns().len();
        let mut bound = self.conn.prepare_cached(&table.copy_by_key_bound_sql(SOURCE_SCHEMA, lower.is_some()))?;
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(2 * width + 1);
        if let Some(lower) = lower {
            params.extend(lower.iter().map(|v| v as &dyn rusqlite::ToSql));
        }
        let offset = limit.max(1) as i64;
        params.push(&offset);
        let next: Option<Vec<Value>> = bound
            .query_row(params.as_slice(), |r| {
                (0..width).map(|i| r.get_ref(i).map(Value::from_ref)).collect::<rusqlite::Result<Vec<_>>>()
            })
            .optional()?
            .and_then(|parts| parts.into_iter().collect::<std::result::Result<Vec<_>, _>>().ok())
            .filter(|next| Some(next.as_slice()) != lower);
        params.pop();
        if let Some(next) = &next {
            params.extend(next.iter().map(|v| v as &dyn rusqlite::ToSql));
        }
        let copy = table.copy_by_key_sql(SOURCE_SCHEMA, lower.is_some(), next.is_some());
        let rows = self.conn.prepare_cached(&copy)?.execute(params.as_slice())?;
        Ok(CopyBatch { rows: rows as u64, next: next.map(CopyFrom::Key) })
    }

    /// Detaches the source after a bulk copy (outside any transaction).
    fn detach(&mut self) -> Result<()> {
        if self.attached.is_some() && self.conn.is_autocommit() {
            self.conn.flush_prepared_statement_cache();
            self.conn.execute_batch("DETACH DATABASE _cdc_source").map_err(|e| self.sql_error(e))?;
            self.attached = None;
        }
        Ok(())
    }
}

impl SqliteTarget {
    /// An SQLite error about the replica, naming it.
    fn named(&self, e: Error) -> Error {
        match e {
            Error::Sqlite(e) => classify(e, &self.path),
            other => other,
        }
    }

    fn open_source(&mut self, source: &Source) -> Result<Option<DeliveryState>> {
        Target::rollback(self)?;
        self.refuse_loops(source)?;
        self.source = source.path.clone();
        let mut stored = self.read_state()?;
        // Check every existing table before writing anything, so a refused
        // replica is left exactly as it was. A table this replica made
        // follows the source's schema: when that changed, it is rebuilt
        // and reseeded. Any other table is the user's: it is used when
        // compatible, never dropped.
        let mut owned = match self.owned_tables()? {
            Some(owned) => owned,
            // A replica made before this list existed: its tables made
            // from the source's SQL are its own (a user's table with other
            // SQL stays the user's).
            None => {
                let mut owned = HashSet::new();
                for t in &source.tables {
                    let name = t.desc.name.as_ref();
                    if stored.table(name).is_some()
                        && crate::schema::table_sql(&self.conn, name).ok() == Some(t.create_sql.clone())
                    {
                        owned.insert(name.to_string());
                    }
                }
                owned
            }
        };
        self.rebuild.clear();
        for t in &source.tables {
            let name = t.desc.name.as_ref();
            if !table_exists(&self.conn, name)? || same_schema(&self.conn, t)? {
                continue;
            }
            if owned.contains(name) {
                // Not complete any more: bootstrapped (and rebuilt) again,
                // or refused when bootstraps are off.
                stored.set_seeding(name);
                self.rebuild.insert(name.to_string(), t.clone());
                continue;
            }
            let live = describe(&self.conn, name)?;
            let problems = mismatches(&t.desc, &live, Against::Source);
            if !problems.is_empty() {
                return Err(Error::ReplicaMismatch { path: self.path.clone(), table: name.to_string(), problems });
            }
        }
        let wal: String =
            self.conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(|e| self.sql_error(e))?;
        self.wal = wal.eq_ignore_ascii_case("wal");
        if !self.wal {
            tracing::warn!(replica = %self.path.display(), mode = %wal, "replica is not in WAL mode; its readers will block replication");
        }
        // In WAL mode commits are not flushed one by one (NORMAL keeps the
        // file consistent); `sync` flushes the WAL before the source is
        // told. In another mode every commit is flushed (FULL), as NORMAL
        // there may corrupt the file on a power cut.
        let synchronous = if self.wal { "NORMAL" } else { "FULL" };
        // The replica is a copy, not a validator: a row the source stored
        // with its CHECK constraints off (an import, say) is stored here too.
        self.conn.execute_batch(&format!(
            "PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=OFF; PRAGMA ignore_check_constraints=ON;"
        ))?;
        let tx = self.conn.transaction().map_err(|e| classify(e, &self.path))?;
        tx.execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {}(id INTEGER PRIMARY KEY CHECK (id = 1), log_id TEXT NOT NULL, \
                 position INTEGER NOT NULL, state TEXT NOT NULL, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
                quote_ident(STATE_TABLE)
            ),
            [],
        )?;
        tx.execute(&format!("CREATE TABLE IF NOT EXISTS {}(name TEXT PRIMARY KEY)", quote_ident(OWNED_TABLE)), [])?;
        let own = format!("INSERT OR IGNORE INTO {}(name) VALUES(?1)", quote_ident(OWNED_TABLE));
        // Tables the source dropped (schema following) go first, so a
        // table renamed on the source does not collide here with its old
        // self's indexes; a name the source has again is kept.
        let mut forgot = false;
        for table in &source.dropped {
            let again = source.tables.iter().any(|t| t.desc.name.eq_ignore_ascii_case(table));
            if owned.contains(table) && !again {
                tracing::info!(replica = %self.path.display(), table = %table, "the source dropped the table; dropping it here");
                tx.execute(&format!("DROP TABLE IF EXISTS {}", quote_ident(table)), [])?;
                tx.execute(&format!("DELETE FROM {} WHERE name = ?1", quote_ident(OWNED_TABLE)), [table])?;
                owned.remove(table);
                stored.forget(table);
                forgot = true;
            }
        }
        if forgot {
            write_state(&tx, &stored)?;
        }
        for t in &source.tables {
            let name = t.desc.name.as_ref();
            if !table_exists(&tx, name)? {
                create_table(&tx, t)?;
                owned.insert(name.to_string());
            } else if owned.contains(name) && !self.rebuild.contains_key(name) {
                // This replica's own table (a user's table is left alone).
                sync_plain_indexes(&tx, t)?;
            }
        }
        for name in &owned {
            tx.execute(&own, [name])?;
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
                    keyed: d.identity() != cdc_schema::Identity::Image,
                    new_image_inserts: t.inserts == cdc_schema::InsertImage::New,
                };
                (d.name.to_string(), sql)
            })
            .collect();
        self.stored = stored;
        Ok(Some(self.stored.clone()))
    }

    /// The tables this replica created (and so may rebuild or drop).
    /// `None` for a replica made before the list existed.
    fn owned_tables(&self) -> Result<Option<HashSet<String>>> {
        if !table_exists(&self.conn, OWNED_TABLE)? {
            return Ok(None);
        }
        let mut stmt = self.conn.prepare(&format!("SELECT name FROM {}", quote_ident(OWNED_TABLE)))?;
        let names = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(Some(names))
    }

    /// The delivery state this replica stores (empty when none yet).
    fn read_state(&self) -> Result<DeliveryState> {
        if !table_exists(&self.conn, STATE_TABLE)? {
            return Ok(DeliveryState::default());
        }
        let sql = format!("SELECT state FROM {} WHERE id = 1", quote_ident(STATE_TABLE));
        let text: Option<String> = self.conn.query_row(&sql, [], |r| r.get(0)).optional()?;
        text.map_or_else(|| Ok(DeliveryState::default()), |t| DeliveryState::from_json(&t))
    }

    fn apply_events(&mut self, events: &[Event]) -> Result<()> {
        self.begin()?;
        for e in events {
            if let Event::BootstrapBegin { table, .. } = e {
                self.purged.insert(table.to_string());
            }
            self.apply_one(e).map_err(|err| self.refused(err, e.table()))?;
        }
        Ok(())
    }

    /// An error applying an event of `table`: when retrying cannot help
    /// (a constraint, a type, a schema SQLite refuses), the replica
    /// refused that table's change and the engine reseeds just that table.
    fn refused(&self, err: Error, table: &str) -> Error {
        use rusqlite::ErrorCode::{ConstraintViolation, TooBig, TypeMismatch, Unknown};
        match err {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, msg))
                if matches!(f.code, ConstraintViolation | TypeMismatch | TooBig | Unknown) =>
            {
                let message = msg.unwrap_or_else(|| f.to_string());
                Error::ReplicaRefused { path: self.path.clone(), table: table.to_string(), message }
            }
            other => other,
        }
    }

    /// Sets `table`'s AUTOINCREMENT counter to the source's.
    fn set_sequence(&self, table: &str, seq: i64) -> Result<()> {
        if !table_exists(&self.conn, "sqlite_sequence")? {
            return Ok(());
        }
        let n = self
            .conn
            .prepare_cached("UPDATE sqlite_sequence SET seq = ?2 WHERE name = ?1")?
            .execute(params![table, seq])?;
        if n == 0 {
            self.conn
                .prepare_cached("INSERT INTO sqlite_sequence(name, seq) VALUES(?1, ?2)")?
                .execute(params![table, seq])?;
        }
        Ok(())
    }

    /// [`Target::commit`], also running `extra` inside the transaction
    /// just before it commits: bookkeeping that must be atomic with the
    /// rows and the state (a follower's stream position).
    pub fn commit_with(&mut self, state: &DeliveryState, extra: &dyn Fn(&Connection) -> Result<()>) -> Result<()> {
        self.commit_state(state, extra).map_err(|e| self.named(e))
    }

    fn commit_state(&mut self, state: &DeliveryState, extra: &dyn Fn(&Connection) -> Result<()>) -> Result<()> {
        // A live position never moves back, except for a table reseeded
        // in this very transaction.
        for (table, held) in &self.stored.tables {
            if let (TableState::Live { position: old }, Some(new)) = (held, state.live_position(table))
                && new < *old
                && state.log_id == self.stored.log_id
                && !self.purged.contains(table)
            {
                return Err(Error::Config(format!(
                    "replica {}: refusing to move table {table:?} back from seq {old} to seq {new}",
                    self.path.display()
                )));
            }
        }
        self.begin()?;
        write_state(&self.conn, state)?;
        extra(&self.conn)?;
        self.conn.execute_batch("COMMIT").map_err(|e| self.sql_error(e))?;
        self.in_tx = false;
        self.overtaken.clear();
        for table in self.purged.drain() {
            self.rebuild.remove(&table);
        }
        self.stored = state.clone();
        // Committed: a failed detach is not a failed commit (the next
        // attach detaches first).
        if let Err(e) = self.detach() {
            tracing::warn!(replica = %self.path.display(), error = %e, "could not detach the source after a bulk copy");
        }
        Ok(())
    }
}

/// Writes the delivery state row (inside the caller's transaction).
fn write_state(conn: &Connection, state: &DeliveryState) -> Result<()> {
    let sql = format!(
        "INSERT INTO {}(id, log_id, position, state) VALUES(1, ?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET \
         log_id = excluded.log_id, position = excluded.position, state = excluded.state, updated_at = CURRENT_TIMESTAMP",
        quote_ident(STATE_TABLE)
    );
    conn.prepare_cached(&sql)?.execute(params![state.log_id, state.position, state.to_json()])?;
    Ok(())
}

/// Creates a replica table from the source's SQL: the table, its indexes
/// (unique, partial and expression indexes decide which rows a table can
/// hold, and `INSERT OR REPLACE` evicts through them as on the source).
/// Never the source's triggers: their effects arrive as changes.
fn create_table(conn: &Connection, t: &SourceTable) -> Result<()> {
    conn.execute(&t.create_sql, [])?;
    for index in &t.indexes {
        conn.execute(&index.sql, [])?;
    }
    Ok(())
}

/// Whether the replica's table holds the same rows the source's can: the
/// same `CREATE TABLE` text and the same unique indexes. (Plain indexes
/// change no row: [`sync_plain_indexes`] copies them.)
fn same_schema(conn: &Connection, t: &SourceTable) -> Result<bool> {
    if crate::schema::table_sql(conn, &t.desc.name)? != t.create_sql {
        return Ok(false);
    }
    Ok(unique_index_sql(&crate::schema::indexes(conn, &t.desc.name)?) == unique_index_sql(&t.indexes))
}

/// Makes the replica table's plain (non-unique) indexes the source's: an
/// index created or dropped on the source is created or dropped here.
fn sync_plain_indexes(conn: &Connection, t: &SourceTable) -> Result<()> {
    let here = crate::schema::indexes(conn, &t.desc.name)?;
    let wanted: Vec<&IndexSql> = t.indexes.iter().filter(|i| !i.unique).collect();
    for index in here.iter().filter(|i| !i.unique) {
        if !wanted.iter().any(|w| w.sql == index.sql) {
            conn.execute(&format!("DROP INDEX {}", quote_ident(&index.name)), [])?;
        }
    }
    for index in wanted {
        if !here.iter().any(|h| h.sql == index.sql) {
            conn.execute(&index.sql, [])?;
        }
    }
    Ok(())
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
    // Rowids are compared only where they are the rows' identity (an
    // INTEGER PRIMARY KEY): elsewhere SQLite itself may renumber them.
    let sql = desc.comparable_sql();
    let (mut a, mut b) = (source.prepare(&sql)?, replica.prepare(&sql)?);
    let width = a.column_count();
    let (mut ra, mut rb) = (a.query([])?, b.query([])?);
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
