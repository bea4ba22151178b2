//! The whole update flow through the binary, against a local GitHub that serves real release files made
//! by `release pack` around the example backend: install, update, health-gated rollback, signatures,
//! tampering, and the headless runner restarting the backend on the new version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use personal_ai_agent::platform::Platform;
use serde_json::{Value, json};

use crate::cli_update::{json_of, pai};
use crate::support::{Response, TestServer, pack_example_release, serve_bytes, temp_home};
use crate::verify::minisign_keypair;

/// A local GitHub whose releases a test publishes as it goes.
struct FakeGitHub {
    server: TestServer,
    /// tag → folder holding that release's files.
    releases: Arc<Mutex<BTreeMap<String, PathBuf>>>,
    /// Asset names whose bytes are served tampered.
    tampered: Arc<Mutex<Vec<String>>>,
}

impl FakeGitHub {
    fn start() -> Self {
        let releases: Arc<Mutex<BTreeMap<String, PathBuf>>> = Arc::default();
        let tampered: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, t) = (releases.clone(), tampered.clone());
        let server = TestServer::start(move |req| {
            let base = format!("http://{}", req.header("host").unwrap());
            let releases = r.lock().unwrap().clone();
            let path = req.path_only().to_owned();
            if path == "/repos/o/r/releases" {
                let list: Vec<Value> = releases
                    .iter()
                    .rev()
                    .map(|(tag, dir)| release_json(&base, tag, dir))
                    .collect();
                return Response::json(200, Value::Array(list).to_string());
            }
            if let Some(rest) = path.strip_prefix("/o/r/releases/download/")
                && let Some((tag, name)) = rest.split_once('/')
                && let Some(dir) = releases.get(tag)
                && let Ok(mut bytes) = std::fs::read(dir.join(name))
            {
                if t.lock().unwrap().iter().any(|n| n == name) {
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0xff;
                }
                return serve_bytes(req, &bytes, &format!("\"{tag}-{name}\""));
            }
            Response::json(404, r#"{"message":"Not Found"}"#)
        });
        FakeGitHub {
            server,
            releases,
            tampered,
        }
    }

    fn publish(&self, tag: &str, dir: PathBuf) {
        self.releases.lock().unwrap().insert(tag.to_owned(), dir);
    }

    fn url(&self) -> String {
        self.server.url()
    }
}

fn release_json(base: &str, tag: &str, dir: &Path) -> Value {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let assets: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "id": i + 1,
                "name": name,
                "size": std::fs::metadata(dir.join(name)).unwrap().len(),
                "state": "uploaded",
                "url": format!("{base}/repos/o/r/releases/assets/{}", i + 1),
                "browser_download_url": format!("{base}/o/r/releases/download/{tag}/{name}"),
            })
        })
        .collect();
    json!({
        "tag_name": tag, "name": tag, "body": format!("notes of {tag}"), "draft": false,
        "prerelease": tag.contains('-'), "published_at": "2026-11-01T00:00:00Z", "assets": assets,
    })
}

/// Packs a release of the example backend (`backend_args` make it misbehave) for this machine.
fn packed_release(work: &Path, version: &str, backend_args: &[&str], key: Option<&Path>) -> PathBuf {
    let out = work.join(format!("out-{version}"));
    pack_example_release(work, &out, version, backend_args, key);
    out
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn status(home: &Path) -> Value {
    json_of(&pai(home, None, &["update", "status", "--json"]))
}

#[test]
fn updates_install_health_checked_and_an_unhealthy_one_rolls_back_by_itself() {
    let work = temp_home();
    let home = temp_home();
    let github = FakeGitHub::start();
    github.publish("v1.0.0", packed_release(work.path(), "1.0.0", &[], None));

    let first = json_of(&pai(
        home.path(),
        Some(&github.url()),
        &["update", "install", "--json"],
    ));
    assert_eq!(first["installed_version"], "1.0.0");
    assert_eq!(first["previous_version"], Value::Null);
    assert_eq!(first["signed"], false);
    assert_eq!(
        first["backend_running"], false,
        "no backend ran before, so none is left running"
    );

    github.publish("v1.1.0", packed_release(work.path(), "1.1.0", &[], None));
    let second = json_of(&pai(
        home.path(),
        Some(&github.url()),
        &["update", "install", "--json"],
    ));
    assert_eq!(second["installed_version"], "1.1.0");
    assert_eq!(second["previous_version"], "1.0.0");
    assert!(
        second["verified_by"]
            .as_str()
            .unwrap()
            .contains("release-manifest.json"),
        "{second}"
    );
    let s = status(home.path());
    assert_eq!(s["current_version"], "1.1.0");
    assert_eq!(s["installed_versions"], json!(["1.1.0", "1.0.0"]));
    assert_eq!(
        s["pending_download"],
        Value::Null,
        "the installed download is cleaned up"
    );

    github.publish(
        "v1.2.0",
        packed_release(work.path(), "1.2.0", &["--fail-health"], None),
    );
    let bad = pai(home.path(), Some(&github.url()), &["update", "install"]);
    assert!(!bad.status.success());
    let err = stderr(&bad);
    assert!(err.contains("health check of version 1.2.0 failed"), "{err}");
    assert!(err.contains("rolled back to 1.1.0"), "{err}");
    let s = status(home.path());
    assert_eq!(s["current_version"], "1.1.0");
    assert_eq!(s["failed_versions"], json!(["1.2.0"]));
    assert_eq!(
        s["installed_versions"],
        json!(["1.1.0", "1.0.0"]),
        "the failed version is removed"
    );

    let check = json_of(&pai(
        home.path(),
        Some(&github.url()),
        &["update", "check", "--json"],
    ));
    assert_eq!(
        check["update_available"], false,
        "a failed version is not offered again: {check}"
    );
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains("failed its health check"),
        "{check}"
    );

    let back = json_of(&pai(home.path(), None, &["update", "rollback", "--json"]));
    assert_eq!(back["from"], "1.1.0");
    assert_eq!(back["to"], "1.0.0");
    assert_eq!(status(home.path())["current_version"], "1.0.0");
}

