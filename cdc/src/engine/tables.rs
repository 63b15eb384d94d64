//! Which tables the engine follows: selected, checked for drift, followed
//! through schema changes (capture re-attached, new tables captured,
//! dropped ones removed) or halted with one line and the fix.

use std::path::Path;

use super::halted::Halted;
use super::source::{SourceDb, named, pragma};
use crate::capture::{self, drift};
use crate::db::classify;
use crate::error::{Error, Result};
use crate::fix::Fix;
use crate::log::{Registered, select};
use crate::schema::describe;

impl SourceDb {
    /// Selects the tables, follows schema changes when asked to, and
    /// splits the tables into followed and halted. The schema cookie is
    /// recorded from a pass during which nothing moved it (the
    /// application's migration may still be running: a table renamed away
    /// between two reads), so that anything racing this is sorted out on
    /// the next wake-up.
    pub(super) fn sort_out(&mut self) -> Result<()> {
        const PASSES: usize = 8;
        let path = self.path.clone();
        for pass in 1..=PASSES {
            let version = pragma(&self.conn, "schema_version").map_err(|e| classify(e, &path))?;
            let (selected, missing) = self.select_now()?;
            let may_write =
                self.armed && pass < PASSES && capture::migration(&self.conn).map_err(|e| named(e, &path))?.is_none();
            if may_write && self.put_capture_first(&selected).map_err(|e| named(e, &path))? {
                continue;
            }
            if may_write && self.follow_schema && self.follow(&selected).map_err(|e| named(e, &path))? {
                // Capture changed: look again from the new schema.
                continue;
            }
            self.split(selected, missing)?;
            let now = pragma(&self.conn, "schema_version").map_err(|e| classify(e, &path))?;
            if now == version || pass == PASSES {
                self.schema_version = version;
                return Ok(());
            }
        }
        Ok(())
    }

    /// Lets schema following write, and makes tables asked for by name
    /// halt when they vanish: called once the engine holds its lock and
    /// its target accepted the source. The next refresh sorts the tables
    /// again with it.
    pub fn arm(&mut self) {
        if !self.armed {
            self.armed = true;
            self.schema_version = -1;
        }
    }

    /// The registrations of the tables asked for, and (once armed) the
    /// names asked for that are no longer captured tables.
    fn select_now(&self) -> Result<(Vec<Registered>, Vec<String>)> {
        let mut requested = self.requested.clone();
        let mut missing = Vec::new();
        loop {
            match select(&self.conn, &requested) {
                Ok(selected) => return Ok((dedup(selected), missing)),
                Err(Error::UnknownTables { tables, .. } | Error::NotCapturedIn { tables, .. }) if self.armed => {
                    requested.retain(|r| !tables.iter().any(|t| t.eq_ignore_ascii_case(r)));
                    missing.extend(tables);
                    // An empty list would mean every table.
                    if requested.is_empty() {
                        return Ok((Vec::new(), missing));
                    }
                }
                Err(e) => return Err(named(e, &self.path)),
            }
        }
    }

    /// Splits `selected` into followed and halted tables by their drift;
    /// `missing` tables (asked for by name, no longer captured) halt.
    fn split(&mut self, selected: Vec<Registered>, missing: Vec<String>) -> Result<()> {
        let path = self.path.clone();
        let window = capture::migration(&self.conn).map_err(|e| named(e, &path))?;
        let (mut followed, mut halted) = (Vec::new(), Vec::new());
        for name in missing {
            let exists = describe(&self.conn, &name).is_ok();
            if self.follow_schema && !exists && !self.dropped.contains(&name) {
                self.dropped.push(name.clone());
            }
            let reason = format!(
                "table {name:?} is no longer captured on the source ({}); its delivery is stopped{}",
                if exists { "its capture was removed" } else { "it was dropped or renamed" },
                if self.follow_schema && !exists {
                    " and the target drops it"
                } else {
                    " and the target keeps its last copy"
                },
            );
            let fix = Fix::Unfollow { table: name.clone() };
            halted.push(Halted { table: name, reason, fix, migrating: false });
        }
        for r in selected {
            let name = r.desc.name.to_string();
            match drift(&self.conn, &r).map_err(|e| named(e, &path))? {
                None => followed.push(r),
                Some(_) if window.as_ref().is_some_and(|w| w.tables.contains(&name)) => {
                    halted.push(Halted {
                        reason: format!(
                            "table {name:?}: capture is paused by a migration window; delivery resumes with a \
                             reseed when it closes"
                        ),
                        table: name,
                        fix: Fix::FinishMigration { db: path.clone() },
                        migrating: true,
                    });
                }
                Some(what) => halted.push(halt(&path, name, &what, describe(&self.conn, &r.desc.name).is_ok())),
            }
        }
        self.followed = followed;
        self.halted = halted;
        Ok(())
    }

