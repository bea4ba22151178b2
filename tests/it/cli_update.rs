//! The `update` command line as scripts use it: the binary, a private home, a local GitHub.

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

use crate::github::api_release;
use crate::support::{Response, TestServer, temp_home};

/// Runs the binary with a private home, the API pointed at `api`, and no ambient GitHub settings.
pub fn pai(home: &Path, api: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = crate::support::launcher_in(home);
    cmd.args(args);
    if let Some(api) = api {
        cmd.env("GITHUB_API_URL", api)
            .env("GITHUB_SERVER_URL", api)
            .env("GITHUB_REPO", "o/r");
    }
    cmd.output().unwrap()
}

pub fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn our_assets(v: &str) -> Vec<String> {
    [
        "linux-x86_64",
        "linux-aarch64",
        "macos-aarch64",
        "macos-x86_64",
        "windows-x86_64",
    ]
    .iter()
    .map(|p| {
        let ext = if p.starts_with("windows") { "zip" } else { "tar.gz" };
        format!("PersonalAIAgent-{p}-{v}.{ext}")
    })
    .chain(["checksums-linux-x86_64.txt".to_owned()])
    .collect()
}

fn github_with(releases: Vec<Value>) -> TestServer {
    let body = Value::Array(releases).to_string();
    TestServer::start(move |req| {
        if req.path_only() == "/repos/o/r/releases" {
            Response::json(200, body.clone()).header("etag", "\"v1\"")
        } else {
            Response::json(404, r#"{"message":"Not Found"}"#)
        }
    })
}

fn release(tag: &str, prerelease: bool) -> Value {
    let v = tag.trim_start_matches('v');
    let names = our_assets(v);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    api_release(tag, prerelease, false, &refs)
}

#[test]
fn check_with_nothing_installed_offers_the_newest_stable_release_for_the_asked_platform() {
    let server = github_with(vec![
        release("v1.1.0", false),
        release("v1.2.0-beta.1", true),
        release("v1.0.0", false),
    ]);
    let home = temp_home();
    let out = pai(
        home.path(),
        Some(&server.url()),
        &["update", "check", "--json", "--platform", "linux-aarch64"],
    );
    let v = json_of(&out);
    assert_eq!(v["current_version"], Value::Null);
    assert_eq!(v["channel"], "stable");
    assert_eq!(v["update_available"], true);
    assert_eq!(v["latest"]["version"], "1.1.0");
    assert_eq!(v["latest"]["tag"], "v1.1.0");
    assert!(v["latest"]["notes"].as_str().unwrap().contains("notes of v1.1.0"));
    assert!(v["latest"]["published_at"].is_string());
    assert_eq!(
        v["latest"]["asset"]["name"],
        "PersonalAIAgent-linux-aarch64-1.1.0.tar.gz"
    );
    assert!(v["latest"]["asset"]["size"].is_u64());
    assert!(
        v["latest"]["asset"]["url"]
            .as_str()
            .unwrap()
            .ends_with("PersonalAIAgent-linux-aarch64-1.1.0.tar.gz")
    );
}

#[test]
fn the_json_flag_is_accepted_before_the_subcommand_and_the_beta_channel_sees_betas() {
    let server = github_with(vec![release("v1.1.0", false), release("v1.2.0-beta.1", true)]);
    let home = temp_home();
    let out = pai(
        home.path(),
        Some(&server.url()),
        &[
            "--json",
            "update",
            "check",
            "--channel",
            "beta",
            "--platform",
            "windows-x86_64",
        ],
    );
    let v = json_of(&out);
    assert_eq!(v["latest"]["version"], "1.2.0-beta.1");
    assert_eq!(
        v["latest"]["asset"]["name"],
        "PersonalAIAgent-windows-x86_64-1.2.0-beta.1.zip"
    );
}

#[test]
fn a_platform_without_a_build_gets_no_asset_and_a_note() {
    let server = github_with(vec![api_release(
        "v1.1.0",
        false,
        false,
        &["PersonalAIAgent-linux-x86_64-1.1.0.tar.gz"],
    )]);
    let home = temp_home();
    let v = json_of(&pai(
        home.path(),
        Some(&server.url()),
        &["update", "check", "--json", "--platform", "macos-aarch64"],
    ));
    assert_eq!(v["update_available"], false);
    assert_eq!(v["latest"]["asset"], Value::Null);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("no download for macos-aarch64"),
        "{v}"
    );
}

