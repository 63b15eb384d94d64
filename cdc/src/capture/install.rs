//! Attaching and removing capture: triggers, registry rows, markers.

use rusqlite::{Connection, TransactionBehavior, params};
use serde::Serialize;

use cdc_schema::bookkeeping as sql;
use cdc_schema::log::{drop_internal_ddl, insert_marker_sql, internal_ddl};
use cdc_schema::{Against, InsertImage, TableDesc, mismatches};

use super::{order, upgrade};
use crate::db::{classify, path_of};
use crate::error::{Error, Result};
use crate::event::Cdc;
use crate::log::{Registered, is_initialised, registry};
use crate::schema::{describe, describe_difference};
use crate::source::{ConsumerStatus, consumers, record_own_ddl, schema_cookie, since_key};

/// What `install` did for one table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Installed {
    /// Triggers created for the first time.
    New {
        /// The table, as the database spells it.
        table: String,
    },
    /// Capture was installed by an older version (log format 1): the log
    /// and the table's triggers were upgraded in place, with no gap.
    Upgraded {
        /// The table, as the database spells it.
        table: String,
    },
    /// Already installed and unchanged: nothing was written.
    Unchanged {
        /// The table, as the database spells it.
        table: String,
    },
    /// Re-attached after the table changed (what changed is said).
    Reattached {
        /// The table, as the database spells it.
        table: String,
        /// What changed since the previous install, in words.
        changes: String,
    },
}

