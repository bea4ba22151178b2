//! The data folder through the CLI: a configured folder that vanished, was taken over or cannot be
//! read stops every command (nothing is run from it, nothing made in its place) except the two that fix
//! it; `uninstall` waits for whatever changes the install and removes everything it said it removed.

use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use crate::cli_update::{json_of, pai};
use crate::support::temp_home;

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Configures `data` as the data folder of `home` (made and marked by the launcher).
fn configure_data_dir(home: &Path, data: &Path) {
    json_of(&pai(
        home,
        None,
        &[
            "--json",
            "update",
            "configure",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    ));
    assert!(data.join(".personal-ai-agent-data").is_file());
}

/// Waits for `child` to end (killing it after `limit`); `None` when it had to be killed.
fn wait_ended(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes `dir` another user's as far as the launcher can tell: owned by `nobody` when the tests run as
/// root (CI), else writable by everyone (which any user can arrange, and which lets others replace what
/// it holds just the same). Returns what the refusal must say.
#[cfg(unix)]
fn hand_to_another_user(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
        format!("{} belongs to user 65534", dir.display())
    } else {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        format!("others may write to {} (mode 777)", dir.display())
    }
}

#[cfg(unix)]
#[test]
fn a_configured_data_folder_another_user_recreated_is_refused_and_nothing_runs_from_it() {
    let home = temp_home();
    let h = home.path();
    let drive = temp_home();
    let data = drive.path().join("PersonalAIAgent");
    configure_data_dir(h, &data);

    // The folder vanishes (a reboot, a tmp cleaner) and another user makes it again, looking like ours.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(data.join("install/versions/1.0.0")).unwrap();
    std::fs::write(data.join(".personal-ai-agent-data"), "theirs").unwrap();
    std::fs::write(data.join("install/current"), "1.0.0").unwrap();
    let said = hand_to_another_user(&data);

    let status = pai(h, None, &["update", "status"]);
    assert_eq!(status.status.code(), Some(1), "{}", stderr_of(&status));
    let err = stderr_of(&status);
    assert!(err.contains(&said), "{err}");
    assert!(err.contains("update configure --data-dir DIR"), "{err}");
    assert!(!String::from_utf8_lossy(&status.stdout).contains("1.0.0"));

    let mut runner = crate::support::launcher_in(h)
        .args(["run", "--headless"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = wait_ended(&mut runner, Duration::from_secs(30));
    assert!(
        ended.is_some_and(|s| s.code() == Some(1)),
        "run --headless must refuse at once, not run: {ended:?}"
    );
    assert!(
        !data.join("run").exists() && !data.join("logs").exists(),
        "nothing was started or written in their folder"
    );

    // Choosing another user's (empty) folder is refused; choosing a folder of one's own fixes it.
    let theirs = drive.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let said = hand_to_another_user(&theirs);
    let refused = pai(
        h,
        None,
        &["update", "configure", "--data-dir", theirs.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr_of(&refused).contains(&said), "{}", stderr_of(&refused));
    assert!(!theirs.join(".personal-ai-agent-data").exists());
    let mine = drive.path().join("mine");
    configure_data_dir(h, &mine);
    let status = json_of(&pai(h, None, &["--json", "update", "status"]));
    assert_eq!(status["home"]["data_dir"], mine.to_str().unwrap());
    assert!(status["current_version"].is_null(), "{status}");
}

#[test]
fn a_missing_configured_data_folder_asks_whether_the_drive_is_mounted_and_makes_nothing() {
    let home = temp_home();
    let h = home.path();
    let drive = temp_home();
    let data = drive.path().join("PersonalAIAgent");
    configure_data_dir(h, &data);
    std::fs::remove_dir_all(&data).unwrap();

    for args in [
        &["update", "status"][..],
        &["models", "status"],
        &["backend", "status"],
        &["run", "--headless"],
    ] {
        let out = pai(h, None, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!(
                "the data folder {} (data_dir in {}) does not exist: is the drive mounted?",
                data.display(),
                h.join("config.json").display()
            )),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!data.exists(), "{args:?} made the missing folder");
    }
    // The way out the message names works with the folder missing.
    let elsewhere = drive.path().join("elsewhere");
    configure_data_dir(h, &elsewhere);
    json_of(&pai(h, None, &["--json", "update", "status"]));
    assert!(!data.exists());
}

#[test]
fn a_relative_data_dir_setting_is_an_error_naming_it() {
    let home = temp_home();
    let h = home.path();
    std::fs::write(h.join("config.json"), "{\n  \"data_dir\": \"some/where\"\n}\n").unwrap();
    let out = pai(h, None, &["update", "status"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("line 2: data_dir some/where is not an absolute path") && err.contains("never guessed"),
        "{err}"
    );
    assert!(
        !h.join("install").exists() && !h.join("logs").exists(),
        "no fresh install in the default folder"
    );
}

#[test]
fn uninstall_of_a_home_whose_data_folder_moved_removes_both_and_says_so_truly() {
    let home = temp_home();
    let h = home.path();
    let drive = temp_home();
    let data = drive.path().join("PersonalAIAgent");
    // The first command ran with the home as the data folder: its logs and marker are there.
    configure_data_dir(h, &data);
    json_of(&pai(h, None, &["--json", "update", "status"]));
    assert!(h.join(".personal-ai-agent-data").is_file() && h.join("logs").is_dir());
    assert!(data.join("logs").is_dir());

    let out = pai(h, None, &["uninstall", "--yes"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Removed;"));
    assert!(!data.exists(), "the moved data folder is gone");
    let left: Vec<_> = std::fs::read_dir(h)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the home's own files are gone too: {left:?}");
}

/// Publishes 1.0.0 in a folder feed and installs it in a new home.
fn installed_home() -> (tempfile::TempDir, tempfile::TempDir, std::path::PathBuf) {
    let work = temp_home();
    let feed = work.path().join("feed");
    crate::support::publish_to_feed(work.path(), &feed, "1.0.0", &[]);
    let home = temp_home();
    let h = home.path();
    json_of(&pai(
        h,
        None,
        &["--json", "update", "configure", "--feed", feed.to_str().unwrap()],
    ));
    json_of(&pai(h, None, &["--json", "update", "install"]));
    (work, home, feed)
}

#[test]
fn a_refused_uninstall_stops_nothing_an_update_running_keeps_the_backend_and_the_install() {
    let (_work, home, _feed) = installed_home();
    let h = home.path();
    let started = pai(h, None, &["backend", "start", "--detach"]);
    assert!(started.status.success(), "{}", stderr_of(&started));
    // An update holds the update lock (as the owner's update job does while it works).
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(h.join("install/update.lock"))
        .unwrap();
    lock.try_lock().unwrap();

    let out = pai(h, None, &["uninstall", "--yes"]);
    let status = json_of(&pai(h, None, &["--json", "backend", "status"]));
    assert_eq!(
        status["state"],
        "running",
        "a refused uninstall must not have stopped the backend: {status}\n{}",
        stderr_of(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("nothing was removed: an update is running"), "{err}");
    assert!(h.join("install/current").exists() && h.join("config.json").is_file());

    drop(lock);
    json_of(&pai(h, None, &["--json", "backend", "stop"]));
}

#[test]
fn uninstall_during_a_foreground_update_install_is_refused_naming_it_and_removes_nothing() {
    use crate::support::{Response, TestServer};
    let work = temp_home();
    let feed = work.path().join("feed");
    crate::support::publish_to_feed(work.path(), &feed, "1.0.0", &[]);
    // The feed over HTTP, its release list answered slowly: the install is still looking for the
    // release (before it takes the update lock) when uninstall runs.
    let served = feed.clone();
    let server = TestServer::start(move |req| {
        let name = req.path_only().trim_start_matches('/').to_owned();
        match std::fs::read(served.join(&name)) {
            Ok(bytes) if name == "feed.json" => Response::bytes(bytes).delay(Duration::from_secs(5)),
            Ok(bytes) => Response::bytes(bytes),
            Err(_) => Response::new(404),
        }
    });
    let home = temp_home();
    let h = home.path();
    let feed_url = format!("{}/feed.json", server.url());
    json_of(&pai(
        h,
        None,
        &["--json", "update", "configure", "--feed", &feed_url],
    ));
    let mut install = crate::support::launcher_in(h)
        .args(["update", "install"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.requests().iter().any(|r| r.path_only() == "/feed.json") {
        assert!(
            Instant::now() < deadline,
            "the install never asked for the release list"
        );
        assert!(install.try_wait().unwrap().is_none(), "the install ended early");
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = pai(h, None, &["uninstall", "--yes"]);
    let _ = install.kill();
    let _ = install.wait();
    assert!(
        h.join("config.json").is_file(),
        "nothing may be removed under a running install: {}",
        stderr_of(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "nothing was removed or stopped: `update install` (pid {}) is working on this install",
            install.id()
        )),
        "{err}"
    );
}

#[test]
fn a_command_finding_the_install_held_without_an_api_never_works_beside_the_holder() {
    let work = temp_home();
    let feed = work.path().join("feed");
    crate::support::publish_to_feed(work.path(), &feed, "1.0.0", &[]);
    let home = temp_home();
    let h = home.path();
    json_of(&pai(
        h,
        None,
        &["--json", "update", "configure", "--feed", feed.to_str().unwrap()],
    ));
    // Another launcher holds the owner lock and serves no API (an `uninstall` removing, a foreground
    // `update install`, an owner starting): not "nobody".
    let paths = personal_ai_agent::paths::Paths::resolve(Some(h)).unwrap();
    let held = personal_ai_agent::owner::Owner::take_as(&paths, "uninstall").unwrap();
    let out = pai(h, None, &["update", "install"]);
    assert!(
        !h.join("install/versions/1.0.0").exists(),
        "nothing was installed beside the holder: {}",
        stderr_of(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "`uninstall` (pid {}) holds this install without serving an API",
            std::process::id()
        )),
        "{err}"
    );
    drop(held);
    json_of(&pai(h, None, &["--json", "update", "install"]));
    assert!(h.join("install/versions/1.0.0").is_dir());
}
