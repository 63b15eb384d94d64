//! Statements on the source's internal tables beside the log: the
//! registry of layouts (`_cdc_tables`), the consumers (`_cdc_consumers`),
//! the meta table (`_cdc_meta`); reads of the log itself (water marks,
//! anchors, what a consumer lacks) and pruning. Parameters are numbered
//! as each function says.

use crate::legacy;
use crate::log::{CHUNK_WIDTH, CONSUMERS_TABLE, IS_CHANGE, LOG_TABLE, META_TABLE, TABLES_TABLE, TID_OF_KIND};
use crate::quote_ident;

fn log() -> String {
    quote_ident(LOG_TABLE)
}

fn consumers() -> String {
    quote_ident(CONSUMERS_TABLE)
}

fn meta() -> String {
    quote_ident(META_TABLE)
}

fn registry() -> String {
    quote_ident(TABLES_TABLE)
}

/// Whether table `?1` exists.
pub const TABLE_EXISTS: &str = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1";

/// Whether table `?1` has a column named `?2`.
pub const HAS_COLUMN: &str = "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2";

/// The highest `seq` of log table `table` (0 when empty, or NULL with
/// `or_null`).
pub fn max_seq_sql(table: &str, or_null: bool) -> String {
    if or_null {
        format!("SELECT max(seq) FROM {}", quote_ident(table))
    } else {
        format!("SELECT coalesce(max(seq), 0) FROM {}", quote_ident(table))
    }
}

/// The lowest `seq` of log table `table` (NULL when empty).
pub fn min_seq_sql(table: &str) -> String {
    format!("SELECT min(seq) FROM {}", quote_ident(table))
}

/// The row at `?1` of log table `table` (current format): kind and values.
pub fn anchor_sql(table: &str) -> String {
    let values: Vec<String> = (0..CHUNK_WIDTH).map(crate::log::value_column).collect();
    format!("SELECT kind, {} FROM {} WHERE seq = ?1", values.join(", "), quote_ident(table))
}

/// The sealed segments of the log, by name (so in `seq` order).
pub fn segments_sql() -> String {
    format!(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB '{}[0-9]*' ORDER BY name",
        crate::log::SEGMENT_PREFIX
    )
}

/// A format 1 row at `?1`: every column but `seq`.
pub fn legacy_anchor_sql() -> String {
    format!("SELECT {} FROM {} WHERE seq = ?1", legacy::columns(), quote_ident(legacy::LOG_TABLE))
}

/// The changes of layouts `tids` after `?1` up to `?2` in log table
/// `table` (format 1's when `legacy_log`): count, and the `seq` of the
/// oldest.
pub fn pending_sql(tids: &[i64], table: &str, legacy_log: bool) -> String {
    let list = tids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let (is_change, tid) = if legacy_log { (legacy::IS_CHANGE, "tid") } else { (IS_CHANGE, TID_OF_KIND) };
    format!(
        "SELECT count(*), min(seq) FROM {} WHERE seq > ?1 AND seq <= ?2 AND {is_change} AND {tid} IN ({list})",
        quote_ident(table)
    )
}

/// The changes of one log table (`legacy_log`: format 1's), as a query of
/// their `seq`s.
fn changes_in(table: &str, legacy_log: bool) -> String {
    let is_change = if legacy_log { legacy::IS_CHANGE } else { IS_CHANGE };
    format!("SELECT seq FROM {} WHERE {is_change}", quote_ident(table))
}

/// Every change of the log tables `tables` (name, format 1 or not).
fn all_changes(tables: &[(&str, bool)]) -> String {
    tables.iter().map(|(t, legacy_log)| changes_in(t, *legacy_log)).collect::<Vec<_>>().join(" UNION ALL ")
}

/// The write time (Julian day) of format 1 row `?1`.
pub fn legacy_write_time_sql() -> String {
    format!("SELECT ts FROM {} WHERE seq = ?1", quote_ident(legacy::LOG_TABLE))
}

/// The changes kept in the log tables `tables` (name, format 1 or not):
/// count, oldest and newest `seq`.
pub fn changes_kept_sql(tables: &[(&str, bool)]) -> String {
    format!("SELECT count(*), min(seq), max(seq) FROM ({})", all_changes(tables))
}

/// Every registered layout, active first: tid, description, fingerprint,
/// active, reread (a registry made by format 1 has no `reread` column).
pub fn registry_sql(has_reread: bool) -> String {
    let reread = if has_reread { "reread" } else { "0" };
    format!(
        "SELECT tid, description, fingerprint, active, {reread} FROM {} ORDER BY active DESC, name, tid",
        registry()
    )
}

/// Layouts of table `?1` (any case) made inactive.
pub fn deactivate_table_sql() -> String {
    format!("UPDATE {} SET active = 0 WHERE name = ?1 COLLATE NOCASE", registry())
}

/// Layout `?1` made inactive.
pub fn deactivate_layout_sql() -> String {
    format!("UPDATE {} SET active = 0 WHERE tid = ?1", registry())
}

/// Registers layout `?1` of table `?2` (fingerprint `?3`, description
/// `?4`, reread `?5`) as active.
pub fn register_sql() -> String {
    format!(
        "INSERT INTO {}(tid, name, fingerprint, description, active, reread) VALUES(?1, ?2, ?3, ?4, 1, ?5) \
         ON CONFLICT(tid) DO UPDATE SET name = excluded.name, fingerprint = excluded.fingerprint, \
         description = excluded.description, active = 1, reread = excluded.reread",
        registry()
    )
}

