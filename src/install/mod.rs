//! Installed versions, and the crash-safe switch between them.
//!
//! Layout under `Paths::install_dir()`:
//!
//! | path | what |
//! |---|---|
//! | `versions/<version>/` | one unpacked bundle per version; complete when it holds `agent.json` |
//! | `current` | a small text file naming the version that runs; only ever replaced by an atomic rename |
//! | `staging/` | where a new version is unpacked and checked before it moves into `versions/` |
//! | `journal.json` | the operation in progress and its last step ([`Journal`]) |
//! | `update.lock` | held by the one process allowed to change any of the above ([`InstallLock`]) |
//! | `state.json` | the version that was current before the last switch: the default rollback target |
//!
//! An install unpacks into `staging/`, checks the bundle, flushes every file to disk, renames the bundle
//! into `versions/<v>/`, then switches `current` (write `current.tmp`, fsync, rename, fsync the folder).
//! The journal records each step, fsynced, before the next begins. The invariant: `current` only ever names
//! a complete version folder, so a crash at any moment — `kill -9` or a power cut — leaves the old or the
//! new version runnable. [`Installer::recover`], called at every start, then finishes the operation (if
//! `current` already names the new version) or undoes it (removes the half-made version and staging).
//!
//! Removing a folder is done by first renaming it into `staging/` and then deleting it there, so a crash
//! half way through a delete never leaves a half-deleted folder in `versions/` that looks installed.
//!
//! Platform notes: on Unix, folders are fsynced after renames; Windows cannot open a folder to flush it and
//! relies on NTFS journaling the rename. Files are flushed with [`crate::fsutil::sync_file`], which opens
//! them for writing on Windows (`FlushFileBuffers` refuses a read-only handle with "Access is denied").
//! Antivirus scanners briefly hold the executables of a freshly unpacked bundle, and Windows then refuses
//! to rename their folder; the folder renames (staging → `versions/<v>/`, and moving a folder aside to
//! delete it) and deletions are retried for about 2.5 s on those errors only, then fail with
//! [`InstallError::InUse`] naming the held folder (see `retry.rs`). `std::fs::rename` replaces an existing file on every platform (Rust
//! uses `MoveFileExW` with `MOVEFILE_REPLACE_EXISTING` on Windows), which the pointer switch needs. On
//! Windows a version whose executable is running cannot be renamed or deleted, so [`Installer::prune`]
//! fails on it (after those retries) with [`InstallError::InUse`] naming the folder; the supervisor should stop the backend before pruning.

mod journal;
mod lock;
pub(crate) mod retry;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::archive::{self, ArchiveError, ExtractLimits};

#[doc(hidden)]
pub use journal::CrashPoint;
pub use journal::{Journal, Operation, Step};
pub use lock::InstallLock;

/// Every bundle holds this file at its root: how to run the backend.
pub const AGENT_MANIFEST: &str = "agent.json";
const VERSIONS_DIR: &str = "versions";
const STAGING_DIR: &str = "staging";
const CURRENT_FILE: &str = "current";
const CURRENT_TEMP_FILE: &str = "current.tmp";
const JOURNAL_FILE: &str = "journal.json";
const STATE_FILE: &str = "state.json";
pub(crate) const LOCK_FILE: &str = "update.lock";

