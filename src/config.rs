//! User settings: a JSON file, overridden by environment variables.
//!
//! The file holds exactly the fields of the original design (`auto_check`, `auto_download`,
//! `auto_install`, `update_channel`, `skip_versions`, `backup_count`, `last_check`) plus our own, and keeps
//! any field it does not know so an older launcher never erases a newer one's settings. Every writer goes
//! through [`Config::update`]: one read-modify-write under a lock file, written atomically.
//!
//! Damage is contained field by field: a field that cannot be read (`"backup_count": "3"`) is reported
//! with its line and defaulted on its own, and the rest of the file is kept. The settings that decide trust
//! and origin ([`SECURITY_FIELDS`]: `public_key`, `github_repo`, `feed`, and `data_dir`, which says
//! where the installed versions are) are never defaulted: when one
//! cannot be read, the loaded config carries a [`SettingsProblem`] and no updater can be built from it
//! until the named line is fixed. A file that is not JSON at all (truncated, say) is treated the same way,
//! since nobody can tell what it held: it stays in place and updating stops until it is fixed or deleted.
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
    /// Closing the window leaves the agent running: a background launcher (`backend start`) takes the
    /// install over, and the window attaches to it when opened again; Stop or `backend stop` ends it.
    pub keep_backend_running: bool,
    /// Where installed versions, models, downloads and logs live, when not in the default data folder
    /// (an absolute path; chosen before the first install, see `paths`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<std::path::PathBuf>,
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
    /// The loopback port the owner's local API listens on (`run --headless --api-port` overrides it);
    /// 0 or absent: any free port, published in `run/api.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_port: Option<u16>,
    /// Settings written by newer launchers, kept as they are.
    #[serde(flatten)]
    pub unknown: serde_json::Map<String, serde_json::Value>,
    /// Set by [`Config::load`] when a security-relevant setting could not be read; never saved.
    #[serde(skip)]
    pub problem: Option<SettingsProblem>,
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
            keep_backend_running: false,
            data_dir: None,
            github_repo: None,
            feed: None,
            public_key: None,
            failed_versions: Vec::new(),
            api_port: None,
            unknown: serde_json::Map::new(),
            problem: None,
        }
    }
}

/// A loaded settings file, and what the user should be told about it once.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// The longest interval between automatic checks that is accepted: a year. Longer ones are surely a typo,
/// and would overflow the timers that schedule checks.
pub const MAX_CHECK_INTERVAL_HOURS: f64 = 24.0 * 365.0;

/// The most previous versions kept for rollback. Each is a whole bundle on disk; more is surely a typo
/// (the window offers 1 to 20 too).
pub const MAX_BACKUP_COUNT: u32 = 20;

/// Checks a number of previous versions to keep: 1 to [`MAX_BACKUP_COUNT`].
pub fn validate_backup_count(n: u32) -> std::result::Result<u32, String> {
    match n {
        0 => Err("is 0; keep at least 1 previous version so a rollback is possible".into()),
        1..=MAX_BACKUP_COUNT => Ok(n),
        _ => Err(format!(
            "is {n}; keep between 1 and {MAX_BACKUP_COUNT} previous versions (each is a whole bundle on disk)"
        )),
    }
}

/// The settings that decide what is trusted and where updates come from. When one of them cannot be read,
/// it is never replaced by a default (that would drop a pinned key or a chosen mirror silently): updating
/// stops with [`Error::SettingsUnreadable`] until the line is fixed.
/// `data_dir` is kept the same way: defaulting it would lose track of the installed versions.
pub const SECURITY_FIELDS: [&str; 4] = ["public_key", "github_repo", "feed", "data_dir"];

/// Every field this launcher reads; anything else in the file is kept as it is (`Config::unknown`).
const KNOWN_FIELDS: [&str; 15] = [
    "auto_check",
    "auto_download",
    "auto_install",
    "update_channel",
    "skip_versions",
    "backup_count",
    "last_check",
    "check_interval_hours",
    "keep_backend_running",
    "data_dir",
    "github_repo",
    "feed",
    "public_key",
    "failed_versions",
    "api_port",
];

/// Why the settings file cannot be trusted for updating: which line, which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsProblem {
    pub path: std::path::PathBuf,
    pub line: usize,
    /// The field, or `the file` when it is not a JSON object at all.
    pub field: String,
    pub reason: String,
    /// Every security-relevant field that could not be read (`field` is the first of them).
    pub all_fields: Vec<String>,
}

