//! Delivery: wait for a signal, read the log in batches, hand them to a
//! target, commit at source commit points, acknowledge, prune. The shape
//! follows litestream's replication loop: one wait over stop, timer and
//! change notification, with backoff on error.
//!
//! - [`config`]: the builder and settings;
//! - [`source`]: the source file, its log and followed tables, re-identified on every wake;
//! - [`plan`]: from a target's [`DeliveryState`] and the log, what to do per table;
//! - [`deliver`]: the log in batches; [`snapshot`]: a table's rows for a bootstrap.

mod config;
mod deliver;
mod pace;
mod plan;
mod snapshot;
mod source;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::TransactionBehavior;

pub use config::{BootstrapMode, Drained, EngineBuilder, OnRewind, Retry, StopHandle};
pub use snapshot::Progress;
pub use source::Halted;

use crate::db::classify;
use crate::error::{Error, Result};
use crate::lock::{OwnerLock, consumer_lock_path};
use crate::log::{self, LogReader};
use crate::signal::{Signal, Wake, Waker};
use crate::state::{DeliveryState, TableState};
use crate::stats::{Stats, now_ms};
use crate::target::Target;

use config::{ProgressFn, Settings};
use plan::Plan;
use source::{Refresh, SourceDb};

/// After a ring, look again after these delays (about 0.4 s in all): the
/// commit that caused a file event may not have been visible yet when the
/// ring was answered, and on a loaded machine the writer can be held up
/// between writing its WAL frames and publishing the commit.
const RECHECKS: [Duration; 5] = [
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(25),
    Duration::from_millis(100),
    Duration::from_millis(250),
];

/// How long after the source last changed the sidecar keeps its
/// connection (see [`source`] for why it lets go at all). Reopening costs
/// a cold page cache: closing after every drain took the sidecar beside a
/// paced writer from 15% to 28% of a core (`cargo bench -p cdc-benches
/// --bench load`); a writer that pauses longer than this pays one reopen
/// per pause.
const PARK_AFTER: Duration = Duration::from_millis(20);

/// How long an acknowledgement waits for the source's write lock before it
/// is deferred: the application's writers come first, and a target that
/// keeps its own state needs no acknowledgement to make progress.
const ACK_WAIT: Duration = Duration::from_millis(20);

/// How long acknowledgements may find the source's write lock taken
/// before the sidecar says so (once).
const ACK_PATIENCE: Duration = Duration::from_secs(10);

/// How soon a deferred acknowledgement is tried again.
const ACK_RETRY: Duration = Duration::from_millis(250);

/// Log rows deleted per statement while pruning.
const PRUNE_CHUNK: i64 = 500;

/// How long one acknowledgement transaction goes on pruning, in chunks,
/// once it holds the source's write lock: the application waits at most
/// about this long for the sidecar (measured: see [`acknowledge`]).
const PRUNE_BUDGET: Duration = Duration::from_millis(2);

/// How soon the next acknowledgement comes when pruning is behind, so
/// that pruning keeps up with a busy writer (whatever the interval).
const PRUNE_AGAIN: Duration = Duration::from_millis(50);

/// Waiting out a source the application keeps locked: without limit, from
/// 100 ms doubling to at most 2 s between tries.
const LOCKED: Retry = Retry { attempts: u32::MAX, initial: Duration::from_millis(100), max: Duration::from_secs(2) };

/// How many times in a row a drain is planned again because the source's
/// schema changed under it, before its error counts.
const SCHEMA_RACES: u32 = 20;

