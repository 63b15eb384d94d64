//! The table model both sides agree on.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::fingerprint::fnv1a64;
use crate::log::FORMAT_VERSION;

/// One column of a captured table, as `PRAGMA table_xinfo` reports it.
///
/// Fields are `Cow` so that `#[derive(Cdc)]` can emit a description as a
/// `const` while the runtime builds owned ones from a live schema.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ColumnDesc {
    /// Column name, exactly as declared.
    pub name: Cow<'static, str>,
    /// Declared type text (`""` when none was declared).
    pub decl_type: Cow<'static, str>,
    /// 1-based position in the primary key, 0 when not part of it.
    pub primary_key: u16,
    /// `NOT NULL` was declared.
    pub not_null: bool,
    /// A generated column: never captured, the replica computes it.
    pub generated: bool,
}

impl ColumnDesc {
    /// A plain (non-generated) column; the common case in tests and the derive.
    pub const fn new(name: &'static str, decl_type: &'static str) -> Self {
        ColumnDesc {
            name: Cow::Borrowed(name),
            decl_type: Cow::Borrowed(decl_type),
            primary_key: 0,
            not_null: false,
            generated: false,
        }
    }

    /// The column's type affinity, by SQLite's rules (section 3.1 of the
    /// datatype documentation), used to compare a struct with a live table.
    pub fn affinity(&self) -> Affinity {
        Affinity::of(&self.decl_type)
    }
}

/// SQLite's five type affinities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Affinity {
    /// The declared type contains `INT` (the rules apply in this order).
    Integer,
    /// Otherwise, it contains `CHAR`, `CLOB` or `TEXT`.
    Text,
    /// Otherwise, it contains `BLOB` or is empty: values are stored as given.
    Blob,
    /// Otherwise, it contains `REAL`, `FLOA` or `DOUB`.
    Real,
    /// Anything else (`NUMERIC`, `DECIMAL`, `BOOLEAN`, `DATE`, ...).
    Numeric,
}

impl Affinity {
    /// Applies SQLite's affinity rules to a declared type.
    pub fn of(decl_type: &str) -> Affinity {
        let t = decl_type.to_ascii_uppercase();
        if t.contains("INT") {
            Affinity::Integer
        } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
            Affinity::Text
        } else if t.contains("BLOB") || t.trim().is_empty() {
            Affinity::Blob
        } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }
}

/// A captured table: its name, columns in declaration order, and whether it
/// is a `WITHOUT ROWID` table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableDesc {
    /// The table's name, exactly as declared.
    pub name: Cow<'static, str>,
    /// Every column in declaration order, generated ones included (see
    /// [`TableDesc::captured`] for those the log carries).
    pub columns: Cow<'static, [ColumnDesc]>,
    /// A `WITHOUT ROWID` table: changes are identified by the primary key
    /// alone, and images carry no rowid.
    pub without_rowid: bool,
    /// The table's single-column `INTEGER` primary key is *not* its rowid:
    /// declared `INTEGER PRIMARY KEY DESC`, which SQLite keeps as an
    /// ordinary key (with an index of its own) for compatibility. The key
    /// is then treated like any other, and images carry the rowid.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub integer_key_not_rowid: bool,
}

impl TableDesc {
    /// Columns the triggers copy: every column except generated ones.
    pub fn captured(&self) -> impl Iterator<Item = &ColumnDesc> {
        self.columns.iter().filter(|c| !c.generated)
    }

    /// Number of captured columns.
    pub fn captured_len(&self) -> usize {
        self.captured().count()
    }

    /// Primary key columns in key order (empty for a rowid table without a
    /// declared key).
    pub fn key_columns(&self) -> Vec<&ColumnDesc> {
        let mut key: Vec<&ColumnDesc> = self.columns.iter().filter(|c| c.primary_key > 0).collect();
        key.sort_by_key(|c| c.primary_key);
        key
    }

    /// Positions (within the captured columns) of the key columns, in key order.
    pub fn key_positions(&self) -> Vec<usize> {
        let captured: Vec<&ColumnDesc> = self.captured().collect();
        self.key_columns().iter().filter_map(|k| captured.iter().position(|c| c.name == k.name)).collect()
    }

    /// The name under which the rowid is reachable: the first of `rowid`,
    /// `_rowid_`, `oid` that no column shadows. `None` for WITHOUT ROWID
    /// tables, or when all three names are taken by columns (such a table's
    /// rowid cannot be read from SQL at all, so it cannot be captured).
    pub fn rowid_alias(&self) -> Option<&'static str> {
        if self.without_rowid {
            return None;
        }
        ["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|alias| !self.columns.iter().any(|c| c.name.eq_ignore_ascii_case(alias)))
    }

