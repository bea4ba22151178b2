//! `personal-ai-agent update …`: check, status, changelog, skip-version, configure, download, install,
//! rollback. The JSON shapes printed with `--json` are a contract scripts rely on: extend, don't rename.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::Ctx;
use crate::check::CheckReport;
use crate::config::Config;
use crate::download::CancelToken;
use crate::platform::Platform;
use crate::supervisor::Supervisor;
use crate::updater::{UpdateEvent, Updater};
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
}

#[derive(Debug, Default, Args)]
pub struct InstallArgs {
    /// The version to install (default: the offered update). An explicit version is installed even if it
    /// was skipped or failed before.
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
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

/// The updater for this command's settings, choosing assets for `platform` when given.
fn updater(ctx: &Ctx, settings: &Settings, platform: Option<Platform>) -> anyhow::Result<Updater> {
    let updater = Updater::new(&ctx.paths, &settings.effective)?;
    Ok(match platform {
        Some(p) => updater.for_platform(p),
        None => updater,
    })
}

fn check_cmd(ctx: &Ctx, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings();
    let updater = updater(ctx, &settings, args.platform)?;
    let report = updater
        .check(args.channel)
        .with_context(|| format!("checking {}", updater.source().describe()))?;
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
    let settings = ctx.settings();
    let updater = updater(ctx, &settings, args.platform)?;
    let entries = updater
        .changelog(args.channel)
        .with_context(|| format!("reading {}", updater.source().describe()))?;
    let current = crate::updater::current_version(&ctx.paths)?;
    #[derive(Serialize)]
    struct Out<'a> {
        current_version: Option<String>,
        channel: Channel,
        releases: &'a [crate::check::ChangelogEntry],
    }
    let out = Out {
        current_version: current.as_ref().map(ToString::to_string),
        channel: args.channel.unwrap_or(settings.effective.update_channel),
        releases: &entries,
    };
    ctx.emit(&out, || {
        if entries.is_empty() {
            return "Nothing new since the installed version.".to_owned();
        }
        entries
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
    let path = ctx.paths.config_file();
    let skipped = Config::update(&path, |file| {
        if !crate::version::is_listed(&file.skip_versions, &parsed) {
            file.skip_versions.push(parsed.to_string());
        }
        Ok(file.skip_versions.clone())
    })
    .context("saving the settings")?;
    ctx.emit(
        &serde_json::json!({ "skipped": parsed.to_string(), "skip_versions": skipped }),
        || format!("Version {parsed} will not be offered again (undo: update unskip-version {parsed})."),
    );
    Ok(ExitCode::SUCCESS)
}

fn unskip_cmd(ctx: &Ctx, version: &str) -> anyhow::Result<ExitCode> {
    let parsed = crate::version::parse_user_version(version)?;
    let path = ctx.paths.config_file();
    let (was_listed, skipped) = Config::update(&path, |file| {
        let before = file.skip_versions.len();
        file.skip_versions.retain(|v| {
            crate::version::parse_user_version(v).ok().as_ref() != Some(&parsed) && v != &parsed.to_string()
        });
        Ok((file.skip_versions.len() != before, file.skip_versions.clone()))
    })
    .context("saving the settings")?;
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

fn configure_cmd(ctx: &Ctx, args: ConfigureArgs) -> anyhow::Result<ExitCode> {
    let path = ctx.paths.config_file();
    // Everything that can be refused is checked before the file is touched.
    if let Some(h) = args.check_interval {
        crate::config::validate_check_interval(h).map_err(|reason| crate::Error::InvalidSetting {
            name: "check-interval".into(),
            value: h.to_string(),
            reason,
        })?;
    }
    let repo = match args.repo.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(r) => Some(Some(r.parse::<crate::sources::github::Repo>()?.to_string())),
    };
    let key = args
        .public_key
        .as_ref()
        .map(|f| crate::verify::PublicKey::from_file(f))
        .transpose()?;
    // A broken line of a field this command sets is repaired by it, not a reason to refuse.
    let mut replaced = Vec::new();
    if repo.is_some() {
        replaced.push("github_repo");
    }
    if args.feed.is_some() {
        replaced.push("feed");
    }
    if key.is_some() {
        replaced.push("public_key");
    }
    let file = Config::update_replacing(&path, &replaced, |file| {
        if let Some(c) = args.channel {
            file.update_channel = c;
        }
        if let Some(b) = args.auto_check {
            file.auto_check = b;
        }
        if let Some(b) = args.auto_download {
            file.auto_download = b;
        }
        if let Some(b) = args.auto_install {
            file.auto_install = b;
        }
        if let Some(n) = args.backup_count {
            file.backup_count = n;
        }
        if let Some(h) = args.check_interval {
            file.check_interval_hours = h;
        }
        if let Some(repo) = repo {
            file.github_repo = repo;
        }
        if let Some(feed) = args.feed {
            file.feed = if feed.trim().is_empty() {
                None
            } else if feed.contains("://") {
                Some(feed)
            } else {
                // A folder is kept absolute: the launcher may start from any working directory.
                Some(
                    std::path::absolute(&feed)
                        .unwrap_or_else(|_| feed.clone().into())
                        .to_string_lossy()
                        .into_owned(),
                )
            };
        }
        if let Some(key) = &key {
            file.public_key = Some(key.to_base64().to_owned());
        }
        if args.clear_skipped {
            file.skip_versions.clear();
        }
        Ok(file.clone())
    })
    .context("saving the settings")?;
    ctx.emit(&file, || format!("Settings saved to {}.", path.display()));
    Ok(ExitCode::SUCCESS)
}

fn status_cmd(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let settings = ctx.settings();
    let status = crate::updater::status(&ctx.paths, &settings.effective)?;
    ctx.emit(&status, || status.human());
    Ok(ExitCode::SUCCESS)
}

fn parse_version_arg(value: Option<&str>) -> anyhow::Result<Option<semver::Version>> {
    Ok(value.map(crate::version::parse_user_version).transpose()?)
}

/// Draws download progress on a terminal; prints nothing otherwise (the JSON document says it all).
struct ProgressView {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl ProgressView {
    fn new(ctx: &Ctx) -> Self {
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

    fn on_event(&mut self, event: UpdateEvent) {
        use crate::download::DownloadEvent as D;
        if self.quiet {
            return;
        }
        match event {
            UpdateEvent::Download(D::Started {
                total, resume_from, ..
            }) => {
                let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_position(resume_from);
                if resume_from > 0 {
                    bar.println(format!("Resuming from {}", human_size(resume_from)));
                }
                self.bar = Some(bar);
            }
            UpdateEvent::Download(D::Progress(p)) => {
                if let Some(bar) = &self.bar {
                    if let Some(total) = p.total {
                        bar.set_length(total);
                    }
                    bar.set_position(p.done);
                }
            }
            UpdateEvent::Download(D::Retrying {
                attempt,
                delay,
                reason,
            }) => {
                self.note(&format!(
                    "Retrying (attempt {attempt}) in {:.1} s: {reason}",
                    delay.as_secs_f64()
                ));
            }
            UpdateEvent::Download(D::Restarted { reason }) => self.note(&format!("Starting over: {reason}")),
            UpdateEvent::Download(D::Verifying) => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                self.note("Verifying…");
            }
            UpdateEvent::Download(_) => {}
            UpdateEvent::Verified { verified_by, signed } => self.note(&format!(
                "Expected SHA256 from {verified_by}{}",
                if signed {
                    " (signature verified)"
                } else {
                    " (unsigned)"
                }
            )),
            UpdateEvent::ReusingDownload { path } => {
                self.note(&format!("Using the verified download {}", path.display()))
            }
            UpdateEvent::Installing { version } => self.note(&format!("Installing {version}…")),
            UpdateEvent::StoppingBackend => {}
            UpdateEvent::StartingBackend { version } => self.note(&format!(
                "Starting the {version} backend and waiting for its health check…"
            )),
            UpdateEvent::Healthy {
                version, downtime, ..
            } => self.note(&format!(
                "{version} is healthy (backend downtime {} ms)",
                downtime.as_millis()
            )),
            UpdateEvent::RollingBack { from, to, reason } => self.note(&format!(
                "{from} is not healthy ({reason}); rolling back to {}",
                to.map(|v| v.to_string()).unwrap_or_else(|| "nothing".into())
            )),
        }
    }
}

impl ProgressView {
    /// Draws a progress report of the owner's job as [`ProgressView::on_event`] draws the engine's
    /// events (the API carries phases, not the events themselves, so some lines say a little less).
    fn on_progress(&mut self, progress: &crate::app::Progress) {
        if self.quiet {
            return;
        }
        let detail = progress.detail.as_deref().unwrap_or_default();
        if progress.phase != "downloading"
            && let Some(bar) = self.bar.take()
        {
            bar.finish_and_clear();
        }
        match progress.phase.as_str() {
            "downloading" => {
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
                bar.set_position(progress.done.unwrap_or(0));
            }
            "retrying" => self.note(&format!("Retrying: {detail}")),
            "verified" => {
                self.note("Verifying…");
                self.note(&format!("Expected SHA256 from {detail}"));
            }
            "reusing_download" => self.note("Using the verified download"),
            "installing" => self.note(&format!("Installing {detail}…")),
            "starting_backend" if !detail.is_empty() => self.note(&format!(
                "Starting the {detail} backend and waiting for its health check…"
            )),
            "healthy" => self.note(&format!("{detail} is healthy")),
            "rolling_back" if !detail.is_empty() => {
                self.note(&format!("Not healthy ({detail}); rolling back"))
            }
            _ => {}
        }
    }

    /// Clears a bar left drawn.
    fn finish(&mut self) {
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
    let settings = ctx.settings();
    let updater = updater(ctx, &settings, args.platform)?;
    let version = parse_version_arg(args.version.as_deref())?;
    let Some((release, asset)) = updater.target(version.as_ref())? else {
        ctx.emit(
            &serde_json::json!({ "downloaded": null, "update_available": false }),
            || "Already up to date: nothing to download.".to_owned(),
        );
        return Ok(ExitCode::SUCCESS);
    };
    let cancel = CancelToken::new();
    cancel_on_ctrl_c(&cancel);
    let mut view = ProgressView::new(ctx);
    let downloaded = if version.is_some() {
        updater.download_explicit(&release, &asset, &cancel, &mut |e| view.on_event(e))
    } else {
        updater.download(&release, &asset, &cancel, &mut |e| view.on_event(e))
    }
    .with_context(|| format!("downloading {}", asset.name))?;
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

fn install_cmd(ctx: &Ctx, args: InstallArgs) -> anyhow::Result<ExitCode> {
    let version = parse_version_arg(args.version.as_deref())?;
    if let Some(owner) = super::remote::owner(ctx)? {
        return install_through(ctx, &owner, version);
    }
    // No owner: this process does the work itself, through the same service operation the owner's API
    // runs (`app::Service::install`), and waits for it here.
    drop(local_supervisor(ctx)?);
    let service = crate::app::Service::new(ctx.paths.clone());
    let cancel = CancelToken::new();
    cancel_on_ctrl_c(&cancel);
    let mut view = ProgressView::new(ctx);
    let wanted = version.clone();
    let result = service.run_here(|s| s.install(wanted), &cancel, &mut |p| view.on_progress(p));
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
            format!(
                "Installed {} (was {}); SHA256 verified against {}{}. The backend proved healthy in {} ms.",
                report.installed_version,
                report.previous_version.as_deref().unwrap_or("nothing"),
                report.verified_by,
                if report.signed { ", signature checked" } else { "" },
                report.time_to_healthy_ms
            )
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

/// `update install` by the owner of this install: its supervisor restarts the backend it runs.
fn install_through(
    ctx: &Ctx,
    owner: &crate::api::client::Client,
    version: Option<semver::Version>,
) -> anyhow::Result<ExitCode> {
    let cancel = super::remote::cancel_on_ctrl_c();
    let mut view = ProgressView::new(ctx);
    let body = serde_json::json!({ "version": version.as_ref().map(ToString::to_string) });
    let result = owner.run_job("/api/updates/install", &body, &cancel, &mut |p| {
        view.on_progress(p)
    });
    view.finish();
    let report = install_report_of(result?)?;
    emit_install(ctx, report.as_ref(), version.as_ref());
    Ok(ExitCode::SUCCESS)
}

fn rollback_cmd(ctx: &Ctx, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let to = parse_version_arg(args.to.as_deref())?;
    let report = match super::remote::owner(ctx)? {
        Some(owner) => {
            let cancel = super::remote::cancel_on_ctrl_c();
            let mut view = ProgressView::new(ctx);
            let body = serde_json::json!({ "to": to.as_ref().map(ToString::to_string) });
            let result = owner.run_job("/api/updates/rollback", &body, &cancel, &mut |p| {
                view.on_progress(p)
            });
            view.finish();
            serde_json::from_value(result?).context("reading the owner's rollback report")?
        }
        None => {
            // The same service operation the owner's API runs, in this process.
            drop(local_supervisor(ctx)?);
            let service = crate::app::Service::new(ctx.paths.clone());
            let cancel = CancelToken::new();
            let target = to.clone();
            let result = service.run_here(|s| s.rollback(target), &cancel, &mut |_| {})?;
            serde_json::from_value(result).context("reading the rollback report")?
        }
    };
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
        text
    });
}
