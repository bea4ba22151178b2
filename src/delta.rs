//! Delta updates: what turns an installed version's bundle into the next one's, carrying only what changed.
//!
//! `release pack --delta-from` writes one delta per platform beside the full archive
//! (`PersonalAIAgent-<os>-<arch>-<version>.from-<base>.delta`), and the signed manifest lists it under the
//! archive's entry (`deltas`: base version, size, SHA256) together with the target bundle's full file list
//! (`files`: path, size, mode, SHA256; links and folders). The format is documented in
//! `docs/RELEASE-FORMAT.md`. A delta is an uncompressed tar whose entries are each compressed:
//!
//! | entry | what |
//! |---|---|
//! | `delta.json` | first: product, base and target versions, platform, and the paths patched, added and removed |
//! | `patch/<path>` | a changed file: zstd frames, each rebuilding one 8 MiB segment of the new file against a window of the old one as a referenced prefix (`zstd --patch-from`) |
//! | `file/<path>` | a new file, or one whose old version cannot serve as a base: one zstd stream |
//!
//! Files that did not change are not carried: the updater copies them from the installed base. Applying
//! ([`apply_delta`]) builds the whole new bundle in an empty folder from the installed base plus the delta
//! and checks every file it writes (size and SHA256) against the signed list, and every base file it reads
//! against what was recorded when the base was installed. Anything missing, extra or different is an
//! error, and the updater then falls back to the full archive. Memory stays bounded: a patch segment needs
//! at most 16 MiB of the old file and 8 MiB of output at once.
//!
//! Models are never part of a delta: the bundle's `models/` folder is left out of the file list, and a
//! bundle that carries models gets no delta (they belong in the hash-addressed models folder).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::archive::FileRecord;
use crate::hashing::HashingReader;
use crate::platform::Platform;
use crate::verify::ManifestFile;

/// The suffix of a delta file's name.
pub const DELTA_SUFFIX: &str = ".delta";
/// The schema of `delta.json` this launcher writes and reads.
const DELTA_SCHEMA: u32 = 1;
const HEADER_ENTRY: &str = "delta.json";
const PATCH_PREFIX: &str = "patch/";
const WHOLE_PREFIX: &str = "file/";
/// A changed file is rebuilt in segments of this size.
const SEGMENT: u64 = 8 << 20;
/// Each segment is diffed against the old file's bytes from this far before to this far after it.
const MARGIN: u64 = 4 << 20;
/// An old file up to this size serves whole as every segment's prefix (a shift of any size is found).
const WHOLE_BASE_LIMIT: u64 = SEGMENT + 2 * MARGIN;
/// 2^25 = 32 MiB covers a prefix (at most 16 MiB) and a segment (8 MiB).
const PATCH_WINDOW_LOG: u32 = 25;
const PATCH_LEVEL: i32 = 19;
const WHOLE_LEVEL: i32 = 12;
const COPY_BUFFER: usize = 1 << 20;
/// The largest window a `file/` entry may ask of the decoder: zstd's level 12 uses at most 2^23, so a
/// delta that asks more is not one `release pack` wrote (and would cost memory for nothing).
const WHOLE_WINDOW_LOG_MAX: u32 = 24;
/// The most bytes of `delta.json` written or read (some 250,000 changed paths).
const HEADER_LIMIT: u64 = 16 << 20;

/// The name of the delta from `base` to `version` for `platform`.
pub fn delta_file_name(version: &semver::Version, platform: &Platform, base: &semver::Version) -> String {
    format!(
        "{}.from-{base}{DELTA_SUFFIX}",
        crate::archive::bundle_root_name(version, platform)
    )
}

