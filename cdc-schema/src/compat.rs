//! Whether a live table can stand for another description: a
//! `#[derive(Cdc)]` struct's table, or a replica's table for its source's.

use crate::{Affinity, TableDesc};

/// Which description a live table is compared with, for the wording of
/// [`mismatches`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Against {
    /// A `#[derive(Cdc)]` struct.
    Struct,
    /// The source table a replica table must match.
    Source,
}

/// How the live table differs from `wanted`: missing and extra columns,
/// type affinity, primary key, rowid-ness. Empty when compatible.
pub fn mismatches(wanted: &TableDesc, live: &TableDesc, against: Against) -> Vec<String> {
    let (maps, has_no, is_or_not) = match against {
        Against::Struct => ("the field maps to", "has no field (add one; capture copies every column)", "the field"),
        Against::Source => ("the source declares", "is not in the source", "in the source it"),
    };
    let mut problems = Vec::new();
    for w in wanted.captured() {
        match live.captured().find(|l| l.name == w.name) {
            None => problems.push(format!("column {:?} is missing from the table", w.name)),
            Some(l) => {
                let (wa, la) = (w.affinity(), l.affinity());
                // A struct field with no declared type accepts anything.
                if wa != la && !(against == Against::Struct && wa == Affinity::Blob) {
                    problems.push(format!(
                        "column {:?} is declared {:?} ({la:?} affinity) but {maps} {:?} ({wa:?} affinity)",
                        w.name, l.decl_type, w.decl_type
                    ));
                }
                if (w.primary_key > 0) != (l.primary_key > 0) {
                    let (is, other) = if l.primary_key > 0 { ("is", "is not") } else { ("is not", "is") };
                    problems.push(format!("column {:?} {is} part of the primary key but {is_or_not} {other}", w.name));
                }
            }
        }
    }
    for l in live.captured() {
        if !wanted.captured().any(|w| w.name == l.name) {
            problems.push(format!("column {:?} {has_no}", l.name));
        }
    }
    if wanted.without_rowid != live.without_rowid {
        let is = if live.without_rowid { "is" } else { "is not" };
        problems.push(format!("the table {is} WITHOUT ROWID but {is_or_not} differs"));
    }
    problems
}