/// What can go wrong installing or switching versions.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("an update is in progress{}; wait for it to finish, then try again", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Busy { pid: Option<u32>, lock_file: PathBuf },

    #[error(transparent)]
    Archive(#[from] ArchiveError),

    /// Boxed: its version pairs would make every error the size of the largest.
    #[error(transparent)]
    Delta(Box<crate::delta::DeltaError>),

    #[error(
        "{} is not a Personal AI Agent bundle: {} {reason}; check that the right file was downloaded, or rebuild it with `release pack`",
        archive.display(),
        manifest.display()
    )]
    NotABundle {
        archive: PathBuf,
        manifest: PathBuf,
        reason: String,
    },

    #[error(
        "{} says it is version {found}, but version {expected} was being installed; the file was published under the wrong version, so it is not installed",
        archive.display()
    )]
    VersionMismatch {
        archive: PathBuf,
        expected: Version,
        found: String,
    },

    #[error("version {version} is already installed and current; nothing to do")]
    AlreadyCurrent { version: Version },

    #[error("version {version} is not installed; installed versions: {}", list_versions(.installed))]
    NotInstalled {
        version: Version,
        installed: Vec<Version>,
    },

    #[error("there is no earlier version to roll back to{}; install one with `update install --version V`", current.as_ref().map(|v| format!(" (current: {v})")).unwrap_or_default())]
    NoPreviousVersion { current: Option<Version> },

    #[error("{} is damaged ({reason}); run `update rollback --to V` with an installed version, or `update install` again", path.display())]
    CorruptState { path: PathBuf, reason: String },

    /// A folder rename or deletion kept failing because another program holds `held` open (Windows; see
    /// `retry.rs`).
    #[error(
        "cannot {action} {}: another program (often antivirus or an open Explorer window) is using {}; close it and try again ({source})",
        target.display(),
        held.display()
    )]
    InUse {
        action: &'static str,
        /// What the step was about, as in [`InstallError::Io`].
        target: PathBuf,
        /// The folder being renamed, which another program has open.
        held: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("the update lock held is for {}, not for {}; this is a bug in the caller", lock_dir.display(), install_dir.display())]
    WrongLock { lock_dir: PathBuf, install_dir: PathBuf },
}

impl From<crate::delta::DeltaError> for InstallError {
    fn from(e: crate::delta::DeltaError) -> Self {
        Self::Delta(Box::new(e))
    }
}

impl InstallError {
    pub(crate) fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> InstallError + 'a {
        move |source| InstallError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn list_versions(versions: &[Version]) -> String {
    if versions.is_empty() {
        "none".to_owned()
    } else {
        versions
            .iter()
            .map(Version::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The result of [`Installer::install_archive`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallOutcome {
    /// The version that was current before, now the default rollback target.
    pub previous: Option<Version>,
    /// The version now current.
    pub installed: Version,
    /// Its folder, `versions/<installed>/`.
    pub dir: PathBuf,
    /// Every regular file the new folder was made with (relative `/`-separated path → size, SHA256, mode),
    /// hashed as it was written.
    pub files: BTreeMap<String, archive::FileRecord>,
}

/// Where the files of a version being installed come from.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    /// A bundle archive, hashed as it is unpacked: when `sha256` is given and the bytes read do not have
    /// it, nothing is installed ([`ArchiveError::ChecksumMismatch`]).
    Archive {
        path: &'a Path,
        sha256: Option<&'a str>,
        /// The release's file list (vouched for by its manifest), which spares hashing each file again (see
        /// [`archive::extract_archive_checked`]).
        listed: Option<&'a archive::ListedFiles>,
    },
    /// A bundle folder `build` makes in the empty folder it is given (a delta applied to an installed
    /// version), returning every regular file it wrote, checked; `origin` names it in errors.
    Built {
        origin: &'a Path,
        build: &'a BuildFn<'a>,
    },
}

/// What [`Payload::Built`] runs: fills the folder it is given, returns each regular file's record.
pub type BuildFn<'a> = dyn Fn(&Path) -> Result<BTreeMap<String, archive::FileRecord>, InstallError> + 'a;

impl std::fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Archive { path, sha256, .. } => f
                .debug_struct("Archive")
                .field("path", path)
                .field("sha256", sha256)
                .finish(),
            Payload::Built { origin, .. } => f.debug_struct("Built").field("origin", origin).finish(),
        }
    }
}

impl Payload<'_> {
    fn origin(&self) -> &Path {
        match self {
            Payload::Archive { path, .. } => path,
            Payload::Built { origin, .. } => origin,
        }
    }
}

/// What [`Installer::recover`] did about an interrupted operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryAction {
    /// `current` already named the new version: the rest of the operation was finished.
    Completed,
    /// The new version had not become current: its traces were removed and the old one stays.
    RolledBack,
    /// Only leftovers (staging files, an unreadable journal) were cleaned up.
    Cleaned,
}

