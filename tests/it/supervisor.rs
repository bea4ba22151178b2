//! The supervisor with real child processes: the example backend (`examples/agent_backend.rs`), started
//! from bundles laid out by hand, in private home folders. The CLI tests run the real binary as the
//! launcher, so killing it is killing a real launcher.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use personal_ai_agent::agent::{AgentSpec, LaunchPlan};
use personal_ai_agent::paths::Paths;
use personal_ai_agent::supervisor::{
    self, BackendState, Supervisor, SupervisorError, SupervisorOptions, is_process_alive,
};

use crate::support::{LAUNCHER, example_backend, temp_home};

/// Lays out a bundle in `dir`: `backend/agent-backend` (the example) and an `agent.json` passing `args`.
fn make_bundle(dir: &Path, version: &str, args: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir.join("backend")).unwrap();
    let program = dir
        .join("backend")
        .join(format!("agent-backend{}", std::env::consts::EXE_SUFFIX));
    if std::fs::hard_link(example_backend(), &program).is_err() {
        std::fs::copy(example_backend(), &program).unwrap();
    }
    let mut command = vec![
        "backend/agent-backend",
        "--port",
        "{port}",
        "--models-dir",
        "{models_dir}",
    ];
    command.extend(["--agent-version", version]);
    command.extend(args);
    let spec = serde_json::json!({
        "command": command,
        "health_url": "http://127.0.0.1:{port}/health",
        "ready_timeout_secs": 20,
        "version": version,
    });
    std::fs::write(dir.join("agent.json"), spec.to_string()).unwrap();
    dir.to_path_buf()
}

fn plan_for(home: &Path, bundle: &Path) -> LaunchPlan {
    let paths = Paths::under(home);
    let port = supervisor::free_loopback_port().unwrap();
    AgentSpec::load(bundle).unwrap().resolve(bundle, port, &paths)
}

/// The product's defaults, with the slow parts made quick for tests.
fn quick_options(home: &Path) -> SupervisorOptions {
    let mut options = SupervisorOptions::for_paths(&Paths::under(home));
    options.restart_backoff_initial = Duration::from_millis(50);
    options.restart_backoff_max = Duration::from_millis(400);
    options.health_interval = Duration::from_millis(200);
    options.stop_timeout = Duration::from_secs(5);
    options
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn poll_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

fn running_pid_and_port(state: &BackendState) -> Option<(u32, u16)> {
    match state {
        BackendState::Running { pid, port, .. } => Some((*pid, *port)),
        _ => None,
    }
}

#[cfg(unix)]
fn kill_9(pid: u32) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    assert_eq!(
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) },
        0,
        "kill -9 {pid}"
    );
}

