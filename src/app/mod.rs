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

pub mod jobs;

use std::sync::{Arc, Mutex, PoisonError};

use semver::Version;
use serde::Serialize;

pub use jobs::{Event, EventKind, Job, JobCtx, JobGuard, JobKind, JobState, Jobs, Progress};

use crate::config::Config;
use crate::paths::Paths;
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
    pub github_repo: Option<Option<String>>,
    pub feed: Option<Option<String>>,
    pub public_key: Option<Option<String>>,
    pub skip_versions: Option<Vec<String>>,
    pub api_port: Option<Option<u16>>,
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
        for w in warnings {
            tracing::warn!("{w}");
        }
        Settings {
            file: loaded.config,
            effective,
        }
    }

    /// An updater built afresh from the current settings (refused when a trust setting is unreadable).
    pub fn updater(&self) -> AppResult<Updater> {
        Ok(Updater::new(&self.inner.paths, &self.settings().effective)?)
    }

    // --- Short operations ------------------------------------------------------------------------------

    pub fn status(&self) -> AppResult<ServiceStatus> {
        let settings = self.settings();
        Ok(ServiceStatus {
            update: crate::updater::status(&self.inner.paths, &settings.effective)?,
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

    pub fn job(&self, id: u64) -> Option<Job> {
        self.inner.jobs.get(id)
    }

    /// The release notes since the installed version; with nothing installed, the offered release's.
    pub fn changelog(&self) -> AppResult<Changelog> {
        let settings = self.settings();
        let updater = Updater::new(&self.inner.paths, &settings.effective)?;
        let current = crate::updater::current_version(&self.inner.paths)?;
        let mut releases = updater.changelog(None)?;
        if current.is_none() {
            releases.truncate(1);
        }
        Ok(Changelog {
            current_version: current.map(|v| v.to_string()),
            channel: settings.effective.update_channel,
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

    /// Applies `change` after checking every field (nothing is written when one is refused). Returns the
    /// settings file as saved.
    pub fn configure(&self, change: ConfigChange) -> AppResult<Config> {
        if let Some(h) = change.check_interval_hours {
            crate::config::validate_check_interval(h)
                .map_err(|reason| AppError::invalid("check_interval_hours", reason))?;
        }
        if change.backup_count == Some(0) {
            return Err(AppError::invalid(
                "backup_count",
                "is 0; keep at least 1 previous version so a rollback is possible",
            ));
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
        let saved = Config::update(&self.inner.paths.config_file(), |file| {
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
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
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
        self.inner.jobs.spawn(kind, move |ctx| work(&service, ctx))
    }

    /// Checks for an update; the result is the `update check --json` report.
    pub fn check(&self) -> AppResult<u64> {
        self.spawn(JobKind::Check, |service, ctx| {
            ctx.progress(Progress::phase("checking"));
            let report = service.updater()?.check(None)?;
            let value = json_of(&report);
            *service
                .inner
                .last_check
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(report);
            Ok(value)
        })
    }

    /// Downloads and verifies `version` (default: the offered update) without installing it.
    pub fn download(&self, version: Option<Version>) -> AppResult<u64> {
        self.spawn(JobKind::Download, move |service, ctx| {
            let updater = service.updater()?;
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
            Ok(json_of(&done.map_err(cancelled_or)?))
        })
    }

    /// Installs `version` (default: the offered update), proved healthy by this process's supervisor.
    pub fn install(&self, version: Option<Version>) -> AppResult<u64> {
        self.spawn(JobKind::Install, move |service, ctx| {
            let updater = service.updater()?;
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
        self.spawn(JobKind::BackendStart, |service, ctx| service.start_current(ctx))
    }

    pub fn backend_restart(&self) -> AppResult<u64> {
        self.spawn(JobKind::BackendRestart, |service, ctx| {
            ctx.progress(Progress::phase("stopping_backend"));
            service.supervisor().stop()?;
            service.start_current(ctx)
        })
    }

    pub fn backend_stop(&self) -> AppResult<u64> {
        self.spawn(JobKind::BackendStop, |service, ctx| {
            ctx.progress(Progress::phase("stopping_backend"));
            let outcome = service.supervisor().stop()?;
            Ok(serde_json::json!({
                "stopped": outcome.is_some(),
                "backend": service.supervisor().status(),
            }))
        })
    }

    fn start_current(&self, ctx: &JobCtx) -> AppResult<serde_json::Value> {
        let dir = crate::updater::installer(self.paths())
            .current_dir()
            .map_err(crate::Error::from)?
            .ok_or_else(|| {
                AppError::Conflict(
                    "nothing is installed, so there is no backend to start; install the agent first (POST /api/updates/install or `personal-ai-agent update install`)".into(),
                )
            })?;
        ctx.progress(Progress::phase("starting_backend"));
        let (plan, timeout) = crate::updater::launch_plan(&dir, self.paths())?;
        let took = self.supervisor().start_and_wait(plan, timeout)?;
        Ok(serde_json::json!({
            "time_to_healthy_ms": took.as_millis() as u64,
            "backend": self.supervisor().status(),
        }))
    }

    /// Downloads the missing models the installed version needs (`all`: the optional ones too). Asking
    /// for it is the consent; the space check still refuses what does not fit.
    pub fn models_download(&self, all: bool) -> AppResult<u64> {
        self.spawn(JobKind::ModelsDownload, move |service, ctx| {
            let paths = service.paths().clone();
            let location = crate::models::locate(&paths, None)?;
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

/// A feed is an `https://` URL (plain `http://` only on loopback) or an absolute folder.
fn check_feed(feed: &str) -> AppResult<String> {
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

fn report_update_event(ctx: &JobCtx, event: &UpdateEvent) {
    use crate::download::DownloadEvent;
    let progress = match event {
        UpdateEvent::Download(DownloadEvent::Started {
            total, resume_from, ..
        }) => Progress {
            done: Some(*resume_from),
            total: *total,
            ..Progress::phase("downloading")
        },
        UpdateEvent::Download(DownloadEvent::Progress(p)) => Progress {
            done: Some(p.done),
            total: p.total,
            ..Progress::phase("downloading")
        },
        UpdateEvent::Download(DownloadEvent::Retrying { reason, .. }) => Progress {
            detail: Some(reason.clone()),
            ..Progress::phase("retrying")
        },
        UpdateEvent::Download(_) => return,
        UpdateEvent::Verified { verified_by, .. } => Progress {
            detail: Some(verified_by.clone()),
            ..Progress::phase("verified")
        },
        UpdateEvent::ReusingDownload { .. } => Progress::phase("reusing_download"),
        UpdateEvent::Installing { version } => Progress {
            detail: Some(version.to_string()),
            ..Progress::phase("installing")
        },
        UpdateEvent::StoppingBackend => Progress::phase("stopping_backend"),
        UpdateEvent::StartingBackend { version } => Progress {
            detail: Some(version.to_string()),
            ..Progress::phase("starting_backend")
        },
        UpdateEvent::Healthy { version, .. } => Progress {
            detail: Some(version.to_string()),
            ..Progress::phase("healthy")
        },
        UpdateEvent::RollingBack { reason, .. } => Progress {
            detail: Some(reason.clone()),
            ..Progress::phase("rolling_back")
        },
    };
    ctx.progress(progress);
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
            detail: Some(name.clone()),
            ..Progress::phase("downloading_model")
        },
        ModelsEvent::Downloading { .. } => return,
        ModelsEvent::Finished(report) => Progress {
            detail: Some(report.name.clone()),
            ..Progress::phase("model_finished")
        },
    };
    ctx.progress(progress);
}
