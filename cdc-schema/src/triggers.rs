//! Trigger SQL. Bodies use only SQL that SQLite 3.31 already understood
//! (`julianday('now')`, plain `INSERT ... VALUES`), because a trigger runs
//! inside whichever client writes, however old its SQLite is.

use crate::ident::quote_ident;
use crate::log::{CHUNK_WIDTH, LOG_TABLE, Op, value_column};
use crate::table::TableDesc;

/// Why a table description cannot be captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError(pub String);

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SchemaError {}

/// The shape of the log rows the triggers write. Capture uses
/// [`LogShape::CAPTURE`]; the others are candidates the capture bench
/// measures against it (a narrower row, a cheaper time, the rowid of an
/// `INTEGER PRIMARY KEY` table written once), each in its own log table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogShape {
    /// The log table written.
    pub table: &'static str,
    /// Value columns per log row; a change with more values spills into
    /// continuation rows.
    pub width: usize,
    /// The write-time expression.
    pub time: &'static str,
    /// An image of a table with an `INTEGER PRIMARY KEY` holds the rowid
    /// once (the key column, being the rowid, is left out).
    pub rowid_once: bool,
}

impl LogShape {
    /// The shape capture writes into `_cdc_log`.
    pub const CAPTURE: LogShape =
        LogShape { table: LOG_TABLE, width: CHUNK_WIDTH, time: "julianday('now')", rowid_once: false };

    /// `CREATE TABLE IF NOT EXISTS` for this shape's log table (the same
    /// columns as `_cdc_log`, `width` values).
    pub fn create_sql(&self) -> String {
        let values: Vec<String> = (0..self.width).map(value_column).collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {}(seq INTEGER PRIMARY KEY, tid INTEGER, op INTEGER NOT NULL, ts REAL, {})",
            quote_ident(self.table),
            values.join(", ")
        )
    }
}

