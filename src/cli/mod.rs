//! The command line: the same engine as the window, headless, for people and for scripts.
//!
//! `main` parses arguments, sets up logging, runs one command and prints any error once, as one line on
//! stderr that names the cause and the next step. With `--json`, each command prints exactly one JSON
//! document on stdout (errors too: `{"error": "..."}`) so scripts never parse prose.
//!
//! Exit codes: 0 success (whether or not an update exists), 1 failure, 2 usage error. A reader that
//! closes stdout early (`update status | head -1`) is not an error: the output stops quietly and the
//! command ends as it would have (0 on success), as ripgrep does; it never panics.
//!
//! Each subcommand group lives in its own file and exposes `Args` + `run(&Ctx, Args)`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::paths::Paths;

pub mod api;
pub mod backend;
pub mod demo;
pub mod models;
pub mod release;
pub mod remote;
pub mod run;
pub mod uninstall;
pub mod update;

/// Installs, launches and safely updates the Personal AI Agent backend.
#[derive(Debug, Parser)]
#[command(name = "personal-ai-agent", version = crate::launcher_version(), about, long_about = None)]
pub struct Cli {
    /// Keep config, data, downloads and installs under DIR.
    #[arg(long, global = true, value_name = "DIR", env = "PAI_HOME")]
    pub home: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check for, download, install and roll back updates of the agent.
    Update(update::UpdateArgs),
    /// Build release archives, checksums and the signed manifest (for maintainers and CI).
    Release(release::ReleaseArgs),
    /// Start, stop and inspect the agent backend.
    Backend(backend::BackendArgs),
    /// Download and check the model files the agent needs.
    Models(models::ModelsArgs),
    /// Run the launcher: supervise the backend and apply updates (`--headless` for no window).
    Run(run::RunArgs),
    /// Where the owner of this data folder serves its local API (`api status`).
    Api(api::ApiArgs),
    /// The whole product offline: install, an update with its changelog, a health-gated rollback and a
    /// rollback on demand, from a local feed of three signed demo releases (in the window when a display
    /// is available, else told in the terminal).
    Demo(demo::DemoArgs),
    /// Remove the installed versions, downloads and (unless --keep-data) models and settings, after
    /// saying what and how much.
    Uninstall(uninstall::UninstallArgs),
    /// Proves this launcher runs here: reads the settings and the install, prints its version and
    /// platform (`--json`), exits 0. A launcher runs its successor's before replacing itself with it.
    #[command(name = "self-test", hide = true)]
    SelfTest,
}

/// What every command gets: where files live and how to print.
#[derive(Debug)]
pub struct Ctx {
    pub paths: Paths,
    pub json: bool,
    pub quiet: bool,
    /// Whether stderr is a terminal (progress bars only then).
    pub interactive: bool,
    /// Why the data folder cannot be used, for the commands that run anyway (`update configure` to
    /// choose another, `uninstall` to remove the settings); every other command has stopped with it.
    pub data_dir_problem: Option<crate::paths::DataDirError>,
}

impl Ctx {
    /// Prints `value` as JSON when `--json` was given, otherwise `human()`.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.json {
            print_line(
                &serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
            );
        } else {
            let text = human();
            if !text.is_empty() {
                print_line(text.trim_end());
            }
        }
    }
}

