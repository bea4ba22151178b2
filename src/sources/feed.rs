//! A static release feed: one JSON document listing releases, at an HTTPS URL or in a local folder.
//!
//! It serves mirrors, offline and air-gapped installs: copy the release files and a `feed.json` onto a
//! web server or a USB stick, and point the launcher at it (`update configure --feed URL|FOLDER`). Asset
//! URLs may be absolute or relative to the feed; in a folder they resolve to `file://` URLs. The format is
//! documented in `docs/FEED.md`.
//!
//! What a feed may name is bounded by where it came from, because nothing in it is verified yet:
//! - a feed fetched over the network may only name `https://` URLs (plain `http://` only on loopback, as
//!   for the feed itself); a `file://` URL there is refused, so a hostile mirror cannot make the launcher
//!   read a device such as `/dev/zero`, or (on Windows) authenticate to a `file://host/share`;
//! - a feed that is itself a local folder may also name local files, and only inside that folder: every
//!   read resolves links first and refuses anything that lands outside, or that is not a regular file;
//! - every read of a feed or of a small release file stops at a size limit, whatever the file claims.

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
    /// For a feed in a local folder: that folder, with links resolved. Local files must stay inside it.
    local_root: Option<PathBuf>,
    /// The host of the feed's own `file://` URL (a Windows share `\\server\share`), the one other host its
    /// files may name.
    local_host: Option<String>,
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
        let local_root = (url.scheme() == "file")
            .then(|| url.to_file_path().ok())
            .flatten()
            .and_then(|doc| doc.parent().map(Path::to_path_buf))
            .map(|dir| std::fs::canonicalize(&dir).unwrap_or(dir));
        let local_host = (url.scheme() == "file")
            .then(|| url.host_str().filter(|h| !h.is_empty()).map(str::to_owned))
            .flatten();
        Ok(FeedSource {
            client,
            url,
            location: location.to_owned(),
            local_root,
            local_host,
        })
    }

    /// A `file://` URL this feed named, as a path inside the feed's folder: links resolved, a regular file.
    /// `Ok(None)` when it does not exist. Refused for a feed fetched over the network, for a URL on another
    /// host than the feed's own (`file://host/share`), and for anything outside the feed's folder.
    fn local_path(&self, url: &Url) -> Result<Option<PathBuf>> {
        let refuse = |reason: String| Error::Feed {
            location: self.location.clone(),
            reason,
        };
        let Some(root) = &self.local_root else {
            return Err(refuse(format!(
                "it names the local file {url}, but a feed fetched over the network may only name https:// URLs; ask the mirror's owner to fix the feed"
            )));
        };
        if url
            .host_str()
            .is_some_and(|h| !h.is_empty() && h != "localhost" && Some(h) != self.local_host.as_deref())
        {
            return Err(refuse(format!(
                "it names {url}, a file on another machine; a feed may only name files inside its own folder {}",
                root.display()
            )));
        }
        let path = url
            .to_file_path()
            .map_err(|()| refuse(format!("{url} is not a local path")))?;
        let resolved = match std::fs::canonicalize(&path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        if !resolved.starts_with(root) {
            return Err(refuse(format!(
                "it names {}, which is outside the feed's folder {}; a feed may only name files inside it",
                path.display(),
                root.display()
            )));
        }
        let meta = std::fs::metadata(&resolved).map_err(|e| Error::io("read", &resolved, e))?;
        if !meta.is_file() {
            return Err(refuse(format!(
                "it names {}, which is not a regular file",
                path.display()
            )));
        }
        Ok(Some(resolved))
    }

    fn read_document(&self) -> Result<(Vec<u8>, u32)> {
        let feed_error = |reason: String| Error::Feed {
            location: self.location.clone(),
            reason,
        };
        if self.url.scheme() == "file" {
            let path = self.url.to_file_path().unwrap_or_default();
            let bytes = match read_local_small(&path, FEED_LIMIT) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    return Err(feed_error(format!(
                        "{} does not exist; check the folder or file path, or write it with `release feed --dir FOLDER`",
                        path.display()
                    )));
                }
                Err(e) => {
                    return Err(feed_error(format!(
                        "{} could not be read ({e}); check the folder or file path",
                        path.display()
                    )));
                }
            };
            return Ok((bytes, 0));
        }
        let bytes = super::github::fetch_small(&self.client, self.url.as_str(), FEED_LIMIT, None, None)?
            .ok_or_else(|| feed_error("the server answered 404 Not Found; check the feed URL".into()))?;
        Ok((bytes, 1))
    }

    /// The asset's URL, resolved against the feed and checked against what this feed may name.
    fn resolve(&self, asset: &FeedAsset) -> Result<String> {
        let relative = asset.url.as_deref().unwrap_or(&asset.name);
        let refuse = |reason: String| Error::Feed {
            location: self.location.clone(),
            reason: format!("asset {} {reason}", asset.name),
        };
        let url = self
            .url
            .join(relative)
            .map_err(|e| refuse(format!("has an invalid url `{relative}` ({e})")))?;
        match url.scheme() {
            "https" => {}
            "http" if crate::http::is_loopback(&url) => {}
            "file" if self.local_root.is_some() => {}
            "file" => {
                return Err(refuse(format!(
                    "names the local file `{relative}`, but a feed fetched over the network may only name https:// URLs; ask the mirror's owner to fix the feed"
                )));
            }
            other => {
                return Err(refuse(format!(
                    "has the url `{relative}` ({other}://); a feed may only name https:// URLs (plain http:// only on this machine)"
                )));
            }
        }
        Ok(url.into())
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
        if let Some(parsed) = Url::parse(url).ok().filter(|u| u.scheme() == "file") {
            return match self.local_path(&parsed)? {
                Some(path) => read_local_small(&path, limit),
                None => Ok(None),
            };
        }
        super::github::fetch_small(&self.client, url, limit, None, None)
    }

    fn local_file(&self, asset: &Asset) -> Result<Option<PathBuf>> {
        match Url::parse(&asset.url).ok().filter(|u| u.scheme() == "file") {
            Some(url) => self.local_path(&url)?.map(Some).ok_or_else(|| Error::Feed {
                location: self.location.clone(),
                reason: format!("{} is listed but missing from the feed's folder", asset.url),
            }),
            None => Ok(None),
        }
    }
}

/// Reads at most `limit` bytes of a regular file; `Ok(None)` when it does not exist. A device, a FIFO or a
/// folder is refused without reading, and a file that grows past the limit while being read is too.
pub(crate) fn read_local_small(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let too_large = || Error::InvalidResponse {
        url: path.display().to_string(),
        reason: format!("larger than the {limit} bytes a release file may have"),
    };
    let (file, meta) = match crate::fsutil::open_regular_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(Error::InvalidResponse {
                url: path.display().to_string(),
                reason: "not a regular file".into(),
            });
        }
        Err(e) => return Err(Error::io("read", path, e)),
        Ok(opened) => opened,
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(Some(bytes))
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
/// the folder, else from the notes signed into the manifest (`release pack --notes-file`). This is how a mirror or an offline medium is made: copy the release folders, run this.
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
        // A NOTES.md beside the release wins; else the notes `release pack --notes-file` signed into the
        // manifest, so "What's new" is never empty when the release has notes.
        let notes = crate::fsutil::read_optional(&folder.join("NOTES.md"))?
            .or_else(|| manifest.notes.clone().filter(|n| !n.trim().is_empty()));
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
    crate::fsutil::make_publishable(&feed)?;
    Ok(FeedSummary { feed, versions })
}
