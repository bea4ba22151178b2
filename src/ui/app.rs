//! The window's state and drawing. It only reads state and sends jobs: the drawing code returns
//! [`Command`]s, applied at the end of the frame, which become [`Job`]s for the `ui-worker` thread; the
//! worker's replies are folded into the state at the start of the next frame. Nothing here touches the
//! disk or the network; the backend's state and log tail are read from the supervisor's memory when the
//! window owns the install, and from the worker's last look at the owner's API when it is attached.

use std::time::Duration;

use egui::{Color32, RichText};

use super::worker::{InstallOutcome, Job, Mode, Reply, SettingsForm, Stage, WorkerHandle};
use crate::check::{ChangelogEntry, CheckReport};
use crate::paths::Paths;
use crate::selfupdate::LauncherOutcome;
use crate::supervisor::{BackendState, BackendStatus};
use crate::updater::Status;
use crate::version::Channel;

/// What the user asked for this frame.
#[must_use]
#[derive(Clone, Debug)]
pub enum Command {
    CheckForUpdates,
    InstallUpdate,
    InstallFirstTime,
    /// Save the source typed in the wizard (a GitHub `owner/name`, a feed URL or folder).
    SaveSource,
    /// Ask for a feed folder with the system's folder dialog.
    ChooseFeedFolder,
    /// Ask for the install (data) folder with the system's folder dialog.
    ChooseDataFolder,
    /// Keep installs, models and downloads in the folder typed or chosen in the wizard.
    SaveDataFolder,
    /// Switch the window to the offline demo's own home.
    TryDemo,
    CancelInstall,
    Rollback,
    /// Go back to this kept version.
    RollbackTo(String),
    /// Install this version explicitly (a failed one, to try it again).
    InstallVersion(String),
    /// Offer this skipped version again.
    Unskip(String),
    /// Never offer this version automatically.
    Skip(String),
    /// Hide the offer until the next check.
    RemindLater,
    Show(Screen),
    DownloadModels,
    StartBackend,
    StopBackend,
    RestartBackend,
    SaveSettings,
    /// Close and open again as the launcher an update put in place.
    RestartLauncher,
}

/// The screens of the sidebar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Home,
    Models,
    Settings,
    Logs,
    About,
}

impl Screen {
    const ALL: [Screen; 5] = [
        Screen::Home,
        Screen::Models,
        Screen::Settings,
        Screen::Logs,
        Screen::About,
    ];

    fn label(self) -> &'static str {
        match self {
            Screen::Home => "Home",
            Screen::Models => "Models",
            Screen::Settings => "Settings",
            Screen::Logs => "Logs",
            Screen::About => "About",
        }
    }
}

/// The result of the last update check, as the update card shows it.
#[derive(Debug)]
enum CheckView {
    NotChecked,
    Checking,
    Done(Box<CheckReport>),
    Failed(String),
}

/// The install in progress or the last one's outcome.
#[derive(Debug)]
enum JobView {
    Idle,
    Running(Stage),
    Finished(InstallOutcome),
}

/// The desktop window.
pub struct App {
    worker: WorkerHandle,
    /// Owner or attached, once the worker decided.
    mode: Option<Mode>,
    /// An attached window's last view of the owner's backend and running job.
    remote_backend: Option<BackendStatus>,
    owner_job: Option<String>,
    status: Option<Box<Status>>,
    /// What the settings section edits; `saved_form` is what `config.json` holds.
    form: Option<SettingsForm>,
    saved_form: Option<SettingsForm>,
    check: CheckView,
    changelog: Vec<ChangelogEntry>,
    job: JobView,
    /// The last failure of a start, stop, save or status read, as a sentence for the user.
    notice: Option<String>,
    screen: Screen,
    /// Rendered markdown's state (link hover, images) for the changelog viewer.
    markdown: egui_commonmark::CommonMarkCache,
    /// "Saved" shows under the settings from a save until the next edit.
    saved_notice: bool,
    /// The installed version's models (the API's `GET /api/models` document), or why not.
    models: Option<Result<serde_json::Value, String>>,
    /// The last models download's outcome.
    models_done: Option<Result<String, String>>,
    /// The update history (newest first) and where problems are reported.
    history: Vec<crate::app::history::Record>,
    report_repo: Option<String>,
    /// Free bytes where the data folder is, as the worker last measured.
    free_space: Option<u64>,
    /// What the wizard's source field holds.
    source_text: String,
    /// The offered version the user asked to be reminded about later: an automatic round's find of the
    /// same version does not bring the offer back.
    reminded_later: Option<String>,
    /// A source was sent to be saved; its "saved" answer clears the field and the old offer.
    source_pending: bool,
    /// A data folder was sent to be used: nothing is installed until the worker switched to it.
    data_pending: bool,
    /// Settings with another channel were sent to be saved.
    channel_pending: bool,
    /// A folder picked in the system dialog (on its own thread), taken at the next frame.
    picked_folder: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// What the wizard's install-folder field holds, and a folder picked for it in the system dialog.
    data_text: String,
    picked_data_folder: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// Whether the wizard asked for the offered release already (once per status with a source).
    wizard_checked: bool,
    /// The demo is being prepared (a few seconds), or the window shows it.
    demo: DemoView,
    /// Frames drawn, printed per frame when `PAI_BENCH_FRAMES` is set (`scripts/bench-window.sh`).
    frames: u64,
    bench_frames: bool,
    /// The executable the demo's releases run as their backend (default: this one).
    demo_launcher: Option<std::path::PathBuf>,
    /// Where the worker's thread goes when the window closes (see [`App::finish_after_window`]).
    after_close: Option<std::sync::Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>>,
    paths: Paths,
}

/// Whether the window shows the offline demo.
#[derive(Debug, PartialEq)]
enum DemoView {
    Off,
    Preparing,
    On,
}

impl App {
    /// Starts the worker, which takes ownership of the install (serving the API, finishing an interrupted
    /// update and starting the installed backend) or attaches to the launcher that owns it.
    pub fn new(paths: &Paths, ctx: &egui::Context) -> std::io::Result<App> {
        let repaint_ctx = ctx.clone();
        let worker = WorkerHandle::spawn(paths.clone(), move || repaint_ctx.request_repaint())?;
        worker.send(Job::Open);
        let demo = if paths.data_dir.parent().and_then(|p| p.file_name()) == Some("demo".as_ref()) {
            DemoView::On
        } else {
            DemoView::Off
        };
        Ok(App {
            paths: paths.clone(),
            demo,
            frames: 0,
            bench_frames: std::env::var_os("PAI_BENCH_FRAMES").is_some(),
            demo_launcher: None,
            after_close: None,
            source_text: String::new(),
            reminded_later: None,
            source_pending: false,
            data_pending: false,
            channel_pending: false,
            history: Vec::new(),
            models: None,
            models_done: None,
            report_repo: None,
            free_space: None,
            picked_folder: Default::default(),
            data_text: String::new(),
            picked_data_folder: Default::default(),
            wizard_checked: false,
            worker,
            mode: None,
            remote_backend: None,
            owner_job: None,
            status: None,
            form: None,
            saved_form: None,
            check: CheckView::NotChecked,
            changelog: Vec::new(),
            job: JobView::Idle,
            notice: None,
            screen: Screen::Home,
            markdown: egui_commonmark::CommonMarkCache::default(),
            saved_notice: false,
        })
    }

    /// Takes the screen shown when the window was last closed.
    pub fn restore(&mut self, storage: &dyn eframe::Storage) {
        if let Some(name) = storage.get_string(SCREEN_KEY) {
            self.screen = Screen::ALL
                .into_iter()
                .find(|s| s.label() == name)
                .unwrap_or(Screen::Home);
        }
    }

    /// Names the launcher executable the offline demo's releases run, and the one that keeps the agent
    /// running in the background after the window closes (tests, whose own executable is the test
    /// binary; default: this executable).
    pub fn with_demo_launcher(mut self, launcher: std::path::PathBuf) -> Self {
        self.demo_launcher = Some(launcher);
        self
    }

