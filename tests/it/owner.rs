//! Every other face is a client of the owner: with a `run --headless` owning a private home (a folder
//! feed, 1.0.0 installed, 1.1.0 published), the CLI's `update install`, `backend restart|stop|start|status`
//! go through the owner's API (the owner's backend restarted exactly once, no second backend process);
//! a wrong token is refused naming the token file; and once the owner is SIGKILLed (its `run/api.json`
//! left behind), the next command does the work itself.

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli_update::{json_of, pai};
use crate::support::temp_home;

const PATIENCE: Duration = Duration::from_secs(60);

/// Packs the example backend as `version` into `feed/<version>/` and rewrites the feed document.
fn publish(work: &Path, feed: &Path, version: &str) {
    crate::support::publish_to_feed(work, feed, version, &[]);
}

/// A home whose settings name a folder feed, 1.0.0 installed by the CLI before any owner runs, and 1.1.0
/// published.
fn home_with_update() -> (tempfile::TempDir, tempfile::TempDir) {
    let work = temp_home();
    let home = temp_home();
    let feed = work.path().join("feed");
    publish(work.path(), &feed, "1.0.0");
    json_of(&pai(
        home.path(),
        None,
        &["update", "configure", "--json", "--feed", feed.to_str().unwrap()],
    ));
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    publish(work.path(), &feed, "1.1.0");
    (work, home)
}

/// A `run --headless --api-port 0` owning `home`, once its API is published.
fn start_owner(home: &Path) -> Child {
    let mut cmd = crate::support::launcher_in(home);
    cmd.args(["run", "--headless", "--api-port", "0"]);
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("the owner to publish run/api.json", || {
        std::fs::read_to_string(home.join("run/api.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|info| info["pid"] == child.id())
    });
    child
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many times a backend was started in this home (the supervisor notes each start in backend.log).
fn backend_starts(home: &Path) -> usize {
    std::fs::read_to_string(home.join("logs/backend.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("started ") && l.contains(", version "))
        .count()
}

/// The live processes whose executable lies in `home` (every backend runs from `home/install/...`).
#[cfg(target_os = "linux")]
fn backends_running(home: &Path) -> Vec<u32> {
    let home = home.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let entry = e.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(entry.path().join("exe")).ok()?;
            exe.starts_with(&home).then_some(pid)
        })
        .collect()
}

fn backend_status(home: &Path) -> Value {
    json_of(&pai(home, None, &["backend", "status", "--json"]))
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn current_version(home: &Path) -> String {
    std::fs::read_to_string(home.join("install/current")).unwrap_or_default()
}

struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(unix)]
#[test]
fn the_cli_goes_through_a_running_owner_and_does_the_work_itself_once_the_owner_is_killed() {
    let (_work, home) = home_with_update();
    let home = home.path();
    let mut owner = Reaper(start_owner(home));
    let owner_pid = owner.0.id();
    wait_for("the owner to start the backend of 1.0.0", || {
        let b = backend_status(home);
        b["state"] == "running" && b["version"] == "1.0.0"
    });
    // `backend status` answers from the owner (the owner's supervisor, not a file read by this process).
    let status = backend_status(home);
    assert_eq!(status["supervisor_pid"], owner_pid, "{status}");
    let first_backend = status["pid"].as_u64().unwrap();
    // The owner's first scheduled round holds the job slot for a moment; let it pass.
    std::thread::sleep(Duration::from_millis(500));

    // `update install` through the owner: its backend is restarted exactly once, by the owner.
    let starts = backend_starts(home);
    let install = json_of(&pai(home, None, &["update", "install", "--json"]));
    assert_eq!(install["installed_version"], "1.1.0", "{install}");
    assert_eq!(install["previous_version"], "1.0.0", "{install}");
    assert_eq!(install["backend_running"], true, "{install}");
    assert!(
        install["sha256"].is_string() && install["pruned"].is_array(),
        "the --json contract: {install}"
    );
    assert_eq!(current_version(home).trim(), "1.1.0");
    assert_eq!(
        backend_starts(home),
        starts + 1,
        "the backend was started exactly once"
    );
    let status = backend_status(home);
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["version"], "1.1.0", "{status}");
    assert_eq!(
        status["supervisor_pid"], owner_pid,
        "the owner supervises the new backend: {status}"
    );
    assert_ne!(status["pid"], first_backend);
    #[cfg(target_os = "linux")]
    assert_eq!(
        backends_running(home),
        [status["pid"].as_u64().unwrap() as u32],
        "one backend process, the owner's"
    );

    // `backend restart` through the owner: exactly one start, a new pid, the same supervisor.
    let starts = backend_starts(home);
    let restarted = json_of(&pai(home, None, &["backend", "restart", "--json"]));
    assert_eq!(restarted["state"], "running", "{restarted}");
    assert_eq!(restarted["version"], "1.1.0");
    assert_eq!(restarted["supervisor_pid"], owner_pid);
    assert_ne!(restarted["pid"], status["pid"]);
    assert_eq!(backend_starts(home), starts + 1, "restarted exactly once");
    #[cfg(target_os = "linux")]
    assert_eq!(
        backends_running(home),
        [restarted["pid"].as_u64().unwrap() as u32]
    );

    // `backend start` while the owner's backend runs is refused as without an owner (exit 1).
    let out = pai(home, None, &["backend", "start"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("already running"), "{}", stderr_of(&out));

    // `backend stop` then `backend start` through the owner (start returns once healthy).
    let stopped = json_of(&pai(home, None, &["backend", "stop", "--json"]));
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(owner.0.try_wait().unwrap().is_none(), "the owner keeps running");
    let started = json_of(&pai(home, None, &["backend", "start", "--json"]));
    assert_eq!(started["state"], "running", "{started}");
    assert_eq!(started["supervisor_pid"], owner_pid);

    // A token file that does not match is refused, naming the file; nothing is done.
    let token_file = home.join("api-token");
    let token = std::fs::read(&token_file).unwrap();
    std::fs::write(&token_file, "not-the-token").unwrap();
    let starts = backend_starts(home);
    let out = pai(home, None, &["backend", "restart"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains(token_file.to_str().unwrap()),
        "{}",
        stderr_of(&out)
    );
    assert!(stderr_of(&out).contains("401"), "{}", stderr_of(&out));
    let out = pai(home, None, &["update", "rollback", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(error["error"].as_str().unwrap().contains("api-token"), "{error}");
    assert_eq!(backend_starts(home), starts, "nothing was done");
    assert_eq!(current_version(home).trim(), "1.1.0");
    std::fs::write(&token_file, token).unwrap();

    // SIGKILL: the owner leaves run/api.json behind; the next command does the work itself.
    unsafe { libc::kill(owner_pid as i32, libc::SIGKILL) };
    owner.0.wait().unwrap();
    assert!(
        home.join("run/api.json").exists(),
        "a killed owner leaves api.json behind"
    );
    wait_for("the orphaned backend to end", || {
        backend_status(home)["state"] != "running"
    });
    let rollback = json_of(&pai(home, None, &["update", "rollback", "--json"]));
    assert_eq!(rollback["to"], "1.0.0", "{rollback}");
    assert_eq!(rollback["skipped"], "1.1.0", "{rollback}");
    assert_eq!(current_version(home).trim(), "1.0.0");
    let out = pai(home, None, &["api", "status"]);
    assert_eq!(out.status.code(), Some(1), "no owner any more");
}
