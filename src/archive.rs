//! Release bundles as archives: packing a bundle folder into a `.tar.zst`, `.tar.gz` or `.zip`, and
//! unpacking one without trusting it, verifying its SHA256 on the way.
//!
//! A bundle archive holds exactly one top folder, [`bundle_root_name`] (`PersonalAIAgent-linux-x86_64-1.2.0/`),
//! with the launcher, `backend/` and `agent.json` inside. [`create_archive`] writes the entries in sorted
//! order with fixed timestamps and owners, so packing the same folder twice gives the same bytes, and keeps
//! the executable bit (the tar mode, or the zip entry's Unix permissions).
//!
//! [`extract_archive`] treats every archive as hostile, even one whose checksum and signature were verified:
//! - entry names must be relative, without `..`, NUL or backslashes (and, on Windows, without `:`);
//! - device files, FIFOs and sockets are refused, and so are tar entry types we do not know (skipping one
//!   could silently drop a file the backend needs);
//! - hard links may only point at a regular file unpacked earlier from the same archive;
//! - symbolic links are created last, after every file, so nothing is ever written through one; each must
//!   resolve (following the links the archive itself made) to a place inside the *bundle root*, the folder
//!   [`extract_archive`] returns and the installer renames to `versions/<v>/`. Inside the destination is
//!   not enough: `Root/l -> ../1.0.0/x` stays inside staging but, installed, points into a sibling version,
//!   and `Root/l -> ..` names `versions/` itself. A path may not climb above the root even to come back
//!   (`../Root/x` only works while the root has its archive name);
//! - the bytes actually written, not the sizes the headers claim, are counted against
//!   [`ExtractLimits::max_total_bytes`], which stops decompression bombs, and the entry count is bounded;
//! - permissions keep the owner/group/other read and execute bits, drop set-uid, set-gid, sticky and
//!   group/other write; folder permissions from the archive are ignored (folders get the process default).
//!
//! The destination must be missing or empty; on any error, what was unpacked is removed again.
//!
//! [`extract_archive_checked`] hashes the archive's bytes as they are unpacked (on a second thread, see
//! `hashing.rs`) and compares the hash with the expected one after the last byte, trailing bytes included:
//! the bytes that were checked are the bytes that were unpacked, so nothing can change the file between a
//! check and its use, and the file is read once. A mismatch removes what was unpacked. (A `.zip` is read
//! from its end first, so it is hashed through the same open handle before it is unpacked.) Each file
//! unpacked is hashed too and reported ([`FileRecord`]), which is what the installer records and what a
//! delta update checks its base against; on Linux its write-back starts as soon as it is written
//! (`sync_file_range`), so flushing the finished tree afterwards mostly waits for writes already under way.
//!
//! Platform notes: on Windows, symbolic links in a bundle are refused (creating them needs a privilege most
//! users lack; Windows bundles should not contain any) and permissions are not applied.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::hashing::HashingReader;

/// How many symbolic links one path may pass through before we call it a loop (Linux uses 40 too).
const MAX_LINK_HOPS: usize = 40;
/// A symbolic link's target is a path; anything longer than this in a zip entry is not one.
const MAX_LINK_TARGET_BYTES: u64 = 4096;

/// The archive formats a bundle can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArchiveKind {
    /// `.tar.zst` (or `.tzst`): what `release pack` writes for Linux and macOS.
    TarZst,
    /// `.tar.gz` (or `.tgz`): Linux and macOS, what launchers before 0.2 read.
    TarGz,
    /// `.zip` with deflate: Windows.
    Zip,
}

impl ArchiveKind {
    /// The kind a file name's suffix says, case-insensitively; `None` for anything else.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".tar.zst") || lower.ends_with(".tzst") {
            Some(ArchiveKind::TarZst)
        } else if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Some(ArchiveKind::TarGz)
        } else if lower.ends_with(".zip") {
            Some(ArchiveKind::Zip)
        } else {
            None
        }
    }

    /// The usual archive kind for bundles of an OS: `.zip` on Windows, `.tar.zst` elsewhere.
    pub fn for_os(os: crate::platform::Os) -> Self {
        match os {
            crate::platform::Os::Windows => ArchiveKind::Zip,
            _ => ArchiveKind::TarZst,
        }
    }

    /// The file suffix, with its dot: `.tar.zst`, `.tar.gz` or `.zip`.
    pub const fn extension(self) -> &'static str {
        match self {
            ArchiveKind::TarZst => ".tar.zst",
            ArchiveKind::TarGz => ".tar.gz",
            ArchiveKind::Zip => ".zip",
        }
    }
}

/// The name of a bundle's top folder, and (with [`ArchiveKind::extension`]) of its archive:
/// `PersonalAIAgent-<os>-<arch>-<version>`.
pub fn bundle_root_name(version: &semver::Version, platform: &crate::platform::Platform) -> String {
    format!("PersonalAIAgent-{platform}-{version}")
}

/// Bounds on what one archive may unpack to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Total bytes written for all files together.
    pub max_total_bytes: u64,
    /// Entries of any kind (files, folders, links).
    pub max_entries: u64,
}

impl Default for ExtractLimits {
    /// 32 GiB and 200 000 entries: room for a backend with its runtime, far below what fills a disk by
    /// surprise.
    fn default() -> Self {
        ExtractLimits {
            max_total_bytes: 32 * 1024 * 1024 * 1024,
            max_entries: 200_000,
        }
    }
}

