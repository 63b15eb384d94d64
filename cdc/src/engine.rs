//! The delivery loop: wait for a signal, read the log from the consumer's
//! position in batches, hand them to a target, commit at source commit
//! points, acknowledge, prune. The shape follows litestream's replication
//! loop: one wait over stop, timer and change notification, with backoff
//! on error.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use cdc_schema::log::META_TABLE;
use cdc_schema::quote_ident;

use crate::bootstrap::{self, Progress};
use crate::capture::{Registered, verify};
use crate::db::{self, Access, classify};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::log::{self, LogReader};
use crate::signal::{Signal, Wake, Waker};
use crate::target::{Source, SourceTable, Target};

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

/// When to reseed tables from a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BootstrapMode {
    /// When the consumer has no position, or the log was pruned past it.
    #[default]
    Auto,
    /// On the first drain of this engine, then as `Auto`.
    Always,
    /// Never; a pruned-past position is an error.
    Never,
}

impl std::str::FromStr for BootstrapMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BootstrapMode::Auto),
            "always" => Ok(BootstrapMode::Always),
            "never" => Ok(BootstrapMode::Never),
            other => Err(Error::Config(format!("unknown bootstrap mode {other:?}: expected auto, always or never"))),
        }
    }
}

/// Retries of a failing target: `attempts` retries after the first try,
/// waiting `initial`, then twice as long each time, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 8, initial: Duration::from_millis(100), max: Duration::from_secs(10) }
    }
}

impl Retry {
    fn delay(&self, attempt: u32) -> Duration {
        self.initial.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(self.max)
    }
}

/// What a drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Changes delivered (bootstrap rows not included).
    pub changes: u64,
    /// Rows delivered by bootstrap.
    pub bootstrapped_rows: u64,
    /// The consumer's position afterwards.
    pub position: i64,
    /// The drain ended because the engine was asked to stop.
    pub stopped: bool,
}

impl Drained {
    fn add(&mut self, other: Drained) {
        self.changes += other.changes;
        self.bootstrapped_rows += other.bootstrapped_rows;
        self.position = other.position;
        self.stopped |= other.stopped;
    }
}

/// Stops an engine from another thread (or a signal handler thread).
#[derive(Clone)]
pub struct StopHandle(Waker);

impl StopHandle {
    /// Asks the engine to stop: the current batch is finished or
    /// abandoned (rolled back), nothing is acknowledged twice or lost.
    pub fn stop(&self) {
        self.0.stop();
    }
}

pub(crate) type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// Configures and opens an [`Engine`].
pub struct EngineBuilder {
    db: PathBuf,
    tables: Vec<String>,
    consumer: String,
    batch_size: usize,
    bootstrap: BootstrapMode,
    retry: Retry,
    progress: Option<ProgressFn>,
}

impl EngineBuilder {
    /// Follow only these tables (default: every captured table).
    pub fn tables<I, S>(mut self, tables: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tables = tables.into_iter().map(Into::into).collect();
        self
    }

    /// The consumer name under which the position is stored (default `"default"`).
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// Changes per batch handed to the target (default 1000). Memory is
    /// bounded by it, whatever the backlog.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    pub fn bootstrap(mut self, mode: BootstrapMode) -> Self {
        self.bootstrap = mode;
        self
    }

    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Called as bootstrap progresses (the binary draws a bar with it).
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Opens the source and checks that the tables are captured and unchanged.
    pub fn open(self) -> Result<Engine> {
        if self.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if self.consumer.is_empty() {
            return Err(Error::Config("consumer name must not be empty".into()));
        }
        let conn = db::open(&self.db, Access::ReadWrite)?;
        let followed = verify(&conn, &self.tables)?;
        if followed.is_empty() {
            return Err(Error::NotCaptured("(none: no table of this database is captured)".into()));
        }
        let log_id: String =
            conn.query_row(&format!("SELECT value FROM {} WHERE key = 'log_id'", quote_ident(META_TABLE)), [], |r| {
                r.get(0)
            })?;
        let schema_version = pragma(&conn, "schema_version")?;
        let position = log::position(&conn, &self.consumer)?;
        Ok(Engine {
            names: followed.iter().map(|r| Arc::from(r.desc.name.as_ref())).collect(),
            followed,
            conn,
            path: self.db,
            consumer: self.consumer,
            batch_size: self.batch_size,
            bootstrap: self.bootstrap,
            retry: self.retry,
            progress: self.progress,
            reader: LogReader::new(),
            waker: Waker::new(),
            log_id,
            fresh: position.is_none(),
            position: None,
            target_opened: false,
            bootstrapped: false,
            schema_version,
        })
    }
}

