//! The JSON form of events (the `jsonl` and `http` targets), lossless and
//! documented in docs/events.md:
//!
//! - INTEGER: a JSON integer (`-9223372036854775808`);
//! - REAL: a JSON number that always has a `.` or an exponent (`1.0`,
//!   `5e-324`, `-0.0`), shortest form that reads back bit for bit; `inf`
//!   and `-inf` (not JSON numbers) as `{"real": "inf"}` / `{"real": "-inf"}`;
//! - TEXT: a JSON string; BLOB: `{"blob": "<standard base64>"}`; NULL: `null`.
//!
//! An image is `{"rowid": 5, "values": {"col": value, ...}}` (no `rowid`
//! for WITHOUT ROWID tables), columns in table order.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::event::{Change, Event, Row};
use crate::value::Value;

struct JsonValue<'a>(&'a Value);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Integer(i) => s.serialize_i64(*i),
            Value::Real(r) if r.is_finite() => s.serialize_f64(*r),
            Value::Real(r) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("real", if *r > 0.0 { "inf" } else { "-inf" })?;
                m.end()
            }
            Value::Text(t) => s.serialize_str(t),
            Value::Blob(b) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("blob", &STANDARD.encode(b))?;
                m.end()
            }
        }
    }
}

struct Values<'a>(&'a [String], &'a [Value]);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (c, v) in self.0.iter().zip(self.1) {
            m.serialize_entry(c, &JsonValue(v))?;
        }
        m.end()
    }
}

struct Image<'a>(&'a [String], &'a Row);

impl Serialize for Image<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(rowid) = self.1.rowid {
            m.serialize_entry("rowid", &rowid)?;
        }
        m.serialize_entry("values", &Values(self.0, &self.1.values))?;
        m.end()
    }
}

/// Serializes an event in the documented JSON form.
pub struct JsonEvent<'a>(pub &'a Event);

impl Serialize for JsonEvent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self.0 {
            Event::Change(c) => {
                m.serialize_entry("kind", "change")?;
                m.serialize_entry("seq", &c.seq)?;
                m.serialize_entry("table", &*c.table)?;
                m.serialize_entry("op", &c.op)?;
                m.serialize_entry("time_ms", &c.time_ms)?;
                m.serialize_entry("before", &c.before.as_ref().map(|r| Image(&c.columns, r)))?;
                m.serialize_entry("after", &c.after.as_ref().map(|r| Image(&c.columns, r)))?;
            }
            Event::BootstrapBegin { table, columns } => {
                m.serialize_entry("kind", "bootstrap_begin")?;
                m.serialize_entry("table", &**table)?;
                m.serialize_entry("columns", &**columns)?;
            }
            Event::Bootstrap { table, columns, row } => {
                m.serialize_entry("kind", "bootstrap")?;
                m.serialize_entry("table", &**table)?;
                m.serialize_entry("row", &Image(columns, row))?;
            }
            Event::BootstrapEnd { table, rows, sequence } => {
                m.serialize_entry("kind", "bootstrap_end")?;
                m.serialize_entry("table", &**table)?;
                m.serialize_entry("rows", rows)?;
                if let Some(sequence) = sequence {
                    m.serialize_entry("sequence", sequence)?;
                }
            }
            Event::Schema(s) => {
                m.serialize_entry("kind", "schema")?;
                m.serialize_entry("table", &*s.name)?;
                m.serialize_entry("object", &s.object)?;
                m.serialize_entry("sql", &s.sql)?;
                m.serialize_entry("indexes", &s.indexes)?;
                m.serialize_entry("columns", &s.columns)?;
                m.serialize_entry("without_rowid", &s.without_rowid)?;
                m.serialize_entry("bootstrap", &s.bootstrap)?;
            }
        }
        m.end()
    }
}

/// One event as a line of JSON (no newline).
pub fn to_line(event: &Event) -> Result<String> {
    Ok(serde_json::to_string(&JsonEvent(event))?)
}

fn bad(what: impl Into<String>) -> Error {
    Error::Decode { what: "invalid event JSON".into(), message: what.into() }
}

/// Reads a value back from its JSON form.
pub fn value_from_json(json: &Json) -> Result<Value> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().ok_or_else(|| bad(format!("number {n}")))?),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Object(o) => match (o.get("real"), o.get("blob")) {
            (Some(Json::String(r)), None) if r == "inf" => Value::Real(f64::INFINITY),
            (Some(Json::String(r)), None) if r == "-inf" => Value::Real(f64::NEG_INFINITY),
            (None, Some(Json::String(b))) => Value::Blob(STANDARD.decode(b).map_err(|e| bad(e.to_string()))?),
            _ => return Err(bad(format!("value {json}"))),
        },
        other => return Err(bad(format!("value {other}"))),
    })
}

