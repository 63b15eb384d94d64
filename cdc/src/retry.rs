//! Retrying: the backoff policy ([`Retry`]) and the one-line-per-episode
//! account of an outage ([`Outage`]), shared by the engine and the NATS
//! follower. What is retried is decided by [`crate::Error::recovery`].

use std::time::{Duration, Instant};

use crate::error::Error;

/// Retries of a failing target, waiting `initial`, then twice as long each
/// time, at most `max` (less up to half, at random). A transient failure
/// (a timeout, a refused connection, a 5xx answer, a full disk) is retried
/// without limit; `attempts` bounds the retries of a failure not known to
/// be transient (a custom target's own error); a permanent one (bad
/// configuration, a replica that cannot follow) is not retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Retries after the first try, for a failure not known to be transient.
    pub attempts: u32,
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 8, initial: Duration::from_millis(100), max: Duration::from_secs(10) }
    }
}

impl Retry {
    /// Waiting out a database another connection keeps locked: without
    /// limit, from 100 ms doubling to at most 2 s between tries.
    pub(crate) const LOCKED: Retry =
        Retry { attempts: u32::MAX, initial: Duration::from_millis(100), max: Duration::from_secs(2) };

    /// The wait before try `attempt` (1 for the first retry), not jittered.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        self.initial.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(self.max)
    }

    /// [`Self::delay`] less up to half of it, at random: clients retrying
    /// the same server do not hit it in step.
    pub(crate) fn jittered(&self, attempt: u32) -> Duration {
        self.delay(attempt).mul_f64(1.0 - fastrand::f64() / 2.0)
    }
}

/// A run of transient failures (a locked database, a target or server
/// that cannot be reached): one warning when it starts, one line when it
/// ends, and between them one for each other kind of cause that shows up
/// (an I/O error, then the file gone from its path: the second is the one
/// to act on), and the tries so far for the backoff.
#[derive(Debug)]
pub(crate) struct Outage {
    /// What is read from, as the lines say it (`the source`).
    subject: &'static str,
    /// Where, as a log field (the source's path, the stream).
    place: String,
    locked: bool,
    /// Tries since it started.
    pub tries: u32,
    since: Instant,
    /// The kinds of cause said so far.
    said: Vec<std::mem::Discriminant<Error>>,
}

impl Outage {
    /// Starts an outage, saying so with the cause and its fix, and how
    /// long it is waited out (`limit`; `None`: without limit).
    pub fn start(e: &Error, subject: &'static str, place: &str, limit: Option<Duration>) -> Outage {
        let locked = e.is_locked();
        let until =
            limit.map_or("without limit".to_string(), |l| format!("for up to {}", humantime::format_duration(l)));
        if locked {
            tracing::warn!(at = %place, error = %e.with_fix(), "{subject} is locked by another connection; waiting {until}");
        } else {
            tracing::warn!(at = %place, error = %e.with_fix(), "transient failure; retrying {until} from the last commit");
        }
        Outage {
            subject,
            place: place.to_string(),
            locked,
            tries: 0,
            since: Instant::now(),
            said: vec![std::mem::discriminant(e)],
        }
    }

    /// The wait before the next try after `e`: `policy`, or while a
    /// database is locked the locked policy (whatever began the outage).
    /// A kind of cause not seen yet in this outage is said once.
    pub fn next_delay(&mut self, e: &Error, policy: Retry) -> Duration {
        let kind = std::mem::discriminant(e);
        if !self.said.contains(&kind) {
            self.said.push(kind);
            tracing::warn!(at = %self.place, error = %e.with_fix(), "still waiting, now for another cause");
        }
        self.tries += 1;
        let policy = if e.is_locked() { Retry::LOCKED } else { policy };
        policy.jittered(self.tries)
    }

    /// How long it has lasted.
    pub fn lasted(&self) -> Duration {
        self.since.elapsed()
    }

    /// Ends the outage, saying how long it lasted (information: nothing
    /// is wrong any more).
    pub fn end(self) {
        let (subject, place, tries) = (self.subject, self.place, self.tries);
        let waited = format!("{:.1?}", self.since.elapsed());
        if self.locked {
            tracing::info!(at = %place, tries, waited, "{subject} is free again; delivery resumed");
        } else {
            tracing::info!(at = %place, tries, waited, "recovered; delivery resumed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_jitter_takes_off_at_most_half() {
        let r = Retry { attempts: 3, initial: Duration::from_millis(100), max: Duration::from_millis(350) };
        let delays: Vec<u128> = (1..=4).map(|a| r.delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        for a in 1..=4 {
            let j = r.jittered(a);
            assert!(j <= r.delay(a) && j >= r.delay(a) / 2, "{j:?}");
        }
        assert_eq!(Retry::default().delay(u32::MAX), Duration::from_secs(10), "no overflow");
    }

    #[test]
    fn an_outage_counts_its_tries_and_waits_longer_for_locks() {
        let down = Error::Unavailable { target: "t".into(), message: "m".into() };
        let lock = Error::Locked { path: "a".into(), waited_ms: 1 };
        let mut outage = Outage::start(&down, "the source", "x", None);
        let quick = Retry { attempts: 1, initial: Duration::from_millis(1), max: Duration::from_millis(1) };
        assert!(outage.next_delay(&down, quick) <= Duration::from_millis(1));
        assert_eq!(outage.tries, 1);
        assert!(
            outage.next_delay(&lock, quick) >= Duration::from_millis(50),
            "a lock is waited out with its own policy"
        );
        assert!(outage.next_delay(&down, quick) <= Duration::from_millis(1), "each failure by its own kind");
    }
}
