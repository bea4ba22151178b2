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

use crate::api::client::Client;
use crate::app::control::Control;
use crate::app::{AppError, ConfigChange, EventKind, Op, Progress, Service, StartOptions};
use crate::check::{ChangelogEntry, CheckReport};
use crate::config::Config;
use crate::download::CancelToken;
use crate::owner::{ApiInfo, Owner, OwnerError};
use crate::paths::Paths;
use crate::supervisor::{BackendState, BackendStatus};
use crate::updater::{InstallReport, Status};
use crate::version::Channel;

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
    pub check_interval_hours: f64,
    pub keep_backend_running: bool,
}

impl SettingsForm {
    fn from_config(config: &Config) -> Self {
        SettingsForm {
            channel: config.update_channel,
            auto_check: config.auto_check,
            auto_download: config.auto_download,
            auto_install: config.auto_install,
            backup_count: config.backup_count,
            check_interval_hours: config.check_interval_hours,
            keep_backend_running: config.keep_backend_running,
        }
    }
}

/// What the window asks the worker to do. Every long one is a service operation ([`Op`]), run in this
/// process when the window owns the install, or by the owner through its API when attached.
#[derive(Clone, Debug)]
pub enum Job {
    /// Tell the window which engine it drives; the owner's own work (recovery, the backend, scheduled
    /// checks) is the autopilot's. Then [`Job::Refresh`].
    Open,
    /// Reload settings and the install status.
    Refresh,
    /// Check for an update and fetch the changelog.
    Check,
    /// Install this version, or (`None`) the offered update, or on first run the latest release.
    Install(Option<String>),
    /// Go back to this installed version, or (`None`) the previous one.
    Rollback(Option<String>),
    StartBackend,
    StopBackend,
    RestartBackend,
    SaveSettings(SettingsForm),
    /// Never offer this version automatically.
    Skip(String),
    /// Offer this skipped version again.
    Unskip(String),
    /// Set where releases come from (the first-run wizard): a GitHub `owner/name`, or a feed URL or folder.
    SetSource(String),
    /// Keep the data folder (installs, models, downloads, logs) in this folder: before the first install
    /// only. Answered with [`Reply::DataDirMoved`].
    SetDataDir(String),
    /// Download the missing models the installed version needs.
    DownloadModels,
    /// Make the offline demo's home (key, signed releases, feed) whose backend is this launcher
    /// executable, and answer [`Reply::DemoReady`].
    PrepareDemo(std::path::PathBuf),
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
    RollingBack {
        reason: String,
    },
}

/// How an install ended.
#[derive(Clone, Debug)]
pub enum InstallOutcome {
    Healthy(Box<InstallReport>),
    RolledBack {
        from: String,
        to: Option<String>,
        reason: String,
    },
    Cancelled,
    /// Nothing needed doing (already current); the sentence says so.
    NothingToDo(String),
    Failed(String),
}

/// Which engine the window drives, as the window reads it.
#[derive(Clone, Debug)]
pub enum Mode {
    /// This window owns the install: `service`'s supervisor runs the backend; its API serves others.
    Local {
        service: Service,
        api_url: String,
        page_key: PageKey,
    },
    /// Another launcher owns it; this window shows that one's state.
    Attached { owner: ApiInfo, page_key: PageKey },
}

/// The key that opens the agent's page for the owner's current start (`api::token::page_key`), which
/// "Open agent" puts in the page's address. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PageKey(String);

impl PageKey {
    /// The key for the owner start that made `token`.
    pub fn of_token(token: &str) -> PageKey {
        PageKey(crate::api::token::page_key(token))
    }

    /// The address that opens the agent's page at `base` (`http://127.0.0.1:<port>/`).
    pub fn url(&self, base: &str) -> String {
        format!("{base}?key={}", self.0)
    }
}

impl std::fmt::Debug for PageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageKey(..)")
    }
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
    /// An automatic round (the owner's schedule) found this update; sent once per offered version.
    AutoOffer(Box<CheckReport>),
    Changelog(Vec<ChangelogEntry>),
    Progress(Stage),
    Installed(InstallOutcome),
    /// A start, stop or save failed; the sentence names the cause.
    ActionFailed(String),
    SettingsSaved,
    /// The offline demo is ready: the window switches to its home.
    DemoReady(Paths),
    /// The data folder was moved (before the first install): the window drives these paths from now on.
    DataDirMoved(Paths),
    /// What models the installed version needs and which are present (the API's `GET /api/models`).
    Models(Result<Value, String>),
    /// A models download ended: what happened, in a sentence.
    ModelsDone(Result<String, String>),
    /// The update history, newest first, and the GitHub repository problems are reported to (if any).
    History {
        records: Vec<crate::app::history::Record>,
        repo: Option<String>,
        /// Free bytes where the data folder is (for the wizard).
        free_space: Option<u64>,
    },
}