#[test]
fn tampered_bytes_are_refused_the_download_deleted_and_the_install_untouched() {
    let work = temp_home();
    let home = temp_home();
    let github = FakeGitHub::start();
    github.publish("v1.0.0", packed_release(work.path(), "1.0.0", &[], None));
    json_of(&pai(
        home.path(),
        Some(&github.url()),
        &["update", "install", "--json"],
    ));
    let out = packed_release(work.path(), "1.1.0", &[], None);
    let archive = personal_ai_agent::pack::archive_file_name(&"1.1.0".parse().unwrap(), &Platform::current());
    github.tampered.lock().unwrap().push(archive.clone());
    github.publish("v1.1.0", out);

    let result = pai(home.path(), Some(&github.url()), &["update", "install"]);
    assert!(!result.status.success());
    let err = stderr(&result);
    assert!(err.contains(&archive) && err.contains("expected"), "{err}");
    assert_eq!(status(home.path())["current_version"], "1.0.0");
    let downloads = home.path().join("downloads");
    let left: Vec<_> = std::fs::read_dir(&downloads)
        .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
        .unwrap_or_default();
    assert!(
        !left.iter().any(|n| n.starts_with(&archive)),
        "tampered bytes left behind: {left:?}"
    );
}

#[test]
fn with_a_pinned_key_only_releases_signed_by_it_install() {
    let work = temp_home();
    let home = temp_home();
    let (public, secret) = minisign_keypair(work.path(), "ours");
    let (_, other_secret) = minisign_keypair(work.path(), "theirs");
    json_of(&pai(
        home.path(),
        None,
        &[
            "update",
            "configure",
            "--json",
            "--public-key",
            public.to_str().unwrap(),
        ],
    ));
    let github = FakeGitHub::start();
    github.publish("v1.0.0", packed_release(work.path(), "1.0.0", &[], Some(&secret)));
    let first = json_of(&pai(
        home.path(),
        Some(&github.url()),
        &["update", "install", "--json"],
    ));
    assert_eq!(first["signed"], true);
    let s = status(home.path());
    assert_eq!(s["signed"], true);
    assert_eq!(s["public_key_pinned"], true);

    github.publish("v1.1.0", packed_release(work.path(), "1.1.0", &[], None));
    let unsigned = pai(home.path(), Some(&github.url()), &["update", "install"]);
    assert!(!unsigned.status.success());
    assert!(
        stderr(&unsigned).to_lowercase().contains("sign"),
        "{}",
        stderr(&unsigned)
    );

    github.publish(
        "v1.1.0",
        packed_release(work.path(), "1.1.0-other", &[], Some(&other_secret)),
    );
    let foreign = pai(home.path(), Some(&github.url()), &["update", "install"]);
    assert!(
        !foreign.status.success(),
        "a release signed by another key must be refused"
    );
    assert_eq!(status(home.path())["current_version"], "1.0.0");
}

