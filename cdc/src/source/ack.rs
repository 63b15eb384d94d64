//! Telling the source what a target holds: one short write transaction
//! that moves the consumer's pin (and stores its state, for a target that
//! keeps none) and prunes what no consumer needs any more.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

use super::consumers::{set_consumer_state, set_position};
use super::prune::{forget_unused_layouts, prune_at_most};
use crate::db::classify;
use crate::error::{Error, Result};
use crate::state::DeliveryState;

/// Log rows deleted per statement while pruning.
const PRUNE_CHUNK: i64 = 500;

/// How long one acknowledgement transaction goes on pruning, in chunks,
/// once it holds the source's write lock: the application waits at most
/// about this long for the sidecar (measured: see [`acknowledge`]).
const PRUNE_BUDGET: Duration = Duration::from_millis(2);

/// What one acknowledgement records.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Acknowledgement<'a> {
    /// The consumer.
    pub consumer: &'a str,
    /// Its delivery state, for a target that keeps none.
    pub state: Option<&'a DeliveryState>,
    /// Its retention pin: nothing a followed table still needs is pruned.
    pub pin: Option<i64>,
    /// The position the target holds, and the checksum of that log entry.
    pub position: i64,
    /// See `position`.
    pub anchor: Option<u64>,
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
/// see docs/benchmarks.md, "Beside a busy application".
pub(crate) fn acknowledge(
    conn: &mut Connection,
    path: &Path,
    replaced: &dyn Fn() -> bool,
    ack: &Acknowledgement<'_>,
) -> Result<Option<bool>> {
    // Never write through a connection whose file was replaced: its
    // pages would land in the `-wal` the new file now uses. The next drain
    // reopens the new file and acknowledges there.
    if replaced() {
        return Ok(None);
    }
    let Acknowledgement { consumer, state, pin, position, anchor } = *ack;
    let named = |e: Error| crate::db::named(e, path);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(e, path))?;
    let locked = Instant::now();
    // Read under the write lock, so nobody writes meanwhile: whether the
    // WAL holds nothing (the application checkpointed it away, or closed
    // its last connection). Then this acknowledgement would put the only
    // frames in it, and a file moved into place next (SQLite's rule met
    // by the application: its own writes checkpointed away) would be read
    // through them. So the sidecar checkpoints its own frames away again
    // right after the commit.
    let wal_was_empty = crate::db::wal_is_empty(path);
    if anchor.is_some() && crate::log::anchor(&tx, position).map_err(named)? != anchor {
        tracing::debug!(position, "the log changed under the delivery; not acknowledging");
        return Ok(None);
    }
    if let Some(state) = state {
        set_consumer_state(&tx, consumer, state).map_err(named)?;
    }
    let (mut pruned, mut more) = (0, false);
    if let Some(pin) = pin {
        set_position(&tx, consumer, pin).map_err(named)?;
        loop {
            let deleted = prune_at_most(&tx, PRUNE_CHUNK).map_err(named)?;
            pruned += deleted;
            more = deleted as i64 >= PRUNE_CHUNK;
            if !more || locked.elapsed() >= PRUNE_BUDGET {
                break;
            }
        }
        // Once pruning caught up (not after every chunk: each check
        // walks the log), layouts nothing refers to any more go.
        if pruned > 0 && !more {
            forget_unused_layouts(&tx).map_err(named)?;
        }
    }
    // Nothing is written to the `-wal` before the commit: checked again
    // right before it, a file replaced while the lock was awaited is
    // never written through.
    if replaced() {
        return Ok(None);
    }
    let before_commit = locked.elapsed().as_micros() as u64;
    tx.commit().map_err(|e| classify(e, path))?;
    tracing::debug!(pruned, before_commit, held_us = locked.elapsed().as_micros() as u64, "acknowledged");
    if wal_was_empty && !replaced() {
        // Briefly (the caller's busy handler): a reader or a writer of the
        // application in the way means it is active, and its own frames
        // will be checkpointed with ours.
        let truncated =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).is_ok_and(|busy| busy == 0);
        tracing::debug!(truncated, "checkpointed the acknowledgement's own frames away");
    }
    Ok(Some(more))
}
