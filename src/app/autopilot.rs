//! The owner's own work, as the settings ask for it: what `run --headless` and the window both do while
//! they own an install, on one thread named `app-autopilot`.
//!
//! - It finishes an interrupted update before any backend starts (retrying once a second while another
//!   process holds the update lock: that process owns the backend until it is done).
//! - It starts the installed version's backend once, unless another launcher process supervises it (a
//!   `backend start` in a terminal), and neither starts a second one nor updates under it.
//! - With nothing installed it installs the latest release when [`Options::install_when_empty`] (the
//!   headless runner), backing off 1, 2, 4 … minutes on failure; the window leaves that to its wizard.
//! - It checks on the configured interval with jitter and downloads and installs as `auto_check`,
//!   `auto_download` and `auto_install` say, each install gated on the new backend's health. A round
//!   holds the service's job slot ([`JobKind::ScheduledUpdate`]), so it waits while an API job runs, its
//!   progress is broadcast like any job's, and its result says what it found and did
//!   (`{"checked", "offered", "downloaded", "installed", "failed"}`), which the window turns into a
//!   notification.
//!
//! Nothing here ends the owner: a failed recovery, install or check is logged, what is installed keeps
//! running, and the next round tries again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{JobCtx, JobKind, Service, report_update_event};
use crate::config::Config;
use crate::download::CancelToken;
use crate::updater::{SupervisorGate, Updater};

/// What the autopilot does beyond checking on schedule.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Install the latest release when nothing is installed (the headless runner; the window's wizard
    /// asks the user first).
    pub install_when_empty: bool,
    /// Check at once instead of after the first interval.
    pub check_now: bool,
    /// Start the installed backend (the window and the runner do; tests of scheduling alone may not).
    pub start_backend: bool,
}

/// The running autopilot; dropping it stops the thread (a download in flight is cancelled and resumed
/// next time) and waits for it. The backend keeps running: stopping it is the owner's call.
pub struct Autopilot {
    service: Service,
    stop: Arc<AtomicBool>,
    cancel: CancelToken,
    thread: Option<JoinHandle<()>>,
}

impl Autopilot {
    pub fn start(service: Service, options: Options) -> std::io::Result<Autopilot> {
        let stop = Arc::new(AtomicBool::new(false));
        let cancel = CancelToken::new();
        let thread = {
            let stop = stop.clone();
            let cancel = cancel.clone();
            let service = service.clone();
            std::thread::Builder::new()
                .name("app-autopilot".into())
                .spawn(move || Pilot::new(service, options).run(&stop, &cancel))?
        };
        Ok(Autopilot {
            service,
            stop,
            cancel,
            thread: Some(thread),
        })
    }
}

impl Drop for Autopilot {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cancel.cancel();
        // A round in flight (a download, say) stops at its next chunk and resumes next time; asked again
        // until the thread has ended, so a round that began just as the stop came is cancelled too.
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() {
                if self
                    .service
                    .jobs()
                    .current()
                    .is_some_and(|j| j.kind == JobKind::ScheduledUpdate)
                {
                    self.service.cancel();
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = thread.join();
        }
    }
}

struct Pilot {
    service: Service,
    options: Options,
    rng: fastrand::Rng,
    next_check: Instant,
    first_round: bool,
    recovered: bool,
    next_recovery_try: Instant,
    told_update_elsewhere: bool,
    told_supervised_elsewhere: bool,
    /// Started once, as soon as something is installed; after that the supervisor restarts crashes and
    /// the health gate restarts it on updates (a `backend stop` or giving up on crashes is respected).
    backend_started: bool,
    /// Versions that failed their health check here, also kept in memory: if config.json cannot be
    /// written, they must still not be retried at every interval.
    failed_here: Vec<String>,
    failed_first_installs: u32,
}

