//! Statements a replica applies. Parameters follow the log's image layout
//! (rowid first for rowid tables, then captured columns), so an image's
//! values bind in order with no per-row SQL building.

/// A replica's own bookkeeping table: one row with the delivery state
/// (which source log, and per table: seeding or live from a position),
/// written in the same transaction as the rows it describes.
pub const STATE_TABLE: &str = "_cdc_replica_state";

/// The tables a replica created from its source's SQL, one name per row:
/// those it rebuilds when the source's schema changes and drops when the
/// source drops them. Any other table in the file is the user's.
pub const OWNED_TABLE: &str = "_cdc_replica_tables";

/// The tables whose rows a replica wrote with the source's rowids, one
/// name per row (for a rowid table with a declared key other than an
/// `INTEGER PRIMARY KEY`: replicas made before rowids were kept renumbered
/// them, and such a table is reseeded once).
pub const ROWIDS_TABLE: &str = "_cdc_replica_rowids";

/// The views a replica created from its source's SQL, one name per row:
/// those it recreates when the source's SQL changes and drops when the
/// source drops them (a view of the user's own is left alone).
pub const VIEWS_TABLE: &str = "_cdc_replica_views";

/// A replica's record of the NATS stream it follows.
pub const FOLLOW_TABLE: &str = "_cdc_follow";

/// The replica's bookkeeping statements (parameters as each says).
pub mod bookkeeping {
    use super::{FOLLOW_TABLE, OWNED_TABLE, ROWIDS_TABLE, STATE_TABLE, VIEWS_TABLE};
    use crate::quote_ident;