/// Why an archive entry was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnsafeReason {
    /// The name starts at the file-system root or a drive.
    AbsolutePath,
    /// The name has a `..` component.
    ParentComponent,
    /// The name has a NUL, a backslash, or (on Windows) a `:`.
    InvalidName,
    /// A symbolic link whose target resolves outside the destination.
    LinkEscapes { target: String },
    /// A hard link whose target is outside the archive or not an earlier regular file in it.
    HardLinkTarget { target: String },
    /// A device, FIFO or socket.
    SpecialFile { kind: &'static str },
    /// The entry would be written inside a symbolic link the archive made.
    InsideLink,
    /// The entry clashes with an earlier one of another type (a file where a folder is, a link over a file).
    Conflict,
    /// Symbolic links cannot be created on this platform.
    LinksUnsupported,
}

impl fmt::Display for UnsafeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsafeReason::AbsolutePath => f.write_str("is an absolute path"),
            UnsafeReason::ParentComponent => f.write_str("climbs out with `..`"),
            UnsafeReason::InvalidName => f.write_str("has a NUL, backslash or drive character in its name"),
            UnsafeReason::LinkEscapes { target } => {
                write!(
                    f,
                    "is a symbolic link to `{target}`, which points outside the bundle"
                )
            }
            UnsafeReason::HardLinkTarget { target } => {
                write!(
                    f,
                    "is a hard link to `{target}`, which is not a file earlier in the archive"
                )
            }
            UnsafeReason::SpecialFile { kind } => write!(f, "is a {kind}, which a bundle never needs"),
            UnsafeReason::InsideLink => f.write_str("would be written through a symbolic link"),
            UnsafeReason::Conflict => f.write_str("clashes with an earlier entry of another type"),
            UnsafeReason::LinksUnsupported => {
                f.write_str("is a symbolic link, which this platform cannot create")
            }
        }
    }
}

/// What can go wrong packing or unpacking a bundle.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{} is not a .tar.zst, .tar.gz, .tgz or .zip file; bundles come only in those forms", archive.display())]
    UnsupportedKind { archive: PathBuf },

    #[error(
        "{} does not match the SHA256 its release vouches for (expected {expected}, read {actual}): it changed or was damaged after it was downloaded, so nothing was installed; run the update again to download it afresh",
        archive.display()
    )]
    ChecksumMismatch {
        archive: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("{} is damaged and cannot be read ({reason}); delete it and download it again", archive.display())]
    Corrupt { archive: PathBuf, reason: String },

    #[error(
        "refusing to unpack {}: entry `{entry}` {reason}. The archive is unsafe: do not install it, and tell its publisher",
        archive.display()
    )]
    UnsafeEntry {
        archive: PathBuf,
        entry: String,
        reason: UnsafeReason,
    },

    #[error(
        "refusing to unpack {}: it holds more than {limit} bytes (reached at entry `{entry}`), which looks like a decompression bomb; if the bundle really is that large, raise the limit",
        archive.display()
    )]
    TooLarge {
        archive: PathBuf,
        entry: String,
        limit: u64,
    },

    #[error(
        "refusing to unpack {}: it holds more than {limit} entries; if the bundle really has that many files, raise the limit",
        archive.display()
    )]
    TooManyEntries { archive: PathBuf, limit: u64 },

    #[error("cannot unpack into {}: the folder is not empty; remove its contents or choose another folder", dest.display())]
    DestinationNotEmpty { dest: PathBuf },

    #[error("cannot pack {}: {reason}", path.display())]
    CannotPack { path: PathBuf, reason: String },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Packing

/// One thing found under the bundle folder, relative to it.
enum PackItem {
    Dir,
    File { mode: u32 },
    Symlink { target: PathBuf },
}

/// Packs the contents of `bundle_dir` under one top folder `root_name` into `out_file`, replacing it
/// atomically (a temporary file beside it, flushed, then renamed). Returns the archive's size in bytes.
pub fn create_archive(
    bundle_dir: &Path,
    root_name: &str,
    out_file: &Path,
    kind: ArchiveKind,
) -> Result<u64, ArchiveError> {
    let meta = fs::metadata(bundle_dir).map_err(io_error("read the bundle folder", bundle_dir))?;
    if !meta.is_dir() {
        return Err(ArchiveError::CannotPack {
            path: bundle_dir.to_path_buf(),
            reason: "it is not a folder; pass the folder that holds agent.json and backend/".into(),
        });
    }
    if root_name.is_empty() || root_name.contains(['/', '\\']) || root_name == "." || root_name == ".." {
        return Err(ArchiveError::CannotPack {
            path: bundle_dir.to_path_buf(),
            reason: format!("`{root_name}` cannot name the top folder; use a plain folder name"),
        });
    }
    let mut items = Vec::new();
    collect_items(bundle_dir, Path::new(""), &mut items)?;

    let out_dir = out_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(out_dir).map_err(io_error("create folder", out_dir))?;
    let temp = tempfile::Builder::new()
        .prefix(".pack-")
        .tempfile_in(out_dir)
        .map_err(io_error("create a temporary file in", out_dir))?;
    let writer = BufWriter::new(temp.as_file());
    let root = Path::new(root_name);
    match kind {
        ArchiveKind::TarZst => {
            let mut zstd = zstd::stream::write::Encoder::new(writer, ZSTD_LEVEL)
                .map_err(io_error("compress", temp.path()))?;
            // Several threads when the machine has them; the frames are the same whatever their number.
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            zstd.multithread(threads)
                .map_err(io_error("compress", temp.path()))?;
            let zstd = write_tar(bundle_dir, root, &items, zstd, temp.path())?;
            let mut writer = zstd.finish().map_err(io_error("write", temp.path()))?;
            writer.flush().map_err(io_error("write", temp.path()))?;
        }
        ArchiveKind::TarGz => {
            let gz = flate2::GzBuilder::new().write(writer, flate2::Compression::default());
            let gz = write_tar(bundle_dir, root, &items, gz, temp.path())?;
            let mut writer = gz.finish().map_err(io_error("write", temp.path()))?;
            writer.flush().map_err(io_error("write", temp.path()))?;
        }
        ArchiveKind::Zip => write_zip(bundle_dir, root_name, &items, writer, temp.path())?,
    }
    temp.as_file()
        .sync_all()
        .map_err(io_error("flush", temp.path()))?;
    let size = temp
        .as_file()
        .metadata()
        .map_err(io_error("read", temp.path()))?
        .len();
    temp.persist(out_file).map_err(|e| ArchiveError::Io {
        action: "replace",
        path: out_file.to_path_buf(),
        source: e.error,
    })?;
    crate::fsutil::sync_dir(out_dir);
    Ok(size)
}