/// Where a failure came from: transient ones are retried without limit,
/// other target failures a bounded number of times, other source ones
/// not; `Moved`: the source's file or schema moved during the drain, which
/// is planned again.
pub(crate) enum Failure {
    Source(Error),
    Target(Error),
    Moved(&'static str),
}

impl Failure {
    /// The kind counted in [`Stats`] (see [`crate::StatsSnapshot::errors`]).
    fn kind(&self) -> &'static str {
        match self {
            Failure::Source(e) | Failure::Target(e) if e.is_locked() => "locked",
            Failure::Source(e) | Failure::Target(e) if e.is_transient() => "unavailable",
            Failure::Target(Error::ReplicaRefused { .. }) => "refused",
            Failure::Target(_) => "target",
            Failure::Source(_) => "source",
            Failure::Moved(_) => "moved",
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Source(e)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Source(e.into())
    }
}

/// The target as the engine knows it once opened.
struct Connected {
    /// What the target holds: the truth about it.
    state: DeliveryState,
    /// The target keeps `state` itself (else the source's consumer record does).
    owned: bool,
}

/// Runs delivery for one consumer of one source database.
pub struct Engine {
    source: SourceDb,
    consumer: String,
    settings: Settings,
    progress: Option<ProgressFn>,
    reader: LogReader,
    waker: Waker,
    target: Option<Connected>,
    /// `BootstrapMode::Always` has done its one reseed.
    always_done: bool,
    /// Tables the target refused a change of, to reseed, with why.
    refused: HashMap<String, String>,
    /// An acknowledgement is owed from this moment on (the target moved,
    /// or pruning is behind): the source's pin and, for targets without
    /// state, the state it keeps lag behind the target until then.
    ack_due: Option<Instant>,
    /// When the last acknowledgement went through.
    acked_at: Option<Instant>,
    /// The target committed since it last flushed (`Target::sync`).
    unsynced: bool,
    /// A stateless target's state across a reconnection.
    kept: Option<DeliveryState>,
    /// Since when acknowledgements find the source's write lock taken,
    /// and whether that was said.
    ack_blocked: Option<(Instant, bool)>,
    /// What it did, for watchers on other threads.
    stats: Arc<Stats>,
    _lock: OwnerLock,
}

impl EngineBuilder {
    /// Opens the source and checks it before anything is written anywhere:
    /// a SQLite file, the tables captured and unchanged, the log readable.
    /// Then takes the consumer's lock: one live engine per consumer.
    pub fn open(self) -> Result<Engine> {
        if self.settings.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if self.consumer.is_empty() {
            return Err(Error::Config("consumer name must not be empty".into()));
        }
        let source = SourceDb::open(&self.db, &self.tables, self.settings.follow_schema)?;
        // With schema following, the first drain follows these instead.
        if !self.settings.follow_schema {
            source.halted.iter().for_each(source::Halted::announce);
        }
        if log::position(&source.conn, &self.consumer).map_err(|e| named(e, &self.db))?.is_none() {
            source.quick_check()?;
        }
        let what = format!("consumer {:?} of {}", self.consumer, self.db.display());
        let lock = OwnerLock::acquire(&consumer_lock_path(&self.db, &self.consumer), &what)?;
        Ok(Engine {
            source,
            consumer: self.consumer,
            settings: self.settings,
            progress: self.progress,
            reader: LogReader::new(),
            waker: Waker::new(),
            target: None,
            always_done: false,
            refused: HashMap::new(),
            ack_due: None,
            acked_at: None,
            unsynced: false,
            kept: None,
            ack_blocked: None,
            stats: Arc::new(Stats::default()),
            _lock: lock,
        })
    }
}

impl Engine {
    /// Starts configuring an engine on the database at `db`.
    pub fn builder(db: impl AsRef<Path>) -> EngineBuilder {
        EngineBuilder::new(db.as_ref())
    }

    /// A handle that stops this engine from anywhere. Once stopped, an
    /// engine stays stopped.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.waker.clone())
    }

