//! `personal-ai-agent release` (being written).

use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, Default, clap::Args)]
pub struct ReleaseArgs {}

pub fn run(_ctx: &Ctx, _args: ReleaseArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`release` is not built yet")
}