/// Why a delta could not be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("the delta {} is damaged ({reason}); the full archive is used instead", delta.display())]
    Corrupt { delta: PathBuf, reason: String },

    #[error(
        "the delta {} turns {found}, but {wanted} was wanted; the full archive is used instead",
        delta.display()
    )]
    WrongVersions {
        delta: PathBuf,
        /// `<base> → <target>`, as the release wants it.
        wanted: String,
        /// `<base> into <target>`, as the delta says.
        found: String,
    },

    #[error(
        "the installed file {} is not the one version {base} was installed with ({reason}), so a delta cannot be applied to it; the full archive is used instead",
        path.display()
    )]
    BaseChanged {
        path: PathBuf,
        base: semver::Version,
        reason: String,
    },

    #[error(
        "`{path}` rebuilt from the delta {} does not match the release's file list ({reason}); nothing was installed from it",
        delta.display()
    )]
    Mismatch {
        delta: PathBuf,
        path: String,
        reason: String,
    },

    #[error("cannot make a delta for {}: {reason}", path.display())]
    CannotMake { path: PathBuf, reason: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DeltaError + 'a {
    move |source| DeltaError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// `delta.json`, the first entry of a delta.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeltaHeader {
    schema: u32,
    product: String,
    base: semver::Version,
    target: semver::Version,
    platform: Platform,
    patched: Vec<String>,
    added: Vec<String>,
    removed: Vec<String>,
}

/// What [`create_delta`] wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeltaStats {
    pub base: String,
    pub unchanged: usize,
    pub patched: usize,
    pub added: usize,
    pub removed: usize,
    /// The delta file's size in bytes.
    pub size: u64,
}

// ---------------------------------------------------------------------------------------------------------
// The file list