    /// Leaves the worker's last work (stopping the backend, or handing it over) to whoever holds `slot`,
    /// which joins it once the window is gone; without it, dropping the window waits for that work.
    pub fn finish_after_window(
        mut self,
        slot: std::sync::Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>,
    ) -> Self {
        self.after_close = Some(slot);
        self
    }

    /// The sentence the window shows about the last failure, if any.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// The installed version, once the worker reported it.
    pub fn installed_version(&self) -> Option<&str> {
        self.status.as_ref()?.current_version.as_deref()
    }

    /// The backend's state, as the header shows it (the owner's, when attached).
    pub fn backend_state(&self) -> BackendState {
        match &self.mode {
            Some(Mode::Local { service, .. }) => service.supervisor().state(),
            Some(Mode::Attached { .. }) => self
                .remote_backend
                .as_ref()
                .map(super::worker::backend_state_of)
                .unwrap_or(BackendState::Stopped),
            None => BackendState::Stopped,
        }
    }

    /// The owner this window is attached to, if another launcher owns the install.
    pub fn attached_to(&self) -> Option<&crate::owner::ApiInfo> {
        match &self.mode {
            Some(Mode::Attached { owner, .. }) => Some(owner),
            _ => None,
        }
    }

    /// What "Open agent" opens: the agent's page with the key of the owner's current start, which gives
    /// this browser a session there (the page refuses anyone without one). `None` while the backend does
    /// not run.
    pub fn agent_page_url(&self) -> Option<String> {
        let base = agent_url(&self.backend_state())?;
        match &self.mode {
            Some(Mode::Local { page_key, .. } | Mode::Attached { page_key, .. }) => Some(page_key.url(&base)),
            None => None,
        }
    }

    /// Whether this window owns the install (and serves the local API).
    pub fn is_owner(&self) -> bool {
        matches!(self.mode, Some(Mode::Local { .. }))
    }

    fn take_replies(&mut self, ctx: &egui::Context) {
        while let Some(reply) = self.worker.try_recv() {
            match reply {
                Reply::Mode(mode) => self.mode = Some(mode),
                Reply::RemoteBackend(status) => self.remote_backend = Some(status),
                Reply::OwnerJob(job) => self.owner_job = job,
                Reply::Snapshot {
                    status,
                    form,
                    warnings,
                } => {
                    self.status = Some(status);
                    if self.form.is_none() || self.form == self.saved_form {
                        self.form = Some(form.clone());
                    }
                    self.saved_form = Some(form);
                    if let Some(w) = warnings.into_iter().next() {
                        self.notice = Some(w);
                    }
                }
                Reply::SnapshotFailed(e) | Reply::ActionFailed(e) => {
                    self.source_pending = false;
                    self.channel_pending = false;
                    self.data_pending = false;
                    if self.demo == DemoView::Preparing {
                        self.demo = DemoView::Off;
                    }
                    self.notice = Some(readable(&e));
                }
                Reply::Checked(Ok(report)) => {
                    // A new answer: the last install's outcome line no longer belongs under it.
                    if matches!(self.job, JobView::Finished(_)) {
                        self.job = JobView::Idle;
                    }
                    self.check = CheckView::Done(report);
                }
                Reply::Checked(Err(e)) => self.check = CheckView::Failed(readable(&e)),
                Reply::AutoOffer(report) => {
                    // An automatic round's find shows like a check's, unless the card is busy with one
                    // or the user asked to be reminded later about this very version.
                    let version = report.latest.as_ref().map(|l| l.version.clone());
                    let idle = matches!(self.check, CheckView::NotChecked)
                        || matches!(&self.check, CheckView::Done(r) if !r.update_available);
                    if idle && version.is_some() && version != self.reminded_later {
                        if matches!(self.job, JobView::Finished(_)) {
                            self.job = JobView::Idle;
                        }
                        self.check = CheckView::Done(report);
                        self.changelog.clear();
                    }
                }
                Reply::Changelog(entries) => self.changelog = entries,
                Reply::Progress(stage) => self.job = JobView::Running(stage),
                Reply::Installed(outcome) => {
                    // A check that offered the version now installed (or now failed, and so no longer
                    // offered) is stale.
                    if matches!(
                        outcome,
                        InstallOutcome::Healthy(_) | InstallOutcome::RolledBack { .. }
                    ) {
                        self.check = CheckView::NotChecked;
                        self.changelog.clear();
                    }
                    self.job = JobView::Finished(outcome);
                }
                Reply::SettingsSaved => {
                    self.notice = None;
                    self.saved_notice = true;
                    let source = std::mem::take(&mut self.source_pending);
                    let channel = std::mem::take(&mut self.channel_pending);
                    if source {
                        self.source_text.clear();
                    }
                    if source || channel {
                        // A source just entered, or another channel: what was offered no longer holds;
                        // look at what is offered now.
                        self.check = CheckView::NotChecked;
                        self.changelog.clear();
                        self.wizard_checked = false;
                    }
                }
                Reply::DemoReady(paths) => self.switch_to(paths, ctx, true),
                Reply::DataDirMoved(paths) => {
                    self.data_text.clear();
                    let demo = self.demo == DemoView::On;
                    self.switch_to(paths, ctx, demo);
                }
                Reply::Models(models) => self.models = Some(models),
                Reply::ModelsDone(done) => {
                    self.job = JobView::Idle;
                    self.models_done = Some(done);
                }
                Reply::History {
                    records,
                    repo,
                    free_space,
                } => {
                    self.history = records;
                    self.report_repo = repo;
                    self.free_space = free_space;
                }
            }
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::RestartLauncher => {
                // `cli::main` starts the new launcher with the same arguments once this window has
                // closed (the backend stopped, the lock let go); size and position come back from storage.
                crate::selfupdate::request_restart();
            }
            Command::CheckForUpdates => {
                self.check = CheckView::Checking;
                self.worker.send(Job::Check);
            }
            Command::InstallUpdate => {
                if let CheckView::Done(report) = &self.check
                    && let Some(latest) = report.latest.as_ref().filter(|_| report.update_available)
                {
                    self.job = JobView::Running(Stage::Preparing);
                    self.worker.send(Job::Install(Some(latest.version.clone())));
                }
            }
            Command::SaveSource => {
                let text = self.source_text.trim().to_owned();
                if !text.is_empty() {
                    self.source_pending = true;
                    self.worker.send(Job::SetSource(text));
                }
            }
            Command::ChooseFeedFolder => {
                pick_folder("Choose the release feed folder", self.picked_folder.clone())
            }
            Command::ChooseDataFolder => {
                pick_folder("Choose where to install", self.picked_data_folder.clone())
            }
            Command::SaveDataFolder => {
                let text = self.data_text.trim().to_owned();
                if !text.is_empty() {
                    self.data_pending = true;
                    self.worker.send(Job::SetDataDir(text));
                }
            }
            Command::TryDemo => match self
                .demo_launcher
                .clone()
                .map(Ok)
                .unwrap_or_else(crate::demo::this_launcher)
            {
                Ok(launcher) => {
                    self.demo = DemoView::Preparing;
                    self.worker.send(Job::PrepareDemo(launcher));
                }
                Err(e) => self.notice = Some(format!("Could not prepare the offline demo: {e}")),
            },
            Command::InstallFirstTime => {
                self.job = JobView::Running(Stage::Preparing);
                self.worker.send(Job::Install(None));
            }
            Command::CancelInstall => self.worker.cancel(),
            Command::Rollback => {
                self.check = CheckView::NotChecked;
                self.job = JobView::Idle;
                self.worker.send(Job::Rollback(None));
            }
            Command::RollbackTo(version) => {
                self.check = CheckView::NotChecked;
                self.job = JobView::Idle;
                self.worker.send(Job::Rollback(Some(version)));
            }
            Command::InstallVersion(version) => {
                self.screen = Screen::Home;
                self.job = JobView::Running(Stage::Preparing);
                self.worker.send(Job::Install(Some(version)));
            }
            Command::Unskip(version) => self.worker.send(Job::Unskip(version)),
            Command::Skip(version) => {
                self.check = CheckView::NotChecked;
                self.changelog.clear();
                self.worker.send(Job::Skip(version));
            }
            Command::RemindLater => {
                if let CheckView::Done(report) = &self.check {
                    self.reminded_later = report.latest.as_ref().map(|l| l.version.clone());
                }
                self.check = CheckView::NotChecked;
                self.changelog.clear();
            }
            Command::Show(screen) => self.screen = screen,
            Command::DownloadModels => {
                self.models_done = None;
                self.job = JobView::Running(Stage::Preparing);
                self.worker.send(Job::DownloadModels);
            }
            Command::StartBackend => self.worker.send(Job::StartBackend),
            Command::StopBackend => self.worker.send(Job::StopBackend),
            Command::RestartBackend => self.worker.send(Job::RestartBackend),
            Command::SaveSettings => {
                if let Some(form) = &self.form {
                    self.saved_notice = false;
                    // Another channel offers other versions: the shown offer is stale once saved.
                    self.channel_pending = self
                        .saved_form
                        .as_ref()
                        .is_some_and(|s| s.channel != form.channel);
                    self.worker.send(Job::SaveSettings(form.clone()));
                }
            }
        }
    }

