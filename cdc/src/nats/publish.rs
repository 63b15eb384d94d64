//! `nats://HOST:PORT/STREAM` as a target: every event published to
//! JetStream, the position advanced only once the server acknowledged it.

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream::Stream};

use super::stream::one_line;
use super::{COMMIT_TOKEN, DDL_TOKEN, FORMAT, KIND, LOG_ID, NatsUrl, PayloadFormat, SCHEMA_TOKEN, SEQ, TIME_MS};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::state::DeliveryState;
use crate::target::{Source, Target};

/// Publishes unacknowledged at most this many messages before waiting for
/// the server's acknowledgements (memory stays flat in a large bootstrap).
const IN_FLIGHT: usize = 2048;

/// A JetStream stream as a target. It keeps its delivery state in the
/// stream itself (the last `$commit` message), so what the stream holds
/// and what the engine believes it holds cannot disagree: a stream that
/// was deleted and created again, or emptied by retention, is
/// bootstrapped again. A resend after a crash is dropped by the server's
/// duplicate window (`Nats-Msg-Id`); a follower also skips changes it
/// already holds, so a resend after the window is harmless too.
pub struct NatsTarget {
    url: NatsUrl,
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    stream: Stream,
    log_id: String,
    /// Messages queued, not yet handed to the client.
    outbox: Vec<(String, PublishMessage)>,
    /// Acknowledgements not yet awaited.
    pending: Vec<PublishAckFuture>,
    /// With `counter`, ids of messages that are not changes (`fresh_id`).
    nonce: u64,
    counter: u64,
    debezium: Option<crate::debezium::Debezium>,
    /// The last state this target committed to the stream.
    committed: Option<DeliveryState>,
    /// The commit point being published: a failure may come after the
    /// server stored it.
    sending: Option<DeliveryState>,
    /// After a failure: check that the stream still ends with `committed`
    /// (or `sending`) before publishing on.
    verify: bool,
}

impl NatsTarget {
    /// Connects and creates the stream if missing (or checks an existing
    /// one). An unreachable server or an unsuitable stream is an error
    /// naming the address without credentials.
    pub fn connect(url: &NatsUrl, source_name: &str) -> Result<NatsTarget> {
        let super::stream::Connection { rt, client, .. } = url.connect()?;
        // The context spawns its acknowledgement task on the runtime.
        let _in_runtime = rt.enter();
        let js = jetstream::ContextBuilder::new()
            .timeout(super::stream::REQUEST_TIMEOUT)
            .backpressure_on_inflight(true)
            .build(client);
        let stream = rt.block_on(super::stream::ensure(&js, url, true)).map_err(|e| match e {
            Error::Unavailable { target, message } => Error::Unreachable { server: target, message },
            other => other,
        })?;
        let debezium =
            (url.format == PayloadFormat::Debezium).then(|| crate::debezium::Debezium::new(source_name, false));
        Ok(NatsTarget {
            url: url.clone(),
            rt,
            js,
            stream,
            log_id: String::new(),
            outbox: Vec::new(),
            pending: Vec::new(),
            nonce: fastrand::u64(..),
            counter: 0,
            debezium,
            committed: None,
            sending: None,
            verify: false,
        })
    }

    fn headers(&self, kind: &str, seq: Option<i64>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(KIND, kind);
        h.insert(LOG_ID, self.log_id.as_str());
        h.insert(FORMAT, self.url.format.name());
        if let Some(seq) = seq {
            h.insert(SEQ, seq.to_string().as_str());
        }
        h
    }

    /// An id no earlier message has: this target's random nonce and a
    /// counter. Bootstrap rows, schema and commit messages take one, so a
    /// bootstrap sent again (after a rollback or a restart, perhaps from
    /// another cut) or a commit point that closes other events than an
    /// earlier one with the same state is never dropped as a duplicate.
    fn fresh_id(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!("{}:{kind}:{:016x}:{}", self.log_id, self.nonce, self.counter)
    }

    /// A change's id: its log position and a digest of its content. The
    /// same change sent again is dropped by the server; another change at
    /// the same position (a source restored from a backup rewinds its log,
    /// and the engine reseeds) is not.
    fn change_id(&self, seq: i64, payload: &[u8]) -> String {
        format!("{}:{seq}:{:016x}", self.log_id, cdc_schema::fnv1a(payload))
    }

    /// Sends one message; its acknowledgement is awaited later.
    fn send(&mut self, subject: String, id: String, headers: HeaderMap, payload: Vec<u8>) -> Result<()> {
        let publish = PublishMessage::build().headers(headers).payload(payload.into()).message_id(id);
        self.outbox.push((subject, publish));
        Ok(())
    }

