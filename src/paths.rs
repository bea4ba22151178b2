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
//! The data folder holds the programs the launcher runs, so it is used only when nobody else can change
//! it ([`check_private_folder`]): it and every folder above it belong to this user or root and nobody else
//! may write to them (a root-owned sticky folder such as `/tmp` is fine above it). A `data_dir` setting that
//! names a missing folder (a drive not mounted), is not an absolute path or cannot be read is an error at
//! every start, never a fresh install somewhere else: [`Paths::resolve_lenient`] says what is wrong, and
//! only `update configure` (to choose another folder) and `uninstall` (to remove the settings) go on.
//!
//! Nothing here creates a folder except [`Paths::claim_data_dir`]; callers create what they write into,
//! with [`ensure_dir`].

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
    /// The root's own data folder, before the `data_dir` setting moved it (`data_dir` when it did not):
    /// what the launcher wrote there before the move (logs, the marker) is still its own to remove.
    pub root_data_dir: PathBuf,
}

/// Why the data folder cannot be used. Each message names the folder and the next step.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "the data folder {} (data_dir in {}) does not exist: is the drive mounted? Mount it, or choose another with `personal-ai-agent update configure --data-dir DIR`",
        dir.display(), config.display()
    )]
    Missing { dir: PathBuf, config: PathBuf },

    #[error(
        "{} line {line}: data_dir {reason}; the data folder is never guessed: fix that line, or choose a folder with `personal-ai-agent update configure --data-dir DIR`",
        config.display()
    )]
    Setting {
        config: PathBuf,
        line: usize,
        reason: String,
    },

    #[error(
        "the data folder {} is not safe to run programs from: {problem}; {fix}",
        dir.display()
    )]
    NotPrivate {
        dir: PathBuf,
        /// What was found, naming the folder (or link) at fault and its owner or mode.
        problem: String,
        /// What to do about it.
        fix: String,
    },

    #[error("cannot look at the data folder {} ({reason}); check that it is reachable and yours", dir.display())]
    Unreadable { dir: PathBuf, reason: String },
}

impl From<DataDirError> for Error {
    fn from(e: DataDirError) -> Self {
        Error::InvalidSetting {
            name: "data_dir".into(),
            value: String::new(),
            reason: e.to_string(),
        }
    }
}

impl Paths {
    /// Everything under one folder.
    pub fn under(home: impl Into<PathBuf>) -> Self {
        let home = home.into();
        Paths {
            config_dir: home.clone(),
            data_dir: home.clone(),
            portable: false,
            root_data_dir: home.clone(),
            home: Some(home),
        }
    }

    /// Resolves the root from an explicit home, then `PAI_HOME`, `PORTABLE_MODE`, then the platform, then
    /// the `data_dir` setting; fails when the data folder cannot be used ([`DataDirError`]).
    pub fn resolve(home: Option<&Path>) -> Result<Self> {
        Self::resolve_with(home, &|name| std::env::var(name).ok())
    }

    /// As [`Paths::resolve`], reading the environment through `env` (tests inject it).
    pub fn resolve_with(home: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        match Self::resolve_lenient_with(home, env)? {
            (paths, None) => Ok(paths),
            (_, Some(problem)) => Err(problem.into()),
        }
    }

    /// As [`Paths::resolve`], but a data folder that cannot be used is returned beside the paths instead
    /// of failing, for the commands that must work then (`update configure` chooses another one,
    /// `uninstall` removes the settings). The paths then name the configured folder as it is (nothing may
    /// be created in it), or the root's own one when the setting cannot be read at all.
    pub fn resolve_lenient(home: Option<&Path>) -> Result<(Self, Option<DataDirError>)> {
        Self::resolve_lenient_with(home, &|name| std::env::var(name).ok())
    }

    /// As [`Paths::resolve_lenient`], reading the environment through `env`.
    pub fn resolve_lenient_with(
        home: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Self, Option<DataDirError>)> {
        let mut paths = Self::root(home, env)?;
        let problem = paths.follow_data_dir_setting().err();
        let problem = problem.or_else(|| check_private_folder(&paths.data_dir).err());
        Ok((paths, problem))
    }

    /// Whether the data folder can be used now, as [`Paths::resolve`] decides at start (the setting read
    /// again, the folder and its parents looked at again).
    pub fn data_dir_problem(&self) -> Option<DataDirError> {
        let mut again = self.clone();
        again.data_dir = self.root_data_dir.clone();
        match again.follow_data_dir_setting() {
            Err(e) => Some(e),
            Ok(()) => check_private_folder(&self.data_dir).err(),
        }
    }