/// Walks `dir` depth-first in sorted name order, so the archive's order does not depend on the file system.
fn collect_items(base: &Path, rel: &Path, items: &mut Vec<(PathBuf, PackItem)>) -> Result<(), ArchiveError> {
    let dir = base.join(rel);
    let mut names: Vec<OsString> = fs::read_dir(&dir)
        .map_err(io_error("list", &dir))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_error("list", &dir))?;
    names.sort();
    for name in names {
        let child_rel = rel.join(&name);
        let child = base.join(&child_rel);
        let meta = fs::symlink_metadata(&child).map_err(io_error("read", &child))?;
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            let target = fs::read_link(&child).map_err(io_error("read the link", &child))?;
            items.push((child_rel, PackItem::Symlink { target }));
        } else if file_type.is_dir() {
            items.push((child_rel.clone(), PackItem::Dir));
            collect_items(base, &child_rel, items)?;
        } else if file_type.is_file() {
            items.push((
                child_rel,
                PackItem::File {
                    mode: pack_mode(&meta, &child),
                },
            ));
        } else {
            return Err(ArchiveError::CannotPack {
                path: child,
                reason: "it is a device, FIFO or socket, which cannot go in a bundle; remove it".into(),
            });
        }
    }
    Ok(())
}

#[cfg(unix)]
pub(crate) fn pack_mode(meta: &fs::Metadata, _path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Windows has no executable bit; programs and scripts are marked executable so a bundle packed on Windows
/// for another OS still runs there.
#[cfg(not(unix))]
pub(crate) fn pack_mode(_meta: &fs::Metadata, path: &Path) -> u32 {
    let executable = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["exe", "bat", "cmd", "ps1", "sh"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    });
    if executable { 0o755 } else { 0o644 }
}

/// The zstd level `release pack` uses: about gzip's speed to pack with a smaller result, and zstd's
/// unpacking speed whatever the level.
const ZSTD_LEVEL: i32 = 12;

/// Writes the tar stream into `writer` (a compressor) and hands the compressor back to be finished.
fn write_tar<W: Write>(
    base: &Path,
    root: &Path,
    items: &[(PathBuf, PackItem)],
    writer: W,
    out: &Path,
) -> Result<W, ArchiveError> {
    let mut builder = tar::Builder::new(writer);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let mut root_header = dir_header();
    builder
        .append_data(&mut root_header, root, io::empty())
        .map_err(io_error("write", out))?;
    for (rel, item) in items {
        let name = root.join(rel);
        let source = base.join(rel);
        match item {
            PackItem::Dir => {
                let mut header = dir_header();
                builder
                    .append_data(&mut header, &name, io::empty())
                    .map_err(io_error("write", out))?;
            }
            PackItem::File { mode } => {
                let mut file = File::open(&source).map_err(io_error("read", &source))?;
                let len = file.metadata().map_err(io_error("read", &source))?.len();
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(len);
                header.set_mtime(tar::DETERMINISTIC_TIMESTAMP);
                builder
                    .append_data(&mut header, &name, &mut file)
                    .map_err(io_error("write", out))?;
            }
            PackItem::Symlink { target } => {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                header.set_mtime(tar::DETERMINISTIC_TIMESTAMP);
                builder
                    .append_link(&mut header, &name, target)
                    .map_err(io_error("write", out))?;
            }
        }
    }
    builder.into_inner().map_err(io_error("write", out))
}

fn dir_header() -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(tar::DETERMINISTIC_TIMESTAMP);
    header
}

fn write_zip(
    base: &Path,
    root_name: &str,
    items: &[(PathBuf, PackItem)],
    writer: impl Write + io::Seek,
    out: &Path,
) -> Result<(), ArchiveError> {
    let zip_err = |e: zip::result::ZipError| ArchiveError::Io {
        action: "write",
        path: out.to_path_buf(),
        source: io::Error::other(e),
    };
    let mut zip = zip::ZipWriter::new(writer);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    zip.add_directory(format!("{root_name}/"), options.unix_permissions(0o755))
        .map_err(zip_err)?;
    for (rel, item) in items {
        let name = zip_name(root_name, rel).ok_or_else(|| ArchiveError::CannotPack {
            path: base.join(rel),
            reason: "its name is not valid UTF-8, which zip archives need; rename it".into(),
        })?;
        match item {
            PackItem::Dir => zip
                .add_directory(format!("{name}/"), options.unix_permissions(0o755))
                .map_err(zip_err)?,
            PackItem::File { mode } => {
                let source = base.join(rel);
                let mut file = File::open(&source).map_err(io_error("read", &source))?;
                let large = file.metadata().map_err(io_error("read", &source))?.len() >= u64::from(u32::MAX);
                zip.start_file(name, options.unix_permissions(*mode).large_file(large))
                    .map_err(zip_err)?;
                io::copy(&mut file, &mut zip).map_err(io_error("write", out))?;
            }
            PackItem::Symlink { target } => {
                let target = target.to_str().ok_or_else(|| ArchiveError::CannotPack {
                    path: base.join(rel),
                    reason: "its link target is not valid UTF-8, which zip archives need".into(),
                })?;
                zip.add_symlink(name, target.replace('\\', "/"), options)
                    .map_err(zip_err)?;
            }
        }
    }
    let mut writer = zip.finish().map_err(zip_err)?;
    writer.flush().map_err(io_error("write", out))?;
    Ok(())
}

