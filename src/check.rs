//! The update check: which release, if any, to offer, and what changed since the installed version.
//!
//! `check` asks a [`ReleaseSource`] for releases, keeps those the [`Policy`] allows (channel, newer than
//! installed, not skipped, not failed), and picks the newest one that has an asset for the platform.
//!
//! **The answer always rests on the full list**, never on the source's "latest" shortcut alone. GitHub's
//! `releases/latest` is the most recently *published* stable release (or the one marked latest), not the
//! highest version: publish 1.1.0, then a backport 1.0.5, and "latest" is 1.0.5. A check that trusted it
//! would offer 1.0.5 to a user on 1.0.3 and never 1.1.0, and tell a user on 1.0.5 "up to date"; no answer
//! read from "latest" alone can rule out a higher release, so none is given from it in the normal case.
//! The list is cheap where it matters: GitHub's list is fetched with the cached `ETag`, and an unchanged
//! list costs one request answered `304 Not Modified`, which GitHub does not count against the rate limit.
//!
//! The shortcut (GitHub: `releases/latest/download/release-manifest.json`, a static file outside the API
//! and its rate limit) is asked only when the API refused the list for its rate limit, on the stable
//! channel, and is used only to say something that is true whatever else exists: that its release is an
//! update for this install (newer, eligible, with an asset for the platform). Then the report offers it
//! with `complete: false` and a `message` saying a newer release may exist; anything else (the shortcut
//! finds nothing newer, or nothing installable) returns the rate-limit error, never "up to date". The
//! next check with the API answering sees every release, so no release line is stranded.
//!
//! In a [`CheckReport`], `latest` is the release offered when there is one; otherwise the newest release
//! of the channel (so the user sees what is newest), with `update_available: false` and a `message` that
//! says why nothing is offered.

use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::config::{Config, DEFAULT_API_URL, DEFAULT_SERVER_URL};
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::platform::{Platform, choose_asset};
use crate::release::{Asset, Release};
use crate::sources::feed::FeedSource;
use crate::sources::github::{GitHubSource, Repo};
use crate::sources::{Fetched, ReleaseSource};
use crate::version::{Channel, Policy};

/// What a check is asked.
#[derive(Clone, Debug)]
pub struct CheckRequest {
    pub channel: Channel,
    pub platform: Platform,
    pub current: Option<Version>,
    pub skip_versions: Vec<String>,
    pub failed_versions: Vec<String>,
}

impl CheckRequest {
    fn policy(&self) -> Policy<'_> {
        Policy {
            channel: self.channel,
            current: self.current.as_ref(),
            skip: &self.skip_versions,
            failed: &self.failed_versions,
        }
    }
}

/// The answer of a check; its JSON form is the `update check --json` contract.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckReport {
    pub current_version: Option<String>,
    pub channel: Channel,
    pub platform: String,
    pub update_available: bool,
    pub latest: Option<LatestInfo>,
    /// Why nothing is offered although releases exist (no asset for this platform, skipped, failed), or,
    /// when `complete` is false, that a newer release than the one offered may exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the answer came from.
    pub source: String,
    /// HTTP requests the check made, and whether the source answered "not modified".
    pub requests: u32,
    pub not_modified: bool,
    /// Whether the answer rests on every published release; false only when the API was rate-limited and
    /// the source's latest release alone was looked at (see the module documentation).
    pub complete: bool,
    pub checked_at: DateTime<Utc>,
    /// How the offered update would be fetched: a delta from the installed version or the full archive,
    /// and how many bytes (absent when nothing is offered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// The full release behind `latest`, for the download that may follow.
    #[serde(skip)]
    pub release: Option<Release>,
}

/// How an update is (or would be) fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// `delta` or `full`.
    pub method: String,
    /// The bytes to download: the delta's size, or the full archive's.
    pub bytes: u64,
    /// The full archive's size, for comparison.
    pub full_bytes: u64,
    /// The installed version a delta applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Why the full archive is used although the release publishes deltas (or a delta failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The release offered (or the newest one), as scripts see it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatestInfo {
    pub version: String,
    pub tag: String,
    pub published_at: Option<DateTime<Utc>>,
    pub notes: String,
    pub prerelease: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html_url: Option<String>,
    pub asset: Option<AssetInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AssetInfo {
    pub name: String,
    pub size: u64,
    pub url: String,
}

impl From<&Asset> for AssetInfo {
    fn from(a: &Asset) -> Self {
        AssetInfo {
            name: a.name.clone(),
            size: a.size,
            url: a.url.clone(),
        }
    }
}

