//! Upkeep: the consumer's record beside the source, and the maintenance
//! of the log, the one write a replicator makes to the source.
//!
//! Why the split: SQLite refuses an application's deferred transaction
//! at once, whatever its busy timeout, when it writes while another
//! connection holds the write lock or after another connection committed
//! since it read (`SQLITE_BUSY_SNAPSHOT`, met by the transactions ORMs
//! run), and a writer without a busy timeout fails whenever the lock is
//! taken. So what a replicator must keep often (where its target is) goes
//! to a file of its own ([`crate::source::ConsumerRecord`]), and the
//! source is written only to free the log ([`crate::source::maintain`]):
//! when the application has been quiet for a second, or, under one that
//! never pauses, once per prune interval (`EngineBuilder::prune_interval`);
//! either way at a moment no other process is inside a transaction on
//! the source, looked for briefly and tried again 250 ms later. Only a
//! maintenance deferred for a whole prune interval goes ahead regardless
//! (the log must not grow without end), saying so once.

use std::time::{Duration, Instant};

use super::Engine;
use super::failure::Failure;
use crate::error::{Error, Result};
use crate::source::{ConsumerRecord, Guard, Maintained, freeable, maintain, others_in_transaction};
use crate::state::DeliveryState;
use crate::stats::now_ms;
use crate::target::Target;

/// How long the source must have stood still before the log is
/// maintained without waiting for the prune interval: an application
/// that pauses that long is between transactions.
pub(super) const QUIET: Duration = Duration::from_secs(1);

/// Log positions of the current table before every pin worth sealing it:
/// fewer stay (a short log costs nothing, and every maintenance changes
/// the schema, which makes the application's connections prepare their
/// statements again). A sealed segment every consumer is past is always
/// worth dropping.
const WORTH: i64 = 10_000;

/// How long a maintenance looks for a moment when nobody else is in a
/// transaction on the source, before it tries again [`RETRY`] later: the
/// application's transactions come first.
const LOOK: Duration = Duration::from_millis(20);

/// How long after a deferred maintenance it is tried again: doubling
/// from the first to the second, while it keeps being deferred.
const RETRY: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(4));

/// How long an explicit drain (`--once`) looks for such a moment, as an
/// application waits for a lock, before it goes ahead regardless.
const DRAINED_LOOK: Duration = Duration::from_secs(5);

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
    /// The target has held something live (the record is durable from
    /// then on; before, it pins only while this engine runs).
    delivered: bool,
    /// This engine wrote the record as a new provisional one: only such a
    /// record is removed when it stops without having delivered.
    created: bool,
    /// When the log was last maintained (or the engine started).
    maintained: Instant,
    /// The source last stood still from this moment; a maintenance
    /// check is owed once it has for [`QUIET`].
    pub quiet_check: Option<Instant>,
    /// A deferred maintenance is tried again then.
    pub retry: Option<Instant>,
    /// Since when maintenance has been deferred (another process in a
    /// transaction, or holding the write lock), how often, and whether
    /// going ahead regardless was said.
    deferred: Option<Deferred>,
}

impl Upkeep {
    /// The record this engine made is to go when it stops: a peek's, or
    /// a new consumer's whose target never held anything.
    pub(super) fn leaves_nothing(&self, ephemeral: bool) -> bool {
        self.created && (ephemeral || !self.delivered)
    }
}

impl Default for Upkeep {
    fn default() -> Self {
        Upkeep {
            delivered: false,
            created: false,
            due: None,
            at: None,
            unsynced: false,
            pin: None,
            maintained: Instant::now(),
            quiet_check: None,
            retry: None,
            deferred: None,
        }
    }
}

/// A maintenance deferred.
#[derive(Clone, Copy, Debug)]
struct Deferred {
    since: Instant,
    tries: u32,
    said: bool,
}

