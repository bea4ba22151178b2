//! `personal-ai-agent run --headless`: what the window does, without one.
//!
//! It finishes any interrupted update, installs the agent on first run, starts and supervises the backend
//! (the supervisor restarts crashes), checks for updates on the configured interval with jitter, and
//! applies them as `auto_download` / `auto_install` say, each install gated on the new backend's health.
//! SIGINT and SIGTERM stop the backend and end the process with status 0.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;

use super::Ctx;
use crate::download::CancelToken;

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
        // A start probe of a new launcher ends here, before the window takes ownership of the install.
        crate::selfupdate::probe_point();
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
    // One owner per data folder: a second runner (or one started while a window or a foreground
    // `backend start` owns the install) is refused, naming the owner and `api status`; as a user service
    // it is restarted by the service manager and takes over once that owner has ended.
    // A start probe of a new launcher (`selfupdate`) ends here: everything before taking ownership ran,
    // and the owner lock, which the launcher probing it holds, is not touched.
    crate::selfupdate::probe_point();
    let owner = crate::owner::Owner::take_as(&ctx.paths, "run --headless")?;
    let service = crate::app::Service::new(ctx.paths.clone());
    crate::paths::ensure_dir(&ctx.paths.models_dir())?;
    // The API listens before any backend starts, so every backend gets its address and token.
    let api = super::api::serve(ctx, &service, &owner, args.api_port)?;
    // Recovery, the backend, first install and the scheduled rounds: the owner's own work, the same in
    // the window (`app::autopilot`).
    let autopilot = crate::app::autopilot::Autopilot::start(
        service.clone(),
        crate::app::autopilot::Options {
            install_when_empty: true,
            check_now: args.check_now,
            start_backend: true,
        },
    )
    .context("cannot start the update scheduler thread")?;
    let mut api_failed = false;
    while !shutdown.load(Ordering::SeqCst) {
        // An API that can no longer serve has withdrawn `api.json` (`api::serve`); ending cleanly (backend
        // stopped, lock released) lets the service manager start a runner whose API answers, instead of
        // owning the install while no face can reach us.
        if !api.healthy() {
            api_failed = true;
            break;
        }
        // An update replaced this launcher: once the job that did it is over, end cleanly (backend
        // stopped, API closed, lock released) and become the new one with the same arguments.
        if crate::selfupdate::restart_pending() && service.jobs().current().is_none() {
            tracing::info!("the launcher was updated; restarting into the new one");
            crate::selfupdate::request_restart();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cancel.cancel();
    drop(autopilot);
    // A job asked through the API (an update from the CLI or the agent's page) is cancelled and awaited,
    // so neither a restart nor a stop ends it halfway between two versions; the job slot is then held so
    // nothing new starts. The backend stops before the API closes: it knows the API's token, and the
    // port must not be free for another program while it runs.
    let slot = service.hold_for_exit(Duration::from_secs(120));
    tracing::info!("stopping the backend");
    if let Err(e) = service.supervisor().stop() {
        tracing::error!("{e}");
    }
    drop(api);
    drop(slot);
    drop(owner);
    if api_failed {
        anyhow::bail!(
            "the local API stopped serving, so this runner stopped too (the log says why); start it again with `personal-ai-agent run --headless`"
        );
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
        let mut out = format!("{} launcher {}\n\n", crate::PRODUCT_NAME, crate::launcher_version());
        out.push_str(&status.human());
        out.push_str(&format!("Backend: {}", backend.state));
        if let Some(reason) = &backend.reason {
            out.push_str(&format!(" ({reason})"));
        }
        out.push_str("\n\nNo display is available for the window. Next steps:\n");
        out.push_str(
            "  personal-ai-agent demo                             # the whole product, offline, in this terminal\n",
        );
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
