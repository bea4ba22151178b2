//! `personal-ai-agent update …`: check, status, changelog, skip-version, configure, download, install,
//! rollback. The JSON shapes printed with `--json` are a contract scripts rely on: extend, don't rename.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::Ctx;
use crate::app::{ConfigChange, Op, Service, control::Control};
use crate::check::CheckReport;
use crate::config::Config;
use crate::download::CancelToken;
use crate::platform::Platform;
use crate::supervisor::Supervisor;
use crate::version::Channel;

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(subcommand)]
    pub command: UpdateCommand,
}

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Ask the release source whether a newer version is published.
    Check(CheckArgs),
    /// Show the installed version, settings and any interrupted operation.
    Status,
    /// Show the release notes between the installed version and the newest one.
    Changelog(CheckArgs),
    /// Never offer this version automatically.
    SkipVersion {
        /// The version to skip, for example 1.4.0 or v1.4.0.
        version: String,
    },
    /// Offer a skipped version again (undoes `skip-version`, and the skip a rollback adds).
    UnskipVersion {
        /// The version to offer again.
        version: String,
    },
    /// Change update settings.
    Configure(ConfigureArgs),
    /// Download and verify the offered update (or --version V) without installing it.
    Download(DownloadArgs),
    /// Download if needed, verify, install, prove the new backend healthy, and keep it or roll back.
    Install(InstallArgs),
    /// Switch back to the previous version (or --to V).
    Rollback(RollbackArgs),
}

#[derive(Debug, Default, Args)]
pub struct DownloadArgs {
    /// The version to download (default: the offered update).
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Download the asset for another machine, as <os>-<arch>.
    #[arg(long, value_name = "OS-ARCH")]
    pub platform: Option<Platform>,
    /// Allow a --version older than the installed one (only with no launcher owning the install).
    #[arg(long, requires = "version")]
    pub allow_downgrade: bool,
}

#[derive(Debug, Default, Args)]
pub struct InstallArgs {
    /// The version to install (default: the offered update). An explicit version is installed even if it
    /// was skipped or failed before, but never one older than the installed version (going back is
    /// `update rollback`) unless --allow-downgrade is given.
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Download the full archive even when the release has a delta from the installed version.
    #[arg(long)]
    pub full: bool,
    /// Allow a --version older than the installed one: an explicit act of the local user, refused while
    /// a launcher owns the install (its API never goes back; stop it first, or use `update rollback`).
    #[arg(long, requires = "version")]
    pub allow_downgrade: bool,
}

#[derive(Debug, Default, Args)]
pub struct RollbackArgs {
    /// The installed version to go back to (default: the previous one).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
}

