//! The update lock: an exclusive OS lock on `update.lock`, so only one process changes the install folder
//! at a time. The OS drops the lock when the holder exits, however it exits, so a crashed updater never
//! leaves a stale lock behind. The holder writes its process id into the file so a second process can say
//! who is busy (on Windows the locked file cannot be read, so the pid is then unknown).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::InstallError;

/// Proof that this process holds the update lock; dropping it releases the lock.
#[derive(Debug)]
pub struct InstallLock {
    file: File,
    path: PathBuf,
    pub(crate) install_dir: PathBuf,
}

impl InstallLock {
    /// Takes the lock in `install_dir`, or fails at once with [`InstallError::Busy`].
    pub(crate) fn acquire(install_dir: &Path) -> Result<InstallLock, InstallError> {
        std::fs::create_dir_all(install_dir).map_err(InstallError::io("create folder", install_dir))?;
        let path = install_dir.join(super::LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(InstallError::io("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(InstallError::Busy { pid, lock_file: path });
            }
            Err(TryLockError::Error(e)) => return Err(InstallError::io("lock", &path)(e)),
        }
        // The pid is a courtesy for the message above; failing to write it does not matter.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()));
        Ok(InstallLock {
            file,
            path,
            install_dir: install_dir.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        // Clear the pid so a reader never blames a finished process; closing the file releases the lock.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}
