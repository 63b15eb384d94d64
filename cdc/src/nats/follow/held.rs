//! The follower's transactions: which messages a replica applies, when,
//! and what a commit point makes durable. No server and no replica here:
//! [`Transactions`] only decides, so it is tested on its own.
//!
//! Changes are held until their transaction's commit point because the
//! stream may carry them out of order: when the server goes away
//! mid-transaction, messages sent on the lost connection are gone while
//! later ones, queued by the client and sent on the next connection, are
//! stored; the publisher then sends the whole transaction again, and only
//! the lost ones are new. Bootstrap events apply at once (the replica
//! commits them only at the commit point).

use std::collections::HashSet;

use crate::event::{Change, Event};
use crate::state::{DeliveryState, TableState};

/// What the replica holds and what the open transaction has made of it.
#[derive(Debug, Default)]
pub(super) struct Transactions {
    /// The replica's delivery state as last committed.
    committed: DeliveryState,
    /// What the open transaction has made of it.
    working: DeliveryState,
    /// The open transaction's changes, applied at its commit point.
    held: Vec<Change>,
    /// Tables whose skipped changes were said once.
    warned: HashSet<String>,
}

impl Transactions {
    /// Starts from what the replica holds.
    pub fn new(committed: DeliveryState) -> Transactions {
        Transactions { working: committed.clone(), committed, ..Transactions::default() }
    }

    /// Forgets the open transaction: it is read again from the stream.
    pub fn rollback(&mut self) {
        self.held.clear();
        self.working = self.committed.clone();
    }

    /// A schema message: the replica was opened again and holds `state`.
    /// Bootstrap events applied since the last commit point are undone by
    /// the caller (a bootstrap sent again has new ids, so it comes again
    /// whole); held changes stay: a publisher restarting within the
    /// duplicate window sends them again under the same ids, which the
    /// server drops.
    pub fn schema(&mut self, state: DeliveryState) {
        self.committed = state.clone();
        self.working = state;
    }

    /// One event of a followed table from the source log `log_id`: the
    /// event to apply to the replica now, if any (changes are held, a
    /// bootstrap row of a table not being reseeded is skipped).
    pub fn event(&mut self, event: Event, log_id: &str) -> Option<Event> {
        let table = event.table().to_string();
        if log_id != self.working.log_id {
            if !self.working.log_id.is_empty() {
                tracing::warn!(
                    from = %self.working.log_id, to = %log_id,
                    "the stream now carries another source log (a restored or different source): every table waits for its bootstrap"
                );
            }
            self.working = DeliveryState::empty(log_id);
            self.held.clear();
        }
        let apply = match &event {
            Event::Change(_) => {
                let Event::Change(c) = event else { unreachable!("matched above") };
                self.held.push(c);
                return None;
            }
            Event::BootstrapBegin { .. } => {
                self.working.forget(&table);
                self.working.set_seeding(&table);
                self.warned.remove(&table);
                // Changes of an earlier attempt at this table's bootstrap:
                // the new one supersedes them, and its changes follow it.
                self.held.retain(|c| *c.table != *table);
                true
            }
            Event::Bootstrap { .. } => self.working.table(&table) == Some(TableState::Seeding),
            Event::BootstrapEnd { .. } => {
                let seeding = self.working.table(&table) == Some(TableState::Seeding);
                if seeding {
                    // Live from the bootstrap's cut, which the commit
                    // point's state names; changes after this are past it.
                    self.working.forget(&table);
                    self.working.set_live(&table, 0);
                }
                seeding
            }
            // The replica takes schema from the publisher's description.
            Event::Schema(_) => false,
        };
        apply.then_some(event)
    }

    /// A commit point of the publisher, whose state is `published`: the
    /// held changes up to it to apply now, in log order, and the state the
    /// replica commits with them. Each change applies only to a table the
    /// replica holds at a position before it (a change sent twice is
    /// applied once, the latest copy of a position wins: after a rewound
    /// source, the one sent last is current). Changes past the commit
    /// point stay held for theirs (sent before a failure, and not sent
    /// again because of the server's duplicate window).
    pub fn commit_point(&mut self, published: &DeliveryState) -> (Vec<Change>, DeliveryState) {
        let mut changes = std::mem::take(&mut self.held);
        changes.reverse();
        changes.sort_by_key(|c| c.seq);
        changes.dedup_by_key(|c| c.seq);
        let later = changes.partition_point(|c| c.seq <= published.position);
        self.held = changes.split_off(later);
        let mut apply = Vec::new();
        for c in changes {
            let table = c.table.to_string();
            match self.working.live_position(&table) {
                Some(p) if c.seq > p => {
                    self.working.set_live(&table, c.seq);
                    apply.push(c);
                }
                Some(_) => {} // sent again; already applied
                None => {
                    if self.working.table(&table).is_none() && self.warned.insert(table.clone()) {
                        tracing::warn!(
                            table = %table,
                            "the replica does not hold this table and the stream holds no bootstrap of it from here: \
                             its changes are skipped until one comes ({})",
                            crate::fix::Fix::Republish
                        );
                    }
                }
            }
        }
        // The replica's state is the publisher's for what this replica
        // holds (a table it skipped stays unheld).
        let mut state = self.working.clone();
        if state.log_id != published.log_id {
            state = DeliveryState::empty(&published.log_id);
        }
        state.position = published.position;
        state.anchor = published.anchor;
        state.layout = published.layout.clone();
        let tables: Vec<String> = state.tables.keys().cloned().collect();
        for table in tables {
            if let (Some(_), Some(at)) = (state.live_position(&table), published.live_position(&table)) {
                state.set_live(&table, at);
            }
        }
        (apply, state)
    }

