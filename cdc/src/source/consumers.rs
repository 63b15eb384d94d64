//! Consumers of the log: each one's retention pin, the delivery state the
//! source keeps for a target that keeps none, and what each has not
//! acknowledged yet.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use cdc_schema::legacy;
use cdc_schema::log::{CONSUMERS_TABLE, IS_CHANGE, LOG_TABLE};
use cdc_schema::quote_ident;

use crate::db::{classify, path_of};
use crate::error::{Error, Result};
use crate::log::{ensure_current, has_legacy, is_initialised};
use crate::state::DeliveryState;

/// A consumer's retention pin (the `seq` up to which it acknowledged).
pub fn position(conn: &Connection, consumer: &str) -> Result<Option<i64>> {
    let sql = format!("SELECT position FROM {} WHERE name = ?1", quote_ident(CONSUMERS_TABLE));
    Ok(conn.query_row(&sql, [consumer], |r| r.get(0)).optional()?)
}

/// Whether the consumer table has the `state` column (logs made by older
/// versions do not; it is added on first use).
fn has_state_column(conn: &Connection) -> Result<bool> {
    let sql =
        format!("SELECT 1 FROM pragma_table_info({}) WHERE name = 'state'", cdc_schema::quote_literal(CONSUMERS_TABLE));
    Ok(conn.query_row(&sql, [], |_| Ok(())).optional()?.is_some())
}

/// The delivery state the source keeps for a consumer whose target cannot
/// keep its own (`None`: no consumer, or no state stored).
pub fn consumer_state(conn: &Connection, consumer: &str) -> Result<Option<DeliveryState>> {
    if !has_state_column(conn)? {
        return Ok(None);
    }
    let sql = format!("SELECT state FROM {} WHERE name = ?1", quote_ident(CONSUMERS_TABLE));
    let text: Option<Option<String>> = conn.query_row(&sql, [consumer], |r| r.get(0)).optional()?;
    text.flatten().map(|t| DeliveryState::from_json(&t)).transpose()
}

/// Records a consumer's retention pin: the lowest position its target
/// still needs the log after. It follows the target's state, so it moves
/// back after a re-bootstrap of a rewound source (the positions it mirrors
/// never move back otherwise).
pub fn set_position(conn: &Connection, consumer: &str, seq: i64) -> Result<()> {
    let sql = format!(
        "INSERT INTO {}(name, position) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET \
         position = excluded.position, updated_at = CURRENT_TIMESTAMP",
        quote_ident(CONSUMERS_TABLE)
    );
    conn.execute(&sql, params![consumer, seq])?;
    Ok(())
}

/// Stores the delivery state the source keeps for `consumer` (which must
/// be registered).
pub fn set_consumer_state(conn: &Connection, consumer: &str, state: &DeliveryState) -> Result<()> {
    let table = quote_ident(CONSUMERS_TABLE);
    // Files installed before the column was part of the table get it here
    // (a schema change, once).
    if !has_state_column(conn)? {
        conn.execute(&format!("ALTER TABLE {table} ADD COLUMN state TEXT"), [])?;
    }
    conn.execute(&format!("UPDATE {table} SET state = ?2 WHERE name = ?1"), params![consumer, state.to_json()])?;
    Ok(())
}

/// Drops a consumer: its pin no longer holds the log back. Returns whether
/// it existed.
pub(crate) fn delete_consumer(conn: &Connection, consumer: &str) -> Result<bool> {
    let sql = format!("DELETE FROM {} WHERE name = ?1", quote_ident(CONSUMERS_TABLE));
    Ok(conn.execute(&sql, [consumer])? > 0)
}

/// Renames consumer `from` to `to` unless `to` exists; `true` when renamed.
/// (The HTTP target's consumer name used to hold the URL's credentials.)
pub fn rename_consumer(conn: &Connection, from: &str, to: &str) -> Result<bool> {
    let sql = format!(
        "UPDATE {0} SET name = ?2 WHERE name = ?1 AND NOT EXISTS (SELECT 1 FROM {0} WHERE name = ?2)",
        quote_ident(CONSUMERS_TABLE)
    );
    Ok(conn.execute(&sql, [from, to])? > 0)
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
    let log = quote_ident(LOG_TABLE);
    let table = quote_ident(CONSUMERS_TABLE);
    let has_state: bool = conn.query_row(
        &format!(
            "SELECT count(*) FROM pragma_table_info({}) WHERE name = 'state'",
            cdc_schema::quote_literal(CONSUMERS_TABLE)
        ),
        [],
        |r| r.get(0),
    )?;
    let state = if has_state { "state IS NOT NULL" } else { "0" };
    let mut pending = format!("(SELECT count(*) FROM {log} WHERE seq > c.position AND {IS_CHANGE})");
    if has_legacy(conn)? {
        pending = format!(
            "{pending} + (SELECT count(*) FROM {} WHERE seq > c.position AND {})",
            quote_ident(legacy::LOG_TABLE),
            legacy::IS_CHANGE
        );
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT name, position, {pending}, updated_at, (julianday('now') - julianday(updated_at)) * 86400.0, {state} \
         FROM {table} AS c ORDER BY name"
    ))?;
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
    let found = is_initialised(conn)?
        && delete_consumer(conn, name).map_err(|e| match e {
            Error::Sqlite(e) => classify(e, &path),
            other => other,
        })?;
    if !found {
        return Err(Error::NoSuchConsumer { db: path, name: name.to_string() });
    }
    Ok(())
}
