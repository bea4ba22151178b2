//! `personal-ai-agent release`: tools for maintainers and CI that publish releases. `release pack` builds
//! one platform's archive and merges its checksum and manifest entries into an output folder, signing the
//! manifest; see `crate::pack` and `docs/RELEASE-FORMAT.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::Ctx;
use crate::pack::{self, PASSWORD_ENV, PackOptions};
use crate::platform::Platform;
use crate::version::Channel;

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    pub command: ReleaseCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ReleaseCommand {
    /// Pack a bundle folder into PersonalAIAgent-<os>-<arch>-<version>.tar.zst (.zip for Windows), and write
    /// or update checksums-<os>-<arch>.txt, release-manifest.json and its minisign signature in OUT; with
    /// --delta-from, also a delta from each earlier release.
    Pack(PackArgs),
    /// Write DIR/feed.json listing every release folder under DIR (each packed with `release pack --out
    /// DIR/<version>`): a static feed for mirrors and offline installs (docs/FEED.md).
    Feed {
        /// The folder holding one subfolder per release.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct PackArgs {
    /// The release version (semver; a leading `v` is accepted).
    #[arg(long, value_name = "V")]
    pub version: String,
    /// The platform the bundle is built for, as <os>-<arch> (linux-x86_64, macos-aarch64, windows-x86_64).
    #[arg(long, value_name = "OS-ARCH")]
    pub platform: Platform,
    /// The bundle folder: the launcher, backend/ and agent.json.
    #[arg(long, value_name = "DIR")]
    pub bundle_dir: PathBuf,
    /// The output folder; packing several platforms into the same one merges their entries.
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// Sign the manifest with this minisign secret key (unencrypted, or with its password in
    /// MINISIGN_PASSWORD).
    #[arg(long, value_name = "KEYFILE")]
    pub minisign_key: Option<PathBuf>,
    /// The channel the release belongs to (default: stable for a release version, beta for -beta/-rc,
    /// dev for other pre-releases). Signed into the manifest and enforced by every launcher.
    #[arg(long, value_name = "C")]
    pub channel: Option<Channel>,
    /// Release notes (markdown) to carry in the signed manifest.
    #[arg(long, value_name = "FILE")]
    pub notes_file: Option<PathBuf>,
    /// Also write the .tar.gz that launchers before 0.2 read (Linux, macOS): pass it for the one release
    /// that moves users from .tar.gz to .tar.zst (docs/RELEASE-FORMAT.md).
    #[arg(long)]
    pub also_tar_gz: bool,
    /// Also write a delta from this earlier release: the folder an earlier `release pack --out` wrote, or
    /// its archive for this platform. Repeat for several base versions.
    #[arg(long, value_name = "RELEASE")]
    pub delta_from: Vec<PathBuf>,
}

pub fn run(ctx: &Ctx, args: ReleaseArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ReleaseCommand::Pack(pack_args) => run_pack(ctx, pack_args),
        ReleaseCommand::Feed { dir } => {
            let summary = crate::sources::feed::write_feed(&dir)?;
            ctx.emit(&summary, || {
                format!(
                    "wrote {} listing {}",
                    summary.feed.display(),
                    summary.versions.join(", ")
                )
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_pack(ctx: &Ctx, args: PackArgs) -> anyhow::Result<ExitCode> {
    let version = crate::version::parse_user_version(&args.version)?;
    let options = PackOptions {
        version: version.clone(),
        platform: args.platform,
        bundle_dir: args.bundle_dir,
        out_dir: args.out,
        channel: args.channel.unwrap_or_else(|| Channel::of_version(&version)),
        minisign_key: args.minisign_key,
        minisign_password: std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()),
        published_at: published_at()?,
        notes: args
            .notes_file
            .as_deref()
            .map(|f| std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display())))
            .transpose()?,
        also_tar_gz: args.also_tar_gz,
        delta_from: args.delta_from,
    };
    let report = pack::pack(&options)
        .with_context(|| format!("cannot pack version {} for {}", options.version, options.platform))?;
    ctx.emit(&report, || {
        let mut text = format!(
            "packed {} ({} bytes, sha256 {})\nupdated {}\nupdated {} ({} archive(s): {})\n",
            report.archive.path.display(),
            report.archive.size,
            report.archive.sha256,
            report.checksums_file.path.display(),
            report.manifest.path.display(),
            report.manifest_assets.len(),
            report.manifest_assets.join(", "),
        );
        if let Some(legacy) = &report.legacy_archive {
            text.push_str(&format!(
                "packed {} for launchers before 0.2 ({} bytes)\n",
                legacy.path.display(),
                legacy.size
            ));
        }
        for delta in &report.deltas {
            text.push_str(&format!(
                "wrote the delta from {} {} ({} bytes: {} patched, {} added, {} removed, {} unchanged; the archive is {} bytes)\n",
                delta.stats.base,
                delta.file.path.display(),
                delta.file.size,
                delta.stats.patched,
                delta.stats.added,
                delta.stats.removed,
                delta.stats.unchanged,
                report.archive.size,
            ));
        }
        for warning in &report.warnings {
            text.push_str(&format!("warning: {warning}\n"));
        }
        match (&report.signature, &report.key_id) {
            (Some(path), Some(key_id)) => {
                text.push_str(&format!("signed {} with key {key_id}\n", path.display()));
            }
            _ => text.push_str(
                "the manifest is NOT signed: launchers with a pinned key will refuse this release; pass --minisign-key\n",
            ),
        }
        text
    });
    Ok(ExitCode::SUCCESS)
}

/// `SOURCE_DATE_EPOCH` (the reproducible-builds convention) when set, so two runs give the same manifest;
/// otherwise now.
fn published_at() -> anyhow::Result<DateTime<Utc>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if !text.trim().is_empty() => {
            let seconds: i64 = text
                .trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH=`{text}` is not a number of seconds"))?;
            DateTime::from_timestamp(seconds, 0)
                .with_context(|| format!("SOURCE_DATE_EPOCH=`{text}` is out of range"))
        }
        _ => Ok(Utc::now()),
    }
}
