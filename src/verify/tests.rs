//! The verification policy against in-memory releases, with keys made on the spot; and property tests that
//! no parser panics on any input. Interop with the real `minisign` CLI is in `tests/it/verify.rs`.

use proptest::prelude::*;

use super::*;
use crate::version::Channel;

const NAME: &str = "PersonalAIAgent-linux-x86_64-1.2.0.tar.gz";

struct Signer {
    pair: minisign::KeyPair,
    public: PublicKey,
}

impl Signer {
    fn new() -> Self {
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let public = pair.pk.to_base64().parse().unwrap();
        Signer { pair, public }
    }
    fn sign(&self, bytes: &[u8]) -> String {
        minisign::sign(
            None,
            &self.pair.sk,
            bytes,
            Some("timestamp:0 file:release-manifest.json"),
            None,
        )
        .unwrap()
        .into_string()
    }
}

fn asset(size: u64, digest: Option<&str>) -> Asset {
    Asset {
        name: NAME.into(),
        size,
        url: format!("https://example.invalid/{NAME}"),
        api_url: None,
        digest: digest.map(|d| format!("sha256:{d}")),
    }
}

fn manifest(version: &str, sha256: &str, size: u64) -> Vec<u8> {
    let mut m = ReleaseManifest::new(version.parse().unwrap(), Channel::Stable, chrono::Utc::now());
    m.upsert(ManifestAsset {
        name: NAME.into(),
        size,
        sha256: sha256.into(),
        platform: Some("linux-x86_64".parse().unwrap()),
        file_list: None,
        deltas: Vec::new(),
    });
    m.to_json_bytes()
}

fn v120() -> semver::Version {
    semver::Version::new(1, 2, 0)
}

#[test]
fn with_a_key_a_correctly_signed_manifest_gives_a_signed_hash_and_size() {
    let signer = Signer::new();
    let bytes = manifest("1.2.0", &"a".repeat(64), 10);
    let material = VerificationMaterial {
        manifest: Some((bytes.clone(), Some(signer.sign(&bytes)))),
        checksum_files: vec![],
    };
    let verified = expected_sha256(&asset(10, None), &v120(), &material, Some(&signer.public)).unwrap();
    assert_eq!(verified.sha256, "a".repeat(64));
    assert_eq!(verified.size, Some(10));
    assert_eq!(verified.source, ChecksumSource::SignedManifest);
    assert!(verified.signed);
    assert_eq!(verified.key_id.as_deref(), Some(signer.public.key_id()));
}

#[test]
fn with_a_key_checksum_files_and_digests_alone_are_refused_as_unsigned() {
    let signer = Signer::new();
    let material = VerificationMaterial {
        manifest: None,
        checksum_files: vec![("SHA256SUMS".into(), format!("{}  {NAME}\n", "a".repeat(64)))],
    };
    let err = expected_sha256(
        &asset(10, Some(&"a".repeat(64))),
        &v120(),
        &material,
        Some(&signer.public),
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::Unsigned { .. }), "{err}");
    assert!(err.to_string().contains(signer.public.key_id()), "{err}");

    let bytes = manifest("1.2.0", &"a".repeat(64), 10);
    let material = VerificationMaterial {
        manifest: Some((bytes, None)),
        checksum_files: vec![],
    };
    let err = expected_sha256(&asset(10, None), &v120(), &material, Some(&signer.public)).unwrap_err();
    assert!(err.to_string().contains(MANIFEST_SIGNATURE_FILE), "{err}");
}