/// Reported by [`Installer::recover`] when it found something to finish or undo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// The journal found, if it could be read.
    pub journal: Option<Journal>,
    pub action: RecoveryAction,
    /// The version current afterwards.
    pub current: Option<Version>,
}

/// Small state kept beside the versions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    /// The version current before the last switch.
    previous: Option<Version>,
}

/// Installs, switches and prunes versions in one install folder.
#[derive(Clone, Debug)]
pub struct Installer {
    dir: PathBuf,
    limits: ExtractLimits,
    crash_at: Option<CrashPoint>,
}

impl Installer {
    /// An installer for `install_dir` (normally `Paths::install_dir()`); nothing is created yet.
    pub fn new(install_dir: PathBuf) -> Self {
        Installer {
            dir: install_dir,
            limits: ExtractLimits::default(),
            crash_at: None,
        }
    }

    /// Bounds on what an archive may unpack to (default: [`ExtractLimits::default`]).
    pub fn with_extract_limits(mut self, limits: ExtractLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Test-only: abort the process at `point` during [`Installer::install_archive`].
    #[doc(hidden)]
    pub fn with_crash_point(mut self, point: CrashPoint) -> Self {
        self.crash_at = Some(point);
        self
    }

    /// The install folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the update lock, or fails at once with [`InstallError::Busy`] if another process holds it.
    pub fn lock(&self) -> Result<InstallLock, InstallError> {
        InstallLock::acquire(&self.dir)
    }

    /// Whether another process holds the update lock right now (an update is running, not interrupted).
    pub fn is_update_running(&self) -> bool {
        matches!(self.lock(), Err(InstallError::Busy { .. }))
    }

    /// Finishes or undoes an operation a crash interrupted. Call it at every start. Takes the lock for the
    /// moment; when another process holds it, that process is mid-operation and `Ok(None)` is returned.
    pub fn recover(&self) -> Result<Option<RecoveryReport>, InstallError> {
        match self.lock() {
            Ok(lock) => self.recover_locked(&lock),
            Err(InstallError::Busy { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// As [`Installer::recover`], for a caller that already holds the lock.
    pub fn recover_locked(&self, lock: &InstallLock) -> Result<Option<RecoveryReport>, InstallError> {
        self.check_lock(lock)?;
        let journal_path = self.dir.join(JOURNAL_FILE);
        let journal = match fs::read(&journal_path) {
            Ok(bytes) => Some(serde_json::from_slice::<Journal>(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(InstallError::io("read", &journal_path)(e)),
        };
        let leftovers = self.dir.join(STAGING_DIR).exists() || self.dir.join(CURRENT_TEMP_FILE).exists();
        let report = match journal {
            None if !leftovers => return Ok(None),
            None | Some(Err(_)) => {
                // An unreadable journal cannot happen with atomic writes, short of disk damage; `current` is
                // still whole (atomic too), so keep it and clear the rest.
                if let Some(Err(e)) = &journal {
                    tracing::warn!(path = %journal_path.display(), error = %e, "unreadable install journal removed");
                }
                RecoveryReport {
                    journal: None,
                    action: RecoveryAction::Cleaned,
                    current: self.current_version_or_none()?,
                }
            }
            Some(Ok(journal)) => {
                if journal.operation == Operation::Repair && !self.is_complete(&journal.to) {
                    // Interrupted between moving the damaged folder aside and moving the new one in: put
                    // the old one back, damaged as it was but where `current` expects it.
                    let aside = self.repair_aside(&journal.to);
                    let target = self.version_dir(&journal.to);
                    if aside.exists() && fs::symlink_metadata(&target).is_err() {
                        retry::rename_dir(&aside, &target, "move back", &target)?;
                        crate::fsutil::sync_dir(&self.dir.join(VERSIONS_DIR));
                    }
                }
                let current = self.current_version_or_none()?;
                let action = if current.as_ref() == Some(&journal.to) && self.is_complete(&journal.to) {
                    // The switch happened; only the bookkeeping after it may be missing.
                    if journal.from.as_ref() != Some(&journal.to) {
                        self.write_state(&State {
                            previous: journal.from.clone(),
                        })?;
                    }
                    RecoveryAction::Completed
                } else {
                    if current.as_ref() == Some(&journal.to) {
                        // Cannot happen in the order we write, but never leave `current` naming a broken folder.
                        if let Some(from) = journal.from.as_ref().filter(|v| self.is_complete(v)) {
                            self.write_pointer(from)?;
                        }
                    }
                    if journal.operation == Operation::Install
                        && self.current_version_or_none()?.as_ref() != Some(&journal.to)
                    {
                        self.remove_dir_safely(&self.version_dir(&journal.to))?;
                    }
                    RecoveryAction::RolledBack
                };
                tracing::info!(?action, to = %journal.to, step = ?journal.step, "recovered an interrupted update");
                RecoveryReport {
                    journal: Some(journal),
                    action,
                    current: self.current_version_or_none()?,
                }
            }
        };
        self.clear_leftovers()?;
        remove_file_if_exists(&journal_path)?;
        crate::fsutil::sync_dir(&self.dir);
        Ok(Some(report))
    }

    /// The version `current` names, or `None` before the first install.
    pub fn current_version(&self) -> Result<Option<Version>, InstallError> {
        let path = self.dir.join(CURRENT_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(InstallError::io("read", &path)(e)),
        };
        Version::parse(text.trim())
            .map(Some)
            .map_err(|e| InstallError::CorruptState {
                path,
                reason: format!("`{}` is not a version: {e}", text.trim()),
            })
    }

    /// As [`Installer::current_version`], but a damaged pointer counts as none (and is logged), so that an
    /// install or a rollback can repair it instead of failing on it.
    fn current_version_or_none(&self) -> Result<Option<Version>, InstallError> {
        match self.current_version() {
            Err(InstallError::CorruptState { path, reason }) => {
                tracing::warn!(path = %path.display(), %reason, "ignoring a damaged version pointer");
                Ok(None)
            }
            other => other,
        }
    }

    /// The folder of the current version, if there is one and it is complete.
    pub fn current_dir(&self) -> Result<Option<PathBuf>, InstallError> {
        Ok(self
            .current_version()?
            .filter(|v| self.is_complete(v))
            .map(|v| self.version_dir(&v)))
    }

    /// Every complete version in `versions/`, newest first.
    pub fn installed_versions(&self) -> Result<Vec<Version>, InstallError> {
        let dir = self.dir.join(VERSIONS_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(InstallError::io("list", &dir)(e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(InstallError::io("list", &dir))?;
            if let Some(version) = entry.file_name().to_str().and_then(|n| Version::parse(n).ok())
                && self.is_complete(&version)
            {
                versions.push(version);
            }
        }
        versions.sort_by(|a, b| b.cmp(a));
        Ok(versions)
    }

    /// `versions/<v>/`, whether or not it exists.
    pub fn version_dir(&self, version: &Version) -> PathBuf {
        self.dir.join(VERSIONS_DIR).join(version.to_string())
    }

    /// The version a rollback without `--to` would switch to, if any.
    pub fn previous_version(&self) -> Result<Option<Version>, InstallError> {
        let current = self.current_version_or_none()?;
        let others: Vec<Version> = self
            .installed_versions()?
            .into_iter()
            .filter(|v| Some(v) != current.as_ref())
            .collect();
        let recorded = self.read_state()?.previous.filter(|v| others.contains(v));
        let older = others
            .iter()
            .find(|v| current.as_ref().is_none_or(|c| *v < c))
            .cloned();
        Ok(recorded.or(older).or_else(|| others.first().cloned()))
    }

    /// The operation a crash (or a running updater) left in `journal.json`, for `update status`.
    pub fn interrupted_operation(&self) -> Result<Option<Journal>, InstallError> {
        let path = self.dir.join(JOURNAL_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| InstallError::CorruptState {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(InstallError::io("read", &path)(e)),
        }
    }

    /// Unpacks `archive` (already verified) into staging, checks it (the bundle root holds `agent.json`, and
    /// its `version`, if it states one, is `version`), moves it to `versions/<version>/` and switches
    /// `current` to it. Old versions stay: call [`Installer::prune`] once the new one has proved healthy.
    pub fn install_archive(
        &self,
        lock: &InstallLock,
        archive: &Path,
        version: &Version,
    ) -> Result<InstallOutcome, InstallError> {
        let payload = Payload::Archive {
            path: archive,
            sha256: None,
            listed: None,
        };
        self.install_payload(lock, payload, version)
    }

    /// [`Installer::install_archive`] from any [`Payload`]: the same staging, checks, journal and switch.
    pub fn install_payload(
        &self,
        lock: &InstallLock,
        payload: Payload<'_>,
        version: &Version,
    ) -> Result<InstallOutcome, InstallError> {
        self.recover_locked(lock)?;
        let from = self.current_version_or_none()?;
        if from.as_ref() == Some(version) && self.is_complete(version) {
            return Err(InstallError::AlreadyCurrent {
                version: version.clone(),
            });
        }
        match self.install_steps(payload, version, from) {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                // Undo at once what the failed attempt left (staging, a half-made version, the journal) rather
                // than at the next start; the original error is the one worth reporting.
                if let Err(undo) = self.recover_locked(lock) {
                    tracing::warn!(error = %undo, "could not clean up after a failed install");
                }
                Err(e)
            }
        }
    }

    fn install_steps(
        &self,
        payload: Payload<'_>,
        version: &Version,
        from: Option<Version>,
    ) -> Result<InstallOutcome, InstallError> {
        let target = self.version_dir(version);
        // A folder for this version that is not current is a stale copy: the archive replaces it. Removing it
        // before the journal starts keeps recovery simple: whatever is in versions/<version> later is ours.
        self.remove_dir_safely(&target)?;

        let mut journal = Journal::begin(Operation::Install, from.clone(), version.clone(), Step::Staging);
        self.write_journal(&journal)?;
        self.crash_point(CrashPoint::Staging);

        let (staging, bundle_root, files) = self.stage(payload, version)?;
        self.crash_point(CrashPoint::Unpacked);
        self.advance(&mut journal, Step::Staged)?;
        self.crash_point(CrashPoint::Staged);

        let versions_dir = self.dir.join(VERSIONS_DIR);
        fs::create_dir_all(&versions_dir).map_err(InstallError::io("create folder", &versions_dir))?;
        retry::rename_dir(&bundle_root, &target, "move the new version to", &target)?;
        crate::fsutil::sync_dir(&versions_dir);
        crate::fsutil::sync_dir(bundle_root.parent().unwrap_or(&staging));
        self.crash_point(CrashPoint::Renamed);
        self.advance(&mut journal, Step::Moved)?;
        self.crash_point(CrashPoint::Moved);

        self.write_pointer(version)?;
        self.crash_point(CrashPoint::PointerSwitched);
        self.write_state(&State {
            previous: from.clone(),
        })?;
        self.advance(&mut journal, Step::Switched)?;
        self.crash_point(CrashPoint::Switched);

        self.advance(&mut journal, Step::Committed)?;
        self.crash_point(CrashPoint::Committed);
        self.finish_operation()?;
        tracing::info!(%version, previous = ?from, "installed");
        Ok(InstallOutcome {
            previous: from,
            installed: version.clone(),
            dir: target,
            files,
        })
    }

    /// Unpacks or builds the payload into this process's staging folder, checks the bundle and flushes it
    /// to disk: the first half of both an install and a repair. Returns the staging folder, the bundle root
    /// in it and the files written.
    #[allow(clippy::type_complexity)]
    fn stage(
        &self,
        payload: Payload<'_>,
        version: &Version,
    ) -> Result<(PathBuf, PathBuf, BTreeMap<String, archive::FileRecord>), InstallError> {
        let staging = self
            .dir
            .join(STAGING_DIR)
            .join(format!("{version}-{}", std::process::id()));
        let (bundle_root, files) = match payload {
            Payload::Archive { path, sha256, listed } => {
                let extracted =
                    archive::extract_archive_checked(path, &staging, &self.limits, sha256, listed)?;
                (extracted.root, extracted.files)
            }
            Payload::Built { build, .. } => {
                let root = staging.join("bundle");
                fs::create_dir_all(&root).map_err(InstallError::io("create folder", &root))?;
                let files = build(&root)?;
                (root, files)
            }
        };
        check_bundle(payload.origin(), &bundle_root, version)?;
        sync_tree(&bundle_root)?;
        Ok((staging, bundle_root, files))
    }

    /// Replaces the folder of `version`, which must be current, with a fresh copy from `archive` (already
    /// verified): the repair of a damaged install. The copy is unpacked, checked and flushed in staging
    /// first; then the damaged folder is moved aside (`staging/repair-old-<version>`) and the new one moved
    /// in. A crash between those two renames is undone at the next start by moving the old folder back, so
    /// `current` never names a missing folder for longer than that.
    pub fn repair_archive(
        &self,
        lock: &InstallLock,
        archive: &Path,
        version: &Version,
    ) -> Result<InstallOutcome, InstallError> {
        let payload = Payload::Archive {
            path: archive,
            sha256: None,
            listed: None,
        };
        self.repair_payload(lock, payload, version)
    }

    /// [`Installer::repair_archive`] from any [`Payload`].
    pub fn repair_payload(
        &self,
        lock: &InstallLock,
        payload: Payload<'_>,
        version: &Version,
    ) -> Result<InstallOutcome, InstallError> {
        self.recover_locked(lock)?;
        if self.current_version_or_none()?.as_ref() != Some(version) {
            return self.install_payload(lock, payload, version);
        }
        match self.repair_steps(payload, version) {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                if let Err(undo) = self.recover_locked(lock) {
                    tracing::warn!(error = %undo, "could not clean up after a failed repair");
                }
                Err(e)
            }
        }
    }

    fn repair_aside(&self, version: &Version) -> PathBuf {
        self.dir.join(STAGING_DIR).join(format!("repair-old-{version}"))
    }

    fn repair_steps(&self, payload: Payload<'_>, version: &Version) -> Result<InstallOutcome, InstallError> {
        let target = self.version_dir(version);
        let mut journal = Journal::begin(
            Operation::Repair,
            Some(version.clone()),
            version.clone(),
            Step::Staging,
        );
        self.write_journal(&journal)?;
        let (_, bundle_root, files) = self.stage(payload, version)?;
        self.advance(&mut journal, Step::Staged)?;
        let versions_dir = self.dir.join(VERSIONS_DIR);
        let aside = self.repair_aside(version);
        if fs::symlink_metadata(&target).is_ok() {
            retry::rename_dir(&target, &aside, "move aside", &target)?;
            crate::fsutil::sync_dir(&versions_dir);
        }
        self.crash_point(CrashPoint::Renamed);
        retry::rename_dir(&bundle_root, &target, "move the new copy to", &target)?;
        crate::fsutil::sync_dir(&versions_dir);
        self.advance(&mut journal, Step::Committed)?;
        self.finish_operation()?;
        tracing::info!(%version, "reinstalled the current version");
        Ok(InstallOutcome {
            previous: Some(version.clone()),
            installed: version.clone(),
            dir: target,
            files,
        })
    }

    /// Makes the installed version `version` current (the old current one stays installed).
    pub fn switch_to(&self, lock: &InstallLock, version: &Version) -> Result<(), InstallError> {
        self.recover_locked(lock)?;
        if !self.is_complete(version) {
            return Err(InstallError::NotInstalled {
                version: version.clone(),
                installed: self.installed_versions()?,
            });
        }
        let from = self.current_version_or_none()?;
        if from.as_ref() == Some(version) {
            return Ok(());
        }
        let journal = Journal::begin(Operation::Switch, from.clone(), version.clone(), Step::Moved);
        self.write_journal(&journal)?;
        self.write_pointer(version)?;
        self.write_state(&State { previous: from })?;
        self.finish_operation()?;
        tracing::info!(%version, "switched version");
        Ok(())
    }

    /// Switches back to `to`, or by default to the previous version ([`Installer::previous_version`]).
    /// Returns the version now current.
    pub fn rollback(&self, lock: &InstallLock, to: Option<&Version>) -> Result<Version, InstallError> {
        self.recover_locked(lock)?;
        let target = match to {
            Some(version) => version.clone(),
            None => self
                .previous_version()?
                .ok_or_else(|| InstallError::NoPreviousVersion {
                    current: self.current_version().ok().flatten(),
                })?,
        };
        self.switch_to(lock, &target)?;
        Ok(target)
    }

    /// Removes old versions, keeping the current one and `backup_count` others: the previous version first
    /// (the rollback target), then the newest. Returns the versions removed, newest first.
    pub fn prune(&self, lock: &InstallLock, backup_count: usize) -> Result<Vec<Version>, InstallError> {
        self.recover_locked(lock)?;
        let current = self.current_version_or_none()?;
        let previous = self.previous_version()?;
        let mut others: Vec<Version> = self
            .installed_versions()?
            .into_iter()
            .filter(|v| Some(v) != current.as_ref())
            .collect();
        // The previous version goes first so it is the last one removed.
        if let Some(previous) = previous
            && let Some(index) = others.iter().position(|v| *v == previous)
        {
            let kept_first = others.remove(index);
            others.insert(0, kept_first);
        }
        let removed: Vec<Version> = others.into_iter().skip(backup_count).collect();
        for version in &removed {
            self.remove_dir_safely(&self.version_dir(version))?;
        }
        let mut removed = removed;
        removed.sort_by(|a, b| b.cmp(a));
        Ok(removed)
    }

    /// Removes an installed version that is not current (a version whose backend failed its health check:
    /// keeping it would only make it a rollback target).
    pub fn remove_version(&self, lock: &InstallLock, version: &Version) -> Result<(), InstallError> {
        self.recover_locked(lock)?;
        if self.current_version_or_none()?.as_ref() == Some(version) {
            return Err(InstallError::AlreadyCurrent {
                version: version.clone(),
            });
        }
        self.remove_dir_safely(&self.version_dir(version))
    }

    // --- helpers -----------------------------------------------------------------------------------------

    fn check_lock(&self, lock: &InstallLock) -> Result<(), InstallError> {
        if lock.install_dir == self.dir {
            Ok(())
        } else {
            Err(InstallError::WrongLock {
                lock_dir: lock.install_dir.clone(),
                install_dir: self.dir.clone(),
            })
        }
    }

    fn is_complete(&self, version: &Version) -> bool {
        self.version_dir(version).join(AGENT_MANIFEST).is_file()
    }

    fn crash_point(&self, point: CrashPoint) {
        if self.crash_at == Some(point) {
            // Test-only (see `with_crash_point`): as abrupt as `kill -9` for what is on disk.
            std::process::abort();
        }
    }

    fn write_journal(&self, journal: &Journal) -> Result<(), InstallError> {
        let bytes = serde_json::to_vec_pretty(journal)
            .map_err(|e| InstallError::io("encode", Path::new(JOURNAL_FILE))(e.into()))?;
        write_synced(&self.dir, JOURNAL_FILE, &bytes)
    }

    fn advance(&self, journal: &mut Journal, step: Step) -> Result<(), InstallError> {
        journal.step = step;
        journal.updated_at = chrono::Utc::now();
        self.write_journal(journal)
    }

    /// The switch itself: `current.tmp` written and flushed, then renamed over `current`.
    fn write_pointer(&self, version: &Version) -> Result<(), InstallError> {
        let temp = self.dir.join(CURRENT_TEMP_FILE);
        write_and_flush(&temp, format!("{version}\n").as_bytes())?;
        self.crash_point(CrashPoint::PointerWritten);
        let path = self.dir.join(CURRENT_FILE);
        fs::rename(&temp, &path).map_err(InstallError::io("switch", &path))?;
        crate::fsutil::sync_dir(&self.dir);
        Ok(())
    }

    fn read_state(&self) -> Result<State, InstallError> {
        let path = self.dir.join(STATE_FILE);
        match fs::read(&path) {
            // State is a convenience (the default rollback target); a damaged one is as good as none.
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(InstallError::io("read", &path)(e)),
        }
    }

    fn write_state(&self, state: &State) -> Result<(), InstallError> {
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| InstallError::io("encode", Path::new(STATE_FILE))(e.into()))?;
        write_synced(&self.dir, STATE_FILE, &bytes)
    }

    fn finish_operation(&self) -> Result<(), InstallError> {
        self.clear_leftovers()?;
        remove_file_if_exists(&self.dir.join(JOURNAL_FILE))?;
        crate::fsutil::sync_dir(&self.dir);
        Ok(())
    }

    fn clear_leftovers(&self) -> Result<(), InstallError> {
        remove_file_if_exists(&self.dir.join(CURRENT_TEMP_FILE))?;
        retry::remove_tree(&self.dir.join(STAGING_DIR))
    }

    /// Deletes a folder so that no crash leaves it half-deleted in place: rename into staging, then delete.
    fn remove_dir_safely(&self, dir: &Path) -> Result<(), InstallError> {
        if fs::symlink_metadata(dir).is_err() {
            return Ok(());
        }
        let trash_root = self.dir.join(STAGING_DIR);
        fs::create_dir_all(&trash_root).map_err(InstallError::io("create folder", &trash_root))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let trash = trash_root.join(format!(
            "trash-{name}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        retry::rename_dir(dir, &trash, "move aside", dir)?;
        if let Some(parent) = dir.parent() {
            crate::fsutil::sync_dir(parent);
        }
        retry::remove_tree(&trash)?;
        // Leave no empty staging folder behind, or the next start would report leftovers to clean.
        let _ = fs::remove_dir(&trash_root);
        Ok(())
    }
}

/// Checks that an unpacked bundle has `agent.json`, that it is JSON, and that any version it states matches.
fn check_bundle(archive: &Path, root: &Path, version: &Version) -> Result<(), InstallError> {
    let manifest = root.join(AGENT_MANIFEST);
    let not_a_bundle = |reason: String| InstallError::NotABundle {
        archive: archive.to_path_buf(),
        manifest: PathBuf::from(AGENT_MANIFEST),
        reason,
    };
    let bytes = match fs::read(&manifest) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(not_a_bundle("is missing from the bundle folder".into()));
        }
        Err(e) => return Err(InstallError::io("read", &manifest)(e)),
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| not_a_bundle(format!("is not valid JSON ({e})")))?;
    if let Some(stated) = value.get("version") {
        let stated_text = stated
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| stated.to_string());
        let matches = stated
            .as_str()
            .and_then(|s| crate::version::parse_tag(s).or_else(|| Version::parse(s).ok()))
            .is_some_and(|v| v == *version);
        if !matches {
            return Err(InstallError::VersionMismatch {
                archive: archive.to_path_buf(),
                expected: version.clone(),
                found: stated_text,
            });
        }
    }
    Ok(())
}

/// Flushes every file and folder under `root` to disk, so a power cut after the switch cannot leave the
/// new version with empty files.
fn sync_tree(root: &Path) -> Result<(), InstallError> {
    for entry in fs::read_dir(root).map_err(InstallError::io("list", root))? {
        let entry = entry.map_err(InstallError::io("list", root))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(InstallError::io("read", &path))?;
        if file_type.is_dir() {
            sync_tree(&path)?;
        } else if file_type.is_file() {
            retry::sync_file(&path)?;
        }
    }
    crate::fsutil::sync_dir(root);
    Ok(())
}

fn write_and_flush(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(InstallError::io("create", path))?;
    file.write_all(bytes).map_err(InstallError::io("write", path))?;
    file.sync_all().map_err(InstallError::io("flush", path))
}

/// Replaces `dir/name` atomically: a temporary file beside it, flushed, renamed over it, folder flushed.
fn write_synced(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), InstallError> {
    fs::create_dir_all(dir).map_err(InstallError::io("create folder", dir))?;
    let temp = dir.join(format!(".{name}.tmp"));
    write_and_flush(&temp, bytes)?;
    let path = dir.join(name);
    fs::rename(&temp, &path).map_err(InstallError::io("replace", &path))?;
    crate::fsutil::sync_dir(dir);
    Ok(())
}

fn remove_file_if_exists(path: &Path) -> Result<(), InstallError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(InstallError::io("remove", path)(e)),
    }
}
