//! The update flow, end to end: check → download → verify → install → prove healthy → commit, or roll back.
//!
//! This is the only module that ties the engine's parts together; each step lives in its own module
//! (`check`, `download`, `verify`, `install`, `supervisor`) and knows nothing of the others. The CLI, the
//! headless runner and (later) the window all drive updates through here, so they behave the same.
//!
//! Files it keeps: `downloads/pending.json` (a verified download waiting to be installed, with the trust
//! policy it was verified under), `install/verified.json` (how each installed version was verified: hash,
//! signed or not, by what), `install/files/<version>.json` (every file a version was installed with, so a
//! damaged install is told from an intact one) and `install/newest-signed.json` (the newest signed manifest
//! this install has seen, per channel: an older one offered as an update is a replay and is refused).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::blocking::Client;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::agent::AgentSpec;
use crate::check::{CheckReport, CheckRequest};
use crate::config::Config;
use crate::download::{CancelToken, DownloadEvent, DownloadRequest, RetryPolicy};
use crate::error::{Error, Result};
use crate::install::{InstallLock, Installer, Journal, Payload};
use crate::paths::Paths;
use crate::platform::Platform;
use crate::release::{Asset, Release};
use crate::sources::ReleaseSource;
use crate::supervisor::Supervisor;
use crate::verify::{PublicKey, VerificationMaterial};
use crate::version::Channel;

/// The installer for these paths.
pub fn installer(paths: &Paths) -> Installer {
    Installer::new(paths.install_dir())
}

/// The version `current` points at, if anything is installed.
pub fn current_version(paths: &Paths) -> Result<Option<Version>> {
    Ok(installer(paths).current_version()?)
}

/// A verified download waiting to be installed (`downloads/pending.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downloaded {
    pub version: Version,
    pub asset: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// Whether the expected hash came from a manifest whose signature checked against the pinned key.
    pub signed: bool,
    /// Where the expected hash came from (`signed manifest`, `checksums-linux-x86_64.txt`, …).
    pub verified_by: String,
    /// The release source the bytes and their hash came from (its description). A download is reused only
    /// from the same source.
    #[serde(default)]
    pub source: String,
    /// The pinned key whose signature vouched for the hash, when `signed`. With a key pinned, a download is
    /// reused only if that same key signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// That key itself (base64): a key id is only 8 bytes anyone can choose, so reuse compares the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The channel the manifest that gave the hash was published for, when a manifest gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_channel: Option<Channel>,
}

impl Downloaded {
    /// Whether this download may be installed under the trust policy in force now: from the same source,
    /// and, with a key pinned, signed by that key; a manifest for another channel never counts. A record
    /// written by an older launcher (no source) is never reused.
    pub fn still_trusted(&self, source: &str, key: Option<&PublicKey>, channel: Channel) -> bool {
        let same_source = !self.source.is_empty() && self.source == source;
        let key_holds = match key {
            Some(key) => self.signed && self.public_key.as_deref() == Some(key.to_base64().as_str()),
            None => true,
        };
        let channel_holds = self.manifest_channel.is_none_or(|m| channel.includes(m));
        same_source && key_holds && channel_holds
    }
}

/// How an installed version was verified (`install/verified.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationRecord {
    pub sha256: String,
    pub signed: bool,
    pub verified_by: String,
    pub installed_at: DateTime<Utc>,
}

fn pending_file(paths: &Paths) -> PathBuf {
    paths.downloads_dir().join("pending.json")
}

fn verified_file(paths: &Paths) -> PathBuf {
    paths.install_dir().join("verified.json")
}

/// The pending download, if one was recorded and its file is still there.
pub fn pending_download(paths: &Paths) -> Option<Downloaded> {
    let text = crate::fsutil::read_optional(&pending_file(paths)).ok()??;
    let pending: Downloaded = serde_json::from_str(&text).ok()?;
    pending.path.is_file().then_some(pending)
}

pub(crate) fn record_pending(paths: &Paths, downloaded: &Downloaded) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(downloaded).unwrap_or_default();
    crate::fsutil::write_atomic(&pending_file(paths), &bytes)
}

/// Forgets the pending download of `version` (any, when `None`) and deletes its file; a pending download of
/// another version (one a `update download` in another shell just fetched) is left alone.
pub(crate) fn clear_pending(paths: &Paths, version: Option<&Version>) {
    let pending = pending_download(paths);
    if let Some(p) = &pending
        && version.is_some_and(|v| *v != p.version)
    {
        tidy_downloads(paths, Some(&p.path));
        return;
    }
    if let Some(p) = &pending {
        let _ = std::fs::remove_file(&p.path);
    }
    let _ = std::fs::remove_file(pending_file(paths));
    tidy_downloads(paths, None);
}

/// Deletes what the downloads folder no longer needs: every finished download but `keep` (the pending
/// one) and every partial download but the newest other one, which may still be resumed. Without this,
/// `auto_download` with `auto_install` off would keep every release's archive forever. Best effort.
pub(crate) fn tidy_downloads(paths: &Paths, keep: Option<&Path>) {
    let dir = paths.downloads_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut finished = Vec::new();
    let mut partials: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || name == "pending.json" || name.starts_with(".tmp-") {
            continue;
        }
        if let Some(base) = name.strip_suffix(".part") {
            partials.push((meta.modified().unwrap_or(std::time::UNIX_EPOCH), dir.join(base)));
        } else if name.ends_with(".part.json") {
            // Handled with its `.part`; an orphan sidecar is removed below.
            if !dir.join(name.trim_end_matches(".json")).exists() {
                let _ = std::fs::remove_file(&path);
            }
        } else if Some(path.as_path()) != keep {
            finished.push(path);
        }
    }
    partials.sort_by_key(|p| std::cmp::Reverse(p.0));
    let resumable = partials
        .iter()
        .map(|(_, dest)| dest)
        .find(|dest| Some(dest.as_path()) != keep)
        .cloned();
    for (_, dest) in &partials {
        if Some(dest) != resumable.as_ref() {
            let _ = std::fs::remove_file(crate::download::part_path(dest));
            let _ = std::fs::remove_file(crate::download::sidecar_path(dest));
        }
    }
    for path in finished {
        tracing::info!(path = %path.display(), "removing a download that is no longer needed");
        let _ = std::fs::remove_file(&path);
    }
}