    /// Moves the data folder where the settings' `data_dir` says. A setting that is not an absolute path
    /// or cannot be read, and a configured folder that does not exist, are errors: a default in their
    /// place would be a fresh install beside the real one.
    fn follow_data_dir_setting(&mut self) -> std::result::Result<(), DataDirError> {
        let config = self.config_file();
        let loaded = crate::config::Config::load(&config).config;
        if let Some(problem) = loaded
            .problem
            .as_ref()
            .filter(|p| p.all_fields.iter().any(|f| f == "data_dir"))
        {
            return Err(DataDirError::Setting {
                config,
                line: problem.line,
                reason: format!("cannot be read ({})", problem.reason),
            });
        }
        let Some(dir) = loaded.data_dir else {
            return Ok(());
        };
        if !dir.is_absolute() {
            let line = std::fs::read_to_string(&config)
                .map(|text| crate::config::line_of_field(&text, "data_dir"))
                .unwrap_or(1);
            return Err(DataDirError::Setting {
                config,
                line,
                reason: format!("{} is not an absolute path", dir.display()),
            });
        }
        self.data_dir = dir;
        match std::fs::symlink_metadata(&self.data_dir) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DataDirError::Missing {
                dir: self.data_dir.clone(),
                config,
            }),
            Err(e) => Err(DataDirError::Unreadable {
                dir: self.data_dir.clone(),
                reason: e.to_string(),
            }),
        }
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
            root_data_dir: dirs.data_dir().to_path_buf(),
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
            root_data_dir: dirs.data_dir().to_path_buf(),
        })
    }

    /// Marks the data folder as the launcher's own ([`crate::app::DATA_MARKER`]) when it is missing or
    /// empty, so `uninstall` may later remove what it holds by name. A folder that already holds other
    /// things (the user's home given as `--home`, the executable's folder in portable mode) is left
    /// unmarked. A folder it makes is this user's alone (0700 on Unix). Best effort: a folder that cannot
    /// be written is reported by whatever writes there next.
    pub fn claim_data_dir(&self) {
        let empty = match std::fs::read_dir(&self.data_dir) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if empty && create_private_dir(&self.data_dir).is_ok() {
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

/// Creates `dir` and its missing parents, each this user's alone (mode 0700 on Unix, whatever the umask
/// would allow), so the checks of [`check_private_folder`] pass on what the launcher made itself.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Checks that nobody but this user (and root) can change what `dir` holds: on Unix, `dir` and every
/// folder above it (after resolving links) belong to this user or root and are not writable by group or
/// others, except that a folder above it may be a sticky one (`/tmp`, mode 1777) owned by this user or
/// root, where others can neither rename nor delete an entry of ours; every link on the way (`dir`
/// itself included) must belong to this user or root too, or its owner could point it elsewhere. A
/// missing `dir` is judged by the folders that exist above it (it will be made private).
///
/// Windows: not checked here (ACLs); the launcher makes its data folder with [`crate::api::token`]'s
/// `restrict_dir`, which leaves it to this user and the system.
pub fn check_private_folder(dir: &Path) -> std::result::Result<(), DataDirError> {
    #[cfg(unix)]
    {
        check_private_folder_unix(dir)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(unix)]
fn check_private_folder_unix(dir: &Path) -> std::result::Result<(), DataDirError> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let trusted = |uid: u32| uid == me || uid == 0;
    let unreadable = |e: std::io::Error| DataDirError::Unreadable {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let not_private = |problem: String, fix: String| DataDirError::NotPrivate {
        dir: dir.to_path_buf(),
        problem,
        fix,
    };
    let choose = "choose a folder of your own (`personal-ai-agent update configure --data-dir DIR`, or another --home)";
    let dir = absolute(dir);
    // The deepest part that exists: a missing data folder is made private by the launcher.
    let mut existing = dir.as_path();
    loop {
        match std::fs::symlink_metadata(existing) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match existing.parent() {
                Some(parent) => existing = parent,
                None => return Err(unreadable(e)),
            },
            Err(e) => return Err(unreadable(e)),
        }
    }
    // Every link on the way as written: its owner could point it anywhere.
    for part in existing.ancestors() {
        let meta = std::fs::symlink_metadata(part).map_err(unreadable)?;
        if meta.file_type().is_symlink() && !trusted(meta.uid()) {
            return Err(not_private(
                format!(
                    "{} is a link owned by user {}, who could point it elsewhere",
                    part.display(),
                    meta.uid()
                ),
                choose.into(),
            ));
        }
    }
    // Then the folders it really is in.
    let real = std::fs::canonicalize(existing).map_err(unreadable)?;
    for (depth, part) in real.ancestors().enumerate() {
        let meta = std::fs::symlink_metadata(part).map_err(unreadable)?;
        let is_the_folder = depth == 0 && existing == dir.as_path();
        if !trusted(meta.uid()) {
            return Err(not_private(
                format!(
                    "{} belongs to user {}, not to you (user {me}) or root, so that user could change the programs installed there",
                    part.display(),
                    meta.uid()
                ),
                choose.into(),
            ));
        }
        let mode = meta.mode();
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && (is_the_folder || !sticky) {
            return Err(not_private(
                format!(
                    "others may write to {} (mode {:o}), so they could replace what it holds",
                    part.display(),
                    mode & 0o7777
                ),
                format!(
                    "run `chmod go-w {}` if that folder is yours, or {choose}",
                    part.display()
                ),
            ));
        }
    }
    Ok(())
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
        assert_eq!(moved.root_data_dir, home.path());
        assert_eq!(moved.config_dir, home.path());
        assert_eq!(moved.install_dir(), elsewhere.path().join("install"));
    }

    /// (Was `a_relative_data_dir_setting_is_not_followed`, which checked the old silent default.)
    #[test]
    fn a_relative_data_dir_setting_is_an_error_naming_it_never_the_default() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.json"),
            "{\n  \"auto_check\": true,\n  \"data_dir\": \"some/where\"\n}",
        )
        .unwrap();
        let err = Paths::resolve_with(Some(home.path()), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3: data_dir some/where is not an absolute path")
                && err.contains("--data-dir DIR"),
            "{err}"
        );
        let (paths, problem) = Paths::resolve_lenient_with(Some(home.path()), &|_| None).unwrap();
        assert!(
            matches!(problem, Some(DataDirError::Setting { line: 3, .. })),
            "{problem:?}"
        );
        assert_eq!(paths.config_dir, home.path());
    }

    #[test]
    fn a_configured_data_folder_that_is_missing_is_an_error_and_is_not_made() {
        let home = tempfile::tempdir().unwrap();
        let gone = home.path().join("drive/PersonalAIAgent");
        std::fs::write(
            home.path().join("config.json"),
            serde_json::json!({ "data_dir": gone }).to_string(),
        )
        .unwrap();
        let err = Paths::resolve_with(Some(home.path()), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is the drive mounted?"), "{err}");
        assert!(err.contains(&gone.display().to_string()), "{err}");
        let (paths, problem) = Paths::resolve_lenient_with(Some(home.path()), &|_| None).unwrap();
        assert!(matches!(problem, Some(DataDirError::Missing { .. })));
        assert_eq!(paths.data_dir, gone);
        assert_eq!(paths.root_data_dir, home.path());
        assert!(!gone.exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_others_may_write_to_is_refused_naming_it_and_a_sticky_parent_is_not() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        let mine = shared.join("mine");
        std::fs::create_dir(&mine).unwrap();
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o700)).unwrap();
        // A parent others may write to (not sticky): they could rename `mine` and put their own there.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_private_folder(&mine).unwrap_err().to_string();
        assert!(
            err.contains(&format!("others may write to {} (mode 777)", shared.display())),
            "{err}"
        );
        assert!(err.contains(&format!("chmod go-w {}", shared.display())), "{err}");
        // The same folder sticky (like /tmp): fine above ours, never for the folder itself.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        check_private_folder(&mine).unwrap();
        check_private_folder(&mine.join("not/made/yet")).unwrap();
        let err = check_private_folder(&shared).unwrap_err().to_string();
        assert!(err.contains("mode 1777"), "{err}");
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(check_private_folder(&mine).is_err());
        // A missing folder is judged by what exists above it.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_private_folder(&shared.join("new")).is_err());
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o700)).unwrap();
        // What the launcher makes itself passes, whatever the umask.
        let made = shared.join("a/b");
        create_private_dir(&made).unwrap();
        check_private_folder(&made).unwrap();
    }
}
