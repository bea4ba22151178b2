//! Bundles and the installer: pack → extract round trips, hostile archives refused, and the crash-safe
//! install proven by killing a child process (this test binary, re-run in a helper mode) at every step of
//! the journal, then recovering.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use personal_ai_agent::archive::{
    self, ArchiveError, ArchiveKind, ExtractLimits, UnsafeReason, create_archive, extract_archive,
};
use personal_ai_agent::install::{CrashPoint, InstallError, Installer, RecoveryAction};
use semver::Version;

use crate::support::temp_home;

const HELPER_ENV: &str = "PAI_TEST_INSTALL_HELPER";

fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

/// Bytes that differ per version and per file, so a mixed-up or truncated file is noticed.
fn payload(version: &Version, salt: &str, len: usize) -> Vec<u8> {
    let seed = format!("{version}/{salt}");
    (0..len)
        .map(|i| seed.as_bytes()[i % seed.len()].wrapping_add((i / 251) as u8))
        .collect()
}

/// A bundle folder like `release pack` takes: agent.json, a runnable script, data files, a library link.
fn make_bundle(parent: &Path, version: &Version, data_files: usize) -> PathBuf {
    let dir = parent.join(format!("bundle-{version}"));
    fs::create_dir_all(dir.join("backend/lib")).unwrap();
    fs::write(
        dir.join("agent.json"),
        format!(r#"{{"version": "{version}", "command": ["backend/run.sh"], "health_url": "http://127.0.0.1:{{port}}/health"}}"#),
    )
    .unwrap();
    fs::write(
        dir.join("backend/run.sh"),
        format!("#!/bin/sh\necho \"backend {version}\"\n"),
    )
    .unwrap();
    set_executable(&dir.join("backend/run.sh"));
    for i in 0..data_files {
        fs::write(
            dir.join(format!("backend/data-{i:04}.bin")),
            payload(version, &i.to_string(), 16 * 1024),
        )
        .unwrap();
    }
    fs::write(
        dir.join("backend/lib/libagent.so.1"),
        payload(version, "lib", 4096),
    )
    .unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("libagent.so.1", dir.join("backend/lib/libagent.so")).unwrap();
    dir
}

fn pack(parent: &Path, version: &Version, data_files: usize) -> PathBuf {
    let bundle = make_bundle(parent, version, data_files);
    let root = format!("PersonalAIAgent-linux-x86_64-{version}");
    let out = parent.join(format!("{root}.tar.gz"));
    create_archive(&bundle, &root, &out, ArchiveKind::TarGz).unwrap();
    out
}

#[cfg(unix)]
fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}
#[cfg(not(unix))]
fn set_executable(_path: &Path) {}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o111 != 0
}

/// `current` names `expected`, its folder holds every file whole, and its script runs.
fn assert_current_is_complete(installer: &Installer, expected: &Version, data_files: usize) {
    assert_eq!(installer.current_version().unwrap().as_ref(), Some(expected));
    let dir = installer
        .current_dir()
        .unwrap()
        .expect("current names a complete folder");
    assert_eq!(dir, installer.version_dir(expected));
    let agent: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("agent.json")).unwrap()).unwrap();
    assert_eq!(agent["version"], expected.to_string());
    for i in 0..data_files {
        let bytes = fs::read(dir.join(format!("backend/data-{i:04}.bin"))).unwrap();
        assert!(
            bytes == payload(expected, &i.to_string(), 16 * 1024),
            "data-{i:04}.bin of {expected} is damaged"
        );
    }
    #[cfg(unix)]
    {
        assert_eq!(
            fs::read(dir.join("backend/lib/libagent.so")).unwrap(),
            payload(expected, "lib", 4096)
        );
        let output = Command::new(dir.join("backend/run.sh")).output().unwrap();
        assert!(output.status.success());
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("backend {expected}")
        );
    }
}

