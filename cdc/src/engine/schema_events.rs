//! Schema events ([`Event::Schema`]) the log cannot carry: a followed
//! table dropped, a table's explicit indexes changed without a reseed, a
//! view created, changed or dropped. A table's definition before its
//! bootstrap is sent by the snapshot itself (`snapshot::table`), so every
//! change of its columns reaches a target with the rows of the new shape.
//!
//! These are found by comparing the source's description with the one the
//! target was last given, when the engine connects again after a schema
//! change, and go out before the next delivery, committed with it: a
//! failed delivery sends them again. Across processes, the consumer's
//! record keeps a [`digest`] of the schema it was told: a replicator
//! started after a change made while none ran (or killed before telling
//! it) tells every table and view again.

use std::collections::BTreeMap;

use crate::event::{Event, Schema, SchemaObject};
use crate::schema::unique_index_sql;
use crate::target::{Source, SourceTable};

/// What a target was last told of the schema.
pub(super) enum Then<'a> {
    /// This description, earlier in this process.
    Described(&'a Source),
    /// Nothing in this process; the consumer's record says it was told
    /// the schema whose [`digest`] is this (`None`: a record without one).
    Recorded(Option<&'a str>),
    /// Nothing ever: a new consumer (its bootstraps tell it the tables).
    Nothing,
}

/// A digest of what schema events describe (tables' SQL and indexes,
/// views), kept in the consumer's record: a replicator started after the
/// schema changed while none ran says so.
pub(super) fn digest(source: &Source) -> String {
    let tables = source.tables.iter().flat_map(|t| {
        [t.desc.name.as_bytes(), t.create_sql.as_bytes()].into_iter().chain(t.indexes.iter().map(|i| i.sql.as_bytes()))
    });
    let views = source.views.iter().flat_map(|(n, s)| [n.as_bytes(), s.as_bytes()]);
    format!("{:016x}", cdc_schema::fnv1a64(tables.chain(views)))
}

/// The events that take a target from `then` to `now`. Tables in
/// `now.dropped` are dropped whatever `then` was.
pub(super) fn between(then: Then<'_>, now: &Source) -> Vec<Event> {
    let mut events: Vec<Event> = now.dropped.iter().map(|t| dropped(t, SchemaObject::Table)).collect();
    let then = match then {
        Then::Described(then) => then,
        Then::Recorded(digested) if digested == Some(digest(now).as_str()) => return events,
        // Changed while no replicator ran, or not known: every table and
        // view as it is (at least once; they describe state, so a
        // consumer that sees one twice loses nothing).
        Then::Recorded(_) => {
            events.extend(now.tables.iter().map(|t| table(t, false)));
            events.extend(now.views.iter().map(|(n, s)| view(n, s)));
            return events;
        }
        Then::Nothing => {
            events.extend(now.views.iter().map(|(n, s)| view(n, s)));
            return events;
        }
    };
    let before: BTreeMap<&str, &SourceTable> = then.tables.iter().map(|t| (t.desc.name.as_ref(), t)).collect();
    for table in &now.tables {
        let Some(old) = before.get(table.desc.name.as_ref()) else { continue };
        // Another table definition or other unique indexes mean capture
        // was attached again: its bootstrap sends the new definition.
        let same_rows = old.create_sql == table.create_sql
            && old.desc == table.desc
            && unique_index_sql(&old.indexes) == unique_index_sql(&table.indexes);
        if same_rows && old.indexes != table.indexes {
            events.push(self::table(table, false));
        }
    }
    let views: BTreeMap<&str, &str> = then.views.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    for (name, sql) in &now.views {
        if views.get(name.as_str()) != Some(&sql.as_str()) {
            events.push(view(name, sql));
        }
    }
    for (name, _) in &then.views {
        if !now.views.iter().any(|(n, _)| n == name) {
            events.push(dropped(name, SchemaObject::View));
        }
    }
    events
}

fn table(t: &SourceTable, bootstrap: bool) -> Event {
    Event::Schema(Schema {
        name: t.desc.name.as_ref().into(),
        object: SchemaObject::Table,
        sql: Some(t.create_sql.clone()),
        indexes: t.indexes.iter().map(|i| i.sql.clone()).collect(),
        columns: t.desc.columns.to_vec(),
        without_rowid: t.desc.without_rowid,
        bootstrap,
    })
}

fn view(name: &str, sql: &str) -> Event {
    Event::Schema(Schema {
        name: name.into(),
        object: SchemaObject::View,
        sql: Some(sql.to_string()),
        indexes: Vec::new(),
        columns: Vec::new(),
        without_rowid: false,
        bootstrap: false,
    })
}

fn dropped(name: &str, object: SchemaObject) -> Event {
    Event::Schema(Schema {
        name: name.into(),
        object,
        sql: None,
        indexes: Vec::new(),
        columns: Vec::new(),
        without_rowid: false,
        bootstrap: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::IndexSql;

    fn source(indexes: &[&str], views: &[(&str, &str)], dropped: &[&str]) -> Source {
        let desc = cdc_schema::TableDesc {
            name: "t".into(),
            columns: vec![cdc_schema::ColumnDesc::new("a", "")].into(),
            without_rowid: false,
            integer_key_not_rowid: false,
        };
        let indexes = indexes
            .iter()
            .map(|s| IndexSql { name: s.to_string(), sql: s.to_string(), unique: s.contains("UNIQUE") })
            .collect();
        Source {
            log_id: "L".into(),
            path: "app.db".into(),
            upstream_log_ids: Vec::new(),
            tables: vec![SourceTable {
                desc,
                create_sql: "CREATE TABLE t(a)".into(),
                indexes,
                inserts: Default::default(),
                unique_keys: None,
            }],
            dropped: dropped.iter().map(|s| s.to_string()).collect(),
            views: views.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect(),
        }
    }

    fn names(events: &[Event]) -> Vec<(String, Option<String>)> {
        events
            .iter()
            .map(|e| match e {
                Event::Schema(s) => (s.name.to_string(), s.sql.clone()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn plain_index_and_view_changes_are_events_unique_ones_wait_for_the_bootstrap() {
        let then = source(
            &["CREATE INDEX i ON t(a)"],
            &[("v", "CREATE VIEW v AS SELECT 1"), ("w", "CREATE VIEW w AS SELECT 2")],
            &[],
        );
        assert!(between(Then::Described(&then), &then).is_empty());
        let now = source(&[], &[("v", "CREATE VIEW v AS SELECT 3"), ("x", "CREATE VIEW x AS SELECT 4")], &["gone"]);
        assert_eq!(
            names(&between(Then::Described(&then), &now)),
            [
                ("gone".to_string(), None),
                ("t".to_string(), Some("CREATE TABLE t(a)".to_string())),
                ("v".to_string(), Some("CREATE VIEW v AS SELECT 3".to_string())),
                ("x".to_string(), Some("CREATE VIEW x AS SELECT 4".to_string())),
                ("w".to_string(), None),
            ]
        );
        let unique = source(&["CREATE UNIQUE INDEX i ON t(a)"], &[], &[]);
        assert!(between(Then::Described(&source(&[], &[], &[])), &unique).is_empty(), "a reseed sends it");
        // A new consumer: drops and views (its bootstraps tell the tables).
        assert_eq!(names(&between(Then::Nothing, &now)).len(), 3);
        // A consumer told this schema before: nothing; another: everything.
        assert_eq!(names(&between(Then::Recorded(Some(&digest(&now))), &now)), [("gone".to_string(), None)]);
        assert_eq!(names(&between(Then::Recorded(Some(&digest(&then))), &now)).len(), 4);
        assert_eq!(names(&between(Then::Recorded(None), &now)).len(), 4);
    }
}
