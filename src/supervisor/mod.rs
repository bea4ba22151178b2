//! Runs the agent backend as a child process and keeps it healthy.
//!
//! A [`Supervisor`] owns at most one backend process, started from a [`LaunchPlan`]. It:
//!
//! - starts it in its own process group (a Job Object on Windows) so that a stop reaches the backend and
//!   everything it started, and so that no backend outlives the launcher (see `unix.rs` / `windows.rs` for
//!   what each platform guarantees when the launcher itself is killed);
//! - asks `health_url` often while the backend starts (every 5 ms at first, backing off to
//!   [`SupervisorOptions::startup_poll_interval`]), so `starting` turns into `running` within a few
//!   milliseconds of the backend being ready, then every
//!   [`SupervisorOptions::health_interval`] from a named monitor thread, which marks it `unhealthy` after a
//!   few failed answers and restarts it when it stays so;
//! - restarts a crashed backend with a growing back-off (1 s, 2 s, 4 s … capped), and gives up after
//!   [`SupervisorOptions::crash_limit`] crashes within [`SupervisorOptions::crash_window`], saying so in the
//!   state's reason;
//! - stops it gracefully (SIGTERM / CTRL_BREAK), then forcefully after [`SupervisorOptions::stop_timeout`];
//!   dropping the supervisor stops the backend;
//! - copies its stdout and stderr, line by line, into a rotated `backend.log` and an in-memory tail;
//! - writes its status to `run/backend.json` on every change (atomically), so `backend status` in another
//!   process can report it, and honours a stop request file (`run/backend.stop`) that `backend stop` writes.
//!
//! The state is a [`BackendState`] that callers only read. For the health-gated update the intended
//! sequence is `stop()` → switch versions → `start_and_wait(plan, timeout)` → commit, or on error
//! `start_and_wait(old_plan, …)` and record the failure; the error carries the last health answer and the
//! log tail for the user.

mod logs;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::agent::LaunchPlan;
use crate::paths::Paths;

pub use logs::{LineSource, read_last_lines};
pub use os::is_process_alive;

/// The status file a supervising process keeps up to date, in `paths.run_dir()`.
pub const STATUS_FILE: &str = "backend.json";
/// The file `backend stop` writes to ask the supervising process to stop the backend.
pub const STOP_REQUEST_FILE: &str = "backend.stop";
/// The backend's log file, in `paths.logs_dir()`.
pub const LOG_FILE: &str = "backend.log";

/// What the backend is doing. The window and `backend status` only read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BackendState {
    /// Not running, and not meant to be.
    Stopped,
    /// Started; waiting for the first healthy answer.
    Starting { since: DateTime<Utc> },
    /// Answering its health check.
    Running {
        pid: u32,
        port: u16,
        since: DateTime<Utc>,
    },
    /// Running, but its health check fails.
    Unhealthy { pid: u32, reason: String },
    /// It exited or was stopped for failing; `reason` says whether and when it is restarted.
    Crashed { exit: String, reason: String },
}

impl BackendState {
    /// The state's name as in the JSON contract: `stopped`, `starting`, `running`, `unhealthy`, `crashed`.
    pub fn name(&self) -> &'static str {
        match self {
            BackendState::Stopped => "stopped",
            BackendState::Starting { .. } => "starting",
            BackendState::Running { .. } => "running",
            BackendState::Unhealthy { .. } => "unhealthy",
            BackendState::Crashed { .. } => "crashed",
        }
    }

    /// The reason, for the states that have one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            BackendState::Unhealthy { reason, .. } | BackendState::Crashed { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// One answer (or failure to answer) of the health URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthAnswer {
    /// The HTTP status, or `None` when no answer came.
    pub status: Option<u16>,
    pub at: DateTime<Utc>,
    pub latency_ms: u64,
    /// Why there was no answer (refused, timed out), or the start of a non-2xx body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HealthAnswer {
    pub fn is_healthy(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// `HTTP 503 (…body…)`, or `no answer (connection refused)`.
    pub fn describe(&self) -> String {
        match (self.status, &self.error) {
            (Some(status), Some(detail)) => format!("HTTP {status} ({detail})"),
            (Some(status), None) => format!("HTTP {status}"),
            (None, Some(error)) => format!("no answer ({error})"),
            (None, None) => "no answer".to_owned(),
        }
    }
}

/// What `backend.json` holds and `backend status --json` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// `stopped`, `starting`, `running`, `unhealthy` or `crashed`.
    pub state: String,
    pub version: Option<String>,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// The last health answer.
    pub health: Option<HealthAnswer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How the last backend process ended, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// Since when the state holds (running, starting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The process that supervises the backend.
    pub supervisor_pid: Option<u32>,
    /// The backend program, so a later launcher can recognise a backend left behind by a dead one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<PathBuf>,
    pub updated_at: DateTime<Utc>,
}

impl BackendStatus {
    /// Nothing runs, for `reason`.
    pub fn stopped(reason: Option<String>) -> Self {
        BackendStatus {
            state: "stopped".into(),
            version: None,
            pid: None,
            port: None,
            health: None,
            reason,
            exit: None,
            since: None,
            supervisor_pid: None,
            program: None,
            updated_at: Utc::now(),
        }
    }

    /// Whether the state claims a live backend process.
    pub fn claims_a_process(&self) -> bool {
        matches!(self.state.as_str(), "starting" | "running" | "unhealthy")
    }
}

/// Lets the background launcher outlive this terminal: a new session on Unix (no SIGHUP when the terminal
/// closes, no Ctrl-C from it); on Windows a hidden console of its own, which its backend shares so that
/// CTRL_BREAK still reaches it.
pub fn detach(command: &mut std::process::Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe and the closure allocates nothing.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        command.creation_flags(CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
    }
}

