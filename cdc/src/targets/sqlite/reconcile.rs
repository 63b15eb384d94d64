//! The replica's schema against its source's: tables created from the
//! source's SQL, rebuilt when it changed, dropped when the source dropped
//! them, plain indexes kept in step; a user's own table used only when
//! compatible.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension};

use cdc_schema::replica::bookkeeping as sql;
use cdc_schema::{Against, mismatches};

use super::SqliteTarget;
use super::sql::TableSql;
use super::state::{own_log_id, write_state};
use crate::db::classify;
use crate::error::{Error, Result};
use crate::schema::{IndexSql, describe, table_exists, unique_index_sql};
use crate::state::DeliveryState;
use crate::target::{Source, SourceTable, Target};

impl SqliteTarget {
    /// Refuses a source that is this very file, and a loop: a source that
    /// is itself a replica of this file's own captured log.
    pub(super) fn refuse_loops(&self, source: &Source) -> Result<()> {
        crate::lock::refuse_source_as_target(&source.path, &self.path)?;
        if let Some(own) = own_log_id(&self.conn)?
            && source.upstream_log_ids.contains(&own)
        {
            return Err(Error::ReplicationLoop { replica: self.path.clone(), from: source.path.clone() });
        }
        Ok(())
    }

    pub(super) fn open_source(&mut self, source: &Source) -> Result<Option<DeliveryState>> {
        Target::rollback(self)?;
        self.refuse_loops(source)?;
        self.source = source.path.clone();
        let mut stored = self.read_state()?;
        // Check every existing table before writing anything, so a refused
        // replica is left exactly as it was. A table this replica made
        // follows the source's schema: when that changed, it is rebuilt
        // and reseeded. Any other table is the user's: it is used when
        // compatible, never dropped.
        let mut owned = match self.owned_tables()? {
            Some(owned) => owned,
            // A replica made before this list existed: its tables made
            // from the source's SQL are its own (a user's table with other
            // SQL stays the user's).
            None => {
                let mut owned = HashSet::new();
                for t in &source.tables {
                    let name = t.desc.name.as_ref();
                    if stored.table(name).is_some()
                        && crate::schema::table_sql(&self.conn, name).ok() == Some(t.create_sql.clone())
                    {
                        owned.insert(name.to_string());
                    }
                }
                owned
            }
        };
        // Rows a replica wrote before it kept the source's rowids for
        // tables with a declared key: renumbered, so reseeded once (held
        // as nothing: a NATS follower then says loudly that it waits for
        // a bootstrap in the stream, instead of writing the source's
        // rowids over rows numbered otherwise).
        let kept = self.rowid_tables()?;
        for t in &source.tables {
            let name = t.desc.name.as_ref();
            if t.desc.rowids_newly_kept() && stored.table(name).is_some() && !kept.contains(name) {
                // A bootstrap cut short is done again anyway: not news.
                let live = matches!(stored.table(name), Some(crate::state::TableState::Live { .. }));
                if live && self.said_rowids.insert(name.to_string()) {
                    tracing::info!(replica = %self.path.display(), table = %name,
                        "its rows here were written before the replica kept the source's rowids; reseeding it");
                }
                stored.forget(name);
            }
        }
        self.rebuild.clear();
        for t in &source.tables {
            let name = t.desc.name.as_ref();
            if !table_exists(&self.conn, name)? || same_schema(&self.conn, t)? {
                continue;
            }
            if owned.contains(name) {
                // Not complete any more: bootstrapped (and rebuilt) again,
                // or refused when bootstraps are off.
                stored.set_seeding(name);
                self.rebuild.insert(name.to_string(), t.clone());
                continue;
            }
            let live = describe(&self.conn, name)?;
            let mut problems = mismatches(&t.desc, &live, Against::Source);
            problems.extend(unique_key_problems(&self.conn, t)?);
            if !problems.is_empty() {
                return Err(Error::ReplicaMismatch { path: self.path.clone(), table: name.to_string(), problems });
            }
        }
        let wal: String =
            self.conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(|e| self.sql_error(e))?;
        self.wal = wal.eq_ignore_ascii_case("wal");
        if !self.wal {
            tracing::warn!(replica = %self.path.display(), mode = %wal, "replica is not in WAL mode; its readers will block replication");
        }
        // In WAL mode commits are not flushed one by one (NORMAL keeps the
        // file consistent); `sync` flushes the WAL before the source is
        // told. In another mode every commit is flushed (FULL), as NORMAL
        // there may corrupt the file on a power cut.
        let synchronous = if self.wal { "NORMAL" } else { "FULL" };
        // The replica is a copy, not a validator: a row the source stored
        // with its CHECK constraints off (an import, say) is stored here too.
        self.conn.execute_batch(&format!(
            "PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=OFF; PRAGMA ignore_check_constraints=ON;"
        ))?;
        let tx = self.conn.transaction().map_err(|e| classify(e, &self.path))?;
        tx.execute(&sql::create_state_sql(), [])?;
        tx.execute(&sql::create_owned_sql(), [])?;
        tx.execute(&sql::create_rowids_sql(), [])?;
        let own = sql::own_sql();
        // Tables the source dropped (schema following) go first, so a
        // table renamed on the source does not collide here with its old
        // self's indexes; a name the source has again is kept.
        let mut forgot = false;
        for table in &source.dropped {
            let again = source.tables.iter().any(|t| t.desc.name.eq_ignore_ascii_case(table));
            if owned.contains(table) && !again {
                tracing::info!(replica = %self.path.display(), table = %table, "the source dropped the table; dropping it here");
                tx.execute(&sql::drop_table_sql(table), [])?;
                tx.execute(&sql::disown_sql(), [table])?;
                tx.execute(&sql::unmark_rowids_sql(), [table])?;
                owned.remove(table);
                stored.forget(table);
                forgot = true;
            }
        }
        if forgot {
            write_state(&tx, &stored)?;
        }
        for t in &source.tables {
            let name = t.desc.name.as_ref();
            if !table_exists(&tx, name)? {
                create_table(&tx, t)?;
                owned.insert(name.to_string());
            } else if owned.contains(name) && !self.rebuild.contains_key(name) {
                // This replica's own table (a user's table is left alone).
                sync_plain_indexes(&tx, t)?;
            }
        }
        for name in &owned {
            tx.execute(&own, [name])?;
        }
        sync_views(&tx, &source.views)?;
        tx.commit().map_err(|e| classify(e, &self.path))?;
        self.conn.set_prepared_statement_cache_capacity(8 + 4 * source.tables.len());
        self.tables = source.tables.iter().map(|t| (t.desc.name.to_string(), TableSql::new(t))).collect();
        self.stored = stored;
        Ok(Some(self.stored.clone()))
    }
}

