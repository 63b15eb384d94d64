//! The dynamic SQLite value: one variant per storage class.

use rusqlite::types::{FromSql, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A SQLite value with its storage class. Equality is exact: two REALs are
/// equal when their bits are (so `-0.0 != 0.0`), which is what replication
/// promises.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// An IEEE 754 double, kept bit for bit (the sign of zero included).
    Real(f64),
    /// UTF-8 text (text that is not valid UTF-8 is refused, never mangled).
    Text(String),
    /// Bytes, an empty BLOB included (which is not `NULL`).
    Blob(Vec<u8>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Integer(a), Value::Integer(b)) => a == b,
            (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Blob(a), Value::Blob(b)) => a == b,
            _ => false,
        }
    }
}

impl Value {
    /// SQLite's name for the storage class, as `typeof()` reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }

    /// Borrows the value as rusqlite's `ValueRef`.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }

    /// Copies a value read from SQLite. TEXT that is not valid UTF-8 is an
    /// error (the caller adds table, seq and column); it is never mangled.
    pub fn from_ref(value: ValueRef<'_>) -> Result<Value, std::str::Utf8Error> {
        Ok(match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(r) => Value::Real(r),
            ValueRef::Text(t) => Value::Text(std::str::from_utf8(t)?.to_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        })
    }

    /// Converts a Rust value through its rusqlite `ToSql` impl (used by
    /// `#[derive(Cdc)]`).
    pub fn from_sql<T: ToSql + ?Sized>(value: &T, column: &str) -> Result<Value> {
        let convert = |problem: String| Error::Convert { column: column.to_string(), problem };
        let out = value.to_sql().map_err(|e| convert(e.to_string()))?;
        let borrowed = match &out {
            ToSqlOutput::Borrowed(v) => *v,
            ToSqlOutput::Owned(v) => v.into(),
            other => return Err(convert(format!("unsupported ToSql output {other:?}"))),
        };
        Value::from_ref(borrowed).map_err(|e| convert(e.to_string()))
    }

    /// Converts to a Rust value through its rusqlite `FromSql` impl (used
    /// by `#[derive(Cdc)]`).
    pub fn to_rust<T: FromSql>(&self, column: &str) -> Result<T> {
        T::column_result(self.as_ref()).map_err(|e| Error::Convert {
            column: column.to_string(),
            problem: format!("{e} (stored value is {})", self.type_name()),
        })
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(self.as_ref()))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
