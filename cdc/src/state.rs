//! Delivery state: what a target holds of each followed table, and of
//! which log. It is the one truth about a target. A target that can store
//! it (the SQLite replica) keeps it in its own file, in the same
//! transaction as the rows it describes, so state and content can never
//! disagree; for other targets the engine keeps it in the source's
//! consumer record and marks a table live only after the target made its
//! bootstrap durable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a target holds of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TableState {
    /// A bootstrap was started and has not completed: what the target
    /// holds of the table is not to be trusted; it is bootstrapped again.
    Seeding,
    /// Every change of the table up to and including log position
    /// `position` is applied, and nothing after it.
    Live {
        /// The last log `seq` applied to this table.
        position: i64,
    },
}

/// A target's delivery state for one source log. A table that is not in
/// [`DeliveryState::tables`] is held not at all (it is bootstrapped).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// The log this state is about (`_cdc_meta.log_id` of the source).
    /// Empty in a state that holds nothing yet.
    pub log_id: String,
    /// The last commit point delivered; no table is past it.
    pub position: i64,
    /// A checksum of the log row at `position` as it was delivered, to
    /// recognise a log that was rewound (a restored backup) even when it
    /// has since grown past `position` again. `None` at position 0.
    pub anchor: Option<u64>,
    /// Per table: seeding, or live from a position.
    pub tables: BTreeMap<String, TableState>,
    /// The source file's layout when this state was committed:
    /// `dev:ino:schema_cookie`. Another file at the path (replaced, or
    /// reloaded from a dump, which may alter values: the shell's `.dump`
    /// cuts TEXT at a NUL) reseeds every table; another cookie (`VACUUM`
    /// bumps it, and renumbers rowids no key aliases), or none recorded,
    /// reseeds the tables followed by such rowids.
    #[serde(default)]
    pub layout: Option<String>,
}

impl DeliveryState {
    /// A state that holds nothing of `log_id`.
    pub fn empty(log_id: &str) -> DeliveryState {
        DeliveryState { log_id: log_id.to_string(), ..DeliveryState::default() }
    }

    /// Whether the target holds anything at all.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.position == 0
    }

    /// The state of `table`, if the target holds anything of it.
    pub fn table(&self, table: &str) -> Option<TableState> {
        self.tables.get(table).copied()
    }

    /// The position `table` is live from, if it is live.
    pub fn live_position(&self, table: &str) -> Option<i64> {
        match self.tables.get(table) {
            Some(TableState::Live { position }) => Some(*position),
            _ => None,
        }
    }

    /// Marks `table` live at `position`. A live position never moves
    /// backwards here; only [`DeliveryState::forget`] (a re-bootstrap) resets it.
    pub fn set_live(&mut self, table: &str, position: i64) {
        let position = match self.tables.get(table) {
            Some(TableState::Live { position: held }) => position.max(*held),
            _ => position,
        };
        self.tables.insert(table.to_string(), TableState::Live { position });
    }

    /// Marks `table` as being bootstrapped.
    pub fn set_seeding(&mut self, table: &str) {
        self.tables.insert(table.to_string(), TableState::Seeding);
    }

    /// Forgets `table` (the explicit way back: it is bootstrapped again).
    pub fn forget(&mut self, table: &str) {
        self.tables.remove(table);
    }

    /// Moves the commit point forward (never backwards) with its anchor.
    pub fn advance(&mut self, position: i64, anchor: Option<u64>) {
        if position >= self.position {
            self.position = position;
            self.anchor = anchor;
        }
    }

    /// The state as one JSON text (how the source's consumer record and the
    /// replica store it).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a delivery state always serialises")
    }

    /// Reads a state written by [`DeliveryState::to_json`].
    pub fn from_json(text: &str) -> crate::Result<DeliveryState> {
        Ok(serde_json::from_str(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_positions_never_move_backwards_except_by_forgetting() {
        let mut s = DeliveryState::empty("log");
        s.set_live("t", 10);
        s.set_live("t", 4);
        assert_eq!(s.live_position("t"), Some(10));
        s.forget("t");
        s.set_live("t", 4);
        assert_eq!(s.live_position("t"), Some(4));
        s.advance(9, Some(1));
        s.advance(3, Some(2));
        assert_eq!((s.position, s.anchor), (9, Some(1)));
        assert_eq!(DeliveryState::from_json(&s.to_json()).unwrap(), s);
    }
}
