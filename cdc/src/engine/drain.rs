//! One drain: refresh the source, plan, deliver or bootstrap, commit;
//! and the retries around it, by what each failure means.

use super::config::{Drained, OnRewind};
use super::failure::Failure;
use super::plan;
use super::source::{Refresh, named};
use super::{BootstrapMode, Engine, deliver, upkeep};
use crate::error::{Error, Result};
use crate::log;
use crate::retry::Outage;
use crate::state::DeliveryState;
use crate::target::Target;

/// Which side failed, for the outage's line.
enum Side {
    Source,
    Target,
}

/// How many times in a row a drain is planned again because the source's
/// schema changed under it, before its error counts.
const SCHEMA_RACES: u32 = 20;

impl Engine {
    /// Delivers everything visible now (bootstrapping first what the target
    /// does not hold), retrying a failing target with backoff, and waiting
    /// out a source locked by the application. Then the consumer's record
    /// is written, and the log maintained when there is enough to free
    /// (waiting for the lock as an application would).
    pub fn drain(&mut self, target: &mut dyn Target) -> Result<Drained> {
        let drained = self.drain_with_retries(target)?;
        if self.upkeep.due.is_some() {
            self.save_record(target)?;
        }
        if !drained.stopped {
            self.maintain(upkeep::Occasion::Drained)?;
        }
        Ok(drained)
    }

    pub(super) fn drain_with_retries(&mut self, target: &mut dyn Target) -> Result<Drained> {
        let mut attempt = 0;
        let mut outage: Option<Outage> = None;
        loop {
            let failure = match self.drain_attempt(target) {
                Ok(drained) => {
                    if let Some(outage) = outage {
                        outage.end();
                    }
                    self.said_bootstraps.clear();
                    self.record(&drained);
                    return Ok(drained);
                }
                Err(failure) => failure,
            };
            self.stats.failed(failure.kind());
            let _ = target.rollback();
            // An I/O error may leave the connection unusable for good (its
            // file renamed or unlinked under it): the next attempt opens
            // the path afresh, which also tells a file gone or replaced.
            if let Failure::Source(e) = &failure
                && e.is_transient()
                && !e.is_locked()
            {
                self.source.park();
            }
            // Capture removed from the whole file under the drain (`cdc-setup
            // uninstall --force`): waited for, with the command that
            // attaches it, not a failure of the source.
            let failure = match failure {
                Failure::Source(e)
                    if !e.is_transient()
                        && !self.source.parked
                        && crate::log::log_format(&self.source.conn)
                            .is_ok_and(|f| f == crate::log::LogFormat::None) =>
                {
                    Failure::Source(Error::NotReady(Box::new(Error::NothingCaptured(self.source.path.clone()))))
                }
                other => other,
            };
            let failure_side = if matches!(failure, Failure::Target(_)) { Side::Target } else { Side::Source };
            let delay = match failure {
                // The application holds the source's write lock (a long
                // transaction, a checkpoint), a target is down, a disk is
                // full: wait, without limit, saying so once; nothing is lost.
                Failure::Source(e) | Failure::Target(e) if e.is_transient() => {
                    let (subject, place) = match &failure_side {
                        Side::Source => ("the source", self.source.path.display().to_string()),
                        Side::Target => ("the target", self.consumer.clone()),
                    };
                    let limit = self.settings.give_up_after;
                    let outage = outage.get_or_insert_with(|| Outage::start(&e, subject, &place, limit));
                    if limit.is_some_and(|l| outage.lasted() >= l) {
                        return Err(Error::GaveUp { attempts: outage.tries + 1, last: Box::new(e) });
                    }
                    outage.next_delay(&e, self.settings.retry)
                }
                Failure::Source(e) => {
                    // A table renamed or dropped between the plan and its
                    // read (a migration's temporary table, say): the schema
                    // moved, not the file broke. Plan again.
                    // Or the file was replaced mid-read (what the old
                    // connection read through the shared WAL may look
                    // damaged): the next attempt reopens the path.
                    if attempt < SCHEMA_RACES && (self.source.replaced() || self.source.schema_moved()) {
                        attempt += 1;
                        tracing::debug!(error = %e, "the schema changed or the file was replaced during the drain; planning again");
                        continue;
                    }
                    return Err(named(e, &self.source.path));
                }
                Failure::Moved(what) if attempt < SCHEMA_RACES => {
                    attempt += 1;
                    tracing::debug!("{what}; planning again");
                    continue;
                }
                Failure::Moved(what) => {
                    let (db, what) = (self.source.path.clone(), what.to_string());
                    return Err(Error::SchemaUnsettled { db, what, tries: SCHEMA_RACES });
                }
                // The replica refused one table's change (a constraint the
                // source did not enforce, say): reseed that table, once;
                // the others keep flowing. Said in one line by the
                // bootstrap that follows.
                Failure::Target(Error::ReplicaRefused { table, message, .. }) if !self.refused.contains_key(&table) => {
                    self.refused.insert(table, message);
                    continue;
                }
                Failure::Target(e) if e.is_permanent() => return Err(e),
                // Neither known to pass nor known to last (a custom
                // target's own error): retried a bounded number of times.
                Failure::Target(e) => {
                    attempt += 1;
                    let retry = self.settings.retry;
                    if attempt > retry.attempts {
                        return Err(Error::GaveUp { attempts: attempt, last: Box::new(e) });
                    }
                    let delay = retry.jittered(attempt);
                    tracing::warn!(attempt, ?delay, error = %e, "target failed; retrying from the last commit");
                    delay
                }
            };
            if !self.waker.sleep(delay) {
                let position = self.position().unwrap_or(0);
                return Ok(Drained { position, stopped: true, ..Drained::default() });
            }
        }
    }

