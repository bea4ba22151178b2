//! One owner per data folder: the process that supervises the backend and serves the local API.
//!
//! The owner holds an exclusive OS lock on `run/owner.lock` for as long as it lives (the OS drops it when
//! the process dies, however it dies, so a killed owner never blocks the next one) and, once its API
//! listens, publishes `run/api.json` (`port`, `pid`, `version`, `url`, `token_file`), written atomically
//! and removed on a clean exit. Every other face reads [`current`] to find it: `api.json` alone is not
//! proof (a killed owner leaves it behind), so the lock is tried too.
//!
//! The lock is also held, without any API, by a command that changes the install in its own process
//! (`update install|rollback|download`, `models download`, `uninstall`) and by an owner that is still
//! starting: [`holder`] tells that apart from "nobody" ([`Holder::Busy`]), so no face decides to do the
//! work itself beside it. The lock file says who holds it: the pid, then what it is (`update install`,
//! `run --headless`, `the window`, `backend start`), so a refusal can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::paths::Paths;

/// The lock file, in `paths.run_dir()`.
pub const OWNER_LOCK_FILE: &str = "owner.lock";
/// Where the owner's API listens, in `paths.run_dir()`.
pub const API_INFO_FILE: &str = "api.json";

/// Why this process cannot become the owner.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error(
        "another launcher{} already owns {data_dir} (it supervises the backend and serves the local API); see `personal-ai-agent api status`, or stop that one first",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Taken { pid: Option<u32>, data_dir: PathBuf },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OwnerError + use<> {
    let path = path.to_path_buf();
    move |source| OwnerError::Io { action, path, source }
}

/// What `run/api.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiInfo {
    pub port: u16,
    pub pid: u32,
    /// The owner's launcher version.
    pub version: String,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The file holding the bearer token.
    pub token_file: PathBuf,
}

/// Proof that this process owns the data folder; dropping it removes `api.json` and releases the lock.
#[derive(Debug)]
pub struct Owner {
    file: File,
    run_dir: PathBuf,
}

/// What [`Owner::take_as`] writes for an owner that ends once its backend is stopped (a background or
/// foreground `backend start`): `uninstall` may stop its backend and then take its place.
pub const ROLE_BACKEND_START: &str = "backend start";

/// Who holds the owner lock of a data folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: a face may do the work itself.
    Nobody,
    /// A live owner whose API listens.
    Serving(ApiInfo),
    /// A process holds the lock but serves no API (yet): an owner starting, or a command changing the
    /// install in its own process. Nothing may be done beside it.
    Busy {
        pid: Option<u32>,
        /// What it said it is, when it said.
        role: Option<String>,
    },
}

impl Owner {
    /// Takes ownership of `paths`' data folder, or fails at once with [`OwnerError::Taken`].
    pub fn take(paths: &Paths) -> Result<Owner, OwnerError> {
        Self::take_as(paths, "")
    }

