//! `kafka://HOST:PORT/PREFIX` as a target: every change a record on its
//! table's topic, counted as delivered only once the broker acknowledged
//! it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde_json::{Map, Value as Json, json};

use super::{KIND, KafkaUrl, LOG_ID, SEQ, TIME_MS};
use crate::debezium::Debezium;
use crate::error::{Error, Result};
use crate::event::{Change, Event, Row};
use crate::state::DeliveryState;
use crate::target::{Source, Target};
use cdc_schema::Op;

/// How long connecting, a metadata request or a topic's creation may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of the records handed to the client since the producer was
/// made (librdkafka reports deliveries on its own thread): how many are
/// still waiting for the broker, and the first that failed.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<KafkaError>>,
    waiting: Mutex<u64>,
    settled: std::sync::Condvar,
}

impl Deliveries {
    fn sent(&self) {
        *self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
    }

    /// A record settled (acknowledged or failed), or refused by the
    /// client (no report will come for it).
    fn unsent(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *waiting = waiting.saturating_sub(1);
        if *waiting == 0 {
            self.settled.notify_all();
        }
    }

    /// Waits until every record sent was acknowledged or failed; `false`
    /// when `timeout` passed first. (rdkafka's own `flush` looks again
    /// only every 100 ms: a tenth of a second added to every commit.)
    fn wait_settled(&self, timeout: Duration) -> bool {
        let waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (waiting, _) = self
            .settled
            .wait_timeout_while(waiting, timeout, |n| *n > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *waiting == 0
    }
}

impl ClientContext for Deliveries {
    /// librdkafka's own log (reconnects, broker state), below the
    /// replicator's: outages are said once by the engine. It never holds
    /// the SASL password.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "rdkafka", ?level, fac, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "rdkafka", %error, "{reason}");
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            failed.get_or_insert_with(|| e.clone());
        }
        self.unsent();
    }
}

type Client = ThreadedProducer<Deliveries>;

/// What the target knows of a followed table.
struct Plan {
    topic: String,
    /// The topic's partitions (a bootstrap's truncate record goes to each).
    partitions: i32,
    /// The primary key's columns, in key order; empty: keyed by rowid.
    key: Vec<String>,
    /// The name the rowid key goes by (`rowid`, unless a column has it).
    rowid: &'static str,
}

/// Kafka topics as a target, one per table, in Debezium's layout (see
/// [`crate::kafka`]).
///
/// It keeps no delivery state of its own: the engine keeps it in the
/// source's consumer record, written after [`Target::commit`] returned,
/// that is after the broker acknowledged every record of the commit. A
/// replicator killed before that sends those records again (at least
/// once, each change with its `cdc-seq`). With `transactional_id`, each
/// source commit is one Kafka transaction: a `read_committed` consumer
/// never sees part of one, nor what a killed replicator left unfinished.
pub struct KafkaTarget {
    url: KafkaUrl,
    producer: Client,
    context: Arc<Deliveries>,
    admin: AdminClient<DefaultClientContext>,
    /// The source's name in the envelopes (`source.name`, `source.db`).
    name: String,
    debezium: Debezium,
    log_id: String,
    plans: HashMap<String, Plan>,
    /// Keys of bootstrap rows handed to `debezium`, which holds the last
    /// one back (to mark the end of its table): released in order.
    held_keys: VecDeque<Option<Vec<u8>>>,
    /// A Kafka transaction is open (with `transactional_id`).
    in_transaction: bool,
    /// What the engine opened it with, to check the topics again.
    source: Option<Source>,
    /// Tables whose topic was found missing, not yet told ([`Target::lost`]).
    lost: Vec<String>,
    /// Tables whose topic is missing and not made again yet: only their
    /// bootstrap makes it.
    missing: std::collections::HashSet<String>,
    /// Check the topics before the next record (after a failure: one may
    /// be gone).
    recheck: bool,
    /// Tables already warned about for their other unique keys.
    warned: std::collections::HashSet<String>,
    /// Records were handed to the client since the last commit.
    sent: bool,
    /// Where a change's envelope is written (librdkafka copies it).
    buffer: Vec<u8>,
    /// A failure left the producer in doubt: made again before the next
    /// record.
    broken: bool,
}