/// Reads the status that a supervising process wrote in `run_dir`, as another process sees it.
///
/// When that process is gone, the backend is reported `stopped` with the reason, whatever the file says:
/// its backend ended with it (or, on macOS after a `kill -9`, see `docs/BUNDLE.md`).
pub fn read_status(run_dir: &Path) -> Result<BackendStatus, SupervisorError> {
    let path = run_dir.join(STATUS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(BackendStatus::stopped(Some(
                "no launcher has started the backend yet".into(),
            )));
        }
        Err(source) => {
            return Err(SupervisorError::Io {
                action: "read",
                path,
                source,
            });
        }
    };
    let status: BackendStatus = serde_json::from_str(&text).map_err(|e| SupervisorError::BadStatusFile {
        path,
        reason: e.to_string(),
    })?;
    let supervisor_alive = status
        .supervisor_pid
        .is_some_and(|pid| pid == std::process::id() || is_process_alive(pid));
    if !supervisor_alive
        && status.claims_a_process()
        && let Some(pid) = status
            .pid
            .filter(|pid| is_our_backend(*pid, status.program.as_deref()))
    {
        // Only possible where the platform cannot tie the backend's life to the launcher's (macOS).
        let mut orphan = status;
        orphan.state = "unhealthy".into();
        orphan.reason = Some(format!(
            "the launcher that supervised it is no longer running, but the backend (pid {pid}) still runs unsupervised; `personal-ai-agent backend start` ends it and starts a supervised one"
        ));
        return Ok(orphan);
    }
    if !supervisor_alive && status.state != "stopped" {
        let mut stale = BackendStatus::stopped(Some(
            "the launcher that supervised it is no longer running".into(),
        ));
        stale.version = status.version;
        stale.health = status.health;
        stale.exit = status.exit;
        return Ok(stale);
    }
    Ok(status)
}

/// Whether `pid` is alive and runs `program` (when the platform can tell), so a reused pid is never taken
/// for our backend.
fn is_our_backend(pid: u32, program: Option<&Path>) -> bool {
    if !is_process_alive(pid) {
        return false;
    }
    match (program, os::process_executable(pid)) {
        (Some(expected), Some(actual)) => same_file(expected, &actual),
        // Without a way to check, an old status file alone is not enough to act on a pid.
        _ => false,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Ends a backend that a launcher left running when it died without stopping it (possible on macOS after a
/// `kill -9`, where no parent-death signal exists), as recorded in `run_dir/backend.json`. Returns its pid,
/// or `None` when there is no such backend. `start` does this by itself; `backend stop` calls it.
pub fn end_unsupervised_backend(run_dir: &Path, stop_timeout: Duration) -> Option<u32> {
    end_orphan(&run_dir.join(STATUS_FILE), stop_timeout)
}

fn end_orphan(status_file: &Path, stop_timeout: Duration) -> Option<u32> {
    let status: BackendStatus = serde_json::from_str(&std::fs::read_to_string(status_file).ok()?).ok()?;
    let supervisor_pid = status.supervisor_pid?;
    if supervisor_pid == std::process::id() || is_process_alive(supervisor_pid) || !status.claims_a_process()
    {
        return None;
    }
    let pid = status
        .pid
        .filter(|pid| is_our_backend(*pid, status.program.as_deref()))?;
    tracing::warn!("ending backend pid {pid}, left running by launcher pid {supervisor_pid} that is gone");
    let _ = os::request_stop(pid);
    let deadline = Instant::now() + stop_timeout;
    while is_process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    os::kill_orphan_group(pid);
    Some(pid)
}

/// Asks the process supervising the backend (per `run_dir/backend.json`) to stop it.
///
/// Returns the supervisor's pid, or `None` when no live process supervises a backend.
pub fn request_stop(run_dir: &Path) -> Result<Option<u32>, SupervisorError> {
    let status = read_status(run_dir)?;
    let Some(pid) = status
        .supervisor_pid
        .filter(|pid| *pid == std::process::id() || is_process_alive(*pid))
        .filter(|_| status.claims_a_process() || status.state == "crashed")
    else {
        return Ok(None);
    };
    let path = run_dir.join(STOP_REQUEST_FILE);
    std::fs::write(&path, pid.to_string()).map_err(|source| SupervisorError::Io {
        action: "write",
        path,
        source,
    })?;
    Ok(Some(pid))
}

/// Why the supervisor could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(
        "cannot start the backend {program}: {source}; reinstall the version with `personal-ai-agent update install`"
    )]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the backend exited ({exit}) before it became healthy{}", tail_suffix(.log_tail))]
    Exited { exit: String, log_tail: Vec<String> },

    #[error(
        "the backend did not answer {url} with 2xx within {} ms of its start; last answer: {last_answer}{}",
        .waited.as_millis(), tail_suffix(.log_tail)
    )]
    NotHealthy {
        url: String,
        waited: Duration,
        last_answer: String,
        log_tail: Vec<String>,
    },

    #[error("the backend is not running; start it with `personal-ai-agent backend start`")]
    NotRunning,

    #[error("the backend was never started, so there is nothing to restart")]
    NeverStarted,

    #[error("the supervisor could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not a backend status file ({reason}); delete it, it is rewritten on the next start")]
    BadStatusFile { path: PathBuf, reason: String },
}

fn tail_suffix(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let last: Vec<&str> = tail.iter().rev().take(3).rev().map(String::as_str).collect();
    format!("; last lines of backend.log: {}", last.join(" ⏎ "))
}

