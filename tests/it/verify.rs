//! Interop of `verify` with the real `minisign` CLI: signatures it makes over a manifest are accepted, and
//! ones by another key, over a tampered manifest, truncated, or in the legacy format are refused. The
//! tools must be installed (CI installs minisign); a missing tool fails the test with a message saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use personal_ai_agent::verify::{
    MANIFEST_FILE, ManifestAsset, PublicKey, ReleaseManifest, VerifyError, verify_manifest,
};
use personal_ai_agent::version::Channel;

/// Runs an external tool, failing the test with an install hint when it is missing.
pub(crate) fn run_tool(program: &str, args: &[&str], dir: &Path, stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut command = Command::new(program);
    command.args(args).current_dir(dir);
    command.stdin(if stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    });
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is not installed, and this interop test needs it: install it (Debian/Ubuntu: `apt-get install {}`; macOS: `brew install {}`)",
            package_of(program),
            package_of(program)
        ),
        Err(e) => panic!("cannot run `{program}`: {e}"),
    };
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn package_of(program: &str) -> &str {
    match program {
        "sha256sum" => "coreutils",
        other => other,
    }
}

/// Runs a tool and asserts that it succeeded, showing its output when it did not.
pub(crate) fn run_ok(program: &str, args: &[&str], dir: &Path) -> Output {
    let output = run_tool(program, args, dir, None);
    assert!(
        output.status.success(),
        "`{program} {}` failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A key pair made by `minisign -G -W` (unencrypted) in `dir`, as `<name>.pub` and `<name>.key`.
pub(crate) fn minisign_keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let public = dir.join(format!("{name}.pub"));
    let secret = dir.join(format!("{name}.key"));
    run_ok(
        "minisign",
        &[
            "-G",
            "-W",
            "-p",
            public.to_str().unwrap(),
            "-s",
            secret.to_str().unwrap(),
        ],
        dir,
    );
    (public, secret)
}

/// The key id `minisign` wrote into a `.pub` file's comment (`minisign public key <ID>`).
pub(crate) fn key_id_in_pub_file(public: &Path) -> String {
    let text = std::fs::read_to_string(public).unwrap();
    let first = text.lines().next().unwrap();
    first.rsplit(' ').next().unwrap().to_owned()
}

fn sample_manifest(version: &str, sha256: &str) -> Vec<u8> {
    let mut manifest = ReleaseManifest::new(version.parse().unwrap(), Channel::Stable, chrono::Utc::now());
    manifest.upsert(ManifestAsset {
        name: "PersonalAIAgent-linux-x86_64-1.2.0.tar.gz".into(),
        size: 1234,
        sha256: sha256.into(),
        platform: Some("linux-x86_64".parse().unwrap()),
        file_list: None,
        deltas: Vec::new(),
    });
    manifest.to_json_bytes()
}

/// Writes the manifest and signs it with the real CLI; returns the signature text.
fn sign_with_cli(dir: &Path, secret: &Path, manifest: &[u8], extra: &[&str]) -> String {
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, manifest).unwrap();
    let mut args = vec!["-S", "-s", secret.to_str().unwrap(), "-m", MANIFEST_FILE];
    args.extend_from_slice(extra);
    run_ok("minisign", &args, dir);
    std::fs::read_to_string(dir.join(format!("{MANIFEST_FILE}.minisig"))).unwrap()
}

#[test]
fn a_signature_made_by_the_minisign_cli_is_accepted_with_its_pub_file() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = minisign_keypair(dir.path(), "release");
    let manifest = sample_manifest("1.2.0", &"a".repeat(64));
    let signature = sign_with_cli(dir.path(), &secret, &manifest, &[]);

    let key = PublicKey::from_file(&public).unwrap();
    assert_eq!(key.key_id(), key_id_in_pub_file(&public));
    verify_manifest(&manifest, &signature, &key).unwrap();
    // The bare base64 line, as PAI_UPDATE_PUBLIC_KEY and the settings hold it, is the same key.
    let line = std::fs::read_to_string(&public)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    verify_manifest(&manifest, &signature, &line.parse().unwrap()).unwrap();
}

