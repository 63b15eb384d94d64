//! The command line's errors: the library's, and the few only a command
//! line has (a migration command that failed, `--once` with tables it
//! could not bring along, the demo's own check).

use std::path::PathBuf;

/// What `cdc-setup` or `replicator` could not do. One line each; the
/// library's errors carry their fix ([`cdc::Error::with_fix`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of the library.
    #[error("{}", .0.with_fix())]
    Cdc(#[from] cdc::Error),
    /// `cdc-setup install --all` on a file without ordinary tables.
    #[error("{}: the database has no ordinary tables to capture", .0.display())]
    NothingToCapture(PathBuf),
    /// The command `cdc-setup migrate` ran failed (capture is as it was
    /// before, or attached again: the message says which).
    #[error("the migration command {command:?} {outcome}")]
    Migration {
        /// The command as given.
        command: String,
        /// What happened, and what became of capture.
        outcome: String,
    },
    /// `--once` left tables behind (their delivery is stopped).
    #[error("{first}{}", if *.more > 0 { format!(" (and {} more table(s), listed above)", .more) } else { String::new() })]
    Halted {
        /// The first stopped table.
        first: Box<cdc::Halted>,
        /// How many more.
        more: usize,
    },
    /// The demo's replica differs from its source.
    #[error("the replica differs from the source: {0}")]
    Differs(String),
    /// An I/O error of the command line itself (stdout, signal handlers,
    /// the metrics socket).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A JSON rendering error (`--json`).
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// An I/O error while doing `context`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
