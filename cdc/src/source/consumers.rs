//! Consumers of the log: each one's retention pin, the delivery state kept
//! for a target that keeps none, and what each has not delivered yet. A
//! consumer's record beside the source ([`super::ConsumerRecord`]) is its
//! truth; the source's consumer table is brought up to date when the log
//! is maintained, and speaks for a consumer without a record (one from an
//! earlier version, or whose record was deleted).

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use cdc_schema::bookkeeping as sql;
use cdc_schema::log::CONSUMERS_TABLE;

use super::files::ConsumerRecord;
use super::meta::log_id;
use crate::db::path_of;
use crate::error::{Error, Result};
use crate::log::{ensure_current, is_initialised, now_ms};
use crate::state::DeliveryState;

/// The records beside the source at `path` (which `conn` has open) that
/// belong to its log.
pub(crate) fn records_of(conn: &Connection, path: &std::path::Path) -> Result<Vec<ConsumerRecord>> {
    let id = log_id(conn)?;
    Ok(ConsumerRecord::all(path)?.into_iter().filter(|r| r.log_id == id).collect())
}

/// The record of `consumer` beside the source `conn` has open, if it has
/// one for this log.
fn record(conn: &Connection, consumer: &str) -> Result<Option<ConsumerRecord>> {
    let Some(record) = ConsumerRecord::load(&path_of(conn), consumer)? else { return Ok(None) };
    Ok((is_initialised(conn)? && record.log_id == log_id(conn)?).then_some(record))
}

/// A consumer's retention pin: no log row after it may be freed (its
/// record's; else the source's consumer table's).
pub fn position(conn: &Connection, consumer: &str) -> Result<Option<i64>> {
    if let Some(record) = record(conn, consumer)? {
        return Ok(Some(record.pin));
    }
    if !is_initialised(conn)? {
        return Ok(None);
    }
    Ok(conn.query_row(&sql::position_sql(), [consumer], |r| r.get(0)).optional()?)
}

/// Whether the consumer table has the `state` column (logs made by older
/// versions do not; it is added on first use).
fn has_state_column(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(sql::HAS_COLUMN, [CONSUMERS_TABLE, "state"], |_| Ok(())).optional()?.is_some())
}

/// The delivery state kept for a consumer whose target cannot keep its
/// own (`None`: no consumer, or no state stored): its record's, else the
/// source's consumer table's.
pub fn consumer_state(conn: &Connection, consumer: &str) -> Result<Option<DeliveryState>> {
    if let Some(record) = record(conn, consumer)? {
        return Ok(record.state);
    }
    if !is_initialised(conn)? || !has_state_column(conn)? {
        return Ok(None);
    }
    let text: Option<Option<String>> =
        conn.query_row(&sql::consumer_state_sql(), [consumer], |r| r.get(0)).optional()?;
    text.flatten().map(|t| DeliveryState::from_json(&t)).transpose()
}

/// Registers a consumer in the source's consumer table with its
/// retention pin: the lowest position its target still needs the log
/// after (a write to the source: a running replicator keeps its pin in
/// its record instead, copied here when the log is maintained). It
/// follows the target's state, so it moves back after a re-bootstrap of
/// a rewound source.
pub fn set_position(conn: &Connection, consumer: &str, seq: i64) -> Result<()> {
    conn.execute(&sql::set_position_sql(), params![consumer, seq])?;
    Ok(())
}

/// Stores the delivery state kept for `consumer` in the source's consumer
/// table (which must hold it).
pub(crate) fn set_consumer_state(conn: &Connection, consumer: &str, state: &DeliveryState) -> Result<()> {
    // Files installed before the column was part of the table get it here
    // (a schema change, once).
    if !has_state_column(conn)? {
        conn.execute(&sql::add_state_column_sql(), [])?;
    }
    conn.execute(&sql::set_consumer_state_sql(), params![consumer, state.to_json()])?;
    Ok(())
}

/// Drops a consumer: its pin no longer holds the log back. Returns whether
/// it existed.
pub(crate) fn delete_consumer(conn: &Connection, consumer: &str) -> Result<bool> {
    Ok(conn.execute(&sql::delete_consumer_sql(), [consumer])? > 0)
}

