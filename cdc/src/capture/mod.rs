//! Attaching and removing capture: triggers, the registry of captured
//! layouts, and the checks that catch schema drift.

mod order;
mod upgrade;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use cdc_schema::legacy;
use cdc_schema::log::{
    CONSUMERS_TABLE, IS_CHANGE, LOG_TABLE, META_TABLE, TABLES_TABLE, drop_internal_ddl, insert_marker_sql, internal_ddl,
};
use cdc_schema::{Affinity, InsertImage, TableDesc, quote_ident};

pub use upgrade::{LogFormat, log_format};

use crate::db::{classify, path_of};
use crate::error::{Error, Result};
use crate::event::Cdc;
use crate::schema::{describe, describe_difference};

/// One registered layout of a captured table.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    /// Capture id written in every log row of this layout.
    pub tid: i64,
    /// The table as it was when this layout was registered: how its log
    /// rows decode.
    pub desc: TableDesc,
    /// [`TableDesc::fingerprint`] at install: a live table that no longer
    /// has it has drifted.
    pub fingerprint: String,
    /// False once the table was uninstalled or re-attached with a new
    /// layout; kept so that log rows still pending decode correctly.
    pub active: bool,
    /// Where its INSERT trigger takes the row from.
    pub inserts: InsertImage,
}

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

/// Whether the internal tables exist.
pub fn is_initialised(conn: &Connection) -> Result<bool> {
    let n: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [LOG_TABLE], |r| {
            r.get(0)
        })?;
    Ok(n > 0)
}

/// Refuses a log of an older format ([`Error::OldLogFormat`]): read only
/// once `cdc-setup install` upgraded it.
pub fn ensure_current(conn: &Connection) -> Result<()> {
    match log_format(conn)? {
        LogFormat::Format1 => Err(Error::OldLogFormat(path_of(conn))),
        LogFormat::None | LogFormat::Current => Ok(()),
    }
}

/// Every registered layout, active first.
pub fn registry(conn: &Connection) -> Result<Vec<Registered>> {
    if !is_initialised(conn)? {
        return Ok(Vec::new());
    }
    // Registries made by format 1 have no `reread` column (all `new`).
    let reread = if upgrade::registry_has_reread(conn)? { "reread" } else { "0" };
    let sql = format!(
        "SELECT tid, description, fingerprint, active, {reread} FROM {} ORDER BY active DESC, name, tid",
        quote_ident(TABLES_TABLE)
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, bool>(3)?,
            r.get::<_, bool>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (tid, description, fingerprint, active, reread) = row?;
        let inserts = if reread { InsertImage::Reread } else { InsertImage::New };
        out.push(Registered { tid, desc: serde_json::from_str(&description)?, fingerprint, active, inserts });
    }
    Ok(out)
}

/// The active registration of `table` (matched ignoring ASCII case).
pub fn active(conn: &Connection, table: &str) -> Result<Option<Registered>> {
    Ok(registry(conn)?.into_iter().find(|r| r.active && r.desc.name.eq_ignore_ascii_case(table)))
}

