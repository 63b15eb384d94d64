//! Per-table statements of the replica, generated once by `cdc-schema`.

use rusqlite::Statement;

use crate::event::Row;
use crate::target::SourceTable;

/// Per-table SQL, generated once at open by `cdc-schema` (no per-row SQL
/// building); statements are prepared once and cached by rusqlite.
pub(super) struct TableSql {
    pub(super) upsert: String,
    pub(super) update: String,
    pub(super) delete: String,
    pub(super) purge: String,
    /// Image positions of the identity (rowid, or key columns in key order).
    pub(super) identity: Vec<usize>,
    pub(super) has_rowid: bool,
    /// Rows have a key (rowid alias or primary key), not only values.
    pub(super) keyed: bool,
    /// Capture logs inserts from `NEW` (see [`super::overtaken`]).
    pub(super) new_image_inserts: bool,
    /// Rows are written with the source's rowid.
    pub(super) keeps_rowid: bool,
}

impl TableSql {
    /// The statements of `t`, generated once.
    pub(super) fn new(t: &SourceTable) -> TableSql {
        let d = &t.desc;
        TableSql {
            upsert: d.upsert_sql(),
            update: d.update_sql(),
            delete: d.delete_sql(),
            purge: d.purge_sql(),
            identity: d.identity_positions(),
            has_rowid: !d.without_rowid,
            keyed: d.identity() != cdc_schema::Identity::Image,
            new_image_inserts: t.inserts == cdc_schema::InsertImage::New,
            keeps_rowid: d.keeps_rowid(),
        }
    }

    /// Binds `row` as an image (rowid first for rowid tables) from
    /// parameter `first`, in place: no value is copied. Returns the next
    /// parameter index.
    pub(super) fn bind_image(&self, stmt: &mut Statement<'_>, row: &Row, first: usize) -> rusqlite::Result<usize> {
        let mut i = first;
        if self.has_rowid {
            stmt.raw_bind_parameter(i, row.rowid)?;
            i += 1;
        }
        for v in &row.values {
            stmt.raw_bind_parameter(i, v)?;
            i += 1;
        }
        Ok(i)
    }

    /// Binds `row`'s identity (rowid, or key values in key order) from `first`.
    pub(super) fn bind_identity(&self, stmt: &mut Statement<'_>, row: &Row, first: usize) -> rusqlite::Result<()> {
        for (k, &pos) in self.identity.iter().enumerate() {
            match (self.has_rowid, pos) {
                (true, 0) => stmt.raw_bind_parameter(first + k, row.rowid)?,
                (true, p) => stmt.raw_bind_parameter(first + k, &row.values[p - 1])?,
                (false, p) => stmt.raw_bind_parameter(first + k, &row.values[p])?,
            }
        }
        Ok(())
    }
}
