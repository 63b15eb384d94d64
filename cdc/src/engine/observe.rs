//! What watchers see of an engine: each table's state, what the target
//! lacks and how old it is, what was applied ([`crate::Stats`]).

use std::collections::BTreeMap;

use super::Engine;
use super::config::Drained;
use super::plan;
use crate::error::Result;
use crate::log;
use crate::state::{DeliveryState, TableState};
use crate::stats::now_ms;

impl Engine {
    /// Each followed table's state as the target holds it, for watchers.
    pub(super) fn table_states(&self, state: &DeliveryState) -> BTreeMap<String, String> {
        let mut tables: BTreeMap<String, String> = self
            .source
            .followed
            .iter()
            .map(|r| {
                let held = match state.tables.get(r.desc.name.as_ref()) {
                    Some(TableState::Live { .. }) => "live",
                    Some(TableState::Seeding) => "bootstrapping",
                    None => "waiting",
                };
                (r.desc.name.to_string(), held.to_string())
            })
            .collect();
        for h in &self.source.halted {
            tables.insert(h.table.clone(), "halted".into());
        }
        tables
    }

    /// Records, before delivering, what the target holds and what it
    /// lacks of the log up to `high_water` (the followed tables' changes
    /// after its lowest live position): kept while the delivery fails and
    /// is retried (a target down from the start included), cleared once
    /// it went through.
    pub(super) fn look(&mut self, state: &DeliveryState, high_water: i64) -> Result<()> {
        // Changes the log reached since the last look were written (about)
        // now: the log records no write times.
        self.reader.saw(high_water, now_ms());
        let positions = plan::live_positions(&self.source, state);
        let from = positions.values().copied().min().unwrap_or(state.position).min(high_water);
        let (pending, oldest) = if high_water > from {
            let tids: Vec<i64> = self.source.followed.iter().map(|r| r.tid).collect();
            let p = log::pending(&self.source.conn, from, high_water, &tids)?;
            let oldest = p.oldest_written_ms.or(p.oldest_seq.map(|seq| self.reader.time_of(seq)));
            (p.changes, oldest)
        } else {
            (0, None)
        };
        let tables = self.table_states(state);
        self.stats.update(|s| {
            (s.pending, s.oldest_pending_ms) = (pending, oldest);
            s.position = state.position;
            s.last_look_ms = Some(now_ms());
            s.tables = tables;
        });
        Ok(())
    }

    /// Counts a drain that went through: the target has everything it was
    /// shown, and each table's state.
    pub(super) fn record(&self, drained: &Drained) {
        let Some(connected) = &self.target else { return };
        let tables = self.table_states(&connected.state);
        let now = now_ms();
        self.stats.update(|s| {
            s.changes_applied += drained.changes;
            s.bootstrap_rows += drained.bootstrapped_rows;
            s.position = connected.state.position;
            if drained.changes > 0 || drained.bootstrapped_rows > 0 {
                s.last_apply_ms = Some(now);
            }
            if !drained.stopped {
                (s.pending, s.oldest_pending_ms) = (0, None);
            }
            s.last_look_ms = Some(now);
            s.tables = tables;
        });
    }
}