    /// `CREATE TABLE` of the state table (one row).
    pub fn create_state_sql() -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {}(id INTEGER PRIMARY KEY CHECK (id = 1), log_id TEXT NOT NULL, \
             position INTEGER NOT NULL, state TEXT NOT NULL, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
            quote_ident(STATE_TABLE)
        )
    }

    /// Writes the state row: log id `?1`, position `?2`, state `?3`.
    pub fn write_state_sql() -> String {
        format!(
            "INSERT INTO {}(id, log_id, position, state) VALUES(1, ?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET \
             log_id = excluded.log_id, position = excluded.position, state = excluded.state, updated_at = CURRENT_TIMESTAMP",
            quote_ident(STATE_TABLE)
        )
    }

    /// The stored delivery state.
    pub fn read_state_sql() -> String {
        format!("SELECT state FROM {} WHERE id = 1", quote_ident(STATE_TABLE))
    }

    /// The source log ids a file is a replica of.
    pub fn log_ids_sql() -> String {
        format!("SELECT log_id FROM {}", quote_ident(STATE_TABLE))
    }

    /// `CREATE TABLE` of the tables a replica made.
    pub fn create_owned_sql() -> String {
        names::create(OWNED_TABLE)
    }

    /// Records that the replica made table `?1`.
    pub fn own_sql() -> String {
        names::add(OWNED_TABLE)
    }

    /// Forgets that the replica made table `?1`.
    pub fn disown_sql() -> String {
        names::remove(OWNED_TABLE)
    }

    /// The tables a replica made.
    pub fn owned_sql() -> String {
        names::list(OWNED_TABLE)
    }

    /// `CREATE TABLE` of the tables written with the source's rowids.
    pub fn create_rowids_sql() -> String {
        names::create(ROWIDS_TABLE)
    }

    /// Records that table `?1` holds the source's rowids.
    pub fn mark_rowids_sql() -> String {
        names::add(ROWIDS_TABLE)
    }

    /// Forgets it (the table dropped).
    pub fn unmark_rowids_sql() -> String {
        names::remove(ROWIDS_TABLE)
    }

    /// The tables written with the source's rowids.
    pub fn rowids_sql() -> String {
        names::list(ROWIDS_TABLE)
    }

    /// `CREATE TABLE` of the views a replica made.
    pub fn create_views_sql() -> String {
        names::create(VIEWS_TABLE)
    }

    /// Records that the replica made view `?1`.
    pub fn own_view_sql() -> String {
        names::add(VIEWS_TABLE)
    }

    /// Forgets view `?1`.
    pub fn disown_view_sql() -> String {
        names::remove(VIEWS_TABLE)
    }

    /// The views a replica made.
    pub fn owned_views_sql() -> String {
        names::list(VIEWS_TABLE)
    }

    /// `DROP VIEW IF EXISTS` of `view`.
    pub fn drop_view_sql(view: &str) -> String {
        format!("DROP VIEW IF EXISTS {}", quote_ident(view))
    }

    /// A bookkeeping table that is a set of table names.
    mod names {
        use crate::quote_ident;

        pub(super) fn create(set: &str) -> String {
            format!("CREATE TABLE IF NOT EXISTS {}(name TEXT PRIMARY KEY)", quote_ident(set))
        }

        /// Adds name `?1`.
        pub(super) fn add(set: &str) -> String {
            format!("INSERT OR IGNORE INTO {}(name) VALUES(?1)", quote_ident(set))
        }

        /// Removes name `?1`.
        pub(super) fn remove(set: &str) -> String {
            format!("DELETE FROM {} WHERE name = ?1", quote_ident(set))
        }

        pub(super) fn list(set: &str) -> String {
            format!("SELECT name FROM {}", quote_ident(set))
        }
    }

    /// `CREATE TABLE` of a follower's record (one row).
    pub fn create_follow_sql() -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {}(id INTEGER PRIMARY KEY CHECK (id = 1), stream TEXT NOT NULL, \
             stream_created TEXT NOT NULL, stream_seq INTEGER NOT NULL, source TEXT, commit_id TEXT, updated_at TEXT)",
            quote_ident(FOLLOW_TABLE)
        )
    }

    /// A follower's record: stream, its creation time, sequence, source
    /// description, last commit message id.
    pub fn read_follow_sql() -> String {
        format!(
            "SELECT stream, stream_created, stream_seq, source, commit_id FROM {} WHERE id = 1",
            quote_ident(FOLLOW_TABLE)
        )
    }

    /// Writes a follower's record: `?1` to `?5` as [`read_follow_sql`] reads them.
    pub fn write_follow_sql() -> String {
        format!(
            "INSERT INTO {}(id, stream, stream_created, stream_seq, source, commit_id, updated_at) \
             VALUES(1, ?1, ?2, ?3, ?4, ?5, CURRENT_TIMESTAMP) ON CONFLICT(id) DO UPDATE SET stream = excluded.stream, \
             stream_created = excluded.stream_created, stream_seq = excluded.stream_seq, source = excluded.source, \
             commit_id = excluded.commit_id, updated_at = excluded.updated_at",
            quote_ident(FOLLOW_TABLE)
        )
    }

    /// `DROP TABLE IF EXISTS` of `table`.
    pub fn drop_table_sql(table: &str) -> String {
        format!("DROP TABLE IF EXISTS {}", quote_ident(table))
    }

    /// `DROP INDEX` of `index`.
    pub fn drop_index_sql(index: &str) -> String {
        format!("DROP INDEX {}", quote_ident(index))
    }

    /// The log's high-water mark and the schema cookie of the source
    /// attached as `schema`.
    pub fn attached_cut_sql(schema: &str) -> (String, String) {
        (
            format!("SELECT coalesce(max(seq), 0) FROM {schema}.{}", quote_ident(crate::LOG_TABLE)),
            format!("PRAGMA {schema}.schema_version"),
        )
    }
}

use crate::ident::quote_ident;
use crate::table::TableDesc;

/// How a replica finds the row a change is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// By rowid. Either the table has an `INTEGER PRIMARY KEY`, which
    /// aliases the rowid, so SQLite never renumbers it (not by `VACUUM`,
    /// not by a `.dump` reload); or it has no key at all, where the rowid
    /// is the only thing that tells two equal rows apart (an application
    /// trigger may rewrite one of them in the middle of a statement). SQLite
    /// renumbers such rowids only when it rewrites the file (`VACUUM`, a
    /// reload), which the engine notices (see
    /// [`TableDesc::rowids_may_be_renumbered`]) and answers by reseeding
    /// the table.
    Rowid,
    /// By the primary key of a `WITHOUT ROWID` table (NOT NULL by rule).
    Key,
    /// By the whole before image: every captured column equal, NULL-safe
    /// and storage class for storage class, one row. For rowid tables with
    /// a declared primary key that is not an `INTEGER PRIMARY KEY`: their
    /// rowids are not persistent in SQLite itself (`VACUUM` and `.dump`
    /// renumber them), and the key's index makes the lookup fast (SQLite's
    /// planner uses it for the `IS` terms). The replica still writes the
    /// source's rowid ([`TableDesc::keeps_rowid`]): users and tools read it.
    Image,
}

