//! The replica's bookkeeping: its delivery state and the tables it made,
//! written in the same transaction as the rows.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};

use cdc_schema::replica::bookkeeping as sql;
use cdc_schema::replica::{OWNED_TABLE, STATE_TABLE};

use super::SqliteTarget;
use crate::error::{Error, Result};
use crate::schema::table_exists;
use crate::state::{DeliveryState, TableState};

/// The log id of a database's own capture, if it has capture installed.
pub(super) fn own_log_id(conn: &Connection) -> Result<Option<String>> {
    if !table_exists(conn, cdc_schema::log::META_TABLE)? {
        return Ok(None);
    }
    Ok(Some(crate::source::log_id(conn)?))
}

/// Writes the delivery state row (inside the caller's transaction).
pub(super) fn write_state(conn: &Connection, state: &DeliveryState) -> Result<()> {
    conn.prepare_cached(&sql::write_state_sql())?.execute(params![state.log_id, state.position, state.to_json()])?;
    Ok(())
}

impl SqliteTarget {
    /// The tables this replica created (and so may rebuild or drop).
    /// `None` for a replica made before the list existed.
    pub(super) fn owned_tables(&self) -> Result<Option<HashSet<String>>> {
        if !table_exists(&self.conn, OWNED_TABLE)? {
            return Ok(None);
        }
        let mut stmt = self.conn.prepare(&sql::owned_sql())?;
        let names = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(Some(names))
    }

    /// The tables this replica wrote with the source's rowids (see
    /// [`cdc_schema::replica::ROWIDS_TABLE`]); empty when none yet.
    pub(super) fn rowid_tables(&self) -> Result<HashSet<String>> {
        if !table_exists(&self.conn, cdc_schema::replica::ROWIDS_TABLE)? {
            return Ok(HashSet::new());
        }
        let mut stmt = self.conn.prepare(&sql::rowids_sql())?;
        let names = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(names)
    }

    /// The delivery state this replica stores (empty when none yet).
    pub(super) fn read_state(&self) -> Result<DeliveryState> {
        if !table_exists(&self.conn, STATE_TABLE)? {
            return Ok(DeliveryState::default());
        }
        let text: Option<String> = self.conn.query_row(&sql::read_state_sql(), [], |r| r.get(0)).optional()?;
        text.map_or_else(|| Ok(DeliveryState::default()), |t| DeliveryState::from_json(&t))
    }

    /// [`Target::commit`], also running `extra` inside the transaction
    /// just before it commits: bookkeeping that must be atomic with the
    /// rows and the state (a follower's stream position).
    pub fn commit_with(&mut self, state: &DeliveryState, extra: &dyn Fn(&Connection) -> Result<()>) -> Result<()> {
        self.commit_state(state, extra).map_err(|e| self.named(e))
    }

    pub(super) fn commit_state(
        &mut self,
        state: &DeliveryState,
        extra: &dyn Fn(&Connection) -> Result<()>,
    ) -> Result<()> {
        // A live position never moves back, except for a table reseeded
        // in this very transaction.
        for (table, held) in &self.stored.tables {
            if let (TableState::Live { position: old }, Some(new)) = (held, state.live_position(table))
                && new < *old
                && state.log_id == self.stored.log_id
                && !self.purged.contains(table)
            {
                return Err(Error::PositionBackwards {
                    path: self.path.clone(),
                    table: table.clone(),
                    from: *old,
                    to: new,
                });
            }
        }
        self.begin()?;
        write_state(&self.conn, state)?;
        extra(&self.conn)?;
        self.conn.execute_batch("COMMIT").map_err(|e| self.sql_error(e))?;
        self.in_tx = false;
        self.overtaken.clear();
        for table in self.purged.drain() {
            self.rebuild.remove(&table);
        }
        self.stored = state.clone();
        // Committed: a failed detach is not a failed commit (the next
        // attach detaches first).
        if let Err(e) = self.detach() {
            tracing::warn!(replica = %self.path.display(), error = %e, "could not detach the source after a bulk copy");
        }
        Ok(())
    }
}
