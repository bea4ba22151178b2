//! `release pack`: turns a bundle folder into what a release publishes for one platform: the archive,
//! its line in `checksums-<os>-<arch>.txt`, its entry in `release-manifest.json`, and the manifest's
//! minisign signature.
//!
//! Packing is meant to run once per platform into the same output folder (one CI job per platform, then
//! one upload), so the checksum file and the manifest are *merged*: entries for other files are kept, the
//! entry for this archive is replaced, and a manifest of another version or channel is an error rather
//! than silently overwritten. Every merge re-signs the whole manifest; without a key, a signature left by
//! an earlier run is removed, because it no longer matches.
//!
//! Everything is checked before anything is written (the bundle's `agent.json`, the existing files, the
//! secret key and its password), and each file is replaced atomically. What pack writes checks with the
//! standard tools: `sha256sum -c checksums-*.txt` and `minisign -Vm release-manifest.json -p key.pub`.
//! The layout is documented in `docs/RELEASE-FORMAT.md`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::agent::{AgentError, AgentSpec};
use crate::archive::{self, ArchiveError, ArchiveKind};
use crate::platform::{Os, Platform};
use crate::verify::{
    self, MANIFEST_FILE, MANIFEST_SIGNATURE_FILE, ManifestAsset, PublicKey, ReleaseManifest, VerifyError,
};
use crate::version::Channel;

/// The environment variable holding the password of an encrypted minisign secret key.
pub const PASSWORD_ENV: &str = "MINISIGN_PASSWORD";

/// What to pack, and where.
#[derive(Clone, Debug)]
pub struct PackOptions {
    pub version: semver::Version,
    pub platform: Platform,
    /// The bundle folder: the launcher, `backend/` and `agent.json`.
    pub bundle_dir: PathBuf,
    /// Where the archive, checksum file, manifest and signature go (created if missing).
    pub out_dir: PathBuf,
    pub channel: Channel,
    /// A minisign secret key file; `None` leaves the manifest unsigned.
    pub minisign_key: Option<PathBuf>,
    /// The password of an encrypted key (the CLI reads [`PASSWORD_ENV`]).
    pub minisign_password: Option<String>,
    /// The manifest's `published_at` when it creates a new manifest (an existing one keeps its own).
    pub published_at: DateTime<Utc>,
    /// Release notes (markdown) to put in the signed manifest; `None` keeps what it has.
    pub notes: Option<String>,
    /// Also write the `.tar.gz` that launchers before 0.2 read, beside the `.tar.zst` (Linux and macOS):
    /// for the one transition release that lets them update to a launcher that reads `.tar.zst`.
    pub also_tar_gz: bool,
    /// Earlier releases to write deltas from: each a release folder `release pack` wrote (its manifest
    /// names the archive for this platform) or one bundle archive.
    pub delta_from: Vec<PathBuf>,
}

/// A file pack wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// A delta pack wrote.
#[derive(Clone, Debug, Serialize)]
pub struct WrittenDelta {
    pub file: WrittenFile,
    #[serde(flatten)]
    pub stats: crate::delta::DeltaStats,
}

/// What pack wrote, for people and for scripts.
#[derive(Clone, Debug, Serialize)]
pub struct PackReport {
    pub version: String,
    pub platform: String,
    pub channel: Channel,
    pub archive: WrittenFile,
    /// The `.tar.gz` written beside the archive for older launchers (`--also-tar-gz`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_archive: Option<WrittenFile>,
    /// How many entries the file list of the bundle has.
    pub files: usize,
    /// That file list (`<archive name without its suffix>.files.json`), vouched for by the manifest.
    pub file_list: WrittenFile,
    /// The deltas written (`--delta-from`).
    pub deltas: Vec<WrittenDelta>,
    /// What a publisher should know (a delta that could not be made, a manifest older launchers cannot read).
    pub warnings: Vec<String>,
    pub checksums_file: WrittenFile,
    pub manifest: WrittenFile,
    /// The signature file, when the manifest was signed.
    pub signature: Option<PathBuf>,
    pub signed: bool,
    /// The id of the signing key, as `minisign` shows it (upper-case hex, no leading zeros).
    pub key_id: Option<String>,
    /// Every archive the manifest now lists.
    pub manifest_assets: Vec<String>,
}