    /// One attempt, in one read transaction of the source while it is
    /// short (see `SourceDb::begin_read`): begun by the schema check, ended
    /// before a bootstrap (which takes its own), before a delivery longer
    /// than a batch, and here, whatever happened.
    pub(super) fn drain_attempt(&mut self, target: &mut dyn Target) -> Result<Drained, Failure> {
        let drained = self.read_and_deliver(target);
        self.source.end_read();
        drained
    }

    fn read_and_deliver(&mut self, target: &mut dyn Target) -> Result<Drained, Failure> {
        match self.source.refresh()? {
            Refresh::Same => {}
            // Another file, other tables, other indexes: the target learns
            // the new description (a replica creates what is missing,
            // rebuilds what changed, copies plain indexes).
            Refresh::Reopened | Refresh::SchemaChanged => {
                // A target without state of its own goes on from what it
                // was given, not from the source's record of it (which may
                // lag by an acknowledgement interval): nothing is sent twice.
                self.kept = self.target.take().filter(|c| !c.owned).map(|c| c.state);
            }
        }
        self.connect(target)?;
        // Found out while delivering (a topic gone under a Kafka target):
        // bootstrapped again from this plan on.
        if let Some(connected) = self.target.as_mut().filter(|c| !c.owned) {
            super::forget_lost(target, &mut connected.state, self.settings.bootstrap)?;
        }
        self.source.begin_read()?;
        // The tables were checked at one schema cookie: one that moved
        // since (a trigger created, a VACUUM) is checked first.
        if self.source.schema_moved() {
            return Err(Failure::Moved("the schema changed while the tables were checked"));
        }
        self.plan_and_deliver(target)
    }

