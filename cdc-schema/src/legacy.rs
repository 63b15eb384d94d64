//! Format 1 of the log (`cdc-log-1`), as versions before the current
//! format wrote it: `_cdc_log(seq, tid, op, ts, v0..v31)`, the write time
//! as a Julian day, images always starting with the rowid, after images
//! read back from the table.
//!
//! Installing this version over such a log renames it to [`LOG_TABLE`],
//! where its rows stay readable until every consumer is past them (then
//! it is dropped), and starts the new log after its last `seq`: no change
//! is lost and no consumer has to start over. The triggers format 1
//! installed are generated here too, exactly as it generated them, for
//! the tests of that upgrade and for the capture bench's comparison.

use crate::fingerprint::fnv1a64;
use crate::ident::quote_ident;
use crate::log::{Op, value_column};
use crate::table::TableDesc;

/// Where an upgraded log's format 1 rows wait to be consumed.
pub const LOG_TABLE: &str = "_cdc_log_v1";
/// Values per row in format 1.
pub const CHUNK_WIDTH: usize = 32;
/// SQL condition selecting the rows starting a change.
pub const IS_CHANGE: &str = "op BETWEEN 1 AND 3";
/// The format's version, hashed into its capture ids.
pub const FORMAT_VERSION: &str = "cdc-log-1";

/// Value and header columns of a format 1 row, in the order [`read_sql`]
/// and the anchor read them: `tid, op, ts, v0..v31`.
pub fn columns() -> String {
    let values: Vec<String> = (0..CHUNK_WIDTH).map(value_column).collect();
    format!("tid, op, ts, {}", values.join(", "))
}

/// Reads format 1 rows after `?1` up to `?2` inclusive, in `seq` order.
pub fn read_sql() -> String {
    format!("SELECT seq, {} FROM {} WHERE seq > ?1 AND seq <= ?2 ORDER BY seq", columns(), quote_ident(LOG_TABLE))
}

/// The format 1 log's `CREATE TABLE`, named `table` (`_cdc_log` when
/// format 1 made it).
pub fn create_sql(table: &str) -> String {
    let values: Vec<String> = (0..CHUNK_WIDTH).map(value_column).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {}(seq INTEGER PRIMARY KEY, tid INTEGER, op INTEGER NOT NULL, ts REAL, {})",
        quote_ident(table),
        values.join(", ")
    )
}

/// The capture id format 1 gave a table: 47 bits of FNV-1a.
pub fn capture_id(desc: &TableDesc) -> i64 {
    let rowid: &[u8] = if desc.without_rowid { b"without rowid" } else { b"rowid" };
    let parts = [FORMAT_VERSION.as_bytes(), desc.name.as_bytes(), rowid]
        .into_iter()
        .chain(desc.captured().map(|c| c.name.as_bytes()));
    ((fnv1a64(parts) & ((1 << 47) - 1)) as i64).max(1)
}

/// The three `CREATE TRIGGER` statements format 1 installed on `desc`,
/// writing into `_cdc_log`.
pub fn create_triggers(desc: &TableDesc) -> [String; 3] {
    Op::ALL.map(|op| create_trigger(desc, op))
}

fn create_trigger(desc: &TableDesc, op: Op) -> String {
    let table = quote_ident(&desc.name);
    let image = |from: &str| -> Vec<String> {
        let rowid = desc.rowid_alias().map(|alias| format!("{from}.{alias}"));
        rowid.into_iter().chain(desc.captured().map(|c| format!("{from}.{}", quote_ident(&c.name)))).collect()
    };
    let found = match desc.rowid_alias() {
        Some(alias) => format!("{table}.{alias} = NEW.{alias}"),
        None => desc
            .key_columns()
            .iter()
            .map(|c| {
                let col = quote_ident(&c.name);
                format!("{table}.{col} = NEW.{col}")
            })
            .collect::<Vec<_>>()
            .join(" AND "),
    };
    let tid = capture_id(desc);
    let rows = |code: i64, exprs: &[String], tail: &str| -> String {
        let mut body = String::new();
        for (part, chunk) in exprs.chunks(CHUNK_WIDTH).enumerate() {
            let cols: Vec<String> = (0..chunk.len()).map(value_column).collect();
            let (head_cols, head_vals) = if part == 0 {
                ("tid, op, ts, ", format!("{tid}, {code}, julianday('now'), "))
            } else {
                ("op, ", "0, ".to_string())
            };
            body.push_str(&format!(
                "\n  INSERT INTO \"_cdc_log\"({head_cols}{}) SELECT {head_vals}{}{tail};",
                cols.join(", "),
                chunk.join(", ")
            ));
        }
        body
    };
    let from_table = format!(" FROM {table} WHERE {found}");
    let body = match op {
        Op::Insert => rows(1, &image(&table), &from_table),
        Op::Delete => rows(3, &image("OLD"), ""),
        Op::Update => {
            let mut body = rows(2, &[image("OLD"), image(&table)].concat(), &from_table);
            let gone = format!(" WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {found})");
            body.push_str(&rows(3, &image("OLD"), &gone));
            body
        }
    };
    format!(
        "CREATE TRIGGER {} AFTER {} ON {} FOR EACH ROW BEGIN{body}\nEND",
        quote_ident(&desc.trigger_name(op)),
        op.keyword(),
        table
    )
}
