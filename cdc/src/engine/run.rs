//! The wake loop: wait for a signal, drain when the source changed, let
//! go of the source while it is quiet, write the consumer's record when
//! due, maintain the log when the application pauses (or, under one that
//! never does, once per prune interval).

use std::time::{Duration, Instant};

use super::config::Drained;
use super::upkeep::Occasion;
use super::{Engine, pace};
use crate::error::Result;
use crate::signal::{Signal, Wake};
use crate::target::Target;

impl Engine {
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
        // A clean stop leaves no record owed: a target without state of
        // its own would get the last changes again after a restart.
        if result.is_ok() && self.upkeep.due.is_some() {
            let _ = self.save_record(target);
        }
        self.waker.stop();
        signal.join();
        result
    }

    /// No commit since the drain that saw `seen`, as far as the connection
    /// can tell.
    fn unchanged_since(&self, seen: Option<i64>) -> Result<bool> {
        Ok(match (self.source.data_version()?, seen) {
            (Some(now), Some(seen)) => now == seen,
            _ => true,
        })
    }

    pub(super) fn run_loop(&mut self, target: &mut dyn Target) -> Result<Drained> {
        let mut total = Drained { position: self.position().unwrap_or(0), ..Drained::default() };
        let mut seen: Option<i64> = None;
        let mut pace = pace::Pace::default();
        // When the source was last seen changing.
        let mut last_news = Instant::now();
        // Re-checks still due after the last ring (none before the first).
        let mut rechecks: std::slice::Iter<Duration> = [].iter();
        // The last wake was a ring (not a timer's look or a timeout).
        let mut rung = false;
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
            // In a stream of commits, a file event is news: drained after
            // the gap without that look (every look starts a read of the
            // source, see `SourceDb::begin_read`; a drain that finds
            // nothing costs one look).
            let version = if rung && pace.streaming() {
                None
            } else {
                match self.source.data_version() {
                    Ok(version) => version,
                    Err(e) if e.is_transient() || self.source.replaced() => None,
                    Err(e) => return Err(e),
                }
            };
            if version.is_some() && seen != version {
                last_news = Instant::now();
            }
            if replaced || version.is_none() || seen != version {
                // Commits coming fast: wait out the gap, then take them all.
                // (Not looking again after the wait: see above.)
                let left = pace.wait(Instant::now());
                if !left.is_zero() && !self.waker.sleep(left) {
                    total.stopped = true;
                    return Ok(total);
                }
                pace.start(Instant::now());
                let drained = self.drain_with_retries(target);
                pace.end(Instant::now());
                let drained = drained?;
                total.add(drained);
                if drained.changes > 0 || drained.bootstrapped_rows > 0 {
                    last_news = Instant::now();
                }
                // What the drain read is what it saw (commits during the
                // wait included).
                seen = self.source.read_version().or(version);
                if drained.stopped {
                    return Ok(total);
                }
                // The application keeps writing: the log is maintained
                // at most once per prune interval.
                if self.maintenance_due(Occasion::Interval) {
                    self.maintain(Occasion::Interval)?;
                }
                // Once it has stood still for a moment, at once.
                self.upkeep.quiet_check = Some(last_news);
            }
            if self.upkeep.due.is_some_and(|due| due <= Instant::now()) {
                self.save_record(target)?;
            }
            // Still quiet: no commit since the last drain, as far as the
            // connection can tell (a parked one, or one opened by the last
            // drain, cannot: but any commit rings, is drained, and resets
            // the quiet check).
            if self.maintenance_due(Occasion::Quiet) && self.unchanged_since(seen)? {
                self.maintain(Occasion::Quiet)?;
            } else if self.maintenance_due(Occasion::Retry) {
                self.maintain(Occasion::Retry)?;
            }
            // A file event can arrive before the commit it belongs to is
            // visible: the writer writes WAL frames (an event), then
            // publishes the commit through shared memory (no event). So
            // after every ring, look again a few times shortly after.
            let now = Instant::now();
            let record_in = self.upkeep.due.map(|due| due.saturating_duration_since(now));
            let check_in = self.maintenance_check_at().map(|at| at.saturating_duration_since(now));
            let mut timeout = [rechecks.next().copied(), record_in, check_in].into_iter().flatten().min();
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
            let wake = self.waker.wait(timeout);
            rung = wake == Wake::Rung;
            match wake {
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
}

/// After a ring, look again after these delays (about 0.4 s in all): the
/// commit that caused a file event may not have been visible yet when the
/// ring was answered, and on a loaded machine the writer can be held up
/// between writing its WAL frames and publishing the commit.
///
/// The first looks come soon: an event is most often ahead of its commit
/// by tens of microseconds (the writer still writing its last frames), and
/// a look costs one read of the WAL index.
const RECHECKS: [Duration; 7] = [
    Duration::from_micros(100),
    Duration::from_micros(400),
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