/// Renames consumer `from` to `to` unless `to` exists: its record beside
/// the source and its row in the source's consumer table; `true` when
/// either was renamed. (The HTTP target's consumer name used to hold the
/// URL's credentials; they must leave both.)
pub fn rename_consumer(conn: &Connection, from: &str, to: &str) -> Result<bool> {
    let path = path_of(conn);
    let mut renamed = false;
    if let Some(mut old) = record(conn, from)?
        && record(conn, to)?.is_none()
    {
        old.consumer = to.to_string();
        old.save(&path)?;
        ConsumerRecord::remove(&path, from)?;
        renamed = true;
    }
    if is_initialised(conn)? && conn.execute(&sql::rename_consumer_sql(), [from, to])? > 0 {
        renamed = true;
    }
    Ok(renamed)
}

/// A consumer and how far it got.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsumerStatus {
    /// The consumer's name.
    pub name: String,
    /// Its retention pin: no log row after it is freed.
    pub position: i64,
    /// Changes in the log after its position. (The log records no write
    /// times, see [`crate::log::LogReader`]: a replicator's own status and
    /// metrics say how old what it has not delivered is.)
    pub pending: i64,
    /// When its record was last written (UTC, RFC 3339: `2026-12-05T10:00:00Z`).
    pub acknowledged_at: String,
    /// Seconds since then.
    pub acknowledged_seconds_ago: f64,
    /// Its delivery state is kept beside the source (its target keeps
    /// none itself).
    pub state_in_source: bool,
    /// Its replicator runs and it pins the log only while it does: a peek,
    /// or nothing delivered yet ([`crate::source::ConsumerRecord::provisional`]).
    pub provisional: bool,
}

/// Every consumer of the log, with what it has not delivered (read-only):
/// those with a record beside the source, and those only the source's
/// consumer table knows.
pub fn consumers(conn: &Connection) -> Result<Vec<ConsumerStatus>> {
    if !is_initialised(conn)? {
        return Ok(Vec::new());
    }
    ensure_current(conn)?;
    let records = records_of(conn, &path_of(conn))?;
    let mut stmt = conn.prepare(&sql::consumers_sql(has_state_column(conn)?))?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, Option<String>>(3)?))
    })?;
    // (name, pin, written at, state kept, provisional)
    let mut all: Vec<(String, i64, i64, bool, bool)> =
        records.iter().map(|r| (r.consumer.clone(), r.pin, r.written_ms, r.state.is_some(), r.provisional)).collect();
    for row in rows {
        let (name, position, written, state) = row?;
        if !all.iter().any(|(n, ..)| *n == name) {
            all.push((name, position, written.unwrap_or(0), state.is_some(), false));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let segments = crate::log::segments(conn)?;
    let pending_sql = sql::changes_after_sql(&crate::log::tables_of(&segments));
    let now = now_ms();
    let mut out = Vec::new();
    for (name, position, written_ms, state_in_source, provisional) in all {
        let pending: i64 = conn.query_row(&pending_sql, [position], |r| r.get(0))?;
        let acknowledged_at: String =
            conn.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%SZ', ?1 / 1000.0, 'unixepoch')", [written_ms], |r| {
                r.get(0)
            })?;
        out.push(ConsumerStatus {
            name,
            position,
            pending,
            acknowledged_at,
            acknowledged_seconds_ago: ((now - written_ms).max(0) as f64) / 1000.0,
            state_in_source,
            provisional,
        });
    }
    Ok(out)
}

/// Drops consumer `name`, so that its pin no longer holds the log back:
/// its record and its row in the source's consumer table.
pub fn remove_consumer(conn: &mut Connection, name: &str) -> Result<()> {
    let path = path_of(conn);
    let recorded = record(conn, name)?.is_some();
    let registered = is_initialised(conn)? && delete_consumer(conn, name).map_err(|e| crate::db::named(e, &path))?;
    if !recorded && !registered {
        return Err(Error::NoSuchConsumer { db: path, name: name.to_string() });
    }
    ConsumerRecord::remove(&path, name)
}