fn zip_name(root_name: &str, rel: &Path) -> Option<String> {
    let mut name = root_name.to_owned();
    for component in rel.components() {
        name.push('/');
        name.push_str(component.as_os_str().to_str()?);
    }
    Some(name)
}

// ---------------------------------------------------------------------------------------------------------
// Unpacking

/// One regular file as unpacked (or as a release lists it): size, SHA256 and permission bits.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// The permission bits as unpacked: `0o755` or `0o644` for what `release pack` writes.
    pub mode: u32,
}

/// What [`extract_archive_checked`] unpacked.
#[derive(Clone, Debug)]
pub struct Extracted {
    /// The bundle root (see [`extract_archive`]).
    pub root: PathBuf,
    /// Every regular file under the root, by its `/`-separated path relative to the root.
    pub files: std::collections::BTreeMap<String, FileRecord>,
    /// The SHA256 of the whole archive file, as it was read.
    pub sha256: String,
}

/// The permission bits a file gets when unpacked from `mode` (see [`set_mode`]).
pub fn unpacked_mode(mode: u32) -> u32 {
    (mode & 0o755) | 0o600
}

/// Unpacks `archive` (its kind taken from its name) into `dest`, which must be missing or empty. Returns the
/// bundle root: the single top folder when the archive holds exactly one, otherwise `dest` itself.
pub fn extract_archive(archive: &Path, dest: &Path, limits: &ExtractLimits) -> Result<PathBuf, ArchiveError> {
    extract_archive_checked(archive, dest, limits, None, None).map(|extracted| extracted.root)
}

/// The files a verified release says its bundle holds (path relative to the bundle root → size and
/// SHA256, from its `.files.json`, whose hash the manifest gives).
pub type ListedFiles = std::collections::BTreeMap<String, (u64, String)>;

/// [`extract_archive`], hashing the archive as it is read: when `expected_sha256` is given and the bytes
/// read do not have it, what was unpacked is removed and [`ArchiveError::ChecksumMismatch`] returned.
///
/// `listed`, the file list of the same release (vouched for by its manifest), spares hashing each file a
/// second time: a file it lists with the size the archive gives is recorded with the listed SHA256 (the archive's own hash,
/// checked at the end, vouches for its bytes, and the same signature for the list); any other file is
/// hashed as it is written.
pub fn extract_archive_checked(
    archive: &Path,
    dest: &Path,
    limits: &ExtractLimits,
    expected_sha256: Option<&str>,
    listed: Option<&ListedFiles>,
) -> Result<Extracted, ArchiveError> {
    let name = archive.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let kind = ArchiveKind::from_file_name(name).ok_or_else(|| ArchiveError::UnsupportedKind {
        archive: archive.to_path_buf(),
    })?;
    let dest_existed = match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ArchiveError::DestinationNotEmpty {
                    dest: dest.to_path_buf(),
                });
            }
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error("open", dest)(e)),
    };
    fs::create_dir_all(dest).map_err(io_error("create folder", dest))?;

    let mut extractor = Extractor {
        archive,
        dest,
        limits: *limits,
        written_bytes: 0,
        entries: 0,
        symlinks: Vec::new(),
        top_level: BTreeSet::new(),
        files: std::collections::BTreeMap::new(),
        copy_buffer: vec![0; COPY_BUFFER],
        listed,
        from_list: Vec::new(),
    };
    let result = match kind {
        ArchiveKind::TarZst | ArchiveKind::TarGz => extractor.unpack_tar(kind),
        ArchiveKind::Zip => extractor.unpack_zip(expected_sha256),
    }
    .and_then(|sha256| {
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(ArchiveError::ChecksumMismatch {
                archive: archive.to_path_buf(),
                expected: expected.to_ascii_lowercase(),
                actual: sha256,
            });
        }
        // Known only now that every entry is in: the folder links must stay inside.
        let root = extractor.bundle_root_rel();
        extractor.create_symlinks(&root)?;
        // A listed record was matched below the first folder; if that folder is not the root after all
        // (an archive with several top entries), the file is hashed from disk instead.
        for rel in std::mem::take(&mut extractor.from_list) {
            let top = rel.components().next().map(|c| PathBuf::from(c.as_os_str()));
            if top.as_deref() != Some(root.as_path())
                && let Some(record) = extractor.files.get_mut(&rel)
            {
                let path = dest.join(&rel);
                record.sha256 = crate::verify::sha256_file(&path).map_err(|e| ArchiveError::Io {
                    action: "read",
                    path: path.clone(),
                    source: io::Error::other(e.to_string()),
                })?;
            }
        }
        let files = std::mem::take(&mut extractor.files)
            .into_iter()
            .filter_map(|(rel, record)| {
                let inside = rel.strip_prefix(&root).ok()?;
                Some((inside.to_string_lossy().replace('\\', "/"), record))
            })
            .collect();
        Ok(Extracted {
            root: dest.join(root),
            files,
            sha256,
        })
    });
    match result {
        Ok(extracted) => Ok(extracted),
        Err(e) => {
            // Leave nothing half-unpacked behind: the caller asked for an empty (or missing) folder.
            if dest_existed {
                if let Ok(entries) = fs::read_dir(dest) {
                    for entry in entries.flatten() {
                        let path = entry.path();
                        let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
                    }
                }
            } else {
                let _ = fs::remove_dir_all(dest);
            }
            Err(e)
        }
    }
}

