//! Regression tests for the hardening issue: each scenario below fooled, wedged or lost data in the
//! updater before its fix. They run through the binary where the behaviour is user-visible.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use personal_ai_agent::version::Channel;
use serde_json::{Value, json};

use crate::cli_update::{json_of, pai};
use crate::support::{Response, TestServer, make_bundle, temp_home};
use crate::verify::minisign_keypair;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn status(home: &Path) -> Value {
    json_of(&pai(home, None, &["update", "status", "--json"]))
}

/// Packs the example backend as `version` into `feed/<version>/` for this machine, for `channel`, signed
/// with `key` when given, and rewrites the feed document.
fn publish(feed: &Path, work: &Path, version: &str, channel: Channel, key: Option<&Path>) -> PathBuf {
    let bundle = work.join(format!("bundle-{version}-{}", fastrand::u32(..)));
    make_bundle(&bundle, &[]);
    let out = feed.join(version);
    crate::support::pack_bundle(&bundle, &out, version, channel, key);
    personal_ai_agent::sources::feed::write_feed(feed).unwrap();
    out
}

fn configure_feed(home: &Path, feed: &Path) {
    json_of(&pai(
        home,
        None,
        &["update", "configure", "--json", "--feed", feed.to_str().unwrap()],
    ));
}

fn pin_key(home: &Path, public: &Path) {
    json_of(&pai(
        home,
        None,
        &[
            "update",
            "configure",
            "--json",
            "--public-key",
            public.to_str().unwrap(),
        ],
    ));
}

fn client() -> reqwest::blocking::Client {
    personal_ai_agent::http::client().unwrap()
}

// --- 1. What a feed may name ----------------------------------------------------------------------------

#[test]
fn a_feed_fetched_over_the_network_may_not_name_local_files() {
    let doc = json!({"schema": 1, "releases": [{"version": "1.0.0", "assets": [
        {"name": "PersonalAIAgent-linux-x86_64-1.0.0.tar.gz", "size": 10, "url": "file:///dev/zero"}
    ]}]})
    .to_string();
    let server = TestServer::start(move |req| match req.path_only() {
        "/feed.json" => Response::json(200, doc.clone()),
        _ => Response::json(404, "{}"),
    });
    let source =
        personal_ai_agent::sources::feed::FeedSource::new(client(), &format!("{}/feed.json", server.url()))
            .unwrap();
    let err = personal_ai_agent::sources::ReleaseSource::releases(&source)
        .expect_err("a remote feed naming file:///dev/zero must be refused")
        .to_string();
    assert!(err.contains("may only name https://"), "{err}");
}

#[test]
fn a_folder_feed_may_not_read_outside_its_folder_nor_devices() {
    use personal_ai_agent::sources::ReleaseSource;
    let work = temp_home();
    let feed = work.path().join("feed");
    std::fs::create_dir_all(&feed).unwrap();
    std::fs::write(work.path().join("secret.txt"), "not for the feed").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/dev/zero", feed.join("release-manifest.json")).unwrap();
    let doc = json!({"schema": 1, "releases": [{"version": "1.0.0", "assets": [
        {"name": "secret.txt", "size": 16, "url": "../secret.txt"},
        {"name": "release-manifest.json", "size": 0}
    ]}]});
    std::fs::write(feed.join("feed.json"), doc.to_string()).unwrap();
    let source = personal_ai_agent::sources::feed::FeedSource::new(client(), feed.to_str().unwrap()).unwrap();
    let release = source.releases().unwrap().releases.remove(0);
    let outside = source
        .fetch_asset_small(release.asset("secret.txt").unwrap(), 1 << 20)
        .expect_err("a file outside the feed's folder must not be read")
        .to_string();
    assert!(outside.contains("outside the feed's folder"), "{outside}");
    #[cfg(unix)]
    {
        // A link to a device inside the folder: refused at once instead of reading forever.
        let device = source
            .fetch_asset_small(release.asset("release-manifest.json").unwrap(), 1 << 20)
            .expect_err("/dev/zero behind a link must be refused")
            .to_string();
        assert!(device.contains("outside the feed's folder"), "{device}");
    }
}