impl TableDesc {
    /// Checks that triggers can be generated for this table.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let name = &self.name;
        let err = |msg: String| Err(SchemaError(msg));
        if name.is_empty() {
            return err("table name is empty".into());
        }
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("_cdc_") || lower.starts_with("sqlite_") {
            return err(format!("table {name:?} is internal (_cdc_ or sqlite_ prefix) and cannot be captured"));
        }
        if self.captured_len() == 0 {
            return err(format!("table {name:?} has no columns to capture"));
        }
        for (i, c) in self.columns.iter().enumerate() {
            if self.columns[..i].iter().any(|d| d.name.eq_ignore_ascii_case(&c.name)) {
                return err(format!("table {name:?} has two columns named {:?}", c.name));
            }
        }
        if self.without_rowid && self.key_columns().is_empty() {
            return err(format!("table {name:?} is WITHOUT ROWID but has no primary key"));
        }
        if !self.without_rowid && self.rowid_alias().is_none() {
            return err(format!(
                "table {name:?} has columns named rowid, _rowid_ and oid, so its rowid cannot be read and it cannot be captured"
            ));
        }
        Ok(())
    }

    /// Name of the trigger for `op`: `_cdc_insert_<table>` and so on.
    pub fn trigger_name(&self, op: Op) -> String {
        format!("_cdc_{}_{}", op.keyword().to_ascii_lowercase(), self.name)
    }

    /// Value expressions of one image read from `from`: `NEW`, `OLD`, or
    /// the table itself (`"t"`): `NEW.rowid, NEW."a", ...`.
    fn image_exprs(&self, from: &str, shape: &LogShape) -> Vec<String> {
        let rowid = self.rowid_alias().map(|alias| format!("{from}.{alias}"));
        let skip = if shape.rowid_once { self.integer_primary_key().map(|c| c.name.clone()) } else { None };
        let columns = self.captured().filter(|c| Some(&c.name) != skip.as_ref());
        rowid.into_iter().chain(columns.map(|c| format!("{from}.{}", quote_ident(&c.name)))).collect()
    }

    /// The values a change of `op` writes, in log order: the after image
    /// for INSERT, the before image for DELETE, before then after for
    /// UPDATE. After images are read from the table (`"t"."a"`), not from
    /// `NEW`: see [`TableDesc::create_trigger`].
    fn change_exprs(&self, op: Op, shape: &LogShape) -> Vec<String> {
        let table = quote_ident(&self.name);
        match op {
            Op::Insert => self.image_exprs(&table, shape),
            Op::Delete => self.image_exprs("OLD", shape),
            Op::Update => {
                let mut v = self.image_exprs("OLD", shape);
                v.extend(self.image_exprs(&table, shape));
                v
            }
        }
    }

    /// `WHERE` terms finding the row `NEW` names, in the table itself: by
    /// rowid, or by primary key for a `WITHOUT ROWID` table.
    fn new_row_predicate(&self) -> String {
        let table = quote_ident(&self.name);
        match self.rowid_alias() {
            Some(alias) => format!("{table}.{alias} = NEW.{alias}"),
            None => self
                .key_columns()
                .iter()
                .map(|c| {
                    let col = quote_ident(&c.name);
                    format!("{table}.{col} = NEW.{col}")
                })
                .collect::<Vec<_>>()
                .join(" AND "),
        }
    }

    /// `INSERT INTO _cdc_log ... SELECT ...` statements writing the values
    /// `exprs` as one change of log op `code`, spilling into continuation
    /// rows every `shape.width` values ([`CHUNK_WIDTH`] for capture);
    /// `tail` ends each `SELECT` (its `FROM`/`WHERE`).
    fn log_inserts(&self, code: i64, exprs: &[String], tail: &str, shape: &LogShape) -> String {
        let mut body = String::new();
        for (part, chunk) in exprs.chunks(shape.width).enumerate() {
            let cols: Vec<String> = (0..chunk.len()).map(value_column).collect();
            let (head_cols, head_vals) = if part == 0 {
                ("tid, op, ts, ", format!("{}, {code}, {}, ", self.capture_id(), shape.time))
            } else {
                ("op, ", "0, ".to_string())
            };
            body.push_str(&format!(
                "\n  INSERT INTO {}({head_cols}{}) SELECT {head_vals}{}{tail};",
                quote_ident(shape.table),
                cols.join(", "),
                chunk.join(", ")
            ));
        }
        body
    }

    /// `CREATE TRIGGER` for `op`. Call [`TableDesc::validate`] first.
    ///
    /// INSERT and UPDATE triggers log the row as it is in the table when
    /// they run, not `NEW`: an application trigger that fires first (one
    /// created after capture, or a TEMP trigger) may already have rewritten
    /// the row (a slug, an `updated_at`), and its own write was logged
    /// before this one. The log then ends, for every row, with its value as
    /// the statement left it. A row that such a trigger deleted is logged
    /// as deleted by an UPDATE (its `OLD` image), and not at all by an
    /// INSERT (the delete was logged already).
    pub fn create_trigger(&self, op: Op) -> String {
        self.create_trigger_shaped(op, &LogShape::CAPTURE)
    }

    /// [`TableDesc::create_trigger`] writing log rows of another shape
    /// (candidates measured by the capture bench; capture itself always
    /// uses [`LogShape::CAPTURE`]).
    pub fn create_trigger_shaped(&self, op: Op, shape: &LogShape) -> String {
        let exprs = self.change_exprs(op, shape);
        let table = quote_ident(&self.name);
        let found = self.new_row_predicate();
        let body = match op {
            Op::Delete => self.log_inserts(op.code(), &exprs, "", shape),
            Op::Insert => self.log_inserts(op.code(), &exprs, &format!(" FROM {table} WHERE {found}"), shape),
            Op::Update => {
                let mut body = self.log_inserts(op.code(), &exprs, &format!(" FROM {table} WHERE {found}"), shape);
                let gone = format!(" WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {found})");
                body.push_str(&self.log_inserts(Op::Delete.code(), &self.image_exprs("OLD", shape), &gone, shape));
                body
            }
        };
        format!(
            "CREATE TRIGGER {} AFTER {} ON {} FOR EACH ROW BEGIN{body}\nEND",
            quote_ident(&self.trigger_name(op)),
            op.keyword(),
            table
        )
    }

    /// The three `CREATE TRIGGER` statements, INSERT, UPDATE, DELETE.
    pub fn create_triggers(&self) -> [String; 3] {
        Op::ALL.map(|op| self.create_trigger(op))
    }

    /// The three `DROP TRIGGER IF EXISTS` statements.
    pub fn drop_triggers(&self) -> [String; 3] {
        Op::ALL.map(|op| format!("DROP TRIGGER IF EXISTS {}", quote_ident(&self.trigger_name(op))))
    }
}

