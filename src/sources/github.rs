//! The GitHub Releases REST API, with its real rules.
//!
//! - Every request sends `User-Agent`, `Accept: application/vnd.github+json` and
//!   `X-GitHub-Api-Version: 2022-11-28`, and `Authorization: Bearer` when `GITHUB_TOKEN` is set.
//! - **The token goes to the API origin only** (scheme, host and port of `api_base`), whatever a response
//!   names: never to the web server (`server_base`), a `Link` URL or an asset `url` on another origin.
//!   Redirects are reqwest's to police: it drops `Authorization` whenever a redirect changes scheme, host
//!   or port (see `http`), so GitHub's 302 from an API asset URL to its storage host carries no token.
//! - `GET /repos/{owner}/{repo}/releases?per_page=100`, following `Link: rel="next"`; drafts are ignored,
//!   tags that are not semver are skipped with a log line. GitHub's pagination never leaves the API
//!   origin, so a `next` link that does is refused as an invalid response (neither followed with the token
//!   nor without it). A page may hold at most 32 MiB (a full page of 100 releases is well under 1 MiB).
//! - The first page's `ETag` and the whole parsed list are cached in the data folder; the next check sends
//!   `If-None-Match` and, on `304 Not Modified` (which GitHub does not count against the rate limit), uses
//!   the cache: a check that finds nothing new costs one request.
//! - 403/429 with `x-ratelimit-remaining: 0` or `retry-after` stop at once with the reset time; 404 says the
//!   repository does not exist or is private; 401 says the token was refused.
//! - [`ReleaseSource::latest_stable`] reads `{server}/{owner}/{repo}/releases/latest/download/release-manifest.json`,
//!   a static file served without any API call or rate limit. GitHub's "latest" is the most recently
//!   published stable release (or the one marked latest), not the highest version, so it proves only that
//!   its release exists: `check` asks it only when the API is rate-limited, and only to offer an update
//!   (see `check`).

use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header;
use serde::{Deserialize, Serialize};

use super::{Fetched, ReleaseSource};
use crate::error::{Error, Result};
use crate::release::{Asset, Release};

/// The API version we speak.
pub const API_VERSION: &str = "2022-11-28";
/// GitHub's maximum page size.
const PER_PAGE: u32 = 100;
/// A bound on pages followed (10,000 releases), so a broken `Link` chain cannot loop forever.
const MAX_PAGES: u32 = 100;
/// A bound on one page of the release list, so a broken or hostile server cannot fill memory.
pub const MAX_PAGE_BYTES: u64 = 32 << 20;

