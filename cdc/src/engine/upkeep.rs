//! Upkeep: the consumer's record beside the source, and the maintenance
//! of the log, the one write a replicator makes to the source.
//!
//! Why the split: a commit by any other connection between an
//! application's read and its write refuses that application transaction
//! at once, whatever its busy timeout (`SQLITE_BUSY_SNAPSHOT`, met by the
//! deferred transactions ORMs run), and makes a writer without a busy
//! timeout fail while the lock is held. So what a replicator must keep
//! often (where its target is) goes to a file of its own
//! ([`crate::source::ConsumerRecord`]), and the source is written only to
//! free the log ([`crate::source::maintain`]): when the application has
//! been quiet for a second, and under a writer that never pauses at most
//! once per prune interval (`EngineBuilder::prune_interval`).

use std::time::{Duration, Instant};

use super::Engine;
use super::failure::Failure;
use crate::error::{Error, Result};
use crate::source::{ConsumerRecord, Maintained, freeable, maintain};
use crate::state::DeliveryState;
use crate::stats::now_ms;
use crate::target::Target;

/// How long the source must have stood still before the log is
/// maintained without waiting for the prune interval: an application
/// that pauses that long is between transactions.
pub(super) const QUIET: Duration = Duration::from_secs(1);

/// Log positions worth a maintenance: fewer stay (a short log costs
/// nothing, and every maintenance changes the schema, which makes the
/// application's connections prepare their statements again).
const WORTH: i64 = 10_000;

/// How long a maintenance waits for the source's write lock before it
/// gives up for now: the application's writers come first.
const LOCK_WAIT: Duration = Duration::from_millis(20);

/// How long maintenance may find the source's write lock taken before
/// the sidecar says so (once).
const PATIENCE: Duration = Duration::from_secs(60);

/// The record and maintenance bookkeeping of an engine.
#[derive(Debug)]
pub(super) struct Upkeep {
    /// The record is owed from this moment on (the target moved).
    pub due: Option<Instant>,
    /// When the record was last written.
    at: Option<Instant>,
    /// The target committed since it last flushed (`Target::sync`).
    unsynced: bool,
    /// The pin last recorded: kept while no followed table is live.
    pin: Option<i64>,
    /// When the log was last maintained (or the engine started).
    maintained: Instant,
    /// The source last stood still from this moment; a maintenance
    /// check is owed once it has for [`QUIET`].
    pub quiet_check: Option<Instant>,
    /// Since when maintenance finds the write lock taken, and whether
    /// that was said.
    blocked: Option<(Instant, bool)>,
}

impl Default for Upkeep {
    fn default() -> Self {
        Upkeep {
            due: None,
            at: None,
            unsynced: false,
            pin: None,
            maintained: Instant::now(),
            quiet_check: None,
            blocked: None,
        }
    }
}

/// Why a maintenance is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Occasion {
    /// The application has been quiet for [`QUIET`].
    Quiet,
    /// The prune interval passed while the application kept writing.
    Interval,
    /// An explicit drain ends (`--once`): waiting for the lock as an
    /// application would.
    Drained,
}

impl Engine {
    /// Makes `state` the target's: the target commits it (with its data
    /// when it keeps state itself); the consumer's record follows, at most
    /// once per record interval while changes keep coming (the first
    /// after a quiet spell at once).
    pub(super) fn commit(&mut self, target: &mut dyn Target, state: DeliveryState) -> Result<(), Failure> {
        target.commit(&state).map_err(Failure::Target)?;
        self.upkeep.unsynced = true;
        self.target.as_mut().expect("connected").state = state;
        let now = Instant::now();
        let due = self.upkeep.at.map_or(now, |at| at + self.settings.ack_interval);
        let due = self.upkeep.due.map_or(due, |owed| owed.min(due));
        self.upkeep.due = Some(due);
        if due <= now {
            self.save_record(target)?;
        }
        Ok(())
    }

    /// Flushes the target (only what it holds durably may be freed; a
    /// failed flush is not retried: after a failed fsync the kernel may
    /// report the next one clean without the data on disk), then writes
    /// the consumer's record: its pin, its position, and the state of a
    /// target that keeps none.
    pub(super) fn save_record(&mut self, target: &mut dyn Target) -> Result<()> {
        let Some(connected) = self.target.as_ref() else { return Ok(()) };
        if self.upkeep.unsynced {
            target.sync().map_err(|e| Error::Unflushed(Box::new(e)))?;
            self.upkeep.unsynced = false;
        }
        let state = &connected.state;
        // The pin: nothing a followed table still needs may be freed.
        let live = self.source.followed.iter().filter_map(|r| state.live_position(&r.desc.name)).min();
        let pin = live.or(self.upkeep.pin).unwrap_or(0);
        let record = ConsumerRecord {
            consumer: self.consumer.clone(),
            log_id: self.source.log_id.clone(),
            pin,
            position: state.position,
            state: (!connected.owned).then(|| state.clone()),
            written_ms: now_ms(),
        };
        record.save(&self.source.path)?;
        self.upkeep.pin = Some(pin);
        self.upkeep.at = Some(Instant::now());
        self.upkeep.due = None;
        Ok(())
    }

