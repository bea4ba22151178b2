//! The window's one background thread, `ui-worker`: every engine call the window makes runs here.
//!
//! The UI thread sends a [`Job`] over a channel and never waits; the worker answers with [`Reply`] values
//! on another channel, each followed by `request_repaint`, so the window wakes only when something
//! changed. Download progress is throttled to about ten replies a second. Jobs run one at a time, in order;
//! the one in progress can be cancelled through the shared [`CancelToken`] slot.
//!
//! The worker first decides which [`Engine`] the window drives (see ARCHITECTURE.md):
//! - **local**: no launcher owns the data folder, so the window takes the owner lock, builds the
//!   [`Service`] (whose supervisor is the window's backend) and serves the local API, as
//!   `run --headless` does; a CLI or the agent's page then drives this window's backend;
//! - **attached**: another launcher (a headless runner, another window) owns it; the window starts no
//!   backend, shows the owner's state by polling its API, and every button becomes an API call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::remote::Remote;
use crate::app::{EventKind, JobKind, Service};
use crate::check::{ChangelogEntry, CheckReport};
use crate::config::Config;
use crate::download::{CancelToken, DownloadEvent};
use crate::owner::{ApiInfo, Owner, OwnerError};
use crate::paths::Paths;
use crate::release::{Asset, Release};
use crate::supervisor::{BackendState, BackendStatus, Supervisor};
use crate::updater::{InstallReport, Status, SupervisorGate, UpdateEvent, Updater};
use crate::version::Channel;

/// How often progress replies are sent at most.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// How often an attached window asks the owner for its state.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long to wait for an owner that holds the lock to publish `run/api.json`.
const OWNER_PUBLISH_PATIENCE: Duration = Duration::from_secs(15);

/// The settings the window edits; saved into `config.json` (never the environment's overrides).
#[derive(Clone, Debug, PartialEq)]
pub struct SettingsForm {
    pub channel: Channel,
    pub auto_check: bool,
    pub auto_download: bool,
    pub auto_install: bool,
    pub backup_count: u32,
}

impl SettingsForm {
    fn from_config(config: &Config) -> Self {
        SettingsForm {
            channel: config.update_channel,
            auto_check: config.auto_check,
            auto_download: config.auto_download,
            auto_install: config.auto_install,
            backup_count: config.backup_count,
        }
    }
}

/// What the window asks the worker to do.
#[derive(Clone, Debug)]
pub enum Job {
    /// Finish an interrupted update and start the installed backend; then [`Job::Refresh`].
    Open,
    /// Reload settings and the install status.
    Refresh,
    /// Check for an update and fetch the changelog.
    Check,
    /// Install the latest release (first run).
    InstallLatest,
    /// Install the release a check offered.
    Install {
        release: Box<Release>,
        asset: Box<Asset>,
    },
    /// Install `version` (an attached window's check report carries no full release).
    InstallVersion(String),
    /// Go back to the previous installed version.
    Rollback,
    StartBackend,
    StopBackend,
    SaveSettings(SettingsForm),
}

/// A stage of an install, for the progress view.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    Preparing,
    Downloading {
        done: u64,
        total: Option<u64>,
        bytes_per_sec: f64,
        eta: Option<Duration>,
    },
    Verified {
        verified_by: String,
        signed: bool,
    },
    Installing {
        version: String,
    },
    StoppingBackend,
    StartingBackend {
        version: String,
    },
}

/// How an install ended.
#[derive(Clone, Debug)]
pub enum InstallOutcome {
    Healthy(InstallReport),
    RolledBack {
        from: String,
        to: Option<String>,
        reason: String,
    },
    Cancelled,
    Failed(String),
}

/// Which engine the window drives, as the window reads it.
#[derive(Clone, Debug)]
pub enum Mode {
    /// This window owns the install: `service`'s supervisor runs the backend; its API serves others.
    Local { service: Service, api_url: String },
    /// Another launcher owns it; this window shows that one's state.
    Attached { owner: ApiInfo },
}

