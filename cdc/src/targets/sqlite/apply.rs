//! Applying events to the replica: inserts as upserts, updates by the
//! before image's identity, idempotent deletes, bootstrap purges; a
//! change SQLite refuses is the table's refusal ([`Error::ReplicaRefused`]).

use rusqlite::params;

use super::SqliteTarget;
use super::overtaken::Insert;
use super::reconcile::create_table;
use super::sql::TableSql;
use crate::Op;
use crate::error::{Error, Result};
use crate::event::{Event, Row};
use crate::fix::Fix;
use crate::schema::table_exists;

impl SqliteTarget {
    pub(super) fn stmts(&self, table: &str) -> Result<&TableSql> {
        self.tables.get(table).ok_or_else(|| Error::UnexpectedTable {
            target: format!("replica {}", self.path.display()),
            table: table.into(),
        })
    }

    /// Says, once per table, that a trigger overtook capture's inserts
    /// (see [`super::overtaken`]).
    pub(super) fn say_overtaken(&self, table: &str) {
        let fix = Fix::RereadInserts { db: self.source.clone(), table: table.to_string() };
        tracing::warn!(replica = %self.path.display(), table = %table,
            "a trigger that fires before capture's (a TEMP trigger of the writing connection: no other \
             connection can see it) rewrote or deleted rows of this table as they were inserted; the \
             replica follows the trigger, but capture logged those rows as inserted, and other targets \
             get them so; for exact events, {fix}");
    }

    pub(super) fn upsert(&self, sql: &TableSql, row: &Row) -> Result<usize> {
        let mut stmt = self.conn.prepare_cached(&sql.upsert)?;
        sql.bind_image(&mut stmt, row, 1)?;
        Ok(stmt.raw_execute()?)
    }

    pub(super) fn apply_one(&mut self, event: &Event) -> Result<()> {
        match event {
            Event::Change(c) => self.apply_change(c),
            // Schema comes from the source's description (`open`).
            Event::Schema(_) => Ok(()),
            other => self.apply_bootstrap(other),
        }
    }

    pub(super) fn apply_change(&mut self, c: &crate::event::Change) -> Result<()> {
        let missing = |what: &str| Error::CorruptLog { seq: c.seq, problem: format!("change without {what} image") };
        let (keyed, new_image_inserts) = {
            let sql = self.stmts(&c.table)?;
            (sql.keyed, sql.new_image_inserts)
        };
        match c.op {
            Op::Insert => {
                let after = c.after.as_ref().ok_or_else(|| missing("after"))?;
                let insert = match new_image_inserts {
                    true => self.overtaken.insert(&c.table, after, keyed),
                    false => Insert::Apply,
                };
                let sql = self.stmts(&c.table)?;
                match &insert {
                    Insert::Apply => self.upsert(sql, after)?,
                    Insert::Instead(row) => self.upsert(sql, row)?,
                    Insert::Skip => 0,
                };
                if insert != Insert::Apply && self.overtaken.first_for(&c.table) {
                    self.say_overtaken(&c.table);
                }
            }
            Op::Update => {
                let before = c.before.as_ref().ok_or_else(|| missing("before"))?;
                let after = c.after.as_ref().ok_or_else(|| missing("after"))?;
                let sql = self.stmts(&c.table)?;
                let mut stmt = self.conn.prepare_cached(&sql.update)?;
                let next = sql.bind_image(&mut stmt, after, 1)?;
                sql.bind_identity(&mut stmt, before, next)?;
                if stmt.raw_execute()? == 0 {
                    // Not here: an application trigger rewrote a row its
                    // statement had just inserted (or changed a key), and
                    // the statement's own insert, logged after it, follows.
                    // With a key, the after image is the row; without one,
                    // inserting it would add a second copy: the insert
                    // brings it.
                    if keyed {
                        self.upsert(sql, after)?;
                    }
                    if new_image_inserts {
                        self.overtaken.missed_update(&c.table, before, after);
                    }
                }
            }
            Op::Delete => {
                let before = c.before.as_ref().ok_or_else(|| missing("before"))?;
                let sql = self.stmts(&c.table)?;
                let mut stmt = self.conn.prepare_cached(&sql.delete)?;
                sql.bind_identity(&mut stmt, before, 1)?;
                if stmt.raw_execute()? == 0 && new_image_inserts {
                    self.overtaken.missed_delete(&c.table, before);
                }
            }
        }
        Ok(())
    }

    /// A bootstrap event (a change is passed on).
    pub(super) fn apply_bootstrap(&mut self, event: &Event) -> Result<()> {
        let sql = self.stmts(event.table())?;
        match event {
            Event::Change(c) => return self.apply_change(c),
            Event::BootstrapBegin { table, .. } => {
                match self.rebuild.get(table.as_ref()) {
                    Some(t) => {
                        tracing::info!(replica = %self.path.display(), table = %table, "recreating the table with the source's schema");
                        self.conn.execute(&cdc_schema::replica::bookkeeping::drop_table_sql(table), [])?;
                        create_table(&self.conn, t)?;
                    }
                    None => {
                        self.conn.prepare_cached(&sql.purge)?.execute([])?;
                    }
                }
                // Reseeded with the source's rowids, in this transaction.
                if sql.keeps_rowid {
                    self.conn.prepare_cached(&cdc_schema::replica::bookkeeping::mark_rowids_sql())?.execute([table])?;
                }
            }
            Event::Bootstrap { row, .. } => {
                self.upsert(sql, row)?;
            }
            Event::BootstrapEnd { sequence, .. } => {
                if let Some(seq) = sequence {
                    self.set_sequence(event.table(), *seq)?;
                }
            }
            Event::Schema(_) => {}
        }
        Ok(())
    }

    pub(super) fn apply_events(&mut self, events: &[Event]) -> Result<()> {
        self.begin()?;
        for e in events {
            if let Event::BootstrapBegin { table, .. } = e {
                self.purged.insert(table.to_string());
            }
            self.apply_one(e).map_err(|err| self.refused(err, e.table()))?;
        }
        Ok(())
    }

    /// An error applying an event of `table`: when retrying cannot help
    /// (a constraint, a type, a schema SQLite refuses), the replica
    /// refused that table's change and the engine reseeds just that table.
    pub(super) fn refused(&self, err: Error, table: &str) -> Error {
        use rusqlite::ErrorCode::{ConstraintViolation, TooBig, TypeMismatch, Unknown};
        match err {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, msg))
                if matches!(f.code, ConstraintViolation | TypeMismatch | TooBig | Unknown) =>
            {
                let message = msg.unwrap_or_else(|| f.to_string());
                Error::ReplicaRefused { path: self.path.clone(), table: table.to_string(), message }
            }
            other => other,
        }
    }

    /// Sets `table`'s AUTOINCREMENT counter to the source's.
    pub(super) fn set_sequence(&self, table: &str, seq: i64) -> Result<()> {
        if !table_exists(&self.conn, "sqlite_sequence")? {
            return Ok(());
        }
        let n = self
            .conn
            .prepare_cached("UPDATE sqlite_sequence SET seq = ?2 WHERE name = ?1")?
            .execute(params![table, seq])?;
        if n == 0 {
            self.conn
                .prepare_cached("INSERT INTO sqlite_sequence(name, seq) VALUES(?1, ?2)")?
                .execute(params![table, seq])?;
        }
        Ok(())
    }
}