    /// The pin a consumer starts with, recorded before anything is
    /// delivered: the one it had (`pin`: its record's, or the source's
    /// consumer table's), or just below the log's oldest row, so that no
    /// other consumer frees what this one has not seen.
    pub(super) fn start_record(&mut self, pin: Option<i64>, state: &DeliveryState) -> Result<()> {
        let conn = &self.source.conn;
        let pin = match pin {
            Some(pin) => pin,
            None => crate::log::low_water(conn)?.map_or(crate::log::high_water(conn)?, |low| low - 1),
        };
        self.upkeep.pin = Some(pin);
        if ConsumerRecord::load(&self.source.path, &self.consumer)?.is_none_or(|r| r.log_id != self.source.log_id) {
            let record = ConsumerRecord {
                consumer: self.consumer.clone(),
                log_id: self.source.log_id.clone(),
                pin,
                position: state.position,
                state: None,
                written_ms: now_ms(),
            };
            record.save(&self.source.path)?;
        }
        Ok(())
    }

    /// Whether a maintenance is due now for `occasion`.
    pub(super) fn maintenance_due(&self, occasion: Occasion) -> bool {
        match occasion {
            Occasion::Quiet => self.upkeep.quiet_check.is_some_and(|since| since.elapsed() >= QUIET),
            Occasion::Interval => self.upkeep.maintained.elapsed() >= self.settings.prune_interval,
            Occasion::Drained => true,
        }
    }

    /// Maintains the log when there is enough to free (see the module
    /// docs): waiting for the write lock briefly, or for `Drained` as an
    /// application would. Returns what was freed (`None`: nothing done).
    pub(super) fn maintain(&mut self, occasion: Occasion) -> Result<Option<Maintained>> {
        self.upkeep.quiet_check = None;
        if self.target.is_none() || !self.source.unpark()? {
            return Ok(None);
        }
        let path = self.source.path.clone();
        // An explicit drain frees whatever it can: it runs rarely (a
        // `--once` from cron), and what it leaves would wait for the next.
        let patient = occasion == Occasion::Drained;
        let worth = if patient { 1 } else { WORTH };
        if freeable(&self.source.conn, &path).map_err(|e| crate::db::named(e, &path))? < worth {
            return Ok(None);
        }
        self.upkeep.maintained = Instant::now();
        if !patient {
            // Look for the lock often, briefly: a writer committing back
            // to back frees it for microseconds at a time, which SQLite's
            // own busy handler (sleeping 1, 2, 5, 10 ms...) mostly misses.
            let _ = self.source.conn.busy_handler(Some(poll_briefly));
        }
        let replaced = self.source.replaced_check();
        let done = maintain(&mut self.source.conn, &path, &replaced, Some(worth));
        let _ = self.source.conn.busy_timeout(crate::db::DEFAULT_BUSY_TIMEOUT);
        match done {
            Ok(Some(done)) => {
                if let Some((since, true)) = self.upkeep.blocked {
                    tracing::info!(db = %path.display(), waited = ?since.elapsed(), "the log is maintained again");
                }
                self.upkeep.blocked = None;
                tracing::debug!(?occasion, ?done, "maintained the log");
                Ok(Some(done))
            }
            Ok(None) => Ok(None),
            Err(e) if e.is_transient() => {
                let (since, said) = self.upkeep.blocked.get_or_insert((Instant::now(), false));
                if !*said && since.elapsed() >= PATIENCE {
                    *said = true;
                    tracing::warn!(db = %path.display(), waited = ?since.elapsed(),
                        "maintaining the log waits for the source's write lock, held by another connection; \
                         delivery goes on, the log is not freed meanwhile");
                }
                tracing::debug!(error = %e, "maintenance deferred: the source's write lock is busy");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// A busy handler for maintenance: tries again every 100 µs, for about
/// [`LOCK_WAIT`] in all.
fn poll_briefly(tries: i32) -> bool {
    const EVERY: Duration = Duration::from_micros(100);
    if tries as u128 * EVERY.as_micros() >= LOCK_WAIT.as_micros() {
        return false;
    }
    std::thread::sleep(EVERY);
    true
}
