//! Consumers of the log: each one's retention pin, the delivery state the
//! source keeps for a target that keeps none, and what each has not
//! acknowledged yet.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use cdc_schema::bookkeeping as sql;
use cdc_schema::log::CONSUMERS_TABLE;

use crate::db::path_of;
use crate::error::{Error, Result};
use crate::log::{ensure_current, has_legacy, is_initialised};
use crate::state::DeliveryState;

/// A consumer's retention pin (the `seq` up to which it acknowledged).
pub fn position(conn: &Connection, consumer: &str) -> Result<Option<i64>> {
    Ok(conn.query_row(&sql::position_sql(), [consumer], |r| r.get(0)).optional()?)
}

/// Whether the consumer table has the `state` column (logs made by older
/// versions do not; it is added on first use).
fn has_state_column(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(sql::HAS_COLUMN, [CONSUMERS_TABLE, "state"], |_| Ok(())).optional()?.is_some())
}

/// The delivery state the source keeps for a consumer whose target cannot
/// keep its own (`None`: no consumer, or no state stored).
pub fn consumer_state(conn: &Connection, consumer: &str) -> Result<Option<DeliveryState>> {
    if !has_state_column(conn)? {
        return Ok(None);
    }
    let text: Option<Option<String>> =
        conn.query_row(&sql::consumer_state_sql(), [consumer], |r| r.get(0)).optional()?;
    text.flatten().map(|t| DeliveryState::from_json(&t)).transpose()
}

/// Records a consumer's retention pin: the lowest position its target
/// still needs the log after. It follows the target's state, so it moves
/// back after a re-bootstrap of a rewound source (the positions it mirrors
/// never move back otherwise).
pub fn set_position(conn: &Connection, consumer: &str, seq: i64) -> Result<()> {
    conn.execute(&sql::set_position_sql(), params![consumer, seq])?;
    Ok(())
}

/// Stores the delivery state the source keeps for `consumer` (which must
/// be registered).
pub fn set_consumer_state(conn: &Connection, consumer: &str, state: &DeliveryState) -> Result<()> {
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

/// Renames consumer `from` to `to` unless `to` exists; `true` when renamed.
/// (The HTTP target's consumer name used to hold the URL's credentials.)
pub fn rename_consumer(conn: &Connection, from: &str, to: &str) -> Result<bool> {
    Ok(conn.execute(&sql::rename_consumer_sql(), [from, to])? > 0)
}

/// A consumer and how far it got.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsumerStatus {
    /// The consumer's name.
    pub name: String,
    /// Its retention pin: the log `seq` up to which it acknowledged.
    pub position: i64,
    /// Changes in the log after its position. (The log records no write
    /// times, see [`crate::log::LogReader`]: a replicator's own status and
    /// metrics say how old what it has not delivered is.)
    pub pending: i64,
    /// When it last acknowledged (UTC, `YYYY-MM-DD HH:MM:SS`).
    pub acknowledged_at: String,
    /// Seconds since it last acknowledged.
    pub acknowledged_seconds_ago: f64,
    /// The source keeps its delivery state (its target keeps none itself).
    pub state_in_source: bool,
}

/// Every consumer of the log, with what it has not delivered (read-only).
pub fn consumers(conn: &Connection) -> Result<Vec<ConsumerStatus>> {
    if !is_initialised(conn)? {
        return Ok(Vec::new());
    }
    ensure_current(conn)?;
    let mut stmt = conn.prepare(&sql::consumers_sql(has_state_column(conn)?, has_legacy(conn)?))?;
    let rows = stmt.query_map([], |r| {
        Ok(ConsumerStatus {
            name: r.get(0)?,
            position: r.get(1)?,
            pending: r.get(2)?,
            acknowledged_at: r.get(3)?,
            acknowledged_seconds_ago: r.get::<_, f64>(4)?.max(0.0),
            state_in_source: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Drops consumer `name`, so that its pin no longer holds the log back.
pub fn remove_consumer(conn: &mut Connection, name: &str) -> Result<()> {
    let path = path_of(conn);
    let found = is_initialised(conn)? && delete_consumer(conn, name).map_err(|e| crate::db::named(e, &path))?;
    if !found {
        return Err(Error::NoSuchConsumer { db: path, name: name.to_string() });
    }
    Ok(())
}