#[test]
fn a_cli_signature_by_another_key_is_refused_naming_both_key_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (pinned_pub, _) = minisign_keypair(dir.path(), "pinned");
    let (other_pub, other_secret) = minisign_keypair(dir.path(), "other");
    let manifest = sample_manifest("1.2.0", &"a".repeat(64));
    let signature = sign_with_cli(dir.path(), &other_secret, &manifest, &[]);

    let key = PublicKey::from_file(&pinned_pub).unwrap();
    let err = verify_manifest(&manifest, &signature, &key).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{text}");
    assert!(text.contains(&key_id_in_pub_file(&pinned_pub)), "{text}");
    assert!(text.contains(&key_id_in_pub_file(&other_pub)), "{text}");
}

#[test]
fn a_manifest_changed_after_the_cli_signed_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = minisign_keypair(dir.path(), "release");
    let manifest = sample_manifest("1.2.0", &"a".repeat(64));
    let signature = sign_with_cli(dir.path(), &secret, &manifest, &[]);
    let tampered = sample_manifest("1.2.0", &"b".repeat(64));
    // Same length, one hash changed: only the signature can tell.
    assert_eq!(tampered.len(), manifest.len());

    let key = PublicKey::from_file(&public).unwrap();
    let err = verify_manifest(&tampered, &signature, &key).unwrap_err();
    assert!(err.to_string().contains("changed after signing"), "{err}");
}

#[test]
fn a_truncated_or_empty_cli_signature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = minisign_keypair(dir.path(), "release");
    let manifest = sample_manifest("1.2.0", &"a".repeat(64));
    let signature = sign_with_cli(dir.path(), &secret, &manifest, &[]);
    let key = PublicKey::from_file(&public).unwrap();

    for cut in [0, 10, signature.len() / 2, signature.len() - 20] {
        let err = verify_manifest(&manifest, &signature[..cut], &key).unwrap_err();
        assert!(
            matches!(err, VerifyError::BadSignature { .. }),
            "cut at {cut}: {err}"
        );
    }
    // Dropping only the trusted comment's signature line is a truncation too.
    let three_lines: String = signature.lines().take(3).map(|l| format!("{l}\n")).collect();
    assert!(verify_manifest(&manifest, &three_lines, &key).is_err());
}

#[test]
fn a_changed_trusted_comment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = minisign_keypair(dir.path(), "release");
    let manifest = sample_manifest("1.2.0", &"a".repeat(64));
    let signature = sign_with_cli(dir.path(), &secret, &manifest, &["-t", "version:1.2.0"]);
    let key = PublicKey::from_file(&public).unwrap();
    verify_manifest(&manifest, &signature, &key).unwrap();

    let forged = signature.replace("version:1.2.0", "version:9.9.9");
    assert_ne!(forged, signature);
    assert!(verify_manifest(&manifest, &forged, &key).is_err());
}

#[test]
fn a_legacy_cli_signature_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = minisign_keypair(dir.path(), "release");
    let manifest = sample_manifest("1.2.0", &"a".repeat(64));
    let signature = sign_with_cli(dir.path(), &secret, &manifest, &["-l"]);
    let key = PublicKey::from_file(&public).unwrap();
    let err = verify_manifest(&manifest, &signature, &key).unwrap_err();
    assert!(err.to_string().contains("legacy"), "{err}");
}

#[test]
fn a_pub_file_that_is_not_a_key_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.pub");
    std::fs::write(&path, "untrusted comment: x\nnot-base64!\n").unwrap();
    let err = PublicKey::from_file(&path).unwrap_err();
    assert!(err.to_string().contains("bad.pub"), "{err}");
}