// --- 2. A damaged config.json -------------------------------------------------------------------------

#[test]
fn a_field_of_the_wrong_type_is_defaulted_alone_and_the_pinned_key_and_source_are_kept() {
    let work = temp_home();
    let home = temp_home();
    let (public, _) = minisign_keypair(work.path(), "k");
    pin_key(home.path(), &public);
    json_of(&pai(
        home.path(),
        None,
        &["update", "configure", "--json", "--repo", "me/agent"],
    ));
    let path = home.path().join("config.json");
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file["backup_count"] = json!("3");
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();

    let out = pai(home.path(), None, &["update", "status", "--json"]);
    let s = json_of(&out);
    assert_eq!(s["public_key_pinned"], true, "the pin was dropped");
    assert_eq!(s["source"], "GitHub repository me/agent");
    assert_eq!(s["backup_count"], 5);
    assert!(
        stderr(&out).contains("backup_count"),
        "not reported: {}",
        stderr(&out)
    );
    // A write keeps the key too.
    json_of(&pai(
        home.path(),
        None,
        &["update", "skip-version", "9.9.9", "--json"],
    ));
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(after["public_key"].is_string(), "{after}");
    assert_eq!(after["github_repo"], "me/agent");
}

#[test]
fn an_unreadable_public_key_stops_updating_and_names_the_line() {
    let home = temp_home();
    let path = home.path().join("config.json");
    std::fs::write(&path, "{\n  \"auto_check\": true,\n  \"public_key\": 42\n}\n").unwrap();
    let out = pai(home.path(), None, &["update", "check"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("line 3") && err.contains("public_key"), "{err}");
    // Nothing may write defaults over it either.
    let skip = pai(home.path(), None, &["update", "skip-version", "1.0.0"]);
    assert!(!skip.status.success(), "a write went through: {}", stderr(&skip));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("\"public_key\": 42")
    );
    // A file that is not JSON but names the key is kept in place, not set aside.
    std::fs::write(&path, "{ \"public_key\": \"RWQ...\", oops }").unwrap();
    let out = pai(home.path(), None, &["update", "check"]);
    assert!(!out.status.success());
    assert!(path.exists(), "the damaged file was moved away");
    assert!(
        stderr(&out).contains("never dropped silently"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn concurrent_writers_never_undo_each_other() {
    let home = temp_home();
    let path = home.path().join("config.json");
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                for j in 0..5 {
                    personal_ai_agent::config::Config::update(&path, |c| {
                        c.skip_versions.push(format!("{i}.{j}.0"));
                        Ok(())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let loaded = personal_ai_agent::config::Config::load(&path).config;
    assert_eq!(loaded.skip_versions.len(), 40, "{:?}", loaded.skip_versions);
}

// --- 3. A pending download under another trust policy ---------------------------------------------------

#[test]
fn an_unsigned_pending_download_is_not_installed_after_a_key_is_pinned() {
    let work = temp_home();
    let home = temp_home();
    let feed = work.path().join("feed");
    publish(&feed, work.path(), "1.0.0", Channel::Stable, None);
    configure_feed(home.path(), &feed);
    let downloaded = json_of(&pai(home.path(), None, &["update", "download", "--json"]));
    assert_eq!(downloaded["downloaded"]["signed"], false);
    let (public, _) = minisign_keypair(work.path(), "k");
    pin_key(home.path(), &public);
    let out = pai(home.path(), None, &["update", "install"]);
    assert!(
        !out.status.success(),
        "the unsigned download was installed under a pinned key"
    );
    assert!(stderr(&out).contains("not signed"), "{}", stderr(&out));
    assert_eq!(status(home.path())["current_version"], Value::Null);
}

// --- 4. Channel binding and replayed manifests ----------------------------------------------------------

#[test]
fn a_stable_client_refuses_a_manifest_signed_for_beta_whatever_the_feed_says() {
    let work = temp_home();
    let home = temp_home();
    let (public, secret) = minisign_keypair(work.path(), "k");
    let feed = work.path().join("feed");
    // A stable-looking version, signed as beta: the unsigned feed calls it a release.
    publish(&feed, work.path(), "1.0.0", Channel::Beta, Some(&secret));
    configure_feed(home.path(), &feed);
    pin_key(home.path(), &public);
    let out = pai(home.path(), None, &["update", "install"]);
    assert!(!out.status.success(), "a beta manifest was installed on stable");
    assert!(
        stderr(&out).contains("signed for the beta channel"),
        "{}",
        stderr(&out)
    );
    json_of(&pai(
        home.path(),
        None,
        &["update", "configure", "--json", "--channel", "beta"],
    ));
    let ok = json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    assert_eq!(ok["installed_version"], "1.0.0");
}

#[test]
fn an_older_signed_manifest_offered_after_a_newer_one_was_seen_is_refused_as_a_replay() {
    let work = temp_home();
    let home = temp_home();
    let (public, secret) = minisign_keypair(work.path(), "k");
    let feed = work.path().join("feed");
    publish(&feed, work.path(), "1.0.0", Channel::Stable, Some(&secret));
    configure_feed(home.path(), &feed);
    pin_key(home.path(), &public);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    publish(&feed, work.path(), "1.1.0", Channel::Stable, Some(&secret));
    // Signatures carry whole seconds: 1.2.0 is signed after 1.1.0.
    std::thread::sleep(Duration::from_millis(1100));
    publish(&feed, work.path(), "1.2.0", Channel::Stable, Some(&secret));
    // The client sees (verifies) 1.2.0, then a mirror serves an old listing without it.
    json_of(&pai(home.path(), None, &["update", "download", "--json"]));
    std::fs::remove_dir_all(feed.join("1.2.0")).unwrap();
    personal_ai_agent::sources::feed::write_feed(&feed).unwrap();
    let out = pai(home.path(), None, &["update", "install"]);
    assert!(!out.status.success(), "a replayed older manifest was installed");
    assert!(stderr(&out).contains("replayed"), "{}", stderr(&out));
    assert_eq!(status(home.path())["current_version"], "1.0.0");
    // Naming the version is an explicit choice.
    let named = json_of(&pai(
        home.path(),
        None,
        &["update", "install", "--version", "1.1.0", "--json"],
    ));
    assert_eq!(named["installed_version"], "1.1.0");
}

// --- 8. Rollback is not undone by the next automatic install --------------------------------------------

#[test]
fn rolling_back_from_a_version_skips_it_until_unskipped() {
    let work = temp_home();
    let home = temp_home();
    let feed = work.path().join("feed");
    publish(&feed, work.path(), "1.0.0", Channel::Stable, None);
    configure_feed(home.path(), &feed);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    publish(&feed, work.path(), "1.1.0", Channel::Stable, None);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));

    let text = pai(home.path(), None, &["update", "rollback"]);
    assert!(text.status.success(), "{}", stderr(&text));
    let said = String::from_utf8_lossy(&text.stdout);
    assert!(said.contains("unskip-version 1.1.0"), "{said}");
    let again = json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    assert_eq!(
        again["installed_version"],
        Value::Null,
        "the rollback was undone: {again}"
    );
    assert_eq!(status(home.path())["current_version"], "1.0.0");

    json_of(&pai(
        home.path(),
        None,
        &["update", "unskip-version", "1.1.0", "--json"],
    ));
    let check = json_of(&pai(home.path(), None, &["update", "check", "--json"]));
    assert_eq!(check["update_available"], true);
    // The JSON form says what was skipped.
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    let report = json_of(&pai(home.path(), None, &["update", "rollback", "--json"]));
    assert_eq!(report["skipped"], "1.1.0");
}

// --- 10. `update install --version V` of the current version --------------------------------------------

#[test]
fn installing_the_current_version_again_is_a_no_op_when_intact_and_a_repair_when_damaged() {
    let work = temp_home();
    let home = temp_home();
    let feed = work.path().join("feed");
    let release = publish(&feed, work.path(), "1.0.0", Channel::Stable, None);
    configure_feed(home.path(), &feed);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));

    // Intact: nothing is downloaded (the archive is not even there any more).
    let archive = std::fs::read_dir(&release)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("PersonalAIAgent-"))
        .unwrap();
    let kept = work.path().join("kept-archive");
    std::fs::rename(&archive, &kept).unwrap();
    let same = json_of(&pai(
        home.path(),
        None,
        &["update", "install", "--version", "1.0.0", "--json"],
    ));
    assert_eq!(same["already_current"], "1.0.0", "{same}");
    std::fs::rename(&kept, &archive).unwrap();

    // Damaged: a file of the install is gone; the supervisor's advice (`update install`) repairs it.
    let backend = home
        .path()
        .join("install/versions/1.0.0/backend")
        .join(format!("agent-backend{}", std::env::consts::EXE_SUFFIX));
    assert!(backend.exists());
    std::fs::remove_file(&backend).unwrap();
    let repaired = json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    assert_eq!(repaired["installed_version"], "1.0.0", "{repaired}");
    assert!(backend.exists(), "the missing file was not put back");
    // Changed content is a damage too, and `--version` repairs it.
    std::fs::write(&backend, b"not the backend").unwrap();
    let again = json_of(&pai(
        home.path(),
        None,
        &["update", "install", "--version", "1.0.0", "--json"],
    ));
    assert_eq!(again["installed_version"], "1.0.0", "{again}");
    assert_ne!(std::fs::read(&backend).unwrap(), b"not the backend");
    assert_eq!(status(home.path())["installed_versions"], json!(["1.0.0"]));
}

// --- 12. An absurd check interval -----------------------------------------------------------------------

#[test]
fn a_huge_check_interval_is_refused_or_defaulted_never_a_panic() {
    let home = temp_home();
    let out = pai(
        home.path(),
        None,
        &["update", "configure", "--check-interval", "1e300"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("between 0 and 8760"), "{}", stderr(&out));
    std::fs::write(
        home.path().join("config.json"),
        r#"{"check_interval_hours": 1e300}"#,
    )
    .unwrap();
    let out = pai(home.path(), None, &["update", "status", "--json"]);
    assert_eq!(json_of(&out)["check_interval_hours"], 24.0);
    let config = personal_ai_agent::config::Config {
        check_interval_hours: 1e300,
        ..Default::default()
    };
    let delay =
        personal_ai_agent::check::next_check_delay(&config, chrono::Utc::now(), &mut fastrand::Rng::new());
    assert!(delay <= Duration::from_secs(25 * 3600));
}

// --- 14. The downloads folder does not grow without end -------------------------------------------------

#[test]
fn superseded_downloads_and_abandoned_partials_are_deleted() {
    let work = temp_home();
    let home = temp_home();
    let feed = work.path().join("feed");
    publish(&feed, work.path(), "1.0.0", Channel::Stable, None);
    configure_feed(home.path(), &feed);
    json_of(&pai(home.path(), None, &["update", "download", "--json"]));
    let downloads = home.path().join("downloads");
    // Two abandoned partial downloads; the newer one may still be resumed.
    std::fs::write(downloads.join("old.tar.gz.part"), b"old").unwrap();
    std::fs::write(downloads.join("old.tar.gz.part.json"), b"{}").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(downloads.join("newer.tar.gz.part"), b"newer").unwrap();
    publish(&feed, work.path(), "1.1.0", Channel::Stable, None);
    let second = json_of(&pai(home.path(), None, &["update", "download", "--json"]));
    assert_eq!(second["downloaded"]["version"], "1.1.0");
    let mut names: Vec<String> = std::fs::read_dir(&downloads)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let archive = second["downloaded"]["asset"].as_str().unwrap().to_owned();
    assert_eq!(
        names,
        vec![archive, "newer.tar.gz.part".to_owned(), "pending.json".to_owned()]
    );
    assert!(status(home.path())["downloads_bytes"].as_u64().unwrap() > 0);
}

// --- 7 and 11. The headless runner ----------------------------------------------------------------------

/// Waits until `cond` holds or `secs` pass.
fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[cfg(unix)]
#[test]
fn the_headless_runner_goes_on_when_recovery_rolled_back_or_the_lock_is_held() {
    use personal_ai_agent::install::Installer;
    let work = temp_home();
    let home = temp_home();
    let feed = work.path().join("feed");
    publish(&feed, work.path(), "1.0.0", Channel::Stable, None);
    configure_feed(home.path(), &feed);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    // An interrupted update to an unhealthy 1.1.0: switched, never proved healthy.
    let bad = work.path().join("bad");
    make_bundle(&bad, &["--fail-health"]);
    let data = home.path().to_path_buf();
    let archive = work.path().join("bad.tar.gz");
    personal_ai_agent::archive::create_archive(
        &bad,
        "bad-root",
        &archive,
        personal_ai_agent::archive::ArchiveKind::TarGz,
    )
    .unwrap();
    let installer = Installer::new(data.join("install"));
    {
        let lock = installer.lock().unwrap();
        installer
            .install_archive(&lock, &archive, &"1.1.0".parse().unwrap())
            .unwrap();
    }
    std::fs::write(
        data.join("install/unproven.json"),
        json!({"version": "1.1.0", "previous": "1.0.0"}).to_string(),
    )
    .unwrap();
    let mut runner = crate::support::launcher_in(home.path())
        .args(["run", "--headless"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let running_1_0_0 = || {
        let v = json_of(&pai(home.path(), None, &["backend", "status", "--json"]));
        v["state"] == "running" && v["version"] == "1.0.0"
    };
    let ok = wait_until(30, running_1_0_0);
    let alive = runner.try_wait().unwrap().is_none();
    unsafe { libc::kill(runner.id() as i32, libc::SIGTERM) };
    let _ = runner.wait();
    let mut log = String::new();
    use std::io::Read;
    runner.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(
        alive && ok,
        "the runner stopped after a successful rollback:\n{log}"
    );
    assert_eq!(status(home.path())["current_version"], "1.0.0");

    // With the install lock held by another process (a CLI install), it starts nothing until that is done:
    // the other process owns the backend meanwhile. Then it starts what is installed.
    let lock = installer.lock().unwrap();
    let mut runner = crate::support::launcher_in(home.path())
        .args(["run", "--headless"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let started_meanwhile = running_1_0_0();
    let alive_meanwhile = runner.try_wait().unwrap().is_none();
    drop(lock);
    let ok = wait_until(30, running_1_0_0);
    let alive = runner.try_wait().unwrap().is_none();
    unsafe { libc::kill(runner.id() as i32, libc::SIGTERM) };
    let _ = runner.wait();
    let mut log = String::new();
    runner.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(
        alive_meanwhile,
        "the runner exited while the lock was held:\n{log}"
    );
    assert!(
        !started_meanwhile,
        "a backend was started under another process's update:\n{log}"
    );
    assert!(log.contains("waiting for it to finish"), "{log}");
    assert!(
        alive && ok,
        "the runner did not start the backend once the lock was free:\n{log}"
    );
}

// --- 10, crash safety of a repair -----------------------------------------------------------------------

const REPAIR_HELPER_ENV: &str = "PAI_TEST_REPAIR_HELPER";

/// Not a test of its own: re-run with `PAI_TEST_REPAIR_HELPER` set, it repairs the current version and
/// dies between moving the damaged folder aside and moving the new copy in.
#[test]
fn repair_helper_child_runs_only_when_asked() {
    let Ok(spec) = std::env::var(REPAIR_HELPER_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let installer =
        personal_ai_agent::install::Installer::new(PathBuf::from(spec["install_dir"].as_str().unwrap()))
            .with_crash_point(personal_ai_agent::install::CrashPoint::Renamed);
    let lock = installer.lock().unwrap();
    installer
        .repair_archive(
            &lock,
            Path::new(spec["archive"].as_str().unwrap()),
            &"1.0.0".parse().unwrap(),
        )
        .unwrap();
    std::process::exit(42);
}

#[test]
fn a_repair_killed_between_its_two_renames_puts_the_old_folder_back() {
    use personal_ai_agent::install::Installer;
    let work = temp_home();
    let bundle = work.path().join("bundle");
    std::fs::create_dir_all(bundle.join("backend")).unwrap();
    std::fs::write(
        bundle.join("agent.json"),
        r#"{"command": ["backend/run"], "version": "1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(bundle.join("backend/run"), b"the backend").unwrap();
    let archive = work.path().join("PersonalAIAgent-1.0.0.tar.gz");
    personal_ai_agent::archive::create_archive(
        &bundle,
        "root",
        &archive,
        personal_ai_agent::archive::ArchiveKind::TarGz,
    )
    .unwrap();
    let version: semver::Version = "1.0.0".parse().unwrap();
    let installer = Installer::new(work.path().join("install"));
    {
        let lock = installer.lock().unwrap();
        installer.install_archive(&lock, &archive, &version).unwrap();
    }
    let file = installer.version_dir(&version).join("backend/run");
    std::fs::remove_file(&file).unwrap();

    let spec = json!({"install_dir": installer.dir(), "archive": archive});
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "hardening::repair_helper_child_runs_only_when_asked",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(REPAIR_HELPER_ENV, spec.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(
        !output.status.success() && output.status.code() != Some(42),
        "the child should have crashed: {:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !installer.version_dir(&version).exists(),
        "the crash point is between the renames"
    );
    installer.recover().unwrap().expect("recovery has work to do");
    assert_eq!(installer.current_version().unwrap(), Some(version.clone()));
    assert!(
        installer.version_dir(&version).join("agent.json").is_file(),
        "the folder current names is missing after recovery"
    );
    // And the repair then succeeds.
    let lock = installer.lock().unwrap();
    installer.repair_archive(&lock, &archive, &version).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"the backend");
    assert!(!installer.dir().join("staging").exists(), "staging left behind");
}

// --- 13. Models of a new bundle never cost the old version its models -----------------------------------

/// Publishes `version` carrying `model.bin` = `model` in its bundle, with a models manifest naming it.
fn publish_with_model(feed: &Path, work: &Path, version: &str, model: &[u8], backend_args: &[&str]) {
    use sha2::Digest;
    let bundle = work.join(format!("bundle-{version}-{}", fastrand::u32(..)));
    make_bundle(&bundle, backend_args);
    let agent_path = bundle.join("agent.json");
    let mut agent: Value = serde_json::from_slice(&std::fs::read(&agent_path).unwrap()).unwrap();
    agent["models_manifest"] = json!("models.json");
    std::fs::write(&agent_path, agent.to_string()).unwrap();
    let manifest = json!({"schema": 1, "models": [{
        "name": "model.bin", "url": "http://127.0.0.1:9/model.bin", "size": model.len(),
        "sha256": hex::encode(sha2::Sha256::digest(model)), "required": true
    }]});
    std::fs::write(bundle.join("models.json"), manifest.to_string()).unwrap();
    std::fs::create_dir_all(bundle.join("models")).unwrap();
    std::fs::write(bundle.join("models/model.bin"), model).unwrap();
    crate::support::pack_bundle(&bundle, &feed.join(version), version, Channel::Stable, None);
    personal_ai_agent::sources::feed::write_feed(feed).unwrap();
}

#[test]
fn a_failed_update_or_a_rollback_leaves_the_old_version_with_its_own_model() {
    let work = temp_home();
    let home = temp_home();
    let feed = work.path().join("feed");
    let live = home.path().join("models/model.bin");
    publish_with_model(&feed, work.path(), "1.0.0", b"model of one", &[]);
    configure_feed(home.path(), &feed);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    assert_eq!(std::fs::read(&live).unwrap(), b"model of one");

    // An unhealthy 1.1.0 with another model: rolled back, and 1.0.0's model is the live one again.
    publish_with_model(&feed, work.path(), "1.1.0", b"model of two!", &["--fail-health"]);
    let failed = pai(home.path(), None, &["update", "install"]);
    assert!(!failed.status.success(), "{}", stderr(&failed));
    assert_eq!(status(home.path())["current_version"], "1.0.0");
    assert_eq!(
        std::fs::read(&live).unwrap(),
        b"model of one",
        "the old version was left with the failed version's model"
    );

    // A healthy 1.2.0 with the new model, then a rollback: each version runs with its own model.
    publish_with_model(&feed, work.path(), "1.2.0", b"model of two!", &[]);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    assert_eq!(std::fs::read(&live).unwrap(), b"model of two!");
    json_of(&pai(home.path(), None, &["update", "rollback", "--json"]));
    assert_eq!(status(home.path())["current_version"], "1.0.0");
    assert_eq!(std::fs::read(&live).unwrap(), b"model of one");
    let models = json_of(&pai(home.path(), None, &["models", "status", "--json"]));
    assert_eq!(models["models"][0]["state"], "present", "{models}");
}

// --- Review findings ------------------------------------------------------------------------------------

#[test]
fn a_truncated_settings_file_never_drops_the_pinned_key() {
    let work = temp_home();
    let home = temp_home();
    let (public, _) = minisign_keypair(work.path(), "k");
    let feed = work.path().join("feed");
    publish(&feed, work.path(), "1.0.0", Channel::Stable, None);
    configure_feed(home.path(), &feed);
    pin_key(home.path(), &public);
    let path = home.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    // Cut off before the trust fields, which come last: none of their names is left in the text.
    std::fs::write(&path, &text[..text.find("\"feed\"").unwrap()]).unwrap();
    let s = status(home.path());
    assert!(s["settings_problem"].is_string(), "{s}");
    let out = pai(home.path(), None, &["update", "install"]);
    assert!(!out.status.success(), "installed without the pinned key");
    assert!(path.exists(), "the damaged file was moved away");
}

#[test]
fn a_backport_signed_after_a_newer_version_was_seen_is_not_a_replay() {
    let work = temp_home();
    let home = temp_home();
    let (public, secret) = minisign_keypair(work.path(), "k");
    let feed = work.path().join("feed");
    publish(&feed, work.path(), "1.0.0", Channel::Stable, Some(&secret));
    configure_feed(home.path(), &feed);
    pin_key(home.path(), &public);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    publish(&feed, work.path(), "1.1.0", Channel::Stable, Some(&secret));
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    json_of(&pai(home.path(), None, &["update", "rollback", "--json"]));
    std::thread::sleep(Duration::from_millis(1100));
    publish(&feed, work.path(), "1.0.5", Channel::Stable, Some(&secret));
    let out = pai(home.path(), None, &["update", "install", "--json"]);
    let report = json_of(&out);
    assert_eq!(report["installed_version"], "1.0.5", "{report}");
}

#[test]
fn with_a_key_pinned_no_checksum_file_is_fetched_and_without_one_only_a_few() {
    let mut assets = vec![
        json!({"name": "PersonalAIAgent-linux-x86_64-1.0.0.tar.gz", "size": 10, "sha256": "00".repeat(32)}),
    ];
    for i in 0..300 {
        assets.push(json!({"name": format!("checksums-{i}.txt"), "size": 1, "url": "c.txt"}));
    }
    let doc = json!({"schema": 1, "releases": [{"version": "1.0.0", "assets": assets}]}).to_string();
    let server = TestServer::start(move |req| match req.path_only() {
        "/feed.json" => Response::json(200, doc.clone()),
        "/c.txt" => Response::bytes(b"not a checksum line\n".to_vec()),
        _ => Response::json(404, "{}"),
    });
    let work = temp_home();
    let home = temp_home();
    let feed_url = format!("{}/feed.json", server.url());
    json_of(&pai(
        home.path(),
        None,
        &["update", "configure", "--json", "--feed", &feed_url],
    ));
    let _ = pai(
        home.path(),
        None,
        &["update", "download", "--platform", "linux-x86_64"],
    );
    let unpinned = server
        .requests()
        .iter()
        .filter(|r| r.path_only() == "/c.txt")
        .count();
    assert!(unpinned <= 8, "{unpinned} checksum files fetched");
    let (public, _) = minisign_keypair(work.path(), "k");
    pin_key(home.path(), &public);
    let _ = pai(
        home.path(),
        None,
        &["update", "download", "--platform", "linux-x86_64"],
    );
    let pinned = server
        .requests()
        .iter()
        .filter(|r| r.path_only() == "/c.txt")
        .count()
        - unpinned;
    assert_eq!(pinned, 0, "checksum files fetched with a key pinned");
}

#[test]
fn a_version_installed_without_a_file_list_is_repaired_when_named_again() {
    let work = temp_home();
    let home = temp_home();
    let feed = work.path().join("feed");
    publish(&feed, work.path(), "1.0.0", Channel::Stable, None);
    configure_feed(home.path(), &feed);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    // As an older launcher left it: no list of files.
    std::fs::remove_file(home.path().join("install/files/1.0.0.json")).unwrap();
    let backend = home
        .path()
        .join("install/versions/1.0.0/backend")
        .join(format!("agent-backend{}", std::env::consts::EXE_SUFFIX));
    std::fs::remove_file(&backend).unwrap();
    // Even a plain `update install` sees the backend's program is gone.
    let plain = json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    assert_eq!(plain["installed_version"], "1.0.0", "{plain}");
    assert!(backend.exists());
    std::fs::remove_file(home.path().join("install/files/1.0.0.json")).unwrap();
    let named = json_of(&pai(
        home.path(),
        None,
        &["update", "install", "--version", "1.0.0", "--json"],
    ));
    assert_eq!(
        named["installed_version"], "1.0.0",
        "unverifiable, so reinstalled: {named}"
    );
    assert!(
        home.path().join("install/files/1.0.0.json").exists(),
        "the file list was not written"
    );
}

#[test]
fn an_update_is_not_started_while_another_process_holds_the_models_folder() {
    let work = temp_home();
    let home = temp_home();
    let feed = work.path().join("feed");
    publish_with_model(&feed, work.path(), "1.0.0", b"model of one", &[]);
    configure_feed(home.path(), &feed);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    publish_with_model(&feed, work.path(), "1.1.0", b"model of two!", &[]);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.path().join("models/.download.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let out = pai(home.path(), None, &["update", "install"]);
    drop(lock);
    assert!(!out.status.success(), "the update went ahead without its models");
    assert!(
        stderr(&out).contains("models folder is in use"),
        "{}",
        stderr(&out)
    );
    assert_eq!(status(home.path())["current_version"], "1.0.0");
    assert_eq!(
        status(home.path())["failed_versions"],
        json!([]),
        "not a failure of 1.1.0"
    );
    let later = json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    assert_eq!(later["installed_version"], "1.1.0");
    assert_eq!(
        std::fs::read(home.path().join("models/model.bin")).unwrap(),
        b"model of two!"
    );
}

#[test]
fn replays_are_older_signatures_of_versions_since_superseded() {
    use personal_ai_agent::updater::{SeenManifest, is_replay};
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let seen = vec![
        SeenManifest {
            version: "1.2.0".parse().unwrap(),
            published_at: at("2026-03-01T00:00:00Z"),
        },
        SeenManifest {
            version: "1.0.5".parse().unwrap(),
            published_at: at("2026-04-01T00:00:00Z"),
        },
    ];
    let v = |s: &str| s.parse::<semver::Version>().unwrap();
    assert!(
        is_replay(&v("1.1.0"), at("2026-02-01T00:00:00Z"), &seen),
        "old and superseded"
    );
    assert!(
        is_replay(&v("1.2.0"), at("2026-02-01T00:00:00Z"), &seen),
        "an older signing of 1.2.0"
    );
    assert!(
        !is_replay(&v("1.1.1"), at("2026-03-15T00:00:00Z"), &seen),
        "signed after 1.2.0, below it"
    );
    assert!(!is_replay(&v("1.0.6"), at("2026-05-01T00:00:00Z"), &seen));
    assert!(
        !is_replay(&v("1.3.0"), at("2026-01-01T00:00:00Z"), &seen),
        "higher than anything seen"
    );
}
