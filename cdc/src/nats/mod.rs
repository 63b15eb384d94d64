//! NATS JetStream (feature `nats`): publish a source's events to a stream
//! ([`NatsTarget`]) and follow a stream into a SQLite replica on another
//! host ([`Follower`]).
//!
//! The stream carries, on subject `STREAM.<table>` (the table name escaped
//! by [`subject_token`]), one message per event, and on two control
//! subjects the messages that make a stream followable on its own:
//!
//! - `STREAM.$schema`: the source's description ([`crate::Source`] as
//!   JSON), published whenever the publisher (re)opens it. A follower
//!   creates and checks its replica tables from it, and discards what it
//!   applied since the last commit point (a publisher that reopens
//!   publishes again from its last commit point).
//! - `STREAM.$commit`: a commit point, with the publisher's
//!   [`crate::DeliveryState`] as JSON. Everything before it is one atomic
//!   unit on a follower. It is also how a publisher restarts: the last
//!   commit message of the stream is the state of what the stream holds, so
//!   a stream created anew (or emptied by retention) is bootstrapped again.
//!
//! Headers: `Nats-Msg-Id` (server-side deduplication of a resend:
//! `LOG:SEQ` for a change, a per-bootstrap nonce and row index for a
//! bootstrap), `Cdc-Log-Id`, `Cdc-Kind` (`change`, `bootstrap-begin`,
//! `bootstrap-row`, `bootstrap-end`, `schema`, `commit`), `Cdc-Seq` (the
//! change's log position, or the commit point), `Cdc-Format` (`bincode`,
//! `json`, `debezium`), `Cdc-Time-Ms` (the application's write time).
//!
//! The async client (`async-nats`) and its tokio runtime live only here:
//! each target or follower owns a one-thread runtime and blocks on it, so
//! the rest of the library stays synchronous.

mod follow;
mod publish;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use follow::{Follower, FollowerOptions};
pub use publish::NatsTarget;

use crate::error::{Error, Result};

/// The header naming the event kind.
pub(crate) const KIND: &str = "Cdc-Kind";
/// The header with the source log's id.
pub(crate) const LOG_ID: &str = "Cdc-Log-Id";
/// The header with the change's log position (or the commit point).
pub(crate) const SEQ: &str = "Cdc-Seq";
/// The header naming the payload's encoding.
pub(crate) const FORMAT: &str = "Cdc-Format";
/// The header with the application's write time (Unix milliseconds).
pub(crate) const TIME_MS: &str = "Cdc-Time-Ms";

/// The control token of schema messages (`$` is always escaped in table
/// tokens, so no table can take it).
pub(crate) const SCHEMA_TOKEN: &str = "$schema";
/// The control token of commit messages.
pub(crate) const COMMIT_TOKEN: &str = "$commit";

/// How long a publish, an acknowledgement or a request may take before the
/// server counts as unreachable for now.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How events are encoded in a message's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFormat {
    /// bincode 2 of [`crate::Event`] (serde, standard configuration): the
    /// default, compact and exact.
    Bincode,
    /// This project's lossless JSON event form ([`crate::json`]).
    Json,
    /// Debezium's envelope ([`crate::debezium`]), for other consumers; a
    /// follower refuses it.
    Debezium,
}