impl CheckReport {
    /// The asset chosen for the platform, when an update is offered.
    pub fn offered_asset(&self) -> Option<&Asset> {
        let release = self.release.as_ref()?;
        let name = &self.latest.as_ref()?.asset.as_ref()?.name;
        release.asset(name)
    }
}

/// Runs a check against `source`: from the full list, or, when the API is rate-limited, from the latest
/// release alone if that proves an update exists (see the module documentation).
pub fn check(source: &dyn ReleaseSource, req: &CheckRequest) -> Result<CheckReport> {
    match source.releases() {
        Ok(fetched) => Ok(decide(req, &fetched, fetched.requests)),
        Err(limited @ Error::RateLimited { .. }) if req.channel == Channel::Stable => {
            latest_only(source, req, limited)
        }
        Err(e) => Err(e),
    }
}

/// The list was refused for the rate limit: the latest release alone may prove that an update exists (it
/// cannot prove that it is the newest one, nor that none exists), else the rate-limit error stands.
fn latest_only(source: &dyn ReleaseSource, req: &CheckRequest, limited: Error) -> Result<CheckReport> {
    let fetched = match source.latest_stable() {
        Ok(Some(fetched)) => fetched,
        Ok(None) => return Err(limited),
        Err(e) => {
            tracing::info!("the latest-release shortcut did not answer either: {e}");
            return Err(limited);
        }
    };
    let is_update = fetched.releases.first().is_some_and(|newest| {
        req.policy().eligible(newest) && choose_asset(&newest.assets, &req.platform).is_some()
    });
    if !is_update {
        return Err(limited);
    }
    // The refused list request, then the shortcut's own.
    let mut report = decide(req, &fetched, 1 + fetched.requests);
    report.complete = false;
    report.message = Some(format!(
        "only the latest release was looked at, because {limited}; a newer release may exist and is offered once the API answers"
    ));
    Ok(report)
}

fn decide(req: &CheckRequest, fetched: &Fetched, requests: u32) -> CheckReport {
    let policy = req.policy();
    let candidates = policy.candidates(&fetched.releases);
    let offered = candidates
        .iter()
        .find_map(|r| choose_asset(&r.assets, &req.platform).map(|a| (*r, a)));
    let mut message = None;
    let (release, asset) = match offered {
        Some((r, a)) => (Some(r), Some(a)),
        None => {
            let newest_in_channel = fetched
                .releases
                .iter()
                .filter(|r| req.channel.accepts(r))
                .max_by(|a, b| a.version.cmp(&b.version));
            if let Some(newest) = candidates.first() {
                message = Some(format!(
                    "release {} has no download for {}; assets published: {}",
                    newest.version,
                    req.platform,
                    installable_names(newest)
                ));
            } else if let Some(newest) = newest_in_channel {
                if req.current.as_ref().is_some_and(|c| newest.version <= *c) {
                    message = None;
                } else if crate::version::is_listed(&req.skip_versions, &newest.version) {
                    message = Some(format!("release {} is skipped (skip_versions)", newest.version));
                } else if crate::version::is_listed(&req.failed_versions, &newest.version) {
                    message = Some(format!(
                        "release {} failed its health check here before; install it explicitly with `update install --version {}`",
                        newest.version, newest.version
                    ));
                }
            } else if fetched.releases.is_empty() {
                message = Some("no releases are published yet".to_owned());
            }
            (candidates.first().copied().or(newest_in_channel), None)
        }
    };
    CheckReport {
        current_version: req.current.as_ref().map(Version::to_string),
        channel: req.channel,
        platform: req.platform.to_string(),
        update_available: asset.is_some(),
        latest: release.map(|r| LatestInfo {
            version: r.version.to_string(),
            tag: r.tag.clone(),
            published_at: r.published_at,
            notes: r.notes.clone(),
            prerelease: r.is_prerelease(),
            html_url: r.html_url.clone(),
            asset: asset.map(AssetInfo::from),
        }),
        message,
        source: fetched.origin.clone(),
        requests,
        not_modified: fetched.not_modified,
        complete: true,
        checked_at: Utc::now(),
        delivery: None,
        release: release.cloned(),
    }
}

fn installable_names(release: &Release) -> String {
    let names: Vec<&str> = release
        .assets
        .iter()
        .filter(|a| !crate::platform::is_auxiliary_asset(&a.name))
        .map(|a| a.name.as_str())
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// One entry of the changelog.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChangelogEntry {
    pub version: String,
    pub tag: String,
    pub published_at: Option<DateTime<Utc>>,
    pub notes: String,
}