impl Pilot {
    fn new(service: Service, options: Options) -> Self {
        Pilot {
            service,
            options,
            rng: fastrand::Rng::new(),
            next_check: Instant::now(),
            first_round: true,
            recovered: false,
            next_recovery_try: Instant::now(),
            told_update_elsewhere: false,
            told_supervised_elsewhere: false,
            backend_started: false,
            failed_here: Vec::new(),
            failed_first_installs: 0,
        }
    }

    fn run(mut self, stop: &AtomicBool, cancel: &CancelToken) {
        while !stop.load(Ordering::SeqCst) && !cancel.is_cancelled() {
            self.tick(stop);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn tick(&mut self, stop: &AtomicBool) {
        let paths = self.service.paths().clone();
        let installer = crate::updater::installer(&paths);
        if !self.recovered && Instant::now() >= self.next_recovery_try {
            self.recover();
        }
        let elsewhere = if self.backend_started {
            None
        } else {
            supervised_elsewhere(&paths)
        };
        if self.recovered
            && self.options.start_backend
            && !self.backend_started
            && installer.current_version().ok().flatten().is_some()
        {
            match elsewhere {
                Some(pid) => {
                    if !self.told_supervised_elsewhere {
                        tracing::warn!(
                            "the backend is supervised by another launcher process (pid {pid}); not starting a second one, nor updating under it, until it ends"
                        );
                        self.told_supervised_elsewhere = true;
                    }
                }
                None => {
                    // In the job slot, like any start: never beside an install or rollback, which start
                    // (and health-check) the backend themselves. Busy: the next tick tries again.
                    let Ok(mut start) = self.service.hold(JobKind::BackendStart) else {
                        return;
                    };
                    self.backend_started = true;
                    let supervisor = self.service.supervisor();
                    if !supervisor.is_wanted_running() && installer.current_version().ok().flatten().is_some()
                    {
                        match start_installed(&self.service) {
                            Ok(pid) => {
                                tracing::info!(pid, "backend started; supervising it");
                                start.succeed(json!({ "backend": supervisor.status() }));
                            }
                            Err(e) => {
                                tracing::error!("{e}");
                                start.fail(e);
                            }
                        }
                    }
                    drop(start);
                }
            }
        }
        if !(self.recovered && elsewhere.is_none() && Instant::now() >= self.next_check) {
            return;
        }
        // Shutting down: no new round (one that started is cancelled by `Drop`).
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // One operation at a time: a round waits while another job (an install asked through the API,
        // a click in the window) runs.
        let mut round = match self.service.hold(JobKind::ScheduledUpdate) {
            Ok(guard) => guard,
            Err(e) => {
                tracing::info!("the scheduled update waits: {e}");
                self.next_check = Instant::now() + Duration::from_secs(30);
                return;
            }
        };
        // Settings are read afresh every round: a key pinned, a version skipped or failed, a channel
        // changed by another process all apply from the next check on.
        let mut config = self.service.settings().effective;
        for v in &self.failed_here {
            if !config.failed_versions.contains(v) {
                config.failed_versions.push(v.clone());
            }
        }
        let installed = installer.current_version().ok().flatten();
        let before = installed.as_ref().map(ToString::to_string);
        let mut result = json!({ "checked": false });
        if installed.is_none() {
            if self.options.install_when_empty {
                let (ok, value) = first_install(&self.service, &config, round.ctx());
                result = value;
                if ok {
                    self.failed_first_installs = 0;
                } else {
                    self.failed_first_installs += 1;
                }
            }
        } else if config.auto_check && (!self.first_round || self.options.check_now) {
            match Updater::new(&paths, &config) {
                Ok(updater) => {
                    result = apply_updates(&self.service, &updater, &config, round.ctx());
                    if let Some(failed) = result["failed"].as_str() {
                        self.failed_here.push(failed.to_owned());
                    }
                }
                Err(e) => {
                    tracing::warn!("updates are off: {e}");
                    result = json!({ "checked": false, "error": e.to_string() });
                }
            }
        }
        let mut done = config;
        if installer.current_version().ok().flatten().is_none() {
            // Nothing installed yet: try again soon, backing off (1, 2, 4 … minutes, at most the check
            // interval) so a release that keeps failing is not downloaded again every minute.
            let backoff = Duration::from_secs(60)
                .saturating_mul(1 << self.failed_first_installs.saturating_sub(1).min(10))
                .min(done.check_interval());
            self.next_check = Instant::now() + backoff;
        } else {
            if !self.first_round || self.options.check_now {
                done.last_check = Some(chrono::Utc::now());
            }
            self.next_check =
                Instant::now() + crate::check::next_check_delay(&done, chrono::Utc::now(), &mut self.rng);
        }
        self.first_round = false;
        if let Some(record) = super::history::record_of(JobKind::ScheduledUpdate, before, &Ok(result.clone()))
        {
            super::history::append(&paths, &record);
        }
        round.succeed(result);
    }

    /// Once a second while another process updates: recovery only needs the lock to be free.
    fn recover(&mut self) {
        let paths = self.service.paths().clone();
        self.next_recovery_try = Instant::now() + Duration::from_secs(1);
        let config = Config::load(&paths.config_file()).config;
        let mut gate = SupervisorGate::new(self.service.supervisor(), &paths);
        match crate::updater::recover(&paths, &config, &mut gate) {
            Ok(()) => self.recovered = true,
            Err(crate::Error::Install(crate::install::InstallError::Busy { pid, .. })) => {
                if !self.told_update_elsewhere {
                    tracing::warn!(
                        "an update by another process{} is in progress; waiting for it to finish before starting the backend",
                        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                    );
                    self.told_update_elsewhere = true;
                }
            }
            Err(crate::Error::HealthCheckFailed {
                version,
                reason,
                rolled_back_to: Some(to),
            }) => {
                tracing::warn!(
                    "an interrupted update to {version} was not healthy ({reason}); rolled back to {to}, which runs as before"
                );
                self.failed_here.push(version);
                self.recovered = true;
            }
            Err(e) => {
                tracing::error!("finishing an interrupted update: {e}; going on with what is installed");
                self.recovered = true;
            }
        }
    }
}

fn start_installed(service: &Service) -> Result<u32, String> {
    let paths = service.paths();
    let dir = crate::updater::installer(paths)
        .current_dir()
        .map_err(|e| e.to_string())?
        .ok_or("nothing is installed; run `personal-ai-agent update install`")?;
    let (plan, _) = crate::updater::launch_plan(&dir, paths).map_err(|e| e.to_string())?;
    service.supervisor().start(plan).map_err(|e| e.to_string())
}

/// The pid of another launcher process that supervises the backend, if one does.
pub fn supervised_elsewhere(paths: &crate::paths::Paths) -> Option<u32> {
    let status = crate::supervisor::read_status(&paths.run_dir()).ok()?;
    status
        .claims_a_process()
        .then_some(status.supervisor_pid)
        .flatten()
        .filter(|&p| p != std::process::id())
        .filter(|&p| runs_this_launcher(p))
}

/// Whether `pid` runs this launcher's executable: after a reboot, the pid a stale `backend.json` names may
/// belong to an unrelated process, which must not keep the owner waiting forever. Linux can tell; other
/// systems take the pid's liveness (already checked) at its word.
fn runs_this_launcher(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        let (Ok(theirs), Some(ours)) = (
            std::fs::read_link(format!("/proc/{pid}/exe")),
            crate::selfupdate::running_exe(),
        ) else {
            return true;
        };
        // A launcher that was replaced on disk while it ran shows as "<path> (deleted)".
        let theirs = std::path::PathBuf::from(theirs.to_string_lossy().trim_end_matches(" (deleted)"));
        let name = |p: &std::path::Path| p.file_name().map(|n| n.to_owned());
        theirs == ours || name(&theirs) == name(ours)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        true
    }
}

/// Nothing is installed: install the latest release, or say why not and let the next round try again.
/// Returns whether it installed (or found nothing to install, which is no failure to back off from),
/// and the round's result.
fn first_install(service: &Service, config: &Config, ctx: &JobCtx) -> (bool, Value) {
    let cancel = &ctx.cancel;
    let paths = service.paths();
    let updater = match Updater::new(paths, config) {
        Ok(u) => u,
        Err(e) => {
            // A settings problem costs nothing to retry, and the user who fixes it should not wait.
            tracing::error!("nothing is installed yet and updates are off: {e}; retrying in a minute");
            return (true, json!({ "checked": false, "error": e.to_string() }));
        }
    };
    tracing::info!("nothing is installed yet: installing the latest release");
    let mut gate = SupervisorGate::new(service.supervisor(), paths);
    match updater.install(None, &mut gate, cancel, &mut |e| report_update_event(ctx, &e)) {
        Ok(Some(report)) => {
            tracing::info!(version = %report.installed_version, "installed");
            (
                true,
                json!({ "checked": true, "offered": report.installed_version, "downloaded": true, "installed": report.installed_version }),
            )
        }
        Ok(None) => {
            tracing::warn!("no installable release is published for this platform yet; retrying in a minute");
            (true, json!({ "checked": true, "offered": null }))
        }
        Err(e) => {
            tracing::error!("installing the agent for the first time: {e}; retrying later");
            (false, json!({ "checked": true, "error": e.to_string() }))
        }
    }
}

/// One scheduled round: check, then download and install as the settings allow. Failures are logged and
/// returned in the result; the running backend is never left stopped by them.
fn apply_updates(service: &Service, updater: &Updater, config: &Config, ctx: &JobCtx) -> Value {
    // The round's own token: `/api/jobs/cancel` and the owner's shutdown reach it.
    let cancel = &ctx.cancel;
    ctx.progress(super::Progress::phase("checking"));
    let report = match updater.check(None) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("update check failed: {e}");
            return json!({ "checked": false, "error": e.to_string() });
        }
    };
    service.remember_check(report.clone());
    let (Some(release), Some(asset)) = (report.release.clone(), report.offered_asset().cloned()) else {
        tracing::info!("no update available");
        return json!({ "checked": true, "offered": null });
    };
    let offered = release.version.to_string();
    tracing::info!(version = %release.version, "update available");
    if !config.auto_download {
        return json!({ "checked": true, "offered": offered, "downloaded": false });
    }
    // Installing at once with a delta at hand: the install fetches the delta itself (and the full archive
    // only if the delta cannot be used), so the full archive is not downloaded first.
    let by_delta = config.auto_install && report.delivery.as_ref().is_some_and(|d| d.method == "delta");
    if by_delta {
        tracing::info!(version = %release.version, "installing with a delta from the installed version");
    } else if let Err(e) = updater.download(&release, &asset, cancel, &mut |e| report_update_event(ctx, &e)) {
        tracing::warn!("downloading {} failed: {e}", release.version);
        return json!({ "checked": true, "offered": offered, "downloaded": false, "error": e.to_string() });
    }
    if !config.auto_install {
        tracing::info!(version = %release.version, "downloaded; install it with `personal-ai-agent update install`");
        return json!({ "checked": true, "offered": offered, "downloaded": true });
    }
    let paths = service.paths();
    let mut gate = SupervisorGate::new(service.supervisor(), paths);
    match updater.install_release(&release, &asset, &mut gate, cancel, &mut |e| {
        report_update_event(ctx, &e)
    }) {
        Ok(report) => {
            tracing::info!(
                version = %report.installed_version,
                downtime_ms = report.downtime_ms,
                "update installed; the backend restarted on the new version"
            );
            json!({ "checked": true, "offered": offered, "downloaded": true, "installed": report.installed_version, "previous": report.previous_version })
        }
        Err(crate::Error::HealthCheckFailed { version, .. }) => {
            tracing::error!("{version} was not healthy and was rolled back; it is not offered again");
            json!({ "checked": true, "offered": offered, "downloaded": true, "failed": version })
        }
        Err(e) => {
            tracing::error!("{e}");
            json!({ "checked": true, "offered": offered, "downloaded": true, "error": e.to_string() })
        }
    }
}