    /// The wizard's automatic steps: a picked folder lands in the source field, and once a source is
    /// configured with nothing installed, the offered release is fetched (once) to show what will be
    /// installed.
    fn wizard_step(&mut self) {
        if let Some(folder) = self
            .picked_folder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            self.source_text = folder;
        }
        if let Some(folder) = self
            .picked_data_folder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            self.data_text = folder;
        }
        let wants_offer = self
            .status
            .as_ref()
            .is_some_and(|s| s.current_version.is_none() && s.source.is_some());
        if wants_offer && !self.wizard_checked && matches!(self.check, CheckView::NotChecked) {
            self.wizard_checked = true;
            self.check = CheckView::Checking;
            self.worker.send(Job::Check);
        }
    }

    /// Drives another home from now on (the offline demo's, or a data folder chosen in the wizard): the old worker is dropped (its backend, if
    /// any, stopped), a new one opens the new home.
    fn switch_to(&mut self, paths: Paths, ctx: &egui::Context, demo: bool) {
        let repaint_ctx = ctx.clone();
        // The old one first: its backend stopped and its lock let go (jobs still queued for it are
        // dropped), so the new one can take the same settings' API port.
        self.worker.shut_down();
        match WorkerHandle::spawn(paths.clone(), move || repaint_ctx.request_repaint()) {
            Ok(worker) => {
                worker.send(Job::Open);
                self.worker = worker;
                self.paths = paths;
                self.mode = None;
                self.remote_backend = None;
                self.owner_job = None;
                self.history.clear();
                self.report_repo = None;
                self.reminded_later = None;
                self.source_text.clear();
                self.source_pending = false;
                self.data_text.clear();
                self.data_pending = false;
                self.status = None;
                self.form = None;
                self.saved_form = None;
                self.check = CheckView::NotChecked;
                self.changelog.clear();
                self.job = JobView::Idle;
                self.notice = None;
                self.wizard_checked = false;
                self.models = None;
                self.models_done = None;
                self.free_space = None;
                self.demo = if demo { DemoView::On } else { DemoView::Off };
            }
            Err(e) => {
                self.notice = Some(format!("Could not open {}: {e}", paths.data_dir.display()));
                self.data_pending = false;
                // Back to the home it showed, so the window keeps working.
                let repaint_ctx = ctx.clone();
                if let Ok(worker) =
                    WorkerHandle::spawn(self.paths.clone(), move || repaint_ctx.request_repaint())
                {
                    worker.send(Job::Open);
                    self.worker = worker;
                    self.mode = None;
                }
            }
        }
    }

    /// The URLs the window itself opens (its folders, the agent's page): let through the link filter,
    /// which otherwise opens only https.
    fn own_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = [
            Some(self.paths.logs_dir()),
            crate::logging::launcher_log_dir().map(std::path::Path::to_path_buf),
            Some(self.paths.data_dir.clone()),
            Some(self.paths.config_dir.clone()),
            self.models
                .as_ref()
                .and_then(|m| m.as_ref().ok())
                .and_then(|doc| doc["models_dir"].as_str().map(std::path::PathBuf::from)),
        ]
        .into_iter()
        .flatten()
        .filter_map(|dir| folder_url(&dir))
        .collect();
        urls.extend(self.agent_page_url());
        urls
    }

    /// The source entry: a GitHub `owner/name` (or its web address), a feed URL, or a folder (typed or
    /// chosen in the system's dialog), and "Use this source".
    fn source_entry_ui(&mut self, ui: &mut egui::Ui, label: &str, commands: &mut Vec<Command>) {
        ui.horizontal_wrapped(|ui| {
            let label = ui.label(label);
            ui.add(
                egui::TextEdit::singleline(&mut self.source_text)
                    .hint_text("owner/name, https://… or a folder")
                    .desired_width(240.0),
            )
            .labelled_by(label.id);
            if ui
                .button("Choose folder…")
                .on_hover_text("A folder feed: a mirror, a USB stick, an offline medium")
                .clicked()
            {
                commands.push(Command::ChooseFeedFolder);
            }
            if ui
                .add_enabled(
                    !self.source_text.trim().is_empty() && !self.source_pending,
                    egui::Button::new("Use this source"),
                )
                .on_hover_text(if self.status.as_ref().is_some_and(|s| s.public_key_pinned) {
                    "Releases from it must still be signed by the pinned key"
                } else {
                    "No signing key is pinned: releases are checked by their SHA256 only"
                })
                .on_disabled_hover_text("Type a GitHub owner/name, a feed URL, or choose a folder first")
                .clicked()
            {
                commands.push(Command::SaveSource);
            }
        });
    }

    /// Another folder for the install (and models, downloads, logs), before the first install.
    fn data_folder_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        egui::CollapsingHeader::new("Install somewhere else")
            .id_salt("data-folder")
            .show(ui, |ui| {
                ui.label("The versions, models and downloads go into the folder you choose; the settings stay where they are and remember it.");
                ui.horizontal_wrapped(|ui| {
                    let label = ui.label("Folder");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.data_text)
                            .hint_text("a folder on a disk with room for the models")
                            .desired_width(240.0),
                    )
                    .labelled_by(label.id);
                    if ui.button("Choose…").clicked() {
                        commands.push(Command::ChooseDataFolder);
                    }
                    if ui
                        .add_enabled(
                            !self.data_text.trim().is_empty() && !self.installing() && !self.data_pending,
                            egui::Button::new("Use this folder"),
                        )
                        .on_disabled_hover_text("Type a folder's whole path, or choose one first")
                        .clicked()
                    {
                        commands.push(Command::SaveDataFolder);
                    }
                });
            });
    }

    fn installing(&self) -> bool {
        matches!(self.job, JobView::Running(_))
    }

    /// After this window's launcher replaced itself: which version is in place, and Restart.
    fn launcher_banner_ui(&self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        if !crate::selfupdate::restart_pending() {
            return;
        }
        let to = self
            .status
            .as_ref()
            .and_then(|s| s.launcher.as_ref())
            .and_then(|l| l.last_replacement.as_ref())
            .map(|r| r.to.clone());
        ui.horizontal_wrapped(|ui| {
            ui.colored_label(
                Color32::from_rgb(60, 140, 220),
                match &to {
                    Some(to) => format!(
                        "Launcher {to} is installed. Restart to use it: the window opens again where it is, and the agent is back in a few seconds."
                    ),
                    None => "A new launcher is installed. Restart to use it.".to_owned(),
                },
            );
            if ui.button("Restart now").clicked() {
                commands.push(Command::RestartLauncher);
            }
        });
    }

    fn header_ui(&self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        ui.horizontal(|ui| {
            ui.heading(crate::PRODUCT_NAME);
            if let Some(status) = &self.status {
                ui.label(match status.current_version.as_deref() {
                    Some(version) => format!("Version {version}"),
                    None => "Not installed".to_owned(),
                });
                ui.label(format!("Channel {}", status.channel));
            }
        });
        match &self.mode {
            Some(Mode::Local { api_url, .. }) => {
                ui.weak(format!(
                    "This window runs the agent and serves the local API on {api_url}"
                ));
            }
            Some(Mode::Attached { owner, .. }) => {
                ui.label(format!(
                    "Attached to launcher {} (pid {}), which runs the agent; this window drives it through {}",
                    owner.version, owner.pid, owner.url
                ));
                if let Some(job) = &self.owner_job {
                    ui.label(job);
                }
            }
            None => {}
        }
        let state = self.backend_state();
        ui.horizontal_wrapped(|ui| {
            let text = match state.reason() {
                Some(reason) => format!("Backend {}: {}", state.name(), readable(reason)),
                None => format!("Backend {}", state.name()),
            };
            ui.label(RichText::new(text).color(backend_color(&state)).strong());
            let installed = self.installed_version().is_some();
            let running = !matches!(state, BackendState::Stopped | BackendState::Crashed { .. });
            let idle = !self.installing();
            let why_busy = "An install or another operation runs; wait for it to finish";
            if ui
                .add_enabled(installed && idle && !running, egui::Button::new("Start"))
                .on_disabled_hover_text(if !installed {
                    "Nothing is installed yet"
                } else if running {
                    "The backend runs already"
                } else {
                    why_busy
                })
                .clicked()
            {
                commands.push(Command::StartBackend);
            }
            // Stop also ends a crash loop: the supervisor stops restarting it.
            let crash_loop = matches!(state, BackendState::Crashed { .. })
                && match &self.mode {
                    Some(Mode::Local { service, .. }) => service.supervisor().is_wanted_running(),
                    // The owner's supervisor decides; a stop of a backend it gave up on changes nothing.
                    Some(Mode::Attached { .. }) => true,
                    None => false,
                };
            let why_not_running = if idle {
                "The backend is not running"
            } else {
                why_busy
            };
            if ui
                .add_enabled(idle && (running || crash_loop), egui::Button::new("Stop"))
                .on_disabled_hover_text(why_not_running)
                .clicked()
            {
                commands.push(Command::StopBackend);
            }
            if ui
                .add_enabled(idle && running, egui::Button::new("Restart"))
                .on_disabled_hover_text(why_not_running)
                .clicked()
            {
                commands.push(Command::RestartBackend);
            }
        });
        if let Some(url) = agent_url(&state) {
            let page = self.agent_page_url();
            ui.horizontal_wrapped(|ui| {
                ui.label(format!("The agent answers at {url}"));
                if ui
                    .add_enabled(page.is_some(), egui::Button::new("Open agent"))
                    .on_hover_text("Opens the agent's page in your browser")
                    .clicked()
                    && let Some(page) = page
                {
                    ui.ctx().open_url(egui::OpenUrl::new_tab(page));
                }
            });
        }
    }

    /// The first-run wizard: where releases come from (or the offline demo), what will be installed
    /// (version, size, date, signature, notes), where, and the free space there; then one click.
    fn welcome_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        ui.group(|ui| {
            ui.set_width(ui.available_width());
            ui.heading(format!("Welcome to {}", crate::PRODUCT_NAME));
            if self.demo == DemoView::On {
                ui.label("This is the offline demo: a local feed of three releases signed with a key made for it, kept apart from any real install. Install 1.0.0; after each install the demo publishes the next release (1.1.0 with release notes, then 1.2.0, which fails its health check).");
            }
            let Some(status) = self.status.clone() else { return };
            if status.source.is_none() {
                ui.label("Nothing is installed yet, and no release source is set. Where are the agent's releases published?");
                self.source_entry_ui(ui, "GitHub repository or feed", commands);
                ui.add_space(6.0);
                ui.label("No releases yet, or no network? See the whole product offline:");
                let preparing = self.demo == DemoView::Preparing;
                if ui
                    .add_enabled(!preparing, egui::Button::new("Try the offline demo"))
                    .clicked()
                {
                    commands.push(Command::TryDemo);
                }
                if preparing {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Preparing the demo's signed releases…");
                    });
                }
                return;
            }
            ui.label(format!("Releases come from {}.", status.source.as_deref().unwrap_or_default()));
            let mut other_source = false;
            let mut choose_folder = false;
            match &self.check {
                CheckView::NotChecked | CheckView::Checking => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Looking for the release that fits this computer…");
                    });
                }
                CheckView::Failed(e) => {
                    ui.colored_label(Color32::from_rgb(220, 80, 80), e);
                    ui.horizontal(|ui| {
                        if ui.button("Retry").clicked() {
                            commands.push(Command::CheckForUpdates);
                        }
                        if self.demo == DemoView::Off && ui.button("Try the offline demo").clicked() {
                            commands.push(Command::TryDemo);
                        }
                    });
                    other_source = true;
                }
                CheckView::Done(report) => match &report.latest {
                    Some(latest) => {
                        ui.label(RichText::new(format!("Personal AI Agent {} for {}", latest.version, status.platform)).strong());
                        let mut facts = Vec::new();
                        if let Some(asset) = &latest.asset {
                            facts.push(bytes(asset.size));
                        }
                        if let Some(at) = latest.published_at {
                            facts.push(format!("published {}", at.format("%Y-%m-%d")));
                        }
                        facts.push(if status.public_key_pinned {
                            "must be signed by the pinned key".to_owned()
                        } else {
                            "no signing key pinned: checked by SHA256 only".to_owned()
                        });
                        ui.weak(facts.join(" · "));
                        let install_dir = status.home.data_dir.join("install");
                        let free = self.free_space;
                        ui.label(format!(
                            "Installs into {}{}",
                            install_dir.display(),
                            free.map(|f| format!(" ({} free there)", bytes(f))).unwrap_or_default()
                        ));
                        choose_folder = true;
                        ui.weak("The models the agent needs are listed after the install, with their size, and downloaded only when you agree.");
                        if ui
                            .add_enabled(!self.installing() && !self.data_pending, egui::Button::new("Install Personal AI Agent"))
                            .on_disabled_hover_text("Wait for the chosen folder to be set up")
                            .clicked()
                        {
                            commands.push(Command::InstallFirstTime);
                        }
                    }
                    None => {
                        ui.label(report.message.clone().unwrap_or_else(|| "No release for this computer is published yet.".into()));
                        if ui.button("Retry").clicked() {
                            commands.push(Command::CheckForUpdates);
                        }
                    }
                },
            }
            if other_source {
                self.source_entry_ui(ui, "Or use another source", commands);
            }
            // (Not in the demo: its home is a folder of its own that `demo --reset` removes whole.)
            if choose_folder && self.demo == DemoView::Off {
                self.data_folder_ui(ui, commands);
            }
            self.changelog_ui(ui);
            self.progress_ui(ui, commands);
        });
    }

    /// The bytes of required models the installed version still lacks (`None`: not known yet).
    fn missing_models(&self) -> Option<u64> {
        let doc = self.models.as_ref()?.as_ref().ok()?;
        Some(
            doc["models"]
                .as_array()?
                .iter()
                .filter(|m| m["state"] != "present" && m["required"] != false)
                .map(|m| m["size"].as_u64().unwrap_or(0))
                .sum(),
        )
    }

    fn update_card_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        if let Some(missing) = self.missing_models().filter(|n| *n > 0) {
            // The wizard's last step: what the agent still needs, with its size and the free space.
            ui.group(|ui| {
                ui.set_width(ui.available_width());
                ui.strong("The agent needs its models");
                ui.label(format!(
                    "{} to download{}.",
                    bytes(missing),
                    self.free_space
                        .map(|f| format!(" ({} free in the data folder)", bytes(f)))
                        .unwrap_or_default()
                ));
                ui.horizontal(|ui| {
                    if ui
                        .add_enabled(!self.installing(), egui::Button::new("Download the models"))
                        .on_disabled_hover_text("Another operation runs; wait for it to finish")
                        .clicked()
                    {
                        commands.push(Command::DownloadModels);
                        commands.push(Command::Show(Screen::Models));
                    }
                    if ui.button("See the models").clicked() {
                        commands.push(Command::Show(Screen::Models));
                    }
                });
            });
        }
        ui.group(|ui| {
            ui.set_width(ui.available_width());
            ui.strong("Updates");
            let busy = self.installing() || matches!(self.check, CheckView::Checking);
            if ui
                .add_enabled(!busy, egui::Button::new("Check for updates"))
                .clicked()
            {
                commands.push(Command::CheckForUpdates);
            }
            match &self.check {
                CheckView::NotChecked => {
                    let last = self.status.as_ref().and_then(|s| s.last_check);
                    ui.label(match last {
                        Some(at) => format!("Last checked {}", at.format("%Y-%m-%d %H:%M UTC")),
                        None => "Not checked yet".to_owned(),
                    });
                }
                CheckView::Checking => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Checking for updates…");
                    });
                }
                CheckView::Failed(e) => {
                    ui.colored_label(Color32::from_rgb(220, 80, 80), e);
                }
                CheckView::Done(report) => match (&report.latest, report.update_available) {
                    (Some(latest), true) => {
                        ui.label(RichText::new(format!("Update to {} available", latest.version)).strong());
                        let mut facts = Vec::new();
                        match (&report.delivery, &latest.asset) {
                            // What will really be downloaded: a delta from the installed version is
                            // usually a small part of the archive.
                            (Some(d), _) if d.method == "delta" => facts.push(format!(
                                "{} to download (only what changed since {}; the full archive is {})",
                                bytes(d.bytes),
                                d.base.as_deref().unwrap_or("the installed version"),
                                bytes(d.full_bytes)
                            )),
                            (_, Some(asset)) => facts.push(bytes(asset.size)),
                            _ => {}
                        }
                        if let Some(at) = latest.published_at {
                            facts.push(format!("published {}", at.format("%Y-%m-%d")));
                        }
                        facts.push(if self.status.as_ref().is_some_and(|s| s.public_key_pinned) {
                            "must be signed by the pinned key".to_owned()
                        } else {
                            "no signing key pinned: checked by SHA256 only".to_owned()
                        });
                        ui.weak(facts.join(" · "));
                        ui.horizontal(|ui| {
                            if ui
                                .add_enabled(!self.installing(), egui::Button::new("Install update"))
                                .clicked()
                            {
                                commands.push(Command::InstallUpdate);
                            }
                            if ui
                                .add_enabled(!self.installing(), egui::Button::new("Skip this version"))
                                .on_hover_text("Never offer this version automatically; undo it in Settings")
                                .clicked()
                            {
                                commands.push(Command::Skip(latest.version.clone()));
                            }
                            if ui
                                .add_enabled(!self.installing(), egui::Button::new("Remind me later"))
                                .on_hover_text("Hide this offer until the next check")
                                .clicked()
                            {
                                commands.push(Command::RemindLater);
                            }
                        });
                    }
                    _ => {
                        ui.label("Up to date");
                        if let Some(message) = &report.message {
                            ui.label(message);
                        }
                    }
                },
            }
            self.changelog_ui(ui);
            if let Some(previous) = self.status.as_ref().and_then(|s| s.previous_version.as_deref())
                && ui
                    .add_enabled(!busy, egui::Button::new(format!("Roll back to {previous}")))
                    .clicked()
            {
                commands.push(Command::Rollback);
            }
            self.progress_ui(ui, commands);
        });
    }

    /// The release notes, newest first, rendered as markdown.
    fn changelog_ui(&mut self, ui: &mut egui::Ui) {
        if !self.changelog.is_empty() {
            ui.separator();
            ui.strong("What's new");
            // Newest first; each release's notes rendered as markdown (headings, lists, emphasis,
            // code, clickable links).
            egui::ScrollArea::vertical()
                .id_salt("changelog")
                .max_height(260.0)
                .show(ui, |ui| {
                    for entry in &self.changelog {
                        let date = entry
                            .published_at
                            .map(|d| format!(" — {}", d.format("%Y-%m-%d")))
                            .unwrap_or_default();
                        ui.label(
                            RichText::new(format!("{}{date}", entry.version))
                                .strong()
                                .size(16.0),
                        );
                        egui_commonmark::CommonMarkViewer::new().show(
                            ui,
                            &mut self.markdown,
                            entry.notes.trim(),
                        );
                        ui.add_space(6.0);
                    }
                });
        }
    }

    fn progress_ui(&self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        match &self.job {
            JobView::Idle => {}
            JobView::Running(stage) => {
                let (fraction, text) = stage_text(stage);
                let bar = match fraction {
                    Some(f) => egui::ProgressBar::new(f).show_percentage(),
                    None => egui::ProgressBar::new(0.0).animate(true),
                };
                if fraction.is_none() {
                    // An indeterminate bar animates; ten frames a second are enough for it.
                    ui.ctx().request_repaint_after(Duration::from_millis(100));
                }
                ui.add(bar);
                ui.horizontal(|ui| {
                    ui.label(text);
                    // Cancelling is real only until the switch: once the new version is being
                    // health-checked (or rolled back), stopping halfway would leave less than either.
                    let cancellable = matches!(
                        stage,
                        Stage::Preparing | Stage::Downloading { .. } | Stage::Verified { .. }
                    );
                    if cancellable && ui.button("Cancel").clicked() {
                        commands.push(Command::CancelInstall);
                    }
                });
            }
            JobView::Finished(outcome) => {
                let (color, text) = outcome_text(outcome);
                ui.colored_label(color, readable(&text));
                if let Some(details) = outcome_details(outcome) {
                    egui::CollapsingHeader::new("Details")
                        .id_salt("outcome-details")
                        .default_open(false)
                        .show(ui, |ui| {
                            let details = readable(&details);
                            if ui.button("Copy details").clicked() {
                                ui.ctx().copy_text(details.clone());
                            }
                            ui.monospace(details);
                        });
                }
            }
        }
    }

    fn settings_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        let Some(form) = &mut self.form else {
            return;
        };
        ui.heading("Settings");
        ui.scope(|ui| {
            ui.horizontal(|ui| {
                let label = ui.label("Update channel");
                egui::ComboBox::from_id_salt("channel")
                    .selected_text(form.channel.as_str())
                    .show_ui(ui, |ui| {
                        for channel in Channel::ALL {
                            ui.selectable_value(&mut form.channel, channel, channel.as_str());
                        }
                    })
                    .response
                    .labelled_by(label.id);
            });
            ui.checkbox(&mut form.auto_check, "Check for updates automatically");
            ui.add_enabled_ui(form.auto_check, |ui| {
                ui.horizontal(|ui| {
                    let label = ui.label("Hours between checks");
                    ui.add(
                        egui::DragValue::new(&mut form.check_interval_hours)
                            .range(0.25..=crate::config::MAX_CHECK_INTERVAL_HOURS)
                            .speed(0.25)
                            .max_decimals(2)
                            .clamp_existing_to_range(false),
                    )
                    .labelled_by(label.id)
                    .on_hover_text("Each check waits a little more or less (up to a tenth), so launchers started together do not all ask at once");
                });
                ui.checkbox(&mut form.auto_download, "Download updates automatically");
                ui.checkbox(&mut form.auto_install, "Install updates automatically");
            })
            .response
            .on_disabled_hover_text("Automatic checks are off");
            ui.horizontal(|ui| {
                let label = ui.label("Versions kept as backups");
                ui.add(egui::DragValue::new(&mut form.backup_count).range(1..=20))
                    .labelled_by(label.id);
            });
            ui.checkbox(
                &mut form.keep_backend_running,
                "Keep the agent running after the window closes",
            )
            .on_hover_text("When the window closes, a launcher of its own keeps the agent running in the background (and restarts it if it crashes). Opening this window again shows it; Stop, or personal-ai-agent backend stop, ends it. Automatic update checks pause while no window runs the agent itself.");
            let changed = self.saved_form.as_ref() != Some(form);
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(changed, egui::Button::new("Save settings"))
                    .on_disabled_hover_text("Nothing changed since the last save")
                    .clicked()
                {
                    commands.push(Command::SaveSettings);
                }
                if self.saved_notice && !changed {
                    ui.colored_label(Color32::from_rgb(60, 180, 75), "Saved");
                }
            });
        });
        let Some(status) = self.status.clone() else { return };
        ui.add_space(8.0);
        ui.strong("Release source");
        ui.label(match &status.source {
            Some(source) => format!("Releases come from {source}."),
            None => "No release source is set.".to_owned(),
        });
        self.source_entry_ui(ui, "Change to", commands);
        let status = &status;
        ui.add_space(8.0);
        ui.strong("Skipped versions");
        if status.skip_versions.is_empty() {
            ui.weak("None: every newer version is offered.");
        }
        for version in &status.skip_versions {
            ui.horizontal(|ui| {
                ui.label(version);
                if ui
                    .button(format!("Offer {version} again"))
                    .on_hover_text("Undo the skip (a rollback skips the version it left, too)")
                    .clicked()
                {
                    commands.push(Command::Unskip(version.clone()));
                }
            });
        }
        if !status.failed_versions.is_empty() {
            ui.add_space(4.0);
            ui.strong("Versions that failed their health check");
            ui.weak("Not offered automatically. Trying one again installs it and checks its health once more; a failure rolls back as before.");
            for version in &status.failed_versions {
                ui.horizontal(|ui| {
                    ui.label(version);
                    if ui
                        .add_enabled(
                            !self.installing(),
                            egui::Button::new(format!("Try {version} again")),
                        )
                        .clicked()
                    {
                        commands.push(Command::InstallVersion(version.clone()));
                    }
                });
            }
        }
        let kept: Vec<&String> = status
            .installed_versions
            .iter()
            .filter(|v| Some(v.as_str()) != status.current_version.as_deref())
            .collect();
        if !kept.is_empty() {
            ui.add_space(4.0);
            ui.strong("Kept versions");
            for version in kept {
                let clicked = ui
                    .push_id(("kept", version), |ui| {
                        ui.add_enabled(
                            !self.installing(),
                            egui::Button::new(format!("Roll back to {version}")),
                        )
                        .on_disabled_hover_text("Another operation runs; wait for it to finish")
                        .clicked()
                    })
                    .inner;
                if clicked {
                    commands.push(Command::RollbackTo(version.clone()));
                }
            }
        }
        ui.add_space(8.0);
        ui.strong("Where things are");
        ui.label(format!("Settings file: {}", status.home.config_file.display()));
        folder_row(ui, "Data", &status.home.data_dir);
        folder_row(ui, "Logs", &self.paths.logs_dir());
    }

    fn about_ui(&self, ui: &mut egui::Ui) {
        ui.heading("About");
        ui.label(format!(
            "{} launcher {}",
            crate::PRODUCT_NAME,
            crate::launcher_version()
        ));
        let Some(status) = &self.status else { return };
        ui.label(format!(
            "Agent: {}",
            status.current_version.as_deref().unwrap_or("not installed")
        ));
        ui.label(format!("Platform: {}", status.platform));
        ui.label(format!("Channel: {}", status.channel));
        ui.label(format!(
            "Installed versions: {}",
            if status.installed_versions.is_empty() {
                "none".to_owned()
            } else {
                status.installed_versions.join(", ")
            }
        ));
        ui.label(format!("Settings file: {}", status.home.config_file.display()));
        folder_row(ui, "Data folder", &status.home.data_dir);
        if status.home.portable {
            ui.label("Portable mode: everything lives beside the executable.");
        }
    }

    fn models_ui(&self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        ui.heading("Models");
        if self.status.is_some() && self.installed_version().is_none() {
            ui.label("Nothing is installed yet: the models a version needs are listed here once it is installed, with their sizes, and downloaded only when you agree.");
            return;
        }
        match &self.models {
            None => {
                ui.weak("Reading what the installed version needs…");
            }
            Some(Err(e)) => {
                ui.label(readable(e));
            }
            Some(Ok(doc)) => {
                let list = doc["models"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    ui.label("The installed version needs no model files.");
                }
                if let Some(dir) = doc["models_dir"].as_str() {
                    folder_row(ui, "Folder", std::path::Path::new(dir));
                }
                egui::Grid::new("models").striped(true).show(ui, |ui| {
                    for m in &list {
                        ui.label(m["name"].as_str().unwrap_or_default());
                        ui.label(bytes(m["size"].as_u64().unwrap_or(0)));
                        let state = m["state"].as_str().unwrap_or("unknown");
                        let color = if state == "present" {
                            Color32::from_rgb(60, 180, 75)
                        } else {
                            Color32::from_rgb(230, 160, 20)
                        };
                        ui.colored_label(color, state.replace('_', " "));
                        ui.label(if m["required"] == false {
                            "optional"
                        } else {
                            "required"
                        });
                        ui.end_row();
                    }
                });
                let missing: u64 = list
                    .iter()
                    .filter(|m| m["state"] != "present" && m["required"] != false)
                    .map(|m| m["size"].as_u64().unwrap_or(0))
                    .sum();
                if missing > 0 {
                    ui.label(format!(
                        "{} to download{} (the space is checked before anything is fetched).",
                        bytes(missing),
                        self.free_space
                            .map(|f| format!(", {} free there", bytes(f)))
                            .unwrap_or_default()
                    ));
                    if ui
                        .add_enabled(!self.installing(), egui::Button::new("Download missing models"))
                        .on_disabled_hover_text("Another operation runs; wait for it to finish")
                        .clicked()
                    {
                        commands.push(Command::DownloadModels);
                    }
                } else if !list.is_empty() {
                    ui.colored_label(Color32::from_rgb(60, 180, 75), "Every required model is present.");
                }
            }
        }
        if matches!(self.job, JobView::Running(_)) {
            self.progress_ui(ui, commands);
        }
        match &self.models_done {
            Some(Ok(text)) => {
                ui.colored_label(Color32::from_rgb(60, 180, 75), text);
            }
            Some(Err(e)) => {
                ui.colored_label(Color32::from_rgb(220, 60, 60), headline(e));
            }
            None => {}
        }
    }

    fn history_ui(&self, ui: &mut egui::Ui) {
        ui.heading("Update history");
        if self.history.is_empty() {
            ui.weak(
                "Nothing yet: checks that find an update, downloads, installs and rollbacks are listed here.",
            );
        }
        egui::Grid::new("history").striped(true).show(ui, |ui| {
            for r in self.history.iter().take(20) {
                ui.label(r.at.format("%Y-%m-%d %H:%M").to_string());
                ui.label(r.kind.replace('_', " "));
                ui.label(format!(
                    "{} to {}",
                    r.from.as_deref().unwrap_or("nothing"),
                    r.to.as_deref().unwrap_or("—")
                ));
                let color = match r.outcome.as_str() {
                    "ok" | "found" => Color32::from_rgb(60, 180, 75),
                    "cancelled" => Color32::GRAY,
                    _ => Color32::from_rgb(230, 160, 20),
                };
                ui.colored_label(color, r.outcome.replace('_', " "));
                ui.end_row();
            }
        });
    }

    /// "Report a problem": the new-issue page of the repository, with a title and body the user sees
    /// (and can copy) first; nothing is sent by the app itself.
    fn report_ui(&self, ui: &mut egui::Ui) {
        let Some(status) = &self.status else { return };
        let failure = self
            .history
            .iter()
            .find(|r| r.outcome == "failed" || r.outcome == "rolled_back");
        let title = match failure {
            Some(f) => format!(
                "Update {} {}: {}",
                f.to.as_deref().unwrap_or("(unknown version)"),
                f.outcome.replace('_', " "),
                f.kind.replace('_', " ")
            ),
            None => "Problem with the Personal AI Agent launcher".to_owned(),
        };
        let tail = match &self.mode {
            Some(Mode::Local { service, .. }) => service.supervisor().log_tail(),
            _ => vec!["(the backend runs under another launcher; see its log)".to_owned()],
        };
        let last_failure = failure
            .map(|f| {
                format!(
                    "{} at {}: {}",
                    f.kind,
                    f.at.format("%Y-%m-%d %H:%M UTC"),
                    readable(f.message.as_deref().unwrap_or(""))
                )
            })
            .unwrap_or_else(|| "none recorded".into());
        let body_with = |lines: usize| {
            format!(
                "**Launcher**: {}\n**Agent**: {}\n**Platform**: {}\n**Channel**: {}\n\n**Last failure**: {}\n\n**Last backend log lines**:\n```\n{}\n```\n\n**What I did / what I expected**:\n\n",
                status.launcher_version,
                status.current_version.as_deref().unwrap_or("not installed"),
                status.platform,
                status.channel,
                last_failure,
                tail[tail.len().saturating_sub(lines)..].join("\n")
            )
        };
        // As many of the last 15 log lines as fit in the new-issue link (GitHub refuses a longer one), so
        // the page gets a whole report; a failure message too long even alone is cut there.
        let body = (0..=15usize)
            .rev()
            .map(&body_with)
            .find(|b| {
                self.report_repo
                    .as_deref()
                    .is_none_or(|repo| !new_issue_url(repo, &title, b).1)
            })
            .unwrap_or_else(|| body_with(0));
        egui::CollapsingHeader::new("Report a problem")
            .default_open(false)
            .show(ui, |ui| {
                ui.label("This opens the project's new-issue page in your browser with the text below filled in. Nothing is sent by the app itself; read it, and remove what you do not want to share.");
                ui.label(RichText::new(&title).strong());
                egui::ScrollArea::vertical()
                    .id_salt("report-body")
                    .max_height(160.0)
                    .show(ui, |ui| {
                        ui.monospace(&body);
                    });
                ui.horizontal(|ui| {
                    if ui.button("Copy report").clicked() {
                        ui.ctx().copy_text(format!("{title}\n\n{body}"));
                    }
                    match &self.report_repo {
                        Some(repo) => {
                            if ui.button("Open the new-issue page").clicked() {
                                let (url, shortened) = new_issue_url(repo, &title, &body);
                                if shortened {
                                    // The page gets what fits in a link; the whole report is on the
                                    // clipboard to paste over it.
                                    ui.ctx().copy_text(format!("{title}\n\n{body}"));
                                }
                                ui.ctx().open_url(egui::OpenUrl::new_tab(url));
                            }
                        }
                        None => {
                            ui.add_enabled(false, egui::Button::new("Open the new-issue page"))
                                .on_disabled_hover_text("No GitHub repository is configured; copy the report and send it to whoever publishes your releases");
                        }
                    }
                });
            });
    }

    fn logs_ui(&self, ui: &mut egui::Ui) {
        self.history_ui(ui);
        ui.add_space(6.0);
        self.report_ui(ui);
        ui.add_space(6.0);
        ui.heading("Backend log");
        folder_row(ui, "Backend log", &self.paths.logs_dir());
        if let Some(dir) = crate::logging::launcher_log_dir() {
            folder_row(ui, "Launcher log", dir);
        }
        {
            {
                let Some(Mode::Local { service, .. }) = &self.mode else {
                    ui.label("The backend's output is in the log of the launcher that runs it.");
                    return;
                };
                // New log lines wake the window through the worker, which looks twice a second.
                let lines = service.supervisor().log_tail();
                if ui.button("Copy log").clicked() {
                    ui.ctx().copy_text(lines.join("\n"));
                }
                egui::ScrollArea::vertical()
                    .id_salt("logs")
                    .max_height(200.0)
                    .stick_to_bottom(true)
                    .show(ui, |ui| {
                        if lines.is_empty() {
                            ui.label("No backend output yet.");
                        }
                        for line in lines {
                            ui.monospace(line);
                        }
                    });
            }
        }
    }
}

