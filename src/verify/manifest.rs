//! `release-manifest.json`: the one file a release signs. It names the product, version and channel and,
//! for every archive, its size and SHA256, so one signature covers every byte a user downloads.
//!
//! Parsing is strict on types and values (a hash must be 64 hex digits, a version must be semver, names
//! must be plain file names and appear once) and ignores fields it does not know, so a newer publisher can
//! add fields without breaking older launchers; a newer `schema` number, which would mean the meaning of
//! known fields changed, is refused. Serialisation is deterministic (fixed field order, assets sorted by
//! name, RFC 3339 time in whole seconds, a final newline), so packing the same release twice signs the
//! same bytes. The format is documented in `docs/RELEASE-FORMAT.md`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::VerifyError;
use super::checksums::is_sha256_hex;
use crate::platform::Platform;
use crate::version::Channel;

/// The manifest's file name, beside the archives.
pub const MANIFEST_FILE: &str = "release-manifest.json";
/// The most bytes of a release manifest a launcher reads, this one and those before 0.2 alike; `release
/// pack` refuses to write a larger one. File lists are files of their own, so a manifest stays a few KB
/// plus its notes.
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// The manifest's minisign signature file name.
pub const MANIFEST_SIGNATURE_FILE: &str = "release-manifest.json.minisig";
/// The manifest schema this launcher writes and the newest it reads.
pub const MANIFEST_SCHEMA: u32 = 1;
/// The `product` every manifest of ours carries: a manifest for another product signed by the same key
/// must not be taken for ours.
pub const MANIFEST_PRODUCT: &str = "personal-ai-agent";

/// A release manifest. Build one with [`ReleaseManifest::new`], read one with [`ReleaseManifest::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    pub schema: u32,
    pub product: String,
    pub version: semver::Version,
    pub channel: Channel,
    #[serde(with = "rfc3339_seconds")]
    pub published_at: DateTime<Utc>,
    /// The git tag of the release (default `v<version>`); download URLs are built from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Release notes (markdown), signed with the rest, so a stable check needs no API call to show them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    pub assets: Vec<ManifestAsset>,
}

/// One archive the manifest vouches for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestAsset {
    /// The file name, exactly as published (no folders).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA256 of the whole file.
    pub sha256: String,
    /// The platform the archive is for (`linux-x86_64`); absent for files that are for every platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The file that lists every entry of the bundle the archive unpacks to ([`FileList`]), published
    /// beside it: what a delta update must rebuild, file by file. Its hash here is what vouches for it,
    /// and it is fetched only to install, so the manifest (read on every check) stays small. Absent from
    /// publishers before deltas, which is the same as "no delta can be checked".
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::option"
    )]
    pub file_list: Option<ManifestFileList>,
    /// Deltas that turn an installed earlier version into this archive's bundle.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::vec"
    )]
    pub deltas: Vec<ManifestDelta>,
}

/// Where an archive's [`FileList`] is published, and what it hashes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFileList {
    /// The file's name, exactly as published: `<archive name without its suffix>.files.json`.
    pub name: String,
    pub size: u64,
    /// Lowercase hex SHA256 of the file.
    pub sha256: String,
}

/// How a file list's name ends.
pub const FILE_LIST_SUFFIX: &str = ".files.json";
/// The most bytes of a file list this launcher reads (about 200 bytes a file: some 300,000 files).
pub const FILE_LIST_LIMIT: u64 = 64 << 20;

/// A bundle's file list (`PersonalAIAgent-<os>-<arch>-<version>.files.json`): every entry of the bundle
/// the archive unpacks to, relative to its top folder (the bundle's `models/` left out), sorted by path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileList {
    pub schema: u32,
    pub product: String,
    pub version: semver::Version,
    pub platform: Platform,
    pub files: Vec<ManifestFile>,
}

impl FileList {
    pub fn new(version: semver::Version, platform: Platform, mut files: Vec<ManifestFile>) -> Self {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        FileList {
            schema: 1,
            product: MANIFEST_PRODUCT.to_owned(),
            version,
            platform,
            files,
        }
    }