#[derive(Debug, Default, Args)]
pub struct CheckArgs {
    /// The channel to look in (default: the configured one).
    #[arg(long, value_name = "stable|beta|dev")]
    pub channel: Option<Channel>,
    /// Choose assets for another machine, as <os>-<arch> (for example linux-aarch64, windows-x86_64).
    #[arg(long, value_name = "OS-ARCH")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Default, Args)]
pub struct ConfigureArgs {
    #[arg(long, value_name = "stable|beta|dev")]
    pub channel: Option<Channel>,
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub auto_check: Option<bool>,
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub auto_download: Option<bool>,
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub auto_install: Option<bool>,
    /// How many previous versions to keep for rollback.
    #[arg(long, value_name = "N")]
    pub backup_count: Option<u32>,
    /// Hours between automatic checks.
    #[arg(long, value_name = "HOURS")]
    pub check_interval: Option<f64>,
    /// Whether closing the window leaves the agent running under a background launcher.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub keep_backend_running: Option<bool>,
    /// Keep installed versions, models, downloads and logs in DIR (only before the first install; an
    /// empty value goes back to the default data folder).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// The GitHub repository to update from, as owner/name (empty to clear).
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// A static release feed (HTTPS URL or folder) to use instead of GitHub (empty to clear).
    #[arg(long, value_name = "URL|FOLDER")]
    pub feed: Option<String>,
    /// Pin the minisign public key (the .pub file `minisign -G` writes) that must sign every release.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Forget skipped versions.
    #[arg(long)]
    pub clear_skipped: bool,
    /// The loopback port the owner's local API listens on (0: any free port, the default), from the
    /// owner's next start. Only this command sets it, never the API; a port that is taken when the owner
    /// starts gives way to a free one (`api status` names it).
    #[arg(long, value_name = "PORT")]
    pub api_port: Option<u16>,
}

/// The settings as loaded for one command: the file's, and the effective ones after the environment.
pub struct Settings {
    pub file: Config,
    pub effective: Config,
}

impl Ctx {
    /// Loads the settings file (telling the user once if it was corrupt) and applies the environment.
    pub fn settings(&self) -> Settings {
        let loaded = Config::load(&self.paths.config_file());
        let mut warnings = loaded.warnings;
        let effective = loaded.config.with_env(&|k| std::env::var(k).ok(), &mut warnings);
        crate::config::log_warnings_once(&warnings);
        Settings {
            file: loaded.config,
            effective,
        }
    }
}

pub fn run(ctx: &Ctx, args: UpdateArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        UpdateCommand::Check(a) => check_cmd(ctx, a),
        UpdateCommand::Status => status_cmd(ctx),
        UpdateCommand::Changelog(a) => changelog_cmd(ctx, a),
        UpdateCommand::SkipVersion { version } => skip_cmd(ctx, &version),
        UpdateCommand::UnskipVersion { version } => unskip_cmd(ctx, &version),
        UpdateCommand::Configure(a) => configure_cmd(ctx, a),
        UpdateCommand::Download(a) => download_cmd(ctx, a),
        UpdateCommand::Install(a) => install_cmd(ctx, a),
        UpdateCommand::Rollback(a) => rollback_cmd(ctx, a),
    }
}

/// A service in this process, for what needs no owner (a check, the release notes, the settings): the
/// same operations the owner's API and the window run.
fn here(ctx: &Ctx) -> Service {
    Service::new(ctx.paths.clone())
}

fn check_cmd(ctx: &Ctx, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let op = Op::Check {
        channel: args.channel,
        platform: args.platform,
    };
    let value = here(ctx).run_here(|s| s.start(op), &CancelToken::new(), &mut |_| {})?;
    let report: CheckReport = serde_json::from_value(value).context("reading the check report")?;
    ctx.emit(&report, || human_check(&report));
    Ok(ExitCode::SUCCESS)
}

fn human_check(report: &CheckReport) -> String {
    let current = report.current_version.as_deref().unwrap_or("nothing installed");
    let mut out = match (&report.latest, report.update_available) {
        (Some(latest), true) => {
            let asset = latest
                .asset
                .as_ref()
                .map(|a| format!("\n  download: {} ({})", a.name, human_size(a.size)));
            format!(
                "Update available: {} → {} ({} channel){}",
                current,
                latest.version,
                report.channel,
                asset.unwrap_or_default()
            )
        }
        (Some(latest), false) => format!(
            "No update: installed {current}; newest in the {} channel is {}",
            report.channel, latest.version
        ),
        (None, _) => format!(
            "No update: installed {current}; nothing newer in the {} channel",
            report.channel
        ),
    };
    if let Some(m) = &report.message {
        out.push_str(&format!("\n  note: {m}"));
    }
    out
}