#[test]
fn a_second_check_costs_one_request_answered_304() {
    let server = TestServer::start(|req| {
        if req.header("if-none-match") == Some("\"v1\"") {
            Response::new(304)
        } else {
            Response::json(200, json!([release("v1.0.0", false)]).to_string()).header("etag", "\"v1\"")
        }
    });
    let home = temp_home();
    // The beta channel skips the stable manifest shortcut, so every request goes to the API.
    let args = [
        "update",
        "check",
        "--json",
        "--channel",
        "beta",
        "--platform",
        "linux-x86_64",
    ];
    json_of(&pai(home.path(), Some(&server.url()), &args));
    let before = server.requests().len();
    let v = json_of(&pai(home.path(), Some(&server.url()), &args));
    assert_eq!(server.requests().len() - before, 1);
    assert_eq!(v["not_modified"], true);
    assert_eq!(v["latest"]["version"], "1.0.0");
}

#[test]
fn a_check_records_last_check_in_the_settings_file() {
    let server = github_with(vec![release("v1.0.0", false)]);
    let home = temp_home();
    json_of(&pai(
        home.path(),
        Some(&server.url()),
        &["update", "check", "--json"],
    ));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("config.json")).unwrap()).unwrap();
    let stamp = config["last_check"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    assert_eq!(
        config.get("github_repo"),
        None,
        "GITHUB_REPO from the environment must not be written back"
    );
}