/// Creates a replica table from the source's SQL: the table, its indexes
/// (unique, partial and expression indexes decide which rows a table can
/// hold, and `INSERT OR REPLACE` evicts through them as on the source).
/// Never the source's triggers: their effects arrive as changes.
pub(super) fn create_table(conn: &Connection, t: &SourceTable) -> Result<()> {
    conn.execute(&t.create_sql, [])?;
    for index in &t.indexes {
        conn.execute(&index.sql, [])?;
    }
    Ok(())
}

/// How the unique keys of the user's replica table `t` differ from the
/// source's, one line each; the table is refused for any. `OR REPLACE`
/// evicts through every unique key, silently (no delete is counted or
/// logged): a source key missing here keeps rows the source evicted, and
/// a key here that holds no source key (the same columns compared the
/// same way, or more) evicts rows the source keeps.
pub(super) fn unique_key_problems(conn: &Connection, t: &SourceTable) -> Result<Vec<String>> {
    use crate::schema::UniqueKey;
    let Some(theirs) = &t.unique_keys else { return Ok(Vec::new()) };
    let ours = crate::schema::unique_keys(conn, &t.desc.name)?;
    let shown = |key: &UniqueKey| match key {
        UniqueKey::Columns(cols) => {
            let cols: Vec<String> = cols
                .iter()
                .map(|(c, coll)| match coll.as_str() {
                    "binary" => c.clone(),
                    "rowid" => format!("{c} INTEGER PRIMARY KEY"),
                    other => format!("{c} COLLATE {other}"),
                })
                .collect();
            format!("a unique key on ({})", cols.join(", "))
        }
        UniqueKey::Index(sql) => format!("the unique index {sql:?}"),
    };
    let mut problems = Vec::new();
    for key in theirs.iter().filter(|k| !ours.contains(k)) {
        problems.push(format!(
            "the source has {} and this table has not: rows the source evicts through it would stay here",
            shown(key)
        ));
    }
    for key in &ours {
        let held = match key {
            // Within a wider key, the source's rowid alias is a column
            // like any other (its values are unique there as well).
            UniqueKey::Columns(cols) => theirs.iter().any(|k| {
                matches!(k, UniqueKey::Columns(s) if s.iter().all(|(c, coll)| {
                    cols.iter().any(|(c2, coll2)| c2 == c && (coll2 == coll || (coll == "rowid" && coll2 == "binary")))
                }))
            }),
            UniqueKey::Index(_) => theirs.contains(key),
        };
        if !held {
            problems.push(format!(
                "{} that the source does not have: rows the source holds could evict each other here",
                shown(key)
            ));
        }
    }
    if !problems.is_empty() {
        problems.push("make the table's unique keys the source's, or drop it to let the replicator make it".into());
    }
    Ok(problems)
}