/// How the supervisor behaves. [`SupervisorOptions::for_paths`] gives the product's defaults.
#[derive(Clone, Debug)]
pub struct SupervisorOptions {
    /// Where `backend.log` goes.
    pub log_file: PathBuf,
    /// Where the status is written for other processes (`None`: nowhere).
    pub status_file: Option<PathBuf>,
    /// Polled for a stop request from `backend stop` (`None`: not polled).
    pub stop_request_file: Option<PathBuf>,
    /// How long a graceful stop may take before the backend is killed.
    pub stop_timeout: Duration,
    /// The longest wait between health checks while starting (the first ones come sooner).
    pub startup_poll_interval: Duration,
    /// Health poll interval once running.
    pub health_interval: Duration,
    /// How long one health request may take.
    pub health_timeout: Duration,
    /// Failed health answers in a row before a running backend is marked unhealthy.
    pub unhealthy_after_failures: u32,
    /// How long a backend may stay unhealthy before it is restarted (`None`: never).
    pub unhealthy_restart_after: Option<Duration>,
    /// The first restart delay; each crash within the window doubles it.
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    /// Crashes within `crash_window` after which the supervisor gives up.
    pub crash_limit: u32,
    pub crash_window: Duration,
    /// `backend.log` rotates at this size, keeping `log_keep` old files.
    pub log_max_bytes: u64,
    pub log_keep: usize,
    /// Lines kept in memory for [`Supervisor::log_tail`].
    pub tail_lines: usize,
}

impl SupervisorOptions {
    /// The product's defaults, with files under `paths`.
    pub fn for_paths(paths: &Paths) -> Self {
        SupervisorOptions {
            log_file: paths.logs_dir().join(LOG_FILE),
            status_file: Some(paths.run_dir().join(STATUS_FILE)),
            stop_request_file: Some(paths.run_dir().join(STOP_REQUEST_FILE)),
            stop_timeout: Duration::from_secs(10),
            startup_poll_interval: Duration::from_millis(20),
            health_interval: Duration::from_secs(2),
            health_timeout: Duration::from_secs(2),
            unhealthy_after_failures: 3,
            unhealthy_restart_after: Some(Duration::from_secs(60)),
            restart_backoff_initial: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(30),
            crash_limit: 5,
            crash_window: Duration::from_secs(120),
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 3,
            tail_lines: 500,
        }
    }
}

/// How a stop went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopOutcome {
    pub pid: u32,
    /// How the process ended.
    pub exit: String,
    /// Whether it had to be killed after the graceful request timed out.
    pub forced: bool,
    pub took: Duration,
}

/// Supervises one backend process. Dropping it stops the backend.
pub struct Supervisor {
    inner: Arc<Inner>,
    monitor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("state", &self.state())
            .finish()
    }
}

struct Inner {
    options: SupervisorOptions,
    shared: Mutex<Shared>,
    changed: Condvar,
    log: Arc<logs::LogSink>,
    spawner: Spawner,
    http: Option<reqwest::blocking::Client>,
    /// Called after every change of state or health (the window passes `request_repaint`).
    on_change: Mutex<Option<ChangeHook>>,
    /// Added to every plan's environment at start, over the bundle's own (`PAI_LAUNCHER_API`,
    /// `PAI_LAUNCHER_TOKEN` while the owner serves its API); see [`Supervisor::set_launch_env`].
    launch_env: Mutex<std::collections::BTreeMap<String, String>>,
}

type ChangeHook = Arc<dyn Fn() + Send + Sync>;

/// The running child and what belongs to it.
struct RunningChild {
    child: Child,
    pid: u32,
    generation: u64,
    started: Instant,
    /// The time the launcher ran since the spawn, while the backend starts: the `ready_timeout` budget
    /// (see `crate::awake`; `None` once it answered healthy).
    starting_for: Option<crate::awake::AwakeTimer>,
    guard: os::ProcessGuard,
    /// The threads copying its stdout and stderr into the log; they end at end of file.
    log_pumps: Vec<JoinHandle<()>>,
}

struct Shared {
    state: BackendState,
    plan: Option<LaunchPlan>,
    child: Option<RunningChild>,
    /// Whether the backend should be running (false after stop, or after giving up).
    wanted_running: bool,
    /// Counts starts, so late results about an earlier process are recognised and dropped.
    generation: u64,
    crashes: VecDeque<Instant>,
    restart_at: Option<Instant>,
    next_health_at: Instant,
    failures_in_row: u32,
    /// Health answers of the current start, before its first healthy one.
    start_probes: u32,
    unhealthy_since: Option<Instant>,
    last_health: Option<HealthAnswer>,
    /// Time from spawn to the first healthy answer, per generation.
    healthy_after: Option<(u64, Duration)>,
    /// The last process end: its generation and how it ended.
    last_exit: Option<(u64, String)>,
    /// Processes taken out of `child` and being ended (by `stop` or by the monitor); `stop` waits for
    /// them, so that when it returns nothing of the backend runs.
    terminating: u32,
    shutdown: bool,
}

impl Supervisor {
    /// A supervisor with the product's defaults, writing under `paths`.
    pub fn new(paths: &Paths) -> Self {
        Self::with_options(SupervisorOptions::for_paths(paths))
    }

