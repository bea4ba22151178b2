//! Model files: interrupted and resumed, corrupted and rejected, present and skipped, adopted from a
//! bundle, kept for the other installed versions in the store and put back on a switch, and the command
//! line's consent rule — all against a local server and private home folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use personal_ai_agent::download::{CancelToken, RetryPolicy};
use personal_ai_agent::models::{
    self, DownloadReport, ModelOutcome, ModelState, ModelsManifest, adopt_bundled_models,
};
use personal_ai_agent::paths::Paths;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{Response, TestServer, serve_bytes, temp_home};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_personal-ai-agent");
const MODEL: &str = "tiny-model.Q4_K_M.gguf";

/// Bytes that do not repeat, so a resume from the wrong offset would fail the hash.
fn model_bytes(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..len).map(|_| rng.u8(..)).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn manifest_json(server: &TestServer, data: &[u8]) -> serde_json::Value {
    json!({
        "schema": 1,
        "models": [{
            "name": MODEL,
            "url": format!("{}/models/{MODEL}", server.url()),
            "size": data.len(),
            "sha256": sha256_hex(data),
            "description": "a small stand-in for Mistral 7B"
        }]
    })
}

fn manifest(server: &TestServer, data: &[u8]) -> ModelsManifest {
    ModelsManifest::parse(&manifest_json(server, data).to_string(), "test manifest", None).unwrap()
}

fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        ..RetryPolicy::default()
    }
}

/// Plans and downloads everything missing, as the CLI does after consent.
fn download_all(paths: &Paths, manifest: &ModelsManifest, policy: &RetryPolicy) -> DownloadReport {
    let client = personal_ai_agent::http::client().unwrap();
    let plan = models::plan(paths, manifest, true, &mut |_| {}).unwrap();
    models::download_missing(
        &client,
        paths,
        manifest,
        &plan,
        policy,
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap()
}

fn state(paths: &Paths, manifest: &ModelsManifest) -> ModelState {
    models::status(paths, manifest).unwrap().remove(0).state
}

fn range_requests(server: &TestServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_owned))
        .collect()
}

#[test]
fn an_interrupted_model_download_is_resumed_with_a_range_request_and_verified() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let data = Arc::new(model_bytes(600_000));
    let gets = Arc::new(AtomicUsize::new(0));
    let server = {
        let (data, gets) = (data.clone(), gets.clone());
        TestServer::start(move |req| {
            let response = serve_bytes(req, &data, "\"v1\"");
            if gets.fetch_add(1, Ordering::SeqCst) == 0 {
                response.drop_after(200_000)
            } else {
                response
            }
        })
    };
    let manifest = manifest(&server, &data);

    // One try only: the connection drops and the run ends with the partial file kept.
    let first = download_all(&paths, &manifest, &quick_retries(1));
    assert!(
        matches!(first.models[0].outcome, ModelOutcome::Failed { .. }),
        "{first:?}"
    );
    let ModelState::Partial { done } = state(&paths, &manifest) else {
        panic!("expected a partial file, got {:?}", state(&paths, &manifest));
    };
    assert!(done > 0 && done <= 200_000, "{done}");
    let plan = models::plan(&paths, &manifest, false, &mut |_| {}).unwrap();
    assert_eq!(
        plan.bytes_needed,
        data.len() as u64 - done,
        "only the rest is counted"
    );

    let second = download_all(&paths, &manifest, &quick_retries(3));
    assert_eq!(
        second.models[0].outcome,
        ModelOutcome::Fetched {
            bytes: data.len() as u64 - done,
            resumed_from: done
        }
    );
    assert_eq!(range_requests(&server), [format!("bytes={done}-")]);
    assert_eq!(std::fs::read(paths.models_dir().join(MODEL)).unwrap(), *data);
    assert_eq!(state(&paths, &manifest), ModelState::Present);
}

