//! When to drain news: at once, unless commits are coming fast, then at
//! most once per gap, many commits at a time.

use std::time::{Duration, Instant};

/// The shortest time between the starts of two drains while commits come
/// fast. Measured with the load bench (`cargo bench -p cdc-benches
/// --bench load`): draining per commit beside a writer of ~760 commits/s
/// took 42% of a core and raised the writer's commit p50 by half (the two
/// share the machine).
const GAP: Duration = Duration::from_millis(10);

/// Commits come fast when news shows up, on average, this soon after the
/// previous drain ended (a quarter of the gap: per-commit draining is
/// then at most ~400 drains a second). Slower writers, and single
/// commits after a pause, are drained at once: a fixed gap made every
/// commit within 10 ms of the previous drain wait for the rest of it
/// (idle commit-to-replica p99 10 ms, against 2 ms without; `cargo bench
/// -p cdc-benches --bench latency`).
const FAST: Duration = Duration::from_micros(2500);

/// The drain loop's pacing: how soon news arrives after each drain,
/// smoothed over the last few drains, decides whether the next one waits.
#[derive(Debug)]
pub(crate) struct Pace {
    /// When the last drain started.
    started: Option<Instant>,
    /// When the last drain ended.
    ended: Option<Instant>,
    /// News since the last drain was already counted.
    noticed: bool,
    /// Smoothed delay from the end of a drain to the next news.
    delay: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        // No history: the first news is drained at once.
        Pace { started: None, ended: None, noticed: false, delay: GAP }
    }
}

impl Pace {
    /// News seen at `now`: how long to wait before draining it (zero:
    /// drain now).
    pub(crate) fn wait(&mut self, now: Instant) -> Duration {
        if !self.noticed {
            self.noticed = true;
            if let Some(ended) = self.ended {
                // Weight 1/4, each delay counted as at most one gap: about
                // five fast commits in a row make a stream (one does not),
                // and one slow commit ends it.
                let delay = now.saturating_duration_since(ended).min(GAP);
                self.delay = (self.delay * 3 + delay) / 4;
            }
        }
        match self.started {
            Some(started) if self.delay < FAST => (started + GAP).saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// Commits are coming fast: news is drained once per gap.
    pub(crate) fn streaming(&self) -> bool {
        self.started.is_some() && self.delay < FAST
    }

    /// A drain starts at `now`.
    pub(crate) fn start(&mut self, now: Instant) {
        self.started = Some(now);
    }

    /// The drain ended at `now`: what comes next is news.
    pub(crate) fn end(&mut self, now: Instant) {
        self.ended = Some(now);
        self.noticed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drains once at `at` (taking 1 ms) and returns how long news at
    /// `next` would wait.
    fn drain_then(pace: &mut Pace, at: Instant, next: Instant) -> Duration {
        pace.start(at);
        pace.end(at + ms(1));
        pace.wait(next)
    }

    #[test]
    fn single_commits_are_drained_at_once() {
        let (mut pace, t0) = (Pace::default(), Instant::now());
        assert_eq!(pace.wait(t0), Duration::ZERO);
        // Commits a few milliseconds apart, as from an app at rest: never held.
        let mut at = t0;
        for gap in [3, 5, 2, 8, 4, 12, 3, 6] {
            let next = at + ms(1 + gap);
            assert_eq!(drain_then(&mut pace, at, next), Duration::ZERO, "{gap} ms after a drain");
            assert!(!pace.streaming());
            at = next;
        }
    }

    #[test]
    fn a_stream_of_commits_is_drained_once_per_gap_and_released_when_it_stops() {
        let (mut pace, t0) = (Pace::default(), Instant::now());
        // News right after every drain: within a few drains, the gap holds.
        let mut at = t0;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let next = at + ms(1);
            let wait = drain_then(&mut pace, at, next);
            waits.push(wait);
            at = next + wait;
        }
        assert!(waits[..4].iter().all(|w| w.is_zero()), "a few fast commits are not a stream: {waits:?}");
        assert_eq!(waits.last(), Some(&ms(9)), "then once per gap: {waits:?}");
        assert!(pace.streaming());
        // The stream stops: the next commit, 10 ms after the last drain
        // ended, goes at once.
        assert_eq!(drain_then(&mut pace, at, at + ms(11)), Duration::ZERO);
        assert!(!pace.streaming());
    }
}
