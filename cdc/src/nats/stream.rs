//! The connection to a NATS server and the stream a source's events go to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::NatsUrl;
use crate::error::{Error, Result};

/// How long a publish, an acknowledgement or a request may take before the
/// server counts as unreachable for now.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Creates the stream if missing, or checks that an existing one can
/// carry a source's events in order and without holes: it must take every
/// subject `STREAM.>`, keep messages for all consumers (not a work queue),
/// and never delete single messages inside its range (no per-subject
/// limit). Returns the stream.
pub(crate) async fn ensure(
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
        Err(Error::Stream {
            stream: url.stream.clone(),
            problem: format!("on {} it has {found}; a change stream needs {need}", url.redacted()),
            fix: None,
        })
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
    Error::StreamMissing { stream: url.stream.clone(), server: url.redacted() }
}

impl NatsUrl {
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
        let client = rt.block_on(options.connect(self.servers())).map_err(|e| Error::Unreachable {
            server: format!("the NATS server at {}", self.redacted()),
            message: one_line(&e),
        })?;
        Ok(Connection { rt, client, disconnected })
    }
}
