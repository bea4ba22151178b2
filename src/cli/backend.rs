//! `personal-ai-agent backend start|stop|status|logs`: the supervisor, one piece at a time.
//!
//! - `start` runs the current installed version's backend (or `--bundle DIR`) and supervises it in the
//!   foreground until Ctrl-C, SIGTERM or `backend stop`; it exits non-zero when the backend never becomes
//!   healthy or crashes too often. `--detach` runs that same command as a background process in its own
//!   session and returns once the backend is healthy.
//! - `stop` asks whichever process supervises the backend (this command's `start`, `run --headless` or the
//!   window) to stop it, through the stop request file that process polls, and waits until it has.
//! - `restart` is `stop` then `start` (with `start`'s options).
//! - `status` reads the status file the supervising process keeps, and reports `stopped` when that process
//!   is gone. It exits 0 whatever the state; scripts read `state` from `--json`.
//!
//! When a window or `run --headless` owns this install, `start`, `stop`, `restart` and `status` ask it
//! through its local API instead (`super::remote`): the owner's supervisor starts and stops the one
//! backend, and the command returns once the owner's job is done, printing what the local path prints.
//! - `logs` prints the end of `backend.log`, and with `--follow` keeps printing what is appended.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Ctx;
use crate::agent::AgentSpec;
use crate::app::{Op, Service, StartOptions, control::Control};
use crate::download::CancelToken;
use crate::install::Installer;
use crate::supervisor::{self, BackendState, BackendStatus, Supervisor};

#[derive(Debug, clap::Args)]
pub struct BackendArgs {
    #[command(subcommand)]
    pub command: BackendCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum BackendCommand {
    /// Start the installed version's backend and supervise it until Ctrl-C or `backend stop`.
    Start(StartArgs),
    /// Ask the process that supervises the backend to stop it, and wait until it has.
    Stop(StopArgs),
    /// Stop the backend and start it again (through the owner of this install when one runs).
    Restart(StartArgs),
    /// Show whether the backend runs, its version, pid, port and last health answer.
    Status,
    /// Print the end of the backend's log.
    Logs(LogsArgs),
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Run the backend of this unpacked bundle instead of the installed version (to try a bundle).
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Give the backend this loopback port instead of a free one.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Supervise it from a launcher process in the background, and return once the backend is healthy.
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// How long to wait for the backend to be stopped.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// How many of the last lines to print.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 50)]
    pub lines: usize,
    /// Keep printing lines as they are appended (Ctrl-C ends).
    #[arg(short, long)]
    pub follow: bool,
}

pub fn run(ctx: &Ctx, args: BackendArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BackendCommand::Start(start) => run_start(ctx, start),
        BackendCommand::Stop(stop) => run_stop(ctx, stop),
        BackendCommand::Restart(start) => run_restart(ctx, start),
        BackendCommand::Status => run_status(ctx),
        BackendCommand::Logs(logs) => run_logs(ctx, logs),
    }
}

fn run_start(ctx: &Ctx, args: StartArgs) -> anyhow::Result<ExitCode> {
    match Control::connect(&ctx.paths)? {
        Control::Owner(owner) => {
            let status: BackendStatus = serde_json::from_value(owner.get("/api/backend/status")?)
                .context("reading the owner's backend status")?;
            if status.claims_a_process() {
                anyhow::bail!(
                    "the backend is already {} under the launcher with pid {}; stop it first with `personal-ai-agent backend stop` (or use `backend restart`)",
                    status.state,
                    owner.info().pid
                );
            }
            start_through(
                ctx,
                &Control::Owner(owner),
                &args,
                Op::BackendStart(options_of(&args)),
            )
        }
        Control::Here(service) => start_here(ctx, service, args),
    }
}

fn run_restart(ctx: &Ctx, args: StartArgs) -> anyhow::Result<ExitCode> {
    match Control::connect(&ctx.paths)? {
        control @ Control::Owner(_) => start_through(ctx, &control, &args, Op::BackendRestart),
        Control::Here(service) => {
            let (_, said) = stop_backend(ctx, Duration::from_secs(30))?;
            if !ctx.quiet && !ctx.json {
                eprintln!("{said}");
            }
            start_here(ctx, service, args)
        }
    }
}

fn options_of(args: &StartArgs) -> StartOptions {
    StartOptions {
        bundle: args.bundle.clone(),
        port: args.port,
    }
}