impl Drop for App {
    /// The window closes for good: the worker stops the backend, or hands it to a background launcher
    /// when the settings say to keep the agent running.
    fn drop(&mut self) {
        let launcher = self
            .demo_launcher
            .clone()
            .map(Ok)
            .unwrap_or_else(crate::demo::this_launcher);
        match launcher {
            Ok(launcher) => self.worker.hand_over_on_close(launcher),
            Err(e) => tracing::warn!("the agent cannot be left running in the background: {e}"),
        }
        if let Some(slot) = &self.after_close
            && let Some(thread) = self.worker.release()
        {
            slot.lock().unwrap_or_else(|p| p.into_inner()).push(thread);
        }
    }
}

/// The storage key of the last screen.
const SCREEN_KEY: &str = "screen";

impl eframe::App for App {
    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        storage.set_string(SCREEN_KEY, self.screen.label().to_owned());
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frames += 1;
        if self.bench_frames {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            eprintln!("frame {} {ms}", self.frames);
        }
        let ctx = ui.ctx().clone();
        self.worker.set_logs_visible(self.screen == Screen::Logs);
        self.take_replies(&ctx);
        self.wizard_step();
        let mut commands = Vec::new();
        egui::Panel::left("nav")
            .resizable(false)
            .exact_size(110.0)
            .show(ui, |ui| {
                ui.add_space(8.0);
                for screen in Screen::ALL {
                    if ui
                        .selectable_label(self.screen == screen, screen.label())
                        .clicked()
                    {
                        commands.push(Command::Show(screen));
                    }
                }
            });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                self.header_ui(ui, &mut commands);
                ui.separator();
                if let Some(notice) = &self.notice {
                    ui.colored_label(Color32::from_rgb(220, 80, 80), notice);
                }
                self.launcher_banner_ui(ui, &mut commands);
                match self.screen {
                    Screen::Home => match self.status.as_ref().map(|s| s.current_version.is_some()) {
                        None => {
                            ui.horizontal(|ui| {
                                ui.spinner();
                                ui.label("Reading the install status…");
                            });
                        }
                        Some(false) => self.welcome_ui(ui, &mut commands),
                        Some(true) => self.update_card_ui(ui, &mut commands),
                    },
                    Screen::Models => self.models_ui(ui, &mut commands),
                    Screen::Settings => self.settings_ui(ui, &mut commands),
                    Screen::Logs => self.logs_ui(ui),
                    Screen::About => self.about_ui(ui),
                }
            });
        });
        // Release notes are data from the release source: their links open only as https (a `file:` or a
        // custom-protocol link could start a local program).
        // The window's own "Open folder" and "Open agent" are allowed.
        let own = self.own_urls();
        ui.ctx().output_mut(|o| {
            o.commands.retain(|c| match c {
                egui::OutputCommand::OpenUrl(open) => {
                    let ok = open.url.starts_with("https://") || own.contains(&open.url);
                    if !ok {
                        tracing::warn!(url = %open.url, "not opening a link that is not https");
                    }
                    ok
                }
                _ => true,
            })
        });
        let restart = commands.iter().any(|c| matches!(c, Command::RestartLauncher));
        for command in commands {
            self.apply(command);
        }
        if restart {
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }
}

