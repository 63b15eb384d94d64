//! Trigger SQL. Bodies use only SQL that SQLite 3.31 already understood
//! (plain `INSERT ... VALUES` and `INSERT ... SELECT`, a `LEFT JOIN`),
//! because a trigger runs inside whichever client writes, however old its
//! SQLite is. They call no function and write a log without constraints:
//! either would make SQLite open a statement journal for every statement
//! of the application's transactions that fires them (a copy of every
//! page the statement touches), the largest single cost a trigger can add.

use serde::{Deserialize, Serialize};

use crate::ident::quote_ident;
use crate::log::{CHUNK_WIDTH, LOG_TABLE, Op, kind, value_column};
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

/// Where capture's INSERT trigger takes the row it logs from.
///
/// SQLite fires a table's AFTER triggers in a fixed order: TEMP triggers
/// of the writing connection first, then the others newest first. A
/// trigger that fires before capture's and rewrites or deletes the row
/// just inserted (a slug, a spam filter) leaves `NEW` stale by the time
/// capture runs. UPDATE triggers always read the row back from the table
/// (cheap next to an update); this choice is only about inserts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InsertImage {
    /// The values the statement inserted (`NEW`), no lookup. Exact while
    /// capture's INSERT trigger fires before every other AFTER INSERT
    /// trigger stored in the file, which `cdc-setup install` arranges (it
    /// creates capture's triggers last) and the replicator keeps (a
    /// trigger created later is noticed; capture is attached again in
    /// front of it and the table reseeded). Not exact under a TEMP AFTER
    /// INSERT trigger of another connection that rewrites the row: those
    /// always fire first and no other connection can see them.
    #[default]
    New,
    /// The row read back from the table once every trigger before
    /// capture's ran: exact whatever fires first, TEMP triggers included.
    /// Costs one lookup of the row per insert (about a third more).
    Reread,
}

impl std::str::FromStr for InsertImage {
    type Err = SchemaError;

    fn from_str(s: &str) -> Result<Self, SchemaError> {
        match s {
            "new" => Ok(InsertImage::New),
            "reread" => Ok(InsertImage::Reread),
            other => Err(SchemaError(format!("unknown insert image {other:?}: expected new or reread"))),
        }
    }
}