fn triggers_in_place(conn: &Connection, desc: &TableDesc, inserts: InsertImage) -> Result<bool> {
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
fn install_one(conn: &Connection, name: &str, inserts: Option<InsertImage>, marker: bool) -> Result<Installed> {
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
    let registry = quote_ident(TABLES_TABLE);
    conn.execute(&format!("UPDATE {registry} SET active = 0 WHERE name = ?1 COLLATE NOCASE"), [&table])?;
    conn.execute(
        &format!(
            "INSERT INTO {registry}(tid, name, fingerprint, description, active, reread) VALUES(?1, ?2, ?3, ?4, 1, ?5) \
             ON CONFLICT(tid) DO UPDATE SET name = excluded.name, fingerprint = excluded.fingerprint, \
             description = excluded.description, active = 1, reread = excluded.reread"
        ),
        params![tid, table, fingerprint, serde_json::to_string(&desc)?, inserts == InsertImage::Reread],
    )?;
    if marker {
        // Writes made while the table had no (or other) triggers are not
        // in the log: a marker row records where capture (re)started, and
        // a consumer live from before it must reseed the table.
        conn.execute(&insert_marker_sql(), [tid])?;
        conn.execute(
            &format!(
                "INSERT INTO {}(key, value) VALUES(?1, last_insert_rowid()) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                quote_ident(META_TABLE)
            ),
            [since_key(&table)],
        )?;
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

fn since_key(table: &str) -> String {
    format!("captured_since:{table}")
}

/// The log position at which capture of `table` was last attached (0 when
/// unknown). Changes of the table before it may be missing from the log
/// (capture was removed and reinstalled, or re-attached after a schema
/// change), so a target live from an earlier position must reseed it.
pub fn captured_since(conn: &Connection, table: &str) -> Result<i64> {
    let sql = format!("SELECT value FROM {} WHERE key = ?1", quote_ident(META_TABLE));
    Ok(conn.query_row(&sql, [since_key(table)], |r| r.get::<_, i64>(0)).optional()?.unwrap_or(0))
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

/// Which description a live table is compared with, for the wording of
/// [`mismatches`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Against {
    /// A `#[derive(Cdc)]` struct.
    Struct,
    /// The source table a replica table must match.
    Source,
}

/// How the live table differs from `wanted`: missing and extra columns,
/// type affinity, primary key, rowid-ness. Empty when compatible.
pub fn mismatches(wanted: &TableDesc, live: &TableDesc, against: Against) -> Vec<String> {
    let (maps, has_no, is_or_not) = match against {
        Against::Struct => ("the field maps to", "has no field (add one; capture copies every column)", "the field"),
        Against::Source => ("the source declares", "is not in the source", "in the source it"),
    };
    let mut problems = Vec::new();
    for w in wanted.captured() {
        match live.captured().find(|l| l.name == w.name) {
            None => problems.push(format!("column {:?} is missing from the table", w.name)),
            Some(l) => {
                let (wa, la) = (w.affinity(), l.affinity());
                // A struct field with no declared type accepts anything.
                if wa != la && !(against == Against::Struct && wa == Affinity::Blob) {
                    problems.push(format!(
                        "column {:?} is declared {:?} ({la:?} affinity) but {maps} {:?} ({wa:?} affinity)",
                        w.name, l.decl_type, w.decl_type
                    ));
                }
                if (w.primary_key > 0) != (l.primary_key > 0) {
                    let (is, other) = if l.primary_key > 0 { ("is", "is not") } else { ("is not", "is") };
                    problems.push(format!("column {:?} {is} part of the primary key but {is_or_not} {other}", w.name));
                }
            }
        }
    }
    for l in live.captured() {
        if !wanted.captured().any(|w| w.name == l.name) {
            problems.push(format!("column {:?} {has_no}", l.name));
        }
    }
    if wanted.without_rowid != live.without_rowid {
        let is = if live.without_rowid { "is" } else { "is not" };
        problems.push(format!("the table {is} WITHOUT ROWID but {is_or_not} differs"));
    }
    problems
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
    let registry_table = quote_ident(TABLES_TABLE);
    for r in &targets {
        for sql in r.desc.drop_triggers() {
            tx.execute(&sql, [])?;
        }
        tx.execute(&format!("UPDATE {registry_table} SET active = 0 WHERE tid = ?1"), [r.tid])?;
    }
    let removed = targets.iter().map(|r| r.desc.name.to_string()).collect();
    if is_initialised(&tx)? {
        let still: i64 =
            tx.query_row(&format!("SELECT count(*) FROM {registry_table} WHERE active = 1"), [], |r| r.get(0))?;
        if still == 0 {
            let waiting: Vec<ConsumerStatus> = consumers(&tx)?.into_iter().filter(|c| c.pending > 0).collect();
            if !waiting.is_empty() && !force {
                return Err(Error::ConsumersWaiting {
                    db: path.clone(),
                    consumers: waiting.iter().map(|c| (c.name.clone(), c.pending)).collect(),
                });
            }
            for sql in drop_internal_ddl() {
                tx.execute(&sql, [])?;
            }
        }
    }
    tx.commit().map_err(|e| classify(e, &path))?;
    Ok(removed)
}

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
            return Err(Error::SchemaDrift {
                table: r.desc.name.to_string(),
                what,
                db: path_of(conn).display().to_string(),
            });
        }
    }
    Ok(selected)
}