    /// Compact JSON with a final newline; deterministic for the same files.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Parses the list `name` and checks it is the one for `version` on `platform` and that every entry is
    /// one [`validate_files`] accepts (a `:` in a path only counts as bad for Windows).
    pub fn parse(
        bytes: &[u8],
        name: &str,
        version: &semver::Version,
        platform: &Platform,
    ) -> Result<Vec<ManifestFile>, VerifyError> {
        let invalid = |reason: String| VerifyError::InvalidManifest {
            file: name.to_owned(),
            reason,
        };
        let mut list: FileList = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        if list.schema != 1 || list.product != MANIFEST_PRODUCT {
            return Err(invalid(format!(
                "it is schema {} of `{}`, which this launcher does not read",
                list.schema, list.product
            )));
        }
        if &list.version != version || &list.platform != platform {
            return Err(invalid(format!(
                "it lists {} for {}, not {version} for {platform}",
                list.version, list.platform
            )));
        }
        validate_files(name, &list.files, platform.os).map_err(invalid)?;
        for file in &mut list.files {
            if let Some(sha256) = &mut file.sha256 {
                sha256.make_ascii_lowercase();
            }
        }
        Ok(list.files)
    }
}

/// One entry of a bundle, as a [`FileList`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to the bundle root, `/`-separated, without `.` or `..`.
    pub path: String,
    /// A regular file's size in bytes (0 for links and folders).
    #[serde(default)]
    pub size: u64,
    /// A regular file's permission bits as unpacked (`0o755` = 493, `0o644` = 420).
    #[serde(default)]
    pub mode: u32,
    /// A regular file's lowercase hex SHA256; absent for links and folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A symbolic link's target; absent for files and folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// `true` for a folder (listed so empty folders are rebuilt too).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dir: bool,
}

/// A delta: what turns `base`, installed and intact, into the asset it is listed under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDelta {
    /// The delta file's name, exactly as published.
    pub name: String,
    /// The version it applies to.
    pub base: semver::Version,
    pub size: u64,
    /// Lowercase hex SHA256 of the delta file.
    pub sha256: String,
}
impl ReleaseManifest {
    /// An empty manifest for `version` on `channel`, published now.
    pub fn new(version: semver::Version, channel: Channel, published_at: DateTime<Utc>) -> Self {
        ReleaseManifest {
            schema: MANIFEST_SCHEMA,
            product: MANIFEST_PRODUCT.to_owned(),
            version,
            channel,
            published_at: trim_to_seconds(published_at),
            tag: None,
            notes: None,
            assets: Vec::new(),
        }
    }