/// Why a maintenance is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Occasion {
    /// The application has been quiet for [`QUIET`].
    Quiet,
    /// The prune interval passed while the application kept writing.
    Interval,
    /// A deferred maintenance is tried again.
    Retry,
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
        if std::mem::take(&mut self.schema_applied) {
            self.schema_events.clear();
        }
        if self.schema_events.is_empty() {
            self.told_schema = self.described.as_ref().map(super::schema_events::digest);
        }
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
        // Durable once the target holds something live, unless a peek.
        self.upkeep.delivered |= state.tables.values().any(|t| matches!(t, crate::state::TableState::Live { .. }));
        let record = ConsumerRecord {
            consumer: self.consumer.clone(),
            log_id: self.source.log_id.clone(),
            pin,
            position: state.position,
            state: (!connected.owned).then(|| state.clone()),
            written_ms: now_ms(),
            provisional: self.settings.ephemeral || !self.upkeep.delivered,
            // Told before the commit this record follows.
            schema: self.told_schema.clone(),
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
        ConsumerRecord::sweep(&self.source.path)?;
        let record =
            ConsumerRecord::load(&self.source.path, &self.consumer)?.filter(|r| r.log_id == self.source.log_id);
        // A consumer that delivered before (its record says so) stays durable.
        self.upkeep.delivered = record.as_ref().is_some_and(|r| !r.provisional);
        if record.is_none() || self.settings.ephemeral {
            self.upkeep.created = true;
            let record = ConsumerRecord {
                consumer: self.consumer.clone(),
                log_id: self.source.log_id.clone(),
                pin,
                position: state.position,
                state: None,
                written_ms: now_ms(),
                provisional: true,
                schema: None,
            };
            record.save(&self.source.path)?;
        }
        Ok(())
    }

    /// Whether a maintenance is due now for `occasion`.
    pub(super) fn maintenance_due(&self, occasion: Occasion) -> bool {
        let now = Instant::now();
        match occasion {
            Occasion::Quiet => self.upkeep.quiet_check.is_some_and(|since| now.duration_since(since) >= QUIET),
            Occasion::Retry => self.upkeep.retry.is_some_and(|at| at <= now),
            Occasion::Interval => self.upkeep.maintained.elapsed() >= self.settings.prune_interval,
            Occasion::Drained => true,
        }
    }

    /// When the next maintenance check is owed, if one is.
    pub(super) fn maintenance_check_at(&self) -> Option<Instant> {
        let quiet = self.upkeep.quiet_check.map(|since| since + QUIET);
        [quiet, self.upkeep.retry].into_iter().flatten().min()
    }

    /// Maintains the log when there is enough to free (see the module
    /// docs). Returns what was freed (`None`: nothing done, or deferred).
    pub(super) fn maintain(&mut self, occasion: Occasion) -> Result<Option<Maintained>> {
        self.upkeep.quiet_check = None;
        self.upkeep.retry = None;
        // A peek frees nothing: it may be the only reader of a log others
        // (a replica not running now) still need.
        if self.settings.ephemeral || self.target.is_none() || !self.source.unpark()? {
            return Ok(None);
        }
        // Capture removed from the whole file meanwhile: nothing to free
        // (the next drain says what it waits for).
        if crate::log::log_format(&self.source.conn).map_err(|e| crate::db::named(e, &self.source.path))?
            == crate::log::LogFormat::None
        {
            return Ok(None);
        }
        let path = self.source.path.clone();
        // An explicit drain frees whatever it can: it runs rarely (a
        // `--once` from cron), and what it leaves would wait for the next.
        let drained = occasion == Occasion::Drained;
        let worth = if drained { 1 } else { WORTH };
        if freeable(&self.source.conn, &path, Some(worth)).map_err(|e| crate::db::named(e, &path))? == 0 {
            self.upkeep.deferred = None;
            return Ok(None);
        }
        self.upkeep.maintained = Instant::now();
        // Deferred for a whole prune interval (a writer that never leaves
        // a moment, a transaction held open for minutes): the log must not
        // grow without end, so it goes ahead as any other writer would.
        let overdue = self.upkeep.deferred.is_some_and(|d| d.since.elapsed() >= self.settings.prune_interval);
        let wal = crate::db::is_wal(&self.source.conn).map_err(|e| crate::db::named(e, &path))?;
        let in_use = || !overdue && others_in_transaction(&path, wal) == Some(true);
        let replaced = self.source.replaced_check();
        let guard = Guard { replaced: &replaced, in_use: &in_use, wait: if drained { DRAINED_LOOK } else { LOOK } };
        // The guard looks for the moment itself: SQLite's busy handler
        // would wait without looking whether the lock is free between the
        // application's transactions or inside one.
        let _ = self.source.conn.busy_timeout(Duration::ZERO);
        let done = maintain(&mut self.source.conn, &path, &guard, Some(worth));
        let _ = self.source.conn.busy_timeout(crate::db::DEFAULT_BUSY_TIMEOUT);
        match done {
            Ok(done) => {
                if let Some(Deferred { since, said: true, .. }) = self.upkeep.deferred {
                    tracing::info!(db = %path.display(), waited = ?since.elapsed(), "the log is freed again");
                }
                self.upkeep.deferred = None;
                if let Some(done) = done {
                    self.stats.update(|s| {
                        s.source_writes += 1;
                        s.log_freed += done.rows;
                    });
                }
                tracing::debug!(?occasion, ?done, "maintained the log");
                Ok(done)
            }
            Err(e) if e.is_transient() => {
                let d = self.upkeep.deferred.get_or_insert(Deferred { since: Instant::now(), tries: 0, said: false });
                let since = d.since;
                d.tries += 1;
                let delay = RETRY.0.saturating_mul(1 << (d.tries - 1).min(8)).min(RETRY.1);
                if overdue && !d.said {
                    d.said = true;
                    tracing::warn!(db = %path.display(), waited = ?since.elapsed(),
                        "another process has been inside a transaction on the source at every try to free \
                         the log; freeing it as soon as the write lock is free (which may refuse one of its \
                         transactions)");
                }
                self.stats.update(|s| s.source_writes_deferred += 1);
                tracing::debug!(error = %e, "maintenance deferred: another process is in a transaction");
                self.upkeep.retry = Some(Instant::now() + delay);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