/// The active registrations of `tables` (all active ones when empty),
/// not checked for drift; unknown and uncaptured names are errors as in
/// [`verify`].
pub fn select(conn: &Connection, tables: &[String]) -> Result<Vec<Registered>> {
    let active: Vec<Registered> = registry(conn)?.into_iter().filter(|r| r.active).collect();
    let selected: Vec<Registered> = if tables.is_empty() {
        active
    } else {
        let (mut selected, mut unknown, mut uncaptured) = (Vec::new(), Vec::new(), Vec::new());
        for t in tables {
            if let Some(r) = active.iter().find(|r| r.desc.name.eq_ignore_ascii_case(t)) {
                selected.push(r.clone());
                continue;
            }
            match describe(conn, t) {
                Ok(_) => uncaptured.push(t.clone()),
                Err(Error::UnknownTable(_)) => unknown.push(t.clone()),
                Err(e) => return Err(e),
            }
        }
        let db = path_of(conn);
        let dedup = |mut v: Vec<String>| {
            let mut seen = std::collections::HashSet::new();
            v.retain(|n| seen.insert(n.to_lowercase()));
            v
        };
        if !unknown.is_empty() {
            return Err(Error::UnknownTables { db, tables: dedup(unknown) });
        }
        if !uncaptured.is_empty() {
            return Err(Error::NotCapturedIn { db, tables: dedup(uncaptured) });
        }
        selected
    };
    Ok(selected)
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

fn detach_in(conn: &Connection, table: &str) -> Result<()> {
    for r in registry(conn)?.into_iter().filter(|r| r.active && r.desc.name.eq_ignore_ascii_case(table)) {
        for sql in r.desc.drop_triggers() {
            conn.execute(&sql, [])?;
        }
        conn.execute(&format!("UPDATE {} SET active = 0 WHERE tid = ?1", quote_ident(TABLES_TABLE)), [r.tid])?;
    }
    Ok(())
}

/// The `_cdc_meta` key that marks a migration window.
const MIGRATION_KEY: &str = "migration";

/// A migration window that is open: when it began and the tables whose
/// capture it paused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Migration {
    /// When the window opened (UTC, `YYYY-MM-DD HH:MM:SS`).
    pub started: String,
    /// The tables whose capture is paused until the window closes.
    pub tables: Vec<String>,
}

/// The open migration window, if any.
pub fn migration(conn: &Connection) -> Result<Option<Migration>> {
    if !is_initialised(conn)? {
        return Ok(None);
    }
    let sql = format!("SELECT value FROM {} WHERE key = ?1", quote_ident(META_TABLE));
    let text: Option<String> = conn.query_row(&sql, [MIGRATION_KEY], |r| r.get(0)).optional()?;
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
        return Err(Error::Config(format!(
            "{}: a migration window is already open (since {}); end it with: cdc-setup migrate --db {} --finish",
            path.display(),
            open.started,
            crate::error::shell_word(&path.display().to_string())
        )));
    }
    let active: Vec<Registered> = registry(&tx)?.into_iter().filter(|r| r.active).collect();
    if active.is_empty() {
        return Err(Error::NothingCaptured(path.clone()));
    }
    for r in &active {
        for sql in r.desc.drop_triggers() {
            tx.execute(&sql, [])?;
        }
    }
    let started: String = tx.query_row("SELECT datetime('now')", [], |r| r.get(0))?;
    let window = Migration { started, tables: active.iter().map(|r| r.desc.name.to_string()).collect() };
    tx.execute(
        &format!("INSERT INTO {}(key, value) VALUES(?1, ?2)", quote_ident(META_TABLE)),
        params![MIGRATION_KEY, serde_json::to_string(&window)?],
    )?;
    tx.commit().map_err(|e| classify(e, &path))?;
    Ok(window)
}

/// What closing a migration window did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finished {
    /// Tables captured again (each reseeded by every consumer).
    pub attached: Vec<Installed>,
    /// Tables that no longer exist under their name (dropped or renamed):
    /// capture was removed from them.
    pub gone: Vec<String>,
}

/// Closes the migration window: re-attaches capture to every table it
/// paused that still exists (with its new layout; a marker in the log
/// makes every consumer reseed it, so nothing written during the window
/// is lost), and removes capture from the ones that are gone.
pub fn finish_migration(conn: &mut Connection) -> Result<Finished> {
    let path = path_of(conn);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(e, &path))?;
    let Some(window) = migration(&tx)? else {
        return Err(Error::Config(format!("{}: no migration window is open", path.display())));
    };
    let mut done = Finished { attached: Vec::new(), gone: Vec::new() };
    for table in &window.tables {
        match describe(&tx, table) {
            Ok(_) => done.attached.push(install_one(&tx, table, None, true)?),
            Err(Error::UnknownTable(_)) => {
                detach_in(&tx, table)?;
                done.gone.push(table.clone());
            }
            Err(e) => return Err(e),
        }
    }
    tx.execute(&format!("DELETE FROM {} WHERE key = ?1", quote_ident(META_TABLE)), [MIGRATION_KEY])?;
    tx.commit().map_err(|e| classify(e, &path))?;
    Ok(done)
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

/// The `_cdc_meta` key of the schema changes capture itself made: pairs
/// of schema cookies `[before, after]`, the latest last.
const OWN_DDL_KEY: &str = "own_schema_changes";

/// How many of capture's own schema changes are remembered.
const OWN_DDL_KEPT: usize = 64;

/// `PRAGMA schema_version` as `conn` sees it.
pub(crate) fn schema_cookie(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?)
}

