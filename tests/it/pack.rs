//! `release pack` through the real binary, checked with the real tools: `sha256sum -c` on the checksum
//! files and `minisign -V` on the manifest. A missing tool fails the test with an install hint.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use personal_ai_agent::archive::{ExtractLimits, extract_archive};
use personal_ai_agent::verify::{PublicKey, ReleaseManifest, verify_manifest};

use crate::support::temp_home;
use crate::verify::{key_id_in_pub_file, minisign_keypair, run_ok, run_tool};

const PLATFORMS: [&str; 5] = [
    "linux-x86_64",
    "linux-aarch64",
    "macos-x86_64",
    "macos-aarch64",
    "windows-x86_64",
];

/// A bundle folder with a backend program, a launcher and agent.json.
fn make_bundle(dir: &Path) -> PathBuf {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(bundle.join("backend")).unwrap();
    std::fs::write(bundle.join("backend/agent-server"), "#!/bin/sh\necho hello\n").unwrap();
    std::fs::write(bundle.join("personal-ai-agent"), "launcher").unwrap();
    std::fs::write(
        bundle.join("agent.json"),
        r#"{"command": ["backend/agent-server", "--port", "{port}"], "health_url": "http://127.0.0.1:{port}/health"}"#,
    )
    .unwrap();
    bundle
}

/// Runs `personal-ai-agent --home <private> release pack ...` with a clean environment.
fn pack(home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_personal-ai-agent"));
    command
        .arg("--home")
        .arg(home)
        .args(["release", "pack"])
        .args(args)
        .env_remove("PAI_HOME")
        .env_remove("MINISIGN_PASSWORD")
        .env_remove("SOURCE_DATE_EPOCH");
    for (name, value) in envs {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "release pack failed ({}): {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn packing_five_platforms_into_one_folder_gives_one_signed_manifest_that_the_real_tools_accept() {
    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let out = work.path().join("out");
    let (public, secret) = minisign_keypair(work.path(), "release");

    for platform in PLATFORMS {
        let output = pack(
            home.path(),
            &[
                "--version",
                "v1.2.0",
                "--platform",
                platform,
                "--bundle-dir",
                path_arg(&bundle),
                "--out",
                path_arg(&out),
                "--minisign-key",
                path_arg(&secret),
            ],
            &[],
        );
        assert_success(&output);
    }

    let checksum_files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("checksums-"))
        .collect();
    assert_eq!(checksum_files.len(), 5, "{checksum_files:?}");
    for file in &checksum_files {
        let output = run_ok("sha256sum", &["-c", file], &out);
        assert!(String::from_utf8_lossy(&output.stdout).contains(": OK"));
    }
    run_ok(
        "minisign",
        &["-V", "-p", path_arg(&public), "-m", "release-manifest.json"],
        &out,
    );

    let bytes = std::fs::read(out.join("release-manifest.json")).unwrap();
    let manifest = ReleaseManifest::parse(&bytes).unwrap();
    assert_eq!(manifest.version.to_string(), "1.2.0");
    let names: Vec<&str> = manifest.assets.iter().map(|a| a.name.as_str()).collect();
    for platform in PLATFORMS {
        let extension = if platform.starts_with("windows") {
            "zip"
        } else {
            "tar.zst"
        };
        let name = format!("PersonalAIAgent-{platform}-1.2.0.{extension}");
        assert!(names.contains(&name.as_str()), "{name} missing from {names:?}");
        let entry = manifest.asset(&name).unwrap();
        assert_eq!(entry.size, std::fs::metadata(out.join(&name)).unwrap().len());
        assert_eq!(entry.platform.unwrap().to_string(), platform);
    }
    assert_eq!(names.len(), 5);

    // Our own verifier agrees with the CLI.
    let signature = std::fs::read_to_string(out.join("release-manifest.json.minisig")).unwrap();
    assert!(
        signature.contains("file:release-manifest.json version:1.2.0"),
        "{signature}"
    );
    verify_manifest(&bytes, &signature, &PublicKey::from_file(&public).unwrap()).unwrap();
}