#[test]
fn a_started_backend_becomes_running_and_answers_on_its_port() {
    let home = temp_home();
    let bundle = make_bundle(&home.path().join("bundle"), "1.2.0", &[]);
    let plan = plan_for(home.path(), &bundle);
    let supervisor = Supervisor::with_options(quick_options(home.path()));
    let changes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = changes.clone();
    supervisor.on_change(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });

    let took = supervisor
        .start_and_wait(plan.clone(), Duration::from_secs(20))
        .unwrap();

    let (pid, port) = running_pid_and_port(&supervisor.state()).expect("running");
    assert_eq!(port, plan.port);
    assert!(is_process_alive(pid));
    assert!(took < Duration::from_secs(20));
    let (status, body) = http_get(port, "/health");
    assert_eq!(status, 200);
    assert!(body.contains("\"version\":\"1.2.0\""), "{body}");
    let written = supervisor::read_status(&Paths::under(home.path()).run_dir()).unwrap();
    assert_eq!(
        (written.state.as_str(), written.pid, written.port),
        ("running", Some(pid), Some(port))
    );
    assert_eq!(written.version.as_deref(), Some("1.2.0"));
    assert_eq!(written.health.as_ref().and_then(|h| h.status), Some(200));
    // The backend's "ready" line and its first health answer race: the log thread may copy the line a
    // moment after the supervisor saw the backend healthy.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !supervisor
        .log_tail()
        .iter()
        .any(|l| l.contains("out | agent backend 1.2.0 ready on"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            supervisor.log_tail()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // starting, then running with its first healthy answer, at least: the window repaints on each.
    assert!(changes.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    let log_file = Paths::under(home.path()).logs_dir().join(supervisor::LOG_FILE);
    assert!(std::fs::read_to_string(log_file).unwrap().contains("ready on"));
}

#[cfg(unix)]
#[test]
fn a_backend_killed_with_sigkill_is_restarted_and_healthy_again() {
    let home = temp_home();
    let bundle = make_bundle(&home.path().join("bundle"), "1.0.0", &[]);
    let supervisor = Supervisor::with_options(quick_options(home.path()));
    supervisor
        .start_and_wait(plan_for(home.path(), &bundle), Duration::from_secs(20))
        .unwrap();
    let (first_pid, port) = running_pid_and_port(&supervisor.state()).unwrap();

    kill_9(first_pid);

    let (state, restarted) = supervisor.wait_for(Duration::from_secs(20), |s| {
        running_pid_and_port(s).is_some_and(|(pid, _)| pid != first_pid)
    });
    assert!(
        restarted,
        "not restarted: {state:?}\n{:#?}",
        supervisor.log_tail()
    );
    assert_eq!(
        running_pid_and_port(&state).unwrap().1,
        port,
        "the restart keeps the port"
    );
    assert_eq!(http_get(port, "/health").0, 200);
    let tail = supervisor.log_tail().join("\n");
    assert!(
        tail.contains(&format!("pid {first_pid} exited: killed by signal 9 (SIGKILL)")),
        "{tail}"
    );
    assert!(tail.contains("restarting in 50 ms (crash 1 of 5"), "{tail}");
}

#[test]
fn a_backend_that_keeps_crashing_is_given_up_with_a_reason() {
    let home = temp_home();
    let bundle = make_bundle(&home.path().join("bundle"), "1.0.0", &["--crash-after", "0.1"]);
    let mut options = quick_options(home.path());
    options.crash_limit = 3;
    let supervisor = Supervisor::with_options(options);
    supervisor.start(plan_for(home.path(), &bundle)).unwrap();

    let (state, gave_up) = supervisor.wait_for(
        Duration::from_secs(30),
        |s| matches!(s, BackendState::Crashed { reason, .. } if reason.contains("gave up")),
    );

    assert!(gave_up, "{state:?}");
    let BackendState::Crashed { exit, reason } = state else {
        unreachable!()
    };
    assert_eq!(exit, "exit code 3");
    assert!(
        reason.contains("gave up after 3 crashes within 120 s"),
        "{reason}"
    );
    assert!(!supervisor.is_wanted_running());
    // The back-off grew between the restarts it did make.
    let tail = supervisor.log_tail().join("\n");
    assert!(
        tail.contains("restarting in 50 ms (crash 1 of 3")
            && tail.contains("restarting in 100 ms (crash 2 of 3"),
        "{tail}"
    );
    let written = supervisor::read_status(&Paths::under(home.path()).run_dir()).unwrap();
    assert_eq!(written.state, "crashed");
    assert!(written.reason.unwrap().contains("gave up"));
}

#[test]
fn a_failing_health_check_makes_the_wait_fail_with_the_last_answer() {
    let home = temp_home();
    let bundle = make_bundle(&home.path().join("bundle"), "2.0.0", &["--fail-health"]);
    let supervisor = Supervisor::with_options(quick_options(home.path()));

    let error = supervisor
        .start_and_wait(plan_for(home.path(), &bundle), Duration::from_millis(1500))
        .unwrap_err();

    let SupervisorError::NotHealthy {
        last_answer, waited, ..
    } = &error
    else {
        panic!("expected NotHealthy, got {error:?}");
    };
    assert!(
        last_answer.starts_with("HTTP 503") && last_answer.contains("--fail-health"),
        "{last_answer}"
    );
    assert!(*waited >= Duration::from_millis(1500));
    assert!(
        error.to_string().contains("did not answer http://127.0.0.1:"),
        "{error}"
    );
    assert_eq!(
        supervisor.state(),
        BackendState::Stopped,
        "a failed start_and_wait leaves nothing running"
    );
}

#[test]
fn a_backend_that_exits_while_starting_fails_the_wait_early_with_its_log() {
    let home = temp_home();
    let bundle = make_bundle(
        &home.path().join("bundle"),
        "2.0.0",
        &["--never-listen", "--crash-after", "0.2"],
    );
    let supervisor = Supervisor::with_options(quick_options(home.path()));
    let begin = Instant::now();

    let error = supervisor
        .start_and_wait(plan_for(home.path(), &bundle), Duration::from_secs(20))
        .unwrap_err();

    assert!(
        begin.elapsed() < Duration::from_secs(10),
        "took {:?}",
        begin.elapsed()
    );
    let SupervisorError::Exited { exit, log_tail } = &error else {
        panic!("expected Exited, got {error:?}");
    };
    assert_eq!(exit, "exit code 3");
    assert!(
        log_tail.iter().any(|l| l.contains("crashing on purpose")),
        "{log_tail:?}"
    );
}

#[test]
fn stop_is_graceful_and_the_backend_sees_the_termination_signal() {
    let home = temp_home();
    let bundle = make_bundle(&home.path().join("bundle"), "1.0.0", &[]);
    let supervisor = Supervisor::with_options(quick_options(home.path()));
    supervisor
        .start_and_wait(plan_for(home.path(), &bundle), Duration::from_secs(20))
        .unwrap();
    let (pid, _) = running_pid_and_port(&supervisor.state()).unwrap();

    let outcome = supervisor.stop().unwrap().expect("something was running");

    assert_eq!(outcome.pid, pid);
    assert!(!outcome.forced);
    assert_eq!(outcome.exit, "exit code 0");
    assert!(!is_process_alive(pid));
    assert_eq!(supervisor.state(), BackendState::Stopped);
    assert!(
        supervisor
            .log_tail()
            .iter()
            .any(|l| l.contains("got a termination signal; exiting cleanly"))
    );
    assert_eq!(
        supervisor::read_status(&Paths::under(home.path()).run_dir())
            .unwrap()
            .state,
        "stopped"
    );
    assert!(
        supervisor.stop().unwrap().is_none(),
        "a second stop has nothing to do"
    );
}

#[cfg(unix)]
#[test]
fn a_backend_that_ignores_the_stop_request_is_killed_with_its_children() {
    let home = temp_home();
    let bundle = home.path().join("stubborn");
    std::fs::create_dir_all(bundle.join("backend")).unwrap();
    let script = bundle.join("backend/stubborn.sh");
    // Ignores SIGTERM and keeps a child of its own (`sleep`), which must go too.
    std::fs::write(&script, "#!/bin/sh\ntrap 'echo ignoring TERM' TERM\nsleep 600 &\necho \"child $!\"\nwhile true; do sleep 0.05; done\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        bundle.join("agent.json"),
        r#"{"command": ["backend/stubborn.sh"], "health_url": "http://127.0.0.1:{port}/health"}"#,
    )
    .unwrap();
    let mut options = quick_options(home.path());
    options.stop_timeout = Duration::from_millis(300);
    let supervisor = Supervisor::with_options(options);
    supervisor.start(plan_for(home.path(), &bundle)).unwrap();
    let mut grandchild = None;
    assert!(poll_until(Duration::from_secs(10), || {
        grandchild = supervisor.log_tail().iter().find_map(|l| {
            l.split("out | child ")
                .nth(1)
                .and_then(|p| p.trim().parse::<u32>().ok())
        });
        grandchild.is_some()
    }));

    let outcome = supervisor.stop().unwrap().unwrap();

    assert!(outcome.forced, "{outcome:?}");
    assert!(outcome.exit.contains("SIGKILL"), "{outcome:?}");
    assert!(outcome.took >= Duration::from_millis(300));
    assert!(!is_process_alive(outcome.pid));
    let grandchild = grandchild.unwrap();
    assert!(
        poll_until(Duration::from_secs(5), || !is_process_alive(grandchild)),
        "the backend's child {grandchild} survived"
    );
}

/// Lays out version `version` as the installed, current one, the way the installer does.
fn install_by_hand(home: &Path, version: &str, args: &[&str]) {
    let install_dir = Paths::under(home).install_dir();
    make_bundle(&install_dir.join("versions").join(version), version, args);
    std::fs::write(install_dir.join("current"), version).unwrap();
}

fn launcher(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(LAUNCHER);
    command.arg("--home").arg(home).args(args).env_remove("PAI_HOME");
    command
}

fn start_launcher(home: &Path) -> Child {
    launcher(home, &["backend", "start"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn status_json(home: &Path) -> serde_json::Value {
    let output = launcher(home, &["backend", "status", "--json"]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Waits for the launcher in `home` to report a running backend; returns its pid and port.
fn wait_running(home: &Path) -> (u32, u16) {
    let mut last = serde_json::Value::Null;
    let running = poll_until(Duration::from_secs(20), || {
        last = status_json(home);
        last["state"] == "running"
    });
    assert!(running, "never running: {last:#}");
    (
        last["pid"].as_u64().unwrap() as u32,
        last["port"].as_u64().unwrap() as u16,
    )
}

#[test]
fn backend_status_from_another_process_reports_the_supervised_backend_and_stop_ends_it() {
    let home = temp_home();
    install_by_hand(home.path(), "1.4.0", &[]);
    let mut launcher_process = start_launcher(home.path());

    let (pid, port) = wait_running(home.path());
    let status = status_json(home.path());
    assert_eq!(status["version"], "1.4.0");
    assert_eq!(status["supervisor_pid"], launcher_process.id());
    assert_eq!(status["health"]["status"], 200);
    assert_eq!(http_get(port, "/health").0, 200);

    let stop = launcher(home.path(), &["backend", "stop"]).output().unwrap();
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    assert!(!is_process_alive(pid));
    let exited = poll_until(Duration::from_secs(10), || {
        launcher_process.try_wait().unwrap().is_some()
    });
    assert!(
        exited,
        "the foreground launcher should end when its backend is stopped"
    );
    assert!(launcher_process.wait().unwrap().success());
    assert_eq!(status_json(home.path())["state"], "stopped");
    let logs = launcher(home.path(), &["backend", "logs", "-n", "100"])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("got a termination signal") && logs.contains("backend stop` asked for it"),
        "{logs}"
    );
}

#[cfg(unix)]
#[test]
fn killing_the_launcher_leaves_no_backend_behind() {
    let home = temp_home();
    install_by_hand(home.path(), "1.0.0", &[]);
    let mut launcher_process = start_launcher(home.path());
    let (backend_pid, _) = wait_running(home.path());

    kill_9(launcher_process.id());
    launcher_process.wait().unwrap();

    // On Linux the kernel sends the backend SIGTERM (PR_SET_PDEATHSIG); macOS cannot (see docs/BUNDLE.md).
    if cfg!(target_os = "linux") {
        assert!(
            poll_until(Duration::from_secs(5), || !is_process_alive(backend_pid)),
            "backend {backend_pid} outlived its launcher"
        );
    }
    let status = status_json(home.path());
    assert_eq!(status["state"], "stopped");
    assert_eq!(
        status["reason"],
        "the launcher that supervised it is no longer running"
    );
}

/// Linux ties the backend to its launcher, so the orphan a macOS launcher can leave is made by hand: a
/// backend in its own group, and a status file naming it and a launcher pid that is gone.
#[cfg(unix)]
fn make_orphan(home: &Path, bundle: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let plan = plan_for(home, bundle);
    let orphan = Command::new(&plan.program)
        .args(&plan.args)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let run_dir = Paths::under(home).run_dir();
    std::fs::create_dir_all(&run_dir).unwrap();
    let status = serde_json::json!({
        "state": "running", "version": "1.0.0", "pid": orphan.id(), "port": plan.port, "health": null,
        "supervisor_pid": gone.id(), "program": plan.program, "updated_at": "2026-01-01T00:00:00Z",
    });
    std::fs::write(run_dir.join(supervisor::STATUS_FILE), status.to_string()).unwrap();
    orphan
}

#[cfg(unix)]
#[test]
fn a_backend_left_by_a_dead_launcher_is_reported_and_ended_by_the_next_start() {
    let home = temp_home();
    let bundle = make_bundle(&home.path().join("bundle"), "1.0.0", &[]);
    let mut orphan = make_orphan(home.path(), &bundle);

    let reported = supervisor::read_status(&Paths::under(home.path()).run_dir()).unwrap();
    assert_eq!(reported.state, "unhealthy");
    assert!(reported.reason.unwrap().contains("still runs unsupervised"));

    let supervisor = Supervisor::with_options(quick_options(home.path()));
    supervisor
        .start_and_wait(plan_for(home.path(), &bundle), Duration::from_secs(20))
        .unwrap();
    let ended = poll_until(Duration::from_secs(5), || orphan.try_wait().unwrap().is_some());
    assert!(ended, "the orphan backend {} was left running", orphan.id());
    let note = format!("ended backend pid {}", orphan.id());
    assert!(supervisor.log_tail().iter().any(|l| l.contains(&note)));
}

#[cfg(unix)]
#[test]
fn backend_stop_ends_a_backend_left_by_a_dead_launcher() {
    let home = temp_home();
    let bundle = make_bundle(&home.path().join("bundle"), "1.0.0", &[]);
    let mut orphan = make_orphan(home.path(), &bundle);

    let stop = launcher(home.path(), &["backend", "stop"]).output().unwrap();

    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    let said = String::from_utf8_lossy(&stop.stdout);
    assert!(
        said.contains(&format!(
            "ended the backend (pid {}) that ran unsupervised",
            orphan.id()
        )),
        "{said}"
    );
    assert!(poll_until(Duration::from_secs(5), || orphan
        .try_wait()
        .unwrap()
        .is_some()));
    assert_eq!(status_json(home.path())["state"], "stopped");
}

#[test]
fn starting_with_nothing_installed_says_how_to_install() {
    let home = temp_home();
    let output = launcher(home.path(), &["backend", "start"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nothing is installed yet; run `personal-ai-agent update install`"),
        "{stderr}"
    );
}

#[test]
fn status_with_no_launcher_ever_run_is_stopped() {
    let home = temp_home();
    let status = status_json(home.path());
    assert_eq!(status["state"], "stopped");
    assert!(status["pid"].is_null() && status["health"].is_null());
}

/// Time from spawn until the backend accepts a connection, polled every millisecond without a launcher.
fn bare_cold_start(bundle: &Path, home: &Path) -> Duration {
    let plan = plan_for(home, bundle);
    let begin = Instant::now();
    let mut child = Command::new(&plan.program)
        .args(&plan.args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while TcpStream::connect(("127.0.0.1", plan.port)).is_err() {
        assert!(
            begin.elapsed() < Duration::from_secs(20),
            "the example backend never listened"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = begin.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    took
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[test]
fn the_supervisor_adds_little_to_the_backends_own_cold_start() {
    let home = temp_home();
    let bundle = make_bundle(
        &home.path().join("bundle"),
        "1.0.0",
        &["--startup-delay-ms", "300"],
    );
    let supervisor = Supervisor::with_options(quick_options(home.path()));
    let mut bare = Vec::new();
    let mut supervised = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..3 {
        bare.push(bare_cold_start(&bundle, home.path()));
        supervised.push(
            supervisor
                .start_and_wait(plan_for(home.path(), &bundle), Duration::from_secs(20))
                .unwrap(),
        );
        stops.push(supervisor.stop().unwrap().unwrap().took);
    }
    let (bare, supervised, stop) = (median(bare), median(supervised), median(stops));
    let added = supervised.saturating_sub(bare);
    println!(
        "example backend cold start (300 ms model load): bare {} ms, supervised to healthy {} ms, added {} ms; graceful stop {} ms",
        bare.as_millis(),
        supervised.as_millis(),
        added.as_millis(),
        stop.as_millis()
    );
    assert!(
        added < Duration::from_millis(200),
        "the launcher added {} ms",
        added.as_millis()
    );
}

/// Kills a background launcher if a test ends before stopping it.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.0.filter(|pid| is_process_alive(*pid)) {
            kill_9(pid);
        }
    }
}

#[test]
fn a_detached_start_returns_once_healthy_and_stop_ends_the_background_launcher() {
    let home = temp_home();
    install_by_hand(home.path(), "3.1.0", &["--startup-delay-ms", "100"]);

    let output = launcher(home.path(), &["backend", "start", "--detach", "--json"])
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let started: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let background = started["supervisor_pid"].as_u64().unwrap() as u32;
    let _cleanup = KillOnDrop(Some(background));
    assert_eq!(started["state"], "running");
    assert_eq!(started["version"], "3.1.0");
    assert!(
        is_process_alive(background),
        "the background launcher outlives the command that started it"
    );
    let backend_pid = started["pid"].as_u64().unwrap() as u32;
    assert_eq!(
        http_get(started["port"].as_u64().unwrap() as u16, "/health").0,
        200
    );

    let stop = launcher(home.path(), &["backend", "stop"]).output().unwrap();

    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    assert!(!is_process_alive(backend_pid));
    assert!(poll_until(Duration::from_secs(10), || !is_process_alive(
        background
    )));
}

#[test]
fn a_running_backend_whose_health_fails_is_marked_unhealthy_then_restarted() {
    let home = temp_home();
    let bundle = make_bundle(
        &home.path().join("bundle"),
        "1.0.0",
        &["--fail-health-after", "0.5"],
    );
    let mut options = quick_options(home.path());
    options.health_interval = Duration::from_millis(50);
    options.unhealthy_restart_after = Some(Duration::from_millis(300));
    let supervisor = Supervisor::with_options(options);
    supervisor
        .start_and_wait(plan_for(home.path(), &bundle), Duration::from_secs(20))
        .unwrap();
    let (first_pid, _) = running_pid_and_port(&supervisor.state()).unwrap();

    let (state, unhealthy) = supervisor.wait_for(Duration::from_secs(10), |s| {
        matches!(s, BackendState::Unhealthy { .. })
    });

    assert!(unhealthy, "{state:?}");
    let BackendState::Unhealthy { pid, reason } = state else {
        unreachable!()
    };
    assert_eq!(pid, first_pid);
    assert!(
        reason.contains("3 failed health checks in a row; last answer: HTTP 503"),
        "{reason}"
    );
    let (state, restarted) = supervisor.wait_for(Duration::from_secs(10), |s| {
        running_pid_and_port(s).is_some_and(|(pid, _)| pid != first_pid)
    });
    assert!(restarted, "{state:?}");
    assert!(
        supervisor
            .log_tail()
            .iter()
            .any(|l| l.contains("unhealthy for more than 300 ms; last answer: HTTP 503"))
    );
}

#[test]
fn a_backend_that_never_answers_within_its_ready_timeout_is_stopped_and_counted_as_a_crash() {
    let home = temp_home();
    let bundle = make_bundle(&home.path().join("bundle"), "1.0.0", &["--never-listen"]);
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("agent.json")).unwrap()).unwrap();
    spec["ready_timeout_secs"] = 1.into();
    std::fs::write(bundle.join("agent.json"), spec.to_string()).unwrap();
    let supervisor = Supervisor::with_options(quick_options(home.path()));
    let pid = supervisor.start(plan_for(home.path(), &bundle)).unwrap();

    let (state, crashed) = supervisor.wait_for(Duration::from_secs(10), |s| {
        matches!(s, BackendState::Crashed { .. })
    });

    assert!(crashed, "{state:?}");
    let BackendState::Crashed { exit, reason } = state else {
        unreachable!()
    };
    assert_eq!(exit, "exit code 0", "stopped gracefully");
    assert!(
        reason.contains("no healthy answer from http://127.0.0.1:"),
        "{reason}"
    );
    assert!(
        reason.contains("within 1 s (ready_timeout_secs); last answer: no answer (connection refused)"),
        "{reason}"
    );
    assert!(reason.contains("restarting in 50 ms (crash 1 of 5"), "{reason}");
    assert!(!is_process_alive(pid));
}
