//! The CLI as a client of the owner: when a window or `run --headless` owns this data folder, the
//! commands that change the install or the backend (`update install|rollback`, `backend
//! start|stop|restart|status`, `models download`) ask it through its local API (`crate::api::client`)
//! instead of doing the work beside it. Output, `--json` documents and exit codes stay those of the
//! local path; each command file keeps both paths next to each other.

use crate::api::client::Client;
use crate::download::CancelToken;

use super::Ctx;

/// The owner's API, when a live owner serves one; `None`: do the work here, as without any owner.
pub fn owner(ctx: &Ctx) -> anyhow::Result<Option<Client>> {
    let client = Client::connect(&ctx.paths)?;
    if let Some(client) = &client {
        tracing::info!(pid = client.info().pid, url = %client.info().url, "asking the owner of this install");
    }
    Ok(client)
}

/// For a command about to change the install in this process (nobody owns it): the owner lock, held
/// without an API for as long as the command works, so `uninstall`, a window, `run --headless` and every
/// other command see the install busy (naming `what` and this pid) instead of working beside it. An
/// owner that appeared since [`crate::app::control::Control::connect`] looked is refused by name.
pub fn own_here(ctx: &Ctx, what: &str) -> anyhow::Result<crate::owner::Owner> {
    Ok(crate::owner::Owner::take_as(&ctx.paths, what)?)
}

/// A token that Ctrl-C cancels, so the owner is asked to cancel the job this command follows.
pub fn cancel_on_ctrl_c() -> CancelToken {
    let token = CancelToken::new();
    let handler_token = token.clone();
    // Fails only if a handler is already installed; then Ctrl-C just ends this client, and the owner's
    // job goes on (which is what it would do anyway once started).
    let _ = ctrlc::set_handler(move || handler_token.cancel());
    token
}