impl KafkaTarget {
    /// Connects (a broker must answer within 10 s) and, with
    /// `transactional_id`, fences any earlier producer of that id. Topics
    /// are made when the engine opens the target.
    pub fn connect(url: &KafkaUrl, source_name: &str) -> Result<KafkaTarget> {
        let unreachable = |e: KafkaError| match e {
            // librdkafka refused its settings (an `rdkafka.` one, say).
            KafkaError::ClientCreation(why) => {
                Error::InvalidSetting(format!("bad Kafka settings in {}: {}", url.redacted(), one_line(&why)))
            }
            e => Error::Unreachable { server: url.redacted(), message: one_line(&e) },
        };
        let (producer, context) = producer(url).map_err(unreachable)?;
        let admin = config(url).create().map_err(unreachable)?;
        producer.client().fetch_metadata(None, REQUEST_TIMEOUT).map_err(unreachable)?;
        if url.transactional_id.is_some() {
            producer.init_transactions(REQUEST_TIMEOUT).map_err(unreachable)?;
        }
        Ok(KafkaTarget {
            url: url.clone(),
            producer,
            context,
            admin,
            name: source_name.to_string(),
            debezium: Debezium::new(source_name, false),
            log_id: String::new(),
            plans: HashMap::new(),
            held_keys: VecDeque::new(),
            in_transaction: false,
            source: None,
            lost: Vec::new(),
            missing: Default::default(),
            recheck: false,
            warned: Default::default(),
            sent: false,
            buffer: Vec::new(),
            broken: false,
        })
    }

    fn unavailable(&self, what: &str, e: &impl std::fmt::Display) -> Error {
        Error::Unavailable { target: self.url.redacted(), message: format!("{what}: {}", one_line(e)) }
    }

    /// A failed delivery or request as the engine's kind of error: refused
    /// for good (a record too large, no authorisation) or an outage.
    fn failure(&self, what: &str, e: &KafkaError) -> Error {
        use RDKafkaErrorCode::*;
        let refused = matches!(
            e.rdkafka_error_code(),
            Some(
                MessageSizeTooLarge
                    | InvalidMessageSize
                    | MessageBatchTooLarge
                    | TopicAuthorizationFailed
                    | ClusterAuthorizationFailed
                    | TransactionalIdAuthorizationFailed
                    | SaslAuthenticationFailed
                    | Authentication
                    | InvalidTopic
                    | PolicyViolation
                    | InvalidReplicationFactor
                    // Another producer took this transactional id:
                    // taking it back would fence it in turn, forever.
                    | Fenced
                    | ProducerFenced
            )
        );
        if refused {
            Error::Rejected { target: self.url.redacted(), message: format!("{what}: {}", one_line(e)) }
        } else {
            self.unavailable(what, e)
        }
    }

