//! The service layer: every operation a user can ask for, once, below the faces (the local API today; the
//! CLI and the window next) and above the engine (`updater`, `supervisor`, `models`).
//!
//! A [`Service`] owns the one [`Supervisor`] of this process and runs long operations (check, download,
//! install, rollback, backend start/stop/restart, models download) as [`jobs`]: one at a time, each on a
//! named thread, returning its id at once, with progress and outcome as [`Event`]s and a cancel token.
//! Short operations (status, changelog, skip, unskip, configure, models status) answer directly.
//!
//! Settings are read afresh for every operation (file + environment), and an updater is built from them
//! each time, so a `config.json` whose trust settings cannot be read stops updating here as everywhere
//! (`Updater::new` refuses it). Every settings write goes through `Config::update`. The health gate is the
//! service's own supervisor (`updater::SupervisorGate`), so an update restarts the backend this process
//! supervises and no other.
//!
//! The service knows no JSON DTO of any face: results are the engine's own reports (serialised as the
//! CLI's `--json` contracts are), and requests are plain Rust values ([`ConfigChange`]).

pub mod autopilot;
pub mod control;
pub mod history;
pub mod jobs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use semver::Version;
use serde::Serialize;

pub use jobs::{Event, EventKind, Job, JobCtx, JobGuard, JobKind, JobState, Jobs, Progress};

use crate::config::Config;
use crate::paths::Paths;
use crate::platform::Platform;
use crate::supervisor::Supervisor;
use crate::updater::{SupervisorGate, UpdateEvent, Updater};
use crate::version::Channel;

/// Why the service refused or failed an operation. Engine errors are wrapped as they are (their messages
/// already name the next step); the faces map the variants to exit codes or HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "another operation is running ({running}, job {job}); wait for it to finish (or cancel it), then try again"
    )]
    Busy { running: JobKind, job: u64 },

    #[error("`{field}` {reason}")]
    InvalidField { field: String, reason: String },

    #[error("{0}")]
    Conflict(String),

    #[error("cancelled; a partial download is kept and resumed next time")]
    Cancelled,

    #[error(transparent)]
    Engine(#[from] crate::Error),

    #[error(transparent)]
    Supervisor(#[from] crate::supervisor::SupervisorError),

    #[error(transparent)]
    Models(#[from] crate::models::ModelsError),

    /// The owner of the install could not be asked, refused, or its job failed.
    #[error(transparent)]
    Owner(#[from] crate::api::client::ClientError),

    #[error("{0}")]
    Internal(String),

    /// A job that ran to its end and failed: its message, as the engine worded it.
    #[error("{0}")]
    Failed(String),
}

impl AppError {
    fn invalid(field: &str, reason: impl Into<String>) -> Self {
        AppError::InvalidField {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

pub type AppResult<T> = std::result::Result<T, AppError>;

/// The settings as one operation sees them: the file's, and the effective ones after the environment.
#[derive(Clone, Debug)]
pub struct Settings {
    pub file: Config,
    pub effective: Config,
}

/// A change to the settings: any subset of the fields a user may set. `None` leaves a field as it is;
/// for the optional fields `Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct ConfigChange {
    pub update_channel: Option<Channel>,
    pub auto_check: Option<bool>,
    pub auto_download: Option<bool>,
    pub auto_install: Option<bool>,
    pub backup_count: Option<u32>,
    pub check_interval_hours: Option<f64>,
    pub keep_backend_running: Option<bool>,
    /// Where the data folder is (`Some(None)`: the default); only before the first install, and never
    /// through the API (an owner does not move its own install away).
    pub data_dir: Option<Option<std::path::PathBuf>>,
    pub github_repo: Option<Option<String>>,
    pub feed: Option<Option<String>>,
    pub public_key: Option<Option<String>>,
    pub skip_versions: Option<Vec<String>>,
    pub api_port: Option<Option<u16>>,
}

/// A long operation, as every face asks for it: the CLI (here or through the owner), the API and the
/// window start the same values through [`Service::start`] or [`control::Control::run`].
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Ask the source; `channel`/`platform` look elsewhere than the configured channel and this machine.
    Check {
        channel: Option<Channel>,
        platform: Option<Platform>,
    },
    Download {
        version: Option<Version>,
        platform: Option<Platform>,
        /// `version` may be older than the installed one (this machine's command line only).
        allow_downgrade: bool,
    },
    Install {
        version: Option<Version>,
        /// Download the full archive even when the release has a delta from the installed version.
        full: bool,
        /// `version` may be older than the installed one (`update install --allow-downgrade`, this
        /// machine's command line only: the API cannot carry it).
        allow_downgrade: bool,
    },
    Rollback {
        to: Option<Version>,
    },
    BackendStart(StartOptions),
    BackendStop,
    BackendRestart,
    /// `manifest`: another models manifest than the installed version's (this process only).
    ModelsDownload {
        all: bool,
        manifest: Option<String>,
    },
}

impl Op {
    pub fn kind(&self) -> JobKind {
        match self {
            Op::Check { .. } => JobKind::Check,
            Op::Download { .. } => JobKind::Download,
            Op::Install { .. } => JobKind::Install,
            Op::Rollback { .. } => JobKind::Rollback,
            Op::BackendStart(_) => JobKind::BackendStart,
            Op::BackendStop => JobKind::BackendStop,
            Op::BackendRestart => JobKind::BackendRestart,
            Op::ModelsDownload { .. } => JobKind::ModelsDownload,
        }
    }
}

/// How to start the backend: by default the installed version on a free loopback port.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StartOptions {
    /// An unpacked bundle to try instead of the installed version (its files are never moved).
    pub bundle: Option<std::path::PathBuf>,
    /// This loopback port instead of a free one.
    pub port: Option<u16>,
}

/// Which release notes [`Service::changelog`] returns.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChangelogQuery {
    pub channel: Option<Channel>,
    pub platform: Option<Platform>,
    /// With nothing installed, only the offered release's notes (else every release's).
    pub offered_only: bool,
}

/// What `status` reports: the engine's update status, the backend's, and the job that runs.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceStatus {
    pub update: crate::updater::Status,
    /// The last check this process made, if any (what is offered).
    pub last_check: Option<crate::check::CheckReport>,
    pub backend: crate::supervisor::BackendStatus,
    pub job: Option<Job>,
}

/// The release notes to show.
#[derive(Clone, Debug, Serialize)]
pub struct Changelog {
    pub current_version: Option<String>,
    pub channel: Channel,
    pub releases: Vec<crate::check::ChangelogEntry>,
}

/// How the service reads environment variables (tests inject their own).
pub type EnvReader = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

struct Inner {
    paths: Paths,
    supervisor: Arc<Supervisor>,
    jobs: Jobs,
    env: EnvReader,
    last_check: Mutex<Option<crate::check::CheckReport>>,
}

/// The operations, shared by every face of one process. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("paths", &self.inner.paths)
            .finish()
    }
}