/// A symbolic link waiting to be created once every file is in place.
struct PendingLink {
    entry: String,
    rel: PathBuf,
    target: PathBuf,
}

struct Extractor<'a> {
    archive: &'a Path,
    dest: &'a Path,
    limits: ExtractLimits,
    written_bytes: u64,
    entries: u64,
    symlinks: Vec<PendingLink>,
    top_level: BTreeSet<OsString>,
    /// Every regular file written, by its path relative to the destination.
    files: std::collections::BTreeMap<PathBuf, FileRecord>,
    copy_buffer: Vec<u8>,
    listed: Option<&'a ListedFiles>,
    /// Files recorded from `listed` rather than hashed.
    from_list: Vec<PathBuf>,
}

/// The buffer files are written through: few system calls, little memory.
const COPY_BUFFER: usize = 1024 * 1024;

/// What an entry is, once its format-specific header is read.
enum EntryKind {
    Dir,
    File { mode: u32 },
    Symlink { target: PathBuf },
    HardLink { target: PathBuf },
}

impl Extractor<'_> {
    fn unsafe_entry(&self, entry: &str, reason: UnsafeReason) -> ArchiveError {
        ArchiveError::UnsafeEntry {
            archive: self.archive.to_path_buf(),
            entry: entry.to_owned(),
            reason,
        }
    }

    fn corrupt(&self, reason: impl fmt::Display) -> ArchiveError {
        ArchiveError::Corrupt {
            archive: self.archive.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    fn hashing_reader(&self) -> Result<HashingReader<File>, ArchiveError> {
        let file = File::open(self.archive).map_err(io_error("open", self.archive))?;
        HashingReader::new(file).map_err(io_error("start hashing", self.archive))
    }

    /// Unpacks a `.tar.zst` or `.tar.gz`, hashing the file as it is read; returns the file's SHA256.
    fn unpack_tar(&mut self, kind: ArchiveKind) -> Result<String, ArchiveError> {
        let reader = BufReader::with_capacity(256 * 1024, self.hashing_reader()?);
        let reader = if kind == ArchiveKind::TarZst {
            let mut zstd = zstd::stream::read::Decoder::with_buffer(reader).map_err(|e| self.corrupt(e))?;
            // Bundles are packed with a window far below this; it bounds what a hostile frame may ask for.
            zstd.window_log_max(27).map_err(|e| self.corrupt(e))?;
            let mut tar = tar::Archive::new(zstd);
            self.unpack_tar_entries(&mut tar)?;
            tar.into_inner().finish()
        } else {
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(reader));
            self.unpack_tar_entries(&mut tar)?;
            tar.into_inner().into_inner()
        };
        let (sha256, _) = reader
            .into_inner()
            .finish()
            .map_err(io_error("read", self.archive))?;
        Ok(sha256)
    }

    fn unpack_tar_entries<R: Read>(&mut self, tar: &mut tar::Archive<R>) -> Result<(), ArchiveError> {
        let entries = tar.entries().map_err(|e| self.corrupt(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.corrupt(e))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let header = entry.header();
            let kind = match header.entry_type() {
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                    EntryKind::File {
                        mode: header.mode().unwrap_or(0o644),
                    }
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| self.corrupt(format!("link `{name}` has no target")))?;
                    let target = path_from_bytes(&target)
                        .ok_or_else(|| self.unsafe_entry(&name, UnsafeReason::InvalidName))?;
                    if header.entry_type() == tar::EntryType::Symlink {
                        EntryKind::Symlink { target }
                    } else {
                        EntryKind::HardLink { target }
                    }
                }
                tar::EntryType::Char => return Err(self.unsafe_special(&name, "character device")),
                tar::EntryType::Block => return Err(self.unsafe_special(&name, "block device")),
                tar::EntryType::Fifo => return Err(self.unsafe_special(&name, "FIFO")),
                // Archive-wide metadata; per-entry pax and GNU long-name headers never reach us.
                tar::EntryType::XGlobalHeader => continue,
                // Skipping an unknown type could silently drop a file the backend needs.
                other => {
                    return Err(self.corrupt(format!(
                        "entry `{name}` has type {other:?}, which bundles do not use"
                    )));
                }
            };
            let size = entry.size();
            self.unpack_entry(&name, kind, size, &mut entry)?;
        }
        Ok(())
    }

    fn unsafe_special(&self, name: &str, kind: &'static str) -> ArchiveError {
        self.unsafe_entry(name, UnsafeReason::SpecialFile { kind })
    }

    /// Unpacks a `.zip`. Its directory is at its end, so it cannot be unpacked in one pass: it is hashed
    /// through the handle it is then unpacked from. Returns the file's SHA256.
    /// A zip's directory is at its end, so it is hashed whole first and compared before anything is
    /// unpacked, then read again through the same handle, which on Windows shares no write access: the
    /// bytes unpacked are still the bytes hashed.
    fn unpack_zip(&mut self, expected_sha256: Option<&str>) -> Result<String, ArchiveError> {
        #[cfg(windows)]
        let opened = {
            use std::os::windows::fs::OpenOptionsExt;
            const FILE_SHARE_READ: u32 = 0x1;
            fs::OpenOptions::new()
                .read(true)
                .share_mode(FILE_SHARE_READ)
                .open(self.archive)
        };
        #[cfg(not(windows))]
        let opened = File::open(self.archive);
        let mut file = opened.map_err(io_error("open", self.archive))?;
        let (sha256, _) = HashingReader::new(&mut file)
            .and_then(HashingReader::finish)
            .map_err(io_error("read", self.archive))?;
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(ArchiveError::ChecksumMismatch {
                archive: self.archive.to_path_buf(),
                expected: expected.to_ascii_lowercase(),
                actual: sha256,
            });
        }
        io::Seek::rewind(&mut file).map_err(io_error("read", self.archive))?;
        let mut zip =
            zip::ZipArchive::new(BufReader::with_capacity(256 * 1024, file)).map_err(|e| self.corrupt(e))?;
        for index in 0..zip.len() {
            let mut file = zip.by_index(index).map_err(|e| self.corrupt(e))?;
            let name = String::from_utf8_lossy(file.name_raw()).into_owned();
            let mode = file.unix_mode();
            const S_IFMT: u32 = 0o170000;
            match mode.map(|m| m & S_IFMT) {
                Some(0o010000) => return Err(self.unsafe_special(&name, "FIFO")),
                Some(0o020000) => return Err(self.unsafe_special(&name, "character device")),
                Some(0o060000) => return Err(self.unsafe_special(&name, "block device")),
                Some(0o140000) => return Err(self.unsafe_special(&name, "socket")),
                _ => {}
            }
            let kind = if file.is_dir() {
                EntryKind::Dir
            } else if file.is_symlink() {
                let mut target = Vec::new();
                (&mut file)
                    .take(MAX_LINK_TARGET_BYTES)
                    .read_to_end(&mut target)
                    .map_err(|e| self.corrupt(e))?;
                let target = path_from_bytes(&target)
                    .ok_or_else(|| self.unsafe_entry(&name, UnsafeReason::InvalidName))?;
                EntryKind::Symlink { target }
            } else {
                EntryKind::File {
                    mode: mode.unwrap_or(0o644),
                }
            };
            let size = file.size();
            self.unpack_entry(&name, kind, size, &mut file)?;
        }
        Ok(sha256)
    }

    /// Checks and writes one entry (links are only recorded, see [`Extractor::create_symlinks`]).
    fn unpack_entry(
        &mut self,
        name: &str,
        kind: EntryKind,
        declared_size: u64,
        data: &mut dyn Read,
    ) -> Result<(), ArchiveError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                archive: self.archive.to_path_buf(),
                limit: self.limits.max_entries,
            });
        }
        let rel = safe_relative_path(name).map_err(|reason| self.unsafe_entry(name, reason))?;
        let Some(first) = rel.components().next() else {
            return Ok(()); // `./` names the destination itself
        };
        self.top_level.insert(first.as_os_str().to_owned());
        let path = self.dest.join(&rel);
        match kind {
            EntryKind::Dir => {
                if path.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                    return Err(self.unsafe_entry(name, UnsafeReason::Conflict));
                }
                fs::create_dir_all(&path).map_err(io_error("create folder", &path))?;
            }
            EntryKind::File { mode } => {
                let remaining = self.limits.max_total_bytes - self.written_bytes;
                if declared_size > remaining {
                    return Err(self.too_large(name));
                }
                let mut file = self.create_file(name, &rel)?;
                let listed_sha256 = self.listed_sha256(&rel, declared_size);
                // Count what is really written: a header's size can lie, a zip's often does in a bomb.
                let mut hasher = listed_sha256.is_none().then(Sha256::new);
                let mut copied: u64 = 0;
                let mut limited = data.take(remaining + 1);
                loop {
                    let n = match limited.read(&mut self.copy_buffer) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(self.corrupt(format!("entry `{name}`: {e}"))),
                    };
                    file.write_all(&self.copy_buffer[..n])
                        .map_err(io_error("write", &path))?;
                    if let Some(hasher) = &mut hasher {
                        hasher.update(&self.copy_buffer[..n]);
                    }
                    copied += n as u64;
                }
                if copied > remaining {
                    return Err(self.too_large(name));
                }
                self.written_bytes += copied;
                set_mode(&file, mode, &path)?;
                crate::fsutil::start_writeback(&file);
                let sha256 = match (hasher, listed_sha256) {
                    (Some(hasher), _) => hex::encode(hasher.finalize()),
                    (None, Some(listed)) if copied == declared_size => {
                        self.from_list.push(rel.clone());
                        listed
                    }
                    // Fewer bytes than the header said: the archive is damaged, and its hash will say so.
                    (None, _) => crate::verify::sha256_file(&path)
                        .map_err(|e| self.corrupt(format!("entry `{name}`: {e}")))?,
                };
                self.files.insert(
                    rel.clone(),
                    FileRecord {
                        size: copied,
                        sha256,
                        mode: unpacked_mode(mode),
                    },
                );
            }
            EntryKind::HardLink { target } => {
                let target_name = target.to_string_lossy().into_owned();
                let bad_target = || UnsafeReason::HardLinkTarget {
                    target: target_name.clone(),
                };
                let target_rel =
                    safe_relative_path(&target_name).map_err(|_| self.unsafe_entry(name, bad_target()))?;
                let target_path = self.dest.join(&target_rel);
                if !target_path.symlink_metadata().is_ok_and(|m| m.is_file()) {
                    return Err(self.unsafe_entry(name, bad_target()));
                }
                self.prepare_parent(name, &rel)?;
                if let Some(record) = self.files.get(&target_rel).cloned() {
                    self.files.insert(rel.clone(), record);
                }
                if fs::hard_link(&target_path, &path).is_err() {
                    // Some file systems (FAT, some network shares) have no hard links: a copy reads the same.
                    let copied = fs::copy(&target_path, &path).map_err(io_error("copy to", &path))?;
                    self.written_bytes += copied;
                    if self.written_bytes > self.limits.max_total_bytes {
                        return Err(self.too_large(name));
                    }
                }
            }
            EntryKind::Symlink { target } => {
                // Refuse now what escapes whatever the bundle root turns out to be (an absolute target, or
                // one above the destination): the same test as the final one in `create_symlinks`, against
                // the widest root, so the early check never refuses a link the final check would keep.
                if !stays_inside_lexically(Path::new(""), &rel, &target) {
                    let reason = UnsafeReason::LinkEscapes {
                        target: target.to_string_lossy().into_owned(),
                    };
                    return Err(self.unsafe_entry(name, reason));
                }
                if cfg!(not(unix)) {
                    return Err(self.unsafe_entry(name, UnsafeReason::LinksUnsupported));
                }
                self.symlinks.push(PendingLink {
                    entry: name.to_owned(),
                    rel,
                    target,
                });
            }
        }
        Ok(())
    }

    /// The listed SHA256 of the file at `rel` (below the archive's top folder), when the list gives it with
    /// this size.
    fn listed_sha256(&self, rel: &Path, size: u64) -> Option<String> {
        let listed = self.listed?;
        let mut parts = rel.components();
        parts.next()?;
        let inside = parts.as_path().to_str()?.replace('\\', "/");
        listed
            .get(&inside)
            .filter(|(listed_size, _)| *listed_size == size)
            .map(|(_, sha256)| sha256.clone())
    }

    fn too_large(&self, entry: &str) -> ArchiveError {
        ArchiveError::TooLarge {
            archive: self.archive.to_path_buf(),
            entry: entry.to_owned(),
            limit: self.limits.max_total_bytes,
        }
    }

    /// Creates the folders above `rel`; no links exist yet while files are written, so this cannot leave dest.
    fn prepare_parent(&self, name: &str, rel: &Path) -> Result<(), ArchiveError> {
        let path = self.dest.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists || e.kind() == io::ErrorKind::NotADirectory {
                    self.unsafe_entry(name, UnsafeReason::Conflict)
                } else {
                    io_error("create folder", parent)(e)
                }
            })?;
        }
        match path.symlink_metadata() {
            Ok(meta) if meta.is_dir() => Err(self.unsafe_entry(name, UnsafeReason::Conflict)),
            // A later entry with the same name replaces the earlier one, as `tar` does.
            Ok(_) => fs::remove_file(&path).map_err(io_error("replace", &path)),
            Err(_) => Ok(()),
        }
    }

    fn create_file(&self, name: &str, rel: &Path) -> Result<File, ArchiveError> {
        self.prepare_parent(name, rel)?;
        let path = self.dest.join(rel);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error("create", &path))
    }

    /// Creates the recorded links, then checks that each one, followed through the others, stays inside
    /// `root` (the bundle root, relative to the destination: the folder that becomes `versions/<v>/`).
    fn create_symlinks(&self, root: &Path) -> Result<(), ArchiveError> {
        let escapes = |link: &PendingLink| {
            self.unsafe_entry(
                &link.entry,
                UnsafeReason::LinkEscapes {
                    target: link.target.to_string_lossy().into_owned(),
                },
            )
        };
        // By name first, before any link exists, so an obvious escape is reported without touching disk.
        if let Some(link) = self
            .symlinks
            .iter()
            .find(|link| !stays_inside_lexically(root, &link.rel, &link.target))
        {
            return Err(escapes(link));
        }
        for link in &self.symlinks {
            let path = self.dest.join(&link.rel);
            if self.passes_through_link(&link.rel) {
                return Err(self.unsafe_entry(&link.entry, UnsafeReason::InsideLink));
            }
            if path.symlink_metadata().is_ok() {
                return Err(self.unsafe_entry(&link.entry, UnsafeReason::Conflict));
            }
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io_error("create folder", parent))?;
            }
            make_symlink(&link.target, &path)?;
        }
        if let Some(link) = self
            .symlinks
            .iter()
            .find(|link| !resolves_inside(self.dest, root, &link.rel))
        {
            return Err(escapes(link));
        }
        Ok(())
    }

    fn passes_through_link(&self, rel: &Path) -> bool {
        passes_through_link(self.dest, rel)
    }

    /// The bundle root relative to the destination: the single top folder when the archive holds exactly
    /// one, else empty (the destination itself). Called before the links are made: a top folder that holds
    /// only links does not exist yet but will be a folder; a top-level link is never a root.
    fn bundle_root_rel(&self) -> PathBuf {
        if let [only] = self.top_level.iter().collect::<Vec<_>>()[..] {
            let is_folder = self.dest.join(only).symlink_metadata().is_ok_and(|m| m.is_dir())
                || self.symlinks.iter().any(|link| link.rel.components().count() > 1);
            if is_folder {
                return PathBuf::from(only);
            }
        }
        PathBuf::new()
    }
}