/// Lists a bundle folder as the manifest's `files` does: every folder, file (size, unpacked mode, SHA256)
/// and link, sorted by path; the top-level `models/` left out.
pub fn list_tree(root: &Path) -> Result<Vec<ManifestFile>, DeltaError> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<ManifestFile>) -> Result<(), DeltaError> {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let mut names: Vec<String> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|name| DeltaError::CannotMake {
                    path: dir.join(name),
                    reason: "its name is not valid UTF-8; rename it".into(),
                })?;
            names.push(name);
        }
        names.sort();
        for name in names {
            if rel.is_empty() && name == crate::models::BUNDLED_MODELS_DIR {
                continue;
            }
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let path = root.join(&child_rel);
            let meta = fs::symlink_metadata(&path).map_err(io_err("read", &path))?;
            let mut file = ManifestFile {
                path: child_rel.clone(),
                size: 0,
                mode: 0,
                sha256: None,
                link: None,
                dir: false,
            };
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).map_err(io_err("read the link", &path))?;
                file.link = Some(target.to_string_lossy().replace('\\', "/"));
                out.push(file);
            } else if meta.is_dir() {
                file.dir = true;
                out.push(file);
                walk(root, &child_rel, out)?;
            } else if meta.is_file() {
                file.size = meta.len();
                file.mode = crate::archive::unpacked_mode(crate::archive::pack_mode(&meta, &path));
                file.sha256 =
                    Some(
                        crate::verify::sha256_file(&path).map_err(|e| DeltaError::CannotMake {
                            path: path.clone(),
                            reason: e.to_string(),
                        })?,
                    );
                out.push(file);
            } else {
                return Err(DeltaError::CannotMake {
                    path,
                    reason: "it is a device, FIFO or socket".into(),
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, "", &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// Making a delta

/// Writes the delta that turns the bundle at `base_root` (version `base`) into the one at `target_root`
/// (version `target`, listed as `target_files` by [`list_tree`]) into `out_file`, atomically.
pub fn create_delta(
    base_root: &Path,
    base: &semver::Version,
    target_root: &Path,
    target_files: &[ManifestFile],
    target: &semver::Version,
    platform: &Platform,
    out_file: &Path,
) -> Result<DeltaStats, DeltaError> {
    if target_root.join(crate::models::BUNDLED_MODELS_DIR).exists() {
        return Err(DeltaError::CannotMake {
            path: target_root.to_path_buf(),
            reason: "the bundle carries models/, which deltas never hold; publish models through the models manifest".into(),
        });
    }
    let base_files: BTreeMap<String, ManifestFile> = list_tree(base_root)?
        .into_iter()
        .map(|f| (f.path.clone(), f))
        .collect();
    let target_paths: BTreeSet<&str> = target_files.iter().map(|f| f.path.as_str()).collect();
    let mut header = DeltaHeader {
        schema: DELTA_SCHEMA,
        product: crate::verify::MANIFEST_PRODUCT.to_owned(),
        base: base.clone(),
        target: target.clone(),
        platform: *platform,
        patched: Vec::new(),
        added: Vec::new(),
        removed: base_files
            .values()
            .filter(|f| f.sha256.is_some() && !target_paths.contains(f.path.as_str()))
            .map(|f| f.path.clone())
            .collect(),
    };
    let mut unchanged = 0;
    for file in target_files.iter().filter(|f| f.sha256.is_some()) {
        match base_files.get(&file.path) {
            Some(old) if old.sha256 == file.sha256 => unchanged += 1,
            // An empty new file, or one whose old self is empty, gains nothing from a patch.
            Some(old) if old.sha256.is_some() && old.size > 0 && file.size > 0 => {
                header.patched.push(file.path.clone())
            }
            _ => header.added.push(file.path.clone()),
        }
    }

    let out_dir = out_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(out_dir).map_err(io_err("create folder", out_dir))?;
    let temp = tempfile::Builder::new()
        .prefix(".delta-")
        .tempfile_in(out_dir)
        .map_err(io_err("create a temporary file in", out_dir))?;
    let mut builder = tar::Builder::new(BufWriter::new(temp.as_file()));
    let header_bytes = serde_json::to_vec(&header).unwrap_or_default();
    if header_bytes.len() as u64 > HEADER_LIMIT {
        return Err(DeltaError::CannotMake {
            path: target_root.to_path_buf(),
            reason: format!(
                "{} paths changed, more than a delta's {HEADER_ENTRY} may list; the full archive serves",
                header.patched.len() + header.added.len() + header.removed.len()
            ),
        });
    }
    append(
        &mut builder,
        HEADER_ENTRY,
        &mut &header_bytes[..],
        header_bytes.len() as u64,
        temp.path(),
    )?;
    let mut scratch =
        tempfile::tempfile_in(out_dir).map_err(io_err("create a temporary file in", out_dir))?;
    for path in &header.patched {
        scratch.set_len(0).map_err(io_err("write", temp.path()))?;
        scratch.rewind().map_err(io_err("write", temp.path()))?;
        write_patch(&base_root.join(path), &target_root.join(path), &mut scratch)?;
        append_scratch(
            &mut builder,
            &format!("{PATCH_PREFIX}{path}"),
            &mut scratch,
            temp.path(),
        )?;
    }
    for path in &header.added {
        scratch.set_len(0).map_err(io_err("write", temp.path()))?;
        scratch.rewind().map_err(io_err("write", temp.path()))?;
        let source = target_root.join(path);
        let mut input = File::open(&source).map_err(io_err("read", &source))?;
        let mut encoder = zstd::stream::write::Encoder::new(&mut scratch, WHOLE_LEVEL)
            .map_err(io_err("compress", &source))?;
        io::copy(&mut input, &mut encoder).map_err(io_err("compress", &source))?;
        encoder.finish().map_err(io_err("compress", &source))?;
        append_scratch(
            &mut builder,
            &format!("{WHOLE_PREFIX}{path}"),
            &mut scratch,
            temp.path(),
        )?;
    }
    let writer = builder.into_inner().map_err(io_err("write", temp.path()))?;
    writer
        .into_inner()
        .map_err(|e| io_err("write", temp.path())(e.into_error()))?;
    temp.as_file().sync_all().map_err(io_err("flush", temp.path()))?;
    let size = temp
        .as_file()
        .metadata()
        .map_err(io_err("read", temp.path()))?
        .len();
    temp.persist(out_file)
        .map_err(|e| io_err("replace", out_file)(e.error))?;
    crate::fsutil::sync_dir(out_dir);
    Ok(DeltaStats {
        base: base.to_string(),
        unchanged,
        patched: header.patched.len(),
        added: header.added.len(),
        removed: header.removed.len(),
        size,
    })
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    data: &mut dyn Read,
    size: u64,
    out: &Path,
) -> Result<(), DeltaError> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(tar::DETERMINISTIC_TIMESTAMP);
    builder
        .append_data(&mut header, name, data)
        .map_err(io_err("write", out))
}

fn append_scratch<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    scratch: &mut File,
    out: &Path,
) -> Result<(), DeltaError> {
    let size = scratch.stream_position().map_err(io_err("write", out))?;
    scratch.rewind().map_err(io_err("write", out))?;
    append(builder, name, scratch, size, out)
}

/// The range of the old file that serves as the prefix of segment `index` of the new one.
fn prefix_range(base_len: u64, index: u64) -> (u64, u64) {
    if base_len <= WHOLE_BASE_LIMIT {
        return (0, base_len);
    }
    let start = (index * SEGMENT).saturating_sub(MARGIN).min(base_len);
    let end = (index * SEGMENT + SEGMENT + MARGIN).min(base_len);
    (start, end)
}

fn read_range(file: &mut File, path: &Path, (start, end): (u64, u64)) -> Result<Vec<u8>, DeltaError> {
    let mut bytes = vec![0; (end - start) as usize];
    file.seek(SeekFrom::Start(start)).map_err(io_err("read", path))?;
    file.read_exact(&mut bytes).map_err(io_err("read", path))?;
    Ok(bytes)
}

/// Writes `new` as a patch against `old`: per segment, a little-endian u32 length and one zstd frame.
fn write_patch(old: &Path, new: &Path, out: &mut File) -> Result<(), DeltaError> {
    let mut old_file = File::open(old).map_err(io_err("read", old))?;
    let old_len = old_file.metadata().map_err(io_err("read", old))?.len();
    let mut new_file = File::open(new).map_err(io_err("read", new))?;
    let new_len = new_file.metadata().map_err(io_err("read", new))?.len();
    let whole = if old_len <= WHOLE_BASE_LIMIT {
        Some(read_range(&mut old_file, old, (0, old_len))?)
    } else {
        None
    };
    let mut segment = Vec::with_capacity(SEGMENT as usize);
    for index in 0..new_len.div_ceil(SEGMENT) {
        let windowed;
        let prefix: &[u8] = match &whole {
            Some(whole) => whole,
            None => {
                windowed = read_range(&mut old_file, old, prefix_range(old_len, index))?;
                &windowed
            }
        };
        segment.clear();
        (&mut new_file)
            .take(SEGMENT)
            .read_to_end(&mut segment)
            .map_err(io_err("read", new))?;
        let mut encoder = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), PATCH_LEVEL, prefix)
            .map_err(io_err("compress", new))?;
        let setup = |e: &mut zstd::stream::write::Encoder<'_, Vec<u8>>| -> io::Result<()> {
            e.window_log(PATCH_WINDOW_LOG)?;
            e.long_distance_matching(true)?;
            e.include_contentsize(true)?;
            e.set_pledged_src_size(Some(segment.len() as u64))
        };
        setup(&mut encoder).map_err(io_err("compress", new))?;
        encoder.write_all(&segment).map_err(io_err("compress", new))?;
        let frame = encoder.finish().map_err(io_err("compress", new))?;
        out.write_all(&(frame.len() as u32).to_le_bytes())
            .and_then(|()| out.write_all(&frame))
            .map_err(io_err("write", new))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Applying a delta