#[test]
fn a_corrupted_model_is_rejected_leaves_no_file_and_is_fetched_again_next_time() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let data = Arc::new(model_bytes(300_000));
    let serve_corrupt = Arc::new(AtomicBool::new(true));
    let server = {
        let (data, serve_corrupt) = (data.clone(), serve_corrupt.clone());
        TestServer::start(move |req| {
            if serve_corrupt.load(Ordering::SeqCst) {
                let mut bad = data.to_vec();
                bad[150_000] ^= 0xff;
                serve_bytes(req, &bad, "\"bad\"")
            } else {
                serve_bytes(req, &data, "\"good\"")
            }
        })
    };
    let manifest = manifest(&server, &data);

    let first = download_all(&paths, &manifest, &quick_retries(1));
    let ModelOutcome::Failed { error } = &first.models[0].outcome else {
        panic!("a corrupt file was accepted: {first:?}");
    };
    assert!(
        error.contains("SHA256") && error.contains(&sha256_hex(&data)),
        "{error}"
    );
    let leftovers: Vec<PathBuf> = std::fs::read_dir(paths.models_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(MODEL))
        .collect();
    assert!(
        leftovers.is_empty(),
        "nothing of the bad download stays: {leftovers:?}"
    );
    assert_eq!(state(&paths, &manifest), ModelState::Missing);

    serve_corrupt.store(false, Ordering::SeqCst);
    let second = download_all(&paths, &manifest, &quick_retries(1));
    assert!(matches!(
        second.models[0].outcome,
        ModelOutcome::Fetched { resumed_from: 0, .. }
    ));
    assert_eq!(state(&paths, &manifest), ModelState::Present);
}

#[test]
fn a_present_and_verified_model_is_not_requested_again() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let data = Arc::new(model_bytes(100_000));
    let server = {
        let data = data.clone();
        TestServer::start(move |req| serve_bytes(req, &data, "\"v1\""))
    };
    let manifest = manifest(&server, &data);
    download_all(&paths, &manifest, &quick_retries(1));
    let requests_after_first = server.requests().len();
    assert!(requests_after_first > 0);

    let plan = models::plan(&paths, &manifest, true, &mut |_| {}).unwrap();
    assert!(plan.is_empty() && plan.bytes_needed == 0, "{plan:?}");
    let again = download_all(&paths, &manifest, &quick_retries(1));
    assert_eq!(again.models[0].outcome, ModelOutcome::AlreadyPresent);
    assert_eq!(again.bytes_downloaded, 0);
    assert_eq!(
        server.requests().len(),
        requests_after_first,
        "no request for a present model"
    );
}

#[test]
fn a_model_copied_in_by_hand_is_hashed_once_and_not_downloaded() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let data = model_bytes(100_000);
    let server = TestServer::start(|_| Response::new(500));
    let manifest = manifest(&server, &data);
    std::fs::create_dir_all(paths.models_dir()).unwrap();
    std::fs::write(paths.models_dir().join(MODEL), &data).unwrap();
    assert_eq!(state(&paths, &manifest), ModelState::Unverified);

    let mut checked = 0;
    let plan = models::plan(&paths, &manifest, true, &mut |_| checked += 1).unwrap();
    assert!(checked > 0, "the file was hashed");
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(state(&paths, &manifest), ModelState::Present);
    assert!(server.requests().is_empty());
}

#[test]
fn bundled_models_are_moved_into_the_shared_folder_and_never_fetched() {
    let home = temp_home();
    let paths = Paths::under(home.path().join("data"));
    let data = model_bytes(50_000);
    let server = TestServer::start(|_| Response::new(500));
    let manifest = manifest(&server, &data);
    let bundle = home.path().join("install/versions/1.2.0");
    std::fs::create_dir_all(bundle.join("models")).unwrap();
    std::fs::write(bundle.join("models").join(MODEL), &data).unwrap();

    let adopted = adopt_bundled_models(&bundle, &paths, &manifest, &[]).unwrap();
    assert_eq!(adopted, [MODEL]);
    assert!(
        !bundle.join("models").join(MODEL).exists(),
        "moved, not duplicated"
    );
    assert_eq!(state(&paths, &manifest), ModelState::Present);
    let report = download_all(&paths, &manifest, &quick_retries(1));
    assert_eq!(report.models[0].outcome, ModelOutcome::AlreadyPresent);
    assert!(server.requests().is_empty());
}

