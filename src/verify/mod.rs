//! Verification: which SHA256 a downloaded asset must have, and whether the release was signed by the
//! publisher's key. Nothing here touches the network; callers fetch the release's manifest, signature and
//! checksum files and hand their bytes in as [`VerificationMaterial`].
//!
//! [`expected_sha256`] is the policy, in one place:
//! 1. the **signed manifest** (`release-manifest.json` + `.minisig`), checked against the pinned key;
//! 2. the release's **checksum files** (`checksums-<os>-<arch>.txt`, `SHA256SUMS`, `<asset>.sha256`);
//! 3. the asset's **`digest`** from the GitHub API.
//!
//! With a key pinned (built in from `PAI_UPDATE_PUBLIC_KEY` at compile time, or set in the settings), only
//! the first source counts and a release that is unsigned, badly signed, signed by another key, or whose
//! signed manifest names another version is refused: checksums published beside an archive protect
//! against a damaged download but not against whoever can replace both. Without a key, checksums alone
//! apply and the result says `signed: false`. When no source gives a hash, the asset is refused: we never
//! install bytes we could not check.
//!
//! The file formats are described in `docs/RELEASE-FORMAT.md`.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::release::Asset;

pub mod checksums;
pub mod manifest;
pub mod signature;

pub use checksums::{find_checksum, gnu_line, is_sha256_hex, lookup_checksum, parse_checksums};
pub use manifest::{
    FILE_LIST_LIMIT, FILE_LIST_SUFFIX, FileList, MANIFEST_FILE, MANIFEST_LIMIT, MANIFEST_PRODUCT,
    MANIFEST_SCHEMA, MANIFEST_SIGNATURE_FILE, ManifestAsset, ManifestDelta, ManifestFile, ManifestFileList,
    ReleaseManifest,
};
pub use signature::{PublicKey, signature_key_id, verify_manifest};

/// The public key built into this launcher, if the build set `PAI_UPDATE_PUBLIC_KEY` (the base64 line of
/// a minisign `.pub` file). A malformed value yields `None` here; the build's own tests catch that.
pub fn builtin_public_key() -> Option<PublicKey> {
    builtin_key_text()?.parse().ok()
}

fn builtin_key_text() -> Option<&'static str> {
    option_env!("PAI_UPDATE_PUBLIC_KEY").filter(|k| !k.trim().is_empty())
}

/// The key releases must be signed with: the settings' `public_key` (set by `update configure
/// --public-key`) overrides the built-in one. An unreadable configured key is an error, never "no key":
/// silently dropping a pin would accept unsigned releases.
pub fn pinned_key(config: &Config) -> Result<Option<PublicKey>, VerifyError> {
    if let Some(text) = config.public_key.as_deref().filter(|t| !t.trim().is_empty()) {
        return text.parse().map(Some).map_err(|e| match e {
            VerifyError::InvalidPublicKey { reason, .. } => VerifyError::InvalidPublicKey {
                source_name: "the public_key in the settings".to_owned(),
                reason,
            },
            other => other,
        });
    }
    match builtin_key_text() {
        Some(text) => text.parse().map(Some).map_err(|e| match e {
            VerifyError::InvalidPublicKey { reason, .. } => VerifyError::InvalidPublicKey {
                source_name: "the key built in from PAI_UPDATE_PUBLIC_KEY".to_owned(),
                reason,
            },
            other => other,
        }),
        None => Ok(None),
    }
}

/// What a release publishes that can vouch for an asset, as fetched by the caller.
#[derive(Clone, Debug, Default)]
pub struct VerificationMaterial {
    /// `release-manifest.json` bytes and, when published, the text of `release-manifest.json.minisig`.
    pub manifest: Option<(Vec<u8>, Option<String>)>,
    /// Checksum files published with the release: `(file name, text)`. Files whose names are not
    /// checksum files (see [`is_checksum_file_name`]) are ignored.
    pub checksum_files: Vec<(String, String)>,
}

/// Where an expected hash came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "file", rename_all = "snake_case")]
pub enum ChecksumSource {
    SignedManifest,
    UnsignedManifest,
    ChecksumFile(String),
    GitHubDigest,
}

impl fmt::Display for ChecksumSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChecksumSource::SignedManifest => write!(f, "signed {MANIFEST_FILE}"),
            ChecksumSource::UnsignedManifest => write!(f, "{MANIFEST_FILE} (unsigned)"),
            ChecksumSource::ChecksumFile(name) => f.write_str(name),
            ChecksumSource::GitHubDigest => f.write_str("GitHub asset digest"),
        }
    }
}

/// The hash (and size, when known) a download must have, and how much that is worth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Lowercase hex SHA256.
    pub sha256: String,
    /// The size the signed or unsigned manifest gives; `None` from checksum files and digests.
    pub size: Option<u64>,
    pub source: ChecksumSource,
    /// Whether the hash comes from a manifest whose signature was checked against the pinned key.
    pub signed: bool,
    /// The id of the key that signed, when `signed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The channel the manifest that gave the hash was published for; `None` when no manifest gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<crate::version::Channel>,
    /// When that manifest says the release was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The manifest's whole entry for the asset (its file list and deltas), when a manifest gave the hash.
    #[serde(skip)]
    pub entry: Option<ManifestAsset>,
}

