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

    /// Value expressions of one image: `NEW.rowid, NEW."a", ...`.
    fn image_exprs(&self, prefix: &str) -> Vec<String> {
        let rowid = self.rowid_alias().map(|alias| format!("{prefix}.{alias}"));
        rowid.into_iter().chain(self.captured().map(|c| format!("{prefix}.{}", quote_ident(&c.name)))).collect()
    }

    /// The values a change of `op` writes, in log order: the after image
    /// for INSERT, the before image for DELETE, before then after for UPDATE.
    pub fn change_exprs(&self, op: Op) -> Vec<String> {
        match op {
            Op::Insert => self.image_exprs("NEW"),
            Op::Delete => self.image_exprs("OLD"),
            Op::Update => {
                let mut v = self.image_exprs("OLD");
                v.extend(self.image_exprs("NEW"));
                v
            }
        }
    }

    /// `CREATE TRIGGER` for `op`. Call [`TableDesc::validate`] first.
    pub fn create_trigger(&self, op: Op) -> String {
        let exprs = self.change_exprs(op);
        let mut body = String::new();
        for (part, chunk) in exprs.chunks(CHUNK_WIDTH).enumerate() {
            let cols: Vec<String> = (0..chunk.len()).map(value_column).collect();
            let (head_cols, head_vals) = if part == 0 {
                ("tid, op, ts, ", format!("{}, {}, julianday('now'), ", self.capture_id(), op.code()))
            } else {
                ("op, ", "0, ".to_string())
            };
            body.push_str(&format!(
                "\n  INSERT INTO {}({head_cols}{}) VALUES({head_vals}{});",
                quote_ident(LOG_TABLE),
                cols.join(", "),
                chunk.join(", ")
            ));
        }
        format!(
            "CREATE TRIGGER {} AFTER {} ON {} FOR EACH ROW BEGIN{body}\nEND",
            quote_ident(&self.trigger_name(op)),
            op.keyword(),
            quote_ident(&self.name)
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
                 INSERT INTO \"_cdc_log\"(tid, op, ts, v0, v1, v2) VALUES({id}, 1, julianday('now'), NEW.rowid, NEW.\"id\", NEW.\"name\");\nEND"
            )
        );
    }

    #[test]
    fn wide_update_spills_into_continuation_rows() {
        let columns: Vec<ColumnDesc> =
            (0..40).map(|i| ColumnDesc { name: format!("c{i}").into(), ..ColumnDesc::new("", "TEXT") }).collect();
        let t = TableDesc { name: "wide".into(), columns: columns.into(), without_rowid: false };
        let sql = t.create_trigger(Op::Update);
        // 2 images of 41 values = 82 values = 3 rows of at most 32.
        assert_eq!(sql.matches("INSERT INTO").count(), 3);
        assert_eq!(sql.matches("VALUES(0, ").count(), 2);
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