pub(super) fn triggers_in_place(conn: &Connection, desc: &TableDesc, inserts: InsertImage) -> Result<bool> {
    let mut stmt = conn.prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1")?;
    for (op, expected) in cdc_schema::Op::ALL.iter().zip(desc.create_triggers_with(inserts)) {
        let sql: Option<String> = stmt.query_row([desc.trigger_name(*op)], |r| r.get(0)).ok();
        if sql.as_deref() != Some(expected.as_str()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Attaches capture to one table (inside the caller's write transaction).
/// `inserts`: where its INSERT trigger takes the row from (`None`: as it
/// was, or [`InsertImage::New`] for a table not captured yet). `marker`:
/// write the marker that makes consumers reseed the table if capture is
/// (re)attached; only an upgrade of the log, which swaps triggers with no
/// gap, leaves it out.
pub(super) fn install_one(
    conn: &Connection,
    name: &str,
    inserts: Option<InsertImage>,
    marker: bool,
) -> Result<Installed> {
    let desc = crate::schema::describe(conn, name)?;
    desc.validate()?;
    let table = desc.name.to_string();
    let (tid, fingerprint) = (desc.capture_id(), crate::schema::fingerprint(conn, &desc)?);
    let registered = registry(conn)?;
    let previous = registered.iter().find(|r| r.active && r.desc.name.eq_ignore_ascii_case(&table));
    let inserts = inserts.or(previous.map(|p| p.inserts)).unwrap_or_default();
    if let Some(prev) = previous
        && prev.tid == tid
        && prev.fingerprint == fingerprint
        && prev.inserts == inserts
        && triggers_in_place(conn, &desc, inserts)?
        && order::fire_before_capture(conn, &desc, inserts)?.is_empty()
    {
        return Ok(Installed::Unchanged { table });
    }
    if let Some(other) = registered.iter().find(|r| r.tid == tid && !r.desc.name.eq_ignore_ascii_case(&table)) {
        return Err(Error::Schema(cdc_schema::SchemaError(format!(
            "capture id {tid} of table {table:?} collides with table {:?}; rename one of them",
            other.desc.name
        ))));
    }
    // Dropped and created again, capture's triggers are the table's
    // newest: they fire before every trigger the file holds.
    for sql in desc.drop_triggers() {
        conn.execute(&sql, [])?;
    }
    for sql in desc.create_triggers_with(inserts) {
        conn.execute(&sql, [])?;
    }
    conn.execute(&sql::deactivate_table_sql(), [&table])?;
    conn.execute(
        &sql::register_sql(),
        params![tid, table, fingerprint, serde_json::to_string(&desc)?, inserts == InsertImage::Reread],
    )?;
    if marker {
        // Writes made while the table had no (or other) triggers are not
        // in the log: a marker row records where capture (re)started, and
        // a consumer live from before it must reseed the table.
        conn.execute(&insert_marker_sql(), [tid])?;
        conn.execute(&sql::set_meta_to_last_row_sql(), [since_key(&table)])?;
    }
    Ok(match previous {
        None => Installed::New { table },
        Some(prev) => {
            let mut changes = describe_difference(&prev.desc, &desc);
            if changes.is_empty() {
                changes = if prev.inserts != inserts {
                    format!("inserts now log {} images", inserts.name())
                } else {
                    "triggers were missing, modified or no longer first, and were recreated".into()
                };
            }
            Installed::Reattached { table, changes }
        }
    })
}

impl Installed {
    /// The table it is about.
    pub fn table(&self) -> &str {
        match self {
            Installed::New { table }
            | Installed::Upgraded { table }
            | Installed::Unchanged { table }
            | Installed::Reattached { table, .. } => table,
        }
    }
}

/// Attaches capture to `tables` in one transaction: all or nothing.
/// Installing an unchanged table again writes nothing. Tables keep where
/// their INSERT trigger takes the row from ([`install_with`] chooses).
pub fn install(conn: &mut Connection, tables: &[String]) -> Result<Vec<Installed>> {
    install_with(conn, tables, None)
}

/// [`install`], choosing for `tables` where the INSERT trigger takes the
/// row from (`None`: as it was, [`InsertImage::New`] for new tables).
///
/// A log written by an older version (format 1) is upgraded in the same
/// transaction first ([`LogFormat::Format1`]): every captured table gets
/// current triggers with no gap, and the old rows stay readable until
/// every consumer is past them.
pub fn install_with(conn: &mut Connection, tables: &[String], inserts: Option<InsertImage>) -> Result<Vec<Installed>> {
    let path = path_of(conn);
    // Every name that is no table, said at once (not one per try).
    let mut unknown = Vec::new();
    for t in tables {
        if !crate::schema::table_exists(conn, t)? && !unknown.contains(t) {
            unknown.push(t.clone());
        }
    }
    if unknown.len() > 1 {
        return Err(Error::UnknownTables { db: path, tables: unknown });
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(e, &path))?;
    let cookie = schema_cookie(&tx)?;
    let mut upgraded = Vec::new();
    if upgrade::upgrade(&tx)? {
        let active: Vec<String> =
            registry(&tx)?.into_iter().filter(|r| r.active).map(|r| r.desc.name.to_string()).collect();
        for table in active {
            install_one(&tx, &table, None, false)?;
            upgraded.push(table);
        }
    }
    for sql in internal_ddl() {
        tx.execute(&sql, [])?;
    }
    let mut outcomes = Vec::new();
    for t in tables {
        outcomes.push(match install_one(&tx, t, inserts, true)? {
            Installed::Unchanged { table } if upgraded.contains(&table) => Installed::Upgraded { table },
            other => other,
        });
    }
    for table in upgraded {
        if !outcomes.iter().any(|o| o.table() == table) {
            outcomes.push(Installed::Upgraded { table });
        }
    }
    // Asked for by name: no longer left out of schema following.
    super::scope::left_out(&tx, tables, false)?;
    record_own_ddl(&tx, cookie)?;
    tx.commit().map_err(|e| classify(e, &path))?;
    Ok(outcomes)
}

/// Attaches capture for a `#[derive(Cdc)]` struct after checking that the
/// live table matches it; every mismatch is named in one error.
pub fn install_for<T: Cdc>(conn: &mut Connection) -> Result<Installed> {
    let live = describe(conn, &T::TABLE.name)?;
    let problems = mismatches(&T::TABLE, &live, Against::Struct);
    if !problems.is_empty() {
        return Err(Error::StructMismatch { table: live.name.to_string(), rust_type: T::RUST_TYPE, problems });
    }
    Ok(install(conn, &[live.name.to_string()])?.remove(0))
}

/// Removes capture from `tables`, or from every captured table when
/// `None`. Once no table is captured, the internal tables are dropped too,
/// so the file's schema is exactly what it was before the first install;
/// that is refused while a consumer has changes it has not acknowledged,
/// unless `force`. Application data is never touched.
pub fn uninstall(conn: &mut Connection, tables: Option<&[String]>, force: bool) -> Result<Vec<String>> {
    let path = path_of(conn);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(e, &path))?;
    let registered = registry(&tx)?;
    let targets: Vec<&Registered> = match tables {
        None => registered.iter().filter(|r| r.active).collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                registered
                    .iter()
                    .find(|r| r.active && r.desc.name.eq_ignore_ascii_case(n))
                    .ok_or_else(|| Error::NotCaptured(n.clone()))
            })
            .collect::<Result<_>>()?,
    };
    for r in &targets {
        for sql in r.desc.drop_triggers() {
            tx.execute(&sql, [])?;
        }
        tx.execute(&sql::deactivate_layout_sql(), [r.tid])?;
    }
    let removed: Vec<String> = targets.iter().map(|r| r.desc.name.to_string()).collect();
    if is_initialised(&tx)? {
        let still: i64 = tx.query_row(&sql::active_layouts_sql(), [], |r| r.get(0))?;
        if still == 0 {
            let waiting: Vec<ConsumerStatus> = consumers(&tx)?.into_iter().filter(|c| c.pending > 0).collect();
            if !waiting.is_empty() && !force {
                return Err(Error::ConsumersWaiting {
                    db: path.clone(),
                    consumers: waiting.iter().map(|c| (c.name.clone(), c.pending)).collect(),
                });
            }
            let segments: Vec<String> =
                crate::log::segments(&tx)?.into_iter().filter(|s| !s.current && !s.legacy).map(|s| s.table).collect();
            let log_id = crate::source::log_id(&tx)?;
            for sql in drop_internal_ddl(&segments) {
                tx.execute(&sql, [])?;
            }
            tx.commit().map_err(|e| classify(e, &path))?;
            // The consumers' records of the log that is gone.
            for record in crate::source::ConsumerRecord::all(&path)?.into_iter().filter(|r| r.log_id == log_id) {
                crate::source::ConsumerRecord::remove(&path, &record.consumer)?;
            }
            return Ok(removed);
        }
    }
    // Removed by an operator: schema following never captures it again.
    super::scope::left_out(&tx, &removed, true)?;
    tx.commit().map_err(|e| classify(e, &path))?;
    Ok(removed)
}

pub(super) fn detach_in(conn: &Connection, table: &str) -> Result<()> {
    for r in registry(conn)?.into_iter().filter(|r| r.active && r.desc.name.eq_ignore_ascii_case(table)) {
        for sql in r.desc.drop_triggers() {
            conn.execute(&sql, [])?;
        }
        conn.execute(&sql::deactivate_layout_sql(), [r.tid])?;
    }
    Ok(())
}
