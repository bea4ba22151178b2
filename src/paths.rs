//! Every path the launcher uses, in one place.
//!
//! Three ways to choose the root, first match wins:
//! 1. `--home DIR` or `PAI_HOME=DIR`: everything under DIR (tests, several side-by-side installs);
//! 2. `PORTABLE_MODE=1`: everything beside the executable (a USB stick, an unzipped folder);
//! 3. otherwise the platform's folders: config in the config folder, the rest in the data folder.
//!
//! Then the `data_dir` setting of that root's `config.json` (chosen in the first-run wizard, before anything
//! is installed) moves the data folder (installed versions, models, downloads, logs) elsewhere; the
//! settings stay where they are, so the next start finds it.
//!
//! Nothing here creates a folder; callers create what they write into, with [`ensure_dir`].

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the launcher keeps its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// Holds `config.json`.
    pub config_dir: PathBuf,
    /// Holds logs, caches, downloads, installed versions and models.
    pub data_dir: PathBuf,
    /// Whether the root came from `PORTABLE_MODE`.
    pub portable: bool,
    /// The one folder everything is under, when it was given (`--home`, `PAI_HOME`, a demo's home): what
    /// another launcher started for this install must be given as `--home`.
    pub home: Option<PathBuf>,
}

impl Paths {
    /// Everything under one folder.
    pub fn under(home: impl Into<PathBuf>) -> Self {
        let home = home.into();
        Paths {
            config_dir: home.clone(),
            data_dir: home.clone(),
            portable: false,
            home: Some(home),
        }
    }

    /// Resolves the root from an explicit home, then `PAI_HOME`, `PORTABLE_MODE`, then the platform.
    pub fn resolve(home: Option<&Path>) -> Result<Self> {
        Self::resolve_with(home, &|name| std::env::var(name).ok())
    }

    /// As [`Paths::resolve`], reading the environment through `env` (tests inject it).
    pub fn resolve_with(home: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        Ok(Self::root(home, env)?.with_data_dir_setting())
    }

    /// The data folder the settings name (`data_dir`, an absolute path), if any; else as it is.
    pub fn with_data_dir_setting(mut self) -> Self {
        if let Some(dir) = crate::config::Config::load(&self.config_file())
            .config
            .data_dir
            .filter(|d| d.is_absolute())
        {
            self.data_dir = dir;
        }
        self
    }

    fn root(home: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        if let Some(home) = home {
            return Ok(Self::under(absolute(home)));
        }
        if let Some(home) = env("PAI_HOME").filter(|h| !h.is_empty()) {
            return Ok(Self::under(absolute(Path::new(&home))));
        }
        if env("PORTABLE_MODE").is_some_and(|v| crate::config::parse_bool(&v) == Some(true)) {
            let exe = std::env::current_exe().map_err(|e| Error::io("find the executable", "", e))?;
            let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut paths = Self::under(dir);
            paths.portable = true;
            paths.home = None;
            return Ok(paths);
        }
        let dirs =
            directories::ProjectDirs::from("ai", "PersonalAIAgent", "PersonalAIAgent").ok_or_else(|| {
                Error::InvalidSetting {
                    name: "home".into(),
                    value: String::new(),
                    reason: "no home folder was found for this user; pass --home DIR or set PAI_HOME".into(),
                }
            })?;
        Ok(Paths {
            config_dir: dirs.config_dir().to_path_buf(),
            data_dir: dirs.data_dir().to_path_buf(),
            portable: false,
            home: None,
        })
    }

    /// The platform's folders for the launcher, whatever `--home`, `PAI_HOME` or `PORTABLE_MODE` say.
    pub fn platform_default() -> Option<Paths> {
        let dirs = directories::ProjectDirs::from("ai", "PersonalAIAgent", "PersonalAIAgent")?;
        Some(Paths {
            config_dir: dirs.config_dir().to_path_buf(),
            data_dir: dirs.data_dir().to_path_buf(),
            portable: false,
            home: None,
        })
    }

    /// Marks the data folder as the launcher's own ([`crate::app::DATA_MARKER`]) when it is missing or
    /// empty, so `uninstall` may later remove what it holds by name. A folder that already holds other
    /// things (the user's home given as `--home`, the executable's folder in portable mode) is left
    /// unmarked. Best effort: a folder that cannot be written is reported by whatever writes there next.
    pub fn claim_data_dir(&self) {
        let empty = match std::fs::read_dir(&self.data_dir) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if empty && std::fs::create_dir_all(&self.data_dir).is_ok() {
            let _ = write_data_marker(&self.data_dir);
        }
    }

    /// The settings file.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.json")
    }
    /// Rotated log files.
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
    /// Small caches, such as the GitHub ETag cache.
    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache")
    }
    /// Downloads in progress (`*.part`) and finished, verified downloads waiting to be installed.
    pub fn downloads_dir(&self) -> PathBuf {
        self.data_dir.join("downloads")
    }
    /// Installed versions, the `current` pointer, the journal and the update lock.
    pub fn install_dir(&self) -> PathBuf {
        self.data_dir.join("install")
    }
    /// Model files, shared by every installed version.
    pub fn models_dir(&self) -> PathBuf {
        self.data_dir.join("models")
    }
    /// Runtime state shared between processes (backend status written by the supervisor).
    pub fn run_dir(&self) -> PathBuf {
        self.data_dir.join("run")
    }
}

/// Writes `dir`'s [`crate::app::DATA_MARKER`], created new (a link planted in its place is not followed).
pub fn write_data_marker(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(crate::app::DATA_MARKER))?
        .write_all(b"This folder holds Personal AI Agent's installed versions, models and downloads.\n")
}

/// Creates `dir` and its parents, with an error that names the folder.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create folder", dir, e))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_setting_moves_the_data_folder_and_leaves_the_settings_in_place() {
        let home = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let no_env = |_: &str| None;
        let plain = Paths::resolve_with(Some(home.path()), &no_env).unwrap();
        assert_eq!(plain.data_dir, home.path());
        std::fs::write(
            plain.config_file(),
            serde_json::json!({ "data_dir": elsewhere.path() }).to_string(),
        )
        .unwrap();
        let moved = Paths::resolve_with(Some(home.path()), &no_env).unwrap();
        assert_eq!(moved.data_dir, elsewhere.path());
        assert_eq!(moved.config_dir, home.path());
        assert_eq!(moved.install_dir(), elsewhere.path().join("install"));
    }

    #[test]
    fn a_relative_data_dir_setting_is_not_followed() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("config.json"), r#"{ "data_dir": "some/where" }"#).unwrap();
        let paths = Paths::resolve_with(Some(home.path()), &|_| None).unwrap();
        assert_eq!(paths.data_dir, home.path());
    }
}