/// The release notes of every release between the installed version and the newest one offered in the
/// channel, newest first (always from the full list, never from the latest-only shortcut).
pub fn changelog(source: &dyn ReleaseSource, req: &CheckRequest) -> Result<Vec<ChangelogEntry>> {
    let fetched = source.releases()?;
    let policy = req.policy();
    let Some(target) = policy
        .candidates(&fetched.releases)
        .first()
        .map(|r| r.version.clone())
    else {
        return Ok(Vec::new());
    };
    Ok(policy
        .changelog(&fetched.releases, &target)
        .into_iter()
        .map(|r| ChangelogEntry {
            version: r.version.to_string(),
            tag: r.tag.clone(),
            published_at: r.published_at,
            notes: r.notes.clone(),
        })
        .collect())
}

/// The source the settings name: a feed when one is configured, else the GitHub repository.
pub fn source_from_config(
    config: &Config,
    paths: &Paths,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn ReleaseSource>> {
    config.ensure_readable()?;
    let client = crate::http::client()?;
    if let Some(feed) = config.feed.as_deref().filter(|f| !f.trim().is_empty()) {
        return Ok(Box::new(FeedSource::new(client, feed)?));
    }
    let repo: Repo = config.repository().ok_or(Error::NoRepository)?.parse()?;
    let api = env("GITHUB_API_URL")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    let server = env("GITHUB_SERVER_URL")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned());
    let token = env("GITHUB_TOKEN").or_else(|| env("GH_TOKEN"));
    let cache = paths
        .cache_dir()
        .join(format!("github-releases-{}-{}.json", repo.owner, repo.name));
    Ok(Box::new(
        GitHubSource::new(client, &api, &server, repo, token).with_cache(cache),
    ))
}

/// The shortest interval between automatic checks, whatever the settings say.
pub const MIN_CHECK_INTERVAL_SECS: f64 = 10.0;