    /// Parses and checks manifest bytes (UTF-8 JSON).
    pub fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        let mut manifest: ReleaseManifest =
            serde_json::from_slice(bytes).map_err(|e| VerifyError::InvalidManifest {
                file: MANIFEST_FILE.to_owned(),
                reason: e.to_string(),
            })?;
        manifest.validate()?;
        manifest.drop_unusable_extras();
        for asset in &mut manifest.assets {
            asset.sha256.make_ascii_lowercase();
            if let Some(list) = &mut asset.file_list {
                list.sha256.make_ascii_lowercase();
            }
            for delta in &mut asset.deltas {
                delta.sha256.make_ascii_lowercase();
            }
        }
        Ok(manifest)
    }

    /// The deterministic JSON form (pretty, assets sorted by name, final newline): what gets signed.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut sorted = self.clone();
        sorted.assets.sort_by(|a, b| a.name.cmp(&b.name));
        // Serialising plain structs, strings and numbers cannot fail.
        let mut bytes = serde_json::to_vec_pretty(&sorted).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// The entry for the asset with exactly this name.
    pub fn asset(&self, name: &str) -> Option<&ManifestAsset> {
        self.assets.iter().find(|a| a.name == name)
    }

    /// Adds `asset`, replacing an entry of the same name (re-packing one platform replaces its archive).
    pub fn upsert(&mut self, asset: ManifestAsset) {
        self.assets.retain(|a| a.name != asset.name);
        self.assets.push(asset);
        self.assets.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// A file list or delta this launcher cannot use (a name it would not write, a bad hash, a size out
    /// of bounds) is dropped with a warning: it costs that delta or those listed hashes, never the release,
    /// since the archive's own entry still vouches for the archive.
    fn drop_unusable_extras(&mut self) {
        for asset in &mut self.assets {
            if let Some(list) = &asset.file_list {
                let usable = is_plain_file_name(&list.name)
                    && list.name.ends_with(FILE_LIST_SUFFIX)
                    && is_sha256_hex(&list.sha256)
                    && list.size > 0
                    && list.size <= FILE_LIST_LIMIT;
                if !usable {
                    tracing::warn!(asset = %asset.name, list = %list.name, size = list.size, "ignoring a file list this launcher cannot use");
                    asset.file_list = None;
                }
            }
            asset.deltas.retain(|delta| {
                let usable = is_plain_file_name(&delta.name)
                    && delta.name.ends_with(crate::delta::DELTA_SUFFIX)
                    && is_sha256_hex(&delta.sha256);
                if !usable {
                    tracing::warn!(asset = %asset.name, delta = %delta.name, "ignoring a delta this launcher cannot use");
                }
                usable
            });
        }
    }

    fn validate(&self) -> Result<(), VerifyError> {
        let invalid = |reason: String| VerifyError::InvalidManifest {
            file: MANIFEST_FILE.to_owned(),
            reason,
        };
        if self.schema == 0 || self.schema > MANIFEST_SCHEMA {
            return Err(invalid(format!(
                "schema {} is not one this launcher reads (it reads 1 to {MANIFEST_SCHEMA}); update the launcher",
                self.schema
            )));
        }
        if self.product != MANIFEST_PRODUCT {
            return Err(invalid(format!(
                "it is for product `{}`, not `{MANIFEST_PRODUCT}`",
                self.product
            )));
        }
        for (index, asset) in self.assets.iter().enumerate() {
            if asset.name.is_empty()
                || asset.name.contains(['/', '\\', '\0'])
                || asset.name == "."
                || asset.name == ".."
            {
                return Err(invalid(format!(
                    "asset {index} has no plain file name: `{}`",
                    asset.name
                )));
            }
            if !is_sha256_hex(&asset.sha256) {
                return Err(invalid(format!(
                    "asset `{}` has sha256 `{}`, which is not 64 hex digits",
                    asset.name, asset.sha256
                )));
            }
            if self.assets[..index].iter().any(|other| other.name == asset.name) {
                return Err(invalid(format!("asset `{}` is listed twice", asset.name)));
            }
        }
        Ok(())
    }
}

/// A name that is one file in a folder on every platform: no separators, no `:` (a Windows stream), no
/// control characters, not starting with `.`.
fn is_plain_file_name(name: &str) -> bool {
    !(name.is_empty()
        || name.contains(['/', '\\', '\0', ':'])
        || name.chars().any(char::is_control)
        || name.starts_with('.'))
}

