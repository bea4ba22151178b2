//! The update flow, end to end: check → download → verify → install → prove healthy → commit, or roll back.
//!
//! This is the only module that ties the engine's parts together; each step lives in its own module
//! (`check`, `download`, `verify`, `install`, `supervisor`) and knows nothing of the others. The CLI, the
//! headless runner and (later) the window all drive updates through here, so they behave the same.
//!
//! Files it keeps: `downloads/pending.json` (a verified download waiting to be installed) and
//! `install/verified.json` (how each installed version was verified: hash, signed or not, by what).

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
use crate::install::{InstallLock, Installer, Journal};
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

pub(crate) fn clear_pending(paths: &Paths) {
    if let Some(p) = pending_download(paths) {
        let _ = std::fs::remove_file(&p.path);
    }
    let _ = std::fs::remove_file(pending_file(paths));
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
    let bytes = serde_json::to_vec_pretty(&records).unwrap_or_default();
    crate::fsutil::write_atomic(&verified_file(paths), &bytes)
}

/// What `update status` reports; its JSON form is a contract.
#[derive(Clone, Debug, Serialize)]
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
    pub skip_versions: Vec<String>,
    pub failed_versions: Vec<String>,
    pub last_check: Option<DateTime<Utc>>,
    /// Where updates come from.
    pub source: Option<String>,
    pub platform: String,
    pub launcher_version: String,
    /// A verified download waiting to be installed.
    pub pending_download: Option<Downloaded>,
    /// An install that was interrupted and not yet recovered.
    pub interrupted_operation: Option<Journal>,
    pub home: StatusPaths,
}