/// Records, at the end of one of capture's write transactions, that it
/// moved the schema cookie from `before` to where it is now: its own DDL
/// (triggers, the log), never a `VACUUM` or a reload. A replicator that
/// sees the cookie moved only by such changes knows that no rowid was
/// renumbered.
pub(crate) fn record_own_ddl(conn: &Connection, before: i64) -> Result<()> {
    let after = schema_cookie(conn)?;
    if after == before || !is_initialised(conn)? {
        return Ok(());
    }
    let mut steps = own_ddl(conn)?;
    steps.push((before, after));
    let excess = steps.len().saturating_sub(OWN_DDL_KEPT);
    steps.drain(..excess);
    conn.execute(
        &format!(
            "INSERT INTO {}(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            quote_ident(META_TABLE)
        ),
        params![OWN_DDL_KEY, serde_json::to_string(&steps)?],
    )?;
    Ok(())
}

fn own_ddl(conn: &Connection) -> Result<Vec<(i64, i64)>> {
    let sql = format!("SELECT value FROM {} WHERE key = ?1", quote_ident(META_TABLE));
    let text: Option<String> = conn.query_row(&sql, [OWN_DDL_KEY], |r| r.get(0)).optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?.unwrap_or_default())
}

/// Whether the schema cookie went from `from` to `to` through capture's
/// own changes alone ([`record_own_ddl`]).
pub fn only_own_ddl(conn: &Connection, from: i64, to: i64) -> Result<bool> {
    let steps = own_ddl(conn)?;
    let mut at = from;
    while at != to {
        match steps.iter().find(|(before, _)| *before == at) {
            Some((_, after)) if *after > at => at = *after,
            _ => return Ok(false),
        }
    }
    Ok(true)
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
    if crate::log::has_legacy(conn)? {
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
    if !is_initialised(conn)?
        || !crate::log::remove_consumer(conn, name).map_err(|e| match e {
            Error::Sqlite(e) => classify(e, &path),
            other => other,
        })?
    {
        return Err(Error::Config(format!("{}: no consumer named {name:?}", path.display())));
    }
    Ok(())
}

/// A captured table's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableStatus {
    /// The table.
    pub name: String,
    /// The id its current triggers write into the log ([`Registered::tid`]).
    pub capture_id: i64,
    /// Recorded at install ([`Registered::fingerprint`]).
    pub fingerprint: String,
    /// `None` when the table matches its fingerprint and has its triggers.
    pub drift: Option<String>,
    /// Where its INSERT trigger takes the row from.
    pub inserts: InsertImage,
}

/// What `cdc-setup status` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    /// Whether the database is in WAL mode (recommended: then the
    /// replicator's reads never block the application's writes).
    pub wal: bool,
    /// Every captured table.
    pub tables: Vec<TableStatus>,
    /// Changes in the log (markers and continuation rows not counted).
    pub log_rows: i64,
    /// The oldest change still in the log, `None` when it is empty.
    pub oldest_seq: Option<i64>,
    /// The newest change, `None` when the log is empty.
    pub newest_seq: Option<i64>,
    /// Every registered consumer, with how far behind it is.
    pub consumers: Vec<ConsumerStatus>,
    /// An open migration window (`cdc-setup migrate`), if any.
    pub migration: Option<Migration>,
}

/// Reads the capture status of a database (read-only).
pub fn status(conn: &Connection) -> Result<Status> {
    ensure_current(conn)?;
    let wal = crate::db::is_wal(conn)?;
    if !is_initialised(conn)? {
        return Ok(Status {
            wal,
            tables: vec![],
            log_rows: 0,
            oldest_seq: None,
            newest_seq: None,
            consumers: vec![],
            migration: None,
        });
    }
    let mut tables = Vec::new();
    for r in registry(conn)?.into_iter().filter(|r| r.active) {
        tables.push(TableStatus {
            name: r.desc.name.to_string(),
            capture_id: r.tid,
            fingerprint: r.fingerprint.clone(),
            drift: drift(conn, &r)?,
            inserts: r.inserts,
        });
    }
    let log = quote_ident(LOG_TABLE);
    let mut changes = format!("SELECT seq FROM {log} WHERE {IS_CHANGE}");
    if crate::log::has_legacy(conn)? {
        changes = format!(
            "{changes} UNION ALL SELECT seq FROM {} WHERE {}",
            quote_ident(legacy::LOG_TABLE),
            legacy::IS_CHANGE
        );
    }
    let (log_rows, oldest_seq, newest_seq) =
        conn.query_row(&format!("SELECT count(*), min(seq), max(seq) FROM ({changes})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let consumers = consumers(conn)?;
    Ok(Status { wal, tables, log_rows, oldest_seq, newest_seq, consumers, migration: migration(conn)? })
}