/// Bytes the downloads folder holds (finished, pending and partial downloads).
pub fn downloads_bytes(paths: &Paths) -> u64 {
    std::fs::read_dir(paths.downloads_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A signed manifest this install has verified (`install/newest-signed.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenManifest {
    pub version: Version,
    pub published_at: DateTime<Utc>,
}

fn newest_signed_file(paths: &Paths) -> PathBuf {
    paths.install_dir().join("newest-signed.json")
}

/// The signed manifests this install has seen, per manifest channel: only those no other one dominates
/// (a later signature of an equal or higher version), so the list stays small.
pub fn newest_signed(paths: &Paths) -> BTreeMap<String, Vec<SeenManifest>> {
    crate::fsutil::read_optional(&newest_signed_file(paths))
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Whether a signed manifest of `version` published at `published_at` is a replay: some manifest seen
/// before was signed *later* for an equal or higher version. An old signature of a version that has since
/// been superseded is what a mirror replaying old releases serves. A backport (1.0.5 signed after 1.1.0
/// was seen) is not a replay: no later signature covers a version as high.
pub fn is_replay(version: &Version, published_at: DateTime<Utc>, seen: &[SeenManifest]) -> bool {
    replayed_by(version, published_at, seen).is_some()
}

/// The manifest already seen that makes this one a replay (see [`is_replay`]).
fn replayed_by<'a>(
    version: &Version,
    published_at: DateTime<Utc>,
    seen: &'a [SeenManifest],
) -> Option<&'a SeenManifest> {
    seen.iter()
        .find(|s| s.published_at > published_at && s.version >= *version)
}

fn record_newest_signed(paths: &Paths, channel: Channel, seen: SeenManifest) -> Result<()> {
    const MAX_KEPT: usize = 256;
    let mut all = newest_signed(paths);
    let list = all.entry(channel.as_str().to_owned()).or_default();
    let dominated =
        |a: &SeenManifest, b: &SeenManifest| b.published_at >= a.published_at && b.version >= a.version;
    if list.iter().any(|old| dominated(&seen, old)) {
        return Ok(());
    }
    list.retain(|old| !dominated(old, &seen));
    list.push(seen);
    list.sort_by_key(|s| std::cmp::Reverse(s.published_at));
    list.truncate(MAX_KEPT);
    let bytes = serde_json::to_vec_pretty(&all).unwrap_or_default();
    crate::fsutil::write_atomic(&newest_signed_file(paths), &bytes)
}

/// How each installed version was verified.
pub fn verification_records(paths: &Paths) -> BTreeMap<String, VerificationRecord> {
    crate::fsutil::read_optional(&verified_file(paths))
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub(crate) fn record_verification(
    paths: &Paths,
    version: &Version,
    record: VerificationRecord,
) -> Result<()> {
    let installed: Vec<String> = installer(paths)
        .installed_versions()?
        .iter()
        .map(Version::to_string)
        .collect();
    let mut records = verification_records(paths);
    records.insert(version.to_string(), record);
    records.retain(|v, _| installed.contains(v));
    // Forget the file lists of versions that are gone.
    if let Ok(entries) = std::fs::read_dir(paths.install_dir().join("files")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name
                .strip_suffix(".json")
                .is_none_or(|v| !installed.iter().any(|i| i == v))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let bytes = serde_json::to_vec_pretty(&records).unwrap_or_default();
    crate::fsutil::write_atomic(&verified_file(paths), &bytes)
}

fn files_record(paths: &Paths, version: &Version) -> PathBuf {
    paths.install_dir().join("files").join(format!("{version}.json"))
}

/// One file of an installed version, as it was when the version proved healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct InstalledFile {
    size: u64,
    sha256: String,
}

/// Whether an installed version's files are still the ones it was installed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Integrity {
    Intact,
    /// A file is missing or changed; the reason names it.
    Damaged(String),
    /// Installed before such records were kept; only `agent.json` and the backend's program could be checked.
    Unknown,
}

/// Whether installing the pending download failed because its bytes are no longer the ones verified: the
/// hash check while unpacking said so, or the archive could not be read and its hash now differs (the
/// cached archive is not fsynced, so a crash can leave it torn; unpacking then fails before its end).
fn pending_download_damaged(error: &Error, pending: &Downloaded) -> bool {
    use crate::archive::ArchiveError;
    let archive_error = match error {
        Error::Archive(e) | Error::Install(crate::install::InstallError::Archive(e)) => e,
        _ => return false,
    };
    match archive_error {
        ArchiveError::ChecksumMismatch { .. } => true,
        _ => !matches!(
            crate::verify::sha256_file(&pending.path),
            Ok(sha256) if sha256.eq_ignore_ascii_case(&pending.sha256)
        ),
    }
}

/// Whether `name` can be a file of the downloads folder: one plain name (no separators, no `:`, no control
/// characters) that is none of the folder's own files (`pending.json`, hidden files, partial downloads).
fn is_download_name(name: &str) -> bool {
    let reserved = name == "pending.json"
        || name.starts_with('.')
        || name.ends_with(".part")
        || name.ends_with(".part.json");
    !(name.is_empty()
        || name.contains(['/', '\\', '\0', ':'])
        || name.chars().any(char::is_control)
        || reserved)
}

/// A release's file list as the unpacker takes it: each regular file's size and SHA256 by path.
fn listed_files(files: &[crate::verify::ManifestFile]) -> crate::archive::ListedFiles {
    files
        .iter()
        .filter_map(|f| Some((f.path.clone(), (f.size, f.sha256.clone()?))))
        .collect()
}

/// Records every file of `version`'s folder (size and SHA256), so [`check_integrity`] can later tell a
/// damaged install from an intact one. The bundle's `models/` folder is left out: its files move to the
/// shared models folder.
pub(crate) fn record_installed_files(
    paths: &Paths,
    version: &Version,
    files: &BTreeMap<String, crate::archive::FileRecord>,
) -> Result<()> {
    let files: BTreeMap<&String, InstalledFile> = files
        .iter()
        .filter(|(path, _)| path.split('/').next() != Some(crate::models::BUNDLED_MODELS_DIR))
        .map(|(path, record)| {
            (
                path,
                InstalledFile {
                    size: record.size,
                    sha256: record.sha256.clone(),
                },
            )
        })
        .collect();
    let bytes = serde_json::to_vec(&files).unwrap_or_default();
    crate::fsutil::write_atomic(&files_record(paths, version), &bytes)
}

/// [`record_installed_files`] for a folder already in place: every file is read and hashed.
#[cfg(test)]
pub(crate) fn record_installed_tree(paths: &Paths, version: &Version) -> Result<()> {
    let root = installer(paths).version_dir(version);
    let files = crate::delta::list_tree(&root)
        .map_err(|e| Error::io("read", &root, std::io::Error::other(e.to_string())))?
        .into_iter()
        .filter_map(|f| {
            let sha256 = f.sha256?;
            Some((
                f.path,
                crate::archive::FileRecord {
                    size: f.size,
                    sha256,
                    mode: f.mode,
                },
            ))
        })
        .collect();
    record_installed_files(paths, version, &files)
}

/// What [`record_installed_files`] recorded for `version`: each regular file's path (relative to the
/// version folder, `/`-separated) with its size and SHA256.
pub(crate) fn installed_file_hashes(
    paths: &Paths,
    version: &Version,
) -> Option<BTreeMap<String, (u64, String)>> {
    let bytes = std::fs::read(files_record(paths, version)).ok()?;
    let files: BTreeMap<String, InstalledFile> = serde_json::from_slice(&bytes).ok()?;
    Some(files.into_iter().map(|(k, f)| (k, (f.size, f.sha256))).collect())
}

/// Compares `version`'s folder with what [`record_installed_files`] recorded when it was unpacked: every
/// recorded file present and, when `thorough`, with the same size and SHA256 (files the backend added
/// since are not a damage). Without a record (installed by an older launcher) only `agent.json` and the
/// backend's program can be checked: `Unknown` unless one of them is missing.
pub fn check_integrity(paths: &Paths, version: &Version, thorough: bool) -> Result<Integrity> {
    let root = installer(paths).version_dir(version);
    if !root.join(crate::install::AGENT_MANIFEST).is_file() {
        return Ok(Integrity::Damaged(format!(
            "{} is missing",
            root.join(crate::install::AGENT_MANIFEST).display()
        )));
    }
    // Whatever else is known, the backend's own program must be there.
    match AgentSpec::load(&root) {
        Ok(spec) => {
            let program = spec.resolve(&root, 0, paths).program;
            if !program.is_file() {
                return Ok(Integrity::Damaged(format!("{} is missing", program.display())));
            }
        }
        Err(e) => return Ok(Integrity::Damaged(e.to_string())),
    }
    let Some(text) = crate::fsutil::read_optional(&files_record(paths, version))? else {
        return Ok(Integrity::Unknown);
    };
    let Ok(files) = serde_json::from_str::<BTreeMap<String, InstalledFile>>(&text) else {
        return Ok(Integrity::Unknown);
    };
    for (rel, expected) in &files {
        let path = root.join(rel);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(_) => return Ok(Integrity::Damaged(format!("{} is missing", path.display()))),
        };
        // The cheap check only asks for presence: a backend may rewrite a shipped file (its working folder
        // is the bundle) and must not trigger a repair at every plain `update install`.
        let changed = thorough
            && (meta.len() != expected.size || crate::verify::sha256_file(&path)? != expected.sha256);
        if changed {
            return Ok(Integrity::Damaged(format!(
                "{} was changed since it was installed",
                path.display()
            )));
        }
    }
    Ok(Integrity::Intact)
}

/// What `update status` reports; its JSON form is a contract.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub current_version: Option<String>,
    /// Newest first.
    pub installed_versions: Vec<String>,
    /// The default rollback target.
    pub previous_version: Option<String>,
    /// Whether the current version was verified by a signature from the pinned key.
    pub signed: bool,
    /// How the current version was verified, when this launcher installed it.
    pub verification: Option<VerificationRecord>,
    /// Whether a public key is pinned (built in or configured): then unsigned releases are refused.
    pub public_key_pinned: bool,
    pub channel: Channel,
    pub auto_check: bool,
    pub auto_download: bool,
    pub auto_install: bool,
    pub backup_count: u32,
    pub check_interval_hours: f64,
    /// Closing the window leaves the agent running under a background launcher.
    #[serde(default)]
    pub keep_backend_running: bool,
    pub skip_versions: Vec<String>,
    pub failed_versions: Vec<String>,
    pub last_check: Option<DateTime<Utc>>,
    /// Where updates come from.
    pub source: Option<String>,
    pub platform: String,
    pub launcher_version: String,
    /// The launcher itself: where it runs, whether it may replace itself there, its last replacement.
    #[serde(default)]
    pub launcher: Option<crate::selfupdate::LauncherStatus>,
    /// A verified download waiting to be installed.
    pub pending_download: Option<Downloaded>,
    /// Bytes the downloads folder holds (pending and partial downloads).
    pub downloads_bytes: u64,
    /// A setting in the file that could not be read and stops updating until fixed (the full message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings_problem: Option<String>,
    /// An install that was interrupted and not yet recovered.
    pub interrupted_operation: Option<Journal>,
    pub home: StatusPaths,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusPaths {
    pub config_file: PathBuf,
    pub data_dir: PathBuf,
    pub portable: bool,
}

/// Gathers the status without touching the network.
pub fn status(paths: &Paths, config: &Config) -> Result<Status> {
    let installer = installer(paths);
    let current = installer.current_version()?;
    let records = verification_records(paths);
    let verification = current
        .as_ref()
        .and_then(|v| records.get(&v.to_string()).cloned());
    Ok(Status {
        current_version: current.as_ref().map(Version::to_string),
        installed_versions: installer
            .installed_versions()?
            .iter()
            .map(Version::to_string)
            .collect(),
        previous_version: installer.previous_version()?.as_ref().map(Version::to_string),
        signed: verification.as_ref().is_some_and(|r| r.signed),
        verification,
        public_key_pinned: match &config.problem {
            // The file's key could not be read: say pinned, since updating is refused anyway.
            Some(p) if p.field == "public_key" || p.field == "the file" => true,
            _ => crate::verify::pinned_key(config)?.is_some(),
        },
        channel: config.update_channel,
        auto_check: config.auto_check,
        auto_download: config.auto_download,
        auto_install: config.auto_install,
        backup_count: config.backup_count,
        check_interval_hours: config.check_interval_hours,
        keep_backend_running: config.keep_backend_running,
        skip_versions: config.skip_versions.clone(),
        failed_versions: config.failed_versions.clone(),
        last_check: config.last_check,
        source: config
            .feed
            .as_ref()
            .map(|f| format!("feed {f}"))
            .or_else(|| config.repository().map(|r| format!("GitHub repository {r}"))),
        platform: Platform::current().to_string(),
        launcher_version: crate::launcher_version().to_owned(),
        launcher: Some(crate::selfupdate::status(paths)),
        pending_download: pending_download(paths),
        downloads_bytes: downloads_bytes(paths),
        settings_problem: config.ensure_readable().err().map(|e| e.to_string()),
        interrupted_operation: installer.interrupted_operation()?,
        home: StatusPaths {
            config_file: paths.config_file(),
            data_dir: paths.data_dir.clone(),
            portable: paths.portable,
        },
    })
}

impl Status {
    /// The text form of `update status`.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let current = self.current_version.as_deref().unwrap_or("nothing installed");
        out.push_str(&format!("Installed: {current}"));
        if self.current_version.is_some() {
            out.push_str(if self.signed {
                " (signature verified)"
            } else {
                " (unsigned: checksums only)"
            });
        }
        out.push('\n');
        let kept: Vec<&str> = self
            .installed_versions
            .iter()
            .map(String::as_str)
            .filter(|v| Some(*v) != self.current_version.as_deref())
            .collect();
        if !kept.is_empty() {
            out.push_str(&format!("Kept for rollback: {}\n", kept.join(", ")));
        }
        if let Some(problem) = &self.settings_problem {
            out.push_str(&format!("Updates stopped: {problem}\n"));
        }
        if let Some(p) = &self.pending_download {
            out.push_str(&format!(
                "Downloaded, ready to install: {} ({})\n",
                p.version, p.asset
            ));
        }
        if self.downloads_bytes > 0 {
            out.push_str(&format!(
                "Downloads folder: {}\n",
                crate::models::human_bytes(self.downloads_bytes)
            ));
        }
        if let Some(j) = &self.interrupted_operation {
            out.push_str(&format!(
                "Interrupted: {:?} of {} (from {}) stopped at step {:?} by pid {}; it is finished or undone at the next update command\n",
                j.operation,
                j.to,
                j.from.as_ref().map(Version::to_string).unwrap_or_else(|| "nothing".into()),
                j.step,
                j.pid
            ));
        }
        out.push_str(&format!(
            "Channel: {}   automatic check/download/install: {}/{}/{}   every {} h\n",
            self.channel,
            on_off(self.auto_check),
            on_off(self.auto_download),
            on_off(self.auto_install),
            self.check_interval_hours
        ));
        if let Some(last) = self.last_check {
            out.push_str(&format!(
                "Last check: {}\n",
                last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        if !self.skip_versions.is_empty() {
            out.push_str(&format!("Skipped: {}\n", self.skip_versions.join(", ")));
        }
        if !self.failed_versions.is_empty() {
            out.push_str(&format!(
                "Failed health check (not offered again): {}\n",
                self.failed_versions.join(", ")
            ));
        }
        if let Some(launcher) = &self.launcher {
            out.push_str(&launcher.human());
        }
        out.push_str(&format!(
            "Updates from: {}\nPublic key pinned: {}\nSettings: {}\n",
            self.source
                .as_deref()
                .unwrap_or("not configured (set GITHUB_REPO)"),
            if self.public_key_pinned { "yes" } else { "no" },
            self.home.config_file.display()
        ));
        out
    }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// What an update reports while it runs (the CLI draws a progress bar from it, the window a progress view).
#[derive(Clone, Debug)]
pub enum UpdateEvent {
    Download(DownloadEvent),
    /// The expected hash was found, and how trustworthy it is.
    Verified {
        verified_by: String,
        signed: bool,
    },
    /// A download from an earlier run is complete and still matches its hash.
    ReusingDownload {
        path: PathBuf,
    },
    Installing {
        version: Version,
    },
    StoppingBackend,
    StartingBackend {
        version: Version,
    },
    /// The new backend answered its health check; the update is committed.
    Healthy {
        version: Version,
        downtime: Duration,
        time_to_healthy: Duration,
    },
    RollingBack {
        from: Version,
        to: Option<Version>,
        reason: String,
    },
}

/// What `update install` did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstallReport {
    /// The version current before.
    pub previous_version: Option<String>,
    /// The version installed (current now).
    pub installed_version: String,
    pub asset: String,
    pub sha256: String,
    pub signed: bool,
    pub verified_by: String,
    /// From the old backend stopped (or the install started, when none ran) to the new one healthy.
    pub downtime_ms: u64,
    /// From the new backend's spawn to its first healthy answer.
    pub time_to_healthy_ms: u64,
    /// Whether the backend was left running (it is when it was running before).
    pub backend_running: bool,
    /// Versions removed to keep `backup_count` backups.
    pub pruned: Vec<String>,
    /// What became of the launcher when the bundle carried a newer one (`selfupdate`); `null` when
    /// nothing was to do.
    #[serde(default)]
    pub launcher: Option<crate::selfupdate::LauncherOutcome>,
    /// How the new version was fetched: a delta from the previous one or the full archive, its bytes, and
    /// why a delta was not used when the release had one.
    #[serde(default)]
    pub delivery: Option<crate::check::Delivery>,
}

/// Runs the new backend and says whether it is healthy; also stops and restores the running one.
///
/// The updater calls, in order: `stop_running` (after the new version is staged and switched, so the old
/// one runs for as long as possible), `prove_healthy` with the new bundle, then `keep` on success or
/// `restore` with the bundle rolled back to on failure.
pub trait HealthGate {
    /// Stops the backend if one runs; remembers whether it did.
    fn stop_running(&mut self) -> Result<()>;
    /// Starts the backend of `bundle_dir` and waits for its first healthy answer: the time it took, or why not.
    fn prove_healthy(&mut self, bundle_dir: &Path) -> std::result::Result<Duration, String>;
    /// The new backend is healthy: leave it running if a backend ran before, else stop it. Returns whether
    /// it runs.
    fn keep(&mut self) -> bool;
    /// The new backend failed: start the backend of `bundle_dir` (the version rolled back to) if one ran
    /// before. Returns whether it runs.
    fn restore(&mut self, bundle_dir: Option<&Path>) -> bool;
}

/// The health gate that uses a [`Supervisor`]: the headless runner's, and the CLI's when no other launcher
/// supervises the backend.
pub struct SupervisorGate<'a> {
    supervisor: &'a Supervisor,
    paths: &'a Paths,
    was_running: bool,
}

impl<'a> SupervisorGate<'a> {
    pub fn new(supervisor: &'a Supervisor, paths: &'a Paths) -> Self {
        SupervisorGate {
            supervisor,
            paths,
            was_running: false,
        }
    }
}

/// Resolves how to launch the backend of a bundle, with a fresh loopback port. Called right before a
/// backend starts, when none runs: it first puts the models this version's manifest names in place
/// (adopting what its bundle carries, bringing back what the store keeps for it; see
/// `models::prepare_models_for`), so every version runs with its own models, a rolled-back one included.
pub fn launch_plan(bundle_dir: &Path, paths: &Paths) -> Result<(crate::agent::LaunchPlan, Duration)> {
    prepare_models(bundle_dir, paths);
    let spec = AgentSpec::load(bundle_dir)?;
    let port = crate::supervisor::free_loopback_port()
        .map_err(|e| Error::io("find a free port on", "127.0.0.1", e))?;
    let mut plan = spec.resolve(bundle_dir, port, paths);
    // An installed bundle lives in `versions/<version>/`: that is the version users know it by.
    if let Some(v) = bundle_dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| Version::parse(n).ok())
    {
        plan.version = Some(v.to_string());
    }
    let timeout = plan.ready_timeout;
    Ok((plan, timeout))
}

impl HealthGate for SupervisorGate<'_> {
    fn stop_running(&mut self) -> Result<()> {
        self.was_running = self.supervisor.is_wanted_running();
        if self.was_running {
            self.supervisor.stop()?;
        }
        Ok(())
    }

    fn prove_healthy(&mut self, bundle_dir: &Path) -> std::result::Result<Duration, String> {
        let (plan, timeout) = launch_plan(bundle_dir, self.paths).map_err(|e| e.to_string())?;
        self.supervisor
            .start_and_wait(plan, timeout)
            .map_err(|e| e.to_string())
    }

    fn keep(&mut self) -> bool {
        if !self.was_running {
            let _ = self.supervisor.stop();
        }
        self.was_running
    }

    fn restore(&mut self, bundle_dir: Option<&Path>) -> bool {
        let _ = self.supervisor.stop();
        let (true, Some(dir)) = (self.was_running, bundle_dir) else {
            return false;
        };
        match launch_plan(dir, self.paths) {
            Ok((plan, timeout)) => match self.supervisor.start_and_wait(plan, timeout) {
                Ok(_) => true,
                Err(e) => {
                    tracing::error!("the version rolled back to did not become healthy either: {e}");
                    false
                }
            },
            Err(e) => {
                tracing::error!("cannot start the version rolled back to: {e}");
                false
            }
        }
    }
}

/// An install whose backend has not yet proved healthy (`install/unproven.json`). Written before the switch
/// and removed on commit or rollback: if the launcher dies in between, the next update command proves the
/// current version healthy or rolls it back, so an unproven version never stays by accident. It carries
/// what the rest of the install needs, so a recovery that proves the version healthy finishes it as the
/// install would have ([`finish_healthy`]): how the release was verified, and the launcher step.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Unproven {
    version: Version,
    previous: Option<Version>,
    /// How the release was verified (recorded once it proved healthy).
    #[serde(default)]
    verification: Option<VerificationRecord>,
    /// The launcher the bundle carries, as `selfupdate::prepare` left it (added right after it ran).
    #[serde(default)]
    launcher: Option<crate::selfupdate::PreparedRecord>,
}

fn unproven_file(paths: &Paths) -> PathBuf {
    paths.install_dir().join("unproven.json")
}

/// Ties a release source, the verification policy and the installer together.
pub struct Updater {
    paths: Paths,
    config: Config,
    source: Box<dyn ReleaseSource>,
    client: Client,
    platform: Platform,
    key: Option<PublicKey>,
    retry: RetryPolicy,
    /// Never use a delta (`update install --full`).
    full_only: bool,
}

/// A delta the updater can use: the installed base is the delta's base and its recorded files are there.
struct DeltaPlan {
    base: Version,
    delta: crate::verify::ManifestDelta,
    asset: Asset,
    base_files: BTreeMap<String, (u64, String)>,
}

/// How an install attempt from a delta ended, when it did not install.
enum DeltaFailure {
    /// Nothing changed: the full archive is used instead, for this reason.
    Fallback(String),
    /// A result that stands (cancelled, another update running, or the new backend failed its health
    /// check after the switch and was rolled back).
    Final(Error),
}

/// Where an install failed: before the switch (nothing changed) or after it.
enum Failed {
    BeforeSwitch(Error),
    After(Error),
}

impl Failed {
    fn into_error(self) -> Error {
        match self {
            Failed::BeforeSwitch(e) | Failed::After(e) => e,
        }
    }
}

impl Updater {
    /// An updater for the settings' source, reading the environment for GitHub settings.
    pub fn new(paths: &Paths, config: &Config) -> Result<Self> {
        let source = crate::check::source_from_config(config, paths, &|k| std::env::var(k).ok())?;
        Self::with_source(paths, config, source)
    }

    /// An updater over any source (tests, feeds).
    pub fn with_source(paths: &Paths, config: &Config, source: Box<dyn ReleaseSource>) -> Result<Self> {
        config.ensure_readable()?;
        Ok(Updater {
            paths: paths.clone(),
            config: config.clone(),
            source,
            client: crate::http::client()?,
            platform: Platform::current(),
            key: crate::verify::pinned_key(config)?,
            retry: RetryPolicy::default(),
            full_only: false,
        })
    }

    /// Always download the full archive, even when the release publishes a delta from the installed
    /// version (`update install --full`).
    pub fn full_archive_only(mut self, full_only: bool) -> Self {
        self.full_only = full_only;
        self
    }

    /// Chooses assets for another platform (downloads only; installing needs this machine's).
    pub fn for_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn source(&self) -> &dyn ReleaseSource {
        &*self.source
    }

    fn installer(&self) -> Installer {
        installer(&self.paths)
    }

    fn request(&self, channel: Option<Channel>) -> Result<CheckRequest> {
        Ok(CheckRequest {
            channel: channel.unwrap_or(self.config.update_channel),
            platform: self.platform,
            current: self.installer().current_version()?,
            skip_versions: self.config.skip_versions.clone(),
            failed_versions: self.config.failed_versions.clone(),
        })
    }

    /// Checks for an update and records `last_check`.
    pub fn check(&self, channel: Option<Channel>) -> Result<CheckReport> {
        let mut report = crate::check::check(&*self.source, &self.request(channel)?)?;
        if let (Some(release), Some(asset)) = (report.release.clone(), report.offered_asset().cloned()) {
            report.delivery = Some(self.delivery(&release, &asset));
        }
        let recorded = Config::update(&self.paths.config_file(), |file| {
            file.last_check = Some(report.checked_at);
            Ok(())
        });
        if let Err(e) = recorded {
            tracing::warn!("could not record the check time: {e}");
        }
        Ok(report)
    }

    /// The release notes since the installed version.
    pub fn changelog(&self, channel: Option<Channel>) -> Result<Vec<crate::check::ChangelogEntry>> {
        crate::check::changelog(&*self.source, &self.request(channel)?)
    }

    /// The release and asset to install: `version` exactly (any version, even skipped or failed: an explicit
    /// choice), or else the update a check offers. `Ok(None)`: already up to date.
    pub fn target(&self, version: Option<&Version>) -> Result<Option<(Release, Asset)>> {
        match version {
            Some(wanted) => {
                let fetched = self.source.releases()?;
                let release = fetched
                    .releases
                    .into_iter()
                    .find(|r| &r.version == wanted)
                    .ok_or_else(|| Error::ReleaseNotFound {
                        what: format!("version {wanted} in {}", self.source.describe()),
                    })?;
                let asset = crate::platform::require_asset(&release, &self.platform)?.clone();
                Ok(Some((release, asset)))
            }
            None => {
                let report = self.check(None)?;
                let asset = report.offered_asset().cloned();
                Ok(report.release.zip(asset))
            }
        }
    }

    /// How `asset` of `release` would be fetched now (`update check --json`'s `delivery`): the manifest is
    /// fetched and verified as an install would; a failure to do so is reported as the full archive with
    /// the reason, since the install will say more.
    pub fn delivery(&self, release: &Release, asset: &Asset) -> crate::check::Delivery {
        let full = |reason: Option<String>| crate::check::Delivery {
            method: "full".into(),
            bytes: asset.size,
            full_bytes: asset.size,
            base: None,
            reason,
        };
        // Deltas are listed only in the manifest: no checksum file is fetched for this.
        if release.asset(crate::verify::MANIFEST_FILE).is_none() {
            return full(None);
        }
        let verified = match self.material_with(release, asset, false).and_then(|m| {
            Ok(crate::verify::expected_sha256(
                asset,
                &release.version,
                &m,
                self.key.as_ref(),
            )?)
        }) {
            Ok(verified) => verified,
            // Without a key, checksum files may still vouch for the archive: the install decides.
            Err(_) if self.key.is_none() => return full(None),
            Err(e) => return full(Some(format!("the release could not be verified: {e}"))),
        };
        match self.delta_plan(release, &verified) {
            Ok(plan) => crate::check::Delivery {
                method: "delta".into(),
                bytes: plan.delta.size,
                full_bytes: verified.size.unwrap_or(asset.size),
                base: Some(plan.base.to_string()),
                reason: None,
            },
            Err(reason) => crate::check::Delivery {
                bytes: verified.size.unwrap_or(asset.size),
                full_bytes: verified.size.unwrap_or(asset.size),
                ..full(reason)
            },
        }
    }

    /// The delta to use for this release, or why none (`Err(None)`: the release publishes none that could
    /// apply, which needs no explanation).
    fn delta_plan(
        &self,
        release: &Release,
        verified: &crate::verify::Verified,
    ) -> std::result::Result<DeltaPlan, Option<String>> {
        if self.full_only {
            return Err(Some("the full archive was asked for".into()));
        }
        let entry = verified.entry.as_ref().ok_or(None)?;
        if entry.deltas.is_empty() {
            return Err(None);
        }
        let installer = self.installer();
        let current = installer.current_version().ok().flatten().ok_or(None)?;
        if current == release.version {
            return Err(None);
        }
        let Some(delta) = entry.deltas.iter().find(|d| d.base == current) else {
            let bases: Vec<String> = entry.deltas.iter().map(|d| d.base.to_string()).collect();
            return Err(Some(format!(
                "the release has deltas from {} only, and {current} is installed",
                bases.join(", ")
            )));
        };
        if delta.size >= entry.size {
            return Err(Some(format!(
                "the delta from {current} ({} bytes) is no smaller than the full archive ({} bytes)",
                delta.size, entry.size
            )));
        }
        match &entry.file_list {
            None => {
                return Err(Some(
                    "the release lists no files to check a delta's result against".into(),
                ));
            }
            Some(list) if release.asset(&list.name).is_none() => {
                return Err(Some(format!(
                    "the release does not publish its file list {}",
                    list.name
                )));
            }
            Some(_) => {}
        }
        if !is_download_name(&delta.name) {
            return Err(Some(format!(
                "the delta's name `{}` is not a plain file name",
                delta.name
            )));
        }
        let Some(asset) = release.asset(&delta.name) else {
            return Err(Some(format!(
                "the release does not publish the delta file {}",
                delta.name
            )));
        };
        if asset.size != 0 && asset.size != delta.size {
            return Err(Some(format!(
                "the release publishes {} with {} bytes, not the {} its manifest lists",
                delta.name, asset.size, delta.size
            )));
        }
        let Some(base_files) = installed_file_hashes(&self.paths, &current) else {
            return Err(Some(format!(
                "there is no readable record of the files of {current} (an older launcher installed it, or the record is damaged), so a delta cannot be checked against it"
            )));
        };
        // A cheap look before any byte is fetched; every byte used is hashed while the delta is applied.
        let root = installer.version_dir(&current);
        for (path, (size, _)) in &base_files {
            let here = root.join(path);
            match std::fs::symlink_metadata(&here) {
                Ok(meta) if meta.is_file() && meta.len() == *size => {}
                _ => {
                    return Err(Some(format!(
                        "the installed {} is missing or changed since {current} was installed",
                        here.display()
                    )));
                }
            }
        }
        Ok(DeltaPlan {
            base: current,
            delta: delta.clone(),
            asset: asset.clone(),
            base_files,
        })
    }

    /// The file list the manifest entry `verified` came from names, fetched and checked against the hash
    /// the manifest gives for it: `Ok(None)` when the release publishes none (made before file lists), and
    /// the reason when it cannot be had (missing, damaged, not matching), which only costs the delta and
    /// the listed hashes, never the install.
    fn fetch_file_list(
        &self,
        release: &Release,
        verified: &crate::verify::Verified,
        cancel: &CancelToken,
    ) -> std::result::Result<Option<Vec<crate::verify::ManifestFile>>, String> {
        let Some(list) = verified.entry.as_ref().and_then(|e| e.file_list.as_ref()) else {
            return Ok(None);
        };
        let Some(asset) = release.asset(&list.name) else {
            return Err(format!(
                "the release does not publish its file list {}",
                list.name
            ));
        };
        let limit = list.size.min(crate::verify::FILE_LIST_LIMIT);
        // A passing network failure is retried (twice, after 1 and 2 s): on a flaky line, losing the
        // list would cost the delta and mean the full download.
        let mut attempt = 0;
        let fetched = loop {
            match self.source.fetch_asset_small(asset, limit) {
                Err(e @ (Error::Network { .. } | Error::Http { .. }))
                    if attempt < 2
                        && !cancel.is_cancelled()
                        && !matches!(&e, Error::Http { status, .. } if *status < 500) =>
                {
                    attempt += 1;
                    tracing::info!(error = %e, attempt, "fetching the file list failed; trying again");
                    std::thread::sleep(Duration::from_secs(attempt));
                }
                other => break other,
            }
        };
        let bytes = fetched
            .map_err(|e| format!("its file list could not be fetched: {e}"))?
            .ok_or_else(|| format!("its file list {} is not there", list.name))?;
        let sha256 = crate::verify::sha256_hex(&bytes);
        if bytes.len() as u64 != list.size || !sha256.eq_ignore_ascii_case(&list.sha256) {
            return Err(format!(
                "its file list {} is not the one the manifest vouches for ({} bytes, SHA256 {sha256})",
                list.name,
                bytes.len()
            ));
        }
        crate::verify::FileList::parse(&bytes, &list.name, &release.version, &self.platform)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Fetches what vouches for `asset`: the release manifest and its signature, and checksum files.
    fn material(&self, release: &Release, asset: &Asset) -> Result<VerificationMaterial> {
        self.material_with(release, asset, true)
    }

    /// [`Updater::material`], with or without the checksum files.
    fn material_with(
        &self,
        release: &Release,
        asset: &Asset,
        checksum_files: bool,
    ) -> Result<VerificationMaterial> {
        // A manifest carries every file's record for each platform (see `docs/RELEASE-FORMAT.md`), so it
        // may be a few MiB; `release pack` refuses to write one larger than this.
        const MANIFEST_LIMIT: u64 = crate::verify::MANIFEST_LIMIT;
        const LIMIT: u64 = 4 << 20;
        let mut material = VerificationMaterial::default();
        if let Some(manifest) = release.asset(crate::verify::MANIFEST_FILE)
            && let Some(bytes) = self.source.fetch_asset_small(manifest, MANIFEST_LIMIT)?
        {
            let signature = match release.asset(crate::verify::MANIFEST_SIGNATURE_FILE) {
                Some(sig) => self
                    .source
                    .fetch_asset_small(sig, LIMIT)?
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                None => None,
            };
            material.manifest = Some((bytes, signature));
        }
        // With a key pinned only the signed manifest counts: no checksum file is fetched at all. Otherwise
        // only files that can vouch for this asset, and a handful at most: a hostile listing naming
        // thousands of them must not make the launcher fetch (and hold) them all.
        const MAX_CHECKSUM_FILES: usize = 8;
        if self.key.is_none() && checksum_files {
            let platform = self.platform.to_string();
            let mut candidates: Vec<(u8, bool, &Asset)> = release
                .assets
                .iter()
                .filter_map(|c| {
                    crate::verify::checksum_file_applies(&c.name, &asset.name)
                        .map(|rank| (rank, !c.name.contains(&platform), c))
                })
                .collect();
            candidates.sort_by(|a, b| (a.0, a.1, &a.2.name).cmp(&(b.0, b.1, &b.2.name)));
            for (_, _, candidate) in candidates.into_iter().take(MAX_CHECKSUM_FILES) {
                if let Some(bytes) = self.source.fetch_asset_small(candidate, LIMIT)? {
                    material.checksum_files.push((
                        candidate.name.clone(),
                        String::from_utf8_lossy(&bytes).into_owned(),
                    ));
                }
            }
        }
        Ok(material)
    }

    /// Downloads and verifies `asset` of `release` into the downloads folder, resuming a partial download;
    /// reuses a finished one that still matches. The result is recorded as the pending download. The
    /// release is treated as offered by a check: a signed manifest signed before one already seen for an
    /// equal or higher version is refused as a replay (see [`Updater::download_explicit`] for a version the
    /// user named).
    pub fn download(
        &self,
        release: &Release,
        asset: &Asset,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<Downloaded> {
        self.fetch_verified(release, asset, false, cancel, on_event)
    }

    /// [`Updater::download`] of a version the user named (`--version V`): an older signed manifest is then
    /// an explicit choice, not a replay. Signature and channel are checked all the same.
    pub fn download_explicit(
        &self,
        release: &Release,
        asset: &Asset,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<Downloaded> {
        self.fetch_verified(release, asset, true, cancel, on_event)
    }

    /// The channel, replay and origin rules a verified hash must pass before any byte is fetched.
    fn check_trust(
        &self,
        release: &Release,
        verified: &crate::verify::Verified,
        explicit: bool,
    ) -> Result<()> {
        let channel = self.config.update_channel;
        if let Some(published_for) = verified.channel
            && !channel.includes(published_for)
        {
            return Err(Error::WrongChannel {
                version: release.version.to_string(),
                manifest_channel: published_for,
                channel,
            });
        }
        if verified.signed
            && !explicit
            && let (Some(manifest_channel), Some(published_at)) = (verified.channel, verified.published_at)
            && let Some(seen) = newest_signed(&self.paths).get(manifest_channel.as_str())
            && let Some(newer) = replayed_by(&release.version, published_at, seen)
        {
            return Err(Error::ReplayedManifest {
                version: release.version.to_string(),
                published_at,
                newest_version: newer.version.to_string(),
                newest_published_at: newer.published_at,
            });
        }
        Ok(())
    }

    fn fetch_verified(
        &self,
        release: &Release,
        asset: &Asset,
        explicit: bool,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<Downloaded> {
        let verified = self.verify_release(release, asset, explicit, on_event)?;
        self.download_verified(release, asset, verified, cancel, on_event)
    }

    /// The expected hash of `asset` and how it is vouched for, after the trust rules (see
    /// [`Updater::check_trust`]); records the newest signed manifest seen.
    fn verify_release(
        &self,
        release: &Release,
        asset: &Asset,
        explicit: bool,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<crate::verify::Verified> {
        let material = self.material(release, asset)?;
        let verified = crate::verify::expected_sha256(asset, &release.version, &material, self.key.as_ref())?;
        self.check_trust(release, &verified, explicit)?;
        if verified.signed
            && let (Some(channel), Some(published_at)) = (verified.channel, verified.published_at)
            && let Err(e) = record_newest_signed(
                &self.paths,
                channel,
                SeenManifest {
                    version: release.version.clone(),
                    published_at,
                },
            )
        {
            tracing::warn!("could not record the newest signed release seen: {e}");
        }
        on_event(UpdateEvent::Verified {
            verified_by: verified.source.to_string(),
            signed: verified.signed,
        });
        Ok(verified)
    }

    /// Downloads `asset` (or reuses a finished download that matches) into the downloads folder and
    /// records it as the pending download.
    fn download_verified(
        &self,
        release: &Release,
        asset: &Asset,
        verified: crate::verify::Verified,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<Downloaded> {
        // The name becomes a path in the downloads folder; an unsigned listing could name anything.
        if !is_download_name(&asset.name) {
            return Err(Error::InvalidResponse {
                url: asset.url.clone(),
                reason: format!("the asset name `{}` is not a plain file name", asset.name),
            });
        }
        let dest = self.paths.downloads_dir().join(&asset.name);
        crate::paths::ensure_dir(&self.paths.downloads_dir())?;
        let expected_size = verified.size.or((asset.size > 0).then_some(asset.size));
        let outcome = if dest.is_file() && crate::verify::check_file_sha256(&dest, &verified.sha256).is_ok() {
            on_event(UpdateEvent::ReusingDownload { path: dest.clone() });
            let size = std::fs::metadata(&dest)
                .map_err(|e| Error::io("read", &dest, e))?
                .len();
            (dest, size)
        } else if let Some(local) = self.source.local_file(asset)? {
            copy_verified(&local, &dest, &verified.sha256, expected_size)?
        } else {
            let target = self.source.download_target(asset);
            check_download_url(&target.url)?;
            let request = DownloadRequest {
                url: target.url,
                dest: dest.clone(),
                expected_size,
                expected_sha256: Some(verified.sha256.clone()),
                auth_token: target.token,
                accept: target.accept,
                // Hashed again as it is unpacked; an fsync would write it to disk once more for nothing.
                cache_only: true,
            };
            let done = crate::download::download(&self.client, &request, &self.retry, cancel, &mut |e| {
                on_event(UpdateEvent::Download(e))
            })?;
            (done.path, done.size)
        };
        let downloaded = Downloaded {
            version: release.version.clone(),
            asset: asset.name.clone(),
            path: outcome.0,
            size: outcome.1,
            sha256: verified.sha256,
            signed: verified.signed,
            verified_by: verified.source.to_string(),
            source: self.source.describe(),
            key_id: verified.key_id.clone(),
            public_key: self
                .key
                .as_ref()
                .filter(|_| verified.signed)
                .map(|k| k.to_base64()),
            manifest_channel: verified.channel,
        };
        record_pending(&self.paths, &downloaded)?;
        tidy_downloads(&self.paths, Some(&downloaded.path));
        Ok(downloaded)
    }

    /// Installs `version` (or the offered update), proves its backend healthy through `gate`, and commits;
    /// rolls back and records the version as failed when the backend is not healthy. `Ok(None)`: already
    /// up to date.
    pub fn install(
        &self,
        version: Option<&Version>,
        gate: &mut dyn HealthGate,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<Option<InstallReport>> {
        let installer = self.installer();
        let lock = installer.lock()?;
        self.recover_locked(&installer, &lock, gate)?;
        let current = installer.current_version()?;
        // The current version named again is a no-op when it is intact (nothing is downloaded) and a repair
        // when it is damaged, which is what the "reinstall" advice of the supervisor and agent.json means.
        // An explicit `--version V` of the current version hashes every file, and repairs what it cannot
        // vouch for (no record: installed by an older launcher); a plain `update install` only checks that
        // every file is there with its size, cheaply, so it can follow the supervisor's "reinstall" advice.
        let damaged = |v: &Version, thorough: bool| -> Result<Option<String>> {
            Ok(match check_integrity(&self.paths, v, thorough)? {
                Integrity::Damaged(reason) => Some(reason),
                Integrity::Unknown if thorough => Some(format!(
                    "{v} was installed by an older launcher that kept no list of its files, so it cannot be checked"
                )),
                Integrity::Intact | Integrity::Unknown => None,
            })
        };
        let (target, repair) = match (version, &current) {
            (Some(wanted), Some(current)) if wanted == current => match damaged(current, true)? {
                None => return Ok(None),
                Some(reason) => {
                    tracing::warn!(%current, %reason, "reinstalling the current version");
                    (self.target(Some(current))?, true)
                }
            },
            (Some(_), _) => (self.target(version)?, false),
            (None, _) => match (self.target(None)?, &current) {
                (Some(found), _) => (Some(found), false),
                (None, Some(current)) => match damaged(current, false)? {
                    None => (None, false),
                    Some(reason) => {
                        tracing::warn!(%current, %reason, "no update, but the current version is damaged; reinstalling it");
                        (self.target(Some(current))?, true)
                    }
                },
                (None, None) => (None, false),
            },
        };
        let Some((release, asset)) = target else {
            return Ok(None);
        };
        let explicit = version.is_some() || repair;
        self.install_locked(
            &installer, &lock, &release, &asset, explicit, gate, cancel, on_event,
        )
        .map(Some)
    }

    /// Installs `asset` of a release already found by a check (the headless runner's and the window's path:
    /// no second look-up), gated on health like [`Updater::install`].
    pub fn install_release(
        &self,
        release: &Release,
        asset: &Asset,
        gate: &mut dyn HealthGate,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<InstallReport> {
        let installer = self.installer();
        let lock = installer.lock()?;
        self.recover_locked(&installer, &lock, gate)?;
        self.install_locked(&installer, &lock, release, asset, false, gate, cancel, on_event)
    }

    #[allow(clippy::too_many_arguments)]
    fn install_locked(
        &self,
        installer: &Installer,
        lock: &InstallLock,
        release: &Release,
        asset: &Asset,
        explicit: bool,
        gate: &mut dyn HealthGate,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<InstallReport> {
        // A pending download is reused only under the trust policy in force now: the same source, the
        // same pinned key (if any), a channel this client takes. Otherwise it is verified afresh.
        // The pending download's hash is checked as it is unpacked, not before: the file is read once.
        let source = self.source.describe();
        let reuse = pending_download(&self.paths)
            .filter(|p| p.version == release.version && p.asset == asset.name)
            .filter(|p| p.still_trusted(&source, self.key.as_ref(), self.config.update_channel))
            .filter(|p| p.path.is_file());
        if let Some(pending) = reuse {
            on_event(UpdateEvent::ReusingDownload {
                path: pending.path.clone(),
            });
            match self.install_downloaded(installer, lock, &pending, None, gate, on_event) {
                Err(e) if pending_download_damaged(&e, &pending) => {
                    tracing::warn!(path = %pending.path.display(), error = %e, "the pending download changed since it was verified; downloading it again");
                    let _ = std::fs::remove_file(&pending.path);
                    clear_pending(&self.paths, Some(&pending.version));
                }
                other => return other,
            }
        }
        let verified = self.verify_release(release, asset, explicit, on_event)?;
        // The file list (vouched for by the manifest) serves the delta (what its result must be) and the full archive (hashes
        // it need not compute twice); without it a delta cannot be checked, and the archive is hashed file
        // by file as before.
        // A reinstall of the current version (a repair) hashes every file itself: its record is then the
        // bytes' own, whatever the list says.
        let repair = installer.current_version().ok().flatten().as_ref() == Some(&release.version);
        let files = if repair {
            Ok(None)
        } else {
            self.fetch_file_list(release, &verified, cancel)
        };
        if let Err(reason) = &files {
            tracing::warn!(%reason, "the release's file list cannot be used");
        }
        let mut fallback = None;
        match (self.delta_plan(release, &verified), &files) {
            (Ok(plan), Ok(Some(files))) => {
                match self.install_delta(
                    installer, lock, release, &verified, &plan, files, gate, cancel, on_event,
                ) {
                    Ok(report) => return Ok(report),
                    Err(DeltaFailure::Final(e)) => return Err(e),
                    Err(DeltaFailure::Fallback(reason)) => {
                        tracing::warn!(base = %plan.base, %reason, "the delta update was not used; downloading the full archive");
                        fallback = Some(reason);
                    }
                }
            }
            (Ok(_), Err(reason)) => fallback = Some(reason.clone()),
            (Ok(_), Ok(None)) => {}
            (Err(Some(reason)), _) if !self.full_only => {
                tracing::info!(%reason, "no delta update; downloading the full archive");
            }
            (Err(_), _) => {}
        }
        let listed = files.ok().flatten().map(|f| listed_files(&f));
        let downloaded = self.download_verified(release, asset, verified, cancel, on_event)?;
        let mut report =
            self.install_downloaded(installer, lock, &downloaded, listed.as_ref(), gate, on_event)?;
        if let (Some(delivery), Some(reason)) = (report.delivery.as_mut(), fallback) {
            delivery.reason = Some(reason);
        }
        Ok(report)
    }

    /// Downloads the planned delta and builds the new version from it and the installed base; see
    /// [`DeltaFailure`] for what a failure means.
    #[allow(clippy::too_many_arguments)]
    fn install_delta(
        &self,
        installer: &Installer,
        lock: &InstallLock,
        release: &Release,
        verified: &crate::verify::Verified,
        plan: &DeltaPlan,
        files: &[crate::verify::ManifestFile],
        gate: &mut dyn HealthGate,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> std::result::Result<InstallReport, DeltaFailure> {
        let dest = self.paths.downloads_dir().join(&plan.delta.name);
        let fetched = (|| -> Result<()> {
            crate::paths::ensure_dir(&self.paths.downloads_dir())?;
            if let Some(local) = self.source.local_file(&plan.asset)? {
                copy_verified(&local, &dest, &plan.delta.sha256, Some(plan.delta.size))?;
                return Ok(());
            }
            let target = self.source.download_target(&plan.asset);
            check_download_url(&target.url)?;
            let request = DownloadRequest {
                url: target.url,
                dest: dest.clone(),
                expected_size: Some(plan.delta.size),
                expected_sha256: Some(plan.delta.sha256.clone()),
                auth_token: target.token,
                accept: target.accept,
                cache_only: true,
            };
            crate::download::download(&self.client, &request, &self.retry, cancel, &mut |e| {
                on_event(UpdateEvent::Download(e))
            })?;
            Ok(())
        })();
        if let Err(e) = fetched {
            return Err(if cancel.is_cancelled() {
                DeltaFailure::Final(e)
            } else {
                DeltaFailure::Fallback(e.to_string())
            });
        }
        // Recorded (and reported) as the archive it stands for: every file built is checked against that
        // archive's signed list, so the version installed is the one its hash names; `delivery` says a
        // delta of `plan.delta.size` bytes brought it.
        let downloaded = Downloaded {
            version: release.version.clone(),
            asset: verified
                .entry
                .as_ref()
                .map_or_else(|| plan.delta.name.clone(), |e| e.name.clone()),
            path: dest.clone(),
            size: verified.size.unwrap_or(plan.delta.size),
            sha256: verified.sha256.clone(),
            signed: verified.signed,
            verified_by: format!("{} (delta from {})", verified.source, plan.base),
            source: self.source.describe(),
            key_id: verified.key_id.clone(),
            public_key: self
                .key
                .as_ref()
                .filter(|_| verified.signed)
                .map(|k| k.to_base64()),
            manifest_channel: verified.channel,
        };
        let base_root = installer.version_dir(&plan.base);
        let job = crate::delta::ApplyDelta {
            delta: &dest,
            delta_sha256: &plan.delta.sha256,
            base: &plan.base,
            target: &release.version,
            base_root: &base_root,
            base_files: &plan.base_files,
            target_files: files,
        };
        let build =
            |root: &Path| crate::delta::apply_delta(&job, root).map_err(crate::install::InstallError::from);
        let payload = Payload::Built {
            origin: &dest,
            build: &build,
        };
        let delivery = crate::check::Delivery {
            method: "delta".into(),
            bytes: plan.delta.size,
            full_bytes: verified.size.unwrap_or_default(),
            base: Some(plan.base.to_string()),
            reason: None,
        };
        let result = self.install_with(installer, lock, &downloaded, payload, delivery, gate, on_event);
        let _ = std::fs::remove_file(&dest);
        match result {
            Ok(report) => Ok(report),
            Err(Failed::BeforeSwitch(
                e @ (Error::ModelsFolderBusy { .. }
                | Error::Install(crate::install::InstallError::Busy { .. })),
            )) => Err(DeltaFailure::Final(e)),
            Err(Failed::BeforeSwitch(e)) => Err(DeltaFailure::Fallback(e.to_string())),
            Err(Failed::After(e)) => Err(DeltaFailure::Final(e)),
        }
    }

    /// Installs a verified download and gates it on health (see [`Updater::install`]).
    fn install_downloaded(
        &self,
        installer: &Installer,
        lock: &InstallLock,
        downloaded: &Downloaded,
        listed: Option<&crate::archive::ListedFiles>,
        gate: &mut dyn HealthGate,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<InstallReport> {
        // The archive is hashed as it is unpacked (the downloads folder is writable by the user, so the
        // bytes unpacked must be the bytes checked); a mismatch installs nothing.
        let payload = Payload::Archive {
            path: &downloaded.path,
            sha256: Some(&downloaded.sha256),
            listed,
        };
        let delivery = crate::check::Delivery {
            method: "full".into(),
            bytes: downloaded.size,
            full_bytes: downloaded.size,
            base: None,
            reason: self
                .full_only
                .then(|| "the full archive was asked for".to_owned()),
        };
        self.install_with(installer, lock, downloaded, payload, delivery, gate, on_event)
            .map_err(Failed::into_error)
    }

    /// Installs `payload` (the files of `downloaded`'s version) and gates it on health.
    #[allow(clippy::too_many_arguments)]
    fn install_with(
        &self,
        installer: &Installer,
        lock: &InstallLock,
        downloaded: &Downloaded,
        payload: Payload<'_>,
        delivery: crate::check::Delivery,
        gate: &mut dyn HealthGate,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> std::result::Result<InstallReport, Failed> {
        let version = downloaded.version.clone();
        // The new backend must start with the models its release carries, and they are moved in only
        // while no backend runs: with another process holding the models folder, nothing is started.
        if crate::models::models_folder_busy(&self.paths) {
            return Err(Failed::BeforeSwitch(Error::ModelsFolderBusy {
                version: version.to_string(),
            }));
        }
        on_event(UpdateEvent::Installing {
            version: version.clone(),
        });
        let previous = installer
            .current_version()
            .map_err(|e| Failed::BeforeSwitch(e.into()))?;
        let repair = previous.as_ref() == Some(&version);
        let mut unproven = Unproven {
            version: version.clone(),
            previous: previous.clone(),
            verification: Some(VerificationRecord {
                sha256: downloaded.sha256.clone(),
                signed: downloaded.signed,
                verified_by: downloaded.verified_by.clone(),
                installed_at: Utc::now(),
            }),
            launcher: None,
        };
        crate::fsutil::write_atomic(
            &unproven_file(&self.paths),
            &serde_json::to_vec(&unproven).unwrap_or_default(),
        )
        .map_err(Failed::BeforeSwitch)?;
        // The new version is unpacked into its own folder while the old backend still runs: nothing of the
        // old version is touched, and the downtime is only stop + start. A repair replaces the folder the
        // running backend uses, so that backend is stopped first.
        let mut stopped_at = None;
        if repair {
            on_event(UpdateEvent::StoppingBackend);
            if let Err(e) = gate.stop_running() {
                let _ = std::fs::remove_file(unproven_file(&self.paths));
                return Err(Failed::BeforeSwitch(e));
            }
            stopped_at = Some(Instant::now());
        }
        let installed = if repair {
            installer.repair_payload(lock, payload, &version)
        } else {
            installer.install_payload(lock, payload, &version)
        };
        let outcome = match installed {
            Ok(outcome) => outcome,
            // Failed after the `current` pointer moved (a journal write on a full disk): the new version
            // is current but unproven, so it is proved healthy or rolled back now, as a recovery would,
            // and nothing here treats the install as not having happened.
            Err(e) if !repair && installer.current_version().ok().flatten().as_ref() == Some(&version) => {
                tracing::error!(%version, error = %e, "the install failed after switching to it; checking its health now");
                if let Err(recovery) = recover_locked(&self.paths, &self.config, installer, lock, gate) {
                    tracing::error!("{recovery}");
                }
                return Err(Failed::After(e.into()));
            }
            Err(e) => {
                let _ = std::fs::remove_file(unproven_file(&self.paths));
                if repair {
                    // Nothing changed (the damaged folder is where it was): bring its backend back.
                    let dir = installer.current_dir().ok().flatten();
                    gate.restore(dir.as_deref());
                }
                return Err(Failed::BeforeSwitch(e.into()));
            }
        };
        // Recorded now, before any backend ran in the folder: what the release put there (hashed as it was
        // written), nothing the backend writes later.
        if let Err(e) = record_installed_files(&self.paths, &version, &outcome.files) {
            tracing::warn!("could not record the files of {version}: {e}");
        }
        // The launcher the bundle carries is copied and checked now, before its backend runs in the folder.
        let launcher = crate::selfupdate::prepare(&self.paths, &outcome.dir, &version);
        if let Some(prepared) = &launcher {
            // So a recovery after a crash in the health window finishes the launcher step too.
            unproven.launcher = Some(prepared.record());
            if let Err(e) = crate::fsutil::write_atomic(
                &unproven_file(&self.paths),
                &serde_json::to_vec(&unproven).unwrap_or_default(),
            ) {
                tracing::warn!("could not record the staged launcher in the unproven install: {e}");
            }
        }
        // Models a release carries are moved into the shared folder only once no backend runs (see
        // `launch_plan`), and never at the expense of another installed version.
        let stopped_at = match stopped_at {
            Some(at) => at,
            None => {
                on_event(UpdateEvent::StoppingBackend);
                gate.stop_running().map_err(Failed::After)?;
                Instant::now()
            }
        };
        on_event(UpdateEvent::StartingBackend {
            version: version.clone(),
        });
        match gate.prove_healthy(&outcome.dir) {
            Ok(time_to_healthy) => {
                let downtime = stopped_at.elapsed();
                let backend_running = gate.keep();
                let pruned =
                    commit(&self.paths, &self.config, installer, lock, &unproven).map_err(Failed::After)?;
                tracing::info!(
                    %version,
                    downtime_ms = downtime.as_millis() as u64,
                    time_to_healthy_ms = time_to_healthy.as_millis() as u64,
                    "update committed: the new backend is healthy"
                );
                on_event(UpdateEvent::Healthy {
                    version: version.clone(),
                    downtime,
                    time_to_healthy,
                });
                let launcher = launcher_step(&self.paths, installer, launcher, &unproven);
                Ok(InstallReport {
                    previous_version: previous.as_ref().map(Version::to_string),
                    installed_version: version.to_string(),
                    asset: downloaded.asset.clone(),
                    sha256: downloaded.sha256.clone(),
                    signed: downloaded.signed,
                    verified_by: downloaded.verified_by.clone(),
                    downtime_ms: downtime.as_millis() as u64,
                    time_to_healthy_ms: time_to_healthy.as_millis() as u64,
                    backend_running,
                    pruned,
                    launcher,
                    delivery: Some(delivery),
                })
            }
            Err(reason) => {
                crate::selfupdate::discard(&self.paths, launcher);
                on_event(UpdateEvent::RollingBack {
                    from: version.clone(),
                    to: previous.clone(),
                    reason: reason.clone(),
                });
                Err(Failed::After(roll_back_unhealthy(
                    &self.paths,
                    installer,
                    lock,
                    &unproven,
                    gate,
                    reason,
                )))
            }
        }
    }

    /// Finishes what a crash interrupted (see [`recover`]); called at the start of every install.
    fn recover_locked(
        &self,
        installer: &Installer,
        lock: &InstallLock,
        gate: &mut dyn HealthGate,
    ) -> Result<()> {
        recover_locked(&self.paths, &self.config, installer, lock, gate)
    }
}

/// The new version is healthy: forget the marker and the downloads (the archive, a `.delta`), record how
/// it was verified, prune. What an install does after its health gate, and a recovery after proving an
/// interrupted install healthy.
fn commit(
    paths: &Paths,
    config: &Config,
    installer: &Installer,
    lock: &InstallLock,
    unproven: &Unproven,
) -> Result<Vec<String>> {
    let _ = std::fs::remove_file(unproven_file(paths));
    if let Some(record) = &unproven.verification {
        record_verification(
            paths,
            &unproven.version,
            VerificationRecord {
                installed_at: Utc::now(),
                ..record.clone()
            },
        )?;
    }
    clear_pending(paths, Some(&unproven.version));
    let pruned = installer
        .prune(lock, config.backup_count as usize)?
        .iter()
        .map(Version::to_string)
        .collect();
    prune_model_store(paths);
    Ok(pruned)
}

/// The backend is proven and committed; now the launcher the bundle carries, gated the same way (and never
/// undoing the backend's update when it fails). Shared by an install and a recovery.
fn launcher_step(
    paths: &Paths,
    installer: &Installer,
    launcher: Option<crate::selfupdate::Prepared>,
    unproven: &Unproven,
) -> Option<crate::selfupdate::LauncherOutcome> {
    let outcome =
        crate::selfupdate::update_from_bundle(paths, launcher, &unproven.version, unproven.previous.as_ref());
    if let Ok(installed) = installer.installed_versions() {
        crate::selfupdate::prune_saved(paths, &installed);
    }
    outcome
}

/// Switches back to the previous version, restores its backend, records the failed version, and returns the
/// error to report.
fn roll_back_unhealthy(
    paths: &Paths,
    installer: &Installer,
    lock: &InstallLock,
    unproven: &Unproven,
    gate: &mut dyn HealthGate,
    reason: String,
) -> Error {
    // The launcher staged for it is not used (an install's or a recovery's rollback alike).
    crate::selfupdate::discard_staging(paths);
    if unproven.previous.as_ref() == Some(&unproven.version) {
        // A repair of the current version: there is nothing else to go back to, and the version is not
        // "failed" (it ran before it was damaged). Leave it installed and say what the backend said.
        let _ = std::fs::remove_file(unproven_file(paths));
        clear_pending(paths, Some(&unproven.version));
        gate.restore(None);
        tracing::error!(version = %unproven.version, %reason, "the reinstalled version is not healthy");
        return Error::ReinstallUnhealthy {
            version: unproven.version.to_string(),
            reason,
        };
    }
    let rolled_back_to = match &unproven.previous {
        Some(previous) => match installer.switch_to(lock, previous) {
            Ok(()) => Some(previous.clone()),
            Err(e) => {
                tracing::error!("rolling back to {previous} failed: {e}");
                None
            }
        },
        None => None,
    };
    if rolled_back_to.is_some() {
        match installer.remove_version(lock, &unproven.version) {
            Ok(()) => prune_model_store(paths),
            Err(e) => tracing::warn!("could not remove the failed version {}: {e}", unproven.version),
        }
    }
    let restored_dir = rolled_back_to.as_ref().map(|v| installer.version_dir(v));
    if !gate.restore(restored_dir.as_deref())
        && let Some(dir) = &restored_dir
    {
        // No backend was started (none ran before): put the old version's models back now all the same,
        // so what is on disk matches what is current.
        prepare_models(dir, paths);
    }
    if let Err(e) = record_failed(paths, &unproven.version) {
        tracing::warn!("could not record {} as failed: {e}", unproven.version);
    }
    let _ = std::fs::remove_file(unproven_file(paths));
    // The bytes were fine; the version is not. Keeping the download would only invite a retry loop.
    clear_pending(paths, Some(&unproven.version));
    tracing::error!(version = %unproven.version, %reason, "update rolled back: the new backend was not healthy");
    Error::HealthCheckFailed {
        version: unproven.version.to_string(),
        reason,
        rolled_back_to: rolled_back_to.map(|v| v.to_string()),
    }
}

/// Puts the models `bundle_dir`'s manifest names in place (see `models::prepare_models_for`). Best effort:
/// a busy models folder (a `models download` running) is logged, and the next start tries again.
pub fn prepare_models(bundle_dir: &Path, paths: &Paths) {
    match crate::models::prepare_models_for(bundle_dir, paths) {
        Ok(moved) if !moved.is_empty() => tracing::info!(?moved, "models put in place for this version"),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            "the models of {} were not put in place: {e}",
            bundle_dir.display()
        ),
    }
}

/// Deletes model files set aside for versions that are no longer installed. Best effort.
fn prune_model_store(paths: &Paths) {
    let pruned = crate::models::installed_bundle_dirs(paths)
        .and_then(|dirs| crate::models::prune_model_store(paths, &dirs));
    match pruned {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(?removed, "removed stored models no version needs")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("could not prune the models store: {e}"),
    }
}

/// Adds `version` to `failed_versions` in the settings file, so it is not offered automatically again.
fn record_failed(paths: &Paths, version: &Version) -> Result<()> {
    Config::update(&paths.config_file(), |file| {
        if !crate::version::is_listed(&file.failed_versions, version) {
            file.failed_versions.push(version.to_string());
        }
        Ok(())
    })
}

/// Finishes what a crash interrupted: the installer's journal, then an install whose backend never proved
/// healthy (proved now, or rolled back). The headless runner and the window call it at start.
pub fn recover(paths: &Paths, config: &Config, gate: &mut dyn HealthGate) -> Result<()> {
    let installer = installer(paths);
    let lock = installer.lock()?;
    recover_locked(paths, config, &installer, &lock, gate)
}

fn recover_locked(
    paths: &Paths,
    config: &Config,
    installer: &Installer,
    lock: &InstallLock,
    gate: &mut dyn HealthGate,
) -> Result<()> {
    if let Some(report) = installer.recover_locked(lock)? {
        tracing::warn!(action = ?report.action, "finished an interrupted install");
    }
    // A replacement of the launcher itself that a crash interrupted, or a new launcher's first start
    // (logged there).
    let _ = crate::selfupdate::recover(paths);
    let Some(text) = crate::fsutil::read_optional(&unproven_file(paths))? else {
        // No install is under way (the lock is held): a staged launcher left by a crash is of no use.
        crate::selfupdate::discard_staging(paths);
        return Ok(());
    };
    let Ok(unproven) = serde_json::from_str::<Unproven>(&text) else {
        let _ = std::fs::remove_file(unproven_file(paths));
        crate::selfupdate::discard_staging(paths);
        return Ok(());
    };
    if installer.current_version()?.as_ref() != Some(&unproven.version) {
        let _ = std::fs::remove_file(unproven_file(paths));
        crate::selfupdate::discard_staging(paths);
        return Ok(());
    }
    tracing::warn!(version = %unproven.version, "an update was interrupted before its backend proved healthy; checking it now");
    gate.stop_running()?;
    match gate.prove_healthy(&installer.version_dir(&unproven.version)) {
        Ok(_) => {
            gate.keep();
            // Everything the install would have done after its gate, from what it recorded.
            let launcher = unproven
                .launcher
                .as_ref()
                .and_then(|record| crate::selfupdate::prepared_after_crash(paths, &unproven.version, record));
            let committed = commit(paths, config, installer, lock, &unproven);
            if let Err(e) = &committed {
                tracing::error!(version = %unproven.version, "the interrupted update is kept, but finishing it failed: {e}");
            }
            match launcher_step(paths, installer, launcher, &unproven) {
                Some(outcome) => tracing::info!(version = %unproven.version, "{}", outcome.human()),
                None => crate::selfupdate::discard_staging(paths),
            }
            tracing::info!(version = %unproven.version, "the interrupted update proved healthy and was finished");
            committed.map(|_| ())
        }
        Err(reason) => Err(roll_back_unhealthy(
            paths, installer, lock, &unproven, gate, reason,
        )),
    }
}

/// Switches back to `to` (default: the previous version) and restarts the backend if it was running.
/// Needs no release source: everything it uses is installed already.
pub fn rollback(paths: &Paths, to: Option<&Version>, gate: &mut dyn HealthGate) -> Result<RollbackReport> {
    let installer = installer(paths);
    let lock = installer.lock()?;
    if let Some(report) = installer.recover_locked(&lock)? {
        tracing::warn!(action = ?report.action, "finished an interrupted install");
    }
    // An interrupted launcher replacement is finished or undone first, so the launcher on disk is one
    // this mechanism knows when the kept one is put back below.
    let _ = crate::selfupdate::recover(paths);
    let from = installer.current_version()?;
    // Going back from V is a statement about V: without remembering it, the next automatic install
    // (window, headless runner, `auto_install`) would put V straight back. Written before the switch, so a
    // crash or Ctrl-C after it cannot lose it; taken back if the switch fails.
    let planned = match to {
        Some(v) => Some(v.clone()),
        None => installer.previous_version()?,
    };
    let skipped = match (&from, &planned) {
        (Some(from), Some(target)) if from > target => {
            let mut added = false;
            let written = Config::update(&paths.config_file(), |file| {
                if !crate::version::is_listed(&file.skip_versions, from) {
                    file.skip_versions.push(from.to_string());
                    added = true;
                }
                Ok(())
            });
            match written {
                Ok(()) => Some((from.clone(), added)),
                Err(e) => {
                    tracing::warn!("could not add {from} to skip_versions: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    let undo_skip = |skipped: &Option<(Version, bool)>| {
        if let Some((version, true)) = skipped {
            let _ = Config::update(&paths.config_file(), |file| {
                file.skip_versions.retain(|v| v != &version.to_string());
                Ok(())
            });
        }
    };
    if let Err(e) = gate.stop_running() {
        undo_skip(&skipped);
        return Err(e);
    }
    let target = match installer.rollback(&lock, to) {
        Ok(v) => v,
        Err(e) => {
            undo_skip(&skipped);
            // Nothing changed: bring the backend back as it was.
            let dir = installer.current_dir().ok().flatten();
            gate.restore(dir.as_deref());
            return Err(e.into());
        }
    };
    let _ = std::fs::remove_file(unproven_file(paths));
    // No backend runs now: the version gone back to gets its own models back before anything starts.
    prepare_models(&installer.version_dir(&target), paths);
    let skipped = skipped.map(|(v, _)| v.to_string());
    let dir = installer.version_dir(&target);
    let backend_running = gate.restore(Some(&dir));
    tracing::info!(from = ?from, to = %target, ?skipped, "rolled back");
    // The launcher that ran with the version gone back to, when one was kept for it.
    let launcher = crate::selfupdate::restore_for(paths, &target);
    Ok(RollbackReport {
        from: from.map(|v| v.to_string()),
        to: target.to_string(),
        backend_running,
        skipped,
        launcher,
    })
}

/// What `update rollback` did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RollbackReport {
    pub from: Option<String>,
    pub to: String,
    pub backend_running: bool,
    /// The version rolled back from, now in `skip_versions` so no automatic install brings it back
    /// (undo with `update unskip-version V`).
    pub skipped: Option<String>,
    /// The launcher kept for the version gone back to, put back in place (`selfupdate::restore_for`).
    #[serde(default)]
    pub launcher: Option<crate::selfupdate::LauncherOutcome>,
}

/// Copies a local release file (a feed in a folder) to `dest`, verifying its hash; returns path and size.
/// Only a regular file is read, and never more than the size the manifest or feed announced.
fn copy_verified(
    src: &Path,
    dest: &Path,
    sha256: &str,
    expected_size: Option<u64>,
) -> Result<(PathBuf, u64)> {
    use std::io::{Read, Write};
    let (input, meta) = crate::fsutil::open_regular_file(src).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => Error::InvalidResponse {
            url: src.display().to_string(),
            reason: "not a regular file".into(),
        },
        _ => Error::io("open", src, e),
    })?;
    if let Some(expected) = expected_size
        && meta.len() != expected
    {
        return Err(crate::download::DownloadError::SizeMismatch {
            url: src.display().to_string(),
            file: src.to_path_buf(),
            expected,
            actual: meta.len(),
        }
        .into());
    }
    let part = crate::download::part_path(dest);
    let copied = (|| -> std::io::Result<u64> {
        let mut output = std::fs::File::create(&part)?;
        let n = std::io::copy(
            &mut input.take(expected_size.unwrap_or(meta.len()) + 1),
            &mut output,
        )?;
        output.flush()?;
        output.sync_all()?;
        Ok(n)
    })();
    let size = match copied {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(Error::io("copy", src, e));
        }
    };
    if let Err(e) = crate::verify::check_file_sha256(&part, sha256) {
        let _ = std::fs::remove_file(&part);
        return Err(e.into());
    }
    std::fs::rename(&part, dest).map_err(|e| Error::io("move into place", dest, e))?;
    Ok((dest.to_path_buf(), size))
}

/// Unverified bytes come only over HTTPS (plain HTTP on loopback, for tests and local mirrors): a release
/// list or feed that names anything else is refused before a byte is fetched.
fn check_download_url(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url).map_err(|e| Error::InvalidResponse {
        url: url.to_owned(),
        reason: format!("not a URL ({e})"),
    })?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if crate::http::is_loopback(&parsed) => Ok(()),
        other => Err(Error::InvalidResponse {
            url: url.to_owned(),
            reason: format!(
                "downloads are only fetched over https:// (not {other}://); the release source is misconfigured or hostile, so nothing was downloaded"
            ),
        }),
    }
}