fn launcher(home: &Path, args: &[&str]) -> Output {
    Command::new(LAUNCHER)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("PAI_HOME")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_download_command_refuses_without_consent_and_fetches_with_yes() {
    let home = temp_home();
    let data = Arc::new(model_bytes(80_000));
    let server = {
        let data = data.clone();
        TestServer::start(move |req| serve_bytes(req, &data, "\"v1\""))
    };
    let manifest_file = home.path().join("models.json");
    std::fs::write(&manifest_file, manifest_json(&server, &data).to_string()).unwrap();
    let manifest_arg = manifest_file.to_str().unwrap();

    let refused = launcher(home.path(), &["models", "download", "--manifest", manifest_arg]);
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("--yes") && stderr.contains(&models::human_bytes(80_000)),
        "{stderr}"
    );
    assert!(
        server.requests().is_empty(),
        "nothing was fetched without consent"
    );

    let agreed = launcher(
        home.path(),
        &[
            "models",
            "download",
            "--manifest",
            manifest_arg,
            "--yes",
            "--json",
        ],
    );
    assert!(agreed.status.success(), "{}", text(&agreed.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&agreed.stdout).unwrap();
    assert_eq!(doc["fetched"], 1, "{doc}");
    assert_eq!(doc["bytes_downloaded"], data.len());
    assert_eq!(doc["models"][0]["result"], "fetched");
    assert_eq!(
        std::fs::read(home.path().join("models").join(MODEL)).unwrap(),
        *data
    );

    let status = launcher(
        home.path(),
        &["models", "status", "--manifest", manifest_arg, "--json"],
    );
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["ready"], true, "{doc}");
    assert_eq!(doc["models"][0]["state"], "present");
}

#[test]
fn the_manifest_setting_in_config_is_used_when_no_manifest_is_given() {
    let home = temp_home();
    let data = model_bytes(1_000);
    let server = TestServer::start(|_| Response::new(500));
    std::fs::write(
        home.path().join("my-models.json"),
        manifest_json(&server, &data).to_string(),
    )
    .unwrap();
    std::fs::write(
        home.path().join("config.json"),
        json!({"models_manifest": "my-models.json"}).to_string(),
    )
    .unwrap();

    let status = launcher(home.path(), &["models", "status"]);
    let stdout = text(&status.stdout);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(stdout.contains("missing") && stdout.contains(MODEL), "{stdout}");
}

#[test]
fn without_any_manifest_the_commands_say_how_to_give_one() {
    let home = temp_home();
    let status = launcher(home.path(), &["models", "status"]);
    let stderr = text(&status.stderr);
    assert!(!status.status.success());
    assert!(
        stderr.contains("--manifest") && stderr.contains("models_manifest"),
        "{stderr}"
    );
}