impl InsertImage {
    /// The names [`std::str::FromStr`] takes, for a command line's choices.
    pub const NAMES: [&'static str; 2] = ["new", "reread"];

    /// `new` or `reread`, as `cdc-setup status` shows it.
    pub const fn name(self) -> &'static str {
        match self {
            InsertImage::New => "new",
            InsertImage::Reread => "reread",
        }
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

    /// Value expressions of one image in log order, read from `from`:
    /// `NEW`, `OLD`, or the table itself (`"t"`): the rowid where the log
    /// gives it a slot ([`TableDesc::log_rowid_slot`]), then every
    /// captured column.
    fn log_image(&self, from: &str) -> Vec<String> {
        let rowid = self.rowid_alias().filter(|_| self.log_rowid_slot()).map(|alias| format!("{from}.{alias}"));
        rowid.into_iter().chain(self.captured().map(|c| format!("{from}.{}", quote_ident(&c.name)))).collect()
    }

    /// `WHERE` terms finding, in the table itself, the row `NEW` names: by
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

    /// A column of the table that is NULL in a `LEFT JOIN` exactly when
    /// the row is not there: its rowid, or its first key column (NOT NULL
    /// in a `WITHOUT ROWID` table).
    fn presence_column(&self) -> String {
        let table = quote_ident(&self.name);
        match self.rowid_alias() {
            Some(alias) => format!("{table}.{alias}"),
            None => format!("{table}.{}", quote_ident(&self.key_columns()[0].name)),
        }
    }

    /// Statements appending `values` as log rows of [`CHUNK_WIDTH`] values,
    /// the first with `head` as its kind (`None`: every row continues the
    /// change before it). Without `tail` they are `INSERT ... VALUES`;
    /// with one, `INSERT ... SELECT ...{tail}` (its `FROM`/`WHERE`).
    fn log_rows(head: Option<&str>, values: &[String], tail: Option<&str>) -> String {
        let mut body = String::new();
        for (part, chunk) in values.chunks(CHUNK_WIDTH).enumerate() {
            let cols: Vec<String> = (0..chunk.len()).map(value_column).collect();
            let kind = if part == 0 { head.unwrap_or("0") } else { "0" };
            let (open, close) = match tail {
                None => ("VALUES(", ")".to_string()),
                Some(tail) => ("SELECT ", tail.to_string()),
            };
            body.push_str(&format!(
                "\n  INSERT INTO {}(kind, {}) {open}{kind}, {}{close};",
                quote_ident(LOG_TABLE),
                cols.join(", "),
                chunk.join(", ")
            ));
        }
        body
    }

    /// `CREATE TRIGGER` for `op`, inserts taking `NEW` ([`InsertImage::New`]).
    /// Call [`TableDesc::validate`] first.
    pub fn create_trigger(&self, op: Op) -> String {
        self.create_trigger_with(op, InsertImage::New)
    }

    /// `CREATE TRIGGER` for `op`.
    ///
    /// - INSERT logs the after image, from `NEW` or read back from the
    ///   table ([`InsertImage`]); a row a trigger already deleted is then
    ///   not logged (its delete was).
    /// - UPDATE logs `OLD` and the row as it is in the table when the
    ///   trigger runs: an application trigger that fired first (one
    ///   created after capture, or a TEMP trigger) may have rewritten it
    ///   already (an `updated_at`), and its own write was logged before
    ///   this one, so the log ends, for every row, with its value as the
    ///   statement left it. A row such a trigger deleted is logged as
    ///   deleted (kind DELETE, `OLD`). When both images fit one log row,
    ///   one `LEFT JOIN` finds the row and picks the kind; otherwise the
    ///   before image's rows are followed by the after image's, read by
    ///   one lookup each, and none when the row is gone: an UPDATE whose
    ///   rows end with the before image is a delete.
    /// - DELETE logs `OLD`.
    pub fn create_trigger_with(&self, op: Op, inserts: InsertImage) -> String {
        let table = quote_ident(&self.name);
        let found = format!(" FROM {table} WHERE {}", self.new_row_predicate());
        let tid = self.capture_id();
        let head = |op: Op| kind(tid, op.code()).to_string();
        let body = match (op, inserts) {
            (Op::Insert, InsertImage::New) => Self::log_rows(Some(&head(op)), &self.log_image("NEW"), None),
            (Op::Insert, InsertImage::Reread) => Self::log_rows(Some(&head(op)), &self.log_image(&table), Some(&found)),
            (Op::Delete, _) => Self::log_rows(Some(&head(op)), &self.log_image("OLD"), None),
            (Op::Update, _) if 2 * self.log_image_len() <= CHUNK_WIDTH => {
                let kind = format!(
                    "CASE WHEN {} IS NULL THEN {} ELSE {} END",
                    self.presence_column(),
                    head(Op::Delete),
                    head(Op::Update)
                );
                let values = [self.log_image("OLD"), self.log_image(&table)].concat();
                let join = format!(" FROM (SELECT 1) LEFT JOIN {table} ON {}", self.new_row_predicate());
                Self::log_rows(Some(&kind), &values, Some(&join))
            }
            (Op::Update, _) => {
                let mut body = Self::log_rows(Some(&head(op)), &self.log_image("OLD"), None);
                body.push_str(&Self::log_rows(None, &self.log_image(&table), Some(&found)));
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

    /// The three `CREATE TRIGGER` statements, INSERT, UPDATE, DELETE, with
    /// inserts taking `NEW`.
    pub fn create_triggers(&self) -> [String; 3] {
        self.create_triggers_with(InsertImage::New)
    }

    /// The three `CREATE TRIGGER` statements, INSERT, UPDATE, DELETE.
    pub fn create_triggers_with(&self, inserts: InsertImage) -> [String; 3] {
        Op::ALL.map(|op| self.create_trigger_with(op, inserts))
    }

    /// The three `DROP TRIGGER IF EXISTS` statements.
    pub fn drop_triggers(&self) -> [String; 3] {
        Op::ALL.map(|op| format!("DROP TRIGGER IF EXISTS {}", quote_ident(&self.trigger_name(op))))
    }
}

#[cfg(test)]
mod tests {
    use super::InsertImage;
    use crate::log::kind;
    use crate::table::tests::users;
    use crate::{ColumnDesc, Op, TableDesc};

    #[test]
    fn trigger_shapes() {
        let t = users();
        let id = t.capture_id();
        let (ins, upd, del) = (kind(id, 1), kind(id, 2), kind(id, 3));
        assert_eq!(
            t.create_trigger(Op::Insert),
            format!(
                "CREATE TRIGGER \"_cdc_insert_users\" AFTER INSERT ON \"users\" FOR EACH ROW BEGIN\n  \
                 INSERT INTO \"_cdc_log\"(kind, v0, v1) VALUES({ins}, NEW.\"id\", NEW.\"name\");\nEND"
            )
        );
        assert_eq!(
            t.create_trigger_with(Op::Insert, InsertImage::Reread),
            format!(
                "CREATE TRIGGER \"_cdc_insert_users\" AFTER INSERT ON \"users\" FOR EACH ROW BEGIN\n  \
                 INSERT INTO \"_cdc_log\"(kind, v0, v1) SELECT {ins}, \"users\".\"id\", \"users\".\"name\" \
                 FROM \"users\" WHERE \"users\".rowid = NEW.rowid;\nEND"
            )
        );
        assert_eq!(
            t.create_trigger(Op::Update),
            format!(
                "CREATE TRIGGER \"_cdc_update_users\" AFTER UPDATE ON \"users\" FOR EACH ROW BEGIN\n  \
                 INSERT INTO \"_cdc_log\"(kind, v0, v1, v2, v3) SELECT CASE WHEN \"users\".rowid IS NULL THEN {del} ELSE {upd} END, \
                 OLD.\"id\", OLD.\"name\", \"users\".\"id\", \"users\".\"name\" \
                 FROM (SELECT 1) LEFT JOIN \"users\" ON \"users\".rowid = NEW.rowid;\nEND"
            )
        );
        assert_eq!(
            t.create_trigger(Op::Delete),
            format!(
                "CREATE TRIGGER \"_cdc_delete_users\" AFTER DELETE ON \"users\" FOR EACH ROW BEGIN\n  \
                 INSERT INTO \"_cdc_log\"(kind, v0, v1) VALUES({del}, OLD.\"id\", OLD.\"name\");\nEND"
            )
        );
        // No function, no constraint anywhere: no statement journal.
        for sql in t.create_triggers_with(InsertImage::Reread) {
            assert!(!sql.contains("julianday") && !sql.contains("last_insert_rowid"), "{sql}");
        }
    }

    #[test]
    fn a_rowid_without_an_integer_key_gets_a_slot_of_its_own() {
        let t = TableDesc {
            name: "bag".into(),
            columns: vec![ColumnDesc::new("x", ""), ColumnDesc::new("rowid", "TEXT")].into(),
            without_rowid: false,
            integer_key_not_rowid: false,
        };
        assert!(t.log_rowid_slot());
        let sql = t.create_trigger(Op::Insert);
        assert!(
            sql.contains("(kind, v0, v1, v2) VALUES(") && sql.contains("NEW._rowid_, NEW.\"x\", NEW.\"rowid\")"),
            "{sql}"
        );
        // The quirk: INTEGER PRIMARY KEY DESC is not the rowid.
        let mut q = users();
        q.integer_key_not_rowid = true;
        assert!(q.log_rowid_slot() && q.integer_primary_key().is_none());
        assert_ne!(q.capture_id(), users().capture_id());
    }

    #[test]
    fn wide_updates_log_the_before_image_then_the_after_image() {
        let columns: Vec<ColumnDesc> =
            (0..20).map(|i| ColumnDesc { name: format!("c{i}").into(), ..ColumnDesc::new("", "TEXT") }).collect();
        let t = TableDesc {
            name: "wide".into(),
            columns: columns.into(),
            without_rowid: false,
            integer_key_not_rowid: false,
        };
        // 21 values an image (the rowid has a slot): 2 rows of OLD, then 2
        // rows read from the table, continuation rows all but the first.
        let sql = t.create_trigger(Op::Update);
        assert_eq!(sql.matches("INSERT INTO").count(), 4, "{sql}");
        assert_eq!(sql.matches("VALUES(0, OLD.").count(), 1, "{sql}");
        assert_eq!(sql.matches("SELECT 0, \"wide\".").count(), 2, "{sql}");
        assert_eq!(sql.matches("FROM \"wide\" WHERE \"wide\".rowid = NEW.rowid").count(), 2, "{sql}");
        assert!(!sql.contains("LEFT JOIN"), "{sql}");
        let insert = t.create_trigger(Op::Insert);
        assert_eq!(insert.matches("INSERT INTO").count(), 2, "{insert}");
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