impl PayloadFormat {
    pub(crate) fn name(self) -> &'static str {
        match self {
            PayloadFormat::Bincode => "bincode",
            PayloadFormat::Json => "json",
            PayloadFormat::Debezium => "debezium",
        }
    }
}

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

    fn from_str(url: &str) -> Result<NatsUrl> {
        let shown = crate::targets::redacted(url);
        let bad = |why: &str| Error::Config(format!("bad NATS address {shown:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected nats://HOST:PORT/STREAM"))?;
        if scheme != "nats" && scheme != "tls" {
            return Err(bad("the scheme must be nats:// or tls://"));
        }
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) =
            rest.split_once('/').ok_or_else(|| bad("no stream: expected nats://HOST:PORT/STREAM"))?;
        let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if hosts.is_empty() || hosts.split(',').any(str::is_empty) {
            return Err(bad("no host"));
        }
        let stream = path.trim_end_matches('/');
        if stream.is_empty() {
            return Err(bad("no stream: expected nats://HOST:PORT/STREAM"));
        }
        if !stream.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(bad("a stream name takes only letters, digits, '_' and '-'"));
        }
        let mut parsed = NatsUrl {
            url: url.to_string(),
            servers: format!("{scheme}://{authority}"),
            stream: stream.to_string(),
            format: PayloadFormat::Bincode,
            max_age: DEFAULT_MAX_AGE,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "format" => {
                    parsed.format = match value {
                        "bincode" => PayloadFormat::Bincode,
                        "json" => PayloadFormat::Json,
                        "debezium" => PayloadFormat::Debezium,
                        _ => return Err(bad("format must be bincode, json or debezium")),
                    }
                }
                "max_age" => {
                    parsed.max_age = humantime_like(value).ok_or_else(|| bad("max_age must be like 24h or 7d"))?;
                }
                other => return Err(bad(&format!("unknown option {other:?} (known: format, max_age)"))),
            }
        }
        Ok(parsed)
    }
}

/// `90s`, `15m`, `24h`, `7d`: the retention forms a URL takes.
fn humantime_like(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

impl NatsUrl {
    /// The address without credentials, for messages, logs and consumer
    /// names.
    pub fn redacted(&self) -> String {
        crate::targets::redacted(&self.url)
    }

    /// The subject of `table`'s events.
    pub fn subject(&self, table: &str) -> String {
        format!("{}.{}", self.stream, subject_token(table))
    }

    pub(crate) fn control(&self, token: &str) -> String {
        format!("{}.{token}", self.stream)
    }

    /// A one-thread runtime and a connected client. An unreachable server
    /// here (at start) is a configuration error naming the address; once
    /// connected, the client reconnects by itself and an outage is
    /// transient.
    pub(crate) fn connect(&self) -> Result<Connection> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cdc-nats")
            .enable_all()
            .build()
            .map_err(|e| Error::Io { context: "starting the NATS client's runtime".into(), source: e })?;
        let options = async_nats::ConnectOptions::new()
            .name("sqlite-cdc")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .max_reconnects(None);
        // Outages are reported by the engine or the follower, with
        // context; the follower also starts reading again after each
        // disconnection (what was in flight on the lost connection is
        // never delivered otherwise until the acknowledgement wait ends).
        let disconnected = Arc::new(AtomicBool::new(false));
        let flag = disconnected.clone();
        let options = options.event_callback(move |event| {
            if matches!(event, async_nats::Event::Disconnected) {
                flag.store(true, Ordering::Relaxed);
            }
            async {}
        });
        let client = rt.block_on(options.connect(self.servers.as_str())).map_err(|e| {
            Error::Config(format!("cannot reach the NATS server at {}: {}", self.redacted(), one_line(&e)))
        })?;
        Ok(Connection { rt, client, disconnected })
    }

    pub(crate) fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Unavailable { target: self.redacted(), message: format!("{what}: {}", one_line(&e)) }
    }
}

/// A connected client, the runtime it runs on, and whether the
/// connection was lost since the flag was last cleared.
pub(crate) struct Connection {
    pub rt: tokio::runtime::Runtime,
    pub client: async_nats::Client,
    pub disconnected: Arc<AtomicBool>,
}