#[test]
fn an_installed_release_with_models_names_its_manifest_and_its_models_are_adopted() {
    use personal_ai_agent::archive::{ArchiveKind, create_archive};
    use personal_ai_agent::install::Installer;

    let home = temp_home();
    let paths = Paths::under(home.path().join("data"));
    let data = model_bytes(40_000);
    let server = TestServer::start(|_| Response::new(500));
    let bundle = home.path().join("bundle");
    std::fs::create_dir_all(bundle.join("backend")).unwrap();
    std::fs::create_dir_all(bundle.join("models")).unwrap();
    std::fs::write(
        bundle.join("agent.json"),
        json!({
            "version": "1.2.0",
            "command": ["backend/agent-backend"],
            "health_url": "http://127.0.0.1:{port}/health",
            "models_manifest": "models.json"
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(bundle.join("backend/agent-backend"), "#!/bin/sh\n").unwrap();
    std::fs::write(
        bundle.join("models.json"),
        manifest_json(&server, &data).to_string(),
    )
    .unwrap();
    std::fs::write(bundle.join("models").join(MODEL), &data).unwrap();
    let archive = home.path().join("PersonalAIAgent-linux-x86_64-1.2.0.tar.gz");
    create_archive(
        &bundle,
        "PersonalAIAgent-linux-x86_64-1.2.0",
        &archive,
        ArchiveKind::TarGz,
    )
    .unwrap();
    let installer = Installer::new(paths.install_dir());
    let lock = installer.lock().unwrap();
    installer
        .install_archive(&lock, &archive, &semver::Version::new(1, 2, 0))
        .unwrap();
    drop(lock);
    let current = installer.current_dir().unwrap().unwrap();

    let location = models::locate(&paths, None).unwrap();
    assert_eq!(
        location,
        models::ManifestLocation::File(current.join("models.json"))
    );
    assert_eq!(ModelsManifest::load(&location).unwrap().models[0].name, MODEL);
    assert_eq!(models::adopt_models_of_bundle(&current, &paths).unwrap(), [MODEL]);
    assert!(!current.join("models").join(MODEL).exists());

    let status = launcher(&paths.data_dir, &["models", "status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["models"][0]["state"], "present", "{doc}");
    let download = launcher(&paths.data_dir, &["models", "download", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&download.stdout).unwrap();
    assert_eq!(doc["models"][0]["result"], "already_present", "{doc}");
    assert!(
        server.requests().is_empty(),
        "nothing fetched: the release carried the model"
    );
}

#[test]
fn a_cancelled_run_stops_before_the_next_model_and_a_later_run_finishes() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let first = Arc::new(model_bytes(2_000_000));
    let second = Arc::new(model_bytes(1_000));
    let server = {
        let (first, second) = (first.clone(), second.clone());
        TestServer::start(move |req| match req.path_only() {
            "/models/first.bin" => serve_bytes(req, &first, "\"a\""),
            _ => serve_bytes(req, &second, "\"b\""),
        })
    };
    let entry = |name: &str, data: &[u8]| json!({"name": name, "url": format!("{}/models/{name}", server.url()), "size": data.len(), "sha256": sha256_hex(data)});
    let doc = json!({"schema": 1, "models": [entry("first.bin", &first), entry("second.bin", &second)]});
    let manifest = ModelsManifest::parse(&doc.to_string(), "two models", None).unwrap();
    let client = personal_ai_agent::http::client().unwrap();
    let plan = models::plan(&paths, &manifest, false, &mut |_| {}).unwrap();
    let cancel = CancelToken::new();
    let report = models::download_missing(
        &client,
        &paths,
        &manifest,
        &plan,
        &quick_retries(1),
        &cancel,
        &mut |event| {
            if let models::ModelsEvent::Downloading { .. } = event {
                cancel.cancel();
            }
        },
    )
    .unwrap();
    assert!(report.cancelled, "{report:?}");
    assert_eq!(report.models[0].outcome, ModelOutcome::Cancelled);
    assert_eq!(report.models[1].outcome, ModelOutcome::NotStarted);
    assert!(!report.all_present());
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.path_only() == "/models/second.bin"),
        "the second model was not started after the cancel"
    );

    let finished = download_all(&paths, &manifest, &quick_retries(1));
    assert!(finished.all_present(), "{finished:?}");
    assert_eq!(
        std::fs::read(paths.models_dir().join("first.bin")).unwrap(),
        *first
    );
}

#[test]
fn a_manifest_served_over_http_resolves_relative_model_urls_against_itself() {
    let home = temp_home();
    let data = Arc::new(model_bytes(5_000));
    let doc = json!({"schema": 1, "models": [
        {"name": MODEL, "url": MODEL, "size": data.len(), "sha256": sha256_hex(&data)}
    ]})
    .to_string();
    let server = {
        let data = data.clone();
        TestServer::start(move |req| match req.path_only() {
            "/mirror/models.json" => Response::json(200, doc.clone()),
            path if path == format!("/mirror/{MODEL}") => serve_bytes(req, &data, "\"m\""),
            _ => Response::new(404),
        })
    };
    let url = format!("{}/mirror/models.json", server.url());
    let out = launcher(
        home.path(),
        &["models", "download", "--manifest", &url, "--yes", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(home.path().join("models").join(MODEL)).unwrap(),
        *data
    );
}

#[test]
fn a_background_download_reports_progress_on_a_channel_and_returns_its_report() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let data = Arc::new(model_bytes(500_000));
    let server = {
        let data = data.clone();
        TestServer::start(move |req| serve_bytes(req, &data, "\"v1\""))
    };
    let manifest = manifest(&server, &data);
    let plan = models::plan(&paths, &manifest, false, &mut |_| {}).unwrap();
    let notified = Arc::new(AtomicUsize::new(0));
    let (handle, events) = {
        let notified = notified.clone();
        models::spawn_download_missing(
            personal_ai_agent::http::client().unwrap(),
            paths.clone(),
            manifest.clone(),
            plan,
            quick_retries(1),
            CancelToken::new(),
            move || {
                notified.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap()
    };
    let report = handle.join().unwrap().unwrap();
    let events: Vec<_> = events.try_iter().collect();
    assert!(matches!(events.last(), Some(models::ModelsEvent::Finished(line)) if line.name == MODEL));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, models::ModelsEvent::Downloading { .. }))
    );
    assert_eq!(
        notified.load(Ordering::SeqCst),
        events.len(),
        "one notification per event"
    );
    assert_eq!(report.fetched, 1);
    assert_eq!(state(&paths, &manifest), ModelState::Present);
}

// ---- the store: installed versions that name one model file with different content ----

const SHARED: &str = "model.bin";

/// A version installed as the updater leaves it: `<data>/install/versions/<version>/` with an `agent.json`
/// naming `models.json`, which lists `models` (served by nobody: nothing here downloads). With `bundled`,
/// the bundle also carries the files under `models/`, as a release built "with models" does.
fn install_version(paths: &Paths, version: &str, models: &[(&str, &[u8])], bundled: bool) -> PathBuf {
    let dir = paths.install_dir().join("versions").join(version);
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::fs::write(
        dir.join("agent.json"),
        json!({
            "command": ["backend/agent-backend"],
            "health_url": "http://127.0.0.1:{port}/health",
            "models_manifest": "models.json"
        })
        .to_string(),
    )
    .unwrap();
    let entries: Vec<_> = models
        .iter()
        .map(|(name, data)| {
            json!({"name": name, "url": format!("https://models.invalid/{name}"), "size": data.len(), "sha256": sha256_hex(data)})
        })
        .collect();
    std::fs::write(
        dir.join("models.json"),
        json!({"schema": 1, "models": entries}).to_string(),
    )
    .unwrap();
    if bundled {
        for (name, data) in models {
            std::fs::write(dir.join("models").join(name), data).unwrap();
        }
    }
    dir
}

fn manifest_of(bundle_dir: &Path) -> ModelsManifest {
    ModelsManifest::load(&models::ManifestLocation::File(bundle_dir.join("models.json"))).unwrap()
}

fn stored(paths: &Paths, data: &[u8]) -> PathBuf {
    paths.models_dir().join(models::STORE_DIR).join(sha256_hex(data))
}

fn store_listing(paths: &Paths) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(paths.models_dir().join(models::STORE_DIR)) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn adopting_a_new_model_keeps_the_old_one_for_the_old_version_and_activating_it_puts_it_back() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let (old_data, new_data) = (model_bytes(3_000), model_bytes(4_000));
    let old = install_version(&paths, "1.0.0", &[(SHARED, &old_data)], true);
    assert_eq!(models::adopt_models_of_bundle(&old, &paths).unwrap(), [SHARED]);
    let new = install_version(&paths, "1.1.0", &[(SHARED, &new_data)], true);

    // The new version proved healthy: its model takes the name, the old content is kept for 1.0.0.
    let adopted = models::adopt_models_of_bundle(&new, &paths).unwrap();
    assert_eq!(adopted, [SHARED]);
    assert_eq!(std::fs::read(paths.models_dir().join(SHARED)).unwrap(), new_data);
    assert_eq!(
        std::fs::read(stored(&paths, &old_data)).unwrap(),
        old_data,
        "never deleted"
    );
    assert_eq!(state(&paths, &manifest_of(&new)), ModelState::Present);
    assert!(!new.join("models").join(SHARED).exists(), "moved, not copied");

    // Back to 1.0.0 (a rollback): its model is put back, the new one kept for 1.1.0.
    let switched = models::activate_models_for(&old, &paths, std::slice::from_ref(&new)).unwrap();
    assert_eq!(switched, [SHARED]);
    assert_eq!(std::fs::read(paths.models_dir().join(SHARED)).unwrap(), old_data);
    assert_eq!(std::fs::read(stored(&paths, &new_data)).unwrap(), new_data);
    assert!(!stored(&paths, &old_data).exists(), "live or stored, never both");
    assert_eq!(
        state(&paths, &manifest_of(&old)),
        ModelState::Present,
        "the record follows the move: no re-hash needed"
    );

    // And forward again: nothing to download, nothing lost.
    assert_eq!(
        models::activate_models_for(&new, &paths, std::slice::from_ref(&old)).unwrap(),
        [SHARED]
    );
    assert_eq!(std::fs::read(paths.models_dir().join(SHARED)).unwrap(), new_data);
    assert_eq!(state(&paths, &manifest_of(&new)), ModelState::Present);
    assert_eq!(store_listing(&paths), [sha256_hex(&old_data)]);
}

#[test]
fn a_live_model_another_version_needs_is_kept_even_when_the_record_is_lost() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let (old_data, new_data) = (model_bytes(3_000), model_bytes(3_000 + 1));
    let old = install_version(&paths, "1.0.0", &[(SHARED, &old_data)], false);
    std::fs::create_dir_all(paths.models_dir()).unwrap();
    std::fs::write(paths.models_dir().join(SHARED), &old_data).unwrap();
    let new = install_version(&paths, "1.1.0", &[(SHARED, &new_data)], true);

    models::adopt_bundled_models(&new, &paths, &manifest_of(&new), &[old]).unwrap();
    assert_eq!(
        std::fs::read(stored(&paths, &old_data)).unwrap(),
        old_data,
        "hashed, found needed, kept"
    );
    assert_eq!(std::fs::read(paths.models_dir().join(SHARED)).unwrap(), new_data);
}