#[cfg(unix)]
fn make_symlink(target: &Path, path: &Path) -> Result<(), ArchiveError> {
    std::os::unix::fs::symlink(target, path).map_err(io_error("create the link", path))
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, path: &Path) -> Result<(), ArchiveError> {
    Err(ArchiveError::Io {
        action: "create the link",
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::Unsupported,
            "symbolic links are not unpacked on this platform",
        ),
    })
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32, path: &Path) -> Result<(), ArchiveError> {
    use std::os::unix::fs::PermissionsExt;
    // Keep read/execute bits, never set-uid/set-gid/sticky or write for others; the owner can always write,
    // so a later cleanup can remove the file.
    let mode = unpacked_mode(mode);
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_error("set permissions of", path))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32, _path: &Path) -> Result<(), ArchiveError> {
    Ok(())
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    (!bytes.contains(&0)).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> Option<PathBuf> {
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.contains('\0')).then(|| PathBuf::from(text))
}

/// The entry name as a path below the destination, or why it is not one.
fn safe_relative_path(name: &str) -> Result<PathBuf, UnsafeReason> {
    if name.contains(['\0', '\\']) || (cfg!(windows) && name.contains(':')) {
        return Err(UnsafeReason::InvalidName);
    }
    let mut rel = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Err(UnsafeReason::AbsolutePath),
            Component::ParentDir => return Err(UnsafeReason::ParentComponent),
            Component::CurDir => {}
            Component::Normal(part) => rel.push(part),
        }
    }
    Ok(rel)
}

