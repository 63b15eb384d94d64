//! `http://URL` and `https://URL`: each batch is POSTed as
//! `{"events": [...]}` (events in the JSON form of [`crate::json`]); a 2xx
//! response acknowledges it. Failed posts are retried with backoff within
//! the call, each bounded by a timeout, before the engine's own retries.
//! At-least-once: a batch may be posted again after a failure or a crash.

use std::time::Duration;

use serde::ser::{SerializeSeq, Serializer};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::json::JsonEvent;
use crate::target::Target;

pub struct HttpTarget {
    url: String,
    agent: ureq::Agent,
    attempts: u32,
    backoff: Duration,
}

struct Body<'a>(&'a [Event]);

impl serde::Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Events<'a>(&'a [Event]);
        impl serde::Serialize for Events<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for e in self.0 {
                    seq.serialize_element(&JsonEvent(e))?;
                }
                seq.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("events", &Events(self.0))?;
        m.end()
    }
}

impl HttpTarget {
    /// Posts to `url` with a 30 s timeout per request and 3 attempts.
    pub fn new(url: &str) -> HttpTarget {
        HttpTarget::with(url, Duration::from_secs(30), 3, Duration::from_millis(200))
    }

    /// Posts to `url` with a `timeout` per request, `attempts` tries per
    /// batch and a `backoff` that doubles between them.
    pub fn with(url: &str, timeout: Duration, attempts: u32, backoff: Duration) -> HttpTarget {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
        HttpTarget { url: url.to_string(), agent, attempts: attempts.max(1), backoff }
    }

    fn post(&self, body: &[u8]) -> std::result::Result<(), String> {
        let response = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(format!("HTTP {status}")) }
    }
}

impl Target for HttpTarget {
    fn apply(&mut self, events: &[Event]) -> Result<()> {
        let body = serde_json::to_vec(&Body(events))?;
        let mut delay = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.post(&body) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(url = %self.url, attempt, error = %e, "POST failed");
                    last = e;
                }
            }
            if attempt < self.attempts {
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
        Err(Error::Target { target: self.url.clone(), message: format!("{last} (after {} attempts)", self.attempts) })
    }
}
