//! Freeing what every consumer has: the one kind of write a replicator
//! makes to the source, rare and short.
//!
//! The log is segmented: sealing renames the current table whole (no row
//! is copied or deleted) and the triggers go on writing into a new one;
//! a sealed segment every consumer is past is dropped whole. So a
//! maintenance is one short write transaction whatever the backlog: a
//! `DROP TABLE` of what was consumed and, when there is enough to free,
//! a rename and a `CREATE TABLE`. Consumers' pins come from their records
//! beside the source ([`super::files`]); the source's own consumer table
//! is brought up to date in the same transaction (what older tools and
//! `cdc-setup` read when a record is missing).

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use cdc_schema::bookkeeping as sql;
use cdc_schema::log::{MARKER_OP, create_log_sql, kind, seal_sql, segment_table};

use super::consumers::{records_of, set_consumer_state, set_position};
use super::files::ConsumerRecord;
use super::meta::{record_own_ddl, schema_cookie};
use crate::db::classify;
use crate::error::{Error, Result};
use crate::log::{high_water, segments, tables_of};

/// What a maintenance freed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintained {
    /// Segments dropped.
    pub dropped: usize,
    /// Log positions they spanned (rows, less any already pruned).
    pub rows: u64,
    /// Whether the current table was sealed.
    pub sealed: bool,
}

/// The lowest position any consumer still needs (its pin), over the
/// records beside the source (those of this log) and the source's own
/// consumer table; `None` without any consumer (then nothing is freed: a
/// log nobody reads yet is kept). A pin past the log's end (a record
/// written before the file was restored from an older backup) keeps the
/// whole log: that consumer reseeds, and says so, before it moves on.
pub(crate) fn lowest_pin(conn: &Connection, records: &[ConsumerRecord], high_water: i64) -> Result<Option<i64>> {
    let mut pins: Vec<i64> = records.iter().map(|r| r.pin).collect();
    let mut stmt = conn.prepare_cached(&sql::consumers_sql(false))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (name, position) = row?;
        if !records.iter().any(|r| r.consumer == name) {
            pins.push(position);
        }
    }
    Ok(pins.into_iter().map(|p| if p > high_water { 0 } else { p }).min())
}

/// What a maintenance does, decided from the lowest pin.
#[derive(Debug, Default)]
struct Plan {
    /// Sealed segments every consumer has wholly: table, positions spanned
    /// (`None`: empty). The row at a pin goes too: a target's anchor is
    /// checked only against a log that still holds its position, and a
    /// copy of this file restored later either holds it or was taken once
    /// every consumer was past it.
    drop: Vec<(String, Option<(i64, i64)>)>,
    /// The current table's first and last `seq` when it is sealed (enough
    /// of it is before the pin), and whether it is then dropped at once
    /// (every consumer has all of it).
    seal: Option<(i64, i64, bool)>,
    /// The lowest pin.
    pin: i64,
}

impl Plan {
    /// Decides, for `seal_at_least` positions of the current table before
    /// the pin worth sealing it (`None`: never sealed).
    fn make(conn: &Connection, records: &[ConsumerRecord], seal_at_least: Option<i64>) -> Result<Plan> {
        let high = high_water(conn)?;
        let Some(pin) = lowest_pin(conn, records, high)? else { return Ok(Plan::default()) };
        let mut plan = Plan { pin, ..Plan::default() };
        for segment in segments(conn)? {
            match segment.bounds(conn)? {
                Some((_, last)) if !segment.current && last > pin => {}
                bounds if !segment.current => plan.drop.push((segment.table, bounds)),
                Some((first, last)) if seal_at_least.is_some_and(|least| pin - first >= least.max(1)) => {
                    plan.seal = Some((first, last, last <= pin));
                }
                _ => {}
            }
        }
        Ok(plan)
    }

    /// Log positions it frees or seals (0: nothing to do).
    fn positions(&self) -> u64 {
        let dropped: i64 = self.drop.iter().map(|(_, b)| b.map_or(1, |(first, last)| last - first + 1)).sum();
        let sealed = self.seal.map_or(0, |(first, _, _)| self.pin - first);
        (dropped + sealed) as u64
    }
}

