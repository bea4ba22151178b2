//! `personal-ai-agent models status|download`: list the model files the agent needs, and fetch the missing
//! ones — never without consent.
//!
//! `download` first says what it will fetch, how many bytes that is and how much space is free, refuses
//! when it does not fit, and then asks "Download 4.07 GiB? [y/N]" on a terminal. Without a terminal (a
//! script, `--json`, `--quiet`) it only proceeds with `--yes`, so a multi-gigabyte download never starts
//! by surprise. Ctrl-C stops it and keeps the partial file; the next run resumes it.
//!
//! Exit codes: `status` 0; `download` 0 when every planned model is present afterwards, 1 otherwise
//! (including a declined prompt).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::Ctx;
use crate::app::{Op, control::Control};
use crate::download::{CancelToken, DownloadEvent};
use crate::models::{
    self, DownloadReport, ModelOutcome, ModelState, ModelStatus, ModelsEvent, ModelsManifest, Plan,
    VerifyScope, human_bytes,
};

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the models the manifest names and whether each is present and verified.
    Status(StatusArgs),
    /// Download the missing models (says the size and asks first; `--yes` for scripts).
    Download(DownloadArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Read every model file again and check its SHA256 (slow for large files).
    #[arg(long)]
    pub verify: bool,
    /// The models manifest (a path or an https:// URL); by default the one the installed version names,
    /// else the `models_manifest` setting in config.json.
    #[arg(long, value_name = "PATH|URL")]
    pub manifest: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// Download without asking (needed when there is no terminal to ask on).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Also download the models the manifest marks optional.
    #[arg(long)]
    pub all: bool,
    /// The models manifest (a path or an https:// URL); see `models status --help`.
    #[arg(long, value_name = "PATH|URL")]
    pub manifest: Option<String>,
}

pub fn run(ctx: &Ctx, args: ModelsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ModelsCommand::Status(args) => status(ctx, args),
        ModelsCommand::Download(args) => download(ctx, args),
    }
}

fn load_manifest(ctx: &Ctx, explicit: Option<&str>) -> anyhow::Result<ModelsManifest> {
    let location = models::locate(&ctx.paths, explicit)?;
    Ok(ModelsManifest::load(&location)?)
}

fn status(ctx: &Ctx, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let manifest = load_manifest(ctx, args.manifest.as_deref())?;
    let statuses = if args.verify {
        let mut progress = ProgressUi::new(ctx);
        let result = models::verify(&ctx.paths, &manifest, VerifyScope::All, &mut |e| {
            progress.on_event(&e)
        });
        progress.clear();
        result.context("the model files could not be checked")?
    } else {
        models::status(&ctx.paths, &manifest)?
    };
    let models_dir = ctx.paths.models_dir();
    let ready = statuses
        .iter()
        .all(|s| !s.required || s.state == ModelState::Present);
    ctx.emit(
        &json!({
            "manifest": manifest.location,
            "models_dir": models_dir,
            "ready": ready,
            "verified_now": args.verify,
            "models": statuses,
        }),
        || {
            let mut text = format!(
                "Models in {} (manifest {}):\n",
                models_dir.display(),
                manifest.location
            );
            for s in &statuses {
                text.push_str(&format!("  {}\n", status_line(s)));
            }
            if statuses.is_empty() {
                text.push_str("  (the manifest lists no models)\n");
            } else if ready {
                text.push_str("Every required model is present and verified.\n");
            } else if statuses.iter().any(|s| s.state == ModelState::Unverified) && !args.verify {
                text.push_str(
                    "Run `personal-ai-agent models status --verify` to check unverified files, or `models download` to fetch what is missing.\n",
                );
            } else {
                text.push_str("Run `personal-ai-agent models download` to fetch what is missing.\n");
            }
            text
        },
    );
    Ok(ExitCode::SUCCESS)
}

fn status_line(s: &ModelStatus) -> String {
    let (word, detail) = match &s.state {
        ModelState::Present => ("present", None),
        ModelState::Missing => ("missing", None),
        ModelState::Partial { done } => (
            "partial",
            Some(format!(
                "{} downloaded, `models download` resumes it",
                human_bytes(*done)
            )),
        ),
        ModelState::Corrupt { reason } => ("corrupt", Some(reason.clone())),
        ModelState::Unverified => ("unverified", Some("right size, not hashed yet".to_owned())),
    };
    let optional = if s.required { "" } else { " [optional]" };
    let detail = detail.map(|d| format!(" — {d}")).unwrap_or_default();
    format!(
        "{word:<10} {:>11}  {}{optional}{detail}",
        human_bytes(s.size),
        s.name
    )
}