/// What the worker tells the window.
#[derive(Debug)]
pub enum Reply {
    /// Sent first: whether the window owns the install or attached to its owner.
    Mode(Mode),
    /// An attached window's view of the owner's backend.
    RemoteBackend(BackendStatus),
    /// An attached window's view of the owner's running job (`None`: idle), as a sentence.
    OwnerJob(Option<String>),
    Snapshot {
        status: Box<Status>,
        form: SettingsForm,
        warnings: Vec<String>,
    },
    /// Reading the status failed (the window still works; it says why).
    SnapshotFailed(String),
    Checked(Result<Box<CheckReport>, String>),
    Changelog(Vec<ChangelogEntry>),
    Progress(Stage),
    Installed(InstallOutcome),
    /// A start, stop or save failed; the sentence names the cause.
    ActionFailed(String),
    SettingsSaved,
}

/// The window's end of the worker. Dropping it cancels the running job, ends the thread and waits for it,
/// so the backend (owned by the supervisor) is stopped before the window's process goes on.
pub struct WorkerHandle {
    jobs: Option<Sender<Job>>,
    replies: Receiver<Reply>,
    cancel: Arc<Mutex<CancelToken>>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Starts the `ui-worker` thread. `repaint` is called after every reply.
    pub fn spawn(paths: Paths, repaint: impl Fn() + Send + Sync + 'static) -> std::io::Result<WorkerHandle> {
        let (jobs, job_rx) = std::sync::mpsc::channel();
        let (reply_tx, replies) = std::sync::mpsc::channel();
        let cancel = Arc::new(Mutex::new(CancelToken::new()));
        let worker = Worker {
            paths,
            engine: Engine::Undecided(String::new()),
            cancel: cancel.clone(),
            replies: reply_tx,
            repaint: Arc::new(repaint),
            last_remote: std::cell::RefCell::new(None),
        };
        let thread = std::thread::Builder::new()
            .name("ui-worker".into())
            .spawn(move || worker.run(job_rx))?;
        Ok(WorkerHandle {
            jobs: Some(jobs),
            replies,
            cancel,
            thread: Some(thread),
        })
    }

