//! Regression tests for the second hardening round (issue 18), items 4, 5, 12 and parts of 13 that are
//! not the API's own (those are in `api.rs`): an explicit older version on this machine's command line,
//! a launcher stopped during its health gate, a reader that closes stdout early.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli_update::{json_of, pai};
use crate::support::{make_bundle, temp_home};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Publishes the example backend as `version` into the folder feed, with `backend_args` and
/// `ready_timeout_secs`.
fn publish(feed: &Path, work: &Path, version: &str, backend_args: &[&str], ready_timeout_secs: u64) {
    let bundle = work.join(format!("bundle-{version}"));
    make_bundle(&bundle, backend_args);
    let agent = bundle.join("agent.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&agent).unwrap()).unwrap();
    spec["ready_timeout_secs"] = ready_timeout_secs.into();
    std::fs::write(&agent, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    crate::support::pack_bundle(
        &bundle,
        &feed.join(version),
        version,
        personal_ai_agent::version::Channel::Stable,
        None,
    );
    personal_ai_agent::sources::feed::write_feed(feed).unwrap();
}

fn installed_feed(versions: &[&str]) -> (tempfile::TempDir, tempfile::TempDir, std::path::PathBuf) {
    let work = temp_home();
    let home = temp_home();
    let feed = work.path().join("feed");
    for v in versions {
        publish(&feed, work.path(), v, &[], 5);
    }
    json_of(&pai(
        home.path(),
        None,
        &["update", "configure", "--json", "--feed", feed.to_str().unwrap()],
    ));
    (work, home, feed)
}

fn current(home: &Path) -> String {
    std::fs::read_to_string(home.join("install/current"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Going back is `update rollback`; installing an older release by name takes an explicit
/// `--allow-downgrade` of the local user.
#[test]
fn an_explicit_older_version_is_refused_naming_rollback_unless_the_local_user_allows_the_downgrade() {
    let (_work, home, _feed) = installed_feed(&["1.0.0", "1.1.0"]);
    let first = json_of(&pai(
        home.path(),
        None,
        &["update", "install", "--json", "--version", "1.1.0"],
    ));
    assert_eq!(first["installed_version"], "1.1.0");
    for command in ["install", "download"] {
        let out = pai(home.path(), None, &["update", command, "--version", "1.0.0"]);
        assert!(
            !out.status.success(),
            "{command} went below the installed version"
        );
        let text = stderr(&out);
        assert!(
            text.contains("older than the installed 1.1.0")
                && text.contains("update rollback")
                && text.contains("--allow-downgrade"),
            "{text}"
        );
        assert!(!text.contains("panicked"), "{text}");
    }
    assert_eq!(current(home.path()), "1.1.0");
    let back = json_of(&pai(
        home.path(),
        None,
        &[
            "update",
            "install",
            "--json",
            "--version",
            "1.0.0",
            "--allow-downgrade",
        ],
    ));
    assert_eq!(back["installed_version"], "1.0.0", "{back}");
}

/// A reader that closes stdout early (`update status | head -1`) is not an error, and never a panic.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let home = temp_home();
    for args in [&["update", "status"][..], &["update", "status", "--json"]] {
        let mut child = crate::support::launcher_in(home.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command prints anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let text = stderr(&out);
        assert!(
            !text.contains("panicked") && !text.contains("Broken pipe") && !text.contains("RUST_BACKTRACE"),
            "{args:?}: {text}"
        );
        assert!(out.status.success(), "{args:?}: {:?} {text}", out.status);
    }
}

/// The health gate counts only the time the launcher ran: stopped (SIGSTOP, or a laptop asleep) for
/// longer than the backend's `ready_timeout` while the new backend starts, it still sees the backend
/// healthy once it runs again, instead of failing and blacklisting a good release.
#[cfg(unix)]
#[test]
fn a_launcher_stopped_during_the_health_gate_does_not_fail_a_healthy_release() {
    let (work, home, feed) = installed_feed(&["1.0.0"]);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    // Healthy 1.5 s after its start, within its 3 s budget.
    publish(&feed, work.path(), "1.1.0", &["--startup-delay-ms", "1500"], 3);
    let child = crate::support::launcher_in(home.path())
        .args(["update", "install", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // Wait for the new backend to be starting: the gate's clock runs.
    let status_file = home.path().join("run/backend.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value = std::fs::read(&status_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if status["state"] == "starting" && status["version"] == "1.1.0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new backend never started: {status}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Stopped longer than the whole budget; the backend becomes healthy meanwhile.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(4));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "a healthy release failed its gate: {}",
        stderr(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["installed_version"], "1.1.0", "{report}");
    assert_eq!(current(home.path()), "1.1.0");
    let status = json_of(&pai(home.path(), None, &["update", "status", "--json"]));
    assert!(
        !status["failed_versions"].to_string().contains("1.1.0"),
        "{status}"
    );
}