    /// Hands the queued messages to the client, in one trip into the
    /// runtime, waiting for acknowledgements whenever `IN_FLIGHT` are
    /// outstanding.
    fn flush(&mut self) -> Result<()> {
        let outbox = std::mem::take(&mut self.outbox);
        let mut pending = std::mem::take(&mut self.pending);
        let js = &self.js;
        let result = self.rt.block_on(async {
            for (subject, publish) in outbox {
                if pending.len() >= IN_FLIGHT {
                    for ack in pending.drain(..) {
                        ack.await?;
                    }
                }
                pending.push(js.send_publish(subject, publish).await?);
            }
            Ok(())
        });
        self.pending = pending;
        result.map_err(|e| self.publish_error(e))
    }

    /// Waits for every outstanding acknowledgement: only then are the
    /// messages in the stream.
    fn wait_acks(&mut self) -> Result<()> {
        self.flush()?;
        let pending = std::mem::take(&mut self.pending);
        let results = self
            .rt
            .block_on(futures_util::future::join_all(pending.into_iter().map(std::future::IntoFuture::into_future)));
        for r in results {
            r.map_err(|e| self.publish_error(e))?;
        }
        Ok(())
    }

    fn publish_error(&self, e: async_nats::jetstream::context::PublishError) -> Error {
        match e.kind() {
            PublishErrorKind::StreamNotFound => Error::Stream {
                stream: self.url.stream.clone(),
                problem: format!(
                    "gone from {} (deleted while publishing); started again, the publisher creates it and \
                     bootstraps every table into it",
                    self.url.redacted()
                ),
                fix: Some(crate::fix::Fix::Restart),
            },
            PublishErrorKind::MaxPayloadExceeded => {
                Error::Rejected { target: self.url.redacted(), message: one_line(&e) }
            }
            _ => self.url.unavailable("publishing", e),
        }
    }

    fn event_message(&mut self, event: &Event) -> Result<(String, Option<i64>, &'static str, Vec<u8>)> {
        let (kind, seq) = match event {
            Event::Change(c) => ("change", Some(c.seq)),
            Event::BootstrapBegin { .. } => ("bootstrap-begin", None),
            Event::Bootstrap { .. } => ("bootstrap-row", None),
            Event::BootstrapEnd { .. } => ("bootstrap-end", None),
            // Not "schema": that kind is the source's description.
            Event::Schema(_) => ("ddl", None),
        };
        let payload = match self.url.format {
            PayloadFormat::Json => crate::json::to_line(event)?.into_bytes(),
            _ => bincode::serde::encode_to_vec(event, bincode::config::standard())
                .map_err(|e| Error::Encode(e.to_string()))?,
        };
        let id = match seq {
            Some(seq) => self.change_id(seq, &payload),
            None => self.fresh_id("b"),
        };
        Ok((id, seq, kind, payload))
    }

    fn publish_events(&mut self, events: &[Event]) -> Result<()> {
        if let Some(mut dbz) = self.debezium.take() {
            let result = self.publish_envelopes(&mut dbz, events);
            self.debezium = Some(dbz);
            return result;
        }
        for event in events {
            let (id, seq, kind, payload) = self.event_message(event)?;
            let mut headers = self.headers(kind, seq);
            if let Event::Change(c) = event {
                headers.insert(TIME_MS, c.time_ms.to_string().as_str());
            }
            self.send(self.url.subject(event.table()), id, headers, payload)?;
        }
        Ok(())
    }

    /// Debezium envelopes, one message each, on the table's subject (no
    /// tombstones: they are a Kafka compaction device); schema change
    /// records on `STREAM.$ddl`, Debezium's schema change topic.
    fn publish_envelopes(&mut self, dbz: &mut crate::debezium::Debezium, events: &[Event]) -> Result<()> {
        for event in events {
            if let Some(record) = dbz.schema_change(event) {
                let id = self.fresh_id("s");
                let headers = self.headers("debezium-schema", None);
                self.send(self.url.control(DDL_TOKEN), id, headers, record.to_string().into_bytes())?;
                continue;
            }
            for envelope in dbz.envelopes(std::slice::from_ref(event)).into_iter().flatten() {
                let table = envelope["source"]["table"].as_str().unwrap_or_default().to_string();
                let seq = envelope["source"]["seq"].as_i64();
                let payload = envelope.to_string().into_bytes();
                let id = match seq {
                    Some(seq) => self.change_id(seq, &payload),
                    None => self.fresh_id("b"),
                };
                let headers = self.headers("debezium", seq);
                self.send(self.url.subject(&table), id, headers, payload)?;
            }
        }
        Ok(())
    }

