//! What a drain must do, decided from what the target holds (its
//! [`DeliveryState`]) and what the source's log says: carry on, bootstrap
//! some tables (and why), or start over because the log is not the one the
//! target followed. Every way state goes missing ends here with a reason
//! that is logged in one line.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::log;
use crate::log::Registered;
use crate::source::captured_since;
use crate::state::{DeliveryState, TableState};

use super::config::BootstrapMode;
use super::deliver::Positions;
use super::source::SourceDb;

pub(crate) struct Plan {
    /// The log's high-water mark when the plan was made.
    pub high_water: i64,
    /// Why the target's whole state is void (another or a rewound log).
    pub reset: Option<String>,
    /// Tables to bootstrap, each with the reason.
    pub bootstrap: Vec<(Registered, String)>,
    /// Tables to follow from a position without a bootstrap
    /// (`BootstrapMode::Never`): from the oldest change the log holds.
    pub adopt: Vec<(String, i64)>,
}

/// Why `state` does not describe this source's log, if it does not.
fn void_reason(conn: &Connection, source: &SourceDb, state: &DeliveryState, high_water: i64) -> Result<Option<String>> {
    if state.is_empty() {
        return Ok(None);
    }
    if !state.log_id.is_empty() && state.log_id != source.log_id {
        return Ok(Some(format!(
            "the target holds data of another source log ({}), not of {} (log {}): a different database",
            state.log_id,
            source.path.display(),
            source.log_id
        )));
    }
    let p = state.position;
    if p > high_water {
        return Ok(Some(format!(
            "the log of {} ends at seq {high_water}, behind seq {p} that the target already applied: \
             the source was rewound (restored from an older copy?)",
            source.path.display()
        )));
    }
    let Some(expected) = state.anchor else { return Ok(None) };
    let low = log::low_water(conn)?.unwrap_or(high_water + 1);
    if p >= low && log::anchor(conn, p)? != Some(expected) {
        return Ok(Some(format!(
            "the entry at seq {p} of the log of {} is not the one the target applied: \
             the source was rewound (restored from an older copy?) and written to since",
            source.path.display()
        )));
    }
    Ok(None)
}

/// Decides what to do. `always_pending`: `BootstrapMode::Always` has not
/// had its one reseed yet.
pub(crate) fn make(
    conn: &Connection,
    source: &SourceDb,
    state: &DeliveryState,
    mode: BootstrapMode,
    always_pending: bool,
    refused: &HashMap<String, String>,
    layout: &str,
) -> Result<Plan> {
    let high_water = log::high_water(conn)?;
    let low = log::low_water(conn)?;
    let reset = void_reason(conn, source, state, high_water)?;
    let empty = DeliveryState::default();
    let state = if reset.is_some() { &empty } else { state };
    let never = |table: &str, why: String| Error::BootstrapNeeded { table: Some(table.to_string()), why };
    if let (Some(reason), BootstrapMode::Never) = (&reset, mode) {
        return Err(Error::BootstrapNeeded { table: None, why: reason.clone() });
    }
    let mut plan = Plan { high_water, reset, bootstrap: Vec::new(), adopt: Vec::new() };
    for r in &source.followed {
        let name = r.desc.name.as_ref();
        let why = match state.table(name) {
            None if mode == BootstrapMode::Never => {
                plan.adopt.push((name.to_string(), low.map_or(high_water, |l| l - 1)));
                continue;
            }
            None if plan.reset.is_some() => "the target's data is void".to_string(),
            None => "the target holds nothing of it yet".to_string(),
            Some(TableState::Seeding) => {
                "the target does not hold it complete (its previous bootstrap was interrupted, or its \
                 table must be rebuilt for a new schema)"
                    .to_string()
            }
            Some(TableState::Live { position: p }) => {
                let since = captured_since(conn, name)?;
                if let Some(why) = refused.get(name) {
                    format!("the target refused a change of it ({why}); the other tables go on")
                } else if state.layout.as_deref().is_some_and(|held| file_of(held) != file_of(layout)) {
                    "the source is another file than at the target's last commit (replaced, or reloaded \
                     from a dump): its rows may differ from what its log says"
                        .to_string()
                } else if r.desc.rowids_may_be_renumbered() && !same_rowids(conn, state.layout.as_deref(), layout)? {
                    "its rows keep the source's rowids, and the source's schema changed since the \
                     target's last commit (a VACUUM, which renumbers rowids without an INTEGER PRIMARY KEY, \
                     cannot be told apart from other schema changes)"
                        .to_string()
                } else if mode == BootstrapMode::Always && always_pending {
                    "bootstrap is set to always".to_string()
                } else if low.is_some_and(|l| l > p + 1) {
                    format!("the log no longer holds the changes after seq {p} (pruned)")
                } else if since > p {
                    format!(
                        "its capture was attached again at seq {since}, after the target's seq {p}; \
                         changes in between are not in the log"
                    )
                } else {
                    continue;
                }
            }
        };
        if mode == BootstrapMode::Never {
            return Err(never(name, why));
        }
        plan.bootstrap.push((r.clone(), why));
    }
    Ok(plan)
}

/// Whether the rowids of the file at layout `now` are those it had at
/// layout `held` (the target's last commit): the same layout, or the same
/// file whose schema cookie moved only by capture's own changes (its
/// triggers attached again, its log upgraded), never by a `VACUUM`.
fn same_rowids(conn: &Connection, held: Option<&str>, now: &str) -> Result<bool> {
    let Some(held) = held else { return Ok(false) };
    if held == now {
        return Ok(true);
    }
    let cookie = |layout: &str| layout.rsplit_once(':').and_then(|(_, c)| c.parse::<i64>().ok());
    match (file_of(held) == file_of(now), cookie(held), cookie(now)) {
        (true, Some(from), Some(to)) => crate::source::only_own_ddl(conn, from, to),
        _ => Ok(false),
    }
}

/// The file part (`dev:ino`) of a layout (`dev:ino:schema_cookie`).
pub(crate) fn file_of(layout: &str) -> &str {
    layout.rsplit_once(':').map_or(layout, |(file, _)| file)
}

/// The followed tables that are live, with their positions.
pub(crate) fn live_positions(source: &SourceDb, state: &DeliveryState) -> Positions {
    source
        .followed
        .iter()
        .filter_map(|r| state.live_position(&r.desc.name).map(|p| (r.desc.name.as_ref().into(), p)))
        .collect()
}
