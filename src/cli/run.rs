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

    let settings = ctx.settings();
    let config = settings.effective;
    let supervisor = Supervisor::new(&ctx.paths);
    crate::paths::ensure_dir(&ctx.paths.models_dir())?;
    {
        let mut gate = SupervisorGate::new(&supervisor, &ctx.paths);
        crate::updater::recover(&ctx.paths, &config, &mut gate).context("finishing an interrupted update")?;
    }
    let updater = match Updater::new(&ctx.paths, &config) {
        Ok(u) => Some(u),
        Err(e) => {
            tracing::warn!("updates are off: {e}");
            None
        }
    };

    let installer = crate::updater::installer(&ctx.paths);
    if installer.current_version()?.is_none() {
        let updater = updater
            .as_ref()
            .context("nothing is installed yet and no release source is configured")?;
        tracing::info!("nothing is installed yet: installing the latest release");
        let mut gate = SupervisorGate::new(&supervisor, &ctx.paths);
        updater
            .install(None, &mut gate, &cancel, &mut |e| {
                tracing::debug!(?e, "first install")
            })
            .context("installing the agent for the first time")?
            .context("no installable release is published for this platform yet")?;
    }
    if shutdown.load(Ordering::SeqCst) {
        return Ok(ExitCode::SUCCESS);
    }
    let dir = installer
        .current_dir()?
        .context("nothing is installed; run `personal-ai-agent update install`")?;
    let (plan, _) = crate::updater::launch_plan(&dir, &ctx.paths)?;
    let pid = supervisor.start(plan)?;
    tracing::info!(pid, "backend started; supervising it (Ctrl-C or SIGTERM to stop)");

    let mut rng = fastrand::Rng::new();
    let mut next_check = if args.check_now {
        Instant::now()
    } else {
        Instant::now()
            + crate::check::next_check_delay(&current_config(ctx, &config), chrono::Utc::now(), &mut rng)
    };
    while !shutdown.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        if Instant::now() < next_check {
            continue;
        }
        let latest = current_config(ctx, &config);
        if let (Some(updater), true) = (&updater, latest.auto_check) {
            apply_updates(ctx, updater, &supervisor, &latest, &cancel);
        }
        let mut done = current_config(ctx, &config);
        done.last_check = Some(chrono::Utc::now());
        next_check = Instant::now() + crate::check::next_check_delay(&done, chrono::Utc::now(), &mut rng);
    }
    tracing::info!("stopping the backend");
    if let Err(e) = supervisor.stop() {
        tracing::error!("{e}");
    }
    Ok(ExitCode::SUCCESS)
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
/// environment's overrides still apply.
fn current_config(ctx: &Ctx, fallback: &crate::config::Config) -> crate::config::Config {
    let loaded = crate::config::Config::load(&ctx.paths.config_file());
    if !loaded.warnings.is_empty() {
        return fallback.clone();
    }
    loaded
        .config
        .with_env(&|k| std::env::var(k).ok(), &mut Vec::new())
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