    /// Its counters and gauges, shared: clone it before [`Self::run`] to
    /// watch the engine from another thread (a status line, metrics).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The tables this engine follows.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.source.followed.iter().map(|r| r.desc.name.as_ref())
    }

    /// Tables whose delivery is stopped because their schema changed (and
    /// schema following is off, or a migration window is open), each with
    /// the line that says why and how to resume it.
    pub fn halted(&self) -> &[Halted] {
        &self.source.halted
    }

    /// The commit point the target holds, once connected.
    pub fn position(&self) -> Option<i64> {
        self.target.as_ref().map(|t| t.state.position)
    }

    /// What the target holds, once connected.
    pub fn state(&self) -> Option<&DeliveryState> {
        self.target.as_ref().map(|t| &t.state)
    }

    /// Runs until stopped: drains whenever `signal` rings and the source
    /// changed (`PRAGMA data_version` makes an empty wake-up during a
    /// burst almost free; after a longer wait the connection, closed
    /// meanwhile, is opened again and the log read).
    pub fn run(&mut self, target: &mut dyn Target, signal: &mut dyn Signal) -> Result<Drained> {
        signal.start(self.waker.clone())?;
        let result = self.run_loop(target);
        if result.is_err() {
            self.stats.failed("fatal");
        }
        // A clean stop leaves no acknowledgement owed when the lock is
        // free: a target without state of its own would get the last
        // changes again after a restart.
        if result.is_ok() && self.ack_due.is_some() && self.source.unpark().unwrap_or(false) {
            let _ = self.acknowledge(target, false);
        }
        self.waker.stop();
        signal.join();
        result
    }

    fn run_loop(&mut self, target: &mut dyn Target) -> Result<Drained> {
        let mut total = Drained { position: self.position().unwrap_or(0), ..Drained::default() };
        let mut seen: Option<i64> = None;
        let mut pace = pace::Pace::default();
        // When the source was last seen changing.
        let mut last_news = Instant::now();
        // Re-checks still due after the last ring (none before the first).
        let mut rechecks: std::slice::Iter<Duration> = [].iter();
        loop {
            // A `stat` per wake: a file replaced under the same path is
            // drained (and so reopened) whatever its data_version says.
            let replaced = self.source.replaced();
            if replaced {
                // Let go of the old file at once: the application's first
                // connection to the new one must not find ours on the
                // shared `-shm` (even while the drain below waits its gap).
                self.source.park();
            }
            // Read data_version before draining: a commit racing the drain
            // changes it again and is picked up on the next wake-up. A
            // source locked even for reading (an exclusive transaction in
            // rollback-journal mode) is waited out by the drain.
            let version = match self.source.data_version() {
                Ok(version) => version,
                Err(e) if e.is_transient() || self.source.replaced() => None,
                Err(e) => return Err(e),
            };
            if version.is_some() && seen != version {
                last_news = Instant::now();
            }
            if replaced || version.is_none() || seen != version {
                // Commits coming fast: wait out the gap, then take them all.
                let left = pace.wait(Instant::now());
                if !left.is_zero() {
                    if !self.waker.sleep(left) {
                        total.stopped = true;
                        return Ok(total);
                    }
                    continue;
                }
                pace.start(Instant::now());
                let drained = self.drain_with_retries(target);
                pace.end(Instant::now());
                let drained = drained?;
                total.add(drained);
                if drained.changes > 0 || drained.bootstrapped_rows > 0 {
                    last_news = Instant::now();
                }
                seen = version;
                if drained.stopped {
                    return Ok(total);
                }
            }
            // Made after the drain, which opened a parked connection again
            // (and the replaced file, if it was).
            if self.ack_due.is_some_and(|due| due <= Instant::now()) && !self.source.parked() {
                self.acknowledge(target, false)?;
            }
            // A file event can arrive before the commit it belongs to is
            // visible: the writer writes WAL frames (an event), then
            // publishes the commit through shared memory (no event). So
            // after every ring, look again a few times shortly after.
            let ack_in = self.ack_due.map(|due| due.saturating_duration_since(Instant::now()));
            let mut timeout = match (rechecks.next().copied(), ack_in) {
                (Some(t), Some(a)) => Some(t.min(a)),
                (t, a) => t.or(a),
            };
            // Hold nothing of the source while it is quiet (see `source`:
            // a file moved into place must not meet an open connection to
            // the old one); while commits keep coming, keep one connection
            // (and its page cache), and wake up to let it go.
            let hot = PARK_AFTER.saturating_sub(last_news.elapsed());
            if hot.is_zero() {
                self.source.park();
            } else {
                timeout = Some(timeout.map_or(hot, |t| t.min(hot)));
            }
            match self.waker.wait(timeout) {
                Wake::Stopped => {
                    total.stopped = true;
                    return Ok(total);
                }
                Wake::Rung => rechecks = RECHECKS.iter(),
                // A timer's look: no file event to be ahead of its commit.
                Wake::Ticked | Wake::TimedOut => {}
            }
        }
    }

    /// Opens `target` with the source's description and learns what it
    /// holds (done by the first drain when not called before). A failure
    /// here is a configuration problem (an incompatible replica, say): it
    /// is not retried, and the source is written only once the target has
    /// accepted it.
    pub fn connect(&mut self, target: &mut dyn Target) -> Result<()> {
        if self.target.is_some() {
            return Ok(());
        }
        let mut description = self.source.describe()?;
        let mut stored = target.open(&description)?;
        // Schema following: tables the target holds that the source no
        // longer has (dropped by this engine, another one, a migration
        // window, or while none ran) go from the target too.
        if self.settings.follow_schema
            && let Some(state) = &stored
        {
            let gone = self.source.gone(state.tables.keys())?;
            if gone.iter().any(|t| !description.dropped.contains(t)) {
                description.dropped.extend(gone);
                stored = target.open(&description)?;
            }
        }
        self.source.dropped.clear();
        self.source.arm();
        let conn = &self.source.conn;
        let kept = self.kept.take().filter(|k| k.log_id == self.source.log_id);
        let (state, owned) = match (stored, kept) {
            (Some(state), _) => (state, true),
            (None, Some(kept)) => (kept, false),
            (None, None) => (log::consumer_state(conn, &self.consumer)?.unwrap_or_default(), false),
        };
        if log::position(conn, &self.consumer)?.is_none() {
            // Pin the log just below its oldest row, so that no other
            // consumer prunes what this one has not seen.
            let pin = log::low_water(conn)?.map_or(log::high_water(conn)?, |low| low - 1);
            log::set_position(conn, &self.consumer, pin).map_err(|e| self.named(e))?;
        }
        let tables = self.table_states(&state);
        self.stats.update(|s| {
            s.position = state.position;
            s.tables = tables;
        });
        self.target = Some(Connected { state, owned });
        Ok(())
    }

    /// Delivers everything visible now (bootstrapping first what the target
    /// does not hold), retrying a failing target with backoff, and waiting
    /// out a source locked by the application. An acknowledgement deferred
    /// meanwhile is made before returning (waiting for the lock as an
    /// application would).
    pub fn drain(&mut self, target: &mut dyn Target) -> Result<Drained> {
        let drained = self.drain_with_retries(target)?;
        // Owed (batched, or deferred because the source was busy): made
        // now, waiting for the lock as an application would.
        while self.ack_due.is_some() && !self.waker.is_stopped() {
            if !self.acknowledge(target, true)? {
                tracing::warn!(db = %self.source.path.display(), "the source stayed locked (or was replaced); its record of this consumer lags until the next run");
                break;
            }
        }
        Ok(drained)
    }

    fn drain_with_retries(&mut self, target: &mut dyn Target) -> Result<Drained> {
        let mut attempt = 0;
        let mut outage: Option<Outage> = None;
        loop {
            let failure = match self.drain_attempt(target) {
                Ok(drained) => {
                    if let Some(outage) = outage {
                        outage.end(&self.source.path);
                    }
                    self.record(&drained);
                    return Ok(drained);
                }
                Err(failure) => failure,
            };
            self.stats.failed(failure.kind());
            let _ = target.rollback();
            let delay = match failure {
                // The application holds the source's write lock (a long
                // transaction, a checkpoint), a target is down, a disk is
                // full: wait, without limit, saying so once; nothing is lost.
                Failure::Source(e) | Failure::Target(e) if e.is_transient() => {
                    let outage = outage.get_or_insert_with(|| Outage::start(&e, &self.source.path));
                    outage.tries += 1;
                    let backoff = if e.is_locked() { LOCKED } else { self.settings.retry };
                    jittered(backoff.delay(outage.tries))
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
                    return Err(Error::Config(format!(
                        "{}: {what}, {SCHEMA_RACES} times in a row; stopping",
                        self.source.path.display()
                    )));
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
                        return Err(Error::Target {
                            target: "delivery".into(),
                            message: format!(
                                "{e} (gave up after {attempt} attempts; nothing undelivered was acknowledged)"
                            ),
                        });
                    }
                    let delay = jittered(retry.delay(attempt));
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

    fn drain_attempt(&mut self, target: &mut dyn Target) -> Result<Drained, Failure> {
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
        // The tables were checked at one schema cookie: one that moved
        // since (a trigger created, a VACUUM) is checked first.
        if self.source.schema_moved() {
            return Err(Failure::Moved("the schema changed while the tables were checked"));
        }
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
        let drained = if plan.bootstrap.is_empty() {
            state.layout = Some(layout);
            self.deliver_changes(target, state, plan.high_water)?
        } else {
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
    fn deliver_changes(
        &mut self,
        target: &mut dyn Target,
        mut state: DeliveryState,
        high_water: i64,
    ) -> Result<Drained, Failure> {
        let positions = plan::live_positions(&self.source, &state);
        let from = positions.values().copied().min().unwrap_or(high_water);
        let mut drained = Drained { position: state.position, ..Drained::default() };
        if high_water <= from {
            if self.target.as_ref().is_some_and(|c| c.state != state) {
                self.commit(target, state)?;
            }
            return Ok(drained);
        }
        // The log is read in several short reads (no long read
        // transaction). Were the file restored from a backup between them,
        // the entry at the high-water mark would change: checked again
        // before the target commits.
        let anchor = log::anchor(&self.source.conn, high_water)?;
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

    /// Bootstraps the planned tables from one consistent cut, bringing the
    /// other followed tables to the same cut with their changes.
    fn bootstrap(
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
            tracing::info!(table = %table.desc.name, "{reason}; bootstrapping it");
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
    fn share_cut(&self, target: &mut dyn Target, tx: &rusqlite::Connection, cut: i64) -> snapshot::Via {
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
    fn open_bulk_copy(&self, target: &mut dyn Target) -> bool {
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

    /// Whether moving from layout `then` to `now` breaks delivery: another
    /// file, or another schema cookie. Any schema change may void what was
    /// read since the tables were checked: a `VACUUM` renumbers the rowids
    /// of tables without a key, and a trigger created meanwhile may fire
    /// before capture's (so changes logged after it may be stale until
    /// capture is attached in front of it again, see
    /// [`crate::capture::drift`]). The drain is then planned again, from
    /// a fresh check of the tables.
    fn layout_breaks(&self, then: &str, now: &str) -> bool {
        then != now
    }

    /// Makes `state` the target's: the target commits it (with its data
    /// when it keeps state itself), then the source's consumer record is
    /// updated: the state for targets that keep none, and the retention pin.
    fn commit(&mut self, target: &mut dyn Target, state: DeliveryState) -> Result<(), Failure> {
        target.commit(&state).map_err(Failure::Target)?;
        self.unsynced = true;
        self.target.as_mut().expect("connected").state = state;
        // Batched: at most one acknowledgement per interval while changes
        // keep coming (each is a write transaction the application's
        // writers may have to wait for); the first after a quiet spell
        // right away.
        let now = Instant::now();
        let due = self.acked_at.map_or(now, |at| at + self.settings.ack_interval);
        let due = self.ack_due.map_or(due, |owed| owed.min(due));
        self.ack_due = Some(due);
        if due <= now {
            self.acknowledge(target, false)?;
        }
        Ok(())
    }

    /// Tells the source what the target holds (the pin, and the state for
    /// a target that keeps none), waiting for its write lock at most
    /// [`ACK_WAIT`] (or, `patient`, as long as an application would);
    /// deferred (`false`) when the application holds it longer, or when
    /// the source file was replaced.
    fn acknowledge(&mut self, target: &mut dyn Target, patient: bool) -> Result<bool> {
        if self.target.is_none() {
            return Ok(false);
        }
        // Only what the target holds durably may be pruned. A failed flush
        // is not retried: after a failed fsync the kernel may report the
        // next one clean without the data being on disk.
        if self.unsynced {
            target.sync().map_err(|e| Error::Target {
                target: "flush".into(),
                message: format!("{e}; stopping without acknowledging what may not be on disk"),
            })?;
            self.unsynced = false;
        }
        let Some(connected) = self.target.as_ref() else { return Ok(false) };
        let state = &connected.state;
        // The pin: nothing a followed table still needs may be pruned.
        let pin = self.source.followed.iter().filter_map(|r| state.live_position(&r.desc.name)).min();
        let kept = (!connected.owned).then_some(state);
        if !patient {
            // Look for the lock often, briefly: a writer committing back
            // to back frees it for microseconds at a time, which SQLite's
            // own busy handler (sleeping 1, 2, 5, 10 ms...) mostly misses.
            let _ = self.source.conn.busy_handler(Some(poll_briefly));
        }
        let done = acknowledge(&mut self.source, &self.consumer, kept, pin, (state.position, state.anchor));
        let _ = self.source.conn.busy_timeout(crate::db::DEFAULT_BUSY_TIMEOUT);
        let now = Instant::now();
        if let (Err(e), Some((since, said))) = (&done, &mut self.ack_blocked)
            && e.is_transient()
            && !*said
            && since.elapsed() >= ACK_PATIENCE
        {
            *said = true;
            tracing::warn!(db = %self.source.path.display(), waited = ?since.elapsed(),
                "acknowledgements wait for the source's write lock, held by another connection; delivery goes on, the log is not pruned meanwhile");
        }
        match done {
            Ok(Some(more)) => {
                if let Some((since, true)) = self.ack_blocked {
                    tracing::warn!(db = %self.source.path.display(), waited = ?since.elapsed(), "acknowledged again");
                }
                self.ack_blocked = None;
                self.acked_at = Some(now);
                self.ack_due = more.then_some(now + PRUNE_AGAIN);
                Ok(true)
            }
            // The file was replaced or restored: the next drain finds out.
            Ok(None) => {
                self.ack_due = Some(now + ACK_RETRY);
                Ok(false)
            }
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %e, "acknowledgement deferred: the source's write lock is busy");
                self.ack_blocked.get_or_insert((now, false));
                self.ack_due = Some(now + ACK_RETRY);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Each followed table's state as the target holds it, for watchers.
    fn table_states(&self, state: &DeliveryState) -> std::collections::BTreeMap<String, String> {
        let mut tables: std::collections::BTreeMap<String, String> = self
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
    fn look(&mut self, state: &DeliveryState, high_water: i64) -> Result<()> {
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
    fn record(&self, drained: &Drained) {
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

    fn named(&self, e: Error) -> Error {
        named(e, &self.source.path)
    }
}

/// A busy handler for acknowledgements: tries again every 100 µs, for
/// about [`ACK_WAIT`] in all.
fn poll_briefly(tries: i32) -> bool {
    const EVERY: Duration = Duration::from_micros(100);
    if tries as u128 * EVERY.as_micros() >= ACK_WAIT.as_micros() {
        return false;
    }
    std::thread::sleep(EVERY);
    true
}

/// A run of transient failures (a locked source, a target that cannot be
/// reached): one warning when it starts, one when it ends, none between.
struct Outage {
    locked: bool,
    tries: u32,
    since: Instant,
}

impl Outage {
    fn start(e: &Error, db: &Path) -> Outage {
        let locked = e.is_locked();
        if locked {
            tracing::warn!(db = %db.display(), error = %e, "the source is locked by another connection; waiting");
        } else {
            tracing::warn!(error = %e, "transient failure; retrying without limit from the last commit");
        }
        Outage { locked, tries: 0, since: Instant::now() }
    }

    fn end(self, db: &Path) {
        let waited = format!("{:.1?}", self.since.elapsed());
        if self.locked {
            tracing::warn!(db = %db.display(), tries = self.tries, waited, "the source is free again; delivery resumed");
        } else {
            tracing::warn!(tries = self.tries, waited, "recovered; delivery resumed");
        }
    }
}

/// `delay` less up to half of it, at random: engines retrying the same
/// server do not hit it in step.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(1.0 - fastrand::f64() / 2.0)
}

/// An SQLite error about the source file, naming it.
fn named(e: Error, path: &Path) -> Error {
    match e {
        Error::Sqlite(e) => classify(e, path),
        other => other,
    }
}

/// Records what the source keeps for a consumer (its state, when the
/// target keeps none; its retention pin) and prunes, in chunks, for at
/// most [`PRUNE_BUDGET`], in one write transaction; `Some(true)` when more
/// is left to prune. `anchor` is the position the target holds and the
/// checksum of that log entry: when the log no longer has it there (the
/// file was restored from a backup while the changes were delivered),
/// nothing is written (`None`); the next drain finds the rewind.
///
/// Measured (`RUST_LOG=cdc=debug`, the `held_us` of `acknowledged`, from
/// `BEGIN IMMEDIATE` to the end of the commit, release build, shared
/// 2-core VM, beside `cargo bench -p cdc-benches --bench load`'s writer):
/// see the README's load table.
fn acknowledge(
    source: &mut SourceDb,
    consumer: &str,
    state: Option<&DeliveryState>,
    pin: Option<i64>,
    (position, anchor): (i64, Option<u64>),
) -> Result<Option<bool>> {
    // Never write through a connection whose file was replaced: its
    // pages would land in the `-wal` the new file now uses. The next drain
    // reopens the new file and acknowledges there.
    let replaced = source.replaced_check();
    if replaced() || source.parked() {
        return Ok(None);
    }
    let path = source.path.clone();
    let named = |e: Error| named(e, &path);
    let tx = source.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(e, &path))?;
    let locked = Instant::now();
    // Read under the write lock, so nobody writes meanwhile: whether the
    // WAL holds nothing (the application checkpointed it away, or closed
    // its last connection). Then this acknowledgement would put the only
    // frames in it, and a file moved into place next (SQLite's rule met
    // by the application: its own writes checkpointed away) would be read
    // through them. So the sidecar checkpoints its own frames away again
    // right after the commit.
    let wal_was_empty = crate::db::wal_is_empty(&path);
    if anchor.is_some() && log::anchor(&tx, position).map_err(named)? != anchor {
        tracing::debug!(position, "the log changed under the delivery; not acknowledging");
        return Ok(None);
    }
    if let Some(state) = state {
        log::set_consumer_state(&tx, consumer, state).map_err(named)?;
    }
    let (mut pruned, mut more) = (0, false);
    if let Some(pin) = pin {
        log::set_position(&tx, consumer, pin).map_err(named)?;
        loop {
            let deleted = log::prune_at_most(&tx, PRUNE_CHUNK).map_err(named)?;
            pruned += deleted;
            more = deleted as i64 >= PRUNE_CHUNK;
            if !more || locked.elapsed() >= PRUNE_BUDGET {
                break;
            }
        }
        // Once pruning caught up (not after every chunk: each check
        // walks the log), layouts nothing refers to any more go.
        if pruned > 0 && !more {
            log::forget_unused_layouts(&tx).map_err(named)?;
        }
    }
    // Nothing is written to the `-wal` before the commit: checked again
    // right before it, a file replaced while the lock was awaited is
    // never written through.
    if replaced() {
        return Ok(None);
    }
    let before_commit = locked.elapsed().as_micros() as u64;
    tx.commit().map_err(|e| classify(e, &path))?;
    tracing::debug!(pruned, before_commit, held_us = locked.elapsed().as_micros() as u64, "acknowledged");
    if wal_was_empty && !replaced() {
        // Briefly (the caller's busy handler): a reader or a writer of the
        // application in the way means it is active, and its own frames
        // will be checkpointed with ours.
        let truncated = source
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))
            .is_ok_and(|busy| busy == 0);
        tracing::debug!(truncated, "checkpointed the acknowledgement's own frames away");
    }
    Ok(Some(more))
}
