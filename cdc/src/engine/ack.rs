//! Acknowledgement: when the source is told what the target holds. The
//! write itself is [`crate::source::ack`]; this schedules it (batched,
//! deferred while the application holds the write lock) and says once
//! when the lock stays taken.

use std::time::{Duration, Instant};

use super::Engine;
use super::failure::Failure;
use crate::error::{Error, Result};
use crate::source::ack::{Acknowledgement, acknowledge};
use crate::state::DeliveryState;
use crate::target::Target;

/// Acknowledgement bookkeeping of an engine.
#[derive(Debug, Default)]
pub(super) struct Acks {
    /// An acknowledgement is owed from this moment on (the target moved,
    /// or pruning is behind): the source's pin and, for targets without
    /// state, the state it keeps lag behind the target until then.
    pub due: Option<Instant>,
    /// When the last acknowledgement went through.
    at: Option<Instant>,
    /// The target committed since it last flushed (`Target::sync`).
    unsynced: bool,
    /// Since when acknowledgements find the source's write lock taken,
    /// and whether that was said.
    blocked: Option<(Instant, bool)>,
}

impl Engine {
    /// Makes `state` the target's: the target commits it (with its data
    /// when it keeps state itself), then the source's consumer record is
    /// updated: the state for targets that keep none, and the retention pin.
    pub(super) fn commit(&mut self, target: &mut dyn Target, state: DeliveryState) -> Result<(), Failure> {
        target.commit(&state).map_err(Failure::Target)?;
        self.acks.unsynced = true;
        self.target.as_mut().expect("connected").state = state;
        // Batched: at most one acknowledgement per interval while changes
        // keep coming (each is a write transaction the application's
        // writers may have to wait for); the first after a quiet spell
        // right away.
        let now = Instant::now();
        let due = self.acks.at.map_or(now, |at| at + self.settings.ack_interval);
        let due = self.acks.due.map_or(due, |owed| owed.min(due));
        self.acks.due = Some(due);
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
    pub(super) fn acknowledge(&mut self, target: &mut dyn Target, patient: bool) -> Result<bool> {
        if self.target.is_none() {
            return Ok(false);
        }
        // Only what the target holds durably may be pruned. A failed flush
        // is not retried: after a failed fsync the kernel may report the
        // next one clean without the data being on disk.
        if self.acks.unsynced {
            target.sync().map_err(|e| Error::Unflushed(Box::new(e)))?;
            self.acks.unsynced = false;
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
        let ack = Acknowledgement {
            consumer: &self.consumer,
            state: kept,
            pin,
            position: state.position,
            anchor: state.anchor,
        };
        let done = if self.source.parked() {
            Ok(None)
        } else {
            let replaced = self.source.replaced_check();
            acknowledge(&mut self.source.conn, &self.source.path, &replaced, &ack)
        };
        let _ = self.source.conn.busy_timeout(crate::db::DEFAULT_BUSY_TIMEOUT);
        let now = Instant::now();
        if let (Err(e), Some((since, said))) = (&done, &mut self.acks.blocked)
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
                if let Some((since, true)) = self.acks.blocked {
                    tracing::warn!(db = %self.source.path.display(), waited = ?since.elapsed(), "acknowledged again");
                }
                self.acks.blocked = None;
                self.acks.at = Some(now);
                self.acks.due = more.then_some(now + PRUNE_AGAIN);
                Ok(true)
            }
            // The file was replaced or restored: the next drain finds out.
            Ok(None) => {
                self.acks.due = Some(now + ACK_RETRY);
                Ok(false)
            }
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %e, "acknowledgement deferred: the source's write lock is busy");
                self.acks.blocked.get_or_insert((now, false));
                self.acks.due = Some(now + ACK_RETRY);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// How long an acknowledgement waits for the source's write lock before it
/// is deferred: the application's writers come first, and a target that
/// keeps its own state needs no acknowledgement to make progress.
const ACK_WAIT: Duration = Duration::from_millis(20);

/// How long acknowledgements may find the source's write lock taken
/// before the sidecar says so (once).
const ACK_PATIENCE: Duration = Duration::from_secs(10);

/// How soon a deferred acknowledgement is tried again.
const ACK_RETRY: Duration = Duration::from_millis(250);

/// How soon the next acknowledgement comes when pruning is behind, so
/// that pruning keeps up with a busy writer (whatever the interval).
const PRUNE_AGAIN: Duration = Duration::from_millis(50);

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
