//! Versions and channels: which release, if any, the user should be offered.
//!
//! Tags are semver with an optional leading `v`; a tag that is not semver is skipped with a log line.
//! `stable` takes releases that are neither GitHub pre-releases nor semver pre-releases; `beta` adds
//! pre-releases named `beta` or `rc`; `dev` takes everything. Only versions strictly above the installed
//! one are ever offered: there is no silent downgrade (going back is `update rollback`, an explicit act).

use std::fmt;
use std::str::FromStr;

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::release::Release;

/// An update channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    #[default]
    Stable,
    Beta,
    Dev,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Stable, Channel::Beta, Channel::Dev];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stable => "stable",
            Channel::Beta => "beta",
            Channel::Dev => "dev",
        }
    }

    /// Whether a client on this channel takes what is published for `other`: stable takes stable only,
    /// beta takes stable and beta, dev takes everything.
    pub fn includes(self, other: Channel) -> bool {
        let rank = |c: Channel| match c {
            Channel::Stable => 0,
            Channel::Beta => 1,
            Channel::Dev => 2,
        };
        rank(other) <= rank(self)
    }

    /// The channel a version is published on by default: stable for a release, beta for `-beta`/`-rc`,
    /// dev for any other pre-release.
    pub fn of_version(version: &Version) -> Channel {
        if version.pre.is_empty() {
            Channel::Stable
        } else if is_beta_or_rc(version) {
            Channel::Beta
        } else {
            Channel::Dev
        }
    }

    /// Whether a release belongs to this channel.
    pub fn accepts(self, release: &Release) -> bool {
        match self {
            Channel::Stable => !release.is_prerelease(),
            Channel::Beta => release.version.pre.is_empty() || is_beta_or_rc(&release.version),
            Channel::Dev => true,
        }
    }
}

fn is_beta_or_rc(version: &Version) -> bool {
    let first = version
        .pre
        .as_str()
        .split('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    first.starts_with("beta") || first.starts_with("rc")
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stable" => Ok(Channel::Stable),
            "beta" => Ok(Channel::Beta),
            "dev" | "development" | "nightly" => Ok(Channel::Dev),
            _ => Err(Error::InvalidChannel { value: s.to_owned() }),
        }
    }
}

/// Parses a release tag (`v1.2.0`, `1.2.0-beta.1`) as semver; `None` when it is not one.
pub fn parse_tag(tag: &str) -> Option<Version> {
    let t = tag.trim();
    let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
    Version::parse(t).ok()
}

/// Parses a version the user typed, with the same leniency as tags, or says what is wrong.
pub fn parse_user_version(value: &str) -> Result<Version, Error> {
    parse_tag(value).ok_or_else(|| Error::InvalidVersion {
        value: value.to_owned(),
    })
}

/// Whether `version` is listed in `list` (entries may carry a leading `v`; unparsable entries never match).
pub fn is_listed(list: &[String], version: &Version) -> bool {
    list.iter().any(|s| parse_tag(s).as_ref() == Some(version))
}

/// What the user may be offered, given the releases a source published.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    pub channel: Channel,
    pub current: Option<&'a Version>,
    /// Versions the user chose to skip.
    pub skip: &'a [String],
    /// Versions whose install failed its health check; not offered automatically again.
    pub failed: &'a [String],
}