#[test]
fn a_model_no_other_version_needs_is_replaced_without_a_stored_copy() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let (old_data, new_data) = (model_bytes(2_000), model_bytes(2_500));
    std::fs::create_dir_all(paths.models_dir()).unwrap();
    std::fs::write(paths.models_dir().join(SHARED), &old_data).unwrap();
    let new = install_version(&paths, "1.1.0", &[(SHARED, &new_data)], true);

    models::adopt_models_of_bundle(&new, &paths).unwrap();
    assert_eq!(std::fs::read(paths.models_dir().join(SHARED)).unwrap(), new_data);
    assert!(store_listing(&paths).is_empty(), "{:?}", store_listing(&paths));
}

#[test]
fn identical_model_content_across_versions_is_stored_once() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let data = model_bytes(5_000);
    let old = install_version(&paths, "1.0.0", &[(SHARED, &data)], true);
    models::adopt_models_of_bundle(&old, &paths).unwrap();
    let new = install_version(&paths, "1.1.0", &[(SHARED, &data)], true);

    assert!(models::adopt_models_of_bundle(&new, &paths).unwrap().is_empty());
    assert!(
        !new.join("models").join(SHARED).exists(),
        "the duplicate is dropped"
    );
    assert!(
        store_listing(&paths).is_empty(),
        "no second copy: {:?}",
        store_listing(&paths)
    );
    assert!(
        models::activate_models_for(&old, &paths, std::slice::from_ref(&new))
            .unwrap()
            .is_empty()
    );
    assert_eq!(std::fs::read(paths.models_dir().join(SHARED)).unwrap(), data);
    assert_eq!(state(&paths, &manifest_of(&old)), ModelState::Present);
    assert_eq!(state(&paths, &manifest_of(&new)), ModelState::Present);
}

