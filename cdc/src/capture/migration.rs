//! Migration windows (`cdc-setup migrate`): capture's triggers dropped so
//! the application's DDL runs as if capture were not there, then attached
//! again with a reseed.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use cdc_schema::bookkeeping as sql;

use super::install::{Installed, detach_in, install_one};
use crate::db::{classify, path_of};
use crate::error::{Error, Result};
use crate::log::{Registered, is_initialised, registry};
use crate::schema::describe;
use crate::source::{record_own_ddl, schema_cookie};

/// The `_cdc_meta` key that marks a migration window.
const MIGRATION_KEY: &str = "migration";

/// A migration window that is open: when it began and the tables whose
/// capture it paused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Migration {
    /// When the window opened (UTC, RFC 3339: `2026-12-05T10:00:00Z`).
    pub started: String,
    /// The tables whose capture is paused until the window closes.
    pub tables: Vec<String>,
    /// `PRAGMA data_version` of the opening connection, read inside the
    /// transaction that opened the window (not stored): any other
    /// connection's commit after it moves it.
    #[serde(skip)]
    pub data_version: Option<i64>,
}

/// The open migration window, if any.
pub fn migration(conn: &Connection) -> Result<Option<Migration>> {
    if !is_initialised(conn)? {
        return Ok(None);
    }
    let text: Option<String> = conn.query_row(&sql::meta_sql(), [MIGRATION_KEY], |r| r.get(0)).optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

/// Opens a migration window: drops every capture trigger, so that the
/// application's own DDL runs as if capture were not there (`ALTER TABLE
/// ... DROP COLUMN` fails while a trigger names the column), and records
/// which tables were captured. Writes made during the window are not
/// logged; [`finish_migration`] makes every consumer reseed those tables.
pub fn start_migration(conn: &mut Connection) -> Result<Migration> {
    let path = path_of(conn);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(e, &path))?;
    if let Some(open) = migration(&tx)? {
        return Err(Error::MigrationOpen { db: path, since: open.started });
    }
    let active: Vec<Registered> = registry(&tx)?.into_iter().filter(|r| r.active).collect();
    if active.is_empty() {
        return Err(Error::NothingCaptured(path.clone()));
    }
    // This transaction's schema change is capture's own (the window's
    // DDL in between is not): a window in which nothing happened renumbers
    // no rowid, and replicators need not reseed for it.
    let cookie = schema_cookie(&tx)?;
    for r in &active {
        for sql in r.desc.drop_triggers() {
            tx.execute(&sql, [])?;
        }
    }
    let started: String = tx.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now')", [], |r| r.get(0))?;
    let data_version = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    let window = Migration {
        started,
        tables: active.iter().map(|r| r.desc.name.to_string()).collect(),
        data_version: Some(data_version),
    };
    tx.execute(&sql::set_meta_sql(), params![MIGRATION_KEY, serde_json::to_string(&window)?])?;
    record_own_ddl(&tx, cookie)?;
    tx.commit().map_err(|e| classify(e, &path))?;
    Ok(window)
}

/// What closing a migration window did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finished {
    /// Tables captured again (each reseeded by every consumer).
    pub attached: Vec<Installed>,
    /// Tables whose capture was put back exactly as it was, with no
    /// reseed: nothing was written to the file during the window.
    pub restored: Vec<String>,
    /// Tables that no longer exist under their name (dropped or renamed):
    /// capture was removed from them.
    pub gone: Vec<String>,
}

/// Closes the migration window: re-attaches capture to every table it
/// paused that still exists (with its new layout; a marker in the log
/// makes every consumer reseed it, so nothing written during the window
/// is lost), and removes capture from the ones that are gone.
pub fn finish_migration(conn: &mut Connection) -> Result<Finished> {
    finish(conn, None)
}

/// Closes the migration window `opened` that [`start_migration`] opened
/// on this same connection (and nothing else wrote through it since).
/// When `PRAGMA data_version`, read again inside this closing write
/// transaction, is still the one read inside the opening one, no other
/// connection committed in between (not the migration, not the
/// application): every unchanged table gets its capture back exactly as
/// it was, with no marker, and replicators resume where they were
/// instead of reseeding (a migration command that failed before writing,
/// or one with nothing to do). Otherwise as [`finish_migration`].
pub fn finish_migration_unless_written(conn: &mut Connection, opened: &Migration) -> Result<Finished> {
    finish(conn, opened.data_version)
}

fn finish(conn: &mut Connection, opened_at: Option<i64>) -> Result<Finished> {
    let path = path_of(conn);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(e, &path))?;
    let now: i64 = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    let untouched = opened_at == Some(now);
    let Some(window) = migration(&tx)? else {
        return Err(Error::NoMigration(path));
    };
    let cookie = schema_cookie(&tx)?;
    let registered = registry(&tx)?;
    let mut done = Finished { attached: Vec::new(), restored: Vec::new(), gone: Vec::new() };
    for table in &window.tables {
        match describe(&tx, table) {
            Ok(desc) => {
                let same = untouched
                    && registered.iter().any(|r| {
                        r.active
                            && r.desc.name.eq_ignore_ascii_case(table)
                            && crate::schema::fingerprint(&tx, &desc).is_ok_and(|f| f == r.fingerprint)
                    });
                if same {
                    install_one(&tx, table, None, false)?;
                    done.restored.push(table.clone());
                } else {
                    done.attached.push(install_one(&tx, table, None, true)?);
                }
            }
            Err(Error::UnknownTable(_)) => {
                detach_in(&tx, table)?;
                done.gone.push(table.clone());
            }
            Err(e) => return Err(e),
        }
    }
    tx.execute(&sql::delete_meta_sql(), [MIGRATION_KEY])?;
    record_own_ddl(&tx, cookie)?;
    tx.commit().map_err(|e| classify(e, &path))?;
    Ok(done)
}

/// Removes capture from a table that no longer exists under its name
/// (dropped, or renamed: a rename carries the triggers along): its
/// triggers and its registration. Unlike [`uninstall`], never drops the
/// internal tables, so the log and its consumers stay.
/// Returns `false`, having done nothing, while a migration window is open.
pub fn detach(conn: &mut Connection, table: &str) -> Result<bool> {
    Ok(unless_migrating(conn, |tx| detach_in(tx, table))?.is_some())
}

/// Attaches (or re-attaches) capture to one table, as [`install`] does,
/// unless a migration window is open (checked inside the same write
/// transaction, so a window opened meanwhile is never undone): `None` then.
pub fn reattach(conn: &mut Connection, table: &str) -> Result<Option<Installed>> {
    unless_migrating(conn, |tx| install_one(tx, table, None, true))
}

/// Runs `f` in one write transaction, unless a migration window is open
/// (checked inside it): `None` then, and nothing written.
fn unless_migrating<T>(conn: &mut Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<Option<T>> {
    let path = path_of(conn);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(e, &path))?;
    if migration(&tx)?.is_some() {
        return Ok(None);
    }
    let cookie = schema_cookie(&tx)?;
    let done = f(&tx)?;
    record_own_ddl(&tx, cookie)?;
    tx.commit().map_err(|e| classify(e, &path))?;
    Ok(Some(done))
}