/// Decides the SHA256 `asset` of release `version` must have. See the module documentation for the order
/// of sources and the rules with and without a pinned `key`.
pub fn expected_sha256(
    asset: &Asset,
    version: &semver::Version,
    material: &VerificationMaterial,
    key: Option<&PublicKey>,
) -> Result<Verified, VerifyError> {
    if let Some(key) = key {
        return from_signed_manifest(asset, version, material, key);
    }
    let mut found: Option<Verified> = None;
    if let Some((bytes, _signature)) = &material.manifest {
        let manifest = ReleaseManifest::parse(bytes)?;
        check_manifest_version(&manifest, version)?;
        if let Some(entry) = manifest.asset(&asset.name) {
            check_announced_size(asset, entry)?;
            found = Some(Verified {
                sha256: entry.sha256.clone(),
                size: Some(entry.size),
                source: ChecksumSource::UnsignedManifest,
                signed: false,
                key_id: None,
                channel: Some(manifest.channel),
                published_at: Some(manifest.published_at),
                entry: Some(entry.clone()),
            });
        }
    }
    let mut files: Vec<&(String, String)> = material
        .checksum_files
        .iter()
        .filter(|(name, _)| checksum_file_rank(name, &asset.name).is_some())
        .collect();
    files.sort_by_key(|(name, _)| checksum_file_rank(name, &asset.name));
    for (name, text) in files {
        if let Some(sha256) = lookup_checksum(text, &asset.name, name)? {
            found = Some(agree(
                found,
                &asset.name,
                sha256,
                ChecksumSource::ChecksumFile(name.clone()),
            )?);
        }
    }
    if let Some(sha256) = asset.sha256_digest() {
        found = Some(agree(found, &asset.name, sha256, ChecksumSource::GitHubDigest)?);
    }
    found.ok_or_else(|| VerifyError::NoChecksum {
        asset: asset.name.clone(),
    })
}

/// With a key pinned, the signed manifest is the only source that counts.
fn from_signed_manifest(
    asset: &Asset,
    version: &semver::Version,
    material: &VerificationMaterial,
    key: &PublicKey,
) -> Result<Verified, VerifyError> {
    let unsigned = |missing: &str| VerifyError::Unsigned {
        version: version.to_string(),
        key_id: key.key_id().to_owned(),
        missing: missing.to_owned(),
    };
    let Some((bytes, signature)) = &material.manifest else {
        return Err(unsigned(MANIFEST_FILE));
    };
    let Some(signature) = signature else {
        return Err(unsigned(MANIFEST_SIGNATURE_FILE));
    };
    verify_manifest(bytes, signature, key)?;
    let manifest = ReleaseManifest::parse(bytes)?;
    check_manifest_version(&manifest, version)?;
    let entry = manifest
        .asset(&asset.name)
        .ok_or_else(|| VerifyError::AssetNotInManifest {
            asset: asset.name.clone(),
            version: manifest.version.to_string(),
            listed: manifest.assets.iter().map(|a| a.name.clone()).collect(),
        })?;
    check_announced_size(asset, entry)?;
    Ok(Verified {
        sha256: entry.sha256.clone(),
        size: Some(entry.size),
        source: ChecksumSource::SignedManifest,
        signed: true,
        key_id: Some(key.key_id().to_owned()),
        channel: Some(manifest.channel),
        published_at: Some(manifest.published_at),
        entry: Some(entry.clone()),
    })
}

fn check_manifest_version(manifest: &ReleaseManifest, expected: &semver::Version) -> Result<(), VerifyError> {
    if manifest.version == *expected {
        Ok(())
    } else {
        Err(VerifyError::VersionMismatch {
            manifest: manifest.version.to_string(),
            expected: expected.to_string(),
        })
    }
}

/// A source that announces one size while the manifest gives another is serving something else than what
/// was published. A size of 0 means "not announced" (some feeds omit it).
fn check_announced_size(asset: &Asset, entry: &ManifestAsset) -> Result<(), VerifyError> {
    if asset.size != 0 && asset.size != entry.size {
        return Err(VerifyError::SizeMismatch {
            asset: asset.name.clone(),
            manifest: entry.size,
            announced: asset.size,
        });
    }
    Ok(())
}

/// Several unsigned sources must agree; a disagreement means one of them is wrong, and we cannot tell which.
fn agree(
    found: Option<Verified>,
    asset: &str,
    sha256: String,
    source: ChecksumSource,
) -> Result<Verified, VerifyError> {
    match found {
        Some(previous) if previous.sha256 != sha256 => Err(VerifyError::ConflictingChecksums {
            asset: asset.to_owned(),
            first: format!("{} ({})", previous.sha256, previous.source),
            second: format!("{sha256} ({source})"),
        }),
        Some(previous) => Ok(previous),
        None => Ok(Verified {
            sha256,
            size: None,
            source,
            signed: false,
            key_id: None,
            channel: None,
            published_at: None,
            entry: None,
        }),
    }
}

