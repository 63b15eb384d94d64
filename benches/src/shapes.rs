//! Table shapes, capture variants and the write workload of the capture
//! benches (`capture`: wall time with criterion; `instructions`: counted
//! by callgrind, through this build's SQLite and the system's).

use cdc::{Op, TableDesc, Value};
use rusqlite::{Connection, params_from_iter};

/// A table shape: its columns and how to make rows and updates.
pub struct Shape {
    pub name: &'static str,
    /// `(column, declared type)` after `id INTEGER PRIMARY KEY`.
    pub columns: Vec<(String, &'static str)>,
    /// Columns an UPDATE sets (indexes into `columns`).
    pub updated: Vec<usize>,
}

impl Shape {
    /// `id`, an INTEGER and a TEXT column.
    pub fn narrow() -> Shape {
        Shape { name: "narrow", columns: vec![("a".into(), "INTEGER"), ("b".into(), "TEXT")], updated: vec![0, 1] }
    }

    /// `id` and 20 columns: INTEGER, TEXT, REAL and a 200-byte BLOB in turn.
    pub fn wide() -> Shape {
        let types = ["INTEGER", "TEXT", "REAL", "BLOB"];
        let columns = (0..20).map(|i| (format!("c{i}"), types[i % 4])).collect();
        Shape { name: "wide", columns, updated: vec![0, 1] }
    }

    /// One 4 KiB BLOB and an INTEGER.
    pub fn blob() -> Shape {
        Shape { name: "blob4k", columns: vec![("data".into(), "BLOB"), ("n".into(), "INTEGER")], updated: vec![0] }
    }

    /// The three shapes, by name.
    pub fn all() -> [Shape; 3] {
        [Shape::narrow(), Shape::wide(), Shape::blob()]
    }

    pub fn by_name(name: &str) -> Option<Shape> {
        Shape::all().into_iter().find(|s| s.name == name)
    }

    pub fn create_sql(&self) -> String {
        let cols: Vec<String> = self.columns.iter().map(|(c, t)| format!("{c} {t}")).collect();
        format!("CREATE TABLE t(id INTEGER PRIMARY KEY, {})", cols.join(", "))
    }

    /// Row `i` (without the id), deterministic; `version` varies updates.
    pub fn row(&self, i: i64, version: i64) -> Vec<Value> {
        self.columns
            .iter()
            .enumerate()
            .map(|(k, (_, t))| match *t {
                "INTEGER" => Value::Integer(i * 7 + k as i64 + version),
                "REAL" => Value::Real(i as f64 * 0.25 + version as f64),
                "TEXT" => Value::Text(format!("value {i} {k} {version}")),
                _ if self.name == "blob4k" => Value::Blob(vec![(i + version) as u8; 4096]),
                _ => Value::Blob(vec![(i + version) as u8; 200]),
            })
            .collect()
    }

    pub fn insert_sql(&self) -> String {
        let params: Vec<String> = (1..=self.columns.len() + 1).map(|i| format!("?{i}")).collect();
        format!("INSERT INTO t VALUES({})", params.join(", "))
    }

    pub fn update_sql(&self) -> String {
        let sets: Vec<String> =
            self.updated.iter().enumerate().map(|(n, &c)| format!("{} = ?{}", self.columns[c].0, n + 2)).collect();
        format!("UPDATE t SET {} WHERE id = ?1", sets.join(", "))
    }

    /// The statement a workload of `op` runs, with its parameters for row `i`.
    pub fn statement(&self, op: Op) -> String {
        match op {
            Op::Insert => self.insert_sql(),
            Op::Update => self.update_sql(),
            Op::Delete => "DELETE FROM t WHERE id = ?1".to_string(),
        }
    }

    /// Parameters of `op`'s statement for row `i`.
    pub fn params(&self, op: Op, i: i64) -> Vec<Value> {
        let id = std::iter::once(Value::Integer(i));
        match op {
            Op::Insert => id.chain(self.row(i, 0)).collect(),
            Op::Update => {
                let changed = self.row(i, 1);
                id.chain(self.updated.iter().map(|&c| changed[c].clone())).collect()
            }
            Op::Delete => id.collect(),
        }
    }

    /// The table as capture describes it (a scratch database's).
    pub fn desc(&self) -> TableDesc {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&self.create_sql()).unwrap();
        cdc::schema::describe(&conn, "t").unwrap()
    }
}

/// What captures the writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// No capture: the bare statements.
    None,
    /// This project's triggers, inserts logged from `NEW` (the default).
    Cdc,
    /// This project's triggers, inserts read back from the table
    /// (`cdc-setup install --inserts reread`).
    CdcReread,
    /// The triggers and log format 1 of earlier versions (36 columns, a
    /// write time, after images read back): what this format replaced.
    Format1,
    /// kevinconway/sqlite-cdc's triggers (the design most trigger-based
    /// tools use): `json_object` images, a text timestamp, table and
    /// operation names, in its own log table. BLOBs, which JSON cannot
    /// hold, go in as hex (its blob option).
    Json,
    /// The JSON design at its plainest: one `json_object` per image, an
    /// integer table id and operation, no time, BLOBs as hex.
    JsonPlain,
    /// The floor: one AFTER trigger appending the row's values (`NEW`,
    /// `OLD`, both for an update) to a plain table, nothing else.
    Floor,
}

