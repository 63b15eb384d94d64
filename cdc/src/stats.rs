//! What a running engine has done and how far behind it is, for whoever
//! watches it: the replicator's periodic status line and its Prometheus
//! endpoint read [`Stats::snapshot`] from other threads while the engine
//! updates it after each drain (one short lock per drain, never held across
//! I/O).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// Shared, thread-safe counters and gauges of one engine. Get it with
/// [`crate::Engine::stats`] before [`crate::Engine::run`].
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<StatsSnapshot>,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Changes the target committed since the engine started.
    pub changes_applied: u64,
    /// Rows the target received from bootstraps since the engine started.
    pub bootstrap_rows: u64,
    /// The log position the target holds.
    pub position: i64,
    /// Write transactions the engine committed to the source (each one a
    /// maintenance of the log: the only writes it makes there).
    pub source_writes: u64,
    /// Log positions those freed.
    pub log_freed: u64,
    /// Maintenances put off because another process was inside a
    /// transaction on the source (or held its write lock).
    pub source_writes_deferred: u64,
    /// When the target last committed something (Unix milliseconds).
    pub last_apply_ms: Option<i64>,
    /// Changes the target did not have when the engine last looked (0 once
    /// they were delivered).
    pub pending: u64,
    /// When (Unix milliseconds) the engine first saw the oldest change the
    /// target did not have when it last looked ([`crate::Change::time_ms`]);
    /// `None` when it had them all.
    pub oldest_pending_ms: Option<i64>,
    /// When the engine last read the source (Unix milliseconds).
    pub last_look_ms: Option<i64>,
    /// Failures by kind since the engine started, each retried or handled
    /// as docs/replicator.md ("Stop and crash") says: `locked` (the source's lock
    /// held by the application), `unavailable` (a target, network or disk
    /// expected to come back), `target` (a target's own error, retried a
    /// bounded number of times), `refused` (a change the replica refused;
    /// the table is reseeded), `source` (a source error, such as a table
    /// gone mid-read), `moved` (the schema or file moved during a drain;
    /// planned again), `fatal` (the engine stopped on an error).
    pub errors: BTreeMap<String, u64>,
    /// Delivery state of each followed table: `live`, `bootstrapping`,
    /// `halted` (its schema changed; see the log line) or `waiting` (not
    /// bootstrapped yet).
    pub tables: BTreeMap<String, String>,
}

impl StatsSnapshot {
    /// Seconds between the oldest change the target does not have (as
    /// [`Self::oldest_pending_ms`] times it) and `now_ms`; 0 when it has
    /// them all.
    pub fn lag_seconds(&self, now_ms: i64) -> f64 {
        self.oldest_pending_ms.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0)
    }
}

impl Stats {
    /// A copy of the current figures.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut StatsSnapshot)) {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Counts one failure of `kind`.
    pub(crate) fn failed(&self, kind: &str) {
        self.update(|s| *s.errors.entry(kind.to_string()).or_default() += 1);
    }
}

pub use crate::log::now_ms;
