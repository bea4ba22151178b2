//! The launcher updating itself, with real executables: a copy of the built launcher runs from a folder
//! of its own, and the releases it installs carry copies of it stamped with other versions
//! (`selfupdate::stamp_version`), or broken ones.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use personal_ai_agent::selfupdate::{launcher_file_name, stamp_version};
use serde_json::Value;

use crate::support::{LAUNCHER, launcher_at, make_bundle, pack_bundle, temp_home};

/// A private launcher (a copy of the built one), a home whose settings point at a folder feed, and the
/// feed.
struct Setup {
    _dir: tempfile::TempDir,
    exe: PathBuf,
    home: PathBuf,
    feed: PathBuf,
    work: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = temp_home();
        let exe = dir.path().join("app").join(launcher_file_name());
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::copy(LAUNCHER, &exe).unwrap();
        let home = dir.path().join("home");
        let feed = dir.path().join("feed");
        let work = dir.path().join("work");
        crate::agent_page::home_with_feed(&home, &feed);
        Setup {
            exe,
            home,
            feed,
            work,
            _dir: dir,
        }
    }

    /// Publishes `version` whose bundle carries the launcher `launcher` wrote into it (or none).
    fn publish(&self, version: &str, launcher: impl FnOnce(&Path)) {
        let bundle = self.work.join(format!("bundle-{version}"));
        make_bundle(&bundle, &[]);
        launcher(&bundle.join(launcher_file_name()));
        pack_bundle(
            &bundle,
            &self.feed.join(version),
            version,
            personal_ai_agent::version::Channel::Stable,
            None,
        );
        std::fs::write(
            self.feed.join(version).join("NOTES.md"),
            format!("Release {version}"),
        )
        .unwrap();
        personal_ai_agent::sources::feed::write_feed(&self.feed).unwrap();
    }

    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = launcher_at(&self.exe, &self.home).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// What the launcher at `exe` says its version is.
    fn version(&self) -> String {
        let (ok, out, err) = self.cli(&["--version"]);
        assert!(ok, "{err}");
        out.trim().rsplit(' ').next().unwrap().to_owned()
    }

    fn install_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json", "update"];
        all.extend_from_slice(args);
        let (ok, out, err) = self.cli(&all);
        assert!(ok, "{out}\n{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

fn stamped(version: &'static str) -> impl FnOnce(&Path) {
    move |to: &Path| stamp_version(Path::new(LAUNCHER), to, version).unwrap()
}

const THIS: &str = env!("CARGO_PKG_VERSION");

#[test]
fn a_newer_launcher_in_a_release_replaces_the_running_one_and_a_rollback_puts_the_old_one_back() {
    let s = Setup::new();
    // 1.0.0 carries this very launcher: nothing to replace.
    s.publish("1.0.0", stamped(THIS));
    let report = s.install_json(&["install"]);
    assert_eq!(report["installed_version"], "1.0.0");
    assert!(report["launcher"].is_null(), "{report}");
    assert_eq!(s.version(), THIS);

    // 1.1.0 carries launcher 9.1.0: the file at the launcher's path becomes it, the old one is kept.
    s.publish("1.1.0", stamped("9.1.0"));
    let report = s.install_json(&["install"]);
    assert_eq!(report["installed_version"], "1.1.0");
    assert_eq!(report["launcher"]["outcome"], "updated", "{report}");
    assert_eq!(report["launcher"]["from"], THIS);
    assert_eq!(report["launcher"]["to"], "9.1.0");
    assert_eq!(s.version(), "9.1.0");
    let kept = s.home.join("install/launchers/1.0.0").join(launcher_file_name());
    assert!(
        kept.is_file(),
        "the launcher that ran with 1.0.0 is kept for a rollback"
    );
    let status = s.install_json(&["status"]);
    assert_eq!(status["launcher_version"], "9.1.0");
    assert_eq!(status["launcher"]["last_replacement"]["to"], "9.1.0");
    assert_eq!(status["launcher"]["placement"]["kind"], "replaceable");

    // A kept launcher that changed since it was kept is not put back.
    let kept_bytes = std::fs::read(&kept).unwrap();
    stamp_version(Path::new(LAUNCHER), &kept, "9.9.9").unwrap();
    let report = s.install_json(&["rollback"]);
    assert_eq!(report["to"], "1.0.0");
    assert_eq!(report["launcher"]["outcome"], "failed", "{report}");
    assert!(
        report["launcher"]["reason"]
            .as_str()
            .unwrap()
            .contains("not the one that was kept"),
        "{report}"
    );
    assert_eq!(s.version(), "9.1.0");
    std::fs::write(&kept, kept_bytes).unwrap();
    s.install_json(&["install", "--version", "1.1.0"]);

    // Going back to 1.0.0 puts its launcher back too.
    let report = s.install_json(&["rollback"]);
    assert_eq!(report["to"], "1.0.0");
    assert_eq!(report["launcher"]["outcome"], "updated", "{report}");
    assert_eq!(report["launcher"]["to"], THIS);
    assert_eq!(s.version(), THIS);
}

#[test]
fn a_release_launcher_that_fails_its_self_test_is_not_used_and_not_tried_again() {
    let s = Setup::new();
    // A real launcher that cannot say which version it is.
    s.publish("1.0.0", stamped("not-a-version"));
    let report = s.install_json(&["install"]);
    assert_eq!(
        report["installed_version"], "1.0.0",
        "the backend's update stands"
    );
    assert_eq!(report["launcher"]["outcome"], "failed", "{report}");
    assert!(
        report["launcher"]["reason"]
            .as_str()
            .unwrap()
            .contains("not a version"),
        "{report}"
    );
    assert_eq!(s.version(), THIS, "the running launcher is kept");

    // A file that is no program at all (the start of one, cut off).
    let head = std::fs::read(LAUNCHER).unwrap()[..4096].to_vec();
    s.publish("1.1.0", move |to| {
        std::fs::write(to, &head).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    });
    let report = s.install_json(&["install"]);
    assert_eq!(report["installed_version"], "1.1.0");
    assert_eq!(report["launcher"]["outcome"], "failed", "{report}");
    assert_eq!(s.version(), THIS);
    let status = s.install_json(&["status"]);
    let failed = status["launcher"]["failed"].as_object().unwrap();
    assert!(
        failed.contains_key("1.0.0") && failed.contains_key("1.1.0"),
        "{status}"
    );
    let (_, text, _) = s.cli(&["update", "status"]);
    assert!(
        text.contains("Launcher of 1.1.0 not used: it failed its self-test"),
        "{text}"
    );
}

/// The runner's `run/api.json`, once it names `version`.
fn wait_for_owner(home: &Path, version: &str, patience: Duration) -> Value {
    let started = Instant::now();
    loop {
        if let Some(info) = std::fs::read_to_string(home.join("run/api.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .filter(|i| i["version"] == version)
        {
            return info;
        }
        assert!(
            started.elapsed() < patience,
            "no owner of version {version} within {patience:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(unix)]
#[test]
fn the_headless_runner_restarts_into_the_new_launcher_with_the_same_arguments() {
    let s = Setup::new();
    s.publish("1.0.0", stamped("9.2.0"));
    let mut child = launcher_at(&s.exe, &s.home)
        .args(["run", "--headless", "--api-port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first install brings launcher 9.2.0; the runner ends its work and becomes it: the same
    // process (exec), now reporting the new version, serving the API again and running the backend.
    let info = wait_for_owner(&s.home, "9.2.0", Duration::from_secs(90));
    assert_eq!(info["pid"].as_u64(), Some(child.id() as u64), "{info}");
    let backend = s.home.join("run/backend.json");
    let started = Instant::now();
    loop {
        let state: Value = std::fs::read_to_string(&backend)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if state["state"] == "running" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the backend did not come back: {state}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.version(), "9.2.0");
    // Once it owns the install, the new launcher has started: the previous one is let go.
    let state = launcher_state(&s.home);
    assert!(state["replacing"].is_null(), "{state}");
    assert!(
        !s.home
            .join("install/launcher-undo")
            .join(launcher_file_name())
            .exists()
    );
    assert!(child.try_wait().unwrap().is_none(), "the runner is still running");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// A package `pai-selfupdate-check` installed with dpkg that claims `/opt/pai-selfupdate-check/`'s
/// launcher; purged when dropped.
#[cfg(target_os = "linux")]
struct DpkgClaimed {
    exe: PathBuf,
}

#[cfg(target_os = "linux")]
impl DpkgClaimed {
    const PACKAGE: &'static str = "pai-selfupdate-check";

    /// `None` (and why) when dpkg cannot be used here: not Debian-like, not root, or the package exists.
    fn install(work: &Path) -> Result<DpkgClaimed, String> {
        let runs =
            |cmd: &mut std::process::Command| cmd.output().map(|o| o.status.success()).unwrap_or(false);
        if !runs(std::process::Command::new("dpkg-deb").arg("--version")) {
            return Err("no dpkg-deb on this machine".into());
        }
        if unsafe { libc::geteuid() } != 0 {
            return Err("installing a package needs root".into());
        }
        if runs(std::process::Command::new("dpkg").args(["-s", Self::PACKAGE])) {
            return Err(format!("{} is installed already; not touching it", Self::PACKAGE));
        }
        let stage = work.join("deb");
        let dir = stage.join("opt").join(Self::PACKAGE);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(stage.join("DEBIAN")).unwrap();
        std::fs::write(
            stage.join("DEBIAN/control"),
            format!(
                "Package: {}\nVersion: 1.0.0\nArchitecture: all\nMaintainer: tests <tests@localhost>\nDescription: a path dpkg claims, for the self-update tests\n",
                Self::PACKAGE
            ),
        )
        .unwrap();
        // The package carries a small stand-in; the real launcher is copied over it once installed, so
        // the path stays dpkg's (`dpkg -S` answers from its database).
        std::fs::write(dir.join(launcher_file_name()), "stand-in").unwrap();
        let deb = work.join("claimed.deb");
        assert!(
            runs(
                std::process::Command::new("dpkg-deb")
                    .args(["--build", "--root-owner-group"])
                    .arg(&stage)
                    .arg(&deb)
            ),
            "dpkg-deb --build failed"
        );
        let claimed = DpkgClaimed {
            exe: Path::new("/opt").join(Self::PACKAGE).join(launcher_file_name()),
        };
        assert!(
            runs(std::process::Command::new("dpkg").arg("-i").arg(&deb)),
            "dpkg -i failed"
        );
        std::fs::copy(LAUNCHER, &claimed.exe).unwrap();
        Ok(claimed)
    }
}

#[cfg(target_os = "linux")]
impl Drop for DpkgClaimed {
    fn drop(&mut self) {
        let _ = std::process::Command::new("dpkg")
            .args(["--purge", Self::PACKAGE])
            .output();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_launcher_installed_by_dpkg_is_not_replaced_and_says_to_update_it_with_apt() {
    let mut s = Setup::new();
    let claimed = match DpkgClaimed::install(&s.work) {
        Ok(c) => c,
        Err(why) => {
            // Only where the package database cannot be touched (a developer's machine without root); CI
            // runs as root.
            eprintln!("skipped: {why}");
            return;
        }
    };
    s.exe = claimed.exe.clone();
    let status = s.install_json(&["status"]);
    let placement = &status["launcher"]["placement"];
    assert_eq!(placement["kind"], "package_manager", "{status}");
    assert_eq!(placement["manager"], "dpkg");
    assert_eq!(placement["package"], DpkgClaimed::PACKAGE);

    s.publish("1.0.0", stamped("9.3.0"));
    let report = s.install_json(&["install"]);
    assert_eq!(
        report["installed_version"], "1.0.0",
        "the backend's update stands"
    );
    assert_eq!(report["launcher"]["outcome"], "refused", "{report}");
    assert!(
        report["launcher"]["reason"].as_str().unwrap().contains("dpkg"),
        "{report}"
    );
    assert!(
        report["launcher"]["advice"]
            .as_str()
            .unwrap()
            .contains(&format!("apt install --only-upgrade {}", DpkgClaimed::PACKAGE)),
        "{report}"
    );
    assert_eq!(s.version(), THIS, "the package's file is untouched");
    let (ok, text, err) = s.cli(&["update", "install", "--version", "1.0.0"]);
    assert!(ok, "{err}");
    assert!(text.contains("already installed"), "{text}");
    let (_, text, _) = s.cli(&["update", "status"]);
    assert!(
        text.contains("does not update itself, this launcher was installed by dpkg"),
        "{text}"
    );
}

/// A launcher that is a small script carrying `version` in its version slot, like a real one: it hands
/// `self-test` to a real launcher stamped `version` (kept in `work`), so it passes its self-test; started
/// any other way it hands over too when `starts`, else it exits 101 as a launcher that panics at start.
#[cfg(unix)]
fn script_launcher(work: &Path, version: &'static str, starts: bool) -> impl FnOnce(&Path) + use<> {
    let real = work.join(format!("real-{version}"));
    move |to: &Path| {
        use std::os::unix::fs::PermissionsExt;
        stamp_version(Path::new(LAUNCHER), &real, version).unwrap();
        let otherwise = if starts {
            format!("exec '{}' \"$@\"", real.display())
        } else {
            "echo 'thread main panicked: cannot start' >&2; exit 101".to_owned()
        };
        let mut script = format!(
            "#!/bin/sh\ncase \" $* \" in *\" self-test \"*) exec '{}' \"$@\" ;; esac\n{otherwise}\n",
            real.display()
        )
        .into_bytes();
        // Never read by the shell (it ended above); found by the launcher reading this file's version.
        let mut slot = format!("PAI-LAUNCHER-VERSION={version}").into_bytes();
        slot.resize(64, 0);
        script.extend_from_slice(&slot);
        script.push(b'\n');
        std::fs::write(to, script).unwrap();
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// `install/launcher.json`, read from disk (the launcher file may be anything while a test runs).
fn launcher_state(home: &Path) -> Value {
    std::fs::read(home.join("install/launcher.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(unix)]
#[test]
fn a_new_launcher_that_passes_its_self_test_but_cannot_start_is_put_back_and_the_runner_keeps_running() {
    let s = Setup::new();
    let original = std::fs::read(&s.exe).unwrap();
    s.publish("1.0.0", script_launcher(&s.work, "9.2.0", false));
    let log = s.work.join("runner.log");
    let mut child = launcher_at(&s.exe, &s.home)
        .args(["run", "--headless", "--api-port", "0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The first install brings launcher 9.2.0, which answers its self-test but cannot start as the
    // runner is started: it is recorded as failed (or, before the start probe, the runner became it).
    let started = Instant::now();
    while launcher_state(&s.home)["failed"]["1.0.0"].is_null()
        && child.try_wait().unwrap().is_none()
        && started.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let alive = child.try_wait().unwrap().is_none();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(alive, "the runner ended: {:?}\n{}", child.try_wait(), log_text());
    assert!(
        std::fs::read(&s.exe).unwrap() == original,
        "the launcher file is not the one that ran before\n{}",
        log_text()
    );
    let info = wait_for_owner(&s.home, THIS, Duration::from_secs(10));
    assert_eq!(info["pid"].as_u64(), Some(child.id() as u64), "{info}");
    let status = s.install_json(&["status"]);
    let reason = status["launcher"]["failed"]["1.0.0"].as_str().unwrap_or_default();
    assert!(
        reason.contains("run --headless --api-port 0") && reason.contains("exited with status 101"),
        "{status}"
    );
    assert!(reason.contains("put back"), "{status}");
    assert!(status["launcher"]["replacing"].is_null(), "{status}");
    assert_eq!(status["current_version"], "1.0.0", "the backend's update stands");
    assert!(
        !s.home
            .join("install/launcher-undo")
            .join(launcher_file_name())
            .exists(),
        "no copy is left once the previous launcher is back"
    );
    // Still the same runner, still supervising: it did not stop for a restart.
    assert!(child.try_wait().unwrap().is_none());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}\n{}", log_text());
}

/// What a kill -9 right after the new launcher was put at the path leaves (before its test in place): the
/// new launcher there, the previous one's copy in `install/launcher-undo/`, and the intent recorded.
#[cfg(unix)]
fn leave_an_interrupted_replacement(s: &Setup, original: &[u8], to: &str, release: &str) {
    use std::os::unix::fs::PermissionsExt;
    let undo = s.home.join("install/launcher-undo").join(launcher_file_name());
    std::fs::create_dir_all(undo.parent().unwrap()).unwrap();
    std::fs::write(&undo, original).unwrap();
    std::fs::set_permissions(&undo, std::fs::Permissions::from_mode(0o755)).unwrap();
    stamp_version(Path::new(LAUNCHER), &s.exe, to).unwrap();
    let mut state = launcher_state(&s.home);
    if state.is_null() {
        state = serde_json::json!({});
    }
    state["replacing"] = serde_json::json!({
        "from": THIS,
        "to": to,
        "release": release,
        "path": std::fs::canonicalize(&s.exe).unwrap(),
        "app": null,
        "undo": undo,
        "stage": "swapping",
        "at": chrono::Utc::now(),
    });
    std::fs::write(
        s.home.join("install/launcher.json"),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();
}

#[cfg(unix)]
#[test]
fn a_launcher_replacement_killed_before_its_test_in_place_is_undone_by_the_next_start() {
    let s = Setup::new();
    s.publish("1.0.0", stamped(THIS));
    s.install_json(&["install"]);
    s.publish("1.1.0", stamped(THIS));
    s.install_json(&["install"]);
    let _ = s.cli(&["backend", "stop"]);
    let original = std::fs::read(&s.exe).unwrap();

    // The next install (run here by the untested launcher the crash left at the path) puts the previous
    // one back first and records why.
    leave_an_interrupted_replacement(&s, &original, "9.4.0", "1.1.0");
    s.install_json(&["install"]);
    assert!(
        std::fs::read(&s.exe).unwrap() == original,
        "the untested launcher was left in place"
    );
    assert_eq!(s.version(), THIS);
    let status = s.install_json(&["status"]);
    assert!(status["launcher"]["replacing"].is_null(), "{status}");
    assert!(
        status["launcher"]["failed"]["1.1.0"]
            .as_str()
            .unwrap_or_default()
            .contains("the previous launcher (")
            && !s
                .home
                .join("install/launcher-undo")
                .join(launcher_file_name())
                .exists(),
        "{status}"
    );

    // A rollback finishes it the same way before it looks at the launcher to put back.
    leave_an_interrupted_replacement(&s, &original, "9.4.1", "1.2.0");
    let report = s.install_json(&["rollback"]);
    assert_eq!(report["to"], "1.0.0", "{report}");
    assert!(
        std::fs::read(&s.exe).unwrap() == original,
        "the rollback left the untested launcher in place: {report}"
    );
    assert!(launcher_state(&s.home)["replacing"].is_null());
}

/// Writes a launcher into a bundle at the path given.
#[cfg(unix)]
type WriteLauncher = Box<dyn FnOnce(&Path)>;

/// Publishes a signed `version` into the feed, with a delta from each of `delta_from`.
#[cfg(unix)]
fn publish_signed(
    s: &Setup,
    version: &str,
    backend_args: &[&str],
    launcher: Option<WriteLauncher>,
    key: &Path,
    delta_from: &[&str],
) {
    let bundle = s.work.join(format!("bundle-{version}"));
    make_bundle(&bundle, backend_args);
    // A loaded machine must not fail the slow backend's health check: the test is about the crash.
    let agent_json = bundle.join("agent.json");
    let mut agent: Value = serde_json::from_slice(&std::fs::read(&agent_json).unwrap()).unwrap();
    agent["ready_timeout_secs"] = 120.into();
    std::fs::write(&agent_json, serde_json::to_vec_pretty(&agent).unwrap()).unwrap();
    if let Some(launcher) = launcher {
        launcher(&bundle.join(launcher_file_name()));
    }
    personal_ai_agent::pack::pack(&personal_ai_agent::pack::PackOptions {
        version: version.parse().unwrap(),
        platform: personal_ai_agent::platform::Platform::current(),
        bundle_dir: bundle,
        out_dir: s.feed.join(version),
        channel: personal_ai_agent::version::Channel::Stable,
        minisign_key: Some(key.to_path_buf()),
        minisign_password: None,
        published_at: chrono::Utc::now(),
        notes: None,
        also_tar_gz: false,
        delta_from: delta_from.iter().map(|v| s.feed.join(v)).collect(),
    })
    .unwrap();
    personal_ai_agent::sources::feed::write_feed(&s.feed).unwrap();
}

#[cfg(unix)]
#[test]
fn a_crash_in_the_health_window_is_finished_by_the_next_start_signature_launcher_and_downloads_included() {
    let s = Setup::new();
    std::fs::create_dir_all(&s.work).unwrap();
    let (public, secret) = crate::verify::minisign_keypair(&s.work, "release");
    let (ok, _, err) = s.cli(&[
        "update",
        "configure",
        "--json",
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    publish_signed(&s, "1.0.0", &[], None, &secret, &[]);
    s.install_json(&["install"]);
    let _ = s.cli(&["backend", "stop"]);
    // 1.1.0: a backend slow to become healthy (the health window lasts), launcher 9.5.0, a delta from 1.0.0.
    publish_signed(
        &s,
        "1.1.0",
        &["--startup-delay-ms", "6000"],
        Some(Box::new(script_launcher(&s.work, "9.5.0", true))),
        &secret,
        &["1.0.0"],
    );
    let mut child = launcher_at(&s.exe, &s.home)
        .args(["--json", "update", "install"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // In the health window: switched (unproven), the launcher staged, the new backend starting.
    let staging = s.home.join("install/launcher-staging");
    let unproven = s.home.join("install/unproven.json");
    let started = Instant::now();
    while !(staging.exists() && unproven.exists()) && child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never reached the health window"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the install ended before the kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let downloads = s.home.join("downloads");
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(&downloads)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        leftovers().iter().any(|n| n.ends_with(".delta")),
        "the install was to come by a delta: {:?}",
        leftovers()
    );

    // The next start proves 1.1.0 healthy and finishes what the install would have done.
    s.install_json(&["install"]);
    let _ = s.cli(&["backend", "stop"]);
    let status = s.install_json(&["status"]);
    assert_eq!(status["current_version"], "1.1.0", "{status}");
    assert_eq!(status["signed"], true, "{status}");
    assert!(
        status["verification"]["verified_by"]
            .as_str()
            .unwrap_or_default()
            .contains("delta from 1.0.0"),
        "{status}"
    );
    assert_eq!(status["launcher"]["last_replacement"]["to"], "9.5.0", "{status}");
    assert_eq!(s.version(), "9.5.0");
    assert!(!staging.exists(), "the staged launcher is left behind");
    assert!(!unproven.exists());
    assert!(
        !leftovers()
            .iter()
            .any(|n| n.ends_with(".delta") || n.ends_with(".tar.zst")),
        "downloads left behind: {:?}",
        leftovers()
    );
}
