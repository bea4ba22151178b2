//! `personal-ai-agent models` (being written).

use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, Default, clap::Args)]
pub struct ModelsArgs {}

pub fn run(_ctx: &Ctx, _args: ModelsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`models` is not built yet")
}