/// How many log positions a maintenance would free or seal now, for
/// `seal_at_least` (see [`maintain`]); 0 when there is nothing to do (or
/// no consumer). Cheap: lookups of segment bounds and the records.
pub(crate) fn freeable(conn: &Connection, path: &Path, seal_at_least: Option<i64>) -> Result<u64> {
    if !crate::log::is_initialised(conn)? {
        return Ok(0);
    }
    Ok(Plan::make(conn, &records_of(conn, path)?, seal_at_least)?.positions())
}

/// What a maintenance waits for, and what it must not write through.
pub(crate) struct Guard<'a> {
    /// The file at the path is no longer the one open: nothing is
    /// written (checked before, and right before the commit, so nothing
    /// reaches a `-wal` another file now uses).
    pub replaced: &'a dyn Fn() -> bool,
    /// Another connection is inside a transaction (see
    /// [`super::others_in_transaction`]): not begun while it is, rolled
    /// back when one began meanwhile.
    pub in_use: &'a dyn Fn() -> bool,
    /// How long to look for a moment when the write lock is free and
    /// nobody is in a transaction, looking every [`LOOK_EVERY`].
    pub wait: Duration,
}

/// How often [`Guard::wait`] looks: a writer committing back to back
/// leaves the lock free only for microseconds, and SQLite's own busy
/// handler sleeps 1, 2, 5, 10 ms between looks.
pub(crate) const LOOK_EVERY: Duration = Duration::from_micros(100);

/// In one write transaction: the consumers' records copied into the
/// source's consumer table, every sealed segment wholly at or before the
/// lowest pin dropped, and, when at least `seal_at_least` positions of the
/// current table are before it, the current table sealed (the marker row
/// that starts the new one keeps `seq` going up; dropped at once when
/// every consumer has all of it). `None`: nothing written, the file was
/// replaced. [`Error::Locked`] when no moment between the application's
/// transactions came within `guard.wait`.
pub(crate) fn maintain(
    conn: &mut Connection,
    path: &Path,
    guard: &Guard<'_>,
    seal_at_least: Option<i64>,
) -> Result<Option<Maintained>> {
    if (guard.replaced)() || !crate::log::is_initialised(conn)? {
        return Ok(None);
    }
    // Read before the write lock is taken: it is held for as short as can be.
    let records = records_of(conn, path)?;
    let tx = begin_between_transactions(conn, path, guard)?;
    // Read under the write lock: whether the WAL holds nothing (the
    // application checkpointed it away, or closed its last connection).
    // Then this would put the only frames in it, and a file moved into
    // place next (SQLite's rule met by the application) would be read
    // through them: checkpointed away again right after the commit
    // (without waiting: an application in the way is active, and its own
    // frames will be checkpointed with these).
    let wal_was_empty = crate::db::wal_is_empty(path);
    let done = free(tx, path, guard, &records, seal_at_least).map_err(|e| crate::db::named(e, path))?;
    if done.is_some() && wal_was_empty && !(guard.replaced)() {
        let truncated = checkpoint_without_waiting(conn);
        tracing::debug!(truncated, "checkpointed the maintenance's own frames away");
    }
    Ok(done)
}

/// `BEGIN IMMEDIATE` at a moment nobody else is in a transaction.
fn begin_between_transactions<'c>(conn: &'c Connection, path: &Path, guard: &Guard<'_>) -> Result<Transaction<'c>> {
    let start = Instant::now();
    loop {
        if !(guard.in_use)() {
            match Transaction::new_unchecked(conn, TransactionBehavior::Immediate) {
                Ok(tx) => return Ok(tx),
                Err(e) if crate::db::is_busy(&e) => {}
                Err(e) => return Err(classify(e, path)),
            }
        }
        if start.elapsed() >= guard.wait {
            return Err(Error::Locked { path: path.to_path_buf(), waited_ms: start.elapsed().as_millis() as u64 });
        }
        std::thread::sleep(LOOK_EVERY);
    }
}

