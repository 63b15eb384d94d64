//! Delivery: wait for a signal, read the log in batches, hand them to a
//! target, commit at source commit points, record where the target is,
//! maintain the log. The shape
//! follows litestream's replication loop: one wait over stop, timer and
//! change notification, with backoff on error.
//!
//! - [`config`]: the builder and settings;
//! - [`source`]: the source file and its connection, re-identified on every
//!   wake; [`tables`]: which tables are followed or halted;
//! - [`run`]: the wake loop; [`drain`]: one drain, retried; [`plan`]: from
//!   a target's [`DeliveryState`] and the log, what to do per table;
//! - [`deliver`]: the log in batches; [`bootstrap`] and [`snapshot`]: a
//!   consistent cut, a table's rows;
//! - [`upkeep`]: the consumer's record beside the source, and the log's
//!   maintenance (the one write to the source);
//!   [`observe`]: what watchers see ([`Stats`]).

mod bootstrap;
mod config;
mod deliver;
mod drain;
mod failure;
mod halted;
mod observe;
mod pace;
mod plan;
mod run;
mod schema_events;
mod snapshot;
mod source;
mod tables;
mod upkeep;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use config::{BootstrapMode, Drained, EngineBuilder, OnRewind};
pub use halted::Halted;
pub use snapshot::Progress;

use crate::error::{Error, Result};
use crate::lock::{OwnerLock, consumer_lock_path};
use crate::log::LogReader;
use crate::signal::{StopHandle, Waker};
use crate::source::{consumer_state, position as consumer_position};
use crate::state::DeliveryState;
use crate::stats::Stats;
use crate::target::Target;

use config::Settings;
use snapshot::ProgressFn;
use source::SourceDb;
use upkeep::Upkeep;

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
    /// The consumer's record, and the log's maintenance.
    upkeep: Upkeep,
    /// A stateless target's state across a reconnection.
    kept: Option<DeliveryState>,
    /// The description the target was last given (in this process).
    described: Option<crate::target::Source>,
    /// Schema events to send with the next delivery ([`schema_events`]),
    /// kept until a commit covers them.
    schema_events: Vec<crate::Event>,
    /// They were applied in the delivery under way.
    schema_applied: bool,
    /// The digest of the schema the target has been told, once nothing
    /// is pending: kept in the consumer's record.
    told_schema: Option<String>,
    /// Tables whose bootstrap was announced since the last drain that
    /// went through (said once however often an outage retries it).
    said_bootstraps: std::collections::HashSet<String>,
    /// Tables held by the target and not followed, said once.
    said_frozen: std::collections::HashSet<String>,
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
            return Err(Error::InvalidSetting("batch size must be at least 1".into()));
        }
        if self.consumer.is_empty() {
            return Err(Error::InvalidSetting("consumer name must not be empty".into()));
        }
        // Following a change reseeds the table, which `Never` forbids: such
        // a table halts with its line instead of being left unseeded.
        let mut settings = self.settings;
        if settings.bootstrap == BootstrapMode::Never {
            settings.follow_schema = false;
        }
        let source = SourceDb::open(&self.db, &self.tables, settings.follow_schema).map_err(|e| match e {
            Error::NotADatabase(_) | Error::ReadOnly(_) | Error::Corrupt(_) | Error::MissingFile(_) => {
                Error::Unusable { role: "source", inner: Box::new(e) }
            }
            e => e,
        })?;
        // With schema following, the first drain follows these instead.
        if !settings.follow_schema {
            source.halted.iter().for_each(Halted::announce);
        }
        if consumer_position(&source.conn, &self.consumer).map_err(|e| source::named(e, &self.db))?.is_none() {
            source.quick_check()?;
        }
        let what = format!("consumer {:?} of {}", self.consumer, self.db.display());
        let lock = OwnerLock::acquire(&consumer_lock_path(&self.db, &self.consumer), &what)?;
        Ok(Engine {
            source,
            consumer: self.consumer,
            settings,
            progress: self.progress,
            reader: LogReader::new(),
            waker: Waker::new(),
            target: None,
            always_done: false,
            refused: HashMap::new(),
            upkeep: Upkeep::default(),
            kept: None,
            described: None,
            schema_events: Vec::new(),
            schema_applied: false,
            told_schema: None,
            said_bootstraps: Default::default(),
            said_frozen: Default::default(),
            stats: Arc::new(Stats::default()),
            _lock: lock,
        })
    }
}

