//! `personal-ai-agent backend` (being written).

use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, Default, clap::Args)]
pub struct BackendArgs {}

pub fn run(_ctx: &Ctx, _args: BackendArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`backend` is not built yet")
}