/// Why packing failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("the bundle folder {} is not complete: {source}", bundle_dir.display())]
    Bundle {
        bundle_dir: PathBuf,
        #[source]
        source: AgentError,
    },

    #[error(
        "{} is missing: a bundle folder needs agent.json (how to run the backend: `command`, `health_url`) beside backend/; see docs/BUNDLE.md",
        path.display()
    )]
    AgentJsonMissing { path: PathBuf },

    #[error(
        "the bundle folder {} lacks the backend program `{program}` that agent.json's `command` names; build the backend into the bundle first",
        bundle_dir.display()
    )]
    ProgramMissing { bundle_dir: PathBuf, program: String },

    #[error(
        "{} is for version {existing}, not {requested}; pack each version into its own output folder, or remove the old files",
        manifest.display()
    )]
    VersionConflict {
        manifest: PathBuf,
        existing: String,
        requested: String,
    },

    #[error(
        "{} is for channel {existing}, not {requested}; use the same --channel for every platform of a release",
        manifest.display()
    )]
    ChannelConflict {
        manifest: PathBuf,
        existing: Channel,
        requested: Channel,
    },

    #[error("the existing {} cannot be merged: {source}; fix or remove it and pack again", path.display())]
    ExistingFile {
        path: PathBuf,
        #[source]
        source: VerifyError,
    },

    #[error(
        "the output folder {} is inside the bundle folder {}, so archives would end up inside archives; choose an --out outside the bundle",
        out_dir.display(),
        bundle_dir.display()
    )]
    OutputInsideBundle { bundle_dir: PathBuf, out_dir: PathBuf },

    #[error(
        "the manifest {} would be at least {size} bytes, more than the {limit} a launcher reads; it was left as it was: shorten the release notes (--notes-file), which it carries",
        manifest.display()
    )]
    ManifestTooLarge {
        manifest: PathBuf,
        size: u64,
        limit: u64,
    },

    #[error(
        "the bundle folder {} cannot be listed for {platform}: {reason}; rename or remove that entry and pack again",
        bundle_dir.display()
    )]
    UnlistableEntry {
        bundle_dir: PathBuf,
        platform: Platform,
        reason: String,
    },

    #[error("cannot use the minisign secret key {}: {reason}", path.display())]
    SecretKey { path: PathBuf, reason: String },

    #[error("signing {} failed: {reason}", path.display())]
    Sign { path: PathBuf, reason: String },

    #[error(
        "cannot make a delta from {}: {reason}",
        from.display()
    )]
    DeltaBase { from: PathBuf, reason: String },

    #[error(transparent)]
    Delta(#[from] crate::delta::DeltaError),

    #[error(transparent)]
    Archive(#[from] ArchiveError),

    #[error(transparent)]
    Verify(#[from] VerifyError),

    #[error(transparent)]
    Engine(#[from] crate::Error),
}

/// The archive file name for a version and platform: `PersonalAIAgent-<os>-<arch>-<version>.tar.zst`
/// (`.zip` for Windows).
pub fn archive_file_name(version: &semver::Version, platform: &Platform) -> String {
    archive_file_name_of(version, platform, ArchiveKind::for_os(platform.os))
}

fn archive_file_name_of(version: &semver::Version, platform: &Platform, kind: ArchiveKind) -> String {
    format!(
        "{}{}",
        archive::bundle_root_name(version, platform),
        kind.extension()
    )
}

/// The checksum file name for a platform: `checksums-<os>-<arch>.txt`.
pub fn checksums_file_name(platform: &Platform) -> String {
    format!("checksums-{platform}.txt")
}

/// Packs one platform's bundle; see the module documentation.
pub fn pack(options: &PackOptions) -> Result<PackReport, PackError> {
    check_bundle(&options.bundle_dir, &options.platform)?;

    let out = &options.out_dir;
    let archive_name = archive_file_name(&options.version, &options.platform);
    let archive_path = out.join(&archive_name);
    let checksums_path = out.join(checksums_file_name(&options.platform));
    let manifest_path = out.join(MANIFEST_FILE);
    let signature_path = out.join(MANIFEST_SIGNATURE_FILE);

    // Read everything that could refuse the run before writing anything.
    let mut manifest = existing_manifest(&manifest_path, options)?;
    let mut checksum_lines = existing_checksums(&checksums_path)?;
    let signer = options
        .minisign_key
        .as_deref()
        .map(|path| Signer::load(path, options.minisign_password.clone()))
        .transpose()?;

    refuse_output_inside_bundle(&options.bundle_dir, out)?;
    // Checked as a launcher will check it, so a name the platform cannot hold stops the pack here, naming
    // the entry, rather than every launcher at install.
    let files = crate::delta::list_tree(&options.bundle_dir)?;
    let file_count = files.len();
    verify::manifest::validate_files(&archive_name, &files, options.platform.os).map_err(|reason| {
        PackError::UnlistableEntry {
            bundle_dir: options.bundle_dir.clone(),
            platform: options.platform,
            reason,
        }
    })?;
    // The manifest carries the notes; what else it holds is a few hundred bytes an asset.
    let at_least = options.notes.as_ref().map_or(0, |n| n.len() as u64) + 64 * 1024;
    if at_least > verify::MANIFEST_LIMIT {
        return Err(PackError::ManifestTooLarge {
            manifest: manifest_path,
            size: at_least,
            limit: verify::MANIFEST_LIMIT,
        });
    }
    crate::paths::ensure_dir(out)?;
    // The bases are unpacked (and checked against their own manifests) before anything is written too.
    let mut warnings = Vec::new();
    let mut bases = Vec::new();
    for from in &options.delta_from {
        match DeltaBase::open(from, options)? {
            Some(base) => bases.push(base),
            None => warnings.push(format!(
                "no delta from {}: its manifest lists no archive for {}",
                from.display(),
                options.platform
            )),
        }
    }
    let root_name = archive::bundle_root_name(&options.version, &options.platform);
    let kind = ArchiveKind::for_os(options.platform.os);
    let size = archive::create_archive(&options.bundle_dir, &root_name, &archive_path, kind)?;
    let sha256 = verify::sha256_file(&archive_path)?;

    let mut written_files = vec![(archive_name.clone(), sha256.clone())];
    let legacy_archive = if options.also_tar_gz && kind == ArchiveKind::TarZst {
        let name = archive_file_name_of(&options.version, &options.platform, ArchiveKind::TarGz);
        let path = out.join(&name);
        let size = archive::create_archive(&options.bundle_dir, &root_name, &path, ArchiveKind::TarGz)?;
        let sha256 = verify::sha256_file(&path)?;
        written_files.push((name, sha256.clone()));
        Some(WrittenFile { path, size, sha256 })
    } else {
        None
    };
    let mut deltas = Vec::new();
    for base in &bases {
        if base.version >= options.version {
            warnings.push(format!(
                "no delta from {}: it is not older than {}",
                base.version, options.version
            ));
            continue;
        }
        let name = crate::delta::delta_file_name(&options.version, &options.platform, &base.version);
        let path = out.join(&name);
        match crate::delta::create_delta(
            base.root(),
            &base.version,
            &options.bundle_dir,
            &files,
            &options.version,
            &options.platform,
            &path,
        ) {
            // A delta no smaller than the archive saves nothing (a tiny bundle: the delta's own headers
            // outweigh it), so none is published.
            Ok(stats) if stats.size >= size => {
                std::fs::remove_file(&path).map_err(|e| crate::Error::io("remove", &path, e))?;
                warnings.push(format!(
                    "no delta from {}: it would be {} bytes, no smaller than the {size}-byte archive",
                    base.version, stats.size
                ));
            }
            Ok(stats) => {
                let sha256 = verify::sha256_file(&path)?;
                written_files.push((name, sha256.clone()));
                deltas.push(WrittenDelta {
                    file: WrittenFile {
                        path,
                        size: stats.size,
                        sha256,
                    },
                    stats,
                });
            }
            Err(crate::delta::DeltaError::CannotMake { path, reason }) => {
                warnings.push(format!(
                    "no delta from {}: {} {reason}",
                    base.version,
                    path.display()
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }

    let list_name = format!(
        "{}{}",
        archive::bundle_root_name(&options.version, &options.platform),
        verify::FILE_LIST_SUFFIX
    );
    let list_path = out.join(&list_name);
    let list_bytes = verify::FileList::new(options.version.clone(), options.platform, files).to_json_bytes();
    if list_bytes.len() as u64 > verify::FILE_LIST_LIMIT {
        return Err(PackError::UnlistableEntry {
            bundle_dir: options.bundle_dir.clone(),
            platform: options.platform,
            reason: format!(
                "its {file_count} entries make a file list of {} bytes, more than the {} a launcher reads",
                list_bytes.len(),
                verify::FILE_LIST_LIMIT
            ),
        });
    }
    let file_list_written = written(&list_path, &list_bytes);
    written_files.push((list_name.clone(), file_list_written.sha256.clone()));
    let file_list = verify::ManifestFileList {
        name: list_name,
        size: file_list_written.size,
        sha256: file_list_written.sha256.clone(),
    };

    for (name, sha256) in &written_files {
        checksum_lines.retain(|(n, _)| n != name);
        checksum_lines.push((name.clone(), sha256.clone()));
    }
    checksum_lines.sort();
    let checksums_text: String = checksum_lines
        .iter()
        .map(|(name, hash)| verify::gnu_line(hash, name))
        .collect();

    if manifest.tag.is_none() {
        manifest.tag = Some(format!("v{}", options.version));
    }
    if let Some(notes) = &options.notes {
        manifest.notes = Some(notes.clone());
    }
    let manifest_deltas: Vec<verify::ManifestDelta> = deltas
        .iter()
        .map(|d| verify::ManifestDelta {
            name: file_name(&d.file.path),
            base: d
                .stats
                .base
                .parse()
                .unwrap_or_else(|_| semver::Version::new(0, 0, 0)),
            size: d.file.size,
            sha256: d.file.sha256.clone(),
        })
        .collect();
    manifest.upsert(ManifestAsset {
        name: archive_name.clone(),
        size,
        sha256: sha256.clone(),
        platform: Some(options.platform),
        file_list: Some(file_list),
        deltas: manifest_deltas,
    });
    // The transition `.tar.gz` is for launchers that know neither file lists nor deltas (a launcher that
    // does prefers the `.tar.zst`), so its entry names neither.
    if let Some(legacy) = &legacy_archive {
        manifest.upsert(ManifestAsset {
            name: file_name(&legacy.path),
            size: legacy.size,
            sha256: legacy.sha256.clone(),
            platform: Some(options.platform),
            file_list: None,
            deltas: Vec::new(),
        });
    }
    let manifest_bytes = manifest.to_json_bytes();
    if manifest_bytes.len() as u64 > verify::MANIFEST_LIMIT {
        return Err(PackError::ManifestTooLarge {
            manifest: manifest_path,
            size: manifest_bytes.len() as u64,
            limit: verify::MANIFEST_LIMIT,
        });
    }
    if manifest_bytes.len() > LEGACY_SHORTCUT_LIMIT {
        warnings.push(format!(
            "the manifest is {} bytes: launchers before 0.2 read at most {LEGACY_SHORTCUT_LIMIT} of it when GitHub's API rate-limits them, and then fail their check until the limit resets; keep the notes shorter",
            manifest_bytes.len()
        ));
    }
    let signature = signer
        .as_ref()
        .map(|s| s.sign(&manifest_bytes, &manifest.version, &manifest_path))
        .transpose()?;
    // Nothing that names the new archive is written until nothing can refuse the run any more.
    crate::fsutil::write_atomic(&list_path, &list_bytes)?;
    crate::fsutil::write_atomic(&checksums_path, checksums_text.as_bytes())?;
    crate::fsutil::write_atomic(&manifest_path, &manifest_bytes)?;
    match &signature {
        Some(text) => crate::fsutil::write_atomic(&signature_path, text.as_bytes())?,
        None => remove_stale_signature(&signature_path)?,
    }

    // Written through temporary files (0600 on Unix); a mirror's web server must be able to read them.
    let published = [&archive_path, &list_path, &checksums_path, &manifest_path]
        .into_iter()
        .chain(legacy_archive.as_ref().map(|l| &l.path))
        .chain(deltas.iter().map(|d| &d.file.path))
        .chain(signature.is_some().then_some(&signature_path));
    for path in published {
        crate::fsutil::make_publishable(path)?;
    }

    Ok(PackReport {
        version: options.version.to_string(),
        platform: options.platform.to_string(),
        channel: options.channel,
        archive: WrittenFile {
            path: archive_path,
            size,
            sha256,
        },
        legacy_archive,
        files: file_count,
        file_list: file_list_written,
        deltas,
        warnings,
        checksums_file: written(&checksums_path, checksums_text.as_bytes()),
        manifest: written(&manifest_path, &manifest_bytes),
        signature: signature.is_some().then_some(signature_path),
        signed: signature.is_some(),
        key_id: signer.map(|s| s.public.key_id().to_owned()),
        manifest_assets: manifest.assets.iter().map(|a| a.name.clone()).collect(),
    })
}

/// The most launchers before 0.2 read of the manifest they fetch from `releases/latest/download` when the
/// API rate-limits them.
const LEGACY_SHORTCUT_LIMIT: usize = 1 << 20;

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// An earlier release's bundle for this platform, unpacked into a temporary folder.
struct DeltaBase {
    version: semver::Version,
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl DeltaBase {
    fn root(&self) -> &Path {
        &self.root
    }

    /// `from` is a release folder (its manifest names this platform's archive and its hash) or an archive
    /// named as `release pack` names them.
    /// `None`: a release folder without an archive for this platform (a platform new in this release).
    fn open(from: &Path, options: &PackOptions) -> Result<Option<Self>, PackError> {
        let refuse = |reason: String| PackError::DeltaBase {
            from: from.to_path_buf(),
            reason,
        };
        let (archive, version, sha256) = if from.is_dir() {
            let manifest_path = from.join(MANIFEST_FILE);
            let text = crate::fsutil::read_optional(&manifest_path)?.ok_or_else(|| {
                refuse(format!(
                    "it has no {MANIFEST_FILE}; pass the folder an earlier `release pack --out` wrote, or its archive"
                ))
            })?;
            let manifest = ReleaseManifest::parse(text.as_bytes()).map_err(|e| refuse(e.to_string()))?;
            let Some(asset) = manifest
                .assets
                .iter()
                .filter(|a| a.platform == Some(options.platform))
                .filter_map(|a| ArchiveKind::from_file_name(&a.name).map(|k| (k, a)))
                .min_by_key(|(kind, _)| *kind as u8)
                .map(|(_, a)| a)
            else {
                return Ok(None);
            };
            (
                from.join(&asset.name),
                manifest.version.clone(),
                Some(asset.sha256.clone()),
            )
        } else {
            let name = file_name(from);
            let prefix = format!("PersonalAIAgent-{}-", options.platform);
            let version = ArchiveKind::from_file_name(&name)
                .and_then(|kind| name.strip_suffix(kind.extension()))
                .and_then(|stem| stem.strip_prefix(&prefix))
                .and_then(|v| semver::Version::parse(v).ok())
                .ok_or_else(|| {
                    refuse(format!(
                        "it is not named {prefix}<version>.tar.zst (or .tar.gz, .zip) as `release pack` names archives for {}",
                        options.platform
                    ))
                })?;
            (from.to_path_buf(), version, None)
        };
        let dir = tempfile::Builder::new()
            .prefix("pai-delta-base-")
            .tempdir()
            .map_err(|e| refuse(format!("cannot make a temporary folder: {e}")))?;
        let extracted = archive::extract_archive_checked(
            &archive,
            dir.path(),
            &archive::ExtractLimits::default(),
            sha256.as_deref(),
            None,
        )?;
        Ok(Some(DeltaBase {
            version,
            _dir: dir,
            root: extracted.root,
        }))
    }
}

/// The bundle must have a usable `agent.json` whose program is in the bundle.
fn check_bundle(bundle_dir: &Path, platform: &Platform) -> Result<(), PackError> {
    let spec = AgentSpec::load(bundle_dir).map_err(|source| match source {
        // The agent's own message suggests reinstalling, which is the wrong advice to someone packing.
        AgentError::Missing { path } => PackError::AgentJsonMissing { path },
        source => PackError::Bundle {
            bundle_dir: bundle_dir.to_path_buf(),
            source,
        },
    })?;
    let program = spec.command.first().map(String::as_str).unwrap_or_default();
    // A program named through a placeholder is only known at run time.
    if program.contains('{') {
        return Ok(());
    }
    let path = bundle_dir.join(program);
    let exists = path.is_file()
        || (platform.os == Os::Windows && !program.ends_with(".exe") && path.with_extension("exe").is_file());
    if !exists {
        return Err(PackError::ProgramMissing {
            bundle_dir: bundle_dir.to_path_buf(),
            program: program.to_owned(),
        });
    }
    Ok(())
}

/// Packing into the bundle itself would put the archive (and earlier archives) inside the next archive.
fn refuse_output_inside_bundle(bundle_dir: &Path, out_dir: &Path) -> Result<(), PackError> {
    let bundle = std::fs::canonicalize(bundle_dir)
        .map_err(|e| crate::Error::io("resolve the folder", bundle_dir, e))?;
    if resolve_maybe_missing(out_dir).starts_with(&bundle) {
        return Err(PackError::OutputInsideBundle {
            bundle_dir: bundle_dir.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
        });
    }
    Ok(())
}

/// The canonical form of a path that may not exist yet: its nearest existing ancestor resolved (links
/// followed), with the missing rest appended.
fn resolve_maybe_missing(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut missing = Vec::new();
    let mut current = absolute.as_path();
    loop {
        if let Ok(resolved) = std::fs::canonicalize(current) {
            return missing.iter().rev().fold(resolved, |acc, part| acc.join(part));
        }
        match (current.parent(), current.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                current = parent;
            }
            _ => return absolute,
        }
    }
}

fn existing_manifest(path: &Path, options: &PackOptions) -> Result<ReleaseManifest, PackError> {
    let Some(text) = crate::fsutil::read_optional(path)? else {
        return Ok(ReleaseManifest::new(
            options.version.clone(),
            options.channel,
            options.published_at,
        ));
    };
    let manifest = ReleaseManifest::parse(text.as_bytes()).map_err(|source| PackError::ExistingFile {
        path: path.to_path_buf(),
        source,
    })?;
    if manifest.version != options.version {
        return Err(PackError::VersionConflict {
            manifest: path.to_path_buf(),
            existing: manifest.version.to_string(),
            requested: options.version.to_string(),
        });
    }
    if manifest.channel != options.channel {
        return Err(PackError::ChannelConflict {
            manifest: path.to_path_buf(),
            existing: manifest.channel,
            requested: options.channel,
        });
    }
    Ok(manifest)
}

fn existing_checksums(path: &Path) -> Result<Vec<(String, String)>, PackError> {
    let Some(text) = crate::fsutil::read_optional(path)? else {
        return Ok(Vec::new());
    };
    let entries = verify::parse_checksums(&text).map_err(|source| PackError::ExistingFile {
        path: path.to_path_buf(),
        source,
    })?;
    if entries.iter().any(|(name, _)| name.is_empty()) {
        return Err(PackError::ExistingFile {
            path: path.to_path_buf(),
            source: VerifyError::InvalidChecksumLine {
                line_number: 0,
                line: String::new(),
                reason: "a hash without a file name cannot be checked by `sha256sum -c`",
            },
        });
    }
    Ok(entries)
}

fn remove_stale_signature(path: &Path) -> Result<(), PackError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::Error::io("remove the outdated signature", path, e).into()),
    }
}

fn written(path: &Path, bytes: &[u8]) -> WrittenFile {
    use sha2::{Digest, Sha256};
    WrittenFile {
        path: path.to_path_buf(),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    }
}

/// The decoded size of a minisign secret key and of a public key.
const SECRET_KEY_BYTES: usize = 158;
const PUBLIC_KEY_BYTES: usize = 42;
/// The key-derivation algorithm of an unencrypted minisign secret key.
const KDF_NONE: [u8; 2] = [0, 0];

/// The decoded bytes of a secret key file's base64 line (the first line that is not a comment).
fn secret_key_bytes(text: &str) -> Option<Vec<u8>> {
    use ct_codecs::{Base64, Decoder};
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))?;
    Base64::decode_to_vec(line, None).ok()
}

/// A loaded secret key and its public half (to check our own signature before publishing it).
struct Signer {
    secret: minisign::SecretKey,
    public: PublicKey,
}

impl Signer {
    /// Loads an unencrypted key (`minisign -G -W`), or an encrypted one with `password`. Never prompts:
    /// pack runs in CI.
    fn load(path: &Path, password: Option<String>) -> Result<Signer, PackError> {
        let fail = |reason: String| PackError::SecretKey {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("it cannot be read ({e})")))?;
        let raw = secret_key_bytes(&text).ok_or_else(|| {
            fail("it is not a minisign secret key (a comment line, then one base64 line); give the file `minisign -G` wrote".into())
        })?;
        match raw.len() {
            SECRET_KEY_BYTES => {}
            PUBLIC_KEY_BYTES => {
                return Err(fail(
                    "it is a public key; give the secret key file (`minisign -G -s FILE`) instead".into(),
                ));
            }
            other => {
                return Err(fail(format!(
                    "it holds {other} bytes, not the {SECRET_KEY_BYTES} of a minisign secret key; give the file `minisign -G` wrote"
                )));
            }
        }
        let secret = if raw.get(2..4) == Some(&KDF_NONE[..]) {
            // Unencrypted. The C `minisign -G -W` leaves the key checksum zero, which the `minisign` crate's
            // loaders reject as corrupt, so the bytes are taken as they are; a damaged key is still caught,
            // because every signature is checked against the key's public half before it is written.
            minisign::SecretKey::from_bytes(&raw).map_err(|e| fail(format!("it is damaged ({e})")))?
        } else {
            let Some(password) = password else {
                return Err(fail(format!(
                    "it is encrypted; put its password in {PASSWORD_ENV}, or make an unencrypted key with `minisign -G -W`"
                )));
            };
            minisign::SecretKeyBox::from_string(&text)
                .and_then(|b| b.into_secret_key(Some(password)))
                .map_err(|e| {
                    fail(format!(
                        "it cannot be decrypted with the password in {PASSWORD_ENV} ({e})"
                    ))
                })?
        };
        let public = minisign::PublicKey::from_secret_key(&secret)
            .map_err(|e| fail(format!("its public half cannot be derived ({e})")))?
            .to_base64()
            .parse()
            .map_err(|e: VerifyError| fail(e.to_string()))?;
        Ok(Signer { secret, public })
    }

    /// Signs the manifest bytes and checks the result with the launcher's own verifier.
    fn sign(&self, bytes: &[u8], version: &semver::Version, path: &Path) -> Result<String, PackError> {
        let trusted_comment = format!(
            "timestamp:{} file:{MANIFEST_FILE} version:{version}",
            Utc::now().timestamp()
        );
        let untrusted_comment = format!("signature from minisign secret key {}", self.public.key_id());
        let signature = minisign::sign(
            None,
            &self.secret,
            bytes,
            Some(&trusted_comment),
            Some(&untrusted_comment),
        )
        .map_err(|e| PackError::Sign {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .into_string();
        verify::verify_manifest(bytes, &signature, &self.public).map_err(|e| PackError::Sign {
            path: path.to_path_buf(),
            reason: format!("the new signature does not verify ({e})"),
        })?;
        Ok(signature)
    }
}