fn download(ctx: &Ctx, args: DownloadArgs) -> anyhow::Result<ExitCode> {
    let control = Control::connect(&ctx.paths)?;
    let _owner = match &control {
        Control::Here(_) => Some(super::remote::own_here(ctx, "models download")?),
        Control::Owner(_) => None,
    };
    let manifest = match &control {
        Control::Owner(owner) => consent_through(ctx, owner, &args)?,
        Control::Here(_) => consent_here(ctx, &args)?,
    };
    let Some(manifest) = manifest else {
        eprintln!("Nothing was downloaded.");
        return Ok(ExitCode::FAILURE);
    };
    // The download itself is the service's operation, wherever it runs: the owner's API runs the same.
    let cancel = match &control {
        Control::Owner(_) => super::remote::cancel_on_ctrl_c(),
        Control::Here(_) => {
            let cancel = CancelToken::new();
            let handler = cancel.clone();
            // Another handler may already be installed (only one per process); then Ctrl-C ends the
            // process and the partial file is still resumed next time, only less politely.
            let _ = ctrlc::set_handler(move || handler.cancel());
            cancel
        }
    };
    let mut progress = ProgressUi::new(ctx);
    let op = Op::ModelsDownload {
        all: args.all,
        manifest: args.manifest.clone(),
    };
    let result = control.run(op, &cancel, &mut |p| progress.on_progress(p));
    progress.clear();
    let report: DownloadReport = serde_json::from_value(result?).context("reading the models report")?;
    emit_report(ctx, &manifest, &report)
}

/// Without an owner: what will be fetched, whether it fits, and the user's consent. Returns the
/// manifest's location, or `None` when the user declined.
fn consent_here(ctx: &Ctx, args: &DownloadArgs) -> anyhow::Result<Option<String>> {
    let manifest = load_manifest(ctx, args.manifest.as_deref())?;
    let mut progress = ProgressUi::new(ctx);
    let plan = models::plan(&ctx.paths, &manifest, args.all, &mut |e| progress.on_event(&e));
    progress.clear();
    let plan = plan.context("the model files already present could not be checked")?;
    if !plan.is_empty() {
        if !ctx.json && !ctx.quiet {
            eprint!("{}", describe_plan(&plan));
        }
        plan.check_space()?;
        if !args.yes && !ask_consent(ctx, &plan)? {
            return Ok(None);
        }
    }
    Ok(Some(manifest.location))
}

