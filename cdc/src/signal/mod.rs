//! Signals wake the engine when the source may have changed.
//!
//! A [`Signal`] is started with a [`Waker`] and rings it; wake-ups
//! coalesce (ringing twice before the engine looks counts once). The same
//! waker carries the stop request, so every signal thread sees a stop at
//! once, never blocks it, and exits. Built in: [`FsSignal`] (file-system
//! events), [`TimerSignal`] (fixed interval) and [`AnySignal`] (several at
//! once; `fs+timer` is the default because some containers and network or
//! FUSE file systems deliver no file events). A user's own signal is any
//! type implementing [`Signal`].

mod fs;
mod timer;

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use fs::FsSignal;
pub use timer::TimerSignal;

use crate::error::{Error, Result};

#[derive(Default)]
struct State {
    pending: bool,
    ticked: bool,
    stopped: bool,
}

/// A coalescing doorbell with a stop switch, shared by the engine and its
/// signals. Cloning shares it.
#[derive(Clone, Default)]
pub struct Waker {
    inner: Arc<(Mutex<State>, Condvar)>,
}

/// Stops an engine or a follower from another thread (or a signal
/// handler's thread). Made by the caller and handed in
/// ([`crate::nats::FollowerOptions::stop`]), or asked for
/// ([`crate::Engine::stop_handle`]). Cloning shares it.
#[derive(Clone, Default)]
pub struct StopHandle(Waker);

impl StopHandle {
    /// A handle that has not stopped anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks to stop: the current batch is finished or abandoned (rolled
    /// back), nothing is acknowledged twice or lost. Once stopped, stays
    /// stopped.
    pub fn stop(&self) {
        self.0.stop();
    }

    /// Whether [`Self::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.is_stopped()
    }

    /// The waker it stops.
    #[cfg(feature = "nats")]
    pub(crate) fn waker(&self) -> Waker {
        self.0.clone()
    }

    pub(crate) fn of(waker: &Waker) -> StopHandle {
        StopHandle(waker.clone())
    }
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle").field("stopped", &self.is_stopped()).finish()
    }
}

/// Why [`Waker::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wake {
    /// Something happened ([`Waker::wake`]).
    Rung,
    /// Only a periodic look is due ([`Waker::tick`]).
    Ticked,
    /// The timeout passed.
    TimedOut,
    /// [`Waker::stop`] was called.
    Stopped,
}

impl Waker {
    /// A waker with nothing pending and not stopped.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding
        // two booleans; they are still meaningful.
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rings the bell (coalesces with rings not yet seen).
    pub fn wake(&self) {
        self.state().pending = true;
        self.inner.1.notify_all();
    }

    /// Asks for a periodic look: like [`Self::wake`], but says that
    /// nothing in particular happened (a timer), so the engine does not
    /// follow it with its quick re-checks. A ring pending wins.
    pub fn tick(&self) {
        self.state().ticked = true;
        self.inner.1.notify_all();
    }

    /// Asks everyone sharing this waker to stop.
    pub fn stop(&self) {
        self.state().stopped = true;
        self.inner.1.notify_all();
    }

    /// Whether [`Self::stop`] was called: a signal's threads check it to
    /// know when to exit.
    pub fn is_stopped(&self) -> bool {
        self.state().stopped
    }

    /// Waits for a ring, a tick, a stop, or `timeout`; consumes the ring.
    pub fn wait(&self, timeout: Option<Duration>) -> Wake {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.state();
        loop {
            if state.stopped {
                return Wake::Stopped;
            }
            if state.pending {
                state.pending = false;
                state.ticked = false;
                return Wake::Rung;
            }
            if state.ticked {
                state.ticked = false;
                return Wake::Ticked;
            }
            state = match deadline {
                None => self.inner.1.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Wake::TimedOut;
                    }
                    self.inner.1.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }

    /// Sleeps for `duration` unless stopped first; returns false when
    /// stopped. Rings do not cut the sleep short (timers and backoff).
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut state = self.state();
        loop {
            if state.stopped {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            state = self.inner.1.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// Something that rings a [`Waker`] when the source may have changed.
pub trait Signal: Send {
    /// Starts ringing `waker` until it is stopped. Threads started here
    /// must exit promptly once `waker.is_stopped()`.
    fn start(&mut self, waker: Waker) -> Result<()>;

    /// Waits for the signal's threads to exit (after the waker was
    /// stopped). Must not block for long and must not panic.
    fn join(&mut self) {}
}

/// Several signals at once: wakes when any of them does.
pub struct AnySignal(pub Vec<Box<dyn Signal>>);

impl Signal for AnySignal {
    fn start(&mut self, waker: Waker) -> Result<()> {
        self.0.iter_mut().try_for_each(|s| s.start(waker.clone()))
    }

    fn join(&mut self) {
        self.0.iter_mut().for_each(|s| s.join());
    }
}

/// The built-in signal kinds, as the command line names them. More may be
/// added, so a match needs a wildcard arm.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    /// `fs`: file-system events only ([`FsSignal`]). Reacts at once, but
    /// misses changes where no events are delivered (some containers,
    /// network and FUSE file systems).
    Fs,
    /// `timer`: a look at a fixed interval ([`TimerSignal`]), whatever
    /// the file system does.
    Timer,
    /// `fs+timer`, the default: file events for speed, the timer as a
    /// safety net where they never arrive.
    FsAndTimer,
}

impl std::str::FromStr for SignalKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fs" => Ok(SignalKind::Fs),
            "timer" => Ok(SignalKind::Timer),
            "fs+timer" | "timer+fs" => Ok(SignalKind::FsAndTimer),
            other => Err(Error::InvalidSetting(format!("unknown signal {other:?}: expected fs, timer or fs+timer"))),
        }
    }
}

impl SignalKind {
    /// The names [`std::str::FromStr`] takes, for a command line's choices.
    pub const NAMES: [&'static str; 3] = ["fs", "timer", "fs+timer"];

    /// Builds the signal for database `db` (the file watcher watches it,
    /// its `-wal` and `-journal`) with timer interval `interval`.
    pub fn build(self, db: &Path, interval: Duration) -> Box<dyn Signal> {
        match self {
            SignalKind::Fs => Box::new(FsSignal::new(db)),
            SignalKind::Timer => Box::new(TimerSignal::new(interval)),
            SignalKind::FsAndTimer => {
                Box::new(AnySignal(vec![Box::new(FsSignal::new(db)), Box::new(TimerSignal::new(interval))]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_coalesce_and_stop_wins() {
        let w = Waker::new();
        w.wake();
        w.wake();
        assert_eq!(w.wait(Some(Duration::from_millis(1))), Wake::Rung);
        assert_eq!(w.wait(Some(Duration::from_millis(1))), Wake::TimedOut);
        w.wake();
        w.stop();
        assert_eq!(w.wait(None), Wake::Stopped);
        assert!(!w.sleep(Duration::from_secs(60)), "a stopped waker does not sleep");
    }

    #[test]
    fn a_tick_is_told_apart_and_a_ring_wins_over_it() {
        let w = Waker::new();
        w.tick();
        assert_eq!(w.wait(Some(Duration::from_millis(1))), Wake::Ticked);
        w.tick();
        w.wake();
        assert_eq!(w.wait(Some(Duration::from_millis(1))), Wake::Rung);
        assert_eq!(w.wait(Some(Duration::from_millis(1))), Wake::TimedOut, "the ring took the tick with it");
    }
}