#[test]
fn failures_exit_non_zero_with_one_line_naming_the_cause_and_the_next_step() {
    let home = temp_home();
    let limited = TestServer::start(|_| {
        Response::json(403, r#"{"message":"API rate limit exceeded"}"#)
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", "1893456000")
    });
    let out = pai(
        home.path(),
        Some(&limited.url()),
        &["update", "check", "--channel", "dev"],
    );
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert_eq!(
        err.trim().lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("rate-limited by GitHub until") && err.contains("GITHUB_TOKEN"),
        "{err}"
    );

    let missing = TestServer::start(|_| Response::json(404, r#"{"message":"Not Found"}"#));
    let out = pai(home.path(), Some(&missing.url()), &["update", "check"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("does not exist, or it is private"),
        "{}",
        stderr_of(&out)
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = pai(
        home.path(),
        Some(&format!("http://127.0.0.1:{port}")),
        &["update", "check", "--channel", "beta"],
    );
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("cannot reach"), "{}", stderr_of(&out));
}

#[test]
fn with_json_an_error_is_a_json_document_too() {
    let home = temp_home();
    let missing = TestServer::start(|_| Response::json(404, "{}"));
    let out = pai(home.path(), Some(&missing.url()), &["update", "check", "--json"]);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"].as_str().unwrap().contains("o/r"));
}

#[test]
fn without_a_repository_the_error_says_how_to_set_one() {
    let home = temp_home();
    let out = pai(home.path(), None, &["update", "check"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("GITHUB_REPO=owner/name"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn configure_and_skip_version_persist_and_status_reports_them() {
    let home = temp_home();
    json_of(&pai(
        home.path(),
        None,
        &[
            "update",
            "configure",
            "--json",
            "--channel",
            "beta",
            "--auto-download",
            "true",
            "--backup-count",
            "2",
            "--check-interval",
            "6",
        ],
    ));
    json_of(&pai(
        home.path(),
        None,
        &["update", "skip-version", "v1.4.0", "--json"],
    ));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["update_channel"], "beta");
    assert_eq!(config["auto_download"], true);
    assert_eq!(config["backup_count"], 2);
    assert_eq!(config["skip_versions"], json!(["1.4.0"]));
    let status = json_of(&pai(home.path(), None, &["update", "status", "--json"]));
    assert_eq!(status["current_version"], Value::Null);
    assert_eq!(status["installed_versions"], json!([]));
    assert_eq!(status["channel"], "beta");
}

#[test]
fn bad_values_are_refused_with_the_expected_form() {
    let home = temp_home();
    let out = pai(home.path(), None, &["update", "skip-version", "latest"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("semver"), "{}", stderr_of(&out));
    let out = pai(home.path(), None, &["update", "check", "--platform", "amiga-68k"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(stderr_of(&out).contains("<os>-<arch>"), "{}", stderr_of(&out));
}

#[test]
fn a_corrupt_settings_file_stays_in_place_and_stops_updates_until_fixed() {
    // It may have held a pinned key: it is neither set aside nor replaced by defaults.
    let home = temp_home();
    let path = home.path().join("config.json");
    std::fs::write(&path, "{{{ nope").unwrap();
    let out = pai(home.path(), None, &["update", "status", "--json"]);
    let status = json_of(&out);
    let problem = status["settings_problem"].as_str().unwrap_or_default().to_owned();
    assert!(
        problem.contains("line 1") && problem.contains("delete the file"),
        "{status}"
    );
    let check = pai(home.path(), None, &["update", "check"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        stderr_of(&check).contains("never dropped silently"),
        "{}",
        stderr_of(&check)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{{{ nope");
    std::fs::remove_file(&path).unwrap();
    json_of(&pai(home.path(), None, &["update", "status", "--json"]));
}

#[test]
fn a_data_folder_is_chosen_before_the_first_install_and_never_mixed_with_other_files() {
    let home = temp_home();
    let disk = temp_home();
    std::fs::write(disk.path().join("my notes.txt"), "mine").unwrap();
    let out = pai(
        home.path(),
        None,
        &[
            "--json",
            "update",
            "configure",
            "--data-dir",
            disk.path().to_str().unwrap(),
        ],
    );
    let saved = json_of(&out);
    // A folder holding the user's files gets a folder of the launcher's own inside.
    let data = disk.path().join("PersonalAIAgent");
    assert_eq!(saved["data_dir"], data.to_str().unwrap());
    assert!(data.join(".personal-ai-agent-data").is_file());
    assert_eq!(
        std::fs::read_to_string(disk.path().join("my notes.txt")).unwrap(),
        "mine"
    );
    let status = json_of(&pai(home.path(), None, &["--json", "update", "status"]));
    assert_eq!(status["home"]["data_dir"], data.to_str().unwrap());

    // Another launcher owning the install: refused, naming it.
    let paths = personal_ai_agent::paths::Paths::resolve(Some(home.path())).unwrap();
    let owner = personal_ai_agent::owner::Owner::take(&paths).unwrap();
    owner
        .publish(&personal_ai_agent::owner::ApiInfo {
            port: 1,
            pid: std::process::id(),
            version: "0.0.0".into(),
            url: "http://127.0.0.1:1".into(),
            token_file: home.path().join("api-token"),
        })
        .unwrap();
    let refused = pai(home.path(), None, &["update", "configure", "--data-dir", ""]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "--data-dir cannot change while the launcher with pid {} owns this install",
            std::process::id()
        )),
        "{stderr}"
    );
    drop(owner);
    // Back to the default data folder (nothing is installed).
    let saved = json_of(&pai(
        home.path(),
        None,
        &["--json", "update", "configure", "--data-dir", ""],
    ));
    assert!(saved.get("data_dir").is_none(), "{saved}");
}

#[test]
fn uninstall_says_what_it_removes_waits_for_a_yes_stops_the_backend_and_removes_it() {
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
    std::fs::create_dir_all(h.join("models")).unwrap();
    std::fs::write(h.join("models/model.bin"), vec![7u8; 4096]).unwrap();

    // Without a terminal and without --yes: what it would remove, and nothing removed.
    let asked = pai(h, None, &["uninstall"]);
    assert!(!asked.status.success());
    let stderr = String::from_utf8_lossy(&asked.stderr);
    assert!(
        stderr.contains("This removes:") && stderr.contains("installed versions"),
        "{stderr}"
    );
    assert!(stderr.contains("confirm with --yes"), "{stderr}");
    assert!(h.join("install").is_dir());

    // A backend running in the background is stopped first (its launcher ends with it).
    let started = pai(h, None, &["backend", "start", "--detach"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let kept = json_of(&pai(h, None, &["--json", "uninstall", "--keep-data", "--yes"]));
    assert_eq!(kept["removed"], true, "{kept}");
    let paths = personal_ai_agent::paths::Paths::under(h);
    assert!(!personal_ai_agent::owner::is_owned(&paths));
    assert!(!h.join("install").exists() && !h.join("downloads").exists());
    assert!(
        h.join("models/model.bin").is_file(),
        "--keep-data keeps the models"
    );
    assert!(h.join("config.json").is_file(), "--keep-data keeps the settings");

    let all = json_of(&pai(h, None, &["--json", "uninstall", "--yes"]));
    assert_eq!(all["removed"], true, "{all}");
    assert!(all["total_bytes"].as_u64().unwrap() >= 4096, "{all}");
    assert!(!h.join("models").exists() && !h.join("config.json").exists());
    let again = pai(h, None, &["uninstall"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("Nothing to remove"));
}

#[test]
fn uninstall_removes_nothing_by_name_from_a_folder_the_launcher_did_not_make() {
    // The user's own folder, given as --home: its `downloads` is the user's.
    let home = temp_home();
    let h = home.path();
    std::fs::create_dir_all(h.join("downloads")).unwrap();
    std::fs::write(h.join("downloads/holiday.jpg"), "photo").unwrap();
    json_of(&pai(
        h,
        None,
        &["--json", "update", "configure", "--channel", "beta"],
    ));
    assert!(
        !h.join(".personal-ai-agent-data").exists(),
        "a folder with files is not claimed"
    );
    let out = pai(h, None, &["uninstall", "--yes"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a folder the launcher made"), "{stderr}");
    assert!(
        stderr.contains(&h.join("downloads").display().to_string()),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(h.join("downloads/holiday.jpg")).unwrap(),
        "photo"
    );
    assert!(h.join("config.json").is_file());
}