/// Set once stdout's reader went away: nothing more is printed there.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Prints one line on stdout. A closed stdout (EPIPE: `| head -1` had enough) is not a failure of the
/// command: the rest of the output is dropped and the command goes on, where `println!` would panic.
pub fn print_line(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            // Nothing else can be told on stdout; stderr still can.
            eprintln!("warning: could not write to stdout: {e}");
        }
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Whether `e` (or one of its causes) is stdout's reader having gone away.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A panic about printing to a closed stdout (a `print!` that bypassed [`print_line`]) ends the process
/// quietly with 0, never with a backtrace; every other panic is reported as before.
fn quiet_on_broken_pipe_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    quiet_on_broken_pipe_panics();
    // Where this executable is, remembered before anything can replace it.
    let _ = crate::selfupdate::running_exe();
    // The offline demo's bundles run this executable as their backend (`demo-agent …`): the example
    // agent, with no launcher logging or settings of its own.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == crate::demo::AGENT_SUBCOMMAND)
    {
        crate::demo::agent::main(
            std::env::args_os()
                .skip(2)
                .map(|a| a.to_string_lossy().into_owned()),
        );
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let json = cli.json;
    match run_cli(cli) {
        // The work is over and every lock released: become the launcher that replaced this one.
        Ok(code) if crate::selfupdate::restart_requested() => {
            let e = crate::selfupdate::restart();
            eprintln!("error: {e}");
            let _ = code;
            ExitCode::FAILURE
        }
        Ok(code) => code,
        // `backend logs | head`: the reader had enough; that is not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let message = one_line(&e);
            if json {
                print_line(&serde_json::json!({ "error": message }).to_string());
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Joins an error and its causes into one line, without repeating a cause already in the message.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run_cli(cli: Cli) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let (paths, data_dir_problem) = Paths::resolve_lenient(cli.home.as_deref())?;
    // A data folder that cannot be used stops every command but the two that fix or end it: nothing is
    // read from it, run from it or made in its place.
    let configuring = matches!(
        &cli.command,
        Some(Command::Update(update::UpdateArgs {
            command: update::UpdateCommand::Configure(_)
        }))
    );
    let uninstalling = matches!(&cli.command, Some(Command::Uninstall(_)));
    if let Some(problem) = &data_dir_problem
        && !configuring
        && !uninstalling
    {
        anyhow::bail!("{problem}");
    }
    // The headless runner is a service: its log on stderr is its interface, so it says what it does (info)
    // unless told otherwise; every other command only warns by default.
    let runs_headless = matches!(&cli.command, Some(Command::Run(args)) if args.headless);
    let verbosity = if cli.quiet {
        0
    } else {
        cli.verbose + if runs_headless { 2 } else { 1 }
    };
    // The self-test leaves no trace: no data folder claimed, no log file.
    if matches!(&cli.command, Some(Command::SelfTest)) {
        return self_test(&paths, cli.json);
    }
    let usable = data_dir_problem.is_none();
    if !uninstalling && usable {
        paths.claim_data_dir();
        // Looked at again once made: another user may have made it first.
        crate::paths::check_private_folder(&paths.data_dir)?;
    }
    // Uninstalling removes the log folder: no log file is opened in it (nor in a folder that cannot be
    // used).
    let _log_guard = if uninstalling || !usable {
        crate::logging::init_stderr(verbosity);
        None
    } else {
        crate::logging::init(&paths, verbosity)
    };
    let ctx = Ctx {
        paths,
        json: cli.json,
        quiet: cli.quiet,
        interactive: std::io::stderr().is_terminal() && !cli.json && !cli.quiet,
        data_dir_problem,
    };
    // A new launcher started as a start probe by the one replacing itself stops here, having come through
    // everything a start does before its command's work (`run` stops later, where it would take ownership).
    if !matches!(&cli.command, Some(Command::Run(_)) | None) {
        crate::selfupdate::probe_point();
    }
    match cli.command {
        Some(Command::Update(args)) => update::run(&ctx, args),
        Some(Command::Release(args)) => release::run(&ctx, args),
        Some(Command::Backend(args)) => backend::run(&ctx, args),
        Some(Command::Models(args)) => models::run(&ctx, args),
        Some(Command::Run(args)) => run::run(&ctx, args),
        Some(Command::Api(args)) => api::run(&ctx, args),
        Some(Command::Demo(args)) => demo::run(&ctx, args),
        Some(Command::Uninstall(args)) => uninstall::run(&ctx, args),
        Some(Command::SelfTest) => self_test(&ctx.paths, ctx.json),
        None => run::run(&ctx, run::RunArgs::default()),
    }
}

/// `self-test`: what a launcher about to replace this one must answer (see `selfupdate`).
fn self_test(paths: &Paths, json: bool) -> anyhow::Result<ExitCode> {
    let report = crate::selfupdate::self_test(paths)
        .map_err(|reason| anyhow::anyhow!("self-test failed: {reason}"))?;
    if json {
        print_line(&serde_json::to_string(&report)?);
    } else {
        print_line(&format!(
            "{} launcher {} ({}) ready",
            crate::PRODUCT_NAME,
            report.version,
            report.platform
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The Debian package's manual page (`assets/personal-ai-agent.1`) lists every command and global
    /// option; a command added or renamed here must be added there too.
    #[test]
    fn the_manual_page_names_every_command_and_global_option() {
        let page = include_str!("../../assets/personal-ai-agent.1");
        let cli = Cli::command();
        for command in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
            let entry = format!(".TP\n.B {}\n", command.get_name());
            assert!(
                page.contains(&entry),
                "assets/personal-ai-agent.1 does not list the command `{}`",
                command.get_name()
            );
        }
        for arg in cli.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(
                    page.contains(&escaped),
                    "assets/personal-ai-agent.1 does not describe the option --{long}"
                );
            }
        }
    }
}
