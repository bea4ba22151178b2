//! `personal-ai-agent api status`: where the owner of this data folder serves its local API, and which
//! process it is. Exit 1 when no launcher owns the folder, or when its API does not answer an
//! authorised request within a few seconds.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::Ctx;

/// How long `api status` waits for the owner's API to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    #[command(subcommand)]
    pub command: ApiCommand,
}

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Print the owner's API address, pid and token file (`--json`: port, pid, url, token_file).
    Status,
}

pub fn run(ctx: &Ctx, args: ApiArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ApiCommand::Status => status(ctx),
    }
}

fn status(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let Some(info) = crate::owner::current(&ctx.paths) else {
        anyhow::bail!(
            "no launcher owns {} right now, so no local API runs; start one with `personal-ai-agent run --headless` (or open the window)",
            ctx.paths.data_dir.display()
        );
    };
    // "Listens" is said only of an API that answered: a live owner whose API is gone must not be
    // reported as serving.
    match crate::api::client::Client::connect_within(&ctx.paths, PROBE_TIMEOUT) {
        Ok(Some(_)) => {}
        Ok(None) => anyhow::bail!(
            "the launcher (pid {}) that owned {} has just gone away; start one with `personal-ai-agent run --headless` (or open the window)",
            info.pid,
            ctx.paths.data_dir.display()
        ),
        // It names the owner, the address and the next step.
        Err(e) => return Err(e.into()),
    }
    ctx.emit(&info, || {
        format!(
            "The local API of launcher {} (pid {}) listens on {}\nToken: {} (send it as `Authorization: Bearer <token>`)",
            info.version,
            info.pid,
            info.url,
            info.token_file.display()
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// Starts the local API for `service` (port: `--api-port`, else the `api_port` setting, else any) and
/// publishes it in `run/api.json`. Used by `run --headless` (and, later, the window).
pub fn serve(
    ctx: &Ctx,
    service: &crate::app::Service,
    owner: &crate::owner::Owner,
    port: Option<u16>,
) -> anyhow::Result<crate::api::ApiServer> {
    use anyhow::Context as _;
    let port = port.or(ctx.settings().effective.api_port).unwrap_or(0);
    let server = crate::api::ApiServer::start(
        service.clone(),
        crate::api::ApiOptions {
            port,
            allowed_origins: Vec::new(),
        },
    )
    .context("starting the local API")?;
    owner.publish(&crate::owner::ApiInfo {
        port: server.port(),
        pid: std::process::id(),
        version: crate::launcher_version().to_owned(),
        url: server.url(),
        token_file: server.token_file().to_path_buf(),
    })?;
    // Set once published: an API that can no longer serve withdraws what points at it (the runner then
    // stops too, see `cli::run`).
    let withdraw = owner.withdrawal();
    server.on_failure(move |why| {
        withdraw();
        tracing::error!("run/api.json withdrawn: the local API cannot serve any more ({why})");
    });
    tracing::info!(url = %server.url(), token_file = %server.token_file().display(), "local API ready");
    Ok(server)
}