    /// Plans every followed table and looks at which topics exist. A table
    /// whose topic is missing is told lost ([`Target::lost`]) and its topic
    /// made only when its bootstrap begins ([`Self::make_topics`]): a topic
    /// made before would be empty, and a run that ended before the
    /// bootstrap would leave the next one taking it for held. The schema
    /// change topic is made here; found missing, every table counts as
    /// lost (their schema records come with their bootstraps). Two tables
    /// whose names give the same topic are refused: their records would
    /// mix.
    fn check_topics(&mut self, source: &Source) -> Result<()> {
        let mut plans = HashMap::new();
        let mut owners: HashMap<String, &str> = HashMap::new();
        for t in &source.tables {
            let topic = self.url.topic(&t.desc.name);
            if let Some(other) = owners.insert(topic.clone(), &t.desc.name) {
                return Err(Error::Rejected {
                    target: self.url.redacted(),
                    message: format!(
                        "tables {other:?} and {:?} would share the topic {topic} (a topic name keeps only letters, \
                         digits, '.', '_' and '-'); leave one of them out with --table",
                        t.desc.name
                    ),
                });
            }
            let key: Vec<String> = t.desc.key_columns().iter().map(|c| c.name.to_string()).collect();
            // SQLite's `INSERT OR REPLACE` evicts through every unique key
            // without firing a delete trigger: through the key, the create
            // that follows is the record that replaces it; through any
            // other, no record says the evicted row is gone.
            let others = t.unique_keys.as_ref().map_or(0, Vec::len).saturating_sub(usize::from(!key.is_empty()));
            if others > 0 && self.warned.insert(t.desc.name.to_string()) {
                tracing::warn!(table = %t.desc.name,
                    "this table has a unique key besides its primary key: a row the source's INSERT OR REPLACE evicts through it gets no delete record; consumers apply creates as upserts through the table's unique keys (see docs/kafka.md)");
            }
            let rowid = t.desc.rowid_alias().unwrap_or("rowid");
            plans.insert(t.desc.name.to_string(), Plan { topic, partitions: self.url.partitions, key, rowid });
        }
        let metadata = self
            .producer
            .client()
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|e| self.failure("listing topics", &e))?;
        let existing: HashMap<&str, i32> =
            metadata.topics().iter().map(|t| (t.name(), t.partitions().len() as i32)).collect();
        let mut missing = std::collections::HashSet::new();
        for (table, plan) in plans.iter_mut() {
            match existing.get(plan.topic.as_str()) {
                Some(&n) if n > 0 => plan.partitions = n,
                _ => {
                    missing.insert(table.clone());
                }
            }
        }
        if !existing.contains_key(self.url.prefix.as_str()) {
            self.make_topics(std::slice::from_ref(&self.url.prefix))?;
            missing.extend(plans.keys().cloned());
        }
        for table in &missing {
            if !self.lost.contains(table) {
                self.lost.push(table.clone());
            }
        }
        self.plans = plans;
        self.missing = missing;
        Ok(())
    }

    /// Makes topics (those that exist already are left as they are).
    fn make_topics(&self, names: &[String]) -> Result<()> {
        // -1: the broker's default replication factor.
        let replication = self.url.replication.unwrap_or(-1);
        let topics: Vec<NewTopic> =
            names.iter().map(|t| NewTopic::new(t, self.url.partitions, TopicReplication::Fixed(replication))).collect();
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = futures_executor::block_on(self.admin.create_topics(&topics, &options))
            .map_err(|e| self.failure("creating topics", &e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(self.failure(&format!("creating topic {topic}"), &KafkaError::AdminOp(code)));
                }
            }
        }
        Ok(())
    }

    /// `table`'s topic, when it is there to take records: one found gone
    /// is made again only by its table's bootstrap.
    fn topic_of(&self, table: &str) -> Result<String> {
        if self.missing.contains(table) {
            return Err(Error::Unavailable {
                target: self.url.redacted(),
                message: format!("the topic of table {table:?} is gone; it is made again with the table's bootstrap"),
            });
        }
        Ok(self.plan(table)?.topic.clone())
    }

    /// The record key of `row` of `table` (see [`crate::kafka`]).
    ///
    /// A rowid table's primary key that is not its rowid takes NULLs, as
    /// many rows as like (SQLite's old quirk): such a row is keyed by its
    /// rowid, what tells it from the others.
    fn key(&self, table: &str, columns: &[String], row: &Row) -> Result<Option<Vec<u8>>> {
        let plan = self.plan(table)?;
        let mut key = Map::new();
        for name in &plan.key {
            let value = columns.iter().position(|c| c == name).and_then(|i| row.values.get(i));
            key.insert(name.clone(), value.map_or(Json::Null, crate::debezium::value));
        }
        if key.is_empty() || key.values().any(Json::is_null) {
            let Some(rowid) = row.rowid else { return Ok(Some(Json::Object(key).to_string().into_bytes())) };
            key = Map::from_iter([(plan.rowid.to_string(), Json::from(rowid))]);
        }
        Ok(Some(Json::Object(key).to_string().into_bytes()))
    }

    fn plan(&self, table: &str) -> Result<&Plan> {
        self.plans.get(table).ok_or_else(|| Error::Target {
            target: self.url.redacted(),
            message: format!("no description of table {table:?} was given before its events"),
        })
    }

    fn headers(&self, kind: &str, seq: Option<i64>, time_ms: Option<i64>) -> OwnedHeaders {
        let mut h = OwnedHeaders::new_with_capacity(4)
            .insert(Header { key: LOG_ID, value: Some(self.log_id.as_bytes()) })
            .insert(Header { key: KIND, value: Some(kind.as_bytes()) });
        if let Some(seq) = seq {
            h = h.insert(Header { key: SEQ, value: Some(seq.to_string().as_bytes()) });
        }
        if let Some(ms) = time_ms {
            h = h.insert(Header { key: TIME_MS, value: Some(ms.to_string().as_bytes()) });
        }
        h
    }

    /// Hands one record to the client, waiting while its queue is full.
    fn send(&mut self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, headers: OwnedHeaders) -> Result<()> {
        self.send_to(topic, None, key, value, headers)
    }

    /// [`Self::send`] to `partition`, or the one the key hashes to.
    fn send_to(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> Result<()> {
        if self.url.transactional_id.is_some() && !self.in_transaction {
            self.producer.begin_transaction().map_err(|e| self.failure("beginning a transaction", &e))?;
            self.in_transaction = true;
        }
        self.sent = true;
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(headers);
        record.key = key;
        record.payload = value;
        record.partition = partition;
        loop {
            // Counted before: its delivery report may come before `send`
            // returns.
            self.context.sent();
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    self.context.unsent();
                    self.check_deliveries()?;
                    record = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    self.context.unsent();
                    return Err(self.failure("producing", &e));
                }
            }
        }
    }

    /// The first failed delivery since the producer was made, if any.
    fn check_deliveries(&self) -> Result<()> {
        let failed = self.context.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match failed {
            Some(e) => Err(self.failure("delivering", &e)),
            None => Ok(()),
        }
    }

    /// Envelopes `dbz` made of one event, each with its key: a bootstrap
    /// row's from the queue of held keys, any other's `key`; a tombstone
    /// after each delete.
    fn publish(
        &mut self,
        envelopes: Vec<Option<Json>>,
        key: Option<&[u8]>,
        headers: (Option<i64>, Option<i64>),
    ) -> Result<()> {
        for envelope in envelopes.into_iter().flatten() {
            let table = envelope["source"]["table"].as_str().unwrap_or_default().to_string();
            let topic = self.topic_of(&table)?;
            let value = envelope.to_string().into_bytes();
            if envelope["op"] == "r" {
                let key = self.held_keys.pop_front().flatten();
                let h = self.headers("bootstrap", None, None);
                self.send(&topic, key.as_deref(), Some(&value), h)?;
                continue;
            }
            let h = self.headers("change", headers.0, headers.1);
            self.send(&topic, key, Some(&value), h)?;
            if envelope["op"] == "d" {
                let h = self.headers("change", headers.0, headers.1);
                self.send(&topic, key, None, h)?;
            }
        }
        Ok(())
    }

    fn publish_change(&mut self, c: &Change) -> Result<()> {
        let before = c.before.as_ref().map(|r| self.key(&c.table, &c.columns, r)).transpose()?.flatten();
        let after = c.after.as_ref().map(|r| self.key(&c.table, &c.columns, r)).transpose()?.flatten();
        let stamp = (Some(c.seq), Some(c.time_ms));
        if c.op == Op::Update && before != after {
            // A new key is another row to a consumer that keys by it.
            let delete = Change { op: Op::Delete, after: None, ..c.clone() };
            let insert = Change { op: Op::Insert, before: None, ..c.clone() };
            self.send_change(&delete, before.as_deref(), stamp)?;
            return self.send_change(&insert, after.as_deref(), stamp);
        }
        self.send_change(c, after.as_deref().or(before.as_deref()), stamp)
    }

    /// One change's record under `key` (its envelope written straight into
    /// a reused buffer), and a tombstone after a delete.
    fn send_change(&mut self, c: &Change, key: Option<&[u8]>, stamp: (Option<i64>, Option<i64>)) -> Result<()> {
        if self.debezium.holds_row() {
            let envelopes = self.debezium.envelopes(std::slice::from_ref(&Event::Change(c.clone())));
            return self.publish(envelopes, key, stamp);
        }
        let topic = self.topic_of(&c.table)?;
        let mut value = std::mem::take(&mut self.buffer);
        value.clear();
        let written = self.debezium.write_change(c, &mut value).map_err(|e| Error::Encode(e.to_string()));
        let h = self.headers("change", stamp.0, stamp.1);
        let sent = written.and_then(|()| self.send(&topic, key, Some(&value), h));
        self.buffer = value;
        sent?;
        if c.op == Op::Delete {
            let h = self.headers("change", stamp.0, stamp.1);
            self.send(&topic, key, None, h)?;
        }
        Ok(())
    }

    fn publish_event(&mut self, event: &Event) -> Result<()> {
        match event {
            Event::Change(c) => self.publish_change(c),
            Event::Schema(_) => {
                let Some(record) = self.debezium.schema_change(event) else { return Ok(()) };
                let key = json!({"databaseName": self.name}).to_string().into_bytes();
                let h = self.headers("schema", None, None);
                let topic = self.url.prefix.clone();
                self.send(&topic, Some(&key), Some(record.to_string().as_bytes()), h)
            }
            Event::Bootstrap { table, columns, row } => {
                let key = self.key(table, columns, row)?;
                self.held_keys.push_back(key);
                let envelopes = self.debezium.envelopes(std::slice::from_ref(event));
                self.publish(envelopes, None, (None, None))
            }
            Event::BootstrapBegin { table, .. } => {
                let envelopes = self.debezium.envelopes(std::slice::from_ref(event));
                self.publish(envelopes, None, (None, None))?;
                // Debezium's truncate, to every partition: a consumer drops
                // what it holds of the table (from that partition), as the
                // snapshot that follows may not have every row it had.
                let value = self.debezium.truncate(table).to_string().into_bytes();
                let (topic, partitions) = {
                    let plan = self.plan(table)?;
                    (plan.topic.clone(), plan.partitions)
                };
                if self.missing.contains(table.as_ref()) {
                    self.make_topics(std::slice::from_ref(&topic))?;
                    self.missing.remove(table.as_ref());
                }
                for partition in 0..partitions {
                    let h = self.headers("bootstrap-begin", None, None);
                    self.send_to(&topic, Some(partition), Some(b"{}"), Some(&value), h)?;
                }
                Ok(())
            }
            other => {
                let envelopes = self.debezium.envelopes(std::slice::from_ref(other));
                self.publish(envelopes, None, (None, None))
            }
        }
    }

    /// Before any record: a producer made again after a failure, the
    /// topics checked again (one may be gone: made again, and its table
    /// told lost so the engine bootstraps it).
    fn ready(&mut self) -> Result<()> {
        if self.broken {
            self.remake()?;
        }
        if self.recheck
            && let Some(source) = self.source.take()
        {
            let checked = self.check_topics(&source);
            self.source = Some(source);
            checked?;
            self.recheck = false;
        }
        Ok(())
    }

    /// A producer made again after a failure: a clean slate (queued
    /// records purged, a fresh idempotence sequence, an earlier
    /// transactional producer fenced).
    fn remake(&mut self) -> Result<()> {
        let unavailable = |e: KafkaError| Error::Unavailable { target: self.url.redacted(), message: one_line(&e) };
        let (producer, context) = producer(&self.url).map_err(unavailable)?;
        self.producer = producer;
        self.context = context;
        if self.url.transactional_id.is_some() {
            self.producer.init_transactions(REQUEST_TIMEOUT).map_err(|e| self.failure("starting transactions", &e))?;
        }
        self.broken = false;
        Ok(())
    }
}

