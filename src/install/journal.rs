//! The install journal: one small JSON file, `journal.json`, that says which operation is under way and how
//! far it got. It is rewritten atomically (temporary file, fsync, rename, fsync folder) at every step, so
//! after a crash it always holds the last step that was recorded, whole.
//!
//! Recovery does not trust the step alone: an operation may have done the next action but not yet recorded
//! it. [`super::Installer::recover`] therefore looks at the `current` pointer too, which is the one thing
//! that decides which version runs.

use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};

/// What an interrupted operation was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Unpacking a new version and switching to it.
    Install,
    /// Switching between versions already installed (rollback); never deletes a version.
    Switch,
    /// Replacing the damaged folder of the current version with a fresh copy; `from` and `to` are equal.
    Repair,
}

/// The last step an operation recorded, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Unpacking into `staging/` has begun; `current` is untouched.
    Staging,
    /// The new version is unpacked, checked and flushed to disk in `staging/`.
    Staged,
    /// The new version is complete in `versions/<to>/`; `current` still names the old one.
    Moved,
    /// `current` names the new version.
    Switched,
    /// Nothing is left to do but remove the journal.
    Committed,
}

/// The record in `journal.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub operation: Operation,
    /// The version `current` named when the operation began, if any.
    pub from: Option<Version>,
    /// The version the operation makes current.
    pub to: Version,
    pub step: Step,
    /// The process that runs (or ran) the operation.
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Journal {
    pub(crate) fn begin(operation: Operation, from: Option<Version>, to: Version, step: Step) -> Self {
        let now = Utc::now();
        Journal {
            operation,
            from,
            to,
            step,
            pid: std::process::id(),
            started_at: now,
            updated_at: now,
        }
    }
}

/// Where a test may stop the installer dead (`std::process::abort`, as abrupt as `kill -9` for the files
/// on disk), to prove that [`super::Installer::recover`] copes with a crash at that moment. Test-only: set
/// with [`super::Installer::with_crash_point`], never from configuration.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashPoint {
    /// Journal says `Staging`; nothing unpacked.
    Staging,
    /// Unpacked and checked in staging, journal still says `Staging`.
    Unpacked,
    /// Journal says `Staged`.
    Staged,
    /// Renamed into `versions/`, journal still says `Staged`.
    Renamed,
    /// Journal says `Moved`.
    Moved,
    /// The new pointer is written to `current.tmp` but not yet renamed over `current`.
    PointerWritten,
    /// `current` names the new version, journal still says `Moved`.
    PointerSwitched,
    /// Journal says `Switched`.
    Switched,
    /// Journal says `Committed`, not yet removed.
    Committed,
}

impl CrashPoint {
    /// Every point, in the order an install passes them.
    pub const ALL: [CrashPoint; 9] = [
        CrashPoint::Staging,
        CrashPoint::Unpacked,
        CrashPoint::Staged,
        CrashPoint::Renamed,
        CrashPoint::Moved,
        CrashPoint::PointerWritten,
        CrashPoint::PointerSwitched,
        CrashPoint::Switched,
        CrashPoint::Committed,
    ];
}
