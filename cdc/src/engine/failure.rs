//! Where a failure of a drain came from, which decides its retry.

use crate::error::Error;

/// Where a failure came from: transient ones are retried without limit,
/// other target failures a bounded number of times, other source ones
/// not; `Moved`: the source's file or schema moved during the drain, which
/// is planned again.
pub(crate) enum Failure {
    Source(Error),
    Target(Error),
    Moved(&'static str),
}

impl Failure {
    /// The kind counted in [`Stats`] (see [`crate::StatsSnapshot::errors`]).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Failure::Source(e) | Failure::Target(e) if e.is_locked() => "locked",
            Failure::Source(e) | Failure::Target(e) if e.is_transient() => "unavailable",
            Failure::Target(Error::ReplicaRefused { .. }) => "refused",
            Failure::Target(_) => "target",
            Failure::Source(_) => "source",
            Failure::Moved(_) => "moved",
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Source(e)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Source(e.into())
    }
}
