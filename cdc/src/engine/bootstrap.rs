//! Bootstrap: the planned tables reseeded from one consistent cut, the
//! other followed tables brought to the same cut with their changes; rows
//! copied by the target itself when its own read of the source is that cut.

use super::config::Drained;
use super::failure::Failure;
use super::plan::Plan;
use super::{Engine, deliver, plan, snapshot};
use crate::log;
use crate::state::DeliveryState;
use crate::target::Target;

impl Engine {
    /// Bootstraps the planned tables from one consistent cut, bringing the
    /// other followed tables to the same cut with their changes.
    pub(super) fn bootstrap(
        &mut self,
        target: &mut dyn Target,
        state: DeliveryState,
        plan: &Plan,
        planned_layout: &str,
    ) -> Result<Drained, Failure> {
        let held = state.position;
        // Say first that these tables are being reseeded: if this is cut
        // short, the next run knows what it finds is incomplete.
        let mut seeding = state;
        for (table, reason) in &plan.bootstrap {
            // Once per table until a drain succeeds: a bootstrap retried
            // through an outage is not news, and its later reasons
            // ("interrupted") would only be the outage's doing.
            if self.said_bootstraps.insert(table.desc.name.to_string()) {
                tracing::info!(table = %table.desc.name, "{reason}; bootstrapping it");
            }
            seeding.set_seeding(&table.desc.name);
        }
        self.commit(target, seeding.clone())?;
        let stopped = Drained { position: held, stopped: true, ..Drained::default() };

        // One read transaction: every snapshot and the log's high-water
        // mark S are one consistent cut. A target that copies rows itself
        // starts its own read of the source right after, with the
        // application's writers held back so both reads see one commit.
        let bulk = self.open_bulk_copy(target);
        let writers = bulk.then(|| self.source.hold_writers()).flatten();
        let tx = self.source.conn.unchecked_transaction()?;
        let cut = log::high_water(&tx)?;
        let layout = self.source.layout(&tx)?;
        let via = if bulk { self.share_cut(target, &tx, cut) } else { snapshot::Via::Events };
        drop(writers);
        // Not across a schema change since the tables were checked (a
        // VACUUM, a trigger created).
        if self.layout_breaks(planned_layout, &layout) {
            drop(tx);
            target.rollback().map_err(Failure::Target)?;
            return Err(Failure::Moved("the source's schema changed before the snapshot"));
        }
        let mut rows = 0;
        for (table, _) in &plan.bootstrap {
            let batch = self.settings.batch_size;
            match snapshot::table(&tx, table, via, batch, &self.waker, &mut self.progress, target)? {
                Some(n) => rows += n,
                None => {
                    target.rollback().map_err(Failure::Target)?;
                    return Ok(stopped);
                }
            }
        }
        // Tables already live get their changes up to the cut; the
        // reseeded ones skip every log row up to it.
        let positions = plan::live_positions(&self.source, &seeding);
        let mut changes = 0;
        if let Some(from) = positions.values().copied().min().filter(|p| *p < cut) {
            let range = (from, cut);
            match deliver::log(&tx, &mut self.reader, &positions, range, self.settings.batch_size, &self.waker, target)?
            {
                Some(n) => changes = n,
                None => {
                    target.rollback().map_err(Failure::Target)?;
                    return Ok(stopped);
                }
            }
        }
        let mut state = seeding;
        for (table, _) in &plan.bootstrap {
            state.forget(&table.desc.name);
        }
        for r in &self.source.followed {
            state.set_live(&r.desc.name, cut);
        }
        state.advance(cut, log::anchor(&tx, cut)?);
        state.layout = Some(layout);
        tx.commit()?;
        self.commit(target, state)?;
        Ok(Drained { changes, bootstrapped_rows: rows, position: cut, stopped: false })
    }

    /// How this bootstrap's rows reach `target`: through its own read of
    /// the source ([`crate::BulkCopy`]) when that read sees exactly the
    /// cut of `tx` (same log high-water mark, same schema, same file),
    /// else as events. A mismatch (no writer lock to hold, a file moved
    /// in meanwhile) or any error reading costs speed, never correctness.
    pub(super) fn share_cut(&self, target: &mut dyn Target, tx: &rusqlite::Connection, cut: i64) -> snapshot::Via {
        let Some(copier) = target.bulk_copy() else { return snapshot::Via::Events };
        let theirs = copier.read_source();
        let ours = crate::target::SourceCut {
            high_water: cut,
            schema_version: tx.query_row("PRAGMA schema_version", [], |r| r.get(0)).unwrap_or(-1),
        };
        let same_file = !self.source.replaced() && self.source.path.exists();
        match theirs {
            Ok(theirs) if theirs == ours && same_file => return snapshot::Via::BulkCopy,
            Ok(theirs) => {
                tracing::debug!(
                    ?ours,
                    ?theirs,
                    same_file,
                    "the target's read of the source is another cut; sending rows as events"
                )
            }
            Err(e) => tracing::debug!(error = %e, "the target cannot read the source; sending rows as events"),
        }
        if let Err(e) = target.rollback() {
            tracing::debug!(error = %e, "rolling back the target's read of the source");
        }
        snapshot::Via::Events
    }

    /// Lets a target that copies rows itself open the source, when the
    /// path still names the file the engine has open (attaching another
    /// file and closing it would drop this process's locks on the `-shm`
    /// they share). Whether the target then can be asked for a read.
    pub(super) fn open_bulk_copy(&self, target: &mut dyn Target) -> bool {
        let Some(copier) = target.bulk_copy() else { return false };
        if self.source.replaced() {
            return false;
        }
        match copier.open_source(&self.source.path) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "the target cannot open the source; sending rows as events");
                if let Err(e) = target.rollback() {
                    tracing::debug!(error = %e, "letting the target close the source");
                }
                false
            }
        }
    }
}
