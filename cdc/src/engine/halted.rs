//! A followed table whose delivery is stopped, and the fix that resumes it.

use crate::fix::Fix;

/// A followed table whose delivery is stopped because its schema changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Halted {
    /// The table, as the source names it.
    pub table: String,
    /// What stopped it, in one line.
    pub reason: String,
    /// What resumes its delivery (or stops following it).
    pub fix: Fix,
    /// Capture is paused by an open migration window
    /// ([`crate::capture::start_migration`]): delivery resumes by itself
    /// when the window closes.
    pub migrating: bool,
}

impl std::fmt::Display for Halted {
    /// The reason and the fix, in one line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.reason, self.fix)
    }
}

impl Halted {
    /// Says it, at a level that matches: an open migration window is
    /// expected, a table stopped by a schema change needs an operator.
    pub(crate) fn announce(&self) {
        if self.migrating {
            tracing::warn!("{self}");
        } else {
            tracing::error!("{self}");
        }
    }
}
