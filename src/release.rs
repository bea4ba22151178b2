//! The release model every source produces and every later stage consumes.
//!
//! A [`Release`] is one published version with its notes and assets, independent of where it was found
//! (the GitHub API, a static feed, a folder). Sources fill it; `version` chooses among releases;
//! `platform` chooses among a release's assets; `download` and `verify` fetch and check an asset.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One published release, normalised from any source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// The version parsed from the tag (leading `v` removed).
    pub version: semver::Version,
    /// The tag exactly as published, for example `v1.2.0`.
    pub tag: String,
    /// The release title, when it has one.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub published_at: Option<DateTime<Utc>>,
    /// Release notes, markdown.
    #[serde(default)]
    pub notes: String,
    /// GitHub's "pre-release" flag (independent of a semver pre-release suffix).
    #[serde(default)]
    pub prerelease: bool,
    /// The human page for the release, when known.
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub assets: Vec<Asset>,
}

/// One downloadable file of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    pub name: String,
    /// Size in bytes as the source announced it.
    pub size: u64,
    /// Where to download the bytes directly (GitHub's `browser_download_url`, a feed URL, or a `file://`
    /// URL for a local folder).
    pub url: String,
    /// GitHub's API URL of the asset (`/repos/{o}/{r}/releases/assets/{id}`), used with a token for private
    /// repositories; answered with a redirect to a storage host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// A digest the source published, `sha256:<hex>` (GitHub's asset `digest`; may be absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Release {
    /// Whether the release is a pre-release by either GitHub's flag or its semver suffix.
    pub fn is_prerelease(&self) -> bool {
        self.prerelease || !self.version.pre.is_empty()
    }

    /// The asset with exactly this name.
    pub fn asset(&self, name: &str) -> Option<&Asset> {
        self.assets.iter().find(|a| a.name == name)
    }
}

impl Asset {
    /// The lowercase hex SHA256 from the source's `digest` field, when it published one.
    pub fn sha256_digest(&self) -> Option<String> {
        let digest = self.digest.as_deref()?;
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
    }
}