#[test]
fn each_archive_holds_one_top_folder_named_after_platform_and_version() {
    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let out = work.path().join("out");
    for platform in ["linux-x86_64", "windows-x86_64"] {
        let args = [
            "--version",
            "1.2.0",
            "--platform",
            platform,
            "--bundle-dir",
            path_arg(&bundle),
            "--out",
            path_arg(&out),
        ];
        assert_success(&pack(home.path(), &args, &[]));
        let extension = if platform.starts_with("windows") {
            "zip"
        } else {
            "tar.zst"
        };
        let root = format!("PersonalAIAgent-{platform}-1.2.0");
        let dest = work.path().join(format!("unpacked-{platform}"));
        let top = extract_archive(
            &out.join(format!("{root}.{extension}")),
            &dest,
            &ExtractLimits::default(),
        )
        .unwrap();
        assert_eq!(top, dest.join(&root));
        let entries: Vec<_> = std::fs::read_dir(&dest).unwrap().collect();
        assert_eq!(entries.len(), 1, "exactly one top folder");
        assert!(top.join("agent.json").is_file());
        assert!(top.join("backend/agent-server").is_file());
    }
}

#[test]
fn json_output_reports_paths_sizes_hashes_and_the_signing_key() {
    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let out = work.path().join("out");
    let (public, secret) = minisign_keypair(work.path(), "release");
    let mut command_args = vec![
        "--version",
        "1.2.0",
        "--platform",
        "linux-x86_64",
        "--bundle-dir",
        path_arg(&bundle),
        "--out",
        path_arg(&out),
        "--minisign-key",
        path_arg(&secret),
    ];
    command_args.insert(0, "--json");
    let output = pack(home.path(), &command_args, &[]);
    assert_success(&output);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["signed"], true);
    assert_eq!(report["key_id"], key_id_in_pub_file(&public));
    let archive = out.join("PersonalAIAgent-linux-x86_64-1.2.0.tar.zst");
    assert_eq!(report["archive"]["path"], path_arg(&archive));
    assert_eq!(
        report["archive"]["size"],
        std::fs::metadata(&archive).unwrap().len()
    );
    assert_eq!(
        report["archive"]["sha256"],
        personal_ai_agent::verify::sha256_file(&archive).unwrap()
    );
    // A mirror's web server, running as another user, must be able to read every file published.
    #[cfg(unix)]
    for entry in std::fs::read_dir(&out).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let path = entry.unwrap().path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", path.display());
    }
}

#[test]
fn repacking_a_platform_replaces_its_line_and_keeps_the_others() {
    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let extra_line = format!("{}  PersonalAIAgent-linux-x86_64-1.2.0.deb\n", "c".repeat(64));
    std::fs::write(out.join("checksums-linux-x86_64.txt"), &extra_line).unwrap();
    let args = [
        "--version",
        "1.2.0",
        "--platform",
        "linux-x86_64",
        "--bundle-dir",
        path_arg(&bundle),
        "--out",
        path_arg(&out),
    ];
    assert_success(&pack(home.path(), &args, &[]));
    std::fs::write(bundle.join("backend/agent-server"), "#!/bin/sh\necho changed\n").unwrap();
    assert_success(&pack(home.path(), &args, &[]));

    let text = std::fs::read_to_string(out.join("checksums-linux-x86_64.txt")).unwrap();
    assert!(text.contains(&extra_line), "{text}");
    assert_eq!(
        text.matches("PersonalAIAgent-linux-x86_64-1.2.0.tar.zst").count(),
        1,
        "{text}"
    );
    let archive = out.join("PersonalAIAgent-linux-x86_64-1.2.0.tar.zst");
    assert!(text.contains(&personal_ai_agent::verify::sha256_file(&archive).unwrap()));
}

#[test]
fn packing_another_version_into_a_folder_with_a_manifest_is_refused_naming_both() {
    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let out = work.path().join("out");
    let args = |version: &'static str| {
        vec![
            "--version".to_owned(),
            version.to_owned(),
            "--platform".to_owned(),
            "linux-x86_64".to_owned(),
            "--bundle-dir".to_owned(),
            path_arg(&bundle).to_owned(),
            "--out".to_owned(),
            path_arg(&out).to_owned(),
        ]
    };
    let first = args("1.2.0");
    assert_success(&pack(
        home.path(),
        &first.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    ));
    let before = std::fs::read(out.join("release-manifest.json")).unwrap();
    let second = args("1.3.0");
    let output = pack(
        home.path(),
        &second.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("1.2.0") && message.contains("1.3.0"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(out.join("release-manifest.json")).unwrap(),
        before,
        "manifest unchanged"
    );
    assert!(
        !out.join("PersonalAIAgent-linux-x86_64-1.3.0.tar.zst").exists(),
        "nothing written"
    );
}

