//! How an engine is configured: the builder and its settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

use super::snapshot::{Progress, ProgressFn};
use crate::retry::Retry;

/// When to reseed tables from a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BootstrapMode {
    /// Whenever the target does not hold a table live: nothing yet, an
    /// interrupted bootstrap, a position the log was pruned past, capture
    /// re-attached after the position, a rewound or different source.
    #[default]
    Auto,
    /// Every followed table on the first drain of this engine, then as `Auto`.
    Always,
    /// Never. A table the target does not hold is followed from the oldest
    /// change the log still has; a position the log was pruned past is an
    /// error.
    Never,
}

impl BootstrapMode {
    /// The names [`std::str::FromStr`] takes, for a command line's choices.
    pub const NAMES: [&'static str; 3] = ["auto", "always", "never"];
}

impl std::str::FromStr for BootstrapMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BootstrapMode::Auto),
            "always" => Ok(BootstrapMode::Always),
            "never" => Ok(BootstrapMode::Never),
            other => {
                Err(Error::InvalidSetting(format!("unknown bootstrap mode {other:?}: expected auto, always or never")))
            }
        }
    }
}

/// What to do when the source is not the log the target followed: the
/// log was rewound (the file restored from an older backup) or it is a
/// different log altogether.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnRewind {
    /// Say so in one line and bootstrap every followed table again.
    #[default]
    Reseed,
    /// Stop with an error that says what was found.
    Stop,
}

impl OnRewind {
    /// The names [`std::str::FromStr`] takes, for a command line's choices.
    pub const NAMES: [&'static str; 2] = ["reseed", "stop"];
}

impl std::str::FromStr for OnRewind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "reseed" => Ok(OnRewind::Reseed),
            "stop" => Ok(OnRewind::Stop),
            other => Err(Error::InvalidSetting(format!("unknown rewind policy {other:?}: expected reseed or stop"))),
        }
    }
}

/// What a drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Changes delivered (bootstrap rows not included).
    pub changes: u64,
    /// Rows delivered by bootstrap.
    pub bootstrapped_rows: u64,
    /// The commit point delivered up to.
    pub position: i64,
    /// The drain ended because the engine was asked to stop.
    pub stopped: bool,
}

impl Drained {
    pub(crate) fn add(&mut self, other: Drained) {
        self.changes += other.changes;
        self.bootstrapped_rows += other.bootstrapped_rows;
        self.position = other.position;
        self.stopped |= other.stopped;
    }
}

/// Settings the engine reads while it runs.
pub(crate) struct Settings {
    pub batch_size: usize,
    pub bootstrap: BootstrapMode,
    pub on_rewind: OnRewind,
    pub retry: Retry,
    /// A transient failure retried this long ends the drain with
    /// [`Error::GaveUp`]; `None`: retried without limit.
    pub give_up_after: Option<Duration>,
    /// A peek: the consumer's record pins the log only while the engine
    /// runs, and is removed when it stops.
    pub ephemeral: bool,
    pub follow_schema: bool,
    pub ack_interval: Duration,
    pub prune_interval: Duration,
}

/// Configures and opens an [`Engine`](super::Engine).
pub struct EngineBuilder {
    pub(crate) db: PathBuf,
    pub(crate) tables: Vec<String>,
    pub(crate) consumer: String,
    pub(crate) settings: Settings,
    pub(crate) progress: Option<ProgressFn>,
}

impl EngineBuilder {
    pub(crate) fn new(db: &Path) -> EngineBuilder {
        EngineBuilder {
            db: db.to_path_buf(),
            tables: Vec::new(),
            consumer: "default".into(),
            settings: Settings {
                batch_size: 1000,
                bootstrap: BootstrapMode::Auto,
                on_rewind: OnRewind::Reseed,
                retry: Retry::default(),
                give_up_after: None,
                ephemeral: false,
                follow_schema: true,
                ack_interval: Duration::from_secs(1),
                prune_interval: Duration::from_secs(300),
            },
            progress: None,
        }
    }

    /// Follow only these tables (default: every captured table, including
    /// tables captured while the engine runs). Repeated names count once.
    pub fn tables<I, S>(mut self, tables: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tables = tables.into_iter().map(Into::into).collect();
        self
    }

    /// The consumer name under which the source pins the log for this
    /// target (default `"default"`). One live engine per consumer.
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// Changes per batch handed to the target (default 1000). Memory is
    /// bounded by it, whatever the backlog.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.settings.batch_size = n;
        self
    }

    /// When to reseed tables from a snapshot (default [`BootstrapMode::Auto`]).
    pub fn bootstrap(mut self, mode: BootstrapMode) -> Self {
        self.settings.bootstrap = mode;
        self
    }

    /// What to do when the source's log was rewound or replaced by another
    /// (default [`OnRewind::Reseed`]).
    pub fn on_rewind(mut self, policy: OnRewind) -> Self {
        self.settings.on_rewind = policy;
        self
    }

    /// Follow schema changes of the source (default on). On a table whose
    /// schema changed (columns, constraints, unique indexes; a table
    /// remade by an ORM migration), capture is re-attached and the table
    /// reseeded on the target with its new schema; a table dropped from
    /// the source is dropped from the target; when following every table,
    /// new tables are captured. Off, such a table's delivery stops with
    /// one line naming the change and the command that resumes it, and the
    /// other tables go on. Either way, plain indexes are copied as they
    /// come and go.
    pub fn follow_schema(mut self, on: bool) -> Self {
        self.settings.follow_schema = on;
        self
    }

    /// At most one write of the consumer's record per `interval` while
    /// changes keep coming (default 1 s; the first after a quiet spell
    /// goes at once). The record is a file beside the source, never the
    /// source itself: it holds this consumer's retention pin and, for a
    /// target that keeps no state (jsonl, http), what it holds; such a
    /// target may get up to `interval` of changes again after a crash (a
    /// SQLite replica keeps its own position, exactly once).
    pub fn ack_interval(mut self, interval: Duration) -> Self {
        self.settings.ack_interval = interval;
        self
    }

    /// Under an application that never pauses for a second, the log is
    /// maintained (what every consumer has freed, in one short write
    /// transaction) at most once per `interval` (default 5 min); when the
    /// application pauses, at once. A maintenance is the one write a
    /// replicator makes to the source: a deferred application transaction
    /// that read before it and writes after it is refused
    /// (`SQLITE_BUSY_SNAPSHOT`). Shorter keeps the log smaller under a
    /// writer that never stops, longer disturbs it less.
    pub fn prune_interval(mut self, interval: Duration) -> Self {
        self.settings.prune_interval = interval;
        self
    }

    /// How a failing target is retried.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.settings.retry = retry;
        self
    }

    /// A peek (default off): the consumer is remembered only while this
    /// engine runs. Its record pins the log while it does and is removed
    /// when the engine is dropped (or ignored once its process is gone);
    /// the next engine of the same name starts with a bootstrap. For
    /// looking at a stream (`replicator --target jsonl:-`), not for a
    /// target that must not miss changes between runs.
    pub fn ephemeral(mut self, on: bool) -> Self {
        self.settings.ephemeral = on;
        self
    }

    /// A target or source that stays unreachable (or locked) this long
    /// ends the drain with [`Error::GaveUp`] instead of being waited out
    /// (default `None`: waited out without limit, as a sidecar should;
    /// a run that must end, `replicator --once`, sets one). Nothing
    /// undelivered is acknowledged either way.
    pub fn give_up_after(mut self, limit: Option<Duration>) -> Self {
        self.settings.give_up_after = limit;
        self
    }

    /// Called as bootstrap progresses (the binary draws a bar with it).
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }
}
