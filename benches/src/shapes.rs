//! Table shapes and capture variants for the trigger-overhead bench.

use cdc::{TableDesc, Value};
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
    /// 6 columns of mixed types.
    pub fn narrow() -> Shape {
        let columns = vec![
            ("a".into(), "INTEGER"),
            ("b".into(), "TEXT"),
            ("c".into(), "REAL"),
            ("d".into(), "BLOB"),
            ("e".into(), "INTEGER"),
        ];
        Shape { name: "narrow", columns, updated: vec![0, 2] }
    }

    /// 100 columns, integers, text and reals in turn.
    pub fn wide() -> Shape {
        let types = ["INTEGER", "TEXT", "REAL"];
        let columns = (1..100).map(|i| (format!("c{i}"), types[i % 3])).collect();
        Shape { name: "wide", columns, updated: vec![0, 1] }
    }

    /// One 4 KiB BLOB.
    pub fn blob() -> Shape {
        Shape { name: "blob4k", columns: vec![("data".into(), "BLOB"), ("n".into(), "INTEGER")], updated: vec![0] }
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
                _ => Value::Blob(vec![(i + version) as u8; 16]),
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

    pub fn desc(&self, conn: &Connection) -> TableDesc {
        cdc::schema::describe(conn, "t").unwrap()
    }
}

/// What captures the writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// No capture: the bare statements.
    None,
    /// This project's triggers.
    Cdc,
    /// kevinconway/sqlite-cdc's triggers (the design this project
    /// replaces, and most trigger-based tools use): `json_object` images,
    /// text timestamp, table and operation names, in its own log table.
    /// BLOBs, which JSON cannot hold, go in as hex (its blob option).
    Json,
    /// No trigger: the application appends the same log row this
    /// project's trigger would, in the same transaction (the floor).
    AppLog,
    /// This project's log rows written from `NEW` by `INSERT … VALUES`,
    /// as capture did before it read the row from the table (which an
    /// application trigger may have rewritten): what that correctness costs.
    NewImage,
    /// A candidate log shape ([`cdc::sql::LogShape`]): this project's
    /// triggers writing rows of that shape into a log table of their own.
    Candidate(Candidate),
}

/// The log shapes measured against capture's own (each changes one
/// thing, the last all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Candidate {
    /// `julianday()` for the write time: the same value without parsing
    /// its `'now'` argument.
    NoArgTime,
    /// 8 value columns per log row instead of 32.
    Width8,
    /// 16 value columns per log row.
    Width16,
    /// The rowid of an `INTEGER PRIMARY KEY` table written once.
    RowidOnce,
    /// All of the above.
    Lean,
}

impl Candidate {
    pub const ALL: [Candidate; 5] =
        [Candidate::NoArgTime, Candidate::Width8, Candidate::Width16, Candidate::RowidOnce, Candidate::Lean];

    pub fn shape(self) -> cdc::sql::LogShape {
        let capture = cdc::sql::LogShape::CAPTURE;
        let candidate = cdc::sql::LogShape { table: "cand_log", ..capture };
        match self {
            Candidate::NoArgTime => cdc::sql::LogShape { time: "julianday()", ..candidate },
            Candidate::Width8 => cdc::sql::LogShape { width: 8, ..candidate },
            Candidate::Width16 => cdc::sql::LogShape { width: 16, ..candidate },
            Candidate::RowidOnce => cdc::sql::LogShape { rowid_once: true, ..candidate },
            Candidate::Lean => cdc::sql::LogShape { width: 8, time: "julianday()", rowid_once: true, ..candidate },
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Candidate::NoArgTime => "cand: julianday()",
            Candidate::Width8 => "cand: 8 values per row",
            Candidate::Width16 => "cand: 16 values per row",
            Candidate::RowidOnce => "cand: rowid once",
            Candidate::Lean => "cand: all three",
        }
    }
}

impl Variant {
    pub const ALL: [Variant; 10] = [
        Variant::None,
        Variant::Cdc,
        Variant::Json,
        Variant::AppLog,
        Variant::NewImage,
        Variant::Candidate(Candidate::NoArgTime),
        Variant::Candidate(Candidate::Width8),
        Variant::Candidate(Candidate::Width16),
        Variant::Candidate(Candidate::RowidOnce),
        Variant::Candidate(Candidate::Lean),
    ];

