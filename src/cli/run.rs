//! `personal-ai-agent run --headless`: what the window does, without one.
//!
//! It finishes any interrupted update, installs the agent on first run, starts and supervises the backend
//! (the supervisor restarts crashes), checks for updates on the configured interval with jitter, and
//! applies them as `auto_download` / `auto_install` say, each install gated on the new backend's health.
//! SIGINT and SIGTERM stop the backend and end the process with status 0.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Ctx;
use crate::download::CancelToken;
use crate::supervisor::Supervisor;
use crate::updater::{SupervisorGate, Updater};

#[derive(Debug, Default, clap::Args)]
pub struct RunArgs {
    /// Run without a window: supervise the backend and apply updates, logging to stderr.
    #[arg(long)]
    pub headless: bool,
    /// Check for updates right away instead of after the first interval.
    #[arg(long)]
    pub check_now: bool,
    /// The loopback port of the local API (default: the `api_port` setting; 0 = any free port). The
    /// port chosen is in `run/api.json`; `personal-ai-agent api status` prints it.
    #[arg(long, value_name = "PORT")]
    pub api_port: Option<u16>,
}

pub fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<ExitCode> {
    if !args.headless {
        // `--json` asks for a document, not a window.
        if !ctx.json && crate::ui::display_available() {
            crate::ui::run_window(ctx.paths.clone())?;
            return Ok(ExitCode::SUCCESS);
        }
        return overview(ctx);
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    let cancel = CancelToken::new();
    {
        let shutdown = shutdown.clone();
        let cancel = cancel.clone();
        ctrlc::set_handler(move || {
            shutdown.store(true, Ordering::SeqCst);
            cancel.cancel();
        })
        .context("cannot install the SIGINT/SIGTERM handler")?;
    }

    // One owner per data folder: a second runner (or window) on the same data is refused, naming us.
    let owner = crate::owner::Owner::take(&ctx.paths)?;
    let service = crate::app::Service::new(ctx.paths.clone());
    let supervisor: &Supervisor = service.supervisor();
    crate::paths::ensure_dir(&ctx.paths.models_dir())?;
    // The API listens before any backend starts, so every backend gets its address and token.
    let api = super::api::serve(ctx, &service, &owner, args.api_port)?;
    // Nothing below ends the runner but a signal: a failed recovery, install or check is reported, what is
    // installed keeps running, and the next round tries again.
    {
        let config = current_config(ctx);
        let mut gate = SupervisorGate::new(supervisor, &ctx.paths);
        match crate::updater::recover(&ctx.paths, &config, &mut gate) {
            Ok(()) => {}
            Err(crate::Error::HealthCheckFailed {
                version,
                reason,
                rolled_back_to: Some(to),
            }) => tracing::warn!(
                "an interrupted update to {version} was not healthy ({reason}); rolled back to {to}, which runs as before"
            ),
            Err(e) => tracing::error!(
                "finishing an interrupted update: {e}; going on with what is installed, will retry"
            ),
        }
    }

    let installer = crate::updater::installer(&ctx.paths);
    let mut rng = fastrand::Rng::new();
    let mut next_check = Instant::now();
    let mut first_round = true;
    // Started once, as soon as something is installed; after that the supervisor restarts crashes and the
    // health gate restarts it on updates (a `backend stop` or giving up on crashes is respected).
    let mut backend_started = false;
    while !shutdown.load(Ordering::SeqCst) {
        if !backend_started && installer.current_version().ok().flatten().is_some() {
            backend_started = true;
            if !supervisor.is_wanted_running() {
                match start_backend(ctx, supervisor) {
                    Ok(pid) => {
                        tracing::info!(pid, "backend started; supervising it (Ctrl-C or SIGTERM to stop)")
                    }
                    Err(e) => tracing::error!("{e:#}"),
                }
            }
        }
        if Instant::now() >= next_check {
            // One operation at a time: a round waits while an API job (an install, say) runs.
            let _round = match service.hold(crate::app::JobKind::ScheduledUpdate) {
                Ok(guard) => guard,
                Err(e) => {
                    tracing::info!("the scheduled update waits: {e}");
                    next_check = Instant::now() + Duration::from_secs(30);
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            // Settings are read afresh every round: a key pinned, a version skipped or failed, a channel
            // changed by another process all apply from the next check on.
            let config = current_config(ctx);
            let installed = installer.current_version().ok().flatten();
            if installed.is_none() {
                first_install(ctx, &config, supervisor, &cancel);
            } else if config.auto_check && (!first_round || args.check_now) {
                match Updater::new(&ctx.paths, &config) {
                    Ok(updater) => apply_updates(ctx, &updater, supervisor, &config, &cancel),
                    Err(e) => tracing::warn!("updates are off: {e}"),
                }
            }
            let mut done = config;
            if installer.current_version().ok().flatten().is_none() {
                // Nothing installed yet: try again soon rather than after a whole interval.
                done.last_check = None;
                next_check = Instant::now() + Duration::from_secs(60);
            } else {
                if !first_round || args.check_now {
                    done.last_check = Some(chrono::Utc::now());
                }
                next_check =
                    Instant::now() + crate::check::next_check_delay(&done, chrono::Utc::now(), &mut rng);
            }
            first_round = false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    tracing::info!("stopping the backend");
    if let Err(e) = supervisor.stop() {
        tracing::error!("{e}");
    }
    drop(api);
    drop(owner);
    Ok(ExitCode::SUCCESS)
}

fn start_backend(ctx: &Ctx, supervisor: &Supervisor) -> anyhow::Result<u32> {
    let dir = crate::updater::installer(&ctx.paths)
        .current_dir()?
        .context("nothing is installed; run `personal-ai-agent update install`")?;
    let (plan, _) = crate::updater::launch_plan(&dir, &ctx.paths)?;
    Ok(supervisor.start(plan)?)
}

/// Nothing is installed: install the latest release, or say why not and let the next round try again.
fn first_install(ctx: &Ctx, config: &crate::config::Config, supervisor: &Supervisor, cancel: &CancelToken) {
    let updater = match Updater::new(&ctx.paths, config) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!("nothing is installed yet and updates are off: {e}; retrying in a minute");
            return;
        }
    };
    tracing::info!("nothing is installed yet: installing the latest release");
    let mut gate = SupervisorGate::new(supervisor, &ctx.paths);
    match updater.install(None, &mut gate, cancel, &mut |e| {
        tracing::debug!(?e, "first install")
    }) {
        Ok(Some(report)) => tracing::info!(version = %report.installed_version, "installed"),
        Ok(None) => {
            tracing::warn!("no installable release is published for this platform yet; retrying in a minute")
        }
        Err(e) => tracing::error!("installing the agent for the first time: {e}; retrying in a minute"),
    }
}
/// Without `--headless` (and with no subcommand) when no display is available: what is installed, what
/// runs, and what to do next.
fn overview(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings();
    let status = crate::updater::status(&ctx.paths, &settings.effective)?;
    let backend = crate::supervisor::read_status(&ctx.paths.run_dir())?;
    #[derive(serde::Serialize)]
    struct Overview<'a> {
        update: &'a crate::updater::Status,
        backend: &'a crate::supervisor::BackendStatus,
        window: &'static str,
    }
    let value = Overview {
        update: &status,
        backend: &backend,
        window: "no display",
    };
    ctx.emit(&value, || {
        let mut out = format!("{} launcher {}\n\n", crate::PRODUCT_NAME, crate::LAUNCHER_VERSION);
        out.push_str(&status.human());
        out.push_str(&format!("Backend: {}", backend.state));
        if let Some(reason) = &backend.reason {
            out.push_str(&format!(" ({reason})"));
        }
        out.push_str("\n\nNo display is available for the window. Next steps:\n");
        if status.source.is_none() {
            out.push_str(
                "  export GITHUB_REPO=owner/name                      # where releases are published\n",
            );
        }
        if status.current_version.is_none() {
            out.push_str("  personal-ai-agent update install                   # install the agent\n");
        }
        out.push_str(
            "  personal-ai-agent run --headless                   # supervise the backend, apply updates\n",
        );
        out.push_str("  personal-ai-agent --help                           # every command\n");
        out
    });
    Ok(ExitCode::SUCCESS)
}

/// The settings as they are now: the file may have changed (`update configure` from another shell); the
/// environment's overrides still apply. A setting that cannot be read is logged and stops updating (the
/// updater refuses such a config), never silently replaced.
fn current_config(ctx: &Ctx) -> crate::config::Config {
    ctx.settings().effective
}

/// One scheduled round: check, then download and install as the settings allow. Failures are logged; the
/// running backend is never left stopped by them.
fn apply_updates(
    ctx: &Ctx,
    updater: &Updater,
    supervisor: &Supervisor,
    config: &crate::config::Config,
    cancel: &CancelToken,
) {
    let report = match updater.check(None) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("update check failed: {e}");
            return;
        }
    };
    let (Some(release), Some(asset)) = (report.release.clone(), report.offered_asset().cloned()) else {
        tracing::info!("no update available");
        return;
    };
    tracing::info!(version = %release.version, "update available");
    if !config.auto_download {
        return;
    }
    if let Err(e) = updater.download(&release, &asset, cancel, &mut |_| {}) {
        tracing::warn!("downloading {} failed: {e}", release.version);
        return;
    }
    if !config.auto_install {
        tracing::info!(version = %release.version, "downloaded; install it with `personal-ai-agent update install`");
        return;
    }
    let mut gate = SupervisorGate::new(supervisor, &ctx.paths);
    match updater.install_release(&release, &asset, &mut gate, cancel, &mut |_| {}) {
        Ok(report) => tracing::info!(
            version = %report.installed_version,
            downtime_ms = report.downtime_ms,
            "update installed; the backend restarted on the new version"
        ),
        Err(e) => tracing::error!("{e}"),
    }
}
