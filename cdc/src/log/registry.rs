//! The registry (`_cdc_tables`): every layout capture was attached with,
//! by capture id, so a log row decodes with the layout it was written with.

use rusqlite::{Connection, OptionalExtension};

use cdc_schema::bookkeeping as sql;
use cdc_schema::log::{LOG_TABLE, TABLES_TABLE};
use cdc_schema::{InsertImage, TableDesc};

use crate::db::path_of;
use crate::error::{Error, Result};
use crate::schema::describe;

/// One registered layout of a captured table.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    /// Capture id written in every log row of this layout.
    pub tid: i64,
    /// The table as it was when this layout was registered: how its log
    /// rows decode.
    pub desc: TableDesc,
    /// [`TableDesc::fingerprint`] at install: a live table that no longer
    /// has it has drifted.
    pub fingerprint: String,
    /// False once the table was uninstalled or re-attached with a new
    /// layout; kept so that log rows still pending decode correctly.
    pub active: bool,
    /// Where its INSERT trigger takes the row from.
    pub inserts: InsertImage,
}

/// Whether the internal tables exist.
pub fn is_initialised(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(sql::TABLE_EXISTS, [LOG_TABLE], |_| Ok(())).optional()?.is_some())
}

/// Every registered layout, active first.
pub fn registry(conn: &Connection) -> Result<Vec<Registered>> {
    if !is_initialised(conn)? {
        return Ok(Vec::new());
    }
    // Registries made by format 1 have no `reread` column (all `new`).
    let mut stmt = conn.prepare(&sql::registry_sql(registry_has_reread(conn)?))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, bool>(3)?,
            r.get::<_, bool>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (tid, description, fingerprint, active, reread) = row?;
        let inserts = if reread { InsertImage::Reread } else { InsertImage::New };
        out.push(Registered { tid, desc: serde_json::from_str(&description)?, fingerprint, active, inserts });
    }
    Ok(out)
}

/// The active registrations of `tables` (all active ones when empty),
/// not checked for drift; unknown and uncaptured names are errors as in
/// [`verify`].
pub fn select(conn: &Connection, tables: &[String]) -> Result<Vec<Registered>> {
    let active: Vec<Registered> = registry(conn)?.into_iter().filter(|r| r.active).collect();
    let selected: Vec<Registered> = if tables.is_empty() {
        active
    } else {
        let (mut selected, mut unknown, mut uncaptured) = (Vec::new(), Vec::new(), Vec::new());
        for t in tables {
            if let Some(r) = active.iter().find(|r| r.desc.name.eq_ignore_ascii_case(t)) {
                selected.push(r.clone());
                continue;
            }
            match describe(conn, t) {
                Ok(_) => uncaptured.push(t.clone()),
                Err(Error::UnknownTable(_)) => unknown.push(t.clone()),
                Err(e) => return Err(e),
            }
        }
        let db = path_of(conn);
        let dedup = |mut v: Vec<String>| {
            let mut seen = std::collections::HashSet::new();
            v.retain(|n| seen.insert(n.to_lowercase()));
            v
        };
        if !unknown.is_empty() {
            return Err(Error::UnknownTables { db, tables: dedup(unknown) });
        }
        if !uncaptured.is_empty() {
            return Err(Error::NotCapturedIn { db, tables: dedup(uncaptured) });
        }
        selected
    };
    Ok(selected)
}

/// Whether the registry has the column that records each table's
/// [`cdc_schema::InsertImage`] (registries made by format 1 do not).
pub(crate) fn registry_has_reread(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(sql::HAS_COLUMN, [TABLES_TABLE, "reread"], |_| Ok(())).optional()?.is_some())
}