#[test]
fn the_headless_runner_installs_on_first_run_and_restarts_the_backend_on_an_update() {
    let work = temp_home();
    let home = temp_home();
    let github = FakeGitHub::start();
    github.publish("v1.0.0", packed_release(work.path(), "1.0.0", &[], None));
    let mut runner = std::process::Command::new(crate::support::LAUNCHER);
    #[cfg(windows)]
    {
        // Its own process group, so CTRL_BREAK can be sent to it alone (the portable SIGTERM, below).
        use std::os::windows::process::CommandExt;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        runner.creation_flags(CREATE_NEW_PROCESS_GROUP);
    }
    let mut runner = runner
        .arg("--home")
        .arg(home.path())
        .args(["run", "--headless", "--check-now"])
        .env("GITHUB_API_URL", github.url())
        .env("GITHUB_SERVER_URL", github.url())
        .env("GITHUB_REPO", "o/r")
        .env("AUTO_UPDATE", "true")
        .env("UPDATE_CHECK_INTERVAL", "0.001")
        .env_remove("GITHUB_TOKEN")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let backend_version = |home: &Path| {
        let v = json_of(&pai(home, None, &["backend", "status", "--json"]));
        (v["state"].as_str() == Some("running"))
            .then(|| v["version"].as_str().map(str::to_owned))
            .flatten()
    };
    let wait_for = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if backend_version(home.path()).as_deref() == Some(want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    };
    let first = wait_for("1.0.0");
    if first {
        github.publish("v1.1.0", packed_release(work.path(), "1.1.0", &[], None));
    }
    let second = first && wait_for("1.1.0");
    // Another process does not work under the runner's feet: it asks the runner, which owns the install.
    let meanwhile = pai(home.path(), Some(&github.url()), &["backend", "status", "--json"]);
    let refused_elsewhere = meanwhile.status.success()
        && serde_json::from_slice::<Value>(&meanwhile.stdout)
            .is_ok_and(|s| s["supervisor_pid"] == runner.id() && s["version"] == "1.1.0");
    // A broken release while the backend runs: the runner tries it, rolls back, and 1.1.0 serves on.
    if second {
        github.publish(
            "v1.2.0",
            packed_release(work.path(), "1.2.0", &["--fail-health"], None),
        );
    }
    let failed_recorded = || {
        let config = std::fs::read_to_string(home.path().join("config.json")).unwrap_or_default();
        serde_json::from_str::<Value>(&config).is_ok_and(|c| c["failed_versions"] == json!(["1.2.0"]))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while second && !failed_recorded() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let rolled_back = second && failed_recorded();
    let after_rollback = rolled_back && wait_for("1.1.0");
    // The next round (the runner re-reads settings at every check) must not offer the failed 1.2.0 again:
    // it used to download it, stop the healthy backend and roll back at every interval, forever.
    let launcher_log = || {
        std::fs::read_dir(home.path().join("logs"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("launcher"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    let rounds_after_rollback = |log: &str| {
        log.rsplit_once("update rolled back")
            .map(|(_, after)| after.matches("no update available").count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(45);
    while after_rollback && rounds_after_rollback(&launcher_log()) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let quiet_round = after_rollback && rounds_after_rollback(&launcher_log()) > 0;
    let health_after = json_of(&pai(home.path(), None, &["backend", "status", "--json"]));
    let asked_to_stop = ask_to_stop(&runner);
    if !asked_to_stop {
        let _ = runner.kill();
    }
    let exit = runner.wait().unwrap();
    let mut log = String::new();
    use std::io::Read;
    runner.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(first, "the backend never ran 1.0.0; runner log:\n{log}");
    assert!(second, "the backend never restarted on 1.1.0; runner log:\n{log}");
    assert!(
        !second || refused_elsewhere,
        "another process was not answered by the runner that owns the install"
    );
    assert!(
        rolled_back,
        "the unhealthy 1.2.0 was never recorded as failed; runner log:\n{log}"
    );
    assert!(
        after_rollback,
        "1.1.0 is not running after the rollback: {health_after}\n{log}"
    );
    assert!(
        quiet_round,
        "no check ran after the rollback, or it offered 1.2.0 again; runner log:\n{log}"
    );
    assert_eq!(
        log.matches("update rolled back").count(),
        1,
        "the failed version was tried again; runner log:\n{log}"
    );
    assert_eq!(health_after["health"]["status"], 200, "{health_after}");
    assert_eq!(status(home.path())["current_version"], "1.1.0");
    if !asked_to_stop {
        // Only on Windows, when this test runs without a console to share with the runner.
        eprintln!("could not send CTRL_BREAK to the runner; it was killed, so its clean exit is not checked");
        return;
    }
    assert!(
        exit.success(),
        "SIGTERM (CTRL_BREAK on Windows) must end the runner cleanly: {exit:?}\n{log}"
    );
    assert_eq!(
        json_of(&pai(home.path(), None, &["backend", "status", "--json"]))["state"],
        "stopped"
    );
}

/// Asks a process to end as Ctrl-C would: SIGTERM on Unix; on Windows CTRL_BREAK to its process group
/// (it must have been started with `CREATE_NEW_PROCESS_GROUP`), which only works when this process shares
/// a console with it. Returns whether the request was delivered.
#[cfg(unix)]
fn ask_to_stop(child: &std::process::Child) -> bool {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) == 0 }
}

#[cfg(windows)]
fn ask_to_stop(child: &std::process::Child) -> bool {
    use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, GenerateConsoleCtrlEvent};
    // SAFETY: no memory is passed; the process group id is the child's pid.
    unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, child.id()) != 0 }
}