/// Whether the link at `link` (relative to the destination) with `target` names, by its components alone,
/// a place inside `root` (relative to the destination; empty for the destination itself). `..` may never
/// climb above `root`, not even to come back down into it, and an absolute target is never inside.
fn stays_inside_lexically(root: &Path, link: &Path, target: &Path) -> bool {
    let Some(parent) = link.parent().filter(|p| p.starts_with(root)) else {
        return false;
    };
    let floor = root.components().count();
    let mut depth = parent.components().count();
    for component in target.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return false,
            Component::ParentDir => {
                if depth <= floor {
                    return false;
                }
                depth -= 1;
            }
            Component::CurDir => {}
            Component::Normal(_) => depth += 1,
        }
    }
    true
}

/// Whether a folder on the way from `dest` to `rel` (not `rel` itself) is a symbolic link: writing `rel`
/// would then land wherever that link points.
pub(crate) fn passes_through_link(dest: &Path, rel: &Path) -> bool {
    let mut here = dest.to_path_buf();
    let Some(parent) = rel.parent() else { return false };
    parent.components().any(|c| {
        here.push(c);
        here.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
    })
}

/// Whether the link at `rel` (below `dest`) resolves inside `root` (relative to `dest`, empty for `dest`
/// itself), following links found on the way as the operating system would. As in
/// [`stays_inside_lexically`], no step may climb above `root`. Parts that do not exist (a dangling link)
/// are resolved by name.
pub(crate) fn resolves_inside(dest: &Path, root: &Path, rel: &Path) -> bool {
    let Some(parent) = rel.parent().filter(|p| p.starts_with(root)) else {
        return false;
    };
    let Ok(first_target) = fs::read_link(dest.join(rel)) else {
        return false;
    };
    let floor = root.components().count();
    let mut resolved: Vec<OsString> = parent.components().map(|c| c.as_os_str().to_owned()).collect();
    let mut pending: VecDeque<OsString> = first_target
        .components()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match Path::new(&part).components().next() {
            None | Some(Component::CurDir) => {}
            Some(Component::Prefix(_) | Component::RootDir) => return false,
            Some(Component::ParentDir) => {
                if resolved.len() <= floor {
                    return false;
                }
                resolved.pop();
            }
            Some(Component::Normal(name)) => {
                resolved.push(name.to_owned());
                let here: PathBuf = std::iter::once(dest.as_os_str())
                    .chain(resolved.iter().map(|p| p.as_os_str()))
                    .collect();
                if here.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return false;
                    }
                    let Ok(next) = fs::read_link(&here) else {
                        return false;
                    };
                    resolved.pop();
                    for component in next.components().rev() {
                        pending.push_front(component.as_os_str().to_owned());
                    }
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_kind_is_read_from_the_suffix_in_any_case() {
        assert_eq!(
            ArchiveKind::from_file_name("a-1.0.TAR.GZ"),
            Some(ArchiveKind::TarGz)
        );
        assert_eq!(ArchiveKind::from_file_name("a.tgz"), Some(ArchiveKind::TarGz));
        assert_eq!(ArchiveKind::from_file_name("a.zip"), Some(ArchiveKind::Zip));
        assert_eq!(ArchiveKind::from_file_name("a.tar.xz"), None);
    }

    #[test]
    fn entry_names_that_leave_the_folder_are_refused() {
        assert_eq!(safe_relative_path("/etc/passwd"), Err(UnsafeReason::AbsolutePath));
        assert_eq!(
            safe_relative_path("a/../../evil"),
            Err(UnsafeReason::ParentComponent)
        );
        assert_eq!(safe_relative_path("a\\..\\evil"), Err(UnsafeReason::InvalidName));
        assert_eq!(safe_relative_path("./a/./b"), Ok(PathBuf::from("a/b")));
    }

    #[test]
    fn a_link_target_may_not_climb_above_the_root_by_name() {
        let inside = |root: &str, link: &str, target: &str| {
            stays_inside_lexically(Path::new(root), Path::new(link), Path::new(target))
        };
        assert!(inside("", "a/b/l", "../c"));
        assert!(
            inside("", "a/l", ".."),
            "the destination itself, when it is the root"
        );
        assert!(!inside("", "a/l", "../../c"));
        assert!(!inside("", "a/l", "/c"));
        assert!(inside("Root", "Root/backend/l", "../agent.json"));
        assert!(inside("Root", "Root/l", "."));
        assert!(
            !inside("Root", "Root/l", ".."),
            "the root's parent is `versions/`"
        );
        assert!(!inside("Root", "Root/l", "../1.0.0/backend/x"));
        assert!(
            !inside("Root", "Root/l", "../Root/x"),
            "out and back in only works while the root keeps its name"
        );
        assert!(!inside("Root", "Other/l", "x"), "a link outside the root");
    }

    #[test]
    fn bundle_root_name_joins_product_platform_and_version() {
        let platform =
            crate::platform::Platform::new(crate::platform::Os::Linux, crate::platform::Arch::X86_64);
        let version = semver::Version::new(1, 2, 0);
        assert_eq!(
            bundle_root_name(&version, &platform),
            "PersonalAIAgent-linux-x86_64-1.2.0"
        );
    }
}