impl TableDesc {
    /// The column declared `INTEGER PRIMARY KEY` (the rowid's alias), if any.
    pub fn integer_primary_key(&self) -> Option<&crate::ColumnDesc> {
        let key = self.key_columns();
        match (self.without_rowid, key.as_slice()) {
            (false, [only]) if only.decl_type.eq_ignore_ascii_case("INTEGER") && !self.integer_key_not_rowid => {
                Some(only)
            }
            _ => None,
        }
    }

    /// How the replica identifies this table's rows.
    pub fn identity(&self) -> Identity {
        if self.without_rowid {
            Identity::Key
        } else if self.rowid_alias().is_some()
            && (self.integer_primary_key().is_some() || self.key_columns().is_empty())
        {
            Identity::Rowid
        } else {
            Identity::Image
        }
    }

    /// Whether the replica writes the source's rowid with each row: every
    /// rowid table whose rowid has a name no column shadows. A user who
    /// reads `rowid` in the replica sees the source's.
    pub fn keeps_rowid(&self) -> bool {
        !self.without_rowid && self.rowid_alias().is_some()
    }

    /// Whether the replica keeps a rowid that SQLite may renumber when it
    /// rewrites the file (no `INTEGER PRIMARY KEY` holds it): the engine
    /// then reseeds the table after a `VACUUM` or a reload.
    pub fn rowids_may_be_renumbered(&self) -> bool {
        self.keeps_rowid() && self.integer_primary_key().is_none()
    }

    /// Whether replicas made before rowids were kept renumbered this
    /// table's rows ([`Identity::Image`] with a usable rowid name).
    pub fn rowids_newly_kept(&self) -> bool {
        self.keeps_rowid() && self.identity() == Identity::Image
    }

    /// The columns a replica writes, each with the image parameter it
    /// binds: `(rowid, ?1)` where it keeps the rowid
    /// ([`Self::keeps_rowid`]), then the captured columns. Images always
    /// hold the rowid first for rowid tables, so a parameter number is the
    /// image position plus one.
    fn written(&self) -> Vec<(String, usize)> {
        let shift = usize::from(!self.without_rowid);
        let rowid = if self.keeps_rowid() { self.rowid_alias().map(|a| (a.to_string(), 1)) } else { None };
        rowid
            .into_iter()
            .chain(self.captured().enumerate().map(|(i, c)| (quote_ident(&c.name), i + 1 + shift)))
            .collect()
    }

