//! Events in Debezium's change-event envelope (the value of a Debezium
//! record with JSON schemas off), which Kafka Connect sinks, Flink CDC's
//! `debezium-json` format and many consumers read unchanged:
//!
//! ```json
//! {"before": null, "after": {"id": 1, "name": "ann"},
//!  "source": {"version": "0.1.0", "connector": "sqlite", "name": "app", "ts_ms": 1764500000000,
//!             "snapshot": "false", "db": "app", "table": "users", "sequence": "17", "seq": 17},
//!  "op": "c", "ts_ms": 1764500000012, "transaction": null}
//! ```
//!
//! `op` is `c`, `u`, `d`, or `r` for a bootstrap row (`snapshot` `true`,
//! and `last` on the last row of each table's bootstrap). `source.ts_ms`
//! is the change's [`crate::Change::time_ms`] (the bootstrap's time for
//! rows), the top-level `ts_ms` when the replicator processed it. Values:
//! INTEGER a JSON integer, REAL a JSON number that always has a `.` or an
//! exponent (so `1.0` stays apart from `1`), infinities the strings
//! `"Infinity"`/`"-Infinity"`, TEXT a string, BLOB its standard base64 in
//! a string (Debezium's `binary.handling.mode=bytes`), NULL `null`. With
//! tombstones on, a `null` follows each delete (a Kafka tombstone's
//! value; its key is the deleted row's, in the delete just before it).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value as Json, json};

use crate::event::{Change, Event, Row};
use crate::stats::now_ms;
use crate::value::Value;
use cdc_schema::Op;

/// A bootstrap row kept back: its table, columns, row and snapshot time.
#[derive(Debug)]
struct Held {
    table: Arc<str>,
    columns: Arc<[String]>,
    row: Row,
    ts_ms: i64,
}

/// Turns events into envelopes for one source database. Keeps one
/// bootstrap row back between batches, to mark the last of each table.
#[derive(Debug)]
pub struct Debezium {
    /// The logical name of the source (`source.name`) and its database
    /// name (`source.db`).
    name: String,
    tombstones: bool,
    /// The last bootstrap row of the previous batch, until the next batch
    /// says whether its table's bootstrap ended with it.
    held: Option<Held>,
    /// When the bootstrap in progress started (`source.ts_ms` of its rows).
    snapshot_ms: i64,
}

impl Debezium {
    /// Envelopes for the source `name` (the database file's stem is the
    /// usual choice); `tombstones` adds a `null` after each delete.
    pub fn new(name: &str, tombstones: bool) -> Debezium {
        Debezium { name: name.to_string(), tombstones, held: None, snapshot_ms: 0 }
    }

    /// The envelopes of `events`, in order; `None` is a tombstone.
    pub fn envelopes(&mut self, events: &[Event]) -> Vec<Option<Json>> {
        let mut out = Vec::with_capacity(events.len() + 1);
        for event in events {
            match event {
                Event::Bootstrap { table, columns, row } => {
                    self.release("true", &mut out);
                    let (table, columns, row) = (table.clone(), columns.clone(), row.clone());
                    self.held = Some(Held { table, columns, row, ts_ms: self.snapshot_ms });
                }
                Event::BootstrapEnd { .. } => self.release("last", &mut out),
                Event::BootstrapBegin { .. } => {
                    self.release("true", &mut out);
                    self.snapshot_ms = now_ms();
                }
                Event::Change(c) => {
                    self.release("true", &mut out);
                    out.push(Some(self.change(c)));
                    if self.tombstones && c.op == Op::Delete {
                        out.push(None);
                    }
                }
            }
        }
        out
    }

    /// Forgets a held row: the batch it came in was rolled back, and the
    /// engine sends it again.
    pub fn reset(&mut self) {
        self.held = None;
    }

    fn release(&mut self, snapshot: &str, out: &mut Vec<Option<Json>>) {
        if let Some(h) = self.held.take() {
            let source = self.source(&h.table, h.ts_ms, snapshot, None);
            out.push(Some(envelope(None, Some(image(&h.columns, &h.row)), source, "r")));
        }
    }

    fn change(&self, c: &Change) -> Json {
        let op = match c.op {
            Op::Insert => "c",
            Op::Update => "u",
            Op::Delete => "d",
        };
        let before = c.before.as_ref().map(|r| image(&c.columns, r));
        let after = c.after.as_ref().map(|r| image(&c.columns, r));
        envelope(before, after, self.source(&c.table, c.time_ms, "false", Some(c.seq)), op)
    }

    fn source(&self, table: &str, ts_ms: i64, snapshot: &str, seq: Option<i64>) -> Json {
        let mut source = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "connector": "sqlite",
            "name": self.name,
            "ts_ms": ts_ms,
            "snapshot": snapshot,
            "db": self.name,
            "table": table,
        });
        if let Some(seq) = seq {
            source["sequence"] = Json::String(seq.to_string());
            source["seq"] = Json::from(seq);
        }
        source
    }
}

fn envelope(before: Option<Json>, after: Option<Json>, source: Json, op: &str) -> Json {
    json!({
        "before": before,
        "after": after,
        "source": source,
        "op": op,
        "ts_ms": now_ms(),
        "transaction": null,
    })
}

fn image(columns: &[String], row: &Row) -> Json {
    let mut m = Map::with_capacity(columns.len());
    for (c, v) in columns.iter().zip(&row.values) {
        m.insert(c.clone(), value(v));
    }
    Json::Object(m)
}

/// A value in Debezium's JSON (schemas off).
pub fn value(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Integer(i) => Json::from(*i),
        Value::Real(r) if r.is_finite() => serde_json::Number::from_f64(*r).map_or(Json::Null, Json::Number),
        Value::Real(r) => Json::String(if *r > 0.0 { "Infinity" } else { "-Infinity" }.into()),
        Value::Text(t) => Json::String(t.clone()),
        Value::Blob(b) => Json::String(STANDARD.encode(b)),
    }
}