fn assert_no_leftovers(install_dir: &Path) {
    assert!(!install_dir.join("journal.json").exists(), "journal left behind");
    assert!(!install_dir.join("staging").exists(), "staging left behind");
    assert!(
        !install_dir.join("current.tmp").exists(),
        "current.tmp left behind"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Crash safety

/// Not a test of its own: when this binary is re-run with `PAI_TEST_INSTALL_HELPER` set, this function
/// performs one install in that child process, crashing where it is told to.
#[test]
fn install_helper_child_runs_only_when_asked() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let mut installer = Installer::new(PathBuf::from(spec["install_dir"].as_str().unwrap()));
    if !spec["crash_at"].is_null() {
        let point: CrashPoint = serde_json::from_value(spec["crash_at"].clone()).unwrap();
        installer = installer.with_crash_point(point);
    }
    let lock = installer.lock().unwrap();
    installer
        .install_archive(
            &lock,
            Path::new(spec["archive"].as_str().unwrap()),
            &v(spec["version"].as_str().unwrap()),
        )
        .unwrap();
    // Reaching here means the crash point was never passed: tell the parent with a distinct code.
    std::process::exit(42);
}

fn spawn_install_child(
    install_dir: &Path,
    archive: &Path,
    version: &Version,
    crash_at: Option<CrashPoint>,
) -> std::process::Child {
    let spec = serde_json::json!({
        "install_dir": install_dir,
        "archive": archive,
        "version": version.to_string(),
        "crash_at": crash_at,
    });
    Command::new(std::env::current_exe().unwrap())
        .args([
            "install::install_helper_child_runs_only_when_asked",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, spec.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn an_install_killed_at_every_journal_step_recovers_to_a_complete_runnable_version() {
    let files = 8;
    for point in CrashPoint::ALL {
        let home = temp_home();
        let old = v("1.0.0");
        let new = v("2.0.0");
        let installer = Installer::new(home.path().join("install"));
        {
            let lock = installer.lock().unwrap();
            installer
                .install_archive(&lock, &pack(home.path(), &old, files), &old)
                .unwrap();
        }
        let archive = pack(home.path(), &new, files);

        let child = spawn_install_child(installer.dir(), &archive, &new, Some(point));
        let output = child.wait_with_output().unwrap();
        assert!(
            !output.status.success() && output.status.code() != Some(42),
            "{point:?}: the child should have crashed, got {:?}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let journal = installer
            .interrupted_operation()
            .unwrap()
            .expect("the crash leaves a journal");
        assert_eq!(journal.to, new, "{point:?}");

        let report = installer.recover().unwrap().expect("recovery has work to do");
        let switched = point >= CrashPoint::PointerSwitched;
        let (expected_current, expected_action) = if switched {
            (&new, RecoveryAction::Completed)
        } else {
            (&old, RecoveryAction::RolledBack)
        };
        assert_eq!(report.action, expected_action, "{point:?}");
        assert_eq!(report.current.as_ref(), Some(expected_current), "{point:?}");
        assert_current_is_complete(&installer, expected_current, files);
        assert_no_leftovers(installer.dir());
        let expected_installed = if switched {
            vec![new.clone(), old.clone()]
        } else {
            vec![old.clone()]
        };
        assert_eq!(
            installer.installed_versions().unwrap(),
            expected_installed,
            "{point:?}"
        );
        assert_eq!(
            installer.recover().unwrap(),
            None,
            "{point:?}: a second recovery finds nothing"
        );

        // After recovery the machine is usable: the install can be done (again) and rolled back.
        let lock = installer.lock().unwrap();
        if !switched {
            installer.install_archive(&lock, &archive, &new).unwrap();
        }
        assert_eq!(installer.rollback(&lock, None).unwrap(), old, "{point:?}");
        assert_current_is_complete(&installer, &old, files);
    }
}

#[test]
fn an_install_killed_at_random_moments_always_leaves_one_complete_version() {
    let files = 300;
    let old = v("1.0.0");
    let new = v("2.0.0");
    let home = temp_home();
    let old_archive = pack(home.path(), &old, files);
    let new_archive = pack(home.path(), &new, files);
    let mut outcomes = std::collections::BTreeSet::new();
    for attempt in 0..10u64 {
        let install_dir = home.path().join(format!("install-{attempt}"));
        let installer = Installer::new(install_dir.clone());
        installer
            .install_archive(&installer.lock().unwrap(), &old_archive, &old)
            .unwrap();
        let mut child = spawn_install_child(&install_dir, &new_archive, &new, None);
        // Wait until the install has begun (its journal appears), then kill it a little later each attempt,
        // so the kills land at different steps: unpacking, flushing, moving, switching.
        let journal = install_dir.join("journal.json");
        while !journal.exists() && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(attempt * attempt * 3));
        let killed_mid_install = journal.exists();
        let _ = child.kill();
        let status = child.wait().unwrap();
        installer.recover().unwrap();
        let current = installer
            .current_version()
            .unwrap()
            .expect("a version is current");
        assert!(
            current == old || current == new,
            "attempt {attempt}: current {current}"
        );
        assert_current_is_complete(&installer, &current, files);
        assert_no_leftovers(&install_dir);
        outcomes.insert((current.to_string(), killed_mid_install, status.code() == Some(42)));
    }
    // Not an assertion about timing, only a record of what the kills hit.
    eprintln!("outcomes (current, journal present at kill, child finished): {outcomes:?}");
}

// ---------------------------------------------------------------------------------------------------------
// Lock, rollback, prune, refusals

#[test]
fn a_second_updater_is_told_an_update_is_in_progress() {
    let home = temp_home();
    let installer = Installer::new(home.path().join("install"));
    let held = installer.lock().unwrap();
    let err = installer.lock().unwrap_err();
    match &err {
        // Windows locks the whole file, so the holder's pid cannot be read back there (see `lock.rs`).
        InstallError::Busy { pid, .. } if cfg!(windows) => assert_eq!(*pid, None),
        InstallError::Busy { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(err.to_string().contains("an update is in progress"), "{err}");
    // Recovery at start must not undo the work of the process holding the lock.
    assert_eq!(installer.recover().unwrap(), None);
    drop(held);
    installer
        .lock()
        .expect("the lock is free once its holder is gone");
}

#[test]
fn rollback_switches_back_to_the_previous_version_and_forth_again() {
    let home = temp_home();
    let installer = Installer::new(home.path().join("install"));
    let lock = installer.lock().unwrap();
    for version in ["1.0.0", "1.1.0"] {
        installer
            .install_archive(&lock, &pack(home.path(), &v(version), 2), &v(version))
            .unwrap();
    }
    let outcome_previous = installer.previous_version().unwrap();
    assert_eq!(outcome_previous, Some(v("1.0.0")));
    assert_eq!(installer.rollback(&lock, None).unwrap(), v("1.0.0"));
    assert_current_is_complete(&installer, &v("1.0.0"), 2);
    assert_eq!(
        installer.rollback(&lock, None).unwrap(),
        v("1.1.0"),
        "the version rolled back from is the new previous"
    );
    assert_current_is_complete(&installer, &v("1.1.0"), 2);

    let err = installer.rollback(&lock, Some(&v("9.9.9"))).unwrap_err();
    assert!(
        matches!(err, InstallError::NotInstalled { ref installed, .. } if installed.len() == 2),
        "{err:?}"
    );
    assert_current_is_complete(&installer, &v("1.1.0"), 2);
}

#[test]
fn rollback_with_a_single_version_says_there_is_nothing_to_go_back_to() {
    let home = temp_home();
    let installer = Installer::new(home.path().join("install"));
    let lock = installer.lock().unwrap();
    installer
        .install_archive(&lock, &pack(home.path(), &v("1.0.0"), 1), &v("1.0.0"))
        .unwrap();
    let err = installer.rollback(&lock, None).unwrap_err();
    assert!(matches!(err, InstallError::NoPreviousVersion { .. }), "{err:?}");
}

#[test]
fn prune_keeps_the_current_version_and_exactly_backup_count_others() {
    let home = temp_home();
    let installer = Installer::new(home.path().join("install"));
    let lock = installer.lock().unwrap();
    for version in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"] {
        installer
            .install_archive(&lock, &pack(home.path(), &v(version), 1), &v(version))
            .unwrap();
    }
    assert_eq!(installer.prune(&lock, 2).unwrap(), vec![v("1.0.0")]);
    assert_eq!(
        installer.installed_versions().unwrap(),
        vec![v("1.3.0"), v("1.2.0"), v("1.1.0")]
    );
    assert!(!installer.version_dir(&v("1.0.0")).exists());

    // After a rollback to 1.1.0 the version rolled back from (1.3.0) is the one backup kept.
    installer.rollback(&lock, Some(&v("1.1.0"))).unwrap();
    assert_eq!(installer.prune(&lock, 1).unwrap(), vec![v("1.2.0")]);
    assert_eq!(
        installer.installed_versions().unwrap(),
        vec![v("1.3.0"), v("1.1.0")]
    );
    assert_current_is_complete(&installer, &v("1.1.0"), 1);
    assert_eq!(installer.prune(&lock, 0).unwrap(), vec![v("1.3.0")]);
    assert_eq!(installer.installed_versions().unwrap(), vec![v("1.1.0")]);
    assert_no_leftovers(installer.dir());
}

#[test]
fn a_damaged_version_pointer_is_reported_and_repaired_by_a_rollback() {
    let home = temp_home();
    let installer = Installer::new(home.path().join("install"));
    let lock = installer.lock().unwrap();
    for version in ["1.0.0", "1.1.0"] {
        installer
            .install_archive(&lock, &pack(home.path(), &v(version), 1), &v(version))
            .unwrap();
    }
    fs::write(installer.dir().join("current"), "not a version\n").unwrap();
    let err = installer.current_version().unwrap_err();
    assert!(matches!(err, InstallError::CorruptState { .. }), "{err:?}");
    assert!(
        err.to_string().contains("update rollback --to"),
        "the message says what to do: {err}"
    );
    installer.recover_locked(&lock).unwrap();
    installer.rollback(&lock, Some(&v("1.0.0"))).unwrap();
    assert_current_is_complete(&installer, &v("1.0.0"), 1);
}

#[test]
fn reinstalling_a_version_that_is_not_current_replaces_its_folder() {
    let home = temp_home();
    let installer = Installer::new(home.path().join("install"));
    let lock = installer.lock().unwrap();
    let archive_1_1 = pack(home.path(), &v("1.1.0"), 1);
    installer
        .install_archive(&lock, &pack(home.path(), &v("1.0.0"), 1), &v("1.0.0"))
        .unwrap();
    installer
        .install_archive(&lock, &archive_1_1, &v("1.1.0"))
        .unwrap();
    installer.rollback(&lock, None).unwrap();
    let stray = installer.version_dir(&v("1.1.0")).join("stray-file");
    fs::write(&stray, b"from the old copy").unwrap();
    let outcome = installer
        .install_archive(&lock, &archive_1_1, &v("1.1.0"))
        .unwrap();
    assert_eq!(outcome.previous, Some(v("1.0.0")));
    assert!(!stray.exists(), "the old copy of 1.1.0 was replaced, not merged");
    assert_current_is_complete(&installer, &v("1.1.0"), 1);
    assert_no_leftovers(installer.dir());
}

#[test]
fn installing_the_current_version_again_is_refused_and_changes_nothing() {
    let home = temp_home();
    let installer = Installer::new(home.path().join("install"));
    let lock = installer.lock().unwrap();
    let archive = pack(home.path(), &v("1.0.0"), 1);
    installer.install_archive(&lock, &archive, &v("1.0.0")).unwrap();
    let err = installer
        .install_archive(&lock, &archive, &v("1.0.0"))
        .unwrap_err();
    assert!(matches!(err, InstallError::AlreadyCurrent { .. }), "{err:?}");
    assert_current_is_complete(&installer, &v("1.0.0"), 1);
}

#[test]
fn a_bundle_without_agent_json_or_with_another_version_is_not_installed() {
    let home = temp_home();
    let installer = Installer::new(home.path().join("install"));
    let lock = installer.lock().unwrap();
    installer
        .install_archive(&lock, &pack(home.path(), &v("1.0.0"), 1), &v("1.0.0"))
        .unwrap();

    // Published under 2.0.0 but says 1.5.0 inside.
    let mislabelled = pack(home.path(), &v("1.5.0"), 1);
    let err = installer
        .install_archive(&lock, &mislabelled, &v("2.0.0"))
        .unwrap_err();
    match &err {
        InstallError::VersionMismatch { expected, found, .. } => {
            assert_eq!(
                (expected.to_string(), found.as_str()),
                ("2.0.0".to_owned(), "1.5.0")
            );
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }

    let bundle = home.path().join("no-agent");
    fs::create_dir_all(bundle.join("backend")).unwrap();
    fs::write(bundle.join("backend/run.sh"), "#!/bin/sh\n").unwrap();
    let archive = home.path().join("PersonalAIAgent-linux-x86_64-3.0.0.tar.gz");
    create_archive(
        &bundle,
        "PersonalAIAgent-linux-x86_64-3.0.0",
        &archive,
        ArchiveKind::TarGz,
    )
    .unwrap();
    let err = installer
        .install_archive(&lock, &archive, &v("3.0.0"))
        .unwrap_err();
    assert!(matches!(err, InstallError::NotABundle { .. }), "{err:?}");
    assert!(err.to_string().contains("agent.json"), "{err}");

    assert_current_is_complete(&installer, &v("1.0.0"), 1);
    assert_eq!(installer.installed_versions().unwrap(), vec![v("1.0.0")]);
    assert_no_leftovers(installer.dir());
}

// ---------------------------------------------------------------------------------------------------------
// Archives

#[test]
fn pack_then_extract_round_trips_contents_exec_bits_and_links_for_tar_gz_and_zip() {
    for kind in [ArchiveKind::TarGz, ArchiveKind::Zip] {
        let home = temp_home();
        let version = v("1.2.0");
        let bundle = make_bundle(home.path(), &version, 3);
        let platform = "linux-x86_64".parse().unwrap();
        let root = archive::bundle_root_name(&version, &platform);
        let out = home.path().join(format!("{root}{}", kind.extension()));
        let size = create_archive(&bundle, &root, &out, kind).unwrap();
        assert_eq!(size, fs::metadata(&out).unwrap().len());

        // Deterministic: the same folder packs to the same bytes.
        let again = home.path().join(format!("again{}", kind.extension()));
        create_archive(&bundle, &root, &again, kind).unwrap();
        assert!(
            fs::read(&out).unwrap() == fs::read(&again).unwrap(),
            "{kind:?} packing is not deterministic"
        );

        let dest = home.path().join("unpacked");
        let bundle_root = extract_archive(&out, &dest, &ExtractLimits::default()).unwrap();
        assert_eq!(bundle_root, dest.join(&root));
        for i in 0..3 {
            let name = format!("backend/data-{i:04}.bin");
            assert_eq!(
                fs::read(bundle_root.join(&name)).unwrap(),
                fs::read(bundle.join(&name)).unwrap()
            );
        }
        #[cfg(unix)]
        {
            assert!(
                is_executable(&bundle_root.join("backend/run.sh")),
                "{kind:?} lost the exec bit"
            );
            assert!(
                !is_executable(&bundle_root.join("agent.json")),
                "{kind:?} made data executable"
            );
            let link = bundle_root.join("backend/lib/libagent.so");
            assert!(
                fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
                "{kind:?} lost the link"
            );
            assert_eq!(fs::read_link(&link).unwrap(), Path::new("libagent.so.1"));
            let output = Command::new(bundle_root.join("backend/run.sh")).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "backend 1.2.0");
        }
    }
}

/// One tar entry written byte by byte, so names the `tar` crate would refuse to write can be tested.
struct RawEntry<'a> {
    name: &'a str,
    kind: tar::EntryType,
    link: Option<&'a str>,
    data: &'a [u8],
}

fn file_entry<'a>(name: &'a str, data: &'a [u8]) -> RawEntry<'a> {
    RawEntry {
        name,
        kind: tar::EntryType::Regular,
        link: None,
        data,
    }
}

fn link_entry<'a>(name: &'a str, kind: tar::EntryType, link: &'a str) -> RawEntry<'a> {
    RawEntry {
        name,
        kind,
        link: Some(link),
        data: b"",
    }
}

fn raw_tar_gz(path: &Path, entries: &[RawEntry]) {
    let gz = flate2::write::GzEncoder::new(fs::File::create(path).unwrap(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    for entry in entries {
        let mut header = tar::Header::new_old();
        {
            let old = header.as_old_mut();
            old.name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
            if let Some(link) = entry.link {
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        header.set_entry_type(entry.kind);
        header.set_mode(0o644);
        header.set_size(entry.data.len() as u64);
        header.set_cksum();
        builder.append(&header, entry.data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

fn assert_refused(entries: &[RawEntry], expected: impl Fn(&UnsafeReason) -> bool) {
    let home = temp_home();
    let archive = home.path().join("hostile.tar.gz");
    raw_tar_gz(&archive, entries);
    let dest = home.path().join("out/dest");
    let err = extract_archive(&archive, &dest, &ExtractLimits::default()).unwrap_err();
    match &err {
        ArchiveError::UnsafeEntry { reason, .. } => assert!(expected(reason), "wrong reason: {err}"),
        other => panic!("expected UnsafeEntry, got {other:?}"),
    }
    assert!(
        err.to_string().contains("hostile.tar.gz"),
        "the message names the archive: {err}"
    );
    assert!(!dest.exists(), "a refused archive leaves nothing behind");
    assert!(!home.path().join("evil").exists() && !home.path().join("out/evil").exists());
}

#[test]
fn extraction_refuses_a_parent_directory_entry() {
    assert_refused(
        &[
            file_entry("root/ok.txt", b"ok"),
            file_entry("root/../../evil", b"x"),
        ],
        |r| *r == UnsafeReason::ParentComponent,
    );
}

#[test]
fn extraction_refuses_an_absolute_path() {
    assert_refused(&[file_entry("/tmp/pai-evil-absolute", b"x")], |r| {
        *r == UnsafeReason::AbsolutePath
    });
    assert!(!Path::new("/tmp/pai-evil-absolute").exists());
}

#[test]
fn extraction_refuses_a_symlink_out_of_the_folder() {
    assert_refused(
        &[link_entry("root/escape", tar::EntryType::Symlink, "../../evil")],
        |r| matches!(r, UnsafeReason::LinkEscapes { .. }),
    );
    assert_refused(&[link_entry("root/etc", tar::EntryType::Symlink, "/etc")], |r| {
        matches!(r, UnsafeReason::LinkEscapes { .. })
    });
}

#[cfg(unix)]
#[test]
fn extraction_refuses_a_symlink_chain_that_escapes_only_when_followed() {
    // Lexically `root/here/../..` is the destination itself; followed, `here` is `root`, so it is one above.
    assert_refused(
        &[
            link_entry("root/here", tar::EntryType::Symlink, "."),
            link_entry("root/up", tar::EntryType::Symlink, "here/../.."),
        ],
        |r| matches!(r, UnsafeReason::LinkEscapes { .. }),
    );
}

#[cfg(unix)]
#[test]
fn extraction_refuses_writing_a_file_through_a_symlink() {
    assert_refused(
        &[
            link_entry("root/sub", tar::EntryType::Symlink, "."),
            link_entry("root/sub/x", tar::EntryType::Symlink, "y"),
        ],
        |r| *r == UnsafeReason::InsideLink,
    );
}

#[test]
fn extraction_refuses_a_hard_link_out_of_the_folder() {
    assert_refused(
        &[link_entry("root/passwd", tar::EntryType::Link, "/etc/passwd")],
        |r| matches!(r, UnsafeReason::HardLinkTarget { .. }),
    );
    assert_refused(&[link_entry("root/up", tar::EntryType::Link, "../evil")], |r| {
        matches!(r, UnsafeReason::HardLinkTarget { .. })
    });
}

#[test]
fn extraction_keeps_a_hard_link_to_an_earlier_file() {
    let home = temp_home();
    let archive = home.path().join("links.tar.gz");
    raw_tar_gz(
        &archive,
        &[
            file_entry("root/a", b"same"),
            link_entry("root/b", tar::EntryType::Link, "root/a"),
        ],
    );
    let root = extract_archive(&archive, &home.path().join("out"), &ExtractLimits::default()).unwrap();
    assert_eq!(fs::read(root.join("b")).unwrap(), b"same");
}

#[test]
fn extraction_refuses_fifos_and_devices() {
    assert_refused(
        &[RawEntry {
            name: "root/pipe",
            kind: tar::EntryType::Fifo,
            link: None,
            data: b"",
        }],
        |r| *r == UnsafeReason::SpecialFile { kind: "FIFO" },
    );
    assert_refused(
        &[RawEntry {
            name: "root/sda",
            kind: tar::EntryType::Block,
            link: None,
            data: b"",
        }],
        |r| matches!(r, UnsafeReason::SpecialFile { .. }),
    );
    assert_refused(
        &[RawEntry {
            name: "root/tty",
            kind: tar::EntryType::Char,
            link: None,
            data: b"",
        }],
        |r| matches!(r, UnsafeReason::SpecialFile { .. }),
    );
}

#[test]
fn extraction_refuses_zip_entries_that_climb_out() {
    let home = temp_home();
    let archive = home.path().join("hostile.zip");
    let mut zip = zip::ZipWriter::new(fs::File::create(&archive).unwrap());
    zip.start_file("root/../../evil", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut zip, b"x").unwrap();
    zip.finish().unwrap();
    let err = extract_archive(&archive, &home.path().join("out"), &ExtractLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::UnsafeEntry {
                reason: UnsafeReason::ParentComponent,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("root/../../evil"),
        "the message names the entry: {err}"
    );
}

#[test]
fn an_archive_that_unpacks_past_the_size_limit_is_refused_for_tar_gz_and_zip() {
    let limits = ExtractLimits {
        max_total_bytes: 1024 * 1024,
        max_entries: 100,
    };
    let zeros = vec![0u8; 8 * 1024 * 1024];
    for kind in [ArchiveKind::TarGz, ArchiveKind::Zip] {
        let home = temp_home();
        let bundle = home.path().join("bomb");
        fs::create_dir_all(&bundle).unwrap();
        fs::write(bundle.join("zeros"), &zeros).unwrap();
        let archive = home.path().join(format!("bomb{}", kind.extension()));
        let compressed = create_archive(&bundle, "root", &archive, kind).unwrap();
        assert!(
            compressed < 100 * 1024,
            "8 MiB of zeros should compress well, got {compressed}"
        );
        let dest = home.path().join("out");
        let err = extract_archive(&archive, &dest, &limits).unwrap_err();
        assert!(
            matches!(err, ArchiveError::TooLarge { limit, .. } if limit == 1024 * 1024),
            "{kind:?}: {err:?}"
        );
        assert!(!dest.exists(), "{kind:?}: nothing is left of a refused archive");
    }
}

#[test]
fn an_archive_with_too_many_entries_is_refused() {
    let home = temp_home();
    let entries: Vec<String> = (0..20).map(|i| format!("root/f{i}")).collect();
    let raw: Vec<RawEntry> = entries.iter().map(|n| file_entry(n, b"x")).collect();
    let archive = home.path().join("many.tar.gz");
    raw_tar_gz(&archive, &raw);
    let limits = ExtractLimits {
        max_total_bytes: 1 << 20,
        max_entries: 10,
    };
    let err = extract_archive(&archive, &home.path().join("out"), &limits).unwrap_err();
    assert!(
        matches!(err, ArchiveError::TooManyEntries { limit: 10, .. }),
        "{err:?}"
    );
}

#[test]
fn extraction_into_a_folder_that_is_not_empty_is_refused() {
    let home = temp_home();
    let archive = home.path().join("ok.tar.gz");
    raw_tar_gz(&archive, &[file_entry("root/a", b"a")]);
    let dest = home.path().join("busy");
    fs::create_dir_all(&dest).unwrap();
    fs::write(dest.join("mine"), b"keep").unwrap();
    let err = extract_archive(&archive, &dest, &ExtractLimits::default()).unwrap_err();
    assert!(matches!(err, ArchiveError::DestinationNotEmpty { .. }), "{err:?}");
    assert_eq!(fs::read(dest.join("mine")).unwrap(), b"keep");
}

/// A measurement, not a check: `cargo test --test it install::measure -- --ignored --nocapture` packs, then
/// installs, a bundle of 64 files of 4 MiB of random bytes (256 MiB) and prints the times.
#[test]
#[ignore = "a measurement; run by hand"]
fn measure_pack_and_install_of_a_256_mib_bundle() {
    let home = temp_home();
    let bundle = home.path().join("bundle");
    fs::create_dir_all(bundle.join("backend")).unwrap();
    fs::write(bundle.join("agent.json"), r#"{"version": "1.0.0"}"#).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..64 {
        let data: Vec<u8> = (0..4 * 1024 * 1024).map(|_| rng.u8(..)).collect();
        fs::write(bundle.join(format!("backend/blob-{i}")), data).unwrap();
    }
    for kind in [ArchiveKind::TarGz, ArchiveKind::Zip] {
        let archive = home
            .path()
            .join(format!("PersonalAIAgent-linux-x86_64-1.0.0{}", kind.extension()));
        let started = std::time::Instant::now();
        let size = create_archive(&bundle, "PersonalAIAgent-linux-x86_64-1.0.0", &archive, kind).unwrap();
        let packed = started.elapsed();
        let installer = Installer::new(home.path().join(format!("install-{kind:?}")));
        let started = std::time::Instant::now();
        installer
            .install_archive(&installer.lock().unwrap(), &archive, &v("1.0.0"))
            .unwrap();
        let installed = started.elapsed();
        eprintln!(
            "{kind:?}: archive {} MiB, pack {:.2} s, install (unpack + fsync + switch) {:.2} s = {:.0} MiB/s",
            size / (1024 * 1024),
            packed.as_secs_f64(),
            installed.as_secs_f64(),
            256.0 / installed.as_secs_f64()
        );
    }
}

#[test]
fn extraction_refuses_a_fifo_and_an_escaping_symlink_in_a_zip() {
    let home = temp_home();
    let fifo_options = zip::write::SimpleFileOptions::default()
        .system(zip::System::Unix)
        .external_attributes(0o010644 << 16);
    type WriteEntry = Box<dyn Fn(&mut zip::ZipWriter<fs::File>)>;
    type IsExpected = fn(&UnsafeReason) -> bool;
    let cases: [(&str, WriteEntry, IsExpected); 2] = [
        (
            "fifo.zip",
            Box::new(move |zip| zip.start_file("root/pipe", fifo_options).unwrap()),
            |r| *r == UnsafeReason::SpecialFile { kind: "FIFO" },
        ),
        (
            "link.zip",
            Box::new(|zip| {
                zip.add_symlink("root/up", "../../evil", zip::write::SimpleFileOptions::default())
                    .unwrap()
            }),
            |r| matches!(r, UnsafeReason::LinkEscapes { .. }),
        ),
    ];
    for (name, write, expected) in cases {
        let archive = home.path().join(name);
        let mut zip = zip::ZipWriter::new(fs::File::create(&archive).unwrap());
        write(&mut zip);
        zip.finish().unwrap();
        let dest = home.path().join(format!("out-{name}"));
        let err = extract_archive(&archive, &dest, &ExtractLimits::default()).unwrap_err();
        match &err {
            ArchiveError::UnsafeEntry { reason, .. } => assert!(expected(reason), "{name}: {err}"),
            other => panic!("{name}: expected UnsafeEntry, got {other:?}"),
        }
        assert!(!dest.exists(), "{name}: nothing is left behind");
    }
}

/// Every install flushes the unpacked files by path; on Windows that needs a handle with write access,
/// which must never truncate what was just unpacked.
#[test]
fn flushing_an_unpacked_file_by_path_keeps_its_bytes() {
    let home = temp_home();
    let path = home.path().join("agent-backend.exe");
    let bytes = payload(&v("1.0.0"), "exe", 64 * 1024);
    fs::write(&path, &bytes).unwrap();
    personal_ai_agent::fsutil::sync_file(&path).unwrap();
    assert!(fs::read(&path).unwrap() == bytes, "flushing changed the file");
    let missing = personal_ai_agent::fsutil::sync_file(&home.path().join("missing")).unwrap_err();
    assert_eq!(
        missing.kind(),
        std::io::ErrorKind::NotFound,
        "a flush never creates a file"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Links are contained by the bundle root, the folder that becomes `versions/<v>/`

/// On Windows every symbolic link is refused outright; elsewhere the refusal must name the escape.
fn is_link_escape(reason: &UnsafeReason) -> bool {
    matches!(reason, UnsafeReason::LinkEscapes { .. })
        || (cfg!(not(unix)) && *reason == UnsafeReason::LinksUnsupported)
}

#[test]
fn extraction_refuses_a_symlink_that_leaves_the_bundle_root_but_stays_in_staging() {
    // Each of these stays inside the staging folder, so a check against staging lets it pass; installed,
    // `Root/` becomes `versions/<v>/` and the link lands in a sibling version or in `versions/` itself.
    let cases: [&[RawEntry]; 5] = [
        &[
            file_entry("Root/agent.json", b"{}"),
            link_entry("Root/l", tar::EntryType::Symlink, "../1.0.0/backend/x"),
        ],
        &[link_entry("Root/l", tar::EntryType::Symlink, "../other")],
        &[link_entry(
            "Root/backend/up",
            tar::EntryType::Symlink,
            "../../sibling",
        )],
        // `..` from the bundle root itself names its parent, `versions/`.
        &[link_entry("Root/l", tar::EntryType::Symlink, "..")],
        // Climbing out and back in by name only works while the root is still called `Root`.
        &[
            file_entry("Root/x", b"x"),
            link_entry("Root/l", tar::EntryType::Symlink, "../Root/x"),
        ],
    ];
    for entries in cases {
        assert_refused(entries, is_link_escape);
    }
}

#[cfg(unix)]
#[test]
fn extraction_refuses_a_symlink_chain_that_reaches_the_bundle_roots_parent() {
    // Lexically `Root/here/..` is `Root`; followed, `here` is `Root` itself, so the chain ends one above.
    assert_refused(
        &[
            link_entry("Root/here", tar::EntryType::Symlink, "."),
            link_entry("Root/up", tar::EntryType::Symlink, "here/.."),
        ],
        |r| matches!(r, UnsafeReason::LinkEscapes { .. }),
    );
    // A link to a link that leaves the root.
    assert_refused(
        &[
            link_entry("Root/a", tar::EntryType::Symlink, "b"),
            link_entry("Root/b", tar::EntryType::Symlink, "../1.0.0"),
        ],
        |r| matches!(r, UnsafeReason::LinkEscapes { .. }),
    );
}

#[cfg(unix)]
#[test]
fn extraction_keeps_symlinks_that_stay_inside_the_bundle_root() {
    let home = temp_home();
    let archive = home.path().join("links.tar.gz");
    raw_tar_gz(
        &archive,
        &[
            file_entry("Root/agent.json", b"{}"),
            file_entry("Root/backend/lib/libx.so.1", b"lib"),
            link_entry("Root/backend/lib/libx.so", tar::EntryType::Symlink, "libx.so.1"),
            link_entry("Root/backend/agent", tar::EntryType::Symlink, "../agent.json"),
            link_entry("Root/self", tar::EntryType::Symlink, "."),
            link_entry(
                "Root/via",
                tar::EntryType::Symlink,
                "self/backend/lib/../../agent.json",
            ),
        ],
    );
    let root = extract_archive(&archive, &home.path().join("out"), &ExtractLimits::default()).unwrap();
    assert_eq!(root, home.path().join("out/Root"));
    assert_eq!(fs::read(root.join("backend/lib/libx.so")).unwrap(), b"lib");
    assert_eq!(fs::read(root.join("backend/agent")).unwrap(), b"{}");
    assert_eq!(fs::read(root.join("via")).unwrap(), b"{}");
}

#[test]
fn installing_a_bundle_whose_symlink_reaches_a_sibling_version_is_refused_and_leaves_no_trace() {
    let home = temp_home();
    let installer = Installer::new(home.path().join("install"));
    let lock = installer.lock().unwrap();
    let old = v("1.0.0");
    installer
        .install_archive(&lock, &pack(home.path(), &old, 1), &old)
        .unwrap();

    let new = v("2.0.0");
    let root = "PersonalAIAgent-linux-x86_64-2.0.0";
    let agent = format!(r#"{{"version": "{new}", "command": ["backend/run.sh"]}}"#);
    let agent_name = format!("{root}/agent.json");
    let link_name = format!("{root}/backend/old");
    let archive = home.path().join(format!("{root}.tar.gz"));
    raw_tar_gz(
        &archive,
        &[
            file_entry(&agent_name, agent.as_bytes()),
            // Installed as versions/2.0.0/backend/old, this is versions/1.0.0/backend/run.sh.
            link_entry(&link_name, tar::EntryType::Symlink, "../../1.0.0/backend/run.sh"),
        ],
    );
    let err = installer.install_archive(&lock, &archive, &new).unwrap_err();
    match &err {
        InstallError::Archive(ArchiveError::UnsafeEntry { entry, reason, .. }) => {
            assert!(is_link_escape(reason), "wrong reason: {err}");
            assert_eq!(entry, &link_name);
        }
        other => panic!("expected an unsafe entry, got {other:?}"),
    }
    assert!(
        !installer.version_dir(&new).exists(),
        "nothing of the refused version remains"
    );
    assert_eq!(installer.installed_versions().unwrap(), vec![old.clone()]);
    assert_current_is_complete(&installer, &old, 1);
    assert_no_leftovers(installer.dir());
}
