//! A static release feed: one JSON document listing releases, at an HTTPS URL or in a local folder.
//!
//! It serves mirrors, offline and air-gapped installs: copy the release files and a `feed.json` onto a
//! web server or a USB stick, and point the launcher at it (`update configure --feed URL|FOLDER`). Asset
//! URLs may be absolute or relative to the feed; in a folder they resolve to `file://` URLs. Plain `http://`
//! is accepted only on loopback. The format is documented in `docs/FEED.md`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use reqwest::Url;
use reqwest::blocking::Client;
use serde::{Deserialize, Serialize};

use super::{Fetched, ReleaseSource};
use crate::error::{Error, Result};
use crate::release::{Asset, Release};

/// The feed document's name inside a folder.
pub const FEED_FILE: &str = "feed.json";
/// A feed larger than this is refused (a feed lists metadata, not files).
const FEED_LIMIT: u64 = 16 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct FeedDoc {
    #[serde(default = "one")]
    schema: u32,
    releases: Vec<FeedRelease>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Serialize, Deserialize)]
struct FeedRelease {
    version: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    published_at: Option<DateTime<Utc>>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    prerelease: bool,
    #[serde(default)]
    assets: Vec<FeedAsset>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FeedAsset {
    name: String,
    size: u64,
    /// Absolute, or relative to the feed document; defaults to the asset's name beside the feed.
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
}

/// Releases listed by a feed document.
pub struct FeedSource {
    client: Client,
    /// The feed document's URL (`https://`, loopback `http://`, or `file://`).
    url: Url,
    location: String,
}

impl FeedSource {
    /// A feed at `location`: an `https://` URL of the document, a folder holding `feed.json`, or a path
    /// to the document itself.
    pub fn new(client: Client, location: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Feed {
            location: location.to_owned(),
            reason: reason.to_owned(),
        };
        let url = if location.starts_with("https://") || location.starts_with("http://") {
            let url = Url::parse(location).map_err(|e| bad(&format!("not a URL ({e})")))?;
            if url.scheme() == "http" && !crate::http::is_loopback(&url) {
                return Err(bad(
                    "plain http:// is only accepted on this machine; use an https:// URL",
                ));
            }
            url
        } else {
            let path = match location.strip_prefix("file://") {
                Some(p) => PathBuf::from(p),
                None => PathBuf::from(location),
            };
            let path = std::path::absolute(&path).unwrap_or(path);
            let doc = if path.is_dir() { path.join(FEED_FILE) } else { path };
            Url::from_file_path(&doc).map_err(|()| bad("not an absolute path"))?
        };
        Ok(FeedSource {
            client,
            url,
            location: location.to_owned(),
        })
    }

    fn read_document(&self) -> Result<(Vec<u8>, u32)> {
        let feed_error = |reason: String| Error::Feed {
            location: self.location.clone(),
            reason,
        };
        if self.url.scheme() == "file" {
            let path = self.url.to_file_path().unwrap_or_default();
            let bytes = std::fs::read(&path).map_err(|e| {
                feed_error(format!(
                    "{} could not be read ({e}); check the folder or file path",
                    path.display()
                ))
            })?;
            return Ok((bytes, 0));
        }
        let bytes = super::github::fetch_small(&self.client, self.url.as_str(), FEED_LIMIT, None, None)?
            .ok_or_else(|| feed_error("the server answered 404 Not Found; check the feed URL".into()))?;
        Ok((bytes, 1))
    }

    fn resolve(&self, asset: &FeedAsset) -> Result<String> {
        let relative = asset.url.as_deref().unwrap_or(&asset.name);
        self.url
            .join(relative)
            .map(String::from)
            .map_err(|e| Error::Feed {
                location: self.location.clone(),
                reason: format!("asset {} has an invalid url `{relative}` ({e})", asset.name),
            })
    }
}

impl ReleaseSource for FeedSource {
    fn describe(&self) -> String {
        format!("release feed {}", self.location)
    }

