//! `replicator --from nats://HOST:PORT/STREAM --target sqlite:PATH`: a
//! stream applied to a SQLite replica on another host, exactly once.
//!
//! The replica is the truth: it stores the stream sequence it applied up
//! to in `_cdc_follow`, in the same transaction as the rows and the
//! delivery state, and the durable JetStream consumer is only the
//! transport. At every start the consumer is made again to deliver from
//! the sequence after the stored one (a replica restored from a backup
//! reads again what it lacks), and a message is acknowledged once its
//! transaction committed.

mod held;
mod record;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream::Stream};
use futures_util::StreamExt;
use rusqlite::Connection;

use super::stream::one_line;
use super::{COMMIT_TOKEN, FORMAT, KIND, LOG_ID, NatsUrl, SCHEMA_TOKEN};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::retry::{Outage, Retry};
use crate::signal::{StopHandle, Waker};
use crate::state::DeliveryState;
use crate::target::{Source, Target};
use crate::targets::SqliteTarget;
use held::Transactions;
use record::{Record, default_durable, read_record, write_record};

pub use record::FOLLOW_TABLE;

/// How the follower retries a server it cannot reach: without limit,
/// from 100 ms doubling to at most 5 s.
const RETRY: Retry = Retry { attempts: u32::MAX, initial: Duration::from_millis(100), max: Duration::from_secs(5) };

/// How long a follower waits on a silent consumer before it asks the
/// server whether messages wait for it.
const STALL_CHECK: Duration = Duration::from_secs(5);

/// Messages taken from the client in one go.
const BATCH: usize = 1000;

/// How a follower runs.
#[derive(Clone, Debug, Default)]
pub struct FollowerOptions {
    /// Tables to follow (subjects to read); empty: every table.
    pub tables: Vec<String>,
    /// The durable consumer's name; `None`: derived from the host and the
    /// replica's path, so followers on different hosts never share one.
    pub durable: Option<String>,
    /// Apply what the stream holds now, then return.
    pub once: bool,
    /// Stops [`Follower::open`] (while it waits for a stream that does
    /// not exist yet) and [`Follower::run`] at the next look.
    pub stop: StopHandle,
}

/// Follows a stream into a replica (see the module docs).
pub struct Follower {
    url: NatsUrl,
    rt: tokio::runtime::Runtime,
    stream: Stream,
    replica: SqliteTarget,
    replica_path: PathBuf,
    options: FollowerOptions,
    durable: String,
    /// As last committed.
    record: Record,
    /// What the replica holds and what the open transaction made of it.
    tx: Transactions,
    /// The source description in force (filtered to the followed tables).
    source: Option<Source>,
    /// The last stream sequence read in this run.
    last: u64,
    stop: Waker,
    applied: u64,
    synced: Instant,
    /// A run of failures to reach the server (said when it starts and ends).
    outage: Option<Outage>,
    /// Set by the client when its connection drops.
    disconnected: Arc<AtomicBool>,
}

/// Why reading stopped.
enum Outcome {
    Stopped,
    CaughtUp,
}

