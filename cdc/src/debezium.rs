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
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value as Json, json};

use crate::event::{Change, Event, Row, SchemaObject};
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
                // Not a change event: see [`Debezium::schema_change`].
                Event::Schema(_) => {}
            }
        }
        out
    }

    /// Debezium's schema change record for `event` when it is an
    /// [`Event::Schema`] (the value Debezium writes to its schema change
    /// topic, with JSON schemas off): `ddl` the `CREATE TABLE` or `CREATE
    /// VIEW` as stored with the table's indexes (the definition now, not
    /// the statement that was run, which SQLite does not keep; or a
    /// `DROP` statement), and one `tableChanges`
    /// entry of `type` `CREATE` (a table's definition before its
    /// bootstrap, which follows every change of its columns), `ALTER`
    /// (its indexes changed) or `DROP`, with the columns and key. Views
    /// have `ddl` only. Change streams never carry these (a consumer of
    /// envelopes would not know them): a target with a place for them
    /// sends them there (NATS: the `STREAM.$ddl` subject).
    pub fn schema_change(&self, event: &Event) -> Option<Json> {
        let Event::Schema(s) = event else { return None };
        let keyword = match s.object {
            SchemaObject::Table => "TABLE",
            SchemaObject::View => "VIEW",
        };
        let quoted = format!("\"{}\"", s.name.replace('"', "\"\""));
        let ddl = match &s.sql {
            Some(sql) => std::iter::once(sql.clone()).chain(s.indexes.iter().cloned()).collect::<Vec<_>>().join(";\n"),
            None => format!("DROP {keyword} {quoted}"),
        };
        let kind = match (&s.sql, s.object) {
            (None, _) => "DROP",
            (Some(_), SchemaObject::Table) if !s.bootstrap => "ALTER",
            _ => "CREATE",
        };
        let table = s.sql.as_ref().filter(|_| s.object == SchemaObject::Table).map(|_| {
            let mut key: Vec<&cdc_schema::ColumnDesc> = s.columns.iter().filter(|c| c.primary_key > 0).collect();
            key.sort_by_key(|c| c.primary_key);
            // SQLite lets a NULL into a key column unless the key is the
            // rowid (a lone INTEGER PRIMARY KEY) or the table is WITHOUT
            // ROWID.
            let key_not_null = s.without_rowid || (key.len() == 1 && key[0].decl_type.eq_ignore_ascii_case("INTEGER"));
            let columns: Vec<Json> = s
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let optional = !(c.not_null || (c.primary_key > 0 && key_not_null));
                    json!({"name": c.name, "typeName": c.decl_type, "position": i + 1,
                           "optional": optional, "generated": c.generated})
                })
                .collect();
            json!({"primaryKeyColumnNames": key.iter().map(|c| &c.name).collect::<Vec<_>>(), "columns": columns})
        });
        let changes = match s.object {
            SchemaObject::Table => {
                vec![
                    json!({"type": kind, "id": format!("\"{}\".{quoted}", self.name.replace('"', "\"\"")), "table": table}),
                ]
            }
            SchemaObject::View => Vec::new(),
        };
        Some(json!({
            // A table's definition before its bootstrap is part of it.
            "source": self.source(&s.name, now_ms(), if s.bootstrap { "true" } else { "false" }, None),
            "ts_ms": now_ms(),
            "databaseName": self.name,
            "schemaName": "main",
            "ddl": ddl,
            "tableChanges": changes,
        }))
    }

    /// A change's envelope written straight into `out`: what
    /// [`Self::envelopes`] gives for it, without a `serde_json::Value` in
    /// between (the Kafka target's hot path: building the value was most
    /// of its time per change). Only while no bootstrap row is held back
    /// ([`Self::holds_row`]): that one comes first.
    pub fn write_change(&self, c: &Change, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, &ChangeEnvelope { dbz: self, c })
    }

    /// Whether a bootstrap row is held back, to be released (as `r`)
    /// before the next envelope.
    pub fn holds_row(&self) -> bool {
        self.held.is_some()
    }

    /// A truncate record of `table` (Debezium's `op` `t`, no images): what
    /// a target sends when a table's bootstrap begins, so a consumer drops
    /// rows the new snapshot may no longer have.
    pub fn truncate(&self, table: &str) -> Json {
        envelope(None, None, self.source(table, now_ms(), "true", None), "t")
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
        let op = op_code(c.op);
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

/// [`Debezium::change`], serialised without building it.
struct ChangeEnvelope<'a> {
    dbz: &'a Debezium,
    c: &'a Change,
}

impl Serialize for ChangeEnvelope<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.c;
        let image = |r| ImageOf(&c.columns, r);
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("before", &c.before.as_ref().map(image))?;
        m.serialize_entry("after", &c.after.as_ref().map(image))?;
        m.serialize_entry("source", &SourceOf { dbz: self.dbz, c })?;
        m.serialize_entry("op", op_code(c.op))?;
        m.serialize_entry("ts_ms", &now_ms())?;
        m.serialize_entry("transaction", &())?;
        m.end()
    }
}

/// [`Debezium::source`] of a change, serialised without building it.
struct SourceOf<'a> {
    dbz: &'a Debezium,
    c: &'a Change,
}

impl Serialize for SourceOf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(9))?;
        m.serialize_entry("version", env!("CARGO_PKG_VERSION"))?;
        m.serialize_entry("connector", "sqlite")?;
        m.serialize_entry("name", &self.dbz.name)?;
        m.serialize_entry("ts_ms", &self.c.time_ms)?;
        m.serialize_entry("snapshot", "false")?;
        m.serialize_entry("db", &self.dbz.name)?;
        m.serialize_entry("table", &*self.c.table)?;
        m.serialize_entry("sequence", &self.c.seq.to_string())?;
        m.serialize_entry("seq", &self.c.seq)?;
        m.end()
    }
}

