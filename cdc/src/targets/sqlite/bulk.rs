//! Bootstrap rows copied by SQLite itself ([`BulkCopy`]): the source
//! attached read only, rows copied in batches of rowids or of keys.

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use cdc_schema::TableDesc;

use super::SqliteTarget;
use crate::db::DEFAULT_BUSY_TIMEOUT;
use crate::error::{Error, Result};
use crate::signal::StopHandle;
use crate::target::{BulkCopy, CopyBatch, CopyFrom, SourceCut};
use crate::value::Value;

/// The schema name the source is attached under for a bulk copy.
const SOURCE_SCHEMA: &str = "_cdc_source";

impl BulkCopy for SqliteTarget {
    fn open_source(&mut self, source: &Path) -> Result<()> {
        self.attach(source).map_err(|e| self.named(e))
    }

    fn read_source(&mut self) -> Result<SourceCut> {
        self.read_attached().map_err(|e| self.named(e))
    }

    fn copy_rows(&mut self, table: &TableDesc, from: &CopyFrom, limit: usize, stop: &StopHandle) -> Result<CopyBatch> {
        let whole = match from {
            CopyFrom::Start => self.copies_whole(table).map_err(|e| self.copy_error(e, &table.name))?,
            _ => false,
        };
        // A copy in one statement can take long (a whole table): every
        // 100 000 SQLite instructions (about 20 000 rows) it looks whether
        // to stop; a stop interrupts it, and SQLite rolls the bootstrap's
        // transaction back. Removed whatever the copy did.
        let stop = stop.clone();
        self.conn.progress_handler(100_000, Some(move || stop.is_stopped()))?;
        let copied = if whole { self.copy_whole(table) } else { self.copy_batch(table, from, limit) };
        let removed = self.conn.progress_handler(0, None::<fn() -> bool>);
        let copied = copied.map_err(|e| self.copy_error(e, &table.name))?;
        removed?;
        Ok(copied)
    }
}

impl SqliteTarget {
    pub(super) fn attach(&mut self, source: &Path) -> Result<()> {
        if self.in_tx {
            return Err(Error::Internal(format!(
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
    pub(super) fn copy_error(&self, err: Error, table: &str) -> Error {
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

    pub(super) fn read_attached(&mut self) -> Result<SourceCut> {
        if self.in_tx || self.attached.is_none() {
            return Err(Error::Internal(format!("replica {}: no source opened to read", self.path.display())));
        }
        // Deferred, and reading only the source: the replica's own write
        // lock is taken by the first write (the bootstrap's purge), after
        // the engine let the source's writers go, so no wait for the
        // replica ever holds them up.
        self.begin_with("BEGIN")?;
        // Never wait here (a source in rollback-journal mode whose writer
        // waits for the engine's read): a wait means another cut anyway.
        self.conn.busy_timeout(std::time::Duration::ZERO)?;
        let (high_water_sql, cookie_sql) = cdc_schema::replica::bookkeeping::attached_cut_sql(SOURCE_SCHEMA);
        let read = || -> rusqlite::Result<SourceCut> {
            let high_water = self.conn.query_row(&high_water_sql, [], |r| r.get(0))?;
            let schema_version = self.conn.query_row(&cookie_sql, [], |r| r.get(0))?;
            Ok(SourceCut { high_water, schema_version })
        };
        let cut = read();
        self.conn.busy_timeout(DEFAULT_BUSY_TIMEOUT)?;
        Ok(cut?)
    }

    /// Whether `table` is copied whole by one `INSERT … SELECT *`, which
    /// SQLite runs as a transfer of raw records into the empty table (the
    /// transfer `VACUUM` uses: no value decoded, no row re-encoded; 1.6x
    /// faster than batches of rowid ranges, which it cannot serve).
    ///
    /// Only where that statement copies exactly what the batches would,
    /// even when SQLite declines the transfer and copies row by row (a
    /// `CHECK` constraint, which a source attached read only leaves out,
    /// so the definitions differ to SQLite; a trigger or an index of the
    /// replica's own): the replica's table has the source's very
    /// definition (so `*` names the same columns in the same order), no
    /// generated column (`*` would name it), and rows found by an `INTEGER
    /// PRIMARY KEY` or a `WITHOUT ROWID` key (SQLite's row-by-row copy, and
    /// its transfer into a table without an index, number other tables'
    /// rows anew).
    pub(super) fn copies_whole(&self, table: &TableDesc) -> Result<bool> {
        if table.columns.iter().any(|c| c.generated) || !(table.without_rowid || table.integer_primary_key().is_some())
        {
            return Ok(false);
        }
        let sql = |schema: &str| -> rusqlite::Result<Option<String>> {
            self.conn
                .prepare_cached(&format!("SELECT sql FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?1"))?
                .query_row([table.name.as_ref() as &str], |r| r.get(0))
                .optional()
                .map(Option::flatten)
        };
        let (ours, theirs) = (sql("main")?, sql(SOURCE_SCHEMA)?);
        Ok(ours.is_some() && ours == theirs)
    }

    /// Copies the whole of `table` in one statement (see
    /// [`Self::copies_whole`]).
    pub(super) fn copy_whole(&mut self, table: &TableDesc) -> Result<CopyBatch> {
        self.copying()?;
        let rows = self.conn.prepare_cached(&table.copy_whole_sql(SOURCE_SCHEMA))?.execute([])?;
        Ok(CopyBatch { rows: rows as u64, next: None })
    }

    /// A copy needs the source attached and the bootstrap's transaction open.
    fn copying(&self) -> Result<()> {
        if self.attached.is_none() || !self.in_tx {
            return Err(Error::Internal(format!("replica {}: no source attached to copy from", self.path.display())));
        }
        Ok(())
    }

    pub(super) fn copy_batch(&mut self, table: &TableDesc, from: &CopyFrom, limit: usize) -> Result<CopyBatch> {
        self.copying()?;
        if let Some(bound) = table.copy_bound_sql(SOURCE_SCHEMA) {
            let from = match from {
                CopyFrom::Start => i64::MIN,
                CopyFrom::Rowid(r) => *r,
                CopyFrom::Key(_) => return Err(Error::Internal("a rowid table's copy cannot start at a key".into())),
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
            CopyFrom::Rowid(_) => Err(Error::Internal("a table without rowids cannot start at a rowid".into())),
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
    pub(super) fn batches_by_key(&self, table: &TableDesc) -> Result<bool> {
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
    pub(super) fn query_plan(&self, sql: &str) -> Result<Vec<String>> {
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
    pub(super) fn copy_key_batch(&self, table: &TableDesc, lower: Option<&[Value]>, limit: usize) -> Result<CopyBatch> {
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
    pub(super) fn detach(&mut self) -> Result<()> {
        if self.attached.is_some() && self.conn.is_autocommit() {
            self.conn.flush_prepared_statement_cache();
            self.conn.execute_batch("DETACH DATABASE _cdc_source").map_err(|e| self.sql_error(e))?;
            self.attached = None;
        }
        Ok(())
    }
}