    /// Attaches capture again, in front, to each selected table whose only
    /// drift is triggers of the application created after capture's (so
    /// firing before them, see [`capture::Check::Overtaken`]): whether
    /// schema following is on or not, since the table itself did not
    /// change. Its new marker makes the target reseed it, which replaces
    /// whatever capture logged stale meanwhile. Returns whether anything
    /// was changed.
    fn put_capture_first(&mut self, selected: &[Registered]) -> Result<bool> {
        let mut changed = false;
        for r in selected {
            let capture::Check::Overtaken(names) = capture::check(&self.conn, r)? else { continue };
            let name = r.desc.name.to_string();
            match capture::reattach(&mut self.conn, &name) {
                Ok(None) => continue,
                Ok(Some(_)) => tracing::warn!(db = %self.path.display(), table = %name,
                    "trigger(s) {} of the application, created after capture, fire before it; capture attached \
                     again in front of them, reseeding the table", names.join(", ")),
                Err(e) => {
                    tracing::warn!(db = %self.path.display(), table = %name, "capture cannot be attached again: {e}");
                    continue;
                }
            }
            changed = true;
        }
        Ok(changed)
    }

    /// Schema following: re-attaches capture to each selected table that
    /// drifted and still exists (its new registration makes the target
    /// reseed it), removes capture from each that is gone (the target drops
    /// it), and under "every table" captures new tables. Returns whether
    /// anything was changed.
    fn follow(&mut self, selected: &[Registered]) -> Result<bool> {
        // Captured tables renamed carry capture's triggers until the old
        // name's capture is removed below: note them first.
        let mut renamed = Vec::new();
        if self.requested.is_empty() {
            for t in crate::schema::capturable_tables(&self.conn)? {
                if !selected.iter().any(|r| r.desc.name.eq_ignore_ascii_case(&t))
                    && capture::carries_capture(&self.conn, &t)?
                {
                    renamed.push(t);
                }
            }
        }
        let mut changed = false;
        for r in selected {
            let name = r.desc.name.to_string();
            let Some(what) = drift(&self.conn, r)? else { continue };
            if describe(&self.conn, &name).is_ok() {
                match capture::reattach(&mut self.conn, &name) {
                    Ok(None) => continue,
                    Ok(Some(_)) => {
                        tracing::warn!(db = %self.path.display(), table = %name, "the table changed ({what}); capture re-attached, reseeding it (schema following)")
                    }
                    // Left drifted: it is halted with its own line.
                    Err(e) => {
                        tracing::warn!(db = %self.path.display(), table = %name, "the table changed ({what}) and cannot be captured again: {e}")
                    }
                }
            } else {
                tracing::warn!(db = %self.path.display(), table = %name, "the table is gone ({what}); removing its capture and dropping it from the target (schema following)");
                if !capture::detach(&mut self.conn, &name)? {
                    continue;
                }
                self.dropped.push(name);
            }
            changed = true;
        }
        if self.requested.is_empty() {
            let captured: Vec<String> = crate::log::registry(&self.conn)?
                .into_iter()
                .filter(|r| r.active)
                .map(|r| r.desc.name.to_string())
                .collect();
            // Only what the operator asked for (every table) or a captured
            // table renamed: never a table left out on purpose.
            let mut new = Vec::new();
            for t in crate::schema::capturable_tables(&self.conn)? {
                if !captured.iter().any(|c| c.eq_ignore_ascii_case(&t))
                    && (renamed.contains(&t) || capture::may_capture(&self.conn, &t)?)
                {
                    new.push(t);
                }
            }
            for table in new {
                match capture::reattach(&mut self.conn, &table) {
                    Ok(None) => {}
                    Ok(Some(_)) => {
                        tracing::info!(db = %self.path.display(), table = %table, "a new table; capturing and replicating it (schema following)");
                        changed = true;
                    }
                    // Gone already: a migration's temporary table.
                    Err(Error::UnknownTable(_)) => {}
                    Err(e) => {
                        tracing::warn!(db = %self.path.display(), table = %table, "a new table that cannot be captured: {e}")
                    }
                }
            }
        }
        Ok(changed)
    }

    /// Of `tables`, those neither followed nor halted that are no longer
    /// tables of the source at all.
    pub fn gone<'a>(&self, tables: impl Iterator<Item = &'a String>) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for t in tables {
            let known = self.followed.iter().any(|r| r.desc.name.eq_ignore_ascii_case(t))
                || self.halted.iter().any(|h| h.table.eq_ignore_ascii_case(t));
            if !known && matches!(describe(&self.conn, t), Err(Error::UnknownTable(_))) {
                gone.push(t.clone());
            }
        }
        Ok(gone)
    }
}

/// Repeated table names (`--table t --table T`) count once.
fn dedup(mut followed: Vec<Registered>) -> Vec<Registered> {
    let mut seen = std::collections::HashSet::new();
    followed.retain(|r| seen.insert(r.tid));
    followed
}

/// How a table whose capture drifted stops: re-attaching capture
/// resumes it (the target then reseeds it), or for a table that is gone,
/// removing its capture.
fn halt(db: &Path, table: String, what: &str, exists: bool) -> Halted {
    let (reason, fix) = if exists {
        (
            format!("table {table:?} changed on the source ({what}); its delivery is stopped, the other tables go on"),
            Fix::Reattach { db: db.into(), table: table.clone() },
        )
    } else {
        (
            format!(
                "table {table:?} is gone from the source ({what}); its delivery is stopped and the target keeps its last copy"
            ),
            Fix::Detach { db: db.into(), table: table.clone() },
        )
    };
    Halted { table, reason, fix, migrating: false }
}