/// Prints what a download run did (the same whether this process or the owner ran it); exit 1 unless
/// every planned model is present.
fn emit_report(ctx: &Ctx, manifest: &str, report: &DownloadReport) -> anyhow::Result<ExitCode> {
    ctx.emit(
        &json!({
            "manifest": manifest,
            "models_dir": report.models_dir,
            "fetched": report.fetched,
            "bytes_downloaded": report.bytes_downloaded,
            "all_present": report.all_present(),
            "cancelled": report.cancelled,
            "models": report.models,
        }),
        || describe_report(report),
    );
    Ok(if report.all_present() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// With an owner: the consent asked here, from the owner's list of what its installed version is
/// missing. Returns the manifest's location, or `None` when the user declined.
fn consent_through(
    ctx: &Ctx,
    owner: &crate::api::client::Client,
    args: &DownloadArgs,
) -> anyhow::Result<Option<String>> {
    if args.manifest.is_some() {
        anyhow::bail!(
            "the launcher with pid {} owns this install and downloads the models its installed version names; --manifest cannot be given through it: drop it, or stop that launcher first",
            owner.info().pid
        );
    }
    let listing = owner.get("/api/models")?;
    let manifest = listing["manifest"].as_str().unwrap_or_default().to_owned();
    let models_dir = listing["models_dir"].as_str().unwrap_or_default().to_owned();
    let missing: Vec<(String, u64)> = listing["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["state"] != "present")
        .filter(|m| args.all || m["required"] != false)
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_owned(),
                m["size"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    if !missing.is_empty() {
        let bytes: u64 = missing.iter().map(|(_, size)| size).sum();
        if !ctx.json && !ctx.quiet {
            let mut text =
                format!("To download into {models_dir} (by the launcher that owns this install):\n");
            for (name, size) in &missing {
                text.push_str(&format!("  {:>11}  {name}\n", human_bytes(*size)));
            }
            text.push_str(&format!("{} to download at most.\n", human_bytes(bytes)));
            eprint!("{text}");
        }
        if !args.yes && !ask(ctx, bytes, missing.len(), &models_dir)? {
            return Ok(None);
        }
    }
    Ok(Some(manifest))
}

fn describe_plan(plan: &Plan) -> String {
    let mut text = format!("To download into {}:\n", plan.models_dir.display());
    for f in &plan.fetch {
        let resume = if f.already_done > 0 {
            format!(" (resuming after {})", human_bytes(f.already_done))
        } else {
            String::new()
        };
        text.push_str(&format!("  {:>11}  {}{resume}\n", human_bytes(f.size), f.name));
    }
    if !plan.optional_skipped.is_empty() {
        text.push_str(&format!(
            "  (optional, not included without --all: {})\n",
            plan.optional_skipped.join(", ")
        ));
    }
    text.push_str(&format!(
        "{} to download; {} free there.\n",
        human_bytes(plan.bytes_needed),
        human_bytes(plan.bytes_available)
    ));
    text
}

/// Asks on the terminal; without one, refuses with the way to agree in advance.
fn ask_consent(ctx: &Ctx, plan: &Plan) -> anyhow::Result<bool> {
    ask(
        ctx,
        plan.bytes_needed,
        plan.fetch.len(),
        &plan.models_dir.display().to_string(),
    )
}

fn ask(ctx: &Ctx, bytes: u64, files: usize, models_dir: &str) -> anyhow::Result<bool> {
    let size = human_bytes(bytes);
    if !(ctx.interactive && std::io::stdin().is_terminal()) {
        anyhow::bail!(
            "downloading {size} ({files} model file{}) into {models_dir} needs your consent, and there is no terminal to ask on; run again with --yes to agree",
            if files == 1 { "" } else { "s" },
        );
    }
    eprint!("Download {size}? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("could not read the answer from the terminal")?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

fn describe_report(report: &DownloadReport) -> String {
    let mut text = String::new();
    for m in &report.models {
        let line = match &m.outcome {
            ModelOutcome::AlreadyPresent => "present, not fetched again".to_owned(),
            ModelOutcome::VerifiedExisting => "already there; checked, not fetched again".to_owned(),
            ModelOutcome::Fetched { bytes, resumed_from } if *resumed_from > 0 => format!(
                "downloaded {} (resumed after {}) and verified",
                human_bytes(*bytes),
                human_bytes(*resumed_from)
            ),
            ModelOutcome::Fetched { bytes, .. } => format!("downloaded {} and verified", human_bytes(*bytes)),
            ModelOutcome::Failed { error } => format!("FAILED: {error}"),
            ModelOutcome::Cancelled => "stopped; the partial file is kept".to_owned(),
            ModelOutcome::NotStarted => "not started".to_owned(),
        };
        text.push_str(&format!("  {}: {line}\n", m.name));
    }
    if report.cancelled {
        text.push_str("Interrupted. Run `personal-ai-agent models download` again to resume.\n");
    } else if report.all_present() {
        text.push_str(&format!(
            "All models are present and verified in {} ({} downloaded now).\n",
            report.models_dir.display(),
            human_bytes(report.bytes_downloaded)
        ));
    } else {
        text.push_str(
            "Some models could not be downloaded; fix the cause above and run `personal-ai-agent models download` again (finished and partial files are kept).\n",
        );
    }
    text
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
struct ProgressUi {
    enabled: bool,
    bar: Option<ProgressBar>,
    /// The model the bar shows.
    current: String,
}

impl ProgressUi {
    fn new(ctx: &Ctx) -> Self {
        ProgressUi {
            enabled: ctx.interactive,
            bar: None,
            current: String::new(),
        }
    }

    fn bar_for(&mut self, name: &str, total: u64, verb: &str) -> Option<&ProgressBar> {
        if !self.enabled {
            return None;
        }
        if self.current != name || self.bar.is_none() {
            self.clear();
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(format!("{verb} {name}"));
            self.bar = Some(bar);
            self.current = name.to_owned();
        }
        self.bar.as_ref()
    }

    fn on_event(&mut self, event: &ModelsEvent) {
        match event {
            ModelsEvent::Checking { name, done, total } => {
                if let Some(bar) = self.bar_for(name, *total, "checking") {
                    bar.set_position(*done);
                }
            }
            ModelsEvent::Downloading { name, event } => match event {
                DownloadEvent::Started {
                    total, resume_from, ..
                } => {
                    self.clear();
                    if let Some(bar) = self.bar_for(name, total.unwrap_or(0), "downloading") {
                        bar.set_position(*resume_from);
                    }
                }
                DownloadEvent::Progress(p) => {
                    if let Some(bar) = self.bar_for(name, p.total.unwrap_or(0), "downloading") {
                        bar.set_position(p.done);
                    }
                }
                DownloadEvent::Retrying {
                    attempt,
                    delay,
                    reason,
                } => {
                    if let Some(bar) = &self.bar {
                        bar.println(format!(
                            "{name}: {reason}; retrying (try {attempt}) in {:.1} s",
                            delay.as_secs_f64()
                        ));
                    }
                }
                DownloadEvent::Restarted { reason } => {
                    if let Some(bar) = &self.bar {
                        bar.println(format!("{name}: starting over ({reason})"));
                    }
                }
                DownloadEvent::Verifying => {
                    if let Some(bar) = &self.bar {
                        bar.set_message(format!("verifying {name}"));
                    }
                }
                DownloadEvent::Resumed { .. } | DownloadEvent::Done(_) => {}
            },
            ModelsEvent::Finished(_) => self.clear(),
        }
    }

    /// Draws a progress report of the download job (phases `checking_model`, `downloading_model`,
    /// `model_finished`, each naming its model) as [`ProgressUi::on_event`] draws the engine's events.
    fn on_progress(&mut self, progress: &crate::app::Progress) {
        let name = progress.detail.clone().unwrap_or_default();
        let verb = match progress.phase.as_str() {
            "checking_model" => "checking",
            "downloading_model" => "downloading",
            _ => return self.clear(),
        };
        if let Some(bar) = self.bar_for(&name, progress.total.unwrap_or(0), verb) {
            if let Some(total) = progress.total {
                bar.set_length(total);
            }
            bar.set_position(progress.done.unwrap_or(0));
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.current.clear();
    }
}