/// [`image`], serialised without building it.
struct ImageOf<'a>(&'a [String], &'a Row);

impl Serialize for ImageOf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (c, v) in self.0.iter().zip(&self.1.values) {
            m.serialize_entry(c, &ValueOf(v))?;
        }
        m.end()
    }
}

/// [`value`], serialised without building it.
struct ValueOf<'a>(&'a Value);

impl Serialize for ValueOf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Integer(i) => s.serialize_i64(*i),
            Value::Real(r) if r.is_finite() => s.serialize_f64(*r),
            Value::Real(r) => s.serialize_str(if *r > 0.0 { "Infinity" } else { "-Infinity" }),
            Value::Text(t) => s.serialize_str(t),
            Value::Blob(b) => s.serialize_str(&STANDARD.encode(b)),
        }
    }
}

fn op_code(op: Op) -> &'static str {
    match op {
        Op::Insert => "c",
        Op::Update => "u",
        Op::Delete => "d",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Schema;

    fn table(sql: Option<&str>, bootstrap: bool) -> Event {
        let columns = vec![
            cdc_schema::ColumnDesc { primary_key: 1, ..cdc_schema::ColumnDesc::new("id", "INTEGER") },
            cdc_schema::ColumnDesc { not_null: true, ..cdc_schema::ColumnDesc::new("v", "TEXT") },
        ];
        Event::Schema(Schema {
            name: "t".into(),
            object: SchemaObject::Table,
            sql: sql.map(str::to_string),
            indexes: vec!["CREATE INDEX t_v ON t(v)".into()],
            columns: if sql.is_some() { columns } else { Vec::new() },
            without_rowid: false,
            bootstrap,
        })
    }

    #[test]
    fn changes_written_straight_are_their_envelopes() {
        let d = Debezium::new("app", false);
        let values = vec![
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Real(1.0),
            Value::Real(-0.0),
            Value::Real(5e-324),
            Value::Real(f64::INFINITY),
            Value::Real(f64::NEG_INFINITY),
            Value::Text("naïve \"q\"\n".into()),
            Value::Blob(vec![0, 255, 7]),
        ];
        let columns: Arc<[String]> = (0..values.len()).map(|i| format!("c{i}")).collect();
        for op in [Op::Insert, Op::Update, Op::Delete] {
            let row = Row { rowid: Some(3), values: values.clone() };
            let c = Change {
                seq: 17,
                table: "t \"x\"".into(),
                columns: columns.clone(),
                op,
                time_ms: 1_764_500_000_000,
                before: (op != Op::Insert).then(|| row.clone()),
                after: (op != Op::Delete).then_some(row),
            };
            let mut written = Vec::new();
            d.write_change(&c, &mut written).unwrap();
            let mut built = d.change(&c);
            let mut read: Json = serde_json::from_slice(&written).unwrap();
            read["ts_ms"] = Json::Null;
            built["ts_ms"] = Json::Null;
            assert_eq!(read, built);
            assert_eq!(serde_json::to_string(&read).unwrap(), serde_json::to_string(&built).unwrap(), "same order");
            let text = String::from_utf8(written).unwrap();
            assert!(text.contains("\"c2\":1.0,\"c3\":-0.0,\"c4\":5e-324"), "{text}");
        }
    }

    #[test]
    fn schema_events_are_schema_change_records_never_envelopes() {
        let mut d = Debezium::new("app", false);
        let created = table(Some("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)"), true);
        assert!(d.envelopes(std::slice::from_ref(&created)).is_empty(), "not in the change stream");
        let r = d.schema_change(&created).unwrap();
        assert_eq!(r["databaseName"], "app");
        assert_eq!(r["ddl"], "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);\nCREATE INDEX t_v ON t(v)");
        let change = &r["tableChanges"][0];
        assert_eq!(change["type"], "CREATE");
        assert_eq!(change["id"], "\"app\".\"t\"");
        assert_eq!(change["table"]["primaryKeyColumnNames"], json!(["id"]));
        assert_eq!(
            change["table"]["columns"][1],
            json!({"name": "v", "typeName": "TEXT", "position": 2, "optional": false, "generated": false})
        );
        let altered =
            d.schema_change(&table(Some("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)"), false)).unwrap();
        assert_eq!(altered["tableChanges"][0]["type"], "ALTER");
        let dropped = d.schema_change(&table(None, false)).unwrap();
        assert_eq!(dropped["ddl"], "DROP TABLE \"t\"");
        assert_eq!(dropped["tableChanges"][0]["type"], "DROP");
        assert!(dropped["tableChanges"][0]["table"].is_null());
        let view = Event::Schema(Schema {
            name: "v".into(),
            object: SchemaObject::View,
            sql: Some("CREATE VIEW v AS SELECT 1".into()),
            indexes: Vec::new(),
            columns: Vec::new(),
            without_rowid: false,
            bootstrap: false,
        });
        let record = d.schema_change(&view).unwrap();
        assert_eq!(record["ddl"], "CREATE VIEW v AS SELECT 1");
        assert_eq!(record["tableChanges"], json!([]));
        assert!(d.schema_change(&Event::BootstrapEnd { table: "t".into(), rows: 0, sequence: None }).is_none());
        // A TEXT key of a rowid table takes NULLs in SQLite: optional.
        let Event::Schema(mut text_key) = created else { unreachable!() };
        text_key.columns[0].decl_type = "TEXT".into();
        let r = d.schema_change(&Event::Schema(text_key)).unwrap();
        assert_eq!(r["tableChanges"][0]["table"]["columns"][0]["optional"], true);
        assert_eq!(r["source"]["snapshot"], "true", "part of the bootstrap");
    }
}
