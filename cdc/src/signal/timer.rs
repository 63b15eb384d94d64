//! The timer signal: rings at a fixed interval, whatever the file system
//! does. It is what keeps delivery going where file events never arrive.

use std::thread::JoinHandle;
use std::time::Duration;

use super::{Signal, Waker};
use crate::error::{Error, Result};

/// Ticks the waker every interval from a thread of its own.
pub struct TimerSignal {
    interval: Duration,
    thread: Option<JoinHandle<()>>,
}

impl TimerSignal {
    /// A timer ticking every `interval`; the thread starts with
    /// [`Signal::start`].
    pub fn new(interval: Duration) -> Self {
        TimerSignal { interval, thread: None }
    }
}

impl Signal for TimerSignal {
    fn start(&mut self, waker: Waker) -> Result<()> {
        let interval = self.interval;
        let thread = std::thread::Builder::new()
            .name("cdc-timer".into())
            .spawn(move || {
                while waker.sleep(interval) {
                    waker.tick();
                }
            })
            .map_err(|e| Error::Io { context: "starting the timer thread".into(), source: e })?;
        self.thread = Some(thread);
        Ok(())
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            // The thread only sleeps and rings; it cannot panic, and a
            // join error would only repeat that it did.
            let _ = t.join();
        }
    }
}
