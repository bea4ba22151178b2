//! User settings: a JSON file, overridden by environment variables.
//!
//! The file holds exactly the fields of the original design (`auto_check`, `auto_download`,
//! `auto_install`, `update_channel`, `skip_versions`, `backup_count`, `last_check`) plus our own, and keeps
//! any field it does not know so an older launcher never erases a newer one's settings. Writes are atomic.
//! A corrupt or unreadable file is moved aside (`config.json.corrupt-<time>`), defaults are used, and the
//! warning is returned once, for the caller to show; the next start finds no file and says nothing more.
//!
//! Environment variables override the file for this run only and are never written back:
//! `GITHUB_REPO` (owner/name), `UPDATE_CHECK_INTERVAL` (hours), `AUTO_UPDATE` (true: download and install
//! automatically; false: neither, and no automatic checks), `GITHUB_API_URL`, `GITHUB_SERVER_URL`,
//! `GITHUB_TOKEN`. (`PORTABLE_MODE` chooses where files live; see `paths`.)

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::version::Channel;

/// The GitHub API used unless `GITHUB_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The GitHub web host used unless `GITHUB_SERVER_URL` says otherwise.
pub const DEFAULT_SERVER_URL: &str = "https://github.com";
/// The repository the launcher updates from unless configured otherwise.
pub const DEFAULT_REPO: Option<&str> = option_env!("PAI_DEFAULT_REPO");

/// The settings file's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub auto_check: bool,
    pub auto_download: bool,
    pub auto_install: bool,
    pub update_channel: Channel,
    pub skip_versions: Vec<String>,
    pub backup_count: u32,
    pub last_check: Option<DateTime<Utc>>,
    /// Hours between automatic checks.
    pub check_interval_hours: f64,
    /// `owner/name` on GitHub.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_repo: Option<String>,
    /// A static release feed: an HTTPS URL of a feed document, or a local folder holding `feed.json`.
    /// When set, it is used instead of GitHub.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed: Option<String>,
    /// The pinned minisign public key (the base64 line of a `.pub` file); overrides the built-in key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Versions whose backend failed its health check after install; not offered automatically again.
    pub failed_versions: Vec<String>,
    /// Settings written by newer launchers, kept as they are.
    #[serde(flatten)]
    pub unknown: serde_json::Map<String, serde_json::Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            auto_check: true,
            auto_download: false,
            auto_install: false,
            update_channel: Channel::Stable,
            skip_versions: Vec::new(),
            backup_count: 5,
            last_check: None,
            check_interval_hours: 24.0,
            github_repo: None,
            feed: None,
            public_key: None,
            failed_versions: Vec::new(),
            unknown: serde_json::Map::new(),
        }
    }
}

/// A loaded settings file, and what the user should be told about it once.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads the settings file; a missing file gives defaults, a corrupt one is moved aside (see module doc).
    pub fn load(path: &Path) -> Loaded {
        let text = match crate::fsutil::read_optional(path) {
            Ok(Some(text)) => text,
            Ok(None) => {
                return Loaded {
                    config: Config::default(),
                    warnings: vec![],
                };
            }
            Err(e) => return set_aside(path, &e.to_string()),
        };
        match serde_json::from_str::<Config>(&text) {
            Ok(mut config) => {
                let mut warnings = Vec::new();
                if !config.check_interval_hours.is_finite() || config.check_interval_hours <= 0.0 {
                    warnings.push(format!(
                        "{}: check_interval_hours must be a positive number of hours; using 24",
                        path.display()
                    ));
                    config.check_interval_hours = 24.0;
                }
                Loaded { config, warnings }
            }
            Err(e) => set_aside(path, &e.to_string()),
        }
    }

    /// Writes the settings file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| Error::InvalidSetting {
            name: "config".into(),
            value: String::new(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        crate::fsutil::write_atomic(path, text.as_bytes())
    }

    /// This file's settings with the environment's overrides applied; `warnings` receives one line per
    /// environment variable that could not be understood (it is then ignored).
    pub fn with_env(&self, env: &dyn Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> Config {
        let mut out = self.clone();
        if let Some(repo) = env("GITHUB_REPO").filter(|v| !v.trim().is_empty()) {
            out.github_repo = Some(repo.trim().to_owned());
        }
        if let Some(value) = env("UPDATE_CHECK_INTERVAL").filter(|v| !v.trim().is_empty()) {
            match value.trim().parse::<f64>() {
                Ok(hours) if hours.is_finite() && hours > 0.0 => out.check_interval_hours = hours,
                _ => warnings.push(format!(
                    "UPDATE_CHECK_INTERVAL={value} is not a positive number of hours; ignoring it"
                )),
            }
        }
        if let Some(value) = env("AUTO_UPDATE").filter(|v| !v.trim().is_empty()) {
            match parse_bool(&value) {
                Some(true) => {
                    out.auto_check = true;
                    out.auto_download = true;
                    out.auto_install = true;
                }
                Some(false) => {
                    out.auto_check = false;
                    out.auto_download = false;
                    out.auto_install = false;
                }
                None => warnings.push(format!("AUTO_UPDATE={value} is not true or false; ignoring it")),
            }
        }
        out
    }

    /// The repository to update from: the configured one, else the one built in.
    pub fn repository(&self) -> Option<&str> {
        self.github_repo.as_deref().or(DEFAULT_REPO)
    }

    /// Whether an automatic check is due at `now`.
    pub fn check_due(&self, now: DateTime<Utc>) -> bool {
        match self.last_check {
            None => true,
            Some(last) => {
                let interval =
                    chrono::Duration::milliseconds((self.check_interval_hours * 3_600_000.0) as i64);
                // A clock set back past `last_check` must not silence checks forever.
                now < last || now - last >= interval
            }
        }
    }
}