impl Policy<'_> {
    /// Whether a release may be offered: in the channel, strictly newer than the installed version, not
    /// skipped, not failed.
    pub fn eligible(&self, release: &Release) -> bool {
        self.channel.accepts(release)
            && self.current.is_none_or(|c| release.version > *c)
            && !is_listed(self.skip, &release.version)
            && !is_listed(self.failed, &release.version)
    }

    /// Eligible releases, newest first.
    pub fn candidates<'r>(&self, releases: &'r [Release]) -> Vec<&'r Release> {
        let mut out: Vec<&Release> = releases.iter().filter(|r| self.eligible(r)).collect();
        out.sort_by(|a, b| b.version.cmp(&a.version));
        out.dedup_by(|a, b| a.version == b.version);
        out
    }

    /// The release notes of every release in the channel between the installed version (exclusive) and
    /// `up_to` (inclusive), newest first. Skipped versions are still part of the history.
    pub fn changelog<'r>(&self, releases: &'r [Release], up_to: &Version) -> Vec<&'r Release> {
        let mut out: Vec<&Release> = releases
            .iter()
            .filter(|r| {
                self.channel.accepts(r) && self.current.is_none_or(|c| r.version > *c) && r.version <= *up_to
            })
            .collect();
        out.sort_by(|a, b| b.version.cmp(&a.version));
        out.dedup_by(|a, b| a.version == b.version);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(tag: &str, gh_prerelease: bool) -> Release {
        Release {
            version: parse_tag(tag).unwrap(),
            tag: tag.into(),
            name: None,
            published_at: None,
            notes: format!("notes of {tag}"),
            prerelease: gh_prerelease,
            html_url: None,
            assets: vec![],
        }
    }

    fn releases() -> Vec<Release> {
        vec![
            rel("v1.0.0", false),
            rel("v1.1.0", false),
            rel("v1.2.0-beta.1", true),
            rel("v1.2.0-rc.1", false),
            rel("v1.3.0-alpha.2", true),
            rel("v1.1.1", true),
        ]
    }

    fn offered(channel: Channel, current: Option<&str>, skip: &[&str]) -> Option<String> {
        let current = current.map(|c| parse_tag(c).unwrap());
        let skip: Vec<String> = skip.iter().map(|s| s.to_string()).collect();
        let policy = Policy {
            channel,
            current: current.as_ref(),
            skip: &skip,
            failed: &[],
        };
        let all = releases();
        policy.candidates(&all).first().map(|r| r.tag.clone())
    }

    #[test]
    fn tags_with_and_without_a_leading_v_parse_and_others_do_not() {
        assert_eq!(parse_tag("v1.2.3"), Some(Version::new(1, 2, 3)));
        assert_eq!(parse_tag("1.2.3"), Some(Version::new(1, 2, 3)));
        assert_eq!(parse_tag("V2.0.0-rc.1").unwrap().pre.as_str(), "rc.1");
        assert_eq!(parse_tag("nightly"), None);
        assert_eq!(parse_tag("v1.2"), None);
        assert_eq!(parse_tag("release-1.2.3"), None);
    }

    #[test]
    fn stable_ignores_every_kind_of_prerelease() {
        assert_eq!(offered(Channel::Stable, None, &[]).as_deref(), Some("v1.1.0"));
        assert_eq!(
            offered(Channel::Stable, Some("1.0.0"), &[]).as_deref(),
            Some("v1.1.0")
        );
    }

    #[test]
    fn beta_adds_beta_and_rc_but_not_alpha() {
        assert_eq!(
            offered(Channel::Beta, Some("1.1.0"), &[]).as_deref(),
            Some("v1.2.0-rc.1")
        );
        assert_eq!(
            offered(Channel::Beta, Some("1.1.0"), &["1.2.0-rc.1"]).as_deref(),
            Some("v1.2.0-beta.1")
        );
    }

    #[test]
    fn dev_takes_everything() {
        assert_eq!(
            offered(Channel::Dev, Some("1.1.0"), &[]).as_deref(),
            Some("v1.3.0-alpha.2")
        );
    }

    #[test]
    fn a_lower_or_equal_version_is_never_offered() {
        assert_eq!(offered(Channel::Stable, Some("1.1.0"), &[]), None);
        assert_eq!(offered(Channel::Stable, Some("9.0.0"), &[]), None);
        assert_eq!(offered(Channel::Dev, Some("1.3.0"), &[]), None);
    }

    #[test]
    fn skipped_versions_are_passed_over_for_the_next_newest() {
        assert_eq!(offered(Channel::Stable, Some("1.0.0"), &["v1.1.0"]), None);
        assert_eq!(
            offered(Channel::Stable, None, &["1.1.0"]).as_deref(),
            Some("v1.0.0")
        );
    }

    #[test]
    fn failed_versions_are_not_offered_automatically() {
        let all = releases();
        let failed = vec!["1.1.0".to_string()];
        let current = Version::new(1, 0, 0);
        let policy = Policy {
            channel: Channel::Stable,
            current: Some(&current),
            skip: &[],
            failed: &failed,
        };
        assert!(policy.candidates(&all).is_empty());
    }

    #[test]
    fn changelog_lists_every_release_between_installed_and_offered_newest_first() {
        let all = releases();
        let current = Version::new(1, 0, 0);
        let policy = Policy {
            channel: Channel::Beta,
            current: Some(&current),
            skip: &[],
            failed: &[],
        };
        let tags: Vec<_> = policy
            .changelog(&all, &parse_tag("1.2.0-rc.1").unwrap())
            .iter()
            .map(|r| r.tag.as_str())
            .collect();
        assert_eq!(tags, ["v1.2.0-rc.1", "v1.2.0-beta.1", "v1.1.1", "v1.1.0"]);
    }

    #[test]
    fn channels_parse_case_insensitively_and_reject_unknown_names() {
        assert_eq!("Beta".parse::<Channel>().unwrap(), Channel::Beta);
        assert!(
            "lts"
                .parse::<Channel>()
                .unwrap_err()
                .to_string()
                .contains("stable, beta or dev")
        );
    }
}