/// Asks for a folder with the system's dialog, which blocks its caller: on a thread of its own, the
/// folder put in `slot` and taken at the next frame.
fn pick_folder(title: &'static str, slot: std::sync::Arc<std::sync::Mutex<Option<String>>>) {
    let _ = std::thread::Builder::new()
        .name("ui-folder-dialog".into())
        .spawn(move || {
            if let Some(folder) = rfd::FileDialog::new().set_title(title).pick_folder() {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(folder.display().to_string());
            }
        });
}

/// `dir` as a `file://` URL the system opens in its file manager.
fn folder_url(dir: &std::path::Path) -> Option<String> {
    url::Url::from_directory_path(dir).ok().map(String::from)
}

/// A path with an "Open folder" button beside it.
fn folder_row(ui: &mut egui::Ui, label: &str, dir: &std::path::Path) {
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("{label}: {}", dir.display()));
        // (Not looked up on disk here: the UI thread does not touch the disk. A folder not made yet opens
        // nothing, as the system's file manager says.)
        if ui
            .push_id(("open-folder", label), |ui| ui.button("Open folder").clicked())
            .inner
            && let Some(url) = folder_url(dir)
        {
            ui.ctx().open_url(egui::OpenUrl::new_tab(url));
        }
    });
}

/// The running agent's page, on loopback at the port the supervisor gave it.
fn agent_url(state: &BackendState) -> Option<String> {
    match state {
        BackendState::Running { port, .. } if *port != 0 => Some(format!("http://127.0.0.1:{port}/")),
        _ => None,
    }
}