/// An error's text on one line (some client errors nest causes with
/// newlines).
pub(crate) fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A table name as one subject token: ASCII letters, digits, `_` and `-`
/// stay; every other byte of its UTF-8 (`.`, `*`, `>`, spaces, `%`, `$`,
/// non-ASCII) becomes `%XX` (upper-case hex). Reversible by
/// [`table_of_token`], and no escaped name starts with `$` (the control
/// subjects' mark).
pub fn subject_token(table: &str) -> String {
    let mut out = String::with_capacity(table.len());
    for b in table.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The table name a [`subject_token`] came from.
pub fn table_of_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Creates the stream if missing, or checks that an existing one can
/// carry a source's events in order and without holes: it must take every
/// subject `STREAM.>`, keep messages for all consumers (not a work queue),
/// and never delete single messages inside its range (no per-subject
/// limit). Returns the stream.
pub(crate) async fn ensure_stream(
    js: &async_nats::jetstream::Context,
    url: &NatsUrl,
    create: bool,
) -> Result<async_nats::jetstream::stream::Stream> {
    use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
    let wanted = format!("{}.>", url.stream);
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    let not_found = |e: &async_nats::jetstream::context::GetStreamError| matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND);
    let stream = match js.get_stream(&url.stream).await {
        Ok(s) => s,
        Err(e) if not_found(&e) && create => {
            let config = Config {
                name: url.stream.clone(),
                subjects: vec![wanted.clone()],
                retention: RetentionPolicy::Limits,
                storage: StorageType::File,
                max_age: url.max_age,
                duplicate_window: Duration::from_secs(120),
                description: Some("sqlite-cdc change stream".into()),
                ..Default::default()
            };
            js.create_stream(config).await.map_err(|e| url.unavailable("creating the stream", e))?
        }
        Err(e) if not_found(&e) => return Err(missing_stream(url)),
        Err(e) => return Err(url.unavailable("looking up the stream", e)),
    };
    let info = stream.get_info().await.map_err(|e| url.unavailable("reading the stream's configuration", e))?;
    let c = &info.config;
    let refuse = |found: String, need: &str| {
        Err(Error::Config(format!(
            "stream {:?} on {} has {found}; a change stream needs {need}",
            url.stream,
            url.redacted()
        )))
    };
    if !c.subjects.contains(&wanted) {
        return refuse(format!("subjects {:?}", c.subjects), &format!("the subject {wanted:?}"));
    }
    if c.retention != RetentionPolicy::Limits {
        let found = if c.retention == RetentionPolicy::WorkQueue { "workqueue" } else { "interest" };
        return refuse(
            format!("retention {found}"),
            "limits retention (each follower reads every message, a follower started later replays the stream, \
             and the last commit point must stay)",
        );
    }
    if c.max_messages_per_subject > 0 {
        return refuse(
            format!("max_msgs_per_subject {}", c.max_messages_per_subject),
            "none (-1): a per-subject limit deletes messages inside the stream, a hole no follower could notice",
        );
    }
    if c.duplicate_window.is_zero() {
        return refuse("duplicate_window 0".into(), "a duplicate window (a resend after a crash is dropped by it)");
    }
    Ok(stream)
}

/// The error of a stream that does not exist (yet).
pub(crate) fn missing_stream(url: &NatsUrl) -> Error {
    Error::Config(format!("stream {:?} does not exist on {}", url.stream, url.redacted()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_never_look_like_control_subjects() {
        for name in ["users", "a.b", "x y", "*", ">", "%", "$schema", "naïve", "", "a-b_c9", "\"q\""] {
            let token = subject_token(name);
            assert!(!token.contains(['.', '*', '>', ' ', '$']), "{name:?} -> {token:?}");
            assert_eq!(table_of_token(&token).as_deref(), Some(name));
        }
        assert_eq!(subject_token("a.b"), "a%2Eb");
        assert_eq!(table_of_token("%ZZ"), None);
    }

    #[test]
    fn urls_parse_with_options_and_redact_credentials() {
        let u: NatsUrl = "nats://me:secret@h1:4222,h2:4222/CDC?format=json&max_age=24h".parse().unwrap();
        assert_eq!(u.stream, "CDC");
        assert_eq!(u.format, PayloadFormat::Json);
        assert_eq!(u.max_age, Duration::from_secs(86400));
        assert_eq!(u.servers, "nats://me:secret@h1:4222,h2:4222");
        assert!(!u.redacted().contains("secret"));
        assert_eq!(u.subject("a.b"), "CDC.a%2Eb");
        for bad in [
            "nats://h:4222",
            "nats://h:4222/",
            "nats:///S",
            "nats://h/a.b",
            "http://h/S",
            "nats://h/S?format=xml",
            "nats://h/S?max_age=soon",
            "nats://h/S?retries=3",
            "nats://u:pw@h/S?max_age=0d",
        ] {
            let e = bad.parse::<NatsUrl>().unwrap_err().to_string();
            assert!(!e.contains("pw@"), "{e}");
            assert!(e.starts_with("bad NATS address"), "{e}");
        }
    }
}