    pub fn with_options(options: SupervisorOptions) -> Self {
        let log = Arc::new(logs::LogSink::new(
            options.log_file.clone(),
            options.log_max_bytes,
            options.log_keep,
            options.tail_lines,
        ));
        // Health checks go to loopback: never through a proxy, and with short timeouts.
        crate::http::ensure_tls_provider();
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .connect_timeout(options.health_timeout)
            .timeout(options.health_timeout)
            .user_agent(crate::http::user_agent())
            .build()
            .map_err(|e| tracing::warn!("no HTTP client for health checks: {e}"))
            .ok();
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                state: BackendState::Stopped,
                plan: None,
                child: None,
                wanted_running: false,
                generation: 0,
                crashes: VecDeque::new(),
                restart_at: None,
                next_health_at: Instant::now(),
                failures_in_row: 0,
                start_probes: 0,
                unhealthy_since: None,
                last_health: None,
                healthy_after: None,
                last_exit: None,
                terminating: 0,
                shutdown: false,
            }),
            changed: Condvar::new(),
            log,
            spawner: Spawner::start(),
            http,
            on_change: Mutex::new(None),
            launch_env: Mutex::new(std::collections::BTreeMap::new()),
            options,
        });
        let monitor_inner = inner.clone();
        let monitor = std::thread::Builder::new()
            .name("backend-monitor".into())
            .spawn(move || monitor_inner.monitor_loop())
            .map_err(|e| tracing::error!("cannot start the backend monitor thread: {e}"))
            .ok();
        Supervisor { inner, monitor }
    }

    /// Starts the backend from `plan`, stopping any backend this supervisor runs first. Returns its pid.
    ///
    /// The state is `starting` until the first healthy answer; see [`Supervisor::wait_healthy`].
    pub fn start(&self, mut plan: LaunchPlan) -> Result<u32, SupervisorError> {
        self.stop()?;
        for (key, value) in self.launch_env().iter() {
            plan.env.insert(key.clone(), value.clone());
        }
        if let Some(file) = &self.inner.options.stop_request_file {
            let _ = std::fs::remove_file(file);
        }
        if let Some(file) = &self.inner.options.status_file
            && let Some(pid) = end_orphan(file, self.inner.options.stop_timeout)
        {
            self.inner.note(&format!(
                "ended backend pid {pid}, left running by a launcher that is gone"
            ));
        }
        let mut shared = self.inner.lock();
        shared.plan = Some(plan);
        shared.wanted_running = true;
        shared.crashes.clear();
        shared.restart_at = None;
        shared.last_health = None;
        match self.inner.spawn_locked(&mut shared) {
            Ok(pid) => Ok(pid),
            Err(e) => {
                shared.wanted_running = false;
                shared.state = BackendState::Crashed {
                    exit: "did not start".into(),
                    reason: e.to_string(),
                };
                self.inner.publish(&shared);
                Err(e)
            }
        }
    }

    /// Starts the backend and waits until it is healthy; returns the time from spawn to healthy.
    ///
    /// On failure the backend is stopped (so no restart loop runs behind the caller's back) and the error
    /// carries the last health answer and the log tail.
    pub fn start_and_wait(&self, plan: LaunchPlan, timeout: Duration) -> Result<Duration, SupervisorError> {
        self.start(plan)?;
        match self.wait_healthy(timeout) {
            Ok(took) => Ok(took),
            Err(e) => {
                let _ = self.stop();
                Err(e)
            }
        }
    }

    /// Sets the variables added to the environment of every backend this supervisor starts from now on
    /// (they win over a bundle's `agent.json` `env`, so a bundle cannot point its agent elsewhere).
    pub fn set_launch_env(&self, env: std::collections::BTreeMap<String, String>) {
        *self
            .inner
            .launch_env
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = env;
    }

    /// What [`Supervisor::set_launch_env`] set.
    pub fn launch_env(&self) -> std::collections::BTreeMap<String, String> {
        self.inner
            .launch_env
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops and starts the backend again with the last plan.
    pub fn restart(&self) -> Result<u32, SupervisorError> {
        let plan = self
            .inner
            .lock()
            .plan
            .clone()
            .ok_or(SupervisorError::NeverStarted)?;
        self.start(plan)
    }

    /// Waits until the current start of the backend answers its health check.
    ///
    /// Returns the time from spawn to the first healthy answer. Fails early when the process exits, and
    /// once `timeout` of *running* time is spent (time this process was stopped or the machine slept does
    /// not count: `crate::awake`) and [`MIN_START_PROBES`] health checks failed, with the last answer (a
    /// 5xx keeps it waiting until then).
    pub fn wait_healthy(&self, timeout: Duration) -> Result<Duration, SupervisorError> {
        let awake = crate::awake::AwakeTimer::start();
        let waited_from = Instant::now();
        let mut shared = self.inner.lock();
        let generation = shared.generation;
        loop {
            if let Some((g, took)) = shared.healthy_after
                && g == generation
            {
                return Ok(took);
            }
            if let Some((g, exit)) = &shared.last_exit
                && *g >= generation
                && generation > 0
            {
                return Err(SupervisorError::Exited {
                    exit: exit.clone(),
                    log_tail: self.inner.log.last(10),
                });
            }
            if !shared.wanted_running && shared.child.is_none() {
                return Err(SupervisorError::NotRunning);
            }
            let spent = awake.elapsed();
            if gate_spent(spent, timeout, shared.start_probes) {
                let url = shared
                    .plan
                    .as_ref()
                    .map(|p| p.health_url.clone())
                    .unwrap_or_default();
                // Counted from the spawn when possible: callers may wait in slices.
                let since_spawn = shared
                    .child
                    .as_ref()
                    .filter(|c| c.generation == generation)
                    .map(|c| c.started);
                return Err(SupervisorError::NotHealthy {
                    url,
                    waited: since_spawn.unwrap_or(waited_from).elapsed(),
                    last_answer: shared
                        .last_health
                        .as_ref()
                        .map_or("none yet".into(), HealthAnswer::describe),
                    log_tail: self.inner.log.last(10),
                });
            }
            // In short slices, so the running time is looked at again soon after a stop.
            shared = self.inner.wait(
                shared,
                timeout
                    .saturating_sub(spent)
                    .clamp(Duration::from_millis(10), crate::awake::TICK),
            );
        }
    }

    /// Stops the backend: graceful request, then kill after the stop timeout. `None` when nothing ran.
    pub fn stop(&self) -> Result<Option<StopOutcome>, SupervisorError> {
        self.stop_because("stop requested")
    }

    /// [`Supervisor::stop`], with the reason the backend's log records.
    pub fn stop_because(&self, reason: &str) -> Result<Option<StopOutcome>, SupervisorError> {
        Ok(self.inner.stop(reason))
    }

    /// The current state.
    pub fn state(&self) -> BackendState {
        self.inner.lock().state.clone()
    }

    /// What `backend status` would print for this supervisor.
    pub fn status(&self) -> BackendStatus {
        self.inner.status(&self.inner.lock())
    }

    /// The last health answer.
    pub fn last_health(&self) -> Option<HealthAnswer> {
        self.inner.lock().last_health.clone()
    }

    /// The plan of the last start.
    pub fn plan(&self) -> Option<LaunchPlan> {
        self.inner.lock().plan.clone()
    }

    /// How many log lines were recorded so far: it changes when [`Supervisor::log_tail`] does.
    pub fn log_lines_written(&self) -> u64 {
        self.inner.log.written()
    }

    /// The last lines of the backend's output and the launcher's notes, oldest first.
    pub fn log_tail(&self) -> Vec<String> {
        self.inner.log.tail()
    }

    /// Waits until `condition` holds for the state, or `timeout` passes; returns the last state seen and
    /// whether the condition held.
    pub fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&BackendState) -> bool,
    ) -> (BackendState, bool) {
        let deadline = Instant::now() + timeout;
        let mut shared = self.inner.lock();
        loop {
            if condition(&shared.state) {
                return (shared.state.clone(), true);
            }
            let now = Instant::now();
            if now >= deadline {
                return (shared.state.clone(), false);
            }
            shared = self.inner.wait(shared, deadline - now);
        }
    }

    /// Calls `hook` after every change of state or health answer, and when log lines arrive (at most every
    /// 100 ms for those), from the thread that made the change (the window passes its `request_repaint`).
    /// The hook must return quickly and must not call the supervisor.
    pub fn on_change(&self, hook: impl Fn() + Send + Sync + 'static) {
        let hook: ChangeHook = Arc::new(hook);
        self.inner.log.set_on_line(hook.clone());
        *self.inner.on_change.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Whether the backend is meant to run (false after a stop, a stop request, or giving up on crashes).
    pub fn is_wanted_running(&self) -> bool {
        self.inner.lock().wanted_running
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.inner.stop("the launcher is shutting down");
        self.inner.lock().shutdown = true;
        self.inner.changed.notify_all();
        if let Some(monitor) = self.monitor.take() {
            let _ = monitor.join();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Shared>, timeout: Duration) -> MutexGuard<'a, Shared> {
        match self.changed.wait_timeout(guard, timeout) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    fn note(&self, text: &str) {
        tracing::info!(target: "backend", "{text}");
        self.log.line(LineSource::Launcher, text);
    }

    /// Wakes waiters and rewrites the status file.
    fn publish(&self, shared: &Shared) {
        self.changed.notify_all();
        let hook = self.on_change.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(hook) = hook {
            hook();
        }
        let Some(path) = &self.options.status_file else {
            return;
        };
        if let Err(e) = write_status_file(path, &self.status(shared)) {
            tracing::warn!("cannot write the backend status {}: {e}", path.display());
        }
    }

    fn status(&self, shared: &Shared) -> BackendStatus {
        let plan = shared.plan.as_ref();
        let child_pid = shared.child.as_ref().map(|c| c.pid);
        let (pid, since, exit) = match &shared.state {
            BackendState::Running { pid, since, .. } => (Some(*pid), Some(*since), None),
            BackendState::Starting { since } => (child_pid, Some(*since), None),
            BackendState::Unhealthy { pid, .. } => (Some(*pid), None, None),
            BackendState::Crashed { exit, .. } => (None, None, Some(exit.clone())),
            BackendState::Stopped => (None, None, shared.last_exit.as_ref().map(|(_, e)| e.clone())),
        };
        BackendStatus {
            state: shared.state.name().into(),
            version: plan.and_then(|p| p.version.clone()),
            pid,
            port: pid.and(plan.map(|p| p.port)),
            health: shared.last_health.clone(),
            reason: shared.state.reason().map(str::to_owned),
            exit,
            since,
            supervisor_pid: Some(std::process::id()),
            program: plan.map(|p| p.program.clone()),
            updated_at: Utc::now(),
        }
    }

    fn spawn_locked(&self, shared: &mut Shared) -> Result<u32, SupervisorError> {
        let plan = shared.plan.clone().ok_or(SupervisorError::NeverStarted)?;
        let mut command = Command::new(&plan.program);
        command
            .args(&plan.args)
            .envs(&plan.env)
            .current_dir(&plan.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        os::configure(&mut command);
        let spawn_error = |source| SupervisorError::Spawn {
            program: plan.program.clone(),
            source,
        };
        let mut child = self.spawner.spawn(command).map_err(spawn_error)?;
        let started = Instant::now();
        let guard = match os::after_spawn(&child) {
            Ok(guard) => guard,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(spawn_error(e));
            }
        };
        let pid = child.id();
        let mut log_pumps = Vec::new();
        for (stream, source, name) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                LineSource::Stdout,
                "backend-stdout",
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                LineSource::Stderr,
                "backend-stderr",
            ),
        ] {
            if let Some(stream) = stream {
                let sink = self.log.clone();
                match std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || logs::pump(stream, source, sink))
                {
                    Ok(handle) => log_pumps.push(handle),
                    Err(e) => tracing::warn!("cannot start the {name} log thread: {e}"),
                }
            }
        }
        shared.generation += 1;
        shared.child = Some(RunningChild {
            child,
            pid,
            generation: shared.generation,
            started,
            starting_for: Some(crate::awake::AwakeTimer::start()),
            guard,
            log_pumps,
        });
        shared.state = BackendState::Starting { since: Utc::now() };
        shared.failures_in_row = 0;
        shared.start_probes = 0;
        shared.unhealthy_since = None;
        shared.restart_at = None;
        shared.next_health_at = started;
        self.note(&format!(
            "started {} (pid {pid}, port {}, version {})",
            plan.program.display(),
            plan.port,
            plan.version.as_deref().unwrap_or("unknown")
        ));
        self.publish(shared);
        Ok(pid)
    }

    /// Takes the child out and ends it; the state becomes `stopped`.
    fn stop(&self, why: &str) -> Option<StopOutcome> {
        let mut shared = self.lock();
        shared.wanted_running = false;
        shared.restart_at = None;
        let Some(running) = shared.child.take() else {
            // Another thread may be ending the process right now; "stopped" must mean gone.
            while shared.terminating > 0 {
                shared = self.wait(shared, Duration::from_millis(100));
            }
            if shared.state != BackendState::Stopped {
                shared.state = BackendState::Stopped;
                self.publish(&shared);
            }
            return None;
        };
        let generation = running.generation;
        shared.terminating += 1;
        drop(shared);
        self.note(&format!("stopping pid {} ({why})", running.pid));
        let outcome = self.terminate(running);
        let mut shared = self.lock();
        shared.terminating -= 1;
        shared.last_exit = Some((generation, outcome.exit.clone()));
        // A start may have happened meanwhile; only a state about this process is replaced.
        if shared.generation == generation {
            shared.state = BackendState::Stopped;
        }
        self.publish(&shared);
        Some(outcome)
    }

    /// Graceful stop, then kill after the timeout; always reaps the process.
    fn terminate(&self, mut running: RunningChild) -> StopOutcome {
        let begin = Instant::now();
        let pid = running.pid;
        let deadline = begin + self.options.stop_timeout;
        let mut exit = None;
        if let Ok(Some(status)) = running.child.try_wait() {
            exit = Some(status);
        } else if os::request_stop(pid).is_ok() {
            while Instant::now() < deadline {
                if let Ok(Some(status)) = running.child.try_wait() {
                    exit = Some(status);
                    break;
                }
                // Short sleeps at first: a stop is on the path of every update's downtime.
                let waited = begin.elapsed();
                std::thread::sleep((waited / 10).clamp(Duration::from_millis(1), Duration::from_millis(20)));
            }
        }
        let forced = exit.is_none();
        let exit_text = match exit {
            Some(status) => {
                os::sweep_group(pid, &running.guard);
                os::describe_exit(status)
            }
            None => {
                os::kill_tree(pid, &mut running.child, &running.guard);
                match running.child.wait() {
                    Ok(status) => os::describe_exit(status),
                    Err(e) => format!("unknown ({e})"),
                }
            }
        };
        let took = begin.elapsed();
        drain_log_pumps(std::mem::take(&mut running.log_pumps));
        self.note(&format!(
            "pid {pid} ended: {exit_text}{} after {} ms",
            if forced {
                ", killed because it ignored the stop request"
            } else {
                ""
            },
            took.as_millis()
        ));
        StopOutcome {
            pid,
            exit: exit_text,
            forced,
            took,
        }
    }

    fn check_health(&self, url: &str) -> HealthAnswer {
        let at = Utc::now();
        let begin = Instant::now();
        let Some(http) = &self.http else {
            return HealthAnswer {
                status: None,
                at,
                latency_ms: 0,
                error: Some("no HTTP client".into()),
            };
        };
        let result = http.get(url).send();
        let latency_ms = u64::try_from(begin.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let error = if response.status().is_success() {
                    None
                } else {
                    let body = response.text().unwrap_or_default();
                    let body = body.trim();
                    (!body.is_empty()).then(|| body.chars().take(200).collect())
                };
                HealthAnswer {
                    status: Some(status),
                    at,
                    latency_ms,
                    error,
                }
            }
            Err(e) => {
                let reason = if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "connection refused".to_owned()
                } else {
                    e.to_string()
                };
                HealthAnswer {
                    status: None,
                    at,
                    latency_ms,
                    error: Some(reason),
                }
            }
        }
    }

    fn monitor_loop(self: Arc<Self>) {
        let mut shared = self.lock();
        loop {
            if shared.shutdown {
                return;
            }
            // Only a supervisor that runs (or restarts) a backend answers a stop request: an idle one (a
            // command that only reads the status) must not swallow a request meant for another.
            if (shared.child.is_some() || shared.wanted_running) && self.stop_was_requested() {
                drop(shared);
                self.stop("`personal-ai-agent backend stop` asked for it");
                shared = self.lock();
                continue;
            }
            let now = Instant::now();
            // 1. Did the process end by itself?
            let exited = shared
                .child
                .as_mut()
                .and_then(|c| c.child.try_wait().ok().flatten());
            if let Some(status) = exited
                && let Some(running) = shared.child.take()
            {
                os::sweep_group(running.pid, &running.guard);
                let exit = os::describe_exit(status);
                self.note(&format!("pid {} exited: {exit}", running.pid));
                self.record_failure(&mut shared, running.generation, exit, None);
                continue;
            }
            // 2. Is a restart due?
            if shared.wanted_running && shared.child.is_none() && shared.restart_at.is_some_and(|t| t <= now)
            {
                if let Err(e) = self.spawn_locked(&mut shared) {
                    let generation = shared.generation;
                    self.note(&format!("restart failed: {e}"));
                    self.record_failure(
                        &mut shared,
                        generation,
                        "did not start".into(),
                        Some(e.to_string()),
                    );
                }
                continue;
            }
            // 3. Has it taken too long to start, or been unhealthy too long?
            if let Some(reason) = self.overdue(&shared, now)
                && let Some(running) = shared.child.take()
            {
                let generation = running.generation;
                shared.state = BackendState::Unhealthy {
                    pid: running.pid,
                    reason: format!("{reason}; stopping it"),
                };
                shared.terminating += 1;
                self.publish(&shared);
                drop(shared);
                self.note(&reason);
                let outcome = self.terminate(running);
                shared = self.lock();
                shared.terminating -= 1;
                self.record_failure(&mut shared, generation, outcome.exit, Some(reason));
                continue;
            }
            // 4. Is a health check due?
            if let Some(running) = shared.child.as_ref()
                && now >= shared.next_health_at
                && let Some(url) = shared.plan.as_ref().map(|p| p.health_url.clone())
            {
                let generation = running.generation;
                drop(shared);
                let answer = self.check_health(&url);
                shared = self.lock();
                self.record_health(&mut shared, generation, answer);
                continue;
            }
            let wake = self.next_wake(&shared, now);
            shared = self.wait(shared, wake);
        }
    }

    /// How long the monitor may sleep: until the next check, restart or exit poll.
    fn next_wake(&self, shared: &Shared, now: Instant) -> Duration {
        // Exits are noticed by polling `try_wait`; quicker while starting, when the caller is waiting.
        let exit_poll = match shared.state {
            BackendState::Starting { .. } => Duration::from_millis(20),
            _ => Duration::from_millis(100),
        };
        let mut wake = now + exit_poll;
        if shared.child.is_some() {
            wake = wake.min(shared.next_health_at);
        }
        if let Some(at) = shared.restart_at.filter(|_| shared.wanted_running) {
            wake = wake.min(at);
        }
        wake.saturating_duration_since(now).max(Duration::from_millis(1))
    }

    fn stop_was_requested(&self) -> bool {
        let Some(file) = &self.options.stop_request_file else {
            return false;
        };
        let Ok(text) = std::fs::read_to_string(file) else {
            return false;
        };
        // A request names the supervisor it is meant for; one left for another (dead) launcher is removed.
        let _ = std::fs::remove_file(file);
        let target = text.trim();
        target.is_empty() || target == std::process::id().to_string()
    }

    /// The reason to give up on the current process, if it started too slowly or stayed unhealthy too long.
    fn overdue(&self, shared: &Shared, now: Instant) -> Option<String> {
        let running = shared.child.as_ref()?;
        let plan = shared.plan.as_ref()?;
        let last = shared
            .last_health
            .as_ref()
            .map_or("none".into(), HealthAnswer::describe);
        match &shared.state {
            // Running time, not wall time: a launcher stopped while its backend started must not kill a
            // backend that became healthy meanwhile.
            BackendState::Starting { .. }
                if gate_spent(
                    running.starting_for.as_ref().map_or(
                        now.duration_since(running.started),
                        crate::awake::AwakeTimer::elapsed,
                    ),
                    plan.ready_timeout,
                    shared.start_probes,
                ) =>
            {
                Some(format!(
                    "no healthy answer from {} within {} (ready_timeout_secs); last answer: {last}",
                    plan.health_url,
                    in_words(plan.ready_timeout)
                ))
            }
            BackendState::Unhealthy { .. } => {
                let limit = self.options.unhealthy_restart_after?;
                let since = shared.unhealthy_since?;
                (now.duration_since(since) > limit)
                    .then(|| format!("unhealthy for more than {}; last answer: {last}", in_words(limit)))
            }
            _ => None,
        }
    }

    fn record_health(&self, shared: &mut Shared, generation: u64, answer: HealthAnswer) {
        let Some(running) = shared.child.as_ref().filter(|c| c.generation == generation) else {
            return; // the process this answer is about is gone
        };
        let pid = running.pid;
        let started = running.started;
        let healthy = answer.is_healthy();
        let port = shared.plan.as_ref().map_or(0, |p| p.port);
        let now = Instant::now();
        let previous = shared.last_health.replace(answer.clone());
        let starting = matches!(shared.state, BackendState::Starting { .. });
        if starting {
            shared.start_probes = shared.start_probes.saturating_add(1);
        }
        shared.next_health_at = now
            + if starting && !healthy {
                startup_poll_delay(now.duration_since(started), self.options.startup_poll_interval)
            } else {
                self.options.health_interval
            };
        if healthy {
            shared.failures_in_row = 0;
            shared.unhealthy_since = None;
            if !matches!(shared.state, BackendState::Running { .. }) {
                if starting {
                    let took = now.duration_since(started);
                    shared.healthy_after = Some((generation, took));
                    if let Some(child) = shared.child.as_mut() {
                        child.starting_for = None;
                    }
                    self.note(&format!(
                        "pid {pid} healthy after {} ms on port {port}",
                        took.as_millis()
                    ));
                } else {
                    self.note(&format!("pid {pid} healthy again"));
                }
                shared.state = BackendState::Running {
                    pid,
                    port,
                    since: Utc::now(),
                };
            }
        } else if !starting {
            shared.failures_in_row += 1;
            if shared.failures_in_row >= self.options.unhealthy_after_failures
                && !matches!(shared.state, BackendState::Unhealthy { .. })
            {
                let reason = format!(
                    "{} failed health checks in a row; last answer: {}",
                    shared.failures_in_row,
                    answer.describe()
                );
                self.note(&format!("pid {pid} is unhealthy: {reason}"));
                shared.unhealthy_since = Some(now);
                shared.state = BackendState::Unhealthy { pid, reason };
            }
        }
        // The file is rewritten on every answer while running (a heartbeat), but only when something shows.
        if previous.as_ref() != Some(&answer) {
            self.publish(shared);
        }
    }

    /// A process of `generation` ended unexpectedly: count the crash, then restart later or give up.
    fn record_failure(&self, shared: &mut Shared, generation: u64, exit: String, reason: Option<String>) {
        shared.last_exit = Some((generation, exit.clone()));
        if generation != shared.generation {
            self.publish(shared);
            return; // a newer start owns the state
        }
        if !shared.wanted_running {
            shared.state = BackendState::Stopped;
            self.publish(shared);
            return;
        }
        let now = Instant::now();
        shared.crashes.push_back(now);
        while shared
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.options.crash_window)
        {
            shared.crashes.pop_front();
        }
        let crashes = u32::try_from(shared.crashes.len()).unwrap_or(u32::MAX);
        let cause = reason.map(|r| format!("{r}; ")).unwrap_or_default();
        let window = in_words(self.options.crash_window);
        if crashes >= self.options.crash_limit {
            shared.wanted_running = false;
            shared.restart_at = None;
            let reason = format!(
                "{cause}gave up after {crashes} crashes within {window}; see backend.log, fix the cause, then run `personal-ai-agent backend start`"
            );
            self.note(&reason);
            shared.state = BackendState::Crashed { exit, reason };
        } else {
            let doublings = crashes.saturating_sub(1).min(16);
            let delay = self
                .options
                .restart_backoff_initial
                .saturating_mul(1 << doublings)
                .min(self.options.restart_backoff_max);
            shared.restart_at = Some(now + delay);
            let reason = format!(
                "{cause}restarting in {} (crash {crashes} of {} allowed within {window})",
                in_words(delay),
                self.options.crash_limit
            );
            self.note(&reason);
            shared.state = BackendState::Crashed { exit, reason };
        }
        self.publish(shared);
    }
}