/// A file list must name each path once, by a plain relative path, with a hash for every regular file
/// and a link target that stays inside the bundle: a delta builds exactly this list.
/// `os` is the platform the list is for: on Windows a `:` would name a stream of another file and `CON`,
/// `NUL`, … are devices; on Windows and macOS, names that differ only in case are the same file.
pub(crate) fn validate_files(
    asset: &str,
    files: &[ManifestFile],
    os: crate::platform::Os,
) -> Result<(), String> {
    use crate::platform::Os;
    let windows = os == Os::Windows;
    let case_blind = matches!(os, Os::Windows | Os::Macos);
    let mut seen = std::collections::BTreeSet::new();
    let mut folded = std::collections::BTreeSet::new();
    // Only folders hold entries: an entry below a listed file or link would be written through it.
    let not_folders: std::collections::BTreeSet<&str> =
        files.iter().filter(|f| !f.dir).map(|f| f.path.as_str()).collect();
    for file in files {
        let bad = |why: &str| format!("`{asset}` lists `{}`, which {why}", file.path);
        let parts: Vec<&str> = file.path.split('/').collect();
        if file.path.is_empty()
            || file.path.contains(['\\', '\0'])
            || (windows && file.path.contains(':'))
            || parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(bad("is not a plain relative path"));
        }
        if !seen.insert(file.path.as_str()) {
            return Err(bad("is listed twice"));
        }
        if case_blind && !folded.insert(file.path.to_lowercase()) {
            return Err(bad(&format!(
                "differs only in case from another entry, which {os} sees as the same file"
            )));
        }
        if windows && parts.iter().any(|p| is_windows_reserved(p)) {
            return Err(bad(
                "has a part Windows cannot name (a device name such as CON or NUL, or a trailing dot or space)",
            ));
        }
        let mut ancestor = file.path.as_str();
        while let Some((parent, _)) = ancestor.rsplit_once('/') {
            if not_folders.contains(parent) {
                return Err(bad(&format!("lies below `{parent}`, which is not a folder")));
            }
            ancestor = parent;
        }
        let kinds =
            usize::from(file.sha256.is_some()) + usize::from(file.link.is_some()) + usize::from(file.dir);
        if kinds != 1 {
            return Err(bad(
                "must be exactly one of a file (sha256), a link (link) or a folder (dir)",
            ));
        }
        if let Some(sha256) = &file.sha256
            && !is_sha256_hex(sha256)
        {
            return Err(bad("has a sha256 that is not 64 hex digits"));
        }
        if let Some(link) = &file.link {
            // Lexically inside the bundle: `..` never climbs above its root.
            let mut depth = parts.len() as i64 - 1;
            let escapes = link.starts_with('/')
                || link.contains(['\\', '\0'])
                || link.split('/').any(|p| {
                    match p {
                        ".." => depth -= 1,
                        "" | "." => {}
                        _ => depth += 1,
                    }
                    depth < 0
                });
            if escapes {
                return Err(bad("is a link that points outside the bundle"));
            }
        }
    }
    Ok(())
}

/// `CON`, `PRN`, `AUX`, `NUL`, `COM1`–`COM9`, `LPT1`–`LPT9` (with any extension), or a name ending in a dot
/// or a space, which Windows strips.
fn is_windows_reserved(part: &str) -> bool {
    if part.ends_with('.') || part.ends_with(' ') {
        return true;
    }
    let stem = part.split('.').next().unwrap_or(part).to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && matches!(stem.as_bytes()[3], b'1'..=b'9'))
}

fn trim_to_seconds(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(time.timestamp(), 0).unwrap_or(time)
}

/// Fields a launcher can do without: one it cannot read is absent rather than an error for the manifest.
mod lenient {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer};

    pub fn option<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(serde_json::from_value(value)
            .inspect_err(|e| tracing::warn!("ignoring a manifest field this launcher cannot read: {e}"))
            .ok())
    }

    pub fn vec<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let items = match value {
            serde_json::Value::Array(items) => items,
            _ => Vec::new(),
        };
        Ok(items
            .into_iter()
            .filter_map(|item| {
                serde_json::from_value(item)
                    .inspect_err(|e| {
                        tracing::warn!("ignoring a manifest entry this launcher cannot read: {e}")
                    })
                    .ok()
            })
            .collect())
    }
}

/// RFC 3339 in whole seconds with `Z` (`2026-11-27T03:15:00Z`), one spelling for one instant.
mod rfc3339_seconds {
    use super::*;