#[test]
fn an_incomplete_bundle_is_refused_naming_what_is_missing() {
    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let out = work.path().join("out");
    let args = [
        "--version",
        "1.2.0",
        "--platform",
        "linux-x86_64",
        "--bundle-dir",
        path_arg(&bundle),
        "--out",
        path_arg(&out),
    ];

    std::fs::remove_file(bundle.join("backend/agent-server")).unwrap();
    let output = pack(home.path(), &args, &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("backend/agent-server"),
        "{}",
        stderr(&output)
    );

    std::fs::write(
        bundle.join("agent.json"),
        r#"{"command": [], "health_url": "http://127.0.0.1:{port}/"}"#,
    )
    .unwrap();
    let output = pack(home.path(), &args, &[]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("command"), "{}", stderr(&output));

    std::fs::remove_file(bundle.join("agent.json")).unwrap();
    let output = pack(home.path(), &args, &[]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("agent.json"), "{}", stderr(&output));
    assert!(!out.exists(), "nothing written for an incomplete bundle");
}

#[test]
fn an_encrypted_key_signs_with_minisign_password_and_is_refused_without_it() {
    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let out = work.path().join("out");
    let public = work.path().join("enc.pub");
    let secret = work.path().join("enc.key");
    let password = "correct horse battery staple";
    let generated = run_tool(
        "minisign",
        &["-G", "-p", path_arg(&public), "-s", path_arg(&secret)],
        work.path(),
        Some(&format!("{password}\n{password}\n")),
    );
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let args = [
        "--version",
        "1.2.0",
        "--platform",
        "macos-aarch64",
        "--bundle-dir",
        path_arg(&bundle),
        "--out",
        path_arg(&out),
        "--minisign-key",
        path_arg(&secret),
    ];

    let output = pack(home.path(), &args, &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("MINISIGN_PASSWORD"),
        "{}",
        stderr(&output)
    );

    let output = pack(home.path(), &args, &[("MINISIGN_PASSWORD", "wrong")]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("MINISIGN_PASSWORD"),
        "{}",
        stderr(&output)
    );

    assert_success(&pack(home.path(), &args, &[("MINISIGN_PASSWORD", password)]));
    run_ok(
        "minisign",
        &["-V", "-p", path_arg(&public), "-m", "release-manifest.json"],
        &out,
    );
}

#[test]
fn packing_without_a_key_removes_a_signature_that_no_longer_matches() {
    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let out = work.path().join("out");
    let (_, secret) = minisign_keypair(work.path(), "release");
    let base = [
        "--version",
        "1.2.0",
        "--bundle-dir",
        path_arg(&bundle),
        "--out",
        path_arg(&out),
        "--platform",
    ];
    let mut signed = base.to_vec();
    signed.extend(["linux-x86_64", "--minisign-key", path_arg(&secret)]);
    assert_success(&pack(home.path(), &signed, &[]));
    assert!(out.join("release-manifest.json.minisig").is_file());

    let mut unsigned = base.to_vec();
    unsigned.push("windows-x86_64");
    let output = pack(home.path(), &unsigned, &[]);
    assert_success(&output);
    assert!(!out.join("release-manifest.json.minisig").exists());
    assert!(String::from_utf8_lossy(&output.stdout).contains("NOT signed"));
}

#[test]
fn source_date_epoch_makes_two_packs_of_the_same_bundle_identical() {
    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let mut manifests = Vec::new();
    for run in ["a", "b"] {
        let out = work.path().join(run);
        let args = [
            "--version",
            "1.2.0",
            "--platform",
            "linux-x86_64",
            "--bundle-dir",
            path_arg(&bundle),
            "--out",
            path_arg(&out),
        ];
        assert_success(&pack(home.path(), &args, &[("SOURCE_DATE_EPOCH", "1780000000")]));
        manifests.push(std::fs::read(out.join("release-manifest.json")).unwrap());
    }
    assert_eq!(manifests[0], manifests[1]);
    let text = String::from_utf8(manifests[0].clone()).unwrap();
    assert!(
        text.contains("\"published_at\": \"2026-05-28T20:26:40Z\""),
        "{text}"
    );
}