    /// `WHERE` clause finding the row of a before image whose identity
    /// values are bound from parameter `first` (in [`Self::identity_positions`] order).
    fn identity_predicate(&self, first: usize) -> String {
        let table = quote_ident(&self.name);
        match self.identity() {
            Identity::Rowid => format!("{} = ?{first}", self.rowid_alias().unwrap_or("rowid")),
            Identity::Key => self
                .key_columns()
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} = ?{}", quote_ident(&c.name), first + i))
                .collect::<Vec<_>>()
                .join(" AND "),
            Identity::Image => {
                let alias = self.rowid_alias().unwrap_or("rowid");
                let terms: Vec<String> = self
                    .captured()
                    .enumerate()
                    .map(|(i, c)| {
                        let (col, p) = (quote_ident(&c.name), first + i);
                        format!("{col} IS ?{p} AND typeof({col}) = typeof(?{p})")
                    })
                    .collect();
                format!("{alias} = (SELECT {alias} FROM {table} WHERE {} LIMIT 1)", terms.join(" AND "))
            }
        }
    }

    /// Upsert of one image (parameters in image order). `OR REPLACE`
    /// mirrors the source exactly when the source itself used `INSERT OR
    /// REPLACE` and evicted rows by any unique constraint without a delete
    /// trigger.
    pub fn upsert_sql(&self) -> String {
        let (cols, params): (Vec<String>, Vec<String>) =
            self.written().into_iter().map(|(c, p)| (c, format!("?{p}"))).unzip();
        format!("INSERT OR REPLACE INTO {}({}) VALUES({})", quote_ident(&self.name), cols.join(", "), params.join(", "))
    }

    /// Update to the after image (parameters `?1..?n` in image order) of
    /// the row identified by the before image (its identity values from
    /// `?n+1`). Handles key changes; `OR REPLACE` as for [`Self::upsert_sql`].
    pub fn update_sql(&self) -> String {
        let sets: Vec<String> = self.written().into_iter().map(|(c, p)| format!("{c} = ?{p}")).collect();
        format!(
            "UPDATE OR REPLACE {} SET {} WHERE {}",
            quote_ident(&self.name),
            sets.join(", "),
            self.identity_predicate(self.image_len() + 1)
        )
    }

    /// Idempotent delete of the row identified by a before image (its
    /// identity values from `?1`).
    pub fn delete_sql(&self) -> String {
        format!("DELETE FROM {} WHERE {}", quote_ident(&self.name), self.identity_predicate(1))
    }

    /// Positions within an image of the identity values that
    /// [`Self::update_sql`] and [`Self::delete_sql`] bind, in order.
    pub fn identity_positions(&self) -> Vec<usize> {
        let shift = usize::from(!self.without_rowid);
        match self.identity() {
            Identity::Rowid => vec![0],
            Identity::Key => self.key_positions(),
            Identity::Image => (0..self.captured_len()).map(|i| i + shift).collect(),
        }
    }

    /// Removes every row (bootstrap purge).
    pub fn purge_sql(&self) -> String {
        format!("DELETE FROM {}", quote_ident(&self.name))
    }

    /// Reads every row as images, in rowid or key order (bootstrap snapshot).
    pub fn snapshot_sql(&self) -> String {
        let order = match self.rowid_alias() {
            Some(alias) => alias.to_string(),
            None => self.key_columns().iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", "),
        };
        format!("SELECT {} FROM {} ORDER BY {order}", self.image_columns().join(", "), quote_ident(&self.name))
    }

    /// Copies rows straight from the same table in the attached database
    /// `schema` into `main` (a bootstrap inside SQLite, no values through
    /// the caller), writing exactly the columns [`Self::upsert_sql`]
    /// writes. For a table with a usable rowid name the copy is one batch:
    /// rows with rowids from `?1` to `?2`, inclusive (see
    /// [`Self::copy_bound_sql`]); otherwise it copies every row at once.
    pub fn copy_sql(&self, schema: &str) -> String {
        let cols: Vec<String> = self.written().into_iter().map(|(c, _)| c).collect();
        let cols = cols.join(", ");
        let (table, from) = (quote_ident(&self.name), quote_ident(schema));
        let range = match self.rowid_alias() {
            Some(alias) => format!(" WHERE {alias} BETWEEN ?1 AND ?2 ORDER BY {alias}"),
            None => String::new(),
        };
        format!("INSERT OR REPLACE INTO main.{table}({cols}) SELECT {cols} FROM {from}.{table}{range}")
    }

    /// Copies every row of the table from the attached database `schema`
    /// into an empty table of the same definition, as one `INSERT … SELECT
    /// *`: SQLite transfers such rows as raw records.
    pub fn copy_whole_sql(&self, schema: &str) -> String {
        let (table, from) = (quote_ident(&self.name), quote_ident(schema));
        format!("INSERT OR REPLACE INTO main.{table} SELECT * FROM {from}.{table}")
    }

    /// The rowid `?2` rows past rowid `?1` (inclusive) in the attached
    /// database `schema`: where the next copy batch starts. `None` when
    /// the table has no usable rowid name (copied in one statement).
    pub fn copy_bound_sql(&self, schema: &str) -> Option<String> {
        let alias = self.rowid_alias()?;
        let (table, from) = (quote_ident(&self.name), quote_ident(schema));
        Some(format!("SELECT {alias} FROM {from}.{table} WHERE {alias} >= ?1 ORDER BY {alias} LIMIT 1 OFFSET ?2"))
    }

    /// Copies one batch of a table without a usable rowid name along its
    /// primary key, like [`Self::copy_sql`]: rows whose key is at or after
    /// `?1..?n` (with `lower`) and before `?{n+1}..?{2n}` (with `upper`,
    /// numbered from 1 without `lower`), `n` being the key's width. The
    /// comparison and the order are the key columns' own (their declared
    /// collations), one consistent order whatever the key's index: the
    /// batches cut it into ranges that neither overlap nor miss a row.
    /// Whether the key's index serves them is for the caller to check
    /// (the query plan).
    pub fn copy_by_key_sql(&self, schema: &str, lower: bool, upper: bool) -> String {
        let cols: Vec<String> = self.written().into_iter().map(|(c, _)| c).collect();
        let cols = cols.join(", ");
        let (table, from) = (quote_ident(&self.name), quote_ident(schema));
        let (key, n) = (self.key_list(), self.key_columns().len());
        let mut range = Vec::new();
        if lower {
            range.push(format!("({key}) >= {}", params(1, n)));
        }
        if upper {
            let first = if lower { n + 1 } else { 1 };
            range.push(format!("({key}) < {}", params(first, n)));
        }
        let range = if range.is_empty() { String::new() } else { format!(" WHERE {}", range.join(" AND ")) };
        format!("INSERT OR REPLACE INTO main.{table}({cols}) SELECT {cols} FROM {from}.{table}{range} ORDER BY {key}")
    }

    /// The key `?{n+1}` rows past the key `?1..?n` (inclusive; with
    /// `lower`, else from the first row, the offset then being `?1`), in
    /// the order of [`Self::copy_by_key_sql`]: where its next batch starts.
    pub fn copy_by_key_bound_sql(&self, schema: &str, lower: bool) -> String {
        let (table, from) = (quote_ident(&self.name), quote_ident(schema));
        let (key, n) = (self.key_list(), self.key_columns().len());
        let (range, offset) =
            if lower { (format!(" WHERE ({key}) >= {}", params(1, n)), n + 1) } else { (String::new(), 1) };
        format!("SELECT {key} FROM {from}.{table}{range} ORDER BY {key} LIMIT 1 OFFSET ?{offset}")
    }

    /// The key columns, quoted, in key order: `"a", "b"`.
    fn key_list(&self) -> String {
        self.key_columns().iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ")
    }

    /// Column list of one image: `rowid, "a", "b"`.
    fn image_columns(&self) -> Vec<String> {
        self.rowid_alias()
            .map(str::to_string)
            .into_iter()
            .chain(self.captured().map(|c| quote_ident(&c.name)))
            .collect()
    }

    /// Reads every row as a replica must hold it, in an order that depends
    /// only on the values: the rowid is included wherever the replica keeps
    /// it ([`Self::keeps_rowid`]); rows are ordered by their key, or by
    /// every column. Comparing this from source and replica tells whether
    /// they hold the same rows.
    pub fn comparable_sql(&self) -> String {
        let cols: Vec<String> = if self.keeps_rowid() {
            self.image_columns()
        } else {
            self.captured().map(|c| quote_ident(&c.name)).collect()
        };
        let order = match self.identity() {
            Identity::Key => self.key_columns().iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>(),
            _ => cols.clone(),
        };
        let order = if order.is_empty() { "1".to_string() } else { order.join(", ") };
        format!("SELECT {} FROM {} ORDER BY {order}", cols.join(", "), quote_ident(&self.name))
    }
}

