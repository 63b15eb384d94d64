//! Kafka (feature `kafka`): publish a source's changes to Kafka topics in
//! Debezium's record layout, where Kafka Connect sinks, Flink CDC and
//! Debezium's own consumers already read.
//!
//! Each followed table has a topic `PREFIX.TABLE` ([`KafkaUrl::topic`]),
//! created on first use with [`KafkaUrl::partitions`] partitions. Its
//! records:
//!
//! - key: the row's primary key as JSON with schemas off (`{"id": 7}`),
//!   values as in the envelope; a table without a declared key is keyed by
//!   its rowid (`{"rowid": 7}`), which is what identifies its rows;
//! - value: the Debezium envelope ([`crate::debezium`]), bootstrap rows as
//!   `op` `r`; a `null` value (a tombstone, for log compaction) after each
//!   delete; an update that changes the key is a delete of the old key, its
//!   tombstone and a create of the new one, as Debezium sends it;
//! - headers: `cdc-log-id` (the source log's id), `cdc-kind` (`change` or
//!   `bootstrap`), `cdc-seq` (a change's log position: with the log id, a
//!   consumer drops what it already applied after a resend) and
//!   `cdc-time-ms`.
//!
//! Debezium's schema change records go to the topic `PREFIX`.
//!
//! The client is librdkafka (through `rdkafka`, built from source with the
//! crate): the reference implementation every Confluent client shares,
//! with the idempotent producer, transactions, TLS and SASL. Its producer
//! is synchronous to use (its own threads do the I/O), so no async runtime
//! comes with it.

mod publish;
mod url;

pub use publish::KafkaTarget;
pub use url::{DEFAULT_TIMEOUT, KafkaUrl};

/// The header with the source log's id.
pub const LOG_ID: &str = "cdc-log-id";
/// The header naming the record's kind: `change` or `bootstrap`.
pub const KIND: &str = "cdc-kind";
/// The header with a change's log position.
pub const SEQ: &str = "cdc-seq";
/// The header with the time the change was seen (Unix milliseconds).
pub const TIME_MS: &str = "cdc-time-ms";