/// What [`apply_delta`] works from.
#[derive(Clone, Copy, Debug)]
pub struct ApplyDelta<'a> {
    /// The delta file, downloaded; its SHA256 is checked again as it is read.
    pub delta: &'a Path,
    pub delta_sha256: &'a str,
    pub base: &'a semver::Version,
    pub target: &'a semver::Version,
    /// The installed base version's folder.
    pub base_root: &'a Path,
    /// What the base's files were when it was installed (path → size, SHA256).
    pub base_files: &'a BTreeMap<String, (u64, String)>,
    /// The file list of the target bundle.
    pub target_files: &'a [ManifestFile],
}

/// Builds the target bundle in the empty folder `out_root` from the installed base and the delta, checking
/// every file written against the signed list and every base file read against its record. Returns what
/// was written, as an archive's extraction reports it.
pub fn apply_delta(
    job: &ApplyDelta<'_>,
    out_root: &Path,
) -> Result<BTreeMap<String, FileRecord>, DeltaError> {
    let delta = job.delta;
    let corrupt = |reason: String| DeltaError::Corrupt {
        delta: delta.to_path_buf(),
        reason,
    };
    let mismatch = |path: &str, reason: String| DeltaError::Mismatch {
        delta: delta.to_path_buf(),
        path: path.to_owned(),
        reason,
    };
    let listed: BTreeMap<&str, &ManifestFile> =
        job.target_files.iter().map(|f| (f.path.as_str(), f)).collect();
    if listed.is_empty() {
        return Err(corrupt("the release lists no files for it".into()));
    }
    for file in job.target_files {
        if file.dir {
            let dir = out_root.join(&file.path);
            fs::create_dir_all(&dir).map_err(io_err("create folder", &dir))?;
        }
    }
    let mut written: BTreeMap<String, FileRecord> = BTreeMap::new();
    let mut buffer = vec![0; COPY_BUFFER];

    let file = File::open(delta).map_err(io_err("open", delta))?;
    let mut hashing = HashingReader::new(file).map_err(io_err("read", delta))?;
    {
        let mut archive = tar::Archive::new(BufReader::with_capacity(256 * 1024, &mut hashing));
        let mut header: Option<DeltaHeader> = None;
        for entry in archive.entries().map_err(|e| corrupt(e.to_string()))? {
            let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
            let name = String::from_utf8(entry.path_bytes().into_owned())
                .map_err(|_| corrupt("an entry name is not UTF-8".into()))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(corrupt(format!("entry `{name}` is not a plain file")));
            }
            if header.is_none() {
                if name != HEADER_ENTRY {
                    return Err(corrupt(format!("it starts with `{name}`, not {HEADER_ENTRY}")));
                }
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(HEADER_LIMIT + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| corrupt(e.to_string()))?;
                let parsed: DeltaHeader = serde_json::from_slice(&bytes)
                    .map_err(|e| corrupt(format!("{HEADER_ENTRY} is not valid: {e}")))?;
                if parsed.schema != DELTA_SCHEMA || parsed.product != crate::verify::MANIFEST_PRODUCT {
                    return Err(corrupt(format!(
                        "it is schema {} of `{}`, which this launcher does not read",
                        parsed.schema, parsed.product
                    )));
                }
                if &parsed.base != job.base || &parsed.target != job.target {
                    return Err(DeltaError::WrongVersions {
                        delta: delta.to_path_buf(),
                        wanted: format!("{} → {}", job.base, job.target),
                        found: format!("{} into {}", parsed.base, parsed.target),
                    });
                }
                header = Some(parsed);
                continue;
            }
            let (patch, path) = if let Some(path) = name.strip_prefix(PATCH_PREFIX) {
                (true, path)
            } else if let Some(path) = name.strip_prefix(WHOLE_PREFIX) {
                (false, path)
            } else {
                return Err(corrupt(format!("entry `{name}` is neither a patch nor a file")));
            };
            let Some(target) = listed.get(path).filter(|f| f.sha256.is_some()) else {
                return Err(mismatch(path, "it is not a file the release lists".into()));
            };
            if written.contains_key(path) {
                return Err(mismatch(path, "the delta carries it twice".into()));
            }
            let out = out_root.join(path);
            let mut output = create_output(&out)?;
            let (size, sha256) = if patch {
                let base_path = job.base_root.join(path);
                let base_record = job.base_files.get(path).ok_or_else(|| DeltaError::BaseChanged {
                    path: base_path.clone(),
                    base: job.base.clone(),
                    reason: "it was not part of the installed version".into(),
                })?;
                if crate::archive::passes_through_link(job.base_root, Path::new(path)) {
                    return Err(DeltaError::BaseChanged {
                        path: base_path,
                        base: job.base.clone(),
                        reason: "a folder on its way is now a link".into(),
                    });
                }
                apply_patch(
                    job,
                    &base_path,
                    base_record,
                    &mut entry,
                    target.size,
                    &mut output,
                    &out,
                )
                .map_err(|e| match e {
                    PatchError::Delta(e) => e,
                    PatchError::Stream(reason) => corrupt(format!("the patch of `{path}`: {reason}")),
                })?
            } else {
                let mut decoder = zstd::stream::read::Decoder::new(&mut entry)
                    .map_err(|e| corrupt(format!("`{path}`: {e}")))?;
                decoder
                    .window_log_max(WHOLE_WINDOW_LOG_MAX)
                    .map_err(|e| corrupt(format!("`{path}`: {e}")))?;
                copy_hashed(&mut decoder.take(target.size + 1), &mut output, &out, &mut buffer).map_err(
                    |e| match e {
                        CopyError::Read(e) => corrupt(format!("`{path}`: {e}")),
                        CopyError::Write(e) => e,
                    },
                )?
            };
            finish_output(&output, &out, target.mode)?;
            check_listed(target, size, &sha256).map_err(|reason| mismatch(path, reason))?;
            written.insert(path.to_owned(), record(target, size, sha256));
        }
        if header.is_none() {
            return Err(corrupt(format!("it has no {HEADER_ENTRY}")));
        }
    }
    let (sha256, _) = hashing.finish().map_err(io_err("read", delta))?;
    if !sha256.eq_ignore_ascii_case(job.delta_sha256) {
        return Err(corrupt(format!(
            "its SHA256 is {sha256}, not the {} its release vouches for",
            job.delta_sha256
        )));
    }

    // Whatever the delta did not carry is the base's own file, unchanged: copied and checked.
    for target in job.target_files.iter().filter(|f| f.sha256.is_some()) {
        if written.contains_key(&target.path) {
            continue;
        }
        let base_path = job.base_root.join(&target.path);
        let base_changed = |reason: String| DeltaError::BaseChanged {
            path: base_path.clone(),
            base: job.base.clone(),
            reason,
        };
        if crate::archive::passes_through_link(job.base_root, Path::new(&target.path)) {
            return Err(base_changed("a folder on its way is now a link".into()));
        }
        let meta = fs::symlink_metadata(&base_path).map_err(|e| base_changed(e.to_string()))?;
        if !meta.is_file() {
            return Err(base_changed("it is not a regular file".into()));
        }
        let mut input = File::open(&base_path).map_err(|e| base_changed(e.to_string()))?;
        let out = out_root.join(&target.path);
        let mut output = create_output(&out)?;
        let (size, sha256) = copy_hashed(
            &mut (&mut input).take(target.size + 1),
            &mut output,
            &out,
            &mut buffer,
        )
        .map_err(|e| match e {
            CopyError::Read(e) => base_changed(e.to_string()),
            CopyError::Write(e) => e,
        })?;
        finish_output(&output, &out, target.mode)?;
        check_listed(target, size, &sha256)
            .map_err(|reason| base_changed(format!("it no longer matches ({reason})")))?;
        written.insert(target.path.clone(), record(target, size, sha256));
    }
    let links: Vec<&ManifestFile> = job.target_files.iter().filter(|f| f.link.is_some()).collect();
    for target in &links {
        if crate::archive::passes_through_link(out_root, Path::new(&target.path)) {
            return Err(mismatch(
                &target.path,
                "it would be made through another link".into(),
            ));
        }
        make_link(out_root, target)?;
    }
    // The list was checked link by link when the manifest was read; followed as the system follows them,
    // all together, they must still stay inside the bundle.
    if let Some(target) = links
        .iter()
        .find(|t| !crate::archive::resolves_inside(out_root, Path::new(""), Path::new(&t.path)))
    {
        return Err(mismatch(
            &target.path,
            "it is a link that leads outside the bundle".into(),
        ));
    }
    Ok(written)
}