impl Variant {
    pub const ALL: [Variant; 7] = [
        Variant::None,
        Variant::Cdc,
        Variant::CdcReread,
        Variant::Format1,
        Variant::Json,
        Variant::JsonPlain,
        Variant::Floor,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Variant::None => "none",
            Variant::Cdc => "cdc",
            Variant::CdcReread => "cdc, inserts reread",
            Variant::Format1 => "cdc format 1",
            Variant::Json => "kevinconway/sqlite-cdc",
            Variant::JsonPlain => "json_object trigger",
            Variant::Floor => "floor: trigger to a plain table",
        }
    }

    pub fn by_label(label: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.label() == label)
    }

    /// The SQL that installs the variant on `shape`'s table `t` (run after
    /// the table exists). Plain SQL, so that the system's SQLite (Python's
    /// `sqlite3`) runs exactly the same. `subsec`: the SQLite that runs it
    /// has `datetime('now', 'subsec')` (3.42 and later).
    pub fn setup_sql(self, shape: &Shape, subsec: bool) -> Vec<String> {
        let desc = shape.desc();
        match self {
            Variant::None => Vec::new(),
            Variant::Cdc | Variant::CdcReread => {
                let inserts = if self == Variant::Cdc { cdc::InsertImage::New } else { cdc::InsertImage::Reread };
                let mut sql = cdc::sql::log::internal_ddl();
                sql.extend(desc.create_triggers_with(inserts));
                sql
            }
            Variant::Format1 => {
                let mut sql = vec![cdc::sql::legacy::create_sql("_cdc_log")];
                sql.extend(cdc::sql::legacy::create_triggers(&desc));
                sql
            }
            Variant::Json => json_triggers(shape, subsec),
            Variant::JsonPlain => plain_json_triggers(shape),
            Variant::Floor => floor_triggers(shape),
        }
    }

    /// Installs the variant on `t`, for an SQLite with or without
    /// `datetime('now', 'subsec')` (see [`Self::setup_sql`]).
    pub fn install(self, conn: &Connection, shape: &Shape, subsec: bool) {
        for sql in self.setup_sql(shape, subsec) {
            conn.execute_batch(&sql).unwrap();
        }
    }
}

/// A row as kevinconway/sqlite-cdc writes it: `json_object` of every
/// column, 63 columns per object, objects merged with `json_patch`.
fn json_image(shape: &Shape, prefix: &str) -> String {
    let pairs: Vec<String> = std::iter::once(format!("'id', {prefix}.id"))
        .chain(shape.columns.iter().map(|(c, t)| {
            if *t == "BLOB" { format!("'{c}', hex({prefix}.{c})") } else { format!("'{c}', {prefix}.{c}") }
        }))
        .collect();
    let objects: Vec<String> = pairs.chunks(63).map(|c| format!("json_object({})", c.join(", "))).collect();
    let (last, rest) = objects.split_last().unwrap();
    rest.iter().rev().fold(last.clone(), |acc, o| format!("json_patch({o}, {acc})"))
}

/// kevinconway/sqlite-cdc's log table and triggers, as it generates them
/// (with its BLOB support on: hex). Its default time, `datetime('now',
/// 'subsec')`, needs SQLite 3.42: without `subsec`, `datetime('now')` (its
/// option for older builds).
fn json_triggers(shape: &Shape, subsec: bool) -> Vec<String> {
    let (new, old) = (json_image(shape, "NEW"), json_image(shape, "OLD"));
    let now = if subsec { "datetime('now', 'subsec')" } else { "datetime('now')" };
    let insert = |op: &str, before: &str, after: &str| {
        format!(
            "INSERT INTO __cdc_log(timestamp, tablename, operation, before, after) VALUES({now}, 't', '{op}', {before}, {after});"
        )
    };
    vec![
        "CREATE TABLE __cdc_log(id INTEGER PRIMARY KEY, timestamp TEXT NOT NULL, tablename TEXT NOT NULL, \
         operation TEXT NOT NULL, before TEXT, after TEXT)"
            .into(),
        format!("CREATE TRIGGER t__cdc_insert AFTER INSERT ON t BEGIN {} END", insert("INSERT", "NULL", &new)),
        format!("CREATE TRIGGER t__cdc_update AFTER UPDATE ON t BEGIN {} END", insert("UPDATE", &old, &new)),
        format!("CREATE TRIGGER t__cdc_delete AFTER DELETE ON t BEGIN {} END", insert("DELETE", &old, "NULL")),
    ]
}