fn pragma(conn: &Connection, name: &str) -> Result<i64> {
    Ok(conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
}

/// Where a failure came from: target failures are retried, source ones not.
pub(crate) enum Failure {
    Source(Error),
    Target(Error),
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

/// Runs delivery for one consumer of one source database.
pub struct Engine {
    conn: Connection,
    path: PathBuf,
    consumer: String,
    followed: Vec<Registered>,
    names: HashSet<Arc<str>>,
    batch_size: usize,
    bootstrap: BootstrapMode,
    retry: Retry,
    progress: Option<ProgressFn>,
    reader: LogReader,
    waker: Waker,
    log_id: String,
    /// Last acknowledged position; `None` until known, or when there is none.
    position: Option<i64>,
    /// The consumer had no position when the engine opened (its pinned
    /// registration is not a delivery position).
    fresh: bool,
    target_opened: bool,
    bootstrapped: bool,
    schema_version: i64,
}

impl Engine {
    /// Starts configuring an engine on the database at `db`.
    pub fn builder(db: impl AsRef<Path>) -> EngineBuilder {
        EngineBuilder {
            db: db.as_ref().to_path_buf(),
            tables: Vec::new(),
            consumer: "default".into(),
            batch_size: 1000,
            bootstrap: BootstrapMode::Auto,
            retry: Retry::default(),
            progress: None,
        }
    }

    /// A handle that stops this engine from anywhere. Once stopped, an
    /// engine stays stopped.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.waker.clone())
    }

    /// The tables this engine follows.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.followed.iter().map(|r| r.desc.name.as_ref())
    }

    /// The consumer's last acknowledged position, once known.
    pub fn position(&self) -> Option<i64> {
        self.position
    }

    /// Runs until stopped: drains whenever `signal` rings and the source
    /// changed (`PRAGMA data_version` makes an empty wake-up almost free).
    pub fn run(&mut self, target: &mut dyn Target, signal: &mut dyn Signal) -> Result<Drained> {
        signal.start(self.waker.clone())?;
        let result = self.run_loop(target);
        self.waker.stop();
        signal.join();
        result
    }

    fn run_loop(&mut self, target: &mut dyn Target) -> Result<Drained> {
        let mut total = Drained { position: self.position.unwrap_or(0), ..Drained::default() };
        let mut seen: Option<i64> = None;
        // Re-checks still due after the last ring (none before the first).
        let mut rechecks = [].iter();
        loop {
            // Read data_version before draining: a commit racing the drain
            // changes it again and is picked up on the next wake-up.
            let version = pragma(&self.conn, "data_version")?;
            if seen != Some(version) {
                let drained = self.drain(target)?;
                total.add(drained);
                seen = Some(version);
                if drained.stopped {
                    return Ok(total);
                }
            }
            // A file event can arrive before the commit it belongs to is
            // visible: the writer writes WAL frames (an event), then
            // publishes the commit through shared memory (no event). So
            // after every ring, look again a few times shortly after.
            let timeout = rechecks.next().copied();
            match self.waker.wait(timeout) {
                Wake::Stopped => {
                    total.stopped = true;
                    return Ok(total);
                }
                Wake::Rung => rechecks = RECHECKS.iter(),
                Wake::TimedOut => {}
            }
        }
    }

    /// Opens `target` with the source's description and settles the
    /// consumer's position (done by the first drain when not called
    /// before). A failure here is a configuration problem (an
    /// incompatible replica, say): it is not retried, and the source is
    /// written only once the target has accepted it.
    pub fn connect(&mut self, target: &mut dyn Target) -> Result<()> {
        if self.target_opened {
            return Ok(());
        }
        let stored = target.open(&self.source_info()?)?;
        let source = if self.fresh {
            self.register()?;
            None
        } else {
            log::position(&self.conn, &self.consumer)?
        };
        // A target that stores its own position is the authority on what
        // it holds (it commits data and position together).
        self.position = stored.or(source);
        self.target_opened = true;
        Ok(())
    }

    /// Delivers everything visible now (bootstrapping first when needed),
    /// retrying a failing target with backoff.
    pub fn drain(&mut self, target: &mut dyn Target) -> Result<Drained> {
        let mut attempt = 0;
        loop {
            match self.drain_attempt(target) {
                Ok(drained) => return Ok(drained),
                Err(Failure::Source(e)) => {
                    let _ = target.rollback();
                    return Err(e);
                }
                Err(Failure::Target(e)) => {
                    let _ = target.rollback();
                    attempt += 1;
                    if attempt > self.retry.attempts {
                        return Err(Error::Target {
                            target: "delivery".into(),
                            message: format!(
                                "{e} (gave up after {attempt} attempts; nothing undelivered was acknowledged)"
                            ),
                        });
                    }
                    let delay = self.retry.delay(attempt);
                    tracing::warn!(attempt, ?delay, error = %e, "target failed; retrying from the last commit");
                    if !self.waker.sleep(delay) {
                        let position = self.position.unwrap_or(0);
                        return Ok(Drained { position, stopped: true, ..Drained::default() });
                    }
                }
            }
        }
    }

    fn source_info(&self) -> Result<Source> {
        let mut tables = Vec::new();
        for r in &self.followed {
            let create_sql: String = self.conn.query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [r.desc.name.as_ref()],
                |row| row.get(0),
            )?;
            let mut stmt = self.conn.prepare(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY name",
            )?;
            let index_sql =
                stmt.query_map([r.desc.name.as_ref()], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
            tables.push(SourceTable { desc: r.desc.clone(), create_sql, index_sql });
        }
        Ok(Source { log_id: self.log_id.clone(), tables })
    }

    /// Stops with an error when a followed table was altered since install.
    fn check_schema(&mut self) -> Result<()> {
        let version = pragma(&self.conn, "schema_version")?;
        if version != self.schema_version {
            let names: Vec<String> = self.followed.iter().map(|r| r.desc.name.to_string()).collect();
            self.followed = verify(&self.conn, &names)?;
            self.schema_version = version;
        }
        Ok(())
    }

    /// Tables to bootstrap now (empty: none).
    fn bootstrap_needed(&self, high_water: i64) -> Result<Vec<Registered>> {
        let gap = match self.position {
            None => true,
            Some(p) => p > high_water || log::low_water(&self.conn)?.is_some_and(|low| low > p + 1),
        };
        let needed = match self.bootstrap {
            BootstrapMode::Always if !self.bootstrapped => true,
            BootstrapMode::Never => {
                if let Some(p) = self.position.filter(|_| gap) {
                    return Err(Error::Config(format!(
                        "consumer {:?} is at seq {p} but the log no longer holds the changes after it; \
                         run with bootstrap auto or always to reseed",
                        self.consumer
                    )));
                }
                false
            }
            _ => gap,
        };
        Ok(if needed { self.followed.clone() } else { Vec::new() })
    }

    fn drain_attempt(&mut self, target: &mut dyn Target) -> Result<Drained, Failure> {
        self.check_schema()?;
        self.connect(target)?;
        let high_water = log::high_water(&self.conn)?;
        let to_bootstrap = self.bootstrap_needed(high_water)?;
        if !to_bootstrap.is_empty() {
            return self.bootstrap_attempt(target, &to_bootstrap);
        }
        let from = match self.position {
            Some(p) => p,
            None => log::position(&self.conn, &self.consumer)?.unwrap_or(0),
        };
        let mut drained = Drained { position: from, ..Drained::default() };
        if high_water <= from {
            return Ok(drained);
        }
        let changes = deliver_log(
            &self.conn,
            &mut self.reader,
            &self.names,
            from,
            high_water,
            self.batch_size,
            &self.waker,
            target,
        )?;
        let Some(changes) = changes else {
            target.rollback().map_err(Failure::Target)?;
            drained.stopped = true;
            return Ok(drained);
        };
        target.commit(high_water).map_err(Failure::Target)?;
        self.acknowledge(high_water)?;
        drained.changes = changes;
        drained.position = high_water;
        Ok(drained)
    }

    fn bootstrap_attempt(&mut self, target: &mut dyn Target, tables: &[Registered]) -> Result<Drained, Failure> {
        // One read transaction: the snapshot of every table and the log's
        // high-water mark S are one consistent cut.
        let tx = self.conn.unchecked_transaction()?;
        let cut = log::high_water(&tx)?;
        let mut rows = 0;
        for r in tables {
            match bootstrap::table(&tx, r, self.batch_size, &self.waker, &mut self.progress, target)? {
                Some(n) => rows += n,
                None => {
                    target.rollback().map_err(Failure::Target)?;
                    return Ok(Drained { position: self.position.unwrap_or(0), stopped: true, ..Drained::default() });
                }
            }
        }
        // Tables not reseeded still get their changes up to the cut; the
        // reseeded ones skip every log row up to it.
        let mut changes = 0;
        if let Some(from) = self.position.filter(|p| *p < cut) {
            let rest: HashSet<Arc<str>> =
                self.names.iter().filter(|n| !tables.iter().any(|t| *t.desc.name == ***n)).cloned().collect();
            if !rest.is_empty() {
                match deliver_log(&tx, &mut self.reader, &rest, from, cut, self.batch_size, &self.waker, target)? {
                    Some(n) => changes = n,
                    None => {
                        target.rollback().map_err(Failure::Target)?;
                        return Ok(Drained { position: from, stopped: true, ..Drained::default() });
                    }
                }
            }
        }
        tx.commit()?;
        target.commit(cut).map_err(Failure::Target)?;
        self.acknowledge(cut)?;
        self.bootstrapped = true;
        Ok(Drained { changes, bootstrapped_rows: rows, position: cut, stopped: false })
    }

    /// Registers a new consumer just below the oldest row still in the
    /// log, so that no other consumer prunes what this one has not seen.
    fn register(&self) -> Result<()> {
        let pin = log::low_water(&self.conn)?.map_or(log::high_water(&self.conn)?, |low| low - 1);
        log::set_position(&self.conn, &self.consumer, pin).map_err(|e| match e {
            Error::Sqlite(e) => classify(e, &self.path),
            other => other,
        })
    }

    /// Stores the consumer's position and prunes what every consumer has.
    fn acknowledge(&mut self, position: i64) -> Result<()> {
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(e, &self.path))?;
        log::set_position(&tx, &self.consumer, position)?;
        log::prune(&tx)?;
        tx.commit().map_err(|e| classify(e, &self.path))?;
        self.position = Some(position);
        Ok(())
    }
}

/// Delivers the log's changes of `tables` in `(from, to]` in batches.
/// Returns the number delivered, or `None` when stopped midway.
#[allow(clippy::too_many_arguments)]
fn deliver_log(
    conn: &Connection,
    reader: &mut LogReader,
    tables: &HashSet<Arc<str>>,
    from: i64,
    to: i64,
    batch_size: usize,
    waker: &Waker,
    target: &mut dyn Target,
) -> Result<Option<u64>, Failure> {
    let mut cursor = from;
    let mut delivered = 0u64;
    while cursor < to {
        if waker.is_stopped() {
            return Ok(None);
        }
        let batch = reader.read(conn, cursor, to, batch_size)?;
        let events: Vec<Event> =
            batch.changes.into_iter().filter(|c| tables.contains(&c.table)).map(Event::Change).collect();
        if !events.is_empty() {
            tracing::debug!(from = cursor, to = batch.end_seq, events = events.len(), "delivering batch");
            target.apply(&events).map_err(Failure::Target)?;
            delivered += events.len() as u64;
        }
        if batch.end_seq == cursor {
            break;
        }
        cursor = batch.end_seq;
    }
    Ok(Some(delivered))
}
