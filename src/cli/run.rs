//! `personal-ai-agent run` (being written).

use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, Default, clap::Args)]
pub struct RunArgs {}

pub fn run(_ctx: &Ctx, _args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`run` is not built yet")
}