fn backend_color(state: &BackendState) -> Color32 {
    match state {
        BackendState::Running { .. } => Color32::from_rgb(60, 180, 75),
        BackendState::Starting { .. } | BackendState::Unhealthy { .. } => Color32::from_rgb(230, 160, 20),
        BackendState::Crashed { .. } => Color32::from_rgb(220, 60, 60),
        BackendState::Stopped => Color32::GRAY,
    }
}

/// The line under the progress bar, alone.
pub(super) fn stage_line(stage: &Stage) -> String {
    stage_text(stage).1
}

/// The progress bar's fraction (none: indeterminate) and the line under it.
fn stage_text(stage: &Stage) -> (Option<f32>, String) {
    match stage {
        Stage::Preparing => (None, "Preparing…".into()),
        Stage::Downloading {
            done,
            total,
            bytes_per_sec,
            eta,
        } => {
            let fraction = total.filter(|t| *t > 0).map(|t| *done as f32 / t as f32);
            let mut text = match total {
                Some(t) => format!("Downloading {} of {}", bytes(*done), bytes(*t)),
                None => format!("Downloading {}", bytes(*done)),
            };
            text.push_str(&format!(", {}/s", bytes(*bytes_per_sec as u64)));
            if let Some(eta) = eta {
                text.push_str(&format!(", {} left", duration(*eta)));
            }
            (fraction, text)
        }
        Stage::Verified { verified_by, signed } => {
            let trust = if *signed { "signed" } else { "unsigned" };
            (None, format!("Verified against {verified_by} ({trust})"))
        }
        Stage::Installing { version } => (None, format!("Installing {version}…")),
        Stage::StoppingBackend => (None, "Stopping the backend…".into()),
        Stage::StartingBackend { version } => (
            None,
            format!(
                "Checking the health of {version}: this can take up to a minute. It cannot be cancelled now."
            ),
        ),
        Stage::RollingBack { .. } => (
            None,
            "The new version is not healthy: going back to the previous one…".into(),
        ),
    }
}