    /// Plans the drain and delivers, or bootstraps.
    fn plan_and_deliver(&mut self, target: &mut dyn Target) -> Result<Drained, Failure> {
        let conn = &self.source.conn;
        let layout = self.source.layout(conn)?;
        let plan = plan::make(
            conn,
            &self.source,
            &self.target.as_ref().expect("connected above").state,
            self.settings.bootstrap,
            !self.always_done,
            &self.refused,
            &layout,
        )?;
        let connected = self.target.as_ref().expect("connected above");
        let mut state = connected.state.clone();
        if let Some(reason) = &plan.reset {
            match self.settings.on_rewind {
                OnRewind::Stop => {
                    return Err(Failure::Source(Error::Rewound { db: self.source.path.clone(), what: reason.clone() }));
                }
                OnRewind::Reseed => {
                    tracing::warn!(db = %self.source.path.display(), "{reason}; bootstrapping every followed table again");
                    state = DeliveryState::empty(&self.source.log_id);
                }
            }
        }
        if state.log_id.is_empty() {
            state.log_id = self.source.log_id.clone();
        }
        for (table, position) in &plan.adopt {
            state.set_live(table, *position);
        }
        self.look(&state, plan.high_water)?;
        self.schema_applied = !self.schema_events.is_empty();
        if self.schema_applied {
            target.apply(&self.schema_events).map_err(Failure::Target)?;
        }
        let drained = if plan.bootstrap.is_empty() {
            state.layout = Some(layout);
            self.deliver_changes(target, state, plan.high_water)?
        } else {
            self.source.end_read();
            self.bootstrap(target, state, &plan, &layout)?
        };
        if !drained.stopped {
            if self.settings.bootstrap == BootstrapMode::Always {
                self.always_done = true;
            }
            for (table, _) in &plan.bootstrap {
                self.refused.remove(table.desc.name.as_ref());
            }
        }
        Ok(drained)
    }

    /// Delivers the log up to `high_water` to tables that are all live.
    /// `state` is the target's, possibly with tables just adopted.
    pub(super) fn deliver_changes(
        &mut self,
        target: &mut dyn Target,
        mut state: DeliveryState,
        high_water: i64,
    ) -> Result<Drained, Failure> {
        let positions = plan::live_positions(&self.source, &state);
        let from = positions.values().copied().min().unwrap_or(high_water);
        let mut drained = Drained { position: state.position, ..Drained::default() };
        if high_water <= from {
            if self.schema_applied || self.target.as_ref().is_some_and(|c| c.state != state) {
                self.commit(target, state)?;
            }
            return Ok(drained);
        }
        // The log is read in several short reads (no long read
        // transaction). Were the file restored from a backup between them,
        // the entry at the high-water mark would change: checked again
        // before the target commits.
        let anchor = log::anchor(&self.source.conn, high_water)?;
        let several_reads = high_water - from > self.settings.batch_size as i64;
        if several_reads {
            // Longer than a batch: each batch in a read of its own.
            self.source.end_read();
        }
        let delivered = deliver::log(
            &self.source.conn,
            &mut self.reader,
            &positions,
            (from, high_water),
            self.settings.batch_size,
            &self.waker,
            target,
        )?;
        let Some(changes) = delivered else {
            target.rollback().map_err(Failure::Target)?;
            drained.stopped = true;
            return Ok(drained);
        };
        // Read in several reads: had anything freed rows after `from`
        // meanwhile (a pin not counted), some changes were never read.
        if several_reads && log::low_water(&self.source.conn)?.is_some_and(|low| low > from + 1) {
            target.rollback().map_err(Failure::Target)?;
            return Err(Failure::Moved("the log was freed past this consumer while it was read"));
        }
        if log::anchor(&self.source.conn, high_water)? != anchor {
            tracing::warn!(db = %self.source.path.display(), "the log changed while it was read (restored from a backup?); reading it again");
            target.rollback().map_err(Failure::Target)?;
            return Ok(drained);
        }
        // A VACUUM while the log was read renumbers rowids the changes
        // name: never commit across one.
        let now = self.source.layout(&self.source.conn)?;
        if self.layout_breaks(state.layout.as_deref().unwrap_or_default(), &now) {
            return Err(Failure::Moved("the source file or its schema changed while its log was read"));
        }
        for table in positions.keys() {
            state.set_live(table, high_water);
        }
        state.advance(high_water, anchor);
        self.commit(target, state)?;
        drained.changes = changes;
        drained.position = high_water;
        Ok(drained)
    }

    /// Whether moving from layout `then` to `now` breaks delivery: another
    /// file, or another schema cookie. Any schema change may void what was
    /// read since the tables were checked: a `VACUUM` renumbers the rowids
    /// of tables without a key, and a trigger created meanwhile may fire
    /// before capture's (so changes logged after it may be stale until
    /// capture is attached in front of it again, see
    /// [`crate::capture::drift`]). The drain is then planned again, from
    /// a fresh check of the tables.
    pub(super) fn layout_breaks(&self, then: &str, now: &str) -> bool {
        then != now
    }
}