fn json_of<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

impl Service {
    /// A service over `paths` with the product's supervisor, reading the process environment.
    pub fn new(paths: Paths) -> Self {
        let supervisor = Supervisor::new(&paths);
        Self::with_supervisor(paths, supervisor, Box::new(|k| std::env::var(k).ok()))
    }

    /// A service with a given supervisor and environment (tests).
    pub fn with_supervisor(paths: Paths, supervisor: Supervisor, env: EnvReader) -> Self {
        let service = Service {
            inner: Arc::new(Inner {
                paths,
                supervisor: Arc::new(supervisor),
                jobs: Jobs::default(),
                env,
                last_check: Mutex::new(None),
            }),
        };
        // Backend changes become events. The supervisor calls its hook with its own lock held (and on
        // every log line), so the hook only wakes a watcher thread, which reads the status outside the lock
        // and publishes only real changes. The watcher ends when the supervisor (and its hook) is dropped.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let tx = Mutex::new(tx);
        service.inner.supervisor.on_change(move || {
            let _ = tx.lock().unwrap_or_else(PoisonError::into_inner).send(());
        });
        let weak = Arc::downgrade(&service.inner);
        let _ = std::thread::Builder::new()
            .name("app-backend-watch".into())
            .spawn(move || {
                let mut last = None;
                while rx.recv().is_ok() {
                    while rx.try_recv().is_ok() {}
                    let Some(inner) = weak.upgrade() else { break };
                    let status = inner.supervisor.status();
                    let key = (status.state.clone(), status.pid, status.version.clone());
                    if last.as_ref() != Some(&key) {
                        last = Some(key);
                        inner.jobs.publish(EventKind::Backend { status });
                    }
                }
            });
        service
    }

    pub fn paths(&self) -> &Paths {
        &self.inner.paths
    }

    /// The supervisor of this process's backend.
    pub fn supervisor(&self) -> &Supervisor {
        &self.inner.supervisor
    }

    /// The supervisor, shared (for a face's own loop, like the headless runner's).
    pub fn shared_supervisor(&self) -> Arc<Supervisor> {
        self.inner.supervisor.clone()
    }

    /// The job table and event bus.
    pub fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<Event> {
        self.inner.jobs.subscribe()
    }

    /// The settings file as it is now, with the environment's overrides.
    pub fn settings(&self) -> Settings {
        let loaded = Config::load(&self.inner.paths.config_file());
        let mut warnings = loaded.warnings;
        let effective = loaded.config.with_env(&*self.inner.env, &mut warnings);
        crate::config::log_warnings_once(&warnings);
        Settings {
            file: loaded.config,
            effective,
        }
    }

    /// An updater built afresh from the current settings (refused when a trust setting is unreadable).
    pub fn updater(&self) -> AppResult<Updater> {
        self.updater_for(None)
    }

    /// The updater, choosing assets for `platform` when given (a download for another machine).
    pub fn updater_for(&self, platform: Option<Platform>) -> AppResult<Updater> {
        self.updater_with(&self.settings().effective, platform)
    }

    /// The updater for settings already read.
    fn updater_with(&self, config: &Config, platform: Option<Platform>) -> AppResult<Updater> {
        let updater = Updater::new(&self.inner.paths, config)?;
        Ok(match platform {
            Some(p) => updater.for_platform(p),
            None => updater,
        })
    }

    // --- Short operations ------------------------------------------------------------------------------

    /// What `update status` reports: the installed version, the settings, an interrupted operation.
    pub fn update_status(&self) -> AppResult<crate::updater::Status> {
        Ok(crate::updater::status(
            &self.inner.paths,
            &self.settings().effective,
        )?)
    }

    pub fn status(&self) -> AppResult<ServiceStatus> {
        Ok(ServiceStatus {
            update: self.update_status()?,
            last_check: self
                .inner
                .last_check
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            backend: self.backend_status(),
            job: self.inner.jobs.current(),
        })
    }