/// `(?first, ..., ?{first+n-1})`.
fn params(first: usize, n: usize) -> String {
    let p: Vec<String> = (first..first + n).map(|i| format!("?{i}")).collect();
    format!("({})", p.join(", "))
}

#[cfg(test)]
mod tests {
    use crate::table::tests::users;
    use crate::{ColumnDesc, TableDesc};

    #[test]
    fn copy_statements() {
        let t = users();
        assert_eq!(
            t.copy_sql("src"),
            "INSERT OR REPLACE INTO main.\"users\"(rowid, \"id\", \"name\") SELECT rowid, \"id\", \"name\" \
             FROM \"src\".\"users\" WHERE rowid BETWEEN ?1 AND ?2 ORDER BY rowid"
        );
        assert_eq!(
            t.copy_bound_sql("src").unwrap(),
            "SELECT rowid FROM \"src\".\"users\" WHERE rowid >= ?1 ORDER BY rowid LIMIT 1 OFFSET ?2"
        );
    }

    /// A `WITHOUT ROWID` table whose key order is not its column order.
    fn kv() -> TableDesc {
        TableDesc {
            name: "kv".into(),
            columns: vec![
                ColumnDesc { primary_key: 2, ..ColumnDesc::new("b", "TEXT") },
                ColumnDesc::new("v", "BLOB"),
                ColumnDesc { primary_key: 1, ..ColumnDesc::new("a", "INT") },
            ]
            .into(),
            without_rowid: true,
            integer_key_not_rowid: false,
        }
    }

    #[test]
    fn key_copy_statements() {
        let t = kv();
        let head =
            "INSERT OR REPLACE INTO main.\"kv\"(\"b\", \"v\", \"a\") SELECT \"b\", \"v\", \"a\" FROM \"s\".\"kv\"";
        let (k, order) = ("(\"a\", \"b\")", "ORDER BY \"a\", \"b\"");
        assert_eq!(t.copy_by_key_sql("s", false, false), format!("{head} {order}"));
        assert_eq!(t.copy_by_key_sql("s", false, true), format!("{head} WHERE {k} < (?1, ?2) {order}"));
        assert_eq!(
            t.copy_by_key_sql("s", true, true),
            format!("{head} WHERE {k} >= (?1, ?2) AND {k} < (?3, ?4) {order}")
        );
        assert_eq!(t.copy_by_key_sql("s", true, false), format!("{head} WHERE {k} >= (?1, ?2) {order}"));
        assert_eq!(
            t.copy_by_key_bound_sql("s", false),
            format!("SELECT \"a\", \"b\" FROM \"s\".\"kv\" {order} LIMIT 1 OFFSET ?1")
        );
        assert_eq!(
            t.copy_by_key_bound_sql("s", true),
            format!("SELECT \"a\", \"b\" FROM \"s\".\"kv\" WHERE {k} >= (?1, ?2) {order} LIMIT 1 OFFSET ?3")
        );
    }