#[test]
fn pruning_the_store_removes_only_what_no_installed_version_needs() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let (v1, v2, v3) = (model_bytes(1_000), model_bytes(1_100), model_bytes(1_200));
    let one = install_version(&paths, "1.0.0", &[(SHARED, &v1)], true);
    models::adopt_models_of_bundle(&one, &paths).unwrap();
    let two = install_version(&paths, "1.1.0", &[(SHARED, &v2)], true);
    models::adopt_models_of_bundle(&two, &paths).unwrap();
    let three = install_version(&paths, "1.2.0", &[(SHARED, &v3)], true);
    models::adopt_models_of_bundle(&three, &paths).unwrap();
    let mut both = vec![sha256_hex(&v1), sha256_hex(&v2)];
    both.sort();
    assert_eq!(store_listing(&paths), both);

    // 1.0.0 was pruned: its model goes, 1.1.0's stays, and the live file is not touched.
    std::fs::remove_dir_all(&one).unwrap();
    let removed = models::prune_model_store(&paths, &[three.clone(), two.clone()]).unwrap();
    assert_eq!(removed, [sha256_hex(&v1)]);
    assert_eq!(store_listing(&paths), [sha256_hex(&v2)]);
    assert_eq!(std::fs::read(paths.models_dir().join(SHARED)).unwrap(), v3);
    let record = models::VerifiedRecord::load(&paths.models_dir());
    assert!(
        !record.files.keys().any(|k| k.contains(&sha256_hex(&v1))),
        "the record forgets what was deleted: {:?}",
        record.files.keys()
    );

    // With only 1.2.0 left, nothing stored is needed; the live model still is.
    assert_eq!(
        models::prune_model_store(&paths, std::slice::from_ref(&three)).unwrap(),
        [sha256_hex(&v2)]
    );
    assert_eq!(state(&paths, &manifest_of(&three)), ModelState::Present);
}