    /// What this process's last check of its own channel found, if it made one.
    pub fn last_check(&self) -> Option<crate::check::CheckReport> {
        self.inner
            .last_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records `report` as what this process last found offered (shown by `status`).
    pub fn remember_check(&self, report: crate::check::CheckReport) {
        *self
            .inner
            .last_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(report);
    }

    pub fn job(&self, id: u64) -> Option<Job> {
        self.inner.jobs.get(id)
    }

    /// The release notes between the installed version and the newest in the channel (default: the
    /// configured one), newest first. With nothing installed: every release's notes, or, with
    /// `offered_only`, the offered release's alone (what the seed's API answers).
    pub fn changelog(&self, query: ChangelogQuery) -> AppResult<Changelog> {
        let settings = self.settings();
        let updater = self.updater_with(&settings.effective, query.platform)?;
        let current = crate::updater::current_version(&self.inner.paths)?;
        let mut releases = updater.changelog(query.channel)?;
        if current.is_none() && query.offered_only {
            releases.truncate(1);
        }
        Ok(Changelog {
            current_version: current.map(|v| v.to_string()),
            channel: query.channel.unwrap_or(settings.effective.update_channel),
            releases,
        })
    }

    /// Never offer `version` automatically. Returns the skip list.
    pub fn skip(&self, version: &str) -> AppResult<Vec<String>> {
        let parsed = crate::version::parse_user_version(version)
            .map_err(|e| AppError::invalid("version", e.to_string()))?;
        let list = Config::update(&self.inner.paths.config_file(), |file| {
            if !crate::version::is_listed(&file.skip_versions, &parsed) {
                file.skip_versions.push(parsed.to_string());
            }
            Ok(file.skip_versions.clone())
        })?;
        self.inner.jobs.publish(EventKind::Settings);
        Ok(list)
    }

    /// Offer `version` again. Returns whether it was skipped, and the skip list.
    pub fn unskip(&self, version: &str) -> AppResult<(bool, Vec<String>)> {
        let parsed = crate::version::parse_user_version(version)
            .map_err(|e| AppError::invalid("version", e.to_string()))?;
        let out = Config::update(&self.inner.paths.config_file(), |file| {
            let before = file.skip_versions.len();
            file.skip_versions.retain(|v| {
                crate::version::parse_user_version(v).ok().as_ref() != Some(&parsed)
                    && v != &parsed.to_string()
            });
            Ok((file.skip_versions.len() != before, file.skip_versions.clone()))
        })?;
        self.inner.jobs.publish(EventKind::Settings);
        Ok(out)
    }

    /// A new data folder (`None`: the default). Refused while another launcher owns the install or an
    /// operation runs, once anything is installed (or an operation was interrupted) in the current one
    /// (moving an install is not supported), and when it is not an absolute path. A folder that is
    /// neither empty nor a data folder already gets a `PersonalAIAgent` folder of its own inside (a drive
    /// or the user's home chosen whole is never mixed with the launcher's files, which it tidies and
    /// deletes). The folder is made and marked ([`DATA_MARKER`]) only by [`Service::configure`], after
    /// every other field passed.
    ///
    /// When the current data folder cannot be used (missing, not private, a setting that cannot be read:
    /// [`Paths::data_dir_problem`]), nothing in it is looked at: whatever it holds is not an install of
    /// this user's to keep, and choosing another folder is the way out.
    fn check_data_dir(&self, dir: Option<&Path>) -> AppResult<Option<PathBuf>> {
        let paths = &self.inner.paths;
        let refuse = |reason: String| AppError::invalid("data_dir", reason);
        if let Some(job) = self.inner.jobs.current() {
            return Err(refuse(format!(
                "cannot change while an operation runs ({}); wait for it to finish",
                job.kind.as_str().replace('_', " ")
            )));
        }
        if let Some(problem) = paths.data_dir_problem() {
            tracing::warn!("choosing another data folder, as the current one cannot be used: {problem}");
            return self.check_new_data_dir(dir);
        }
        if let Some(info) = crate::owner::current(paths).filter(|i| i.pid != std::process::id()) {
            return Err(refuse(format!(
                "cannot change while the launcher with pid {} owns this install (a window, `run --headless` or `backend start`); close it first",
                info.pid
            )));
        }
        let installer = crate::updater::installer(paths);
        // (Looked at only when the folder exists: taking the lock to see would make it.)
        if paths.install_dir().is_dir() && installer.is_update_running() {
            return Err(refuse(
                "cannot change while an install runs in another launcher process; wait for it to finish"
                    .into(),
            ));
        }
        let installed = installer.installed_versions().map_err(|e| {
            refuse(format!(
                "cannot tell whether anything is installed in {} ({e}); nothing was changed",
                paths.install_dir().display()
            ))
        })?;
        let interrupted = installer.interrupted_operation().map_err(|e| {
            refuse(format!(
                "cannot read the install journal in {} ({e}); nothing was changed",
                paths.install_dir().display()
            ))
        })?;
        if !installed.is_empty() {
            return Err(refuse(format!(
                "can be chosen only before the first install, and {} is installed in {} already; moving an install is not supported (to start over elsewhere, delete {} first)",
                installed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                paths.install_dir().display(),
                paths.install_dir().display()
            )));
        }
        if interrupted.is_some() {
            return Err(refuse(format!(
                "can be chosen only before the first install, and an install in {} was interrupted; open the launcher once so it finishes or undoes it",
                paths.install_dir().display()
            )));
        }
        self.check_new_data_dir(dir)
    }

    /// The checks of [`Service::check_data_dir`] on the new folder itself.
    fn check_new_data_dir(&self, dir: Option<&Path>) -> AppResult<Option<PathBuf>> {
        let refuse = |reason: String| AppError::invalid("data_dir", reason);
        let Some(dir) = dir else { return Ok(None) };
        if !dir.is_absolute() {
            return Err(refuse(format!(
                "{} is not an absolute path; give the whole path of a folder",
                dir.display()
            )));
        }
        let target = if is_empty_or_ours(dir) {
            dir.to_path_buf()
        } else {
            dir.join(crate::PRODUCT_FOLDER)
        };
        if !is_empty_or_ours(&target) {
            return Err(refuse(format!(
                "{} holds files that are not the launcher's; choose an empty folder",
                target.display()
            )));
        }
        if target
            .join("install")
            .join("versions")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
        {
            return Err(refuse(format!(
                "{} holds another install already; choose an empty folder",
                target.display()
            )));
        }
        Ok(Some(target))
    }

    /// Applies `change` after checking every field (nothing is written when one is refused). Returns the
    /// settings file as saved.
    pub fn configure(&self, change: ConfigChange) -> AppResult<Config> {
        if let Some(h) = change.check_interval_hours {
            crate::config::validate_check_interval(h)
                .map_err(|reason| AppError::invalid("check_interval_hours", reason))?;
        }
        if let Some(n) = change.backup_count {
            crate::config::validate_backup_count(n)
                .map_err(|reason| AppError::invalid("backup_count", reason))?;
        }
        let repo = match &change.github_repo {
            Some(Some(r)) if !r.trim().is_empty() => Some(Some(
                r.trim()
                    .parse::<crate::sources::github::Repo>()
                    .map_err(|e| AppError::invalid("github_repo", e.to_string()))?
                    .to_string(),
            )),
            Some(_) => Some(None),
            None => None,
        };
        let feed = match &change.feed {
            Some(Some(f)) if !f.trim().is_empty() => Some(Some(check_feed(f.trim())?)),
            Some(_) => Some(None),
            None => None,
        };
        let key = match &change.public_key {
            Some(Some(k)) if !k.trim().is_empty() => Some(Some(
                k.trim()
                    .parse::<crate::verify::PublicKey>()
                    .map_err(|e| AppError::invalid("public_key", e.to_string()))?
                    .to_base64(),
            )),
            Some(_) => Some(None),
            None => None,
        };
        let skip = match &change.skip_versions {
            Some(list) => Some(
                list.iter()
                    .map(|v| {
                        crate::version::parse_user_version(v)
                            .map(|v| v.to_string())
                            .map_err(|e| AppError::invalid("skip_versions", e.to_string()))
                    })
                    .collect::<AppResult<Vec<_>>>()?,
            ),
            None => None,
        };
        let data_dir = match &change.data_dir {
            Some(dir) => {
                let dir = self.check_data_dir(dir.as_deref())?;
                if let Some(dir) = &dir {
                    mark_data_dir(dir)?;
                }
                Some(dir)
            }
            None => None,
        };
        // A broken line of a trust field this change sets is repaired by it, not a reason to refuse.
        let replaced: Vec<&str> = [
            ("data_dir", data_dir.is_some()),
            ("github_repo", repo.is_some()),
            ("feed", feed.is_some()),
            ("public_key", key.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect();
        let saved = Config::update_replacing(&self.inner.paths.config_file(), &replaced, |file| {
            if let Some(c) = change.update_channel {
                file.update_channel = c;
            }
            if let Some(b) = change.auto_check {
                file.auto_check = b;
            }
            if let Some(b) = change.auto_download {
                file.auto_download = b;
            }
            if let Some(b) = change.auto_install {
                file.auto_install = b;
            }
            if let Some(n) = change.backup_count {
                file.backup_count = n;
            }
            if let Some(h) = change.check_interval_hours {
                file.check_interval_hours = h;
            }
            if let Some(b) = change.keep_backend_running {
                file.keep_backend_running = b;
            }
            if let Some(d) = data_dir {
                file.data_dir = d;
            }
            if let Some(r) = repo {
                file.github_repo = r;
            }
            if let Some(f) = feed {
                file.feed = f;
            }
            if let Some(k) = key {
                file.public_key = k;
            }
            if let Some(s) = skip {
                file.skip_versions = s;
            }
            if let Some(p) = change.api_port {
                file.api_port = p;
            }
            Ok(file.clone())
        })?;
        self.inner.jobs.publish(EventKind::Settings);
        Ok(saved)
    }

    pub fn backend_status(&self) -> crate::supervisor::BackendStatus {
        let own = self.inner.supervisor.status();
        if own.state == "stopped" && own.supervisor_pid.is_none() {
            // Never started here: what another process may have written.
            crate::supervisor::read_status(&self.inner.paths.run_dir()).unwrap_or(own)
        } else {
            own
        }
    }

    /// The models the installed version's manifest names, and whether each is present.
    pub fn models_status(&self) -> AppResult<serde_json::Value> {
        let location = crate::models::locate(&self.inner.paths, None)?;
        let manifest = crate::models::ModelsManifest::load(&location)?;
        let statuses = crate::models::status(&self.inner.paths, &manifest)?;
        let ready = statuses
            .iter()
            .all(|s| !s.required || s.state == crate::models::ModelState::Present);
        Ok(serde_json::json!({
            "manifest": manifest.location,
            "models_dir": self.inner.paths.models_dir(),
            "ready": ready,
            "models": statuses,
        }))
    }

    // --- Long operations (jobs) ------------------------------------------------------------------------

    /// Holds the job slot for work done on the caller's thread (the headless runner's scheduled round).
    pub fn hold(&self, kind: JobKind) -> AppResult<JobGuard> {
        self.inner.jobs.hold(kind)
    }

    /// Asks the running job to stop.
    pub fn cancel(&self) -> Option<u64> {
        self.inner.jobs.cancel_current()
    }

    /// How an owner ends, before it stops its backend: cancels the running job (an update asked through
    /// the API is never left halfway between two versions), waits at most `patience` for it to end, then
    /// holds the job slot so that no request to the still-open API starts another (a backend start).
    /// The backend knows the API's token, so the owner stops it, then drops its API, and only then this
    /// slot: the port is never free while a backend of this owner runs. `None`: the job did not end in
    /// time.
    pub fn hold_for_exit(&self, patience: std::time::Duration) -> Option<JobGuard> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            self.cancel();
            match self.hold(JobKind::BackendStop) {
                Ok(slot) => return Some(slot),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => {
                    tracing::warn!("a job still runs as this launcher ends: {e}");
                    return None;
                }
            }
        }
    }

    /// Cancels job `id` if it is the one running; `None` when it is not (finished, or never existed).
    pub fn cancel_job(&self, id: u64) -> Option<u64> {
        self.inner.jobs.cancel_job(Some(id))
    }

    /// Runs a job started by `start` and waits for it here, handing its progress to `on_progress`: how a
    /// face without an owner (the CLI) uses the very operations the API and the window use. `cancel`
    /// cancelled (Ctrl-C) cancels the job, which then ends as it would through the API. Returns the job's
    /// result, or its failure message.
    pub fn run_here(
        &self,
        start: impl FnOnce(&Service) -> AppResult<u64>,
        cancel: &crate::download::CancelToken,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> AppResult<serde_json::Value> {
        // Subscribed before the job starts, so none of its events is missed.
        let events = self.subscribe();
        let id = start(self)?;
        let mut cancel_sent = false;
        loop {
            if cancel.is_cancelled() && !cancel_sent {
                self.cancel_job(id);
                cancel_sent = true;
            }
            match events.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(Event {
                    kind: EventKind::Progress { job, progress },
                    ..
                }) if job == id => on_progress(&progress),
                Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                // Dropped for falling behind (see `jobs::SUBSCRIBER_QUEUE`): the job table still says
                // how it ends; wait as the timeout would have.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
            if let Some(job) = self.job(id).filter(|j| j.state.is_finished()) {
                return match job.state {
                    JobState::Succeeded => Ok(job.result.unwrap_or(serde_json::Value::Null)),
                    _ => Err(AppError::Failed(
                        job.message
                            .unwrap_or_else(|| format!("the {} job failed", job.kind)),
                    )),
                };
            }
        }
    }

    fn spawn(
        &self,
        kind: JobKind,
        work: impl FnOnce(&Service, &JobCtx) -> AppResult<serde_json::Value> + Send + 'static,
    ) -> AppResult<u64> {
        let service = self.clone();
        self.inner.jobs.spawn(kind, move |ctx| {
            let before = current_version_text(service.paths());
            let outcome = work(&service, ctx);
            let seen = outcome.as_ref().map(Clone::clone).map_err(ToString::to_string);
            if let Some(record) = history::record_of(kind, before, &seen) {
                history::append(service.paths(), &record);
            }
            outcome
        })
    }

    /// Starts the long operation `op` as a job and returns its id at once.
    pub fn start(&self, op: Op) -> AppResult<u64> {
        match op {
            Op::Check { channel, platform } => self.check_with(channel, platform),
            Op::Download {
                version,
                platform,
                allow_downgrade,
            } => self.download_for(version, platform, allow_downgrade),
            Op::Install {
                version,
                full,
                allow_downgrade,
            } => self.install_with(version, full, allow_downgrade),
            Op::Rollback { to } => self.rollback(to),
            Op::BackendStart(options) => self.backend_start_with(options),
            Op::BackendStop => self.backend_stop(),
            Op::BackendRestart => self.backend_restart(),
            Op::ModelsDownload { all, manifest } => self.models_download_from(all, manifest),
        }
    }

    /// Checks for an update; the result is the `update check --json` report.
    pub fn check(&self) -> AppResult<u64> {
        self.check_with(None, None)
    }

    /// Checks `channel` (default: the configured one) for assets of `platform` (default: this machine).
    /// Only a check of this machine's own channel is remembered as what is offered.
    pub fn check_with(&self, channel: Option<Channel>, platform: Option<Platform>) -> AppResult<u64> {
        self.spawn(JobKind::Check, move |service, ctx| {
            ctx.progress(Progress::phase("checking"));
            let updater = service.updater_for(platform)?;
            let report = updater
                .check(channel)
                .map_err(|e| AppError::Failed(format!("checking {}: {e}", updater.source().describe())))?;
            let value = json_of(&report);
            if channel.is_none() && platform.is_none() {
                service.remember_check(report);
            }
            Ok(value)
        })
    }

    /// Downloads and verifies `version` (default: the offered update) without installing it; never a
    /// version older than the installed one (the API's path).
    pub fn download(&self, version: Option<Version>) -> AppResult<u64> {
        self.download_for(version, None, false)
    }

    /// Downloads `version` (default: the offered update) for `platform` (default: this machine). The
    /// result is the verified download (`version`, `asset`, `path`, `size`, `sha256`, …) with
    /// `"update_available": true`, or `{"update_available": false}` when there is nothing to download.
    /// For this machine, a version older than the installed one needs `allow_downgrade`.
    pub fn download_for(
        &self,
        version: Option<Version>,
        platform: Option<Platform>,
        allow_downgrade: bool,
    ) -> AppResult<u64> {
        // Another machine's download has nothing to do with this install's version.
        let allow_downgrade = allow_downgrade || platform.is_some();
        self.refuse_downgrade(version.as_ref(), allow_downgrade)?;
        self.spawn(JobKind::Download, move |service, ctx| {
            let updater = service.updater_for(platform)?.allow_downgrade(allow_downgrade);
            ctx.progress(Progress::phase("checking"));
            let Some((release, asset)) = updater.target(version.as_ref())? else {
                return Ok(serde_json::json!({ "update_available": false }));
            };
            let mut on_event = |e: UpdateEvent| report_update_event(ctx, &e);
            let done = if version.is_some() {
                updater.download_explicit(&release, &asset, &ctx.cancel, &mut on_event)
            } else {
                updater.download(&release, &asset, &ctx.cancel, &mut on_event)
            };
            let done = match done {
                Ok(done) => done,
                Err(e) => {
                    return Err(match cancelled_or(e) {
                        AppError::Engine(e) => AppError::Failed(format!("downloading {}: {e}", asset.name)),
                        other => other,
                    });
                }
            };
            let mut value = json_of(&done);
            value["update_available"] = true.into();
            Ok(value)
        })
    }

    /// Installs `version` (default: the offered update), proved healthy by this process's supervisor;
    /// never a version older than the installed one (the API's path: going back is [`Service::rollback`]).
    pub fn install(&self, version: Option<Version>, full: bool) -> AppResult<u64> {
        self.install_with(version, full, false)
    }

    /// [`Service::install`]; `allow_downgrade` lets `version` be older than the installed one (this
    /// machine's `update install --allow-downgrade`).
    pub fn install_with(
        &self,
        version: Option<Version>,
        full: bool,
        allow_downgrade: bool,
    ) -> AppResult<u64> {
        self.refuse_downgrade(version.as_ref(), allow_downgrade)?;
        self.spawn(JobKind::Install, move |service, ctx| {
            // The updater checks again under the install lock: the installed version may change meanwhile.
            let updater = service
                .updater()?
                .full_archive_only(full)
                .allow_downgrade(allow_downgrade);
            let paths = service.paths().clone();
            let mut gate = SupervisorGate::new(service.supervisor(), &paths);
            ctx.progress(Progress::phase("checking"));
            let report = updater
                .install(version.as_ref(), &mut gate, &ctx.cancel, &mut |e| {
                    report_update_event(ctx, &e)
                })
                .map_err(cancelled_or)?;
            Ok(match report {
                Some(report) => json_of(&report),
                None => serde_json::json!({ "installed_version": null, "update_available": false }),
            })
        })
    }

    /// Refuses at once (no job started) an explicit version older than the installed one, unless allowed;
    /// see [`crate::updater::Updater::refuse_downgrade`], which the job repeats under the install lock.
    fn refuse_downgrade(&self, version: Option<&Version>, allow_downgrade: bool) -> AppResult<()> {
        let (Some(wanted), false) = (version, allow_downgrade) else {
            return Ok(());
        };
        match crate::updater::current_version(&self.inner.paths).ok().flatten() {
            Some(current) if *wanted < current => Err(AppError::Engine(crate::Error::Downgrade {
                version: wanted.to_string(),
                current: current.to_string(),
            })),
            _ => Ok(()),
        }
    }

    /// Switches back to `to` (default: the previous version).
    pub fn rollback(&self, to: Option<Version>) -> AppResult<u64> {
        self.spawn(JobKind::Rollback, move |service, ctx| {
            let paths = service.paths().clone();
            let mut gate = SupervisorGate::new(service.supervisor(), &paths);
            ctx.progress(Progress::phase("rolling_back"));
            let report = crate::updater::rollback(&paths, to.as_ref(), &mut gate)?;
            service.inner.jobs.publish(EventKind::Settings);
            Ok(json_of(&report))
        })
    }

    /// Starts the installed version's backend (restarts it if it runs) and waits until it is healthy.
    pub fn backend_start(&self) -> AppResult<u64> {
        self.backend_start_with(StartOptions::default())
    }

    /// [`Service::backend_start`] with `options` (a bundle to try, a port).
    pub fn backend_start_with(&self, options: StartOptions) -> AppResult<u64> {
        self.spawn(JobKind::BackendStart, move |service, ctx| {
            service.start_backend(ctx, &options)
        })
    }

    pub fn backend_restart(&self) -> AppResult<u64> {
        self.spawn(JobKind::BackendRestart, |service, ctx| {
            ctx.progress(Progress::phase("stopping_backend"));
            service.supervisor().stop()?;
            service.start_backend(ctx, &StartOptions::default())
        })
    }

    pub fn backend_stop(&self) -> AppResult<u64> {
        self.spawn(JobKind::BackendStop, |service, ctx| {
            ctx.progress(Progress::phase("stopping_backend"));
            let outcome = service
                .supervisor()
                .stop_because("`personal-ai-agent backend stop` asked for it")?;
            Ok(serde_json::json!({
                "stopped": outcome.is_some(),
                "backend": service.supervisor().status(),
            }))
        })
    }

    /// Finishes an interrupted update (so the version started is a complete one that proved healthy),
    /// then starts the installed version's backend, or `options.bundle`'s, and waits for its health in
    /// short slices so a cancel (Ctrl-C) is honoured while a slow backend loads.
    fn start_backend(&self, ctx: &JobCtx, options: &StartOptions) -> AppResult<serde_json::Value> {
        let paths = self.paths().clone();
        let (dir, installed) = match &options.bundle {
            Some(dir) => (dir.clone(), None),
            None => {
                ctx.progress(Progress::phase("recovering"));
                let mut gate = SupervisorGate::new(self.supervisor(), &paths);
                crate::updater::recover(&paths, &self.settings().effective, &mut gate).map_err(|e| {
                    AppError::Failed(format!(
                        "finishing an interrupted update before starting the backend: {e}"
                    ))
                })?;
                let installer = crate::updater::installer(&paths);
                let version = installer.current_version().map_err(crate::Error::from)?;
                match (installer.current_dir().map_err(crate::Error::from)?, version) {
                    (Some(dir), version) => (dir, version),
                    (None, Some(version)) => {
                        return Err(AppError::Conflict(format!(
                            "version {version} is marked current but its folder is incomplete; repair it with `personal-ai-agent update install` (or POST /api/updates/install)"
                        )));
                    }
                    (None, None) => {
                        return Err(AppError::Conflict(
                            "nothing is installed yet; run `personal-ai-agent update install` (through the local API: POST /api/updates/install), then start the backend".into(),
                        ));
                    }
                }
            }
        };
        ctx.progress(Progress::phase("starting_backend"));
        let (plan, timeout) = match options.port {
            None if installed.is_some() => crate::updater::launch_plan(&dir, &paths)?,
            port => {
                // A bundle tried by hand is the user's own folder: its model files are never moved.
                if installed.is_some() {
                    crate::updater::prepare_models(&dir, &paths);
                }
                let spec = crate::agent::AgentSpec::load(&dir).map_err(crate::Error::from)?;
                let port = match port {
                    Some(p) => p,
                    None => crate::supervisor::free_loopback_port().map_err(|e| {
                        AppError::Failed(format!("cannot find a free loopback port for the backend: {e}"))
                    })?,
                };
                let mut plan = spec.resolve(&dir, port, &paths);
                if let Some(v) = &installed {
                    plan.version = Some(v.to_string());
                }
                let timeout = plan.ready_timeout;
                (plan, timeout)
            }
        };
        let version = plan.version.clone().unwrap_or_else(|| "unknown".into());
        crate::paths::ensure_dir(&paths.models_dir())?;
        self.supervisor().start(plan)?;
        // Running time, as the supervisor's own gate counts it: a stopped or suspended launcher does not
        // spend the backend's budget (`crate::awake`).
        let started = crate::awake::AwakeTimer::start();
        let took = loop {
            if ctx.cancel.is_cancelled() {
                let _ = self.supervisor().stop();
                return Err(AppError::Failed(format!(
                    "cancelled while the backend {version} was starting; it was stopped"
                )));
            }
            let slice = timeout
                .saturating_sub(started.elapsed())
                .min(std::time::Duration::from_millis(200));
            match self.supervisor().wait_healthy(slice) {
                Ok(took) => break took,
                Err(crate::supervisor::SupervisorError::NotHealthy { .. }) if started.elapsed() < timeout => {
                }
                Err(e) => {
                    let _ = self.supervisor().stop();
                    return Err(AppError::Failed(format!(
                        "the backend {version} did not become healthy; it was stopped: {e}"
                    )));
                }
            }
        };
        Ok(serde_json::json!({
            "time_to_healthy_ms": took.as_millis() as u64,
            "backend": self.supervisor().status(),
        }))
    }

    /// Downloads the missing models the installed version needs (`all`: the optional ones too). Asking
    /// for it is the consent; the space check still refuses what does not fit.
    pub fn models_download(&self, all: bool) -> AppResult<u64> {
        self.models_download_from(all, None)
    }

    /// [`Service::models_download`] of the models `manifest` (a path or URL) names, by default the
    /// installed version's.
    pub fn models_download_from(&self, all: bool, manifest: Option<String>) -> AppResult<u64> {
        self.spawn(JobKind::ModelsDownload, move |service, ctx| {
            let paths = service.paths().clone();
            let location = crate::models::locate(&paths, manifest.as_deref())?;
            let manifest = crate::models::ModelsManifest::load(&location)?;
            let mut on_event = |e: crate::models::ModelsEvent| report_models_event(ctx, &e);
            let plan = crate::models::plan(&paths, &manifest, all, &mut on_event)?;
            plan.check_space()?;
            let client = crate::http::client()?;
            let report = crate::models::download_missing(
                &client,
                &paths,
                &manifest,
                &plan,
                &crate::download::RetryPolicy::default(),
                &ctx.cancel,
                &mut on_event,
            )?;
            if report.cancelled {
                return Err(AppError::Cancelled);
            }
            let mut value = json_of(&report);
            value["all_present"] = report.all_present().into();
            Ok(value)
        })
    }
}

/// The installed version as text, for the history's `from`.
pub(crate) fn current_version_text(paths: &Paths) -> Option<String> {
    crate::updater::current_version(paths)
        .ok()
        .flatten()
        .map(|v| v.to_string())
}

/// A cancelled download becomes [`AppError::Cancelled`]; anything else stays the engine's error.
fn cancelled_or(e: crate::Error) -> AppError {
    if matches!(
        e,
        crate::Error::Download(crate::download::DownloadError::Cancelled { .. })
    ) {
        AppError::Cancelled
    } else {
        AppError::Engine(e)
    }
}

/// The file that marks a folder as a launcher's data folder.
pub const DATA_MARKER: &str = ".personal-ai-agent-data";

/// Whether `dir` is missing, empty, or marked as a data folder ([`DATA_MARKER`], a regular file).
fn is_empty_or_ours(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        Ok(mut entries) => {
            entries.next().is_none()
                || std::fs::symlink_metadata(dir.join(DATA_MARKER)).is_ok_and(|m| m.is_file())
        }
    }
}

/// Makes `dir` (this user's alone) and marks it as a data folder, after checking that nobody else can
/// change it or a folder above it ([`crate::paths::check_private_folder`]: the programs installed in it
/// would be theirs to change); that it can be written to is proven by the marker itself (created new: a
/// link planted in its place is not followed).
fn mark_data_dir(dir: &Path) -> AppResult<()> {
    let refuse = |e: std::io::Error| {
        AppError::invalid(
            "data_dir",
            format!(
                "{} cannot be written to ({e}); choose a folder of your own",
                dir.display()
            ),
        )
    };
    let not_private = |e: crate::paths::DataDirError| AppError::invalid("data_dir", e.to_string());
    let existed = dir.exists();
    crate::paths::check_private_folder(dir).map_err(not_private)?;
    crate::paths::create_private_dir(dir).map_err(refuse)?;
    // Installed programs are run from here: only this user may change what is in it. A volume without
    // permissions (FAT, exFAT) cannot be restricted; that is logged.
    if (!existed || cfg!(windows))
        && let Err(e) = crate::api::token::restrict_dir(dir)
    {
        tracing::warn!(path = %dir.display(), "the data folder could not be made this user's alone: {e}");
    }
    // Looked at again once made: another user may have made it first.
    crate::paths::check_private_folder(dir).map_err(not_private)?;
    let marker = dir.join(DATA_MARKER);
    if std::fs::symlink_metadata(&marker).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    crate::paths::write_data_marker(dir).map_err(refuse)
}

/// A feed is an `https://` URL (plain `http://` only on loopback) or an absolute folder.
fn check_feed(feed: &str) -> AppResult<String> {
    if feed.starts_with("file://") {
        // A folder written as a URL (docs/FEED.md), saved as the folder it names.
        return url::Url::parse(feed)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .map(|p| p.to_string_lossy().into_owned())
            .ok_or_else(|| {
                AppError::invalid(
                    "feed",
                    "is a file:// URL that names no folder of this computer; write it as file:///absolute/folder, or give the folder itself",
                )
            });
    }
    if feed.contains("://") {
        let url =
            url::Url::parse(feed).map_err(|e| AppError::invalid("feed", format!("is not a URL ({e})")))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if url.scheme() == "https" || (url.scheme() == "http" && loopback) {
            return Ok(feed.to_owned());
        }
        return Err(AppError::invalid(
            "feed",
            "must be an https:// URL (http:// only on 127.0.0.1) or an absolute folder",
        ));
    }
    if !std::path::Path::new(feed).is_absolute() {
        return Err(AppError::invalid(
            "feed",
            "is a relative folder; give an absolute path (the owner's working directory is not yours)",
        ));
    }
    Ok(feed.to_owned())
}

pub(crate) fn report_update_event(ctx: &JobCtx, event: &UpdateEvent) {
    ctx.progress(match progress_of_update(event) {
        Some(p) => p,
        None => return,
    });
}

/// The engine's update event as the progress every face draws (`None`: not worth a report).
pub fn progress_of_update(event: &UpdateEvent) -> Option<Progress> {
    use crate::download::DownloadEvent;
    Some(match event {
        UpdateEvent::Download(DownloadEvent::Started {
            total, resume_from, ..
        }) => Progress {
            done: Some(*resume_from),
            total: *total,
            ..Progress::phase(if *resume_from > 0 {
                "resuming"
            } else {
                "downloading"
            })
        },
        UpdateEvent::Download(DownloadEvent::Progress(p)) => Progress {
            done: Some(p.done),
            total: p.total,
            bytes_per_sec: Some(p.bytes_per_sec),
            eta_secs: p.eta.map(|d| d.as_secs()),
            ..Progress::phase("downloading")
        },
        UpdateEvent::Download(DownloadEvent::Retrying {
            attempt,
            delay,
            reason,
        }) => Progress::with_detail(
            "retrying",
            format!("attempt {attempt} in {:.1} s: {reason}", delay.as_secs_f64()),
        ),
        UpdateEvent::Download(DownloadEvent::Restarted { reason }) => {
            Progress::with_detail("restarted", reason.clone())
        }
        UpdateEvent::Download(DownloadEvent::Verifying) => Progress::phase("verifying"),
        UpdateEvent::Download(_) => return None,
        UpdateEvent::Verified { verified_by, signed } => Progress::with_detail(
            "verified",
            format!(
                "{verified_by}{}",
                if *signed {
                    " (signature verified)"
                } else {
                    " (unsigned)"
                }
            ),
        ),
        UpdateEvent::ReusingDownload { path } => {
            Progress::with_detail("reusing_download", path.display().to_string())
        }
        UpdateEvent::Installing { version } => Progress::with_detail("installing", version.to_string()),
        UpdateEvent::StoppingBackend => Progress::phase("stopping_backend"),
        UpdateEvent::StartingBackend { version } => {
            Progress::with_detail("starting_backend", version.to_string())
        }
        UpdateEvent::Healthy {
            version, downtime, ..
        } => Progress {
            done: Some(downtime.as_millis() as u64),
            ..Progress::with_detail("healthy", version.to_string())
        },
        UpdateEvent::RollingBack { from, to, reason } => Progress::with_detail(
            "rolling_back",
            format!(
                "{from} is not healthy ({reason}); rolling back to {}",
                to.as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "nothing".into())
            ),
        ),
    })
}

fn report_models_event(ctx: &JobCtx, event: &crate::models::ModelsEvent) {
    use crate::models::ModelsEvent;
    let progress = match event {
        ModelsEvent::Checking { name, done, total } => Progress {
            done: Some(*done),
            total: Some(*total),
            detail: Some(name.clone()),
            ..Progress::phase("checking_model")
        },
        ModelsEvent::Downloading {
            name,
            event: crate::download::DownloadEvent::Progress(p),
        } => Progress {
            done: Some(p.done),
            total: p.total,
            bytes_per_sec: Some(p.bytes_per_sec),
            eta_secs: p.eta.map(|d| d.as_secs()),
            ..Progress::with_detail("downloading_model", name.clone())
        },
        ModelsEvent::Downloading { .. } => return,
        ModelsEvent::Finished(report) => Progress::with_detail("model_finished", report.name.clone()),
    };
    ctx.progress(progress);
}