    pub fn label(self) -> &'static str {
        match self {
            Variant::None => "none",
            Variant::Cdc => "cdc",
            Variant::Json => "json_object",
            Variant::AppLog => "app-writes-log",
            Variant::NewImage => "new-image-trigger",
            Variant::Candidate(c) => c.label(),
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

/// Installs the variant's capture on table `t`.
pub fn install(conn: &mut Connection, shape: &Shape, variant: Variant) {
    match variant {
        Variant::None => {}
        Variant::Cdc => {
            cdc::capture::install(conn, &["t".into()]).unwrap();
        }
        Variant::AppLog => {
            cdc::capture::install(conn, &["t".into()]).unwrap();
            for sql in shape.desc(conn).drop_triggers() {
                conn.execute(&sql, []).unwrap();
            }
        }
        Variant::NewImage => {
            cdc::capture::install(conn, &["t".into()]).unwrap();
            let desc = shape.desc(conn);
            for sql in desc.drop_triggers() {
                conn.execute(&sql, []).unwrap();
            }
            for op in cdc::Op::ALL {
                conn.execute(&new_image_trigger(&desc, op), []).unwrap();
            }
        }
        Variant::Candidate(candidate) => {
            cdc::capture::install(conn, &["t".into()]).unwrap();
            let desc = shape.desc(conn);
            for sql in desc.drop_triggers() {
                conn.execute(&sql, []).unwrap();
            }
            let log = candidate.shape();
            conn.execute(&log.create_sql(), []).unwrap();
            for op in cdc::Op::ALL {
                conn.execute(&desc.create_trigger_shaped(op, &log), []).unwrap();
            }
        }
        Variant::Json => {
            // kevinconway/sqlite-cdc's log table and triggers, as it
            // generates them (with its BLOB support on: hex).
            let (new, old) = (json_image(shape, "NEW"), json_image(shape, "OLD"));
            let now = "datetime('now', 'subsec')";
            conn.execute_batch(&format!(
                "CREATE TABLE __cdc_log(id INTEGER PRIMARY KEY, timestamp TEXT NOT NULL, tablename TEXT NOT NULL,
                   operation TEXT NOT NULL, before TEXT, after TEXT);
                 CREATE TRIGGER t__cdc_insert AFTER INSERT ON t BEGIN
                   INSERT INTO __cdc_log(timestamp, tablename, operation, before, after) VALUES({now}, 't', 'INSERT', NULL, {new}); END;
                 CREATE TRIGGER t__cdc_update AFTER UPDATE ON t BEGIN
                   INSERT INTO __cdc_log(timestamp, tablename, operation, before, after) VALUES({now}, 't', 'UPDATE', {old}, {new}); END;
                 CREATE TRIGGER t__cdc_delete AFTER DELETE ON t BEGIN
                   INSERT INTO __cdc_log(timestamp, tablename, operation, before, after) VALUES({now}, 't', 'DELETE', {old}, NULL); END;"
            ))
            .unwrap();
        }
    }
}

/// A trigger writing this project's log rows with `INSERT … VALUES` from
/// `NEW`/`OLD` (capture's shape before it read after images from the table).
fn new_image_trigger(desc: &TableDesc, op: cdc::Op) -> String {
    let image = |p: &str| -> Vec<String> {
        std::iter::once(format!("{p}.rowid")).chain(desc.captured().map(|c| format!("{p}.\"{}\"", c.name))).collect()
    };
    let exprs = match op {
        cdc::Op::Insert => image("NEW"),
        cdc::Op::Delete => image("OLD"),
        cdc::Op::Update => [image("OLD"), image("NEW")].concat(),
    };
    let body: String = app_log_sql(desc, op, exprs.len())
        .into_iter()
        .scan(0, |at, (sql, n)| {
            let mut sql = sql;
            for (i, e) in exprs[*at..*at + n].iter().enumerate() {
                sql = sql.replacen(&format!("?{}", i + 1), e, 1);
            }
            *at += n;
            Some(format!("{sql}; "))
        })
        .collect();
    format!("CREATE TRIGGER old_shape_{} AFTER {} ON t BEGIN {body}END", op.code(), op.keyword())
}

/// The log-row inserts the application issues itself for one change of
/// `values` values: the same rows, chunks and header the trigger writes.
pub fn app_log_sql(desc: &TableDesc, op: cdc::Op, values: usize) -> Vec<(String, usize)> {
    let width = cdc::sql::CHUNK_WIDTH;
    (0..values.div_ceil(width))
        .map(|part| {
            let n = (values - part * width).min(width);
            let cols: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
            let params: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
            let sql = if part == 0 {
                format!(
                    "INSERT INTO _cdc_log(tid, op, ts, {}) VALUES({}, {}, julianday('now'), {})",
                    cols.join(", "),
                    desc.capture_id(),
                    op.code(),
                    params.join(", ")
                )
            } else {
                format!("INSERT INTO _cdc_log(op, {}) VALUES(0, {})", cols.join(", "), params.join(", "))
            };
            (sql, n)
        })
        .collect()
}

/// Appends one change's log rows the way [`app_log_sql`] describes.
pub fn app_log(conn: &Connection, sql: &[(String, usize)], values: &[Value]) {
    let mut rest = values;
    for (stmt, n) in sql {
        conn.prepare_cached(stmt).unwrap().execute(params_from_iter(&rest[..*n])).unwrap();
        rest = &rest[*n..];
    }
}