    /// The state the stream holds: its last commit message's, or nothing.
    fn stored_state(&self) -> Result<Option<DeliveryState>> {
        let subject = self.url.control(COMMIT_TOKEN);
        match self.rt.block_on(self.stream.get_last_raw_message_by_subject(&subject)) {
            Ok(message) => {
                let text = std::str::from_utf8(&message.payload).map_err(|_| self.bad_commit())?;
                DeliveryState::from_json(text).map(Some).map_err(|_| self.bad_commit())
            }
            Err(e) if e.kind() == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(self.url.unavailable("reading the stream's last commit point", e)),
        }
    }

    fn bad_commit(&self) -> Error {
        Error::Stream {
            stream: self.url.stream.clone(),
            problem: format!(
                "on {}, its last {COMMIT_TOKEN} message is not a delivery state (is another program publishing to it?)",
                self.url.redacted()
            ),
            fix: None,
        }
    }
}

impl NatsTarget {
    /// After a failure (the server restarted, say): the stream must still
    /// end with the last commit point this target published. A server
    /// that lost acknowledged messages (a crash with JetStream's default
    /// `sync_interval`) has not: publishing on from the engine's position
    /// would leave a hole, so the replicator stops, and started again it
    /// publishes from what the stream holds.
    fn verify_stream(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.verify) {
            return Ok(());
        }
        let Some(ours) = self.committed.clone() else { return Ok(()) };
        let theirs = self.stored_state().inspect_err(|_| self.verify = true)?;
        if theirs.as_ref() == Some(&ours) {
            return Ok(());
        }
        if let Some(sent) = self.sending.take()
            && theirs.as_ref() == Some(&sent)
        {
            self.committed = Some(sent);
            return Ok(());
        }
        Err(Error::Stream {
            stream: self.url.stream.clone(),
            problem: format!(
                "the NATS server {} lost acknowledged messages (its last commit point is {}, this replicator had \
                 published up to {}; a crash with JetStream's default sync_interval?); started again, the \
                 replicator publishes again from what the stream holds",
                self.url.redacted(),
                theirs.map_or("gone".into(), |s| s.position.to_string()),
                ours.position
            ),
            fix: Some(crate::fix::Fix::Restart),
        })
    }
}

impl Target for NatsTarget {
    fn open(&mut self, source: &Source) -> Result<Option<DeliveryState>> {
        self.rollback()?;
        self.log_id = source.log_id.clone();
        let state = self.stored_state()?.unwrap_or_else(|| DeliveryState::empty(&source.log_id));
        self.committed = Some(state.clone());
        self.sending = None;
        self.verify = false;
        // The description, for followers: they create and check their
        // tables from it, and discard what they applied since the last
        // commit point (this publisher starts again from it).
        let json = serde_json::to_string(source)?;
        let id = self.fresh_id("schema");
        let headers = self.headers("schema", None);
        self.send(self.url.control(SCHEMA_TOKEN), id, headers, json.into_bytes())?;
        self.wait_acks()?;
        Ok(Some(state))
    }

    fn apply(&mut self, events: &[Event]) -> Result<()> {
        self.verify_stream()?;
        self.publish_events(events)?;
        self.flush()
    }

    fn commit(&mut self, state: &DeliveryState) -> Result<()> {
        self.verify_stream()?;
        // Every event first: a commit point stored after a lost message
        // (a connection that dropped mid-transaction) would close a
        // transaction with a hole in it.
        self.wait_acks()?;
        self.sending = Some(state.clone());
        let json = state.to_json();
        let id = self.fresh_id("commit");
        let headers = self.headers("commit", Some(state.position));
        self.send(self.url.control(COMMIT_TOKEN), id, headers, json.into_bytes())?;
        self.wait_acks()?;
        self.committed = self.sending.take();
        Ok(())
    }

    /// What was published since the last commit point stays in the stream
    /// (it cannot be taken back); the engine sends it again from the last
    /// commit point, changes under the same ids (dropped as duplicates)
    /// and followers skip what they already hold.
    fn rollback(&mut self) -> Result<()> {
        self.outbox.clear();
        self.pending.clear();
        self.verify = self.committed.is_some();
        if let Some(d) = self.debezium.as_mut() {
            d.reset();
        }
        Ok(())
    }
}