impl From<SettingsProblem> for Error {
    fn from(p: SettingsProblem) -> Self {
        Error::SettingsUnreadable {
            path: p.path,
            line: p.line,
            field: p.field,
            reason: p.reason,
        }
    }
}

/// Checks an interval in hours: positive, finite, at most [`MAX_CHECK_INTERVAL_HOURS`].
pub fn validate_check_interval(hours: f64) -> std::result::Result<f64, String> {
    if hours.is_finite() && hours > 0.0 && hours <= MAX_CHECK_INTERVAL_HOURS {
        Ok(hours)
    } else {
        Err(format!(
            "`{hours}` is not a number of hours between 0 and {MAX_CHECK_INTERVAL_HOURS} (a year); for example 24"
        ))
    }
}

impl Config {
    /// Reads the settings file. A missing file gives defaults. A field that cannot be read is reported and
    /// defaulted on its own; the rest of the file is kept. When a security-relevant field
    /// ([`SECURITY_FIELDS`]) cannot be read, or the file is not JSON at all and might hold one, `problem` is
    /// set: [`Config::ensure_readable`] (and so every updater built from it) then refuses to update.
    pub fn load(path: &Path) -> Loaded {
        let text = match crate::fsutil::read_optional(path) {
            Ok(Some(text)) => text,
            Ok(None) => {
                return Loaded {
                    config: Config::default(),
                    warnings: vec![],
                };
            }
            Err(e) => {
                return Loaded {
                    config: Config {
                        problem: Some(SettingsProblem {
                            path: path.to_path_buf(),
                            line: 1,
                            field: "the file".into(),
                            reason: e.to_string(),
                            all_fields: Vec::new(),
                        }),
                        ..Config::default()
                    },
                    warnings: vec![],
                };
            }
        };
        let object = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => return damaged(path, 1, "it is not a JSON object ({ ... })".into()),
            Err(e) => return damaged(path, e.line().max(1), format!("it is not valid JSON: {e}")),
        };
        let mut warnings = Vec::new();
        let mut problem = None;
        let mut kept = serde_json::Map::new();
        for (key, value) in object {
            if !KNOWN_FIELDS.contains(&key.as_str()) {
                kept.insert(key, value);
                continue;
            }
            let single = serde_json::Value::Object(std::iter::once((key.clone(), value.clone())).collect());
            match serde_json::from_value::<Config>(single) {
                Ok(_) => {
                    kept.insert(key, value);
                }
                Err(e) => {
                    let line = line_of_field(&text, &key);
                    let reason = format!("it is {value}: {e}");
                    if SECURITY_FIELDS.contains(&key.as_str()) {
                        problem
                            .get_or_insert(SettingsProblem {
                                path: path.to_path_buf(),
                                line,
                                field: key.clone(),
                                reason,
                                all_fields: Vec::new(),
                            })
                            .all_fields
                            .push(key);
                    } else {
                        let default = serde_json::to_value(Config::default())
                            .ok()
                            .and_then(|d| d.get(&key).cloned())
                            .unwrap_or(serde_json::Value::Null);
                        warnings.push(format!(
                            "{} line {line}: `{key}` is {value}, which cannot be read ({e}); using the default {default}, which the next saved change writes in its place: fix the line to keep your own value",
                            path.display()
                        ));
                    }
                }
            }
        }
        // Every field left was read on its own, so reading them together cannot fail; defaults otherwise.
        let mut config: Config = serde_json::from_value(serde_json::Value::Object(kept)).unwrap_or_default();
        if let Err(reason) = validate_check_interval(config.check_interval_hours) {
            warnings.push(format!(
                "{} line {}: check_interval_hours {reason}; using 24",
                path.display(),
                line_of_field(&text, "check_interval_hours")
            ));
            config.check_interval_hours = 24.0;
        }
        if let Err(reason) = validate_backup_count(config.backup_count) {
            let default = Config::default().backup_count;
            warnings.push(format!(
                "{} line {}: backup_count {reason}; using {default}",
                path.display(),
                line_of_field(&text, "backup_count")
            ));
            config.backup_count = default;
        }
        // A relative `data_dir` is not defaulted here or anywhere: `paths` refuses to start with it.
        config.problem = problem;
        Loaded { config, warnings }
    }

    /// The error to stop updating with, when a security-relevant setting could not be read.
    pub fn ensure_readable(&self) -> Result<()> {
        match &self.problem {
            Some(p) => Err(p.clone().into()),
            None => Ok(()),
        }
    }

    /// Changes the settings file with one locked read-modify-write: every writer (CLI, window, headless
    /// runner, updater) goes through here, so two processes never undo each other's changes (a
    /// `skip_versions` entry written by one while the other records a failed version). Refuses when the
    /// file holds a setting that cannot be read, rather than writing defaults over it.
    pub fn update<T>(path: &Path, change: impl FnOnce(&mut Config) -> Result<T>) -> Result<T> {
        Config::update_replacing(path, &[], change)
    }

    /// [`Config::update`] for a change that sets `replaced` fields: a security-relevant field that could
    /// not be read does not block it when the change replaces that very field (`update configure
    /// --public-key FILE` repairs a broken `public_key` line). A file that is not JSON still blocks.
    pub fn update_replacing<T>(
        path: &Path,
        replaced: &[&str],
        change: impl FnOnce(&mut Config) -> Result<T>,
    ) -> Result<T> {
        let _lock = lock_settings(path)?;
        let mut loaded = Config::load(path);
        log_warnings_once(&loaded.warnings);
        // Only when the change replaces *every* broken trust field: clearing the problem for one would
        // let the save drop another (a broken `public_key` beside the `feed` being set).
        if loaded.config.problem.as_ref().is_some_and(|p| {
            !p.all_fields.is_empty() && p.all_fields.iter().all(|f| replaced.contains(&f.as_str()))
        }) {
            loaded.config.problem = None;
        }
        loaded.config.ensure_readable()?;
        let mut config = loaded.config;
        let out = change(&mut config)?;
        config.save(path)?;
        Ok(out)
    }

    /// Writes the settings file atomically. Prefer [`Config::update`], which also locks.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.ensure_readable()?;
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
            match value.trim().parse::<f64>().map_err(|e| e.to_string()).and_then(validate_check_interval) {
                Ok(hours) => out.check_interval_hours = hours,
                Err(_) => warnings.push(format!(
                    "UPDATE_CHECK_INTERVAL={value} is not a number of hours between 0 and {MAX_CHECK_INTERVAL_HOURS}; ignoring it"
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

    /// The interval between automatic checks, validated (see [`validate_check_interval`]).
    pub fn check_interval(&self) -> std::time::Duration {
        let hours = validate_check_interval(self.check_interval_hours).unwrap_or(24.0);
        std::time::Duration::from_secs_f64(hours * 3600.0)
    }

    /// Whether an automatic check is due at `now`.
    pub fn check_due(&self, now: DateTime<Utc>) -> bool {
        match self.last_check {
            None => true,
            Some(last) => {
                let interval =
                    chrono::Duration::from_std(self.check_interval()).unwrap_or(chrono::Duration::days(1));
                // A clock set back past `last_check` must not silence checks forever.
                now < last || now - last >= interval
            }
        }
    }
}

/// An exclusive lock on `config.json.lock` beside the settings file, held for one read-modify-write and
/// released by the OS if the process dies.
fn lock_settings(path: &Path) -> Result<std::fs::File> {
    let lock_path = path.with_file_name(format!(
        "{}.lock",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("config.json")
    ));
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::paths::ensure_dir(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("open", &lock_path, e))?;
    file.lock().map_err(|e| Error::io("lock", &lock_path, e))?;
    Ok(file)
}

/// The line (1-based) where `"field":` first appears, for messages; 1 when it cannot be found.
pub(crate) fn line_of_field(text: &str, field: &str) -> usize {
    let needle = format!("\"{field}\"");
    let mut from = 0;
    while let Some(found) = text[from..].find(&needle) {
        let at = from + found;
        let rest = text[at + needle.len()..].trim_start();
        if rest.starts_with(':') {
            return text[..at].matches('\n').count() + 1;
        }
        from = at + needle.len();
    }
    1
}

/// A file that is not a JSON object. Nobody can tell what it held — a truncated file loses its last
/// fields first, and the trust fields are written last — so it stays where it is and updating stops until
/// it is fixed or deleted: a pinned key is never dropped because its line was cut off.
fn damaged(path: &Path, line: usize, reason: String) -> Loaded {
    Loaded {
        config: Config {
            problem: Some(SettingsProblem {
                path: path.to_path_buf(),
                line,
                field: "the file".into(),
                reason: format!(
                    "{reason}; it may have held a pinned key or update source, which are never dropped silently (delete the file to start over with defaults)"
                ),
                all_fields: Vec::new(),
            }),
            ..Config::default()
        },
        warnings: vec![],
    }
}

/// Logs each settings warning once per process: a command that reads the settings and then writes them
/// (a check recording `last_check`) would otherwise say the same thing twice.
pub fn log_warnings_once(warnings: &[String]) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for warning in warnings {
        if !seen.contains(warning) {
            tracing::warn!("{warning}");
            seen.push(warning.clone());
        }
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
    fn a_file_that_is_not_json_stays_in_place_and_stops_updating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        // Cut off before the trust fields, as a truncated write would leave it.
        std::fs::write(&path, "{\n  \"auto_check\": true,\n  \"backup_count\": 2").unwrap();
        let loaded = Config::load(&path);
        let err = loaded.config.ensure_readable().unwrap_err().to_string();
        assert!(
            err.contains("never dropped silently") && err.contains("line 3"),
            "{err}"
        );
        assert!(path.exists(), "the damaged file was moved away");
        assert!(
            Config::update(&path, |_| Ok(())).is_err(),
            "defaults were written over it"
        );
        assert!(Config::update_replacing(&path, &["public_key"], |_| Ok(())).is_err());
    }

    #[test]
    fn a_change_that_replaces_the_broken_field_may_repair_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"public_key": 5, "skip_versions": ["1.0.0"]}"#).unwrap();
        assert!(Config::update(&path, |_| Ok(())).is_err());
        Config::update_replacing(&path, &["public_key"], |c| {
            c.public_key = Some("RWQ".into());
            Ok(())
        })
        .unwrap();
        let fixed = Config::load(&path).config;
        assert!(fixed.problem.is_none());
        assert_eq!(fixed.public_key.as_deref(), Some("RWQ"));
        assert_eq!(fixed.skip_versions, ["1.0.0"]);
    }

    #[test]
    fn a_bad_field_is_defaulted_alone_and_a_bad_security_field_blocks_updating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            "{\n  \"backup_count\": \"3\",\n  \"github_repo\": \"me/agent\",\n  \"skip_versions\": [\"1.0.0\"]\n}",
        )
        .unwrap();
        let loaded = Config::load(&path);
        assert_eq!(loaded.config.backup_count, 5);
        assert_eq!(loaded.config.github_repo.as_deref(), Some("me/agent"));
        assert_eq!(loaded.config.skip_versions, ["1.0.0"]);
        assert!(loaded.config.problem.is_none());
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("line 2"), "{}", loaded.warnings[0]);

        std::fs::write(&path, "{\n  \"auto_check\": false,\n  \"feed\": [1]\n}").unwrap();
        let loaded = Config::load(&path);
        assert!(!loaded.config.auto_check, "the readable fields are kept");
        let err = loaded.config.ensure_readable().unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("feed"), "{err}");
        assert!(
            loaded.config.save(&path).is_err(),
            "defaults were written over it"
        );
        assert!(Config::update(&path, |_| Ok(())).is_err());
    }

    #[test]
    fn repairing_one_broken_trust_field_never_drops_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"feed": 5, "public_key": 7}"#).unwrap();
        assert!(Config::update_replacing(&path, &["feed"], |_| Ok(())).is_err());
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("\"public_key\": 7")
        );
        Config::update_replacing(&path, &["feed", "public_key"], |c| {
            c.feed = None;
            c.public_key = Some("RWQ".into());
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn check_intervals_beyond_a_year_are_refused_everywhere() {
        assert!(validate_check_interval(24.0).is_ok());
        for bad in [
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            1e300,
            MAX_CHECK_INTERVAL_HOURS + 1.0,
        ] {
            assert!(validate_check_interval(bad).is_err(), "{bad}");
        }
        let mut warnings = vec![];
        let c = Config::default().with_env(&env_of(&[("UPDATE_CHECK_INTERVAL", "1e300")]), &mut warnings);
        assert_eq!(c.check_interval_hours, 24.0);
        assert_eq!(warnings.len(), 1);
        let huge = Config {
            check_interval_hours: 1e300,
            last_check: Some(Utc::now()),
            ..Config::default()
        };
        assert_eq!(huge.check_interval(), std::time::Duration::from_secs(24 * 3600));
        assert!(!huge.check_due(Utc::now()));
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