/// How many layouts are active.
pub fn active_layouts_sql() -> String {
    format!("SELECT count(*) FROM {} WHERE active = 1", registry())
}

/// Adds the `reread` column to a registry made by format 1.
pub fn add_reread_sql() -> String {
    format!("ALTER TABLE {} ADD COLUMN reread INTEGER NOT NULL DEFAULT 0", registry())
}

/// Deletes the layouts no longer active that no row of the log tables
/// `tables` (name, format 1 or not) refers to.
pub fn forget_layouts_sql(tables: &[(&str, bool)]) -> String {
    let registry = registry();
    let used: Vec<String> = tables
        .iter()
        .map(|(t, legacy_log)| {
            let tid = if *legacy_log { "tid" } else { TID_OF_KIND };
            format!("SELECT 1 FROM {} WHERE {tid} = {registry}.tid", quote_ident(t))
        })
        .collect();
    format!("DELETE FROM {registry} WHERE active = 0 AND NOT EXISTS ({})", used.join(" UNION ALL "))
}

/// The value of meta key `?1`.
pub fn meta_sql() -> String {
    format!("SELECT value FROM {} WHERE key = ?1", meta())
}

/// Sets meta key `?1` to `?2`.
pub fn set_meta_sql() -> String {
    format!("INSERT INTO {}(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", meta())
}

/// Sets meta key `?1` to the `seq` of the row last inserted (a marker).
pub fn set_meta_to_last_row_sql() -> String {
    format!(
        "INSERT INTO {}(key, value) VALUES(?1, last_insert_rowid()) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        meta()
    )
}

/// Deletes meta key `?1`.
pub fn delete_meta_sql() -> String {
    format!("DELETE FROM {} WHERE key = ?1", meta())
}

/// Consumer `?1`'s position.
pub fn position_sql() -> String {
    format!("SELECT position FROM {} WHERE name = ?1", consumers())
}

/// Sets consumer `?1`'s position to `?2` (registering it).
pub fn set_position_sql() -> String {
    format!(
        "INSERT INTO {}(name, position) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET \
         position = excluded.position, updated_at = CURRENT_TIMESTAMP",
        consumers()
    )
}

/// Consumer `?1`'s stored delivery state.
pub fn consumer_state_sql() -> String {
    format!("SELECT state FROM {} WHERE name = ?1", consumers())
}

/// Sets consumer `?1`'s delivery state to `?2`.
pub fn set_consumer_state_sql() -> String {
    format!("UPDATE {} SET state = ?2 WHERE name = ?1", consumers())
}

/// Adds the `state` column to a consumers table made before it existed.
pub fn add_state_column_sql() -> String {
    format!("ALTER TABLE {} ADD COLUMN state TEXT", consumers())
}

/// Deletes consumer `?1`.
pub fn delete_consumer_sql() -> String {
    format!("DELETE FROM {} WHERE name = ?1", consumers())
}

/// Renames consumer `?1` to `?2` unless `?2` exists.
pub fn rename_consumer_sql() -> String {
    format!("UPDATE {0} SET name = ?2 WHERE name = ?1 AND NOT EXISTS (SELECT 1 FROM {0} WHERE name = ?2)", consumers())
}

/// How many consumers there are.
pub fn consumer_count_sql() -> String {
    format!("SELECT count(*) FROM {}", consumers())
}

/// Every consumer registered in the source: name, position, when its row
/// was last written (Unix milliseconds), its stored state (NULL: none).
pub fn consumers_sql(has_state: bool) -> String {
    let state = if has_state { "state" } else { "NULL" };
    format!(
        "SELECT name, position, CAST((julianday(updated_at) - 2440587.5) * 86400000.0 AS INTEGER), {state} \
         FROM {} ORDER BY name",
        consumers()
    )
}

/// The changes after `?1` in the log tables `tables` (name, format 1 or not).
pub fn changes_after_sql(tables: &[(&str, bool)]) -> String {
    format!("SELECT count(*) FROM ({}) WHERE seq > ?1", all_changes(tables))
}

/// `DROP TABLE` of `table`.
pub fn drop_table_sql(table: &str) -> String {
    format!("DROP TABLE {}", quote_ident(table))
}

/// `DROP TRIGGER` of `trigger`.
pub fn drop_trigger_sql(trigger: &str) -> String {
    format!("DROP TRIGGER {}", quote_ident(trigger))
}

/// Renames the current log to format 1's name (an upgrade).
pub fn log_aside_sql() -> String {
    format!("ALTER TABLE {} RENAME TO {}", log(), quote_ident(legacy::LOG_TABLE))
}

/// A row at `seq` `?1` of kind `?2` in the log (an upgrade's marker).
pub fn log_row_at_sql() -> String {
    format!("INSERT INTO {}(seq, kind) VALUES(?1, ?2)", log())
}

/// Capture's triggers (`_cdc_…`) in the file.
pub const CAPTURE_TRIGGERS: &str =
    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_cdc\\_%' ESCAPE '\\'";

/// A table's row count.
pub fn count_sql(table: &str) -> String {
    format!("SELECT count(*) FROM {}", quote_ident(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_the_internal_tables_quoted() {
        assert_eq!(position_sql(), "SELECT position FROM \"_cdc_consumers\" WHERE name = ?1");
        assert!(pending_sql(&[1, 2], LOG_TABLE, false).contains("(kind >> 3) IN (1, 2)"));
        assert!(pending_sql(&[7], legacy::LOG_TABLE, true).contains("tid IN (7)"));
        assert!(forget_layouts_sql(&[(LOG_TABLE, false), (legacy::LOG_TABLE, true)]).contains("UNION ALL"));
    }
}
