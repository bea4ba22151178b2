//! The window's one background thread, `ui-worker`: every engine call the window makes runs here.
//!
//! The UI thread sends a [`Job`] over a channel and never waits; the worker answers with [`Reply`] values
//! on another channel, each followed by `request_repaint`, so the window wakes only when something
//! changed. Download progress is throttled to about ten replies a second. Jobs run one at a time, in order;
//! the one in progress can be cancelled through the shared [`CancelToken`] slot.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::check::{ChangelogEntry, CheckReport};
use crate::config::Config;
use crate::download::{CancelToken, DownloadEvent};
use crate::paths::Paths;
use crate::release::{Asset, Release};
use crate::supervisor::Supervisor;
use crate::updater::{InstallReport, Status, SupervisorGate, UpdateEvent, Updater};
use crate::version::Channel;

/// How often progress replies are sent at most.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

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

/// What the worker tells the window.
#[derive(Debug)]
pub enum Reply {
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
    pub fn spawn(
        paths: Paths,
        supervisor: Arc<Supervisor>,
        repaint: impl Fn() + Send + 'static,
    ) -> std::io::Result<WorkerHandle> {
        let (jobs, job_rx) = std::sync::mpsc::channel();
        let (reply_tx, replies) = std::sync::mpsc::channel();
        let cancel = Arc::new(Mutex::new(CancelToken::new()));
        let worker = Worker {
            paths,
            supervisor,
            cancel: cancel.clone(),
            replies: reply_tx,
            repaint: Box::new(repaint),
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

struct Worker {
    paths: Paths,
    supervisor: Arc<Supervisor>,
    cancel: Arc<Mutex<CancelToken>>,
    replies: Sender<Reply>,
    repaint: Box<dyn Fn() + Send>,
}

impl Worker {
    fn run(self, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            let token = CancelToken::new();
            *self.cancel.lock().unwrap_or_else(|p| p.into_inner()) = token.clone();
            self.handle(job, &token);
        }
        if let Err(e) = self.supervisor.stop() {
            tracing::warn!("stopping the backend as the window closes: {e}");
        }
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

    fn handle(&self, job: Job, cancel: &CancelToken) {
        match job {
            Job::Open => {
                self.open();
                self.refresh();
            }
            Job::Refresh => self.refresh(),
            Job::Check => self.check(),
            Job::InstallLatest => {
                self.install(None, cancel);
                self.refresh();
            }
            Job::Install { release, asset } => {
                self.install(Some((*release, *asset)), cancel);
                self.refresh();
            }
            Job::StartBackend => {
                if let Err(e) = self.start_backend() {
                    self.reply(Reply::ActionFailed(e));
                }
            }
            Job::StopBackend => {
                if let Err(e) = self.supervisor.stop() {
                    self.reply(Reply::ActionFailed(format!("Could not stop the backend: {e}")));
                }
            }
            Job::SaveSettings(form) => {
                self.save_settings(&form);
                self.refresh();
            }
        }
    }

    fn open(&self) {
        let (_, config, _) = self.settings();
        let mut gate = SupervisorGate::new(&self.supervisor, &self.paths);
        if let Err(e) = crate::updater::recover(&self.paths, &config, &mut gate) {
            self.reply(Reply::ActionFailed(format!(
                "Could not finish an interrupted update: {e}"
            )));
        }
        let installed = matches!(crate::updater::current_version(&self.paths), Ok(Some(_)));
        if installed
            && !self.supervisor.is_wanted_running()
            && let Err(e) = self.start_backend()
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

    fn start_backend(&self) -> Result<(), String> {
        let dir = crate::updater::installer(&self.paths)
            .current_dir()
            .map_err(|e| format!("Could not read the installed version: {e}"))?
            .ok_or("Nothing is installed yet: install the agent first.")?;
        let (plan, _) = crate::updater::launch_plan(&dir, &self.paths)
            .map_err(|e| format!("Could not read how to start the backend: {e}"))?;
        self.supervisor
            .start(plan)
            .map_err(|e| format!("Could not start the backend: {e}"))?;
        Ok(())
    }

    fn install(&self, target: Option<(Release, Asset)>, cancel: &CancelToken) {
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
        let mut gate = SupervisorGate::new(&self.supervisor, &self.paths);
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
            && !self.supervisor.is_wanted_running()
            && let Err(e) = self.start_backend()
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