/// Whether the replica's table holds the same rows the source's can: the
/// same `CREATE TABLE` text and the same unique indexes. (Plain indexes
/// change no row: [`sync_plain_indexes`] copies them.)
pub(super) fn same_schema(conn: &Connection, t: &SourceTable) -> Result<bool> {
    if crate::schema::table_sql(conn, &t.desc.name)? != t.create_sql {
        return Ok(false);
    }
    Ok(unique_index_sql(&crate::schema::indexes(conn, &t.desc.name)?) == unique_index_sql(&t.indexes))
}

/// Makes the replica table's plain (non-unique) indexes the source's: an
/// index created or dropped on the source is created or dropped here.
pub(super) fn sync_plain_indexes(conn: &Connection, t: &SourceTable) -> Result<()> {
    let here = crate::schema::indexes(conn, &t.desc.name)?;
    let wanted: Vec<&IndexSql> = t.indexes.iter().filter(|i| !i.unique).collect();
    for index in here.iter().filter(|i| !i.unique) {
        if !wanted.iter().any(|w| w.sql == index.sql) {
            conn.execute(&sql::drop_index_sql(&index.name), [])?;
        }
    }
    for index in wanted {
        if !here.iter().any(|h| h.sql == index.sql) {
            conn.execute(&index.sql, [])?;
        }
    }
    Ok(())
}

/// Makes the replica's views the source's: a view created on the source is
/// created here, one dropped or changed there is dropped or recreated here
/// (only views this replica made: a name already taken here by something
/// of the user's is left alone).
pub(super) fn sync_views(conn: &Connection, views: &[(String, String)]) -> Result<()> {
    conn.execute(&sql::create_views_sql(), [])?;
    let owned: Vec<String> =
        conn.prepare(&sql::owned_views_sql())?.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    let stored = |name: &str| -> rusqlite::Result<Option<String>> {
        conn.query_row("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?1", [name], |r| r.get(0))
            .optional()
    };
    for name in &owned {
        let wanted = views.iter().find(|(n, _)| n == name).map(|(_, sql)| sql);
        if wanted.is_none() || wanted != stored(name)?.as_ref() {
            conn.execute(&sql::drop_view_sql(name), [])?;
            conn.execute(&sql::disown_view_sql(), [name])?;
        }
    }
    for (name, create) in views {
        let taken: bool =
            conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE lower(name) = lower(?1)", [name], |r| {
                r.get(0)
            })?;
        if !taken {
            conn.execute(create, [])?;
            conn.execute(&sql::own_view_sql(), [name])?;
        } else if stored(name)?.as_ref() != Some(create) {
            tracing::warn!(view = %name, "the replica has something else of this name (not made by the replicator); the source's view is not copied");
        }
    }
    Ok(())
}
