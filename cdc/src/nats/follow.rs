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

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream::Stream};
use futures_util::StreamExt;
use rusqlite::{Connection, OptionalExtension, params};

use super::{COMMIT_TOKEN, FORMAT, KIND, LOG_ID, NatsUrl, SCHEMA_TOKEN, one_line};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::state::{DeliveryState, TableState};
use crate::target::{Source, Target};
use crate::targets::SqliteTarget;

/// The replica's record of the stream it follows.
pub const FOLLOW_TABLE: &str = "_cdc_follow";

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
    /// Set to stop: [`Follower::open`] (while it waits for a stream that
    /// does not exist yet) and [`Follower::run`] return at the next look.
    pub stop: Arc<AtomicBool>,
}

/// What the replica stored about the stream.
#[derive(Clone, Debug, Default)]
struct Record {
    stream: String,
    /// The stream's creation time (nanoseconds): a stream deleted and
    /// made again restarts its sequences.
    created: String,
    seq: u64,
    source: Option<String>,
    /// The `Nats-Msg-Id` of the commit message at `seq`: the stream must
    /// still hold it there, else its history changed under the replica.
    commit_id: Option<String>,
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
    /// The replica's delivery state as last committed.
    committed: DeliveryState,
    /// What the open transaction has made of it.
    working: DeliveryState,
    /// The source description in force (filtered to the followed tables).
    source: Option<Source>,
    /// Events applied or held since the last commit point.
    dirty: bool,
    /// The open transaction's changes, applied at its commit point.
    buffered: Vec<crate::event::Change>,
    /// The last stream sequence read in this run.
    last: u64,
    warned: HashSet<String>,
    stop: Arc<AtomicBool>,
    applied: u64,
    synced: Instant,
    /// Since when the server has not answered (said once).
    outage: Option<Instant>,
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
            return Err(Error::Config(
                "a follower reads the bincode or json payload; format=debezium is for other consumers".into(),
            ));
        }
        let super::Connection { rt, client, disconnected } = url.connect()?;
        // The context spawns its acknowledgement task on the runtime.
        let _in_runtime = rt.enter();
        let js = jetstream::ContextBuilder::new().timeout(super::REQUEST_TIMEOUT).build(client);
        // A follower started before its publisher waits for the stream
        // (said once); with `once` there is nothing to apply.
        let missing = super::missing_stream(url).to_string();
        let mut said = false;
        let stream = loop {
            match rt.block_on(super::ensure_stream(&js, url, false)) {
                Ok(stream) => break stream,
                Err(Error::Config(text)) if text == missing && !options.once => {
                    if !said {
                        tracing::warn!("{text}; waiting for a publisher to create it");
                        said = true;
                    }
                    if options.stop.load(Ordering::Relaxed) {
                        return Err(Error::Config(format!("{text}; stopped while waiting for it")));
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(Error::Unavailable { target, message }) => {
                    return Err(Error::Config(format!("NATS server {target}: {message}")));
                }
                Err(e) => return Err(e),
            }
        };
        if said {
            tracing::info!(stream = %url.stream, "the stream exists now");
        }
        let created = rt
            .block_on(stream.get_info())
            .map_err(|e| Error::Config(format!("NATS server {}: {}", url.redacted(), one_line(&e))))?
            .created
            .unix_timestamp_nanos()
            .to_string();
        if replica.is_dir() {
            return Err(Error::NotADatabase(replica.into()));
        }
        if let Some(dir) = replica.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(Error::Config(format!("target folder {} does not exist", dir.display())));
        }
        let mut target = SqliteTarget::open(replica)?;
        let record = read_record(target.connection())?;
        if let Some(r) = &record {
            if r.stream != url.stream {
                return Err(Error::Config(format!(
                    "replica {} follows stream {:?}, not {:?}; use another replica file",
                    replica.display(),
                    r.stream,
                    url.stream
                )));
            }
            if r.created != created && r.seq > 0 {
                return Err(Error::Config(format!(
                    "stream {:?} was deleted and created again since replica {} last read it (sequence {}): \
                     what it applied cannot be placed in the new stream; delete the replica to follow the new \
                     stream from its start",
                    url.stream,
                    replica.display(),
                    r.seq
                )));
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
            working: committed.clone(),
            committed,
            last: record.seq,
            record,
            source,
            dirty: false,
            buffered: Vec::new(),
            warned: HashSet::new(),
            stop: options.stop.clone(),
            disconnected,
            options,
            applied: 0,
            synced: Instant::now(),
            outage: None,
        })
    }

    /// A flag that stops [`Follower::run`] at the next message (or within
    /// a second when none comes).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
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
        let mut backoff = Duration::from_millis(100);
        while !self.stop.load(Ordering::Relaxed) {
            match self.read() {
                Ok(Outcome::Stopped | Outcome::CaughtUp) => break,
                Err(e) if e.is_transient() => {
                    self.rollback()?;
                    if self.outage.is_none() {
                        tracing::warn!(stream = %self.url.stream, "{e}; waiting, then reading again from the last commit point");
                        self.outage = Some(Instant::now());
                    }
                    std::thread::sleep(backoff.mul_f64(0.5 + fastrand::f64() / 2.0));
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    self.rollback()?;
                    return Err(e);
                }
            }
            if self.outage.is_none() {
                backoff = Duration::from_millis(100);
            }
        }
        self.rollback()?;
        self.replica.sync()?;
        Ok(self.applied)
    }

    fn rollback(&mut self) -> Result<()> {
        self.buffered.clear();
        self.replica.rollback()?;
        self.working = self.committed.clone();
        self.dirty = false;
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
                 bootstrap is gone wait for a new one (restart the publisher with --bootstrap always)"
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
            if self.stop.load(Ordering::Relaxed) {
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
            if let Some(since) = self.outage.take() {
                tracing::info!(stream = %self.url.stream, after = ?since.elapsed(), "the NATS server answers again");
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
        Err(Error::Config(format!(
            "stream {:?} no longer holds, at sequence {seq}, the commit point replica {} applied last: the server \
             lost acknowledged messages (a crash with JetStream's default sync_interval) or the stream was restored \
             from an older backup. To reseed: delete the replica, restart the publisher with --bootstrap always, \
             start this follower again",
            self.url.stream,
            self.replica_path.display()
        )))
    }

    /// Messages `from..first` are needed and gone.
    fn gap(&self, from: u64, first: u64) -> Error {
        Error::Config(format!(
            "stream {:?} no longer holds messages {from} to {} that replica {} needs (removed by the stream's \
             retention while this follower was behind); the replica is left as of sequence {}. To reseed it: \
             delete the replica, restart the publisher with --bootstrap always, start this follower again",
            self.url.stream,
            first - 1,
            self.replica_path.display(),
            from - 1
        ))
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
        let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let kind = header(KIND).unwrap_or_default();
        let text = || std::str::from_utf8(&message.payload).map_err(|_| self.bad(seq, "the payload is not UTF-8"));
        match kind.as_str() {
            "schema" => {
                let source: Source = serde_json::from_str(text()?).map_err(|_| self.bad(seq, "bad schema message"))?;
                let json = text()?.to_string();
                // Bootstrap events applied since the last commit point are
                // undone (a bootstrap sent again has new ids, so it comes
                // again whole); held changes stay: a publisher restarting
                // within the duplicate window sends them again under the
                // same ids, which the server drops.
                self.replica.rollback()?;
                self.working = self.committed.clone();
                self.dirty = false;
                let source = filtered(source, &self.options.tables);
                let state = unfollowed_forgotten(self.replica.open(&source)?.unwrap_or_default(), &source);
                self.committed = state.clone();
                self.working = state;
                self.source = Some(source);
                self.record.source = Some(json);
                Ok(false)
            }
            "commit" => {
                let published = DeliveryState::from_json(text()?).map_err(|_| self.bad(seq, "bad commit message"))?;
                if self.source.is_none() {
                    return Ok(false); // a new follower before the first schema message
                }
                self.commit(&published, seq, header("Nats-Msg-Id"))?;
                Ok(true)
            }
            "change" | "bootstrap-begin" | "bootstrap-row" | "bootstrap-end" => {
                let event = match header(FORMAT).as_deref() {
                    Some("json") => crate::json::event_from_json(text()?)?,
                    Some("bincode") => {
                        bincode::serde::decode_from_slice(&message.payload, bincode::config::standard())
                            .map_err(|e| self.bad(seq, &format!("bad bincode event: {e}")))?
                            .0
                    }
                    other => return Err(self.bad(seq, &format!("unknown payload format {other:?}"))),
                };
                let log_id = header(LOG_ID).unwrap_or_default();
                self.event(event, &log_id)?;
                Ok(false)
            }
            "debezium" => Err(Error::Config(format!(
                "stream {:?} carries Debezium envelopes (published with format=debezium); a follower needs \
                 format bincode or json",
                self.url.stream
            ))),
            _ => Err(self.bad(seq, &format!("unknown kind {kind:?}"))),
        }
    }

    fn bad(&self, seq: u64, why: &str) -> Error {
        Error::Config(format!("stream {:?}, message {seq}: {why}", self.url.stream))
    }

    /// One event: applied when the replica holds its table at a position
    /// before it (or is being reseeded), skipped otherwise.
    fn event(&mut self, event: Event, log_id: &str) -> Result<()> {
        let Some(source) = &self.source else { return Ok(()) };
        let table = event.table().to_string();
        if !source.tables.iter().any(|t| t.desc.name == table) {
            return Ok(());
        }
        if log_id != self.working.log_id {
            if !self.working.log_id.is_empty() {
                tracing::warn!(
                    from = %self.working.log_id, to = %log_id,
                    "the stream now carries another source log (a restored or different source): every table waits for its bootstrap"
                );
            }
            self.working = DeliveryState::empty(log_id);
            self.buffered.clear();
        }
        let event = match event {
            Event::Change(c) => {
                self.buffered.push(c);
                self.dirty = true;
                return Ok(());
            }
            other => other,
        };
        let apply = match &event {
            Event::BootstrapBegin { .. } => {
                self.working.forget(&table);
                self.working.set_seeding(&table);
                self.warned.remove(&table);
                true
            }
            Event::Bootstrap { .. } => self.working.table(&table) == Some(TableState::Seeding),
            Event::BootstrapEnd { .. } => {
                let seeding = self.working.table(&table) == Some(TableState::Seeding);
                if seeding {
                    // Live from the bootstrap's cut, which the commit
                    // point's state names; changes after this are past it.
                    self.working.forget(&table);
                    self.working.set_live(&table, 0);
                }
                seeding
            }
            Event::Change(_) => false, // held above
        };
        if let Event::BootstrapBegin { .. } = &event {
            // Changes of an earlier attempt at this table's bootstrap:
            // the new one supersedes them, and its changes follow it.
            self.buffered.retain(|c| *c.table != *table);
        }
        if apply {
            self.replica.apply(std::slice::from_ref(&event))?;
            self.dirty = true;
            self.applied += 1;
        }
        Ok(())
    }

    /// The changes of the open transaction, in log order. They are held
    /// until its commit point because the stream may carry them out of
    /// order: when the server goes away mid-transaction, messages sent on
    /// the lost connection are gone while later ones, queued by the client
    /// and sent on the next connection, are stored; the publisher then
    /// sends the whole transaction again, and only the lost ones are new.
    /// Sorted by log position (a change sent twice is one), each is applied
    /// only to a table the replica holds at a position before it.
    fn apply_buffered(&mut self, upto: i64) -> Result<()> {
        let mut changes = std::mem::take(&mut self.buffered);
        // The latest copy of a position first (after a rewound source, the
        // position's change sent last is the current one), then in order.
        changes.reverse();
        changes.sort_by_key(|c| c.seq);
        changes.dedup_by_key(|c| c.seq);
        // Changes past this commit point belong to a later one (sent
        // before a failure, and not sent again by the server's duplicate
        // window): held for it.
        let later = changes.partition_point(|c| c.seq <= upto);
        self.buffered = changes.split_off(later);
        for c in changes {
            let table = c.table.to_string();
            match self.working.live_position(&table) {
                Some(p) if c.seq > p => {
                    self.working.set_live(&table, c.seq);
                    self.replica.apply(&[Event::Change(c)])?;
                    self.applied += 1;
                }
                Some(_) => {} // sent again; already applied
                None => {
                    if self.working.table(&table).is_none() && self.warned.insert(table.clone()) {
                        tracing::warn!(
                            table = %table,
                            "the replica does not hold this table and the stream holds no bootstrap of it from here: \
                             its changes are skipped until one comes (restart the publisher with --bootstrap always)"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// A commit point: the replica's state is the publisher's for what
    /// this replica holds (a table it skipped stays unheld), stored with
    /// the stream sequence in one transaction.
    fn commit(&mut self, published: &DeliveryState, seq: u64, id: Option<String>) -> Result<()> {
        self.apply_buffered(published.position)?;
        let mut state = self.working.clone();
        if state.log_id != published.log_id {
            state = DeliveryState::empty(&published.log_id);
        }
        state.position = published.position;
        state.anchor = published.anchor;
        state.layout = published.layout.clone();
        let tables: Vec<String> = state.tables.keys().cloned().collect();
        for table in tables {
            if let (Some(_), Some(at)) = (state.live_position(&table), published.live_position(&table)) {
                state.set_live(&table, at);
            }
        }
        let record = Record { seq, commit_id: id, ..self.record.clone() };
        let write = |conn: &Connection| write_record(conn, &record);
        self.replica.commit_with(&state, &write)?;
        tracing::debug!(seq, position = state.position, "committed");
        self.record = record;
        self.committed = state.clone();
        self.working = state;
        self.dirty = !self.buffered.is_empty();
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

/// `replica-<hash of host and replica path>`: one durable consumer per
/// replica file and host.
fn default_durable(replica: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let path = crate::lock::resolved(replica);
    let key = format!("{}\0{}", host.trim(), path.display());
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("replica-{hash:016x}")
}

fn read_record(conn: &Connection) -> Result<Option<Record>> {
    let exists: bool =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [FOLLOW_TABLE], |r| {
            r.get::<_, i64>(0).map(|n| n > 0)
        })?;
    if !exists {
        return Ok(None);
    }
    let sql = format!("SELECT stream, stream_created, stream_seq, source, commit_id FROM {FOLLOW_TABLE} WHERE id = 1");
    Ok(conn
        .query_row(&sql, [], |r| {
            Ok(Record {
                stream: r.get(0)?,
                created: r.get(1)?,
                seq: r.get::<_, i64>(2)? as u64,
                source: r.get(3)?,
                commit_id: r.get(4)?,
            })
        })
        .optional()?)
}

fn write_record(conn: &Connection, r: &Record) -> Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {FOLLOW_TABLE}(id INTEGER PRIMARY KEY CHECK (id = 1), stream TEXT NOT NULL, \
         stream_created TEXT NOT NULL, stream_seq INTEGER NOT NULL, source TEXT, commit_id TEXT, updated_at TEXT)"
    ))?;
    conn.prepare_cached(&format!(
        "INSERT INTO {FOLLOW_TABLE}(id, stream, stream_created, stream_seq, source, commit_id, updated_at) \
         VALUES(1, ?1, ?2, ?3, ?4, ?5, CURRENT_TIMESTAMP) ON CONFLICT(id) DO UPDATE SET stream = excluded.stream, \
         stream_created = excluded.stream_created, stream_seq = excluded.stream_seq, source = excluded.source, \
         commit_id = excluded.commit_id, updated_at = excluded.updated_at"
    ))?
    .execute(params![r.stream, r.created, r.seq as i64, r.source, r.commit_id])?;
    Ok(())
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").field("stream", &self.url.stream).field("replica", &self.replica_path).finish()
    }
}
