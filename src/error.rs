//! The engine's error type. Variants carry evidence (path, URL, expected, actual) and their messages
//! name the cause and the next step, so the edges (CLI, window, API) can print them as they are.
//!
//! Modules with many failure modes of their own (`download`, `verify`, `archive`, `install`,
//! `supervisor`, `models`) keep their own `thiserror` enum and are wrapped here transparently.

use std::path::PathBuf;

use chrono::{DateTime, Local, Utc};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A disk that filled up, wherever it happened (see [`Error::io`] and [`Error::on_disk_full`]): what
    /// failed, how much the operation needs, how much is free, and what to do.
    #[error("{}", disk_full_message(.what, .dir, *.needed, *.available))]
    DiskFull {
        /// The failed step, as its own error said it.
        what: String,
        /// The folder whose disk is full.
        dir: PathBuf,
        /// What the whole operation needs there, when known.
        needed: Option<u64>,
        /// What is free there now, when it can be measured.
        available: Option<u64>,
    },

    #[error(
        "no repository is configured; set GITHUB_REPO=owner/name, or `update configure --repo owner/name`, or configure a static feed with `update configure --feed URL`"
    )]
    NoRepository,

    #[error(
        "`{value}` is not a GitHub repository; write it as owner/name, for example personal-ai-agent/agent"
    )]
    InvalidRepository { value: String },

    #[error(
        "repository {repo} was not found at {api}: it does not exist, or it is private (set GITHUB_TOKEN to a token that can read it)"
    )]
    RepoNotFound { repo: String, api: String },

    #[error("{}", rate_limited_message(.reset_at, .retry_after_secs, *.authenticated))]
    RateLimited {
        reset_at: Option<DateTime<Utc>>,
        retry_after_secs: Option<u64>,
        authenticated: bool,
    },

    #[error(
        "cannot reach {url}: {reason}; check the network connection or the HTTPS_PROXY setting, then try again"
    )]
    Network { url: String, reason: String },

    #[error("{url} answered HTTP {status}{}", detail_suffix(.detail))]
    Http {
        url: String,
        status: u16,
        detail: String,
    },

    #[error(
        "{url} sent a response that could not be read ({reason}); the server or mirror may be misconfigured"
    )]
    InvalidResponse { url: String, reason: String },

    #[error("the release feed at {location} could not be read: {reason}")]
    Feed { location: String, reason: String },

    #[error(
        "release {version} has no download for {platform}; assets published: {}. Choose another platform with --platform, or wait for a build for this one",
        list_or_none(.available)
    )]
    NoAssetForPlatform {
        version: String,
        platform: String,
        available: Vec<String>,
    },

    #[error(
        "`{value}` is not a platform; write it as <os>-<arch>, for example linux-x86_64, macos-aarch64 or windows-x86_64"
    )]
    InvalidPlatform { value: String },

    #[error("`{value}` is not a version; write it as semver, for example 1.4.0 or v1.5.0-beta.2")]
    InvalidVersion { value: String },

    #[error("`{value}` is not a channel; choose stable, beta or dev")]
    InvalidChannel { value: String },

    #[error(
        "settings file {} line {line}: {field} could not be read ({reason}). Updates are stopped until it is fixed, so a pinned key or update source is never dropped silently: fix that line (or delete the field to clear it), then try again",
        path.display()
    )]
    SettingsUnreadable {
        path: PathBuf,
        line: usize,
        field: String,
        reason: String,
    },

    #[error("invalid setting {name} = `{value}`: {reason}")]
    InvalidSetting {
        name: String,
        value: String,
        reason: String,
    },

    #[error(
        "release {version} is signed for the {manifest_channel} channel, but this launcher follows {channel}, so it is refused whatever the release list says; to take {manifest_channel} releases, run `update configure --channel {manifest_channel}`"
    )]
    WrongChannel {
        version: String,
        manifest_channel: crate::version::Channel,
        channel: crate::version::Channel,
    },

    #[error(
        "the signed manifest offered for {version} (signed {}) is older than one this install has already seen for {newest_version} (signed {}): an old release may be replayed by a mirror or an attacker, so it is refused. To install {version} anyway, name it: `update install --version {version}`",
        published_at.format("%Y-%m-%d %H:%M:%S UTC"),
        newest_published_at.format("%Y-%m-%d %H:%M:%S UTC")
    )]
    ReplayedManifest {
        version: String,
        published_at: DateTime<Utc>,
        newest_version: String,
        newest_published_at: DateTime<Utc>,
    },

    #[error(
        "{version} is older than the installed {current}, and an update never goes back: to return to a version still installed run `personal-ai-agent update rollback --to {version}` (`update status` lists them); to install an older release anyway, run `personal-ai-agent update install --version {version} --allow-downgrade` on this machine while no launcher owns the install"
    )]
    Downgrade { version: String, current: String },

    #[error("no release matches {what}; run `personal-ai-agent update check` to see what is published")]
    ReleaseNotFound { what: String },

    #[error(
        "the health check of version {version} failed: {reason}; {}",
        match rolled_back_to {
            Some(v) => format!("rolled back to {v}, which runs as before; {version} will not be offered automatically again"),
            None => format!("there was no earlier version to go back to; {version} will not be offered automatically again"),
        }
    )]
    HealthCheckFailed {
        version: String,
        reason: String,
        rolled_back_to: Option<String>,
    },

    #[error(
        "the models folder is in use by another launcher (a `models download`, or another update moving models), so the update to {version} was not started and nothing changed; try again when it has finished"
    )]
    ModelsFolderBusy { version: String },

    #[error(
        "version {version} was reinstalled over its damaged files, but its backend is still not healthy: {reason}; it stays installed as it is. Read `personal-ai-agent backend logs`, or go back to another installed version with `update rollback --to V`"
    )]
    ReinstallUnhealthy { version: String, reason: String },

    #[error(
        "the backend is supervised by another launcher process (pid {pid}); apply the update there, or stop it with `personal-ai-agent backend stop` and try again"
    )]
    SupervisedElsewhere { pid: u32 },

    #[error(transparent)]
    Supervisor(#[from] crate::supervisor::SupervisorError),

    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),

    #[error(transparent)]
    Download(#[from] crate::download::DownloadError),

    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),

    #[error(transparent)]
    Install(#[from] crate::install::InstallError),

    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),

    #[error(transparent)]
    Models(#[from] crate::models::ModelsError),
}

