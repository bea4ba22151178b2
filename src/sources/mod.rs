//! Where releases come from. Every source produces the same [`Release`](crate::release::Release) list:
//!
//! - [`github`]: the GitHub Releases REST API (pagination, ETag, rate limits, tokens), plus the
//!   rate-limit-free `releases/latest/download/release-manifest.json` shortcut, which a stable check uses
//!   only when the API is rate-limited (see `check`);
//! - [`feed`]: a static JSON feed at an HTTPS URL or in a local folder, for mirrors and offline installs.
//!
//! Both sit behind [`ReleaseSource`], so the check logic and its tests do not care which one answered.

pub mod feed;
pub mod github;

use crate::error::Result;
use crate::release::Release;

/// The releases a source published, and what fetching them cost.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    pub releases: Vec<Release>,
    /// HTTP requests made (0 for a local folder).
    pub requests: u32,
    /// True when the source answered "not modified" and the cached list was used.
    pub not_modified: bool,
    /// Whether every release was listed (false when only the latest one was looked at).
    pub complete: bool,
    /// Human description of where the list came from.
    pub origin: String,
}

/// A place releases are published.
pub trait ReleaseSource {
    /// Where this source looks, for messages (`GitHub repository o/r`, `feed https://…`).
    fn describe(&self) -> String;
    /// Every published release (drafts excluded), in any order.
    fn releases(&self) -> Result<Fetched>;
    /// The newest stable release only, if the source can tell it more cheaply than the full list
    /// (GitHub: a static manifest file, no API call). `Ok(None)` means "ask `releases`".
    /// "Newest" may mean most recently published (GitHub's "latest"), not highest: the answer proves that
    /// this release exists, never that nothing higher does.
    fn latest_stable(&self) -> Result<Option<Fetched>> {
        Ok(None)
    }
    /// Reads a small release file (checksums, manifest, signature) by URL, at most `limit` bytes;
    /// `Ok(None)` when it does not exist.
    fn fetch_small(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>>;
    /// Reads a small asset of a release; GitHub uses the API asset URL with a token (private
    /// repositories), everyone else the asset's URL.
    fn fetch_asset_small(&self, asset: &crate::release::Asset, limit: u64) -> Result<Option<Vec<u8>>> {
        self.fetch_small(&asset.url, limit)
    }
    /// The asset as a local file, when the source is a folder that holds it (checked to stay inside that
    /// folder); `Ok(None)` when the asset is fetched over the network. Sources that are not local folders
    /// never name local files.
    fn local_file(&self, _asset: &crate::release::Asset) -> Result<Option<std::path::PathBuf>> {
        Ok(None)
    }
    /// How to download an asset's bytes: URL, token to send (to that host only) and `Accept` header.
    fn download_target(&self, asset: &crate::release::Asset) -> DownloadTarget {
        DownloadTarget {
            url: asset.url.clone(),
            token: None,
            accept: None,
        }
    }
}

/// Where and how to fetch an asset's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadTarget {
    pub url: String,
    /// Sent as `Authorization: Bearer` to the URL's own host only.
    /// A source sets it only when `url` is on the origin the token belongs to (GitHub: the API origin,
    /// never an origin a response named); reqwest drops it on any redirect that changes scheme, host or port.
    pub token: Option<String>,
    pub accept: Option<String>,
}