fn record(target: &ManifestFile, size: u64, sha256: String) -> FileRecord {
    FileRecord {
        size,
        sha256,
        mode: target.mode,
    }
}

fn check_listed(target: &ManifestFile, size: u64, sha256: &str) -> Result<(), String> {
    if size != target.size {
        return Err(format!("{size} bytes, not {}", target.size));
    }
    if Some(sha256) != target.sha256.as_deref() {
        return Err(format!(
            "SHA256 {sha256}, not {}",
            target.sha256.as_deref().unwrap_or_default()
        ));
    }
    Ok(())
}

fn create_output(path: &Path) -> Result<File, DeltaError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err("create folder", parent))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("create", path))
}

fn finish_output(file: &File, path: &Path, mode: u32) -> Result<(), DeltaError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(crate::archive::unpacked_mode(mode)))
            .map_err(io_err("set permissions of", path))?;
    }
    #[cfg(not(unix))]
    let _ = (mode, path);
    crate::fsutil::start_writeback(file);
    Ok(())
}

#[cfg(unix)]
fn make_link(out_root: &Path, target: &ManifestFile) -> Result<(), DeltaError> {
    let path = out_root.join(&target.path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err("create folder", parent))?;
    }
    // The list was validated when the manifest was parsed, and `apply_delta` checks all links together.
    std::os::unix::fs::symlink(target.link.as_deref().unwrap_or_default(), &path)
        .map_err(io_err("create the link", &path))
}

