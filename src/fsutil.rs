//! Small file-system helpers shared by the engine: atomic writes, file and directory syncs.
//!
//! An atomic write goes to a temporary file in the same folder, is flushed to disk, then renamed over the
//! target, and the folder is synced, so a crash leaves either the old or the new content, never a mix.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename, fsync folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::paths::ensure_dir(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("flush", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("replace", path, e.error))?;
    sync_dir(dir);
    Ok(())
}

/// Makes a file meant for publishing (a release's files, a feed) readable by everyone, as a web server
/// serving a mirror needs: `0644` on Unix, where [`write_atomic`] and temporary files create `0600`.
/// Nothing to do elsewhere.
pub fn make_publishable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io("set permissions of", path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Flushes an existing file's contents to disk, by path. Windows' `FlushFileBuffers` needs a handle with
/// write access (a read-only one fails with "Access is denied"), so there the file is opened for writing,
/// never truncated; elsewhere a read-only handle is enough, and works for read-only files too.
pub fn sync_file(path: &Path) -> std::io::Result<()> {
    #[cfg(windows)]
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    #[cfg(not(windows))]
    let file = std::fs::File::open(path)?;
    file.sync_all()
}

/// Asks the kernel to start writing `file`'s data to disk now, without waiting (Linux:
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`), so a later fsync of a freshly unpacked tree mostly waits for
/// writes already under way instead of starting them all at the end. A hint only: a no-op elsewhere and
/// on failure; durability still comes from the fsync.
pub fn start_writeback(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the duration of the call; the call reads no memory of ours.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Flushes a folder's entries (the rename itself) to disk. Best effort: not every platform can open a folder.
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Reads a file to a string, `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Opens `path` for reading only if it is a regular file, checked on the open handle: a device or a FIFO
/// swapped in after an earlier check is refused instead of blocking the reader (on Unix the open itself
/// does not wait for a FIFO's writer).
pub fn open_regular_file(path: &Path) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}