/// `backend start|restart` (`op` says which) by the owner, returning once the backend is healthy.
fn start_through(ctx: &Ctx, control: &Control, args: &StartArgs, op: Op) -> anyhow::Result<ExitCode> {
    let pid = control.owner_pid().unwrap_or_default();
    if args.bundle.is_some() || args.port.is_some() {
        anyhow::bail!(
            "the launcher with pid {pid} owns this install and runs its installed version; --bundle and --port cannot be given through it: stop that launcher first to try a bundle or a port"
        );
    }
    let cancel = super::remote::cancel_on_ctrl_c();
    if !ctx.quiet && !ctx.json {
        eprintln!(
            "asking the launcher with pid {pid} that owns this install to {} the backend…",
            if op == Op::BackendRestart {
                "restart"
            } else {
                "start"
            }
        );
    }
    let result = control.run(op, &cancel, &mut |_| {})?;
    let status: BackendStatus =
        serde_json::from_value(result["backend"].clone()).context("reading the owner's backend status")?;
    let healthy_after = result["time_to_healthy_ms"].as_u64().unwrap_or_default();
    ctx.emit(&status, || {
        format!(
            "backend {} running on {} (pid {}), healthy after {healthy_after} ms, supervised by the launcher with pid {pid}; `personal-ai-agent backend stop` stops it",
            status.version.as_deref().unwrap_or("unknown"),
            page_address(ctx, status.port.unwrap_or_default()),
            status.pid.unwrap_or_default(),
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// `backend start` without an owner: this process becomes the owner of the install (the lock, the
/// local API), starts the backend through the service's own operation and supervises it in the
/// foreground until Ctrl-C, SIGTERM or `backend stop` (asked through its API, or by the stop file).
/// With `--detach`, a background launcher does that.
fn start_here(ctx: &Ctx, service: Service, args: StartArgs) -> anyhow::Result<ExitCode> {
    let run_dir = ctx.paths.run_dir();
    let existing = supervisor::read_status(&run_dir)?;
    if existing.claims_a_process()
        && let Some(pid) = existing
            .supervisor_pid
            .filter(|pid| supervisor::is_process_alive(*pid))
    {
        anyhow::bail!(
            "the backend is already {} under the launcher with pid {pid}; stop it first with `personal-ai-agent backend stop`",
            existing.state
        );
    }
    if args.detach {
        let dir = match &args.bundle {
            Some(dir) => Some(dir.clone()),
            None => Installer::new(ctx.paths.install_dir())
                .current_dir()
                .ok()
                .flatten(),
        };
        let ready_timeout = dir
            .and_then(|d| AgentSpec::load(&d).ok())
            .map(|spec| Duration::from_secs(spec.ready_timeout_secs))
            .unwrap_or(Duration::from_secs(60));
        return start_detached(ctx, ready_timeout);
    }
    let owner = crate::owner::Owner::take_as(&ctx.paths, crate::owner::ROLE_BACKEND_START)?;
    // The API listens before the backend starts, so the backend gets its address and token.
    let api = super::api::serve(ctx, &service, &owner, None)?;
    if args.bundle.is_some() {
        // A bundle tried by hand is not trusted with the API token: it must not be able to install or roll
        // back the real install.
        service.supervisor().set_launch_env(Default::default());
    }

    // Ctrl-C and SIGTERM end the supervision gracefully; the handler only cancels the token.
    let cancel = CancelToken::new();
    {
        let cancel = cancel.clone();
        ctrlc::set_handler(move || cancel.cancel()).context("cannot install the Ctrl-C handler")?;
    }
    if !ctx.quiet && !ctx.json {
        eprintln!("starting the backend…");
    }
    let supervisor = service.shared_supervisor();
    let result = service.run_here(
        |s| s.start(Op::BackendStart(options_of(&args))),
        &cancel,
        &mut |_| {},
    );
    if cancel.is_cancelled() {
        let slot = service.hold_for_exit(Duration::from_secs(120));
        stop_and_report(ctx, &supervisor);
        drop(api);
        drop(slot);
        return Ok(ExitCode::from(130));
    }
    let result = result?;
    let status = supervisor.status();
    let healthy_after = result["time_to_healthy_ms"].as_u64().unwrap_or_default();
    ctx.emit(&status, || {
        format!(
            "backend {} running on {} (pid {}), healthy after {healthy_after} ms; Ctrl-C or `personal-ai-agent backend stop` stops it",
            status.version.as_deref().unwrap_or("unknown"),
            page_address(ctx, status.port.unwrap_or_default()),
            status.pid.unwrap_or_default(),
        )
    });

    let outcome = loop {
        if cancel.is_cancelled() {
            // Stopped below, once a job this owner runs for someone else is over.
            break Ok(ExitCode::SUCCESS);
        }
        // The backend is stopped on purpose during an update, a rollback or a restart: only a backend
        // not wanted running while no job runs (read before and after, so a job that just started or just
        // ended is seen) means `backend stop`, or giving up after repeated crashes.
        let stopped = !supervisor.is_wanted_running()
            && service.jobs().current().is_none()
            && !supervisor.is_wanted_running();
        if stopped {
            break match supervisor.state() {
                BackendState::Crashed { exit, reason } => Err(anyhow::anyhow!(
                    "the backend keeps crashing (last: {exit}): {reason}"
                )),
                _ => {
                    if !ctx.quiet && !ctx.json {
                        eprintln!("the backend was stopped by `personal-ai-agent backend stop`");
                    }
                    Ok(ExitCode::SUCCESS)
                }
            };
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // A job this owner runs for someone else (an update asked through the API) is cancelled and awaited,
    // so it never ends halfway between two versions; the slot held then lets nothing start the backend
    // again. The backend stops before the API closes: it knows the API's token, and the port must not be
    // free for another program while it runs.
    let slot = service.hold_for_exit(Duration::from_secs(120));
    stop_and_report(ctx, &supervisor);
    // The job that stopped the backend has sent its final event; a client following it gets its answer
    // before the API goes away.
    std::thread::sleep(Duration::from_millis(300));
    drop(api);
    drop(slot);
    drop(owner);
    outcome
}

/// Runs this same command without `--detach` as a background launcher in its own session, with its
/// output in `logs/launcher-detached.log`, and waits until it reports the backend healthy.
fn start_detached(ctx: &Ctx, ready_timeout: Duration) -> anyhow::Result<ExitCode> {
    let exe =
        std::env::current_exe().context("cannot find the launcher executable to run in the background")?;
    let log_path = ctx.paths.logs_dir().join("launcher-detached.log");
    crate::paths::ensure_dir(&ctx.paths.logs_dir())?;
    let log =
        std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut command = std::process::Command::new(exe);
    command
        .args(std::env::args_os().skip(1).filter(|arg| arg != "--detach"))
        .stdin(std::process::Stdio::null())
        .stdout(
            log.try_clone()
                .context("cannot share the detached launcher's log file")?,
        )
        .stderr(log);
    supervisor::detach(&mut command);
    let mut launcher = command
        .spawn()
        .context("cannot start the launcher in the background")?;
    let run_dir = ctx.paths.run_dir();
    // Past the backend's own timeout, the launcher has either reported it healthy or given up.
    let deadline = Instant::now() + ready_timeout + Duration::from_secs(15);
    loop {
        let status = supervisor::read_status(&run_dir)?;
        if status.state == "running" && status.supervisor_pid == Some(launcher.id()) {
            ctx.emit(&status, || {
                format!(
                    "backend {} running on {} (pid {}), supervised in the background by pid {}; `personal-ai-agent backend stop` stops it",
                    status.version.as_deref().unwrap_or("unknown"),
                    page_address(ctx, status.port.unwrap_or_default()),
                    status.pid.unwrap_or_default(),
                    launcher.id()
                )
            });
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(exit) = launcher
            .try_wait()
            .context("cannot watch the background launcher")?
        {
            let output = supervisor::read_last_lines(&log_path, 5).unwrap_or_default();
            anyhow::bail!(
                "the background launcher ended ({exit}) before the backend became healthy: {}",
                output.join(" ⏎ ")
            );
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the backend did not become healthy in time; the background launcher (pid {}) keeps trying; see `personal-ai-agent backend status` and `personal-ai-agent backend logs`",
                launcher.id()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_and_report(ctx: &Ctx, supervisor: &Supervisor) {
    match supervisor.stop() {
        Ok(Some(outcome)) if !ctx.quiet && !ctx.json => eprintln!(
            "stopped the backend (pid {}, {}) in {} ms{}",
            outcome.pid,
            outcome.exit,
            outcome.took.as_millis(),
            if outcome.forced {
                ", killed after it ignored the stop request"
            } else {
                ""
            }
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: {e}"),
    }
}

fn run_stop(ctx: &Ctx, args: StopArgs) -> anyhow::Result<ExitCode> {
    if let control @ Control::Owner(_) = Control::connect(&ctx.paths)? {
        let cancel = super::remote::cancel_on_ctrl_c();
        let result = control.run(Op::BackendStop, &cancel, &mut |_| {})?;
        let status: BackendStatus = serde_json::from_value(result["backend"].clone())
            .context("reading the owner's backend status")?;
        let pid = control.owner_pid().unwrap_or_default();
        ctx.emit(&status, || {
            if result["stopped"] == true {
                format!("the backend is stopped (the launcher with pid {pid} stopped it)")
            } else {
                "the backend is not running".into()
            }
        });
        return Ok(ExitCode::SUCCESS);
    }
    let (status, said) = stop_backend(ctx, Duration::from_secs(args.timeout))?;
    ctx.emit(&status, || said);
    Ok(ExitCode::SUCCESS)
}

/// Stops the backend whoever supervises it (no owner runs), waiting up to `timeout`; returns the status
/// after, and what to tell the user.
fn stop_backend(ctx: &Ctx, timeout: Duration) -> anyhow::Result<(BackendStatus, String)> {
    let run_dir = ctx.paths.run_dir();
    if let Some(pid) = supervisor::end_unsupervised_backend(&run_dir, Duration::from_secs(10)) {
        let status = supervisor::read_status(&run_dir)?;
        return Ok((
            status,
            format!("ended the backend (pid {pid}) that ran unsupervised"),
        ));
    }
    let Some(supervisor_pid) = supervisor::request_stop(&run_dir)? else {
        let status = supervisor::read_status(&run_dir)?;
        return Ok((status, "the backend is not running".into()));
    };
    let deadline = Instant::now() + timeout;
    loop {
        let status = supervisor::read_status(&run_dir)?;
        if !status.claims_a_process() && status.state != "crashed" {
            return Ok((
                status,
                format!("the backend is stopped (the launcher with pid {supervisor_pid} stopped it)"),
            ));
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the launcher with pid {supervisor_pid} did not stop the backend within {} s (state: {}); try again, or end that process",
                timeout.as_secs(),
                status.state
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_status(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    // Read-only: when the owner cannot be asked, the status file it keeps still tells.
    let from_owner = super::remote::owner(ctx).and_then(|owner| {
        owner
            .map(|owner| -> anyhow::Result<BackendStatus> {
                Ok(serde_json::from_value(owner.get("/api/backend/status")?)?)
            })
            .transpose()
    });
    let status = match from_owner {
        Ok(Some(status)) => status,
        Ok(None) => supervisor::read_status(&ctx.paths.run_dir())?,
        Err(e) => {
            tracing::warn!("asking the owner of this install: {e:#}; reading its status file instead");
            supervisor::read_status(&ctx.paths.run_dir())?
        }
    };
    ctx.emit(&status, || describe_status(ctx, &status));
    Ok(ExitCode::SUCCESS)
}

/// The agent page's address on `port`, with the key of the current owner start when its token can be
/// read (the page opens a session only with it; see `api::token::page_key`).
fn page_address(ctx: &Ctx, port: u16) -> String {
    match crate::api::token::read(&ctx.paths.config_dir) {
        Some(token) => crate::api::token::page_url(port, &token),
        None => format!("http://127.0.0.1:{port}/"),
    }
}

fn describe_status(ctx: &Ctx, status: &BackendStatus) -> String {
    let mut text = status.state.clone();
    if let Some(version) = &status.version {
        text.push_str(&format!(", version {version}"));
    }
    if let Some(pid) = status.pid {
        text.push_str(&format!(", pid {pid}"));
    }
    if let Some(port) = status.port {
        text.push_str(&format!(", {}", page_address(ctx, port)));
    }
    if let Some(reason) = &status.reason {
        text.push_str(&format!("\nreason: {reason}"));
    }
    if let Some(exit) = &status.exit {
        text.push_str(&format!("\nlast exit: {exit}"));
    }
    if let Some(health) = &status.health {
        text.push_str(&format!(
            "\nlast health check: {} in {} ms at {}",
            health.describe(),
            health.latency_ms,
            health.at.with_timezone(&chrono::Local).format("%H:%M:%S")
        ));
    }
    if let Some(pid) = status.supervisor_pid.filter(|_| status.claims_a_process()) {
        text.push_str(&format!("\nsupervised by the launcher with pid {pid}"));
    }
    text
}

fn run_logs(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let path = ctx.paths.logs_dir().join(supervisor::LOG_FILE);
    let lines = supervisor::read_last_lines(&path, args.lines)
        .with_context(|| format!("cannot read the backend log {}", path.display()))?;
    if ctx.json {
        ctx.emit(&serde_json::json!({ "file": path, "lines": lines }), String::new);
        return Ok(ExitCode::SUCCESS);
    }
    if lines.is_empty() && !args.follow && !ctx.quiet {
        eprintln!(
            "the backend log {} is empty: the backend has not run yet",
            path.display()
        );
    }
    let mut out = std::io::stdout().lock();
    for line in &lines {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    drop(out);
    if args.follow {
        follow(&path)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what is appended to `path`, starting at its current end, across rotations, until interrupted.
fn follow(path: &Path) -> anyhow::Result<()> {
    let mut position = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut pending = Vec::new();
    loop {
        let length = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if length < position {
            // Rotated (or truncated): the new file is read from its start.
            position = 0;
        }
        if length > position
            && let Ok(mut file) = std::fs::File::open(path)
        {
            file.seek(SeekFrom::Start(position))?;
            let read = file.take(length - position).read_to_end(&mut pending)?;
            position += read as u64;
            if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
                let mut out = std::io::stdout().lock();
                out.write_all(&pending[..=end])?;
                out.flush()?;
                pending.drain(..=end);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
