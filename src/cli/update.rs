//! `personal-ai-agent update` (being written).

use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, Default, clap::Args)]
pub struct UpdateArgs {}

pub fn run(_ctx: &Ctx, _args: UpdateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`update` is not built yet")
}