impl Error {
    /// An I/O error with the action and the path it concerned; a full disk becomes [`Error::DiskFull`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if is_storage_full(&source) {
            return Error::DiskFull {
                what: format!("{action} {}: {source}", path.display()),
                available: available_space(&path),
                dir: path,
                needed: None,
            };
        }
        Error::Io { action, path, source }
    }

    /// The one place a full disk is told as such: when this error, or any error it wraps (an archive, an
    /// install step, a download), is the OS's "no space left", it becomes [`Error::DiskFull`] for `dir`
    /// with what the operation needs there (`needed`) and what is free; any other error is unchanged.
    pub fn on_disk_full(self, dir: &std::path::Path, needed: Option<u64>) -> Error {
        match self {
            Error::DiskFull {
                what,
                dir: old_dir,
                needed: old_needed,
                available,
            } => Error::DiskFull {
                what,
                dir: old_dir,
                needed: old_needed.or(needed),
                available,
            },
            other if caused_by_full_disk(&other) => Error::DiskFull {
                what: other.to_string(),
                available: available_space(dir),
                dir: dir.to_path_buf(),
                needed,
            },
            other => other,
        }
    }
}

/// Whether `e` is the OS saying the disk (or the user's quota) is full.
pub fn is_storage_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Whether `e` or one of its causes is a full disk.
fn caused_by_full_disk(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some_and(is_storage_full) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The free space of the disk holding `path` (measured at its nearest existing folder).
fn available_space(path: &std::path::Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.is_dir())?;
    fs4::available_space(existing).ok()
}

fn disk_full_message(
    what: &str,
    dir: &std::path::Path,
    needed: Option<u64>,
    available: Option<u64>,
) -> String {
    let bytes = crate::models::human_bytes;
    let free = available.map_or_else(
        || "its free space could not be measured".to_owned(),
        |a| format!("{} free", bytes(a)),
    );
    let need = match (needed, available) {
        (Some(n), Some(a)) => format!(
            "; this needs about {} there: free at least {} on that disk",
            bytes(n),
            bytes(n.saturating_sub(a).max(1))
        ),
        (Some(n), None) => format!(
            "; this needs about {} there: free that much on that disk",
            bytes(n)
        ),
        (None, _) => "; free some space on that disk".to_owned(),
    };
    format!(
        "{what} (the disk holding {} is full, {free}){need}, or keep the launcher's files on a larger disk (`--home DIR`, or `update configure --data-dir DIR` before the first install), then try again",
        dir.display()
    )
}

fn rate_limited_message(
    reset_at: &Option<DateTime<Utc>>,
    retry_after_secs: &Option<u64>,
    authenticated: bool,
) -> String {
    let when = match (reset_at, retry_after_secs) {
        (_, Some(secs)) => format!("for {secs} s"),
        (Some(at), None) => format!(
            "until {} ({})",
            at.with_timezone(&Local).format("%H:%M"),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        (None, None) => "for now".to_owned(),
    };
    let hint = if authenticated {
        "try again after that"
    } else {
        "set GITHUB_TOKEN to raise the limit, or try again after that"
    };
    format!("rate-limited by GitHub {when}; {hint}")
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_says_what_is_needed_what_is_free_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        // Wrapped deep in an unpack step, as an install meets it.
        let unpack = Error::Archive(crate::archive::ArchiveError::Io {
            action: "write",
            path: dir.path().join("staging/x/backend/agent"),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        });
        let told = unpack
            .on_disk_full(dir.path(), Some(300 * 1024 * 1024))
            .to_string();
        assert!(told.contains("cannot write"), "the failed step is kept: {told}");
        assert!(told.contains(&dir.path().display().to_string()), "{told}");
        assert!(told.contains("is full") && told.contains(" free"), "{told}");
        assert!(told.contains("needs about 300"), "{told}");
        assert!(
            told.contains("free at least") && told.contains("--home DIR"),
            "{told}"
        );
        // Anything else is left as it is.
        let other = Error::io(
            "read",
            dir.path(),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert!(matches!(
            other.on_disk_full(dir.path(), Some(1)),
            Error::Io { .. }
        ));
    }

    /// A real ENOSPC: `/dev/full` answers every write with it.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_os_saying_no_space_left_becomes_a_disk_full_error() {
        use std::io::Write;
        let Ok(mut full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            eprintln!("skipped: /dev/full cannot be opened here");
            return;
        };
        let e = full.write_all(b"x").and_then(|()| full.flush()).unwrap_err();
        let told = Error::io("write", "/dev/full", e);
        assert!(matches!(told, Error::DiskFull { .. }), "{told:?}");
        let told = told.to_string();
        assert!(told.starts_with("write /dev/full: "), "{told}");
        assert!(
            told.contains("is full") && told.contains("free some space"),
            "{told}"
        );
    }
}
