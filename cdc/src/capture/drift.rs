//! Drift: whether a captured table, and capture's triggers on it, are
//! still as installed.

use rusqlite::Connection;

use super::install::triggers_in_place;
use super::order;
use crate::db::path_of;
use crate::error::{Error, Result};
use crate::log::{Registered, select};
use crate::schema::{describe, describe_difference};

/// Checks that each active captured table still matches its fingerprint
/// and still has its triggers. Returns the active registrations of
/// `tables` (all active ones when empty). Names that are not tables, and
/// tables that are not captured, are each listed together in one error
/// ([`Error::UnknownTables`], [`Error::NotCapturedIn`]); a virtual table
/// or a view is refused as such; drift is [`Error::SchemaDrift`].
pub fn verify(conn: &Connection, tables: &[String]) -> Result<Vec<Registered>> {
    let selected = select(conn, tables)?;
    for r in &selected {
        if let Some(what) = drift(conn, r)? {
            return Err(Error::SchemaDrift { table: r.desc.name.to_string(), what, db: path_of(conn) });
        }
    }
    Ok(selected)
}

/// What changed about a registered table since install, if anything.
pub fn drift(conn: &Connection, r: &Registered) -> Result<Option<String>> {
    Ok(match check(conn, r)? {
        Check::Unchanged => None,
        Check::Changed(what) => Some(what),
        Check::Overtaken(names) => {
            let names = names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
            Some(format!(
                "trigger(s) {names} of the application, created after capture, fire before it (capture logs \
                 inserts before they change them): capture must be attached again, in front of them"
            ))
        }
    })
}

/// How a registered table stands against capture ([`check`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// As installed.
    Unchanged,
    /// The table changed (or is gone), or capture's triggers did: what,
    /// in words.
    Changed(String),
    /// Only this: triggers of the application stored in the file were
    /// created after capture's and fire before them (their names), so
    /// what capture logs may be stale ([`InsertImage`]). Attaching capture
    /// again puts it in front; the table is reseeded.
    Overtaken(Vec<String>),
}

/// Checks a registered table against the live one and its triggers.
pub fn check(conn: &Connection, r: &Registered) -> Result<Check> {
    let live = match describe(conn, &r.desc.name) {
        Ok(live) => live,
        Err(Error::UnknownTable(_)) => return Ok(Check::Changed("the table was dropped or renamed".into())),
        Err(e) => return Err(e),
    };
    if crate::schema::fingerprint(conn, &live)? != r.fingerprint {
        let what = describe_difference(&r.desc, &live);
        return Ok(Check::Changed(if what.is_empty() {
            "its CREATE TABLE text or its unique indexes changed".into()
        } else {
            what
        }));
    }
    if !triggers_in_place(conn, &r.desc, r.inserts)? {
        return Ok(Check::Changed("its capture triggers were dropped or modified".into()));
    }
    let before = order::fire_before_capture(conn, &r.desc, r.inserts)?;
    Ok(if before.is_empty() { Check::Unchanged } else { Check::Overtaken(before) })
}
