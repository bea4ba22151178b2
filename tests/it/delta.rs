//! Delta updates (issue 11): `release pack --delta-from` and the updater's use of a delta, against folder
//! feeds. A delta must rebuild exactly the tree the full archive unpacks to; anything wrong with it, with
//! the installed base or with the release's file list falls back to the full archive or is refused, and the
//! installed version keeps working.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli_update::{json_of, pai};
use crate::support::{make_bundle, temp_home};

/// Deterministic pseudo-random bytes (xorshift), so a "changed" file differs only where a test edits it.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A bundle with data beside the example backend: `data/a.bin` (3 MiB), `data/b.bin`, `data/gone.bin`, an
/// empty folder and a link. `changed` makes the next version: a.bin edited in the middle (bytes replaced
/// and inserted), gone.bin removed, new.bin added, b.bin and the rest untouched.
fn data_bundle(dir: &Path, changed: bool) {
    make_bundle(dir, &[]);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let mut a = noise(1, 3 << 20);
    if changed {
        a[1_000_000..1_000_100].copy_from_slice(&[7; 100]);
        a.splice(2_000_000..2_000_000, noise(9, 4096));
    }
    std::fs::write(data.join("a.bin"), &a).unwrap();
    std::fs::write(data.join("b.bin"), noise(2, 1 << 20)).unwrap();
    if changed {
        std::fs::write(data.join("new.bin"), noise(3, 50_000)).unwrap();
    } else {
        std::fs::write(data.join("gone.bin"), noise(4, 200_000)).unwrap();
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink("data/b.bin", dir.join("b-link")).unwrap();
}

fn pack(work: &Path, feed: &Path, version: &str, changed: bool, delta_from: &[&str], key: Option<&Path>) {
    let bundle = work.join(format!("bundle-{version}"));
    data_bundle(&bundle, changed);
    personal_ai_agent::pack::pack(&personal_ai_agent::pack::PackOptions {
        version: version.parse().unwrap(),
        platform: personal_ai_agent::platform::Platform::current(),
        bundle_dir: bundle,
        out_dir: feed.join(version),
        channel: personal_ai_agent::version::Channel::Stable,
        minisign_key: key.map(Path::to_path_buf),
        minisign_password: None,
        published_at: chrono::Utc::now(),
        notes: None,
        also_tar_gz: false,
        delta_from: delta_from.iter().map(|v| feed.join(v)).collect(),
    })
    .unwrap();
    personal_ai_agent::sources::feed::write_feed(feed).unwrap();
}

fn configure(home: &Path, feed: &Path) {
    json_of(&pai(
        home,
        None,
        &["update", "configure", "--feed", feed.to_str().unwrap(), "--json"],
    ));
}

/// [`configure`], with the release key pinned.
fn configure_signed(home: &Path, feed: &Path, public: &Path) {
    configure(home, feed);
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

fn install(home: &Path, args: &[&str]) -> Value {
    let mut all = vec!["update", "install", "--json"];
    all.extend_from_slice(args);
    let report = json_of(&pai(home, None, &all));
    // The tests' backends keep running once installed; stop them so the next install starts cleanly.
    let _ = pai(home, None, &["backend", "stop"]);
    report
}

/// Every entry under `root`: files by (size, sha256, mode), links by target, folders.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link {}", std::fs::read_link(&path).unwrap().display()),
                );
            } else if meta.is_dir() {
                out.insert(rel.clone(), "dir".into());
                walk(root, &path, out);
            } else {
                #[cfg(unix)]
                let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
                #[cfg(not(unix))]
                let mode = 0;
                let sha = personal_ai_agent::verify::sha256_file(&path).unwrap();
                out.insert(rel, format!("{} {sha} {mode:o}", meta.len()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn version_dir(home: &Path, version: &str) -> PathBuf {
    let status = json_of(&pai(home, None, &["update", "status", "--json"]));
    PathBuf::from(status["home"]["data_dir"].as_str().unwrap())
        .join("install/versions")
        .join(version)
}

fn current(home: &Path) -> String {
    let status = json_of(&pai(home, None, &["update", "status", "--json"]));
    status["current_version"].as_str().unwrap_or_default().to_owned()
}

fn delta_file(feed: &Path, version: &str, base: &str) -> PathBuf {
    let name = personal_ai_agent::delta::delta_file_name(
        &version.parse().unwrap(),
        &personal_ai_agent::platform::Platform::current(),
        &base.parse().unwrap(),
    );
    feed.join(version).join(name)
}

/// The release's file list (`.files.json`) as JSON, and its path.
fn file_list(feed: &Path, version: &str) -> (PathBuf, Value) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(feed.join(version).join("release-manifest.json")).unwrap())
            .unwrap();
    let path = feed
        .join(version)
        .join(manifest["assets"][0]["file_list"]["name"].as_str().unwrap());
    let list = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    (path, list)
}

/// Rewrites the file list of an unsigned release and the size and hash the manifest gives for it, as a
/// publisher (or whoever controls an unsigned feed) could.
fn rewrite_file_list(feed: &Path, version: &str, edit: impl FnOnce(&mut Vec<Value>)) {
    let (path, mut list) = file_list(feed, version);
    edit(list["files"].as_array_mut().unwrap());
    let bytes = serde_json::to_vec(&list).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let manifest_path = feed.join(version).join("release-manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["assets"][0]["file_list"]["size"] = bytes.len().into();
    manifest["assets"][0]["file_list"]["sha256"] = personal_ai_agent::verify::sha256_hex(&bytes).into();
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    personal_ai_agent::sources::feed::write_feed(feed).unwrap();
}

#[test]
fn a_delta_rebuilds_exactly_the_tree_the_full_archive_unpacks_to() {
    let work = temp_home();
    let feed = work.path().join("feed");
    pack(work.path(), &feed, "1.0.0", false, &[], None);
    pack(work.path(), &feed, "1.1.0", true, &["1.0.0"], None);

    let by_delta = temp_home();
    configure(by_delta.path(), &feed);
    assert_eq!(
        install(by_delta.path(), &["--version", "1.0.0"])["installed_version"],
        "1.0.0"
    );
    let check = json_of(&pai(by_delta.path(), None, &["update", "check", "--json"]));
    let delivery = &check["delivery"];
    assert_eq!(delivery["method"], "delta", "{check}");
    assert_eq!(delivery["base"], "1.0.0");
    let delta_bytes = delivery["bytes"].as_u64().unwrap();
    let full_bytes = delivery["full_bytes"].as_u64().unwrap();
    assert_eq!(
        delta_bytes,
        std::fs::metadata(delta_file(&feed, "1.1.0", "1.0.0"))
            .unwrap()
            .len()
    );
    assert!(
        delta_bytes * 20 < full_bytes,
        "a small change must make a small delta: {delta_bytes} of {full_bytes} bytes"
    );
    let report = install(by_delta.path(), &[]);
    assert_eq!(report["installed_version"], "1.1.0");
    assert_eq!(report["delivery"]["method"], "delta", "{report}");
    assert!(
        report["verified_by"]
            .as_str()
            .unwrap()
            .contains("delta from 1.0.0"),
        "{report}"
    );

    let by_full = temp_home();
    configure(by_full.path(), &feed);
    let full = install(by_full.path(), &["--version", "1.1.0"]);
    assert_eq!(full["delivery"]["method"], "full", "{full}");
    let rebuilt = tree(&version_dir(by_delta.path(), "1.1.0"));
    assert!(rebuilt.contains_key("data/new.bin") && !rebuilt.contains_key("data/gone.bin"));
    assert_eq!(rebuilt, tree(&version_dir(by_full.path(), "1.1.0")));
    // The delta is not kept once installed; the base stays as the rollback target.
    assert!(
        version_dir(by_delta.path(), "1.0.0")
            .join("data/gone.bin")
            .is_file()
    );
}

#[test]
fn a_changed_installed_file_a_corrupted_delta_or_another_base_means_the_full_archive() {
    let work = temp_home();
    let feed = work.path().join("feed");
    pack(work.path(), &feed, "1.0.0", false, &[], None);
    pack(work.path(), &feed, "1.1.0", true, &["1.0.0"], None);

    // Same size, other bytes: only hashing while the delta is applied can tell.
    let home = temp_home();
    configure(home.path(), &feed);
    install(home.path(), &["--version", "1.0.0"]);
    let b = version_dir(home.path(), "1.0.0").join("data/b.bin");
    std::fs::write(&b, noise(99, 1 << 20)).unwrap();
    let report = install(home.path(), &[]);
    assert_eq!(report["installed_version"], "1.1.0");
    assert_eq!(report["delivery"]["method"], "full", "{report}");
    assert!(
        report["delivery"]["reason"].as_str().unwrap().contains("b.bin"),
        "{report}"
    );
    assert!(version_dir(home.path(), "1.1.0").join("data/new.bin").is_file());

    // A file of another size is seen before anything is downloaded, and `update check` says so.
    let home = temp_home();
    configure(home.path(), &feed);
    install(home.path(), &["--version", "1.0.0"]);
    std::fs::write(version_dir(home.path(), "1.0.0").join("data/b.bin"), b"short").unwrap();
    let check = json_of(&pai(home.path(), None, &["update", "check", "--json"]));
    assert_eq!(check["delivery"]["method"], "full", "{check}");
    assert!(
        check["delivery"]["reason"].as_str().unwrap().contains("b.bin"),
        "{check}"
    );

    // A damaged delta file: its hash does not match the manifest, so the full archive is used.
    let home = temp_home();
    configure(home.path(), &feed);
    install(home.path(), &["--version", "1.0.0"]);
    let delta = delta_file(&feed, "1.1.0", "1.0.0");
    let mut bytes = std::fs::read(&delta).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&delta, &bytes).unwrap();
    let report = install(home.path(), &[]);
    assert_eq!(report["installed_version"], "1.1.0");
    assert_eq!(report["delivery"]["method"], "full", "{report}");

    // Deltas only from a version that is not installed: the full archive, with the reason.
    pack(work.path(), &feed, "1.2.0", true, &["1.1.0"], None);
    let home = temp_home();
    configure(home.path(), &feed);
    install(home.path(), &["--version", "1.0.0"]);
    let check = json_of(&pai(home.path(), None, &["update", "check", "--json"]));
    assert_eq!(check["latest"]["version"], "1.2.0");
    assert_eq!(check["delivery"]["method"], "full", "{check}");
    assert!(
        check["delivery"]["reason"]
            .as_str()
            .unwrap()
            .contains("1.1.0 only"),
        "{check}"
    );

    // `--full` is honoured even when a delta would do.
    let home = temp_home();
    configure(home.path(), &feed);
    install(home.path(), &["--version", "1.1.0"]);
    let report = install(home.path(), &["--full"]);
    assert_eq!(report["installed_version"], "1.2.0");
    assert_eq!(report["delivery"]["method"], "full", "{report}");
}

#[test]
fn a_tampered_file_list_is_refused_and_the_installed_version_keeps_working() {
    let work = temp_home();
    let feed = work.path().join("feed");
    let (public, secret) = crate::verify::minisign_keypair(work.path(), "release");
    pack(work.path(), &feed, "1.0.0", false, &[], Some(&secret));
    pack(work.path(), &feed, "1.1.0", true, &["1.0.0"], Some(&secret));
    let home = temp_home();
    configure_signed(home.path(), &feed, &public);
    install(home.path(), &["--version", "1.0.0"]);

    // Point the list at other bytes for one file: its hash is no longer the one the signed manifest
    // gives, so the list is not used (no delta; every file is hashed as it is unpacked) and the full
    // archive, whose hash the signature covers, is installed.
    let (list_path, mut list) = file_list(&feed, "1.1.0");
    let original = std::fs::read(&list_path).unwrap();
    let files = list["files"].as_array_mut().unwrap();
    let file = files.iter_mut().find(|f| f["path"] == "data/a.bin").unwrap();
    file["sha256"] = Value::String("0".repeat(64));
    std::fs::write(&list_path, serde_json::to_vec(&list).unwrap()).unwrap();
    let check = json_of(&pai(home.path(), None, &["update", "check", "--json"]));
    assert_eq!(
        check["delivery"]["method"], "delta",
        "the check reads no list: {check}"
    );
    let report = install(home.path(), &[]);
    assert_eq!(report["installed_version"], "1.1.0");
    assert_eq!(report["delivery"]["method"], "full", "{report}");
    assert!(
        report["delivery"]["reason"]
            .as_str()
            .unwrap()
            .contains("not the one the manifest vouches for"),
        "{report}"
    );
    assert_eq!(
        tree(&version_dir(home.path(), "1.1.0"))["data/a.bin"]
            .split(' ')
            .nth(1),
        personal_ai_agent::verify::sha256_file(&work.path().join("bundle-1.1.0/data/a.bin"))
            .ok()
            .as_deref()
    );
    // The install record holds the bytes' own hash, not the one the changed list claimed.
    let record_path = version_dir(home.path(), "1.1.0")
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("files/1.1.0.json");
    let record: Value = serde_json::from_slice(&std::fs::read(record_path).unwrap()).unwrap();
    assert_ne!(record["data/a.bin"]["sha256"], "0".repeat(64), "{record}");

    // Point the manifest at the changed list: the signature no longer covers the manifest.
    let home = temp_home();
    configure_signed(home.path(), &feed, &public);
    install(home.path(), &["--version", "1.0.0"]);
    std::fs::write(&list_path, &original).unwrap();
    let manifest_path = feed.join("1.1.0/release-manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["assets"][0]["file_list"]["sha256"] = Value::String("0".repeat(64));
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    personal_ai_agent::sources::feed::write_feed(&feed).unwrap();

    let refused = pai(home.path(), None, &["update", "install", "--json"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(stderr.contains("signature"), "{stderr}");
    assert_eq!(current(home.path()), "1.0.0");
    assert!(version_dir(home.path(), "1.0.0").join("data/gone.bin").is_file());
}

/// Links that each stay inside the bundle on paper but lead out of it when followed one through the other
/// (`data/up` is the bundle root, so `data/up/..` is above it): the delta is refused once its links are
/// made, before anything moves in, and the full archive is used.
#[cfg(unix)]
#[test]
fn links_that_lead_outside_only_together_make_the_delta_fall_back() {
    let work = temp_home();
    let feed = work.path().join("feed");
    pack(work.path(), &feed, "1.0.0", false, &[], None);
    pack(work.path(), &feed, "1.1.0", true, &["1.0.0"], None);
    rewrite_file_list(&feed, "1.1.0", |files| {
        files.push(serde_json::json!({"path": "data/up", "link": ".."}));
        files.push(serde_json::json!({"path": "esc", "link": "data/up/.."}));
        files.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    });

    let home = temp_home();
    configure(home.path(), &feed);
    install(home.path(), &["--version", "1.0.0"]);
    let report = install(home.path(), &[]);
    assert_eq!(report["installed_version"], "1.1.0");
    assert_eq!(report["delivery"]["method"], "full", "{report}");
    assert!(
        report["delivery"]["reason"]
            .as_str()
            .unwrap()
            .contains("outside the bundle"),
        "{report}"
    );
    let installed = version_dir(home.path(), "1.1.0");
    assert!(std::fs::symlink_metadata(installed.join("esc")).is_err());
    assert!(installed.join("data/new.bin").is_file());
}

/// The cached archive is not fsynced (it is re-verified as it is read), so a crash can leave a pending
/// download torn: unpacking it then fails part-way, and the launcher must see that its bytes changed and
/// download it again rather than stop with "the archive is damaged".
#[test]
fn a_torn_pending_download_is_downloaded_again() {
    let work = temp_home();
    let feed = work.path().join("feed");
    pack(work.path(), &feed, "1.0.0", false, &[], None);
    let home = temp_home();
    configure(home.path(), &feed);
    let downloaded = json_of(&pai(home.path(), None, &["update", "download", "--json"]));
    let path = PathBuf::from(downloaded["downloaded"]["path"].as_str().unwrap());
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);

    let report = install(home.path(), &[]);
    assert_eq!(report["installed_version"], "1.0.0", "{report}");
    assert!(version_dir(home.path(), "1.0.0").join("data/a.bin").is_file());
}

const DELTA_CRASH_ENV: &str = "PAI_TEST_DELTA_CRASH";

/// Not a test of its own: re-run with `PAI_TEST_DELTA_CRASH` set, it applies the delta into staging as the
/// updater does and dies (`abort`, as abrupt as `kill -9` for what is on disk) before the version moves in.
#[test]
fn delta_crash_helper_runs_only_when_asked() {
    let Ok(spec) = std::env::var(DELTA_CRASH_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let install_dir = PathBuf::from(spec["install_dir"].as_str().unwrap());
    let delta = PathBuf::from(spec["delta"].as_str().unwrap());
    let manifest: personal_ai_agent::verify::ReleaseManifest =
        personal_ai_agent::verify::ReleaseManifest::parse(
            &std::fs::read(spec["manifest"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
    let entry = &manifest.assets[0];
    let list_name = &entry.file_list.as_ref().unwrap().name;
    let list_path = Path::new(spec["manifest"].as_str().unwrap()).with_file_name(list_name);
    let target_files = personal_ai_agent::verify::FileList::parse(
        &std::fs::read(list_path).unwrap(),
        list_name,
        &"1.1.0".parse().unwrap(),
        &personal_ai_agent::platform::Platform::current(),
    )
    .unwrap();
    let recorded: BTreeMap<String, Value> =
        serde_json::from_slice(&std::fs::read(install_dir.join("files/1.0.0.json")).unwrap()).unwrap();
    let base_files: BTreeMap<String, (u64, String)> = recorded
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                (
                    v["size"].as_u64().unwrap(),
                    v["sha256"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    let installer = personal_ai_agent::install::Installer::new(install_dir.clone())
        .with_crash_point(personal_ai_agent::install::CrashPoint::Unpacked);
    let base_root = installer.version_dir(&"1.0.0".parse().unwrap());
    let (base, target) = ("1.0.0".parse().unwrap(), "1.1.0".parse().unwrap());
    let job = personal_ai_agent::delta::ApplyDelta {
        delta: &delta,
        delta_sha256: &entry.deltas[0].sha256,
        base: &base,
        target: &target,
        base_root: &base_root,
        base_files: &base_files,
        target_files: &target_files,
    };
    let build = |root: &Path| Ok(personal_ai_agent::delta::apply_delta(&job, root)?);
    let lock = installer.lock().unwrap();
    installer
        .install_payload(
            &lock,
            personal_ai_agent::install::Payload::Built {
                origin: &delta,
                build: &build,
            },
            &target,
        )
        .unwrap();
    std::process::exit(42);
}

#[test]
fn a_delta_install_killed_mid_way_is_undone_and_the_next_one_succeeds() {
    let work = temp_home();
    let feed = work.path().join("feed");
    pack(work.path(), &feed, "1.0.0", false, &[], None);
    pack(work.path(), &feed, "1.1.0", true, &["1.0.0"], None);
    let home = temp_home();
    configure(home.path(), &feed);
    install(home.path(), &["--version", "1.0.0"]);
    let before = tree(&version_dir(home.path(), "1.0.0"));
    let install_dir = version_dir(home.path(), "1.0.0")
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();

    let spec = serde_json::json!({
        "install_dir": install_dir,
        "delta": delta_file(&feed, "1.1.0", "1.0.0"),
        "manifest": feed.join("1.1.0/release-manifest.json"),
    });
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "delta::delta_crash_helper_runs_only_when_asked",
            "--exact",
            "--nocapture",
        ])
        .env(DELTA_CRASH_ENV, spec.to_string())
        .output()
        .unwrap();
    assert!(!status.status.success(), "the helper was to die mid-way");
    assert_ne!(
        status.status.code(),
        Some(42),
        "the helper finished instead of dying"
    );
    assert!(
        install_dir.join("journal.json").is_file(),
        "the crash left its journal"
    );
    assert!(
        install_dir.join("staging").is_dir(),
        "the crash left its staging folder"
    );

    // The next start recovers: the old version is current and untouched, nothing half-made is left.
    assert_eq!(current(home.path()), "1.0.0");
    let report = install(home.path(), &[]);
    assert_eq!(report["installed_version"], "1.1.0");
    assert_eq!(report["delivery"]["method"], "delta", "{report}");
    assert!(!install_dir.join("journal.json").exists());
    assert_eq!(tree(&version_dir(home.path(), "1.0.0")), before);
}

/// Runs the launcher with `args` in `home`, killing it after `limit`: the test's own timeout, so an install
/// that never gives up fails the test instead of hanging it.
fn pai_within(home: &Path, limit: std::time::Duration, args: &[&str]) -> std::process::Output {
    let out_path = home.join("guarded-stdout");
    let err_path = home.join("guarded-stderr");
    let mut child = crate::support::launcher_in(home)
        .args(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{}` did not finish within {limit:?}; stderr:\n{}",
                args.join(" "),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

/// A mirror whose delta arrives a few bytes per connection: the delta must give up within its bounds and
/// the full archive be installed, instead of the install (holding the job and `update.lock`) retrying
/// for ever.
#[test]
fn a_delta_whose_server_sends_a_few_bytes_at_a_time_falls_back_to_the_full_archive() {
    let work = temp_home();
    let feed = work.path().join("feed");
    pack(work.path(), &feed, "1.0.0", false, &[], None);
    pack(work.path(), &feed, "1.1.0", true, &["1.0.0"], None);
    let delta = delta_file(&feed, "1.1.0", "1.0.0");
    let delta_path = format!("/{}", delta.strip_prefix(&feed).unwrap().to_str().unwrap());
    let root = feed.clone();
    let dribbled = delta_path.clone();
    let server = crate::support::TestServer::start(move |req| {
        let Ok(bytes) = std::fs::read(root.join(req.path_only().trim_start_matches('/'))) else {
            return crate::support::Response::new(404);
        };
        let response = crate::support::serve_bytes(req, &bytes, "\"v\"");
        if req.path_only() == dribbled {
            response.drop_after(16)
        } else {
            response
        }
    });
    let home = temp_home();
    configure(home.path(), Path::new(&format!("{}/feed.json", server.url())));
    install(home.path(), &["--version", "1.0.0"]);

    let out = pai_within(
        home.path(),
        std::time::Duration::from_secs(300),
        &["update", "install", "--json"],
    );
    let _ = pai(home.path(), None, &["backend", "stop"]);
    let report = json_of(&out);

    assert_eq!(report["installed_version"], "1.1.0", "{report}");
    assert_eq!(report["delivery"]["method"], "full", "{report}");
    let reason = report["delivery"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("gave up") && reason.contains("another mirror"),
        "{reason}"
    );
    let delta_requests = server
        .requests()
        .iter()
        .filter(|r| r.path_only() == delta_path)
        .count();
    assert!(
        (1..=4).contains(&delta_requests),
        "{delta_requests} requests for the delta"
    );
    assert!(version_dir(home.path(), "1.1.0").join("data/new.bin").is_file());
}