fn outcome_text(outcome: &InstallOutcome) -> (Color32, String) {
    match outcome {
        InstallOutcome::Healthy(report) => (
            Color32::from_rgb(60, 180, 75),
            match &report.previous_version {
                // An update: the agent was away between the old backend's stop and the new one's health.
                Some(previous) => format!(
                    "Updated from {previous} to {}; the agent is healthy and runs it (away for {}).",
                    report.installed_version,
                    if report.downtime_ms < 1000 {
                        format!("{} ms", report.downtime_ms)
                    } else {
                        duration(Duration::from_millis(report.downtime_ms))
                    }
                ),
                None => format!(
                    "Installed {}; the agent is healthy and running.",
                    report.installed_version
                ),
            } + &match &report.delivery {
                // What really moved: a delta, or the full archive when a delta was planned but not used.
                Some(d) if d.method == "delta" => {
                    format!(" Downloaded {} (only what changed).", bytes(d.bytes))
                }
                Some(d) if d.reason.is_some() && report.previous_version.is_some() => format!(
                    " Downloaded the full archive ({}): {}.",
                    bytes(d.bytes),
                    d.reason.as_deref().unwrap_or_default()
                ),
                _ => String::new(),
            } + &match &report.launcher {
                // Updated: the banner above offers Restart.
                Some(outcome @ (LauncherOutcome::Refused { .. } | LauncherOutcome::Failed { .. })) => {
                    format!(" {}", outcome.human())
                }
                _ => String::new(),
            },
        ),
        InstallOutcome::RolledBack { from, to, .. } => (
            Color32::from_rgb(230, 160, 20),
            match to {
                Some(to) => format!(
                    "Rolled back: {from} did not pass its health check, so {to} runs again. {from} will not be offered again automatically; nothing else is needed."
                ),
                // A first install has nothing to go back to: the engine keeps it installed (not running).
                None => format!(
                    "{from} did not pass its health check. There was no earlier version to go back to, so it stays installed but does not run: see Details and Logs, then Start it again or report the problem."
                ),
            },
        ),
        InstallOutcome::Cancelled => (
            Color32::GRAY,
            "Cancelled before anything was switched; the installed version runs as before. The partial download is kept and resumed next time.".into(),
        ),
        InstallOutcome::NothingToDo(text) => (Color32::GRAY, text.clone()),
        InstallOutcome::Failed(e) => (Color32::from_rgb(220, 60, 60), headline(e)),
    }
}