/// The client's settings from the address.
fn config(url: &KafkaUrl) -> ClientConfig {
    let mut c = ClientConfig::new();
    // linger: librdkafka's 5 ms would be added to every commit's latency
    // (the engine waits for the acknowledgements of each commit anyway).
    c.set("bootstrap.servers", &url.servers).set("client.id", "sqlite-cdc").set("linger.ms", "1");
    for (name, value) in &url.settings {
        c.set(*name, value);
    }
    if let Some((user, password)) = &url.credentials {
        c.set("sasl.username", user).set("sasl.password", password);
    }
    for (name, value) in &url.extra {
        c.set(name, value);
    }
    c
}

fn producer(url: &KafkaUrl) -> std::result::Result<(Client, Arc<Deliveries>), KafkaError> {
    let mut c = config(url);
    c.set("message.timeout.ms", url.timeout.as_millis().to_string());
    if let Some(id) = &url.transactional_id {
        c.set("transactional.id", id);
        // librdkafka wants it at least the message timeout; a bootstrap is
        // one transaction, so more may be needed (`rdkafka.` sets it).
        if !url.extra.iter().any(|(name, _)| name == "transaction.timeout.ms") {
            c.set("transaction.timeout.ms", url.timeout.max(Duration::from_secs(60)).as_millis().to_string());
        }
    }
    let context = Deliveries::default();
    let producer: Client = c.create_with_context(context)?;
    let context = producer.context().clone();
    Ok((producer, context))
}