/// `1.5 GiB`, `320 MiB`, `12 KiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn changelog_cmd(ctx: &Ctx, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let out = here(ctx).changelog(crate::app::ChangelogQuery {
        channel: args.channel,
        platform: args.platform,
        offered_only: false,
    })?;
    ctx.emit(&out, || {
        if out.releases.is_empty() {
            return "Nothing new since the installed version.".to_owned();
        }
        out.releases
            .iter()
            .map(|e| {
                let date = e
                    .published_at
                    .map(|d| format!(" ({})", d.format("%Y-%m-%d")))
                    .unwrap_or_default();
                format!("# {}{}\n\n{}\n", e.version, date, e.notes.trim())
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(ExitCode::SUCCESS)
}

fn skip_cmd(ctx: &Ctx, version: &str) -> anyhow::Result<ExitCode> {
    let parsed = crate::version::parse_user_version(version)?;
    let skipped = here(ctx).skip(version)?;
    ctx.emit(
        &serde_json::json!({ "skipped": parsed.to_string(), "skip_versions": skipped }),
        || format!("Version {parsed} will not be offered again (undo: update unskip-version {parsed})."),
    );
    Ok(ExitCode::SUCCESS)
}

fn unskip_cmd(ctx: &Ctx, version: &str) -> anyhow::Result<ExitCode> {
    let parsed = crate::version::parse_user_version(version)?;
    let (was_listed, skipped) = here(ctx).unskip(version)?;
    ctx.emit(
        &serde_json::json!({ "unskipped": parsed.to_string(), "was_skipped": was_listed, "skip_versions": skipped }),
        || {
            if was_listed {
                format!("Version {parsed} may be offered again.")
            } else {
                format!("Version {parsed} was not skipped; nothing changed.")
            }
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// The command line's settings as the service's change. What only the command line knows is settled
/// here: a key is read from its file, and a feed folder is made absolute against this shell's working
/// directory (the launcher may start from any other).
fn config_change(args: ConfigureArgs) -> anyhow::Result<ConfigChange> {
    let key = args
        .public_key
        .as_ref()
        .map(|f| crate::verify::PublicKey::from_file(f))
        .transpose()?;
    let clear = |text: String| {
        let text = text.trim().to_owned();
        (!text.is_empty()).then_some(text)
    };
    Ok(ConfigChange {
        update_channel: args.channel,
        auto_check: args.auto_check,
        auto_download: args.auto_download,
        auto_install: args.auto_install,
        backup_count: args.backup_count,
        check_interval_hours: args.check_interval,
        keep_backend_running: args.keep_backend_running,
        data_dir: args
            .data_dir
            .map(clear)
            .map(|dir| dir.map(|d| std::path::absolute(&d).unwrap_or_else(|_| std::path::PathBuf::from(d)))),
        github_repo: args.repo.map(clear),
        feed: args.feed.map(clear).map(|feed| {
            feed.map(|f| {
                if f.contains("://") {
                    f
                } else {
                    std::path::absolute(&f)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or(f)
                }
            })
        }),
        public_key: key.map(|k| Some(k.to_base64().to_owned())),
        skip_versions: args.clear_skipped.then(Vec::new),
        api_port: args.api_port.map(|port| (port != 0).then_some(port)),
    })
}

fn configure_cmd(ctx: &Ctx, args: ConfigureArgs) -> anyhow::Result<ExitCode> {
    let file = here(ctx).configure(config_change(args)?).map_err(|e| match e {
        // The command line's words for the fields it sets.
        crate::app::AppError::InvalidField { field, reason } => {
            let flag = match field.as_str() {
                "update_channel" => "channel",
                "check_interval_hours" => "check-interval",
                "github_repo" => "repo",
                "skip_versions" => "clear-skipped",
                other => other,
            }
            .replace('_', "-");
            anyhow::anyhow!("--{flag} {reason}")
        }
        other => other.into(),
    })?;
    let path = ctx.paths.config_file();
    ctx.emit(&file, || format!("Settings saved to {}.", path.display()));
    Ok(ExitCode::SUCCESS)
}

fn status_cmd(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let status = here(ctx).update_status()?;
    ctx.emit(&status, || status.human());
    Ok(ExitCode::SUCCESS)
}

fn parse_version_arg(value: Option<&str>) -> anyhow::Result<Option<semver::Version>> {
    Ok(value.map(crate::version::parse_user_version).transpose()?)
}

/// Draws download progress on a terminal; prints nothing otherwise (the JSON document says it all).
pub(super) struct ProgressView {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl ProgressView {
    pub(super) fn new(ctx: &Ctx) -> Self {
        ProgressView {
            bar: None,
            quiet: !ctx.interactive,
        }
    }

    fn note(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl ProgressView {
    /// Draws a job's progress (the same reports whether this process or the owner runs the job).
    pub(super) fn on_progress(&mut self, progress: &crate::app::Progress) {
        if self.quiet {
            return;
        }
        let detail = progress.detail.as_deref().unwrap_or_default();
        let moving = matches!(progress.phase.as_str(), "downloading" | "resuming");
        if !moving && let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        match progress.phase.as_str() {
            "downloading" | "resuming" => {
                let fresh = self.bar.is_none();
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = indicatif::ProgressBar::new(progress.total.unwrap_or(0));
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    bar
                });
                if let Some(total) = progress.total {
                    bar.set_length(total);
                }
                let done = progress.done.unwrap_or(0);
                if fresh && progress.phase == "resuming" {
                    bar.println(format!("Resuming from {}", human_size(done)));
                }
                bar.set_position(done);
            }
            "retrying" => self.note(&format!("Retrying ({detail})")),
            "restarted" => self.note(&format!("Starting over: {detail}")),
            "verifying" => self.note("Verifying…"),
            "verified" => self.note(&format!("Expected SHA256 from {detail}")),
            "reusing_download" => self.note(&format!("Using the verified download {detail}")),
            "installing" => self.note(&format!("Installing {detail}…")),
            "starting_backend" if !detail.is_empty() => self.note(&format!(
                "Starting the {detail} backend and waiting for its health check…"
            )),
            "healthy" => self.note(&match progress.done {
                Some(ms) => format!("{detail} is healthy (backend downtime {ms} ms)"),
                None => format!("{detail} is healthy"),
            }),
            "rolling_back" if !detail.is_empty() => self.note(detail),
            _ => {}
        }
    }

    /// Clears a bar left drawn.
    pub(super) fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Cancels `token` on Ctrl-C, so a download stops cleanly and resumes next time.
fn cancel_on_ctrl_c(token: &CancelToken) {
    let token = token.clone();
    // Fails only if a handler is already installed (tests, embedding); then Ctrl-C just ends the process,
    // which a resumable download survives too.
    let _ = ctrlc::set_handler(move || token.cancel());
}

fn download_cmd(ctx: &Ctx, args: DownloadArgs) -> anyhow::Result<ExitCode> {
    let version = parse_version_arg(args.version.as_deref())?;
    // A download for another machine touches nothing of this install: it never needs the owner.
    let control = match args.platform {
        Some(_) => Control::Here(here(ctx)),
        None => Control::connect(&ctx.paths)?,
    };
    // Downloads land in this install's folder: held like any change to it (not one for another machine).
    let _owner = match (&control, args.platform) {
        (Control::Here(_), None) => Some(super::remote::own_here(ctx, "update download")?),
        _ => None,
    };
    let cancel = cancel_token(&control);
    let mut view = ProgressView::new(ctx);
    let op = Op::Download {
        version,
        platform: args.platform,
        allow_downgrade: args.allow_downgrade,
    };
    let result = control.run(op, &cancel, &mut |p| view.on_progress(p));
    view.finish();
    let mut result = result?;
    if result["update_available"] != true {
        ctx.emit(
            &serde_json::json!({ "downloaded": null, "update_available": false }),
            || "Already up to date: nothing to download.".to_owned(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(map) = result.as_object_mut() {
        map.remove("update_available");
    }
    let downloaded: crate::updater::Downloaded =
        serde_json::from_value(result).context("reading the download report")?;
    ctx.emit(
        &serde_json::json!({ "downloaded": downloaded, "update_available": true }),
        || {
            format!(
                "Downloaded and verified {} ({}) → {}\nInstall it with: personal-ai-agent update install",
                downloaded.asset,
                human_size(downloaded.size),
                downloaded.path.display()
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// A token that Ctrl-C cancels: the job then ends as it would when cancelled through the API.
fn cancel_token(control: &Control) -> CancelToken {
    match control {
        Control::Owner(_) => super::remote::cancel_on_ctrl_c(),
        Control::Here(_) => {
            let cancel = CancelToken::new();
            cancel_on_ctrl_c(&cancel);
            cancel
        }
    }
}

/// The local supervisor, unless another launcher process supervises the backend.
fn local_supervisor(ctx: &Ctx) -> anyhow::Result<Supervisor> {
    let status = crate::supervisor::read_status(&ctx.paths.run_dir())?;
    if status.claims_a_process()
        && let Some(pid) = status.supervisor_pid.filter(|&p| p != std::process::id())
    {
        return Err(crate::Error::SupervisedElsewhere { pid }.into());
    }
    Ok(Supervisor::new(&ctx.paths))
}

/// The owner of the install, or a service here when nobody owns it and no other launcher process
/// supervises the backend (then that process, not this one, must restart it); then this process holds
/// the owner lock (returned) for as long as it works, saying it runs `what`.
fn control_for_install(ctx: &Ctx, what: &str) -> anyhow::Result<(Control, Option<crate::owner::Owner>)> {
    let control = Control::connect(&ctx.paths)?;
    let mut owner = None;
    if let Control::Here(_) = control {
        drop(local_supervisor(ctx)?);
        owner = Some(super::remote::own_here(ctx, what)?);
    }
    Ok((control, owner))
}

fn install_cmd(ctx: &Ctx, args: InstallArgs) -> anyhow::Result<ExitCode> {
    let version = parse_version_arg(args.version.as_deref())?;
    let (control, _owner) = control_for_install(ctx, "update install")?;
    let cancel = cancel_token(&control);
    let mut view = ProgressView::new(ctx);
    let op = Op::Install {
        version: version.clone(),
        full: args.full,
        allow_downgrade: args.allow_downgrade,
    };
    let result = control.run(op, &cancel, &mut |p| view.on_progress(p));
    view.finish();
    let report = install_report_of(result?)?;
    emit_install(ctx, report.as_ref(), version.as_ref());
    Ok(ExitCode::SUCCESS)
}

/// The install report in a service job's result (`installed_version: null`: nothing was installed).
fn install_report_of(result: serde_json::Value) -> anyhow::Result<Option<crate::updater::InstallReport>> {
    if result["installed_version"].is_null() {
        Ok(None)
    } else {
        Ok(Some(
            serde_json::from_value(result).context("reading the install report")?,
        ))
    }
}

/// Prints what an install did (the same whether this process or the owner did it).
fn emit_install(
    ctx: &Ctx,
    report: Option<&crate::updater::InstallReport>,
    version: Option<&semver::Version>,
) {
    match report {
        Some(report) => ctx.emit(report, || {
            let mut text = format!(
                "Installed {} (was {}); SHA256 verified against {}{}. The backend proved healthy in {} ms.",
                report.installed_version,
                report.previous_version.as_deref().unwrap_or("nothing"),
                report.verified_by,
                if report.signed { ", signature checked" } else { "" },
                report.time_to_healthy_ms
            );
            if let Some(launcher) = &report.launcher {
                text.push('\n');
                text.push_str(&launcher.human());
            }
            text
        }),
        None => match version {
            Some(v) => ctx.emit(
                &serde_json::json!({ "installed_version": null, "update_available": false, "already_current": v.to_string() }),
                || format!("Version {v} is already installed, current and intact: nothing to do."),
            ),
            None => ctx.emit(
                &serde_json::json!({ "installed_version": null, "update_available": false }),
                || "Already up to date: nothing to install.".to_owned(),
            ),
        },
    }
}

fn rollback_cmd(ctx: &Ctx, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let to = parse_version_arg(args.to.as_deref())?;
    let (control, _owner) = control_for_install(ctx, "update rollback")?;
    let cancel = cancel_token(&control);
    let mut view = ProgressView::new(ctx);
    let result = control.run(Op::Rollback { to }, &cancel, &mut |p| view.on_progress(p));
    view.finish();
    let report = serde_json::from_value(result?).context("reading the rollback report")?;
    emit_rollback(ctx, &report);
    Ok(ExitCode::SUCCESS)
}

fn emit_rollback(ctx: &Ctx, report: &crate::updater::RollbackReport) {
    ctx.emit(report, || {
        let mut text = format!(
            "Rolled back from {} to {}.",
            report.from.as_deref().unwrap_or("nothing"),
            report.to
        );
        if let Some(skipped) = &report.skipped {
            text.push_str(&format!(
                "\n{skipped} will not be offered again automatically; to allow it again: personal-ai-agent update unskip-version {skipped}"
            ));
        }
        if let Some(launcher) = &report.launcher {
            text.push('\n');
            text.push_str(&launcher.human());
        }
        text
    });
}
