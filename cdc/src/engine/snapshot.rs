//! Snapshots: a table's rows as `Schema` (its definition at the cut),
//! `BootstrapBegin`, one `Bootstrap` per row, `BootstrapEnd`. The caller holds the read
//! transaction that makes the snapshot and the log's high-water mark one
//! consistent cut; rows are streamed, so memory is bounded by the batch
//! size however large the table.
//!
//! A target with a [`crate::BulkCopy`] whose own read of the source is the same
//! cut gets `BootstrapBegin`, then copies the rows itself (SQLite to
//! SQLite, no values through Rust: the whole table in one statement, or in
//! batches of rowids or keys), then `BootstrapEnd`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};

use super::failure::Failure;
use crate::event::{Event, Row};
use crate::log::Registered;
use crate::signal::{StopHandle, Waker};
use crate::target::Target;
use crate::value::Value;

/// Bootstrap progress of one table, reported after every batch.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The table being bootstrapped.
    pub table: Arc<str>,
    /// Rows delivered so far.
    pub rows: u64,
    /// Rows in the snapshot.
    pub total: u64,
    /// Time since this table's snapshot started.
    pub elapsed: Duration,
    /// The table is complete.
    pub done: bool,
    /// The rows are copied by the target straight from the source file
    /// (a SQLite replica: SQLite copies them), not sent as events.
    pub direct: bool,
}

/// A bootstrap progress callback ([`crate::EngineBuilder::on_progress`]).
pub(crate) type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// How a snapshot reaches the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// One `Bootstrap` event per row.
    Events,
    /// The target's [`crate::BulkCopy`], reading the same cut.
    BulkCopy,
}

/// Streams one table's snapshot to `target`. Returns the row count, or
/// `None` when the engine was stopped midway.
pub(crate) fn table(
    conn: &Connection,
    reg: &Registered,
    via: Via,
    batch_size: usize,
    waker: &Waker,
    progress: &mut Option<ProgressFn>,
    target: &mut dyn Target,
) -> Result<Option<u64>, Failure> {
    let desc = &reg.desc;
    let table: Arc<str> = desc.name.as_ref().into();
    let columns: Arc<[String]> = desc.captured().map(|c| c.name.to_string()).collect();
    let total: i64 = conn.query_row(&cdc_schema::bookkeeping::count_sql(&desc.name), [], |r| r.get(0))?;
    let total = total as u64;
    let started = Instant::now();
    let mut report = |rows: u64, done: bool| {
        if let Some(f) = progress.as_mut() {
            f(&Progress {
                table: table.clone(),
                rows,
                total,
                elapsed: started.elapsed(),
                done,
                direct: via == Via::BulkCopy,
            });
        }
    };
    // The table's definition at the cut, then its rows.
    let schema = crate::schema::table_event(conn, desc)?;
    let begin = Event::BootstrapBegin { table: table.clone(), columns: columns.clone() };
    if via == Via::BulkCopy {
        target.apply(&[schema, begin]).map_err(Failure::Target)?;
        let Some(count) = bulk(desc, total, batch_size, waker, &mut report, target)? else { return Ok(None) };
        if count != total {
            return Err(miscounted(&desc.name, count, total));
        }
        let sequence = autoincrement_sequence(conn, &desc.name)?;
        target
            .apply(&[Event::BootstrapEnd { table: table.clone(), rows: count, sequence }])
            .map_err(Failure::Target)?;
        report(count, true);
        return Ok(Some(count));
    }
    let mut events = vec![schema, begin];
    let has_rowid = !desc.without_rowid;
    let width = desc.image_len();
    let mut stmt = conn.prepare(&desc.snapshot_sql())?;
    let mut rows = stmt.query([])?;
    let mut count = 0u64;
    while let Some(r) = rows.next()? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            let v = Value::from_ref(r.get_ref(i)?).map_err(|_| crate::Error::InvalidUtf8 {
                table: table.to_string(),
                seq: 0,
                column: i
                    .checked_sub(usize::from(has_rowid))
                    .and_then(|k| columns.get(k).cloned())
                    .unwrap_or_else(|| "rowid".into()),
            })?;
            values.push(v);
        }
        let rowid = if has_rowid {
            match values.remove(0) {
                Value::Integer(i) => Some(i),
                _ => None,
            }
        } else {
            None
        };
        events.push(Event::Bootstrap { table: table.clone(), columns: columns.clone(), row: Row { rowid, values } });
        count += 1;
        if events.len() >= batch_size {
            if waker.is_stopped() {
                return Ok(None);
            }
            target.apply(&events).map_err(Failure::Target)?;
            events.clear();
            report(count, false);
        }
    }
    let sequence = autoincrement_sequence(conn, &desc.name)?;
    events.push(Event::BootstrapEnd { table: table.clone(), rows: count, sequence });
    target.apply(&events).map_err(Failure::Target)?;
    report(count, true);
    Ok(Some(count))
}

/// Rows copied per [`BulkCopy`] batch, at least: a batch costs two
/// statements, so it is larger than an event batch.
const BULK_BATCH: usize = 16_384;

/// The rows of `desc`, copied by the target itself in batches.
fn bulk(
    desc: &cdc_schema::TableDesc,
    total: u64,
    batch_size: usize,
    waker: &Waker,
    report: &mut dyn FnMut(u64, bool),
    target: &mut dyn Target,
) -> Result<Option<u64>, Failure> {
    let limit = batch_size.max(BULK_BATCH);
    let (mut count, mut from) = (0u64, crate::CopyFrom::Start);
    loop {
        if waker.is_stopped() {
            return Ok(None);
        }
        // Said at the start: a table copied in one statement reports
        // nothing else until it is done.
        if from == crate::CopyFrom::Start {
            report(0, false);
        }
        let copier = target
            .bulk_copy()
            .ok_or_else(|| Failure::Target(crate::Error::Internal("the target stopped offering a bulk copy".into())))?;
        let batch = match copier.copy_rows(desc, &from, limit, &StopHandle::of(waker)) {
            Ok(batch) => batch,
            Err(_) if waker.is_stopped() => return Ok(None),
            Err(e) => return Err(Failure::Target(e)),
        };
        count += batch.rows;
        // Batches that stopped moving forward end here, not in a loop.
        if count > total {
            return Err(miscounted(&desc.name, count, total));
        }
        match batch.next {
            Some(next) => {
                from = next;
                report(count, false);
            }
            None => return Ok(Some(count)),
        }
    }
}

/// A bulk copy that did not write exactly the rows of the cut (both reads
/// are the same cut, so only a fault of the copy, or a trigger on the
/// replica's table skipping rows, can cause it): never committed, and not
/// retried (it would do the same again).
fn miscounted(table: &str, count: u64, total: u64) -> Failure {
    Failure::Target(crate::Error::BootstrapMiscount { table: table.to_string(), copied: count, expected: total })
}

/// `table`'s entry in `sqlite_sequence` (its AUTOINCREMENT counter), if any.
fn autoincrement_sequence(conn: &Connection, table: &str) -> crate::Result<Option<i64>> {
    if !crate::schema::table_exists(conn, "sqlite_sequence")? {
        return Ok(None);
    }
    Ok(conn.query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [table], |r| r.get(0)).optional()?.flatten())
}