/// `text` for a URL's query (every byte outside the unreserved set percent-encoded).
/// The longest new-issue link opened: GitHub answers longer ones with an error page (about 8 KiB), and
/// some browsers cut them.
const ISSUE_URL_LIMIT: usize = 7000;

/// The repository's new-issue page with `title` and `body` filled in, and whether the body had to be
/// shortened to fit [`ISSUE_URL_LIMIT`] (then it ends saying the whole report is on the clipboard).
fn new_issue_url(repo: &str, title: &str, body: &str) -> (String, bool) {
    let head = format!(
        "https://github.com/{repo}/issues/new?title={}&body=",
        url_escape(title)
    );
    let whole = format!("{head}{}", url_escape(body));
    if whole.len() <= ISSUE_URL_LIMIT {
        return (whole, false);
    }
    let note = "\n\n(The report was too long for a link: it is shortened here. The whole report was copied to your clipboard; paste it over this text.)";
    let room = ISSUE_URL_LIMIT.saturating_sub(head.len() + url_escape(note).len());
    let mut cut = String::new();
    let mut used = 0;
    for c in body.chars() {
        let n = url_escape(c.encode_utf8(&mut [0; 4])).len();
        if used + n > room {
            break;
        }
        used += n;
        cut.push(c);
    }
    (format!("{head}{}{}", url_escape(&cut), url_escape(note)), true)
}

fn url_escape(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A long engine message's first part, for the line a user reads first (the whole is under Details).
fn headline(message: &str) -> String {
    let first = message.split('⏎').next().unwrap_or(message).trim();
    if first.chars().count() <= 200 {
        first.to_owned()
    } else {
        let cut: String = first.chars().take(200).collect();
        format!("{cut}…")
    }
}

/// What is behind an outcome's "Details": the engine's whole message (URLs, the health answer, log lines).
fn outcome_details(outcome: &InstallOutcome) -> Option<String> {
    match outcome {
        InstallOutcome::RolledBack { reason, .. } => Some(reason.clone()),
        InstallOutcome::Failed(e) if headline(e) != *e => Some(e.clone()),
        _ => None,
    }
}

/// Engine messages join quoted log lines with "⏎", which egui's bundled fonts cannot draw; the window
/// shows them as separate lines instead.
fn readable(message: &str) -> String {
    message.replace(" ⏎ ", "\n").replace('⏎', "\n")
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_report_fills_the_new_issue_page_whole() {
        let (url, shortened) = new_issue_url("o/n", "Update 1.2.0 failed", "**Agent**: 1.1.0 & more");
        assert!(!shortened);
        assert_eq!(
            url,
            "https://github.com/o/n/issues/new?title=Update+1.2.0+failed&body=**Agent**%3A+1.1.0+%26+more"
        );
    }

    #[test]
    fn a_long_report_is_cut_to_fit_a_link_and_says_where_the_rest_is() {
        let body = "log line with ünïcode and spaces\n".repeat(2000);
        let (url, shortened) = new_issue_url("o/n", "t", &body);
        assert!(shortened);
        assert!(url.len() <= ISSUE_URL_LIMIT, "{}", url.len());
        let query = url::Url::parse(&url).unwrap();
        let body_sent = query
            .query_pairs()
            .find(|(k, _)| k == "body")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        assert!(body_sent.starts_with("log line with ünïcode"));
        assert!(body_sent.ends_with("paste it over this text.)"));
    }
}