/// One `json_object` per image into a log of its own: no time, no names.
fn plain_json_triggers(shape: &Shape) -> Vec<String> {
    let object = |p: &str| {
        let pairs: Vec<String> =
            std::iter::once(format!("'id', {p}.id"))
                .chain(shape.columns.iter().map(|(c, t)| {
                    if *t == "BLOB" { format!("'{c}', hex({p}.{c})") } else { format!("'{c}', {p}.{c}") }
                }))
                .collect();
        format!("json_object({})", pairs.join(", "))
    };
    let insert = |op: i64, before: &str, after: &str| {
        format!("INSERT INTO json_log(tid, op, before, after) VALUES(1, {op}, {before}, {after});")
    };
    vec![
        "CREATE TABLE json_log(seq INTEGER PRIMARY KEY, tid INTEGER, op INTEGER, before TEXT, after TEXT)".into(),
        format!("CREATE TRIGGER json_insert AFTER INSERT ON t BEGIN {} END", insert(1, "NULL", &object("NEW"))),
        format!("CREATE TRIGGER json_update AFTER UPDATE ON t BEGIN {} END", insert(2, &object("OLD"), &object("NEW"))),
        format!("CREATE TRIGGER json_delete AFTER DELETE ON t BEGIN {} END", insert(3, &object("OLD"), "NULL")),
    ]
}

/// The floor: one AFTER trigger per operation appending the row's values
/// to a plain table with as many value columns as an UPDATE needs.
fn floor_triggers(shape: &Shape) -> Vec<String> {
    let names: Vec<String> =
        std::iter::once("id".to_string()).chain(shape.columns.iter().map(|c| c.0.clone())).collect();
    let cols: Vec<String> = (0..2 * names.len()).map(|i| format!("v{i}")).collect();
    let image = |p: &str| names.iter().map(|n| format!("{p}.{n}")).collect::<Vec<_>>();
    let insert = |values: Vec<String>| {
        format!("INSERT INTO plain({}) VALUES({});", cols[..values.len()].join(", "), values.join(", "))
    };
    vec![
        format!("CREATE TABLE plain(seq INTEGER PRIMARY KEY, {})", cols.join(", ")),
        format!("CREATE TRIGGER floor_insert AFTER INSERT ON t BEGIN {} END", insert(image("NEW"))),
        format!(
            "CREATE TRIGGER floor_update AFTER UPDATE ON t BEGIN {} END",
            insert([image("OLD"), image("NEW")].concat())
        ),
        format!("CREATE TRIGGER floor_delete AFTER DELETE ON t BEGIN {} END", insert(image("OLD"))),
    ]
}

/// Rows a workload touches; updates and deletes need them in place first.
pub const TABLE_ROWS: i64 = 10_000;

/// A database at `path` ready for `rows` writes of `op` on `shape` under
/// `variant`: the table (filled for updates and deletes), the variant, a
/// checkpointed WAL and no automatic checkpoint (one would fire inside
/// the measured loop at points that differ from variant to variant).
/// `subsec`: for an SQLite with `datetime('now', 'subsec')`.
pub fn prepare(path: &std::path::Path, shape: &Shape, variant: Variant, op: Op, subsec: bool) -> Connection {
    let mut conn = crate::open_scratch(path);
    conn.execute_batch(&shape.create_sql()).unwrap();
    if op != Op::Insert {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx.prepare(&shape.insert_sql()).unwrap();
            for i in 1..=TABLE_ROWS {
                stmt.execute(params_from_iter(shape.params(Op::Insert, i))).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    variant.install(&conn, shape, subsec);
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    conn
}

/// `rows` single-row statements of `op` on rows `1..=rows`, in one
/// transaction or one transaction each.
pub fn write(conn: &Connection, shape: &Shape, op: Op, rows: i64, one_transaction: bool) {
    let mut stmt = conn.prepare_cached(&shape.statement(op)).unwrap();
    if one_transaction {
        conn.execute_batch("BEGIN").unwrap();
    }
    for i in 1..=rows {
        if !one_transaction {
            conn.execute_batch("BEGIN").unwrap();
        }
        stmt.execute(params_from_iter(shape.params(op, i))).unwrap();
        if !one_transaction {
            conn.execute_batch("COMMIT").unwrap();
        }
    }
    if one_transaction {
        conn.execute_batch("COMMIT").unwrap();
    }
}

/// A statement parameter as the Python side of the benches reads it from
/// a JSON plan: BLOBs as `{"blob": "<hex>"}`, everything else as JSON.
pub fn plan_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(r) => (*r).into(),
        Value::Text(t) => t.clone().into(),
        Value::Blob(b) => serde_json::json!({ "blob": b.iter().map(|x| format!("{x:02x}")).collect::<String>() }),
    }
}