/// `owner/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl std::str::FromStr for Repo {
    type Err = Error;
    fn from_str(value: &str) -> Result<Self> {
        let trimmed = value.trim().trim_end_matches('/');
        let trimmed = trimmed
            .strip_prefix("https://github.com/")
            .unwrap_or(trimmed)
            .trim_end_matches(".git");
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match trimmed.split_once('/') {
            Some((owner, name)) if valid(owner) && valid(name) => Ok(Repo {
                owner: owner.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(Error::InvalidRepository {
                value: value.to_owned(),
            }),
        }
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Releases of one GitHub repository.
pub struct GitHubSource {
    client: Client,
    api_base: String,
    /// Scheme, host and port of `api_base`: the only origin the token is sent to.
    api_origin: Option<url::Origin>,
    server_base: String,
    repo: Repo,
    token: Option<String>,
    /// Where the ETag and the last list are cached; `None` disables caching.
    cache_file: Option<PathBuf>,
}

/// The release manifest's file name (see docs/RELEASE-FORMAT.md).
pub const MANIFEST_NAME: &str = "release-manifest.json";

/// What a check reads of `release-manifest.json`. The check only needs to know what is offered; the
/// download verifies the manifest's signature and every hash with `verify` before any byte is used.
#[derive(Debug, Deserialize)]
struct ManifestSummary {
    version: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    published_at: Option<DateTime<Utc>>,
    #[serde(default)]
    notes: Option<String>,
    assets: Vec<ManifestAsset>,
}

#[derive(Debug, Deserialize)]
struct ManifestAsset {
    name: String,
    size: u64,
    sha256: String,
}

/// What is kept between checks.
#[derive(Debug, Serialize, Deserialize)]
struct Cache {
    url: String,
    etag: String,
    releases: Vec<Release>,
}

/// The fields of GitHub's release object we use (see `tests/fixtures/github/release-example.json`).
#[derive(Debug, Deserialize)]
struct ApiRelease {
    tag_name: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    prerelease: bool,
    #[serde(default)]
    published_at: Option<DateTime<Utc>>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    assets: Vec<ApiAsset>,
}

#[derive(Debug, Deserialize)]
struct ApiAsset {
    name: String,
    size: u64,
    browser_download_url: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

impl GitHubSource {
    /// A source for `repo`; `api_base` like `https://api.github.com`, `server_base` like
    /// `https://github.com` (GitHub Enterprise and tests change both).
    pub fn new(client: Client, api_base: &str, server_base: &str, repo: Repo, token: Option<String>) -> Self {
        GitHubSource {
            client,
            api_base: api_base.trim_end_matches('/').to_owned(),
            api_origin: origin_of(api_base),
            server_base: server_base.trim_end_matches('/').to_owned(),
            repo,
            token: token.filter(|t| !t.trim().is_empty()),
            cache_file: None,
        }
    }

    /// Caches the ETag and the list in `file`.
    pub fn with_cache(mut self, file: PathBuf) -> Self {
        self.cache_file = Some(file);
        self
    }

    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    fn api_get(&self, url: &str) -> RequestBuilder {
        let mut req = self
            .client
            .get(url)
            .header(header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION);
        if let Some(token) = self.token_for(url) {
            req = req.bearer_auth(token);
        }
        req
    }

    /// Whether `url` is on the API origin (scheme, host and port of `api_base`, default ports filled in).
    fn on_api_origin(&self, url: &str) -> bool {
        self.api_origin
            .as_ref()
            .is_some_and(|api| api.is_tuple() && origin_of(url).as_ref() == Some(api))
    }

    /// The token, for a URL on the API origin only.
    fn token_for(&self, url: &str) -> Option<&str> {
        self.token.as_deref().filter(|_| self.on_api_origin(url))
    }

    /// The `rel="next"` page of `response` (asked for as `url`), resolved against the URL that answered;
    /// refused when it leaves the API origin.
    fn next_page(&self, url: &str, response: &Response) -> Result<Option<String>> {
        let Some(link) = response
            .headers()
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link)
        else {
            return Ok(None);
        };
        let next = response
            .url()
            .join(&link)
            .map(String::from)
            .map_err(|e| Error::InvalidResponse {
                url: url.to_owned(),
                reason: format!("its Link header names a next page `{link}` that is not a URL ({e})"),
            })?;
        if !self.on_api_origin(&next) {
            return Err(Error::InvalidResponse {
                url: url.to_owned(),
                reason: format!(
                    "its Link header names a next page on another origin, {next}, while GitHub's pages stay on {}; it was not followed",
                    self.api_base
                ),
            });
        }
        Ok(Some(next))
    }

    fn read_cache(&self, url: &str) -> Option<Cache> {
        let file = self.cache_file.as_ref()?;
        let text = std::fs::read_to_string(file).ok()?;
        let cache: Cache = serde_json::from_str(&text).ok()?;
        (cache.url == url).then_some(cache)
    }

    fn write_cache(&self, cache: &Cache) {
        let Some(file) = &self.cache_file else { return };
        match serde_json::to_vec(cache) {
            Ok(bytes) => {
                if let Err(e) = crate::fsutil::write_atomic(file, &bytes) {
                    tracing::warn!("could not cache the release list: {e}");
                }
            }
            Err(e) => tracing::warn!("could not cache the release list: {e}"),
        }
    }

    /// Maps a non-success answer to the error that says what to do.
    fn status_error(&self, url: &str, response: Response) -> Error {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let remaining = header_str("x-ratelimit-remaining");
        let retry_after = header_str("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
        let reset_at = header_str("x-ratelimit-reset")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(|secs| Utc.timestamp_opt(secs, 0).single());
        if matches!(status, 403 | 429) && (remaining.as_deref() == Some("0") || retry_after.is_some()) {
            return Error::RateLimited {
                reset_at,
                retry_after_secs: retry_after,
                authenticated: self.token.is_some(),
            };
        }
        // An error body is only read for its `message`, and never more than 64 KiB of it.
        let message = read_limited(response, url, 64 << 10, "error body too large")
            .ok()
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_default();
        match status {
            404 => Error::RepoNotFound {
                repo: self.repo.to_string(),
                api: self.api_base.clone(),
            },
            401 => Error::Http {
                url: url.to_owned(),
                status,
                detail: format!("the token in GITHUB_TOKEN was refused ({message}); renew it or unset it"),
            },
            403 => Error::Http {
                url: url.to_owned(),
                status,
                detail: format!(
                    "access denied ({message}); check that GITHUB_TOKEN may read {}",
                    self.repo
                ),
            },
            500..=599 => Error::Http {
                url: url.to_owned(),
                status,
                detail: "GitHub is having trouble; try again in a few minutes".to_owned(),
            },
            _ => Error::Http {
                url: url.to_owned(),
                status,
                detail: message,
            },
        }
    }
}

impl ReleaseSource for GitHubSource {
    fn describe(&self) -> String {
        format!("GitHub repository {} ({})", self.repo, self.api_base)
    }

    fn releases(&self) -> Result<Fetched> {
        let first = format!(
            "{}/repos/{}/{}/releases?per_page={PER_PAGE}",
            self.api_base, self.repo.owner, self.repo.name
        );
        let cache = self.read_cache(&first);
        let mut requests = 0;
        let mut releases = Vec::new();
        let mut next = Some(first.clone());
        let mut first_etag = None;
        let mut page = 0;
        while let Some(url) = next.take() {
            page += 1;
            if page > MAX_PAGES {
                tracing::warn!("stopped after {MAX_PAGES} pages of releases");
                break;
            }
            let mut req = self.api_get(&url);
            if page == 1
                && let Some(cache) = &cache
            {
                req = req.header(header::IF_NONE_MATCH, &cache.etag);
            }
            requests += 1;
            let response = req.send().map_err(|e| crate::http::transport_error(&url, &e))?;
            let status = response.status();
            if status == reqwest::StatusCode::NOT_MODIFIED {
                if let Some(cache) = cache {
                    tracing::info!("release list of {} unchanged (304)", self.repo);
                    return Ok(Fetched {
                        releases: cache.releases,
                        requests,
                        not_modified: true,
                        complete: true,
                        origin: self.describe(),
                    });
                }
                return Err(Error::InvalidResponse {
                    url,
                    reason: "304 Not Modified to a request that sent no ETag".into(),
                });
            }
            if !status.is_success() {
                return Err(self.status_error(&url, response));
            }
            if page == 1 {
                first_etag = response
                    .headers()
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
            }
            next = self.next_page(&url, &response)?;
            let body = read_limited(
                response,
                &url,
                MAX_PAGE_BYTES,
                "a page of the release list larger than 32 MiB",
            )?;
            let page_releases: Vec<ApiRelease> =
                serde_json::from_slice(&body).map_err(|e| Error::InvalidResponse {
                    url: url.clone(),
                    reason: format!("not a list of releases: {e}"),
                })?;
            releases.extend(page_releases.into_iter().filter_map(convert));
        }
        if let Some(etag) = first_etag {
            self.write_cache(&Cache {
                url: first,
                etag,
                releases: releases.clone(),
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

    fn latest_stable(&self) -> Result<Option<Fetched>> {
        let base = format!(
            "{}/{}/{}/releases",
            self.server_base, self.repo.owner, self.repo.name
        );
        let manifest_url = format!("{base}/latest/download/{}", MANIFEST_NAME);
        let Some(bytes) = self.fetch_small(&manifest_url, crate::verify::MANIFEST_LIMIT)? else {
            tracing::info!("{} publishes no {}; asking the API", self.repo, MANIFEST_NAME);
            return Ok(None);
        };
        let manifest = match serde_json::from_slice::<ManifestSummary>(&bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("ignoring {manifest_url}: {e}");
                return Ok(None);
            }
        };
        let Some(release) = release_from_manifest(&manifest, &base) else {
            tracing::warn!("ignoring {manifest_url}: its version is not semver");
            return Ok(None);
        };
        Ok(Some(Fetched {
            releases: vec![release],
            requests: 1,
            not_modified: false,
            complete: false,
            origin: format!("{manifest_url} (no API call)"),
        }))
    }

    fn fetch_small(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        fetch_small(&self.client, url, limit, self.token_for(url), None)
    }

    fn fetch_asset_small(&self, asset: &Asset, limit: u64) -> Result<Option<Vec<u8>>> {
        let target = self.download_target(asset);
        fetch_small(
            &self.client,
            &target.url,
            limit,
            target.token.as_deref(),
            target.accept.as_deref(),
        )
    }

    /// With a token, the API asset URL (`Accept: application/octet-stream`), which works for private
    /// repositories and answers with a redirect to a storage host (reqwest drops the token there); without
    /// one, or when the asset's API URL is not on the API origin, the public download URL without a token.
    fn download_target(&self, asset: &Asset) -> super::DownloadTarget {
        let api_url = asset.api_url.as_deref();
        match api_url.and_then(|u| self.token_for(u).map(|t| (u, t))) {
            Some((api_url, token)) => super::DownloadTarget {
                url: api_url.to_owned(),
                token: Some(token.to_owned()),
                accept: Some("application/octet-stream".to_owned()),
            },
            None => super::DownloadTarget {
                url: asset.url.clone(),
                token: None,
                accept: None,
            },
        }
    }
}

/// Scheme, host and port (the scheme's default when none is written) of a URL.
fn origin_of(url: &str) -> Option<url::Origin> {
    reqwest::Url::parse(url).ok().map(|u| u.origin())
}

/// Builds the release a signed manifest describes, with download URLs under
/// `{server}/{owner}/{repo}/releases/download/{tag}/`.
fn release_from_manifest(manifest: &ManifestSummary, base: &str) -> Option<Release> {
    let version = crate::version::parse_tag(&manifest.version)?;
    let tag = manifest.tag.clone().unwrap_or_else(|| format!("v{version}"));
    let mut assets: Vec<Asset> = manifest
        .assets
        .iter()
        .map(|a| Asset {
            name: a.name.clone(),
            size: a.size,
            url: format!("{base}/download/{tag}/{}", a.name),
            api_url: None,
            digest: Some(format!("sha256:{}", a.sha256)),
        })
        .collect();
    for extra in [MANIFEST_NAME.to_owned(), format!("{}.minisig", MANIFEST_NAME)] {
        assets.push(Asset {
            url: format!("{base}/download/{tag}/{extra}"),
            name: extra,
            size: 0,
            api_url: None,
            digest: None,
        });
    }
    Some(Release {
        version,
        tag,
        name: None,
        published_at: manifest.published_at,
        notes: manifest.notes.clone().unwrap_or_default(),
        prerelease: false,
        html_url: None,
        assets,
    })
}

/// GETs a small file; `Ok(None)` on 404; more than `limit` bytes is an error.
pub fn fetch_small(
    client: &Client,
    url: &str,
    limit: u64,
    token: Option<&str>,
    accept: Option<&str>,
) -> Result<Option<Vec<u8>>> {
    let mut req = client.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(accept) = accept {
        req = req.header(header::ACCEPT, accept);
    }
    let response = req.send().map_err(|e| crate::http::transport_error(url, &e))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(Error::Http {
            url: url.to_owned(),
            status: status.as_u16(),
            detail: String::new(),
        });
    }
    let too_large = format!("larger than the {limit} bytes a release file may have");
    read_limited(response, url, limit, &too_large).map(Some)
}

/// Reads a body of at most `limit` bytes: refused from its `Content-Length` before a byte is read, and
/// otherwise cut off one byte past the limit, so a body without a length cannot fill memory either.
fn read_limited(response: Response, url: &str, limit: u64, too_large: &str) -> Result<Vec<u8>> {
    let refuse = || Error::InvalidResponse {
        url: url.to_owned(),
        reason: too_large.to_owned(),
    };
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(refuse());
    }
    use std::io::Read;
    let mut body = Vec::new();
    response
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::Network {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    if body.len() as u64 > limit {
        return Err(refuse());
    }
    Ok(body)
}

/// Converts one API release; `None` for drafts and tags that are not semver.
fn convert(r: ApiRelease) -> Option<Release> {
    if r.draft {
        return None;
    }
    let Some(version) = crate::version::parse_tag(&r.tag_name) else {
        tracing::info!("skipping release tag `{}`: not a semver version", r.tag_name);
        return None;
    };
    Some(Release {
        version,
        tag: r.tag_name,
        name: r.name.filter(|n| !n.is_empty()),
        published_at: r.published_at,
        notes: r.body.unwrap_or_default(),
        prerelease: r.prerelease,
        html_url: r.html_url,
        assets: r
            .assets
            .into_iter()
            .filter(|a| a.state.as_deref().is_none_or(|s| s == "uploaded"))
            .map(|a| Asset {
                name: a.name,
                size: a.size,
                url: a.browser_download_url,
                api_url: a.url,
                digest: a.digest,
            })
            .collect(),
    })
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let url = pieces.next()?.trim().strip_prefix('<')?.strip_suffix('>')?;
        pieces
            .any(|p| {
                let p = p.trim();
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| url.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others() {
        let link = r#"<https://api.github.com/repositories/1/releases?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/releases?per_page=100&page=5>; rel="last""#;
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/repositories/1/releases?per_page=100&page=2")
        );
        assert_eq!(next_link(r#"<https://x/?page=1>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
    }

    fn github(token: Option<&str>) -> GitHubSource {
        GitHubSource::new(
            crate::http::client().unwrap(),
            "https://api.github.com/",
            "https://github.com",
            "o/r".parse().unwrap(),
            token.map(str::to_owned),
        )
    }

    #[test]
    fn the_token_goes_to_the_api_origin_only() {
        let source = github(Some("sekrit"));
        for same in [
            "https://api.github.com/repos/o/r/releases?page=2",
            "https://api.github.com:443/repositories/1/releases",
            "https://API.GitHub.com/repos/o/r/releases/assets/1",
        ] {
            assert_eq!(source.token_for(same), Some("sekrit"), "{same}");
        }
        for other in [
            "http://api.github.com/repos/o/r/releases",
            "https://api.github.com:8443/repos/o/r/releases",
            "https://github.com/o/r/releases/latest/download/release-manifest.json",
            "https://objects.githubusercontent.com/github-production-release-asset/1",
            "https://api.github.com.evil.example/repos/o/r/releases",
            "https://evil.example/?https://api.github.com/",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert_eq!(source.token_for(other), None, "{other}");
        }
        assert_eq!(github(None).token_for("https://api.github.com/x"), None);
    }

    #[test]
    fn an_asset_api_url_elsewhere_falls_back_to_the_public_url_without_a_token() {
        let source = github(Some("sekrit"));
        let mut asset = Asset {
            name: "a.tar.gz".into(),
            size: 1,
            url: "https://github.com/o/r/releases/download/v1/a.tar.gz".into(),
            api_url: Some("https://api.github.com/repos/o/r/releases/assets/7".into()),
            digest: None,
        };
        let target = source.download_target(&asset);
        assert_eq!(target.url, "https://api.github.com/repos/o/r/releases/assets/7");
        assert_eq!(target.token.as_deref(), Some("sekrit"));
        for elsewhere in [
            "http://api.github.com/repos/o/r/releases/assets/7",
            "https://evil.example/repos/o/r/releases/assets/7",
        ] {
            asset.api_url = Some(elsewhere.into());
            let target = source.download_target(&asset);
            assert_eq!(target.url, asset.url, "{elsewhere}");
            assert_eq!((target.token, target.accept), (None, None), "{elsewhere}");
        }
    }

    #[test]
    fn repositories_parse_from_owner_name_and_urls() {
        assert_eq!("o/r".parse::<Repo>().unwrap().to_string(), "o/r");
        assert_eq!(
            "https://github.com/o/r.git".parse::<Repo>().unwrap().to_string(),
            "o/r"
        );
        for bad in ["", "o", "o/", "/r", "o/r/x", "o r/x"] {
            assert!(bad.parse::<Repo>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_documented_example_release_converts() {
        let text = include_str!("../../tests/fixtures/github/release-example.json");
        let api: ApiRelease = serde_json::from_str(text).unwrap();
        let release = convert(api).unwrap();
        assert_eq!(release.tag, "v1.0.0");
        assert_eq!(release.version, semver::Version::new(1, 0, 0));
        assert_eq!(release.assets.len(), 1);
        assert!(
            release.assets[0]
                .api_url
                .as_deref()
                .unwrap()
                .contains("/releases/assets/")
        );
    }
}
