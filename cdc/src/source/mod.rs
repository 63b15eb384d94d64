//! The source's bookkeeping beside the log (Litestream's db.go, for this
//! project): consumers, their records and retention pins
//! ([`ConsumerRecord`], kept beside the source, not in it), freeing what
//! every consumer has ([`maintain`]: the one write a replicator makes to
//! the source), and `_cdc_meta` (the log's id, where capture of each
//! table started, capture's own schema changes).

mod consumers;
mod files;
mod lockers;
mod maintain;
mod meta;

pub use consumers::{
    ConsumerStatus, consumer_state, consumers, position, remove_consumer, rename_consumer, set_position,
};
pub use files::{ConsumerRecord, record_path};
pub(crate) use lockers::others_in_transaction;
pub(crate) use maintain::{Guard, freeable, maintain};
pub use maintain::{Maintained, prune};
pub use meta::{captured_since, log_id, only_own_ddl};
pub(crate) use meta::{record_own_ddl, schema_cookie, since_key};