    /// Queues a job; never blocks.
    pub fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // A send fails only when the thread has ended, and then there is nobody left to do the job.
            let _ = jobs.send(job);
        }
    }

    /// Cancels the job in progress (a download stops at its next chunk).
    pub fn cancel(&self) {
        self.cancel.lock().unwrap_or_else(|p| p.into_inner()).cancel();
    }

    /// The next reply, if one is waiting.
    pub fn try_recv(&self) -> Option<Reply> {
        self.replies.try_recv().ok()
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.cancel();
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the window drives.
enum Engine {
    /// Not decided yet, or the owner could not be reached (the sentence says why); retried on each job.
    Undecided(String),
    Local(Local),
    Remote(Remote),
}

/// The window as the owner. Dropped in field order: the API stops answering, then the lock is released
/// (the backend is stopped before, in [`Worker::run`]).
struct Local {
    /// Set by the `ui-repaint` thread when a job ended or the settings changed; the worker then refreshes.
    changed: Arc<AtomicBool>,
    service: Service,
    _api: crate::api::ApiServer,
    _owner: Owner,
}

struct Worker {
    paths: Paths,
    engine: Engine,
    cancel: Arc<Mutex<CancelToken>>,
    replies: Sender<Reply>,
    repaint: Arc<dyn Fn() + Send + Sync>,
    /// The owner's last status, so polling replies (and repaints) only when something changed.
    last_remote: std::cell::RefCell<Option<Value>>,
}

impl Worker {
    fn run(mut self, jobs: Receiver<Job>) {
        self.decide();
        loop {
            let job = match &self.engine {
                Engine::Remote(remote) => match jobs.recv_timeout(POLL_INTERVAL) {
                    Ok(job) => job,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        let answered = self.remote_refresh(remote, false);
                        if !answered && !crate::owner::is_owned(&self.paths) {
                            // The owner is gone (killed, or closed): this window takes over.
                            self.decide();
                            if let Engine::Local(local) = &self.engine {
                                self.handle(&local.service, Job::Open, &CancelToken::new());
                            }
                        }
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                },
                // An owner window looks again when an operation (maybe one asked through the API) ended.
                Engine::Local(local) => match jobs.recv_timeout(POLL_INTERVAL) {
                    Ok(job) => job,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if local.changed.swap(false, Ordering::SeqCst) {
                            self.refresh();
                        }
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                },
                Engine::Undecided(_) => match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            if let Engine::Undecided(_) = self.engine {
                self.decide();
            }
            let token = CancelToken::new();
            *self.cancel.lock().unwrap_or_else(|p| p.into_inner()) = token.clone();
            match &self.engine {
                Engine::Local(local) => self.handle(&local.service, job, &token),
                Engine::Remote(remote) => self.handle_remote(remote, job, &token),
                Engine::Undecided(why) => self.reply(Reply::SnapshotFailed(why.clone())),
            }
        }
        if let Engine::Local(local) = &self.engine
            && let Err(e) = local.service.supervisor().stop()
        {
            tracing::warn!("stopping the backend as the window closes: {e}");
        }
    }

    /// Owner or client: takes the owner lock if it is free (and serves the API), else attaches to the
    /// launcher that holds it once it has published where it listens.
    fn decide(&mut self) {
        *self.last_remote.borrow_mut() = None;
        let deadline = Instant::now() + OWNER_PUBLISH_PATIENCE;
        let engine = loop {
            match Owner::take(&self.paths) {
                Ok(owner) => break self.serve(owner),
                Err(OwnerError::Taken { .. }) => {}
                Err(e) => break Engine::Undecided(format!("Could not take ownership of the install: {e}")),
            }
            if let Some(info) = crate::owner::current(&self.paths) {
                break match Remote::connect(info, &self.paths.config_dir) {
                    Ok(remote) => Engine::Remote(remote),
                    Err(e) => Engine::Undecided(e),
                };
            }
            if Instant::now() >= deadline {
                break Engine::Undecided(
                    "Another launcher holds this install but does not say where its API listens; close it (or wait), then reopen the window.".into(),
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        match &engine {
            Engine::Local(local) => self.reply(Reply::Mode(Mode::Local {
                service: local.service.clone(),
                api_url: local._api.url(),
            })),
            Engine::Remote(remote) => self.reply(Reply::Mode(Mode::Attached {
                owner: remote.info.clone(),
            })),
            Engine::Undecided(why) => self.reply(Reply::SnapshotFailed(why.clone())),
        }
        self.engine = engine;
    }

    /// Serves the API over a new service, as `run --headless` does (`cli::api::serve`), and wakes the
    /// window on every service event (backend changes, jobs started through the API).
    fn serve(&self, owner: Owner) -> Engine {
        let service = Service::new(self.paths.clone());
        let port = service.settings().effective.api_port.unwrap_or(0);
        let api = match crate::api::ApiServer::start(
            service.clone(),
            crate::api::ApiOptions {
                port,
                allowed_origins: Vec::new(),
            },
        ) {
            Ok(api) => api,
            Err(e) => return Engine::Undecided(format!("Could not start the local API: {e}")),
        };
        let published = owner.publish(&ApiInfo {
            port: api.port(),
            pid: std::process::id(),
            version: crate::LAUNCHER_VERSION.to_owned(),
            url: api.url(),
            token_file: api.token_file().to_path_buf(),
        });
        if let Err(e) = published {
            // Owning without saying where would make every other face work beside this window: give the
            // ownership back (the lock is released with `owner`) and say why.
            return Engine::Undecided(format!(
                "Could not publish where this window's local API listens ({e}); check that the data folder is writable"
            ));
        }
        let events = service.subscribe();
        let repaint = self.repaint.clone();
        let changed = Arc::new(AtomicBool::new(false));
        let flag = changed.clone();
        // Ends when the service (and its event bus) is dropped with the window.
        let _ = std::thread::Builder::new()
            .name("ui-repaint".into())
            .spawn(move || {
                while let Ok(event) = events.recv() {
                    let ended = match &event.kind {
                        EventKind::Job { job } => job.state.is_finished(),
                        EventKind::Settings => true,
                        _ => false,
                    };
                    if ended {
                        flag.store(true, Ordering::SeqCst);
                    }
                    repaint();
                }
            });
        Engine::Local(Local {
            changed,
            service,
            _api: api,
            _owner: owner,
        })
    }

    fn reply(&self, reply: Reply) {
        let _ = self.replies.send(reply);
        (self.repaint)();
    }

    /// The settings file plus the environment's overrides, as the CLI loads them.
    fn settings(&self) -> (Config, Config, Vec<String>) {
        let loaded = Config::load(&self.paths.config_file());
        let mut warnings = loaded.warnings;
        let effective = loaded.config.with_env(&|k| std::env::var(k).ok(), &mut warnings);
        (loaded.config, effective, warnings)
    }

    fn updater(&self, config: &Config) -> Result<Updater, String> {
        Updater::new(&self.paths, config).map_err(|e| format!("Updates are off: {e}"))
    }

    /// A job of the window as the owner. Each long one holds the service's job slot, so an API request
    /// meanwhile gets 409 (and an API job running makes the window's wait, saying so).
    fn handle(&self, service: &Service, job: Job, cancel: &CancelToken) {
        let kind = match &job {
            Job::Open | Job::InstallLatest | Job::Install { .. } | Job::InstallVersion(_) => {
                Some(JobKind::Install)
            }
            Job::Check => Some(JobKind::Check),
            Job::Rollback => Some(JobKind::Rollback),
            Job::StartBackend => Some(JobKind::BackendStart),
            Job::StopBackend => Some(JobKind::BackendStop),
            Job::Refresh | Job::SaveSettings(_) => None,
        };
        let _slot = match kind.map(|k| service.hold(k)).transpose() {
            Ok(slot) => slot,
            Err(e) => {
                let e = format!("Not now: {e}");
                match job {
                    Job::Check => self.reply(Reply::Checked(Err(e))),
                    Job::InstallLatest | Job::Install { .. } | Job::InstallVersion(_) => {
                        self.reply(Reply::Installed(InstallOutcome::Failed(e)))
                    }
                    _ => self.reply(Reply::ActionFailed(e)),
                }
                return self.refresh();
            }
        };
        match job {
            Job::Open => {
                self.open(service);
                self.refresh();
            }
            Job::Refresh => self.refresh(),
            Job::Check => self.check(),
            Job::InstallLatest => {
                self.install(service, None, cancel);
                self.refresh();
            }
            Job::Install { release, asset } => {
                self.install(service, Some((*release, *asset)), cancel);
                self.refresh();
            }
            Job::InstallVersion(version) => {
                // The local check report always carries the release; this is for completeness.
                let target = self.updater(&self.settings().1).ok().and_then(|u| {
                    version
                        .parse()
                        .ok()
                        .and_then(|v| u.target(Some(&v)).ok().flatten())
                });
                match target {
                    Some(target) => self.install(service, Some(target), cancel),
                    None => self.reply(Reply::Installed(InstallOutcome::Failed(format!(
                        "Version {version} is not offered by the release source."
                    )))),
                }
                self.refresh();
            }
            Job::Rollback => {
                let mut gate = SupervisorGate::new(service.supervisor(), &self.paths);
                if let Err(e) = crate::updater::rollback(&self.paths, None, &mut gate) {
                    self.reply(Reply::ActionFailed(format!("Could not roll back: {e}")));
                }
                self.refresh();
            }
            Job::StartBackend => {
                if let Err(e) = self.start_backend(service.supervisor()) {
                    self.reply(Reply::ActionFailed(e));
                }
            }
            Job::StopBackend => {
                if let Err(e) = service.supervisor().stop() {
                    self.reply(Reply::ActionFailed(format!("Could not stop the backend: {e}")));
                }
            }
            Job::SaveSettings(form) => {
                self.save_settings(&form);
                self.refresh();
            }
        }
    }

    fn open(&self, service: &Service) {
        let supervisor = service.supervisor();
        let (_, config, _) = self.settings();
        let mut gate = SupervisorGate::new(supervisor, &self.paths);
        if let Err(e) = crate::updater::recover(&self.paths, &config, &mut gate) {
            self.reply(Reply::ActionFailed(format!(
                "Could not finish an interrupted update: {e}"
            )));
        }
        let installed = matches!(crate::updater::current_version(&self.paths), Ok(Some(_)));
        if installed
            && !supervisor.is_wanted_running()
            && let Err(e) = self.start_backend(supervisor)
        {
            self.reply(Reply::ActionFailed(e));
        }
    }

    fn refresh(&self) {
        let (file, effective, warnings) = self.settings();
        match crate::updater::status(&self.paths, &effective) {
            Ok(status) => self.reply(Reply::Snapshot {
                status: Box::new(status),
                form: SettingsForm::from_config(&file),
                warnings,
            }),
            Err(e) => self.reply(Reply::SnapshotFailed(format!(
                "Could not read the install status: {e}"
            ))),
        }
    }

    fn check(&self) {
        let (_, config, _) = self.settings();
        let updater = match self.updater(&config) {
            Ok(u) => u,
            Err(e) => return self.reply(Reply::Checked(Err(e))),
        };
        match updater.check(None) {
            Ok(report) => self.reply(Reply::Checked(Ok(Box::new(report)))),
            Err(e) => {
                return self.reply(Reply::Checked(Err(format!(
                    "The update check failed: {e}. Check the network or the release source, then try again."
                ))));
            }
        }
        // The changelog is a second look at the same source; a failure here only leaves it empty.
        match updater.changelog(None) {
            Ok(entries) => self.reply(Reply::Changelog(entries)),
            Err(e) => tracing::warn!("reading the changelog failed: {e}"),
        }
    }

    fn start_backend(&self, supervisor: &Supervisor) -> Result<(), String> {
        let dir = crate::updater::installer(&self.paths)
            .current_dir()
            .map_err(|e| format!("Could not read the installed version: {e}"))?
            .ok_or("Nothing is installed yet: install the agent first.")?;
        let (plan, _) = crate::updater::launch_plan(&dir, &self.paths)
            .map_err(|e| format!("Could not read how to start the backend: {e}"))?;
        supervisor
            .start(plan)
            .map_err(|e| format!("Could not start the backend: {e}"))?;
        Ok(())
    }

    fn install(&self, service: &Service, target: Option<(Release, Asset)>, cancel: &CancelToken) {
        let supervisor = service.supervisor();
        self.reply(Reply::Progress(Stage::Preparing));
        let (_, config, _) = self.settings();
        let updater = match self.updater(&config) {
            Ok(u) => u,
            Err(e) => return self.reply(Reply::Installed(InstallOutcome::Failed(e))),
        };
        let mut rolled_back = None;
        let mut last_progress: Option<Instant> = None;
        let mut on_event = |event: UpdateEvent| {
            let stage = match event {
                UpdateEvent::Download(DownloadEvent::Progress(p)) => {
                    let finished = p.total.is_some_and(|t| p.done >= t);
                    if !finished && last_progress.is_some_and(|at| at.elapsed() < PROGRESS_INTERVAL) {
                        return;
                    }
                    last_progress = Some(Instant::now());
                    Stage::Downloading {
                        done: p.done,
                        total: p.total,
                        bytes_per_sec: p.bytes_per_sec,
                        eta: p.eta,
                    }
                }
                UpdateEvent::Download(_)
                | UpdateEvent::ReusingDownload { .. }
                | UpdateEvent::Healthy { .. } => {
                    return;
                }
                UpdateEvent::Verified { verified_by, signed } => Stage::Verified { verified_by, signed },
                UpdateEvent::Installing { version } => Stage::Installing {
                    version: version.to_string(),
                },
                UpdateEvent::StoppingBackend => Stage::StoppingBackend,
                UpdateEvent::StartingBackend { version } => Stage::StartingBackend {
                    version: version.to_string(),
                },
                UpdateEvent::RollingBack { from, to, reason } => {
                    rolled_back = Some(InstallOutcome::RolledBack {
                        from: from.to_string(),
                        to: to.map(|v| v.to_string()),
                        reason,
                    });
                    return;
                }
            };
            self.reply(Reply::Progress(stage));
        };
        let mut gate = SupervisorGate::new(supervisor, &self.paths);
        let result = match &target {
            Some((release, asset)) => updater
                .install_release(release, asset, &mut gate, cancel, &mut on_event)
                .map(Some),
            None => updater.install(None, &mut gate, cancel, &mut on_event),
        };
        let outcome = match result {
            Ok(Some(report)) => InstallOutcome::Healthy(report),
            Ok(None) => InstallOutcome::Failed(
                "No installable release is published for this platform yet; try again later.".into(),
            ),
            Err(_) if cancel.is_cancelled() => InstallOutcome::Cancelled,
            Err(e) => {
                rolled_back.unwrap_or_else(|| InstallOutcome::Failed(format!("The install failed: {e}")))
            }
        };
        // A first install (or an update while nothing ran) leaves the backend stopped; the window's promise
        // is a running agent.
        if matches!(outcome, InstallOutcome::Healthy(_))
            && !supervisor.is_wanted_running()
            && let Err(e) = self.start_backend(supervisor)
        {
            self.reply(Reply::ActionFailed(e));
        }
        self.reply(Reply::Installed(outcome));
    }

    fn save_settings(&self, form: &SettingsForm) {
        let path = self.paths.config_file();
        let saved = Config::update(&path, |file| {
            file.update_channel = form.channel;
            file.auto_check = form.auto_check;
            file.auto_download = form.auto_download;
            file.auto_install = form.auto_install;
            file.backup_count = form.backup_count;
            Ok(())
        });
        match saved {
            Ok(()) => self.reply(Reply::SettingsSaved),
            Err(e) => self.reply(Reply::ActionFailed(format!("Could not save the settings: {e}"))),
        }
    }
}

// --- Attached: every job is a call to the owner's API --------------------------------------------------

impl Worker {
    fn handle_remote(&self, remote: &Remote, job: Job, cancel: &CancelToken) {
        match job {
            // An attached window finishes no update and starts no backend: the owner does that.
            Job::Open | Job::Refresh => {}
            Job::Check => self.remote_check(remote, cancel),
            Job::InstallLatest => self.remote_install(remote, json!({}), cancel),
            Job::Install { release, .. } => {
                self.remote_install(remote, json!({ "version": release.version.to_string() }), cancel)
            }
            Job::InstallVersion(version) => {
                self.remote_install(remote, json!({ "version": version }), cancel)
            }
            Job::Rollback => {
                if let Err(e) = self.remote_job(remote, "/api/updates/rollback", &json!({}), cancel) {
                    self.reply(Reply::ActionFailed(format!("Could not roll back: {e}")));
                }
            }
            Job::StartBackend => {
                if let Err(e) = self.remote_job(remote, "/api/backend/start", &json!({}), cancel) {
                    self.reply(Reply::ActionFailed(format!("Could not start the backend: {e}")));
                }
            }
            Job::StopBackend => {
                if let Err(e) = self.remote_job(remote, "/api/backend/stop", &json!({}), cancel) {
                    self.reply(Reply::ActionFailed(format!("Could not stop the backend: {e}")));
                }
            }
            Job::SaveSettings(form) => {
                let body = json!({
                    "update_channel": form.channel,
                    "auto_check": form.auto_check,
                    "auto_download": form.auto_download,
                    "auto_install": form.auto_install,
                    "backup_count": form.backup_count,
                });
                match remote.post("/api/updates/configure", &body) {
                    Ok((200, _)) => self.reply(Reply::SettingsSaved),
                    Ok((status, answer)) => self.reply(Reply::ActionFailed(format!(
                        "Could not save the settings ({status}): {}",
                        answer["error"].as_str().unwrap_or("no reason given")
                    ))),
                    Err(e) => self.reply(Reply::ActionFailed(e)),
                }
            }
        }
        self.remote_refresh(remote, true);
    }

    /// The owner's state: `GET /api/updates/status` (update status, backend, running job). Unless
    /// `always`, nothing is sent when it is as before. Returns whether the owner answered.
    fn remote_refresh(&self, remote: &Remote, always: bool) -> bool {
        let status = match remote.get("/api/updates/status") {
            Ok(s) => s,
            Err(e) => {
                self.reply(Reply::SnapshotFailed(e));
                return false;
            }
        };
        if !always && self.last_remote.borrow().as_ref() == Some(&status) {
            return true;
        }
        *self.last_remote.borrow_mut() = Some(status.clone());
        match serde_json::from_value::<Status>(status["update"].clone()) {
            Ok(update) => {
                let form = SettingsForm {
                    channel: update.channel,
                    auto_check: update.auto_check,
                    auto_download: update.auto_download,
                    auto_install: update.auto_install,
                    backup_count: update.backup_count,
                };
                self.reply(Reply::Snapshot {
                    status: Box::new(update),
                    form,
                    warnings: Vec::new(),
                });
            }
            Err(e) => self.reply(Reply::SnapshotFailed(format!(
                "The owner's status could not be read ({e}); is it a different launcher version?"
            ))),
        }
        if let Ok(backend) = serde_json::from_value::<BackendStatus>(status["backend"].clone()) {
            self.reply(Reply::RemoteBackend(backend));
        }
        let running = status["job"]
            .as_object()
            .filter(|j| {
                !matches!(
                    j.get("state").and_then(Value::as_str),
                    Some("succeeded" | "failed")
                )
            })
            .map(|j| {
                let kind = j
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("job")
                    .replace('_', " ");
                match j.get("progress").map(progress_stage) {
                    Some(stage) => format!("The owner is busy ({kind}): {}", super::app::stage_line(&stage)),
                    None => format!("The owner is busy ({kind})"),
                }
            });
        self.reply(Reply::OwnerJob(running));
        true
    }

    fn remote_check(&self, remote: &Remote, cancel: &CancelToken) {
        let job = match self.remote_job(remote, "/api/updates/check", &json!({}), cancel) {
            Ok(job) => job,
            Err(e) => return self.reply(Reply::Checked(Err(format!("The update check failed: {e}")))),
        };
        match serde_json::from_value::<CheckReport>(job["result"].clone()) {
            Ok(report) => self.reply(Reply::Checked(Ok(Box::new(report)))),
            Err(e) => {
                return self.reply(Reply::Checked(Err(format!(
                    "The owner's check report could not be read: {e}"
                ))));
            }
        }
        match remote.get("/api/updates/changelog").and_then(|c| {
            serde_json::from_value::<Vec<ChangelogEntry>>(c["releases"].clone()).map_err(|e| e.to_string())
        }) {
            Ok(entries) => self.reply(Reply::Changelog(entries)),
            Err(e) => tracing::warn!("reading the owner's changelog failed: {e}"),
        }
    }

    fn remote_install(&self, remote: &Remote, body: Value, cancel: &CancelToken) {
        self.reply(Reply::Progress(Stage::Preparing));
        let outcome = match self.remote_job(remote, "/api/updates/install", &body, cancel) {
            Ok(job) => match serde_json::from_value::<InstallReport>(job["result"].clone()) {
                Ok(report) => InstallOutcome::Healthy(report),
                Err(_) => InstallOutcome::Failed(
                    "No installable release is published for this platform yet; try again later.".into(),
                ),
            },
            Err(_) if cancel.is_cancelled() => InstallOutcome::Cancelled,
            Err(e) if e.contains("rolled back") => InstallOutcome::RolledBack {
                from: body["version"].as_str().unwrap_or("the new version").to_owned(),
                to: None,
                reason: e,
            },
            Err(e) => InstallOutcome::Failed(format!("The install failed: {e}")),
        };
        self.reply(Reply::Installed(outcome));
    }

    /// Starts a long operation on the owner and follows it to its end, relaying the progress of an install
    /// (the one operation whose progress the window draws) and asking the owner to cancel it when the
    /// window's cancel is pressed. Returns the finished job.
    fn remote_job(
        &self,
        remote: &Remote,
        path: &str,
        body: &Value,
        cancel: &CancelToken,
    ) -> Result<Value, String> {
        let relay_progress = path == "/api/updates/install";
        let id = remote.start_job(path, body)?;
        let mut cancel_sent = false;
        let mut last_phase = None;
        loop {
            let job = remote.job(id)?;
            match job["state"].as_str() {
                Some("succeeded") => return Ok(job),
                Some("failed") => {
                    return Err(job["message"]
                        .as_str()
                        .unwrap_or("the owner gave no reason")
                        .to_owned());
                }
                _ => {}
            }
            if relay_progress
                && let Some(progress) = job.get("progress").filter(|p| !p.is_null())
                && last_phase.as_ref() != Some(progress)
            {
                last_phase = Some(progress.clone());
                self.reply(Reply::Progress(progress_stage(progress)));
            }
            if cancel.is_cancelled() && !cancel_sent {
                cancel_sent = true;
                let _ = remote.post("/api/jobs/cancel", &json!({ "job": id }));
            }
            std::thread::sleep(PROGRESS_INTERVAL);
        }
    }
}

/// An API job's `progress` (`phase`, `done`, `total`, `detail`) as the window's stage.
fn progress_stage(progress: &Value) -> Stage {
    let detail = progress["detail"].as_str().unwrap_or_default().to_owned();
    match progress["phase"].as_str().unwrap_or_default() {
        "downloading" => Stage::Downloading {
            done: progress["done"].as_u64().unwrap_or(0),
            total: progress["total"].as_u64(),
            bytes_per_sec: 0.0,
            eta: None,
        },
        "verified" => Stage::Verified {
            verified_by: detail,
            signed: false,
        },
        "installing" => Stage::Installing { version: detail },
        "stopping_backend" => Stage::StoppingBackend,
        "starting_backend" | "healthy" => Stage::StartingBackend { version: detail },
        _ => Stage::Preparing,
    }
}

/// The owner's `backend status` as the state the header draws.
pub fn backend_state_of(status: &BackendStatus) -> BackendState {
    let since = status.since.unwrap_or(status.updated_at);
    match status.state.as_str() {
        "running" => BackendState::Running {
            pid: status.pid.unwrap_or(0),
            port: status.port.unwrap_or(0),
            since,
        },
        "starting" => BackendState::Starting { since },
        "unhealthy" => BackendState::Unhealthy {
            pid: status.pid.unwrap_or(0),
            reason: status.reason.clone().unwrap_or_default(),
        },
        "crashed" => BackendState::Crashed {
            exit: status.exit.clone().unwrap_or_default(),
            reason: status.reason.clone().unwrap_or_default(),
        },
        _ => BackendState::Stopped,
    }
}
