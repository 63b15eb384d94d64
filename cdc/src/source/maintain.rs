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
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use cdc_schema::bookkeeping as sql;
use cdc_schema::log::{MARKER_OP, create_log_sql, kind, seal_sql, segment_table};

use super::consumers::{set_consumer_state, set_position};
use super::files::ConsumerRecord;
use super::meta::{log_id, record_own_ddl, schema_cookie};
use crate::db::classify;
use crate::error::Result;
use crate::log::{Segment, high_water, segments, tables_of};

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

/// The records beside the source at `path` that belong to its log.
pub(crate) fn records_of(conn: &Connection, path: &Path) -> Result<Vec<ConsumerRecord>> {
    let id = log_id(conn)?;
    Ok(ConsumerRecord::all(path)?.into_iter().filter(|r| r.log_id == id).collect())
}

/// How many log positions a maintenance could free now: those before the
/// lowest pin (0 without consumers). Cheap: water marks and the records.
pub(crate) fn freeable(conn: &Connection, path: &Path) -> Result<i64> {
    if !crate::log::is_initialised(conn)? {
        return Ok(0);
    }
    let high = high_water(conn)?;
    let Some(pin) = lowest_pin(conn, &records_of(conn, path)?, high)? else { return Ok(0) };
    let low = crate::log::low_water(conn)?.unwrap_or(pin);
    Ok((pin - low).max(0))
}

/// In one write transaction: the consumers' records copied into the
/// source's consumer table, every sealed segment wholly at or before the
/// lowest pin dropped, and, when at least `seal_at_least` positions of the
/// current table are before it, the current table sealed (the marker row
/// that starts the new one keeps `seq` going up; dropped at once when
/// every consumer has all of it). `None` (nothing
/// written) when the file at the path is no longer the one open
/// (`replaced`: checked before and right before the commit, so nothing
/// reaches a `-wal` another file now uses).
pub(crate) fn maintain(
    conn: &mut Connection,
    path: &Path,
    replaced: &dyn Fn() -> bool,
    seal_at_least: Option<i64>,
) -> Result<Option<Maintained>> {
    if replaced() || !crate::log::is_initialised(conn)? {
        return Ok(None);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(e, path))?;
    // Read under the write lock: whether the WAL holds nothing (the
    // application checkpointed it away, or closed its last connection).
    // Then this would put the only frames in it, and a file moved into
    // place next (SQLite's rule met by the application) would be read
    // through them: checkpointed away again right after the commit,
    // briefly (an application reader or writer in the way is active, and
    // its own frames will be checkpointed with these).
    let wal_was_empty = crate::db::wal_is_empty(path);
    let done = free(tx, path, replaced, seal_at_least).map_err(|e| crate::db::named(e, path))?;
    if done.is_some() && wal_was_empty && !replaced() {
        let truncated =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).optional().ok().flatten()
                == Some(0);
        tracing::debug!(truncated, "checkpointed the maintenance's own frames away");
    }
    Ok(done)
}

/// [`maintain`]'s transaction.
fn free(
    tx: rusqlite::Transaction<'_>,
    path: &Path,
    replaced: &dyn Fn() -> bool,
    seal_at_least: Option<i64>,
) -> Result<Option<Maintained>> {
    let locked = Instant::now();
    let cookie = schema_cookie(&tx)?;
    let records = records_of(&tx, path)?;
    for r in &records {
        set_position(&tx, &r.consumer, r.pin)?;
        if let Some(state) = &r.state {
            set_consumer_state(&tx, &r.consumer, state)?;
        }
    }
    let high = high_water(&tx)?;
    let mut done = Maintained::default();
    if let Some(pin) = lowest_pin(&tx, &records, high)? {
        let all = segments(&tx)?;
        let mut kept: Vec<&Segment> = Vec::new();
        let mut sealed_as = None;
        for segment in &all {
            // A segment every consumer has wholly is dropped, the row at
            // a pin included: a target's anchor is checked only against a
            // log that still holds its position, and a copy of this file
            // restored later either holds it or was taken once every
            // consumer was past it.
            match segment.bounds(&tx)? {
                Some((first, last)) if !segment.current && last <= pin => {
                    tx.execute(&sql::drop_table_sql(&segment.table), [])?;
                    done.dropped += 1;
                    done.rows += (last - first + 1) as u64;
                }
                None if !segment.current => {
                    tx.execute(&sql::drop_table_sql(&segment.table), [])?;
                    done.dropped += 1;
                }
                Some((first, last))
                    if segment.current && seal_at_least.is_some_and(|least| pin - first >= least.max(1)) =>
                {
                    seal(&tx, first, last)?;
                    done.sealed = true;
                    if last <= pin {
                        // Consumed whole already: gone at once.
                        tx.execute(&sql::drop_table_sql(&segment_table(first)), [])?;
                        done.dropped += 1;
                        done.rows += (last - first + 1) as u64;
                    } else {
                        sealed_as = Some(segment_table(first));
                    }
                    kept.push(segment);
                }
                _ => kept.push(segment),
            }
        }
        if done.dropped > 0 {
            // Layouts of the rows that stay: the current table (new when
            // just sealed) and every segment kept, the one sealed included.
            let mut tables = tables_of(&all);
            tables.retain(|(t, _)| kept.iter().any(|k| k.table == *t));
            if let Some(name) = &sealed_as {
                tables.push((name.as_str(), false));
            }
            tx.execute(&sql::forget_layouts_sql(&tables), [])?;
        }
    }
    record_own_ddl(&tx, cookie)?;
    // Nothing reaches the `-wal` before the commit: checked again right
    // before it, a file replaced while the lock was awaited is never
    // written through.
    if replaced() {
        return Ok(None);
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
    Ok(maintain(conn, &path, &|| false, Some(1))?.map_or(0, |done| done.rows))
}
