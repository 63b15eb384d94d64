//! Inserts a TEMP trigger overtook, for a SQLite replica.
//!
//! Capture logs an insert from `NEW` ([`cdc_schema::InsertImage::New`]),
//! which is exact while its trigger fires first. A TEMP trigger of the
//! writing connection always fires before it, and no other connection can
//! see it: if it rewrites or deletes the row just inserted, its change is
//! logged first (an update or delete of a row the replica does not hold
//! yet: nothing else makes one, the replica being in step with the log),
//! and the statement's own insert then logs the row as it was inserted,
//! stale. The replica knows the row was missing, so it can put things
//! right: it remembers what the trigger made of the row, and the insert
//! that follows in the same transaction with exactly the before image it
//! saw is that stale one: the replica keeps the trigger's version instead
//! (or no row, if the trigger deleted it), and says so once per table.
//! Events to other targets cannot be corrected: the table must be
//! captured with `--inserts reread` for them.

use std::collections::{HashMap, HashSet};

use crate::event::Row;

/// What to do with an insert ([`Overtaken::insert`]).
#[derive(Debug, PartialEq)]
pub(crate) enum Insert {
    /// Write it.
    Apply,
    /// Write this row instead (what a trigger made of it).
    Instead(Row),
    /// Write nothing: the replica holds what a trigger made of it already,
    /// or a trigger deleted it.
    Skip,
}

/// Per table, what triggers made of rows the replica did not hold yet:
/// `(before image, the row it became or None when deleted)`.
#[derive(Debug, Default)]
pub(crate) struct Overtaken {
    seen: HashMap<String, Vec<(Row, Option<Row>)>>,
    warned: HashSet<String>,
}

impl Overtaken {
    /// An update of a row the replica does not hold.
    pub fn missed_update(&mut self, table: &str, before: &Row, after: &Row) {
        self.seen.entry(table.to_string()).or_default().push((before.clone(), Some(after.clone())));
    }

    /// A delete of a row the replica does not hold.
    pub fn missed_delete(&mut self, table: &str, before: &Row) {
        self.seen.entry(table.to_string()).or_default().push((before.clone(), None));
    }

    /// What to write for an insert of `row` into `table`. `keyed`: the
    /// table's rows have a key (rowid or primary key), under which the
    /// replica already wrote what the trigger made of the row.
    pub fn insert(&mut self, table: &str, row: &Row, keyed: bool) -> Insert {
        let Some(seen) = self.seen.get_mut(table) else { return Insert::Apply };
        let Some(at) = seen.iter().position(|(before, _)| before == row) else { return Insert::Apply };
        let (_, mut became) = seen.remove(at);
        if keyed {
            return Insert::Skip;
        }
        // Rows without a key are found by their values: follow what the
        // row became through each later change the replica missed.
        while let Some(row) = &became {
            let Some(at) = seen.iter().position(|(before, _)| before == row) else { break };
            became = seen.remove(at).1;
        }
        match became {
            Some(row) => Insert::Instead(row),
            None => Insert::Skip,
        }
    }

    /// Whether `table`'s first correction is to be said (once per table).
    pub fn first_for(&mut self, table: &str) -> bool {
        self.warned.insert(table.to_string())
    }

    /// The transaction ended: what was remembered belongs to it.
    pub fn clear(&mut self) {
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{Insert, Overtaken};
    use crate::event::Row;
    use crate::value::Value;

    fn row(rowid: i64, v: &str) -> Row {
        Row { rowid: Some(rowid), values: vec![Value::Integer(rowid), Value::Text(v.into())] }
    }

    #[test]
    fn a_stale_insert_gives_way_to_what_the_trigger_made_of_it() {
        let mut o = Overtaken::default();
        // Keyed: the replica wrote the update's after image already.
        o.missed_update("t", &row(1, "as inserted"), &row(1, "slugged"));
        assert_eq!(o.insert("t", &row(2, "other"), true), Insert::Apply);
        assert_eq!(o.insert("t", &row(1, "as inserted"), true), Insert::Skip);
        // Consumed: a later insert with the same values is the application's.
        assert_eq!(o.insert("t", &row(1, "as inserted"), true), Insert::Apply);

        // By values: the chain of missed changes decides.
        o.missed_update("bag", &row(1, "a"), &row(1, "b"));
        o.missed_update("bag", &row(1, "b"), &row(1, "c"));
        assert_eq!(o.insert("bag", &row(1, "a"), false), Insert::Instead(row(1, "c")));
        o.missed_update("bag", &row(2, "a"), &row(2, "b"));
        o.missed_delete("bag", &row(2, "b"));
        assert_eq!(o.insert("bag", &row(2, "a"), false), Insert::Skip);

        // Deleted by the trigger, keyed.
        o.missed_delete("t", &row(3, "spam"));
        assert_eq!(o.insert("t", &row(3, "spam"), true), Insert::Skip);
        o.missed_delete("t", &row(4, "x"));
        o.clear();
        assert_eq!(o.insert("t", &row(4, "x"), true), Insert::Apply);
        assert!(o.first_for("t") && !o.first_for("t"));
    }
}