#[derive(Clone, Debug, Serialize)]
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
        public_key_pinned: crate::verify::pinned_key(config)?.is_some(),
        channel: config.update_channel,
        auto_check: config.auto_check,
        auto_download: config.auto_download,
        auto_install: config.auto_install,
        backup_count: config.backup_count,
        check_interval_hours: config.check_interval_hours,
        skip_versions: config.skip_versions.clone(),
        failed_versions: config.failed_versions.clone(),
        last_check: config.last_check,
        source: config
            .feed
            .as_ref()
            .map(|f| format!("feed {f}"))
            .or_else(|| config.repository().map(|r| format!("GitHub repository {r}"))),
        platform: Platform::current().to_string(),
        launcher_version: crate::LAUNCHER_VERSION.to_owned(),
        pending_download: pending_download(paths),
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
        if self.installed_versions.len() > 1 {
            out.push_str(&format!(
                "Kept for rollback: {}\n",
                self.installed_versions[1..].join(", ")
            ));
        }
        if let Some(p) = &self.pending_download {
            out.push_str(&format!(
                "Downloaded, ready to install: {} ({})\n",
                p.version, p.asset
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
#[derive(Clone, Debug, Serialize)]
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

/// Resolves how to launch the backend of a bundle, with a fresh loopback port.
pub fn launch_plan(bundle_dir: &Path, paths: &Paths) -> Result<(crate::agent::LaunchPlan, Duration)> {
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
/// current version healthy or rolls it back, so an unproven version never stays by accident.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Unproven {
    version: Version,
    previous: Option<Version>,
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
}

impl Updater {
    /// An updater for the settings' source, reading the environment for GitHub settings.
    pub fn new(paths: &Paths, config: &Config) -> Result<Self> {
        let source = crate::check::source_from_config(config, paths, &|k| std::env::var(k).ok())?;
        Self::with_source(paths, config, source)
    }

    /// An updater over any source (tests, feeds).
    pub fn with_source(paths: &Paths, config: &Config, source: Box<dyn ReleaseSource>) -> Result<Self> {
        Ok(Updater {
            paths: paths.clone(),
            config: config.clone(),
            source,
            client: crate::http::client()?,
            platform: Platform::current(),
            key: crate::verify::pinned_key(config)?,
            retry: RetryPolicy::default(),
        })
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
        let report = crate::check::check(&*self.source, &self.request(channel)?)?;
        let path = self.paths.config_file();
        let mut file = Config::load(&path).config;
        file.last_check = Some(report.checked_at);
        if let Err(e) = file.save(&path) {
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

    /// Fetches what vouches for `asset`: the release manifest and its signature, and checksum files.
    fn material(&self, release: &Release, asset: &Asset) -> Result<VerificationMaterial> {
        const LIMIT: u64 = 4 << 20;
        let mut material = VerificationMaterial::default();
        if let Some(manifest) = release.asset(crate::verify::MANIFEST_FILE)
            && let Some(bytes) = self.source.fetch_asset_small(manifest, LIMIT)?
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
        let per_asset = format!("{}.sha256", asset.name);
        for candidate in &release.assets {
            let wanted = candidate.name == per_asset
                || (crate::verify::is_checksum_file_name(&candidate.name)
                    && !candidate.name.ends_with(".sha256"));
            if wanted && let Some(bytes) = self.source.fetch_asset_small(candidate, LIMIT)? {
                material.checksum_files.push((
                    candidate.name.clone(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
        }
        Ok(material)
    }

    /// Downloads and verifies `asset` of `release` into the downloads folder, resuming a partial download;
    /// reuses a finished one that still matches. The result is recorded as the pending download.
    pub fn download(
        &self,
        release: &Release,
        asset: &Asset,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<Downloaded> {
        let material = self.material(release, asset)?;
        let verified = crate::verify::expected_sha256(asset, &release.version, &material, self.key.as_ref())?;
        on_event(UpdateEvent::Verified {
            verified_by: verified.source.to_string(),
            signed: verified.signed,
        });
        let dest = self.paths.downloads_dir().join(&asset.name);
        crate::paths::ensure_dir(&self.paths.downloads_dir())?;
        let outcome = if dest.is_file() && crate::verify::check_file_sha256(&dest, &verified.sha256).is_ok() {
            on_event(UpdateEvent::ReusingDownload { path: dest.clone() });
            let size = std::fs::metadata(&dest)
                .map_err(|e| Error::io("read", &dest, e))?
                .len();
            (dest, size)
        } else if let Some(local) = reqwest::Url::parse(&asset.url)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok())
        {
            copy_verified(&local, &dest, &verified.sha256)?
        } else {
            let target = self.source.download_target(asset);
            let request = DownloadRequest {
                url: target.url,
                dest: dest.clone(),
                expected_size: verified.size.or((asset.size > 0).then_some(asset.size)),
                expected_sha256: Some(verified.sha256.clone()),
                auth_token: target.token,
                accept: target.accept,
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
        };
        record_pending(&self.paths, &downloaded)?;
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
        let Some((release, asset)) = self.target(version)? else {
            return Ok(None);
        };
        self.install_locked(&installer, &lock, &release, &asset, gate, cancel, on_event)
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
        self.install_locked(&installer, &lock, release, asset, gate, cancel, on_event)
    }

    #[allow(clippy::too_many_arguments)]
    fn install_locked(
        &self,
        installer: &Installer,
        lock: &InstallLock,
        release: &Release,
        asset: &Asset,
        gate: &mut dyn HealthGate,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<InstallReport> {
        let reuse = pending_download(&self.paths)
            .filter(|p| p.version == release.version && p.asset == asset.name)
            .filter(|p| crate::verify::check_file_sha256(&p.path, &p.sha256).is_ok());
        let downloaded = match reuse {
            Some(p) => {
                on_event(UpdateEvent::ReusingDownload { path: p.path.clone() });
                p
            }
            None => self.download(release, asset, cancel, on_event)?,
        };
        self.install_downloaded(installer, lock, &downloaded, gate, on_event)
    }

    /// Installs a verified download and gates it on health (see [`Updater::install`]).
    fn install_downloaded(
        &self,
        installer: &Installer,
        lock: &InstallLock,
        downloaded: &Downloaded,
        gate: &mut dyn HealthGate,
        on_event: &mut dyn FnMut(UpdateEvent),
    ) -> Result<InstallReport> {
        // Checked again right before unpacking: the downloads folder is writable by the user.
        crate::verify::check_file_sha256(&downloaded.path, &downloaded.sha256)?;
        let version = downloaded.version.clone();
        on_event(UpdateEvent::Installing {
            version: version.clone(),
        });
        let previous = installer.current_version()?;
        let unproven = Unproven {
            version: version.clone(),
            previous: previous.clone(),
        };
        crate::fsutil::write_atomic(
            &unproven_file(&self.paths),
            &serde_json::to_vec(&unproven).unwrap_or_default(),
        )?;
        // The new version is unpacked into its own folder while the old backend still runs: nothing of the
        // old version is touched, and the downtime is only stop + start.
        let outcome = match installer.install_archive(lock, &downloaded.path, &version) {
            Ok(outcome) => outcome,
            Err(e) => {
                let _ = std::fs::remove_file(unproven_file(&self.paths));
                return Err(e.into());
            }
        };
        // A release made "with models" carries them: move them into the shared models folder once, so they
        // are never fetched again nor kept per version.
        match crate::models::adopt_models_of_bundle(&outcome.dir, &self.paths) {
            Ok(adopted) if !adopted.is_empty() => {
                tracing::info!(?adopted, "models taken from the release bundle")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("the models in the release bundle were not taken: {e}"),
        }
        on_event(UpdateEvent::StoppingBackend);
        gate.stop_running()?;
        let stopped_at = Instant::now();
        on_event(UpdateEvent::StartingBackend {
            version: version.clone(),
        });
        match gate.prove_healthy(&outcome.dir) {
            Ok(time_to_healthy) => {
                let downtime = stopped_at.elapsed();
                let backend_running = gate.keep();
                let pruned = self.commit(installer, lock, &version, downloaded)?;
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
                })
            }
            Err(reason) => {
                on_event(UpdateEvent::RollingBack {
                    from: version.clone(),
                    to: previous.clone(),
                    reason: reason.clone(),
                });
                Err(roll_back_unhealthy(
                    &self.paths,
                    installer,
                    lock,
                    &unproven,
                    gate,
                    reason,
                ))
            }
        }
    }

    /// The new version is healthy: forget the marker and the download, record how it was verified, prune.
    fn commit(
        &self,
        installer: &Installer,
        lock: &InstallLock,
        version: &Version,
        downloaded: &Downloaded,
    ) -> Result<Vec<String>> {
        let _ = std::fs::remove_file(unproven_file(&self.paths));
        record_verification(
            &self.paths,
            version,
            VerificationRecord {
                sha256: downloaded.sha256.clone(),
                signed: downloaded.signed,
                verified_by: downloaded.verified_by.clone(),
                installed_at: Utc::now(),
            },
        )?;
        clear_pending(&self.paths);
        let pruned = installer
            .prune(lock, self.config.backup_count as usize)?
            .iter()
            .map(Version::to_string)
            .collect();
        Ok(pruned)
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
    if rolled_back_to.is_some()
        && let Err(e) = installer.remove_version(lock, &unproven.version)
    {
        tracing::warn!("could not remove the failed version {}: {e}", unproven.version);
    }
    let restored_dir = rolled_back_to.as_ref().map(|v| installer.version_dir(v));
    gate.restore(restored_dir.as_deref());
    if let Err(e) = record_failed(paths, &unproven.version) {
        tracing::warn!("could not record {} as failed: {e}", unproven.version);
    }
    let _ = std::fs::remove_file(unproven_file(paths));
    // The bytes were fine; the version is not. Keeping the download would only invite a retry loop.
    clear_pending(paths);
    tracing::error!(version = %unproven.version, %reason, "update rolled back: the new backend was not healthy");
    Error::HealthCheckFailed {
        version: unproven.version.to_string(),
        reason,
        rolled_back_to: rolled_back_to.map(|v| v.to_string()),
    }
}

/// Adds `version` to `failed_versions` in the settings file, so it is not offered automatically again.
fn record_failed(paths: &Paths, version: &Version) -> Result<()> {
    let path = paths.config_file();
    let mut file = Config::load(&path).config;
    if !crate::version::is_listed(&file.failed_versions, version) {
        file.failed_versions.push(version.to_string());
    }
    file.save(&path)
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
    let Some(text) = crate::fsutil::read_optional(&unproven_file(paths))? else {
        return Ok(());
    };
    let Ok(unproven) = serde_json::from_str::<Unproven>(&text) else {
        let _ = std::fs::remove_file(unproven_file(paths));
        return Ok(());
    };
    if installer.current_version()?.as_ref() != Some(&unproven.version) {
        let _ = std::fs::remove_file(unproven_file(paths));
        return Ok(());
    }
    tracing::warn!(version = %unproven.version, "an update was interrupted before its backend proved healthy; checking it now");
    gate.stop_running()?;
    match gate.prove_healthy(&installer.version_dir(&unproven.version)) {
        Ok(_) => {
            gate.keep();
            let _ = std::fs::remove_file(unproven_file(paths));
            let _ = installer.prune(lock, config.backup_count as usize);
            Ok(())
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
    let from = installer.current_version()?;
    gate.stop_running()?;
    let target = match installer.rollback(&lock, to) {
        Ok(v) => v,
        Err(e) => {
            // Nothing changed: bring the backend back as it was.
            let dir = installer.current_dir().ok().flatten();
            gate.restore(dir.as_deref());
            return Err(e.into());
        }
    };
    let _ = std::fs::remove_file(unproven_file(paths));
    let dir = installer.version_dir(&target);
    let backend_running = gate.restore(Some(&dir));
    tracing::info!(from = ?from, to = %target, "rolled back");
    Ok(RollbackReport {
        from: from.map(|v| v.to_string()),
        to: target.to_string(),
        backend_running,
    })
}

/// What `update rollback` did.
#[derive(Clone, Debug, Serialize)]
pub struct RollbackReport {
    pub from: Option<String>,
    pub to: String,
    pub backend_running: bool,
}

/// Copies a local release file (a feed in a folder) to `dest`, verifying its hash; returns path and size.
fn copy_verified(src: &Path, dest: &Path, sha256: &str) -> Result<(PathBuf, u64)> {
    crate::verify::check_file_sha256(src, sha256)?;
    let part = crate::download::part_path(dest);
    let size = std::fs::copy(src, &part).map_err(|e| Error::io("copy", src, e))?;
    if let Err(e) = crate::verify::check_file_sha256(&part, sha256) {
        let _ = std::fs::remove_file(&part);
        return Err(e.into());
    }
    std::fs::rename(&part, dest).map_err(|e| Error::io("move into place", dest, e))?;
    Ok((dest.to_path_buf(), size))
}