    pub fn serialize<S: serde::Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 time ({e})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ReleaseManifest {
        let mut m = ReleaseManifest::new(
            semver::Version::new(1, 2, 0),
            Channel::Stable,
            DateTime::parse_from_rfc3339("2026-11-27T03:15:00.123Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        m.upsert(ManifestAsset {
            name: "PersonalAIAgent-windows-x86_64-1.2.0.zip".into(),
            size: 7,
            sha256: "b".repeat(64),
            platform: Some("windows-x86_64".parse().unwrap()),
            file_list: None,
            deltas: Vec::new(),
        });
        m.upsert(ManifestAsset {
            name: "PersonalAIAgent-linux-x86_64-1.2.0.tar.gz".into(),
            size: 5,
            sha256: "a".repeat(64),
            platform: Some("linux-x86_64".parse().unwrap()),
            file_list: Some(ManifestFileList {
                name: "PersonalAIAgent-linux-x86_64-1.2.0.files.json".into(),
                size: 9,
                sha256: "e".repeat(64),
            }),
            deltas: vec![ManifestDelta {
                name: "PersonalAIAgent-linux-x86_64-1.2.0.from-1.1.0.delta".into(),
                base: semver::Version::new(1, 1, 0),
                size: 3,
                sha256: "d".repeat(64),
            }],
        });
        m
    }