#[test]
fn status_and_plan_ignore_the_store() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let (old_data, new_data) = (model_bytes(1_500), model_bytes(1_600));
    let old = install_version(&paths, "1.0.0", &[(SHARED, &old_data)], true);
    models::adopt_models_of_bundle(&old, &paths).unwrap();
    let new = install_version(&paths, "1.1.0", &[(SHARED, &new_data)], true);
    models::adopt_models_of_bundle(&new, &paths).unwrap();
    assert!(stored(&paths, &old_data).is_file());

    let manifest = manifest_of(&new);
    let listed = models::status(&paths, &manifest).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, SHARED);
    let plan = models::plan(&paths, &manifest, true, &mut |_| {}).unwrap();
    assert!(plan.is_empty(), "{plan:?}");
    let report = download_all(&paths, &manifest, &quick_retries(1));
    assert!(report.all_present(), "{report:?}");
    assert!(
        stored(&paths, &old_data).is_file(),
        "a download leaves the store alone"
    );

    // The store is not a name a manifest may take.
    let doc = json!({"schema": 1, "models": [{"name": models::STORE_DIR, "url": "https://example.com/m", "size": 1, "sha256": sha256_hex(b"x")}]});
    assert!(ModelsManifest::parse(&doc.to_string(), "test", None).is_err());
}