fn image_from_json(json: &Json) -> Result<(Vec<String>, Row)> {
    let rowid = json.get("rowid").and_then(Json::as_i64);
    let values = json.get("values").and_then(Json::as_object).ok_or_else(|| bad("image without values"))?;
    let columns = values.keys().cloned().collect();
    let values = values.values().map(value_from_json).collect::<Result<_>>()?;
    Ok((columns, Row { rowid, values }))
}

/// Reads an event back from its JSON form (the inverse of [`to_line`]).
pub fn event_from_json(line: &str) -> Result<Event> {
    let json: Json = serde_json::from_str(line)?;
    let field = |k: &str| json.get(k).ok_or_else(|| bad(format!("missing {k:?}")));
    let table: std::sync::Arc<str> = field("table")?.as_str().ok_or_else(|| bad("table"))?.into();
    Ok(match field("kind")?.as_str() {
        Some("change") => {
            let before = field("before")?;
            let after = field("after")?;
            let before = (!before.is_null()).then(|| image_from_json(before)).transpose()?;
            let after = (!after.is_null()).then(|| image_from_json(after)).transpose()?;
            let columns = before.as_ref().or(after.as_ref()).map(|(c, _)| c.clone()).unwrap_or_default();
            Event::Change(Change {
                seq: field("seq")?.as_i64().ok_or_else(|| bad("seq"))?,
                table,
                columns: columns.into(),
                op: serde_json::from_value(field("op")?.clone())?,
                time_ms: field("time_ms")?.as_i64().ok_or_else(|| bad("time_ms"))?,
                before: before.map(|(_, r)| r),
                after: after.map(|(_, r)| r),
            })
        }
        Some("bootstrap_begin") => Event::BootstrapBegin {
            table,
            columns: serde_json::from_value::<Vec<String>>(field("columns")?.clone())?.into(),
        },
        Some("bootstrap") => {
            let (columns, row) = image_from_json(field("row")?)?;
            Event::Bootstrap { table, columns: columns.into(), row }
        }
        Some("bootstrap_end") => Event::BootstrapEnd {
            table,
            rows: field("rows")?.as_u64().ok_or_else(|| bad("rows"))?,
            sequence: match json.get("sequence") {
                None => None,
                Some(s) => Some(s.as_i64().ok_or_else(|| bad("sequence"))?),
            },
        },
        Some("schema") => Event::Schema(crate::Schema {
            name: table,
            object: serde_json::from_value(field("object")?.clone())?,
            sql: serde_json::from_value(field("sql")?.clone())?,
            indexes: serde_json::from_value(field("indexes")?.clone())?,
            columns: serde_json::from_value(field("columns")?.clone())?,
            without_rowid: field("without_rowid")?.as_bool().ok_or_else(|| bad("without_rowid"))?,
            bootstrap: field("bootstrap")?.as_bool().ok_or_else(|| bad("bootstrap"))?,
        }),
        other => return Err(bad(format!("kind {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Schema, SchemaObject};

    #[test]
    fn schema_events_read_back_as_written() {
        let events = [
            Event::Schema(Schema {
                name: "t \"odd\"".into(),
                object: SchemaObject::Table,
                sql: Some("CREATE TABLE \"t \"\"odd\"\"\"(k TEXT PRIMARY KEY) WITHOUT ROWID".into()),
                indexes: vec!["CREATE INDEX i ON \"t \"\"odd\"\"\"(lower(k)) WHERE k > 'a'".into()],
                columns: vec![cdc_schema::ColumnDesc { primary_key: 1, ..cdc_schema::ColumnDesc::new("k", "TEXT") }],
                without_rowid: true,
                bootstrap: true,
            }),
            Event::Schema(Schema {
                name: "v".into(),
                object: SchemaObject::View,
                sql: None,
                indexes: Vec::new(),
                columns: Vec::new(),
                without_rowid: false,
                bootstrap: false,
            }),
        ];
        for e in events {
            let line = to_line(&e).unwrap();
            assert!(line.starts_with(r#"{"kind":"schema","table":"#), "{line}");
            assert_eq!(event_from_json(&line).unwrap(), e, "{line}");
        }
    }
}