impl Drop for Engine {
    /// A peek ([`EngineBuilder::ephemeral`]), or a consumer whose target
    /// never held anything, leaves no record behind.
    fn drop(&mut self) {
        if self.upkeep.leaves_nothing(self.settings.ephemeral)
            && let Err(e) = crate::source::ConsumerRecord::remove(&self.source.path, &self.consumer)
        {
            tracing::debug!(error = %e, "removing a peek's record");
        }
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
        StopHandle::of(&self.waker)
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
        let (mut state, owned) = match (stored, kept) {
            (Some(state), _) => (state, true),
            (None, Some(kept)) => (kept, false),
            // A peek starts afresh, whatever an earlier one left.
            (None, None) if self.settings.ephemeral => (DeliveryState::default(), false),
            (None, None) => (consumer_state(conn, &self.consumer)?.unwrap_or_default(), false),
        };
        // A target without state of its own learns of tables dropped while
        // no replicator ran from the state kept for it; told once.
        if self.settings.follow_schema && !owned {
            for table in self.source.gone(state.tables.keys())? {
                if !description.dropped.contains(&table) {
                    description.dropped.push(table.clone());
                }
            }
        }
        for table in &description.dropped {
            state.forget(table);
        }
        if !owned {
            forget_lost(target, &mut state, self.settings.bootstrap)?;
        }
        // Tables the target holds that this engine does not follow, still
        // on the source (capture removed while no replicator ran, or left
        // out with --table): their copies are not updated; said once.
        for table in state.tables.keys() {
            let followed = self.source.followed.iter().any(|r| r.desc.name.eq_ignore_ascii_case(table))
                || self.source.halted.iter().any(|h| h.table.eq_ignore_ascii_case(table));
            if !followed
                && crate::schema::table_exists(&self.source.conn, table)?
                && self.said_frozen.insert(table.clone())
            {
                tracing::warn!(db = %self.source.path.display(), table = %table,
                    "the target holds this table, but it is not followed (not captured on the source, or not named with --table): its copy is not updated; {}",
                    crate::fix::Fix::Reattach { db: self.source.path.clone(), table: table.clone() });
            }
        }
        // What the target was told before this process, from its record.
        let recorded = match (&self.described, self.settings.ephemeral) {
            (None, false) => crate::source::ConsumerRecord::load(&self.source.path, &self.consumer)?
                .filter(|r| r.log_id == self.source.log_id && !r.provisional),
            _ => None,
        };
        if let Some(record) = &recorded {
            self.told_schema = record.schema.clone();
        }
        let then = match (&self.described, &recorded) {
            (Some(then), _) => schema_events::Then::Described(then),
            (None, Some(record)) => schema_events::Then::Recorded(record.schema.as_deref()),
            (None, None) => schema_events::Then::Nothing,
        };
        let events = schema_events::between(then, &description);
        self.schema_events.extend(events);
        self.described = Some(description);
        let pin = if self.settings.ephemeral { None } else { consumer_position(conn, &self.consumer)? };
        self.start_record(pin, &state)?;
        let tables = self.table_states(&state);
        self.stats.update(|s| {
            s.position = state.position;
            s.tables = tables;
        });
        self.target = Some(Connected { state, owned });
        Ok(())
    }
}

/// The tables a target without state of its own says it lost
/// ([`Target::lost`]) leave `state`: the next plan bootstraps them. With
/// `--bootstrap never` that is refused, as for a table the log was pruned
/// past (following it on would leave the target without its rows).
pub(super) fn forget_lost(target: &mut dyn Target, state: &mut DeliveryState, mode: BootstrapMode) -> Result<()> {
    for table in target.lost() {
        if !state.tables.contains_key(&table) {
            continue;
        }
        let why = "the target no longer holds this table (its topic is gone: deleted, or the broker lost its data)";
        if mode == BootstrapMode::Never {
            return Err(Error::BootstrapNeeded { table: Some(table), why: why.into() });
        }
        tracing::warn!(table = %table, "{why}; bootstrapping it again");
        state.forget(&table);
    }
    Ok(())
}
