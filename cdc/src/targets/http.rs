//! `http://URL` and `https://URL`: each batch is POSTed as
//! `{"events": [...]}` (events in the JSON form of [`crate::json`]); a 2xx
//! response acknowledges it. A failed post is not retried here: the
//! engine is the one retry layer, and it retries transient failures
//! without limit. At-least-once: a batch may be posted again after a failure or a crash.

use std::time::Duration;

use serde::ser::{SerializeSeq, Serializer};

use crate::debezium::Debezium;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::json::JsonEvent;
use crate::redact::redacted;
use crate::target::Target;

/// POSTs each batch of events as JSON to a URL.
pub struct HttpTarget {
    url: String,
    /// The URL as it may be shown: credentials replaced by `***`.
    shown: String,
    agent: ureq::Agent,
    /// A request got an answer once: from then on, a host that does not
    /// resolve is an outage, not a typo.
    answered: bool,
    /// Debezium envelopes (a JSON array per batch) instead of this
    /// project's `{"events": [...]}`.
    debezium: Option<Debezium>,
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
    /// Posts to `url` with a 30 s timeout per request.
    pub fn new(url: &str) -> Result<HttpTarget> {
        HttpTarget::with_timeout(url, Duration::from_secs(30))
    }

    /// Posts to `url` with a `timeout` per request. The URL is checked
    /// here, so a malformed one is refused before anything is written,
    /// not retried.
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<HttpTarget> {
        let shown = check_url(url)?;
        // No redirects: a POST turned into a GET on a 302 would be answered
        // 200 with the batch lost. A 3xx is a URL to fix.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Ok(HttpTarget { url: url.to_string(), shown, agent, answered: false, debezium: None })
    }

    /// With `Some`, posts each batch as a JSON array of Debezium envelopes
    /// (see [`crate::debezium`]; a tombstone is a `null` element) instead.
    pub fn with_debezium(mut self, debezium: Option<Debezium>) -> HttpTarget {
        self.debezium = debezium;
        self
    }
}

impl Target for HttpTarget {
    /// One POST per batch; a failure is classified, and retried by the
    /// engine (the one retry layer): timeouts, refused connections and
    /// 408/429/5xx answers are transient; other 4xx answers, and a host
    /// that never resolved, are a configuration to fix (permanent).
    fn apply(&mut self, events: &[Event]) -> Result<()> {
        let body = match &mut self.debezium {
            Some(d) => {
                let envelopes = d.envelopes(events);
                // A batch that only began or ended a bootstrap (or holds
                // back its last row) has nothing to post.
                if envelopes.is_empty() {
                    return Ok(());
                }
                serde_json::to_vec(&envelopes)?
            }
            None => serde_json::to_vec(&Body(events))?,
        };
        let unavailable = |message: String| Error::Unavailable { target: self.shown.clone(), message };
        let response = match self.agent.post(&self.url).header("Content-Type", "application/json").send(&body[..]) {
            Ok(response) => response,
            Err(ureq::Error::BadUri(e)) => {
                return Err(Error::InvalidSetting(format!("bad target URL {:?}: {e}", self.shown)));
            }
            // A request the client could not build: the URL, not the network.
            Err(ureq::Error::Http(e)) => {
                return Err(Error::InvalidSetting(format!("bad target URL {:?}: {e}", self.shown)));
            }
            Err(ureq::Error::Tls(e)) => {
                let message = format!("TLS: {e}; check the URL and the certificate");
                return Err(Error::Rejected { target: self.shown.clone(), message });
            }
            // Before any answer, a host that does not resolve is a typo,
            // not an outage (a name resolver's failure comes as an I/O
            // error of no network kind).
            Err(ureq::Error::HostNotFound) if !self.answered => {
                let message = "host not found; check the URL".into();
                return Err(Error::Rejected { target: self.shown.clone(), message });
            }
            Err(ureq::Error::Io(e)) if !self.answered && !is_network(&e) => {
                return Err(Error::Rejected { target: self.shown.clone(), message: format!("{e}; check the URL") });
            }
            Err(e) => return Err(unavailable(e.to_string())),
        };
        self.answered = true;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(unavailable(format!("HTTP {status}"))),
            _ => Err(Error::Rejected {
                target: self.shown.clone(),
                message: format!("the server answered HTTP {status}; check the URL and its credentials"),
            }),
        }
    }

    fn rollback(&mut self) -> Result<()> {
        if let Some(d) = &mut self.debezium {
            d.reset();
        }
        Ok(())
    }
}

/// Checks an HTTP target URL without connecting; returns it as it may be
/// shown (credentials redacted). Every message names the URL redacted.
pub fn check_url(url: &str) -> Result<String> {
    let shown = redacted(url);
    let bad = |why: &str| Error::InvalidSetting(format!("bad target URL {shown:?}: {why}"));
    // A password holding `/`, `?` or `#` would end the authority early
    // and be taken for a path (and shown): it must be percent-encoded.
    if let Some((_, rest)) = url.split_once("://")
        && rest.find(['/', '?', '#']).is_some_and(|end| rest[end..].contains('@'))
    {
        return Err(Error::InvalidSetting(
            "bad target URL: '@' after the host; percent-encode it (%40), and '/' (%2F) in a password".into(),
        ));
    }
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("expected http://HOST/PATH or https://HOST/PATH"));
    }
    // What the HTTP client itself will send: stricter than `url` (which
    // takes `https:///hook` for host `hook`, and spaces), and a request it
    // cannot build must be refused here, not retried.
    let uri: ureq::http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("expected http://HOST/PATH or https://HOST/PATH"));
    }
    Ok(shown)
}

/// An I/O error of the network's making (the server down, unreachable,
/// slow, dropping the connection), as opposed to a name that does not
/// resolve.
fn is_network(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{AddrNotAvailable, BrokenPipe};
    crate::error::io_is_transient(e) || matches!(e.kind(), AddrNotAvailable | BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_urls_are_refused_at_start() {
        for bad in ["http://", "http:// h/", "http://h:notaport/", "ftp://h/", "https:///hook", "http://h/a b"] {
            let err = HttpTarget::new(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(matches!(err, Error::InvalidSetting(_)), "{bad}: {err}");
        }
        let err = HttpTarget::new("http://u:pw@h:x/").err().unwrap().to_string();
        assert!(!err.contains("pw"), "{err}");
        let err = HttpTarget::new("https://u:ab/cd@h/p").err().unwrap().to_string();
        assert!(err.contains("percent-encode") && !err.contains("ab/cd"), "{err}");
    }
}
