//! Attaching and removing capture: triggers and registry rows
//! ([`install`]), drift checks ([`check`]), migration windows
//! ([`start_migration`]), and what `cdc-setup status` reports ([`status`]).
//! The layouts themselves are read back by [`crate::log::registry`].

mod drift;
mod install;
mod migration;
mod order;
mod scope;
mod status;
mod upgrade;

pub use drift::{Check, check, drift, verify};
pub use install::{Installed, install, install_for, install_with, uninstall};
pub use migration::{
    Finished, Migration, detach, finish_migration, finish_migration_unless_written, migration, reattach,
    start_migration,
};
pub use scope::{carries_capture, install_every_table, may_capture};
pub use status::{Status, TableStatus, status};