    /// The replica committed `state`.
    pub fn committed(&mut self, state: DeliveryState) {
        self.committed = state.clone();
        self.working = state;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::Row;
    use crate::value::Value;

    fn change(table: &str, seq: i64) -> Change {
        Change {
            seq,
            table: table.into(),
            columns: Arc::from(vec!["v".to_string()]),
            op: crate::Op::Insert,
            time_ms: 0,
            before: None,
            after: Some(Row { rowid: Some(seq), values: vec![Value::Integer(seq)] }),
        }
    }

    fn begin(table: &str) -> Event {
        Event::BootstrapBegin { table: table.into(), columns: Arc::from(vec!["v".to_string()]) }
    }

    fn end(table: &str) -> Event {
        Event::BootstrapEnd { table: table.into(), rows: 0, sequence: None }
    }

    fn published(log: &str, position: i64, live: &[&str]) -> DeliveryState {
        let mut state = DeliveryState::empty(log);
        for t in live {
            state.set_live(t, position);
        }
        state.advance(position, None);
        state
    }

    fn seqs(changes: &[Change]) -> Vec<i64> {
        changes.iter().map(|c| c.seq).collect()
    }

    #[test]
    fn changes_wait_for_their_commit_point_and_apply_in_log_order_once() {
        let mut tx = Transactions::new(published("L", 1, &["t"]));
        for seq in [4, 2, 3, 2, 5] {
            assert!(tx.event(Event::Change(change("t", seq)), "L").is_none(), "held, not applied");
        }
        let (apply, state) = tx.commit_point(&published("L", 4, &["t"]));
        assert_eq!(seqs(&apply), [2, 3, 4], "sorted, a resend once, seq 5 held for its own commit point");
        assert_eq!(state.position, 4);
        assert_eq!(state.live_position("t"), Some(4));
        tx.committed(state);
        let (apply, _) = tx.commit_point(&published("L", 5, &["t"]));
        assert_eq!(seqs(&apply), [5]);
    }

    #[test]
    fn a_change_the_replica_holds_already_is_skipped() {
        let mut tx = Transactions::new(published("L", 3, &["t"]));
        tx.event(Event::Change(change("t", 2)), "L");
        tx.event(Event::Change(change("t", 4)), "L");
        let (apply, _) = tx.commit_point(&published("L", 4, &["t"]));
        assert_eq!(seqs(&apply), [4]);
    }

    #[test]
    fn a_bootstrap_applies_at_once_and_supersedes_held_changes_of_its_table() {
        let mut tx = Transactions::new(DeliveryState::empty("L"));
        tx.event(Event::Change(change("t", 2)), "L");
        tx.event(Event::Change(change("u", 3)), "L");
        assert!(tx.event(begin("t"), "L").is_some());
        let row = Event::Bootstrap {
            table: "t".into(),
            columns: Arc::from(vec!["v".to_string()]),
            row: Row { rowid: Some(1), values: vec![] },
        };
        assert!(tx.event(row.clone(), "L").is_some(), "a row of a table being reseeded applies");
        assert!(tx.event(end("t"), "L").is_some());
        assert!(tx.event(row, "L").is_none(), "a row after its bootstrap's end does not");
        let (apply, state) = tx.commit_point(&published("L", 5, &["t", "u"]));
        assert!(apply.is_empty(), "t's change came before its bootstrap; u is not held by the replica");
        assert_eq!(state.live_position("t"), Some(5), "live from the commit point");
        assert_eq!(state.table("u"), None, "a table the replica skipped stays unheld");
    }

    #[test]
    fn another_source_log_drops_what_was_held_and_every_table() {
        let mut tx = Transactions::new(published("L", 3, &["t"]));
        tx.event(Event::Change(change("t", 4)), "L");
        tx.event(Event::Change(change("t", 5)), "M");
        let (apply, state) = tx.commit_point(&published("M", 5, &["t"]));
        assert!(apply.is_empty(), "t waits for a bootstrap from the new log");
        assert_eq!(state.log_id, "M");
        assert_eq!(state.table("t"), None);
    }

    #[test]
    fn a_rollback_forgets_the_open_transaction_but_not_what_was_committed() {
        let mut tx = Transactions::new(published("L", 1, &["t"]));
        tx.event(Event::Change(change("t", 2)), "L");
        tx.rollback();
        let (apply, state) = tx.commit_point(&published("L", 2, &["t"]));
        assert!(apply.is_empty());
        assert_eq!(state.live_position("t"), Some(2));
    }

    #[test]
    fn a_schema_message_keeps_held_changes() {
        let mut tx = Transactions::new(published("L", 1, &["t"]));
        tx.event(Event::Change(change("t", 2)), "L");
        tx.schema(published("L", 1, &["t"]));
        let (apply, _) = tx.commit_point(&published("L", 2, &["t"]));
        assert_eq!(seqs(&apply), [2]);
    }
}