    #[test]
    fn a_manifest_round_trips_through_its_deterministic_json() {
        let manifest = sample();
        let bytes = manifest.to_json_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("\"published_at\": \"2026-11-27T03:15:00Z\""),
            "{text}"
        );
        assert!(
            text.find("linux").unwrap() < text.find("windows").unwrap(),
            "assets sorted by name"
        );
        assert_eq!(ReleaseManifest::parse(&bytes).unwrap(), manifest);
        assert_eq!(ReleaseManifest::parse(&bytes).unwrap().to_json_bytes(), bytes);
    }

    #[test]
    fn unknown_fields_are_ignored_but_wrong_types_are_refused() {
        let mut value: serde_json::Value = serde_json::from_slice(&sample().to_json_bytes()).unwrap();
        value["future_field"] = serde_json::json!({"x": 1});
        assert!(ReleaseManifest::parse(value.to_string().as_bytes()).is_ok());
        value["assets"][0]["size"] = serde_json::json!("5");
        let err = ReleaseManifest::parse(value.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("release-manifest.json"), "{err}");
    }

    #[test]
    fn newer_schemas_other_products_bad_hashes_and_duplicates_are_refused() {
        type Mutation = fn(&mut serde_json::Value);
        let cases: [(&str, Mutation); 4] = [
            ("schema", |v| v["schema"] = 2.into()),
            ("product", |v| v["product"] = "other".into()),
            ("hex", |v| v["assets"][0]["sha256"] = "zz".into()),
            ("twice", |v| {
                let first = v["assets"][0].clone();
                v["assets"].as_array_mut().unwrap().push(first);
            }),
        ];
        for (expected, mutate) in cases {
            let mut value: serde_json::Value = serde_json::from_slice(&sample().to_json_bytes()).unwrap();
            mutate(&mut value);
            let err = ReleaseManifest::parse(value.to_string().as_bytes()).unwrap_err();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn a_file_list_or_delta_a_launcher_cannot_use_is_dropped_and_the_release_still_reads() {
        type Mutation = fn(&mut serde_json::Value);
        let cases: [(bool, Mutation); 7] = [
            (true, |v| {
                v["assets"][0]["file_list"]["name"] = "x:y.files.json".into()
            }),
            (true, |v| v["assets"][0]["file_list"]["sha256"] = "e".into()),
            (true, |v| v["assets"][0]["file_list"]["size"] = 0.into()),
            (true, |v| {
                v["assets"][0]["file_list"] = serde_json::json!({"url": "elsewhere"})
            }),
            (false, |v| v["assets"][0]["deltas"][0]["name"] = "a/b".into()),
            (false, |v| {
                v["assets"][0]["deltas"][0]["name"] = "pending.json".into()
            }),
            (false, |v| {
                v["assets"][0]["deltas"][0]["base"] = "not semver".into()
            }),
        ];
        for (list, mutate) in cases {
            let mut value: serde_json::Value = serde_json::from_slice(&sample().to_json_bytes()).unwrap();
            mutate(&mut value);
            let manifest = ReleaseManifest::parse(value.to_string().as_bytes()).unwrap();
            let linux = &manifest.assets[0];
            assert_eq!(linux.sha256, "a".repeat(64));
            if list {
                assert!(linux.file_list.is_none() && linux.deltas.len() == 1, "{value}");
            } else {
                assert!(linux.file_list.is_some() && linux.deltas.is_empty(), "{value}");
            }
        }
    }

    fn sample_list() -> FileList {
        FileList::new(
            semver::Version::new(1, 2, 0),
            "linux-x86_64".parse().unwrap(),
            vec![
                ManifestFile {
                    path: "bin/run".into(),
                    size: 0,
                    mode: 0,
                    sha256: None,
                    link: Some("../agent.json".into()),
                    dir: false,
                },
                ManifestFile {
                    path: "agent.json".into(),
                    size: 5,
                    mode: 0o644,
                    sha256: Some("C".repeat(64)),
                    link: None,
                    dir: false,
                },
            ],
        )
    }

    #[test]
    fn a_file_list_round_trips_sorted_and_is_refused_for_another_version_or_a_bad_entry() {
        let list = sample_list();
        let bytes = list.to_json_bytes();
        let (v, linux) = (semver::Version::new(1, 2, 0), "linux-x86_64".parse().unwrap());
        let files = FileList::parse(&bytes, "l.files.json", &v, &linux).unwrap();
        assert_eq!(files[0].path, "agent.json", "sorted by path");
        assert_eq!(files[0].sha256.as_deref(), Some("c".repeat(64).as_str()));
        let other = FileList::parse(&bytes, "l.files.json", &semver::Version::new(1, 3, 0), &linux)
            .unwrap_err()
            .to_string();
        assert!(other.contains("not 1.3.0 for linux-x86_64"), "{other}");

        type Mutation = fn(&mut serde_json::Value);
        let cases: [(&str, Mutation); 5] = [
            ("plain relative path", |v| v["files"][0]["path"] = "../x".into()),
            ("outside the bundle", |v| v["files"][1]["link"] = "../../x".into()),
            ("which is not a folder", |v| {
                v["files"][1]["path"] = "agent.json/run".into()
            }),
            ("exactly one", |v| v["files"][1]["sha256"] = "c".repeat(64).into()),
            ("listed twice", |v| {
                let first = v["files"][0].clone();
                v["files"].as_array_mut().unwrap().push(first);
            }),
        ];
        for (expected, mutate) in cases {
            let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            mutate(&mut value);
            let err = FileList::parse(value.to_string().as_bytes(), "l.files.json", &v, &linux)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected) && err.contains("l.files.json"),
                "{expected}: {err}"
            );
        }
        // A `:` is a plain name on Linux, a stream of another file on Windows.
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        value["files"][0]["path"] = "a:b".into();
        assert!(FileList::parse(value.to_string().as_bytes(), "l.files.json", &v, &linux).is_ok());
        value["platform"] = "windows-x86_64".into();
        let windows = "windows-x86_64".parse().unwrap();
        assert!(FileList::parse(value.to_string().as_bytes(), "l.files.json", &v, &windows).is_err());
        // Windows cannot hold `aux.txt`; Windows and macOS see `Agent.json` and `agent.json` as one file.
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        value["platform"] = "windows-x86_64".into();
        value["files"][1]["path"] = "bin/aux.txt".into();
        let err = FileList::parse(value.to_string().as_bytes(), "l.files.json", &v, &windows).unwrap_err();
        assert!(err.to_string().contains("device name"), "{err}");
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        value["files"][1]["path"] = "Agent.json".into();
        value["files"][1]["link"] = "agent.json".into();
        assert!(FileList::parse(value.to_string().as_bytes(), "l.files.json", &v, &linux).is_ok());
        value["platform"] = "macos-aarch64".into();
        let mac = "macos-aarch64".parse().unwrap();
        let err = FileList::parse(value.to_string().as_bytes(), "l.files.json", &v, &mac).unwrap_err();
        assert!(err.to_string().contains("only in case"), "{err}");
    }
}