/// An error's text on one line.
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Target for KafkaTarget {
    fn open(&mut self, source: &Source) -> Result<Option<DeliveryState>> {
        self.rollback()?;
        self.ready()?;
        self.log_id = source.log_id.clone();
        self.check_topics(source)?;
        self.source = Some(source.clone());
        Ok(None)
    }

    fn lost(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lost)
    }

    fn apply(&mut self, events: &[Event]) -> Result<()> {
        self.ready()?;
        self.check_deliveries()?;
        events.iter().try_for_each(|e| self.publish_event(e))
    }

    /// Waits until the broker acknowledged every record (or commits the
    /// transaction): only then may the engine record the position.
    fn commit(&mut self, _state: &DeliveryState) -> Result<()> {
        self.ready()?;
        if !self.sent {
            return Ok(());
        }
        if self.in_transaction {
            self.producer
                .commit_transaction(self.url.timeout + REQUEST_TIMEOUT)
                .map_err(|e| self.failure("committing the transaction", &e))?;
            self.in_transaction = false;
        } else if !self.context.wait_settled(self.url.timeout + REQUEST_TIMEOUT) {
            return Err(self.unavailable("waiting for acknowledgements", &"timed out"));
        }
        self.check_deliveries()?;
        self.sent = false;
        Ok(())
    }

    /// Records sent since the last commit may be in the topics already
    /// (outside a transaction); the engine sends them again from the last
    /// commit point. The producer is made again before the next record.
    fn rollback(&mut self) -> Result<()> {
        if self.in_transaction {
            let _ = self.producer.abort_transaction(REQUEST_TIMEOUT);
            self.in_transaction = false;
        }
        let failed = self.context.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some();
        if std::mem::take(&mut self.sent) || failed {
            self.broken = true;
            self.recheck = self.source.is_some();
        }
        self.debezium.reset();
        self.held_keys.clear();
        // Now, so that a topic found gone is told before the next plan
        // (while the broker is down this fails, and is tried again before
        // the next record).
        let _ = self.ready();
        Ok(())
    }
}