/// The wait before the next health check of a starting backend: a tenth of the time it has been starting,
/// between 5 ms and `ceiling`. Checks are cheap (a refused loopback connection costs microseconds), and so
/// the launcher adds at most about 10 % (and never more than `ceiling`) to the backend's own cold start.
fn startup_poll_delay(starting_for: Duration, ceiling: Duration) -> Duration {
    (starting_for / 10).clamp(Duration::from_millis(5), ceiling.max(Duration::from_millis(5)))
}

/// Failed health checks a start needs, besides its spent budget, before it is given up on: a launcher
/// that was stopped, or starved, may have had no chance to ask at all.
pub const MIN_START_PROBES: u32 = 3;

/// Whether a start's budget is spent: `budget` of running time (see `crate::awake`) and
/// [`MIN_START_PROBES`] failed health checks, or twice the budget whatever the checks (so a health
/// check that never returns cannot hold the gate open).
fn gate_spent(spent: Duration, budget: Duration, probes: u32) -> bool {
    spent >= budget && (probes >= MIN_START_PROBES || spent >= budget.saturating_mul(2))
}

/// `300 ms`, `2 s`, `1.5 s`: short, and exact enough for a reason a person reads.
fn in_words(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// Writes the status file atomically (temporary file, rename) without a flush to disk: it describes a
/// running process, so after a power cut it is stale anyway.
fn write_status_file(path: &Path, status: &BackendStatus) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".backend-status-")
        .tempfile_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, status)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Forks every backend from one long-lived thread. On Linux `PR_SET_PDEATHSIG` fires when the thread that
