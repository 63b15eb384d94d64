//! The source's bookkeeping beside the log (Litestream's db.go, for this
//! project): consumers and their retention pins, pruning, and `_cdc_meta`
//! (the log's id, where capture of each table started, capture's own
//! schema changes). The engine's acknowledgement writes it in one short
//! transaction ([`ack`]).

pub(crate) mod ack;
mod consumers;
mod meta;
mod prune;

pub use consumers::{
    ConsumerStatus, consumer_state, consumers, position, remove_consumer, rename_consumer, set_consumer_state,
    set_position,
};
pub use meta::{captured_since, log_id, only_own_ddl};
pub(crate) use meta::{record_own_ddl, schema_cookie, since_key};
pub use prune::{forget_unused_layouts, prune, prune_at_most};
