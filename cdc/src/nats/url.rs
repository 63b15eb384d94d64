//! `nats://HOST:PORT/STREAM` addresses.

use std::time::Duration;

use super::{PayloadFormat, subject_token};
use crate::error::{Error, Result};
use crate::redact::redacted;

/// A parsed `nats://` (or `tls://`) address: the servers, the stream and
/// the options given as query parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsUrl {
    /// As given, credentials included: show [`NatsUrl::redacted`] instead.
    url: String,
    /// `scheme://[userinfo@]host:port[,host:port…]`, for the client.
    servers: String,
    /// The stream's name.
    pub stream: String,
    /// The payload encoding (`?format=`).
    pub format: PayloadFormat,
    /// Retention of a stream the publisher creates (`?max_age=`).
    pub max_age: Duration,
}

/// The retention a publisher gives a stream it creates: a follower off for
/// longer than this misses changes, notices, and says how to reseed it.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

impl std::str::FromStr for NatsUrl {
    type Err = Error;

    /// `nats://[USER:PASS@]HOST:PORT[,HOST:PORT…]/STREAM[?format=…&max_age=…]`
    /// (or `tls://`): several servers share the credentials, the stream
    /// and the options; each is checked as a URL of its own.
    fn from_str(text: &str) -> Result<NatsUrl> {
        let shown = redacted(text);
        let bad = |why: &str| Error::InvalidSetting(format!("bad NATS address {shown:?}: {why}"));
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("expected nats://HOST:PORT/STREAM"))?;
        if scheme != "nats" && scheme != "tls" {
            return Err(bad("the scheme must be nats:// or tls://"));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hosts) = authority.rsplit_once('@').map_or(("", authority), |(u, h)| (u, h));
        let mut first = None;
        for host in hosts.split(',') {
            let at = if userinfo.is_empty() { String::new() } else { format!("{userinfo}@") };
            let url = url::Url::parse(&format!("{scheme}://{at}{host}{tail}")).map_err(|e| bad(&e.to_string()))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(bad("no host"));
            }
            first.get_or_insert(url);
        }
        let url = first.ok_or_else(|| bad("no host"))?;
        let stream = url.path().trim_matches('/');
        if stream.is_empty() {
            return Err(bad("no stream: expected nats://HOST:PORT/STREAM"));
        }
        if !stream.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(bad("a stream name takes only letters, digits, '_' and '-'"));
        }
        let mut parsed = NatsUrl {
            url: text.to_string(),
            servers: format!("{scheme}://{authority}"),
            stream: stream.to_string(),
            format: PayloadFormat::Bincode,
            max_age: DEFAULT_MAX_AGE,
        };
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "format" => {
                    parsed.format = match value.as_ref() {
                        "bincode" => PayloadFormat::Bincode,
                        "json" => PayloadFormat::Json,
                        "debezium" => PayloadFormat::Debezium,
                        _ => return Err(bad("format must be bincode, json or debezium")),
                    }
                }
                "max_age" => {
                    parsed.max_age = humantime::parse_duration(&value)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| bad("max_age must be like 24h or 7d"))?;
                }
                other => return Err(bad(&format!("unknown option {other:?} (known: format, max_age)"))),
            }
        }
        Ok(parsed)
    }
}

impl NatsUrl {
    /// The address without credentials, for messages, logs and consumer
    /// names.
    pub fn redacted(&self) -> String {
        redacted(&self.url)
    }

    /// The subject of `table`'s events.
    pub fn subject(&self, table: &str) -> String {
        format!("{}.{}", self.stream, subject_token(table))
    }

    pub(crate) fn control(&self, token: &str) -> String {
        format!("{}.{token}", self.stream)
    }

    pub(crate) fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Unavailable { target: self.redacted(), message: format!("{what}: {}", super::stream::one_line(&e)) }
    }

    /// `scheme://[userinfo@]host:port[,host:port…]`, for the client.
    pub(crate) fn servers(&self) -> &str {
        &self.servers
    }
}