#[test]
fn an_output_folder_inside_the_bundle_is_refused_before_anything_is_written() {
    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let out = bundle.join("dist");
    let args = [
        "--version",
        "1.2.0",
        "--platform",
        "linux-x86_64",
        "--bundle-dir",
        path_arg(&bundle),
        "--out",
        path_arg(&out),
    ];
    let output = pack(home.path(), &args, &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("inside the bundle"),
        "{}",
        stderr(&output)
    );
    assert!(!out.exists());
}

#[test]
fn what_pack_publishes_passes_the_launchers_signed_verification_policy() {
    use personal_ai_agent::release::Asset;
    use personal_ai_agent::verify::{ChecksumSource, VerificationMaterial, expected_sha256, sha256_file};

    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let out = work.path().join("out");
    let (public, secret) = minisign_keypair(work.path(), "release");
    for platform in ["linux-x86_64", "windows-x86_64"] {
        let args = [
            "--version",
            "1.2.0",
            "--platform",
            platform,
            "--bundle-dir",
            path_arg(&bundle),
            "--out",
            path_arg(&out),
            "--minisign-key",
            path_arg(&secret),
        ];
        assert_success(&pack(home.path(), &args, &[]));
    }
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let material = VerificationMaterial {
        manifest: Some((
            std::fs::read(out.join("release-manifest.json")).unwrap(),
            Some(read("release-manifest.json.minisig")),
        )),
        checksum_files: vec![(
            "checksums-windows-x86_64.txt".into(),
            read("checksums-windows-x86_64.txt"),
        )],
    };
    let name = "PersonalAIAgent-windows-x86_64-1.2.0.zip";
    let archive = out.join(name);
    let asset = Asset {
        name: name.into(),
        size: std::fs::metadata(&archive).unwrap().len(),
        url: format!("https://example.invalid/{name}"),
        api_url: None,
        digest: None,
    };
    let key = PublicKey::from_file(&public).unwrap();
    let verified = expected_sha256(&asset, &"1.2.0".parse().unwrap(), &material, Some(&key)).unwrap();
    assert!(verified.signed);
    assert_eq!(verified.source, ChecksumSource::SignedManifest);
    assert_eq!(verified.sha256, sha256_file(&archive).unwrap());

    // The same files, installed as another version, are refused.
    let err = expected_sha256(&asset, &"1.3.0".parse().unwrap(), &material, Some(&key)).unwrap_err();
    assert!(err.to_string().contains("1.3.0"), "{err}");
}

#[test]
fn notes_and_the_tag_travel_inside_the_signed_manifest() {
    let home = temp_home();
    let work = tempfile::tempdir().unwrap();
    let bundle = make_bundle(work.path());
    let out = work.path().join("out");
    let notes = work.path().join("NOTES.md");
    std::fs::write(&notes, "## 2.0.0\n- faster start\n").unwrap();
    let (public, secret) = minisign_keypair(work.path(), "release");
    let args = [
        "--version",
        "2.0.0",
        "--platform",
        "linux-x86_64",
        "--bundle-dir",
        path_arg(&bundle),
        "--out",
        path_arg(&out),
        "--minisign-key",
        path_arg(&secret),
        "--notes-file",
        path_arg(&notes),
    ];
    assert_success(&pack(home.path(), &args, &[]));
    let bytes = std::fs::read(out.join("release-manifest.json")).unwrap();
    let manifest = personal_ai_agent::verify::ReleaseManifest::parse(&bytes).unwrap();
    assert_eq!(manifest.tag.as_deref(), Some("v2.0.0"));
    assert_eq!(manifest.notes.as_deref(), Some("## 2.0.0\n- faster start\n"));
    let signature = std::fs::read_to_string(out.join("release-manifest.json.minisig")).unwrap();
    let key = PublicKey::from_file(&public).unwrap();
    personal_ai_agent::verify::verify_manifest(&bytes, &signature, &key).unwrap();

    // A feed written over the packed folder carries those notes (no NOTES.md beside it needed), so the
    // window's "What's new" and `update changelog` show them.
    let feed = work.path().join("feed");
    std::fs::create_dir_all(&feed).unwrap();
    std::fs::rename(&out, feed.join("2.0.0")).unwrap();
    personal_ai_agent::sources::feed::write_feed(&feed).unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(feed.join("feed.json")).unwrap()).unwrap();
    assert_eq!(doc["releases"][0]["notes"], "## 2.0.0\n- faster start\n", "{doc}");
}