#[test]
fn a_bundled_model_that_does_not_match_its_manifest_is_not_adopted_and_nothing_live_changes() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let (old_data, new_data) = (model_bytes(2_000), model_bytes(2_100));
    let old = install_version(&paths, "1.0.0", &[(SHARED, &old_data)], true);
    models::adopt_models_of_bundle(&old, &paths).unwrap();
    let new = install_version(&paths, "1.1.0", &[(SHARED, &new_data)], false);
    let mut damaged = new_data.clone();
    damaged[1_000] ^= 0xff;
    std::fs::write(new.join("models").join(SHARED), &damaged).unwrap();

    assert!(models::adopt_models_of_bundle(&new, &paths).unwrap().is_empty());
    assert_eq!(std::fs::read(paths.models_dir().join(SHARED)).unwrap(), old_data);
    assert_eq!(state(&paths, &manifest_of(&old)), ModelState::Present);
    assert!(store_listing(&paths).is_empty(), "nothing was set aside");
    assert!(
        !new.join("models").join(SHARED).exists(),
        "the bad copy is not kept"
    );
}

#[test]
fn a_download_sets_aside_a_file_another_installed_version_needs_instead_of_deleting_it() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let old_data = model_bytes(30_000);
    let new_data = Arc::new(model_bytes(30_000 + 7));
    let server = {
        let data = new_data.clone();
        TestServer::start(move |req| serve_bytes(req, &data, "\"v2\""))
    };
    let old = install_version(&paths, "1.0.0", &[(MODEL, &old_data)], true);
    models::adopt_models_of_bundle(&old, &paths).unwrap();
    // 1.1.0 is current and names new content under the same name; its release carried no models.
    install_version(&paths, "1.1.0", &[], false);
    let manifest = manifest(&server, &new_data);

    let report = download_all(&paths, &manifest, &quick_retries(1));
    assert!(report.all_present(), "{report:?}");
    assert_eq!(std::fs::read(paths.models_dir().join(MODEL)).unwrap(), *new_data);
    assert_eq!(
        std::fs::read(stored(&paths, &old_data)).unwrap(),
        old_data,
        "1.0.0 still needs it: set aside, not deleted"
    );
    assert_eq!(models::activate_models_for(&old, &paths, &[]).unwrap(), [MODEL]);
    assert_eq!(std::fs::read(paths.models_dir().join(MODEL)).unwrap(), old_data);
}

#[test]
fn preparing_a_version_adopts_what_its_bundle_carries_and_puts_back_what_the_store_holds() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let (old_data, new_data, extra) = (model_bytes(900), model_bytes(950), model_bytes(99));
    let old = install_version(&paths, "1.0.0", &[(SHARED, &old_data)], true);
    assert_eq!(models::prepare_models_for(&old, &paths).unwrap(), [SHARED]);
    let new = install_version(
        &paths,
        "1.1.0",
        &[(SHARED, &new_data), ("extra.bin", &extra)],
        true,
    );
    let mut changed = models::prepare_models_for(&new, &paths).unwrap();
    changed.sort();
    assert_eq!(changed, ["extra.bin", SHARED]);

    assert_eq!(models::prepare_models_for(&old, &paths).unwrap(), [SHARED]);
    assert_eq!(std::fs::read(paths.models_dir().join(SHARED)).unwrap(), old_data);
    assert!(
        models::prepare_models_for(&old, &paths).unwrap().is_empty(),
        "a second call has nothing to do"
    );
    assert_eq!(models::prepare_models_for(&new, &paths).unwrap(), [SHARED]);
    assert_eq!(state(&paths, &manifest_of(&new)), ModelState::Present);
    assert_eq!(
        std::fs::read(paths.models_dir().join("extra.bin")).unwrap(),
        extra,
        "a file 1.0.0 does not name stays live"
    );
}
