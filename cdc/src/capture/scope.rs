//! Which tables schema following may capture by itself. A replicator that
//! follows every table captures a table that appears on the source only
//! when an operator asked for every table (`cdc-setup install --all`,
//! [`install_every_table`]) and has not removed capture from that table
//! since; and, whatever was asked, a captured table renamed (its capture
//! triggers went with it). Tables an operator left out are never
//! captured behind their back.

use rusqlite::{Connection, OptionalExtension, params};

use cdc_schema::bookkeeping as sql;

use super::install::{Installed, install_with};
use crate::error::Result;
use crate::log::is_initialised;

/// `_cdc_meta`: capture was installed for every table.
const EVERY_TABLE_KEY: &str = "every_table";
/// `_cdc_meta`: tables capture was removed from since (a JSON list).
const LEFT_OUT_KEY: &str = "left_out";

/// Attaches capture to every table of the file ([`crate::schema::capturable_tables`])
/// and records that the operator wants every table: tables created later
/// are captured by replicators that follow the schema.
pub fn install_every_table(conn: &mut Connection, inserts: Option<cdc_schema::InsertImage>) -> Result<Vec<Installed>> {
    let tables = crate::schema::capturable_tables(conn)?;
    let done = install_with(conn, &tables, inserts)?;
    conn.execute(&sql::set_meta_sql(), params![EVERY_TABLE_KEY, "1"])?;
    conn.execute(&sql::delete_meta_sql(), [LEFT_OUT_KEY])?;
    Ok(done)
}

/// Tables removed from capture by an operator: not captured again by
/// schema following.
pub(super) fn left_out(conn: &Connection, tables: &[String], out: bool) -> Result<()> {
    if !is_initialised(conn)? {
        return Ok(());
    }
    let mut names = read_left_out(conn)?;
    names.retain(|n| !tables.iter().any(|t| t.eq_ignore_ascii_case(n)));
    if out {
        names.extend(tables.iter().cloned());
    }
    conn.execute(&sql::set_meta_sql(), params![LEFT_OUT_KEY, serde_json::to_string(&names)?])?;
    Ok(())
}

fn read_left_out(conn: &Connection) -> Result<Vec<String>> {
    let text: Option<String> = conn.query_row(&sql::meta_sql(), [LEFT_OUT_KEY], |r| r.get(0)).optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?.unwrap_or_default())
}

/// Whether schema following may capture `table`, which is not captured:
/// it carries capture's triggers (a captured table renamed), or the
/// operator asked for every table and did not remove this one.
pub fn may_capture(conn: &Connection, table: &str) -> Result<bool> {
    if carries_capture(conn, table)? {
        return Ok(true);
    }
    if !is_initialised(conn)? {
        return Ok(false);
    }
    let every = conn.query_row(&sql::meta_sql(), [EVERY_TABLE_KEY], |r| r.get::<_, String>(0)).optional()?.is_some();
    Ok(every && !read_left_out(conn)?.iter().any(|n| n.eq_ignore_ascii_case(table)))
}

/// Whether `table` carries capture's triggers: a captured table renamed
/// (SQLite moves its triggers with it). Ask before removing capture from
/// the old name, which drops those triggers.
pub fn carries_capture(conn: &Connection, table: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE \
             AND name LIKE '\\_cdc\\_%' ESCAPE '\\'",
            [table],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}