/// Whether a release asset's name is one of the checksum files we read.
pub fn is_checksum_file_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (lower.starts_with("checksums-") && lower.ends_with(".txt"))
        || matches!(lower.as_str(), "sha256sums" | "sha256sums.txt" | "checksums.txt")
        || lower.ends_with(".sha256")
        || lower.ends_with(".sha256sum")
}

/// Whether the checksum file `file_name` can vouch for `asset` (see [`expected_sha256`]), and in which
/// order it is consulted (lower first); `None` when it cannot.
pub fn checksum_file_applies(file_name: &str, asset: &str) -> Option<u8> {
    checksum_file_rank(file_name, asset)
}

/// The order in which checksum files are consulted for `asset` (lower first); `None` for files that do not
/// apply (another asset's `.sha256`, or not a checksum file).
fn checksum_file_rank(file_name: &str, asset: &str) -> Option<u8> {
    let lower = file_name.to_ascii_lowercase();
    if lower.starts_with("checksums-") && lower.ends_with(".txt") {
        Some(0)
    } else if matches!(lower.as_str(), "sha256sums" | "sha256sums.txt" | "checksums.txt") {
        Some(1)
    } else if [".sha256", ".sha256sum"]
        .iter()
        .any(|suffix| file_name.strip_suffix(suffix) == Some(asset))
    {
        Some(2)
    } else {
        None
    }
}

/// Lowercase hex SHA256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// The SHA256 of a file, lowercase hex, read in 256 KiB blocks so memory stays flat whatever its size.
pub fn sha256_file(path: &Path) -> Result<String, VerifyError> {
    let io = |action: &'static str| {
        move |source| VerifyError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut file = std::fs::File::open(path).map_err(io("open"))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer).map_err(io("read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks a file against an expected SHA256; the error names the file and both hashes.
pub fn check_file_sha256(path: &Path, expected: &str) -> Result<(), VerifyError> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(VerifyError::HashMismatch {
            path: path.to_path_buf(),
            expected: expected.to_ascii_lowercase(),
            actual,
        })
    }
}

/// Why an asset cannot be trusted, or a verification file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{} has SHA256 {actual}, but {expected} was expected: the download is damaged or was tampered with; it was not installed, download it again",
        path.display()
    )]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error(
        "line {line_number} of the checksum file is not a SHA256 line ({reason}): `{line}`; write `<sha256>  <name>` as sha256sum does"
    )]
    InvalidChecksumLine {
        line_number: usize,
        line: String,
        reason: &'static str,
    },

    #[error(
        "the release gives two different SHA256 for {asset}: {first} and {second}; refusing to guess. Tell the publisher to fix the release's checksums"
    )]
    ConflictingChecksums {
        asset: String,
        first: String,
        second: String,
    },

    #[error(
        "{file} is not a valid release manifest: {reason}; see docs/RELEASE-FORMAT.md, or ask the publisher to re-run `release pack`"
    )]
    InvalidManifest { file: String, reason: String },

    #[error(
        "{source_name} is not a minisign public key: {reason}; give the .pub file `minisign -G` wrote, or its second (base64) line"
    )]
    InvalidPublicKey { source_name: String, reason: String },

    #[error(
        "the signature {file} is not valid for the pinned key {key_id}: {reason}. The release is refused; do not install it, and tell its publisher"
    )]
    BadSignature {
        file: String,
        key_id: String,
        reason: String,
    },

    #[error(
        "release {version} is not signed ({missing} is not published) but key {key_id} is pinned, so it is refused; the publisher must sign the manifest (`release pack --minisign-key`)"
    )]
    Unsigned {
        version: String,
        key_id: String,
        missing: String,
    },

    #[error(
        "release-manifest.json says version {manifest}, but version {expected} is being installed: an old release may be served under a new number, so it is refused; tell the publisher"
    )]
    VersionMismatch { manifest: String, expected: String },

    #[error(
        "release-manifest.json of version {version} does not list {asset} (it lists: {}); refusing an asset the signed manifest does not vouch for. Choose another platform, or tell the publisher",
        if listed.is_empty() { "nothing".to_owned() } else { listed.join(", ") }
    )]
    AssetNotInManifest {
        asset: String,
        version: String,
        listed: Vec<String>,
    },

    #[error(
        "{asset} is announced as {announced} bytes but release-manifest.json says {manifest} bytes: the server offers a different file than was published; it is refused"
    )]
    SizeMismatch {
        asset: String,
        manifest: u64,
        announced: u64,
    },

    #[error(
        "no checksum for {asset}: the release has no release-manifest.json, no checksum file (checksums-<os>-<arch>.txt, SHA256SUMS, {asset}.sha256) and no digest that covers it, and unverified bytes are never installed. The release must publish checksums (`release pack` writes them)"
    )]
    NoChecksum { asset: String },
}

#[cfg(test)]
mod tests;