    /// As [`Owner::take`], saying in the lock file what holds it (`role`, such as `update install`), so
    /// [`holder`] and a refusal elsewhere can name it.
    pub fn take_as(paths: &Paths, role: &str) -> Result<Owner, OwnerError> {
        let run_dir = paths.run_dir();
        std::fs::create_dir_all(&run_dir).map_err(io("create folder", &run_dir))?;
        let path = run_dir.join(OWNER_LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open", &path))?;
        // `is_owned` probes with a brief `try_lock` of its own: a few short retries keep such a probe (a CLI
        // command looking for an owner) from being mistaken for an owner.
        let mut attempt = 0;
        let locked = loop {
            match file.try_lock() {
                Err(TryLockError::WouldBlock) if attempt < 6 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other,
            }
        };
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // On Windows the locked file cannot be read; `api.json` may still say who it is.
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| parse_lock_text(&text).0)
                    .or_else(|| read_api_info(paths).map(|i| i.pid));
                return Err(OwnerError::Taken {
                    pid,
                    data_dir: paths.data_dir.clone(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("lock", &path)(e)),
        }
        // A courtesy for the message above.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}\n{role}", std::process::id()));
        // A file left by an owner that was killed describes nobody.
        let _ = std::fs::remove_file(run_dir.join(API_INFO_FILE));
        Ok(Owner { file, run_dir })
    }

    /// Publishes where the API listens (atomically, so a reader never sees half a file).
    pub fn publish(&self, info: &ApiInfo) -> Result<(), OwnerError> {
        let path = self.run_dir.join(API_INFO_FILE);
        let bytes = serde_json::to_vec_pretty(info).unwrap_or_default();
        crate::fsutil::write_atomic(&path, &bytes).map_err(|e| OwnerError::Io {
            action: "write",
            path,
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// What withdraws `api.json`, callable from another thread: the API's own, when it cannot serve any
    /// more (`ApiServer::on_failure`). The lock stays with this owner (its backend may still run), but
    /// no face is sent to an API that does not answer.
    pub fn withdrawal(&self) -> impl FnOnce() + Send + 'static + use<> {
        let path = self.run_dir.join(API_INFO_FILE);
        move || {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.run_dir.join(API_INFO_FILE));
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// `run/api.json` as written, without checking that its owner lives.
pub fn read_api_info(paths: &Paths) -> Option<ApiInfo> {
    let text = std::fs::read_to_string(paths.run_dir().join(API_INFO_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether some process holds the owner lock now.
pub fn is_owned(paths: &Paths) -> bool {
    let path = paths.run_dir().join(OWNER_LOCK_FILE);
    let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    }
}

/// The owner's API, when a live owner has published one.
pub fn current(paths: &Paths) -> Option<ApiInfo> {
    let info = read_api_info(paths)?;
    (is_owned(paths) && crate::supervisor::is_process_alive(info.pid)).then_some(info)
}

/// Who holds the owner lock now: nobody, an owner serving its API, or a process holding it without an
/// API ([`Holder::Busy`], which must never be taken for "nobody").
pub fn holder(paths: &Paths) -> Holder {
    if let Some(info) = current(paths) {
        return Holder::Serving(info);
    }
    if !is_owned(paths) {
        return Holder::Nobody;
    }
    let text = std::fs::read_to_string(paths.run_dir().join(OWNER_LOCK_FILE)).unwrap_or_default();
    let (pid, role) = parse_lock_text(&text);
    Holder::Busy { pid, role }
}

/// The pid and role an owner lock file holds (`"<pid>\n<role>"`; an older launcher wrote the pid only).
fn parse_lock_text(text: &str) -> (Option<u32>, Option<String>) {
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse().ok());
    let role = lines
        .next()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    (pid, role)
}

/// The role the live owner wrote in its lock file (`None`: unknown, or nobody owns the folder).
pub fn role(paths: &Paths) -> Option<String> {
    let text = std::fs::read_to_string(paths.run_dir().join(OWNER_LOCK_FILE)).ok()?;
    parse_lock_text(&text).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_naming_the_first_and_the_folder_is_free_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        let owner = Owner::take(&paths).unwrap();
        assert!(is_owned(&paths));
        owner
            .publish(&ApiInfo {
                port: 1234,
                pid: std::process::id(),
                version: "0.1.0".into(),
                url: "http://127.0.0.1:1234".into(),
                token_file: dir.path().join("api-token"),
            })
            .unwrap();
        assert_eq!(current(&paths).unwrap().port, 1234);
        let err = Owner::take(&paths).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains("api status"), "{err}");
        drop(owner);
        assert!(!is_owned(&paths));
        assert!(
            read_api_info(&paths).is_none(),
            "api.json is removed on a clean exit"
        );
        assert!(Owner::take(&paths).is_ok());
    }

    #[test]
    fn an_owner_whose_api_failed_withdraws_api_json_from_another_thread_and_keeps_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        let owner = Owner::take(&paths).unwrap();
        owner
            .publish(&ApiInfo {
                port: 1234,
                pid: std::process::id(),
                version: "0.1.0".into(),
                url: "http://127.0.0.1:1234".into(),
                token_file: dir.path().join("api-token"),
            })
            .unwrap();
        let withdraw = owner.withdrawal();
        std::thread::spawn(withdraw).join().unwrap();
        assert!(
            read_api_info(&paths).is_none(),
            "no face is sent to the failed API"
        );
        assert!(current(&paths).is_none());
        assert!(is_owned(&paths), "the owner still holds the install");
    }
}