#[test]
fn with_a_key_a_signature_by_another_key_names_both_keys() {
    let pinned = Signer::new();
    let other = Signer::new();
    let bytes = manifest("1.2.0", &"a".repeat(64), 10);
    let material = VerificationMaterial {
        manifest: Some((bytes.clone(), Some(other.sign(&bytes)))),
        checksum_files: vec![],
    };
    let err = expected_sha256(&asset(10, None), &v120(), &material, Some(&pinned.public)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{text}");
    assert!(
        text.contains(pinned.public.key_id()) && text.contains(other.public.key_id()),
        "{text}"
    );
}

#[test]
fn with_a_key_a_tampered_manifest_is_refused() {
    let signer = Signer::new();
    let bytes = manifest("1.2.0", &"a".repeat(64), 10);
    let signature = signer.sign(&bytes);
    let tampered = manifest("1.2.0", &"b".repeat(64), 10);
    let material = VerificationMaterial {
        manifest: Some((tampered, Some(signature))),
        checksum_files: vec![],
    };
    let err = expected_sha256(&asset(10, None), &v120(), &material, Some(&signer.public)).unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
}

#[test]
fn a_signed_manifest_of_another_version_is_refused() {
    let signer = Signer::new();
    let bytes = manifest("1.1.0", &"a".repeat(64), 10);
    let material = VerificationMaterial {
        manifest: Some((bytes.clone(), Some(signer.sign(&bytes)))),
        checksum_files: vec![],
    };
    let err = expected_sha256(&asset(10, None), &v120(), &material, Some(&signer.public)).unwrap_err();
    match err {
        VerifyError::VersionMismatch { manifest, expected } => {
            assert_eq!((manifest.as_str(), expected.as_str()), ("1.1.0", "1.2.0"));
        }
        other => panic!("expected VersionMismatch, got {other}"),
    }
}

#[test]
fn a_signed_manifest_that_does_not_list_the_asset_or_gives_another_size_is_refused() {
    let signer = Signer::new();
    let bytes = manifest("1.2.0", &"a".repeat(64), 10);
    let material = VerificationMaterial {
        manifest: Some((bytes.clone(), Some(signer.sign(&bytes)))),
        checksum_files: vec![],
    };
    let mut other = asset(10, None);
    other.name = "PersonalAIAgent-macos-aarch64-1.2.0.tar.gz".into();
    let err = expected_sha256(&other, &v120(), &material, Some(&signer.public)).unwrap_err();
    assert!(matches!(err, VerifyError::AssetNotInManifest { .. }), "{err}");
    let err = expected_sha256(&asset(11, None), &v120(), &material, Some(&signer.public)).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::SizeMismatch {
                manifest: 10,
                announced: 11,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn without_a_key_sources_are_taken_in_order_and_reported_unsigned() {
    let a = "a".repeat(64);
    let per_asset = (format!("{NAME}.sha256"), format!("{a}\n"));
    let sums = ("SHA256SUMS".to_owned(), format!("SHA256 ({NAME}) = {a}\n"));
    let platform = ("checksums-linux-x86_64.txt".to_owned(), format!("{a}  {NAME}\n"));

    let material = VerificationMaterial {
        manifest: None,
        checksum_files: vec![per_asset.clone(), sums.clone(), platform.clone()],
    };
    let verified = expected_sha256(&asset(10, Some(&a)), &v120(), &material, None).unwrap();
    assert_eq!(verified.source, ChecksumSource::ChecksumFile(platform.0.clone()));
    assert!(!verified.signed);

    let material = VerificationMaterial {
        manifest: None,
        checksum_files: vec![per_asset.clone()],
    };
    let verified = expected_sha256(&asset(10, None), &v120(), &material, None).unwrap();
    assert_eq!(verified.source, ChecksumSource::ChecksumFile(per_asset.0.clone()));

    let verified = expected_sha256(
        &asset(10, Some(&a)),
        &v120(),
        &VerificationMaterial::default(),
        None,
    )
    .unwrap();
    assert_eq!(verified.source, ChecksumSource::GitHubDigest);

    let bytes = manifest("1.2.0", &a, 10);
    let material = VerificationMaterial {
        manifest: Some((bytes, None)),
        checksum_files: vec![platform],
    };
    let verified = expected_sha256(&asset(10, Some(&a)), &v120(), &material, None).unwrap();
    assert_eq!(verified.source, ChecksumSource::UnsignedManifest);
    assert_eq!(verified.size, Some(10));
    assert!(!verified.signed);
}

#[test]
fn without_a_key_sources_that_disagree_are_refused() {
    let a = "a".repeat(64);
    let b = "b".repeat(64);
    let material = VerificationMaterial {
        manifest: None,
        checksum_files: vec![("SHA256SUMS".into(), format!("{a}  {NAME}\n"))],
    };
    let err = expected_sha256(&asset(10, Some(&b)), &v120(), &material, None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&a) && text.contains(&b) && text.contains("SHA256SUMS"),
        "{text}"
    );
}

#[test]
fn without_any_checksum_the_asset_is_refused_and_the_message_says_what_to_publish() {
    let material = VerificationMaterial {
        manifest: None,
        checksum_files: vec![
            ("notes.txt".into(), format!("{}  {NAME}\n", "a".repeat(64))),
            ("other.zip.sha256".into(), "a".repeat(64)),
        ],
    };
    let err = expected_sha256(&asset(10, None), &v120(), &material, None).unwrap_err();
    assert!(matches!(err, VerifyError::NoChecksum { .. }), "{err}");
    assert!(err.to_string().contains("must publish checksums"), "{err}");
}

#[test]
fn public_keys_read_from_pub_file_text_or_the_bare_line_with_crlf() {
    let signer = Signer::new();
    let line = signer.pair.pk.to_base64();
    let file_text = format!("untrusted comment: minisign public key\r\n{line}\r\n");
    let from_file: PublicKey = file_text.parse().unwrap();
    let from_line: PublicKey = format!("  {line}  ").parse().unwrap();
    assert_eq!(from_file, from_line);
    let id = from_file.key_id();
    assert!((1..=16).contains(&id.len()) && !id.starts_with('0'), "{id}");
    assert!(
        id.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
        "{id}"
    );
    assert!("untrusted comment: x\n".parse::<PublicKey>().is_err());
    assert!(format!("{line}\n{line}").parse::<PublicKey>().is_err());
}

#[test]
fn a_truncated_signature_is_refused_with_the_file_name() {
    let signer = Signer::new();
    let bytes = manifest("1.2.0", &"a".repeat(64), 10);
    let signature = signer.sign(&bytes);
    let truncated = &signature[..signature.len() / 2];
    let err = verify_manifest(&bytes, truncated, &signer.public).unwrap_err();
    assert!(err.to_string().contains(MANIFEST_SIGNATURE_FILE), "{err}");
}

#[test]
fn sha256_file_matches_the_known_digest_of_abc() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abc");
    std::fs::write(&path, b"abc").unwrap();
    let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(sha256_file(&path).unwrap(), expected);
    assert!(check_file_sha256(&path, &expected.to_uppercase()).is_ok());
    let err = check_file_sha256(&path, &"0".repeat(64)).unwrap_err();
    assert!(
        err.to_string().contains(expected) && err.to_string().contains("abc"),
        "{err}"
    );
}

proptest! {
    #[test]
    fn the_checksum_parser_never_panics(text in any::<String>(), name in any::<String>()) {
        let _ = parse_checksums(&text);
        let _ = find_checksum(&text, &name);
        let _ = lookup_checksum(&text, &name, &format!("{name}.sha256"));
    }

    #[test]
    fn the_checksum_parser_never_panics_on_near_valid_lines(
        hex in "[0-9a-fA-F]{60,68}",
        sep in "( |  | \\*|\t|\\) = )",
        name in "[ -~\\\\]{0,20}",
        prefix in "(|\\\\|SHA256 \\(|./)",
    ) {
        let text = format!("{prefix}{hex}{sep}{name}\r\n{prefix}{name}{sep}{hex}\n");
        let _ = parse_checksums(&text);
        let _ = find_checksum(&text, &name);
    }

    #[test]
    fn the_manifest_parser_never_panics(bytes in any::<Vec<u8>>()) {
        let _ = ReleaseManifest::parse(&bytes);
    }

    #[test]
    fn the_manifest_parser_never_panics_on_mutated_manifests(
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = manifest("1.2.0", &"a".repeat(64), 10);
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = ReleaseManifest::parse(&bytes);
    }

    #[test]
    fn the_key_and_signature_parsers_never_panic(text in any::<String>(), bytes in any::<Vec<u8>>()) {
        let _ = text.parse::<PublicKey>();
        let _ = signature_key_id(&text);
        let key = SIGNER.with(|s| s.public.clone());
        prop_assert!(verify_manifest(&bytes, &text, &key).is_err());
    }

    #[test]
    fn signatures_with_a_flipped_character_never_panic_and_are_refused(
        at in any::<prop::sample::Index>(),
        replacement in "[A-Za-z0-9+/=:\n ]",
    ) {
        let signer = SIGNER.with(|s| (s.pair.sk.clone(), s.public.clone()));
        let bytes = manifest("1.2.0", &"a".repeat(64), 10);
        let good = minisign::sign(None, &signer.0, &bytes[..], Some("timestamp:0"), None).unwrap().into_string();
        let i = at.index(good.len());
        let mut mutated = good.clone();
        mutated.replace_range(i..i + 1, &replacement);
        let result = verify_manifest(&bytes, &mutated, &signer.1);
        let _ = signature_key_id(&mutated);
        // The untrusted comment is not signed, and a flip to the same character changes nothing.
        let first_line_end = good.find('\n').unwrap();
        if mutated != good && i >= first_line_end {
            prop_assert!(result.is_err(), "mutated signature accepted: {mutated}");
        }
    }
}

thread_local! {
    static SIGNER: Signer = Signer::new();
}

#[test]
fn the_configured_key_is_pinned_and_a_broken_one_is_an_error_not_no_key() {
    let signer = Signer::new();
    let config = Config {
        public_key: Some(signer.pair.pk.to_base64()),
        ..Config::default()
    };
    assert_eq!(pinned_key(&config).unwrap(), Some(signer.public.clone()));

    let broken = Config {
        public_key: Some("RWQnot-a-key".into()),
        ..Config::default()
    };
    let err = pinned_key(&broken).unwrap_err();
    assert!(err.to_string().contains("settings"), "{err}");
}

#[test]
fn key_ids_read_like_minisign_prints_them_without_leading_zeros() {
    use super::signature::key_id_hex;
    assert_eq!(
        key_id_hex(&[0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed, 0x0f]),
        "FEDCBA987654321"
    );
    assert_eq!(
        key_id_hex(&[0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0xf1]),
        "F123456789ABCDEF"
    );
}