impl Follower {
    /// Connects, checks the stream and the replica's record of it, and
    /// opens the replica (created if missing). Nothing is written to the
    /// replica before the server answered and the stream was found fit.
    pub fn open(url: &NatsUrl, replica: &Path, options: FollowerOptions) -> Result<Follower> {
        if url.format == super::PayloadFormat::Debezium {
            return Err(Error::InvalidSetting(
                "a follower reads the bincode or json payload; format=debezium is for other consumers".into(),
            ));
        }
        let super::stream::Connection { rt, client, disconnected } = url.connect()?;
        // The context spawns its acknowledgement task on the runtime.
        let _in_runtime = rt.enter();
        let js = jetstream::ContextBuilder::new().timeout(super::stream::REQUEST_TIMEOUT).build(client);
        // A follower started before its publisher waits for the stream
        // (said once); with `once` there is nothing to apply.
        let mut said = false;
        let stop = options.stop.waker();
        let stream = loop {
            match rt.block_on(super::stream::ensure(&js, url, false)) {
                Ok(stream) => break stream,
                Err(e @ Error::StreamMissing { .. }) if !options.once => {
                    if !said {
                        tracing::warn!("{e}; waiting for a publisher to create it");
                        said = true;
                    }
                    if !stop.sleep(Duration::from_millis(500)) {
                        return Err(Error::Stream {
                            stream: url.stream.clone(),
                            problem: format!("does not exist on {}; stopped while waiting for it", url.redacted()),
                            fix: None,
                        });
                    }
                }
                Err(Error::Unavailable { target, message }) => {
                    return Err(Error::Unreachable { server: target, message });
                }
                Err(e) => return Err(e),
            }
        };
        if said {
            tracing::info!(stream = %url.stream, "the stream exists now");
        }
        let created = rt
            .block_on(stream.get_info())
            .map_err(|e| Error::Unreachable { server: url.redacted(), message: one_line(&e) })?
            .created
            .unix_timestamp_nanos()
            .to_string();
        if replica.is_dir() {
            return Err(Error::NotADatabase(replica.into()));
        }
        if let Some(dir) = replica.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(Error::MissingFolder(dir.into()));
        }
        let mut target = SqliteTarget::open(replica)?;
        let record = read_record(target.connection())?;
        if let Some(r) = &record {
            if r.stream != url.stream {
                return Err(Error::Stream {
                    stream: url.stream.clone(),
                    problem: format!(
                        "replica {} follows stream {:?}, not this one; use another replica file",
                        replica.display(),
                        r.stream
                    ),
                    fix: None,
                });
            }
            if r.created != created && r.seq > 0 {
                return Err(Error::Stream {
                    stream: url.stream.clone(),
                    problem: format!(
                        "deleted and created again since replica {} last read it (sequence {}): what it applied \
                         cannot be placed in the new stream; delete the replica to follow the new stream from its start",
                        replica.display(),
                        r.seq
                    ),
                    fix: None,
                });
            }
        }
        let mut record = record.unwrap_or(Record { stream: url.stream.clone(), ..Record::default() });
        if record.seq == 0 {
            record.created = created;
        }
        let mut committed = DeliveryState::default();
        let mut source = None;
        if let Some(json) = &record.source {
            let s = filtered(serde_json::from_str(json)?, &options.tables);
            committed = unfollowed_forgotten(target.open(&s)?.unwrap_or_default(), &s);
            source = Some(s);
        }
        let durable = options.durable.clone().unwrap_or_else(|| default_durable(replica));
        Ok(Follower {
            url: url.clone(),
            rt,
            stream,
            replica: target,
            replica_path: replica.into(),
            durable,
            tx: Transactions::new(committed),
            last: record.seq,
            record,
            source,
            stop,
            disconnected,
            options,
            applied: 0,
            synced: Instant::now(),
            outage: None,
        })
    }

    /// The durable consumer's name.
    pub fn durable(&self) -> &str {
        &self.durable
    }

    /// The replica connection (for reading it back in tests and tools).
    pub fn replica(&self) -> &Connection {
        self.replica.connection()
    }

    /// The last stream sequence committed to the replica.
    pub fn position(&self) -> u64 {
        self.record.seq
    }

    /// Follows until stopped (or, with `once`, until the replica holds
    /// everything the stream held when it started). A server that goes
    /// away is waited for (one warning, one line when it is back); what
    /// was applied since the last commit point is discarded and read
    /// again. Returns the number of changes and bootstrap rows applied.
    pub fn run(&mut self) -> Result<u64> {
        while !self.stop.is_stopped() {
            match self.read() {
                Ok(Outcome::Stopped | Outcome::CaughtUp) => break,
                Err(e) if e.is_transient() => {
                    self.rollback()?;
                    let stream = format!("stream {}", self.url.stream);
                    let outage = self.outage.get_or_insert_with(|| Outage::start(&e, "the replica", &stream, None));
                    let delay = outage.next_delay(&e, RETRY);
                    self.stop.sleep(delay);
                }
                Err(e) => {
                    self.rollback()?;
                    return Err(e);
                }
            }
        }
        self.rollback()?;
        self.replica.sync()?;
        Ok(self.applied)
    }

    fn rollback(&mut self) -> Result<()> {
        self.tx.rollback();
        self.replica.rollback()?;
        self.last = self.record.seq;
        Ok(())
    }

    /// Makes the durable consumer deliver from just after the committed
    /// sequence, then applies messages until stopped, caught up, or an
    /// error.
    fn read(&mut self) -> Result<Outcome> {
        let info =
            self.rt.block_on(self.stream.get_info()).map_err(|e| self.url.unavailable("reading the stream", e))?;
        let (first, last_in_stream) = (info.state.first_sequence, info.state.last_sequence);
        let from = self.record.seq + 1;
        if self.record.seq > 0 && first > from && last_in_stream >= from {
            return Err(self.gap(from, first));
        }
        self.check_history(first)?;
        if self.record.seq == 0 && first > 1 {
            tracing::warn!(
                stream = %self.url.stream,
                first,
                "the stream no longer starts at its first message (retention removed the start): tables whose \
                 bootstrap is gone wait for a new one ({})",
                crate::fix::Fix::Republish
            );
        }
        if self.options.once && last_in_stream < from {
            return Ok(Outcome::CaughtUp);
        }
        self.disconnected.store(false, Ordering::Relaxed);
        tracing::debug!(from, first, last = last_in_stream, "reading the stream");
        let consumer = self.rt.block_on(self.consumer(from))?;
        let mut idle_since = Instant::now();
        let mut messages = self
            .rt
            .block_on(consumer.stream().max_messages_per_batch(1000).heartbeat(Duration::from_secs(5)).messages())
            .map_err(|e| self.url.unavailable("subscribing", e))?;
        loop {
            if self.stop.is_stopped() {
                return Ok(Outcome::Stopped);
            }
            if self.synced.elapsed() > Duration::from_secs(1) {
                self.replica.sync()?;
                self.synced = Instant::now();
            }
            if self.disconnected.load(Ordering::Relaxed) {
                return Err(self.url.unavailable("reading", "the connection to the server was lost"));
            }
            // The first message waited for, then whatever else is ready
            // (one trip into the runtime per batch, not per message).
            let next = self.rt.block_on(async {
                let first = tokio::time::timeout(Duration::from_millis(500), messages.next()).await;
                let mut batch = Vec::new();
                if let Ok(Some(Ok(m))) = first {
                    batch.push(m);
                    while batch.len() < BATCH {
                        match futures_util::FutureExt::now_or_never(messages.next()) {
                            Some(Some(Ok(m))) => batch.push(m),
                            _ => break,
                        }
                    }
                    return Ok(Some(Ok(batch)));
                }
                first.map(|r| r.map(|r| r.map(|_| batch)))
            });
            if next.is_err() && idle_since.elapsed() > STALL_CHECK {
                // Nothing for a while: a consumer that has messages for
                // us and delivers none is read again from scratch.
                idle_since = Instant::now();
                let mut consumer = consumer.clone();
                if let Ok(info) = self.rt.block_on(consumer.info())
                    && info.num_pending > 0
                {
                    return Err(self.url.unavailable("reading", "the consumer stopped delivering"));
                }
            }
            let batch = match next {
                Err(_) if self.options.once => {
                    // Nothing came: with `--table`, what is left may all
                    // be other tables' messages.
                    let mut consumer = consumer.clone();
                    let info = self
                        .rt
                        .block_on(consumer.info())
                        .map_err(|e| self.url.unavailable("reading the consumer", e))?;
                    if info.num_pending == 0 {
                        return Ok(Outcome::CaughtUp);
                    }
                    continue;
                }
                Err(_) => continue,
                Ok(None) => return Err(self.url.unavailable("reading", "the message stream ended")),
                Ok(Some(Err(e))) => return Err(self.url.unavailable("reading", e)),
                Ok(Some(Ok(batch))) => batch,
            };
            idle_since = Instant::now();
            if let Some(outage) = self.outage.take() {
                outage.end();
            }
            for message in batch {
                let (seq, pending) = {
                    let info = message.info().map_err(|e| self.url.unavailable("reading a message's metadata", e))?;
                    (info.stream_sequence, info.pending)
                };
                if seq <= self.last {
                    continue; // delivered again (an acknowledgement wait ran out)
                }
                if seq > self.last + 1 {
                    self.check_gap(seq)?;
                }
                self.last = seq;
                let committed = self.handle(&message, seq)?;
                if committed {
                    // AckPolicy::All: this acknowledges everything before it.
                    let _ = self.rt.block_on(message.ack());
                }
                // At the end with a transaction the publisher never
                // finished (it was killed): `run` discards it; it comes
                // again, whole.
                if self.options.once && pending == 0 {
                    return Ok(Outcome::CaughtUp);
                }
            }
        }
    }

    /// A durable pull consumer delivering from `from`, made again at every
    /// start: its own acknowledgement floor may be ahead of the replica (a
    /// replica restored from a backup), and the replica is the truth.
    async fn consumer(&self, from: u64) -> Result<jetstream::consumer::Consumer<pull::Config>> {
        let _ = self.stream.delete_consumer(&self.durable).await;
        let mut filters = Vec::new();
        if !self.options.tables.is_empty() {
            filters.extend(self.options.tables.iter().map(|t| self.url.subject(t)));
            filters.push(self.url.control(SCHEMA_TOKEN));
            filters.push(self.url.control(COMMIT_TOKEN));
        }
        let config = pull::Config {
            durable_name: Some(self.durable.clone()),
            description: Some(format!("sqlite-cdc follower of {}", self.replica_path.display())),
            deliver_policy: if from <= 1 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence { start_sequence: from }
            },
            ack_policy: AckPolicy::All,
            ack_wait: Duration::from_secs(120),
            max_ack_pending: -1,
            filter_subjects: filters,
            ..Default::default()
        };
        self.stream.create_consumer(config).await.map_err(|e| self.url.unavailable("creating the durable consumer", e))
    }

    /// The stream must still hold, at the replica's sequence, the commit
    /// message the replica applied last (unless retention removed it):
    /// otherwise the server lost acknowledged messages (a crash before
    /// they reached its disk) or the stream was restored from an older
    /// backup, and new messages may sit at sequences the replica counts
    /// as applied. Nothing can be placed safely then: a loud stop.
    fn check_history(&self, first: u64) -> Result<()> {
        let (seq, Some(id)) = (self.record.seq, &self.record.commit_id) else { return Ok(()) };
        if seq < first {
            return Ok(());
        }
        let found = match self.rt.block_on(self.stream.get_raw_message(seq)) {
            Ok(m) => m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_string()),
            Err(e) if e.kind() == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound => None,
            Err(e) => return Err(self.url.unavailable("reading the stream", e)),
        };
        if found.as_deref() == Some(id.as_str()) {
            return Ok(());
        }
        Err(Error::Stream {
            stream: self.url.stream.clone(),
            problem: format!(
                "no longer holds, at sequence {seq}, the commit point replica {} applied last: the server lost \
                 acknowledged messages (a crash with JetStream's default sync_interval) or the stream was restored \
                 from an older backup",
                self.replica_path.display()
            ),
            fix: Some(crate::fix::Fix::Refollow { replica: self.replica_path.clone() }),
        })
    }

    /// Messages `from..first` are needed and gone.
    fn gap(&self, from: u64, first: u64) -> Error {
        Error::Stream {
            stream: self.url.stream.clone(),
            problem: format!(
                "no longer holds messages {from} to {} that replica {} needs (removed by the stream's retention \
                 while this follower was behind); the replica is left as of sequence {}",
                first - 1,
                self.replica_path.display(),
                from - 1
            ),
            fix: Some(crate::fix::Fix::Refollow { replica: self.replica_path.clone() }),
        }
    }

    /// A message after a jump in sequence: other tables' messages (with
    /// `--table`) or, when the stream's start moved past what was read, a
    /// hole.
    fn check_gap(&mut self, seq: u64) -> Result<()> {
        let info =
            self.rt.block_on(self.stream.get_info()).map_err(|e| self.url.unavailable("reading the stream", e))?;
        let from = self.last + 1;
        if info.state.first_sequence > from || (self.options.tables.is_empty() && seq > from) {
            if self.record.seq == 0 && self.last == 0 {
                return Ok(()); // a new follower: it starts where the stream does
            }
            return Err(self.gap(from, seq.max(info.state.first_sequence)));
        }
        Ok(())
    }

    /// Applies one message. Returns whether it committed.
    fn handle(&mut self, message: &jetstream::Message, seq: u64) -> Result<bool> {
        // Borrowed, not copied: three lookups per message.
        let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str());
        let kind = header(KIND).unwrap_or_default();
        let text = || std::str::from_utf8(&message.payload).map_err(|_| self.bad(seq, "the payload is not UTF-8"));
        match kind {
            "schema" => {
                let source: Source = serde_json::from_str(text()?).map_err(|_| self.bad(seq, "bad schema message"))?;
                let json = text()?.to_string();
                // Bootstrap events applied since the last commit point are
                // undone (a bootstrap sent again has new ids, so it comes
                // again whole); held changes stay: a publisher restarting
                // within the duplicate window sends them again under the
                // same ids, which the server drops.
                self.replica.rollback()?;
                let source = filtered(source, &self.options.tables);
                let state = unfollowed_forgotten(self.replica.open(&source)?.unwrap_or_default(), &source);
                self.tx.schema(state);
                self.source = Some(source);
                self.record.source = Some(json);
                Ok(false)
            }
            "commit" => {
                let published = DeliveryState::from_json(text()?).map_err(|_| self.bad(seq, "bad commit message"))?;
                if self.source.is_none() {
                    return Ok(false); // a new follower before the first schema message
                }
                self.commit(&published, seq, header("Nats-Msg-Id").map(str::to_string))?;
                Ok(true)
            }
            "change" | "bootstrap-begin" | "bootstrap-row" | "bootstrap-end" => {
                let event = match header(FORMAT) {
                    Some("json") => crate::json::event_from_json(text()?)?,
                    Some("bincode") => {
                        bincode::serde::decode_from_slice(&message.payload, bincode::config::standard())
                            .map_err(|e| self.bad(seq, &format!("bad bincode event: {e}")))?
                            .0
                    }
                    other => return Err(self.bad(seq, &format!("unknown payload format {other:?}"))),
                };
                self.event(event, header(LOG_ID).unwrap_or_default())?;
                Ok(false)
            }
            // A schema event: the replica takes schema from the
            // description ("schema" messages) instead.
            "ddl" => Ok(false),
            "debezium" | "debezium-schema" => Err(Error::Stream {
                stream: self.url.stream.clone(),
                problem: "carries Debezium envelopes (published with format=debezium); a follower needs format \
                          bincode or json"
                    .into(),
                fix: None,
            }),
            _ => Err(self.bad(seq, &format!("unknown kind {kind:?}"))),
        }
    }

    fn bad(&self, seq: u64, why: &str) -> Error {
        Error::Stream { stream: self.url.stream.clone(), problem: format!("message {seq}: {why}"), fix: None }
    }

    /// One event: applied when the replica holds its table at a position
    /// before it (or is being reseeded), held until its commit point (a
    /// change), or skipped.
    fn event(&mut self, event: Event, log_id: &str) -> Result<()> {
        let Some(source) = &self.source else { return Ok(()) };
        if !source.tables.iter().any(|t| *t.desc.name == *event.table()) {
            return Ok(());
        }
        if let Some(event) = self.tx.event(event, log_id) {
            self.replica.apply(std::slice::from_ref(&event))?;
            self.applied += 1;
        }
        Ok(())
    }

    /// A commit point: the held changes up to it applied, the replica's
    /// state stored with the stream sequence, in one transaction.
    fn commit(&mut self, published: &DeliveryState, seq: u64, id: Option<String>) -> Result<()> {
        let (changes, state) = self.tx.commit_point(published);
        for c in changes {
            self.replica.apply(&[Event::Change(c)])?;
            self.applied += 1;
        }
        let record = Record { seq, commit_id: id, ..self.record.clone() };
        let write = |conn: &Connection| write_record(conn, &record);
        self.replica.commit_with(&state, &write)?;
        tracing::debug!(seq, position = state.position, "committed");
        self.record = record;
        self.tx.committed(state);
        Ok(())
    }
}

/// `state` without the tables `source` does not follow: their messages
/// are not read (`--table`), so what the replica holds of them stops
/// being current; followed again later, they wait for a bootstrap.
fn unfollowed_forgotten(mut state: DeliveryState, source: &Source) -> DeliveryState {
    let gone: Vec<String> =
        state.tables.keys().filter(|t| !source.tables.iter().any(|s| s.desc.name == **t)).cloned().collect();
    for table in gone {
        tracing::warn!(table = %table, "this replica held the table, but it is not followed now: it waits for a bootstrap if followed again");
        state.forget(&table);
    }
    state
}

/// `source` restricted to `tables` (all when empty).
fn filtered(mut source: Source, tables: &[String]) -> Source {
    if !tables.is_empty() {
        source.tables.retain(|t| tables.iter().any(|n| *n == t.desc.name));
    }
    source
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").field("stream", &self.url.stream).field("replica", &self.replica_path).finish()
    }
}