    fn releases(&self) -> Result<Fetched> {
        let (bytes, requests) = self.read_document()?;
        let doc: FeedDoc = serde_json::from_slice(&bytes).map_err(|e| Error::Feed {
            location: self.location.clone(),
            reason: format!("not a release feed ({e}); see docs/FEED.md for the format"),
        })?;
        if doc.schema != 1 {
            return Err(Error::Feed {
                location: self.location.clone(),
                reason: format!(
                    "feed schema {} is newer than this launcher understands; update the launcher",
                    doc.schema
                ),
            });
        }
        let mut releases = Vec::new();
        for r in doc.releases {
            let Some(version) = crate::version::parse_tag(&r.version) else {
                tracing::info!("skipping feed release `{}`: not a semver version", r.version);
                continue;
            };
            let mut assets = Vec::new();
            for a in &r.assets {
                assets.push(Asset {
                    url: self.resolve(a)?,
                    name: a.name.clone(),
                    size: a.size,
                    api_url: None,
                    digest: a
                        .sha256
                        .as_ref()
                        .map(|h| format!("sha256:{}", h.to_ascii_lowercase())),
                });
            }
            releases.push(Release {
                tag: r.tag.unwrap_or_else(|| format!("v{version}")),
                version,
                name: r.name,
                published_at: r.published_at,
                notes: r.notes.unwrap_or_default(),
                prerelease: r.prerelease,
                html_url: None,
                assets,
            });
        }
        Ok(Fetched {
            releases,
            requests,
            not_modified: false,
            complete: true,
            origin: self.describe(),
        })
    }

    fn fetch_small(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        if let Some(path) = Url::parse(url)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok())
        {
            return read_local_small(&path, limit);
        }
        super::github::fetch_small(&self.client, url, limit, None, None)
    }
}

fn read_local_small(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
        Ok(meta) if meta.len() > limit => Err(Error::InvalidResponse {
            url: path.display().to_string(),
            reason: format!("larger than the {limit} bytes a release file may have"),
        }),
        Ok(_) => std::fs::read(path)
            .map(Some)
            .map_err(|e| Error::io("read", path, e)),
    }
}

/// What [`write_feed`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct FeedSummary {
    pub feed: PathBuf,
    /// The versions listed, newest first.
    pub versions: Vec<String>,
}

/// Writes `dir/feed.json` listing every release folder under `dir`: each subfolder holding a
/// `release-manifest.json` (as `release pack` writes it) is one release, and every file in it is an asset,
/// with the archives' hashes taken from the manifest. Release notes come from an optional `NOTES.md` in
/// the folder. This is how a mirror or an offline medium is made: copy the release folders, run this.
pub fn write_feed(dir: &Path) -> Result<FeedSummary> {
    let feed_error = |reason: String| Error::Feed {
        location: dir.display().to_string(),
        reason,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut releases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let folder = entry.path();
        let manifest_path = folder.join(crate::verify::MANIFEST_FILE);
        if !folder.is_dir() || !manifest_path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&manifest_path).map_err(|e| Error::io("read", &manifest_path, e))?;
        let manifest = crate::verify::ReleaseManifest::parse(&bytes)?;
        let folder_name = entry.file_name().to_string_lossy().into_owned();
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .map_err(|e| Error::io("list", &folder, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "NOTES.md" && !n.starts_with('.'))
            .collect();
        names.sort();
        let mut assets = Vec::new();
        for name in names {
            let path = folder.join(&name);
            let size = std::fs::metadata(&path)
                .map_err(|e| Error::io("read", &path, e))?
                .len();
            assets.push(FeedAsset {
                url: Some(format!("{folder_name}/{name}")),
                sha256: manifest.asset(&name).map(|a| a.sha256.clone()),
                name,
                size,
            });
        }
        let notes = crate::fsutil::read_optional(&folder.join("NOTES.md"))?;
        releases.push(FeedRelease {
            version: manifest.version.to_string(),
            tag: Some(format!("v{}", manifest.version)),
            name: None,
            published_at: Some(manifest.published_at),
            notes,
            prerelease: !manifest.version.pre.is_empty(),
            assets,
        });
    }
    if releases.is_empty() {
        return Err(feed_error(format!(
            "no release folders found (subfolders holding {}); pack releases into it with `release pack --out {}/<version>`",
            crate::verify::MANIFEST_FILE,
            dir.display()
        )));
    }
    releases.sort_by(|a, b| {
        let v = |r: &FeedRelease| crate::version::parse_tag(&r.version);
        v(b).cmp(&v(a))
    });
    let versions = releases.iter().map(|r| r.version.clone()).collect();
    let doc = FeedDoc { schema: 1, releases };
    let mut text = serde_json::to_string_pretty(&doc).map_err(|e| feed_error(e.to_string()))?;
    text.push('\n');
    let feed = dir.join(FEED_FILE);
    crate::fsutil::write_atomic(&feed, text.as_bytes())?;
    Ok(FeedSummary { feed, versions })
}