/// forked ends, not the process, so spawning from short-lived caller threads would kill the backend early.
struct Spawner {
    requests: Mutex<mpsc::Sender<SpawnRequest>>,
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

impl Spawner {
    fn start() -> Self {
        let (sender, receiver) = mpsc::channel::<SpawnRequest>();
        let spawned = std::thread::Builder::new()
            .name("backend-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    let _ = reply.send(command.spawn());
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the backend spawner thread: {e}");
        }
        Spawner {
            requests: Mutex::new(sender),
        }
    }

    fn spawn(&self, command: Command) -> std::io::Result<Child> {
        let (reply, answer) = mpsc::channel();
        let sent = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((command, reply));
        if sent.is_err() {
            return Err(std::io::Error::other("the spawner thread is not running"));
        }
        answer
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the spawner thread ended")))
    }
}

/// A free loopback port: bind `127.0.0.1:0`, read the port, release it.
pub fn free_loopback_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Waits briefly for the log threads of an ended process to copy its last lines, so "stopped" also means
/// its output is in the log and the tail. Bounded: a grandchild that escaped the process group could keep
/// the pipe open forever, and a stop must not hang on it.
fn drain_log_pumps(pumps: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + Duration::from_millis(500);
    for pump in pumps {
        while !pump.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if pump.is_finished() {
            let _ = pump.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_states_serialize_with_a_snake_case_state_tag() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let cases = [
            (BackendState::Stopped, serde_json::json!({"state": "stopped"})),
            (
                BackendState::Starting { since: at },
                serde_json::json!({"state": "starting", "since": at}),
            ),
            (
                BackendState::Running {
                    pid: 7,
                    port: 8,
                    since: at,
                },
                serde_json::json!({"state": "running", "pid": 7, "port": 8, "since": at}),
            ),
            (
                BackendState::Unhealthy {
                    pid: 7,
                    reason: "r".into(),
                },
                serde_json::json!({"state": "unhealthy", "pid": 7, "reason": "r"}),
            ),
            (
                BackendState::Crashed {
                    exit: "exit code 3".into(),
                    reason: "r".into(),
                },
                serde_json::json!({"state": "crashed", "exit": "exit code 3", "reason": "r"}),
            ),
        ];
        for (state, json) in cases {
            assert_eq!(serde_json::to_value(&state).unwrap(), json);
            assert_eq!(json["state"], state.name());
            assert_eq!(serde_json::from_value::<BackendState>(json).unwrap(), state);
        }
    }

    #[test]
    fn the_startup_poll_delay_is_a_tenth_of_the_start_time_within_bounds() {
        let ceiling = Duration::from_millis(50);
        assert_eq!(
            startup_poll_delay(Duration::ZERO, ceiling),
            Duration::from_millis(5)
        );
        assert_eq!(
            startup_poll_delay(Duration::from_millis(200), ceiling),
            Duration::from_millis(20)
        );
        assert_eq!(startup_poll_delay(Duration::from_secs(20), ceiling), ceiling);
    }

    #[test]
    fn health_answers_describe_themselves_for_error_messages() {
        let answer = |status, error: Option<&str>| HealthAnswer {
            status,
            at: Utc::now(),
            latency_ms: 1,
            error: error.map(str::to_owned),
        };
        assert_eq!(
            answer(Some(503), Some("loading")).describe(),
            "HTTP 503 (loading)"
        );
        assert_eq!(
            answer(None, Some("connection refused")).describe(),
            "no answer (connection refused)"
        );
        assert!(answer(Some(204), None).is_healthy() && !answer(Some(503), None).is_healthy());
    }

    #[test]
    fn a_status_file_naming_a_dead_launcher_reads_as_stopped_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut gone = Command::new(std::env::current_exe().unwrap())
            .arg("--list")
            .spawn()
            .unwrap();
        gone.wait().unwrap();
        let mut status = BackendStatus::stopped(None);
        status.state = "running".into();
        status.pid = Some(gone.id());
        status.supervisor_pid = Some(gone.id());
        write_status_file(&dir.path().join(STATUS_FILE), &status).unwrap();
        let read = read_status(dir.path()).unwrap();
        assert_eq!(read.state, "stopped");
        assert_eq!(
            read.reason.as_deref(),
            Some("the launcher that supervised it is no longer running")
        );
        assert!(request_stop(dir.path()).unwrap().is_none(), "nobody to ask");
    }
}