/// The delay before the next automatic check: the configured interval after the last check, spread by up
/// to ±10 % (and never more often than every ten seconds), so launchers started together do not all check
/// together.
pub fn next_check_delay(config: &Config, now: DateTime<Utc>, rng: &mut fastrand::Rng) -> std::time::Duration {
    let interval = config.check_interval().as_secs_f64().max(MIN_CHECK_INTERVAL_SECS);
    let jitter = interval * 0.1 * (rng.f64() * 2.0 - 1.0);
    let due_in = match config.last_check {
        Some(last) if last <= now => interval - (now - last).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    };
    // A check due now still waits a random 0-5 minutes, the spread that matters after a mass restart.
    let spread = if due_in <= 0.0 {
        rng.f64() * 300.0
    } else {
        due_in + jitter
    };
    std::time::Duration::from_secs_f64(spread.max(0.0))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A source with canned releases that counts how it is asked.
    #[derive(Default)]
    struct Canned {
        all: Vec<Release>,
        latest: Option<Release>,
        /// The API answers every list request with a rate-limit error.
        rate_limited: bool,
        /// Whether the list is answered "not modified" (the ETag matched).
        not_modified: bool,
        full_lists: Cell<u32>,
        latest_calls: Cell<u32>,
    }

    impl ReleaseSource for Canned {
        fn describe(&self) -> String {
            "canned".into()
        }
        fn releases(&self) -> Result<Fetched> {
            self.full_lists.set(self.full_lists.get() + 1);
            if self.rate_limited {
                return Err(Error::RateLimited {
                    reset_at: None,
                    retry_after_secs: Some(60),
                    authenticated: false,
                });
            }
            Ok(Fetched {
                releases: self.all.clone(),
                requests: 1,
                not_modified: self.not_modified,
                complete: true,
                origin: "canned".into(),
            })
        }
        fn latest_stable(&self) -> Result<Option<Fetched>> {
            self.latest_calls.set(self.latest_calls.get() + 1);
            Ok(self.latest.clone().map(|r| Fetched {
                releases: vec![r],
                requests: 1,
                origin: "manifest".into(),
                ..Fetched::default()
            }))
        }
        fn fetch_small(&self, _: &str, _: u64) -> Result<Option<Vec<u8>>> {
            Ok(None)
        }
    }

    fn rel(v: &str, platforms: &[&str]) -> Release {
        Release {
            version: v.parse().unwrap(),
            tag: format!("v{v}"),
            name: None,
            published_at: None,
            notes: format!("notes {v}"),
            prerelease: false,
            html_url: None,
            assets: platforms
                .iter()
                .map(|p| Asset {
                    name: format!("PersonalAIAgent-{p}-{v}.tar.gz"),
                    size: 1,
                    url: format!("https://example/{v}/{p}"),
                    api_url: None,
                    digest: None,
                })
                .collect(),
        }
    }

    fn req(current: Option<&str>, skip: &[&str]) -> CheckRequest {
        CheckRequest {
            channel: Channel::Stable,
            platform: "linux-x86_64".parse().unwrap(),
            current: current.map(|c| c.parse().unwrap()),
            skip_versions: skip.iter().map(|s| s.to_string()).collect(),
            failed_versions: vec![],
        }
    }

    const LINUX: &[&str] = &["linux-x86_64"];

    /// 1.1.0 was published, then the backport 1.0.5: GitHub's "latest" is now 1.0.5.
    fn backport_published_after_the_newer_line() -> Canned {
        Canned {
            all: vec![rel("1.0.3", LINUX), rel("1.1.0", LINUX), rel("1.0.5", LINUX)],
            latest: Some(rel("1.0.5", LINUX)),
            ..Canned::default()
        }
    }

    #[test]
    fn a_backport_marked_latest_does_not_keep_an_older_install_off_the_newer_line() {
        let source = backport_published_after_the_newer_line();
        let report = check(&source, &req(Some("1.0.3"), &[])).unwrap();
        assert!(report.update_available);
        assert_eq!(report.latest.unwrap().version, "1.1.0");
    }

    #[test]
    fn a_backport_marked_latest_does_not_tell_its_own_users_they_are_up_to_date() {
        let source = backport_published_after_the_newer_line();
        let report = check(&source, &req(Some("1.0.5"), &[])).unwrap();
        assert!(report.update_available, "1.1.0 exists: {report:?}");
        assert_eq!(report.latest.unwrap().version, "1.1.0");
    }

    #[test]
    fn the_newest_line_hears_no_update_and_no_wrong_newest_when_a_backport_is_latest() {
        let source = backport_published_after_the_newer_line();
        let report = check(&source, &req(Some("1.1.0"), &[])).unwrap();
        assert!(!report.update_available);
        assert_eq!(report.message, None);
        assert_eq!(
            report.latest.unwrap().version,
            "1.1.0",
            "the newest of the channel is 1.1.0, not GitHub's latest"
        );
    }

    #[test]
    fn a_stable_check_costs_one_list_request_and_no_manifest_request() {
        let source = Canned {
            all: vec![rel("1.2.0", LINUX)],
            latest: Some(rel("1.2.0", LINUX)),
            not_modified: true,
            ..Canned::default()
        };
        let report = check(&source, &req(Some("1.2.0"), &[])).unwrap();
        assert!(!report.update_available);
        assert_eq!(
            source.latest_calls.get(),
            0,
            "the shortcut cannot prove an answer"
        );
        assert_eq!(source.full_lists.get(), 1);
        assert_eq!(report.requests, 1);
        assert!(
            report.not_modified,
            "the 304 (free against the rate limit) is reported"
        );
    }

    #[test]
    fn a_rate_limited_api_never_lets_the_shortcut_say_up_to_date() {
        let source = Canned {
            latest: Some(rel("1.0.5", LINUX)),
            rate_limited: true,
            ..Canned::default()
        };
        let err = check(&source, &req(Some("1.0.5"), &[])).unwrap_err();
        assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
        assert_eq!(source.latest_calls.get(), 1);
    }

    #[test]
    fn a_rate_limited_api_lets_the_shortcut_offer_a_true_update_labelled_incomplete() {
        let source = Canned {
            latest: Some(rel("1.0.5", LINUX)),
            rate_limited: true,
            ..Canned::default()
        };
        let report = check(&source, &req(Some("1.0.3"), &[])).unwrap();
        assert!(report.update_available);
        assert_eq!(report.latest.as_ref().unwrap().version, "1.0.5");
        assert!(!report.complete);
        let message = report.message.as_deref().unwrap();
        assert!(
            message.contains("rate-limited") && message.contains("a newer release may exist"),
            "{message}"
        );
        assert_eq!(report.requests, 2, "the refused list and the shortcut");
        assert_eq!(serde_json::to_value(&report).unwrap()["complete"], false);
    }

    #[test]
    fn a_rate_limited_api_gives_its_error_when_the_shortcut_has_nothing_installable() {
        for latest in [None, Some(rel("1.2.0", &["windows-x86_64"]))] {
            let source = Canned {
                latest,
                rate_limited: true,
                ..Canned::default()
            };
            let err = check(&source, &req(Some("1.0.0"), &[])).unwrap_err();
            assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
        }
        let skipped = Canned {
            latest: Some(rel("1.2.0", LINUX)),
            rate_limited: true,
            ..Canned::default()
        };
        assert!(check(&skipped, &req(Some("1.0.0"), &["1.2.0"])).is_err());
    }

    #[test]
    fn a_rate_limited_beta_check_does_not_use_the_stable_shortcut() {
        let source = Canned {
            latest: Some(rel("1.2.0", LINUX)),
            rate_limited: true,
            ..Canned::default()
        };
        let request = CheckRequest {
            channel: Channel::Beta,
            ..req(Some("1.0.0"), &[])
        };
        assert!(check(&source, &request).is_err());
        assert_eq!(source.latest_calls.get(), 0);
    }

    #[test]
    fn a_report_from_the_full_list_is_complete() {
        let source = backport_published_after_the_newer_line();
        let report = check(&source, &req(Some("1.0.3"), &[])).unwrap();
        assert!(report.complete);
        assert_eq!(report.message, None);
        let json = serde_json::to_value(&report).unwrap();
        for field in [
            "current_version",
            "channel",
            "platform",
            "update_available",
            "latest",
            "source",
            "requests",
            "not_modified",
            "checked_at",
            "complete",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
    }

    #[test]
    fn a_skipped_release_is_passed_over_for_an_older_eligible_one() {
        let source = Canned {
            all: vec![rel("1.1.0", LINUX), rel("1.3.0", LINUX)],
            latest: Some(rel("1.3.0", LINUX)),
            ..Canned::default()
        };
        let report = check(&source, &req(Some("1.0.0"), &["1.3.0"])).unwrap();
        assert_eq!(source.full_lists.get(), 1);
        assert_eq!(report.latest.unwrap().version, "1.1.0");
        assert_eq!(report.requests, 1);
    }

    #[test]
    fn the_newest_release_with_a_build_for_the_platform_is_offered() {
        let source = Canned {
            all: vec![rel("1.1.0", &["linux-x86_64"]), rel("1.2.0", &["windows-x86_64"])],
            latest: None,
            ..Canned::default()
        };
        let report = check(&source, &req(Some("1.0.0"), &[])).unwrap();
        assert_eq!(report.latest.unwrap().version, "1.1.0");
    }

    #[test]
    fn no_build_for_the_platform_means_no_update_and_a_note_naming_what_exists() {
        let source = Canned {
            all: vec![rel("1.2.0", &["windows-x86_64"])],
            latest: None,
            ..Canned::default()
        };
        let report = check(&source, &req(None, &[])).unwrap();
        assert!(!report.update_available);
        let latest = report.latest.unwrap();
        assert_eq!(latest.version, "1.2.0");
        assert!(latest.asset.is_none());
        let message = report.message.unwrap();
        assert!(
            message.contains("linux-x86_64")
                && message.contains("PersonalAIAgent-windows-x86_64-1.2.0.tar.gz")
        );
    }

    #[test]
    fn the_changelog_spans_installed_to_newest_newest_first() {
        let source = Canned {
            all: vec![rel("1.0.0", &[]), rel("1.1.0", &[]), rel("1.2.0", &[])],
            latest: None,
            ..Canned::default()
        };
        let entries = changelog(&source, &req(Some("1.0.0"), &[])).unwrap();
        let versions: Vec<_> = entries.iter().map(|e| e.version.as_str()).collect();
        assert_eq!(versions, ["1.2.0", "1.1.0"]);
    }

    #[test]
    fn check_delays_are_spread_and_respect_the_interval() {
        let now: DateTime<Utc> = "2026-05-01T12:00:00Z".parse().unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut config = Config {
            check_interval_hours: 24.0,
            ..Config::default()
        };
        let first: Vec<_> = (0..50)
            .map(|_| next_check_delay(&config, now, &mut rng).as_secs())
            .collect();
        assert!(first.iter().all(|&s| s <= 300));
        assert!(
            first.iter().collect::<std::collections::BTreeSet<_>>().len() > 10,
            "not spread: {first:?}"
        );
        config.last_check = Some(now - chrono::Duration::hours(1));
        for _ in 0..50 {
            let s = next_check_delay(&config, now, &mut rng).as_secs_f64();
            assert!(
                (23.0 * 3600.0 - 2.4 * 3600.0..=23.0 * 3600.0 + 2.4 * 3600.0).contains(&s),
                "{s}"
            );
        }
    }
}