#[cfg(not(unix))]
fn make_link(out_root: &Path, _target: &ManifestFile) -> Result<(), DeltaError> {
    Err(DeltaError::CannotMake {
        path: out_root.to_path_buf(),
        reason: "the bundle has a symbolic link, which this platform does not create".into(),
    })
}

enum CopyError {
    Read(io::Error),
    Write(DeltaError),
}

/// Copies `input` to `output` through `buffer`, hashing; returns the size and lowercase hex SHA256.
fn copy_hashed(
    input: &mut dyn Read,
    output: &mut File,
    out: &Path,
    buffer: &mut [u8],
) -> Result<(u64, String), CopyError> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = match input.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        output
            .write_all(&buffer[..n])
            .map_err(|e| CopyError::Write(io_err("write", out)(e)))?;
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

enum PatchError {
    Delta(DeltaError),
    Stream(String),
}

/// Rebuilds one patched file into `output`; the base file must match its record.
fn apply_patch(
    job: &ApplyDelta<'_>,
    base_path: &Path,
    (base_size, base_sha256): &(u64, String),
    patch: &mut dyn Read,
    target_size: u64,
    output: &mut File,
    out: &Path,
) -> Result<(u64, String), PatchError> {
    let base_changed = |reason: String| {
        PatchError::Delta(DeltaError::BaseChanged {
            path: base_path.to_path_buf(),
            base: job.base.clone(),
            reason,
        })
    };
    let meta = fs::symlink_metadata(base_path).map_err(|e| base_changed(e.to_string()))?;
    if !meta.is_file() || meta.len() != *base_size {
        return Err(base_changed(format!(
            "{} bytes, not the {base_size} recorded",
            meta.len()
        )));
    }
    let mut base = File::open(base_path).map_err(|e| base_changed(e.to_string()))?;
    // The whole base is hashed before any of it is used, so a changed base is never patched.
    let actual = crate::verify::sha256_file(base_path).map_err(|e| base_changed(e.to_string()))?;
    if actual != *base_sha256 {
        return Err(base_changed(format!(
            "SHA256 {actual}, not the {base_sha256} recorded"
        )));
    }
    let whole = if *base_size <= WHOLE_BASE_LIMIT {
        Some(read_range(&mut base, base_path, (0, *base_size)).map_err(PatchError::Delta)?)
    } else {
        None
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut segment = Vec::with_capacity(SEGMENT as usize);
    for index in 0..target_size.div_ceil(SEGMENT) {
        let mut len = [0u8; 4];
        patch
            .read_exact(&mut len)
            .map_err(|e| PatchError::Stream(format!("segment {index}: {e}")))?;
        let frame_len = u64::from(u32::from_le_bytes(len));
        let windowed;
        let prefix: &[u8] = match &whole {
            Some(whole) => whole,
            None => {
                windowed = read_range(&mut base, base_path, prefix_range(*base_size, index))
                    .map_err(PatchError::Delta)?;
                &windowed
            }
        };
        let frame = BufReader::new(patch.take(frame_len));
        let mut decoder = zstd::stream::read::Decoder::with_ref_prefix(frame, prefix)
            .map_err(|e| PatchError::Stream(e.to_string()))?;
        decoder
            .window_log_max(PATCH_WINDOW_LOG)
            .map_err(|e| PatchError::Stream(e.to_string()))?;
        segment.clear();
        decoder
            .take(SEGMENT + 1)
            .read_to_end(&mut segment)
            .map_err(|e| PatchError::Stream(format!("segment {index}: {e}")))?;
        let expected = (target_size - index * SEGMENT).min(SEGMENT);
        if segment.len() as u64 != expected {
            return Err(PatchError::Stream(format!(
                "segment {index} rebuilt to {} bytes, not {expected}",
                segment.len()
            )));
        }
        output
            .write_all(&segment)
            .map_err(|e| PatchError::Delta(io_err("write", out)(e)))?;
        hasher.update(&segment);
        size += segment.len() as u64;
    }
    // Nothing may follow the last segment.
    let mut rest = [0u8; 1];
    if patch
        .read(&mut rest)
        .map_err(|e| PatchError::Stream(e.to_string()))?
        != 0
    {
        return Err(PatchError::Stream("bytes follow the last segment".into()));
    }
    Ok((size, hex::encode(hasher.finalize())))
}