    /// Values per image as a change carries it ([`crate::Identity`] binds
    /// them in this order): the rowid (rowid tables) plus every captured
    /// column.
    pub fn image_len(&self) -> usize {
        self.captured_len() + usize::from(!self.without_rowid)
    }

    /// Whether an image in the log holds the rowid in a slot of its own,
    /// before the columns: for rowid tables without an `INTEGER PRIMARY
    /// KEY` (which is the rowid, so its column carries it).
    pub fn log_rowid_slot(&self) -> bool {
        !self.without_rowid && self.integer_primary_key().is_none()
    }

    /// Values per image in the log: every captured column, and the rowid
    /// where [`Self::log_rowid_slot`].
    pub fn log_image_len(&self) -> usize {
        self.captured_len() + usize::from(self.log_rowid_slot())
    }

    /// The capture id stored in every log row of this table. It is a hash
    /// of exactly what the triggers depend on (table name, captured column
    /// names in order, rowid or not, log format version), so the derive and
    /// the runtime compute the same id without a shared counter, and log
    /// rows written before a schema change keep pointing at the layout they
    /// were written with. 44 bits, so that with the operation code in the
    /// same column ([`crate::log::kind`]) it is a 6-byte integer on disk.
    pub fn capture_id(&self) -> i64 {
        let rowid: &[u8] = match (self.without_rowid, self.log_rowid_slot()) {
            (true, _) => b"without rowid",
            (false, true) => b"rowid",
            (false, false) => b"rowid key",
        };
        let parts = [FORMAT_VERSION.as_bytes(), self.name.as_bytes(), rowid]
            .into_iter()
            .chain(self.captured().map(|c| c.name.as_bytes()));
        let id = (fnv1a64(parts) & ((1 << 44) - 1)) as i64;
        id.max(1)
    }

    /// A fingerprint of everything about the table that capture and the
    /// replica depend on: names, declared types, key, generated columns,
    /// NOT NULL, rowid-ness. Recorded at install time; a difference later
    /// means the table was altered.
    pub fn fingerprint(&self) -> String {
        let mut parts: Vec<Vec<u8>> =
            vec![FORMAT_VERSION.as_bytes().to_vec(), self.name.as_bytes().to_vec(), vec![u8::from(self.without_rowid)]];
        if self.integer_key_not_rowid {
            parts.push(b"integer key not rowid".to_vec());
        }
        for c in self.columns.iter() {
            parts.push(c.name.as_bytes().to_vec());
            parts.push(c.decl_type.as_bytes().to_vec());
            parts.push(format!("{}:{}:{}", c.primary_key, c.not_null, c.generated).into_bytes());
        }
        format!("{:016x}", fnv1a64(parts.iter().map(Vec::as_slice)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn users() -> TableDesc {
        TableDesc {
            name: "users".into(),
            columns: vec![
                ColumnDesc { primary_key: 1, ..ColumnDesc::new("id", "INTEGER") },
                ColumnDesc::new("name", "TEXT"),
                ColumnDesc { generated: true, ..ColumnDesc::new("upper", "TEXT") },
            ]
            .into(),
            without_rowid: false,
            integer_key_not_rowid: false,
        }
    }

    #[test]
    fn affinity_rules() {
        assert_eq!(Affinity::of("VARCHAR(20)"), Affinity::Text);
        assert_eq!(Affinity::of("BIGINT"), Affinity::Integer);
        assert_eq!(Affinity::of(""), Affinity::Blob);
        assert_eq!(Affinity::of("DOUBLE PRECISION"), Affinity::Real);
        assert_eq!(Affinity::of("DECIMAL(10,2)"), Affinity::Numeric);
        // "POINT" contains "INT": SQLite's rule, not a bug here.
        assert_eq!(Affinity::of("POINT"), Affinity::Integer);
    }

    #[test]
    fn rowid_alias_avoids_shadowing_columns() {
        let mut t = users();
        assert_eq!(t.rowid_alias(), Some("rowid"));
        t.columns.to_mut().push(ColumnDesc::new("ROWID", ""));
        assert_eq!(t.rowid_alias(), Some("_rowid_"));
        t.columns.to_mut().push(ColumnDesc::new("_rowid_", ""));
        t.columns.to_mut().push(ColumnDesc::new("oid", ""));
        assert_eq!(t.rowid_alias(), None);
    }

    #[test]
    fn capture_id_ignores_types_but_fingerprint_does_not() {
        let a = users();
        let mut b = users();
        b.columns.to_mut()[1].decl_type = "VARCHAR".into();
        assert_eq!(a.capture_id(), b.capture_id());
        assert_ne!(a.fingerprint(), b.fingerprint());
        b.columns.to_mut()[1].name = "nom".into();
        assert_ne!(a.capture_id(), b.capture_id());
        assert!(a.capture_id() > 0 && a.capture_id() < 1 << 44);
    }
}