    #[test]
    fn rowid_statements() {
        let t = users();
        assert_eq!(t.upsert_sql(), "INSERT OR REPLACE INTO \"users\"(rowid, \"id\", \"name\") VALUES(?1, ?2, ?3)");
        assert_eq!(
            t.update_sql(),
            "UPDATE OR REPLACE \"users\" SET rowid = ?1, \"id\" = ?2, \"name\" = ?3 WHERE rowid = ?4"
        );
        assert_eq!(t.delete_sql(), "DELETE FROM \"users\" WHERE rowid = ?1");
        assert_eq!(t.identity_positions(), vec![0]);
    }

    #[test]
    fn without_rowid_statements_use_key_order() {
        let t = kv();
        assert_eq!(t.delete_sql(), "DELETE FROM \"kv\" WHERE \"a\" = ?1 AND \"b\" = ?2");
        assert_eq!(t.identity_positions(), vec![2, 0]);
        assert!(t.update_sql().ends_with("WHERE \"a\" = ?4 AND \"b\" = ?5"));
        assert!(t.snapshot_sql().ends_with("ORDER BY \"a\", \"b\""));
    }

    #[test]
    fn rowid_tables_without_an_integer_primary_key() {
        // No key at all: by rowid (the only thing telling equal rows
        // apart), renumbered only by a rewrite of the file.
        let t = TableDesc {
            name: "nokey".into(),
            columns: vec![ColumnDesc::new("x", ""), ColumnDesc::new("y", "TEXT")].into(),
            without_rowid: false,
            integer_key_not_rowid: false,
        };
        assert_eq!(t.identity(), crate::Identity::Rowid);
        assert!(t.rowids_may_be_renumbered());
        assert_eq!(t.upsert_sql(), "INSERT OR REPLACE INTO \"nokey\"(rowid, \"x\", \"y\") VALUES(?1, ?2, ?3)");
        assert_eq!(t.delete_sql(), "DELETE FROM \"nokey\" WHERE rowid = ?1");
        assert_eq!(t.comparable_sql(), "SELECT rowid, \"x\", \"y\" FROM \"nokey\" ORDER BY rowid, \"x\", \"y\"");
        assert!(!t.rowids_newly_kept());
        // A declared key that is not an INTEGER PRIMARY KEY: found by values
        // (its index makes that fast), never by a rowid that may differ
        // after a VACUUM; but the source's rowid is written with the row.
        let mut keyed = t.clone();
        keyed.columns.to_mut()[1].primary_key = 1;
        assert_eq!(keyed.identity(), crate::Identity::Image);
        assert!(keyed.rowids_may_be_renumbered() && keyed.rowids_newly_kept());
        assert_eq!(keyed.upsert_sql(), "INSERT OR REPLACE INTO \"nokey\"(rowid, \"x\", \"y\") VALUES(?1, ?2, ?3)");
        assert!(keyed.update_sql().starts_with("UPDATE OR REPLACE \"nokey\" SET rowid = ?1, \"x\" = ?2"));
        // Every column shadowing a rowid name: nothing to keep.
        let mut shadowed = keyed.clone();
        for name in ["rowid", "oid", "_rowid_"] {
            shadowed.columns.to_mut().push(ColumnDesc::new(name, ""));
        }
        assert!(!shadowed.keeps_rowid() && !shadowed.rowids_may_be_renumbered());
        assert_eq!(
            keyed.delete_sql(),
            "DELETE FROM \"nokey\" WHERE rowid = (SELECT rowid FROM \"nokey\" WHERE \"x\" IS ?1 AND typeof(\"x\") = typeof(?1) \
             AND \"y\" IS ?2 AND typeof(\"y\") = typeof(?2) LIMIT 1)"
        );
        assert!(keyed.update_sql().contains("\"x\" IS ?4"));
        assert_eq!(keyed.identity_positions(), vec![1, 2]);
    }
}