#[cfg(test)]
mod tests {
    use crate::table::tests::users;
    use crate::{ColumnDesc, Op, TableDesc};

    #[test]
    fn insert_trigger_shape() {
        let t = users();
        let sql = t.create_trigger(Op::Insert);
        let id = t.capture_id();
        assert_eq!(
            sql,
            format!(
                "CREATE TRIGGER \"_cdc_insert_users\" AFTER INSERT ON \"users\" FOR EACH ROW BEGIN\n  \
                 INSERT INTO \"_cdc_log\"(tid, op, ts, v0, v1, v2) SELECT {id}, 1, julianday('now'), \"users\".rowid, \"users\".\"id\", \"users\".\"name\" \
                 FROM \"users\" WHERE \"users\".rowid = NEW.rowid;\nEND"
            )
        );
        let update = t.create_trigger(Op::Update);
        assert!(update.contains("OLD.rowid, OLD.\"id\", OLD.\"name\", \"users\".rowid"), "{update}");
        assert!(update.contains(
            "SELECT {id}, 3, julianday('now'), OLD.rowid, OLD.\"id\", OLD.\"name\" WHERE NOT EXISTS (SELECT 1 FROM \"users\" WHERE \"users\".rowid = NEW.rowid);"
                .replace("{id}", &id.to_string())
                .as_str()
        ));
    }

    #[test]
    fn wide_update_spills_into_continuation_rows() {
        let columns: Vec<ColumnDesc> =
            (0..40).map(|i| ColumnDesc { name: format!("c{i}").into(), ..ColumnDesc::new("", "TEXT") }).collect();
        let t = TableDesc { name: "wide".into(), columns: columns.into(), without_rowid: false };
        let sql = t.create_trigger(Op::Update);
        // 2 images of 41 values = 82 values = 3 rows of at most 32, then
        // the delete branch: 41 values = 2 rows.
        assert_eq!(sql.matches("INSERT INTO").count(), 5);
        assert_eq!(sql.matches("SELECT 0, ").count(), 3);
    }

    #[test]
    fn a_candidate_shape_changes_only_what_it_names() {
        let t = users();
        let lean = super::LogShape { table: "_lean_log", width: 2, time: "julianday()", rowid_once: true };
        let sql = t.create_trigger_shaped(Op::Insert, &lean);
        let id = t.capture_id();
        assert_eq!(
            sql,
            format!(
                "CREATE TRIGGER \"_cdc_insert_users\" AFTER INSERT ON \"users\" FOR EACH ROW BEGIN\n  \
                 INSERT INTO \"_lean_log\"(tid, op, ts, v0, v1) SELECT {id}, 1, julianday(), \"users\".rowid, \"users\".\"name\" \
                 FROM \"users\" WHERE \"users\".rowid = NEW.rowid;\nEND"
            )
        );
        assert!(lean.create_sql().ends_with("ts REAL, v0, v1)"), "{}", lean.create_sql());
        assert_eq!(t.create_trigger(Op::Update), t.create_trigger_shaped(Op::Update, &super::LogShape::CAPTURE));
    }

    #[test]
    fn validation_errors_name_the_problem() {
        let mut t = users();
        t.without_rowid = true;
        t.columns.to_mut()[0].primary_key = 0;
        assert!(t.validate().unwrap_err().0.contains("WITHOUT ROWID but has no primary key"));
        t.name = "_cdc_log".into();
        assert!(t.validate().unwrap_err().0.contains("internal"));
    }
}