fn set_aside(path: &Path, reason: &str) -> Loaded {
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let aside = path.with_file_name(format!(
        "{}.corrupt-{stamp}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("config.json")
    ));
    let kept = match std::fs::rename(path, &aside) {
        Ok(()) => format!("it was kept as {}", aside.display()),
        Err(e) => format!("it could not be moved aside ({e})"),
    };
    Loaded {
        config: Config::default(),
        warnings: vec![format!(
            "settings file {} could not be read ({reason}); {kept}; using default settings",
            path.display()
        )],
    }
}

/// Parses the booleans users write in environment variables and on the command line.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn a_missing_file_gives_the_documented_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = Config::load(&dir.path().join("config.json"));
        assert!(loaded.warnings.is_empty());
        let c = loaded.config;
        assert!(c.auto_check && !c.auto_download && !c.auto_install);
        assert_eq!(c.update_channel, Channel::Stable);
        assert_eq!(c.backup_count, 5);
        assert_eq!(c.last_check, None);
    }

    #[test]
    fn the_file_round_trips_and_keeps_fields_it_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auto_check": false, "update_channel": "beta", "skip_versions": ["1.2.0"], "backup_count": 2,
               "last_check": "2026-01-02T03:04:05Z", "future_setting": {"x": 1}}"#,
        )
        .unwrap();
        let loaded = Config::load(&path);
        assert!(loaded.warnings.is_empty());
        assert_eq!(loaded.config.update_channel, Channel::Beta);
        assert_eq!(loaded.config.backup_count, 2);
        loaded.config.save(&path).unwrap();
        let again: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(again["future_setting"]["x"], 1);
        assert_eq!(again["last_check"], "2026-01-02T03:04:05Z");
        for field in [
            "auto_check",
            "auto_download",
            "auto_install",
            "update_channel",
            "skip_versions",
        ] {
            assert!(again.get(field).is_some(), "{field} missing from the saved file");
        }
    }

    #[test]
    fn a_corrupt_file_is_kept_aside_and_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{ not json").unwrap();
        let first = Config::load(&path);
        assert_eq!(first.config, Config::default());
        assert_eq!(first.warnings.len(), 1);
        assert!(
            first.warnings[0].contains("using default settings"),
            "{}",
            first.warnings[0]
        );
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            aside.iter().any(|n| n.starts_with("config.json.corrupt-")),
            "{aside:?}"
        );
        assert!(Config::load(&path).warnings.is_empty(), "told twice");
    }

    #[test]
    fn environment_variables_override_the_file() {
        let mut warnings = vec![];
        let c = Config::default().with_env(
            &env_of(&[
                ("GITHUB_REPO", "me/agent"),
                ("UPDATE_CHECK_INTERVAL", "6"),
                ("AUTO_UPDATE", "true"),
            ]),
            &mut warnings,
        );
        assert!(warnings.is_empty());
        assert_eq!(c.repository(), Some("me/agent"));
        assert_eq!(c.check_interval_hours, 6.0);
        assert!(c.auto_download && c.auto_install);
    }

    #[test]
    fn unreadable_environment_values_are_ignored_with_a_warning() {
        let mut warnings = vec![];
        let c = Config::default().with_env(
            &env_of(&[("UPDATE_CHECK_INTERVAL", "soon"), ("AUTO_UPDATE", "maybe")]),
            &mut warnings,
        );
        assert_eq!(warnings.len(), 2);
        assert_eq!(c.check_interval_hours, 24.0);
        assert!(!c.auto_install);
    }

    #[test]
    fn a_check_is_due_after_the_interval_or_when_the_clock_went_back() {
        let now: DateTime<Utc> = "2026-05-01T12:00:00Z".parse().unwrap();
        let mut c = Config {
            check_interval_hours: 24.0,
            ..Config::default()
        };
        assert!(c.check_due(now));
        c.last_check = Some(now - chrono::Duration::hours(2));
        assert!(!c.check_due(now));
        c.last_check = Some(now - chrono::Duration::hours(25));
        assert!(c.check_due(now));
        c.last_check = Some(now + chrono::Duration::hours(5));
        assert!(c.check_due(now));
    }
}
