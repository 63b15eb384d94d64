//! What an operator can do about a problem: a [`Fix`], carried by errors
//! ([`crate::Error::fix`]), stopped tables ([`crate::Halted::fix`]) and
//! the warnings the library logs.
//!
//! The library says what to do in its own terms (`capture::install`,
//! [`crate::BootstrapMode::Auto`]); a program that drives it from a
//! command line installs a [`Renderer`] once ([`set_renderer`]) and every
//! fix, in errors and log lines alike, is written as the command that
//! does it. The library itself holds no command line.

use std::path::PathBuf;
use std::sync::OnceLock;

/// One thing to do. Marked `non_exhaustive`: later versions name more.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Attach capture to `tables` of `db` (every capturable table when
    /// empty): [`crate::capture::install`].
    Attach {
        /// The database.
        db: PathBuf,
        /// The tables; empty: all of them.
        tables: Vec<String>,
    },
    /// Attach capture to `table` of `db` again, with its new schema (the
    /// targets then reseed it): [`crate::capture::install`].
    Reattach {
        /// The database.
        db: PathBuf,
        /// The table.
        table: String,
    },
    /// Upgrade the log of `db` in place (any install does it).
    Upgrade {
        /// The database.
        db: PathBuf,
    },
    /// Remove capture from a table that is gone: [`crate::capture::uninstall`].
    Detach {
        /// The database.
        db: PathBuf,
        /// The table.
        table: String,
    },
    /// Capture `table` with its inserts read back from the table
    /// ([`crate::InsertImage::Reread`]).
    RereadInserts {
        /// The database.
        db: PathBuf,
        /// The table.
        table: String,
    },
    /// Close the open migration window ([`crate::capture::finish_migration`]).
    FinishMigration {
        /// The database.
        db: PathBuf,
    },
    /// Let consumers catch up, remove them, or force the removal.
    RemoveConsumers {
        /// The database.
        db: PathBuf,
    },
    /// Remove one consumer that is gone for good
    /// ([`crate::source::remove_consumer`]).
    RemoveConsumer {
        /// The database.
        db: PathBuf,
        /// The consumer.
        name: String,
    },
    /// Let the engine bootstrap ([`crate::BootstrapMode::Auto`]).
    AllowBootstrap,
    /// Reseed the target from this source ([`crate::OnRewind::Reseed`]).
    Reseed,
    /// Stop following `table` (leave it out of the engine's tables).
    Unfollow {
        /// The table.
        table: String,
    },
    /// Have the publisher bootstrap every table again into the stream
    /// ([`crate::BootstrapMode::Always`]).
    Republish,
    /// Delete the replica, have the publisher bootstrap again, and follow
    /// the stream anew.
    Refollow {
        /// The replica file.
        replica: PathBuf,
    },
    /// Restart the process (a stream made anew is bootstrapped into).
    Restart,
}

/// Writes a [`Fix`] the way the program that drives the library is used
/// (a command line, say); `None` leaves the library's own words.
pub type Renderer = fn(&Fix) -> Option<String>;

static RENDERER: OnceLock<Renderer> = OnceLock::new();

/// Installs the renderer every [`Fix`] is written with from now on, in
/// this process. The first call wins; later ones change nothing.
pub fn set_renderer(renderer: Renderer) {
    let _ = RENDERER.set(renderer);
}

impl Fix {
    /// In the library's own words.
    fn plain(&self) -> String {
        let db = |p: &PathBuf| p.display().to_string();
        match self {
            Fix::Attach { db: d, tables } if tables.is_empty() => {
                format!("attach capture to the tables of {} (capture::install)", db(d))
            }
            Fix::Attach { db: d, tables } => {
                format!("attach capture to {} of {} (capture::install)", names(tables), db(d))
            }
            Fix::Reattach { db: d, table } => {
                format!("attach capture to table {table:?} of {} again (capture::install); it is then reseeded", db(d))
            }
            Fix::Upgrade { db: d } => {
                format!("upgrade the log of {} in place: any capture::install does it, nothing is lost", db(d))
            }
            Fix::Detach { db: d, table } => {
                format!("remove capture from table {table:?} of {} (capture::uninstall)", db(d))
            }
            Fix::RereadInserts { db: d, table } => {
                format!("capture table {table:?} of {} with InsertImage::Reread", db(d))
            }
            Fix::FinishMigration { db: d } => {
                format!("close the migration window of {} (capture::finish_migration)", db(d))
            }
            Fix::RemoveConsumers { db: d } => {
                format!("let them catch up, remove them from {} (source::remove_consumer), or force it", db(d))
            }
            Fix::RemoveConsumer { db: d, name } => {
                format!("if it is gone for good, remove consumer {name:?} from {} (source::remove_consumer)", db(d))
            }
            Fix::AllowBootstrap => "let the engine bootstrap (BootstrapMode::Auto)".into(),
            Fix::Reseed => "reseed the target from this source (OnRewind::Reseed)".into(),
            Fix::Unfollow { table } => format!("stop following table {table:?}"),
            Fix::Republish => "have the publisher bootstrap every table again (BootstrapMode::Always)".into(),
            Fix::Refollow { replica } => format!(
                "delete replica {}, have the publisher bootstrap again (BootstrapMode::Always), then follow anew",
                replica.display()
            ),
            Fix::Restart => "restart".into(),
        }
    }
}

impl std::fmt::Display for Fix {
    /// The installed [`Renderer`]'s words, else the library's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match RENDERER.get().and_then(|render| render(self)) {
            Some(text) => f.write_str(&text),
            None => f.write_str(&self.plain()),
        }
    }
}

/// Names joined for a message: `"a", "b"`.
pub(crate) fn names(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_says_what_to_do_in_its_own_terms() {
        let fix = Fix::Attach { db: "app.db".into(), tables: vec!["t".into()] };
        assert_eq!(fix.plain(), "attach capture to \"t\" of app.db (capture::install)");
        assert!(!Fix::AllowBootstrap.plain().contains("--"), "no command line in the library");
    }
}
