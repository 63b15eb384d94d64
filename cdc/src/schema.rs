//! Introspection of live tables into the shared [`TableDesc`] model.

use rusqlite::{Connection, OptionalExtension};

use cdc_schema::{ColumnDesc, TableDesc};

use crate::error::{Error, Result};

/// Describes table `name` of the main schema (name matched as SQLite does,
/// ignoring ASCII case). Views, virtual and shadow tables are refused.
pub fn describe(conn: &Connection, name: &str) -> Result<TableDesc> {
    let found: Option<(String, String, bool)> = conn
        .query_row(
            "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1 COLLATE NOCASE",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (name, kind, without_rowid) = found.ok_or_else(|| Error::UnknownTable(name.to_string()))?;
    match kind.as_str() {
        "table" => {}
        "virtual" => return Err(Error::VirtualTable(name)),
        "shadow" => {
            return Err(Error::NotATable { name, kind: "shadow table of a virtual table".into() });
        }
        other => {
            return Err(Error::NotATable { name, kind: other.to_string() });
        }
    }
    let mut stmt =
        conn.prepare("SELECT name, type, \"notnull\", pk, hidden FROM pragma_table_xinfo(?1, 'main') ORDER BY cid")?;
    let columns = stmt
        .query_map([&name], |r| {
            let hidden: i64 = r.get(4)?;
            Ok(ColumnDesc {
                name: r.get::<_, String>(0)?.into(),
                decl_type: r.get::<_, String>(1)?.into(),
                not_null: r.get(2)?,
                primary_key: r.get(3)?,
                generated: hidden == 2 || hidden == 3,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut desc =
        TableDesc { name: name.into(), columns: columns.into(), without_rowid, integer_key_not_rowid: false };
    if desc.integer_primary_key().is_some() {
        // `INTEGER PRIMARY KEY DESC` is no alias of the rowid: SQLite
        // keeps its key in an index of its own, which an alias never has.
        let sql = "SELECT 1 FROM pragma_index_list(?1) WHERE origin = 'pk'";
        desc.integer_key_not_rowid = conn.query_row(sql, [desc.name.as_ref()], |_| Ok(())).optional()?.is_some();
    }
    Ok(desc)
}

/// Ordinary tables of the main schema that capture applies to with
/// `--all`: everything but SQLite's and this project's internal tables,
/// views, virtual tables and their shadow tables.
pub fn capturable_tables(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cdc\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let names = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

/// One line saying how `now` differs from `then` (empty when equal in every
/// respect the fingerprint covers).
pub fn describe_difference(then: &TableDesc, now: &TableDesc) -> String {
    let mut parts = Vec::new();
    for c in then.columns.iter() {
        match now.columns.iter().find(|n| n.name == c.name) {
            None => parts.push(format!("column {:?} was dropped or renamed", c.name)),
            Some(n) if n.decl_type != c.decl_type => {
                parts.push(format!("column {:?} type changed from {:?} to {:?}", c.name, c.decl_type, n.decl_type))
            }
            Some(n) if n != c => parts.push(format!("column {:?} constraints changed", c.name)),
            Some(_) => {}
        }
    }
    for n in now.columns.iter() {
        if !then.columns.iter().any(|c| c.name == n.name) {
            parts.push(format!("column {:?} was added", n.name));
        }
    }
    if then.without_rowid != now.without_rowid {
        parts.push("WITHOUT ROWID changed".into());
    }
    if parts.is_empty() && then != now {
        parts.push("columns were reordered".into());
    }
    parts.join(", ")
}

/// An explicit index of a table (`CREATE INDEX`, not one SQLite made for
/// a constraint), as the source stores it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexSql {
    /// The index's name, which a replica keeps.
    pub name: String,
    /// `CREATE [UNIQUE] INDEX ...` exactly as stored in `sqlite_master`.
    pub sql: String,
    /// A unique index (partial or on expressions included): it decides
    /// which rows the table can hold, and `OR REPLACE` evicts through it.
    pub unique: bool,
}

/// Whether `conn` has an ordinary table named `table` (ignoring ASCII case,
/// as SQLite matches names).
pub fn table_exists(conn: &Connection, table: &str) -> Result<bool> {
    let sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE";
    Ok(conn.query_row(sql, [table], |_| Ok(())).optional()?.is_some())
}

/// One column of a unique key: its name as declared, and the collation
/// the key compares it with (lower case; `rowid` for a rowid alias).
pub type KeyColumn = (String, String);

/// A unique key of a table: which rows it lets the table hold together.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UniqueKey {
    /// An `INTEGER PRIMARY KEY` (the column's collation says `rowid`: it
    /// also turns a NULL into a new rowid), a primary key, a `UNIQUE`
    /// constraint or unique index on columns: those columns, sorted.
    Columns(Vec<KeyColumn>),
    /// A unique index that is partial or on an expression: no set of
    /// columns says what it allows, its SQL does.
    Index(String),
}

/// The unique keys of `table` ([`UniqueKey`]).
pub fn unique_keys(conn: &Connection, table: &str) -> Result<Vec<UniqueKey>> {
    let mut keys = Vec::new();
    // An INTEGER PRIMARY KEY is the rowid: no index lists it.
    let ipk: Option<String> = conn
        .query_row(
            "SELECT name FROM pragma_table_info(?1) WHERE pk = 1 AND lower(type) = 'integer' \
             AND (SELECT count(*) FROM pragma_table_info(?1) WHERE pk > 0) = 1 \
             AND NOT EXISTS (SELECT 1 FROM pragma_index_list(?1) WHERE origin = 'pk')",
            [table],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(name) = ipk {
        keys.push(UniqueKey::Columns(vec![(name, "rowid".to_string())]));
    }
    let mut list = conn.prepare(
        "SELECT il.name, il.partial, m.sql FROM pragma_index_list(?1) AS il \
         LEFT JOIN sqlite_master AS m ON m.type = 'index' AND m.name = il.name WHERE il.\"unique\" = 1",
    )?;
    let indexes: Vec<(String, bool, Option<String>)> =
        list.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
    let mut columns = conn.prepare("SELECT cid, name, coll FROM pragma_index_xinfo(?1) WHERE key = 1")?;
    for (index, partial, sql) in indexes {
        let cols: Vec<(i64, Option<String>, Option<String>)> =
            columns.query_map([&index], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
        let named: Option<Vec<KeyColumn>> = cols
            .into_iter()
            .map(|(cid, name, coll)| Some((name.filter(|_| cid >= 0)?, coll.unwrap_or_default().to_lowercase())))
            .collect();
        keys.push(match (named, partial) {
            (Some(mut cols), false) => {
                cols.sort();
                UniqueKey::Columns(cols)
            }
            // Only an explicit index can be partial or on an expression.
            _ => UniqueKey::Index(sql.unwrap_or(index)),
        });
    }
    Ok(keys)
}

/// The SQL of the unique ones among `indexes`, in their order.
pub fn unique_index_sql(indexes: &[IndexSql]) -> Vec<&str> {
    indexes.iter().filter(|i| i.unique).map(|i| i.sql.as_str()).collect()
}

/// `CREATE TABLE` text of `table` as stored in `sqlite_master`.
pub fn table_sql(conn: &Connection, table: &str) -> Result<String> {
    conn.query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE", [table], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or_else(|| Error::UnknownTable(table.to_string()))
}

/// The explicit indexes of `table`, by name; this project's own (`_cdc_`)
/// are left out.
pub fn indexes(conn: &Connection, table: &str) -> Result<Vec<IndexSql>> {
    let mut stmt = conn.prepare(
        "SELECT m.name, m.sql, il.\"unique\" FROM sqlite_master AS m JOIN pragma_index_list(?1) AS il ON il.name = m.name \
         WHERE m.type = 'index' AND m.tbl_name = ?1 AND m.sql IS NOT NULL \
         AND m.name NOT LIKE '\\_cdc\\_%' ESCAPE '\\' ORDER BY m.name",
    )?;
    let rows = stmt.query_map([table], |r| Ok(IndexSql { name: r.get(0)?, sql: r.get(1)?, unique: r.get(2)? }))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What capture records at install and compares on every schema change:
/// the table model's fingerprint, its `CREATE TABLE` text (CHECK
/// constraints, collations, defaults) and its unique indexes, which
/// decide which rows it can hold. Plain indexes are left out: they change
/// no row, and a replica copies them without a reseed.
pub fn fingerprint(conn: &Connection, desc: &TableDesc) -> Result<String> {
    let sql = table_sql(conn, &desc.name)?;
    let indexes = indexes(conn, &desc.name)?;
    let model = desc.fingerprint();
    let parts =
        [model.as_bytes(), sql.as_bytes()].into_iter().chain(unique_index_sql(&indexes).into_iter().map(str::as_bytes));
    Ok(format!("{:016x}", cdc_schema::fnv1a64(parts)))
}

/// The database's views, by name: `(name, CREATE VIEW as stored)`; none
/// of this project's own (`_cdc…`).
pub fn views(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT name, sql FROM sqlite_master WHERE type = 'view' AND substr(name, 1, 4) <> '_cdc' ORDER BY name",
    )?;
    let views = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    Ok(views)
}

/// The source logs a database is a replica of (none when it is not one),
/// read from its state table: a loop back into one of them is refused.
pub fn replica_of(conn: &Connection) -> Result<Vec<String>> {
    if !table_exists(conn, cdc_schema::replica::STATE_TABLE)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(&cdc_schema::replica::bookkeeping::log_ids_sql())?;
    let ids = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// The [`Event::Schema`](crate::Event::Schema) of `desc`'s table as `conn`
/// sees it now, before its bootstrap.
pub fn table_event(conn: &Connection, desc: &TableDesc) -> Result<crate::Event> {
    let indexes = indexes(conn, &desc.name)?.into_iter().map(|i| i.sql).collect();
    Ok(crate::Event::Schema(crate::Schema {
        name: desc.name.as_ref().into(),
        object: crate::SchemaObject::Table,
        sql: Some(table_sql(conn, &desc.name)?),
        indexes,
        columns: desc.columns.to_vec(),
        without_rowid: desc.without_rowid,
        bootstrap: true,
    }))
}
