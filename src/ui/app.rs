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
    CancelInstall,
    Rollback,
    /// Offer this skipped version again.
    Unskip(String),
    /// Never offer this version automatically.
    Skip(String),
    /// Hide the offer until the next check.
    RemindLater,
    Show(Screen),
    StartBackend,
    StopBackend,
    SaveSettings,
}

/// The screens of the sidebar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Home,
    Settings,
    Logs,
    About,
}

impl Screen {
    const ALL: [Screen; 4] = [Screen::Home, Screen::Settings, Screen::Logs, Screen::About];

    fn label(self) -> &'static str {
        match self {
            Screen::Home => "Home",
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
}

impl App {
    /// Starts the worker, which takes ownership of the install (serving the API, finishing an interrupted
    /// update and starting the installed backend) or attaches to the launcher that owns it.
    pub fn new(paths: &Paths, ctx: &egui::Context) -> std::io::Result<App> {
        let repaint_ctx = ctx.clone();
        let worker = WorkerHandle::spawn(paths.clone(), move || repaint_ctx.request_repaint())?;
        worker.send(Job::Open);
        Ok(App {
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
            Some(Mode::Attached { owner }) => Some(owner),
            _ => None,
        }
    }

    /// Whether this window owns the install (and serves the local API).
    pub fn is_owner(&self) -> bool {
        matches!(self.mode, Some(Mode::Local { .. }))
    }

    fn take_replies(&mut self) {
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
                Reply::SnapshotFailed(e) | Reply::ActionFailed(e) => self.notice = Some(readable(&e)),
                Reply::Checked(Ok(report)) => self.check = CheckView::Done(report),
                Reply::Checked(Err(e)) => self.check = CheckView::Failed(readable(&e)),
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
                }
            }
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
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
            Command::InstallFirstTime => {
                self.job = JobView::Running(Stage::Preparing);
                self.worker.send(Job::Install(None));
            }
            Command::CancelInstall => self.worker.cancel(),
            Command::Rollback => {
                self.check = CheckView::NotChecked;
                self.job = JobView::Idle;
                self.worker.send(Job::Rollback);
            }
            Command::Unskip(version) => self.worker.send(Job::Unskip(version)),
            Command::Skip(version) => {
                self.check = CheckView::NotChecked;
                self.changelog.clear();
                self.worker.send(Job::Skip(version));
            }
            Command::RemindLater => {
                self.check = CheckView::NotChecked;
                self.changelog.clear();
            }
            Command::Show(screen) => self.screen = screen,
            Command::StartBackend => self.worker.send(Job::StartBackend),
            Command::StopBackend => self.worker.send(Job::StopBackend),
            Command::SaveSettings => {
                if let Some(form) = &self.form {
                    self.saved_notice = false;
                    self.worker.send(Job::SaveSettings(form.clone()));
                }
            }
        }
    }

    fn installing(&self) -> bool {
        matches!(self.job, JobView::Running(_))
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
            Some(Mode::Attached { owner }) => {
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
        ui.horizontal(|ui| {
            let text = match state.reason() {
                Some(reason) => format!("Backend {}: {}", state.name(), readable(reason)),
                None => format!("Backend {}", state.name()),
            };
            ui.label(RichText::new(text).color(backend_color(&state)).strong());
            let installed = self.installed_version().is_some();
            let running = !matches!(state, BackendState::Stopped | BackendState::Crashed { .. });
            let idle = !self.installing();
            if ui
                .add_enabled(installed && idle && !running, egui::Button::new("Start"))
                .clicked()
            {
                commands.push(Command::StartBackend);
            }
            if ui
                .add_enabled(idle && running, egui::Button::new("Stop"))
                .clicked()
            {
                commands.push(Command::StopBackend);
            }
        });
    }

    fn welcome_ui(&self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        ui.group(|ui| {
            ui.set_width(ui.available_width());
            ui.heading(format!("Welcome to {}", crate::PRODUCT_NAME));
            ui.label("Nothing is installed yet. Install the agent to get started; it is downloaded, verified and started for you.");
            if ui
                .add_enabled(!self.installing(), egui::Button::new("Install Personal AI Agent"))
                .clicked()
            {
                commands.push(Command::InstallFirstTime);
            }
            self.progress_ui(ui, commands);
        });
    }

    fn update_card_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
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
                        if let Some(asset) = &latest.asset {
                            facts.push(bytes(asset.size));
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
            ui.checkbox(&mut form.auto_download, "Download updates automatically");
            ui.checkbox(&mut form.auto_install, "Install updates automatically");
            ui.horizontal(|ui| {
                let label = ui.label("Versions kept as backups");
                ui.add(egui::DragValue::new(&mut form.backup_count).range(0..=20))
                    .labelled_by(label.id);
            });
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
        let Some(status) = &self.status else { return };
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
            ui.weak("Not offered automatically; install one by its version from the command line to try it again.");
            for version in &status.failed_versions {
                ui.label(version);
            }
        }
        ui.add_space(8.0);
        ui.strong("Where things are");
        ui.label(format!("Settings: {}", status.home.config_file.display()));
        ui.label(format!("Data: {}", status.home.data_dir.display()));
        if let Some(source) = &status.source {
            ui.label(format!("Release source: {source}"));
        }
        ui.label(format!("Checks every {} h", status.check_interval_hours));
    }

    fn about_ui(&self, ui: &mut egui::Ui) {
        ui.heading("About");
        ui.label(format!(
            "{} launcher {}",
            crate::PRODUCT_NAME,
            crate::LAUNCHER_VERSION
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
        ui.label(format!("Data folder: {}", status.home.data_dir.display()));
        if status.home.portable {
            ui.label("Portable mode: everything lives beside the executable.");
        }
    }

    fn logs_ui(&self, ui: &mut egui::Ui) {
        ui.heading("Backend log");
        if let Some(status) = &self.status {
            let logs = status.home.data_dir.join("logs");
            ui.horizontal(|ui| {
                ui.label(format!("Log files: {}", logs.display()));
                if ui.button("Open folder").clicked() {
                    ui.ctx()
                        .open_url(egui::OpenUrl::new_tab(format!("file://{}", logs.display())));
                }
            });
        }
        {
            {
                let Some(Mode::Local { service, .. }) = &self.mode else {
                    ui.label("The backend's output is in the log of the launcher that runs it.");
                    return;
                };
                // Log lines do not wake the window (the service holds the supervisor's one hook), so an
                // open log view looks again now and then.
                ui.ctx().request_repaint_after(Duration::from_millis(500));
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

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.take_replies();
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
                match self.screen {
                    Screen::Home => match &self.status {
                        None => {
                            ui.horizontal(|ui| {
                                ui.spinner();
                                ui.label("Reading the install status…");
                            });
                        }
                        Some(status) if status.current_version.is_none() => {
                            self.welcome_ui(ui, &mut commands)
                        }
                        Some(_) => self.update_card_ui(ui, &mut commands),
                    },
                    Screen::Settings => self.settings_ui(ui, &mut commands),
                    Screen::Logs => self.logs_ui(ui),
                    Screen::About => self.about_ui(ui),
                }
            });
        });
        for command in commands {
            self.apply(command);
        }
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
            format!(
                "Installed {}; the backend is healthy (downtime {} ms)",
                report.installed_version, report.downtime_ms
            ),
        ),
        InstallOutcome::RolledBack { from, to, .. } => (
            Color32::from_rgb(230, 160, 20),
            match to {
                Some(to) => format!(
                    "Rolled back: {from} did not pass its health check, so {to} runs again. {from} will not be offered again automatically; nothing else is needed."
                ),
                None => format!(
                    "Rolled back: {from} did not pass its health check and was removed. Nothing runs now: try another version, or report the problem."
                ),
            },
        ),
        InstallOutcome::Cancelled => (
            Color32::GRAY,
            "Cancelled before anything was switched; the installed version runs as before. The partial download is kept and resumed next time.".into(),
        ),
        InstallOutcome::Failed(e) => (Color32::from_rgb(220, 60, 60), headline(e)),
    }
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