/// The window's end of the worker. Dropping it cancels the running job, ends the thread and waits for it,
/// so the backend (owned by the supervisor) is stopped before the window's process goes on.
pub struct WorkerHandle {
    jobs: Option<Sender<Job>>,
    replies: Receiver<Reply>,
    cancel: Arc<Mutex<CancelToken>>,
    /// Set as the window closes: the launcher executable that takes the agent over in the background
    /// when the settings say to keep it running (see [`WorkerHandle::hand_over_on_close`]).
    hand_over: Arc<Mutex<Option<std::path::PathBuf>>>,
    logs_visible: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Starts the `ui-worker` thread. `repaint` is called after every reply.
    pub fn spawn(paths: Paths, repaint: impl Fn() + Send + Sync + 'static) -> std::io::Result<WorkerHandle> {
        let (jobs, job_rx) = std::sync::mpsc::channel();
        let (reply_tx, replies) = std::sync::mpsc::channel();
        let cancel = Arc::new(Mutex::new(CancelToken::new()));
        let hand_over = Arc::new(Mutex::new(None));
        let logs_visible = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            hand_over: hand_over.clone(),
            logs_visible: logs_visible.clone(),
            paths,
            engine: Engine::Undecided(String::new()),
            cancel: cancel.clone(),
            replies: reply_tx,
            repaint: Arc::new(repaint),
            last_remote: std::cell::RefCell::new(None),
            auto_offered: std::cell::RefCell::new(None),
            log_lines: std::cell::Cell::new(0),
            asked_stop: std::cell::Cell::new(false),
            attached_key: std::cell::RefCell::new(None),
        };
        let thread = std::thread::Builder::new()
            .name("ui-worker".into())
            .spawn(move || worker.run(job_rx))?;
        Ok(WorkerHandle {
            jobs: Some(jobs),
            replies,
            cancel,
            hand_over,
            logs_visible,
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

    /// The window is closing for good (not switching homes): when this window owns the install, the
    /// backend runs, and `keep_backend_running` is set, `launcher backend start` takes the install over
    /// once this worker let go of it, so the agent keeps running (after a restart under its new owner).
    pub fn hand_over_on_close(&self, launcher: std::path::PathBuf) {
        *self.hand_over.lock().unwrap_or_else(|p| p.into_inner()) = Some(launcher);
    }

    /// The next reply, if one is waiting.
    pub fn try_recv(&self) -> Option<Reply> {
        self.replies.try_recv().ok()
    }
}

impl WorkerHandle {
    /// Cancels the running job and tells the thread to end, without waiting: its handle, for the caller
    /// to join (the window's `main`, once the window is gone).
    pub fn release(&mut self) -> Option<JoinHandle<()>> {
        self.cancel();
        self.jobs = None;
        self.thread.take()
    }

    /// Whether the Logs screen shows: new backend output wakes the window only then.
    pub fn set_logs_visible(&self, visible: bool) {
        self.logs_visible.store(visible, Ordering::Relaxed);
    }

    /// Cancels the running job, ends the thread and waits for it (the backend stopped, the owner lock let
    /// go): before another worker takes the same install or settings (the same `api_port`).
    pub fn shut_down(&mut self) {
        self.cancel();
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// What the window drives.
// One per window, never moved in a hot path: boxing `Local` would only complicate the patterns below.
#[allow(clippy::large_enum_variant)]
enum Engine {
    /// Not decided yet, or the owner could not be reached (the sentence says why); retried on each job.
    Undecided(String),
    Local(Local),
    Remote(Client),
}

/// The window as the owner. Taken apart in [`Worker::run`]: the autopilot stops, the backend stops, then
/// the API stops answering, then the lock is released.
struct Local {
    /// Set by the `ui-repaint` thread when a job ended or the settings changed; the worker then refreshes.
    changed: Arc<AtomicBool>,
    control: Control,
    _autopilot: Option<crate::app::autopilot::Autopilot>,
    _api: crate::api::ApiServer,
    _owner: Owner,
}

struct Worker {
    hand_over: Arc<Mutex<Option<std::path::PathBuf>>>,
    logs_visible: Arc<AtomicBool>,
    paths: Paths,
    engine: Engine,
    cancel: Arc<Mutex<CancelToken>>,
    replies: Sender<Reply>,
    repaint: Arc<dyn Fn() + Send + Sync>,
    /// The owner's last status, so polling replies (and repaints) only when something changed.
    last_remote: std::cell::RefCell<Option<Value>>,
    /// The version an automatic round's offer was last forwarded for, so each is shown once.
    auto_offered: std::cell::RefCell<Option<String>>,
    /// The backend log lines written when the worker last looked.
    log_lines: std::cell::Cell<u64>,
    /// The last backend request of this window was a stop.
    asked_stop: std::cell::Cell<bool>,
    /// The page key an attached window was last told: the owner's token changes when it restarts.
    attached_key: std::cell::RefCell<Option<PageKey>>,
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
                        // The owner restarted in place (a launcher update: same pid, a new port and token).
                        let moved = || {
                            crate::owner::current(&self.paths).is_some_and(|now| {
                                (now.pid, now.port) != (remote.info().pid, remote.info().port)
                            })
                        };
                        if !answered && (!crate::owner::is_owned(&self.paths) || moved()) {
                            // The owner is gone (killed, or closed): this window takes over, or attaches to
                            // the new owner.
                            self.decide();
                            self.refresh();
                        }
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                },
                // An owner window looks again when an operation (maybe one asked through the API, or the
                // autopilot's) ended.
                Engine::Local(local) => match jobs.recv_timeout(POLL_INTERVAL) {
                    Ok(job) => job,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if local.changed.swap(false, Ordering::SeqCst) {
                            self.refresh();
                        }
                        // New backend output: an open log view (drawn from the supervisor's memory) wakes.
                        if let Control::Here(service) = &local.control {
                            let written = service.supervisor().log_lines_written();
                            if written != self.log_lines.replace(written)
                                && self.logs_visible.load(Ordering::Relaxed)
                            {
                                (self.repaint)();
                            }
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
                Engine::Local(local) => self.handle(&local.control, job, &token),
                Engine::Remote(remote) => {
                    let control = Control::Owner(remote.clone());
                    self.handle(&control, job, &token);
                }
                Engine::Undecided(why) => self.reply(Reply::SnapshotFailed(why.clone())),
            }
        }
        if let Engine::Local(local) = std::mem::replace(&mut self.engine, Engine::Undecided(String::new())) {
            let Local {
                control,
                _autopilot,
                _api,
                _owner,
                ..
            } = local;
            // The autopilot first, so it starts nothing while the backend stops. The API stays open until
            // the backend is stopped: the backend knows its token, and a port freed while it runs could be
            // taken by another program and handed that token (issue 18). The job slot held meanwhile keeps
            // requests to it from starting anything.
            drop(_autopilot);
            let mut hand_over = None;
            let mut slot = None;
            if let Control::Here(service) = &control {
                // A job asked through the API (an update from the CLI or the agent's page) is cancelled and
                // awaited, so it never ends halfway between two versions once the lock is let go.
                slot = service.hold_for_exit(Duration::from_secs(120));
                let idle = slot.is_some();
                let launcher = self.hand_over.lock().unwrap_or_else(|p| p.into_inner()).take();
                // A restart into an updated launcher opens the window again at once: no hand-over.
                if idle
                    && !crate::selfupdate::restart_requested()
                    && service.supervisor().is_wanted_running()
                    && self.settings().0.keep_backend_running
                {
                    hand_over = launcher;
                } else if !idle {
                    tracing::warn!(
                        "a job still runs as the window closes; the agent is not left running in the background (the next start finishes or undoes what the job left)"
                    );
                }
                if let Err(e) = service.supervisor().stop() {
                    tracing::warn!("stopping the backend as the window closes: {e}");
                    hand_over = None;
                }
            }
            drop(_api);
            drop(slot);
            drop(_owner);
            if let Some(launcher) = hand_over {
                match keep_running_in_background(&launcher, &self.paths) {
                    Ok(pid) => tracing::info!(
                        pid,
                        "the agent keeps running in the background (`backend start`, pid {pid}); opening the window again attaches to it, and Stop or `personal-ai-agent backend stop` ends it"
                    ),
                    Err(e) => {
                        let text = format!("The agent may not keep running in the background: {e}.");
                        tracing::error!("{text}");
                        // Shown before this process ends (not on a thread of its own).
                        let _ = notify_rust::Notification::new()
                            .summary(crate::PRODUCT_NAME)
                            .body(&text)
                            .show();
                    }
                }
            }
        }
    }

    /// Owner or client: takes the owner lock if it is free (and serves the API), else attaches to the
    /// launcher that holds it once it has published where it listens.
    fn decide(&mut self) {
        *self.last_remote.borrow_mut() = None;
        // This window stopped the owner's backend (which ends a background `backend start`): taking the
        // install over then must not start it again.
        let stopped_here = matches!(self.engine, Engine::Remote(_)) && self.asked_stop.get();
        let deadline = Instant::now() + OWNER_PUBLISH_PATIENCE;
        let engine = loop {
            match Owner::take_as(&self.paths, "the window") {
                Ok(owner) => break self.serve(owner, stopped_here),
                Err(OwnerError::Taken { .. }) => {}
                Err(e) => break Engine::Undecided(format!("Could not take ownership of the install: {e}")),
            }
            if crate::owner::current(&self.paths).is_some() {
                break match Client::connect(&self.paths) {
                    Ok(Some(client)) => Engine::Remote(client),
                    // It went away between the two looks: try to own it again.
                    Ok(None) => continue,
                    Err(e) => Engine::Undecided(e.to_string()),
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
            Engine::Local(local) => {
                if let Control::Here(service) = &local.control {
                    self.reply(Reply::Mode(Mode::Local {
                        service: service.clone(),
                        api_url: local._api.url(),
                        page_key: PageKey::of_token(local._api.token()),
                    }))
                }
            }
            Engine::Remote(remote) => {
                let page_key = PageKey::of_token(&remote.token());
                *self.attached_key.borrow_mut() = Some(page_key.clone());
                self.reply(Reply::Mode(Mode::Attached {
                    owner: remote.info().clone(),
                    page_key,
                }))
            }
            Engine::Undecided(why) => self.reply(Reply::SnapshotFailed(why.clone())),
        }
        self.engine = engine;
    }

    /// Serves the API over a new service, as `run --headless` does (`cli::api::serve`), starts the
    /// autopilot (recovery, the backend, scheduled checks as the settings say; the first install is the
    /// user's to start), and wakes the window on every service event.
    /// `stopped_here`: this window stopped the backend of the owner it was attached to, which then went
    /// away; the backend stays stopped.
    fn serve(&self, owner: Owner, stopped_here: bool) -> Engine {
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
            version: crate::launcher_version().to_owned(),
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
        {
            // An API that can no longer serve withdraws what points at it, so no other face is sent to
            // it; this window keeps working on its own.
            let withdraw = owner.withdrawal();
            let replies = self.replies.clone();
            let repaint = self.repaint.clone();
            api.on_failure(move |why| {
                withdraw();
                let _ = replies.send(Reply::ActionFailed(format!(
                    "This window's local API stopped serving ({why}): the command line and the agent's page cannot reach it until you reopen the window."
                )));
                repaint();
            });
        }
        let events = service.subscribe();
        let repaint = self.repaint.clone();
        let changed = Arc::new(AtomicBool::new(false));
        let flag = changed.clone();
        // Ends when the service (and its event bus) is dropped with the window.
        let _ = std::thread::Builder::new()
            .name("ui-repaint".into())
            .spawn(move || {
                // Each news once: a round that offers the same version again says nothing new.
                let mut told = std::collections::HashSet::new();
                while let Ok(event) = events.recv() {
                    if let EventKind::Job { job } = &event.kind
                        && let Some(text) = notification_of(job)
                        && told.len() < 1000
                        && told.insert(text.clone())
                    {
                        notify(&text);
                    }
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
        let autopilot = crate::app::autopilot::Autopilot::start(
            service.clone(),
            crate::app::autopilot::Options {
                install_when_empty: false,
                check_now: false,
                start_backend: !stopped_here,
            },
        );
        let autopilot = match autopilot {
            Ok(a) => Some(a),
            Err(e) => {
                self.reply(Reply::ActionFailed(format!(
                    "Automatic checks are off: the scheduler could not start ({e})."
                )));
                None
            }
        };
        Engine::Local(Local {
            changed,
            control: Control::Here(service),
            _autopilot: autopilot,
            _api: api,
            _owner: owner,
        })
    }

    fn reply(&self, reply: Reply) {
        let _ = self.replies.send(reply);
        (self.repaint)();
    }

    /// A job of the window, the same whether this window owns the install (`control` is its service)
    /// or is attached (`control` is the owner's API).
    fn handle(&self, control: &Control, job: Job, cancel: &CancelToken) {
        match job {
            Job::Open | Job::Refresh => {}
            Job::Check => self.check(control, cancel),
            Job::Install(version) => self.install(control, version, cancel),
            Job::Rollback(to) => {
                let to = to.and_then(|v| crate::version::parse_user_version(&v).ok());
                if let Err(e) = run_op(control, Op::Rollback { to }, cancel, &mut |_| {}) {
                    self.reply(Reply::ActionFailed(format!("Could not roll back: {e}")));
                }
            }
            Job::StartBackend => {
                self.asked_stop.set(false);
                if let Err(e) = run_op(
                    control,
                    Op::BackendStart(StartOptions::default()),
                    cancel,
                    &mut |_| {},
                ) {
                    self.reply(Reply::ActionFailed(format!("Could not start the backend: {e}")));
                }
            }
            Job::StopBackend => match run_op(control, Op::BackendStop, cancel, &mut |_| {}) {
                Ok(_) => self.asked_stop.set(true),
                Err(e) => self.reply(Reply::ActionFailed(format!("Could not stop the backend: {e}"))),
            },
            Job::RestartBackend => {
                self.asked_stop.set(false);
                if let Err(e) = run_op(control, Op::BackendRestart, cancel, &mut |_| {}) {
                    self.reply(Reply::ActionFailed(format!("Could not restart the backend: {e}")));
                }
            }
            Job::SaveSettings(form) => self.save_settings(control, &form),
            Job::SetSource(text) => self.set_source(control, &text),
            Job::SetDataDir(text) => {
                let dir = std::path::PathBuf::from(unquote(&text));
                let moved = match control {
                    Control::Here(service) => service
                        .configure(ConfigChange {
                            data_dir: Some(Some(dir)),
                            ..Default::default()
                        })
                        .map_err(|e| match e {
                            AppError::InvalidField { reason, .. } => reason,
                            other => other.to_string(),
                        })
                        .and_then(|saved| {
                            saved
                                .data_dir
                                .ok_or_else(|| "the folder was not saved".to_owned())
                        }),
                    Control::Owner(client) => Err(format!(
                        "the launcher with pid {} owns this install; close it first",
                        client.info().pid
                    )),
                };
                match moved {
                    Ok(dir) => {
                        let mut paths = self.paths.clone();
                        paths.data_dir = dir;
                        self.reply(Reply::DataDirMoved(paths));
                    }
                    Err(e) => self.reply(Reply::ActionFailed(format!("Could not use that folder: {e}"))),
                }
                return;
            }
            Job::DownloadModels => {
                let mut on_progress = |p: &Progress| {
                    if let Some(stage) = stage_of(p) {
                        self.reply(Reply::Progress(stage));
                    }
                };
                let op = Op::ModelsDownload {
                    all: false,
                    manifest: None,
                };
                let done = run_op(control, op, cancel, &mut on_progress).map(|v| {
                    let fetched = v["fetched"].as_u64().unwrap_or(0);
                    if v["all_present"] == true {
                        format!("All models are present and verified ({fetched} downloaded now).")
                    } else {
                        "Some models could not be downloaded; see Logs, then try again (partial files are kept).".to_owned()
                    }
                });
                self.reply(Reply::ModelsDone(done.map_err(|e| e.to_string())));
            }
            Job::PrepareDemo(launcher) => {
                let demo = crate::demo::Demo::under(&self.paths);
                match demo
                    .prepare(&launcher)
                    .and_then(|()| Ok(demo.publish_as_installed()?))
                {
                    Ok(()) => self.reply(Reply::DemoReady(demo.paths)),
                    Err(e) => self.reply(Reply::ActionFailed(format!(
                        "Could not prepare the offline demo: {e:#}"
                    ))),
                }
                return;
            }
            Job::Skip(version) => self.skip(control, &version, true),
            Job::Unskip(version) => self.skip(control, &version, false),
        }
        match &self.engine {
            Engine::Remote(remote) => {
                self.remote_refresh(remote, true);
            }
            _ => self.refresh(),
        }
    }

    /// The settings file plus the environment's overrides, as the CLI loads them.
    fn settings(&self) -> (Config, Vec<String>) {
        let loaded = Config::load(&self.paths.config_file());
        let mut warnings = loaded.warnings;
        let _ = loaded.config.with_env(&|k| std::env::var(k).ok(), &mut warnings);
        (loaded.config, warnings)
    }

    fn refresh(&self) {
        // The history is a file in the data folder, the same whoever owns the install.
        let (file, warnings) = self.settings();
        let data = &self.paths.data_dir;
        let free_space = data
            .ancestors()
            .find(|p| p.exists())
            .and_then(|p| fs4::available_space(p).ok());
        self.reply(Reply::History {
            records: crate::app::history::read(&self.paths, 50),
            repo: file.github_repo.clone(),
            free_space,
        });
        let models = match &self.engine {
            Engine::Local(Local {
                control: Control::Here(service),
                ..
            }) => Some(match service.models_status() {
                // A version that names no models needs none: said as such, not as the CLI's error.
                Err(AppError::Models(crate::models::ModelsError::NoManifest { .. })) => Ok(json!({
                    "models_dir": self.paths.models_dir(),
                    "ready": true,
                    "models": [],
                })),
                other => other.map_err(|e| e.to_string()),
            }),
            Engine::Remote(remote) => Some(remote.get("/api/models").map_err(|e| e.to_string())),
            _ => None,
        };
        if let Some(models) = models {
            self.reply(Reply::Models(models));
        }
        let Engine::Local(Local {
            control: Control::Here(service),
            ..
        }) = &self.engine
        else {
            if let Engine::Remote(remote) = &self.engine {
                self.remote_refresh(remote, true);
            }
            return;
        };
        match service.update_status() {
            Ok(status) => {
                self.reply(Reply::Snapshot {
                    status: Box::new(status.clone()),
                    form: SettingsForm::from_config(&file),
                    warnings,
                });
                self.forward_offer(&Control::Here(service.clone()), service.last_check(), &status);
            }
            Err(e) => self.reply(Reply::SnapshotFailed(format!(
                "Could not read the install status: {e}"
            ))),
        }
    }

    fn check(&self, control: &Control, cancel: &CancelToken) {
        let op = Op::Check {
            channel: None,
            platform: None,
        };
        let report = run_op(control, op, cancel, &mut |_| {}).and_then(|v| {
            serde_json::from_value::<CheckReport>(v).map_err(|e| AppError::Internal(e.to_string()))
        });
        match report {
            Ok(report) => {
                if report.update_available {
                    // What the user sees already: not forwarded again as an automatic round's offer.
                    *self.auto_offered.borrow_mut() = report.latest.as_ref().map(|l| l.version.clone());
                }
                self.reply(Reply::Checked(Ok(Box::new(report))))
            }
            Err(e) => {
                return self.reply(Reply::Checked(Err(format!(
                    "The update check failed: {e}. Check the network or the release source, then try again."
                ))));
            }
        }
        self.changelog(control);
    }

    /// The notes of the offered release(s), a second look at the source after a check; a failure here
    /// only leaves the changelog empty.
    fn changelog(&self, control: &Control) {
        let query = crate::app::ChangelogQuery {
            offered_only: true,
            ..Default::default()
        };
        let entries = match control {
            Control::Here(service) => service
                .changelog(query)
                .map(|c| c.releases)
                .map_err(|e| e.to_string()),
            Control::Owner(client) => client
                .get("/api/updates/changelog")
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    serde_json::from_value::<Vec<ChangelogEntry>>(c["releases"].clone())
                        .map_err(|e| e.to_string())
                }),
        };
        match entries {
            Ok(entries) => self.reply(Reply::Changelog(entries)),
            Err(e) => tracing::warn!("reading the changelog failed: {e}"),
        }
    }

    /// Forwards what the last check of the owner found (an automatic round's, usually) when it offers a
    /// version newer than the installed one that was not forwarded before, with its changelog.
    /// Skipped and failed versions are not forwarded (a round that installed one and rolled it back still
    /// remembers it as offered).
    fn forward_offer(&self, control: &Control, report: Option<CheckReport>, status: &Status) {
        let Some(report) = report.filter(|r| r.update_available) else {
            return;
        };
        let Some(offered) = report.latest.as_ref().map(|l| l.version.clone()) else {
            return;
        };
        if status.skip_versions.contains(&offered) || status.failed_versions.contains(&offered) {
            return;
        }
        let newer = match (
            crate::version::parse_user_version(&offered),
            status
                .current_version
                .as_deref()
                .map(crate::version::parse_user_version),
        ) {
            (Ok(offered), Some(Ok(installed))) => offered > installed,
            (Ok(_), None) => true,
            _ => false,
        };
        if !newer || self.auto_offered.borrow().as_deref() == Some(offered.as_str()) {
            return;
        }
        *self.auto_offered.borrow_mut() = Some(offered);
        self.reply(Reply::AutoOffer(Box::new(report)));
        self.changelog(control);
    }

    fn install(&self, control: &Control, version: Option<String>, cancel: &CancelToken) {
        self.reply(Reply::Progress(Stage::Preparing));
        let version = match version
            .map(|v| crate::version::parse_user_version(&v))
            .transpose()
        {
            Ok(v) => v,
            Err(e) => return self.reply(Reply::Installed(InstallOutcome::Failed(e.to_string()))),
        };
        let mut rolled_back = None;
        let mut on_progress = |p: &Progress| {
            if p.phase == "rolling_back" {
                rolled_back = p.detail.clone();
            }
            if let Some(stage) = stage_of(p) {
                self.reply(Reply::Progress(stage));
            }
        };
        let result = run_op(
            control,
            Op::Install {
                version: version.clone(),
                full: false,
                allow_downgrade: false,
            },
            cancel,
            &mut on_progress,
        );
        let outcome = match result {
            Ok(value) if value["installed_version"].is_null() => {
                let installed = crate::app::current_version_text(&self.paths);
                match (&version, installed) {
                    (Some(v), _) => InstallOutcome::NothingToDo(format!(
                        "Version {v} is already installed and intact: nothing to do."
                    )),
                    (None, Some(current)) => InstallOutcome::NothingToDo(format!(
                        "Already up to date: {current} is the newest version offered."
                    )),
                    (None, None) => InstallOutcome::Failed(
                        "No installable release is published for this platform yet; try again later.".into(),
                    ),
                }
            }
            Ok(value) => match serde_json::from_value::<InstallReport>(value) {
                Ok(report) => InstallOutcome::Healthy(Box::new(report)),
                Err(e) => InstallOutcome::Failed(format!("The install report could not be read: {e}")),
            },
            Err(_) if cancel.is_cancelled() => InstallOutcome::Cancelled,
            Err(e) => match rolled_back {
                // "<from> is not healthy (<reason>); rolling back to <to>", as the service words it.
                Some(detail) => InstallOutcome::RolledBack {
                    from: detail
                        .split_once(" is not healthy")
                        .map(|(from, _)| from.to_owned())
                        .or(version.map(|v| v.to_string()))
                        .unwrap_or_else(|| "the new version".into()),
                    to: detail
                        .rsplit_once("; rolling back to ")
                        .map(|(_, to)| to.to_owned())
                        .filter(|to| to != "nothing"),
                    reason: e.to_string(),
                },
                None => InstallOutcome::Failed(format!("The install failed: {e}")),
            },
        };
        // A first install (or an update while nothing ran) leaves the backend stopped; the window's promise
        // is a running agent.
        if let InstallOutcome::Healthy(report) = &outcome
            && !report.backend_running
            && let Err(e) = run_op(
                control,
                Op::BackendStart(StartOptions::default()),
                &CancelToken::new(),
                &mut |_| {},
            )
        {
            self.reply(Reply::ActionFailed(format!("Could not start the backend: {e}")));
        }
        self.reply(Reply::Installed(outcome));
    }

    /// The wizard's source: `owner/name` is a GitHub repository; a URL or a folder is a feed. Set in this
    /// process only: the owner's API does not change trust settings (it answers 403, said here).
    fn set_source(&self, control: &Control, text: &str) {
        // A repository's web address is the repository.
        let trimmed = unquote(text).trim_end_matches('/');
        let text = trimmed
            .strip_prefix("https://github.com/")
            .or_else(|| trimmed.strip_prefix("github.com/"))
            .map(|rest| rest.trim_end_matches(".git"))
            .unwrap_or(trimmed);
        let looks_like_repo = !text.contains("://")
            && !std::path::Path::new(text).is_absolute()
            && text.split('/').count() == 2;
        let change = if looks_like_repo {
            ConfigChange {
                github_repo: Some(Some(text.to_owned())),
                feed: Some(None),
                ..Default::default()
            }
        } else {
            ConfigChange {
                feed: Some(Some(text.to_owned())),
                ..Default::default()
            }
        };
        let saved = match control {
            Control::Here(service) => service.configure(change).map(|_| ()).map_err(|e| e.to_string()),
            Control::Owner(client) => Err(format!(
                "the launcher with pid {} owns this install, and the source decides which releases are trusted, so it is not changed through its API; set it with `personal-ai-agent update configure --repo/--feed`",
                client.info().pid
            )),
        };
        match saved {
            Ok(()) => self.reply(Reply::SettingsSaved),
            Err(e) => self.reply(Reply::ActionFailed(format!("Could not use that source: {e}"))),
        }
    }

    /// Skips `version` (or, with `skip` false, offers it again): the service's operation, here or the
    /// owner's through its API.
    fn skip(&self, control: &Control, version: &str, skip: bool) {
        let done = match control {
            Control::Here(service) => if skip {
                service.skip(version).map(|_| ())
            } else {
                service.unskip(version).map(|_| ())
            }
            .map_err(|e| e.to_string()),
            Control::Owner(client) => {
                let path = if skip {
                    "/api/updates/skip-version"
                } else {
                    "/api/updates/unskip-version"
                };
                client
                    .post(path, &json!({ "version": version }))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(e) = done {
            self.reply(Reply::ActionFailed(format!(
                "Could not change the skipped versions: {e}"
            )));
        }
    }

    fn save_settings(&self, control: &Control, form: &SettingsForm) {
        let change = ConfigChange {
            update_channel: Some(form.channel),
            auto_check: Some(form.auto_check),
            auto_download: Some(form.auto_download),
            auto_install: Some(form.auto_install),
            backup_count: Some(form.backup_count),
            check_interval_hours: Some(form.check_interval_hours),
            keep_backend_running: Some(form.keep_backend_running),
            ..Default::default()
        };
        // Attached, the settings file is written here as `update configure` writes it (the owner reads it
        // afresh for every operation): the API may only narrow the channel, and this is the user's window.
        let saved = match control {
            Control::Here(service) => service.configure(change),
            Control::Owner(_) => Service::new(self.paths.clone()).configure(change),
        }
        .map(|_| ())
        .map_err(|e| e.to_string());
        match saved {
            Ok(()) => self.reply(Reply::SettingsSaved),
            Err(e) => self.reply(Reply::ActionFailed(format!("Could not save the settings: {e}"))),
        }
    }

    /// The owner's state: `GET /api/updates/status` (update status, backend, running job). Unless
    /// `always`, nothing is sent when it is as before. Returns whether the owner answered.
    fn remote_refresh(&self, remote: &Client, always: bool) -> bool {
        let status = match remote.get("/api/updates/status") {
            Ok(s) => s,
            Err(e) => {
                self.reply(Reply::SnapshotFailed(e.to_string()));
                return false;
            }
        };
        // The owner restarted in place (a launcher update) and the client read its new token: "Open agent"
        // needs the new start's key.
        let page_key = PageKey::of_token(&remote.token());
        if self.attached_key.borrow().as_ref() != Some(&page_key) {
            *self.attached_key.borrow_mut() = Some(page_key.clone());
            self.reply(Reply::Mode(Mode::Attached {
                owner: remote.info().clone(),
                page_key,
            }));
        }
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
                    check_interval_hours: update.check_interval_hours,
                    keep_backend_running: update.keep_backend_running,
                };
                self.reply(Reply::Snapshot {
                    status: Box::new(update.clone()),
                    form,
                    warnings: Vec::new(),
                });
                let last_check = serde_json::from_value::<CheckReport>(status["last_check"].clone()).ok();
                self.forward_offer(&Control::Owner(remote.clone()), last_check, &update);
            }
            Err(e) => self.reply(Reply::SnapshotFailed(format!(
                "The owner's status could not be read ({e}); is it a different launcher version?"
            ))),
        }
        if let Ok(backend) = serde_json::from_value::<BackendStatus>(status["backend"].clone()) {
            self.reply(Reply::RemoteBackend(backend));
        }
        let running = serde_json::from_value::<crate::app::Job>(status["job"].clone())
            .ok()
            .filter(|j| !j.state.is_finished())
            .map(|j| {
                let kind = j.kind.as_str().replace('_', " ");
                match j.progress.as_ref().and_then(stage_of) {
                    Some(stage) => format!("The owner is busy ({kind}): {}", super::app::stage_line(&stage)),
                    None => format!("The owner is busy ({kind})"),
                }
            });
        self.reply(Reply::OwnerJob(running));
        true
    }
}

/// Runs `op` through `control`, waiting out (at most 30 s) the owner's own short jobs that hold the job
/// slot for a moment: the backend start as the window opens and the scheduled round's bookkeeping. A
/// click on "Check for updates" just then is not answered with "busy". Anything else busy is said.
fn run_op(
    control: &Control,
    op: Op,
    cancel: &CancelToken,
    on_progress: &mut dyn FnMut(&Progress),
) -> crate::app::AppResult<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match control.run(op.clone(), cancel, on_progress) {
            Err(AppError::Busy { running, .. })
                if matches!(
                    running,
                    crate::app::JobKind::BackendStart | crate::app::JobKind::ScheduledUpdate
                ) && Instant::now() < deadline
                    && !cancel.is_cancelled() =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// `text` trimmed, without the quotes a "Copy as path" puts around it.
fn unquote(text: &str) -> &str {
    let t = text.trim();
    t.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .or_else(|| t.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))
        .unwrap_or(t)
        .trim()
}

/// Starts `launcher [--home DIR] backend start` on the same install, detached from this process (a new
/// session; on Windows a hidden console of its own), with its output in `logs/launcher-detached.log`, and
/// waits until it reports the backend healthy. That launcher owns the install from then on, supervises
/// the backend (restarting crashes) and serves the API the next window attaches to; it ends when the
/// backend is stopped (Stop, `backend stop`). Returns its pid, or why it did not take over.
pub fn keep_running_in_background(launcher: &std::path::Path, paths: &Paths) -> Result<u32, String> {
    let mut command = std::process::Command::new(launcher);
    // A home given as one folder (`--home`, the demo's) is passed on; the platform's folders and
    // `PORTABLE_MODE` resolve the same way in the child, whose environment is this one.
    if let Some(home) = &paths.home {
        command.arg("--home").arg(home);
    }
    let logs = paths.logs_dir();
    crate::paths::ensure_dir(&logs).map_err(|e| e.to_string())?;
    let log_path = logs.join("launcher-detached.log");
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("cannot share {}: {e}", log_path.display()))?;
    command
        .args(["--quiet", "backend", "start"])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err);
    crate::supervisor::detach(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", launcher.display()))?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(status) = crate::supervisor::read_status(&paths.run_dir())
            && status.state == "running"
            && status.supervisor_pid == Some(pid)
        {
            return Ok(pid);
        }
        if let Ok(Some(exit)) = child.try_wait() {
            // Another launcher (a window opened meanwhile) may have taken the install over and run it.
            if let Ok(status) = crate::supervisor::read_status(&paths.run_dir())
                && status.state == "running"
                && let Some(owner) = status.supervisor_pid
            {
                return Ok(owner);
            }
            let last = crate::supervisor::read_last_lines(&log_path, 3).unwrap_or_default();
            return Err(format!(
                "the background launcher ended ({exit}): {}; open the window to start the agent again",
                last.join(" / ")
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the background launcher (pid {pid}) did not report the agent healthy within 90 s; it keeps trying (see {}), and opening the window shows how it went",
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What an automatic round that finished is worth telling the user, as an OS notification: an update
/// ready to install, applied, or rolled back. Jobs the user started in the window are shown there.
fn notification_of(job: &crate::app::Job) -> Option<String> {
    if job.kind != crate::app::JobKind::ScheduledUpdate || job.state != crate::app::JobState::Succeeded {
        return None;
    }
    let result = job.result.as_ref()?;
    if let Some(failed) = result["failed"].as_str() {
        return Some(format!(
            "{failed} did not pass its health check; the previous version runs again."
        ));
    }
    if let Some(installed) = result["installed"].as_str() {
        return Some(format!("Updated to {installed}; the agent restarted on it."));
    }
    match (result["offered"].as_str(), result["downloaded"].as_bool()) {
        (Some(v), Some(true)) => Some(format!(
            "{v} is downloaded and verified; open the window to install it."
        )),
        (Some(v), _) => Some(format!("{v} is available; open the window to update.")),
        _ => None,
    }
}

/// Shows `text` as an OS notification on a thread of its own (it talks to the desktop's notification
/// service, which may be slow or absent: then it is only logged).
fn notify(text: &str) {
    let text = text.to_owned();
    let _ = std::thread::Builder::new()
        .name("ui-notify".into())
        .spawn(move || {
            tracing::info!("{text}");
            if let Err(e) = notify_rust::Notification::new()
                .summary(crate::PRODUCT_NAME)
                .body(&text)
                .show()
            {
                tracing::debug!("no desktop notification: {e}");
            }
        });
}

/// A job's progress as the window's stage (`None`: nothing to draw for it).
fn stage_of(progress: &Progress) -> Option<Stage> {
    let detail = progress.detail.clone().unwrap_or_default();
    Some(match progress.phase.as_str() {
        "downloading" | "resuming" | "downloading_model" => Stage::Downloading {
            done: progress.done.unwrap_or(0),
            total: progress.total,
            bytes_per_sec: progress.bytes_per_sec.unwrap_or(0.0),
            eta: progress.eta_secs.map(Duration::from_secs),
        },
        "verified" => Stage::Verified {
            signed: detail.ends_with("(signature verified)"),
            verified_by: detail
                .trim_end_matches(" (signature verified)")
                .trim_end_matches(" (unsigned)")
                .to_owned(),
        },
        "installing" => Stage::Installing { version: detail },
        "stopping_backend" => Stage::StoppingBackend,
        "starting_backend" => Stage::StartingBackend { version: detail },
        "rolling_back" => Stage::RollingBack { reason: detail },
        "checking" | "recovering" => Stage::Preparing,
        _ => return None,
    })
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