/// `wal_checkpoint(TRUNCATE)` that never waits: without a busy handler,
/// a checkpoint the application's writer or reader is in the way of
/// copies what it can and gives up at once (SQLite's rule), so it never
/// holds the application's writers back while waiting. The connection's
/// busy timeout is put back after. Returns whether the WAL was emptied.
fn checkpoint_without_waiting(conn: &Connection) -> bool {
    let timeout: i64 = conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)).unwrap_or(0);
    let _ = conn.busy_timeout(std::time::Duration::ZERO);
    let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).optional();
    let _ = conn.busy_timeout(std::time::Duration::from_millis(timeout.max(0) as u64));
    busy.ok().flatten() == Some(0)
}

/// [`maintain`]'s transaction.
fn free(
    tx: Transaction<'_>,
    path: &Path,
    guard: &Guard<'_>,
    records: &[ConsumerRecord],
    seal_at_least: Option<i64>,
) -> Result<Option<Maintained>> {
    let locked = Instant::now();
    let cookie = schema_cookie(&tx)?;
    // Mirrored for older tools; a provisional record is not (its row
    // would go on pinning the log once its replicator is gone).
    for r in records.iter().filter(|r| !r.provisional) {
        set_position(&tx, &r.consumer, r.pin)?;
        if let Some(state) = &r.state {
            set_consumer_state(&tx, &r.consumer, state)?;
        }
    }
    let plan = Plan::make(&tx, records, seal_at_least)?;
    let mut done = Maintained::default();
    for (table, bounds) in &plan.drop {
        tx.execute(&sql::drop_table_sql(table), [])?;
        done.dropped += 1;
        done.rows += bounds.map_or(0, |(first, last)| (last - first + 1) as u64);
    }
    if let Some((first, last, consumed)) = plan.seal {
        seal(&tx, first, last)?;
        done.sealed = true;
        if consumed {
            tx.execute(&sql::drop_table_sql(&segment_table(first)), [])?;
            done.dropped += 1;
            done.rows += (last - first + 1) as u64;
        }
    }
    if done.dropped > 0 {
        // Layouts of the rows that stay: every segment left (the one just
        // sealed included) and the current table.
        let left = segments(&tx)?;
        tx.execute(&sql::forget_layouts_sql(&tables_of(&left)), [])?;
    }
    record_own_ddl(&tx, cookie)?;
    // Nothing reaches the `-wal` before the commit: checked again right
    // before it, a file replaced while the lock was awaited is never
    // written through.
    if (guard.replaced)() {
        return Ok(None);
    }
    // An application transaction begun meanwhile (a deferred one, still
    // reading) would be refused by this commit: rolled back instead, and
    // tried again at another moment.
    if (guard.in_use)() {
        return Err(Error::Locked { path: path.to_path_buf(), waited_ms: locked.elapsed().as_millis() as u64 });
    }
    tx.commit().map_err(|e| classify(e, path))?;
    tracing::debug!(?done, held_us = locked.elapsed().as_micros() as u64, "maintained the log");
    Ok(Some(done))
}

/// Renames the current table to a sealed segment and starts a new one
/// after its last row.
fn seal(tx: &Connection, first: i64, last: i64) -> Result<()> {
    // Legacy renaming leaves the triggers' bodies naming `_cdc_log`: they
    // write into the table created next.
    tx.execute_batch("PRAGMA legacy_alter_table=ON")?;
    let sealed = (|| -> rusqlite::Result<()> {
        tx.execute(&seal_sql(&segment_table(first)), [])?;
        tx.execute(&create_log_sql(), [])?;
        tx.execute(&sql::log_row_at_sql(), params![last + 1, kind(0, MARKER_OP)])?;
        Ok(())
    })();
    tx.execute_batch("PRAGMA legacy_alter_table=OFF")?;
    Ok(sealed?)
}

/// Frees what every consumer has, now, sealing the current table when
/// any of it can be freed (see [`maintain`]); returns the log positions
/// freed. Does nothing while the log has no consumer.
pub fn prune(conn: &mut Connection) -> Result<u64> {
    let path = crate::db::path_of(conn);
    let guard = Guard { replaced: &|| false, in_use: &|| false, wait: Duration::ZERO };
    Ok(maintain(conn, &path, &guard, Some(1))?.map_or(0, |done| done.rows))
}
