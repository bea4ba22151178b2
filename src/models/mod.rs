//! The model files the agent needs (several GB): what is there, what is missing, and fetching the rest
//! without surprises.
//!
//! Models live in one shared folder, [`Paths::models_dir`], used by every installed version and never
//! copied per version: the backend reads `<models>/<name>` (the live view). A manifest ([`manifest`])
//! lists each file with its URL, size and SHA256; the small record `verified.json` ([`record`]) remembers
//! which files were hashed, so [`status`] answers at once while [`verify`] re-reads everything. Fetching is
//! split in two so nothing large starts without consent: [`plan`] says what is missing, how many bytes
//! that is and how much space is free (and refuses when it does not fit); only then [`download_missing`]
//! fetches exactly the planned files with the same resumable, hash-while-streaming download as releases
//! ([`crate::download`]). A bad download is deleted, so the next run fetches it again instead of looping.
//!
//! Installed versions may name one file with different content. [`store`] keeps them apart without
//! copies: a live file that another installed version's manifest needs is never deleted but set aside,
//! by rename, into `<models>/.by-hash/<sha256>` (identical content is kept once), and put back by
//! [`activate_models_for`] before that version's backend starts again. A release built "with models"
//! carries them in `models/`; [`adopt_models_of_bundle`] moves them into the live view after checking
//! them — while no backend runs, see docs/MODELS.md — so they are neither downloaded again nor kept twice.
//! [`status`], [`plan`] and [`download_missing`] look only at the names a manifest gives, so the store is
//! never listed, planned or deleted as a model.

pub mod manifest;
pub mod record;
pub mod store;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::download::{self, CancelToken, DownloadError, DownloadEvent, DownloadRequest, RetryPolicy};
use crate::paths::Paths;

pub use manifest::{ManifestLocation, ModelEntry, ModelsManifest, locate};
pub use record::{FileStamp, VerifiedRecord};
pub use store::{
    STORE_DIR, activate_models_for, adopt_bundled_models, adopt_models_of_bundle, installed_bundle_dirs,
    other_installed_bundle_dirs, prepare_models_for, prune_model_store,
};

/// Held (as an OS file lock) while `download_missing` runs, so two launchers never write one partial file.
pub const LOCK_FILE: &str = ".download.lock";
/// The folder inside a bundle that carries models.
pub const BUNDLED_MODELS_DIR: &str = "models";
/// Hashing progress is reported at most this often.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
const HASH_BUFFER: usize = 1 << 20;

/// Why models cannot be listed, checked or fetched. Messages name the cause and the next step.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error(
        "no models manifest is known: the installed version's agent.json names none and {config_file} has no `models_manifest` setting; pass --manifest PATH|URL"
    )]
    NoManifest { config_file: PathBuf },

    #[error("the models manifest location `{value}` {problem}; give an https:// URL or a file path")]
    ManifestLocation { value: String, problem: String },

    #[error("cannot read the models manifest {path}: {source}; check the path given with --manifest")]
    ManifestRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot fetch the models manifest {url}: {reason}")]
    ManifestFetch { url: String, reason: String },

    #[error("{location} is not a valid models manifest ({reason}); see docs/MODELS.md for the format")]
    ManifestParse { location: String, reason: String },

    #[error("{location}: `{field}` {problem}; see docs/MODELS.md for the format")]
    ManifestField {
        location: String,
        field: String,
        problem: String,
    },

    #[error(
        "the models need {} in {dir}, but only {} is free; free some space or set --home to a folder on a larger disk",
        human_bytes(*.needed),
        human_bytes(*.available)
    )]
    NotEnoughSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },

    #[error(
        "the models folder is busy: another launcher (a `models download`, or an update moving models) holds {lock}; wait for it to finish, or end it and try again"
    )]
    Busy { lock: PathBuf },

    #[error("could not {action} {path}: {source}; check that the folder exists and is writable")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("could not write the models record {path} ({reason}); check that the folder is writable")]
    Record { path: PathBuf, reason: String },

    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),

    #[error(transparent)]
    Install(#[from] crate::install::InstallError),
}

impl ModelsError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ModelsError {
        let path = path.to_path_buf();
        move |source| ModelsError::Io { action, path, source }
    }
}

/// Bytes as people read them: `4.07 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// Where one model file stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ModelState {
    /// The file is there and its SHA256 was checked (now or earlier, and it has not changed since).
    Present,
    Missing,
    /// An interrupted download left `done` bytes; the next download resumes from there.
    Partial {
        done: u64,
    },
    /// The file is there but is not the model the manifest describes.
    Corrupt {
        reason: String,
    },
    /// The file has the right size but was never hashed (copied in by hand, or touched since).
    Unverified,
}

/// One manifest entry and its state on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelStatus {
    pub name: String,
    /// The size the manifest gives.
    pub size: u64,
    pub required: bool,
    #[serde(flatten)]
    pub state: ModelState,
}

/// What the model functions report while they work, for a progress bar.
#[derive(Clone, Debug)]
pub enum ModelsEvent {
    /// Hashing a file already on disk (`done` of `total` bytes read).
    Checking { name: String, done: u64, total: u64 },
    /// A download's own event.
    Downloading { name: String, event: DownloadEvent },
    /// One model is settled.
    Finished(ModelReport),
}

/// The state of every model in `manifest`, from the file system and the record, without reading any model.
pub fn status(paths: &Paths, manifest: &ModelsManifest) -> Result<Vec<ModelStatus>, ModelsError> {
    let dir = paths.models_dir();
    let record = VerifiedRecord::load(&dir);
    manifest
        .models
        .iter()
        .map(|entry| {
            Ok(ModelStatus {
                name: entry.name.clone(),
                size: entry.size,
                required: entry.required,
                state: state_of(&dir, &record, entry)?,
            })
        })
        .collect()
}

fn state_of(dir: &Path, record: &VerifiedRecord, entry: &ModelEntry) -> Result<ModelState, ModelsError> {
    let path = dir.join(&entry.name);
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A partial file is only resumed together with its sidecar; alone it would start over.
            let part = download::part_path(&path);
            let done = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
            return Ok(if done > 0 && download::sidecar_path(&path).is_file() {
                ModelState::Partial { done }
            } else {
                ModelState::Missing
            });
        }
        Err(e) => return Err(ModelsError::io("inspect", &path)(e)),
    };
    if !meta.is_file() {
        return Ok(ModelState::Corrupt {
            reason: "it is not a regular file".into(),
        });
    }
    let stamp = FileStamp::from_metadata(&meta);
    if stamp.size != entry.size {
        return Ok(ModelState::Corrupt {
            reason: format!("it is {} bytes, {} expected", stamp.size, entry.size),
        });
    }
    Ok(match record.hash_if_unchanged(&entry.name, &stamp) {
        Some(hash) if hash == entry.sha256 => ModelState::Present,
        Some(hash) => ModelState::Corrupt {
            reason: format!("its SHA256 is {hash}, {} expected", entry.sha256),
        },
        None => ModelState::Unverified,
    })
}

/// Which files [`verify`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyScope {
    /// Every file of the right size, even those the record vouches for (`models status --verify`).
    All,
    /// Only files the record cannot vouch for.
    Unverified,
}

/// Hashes model files (per `scope`), updates the record, and returns the states afterwards.
pub fn verify(
    paths: &Paths,
    manifest: &ModelsManifest,
    scope: VerifyScope,
    on_event: &mut dyn FnMut(ModelsEvent),
) -> Result<Vec<ModelStatus>, ModelsError> {
    let dir = paths.models_dir();
    let mut record = VerifiedRecord::load(&dir);
    for entry in &manifest.models {
        let state = state_of(&dir, &record, entry)?;
        let wanted = match scope {
            VerifyScope::All => matches!(
                state,
                ModelState::Present | ModelState::Unverified | ModelState::Corrupt { .. }
            ),
            VerifyScope::Unverified => state == ModelState::Unverified,
        };
        let path = dir.join(&entry.name);
        // A file of the wrong size is corrupt whatever its hash; reading it would prove nothing more.
        let right_size = FileStamp::of(&path)?.is_some_and(|s| s.size == entry.size);
        if !wanted || !path.is_file() || !right_size {
            continue;
        }
        hash_and_remember(&path, entry, &mut record, on_event)?;
        record.save(&dir)?;
    }
    status(paths, manifest)
}

/// Hashes `path` (a copy of `entry`) and records the result; returns whether it matches the manifest.
fn hash_and_remember(
    path: &Path,
    entry: &ModelEntry,
    record: &mut VerifiedRecord,
    on_event: &mut dyn FnMut(ModelsEvent),
) -> Result<bool, ModelsError> {
    let Some(before) = FileStamp::of(path)? else {
        record.forget(&entry.name);
        return Ok(false);
    };
    let hash = hash_file(path, &mut |done| {
        on_event(ModelsEvent::Checking {
            name: entry.name.clone(),
            done,
            total: before.size,
        })
    })?;
    // A file that changed while it was read proves nothing; leave it unrecorded.
    if FileStamp::of(path)?.as_ref() == Some(&before) {
        record.remember(&entry.name, &before, &hash);
    } else {
        record.forget(&entry.name);
    }
    Ok(before.size == entry.size && hash == entry.sha256)
}

/// SHA256 of a file as lowercase hex, reporting bytes read about ten times a second.
pub fn hash_file(path: &Path, on_progress: &mut dyn FnMut(u64)) -> Result<String, ModelsError> {
    let mut file = File::open(path).map_err(ModelsError::io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; HASH_BUFFER];
    let mut done = 0u64;
    let mut last_report = Instant::now();
    on_progress(0);
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ModelsError::io("read", path)(e)),
        };
        hasher.update(&buffer[..n]);
        done += n as u64;
        if last_report.elapsed() >= PROGRESS_INTERVAL {
            on_progress(done);
            last_report = Instant::now();
        }
    }
    on_progress(done);
    Ok(hex::encode(hasher.finalize()))
}

/// One model to fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedFetch {
    pub name: String,
    pub size: u64,
    /// Bytes a partial download already holds (they are not fetched again).
    pub already_done: u64,
}

/// What `download_missing` would do, and whether it fits on the disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub models_dir: PathBuf,
    pub fetch: Vec<PlannedFetch>,
    /// Models present and verified: not fetched.
    pub present: Vec<String>,
    /// Optional models left out (fetched only when asked for).
    pub optional_skipped: Vec<String>,
    /// Bytes still to download (partial downloads count only for what they lack).
    pub bytes_needed: u64,
    /// Free space in the models folder's file system.
    pub bytes_available: u64,
}

impl Plan {
    /// Builds the plan from states (pure: tests inject `bytes_available`).
    pub fn from_statuses(
        models_dir: PathBuf,
        statuses: &[ModelStatus],
        include_optional: bool,
        bytes_available: u64,
    ) -> Plan {
        let mut plan = Plan {
            models_dir,
            fetch: Vec::new(),
            present: Vec::new(),
            optional_skipped: Vec::new(),
            bytes_needed: 0,
            bytes_available,
        };
        for model in statuses {
            if model.state == ModelState::Present {
                plan.present.push(model.name.clone());
                continue;
            }
            if !model.required && !include_optional {
                plan.optional_skipped.push(model.name.clone());
                continue;
            }
            let already_done = match model.state {
                ModelState::Partial { done } => done.min(model.size),
                _ => 0,
            };
            plan.bytes_needed += model.size - already_done;
            plan.fetch.push(PlannedFetch {
                name: model.name.clone(),
                size: model.size,
                already_done,
            });
        }
        plan
    }

    /// Whether there is nothing to fetch.
    pub fn is_empty(&self) -> bool {
        self.fetch.is_empty()
    }

    /// Refuses, with the numbers, when the planned bytes do not fit in the free space.
    pub fn check_space(&self) -> Result<(), ModelsError> {
        if self.bytes_needed > self.bytes_available {
            return Err(ModelsError::NotEnoughSpace {
                dir: self.models_dir.clone(),
                needed: self.bytes_needed,
                available: self.bytes_available,
            });
        }
        Ok(())
    }
}

/// Works out what `download_missing` must fetch. Files of the right size that were never hashed are hashed
/// first (reported as [`ModelsEvent::Checking`]), so the plan, and the size the user agrees to, are exact.
pub fn plan(
    paths: &Paths,
    manifest: &ModelsManifest,
    include_optional: bool,
    on_event: &mut dyn FnMut(ModelsEvent),
) -> Result<Plan, ModelsError> {
    let statuses = verify(paths, manifest, VerifyScope::Unverified, on_event)?;
    let dir = paths.models_dir();
    let available = available_space(&dir)?;
    Ok(Plan::from_statuses(dir, &statuses, include_optional, available))
}

/// Free bytes where `dir` is (or will be, when it does not exist yet).
fn available_space(dir: &Path) -> Result<u64, ModelsError> {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(dir);
    fs4::available_space(existing).map_err(ModelsError::io("measure the free space of", existing))
}

/// How one model ended in a download run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ModelOutcome {
    /// Already present and verified: nothing was fetched.
    AlreadyPresent,
    /// A file was there unverified and hashed to the right value: nothing was fetched.
    VerifiedExisting,
    /// Downloaded and verified; `bytes` came over the network, `resumed_from` were already on disk.
    Fetched {
        bytes: u64,
        resumed_from: u64,
    },
    Failed {
        error: String,
    },
    /// Stopped by the user; the partial file is kept for the next run.
    Cancelled,
    /// Not started, because the run was cancelled before.
    NotStarted,
}

/// One model's line in a [`DownloadReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelReport {
    pub name: String,
    pub size: u64,
    #[serde(flatten)]
    pub outcome: ModelOutcome,
}

/// What a download run did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadReport {
    pub models_dir: PathBuf,
    /// Models downloaded in this run.
    pub fetched: usize,
    /// Bytes that came over the network.
    pub bytes_downloaded: u64,
    pub cancelled: bool,
    pub models: Vec<ModelReport>,
}

impl DownloadReport {
    /// Whether every model is now present.
    pub fn all_present(&self) -> bool {
        self.models.iter().all(|m| {
            matches!(
                m.outcome,
                ModelOutcome::AlreadyPresent | ModelOutcome::VerifiedExisting | ModelOutcome::Fetched { .. }
            )
        })
    }
}

/// Fetches the models `plan` lists (and only those: the plan is what the user agreed to), after checking
/// the space again. A model that turned up meanwhile is not fetched; a file that is not the model is taken
/// away first — set aside into the store (see [`store`]) when an installed version's manifest needs its
/// content, deleted otherwise; a failed model does not stop the others; a cancel keeps the partial file
/// and stops the run.
pub fn download_missing(
    client: &Client,
    paths: &Paths,
    manifest: &ModelsManifest,
    plan: &Plan,
    policy: &RetryPolicy,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(ModelsEvent),
) -> Result<DownloadReport, ModelsError> {
    let dir = paths.models_dir();
    std::fs::create_dir_all(&dir).map_err(ModelsError::io("create the models folder", &dir))?;
    let _lock = lock_models_dir(&dir)?;
    plan.check_space()?;
    let mut folder = Folder {
        record: VerifiedRecord::load(&dir),
        needed: match installed_bundle_dirs(paths) {
            Ok(dirs) => store::Needed::of(&dirs),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the installed versions; keeping every model file");
                store::Needed::everything()
            }
        },
        dir: dir.clone(),
    };
    let mut report = DownloadReport {
        models_dir: dir.clone(),
        fetched: 0,
        bytes_downloaded: 0,
        cancelled: false,
        models: Vec::new(),
    };
    for name in &plan.present {
        if let Some(entry) = manifest.entry(name) {
            report.models.push(ModelReport {
                name: name.clone(),
                size: entry.size,
                outcome: ModelOutcome::AlreadyPresent,
            });
        }
    }
    for planned in &plan.fetch {
        let outcome = if report.cancelled || cancel.is_cancelled() {
            report.cancelled = true;
            ModelOutcome::NotStarted
        } else {
            match manifest.entry(&planned.name) {
                Some(entry) => fetch_one(client, &mut folder, entry, policy, cancel, on_event)?,
                None => ModelOutcome::Failed {
                    error: format!("{} is not in the manifest {}", planned.name, manifest.location),
                },
            }
        };
        match outcome {
            ModelOutcome::Fetched { bytes, .. } => {
                report.fetched += 1;
                report.bytes_downloaded += bytes;
            }
            ModelOutcome::Cancelled => report.cancelled = true,
            _ => {}
        }
        let line = ModelReport {
            name: planned.name.clone(),
            size: planned.size,
            outcome,
        };
        on_event(ModelsEvent::Finished(line.clone()));
        report.models.push(line);
    }
    Ok(report)
}

/// A [`download_missing`] running on its own thread.
pub type ModelsDownloadHandle = std::thread::JoinHandle<Result<DownloadReport, ModelsError>>;

/// Runs [`download_missing`] on a named background thread (for the window, whose UI thread never
/// blocks): events arrive on the returned channel, and `notify` is called after each one is sent (pass
/// the window's repaint request).
pub fn spawn_download_missing(
    client: Client,
    paths: Paths,
    manifest: ModelsManifest,
    plan: Plan,
    policy: RetryPolicy,
    cancel: CancelToken,
    notify: impl Fn() + Send + 'static,
) -> Result<(ModelsDownloadHandle, std::sync::mpsc::Receiver<ModelsEvent>), ModelsError> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let models_dir = paths.models_dir();
    let handle = std::thread::Builder::new()
        .name("models-download".into())
        .spawn(move || {
            download_missing(
                &client,
                &paths,
                &manifest,
                &plan,
                &policy,
                &cancel,
                &mut |event| {
                    // Nobody listening only means nobody watches; the download goes on.
                    let _ = sender.send(event);
                    notify();
                },
            )
        })
        .map_err(ModelsError::io("start a download thread for", &models_dir))?;
    Ok((handle, receiver))
}

/// What a download run knows of the models folder: where it is, what was hashed, and what the installed
/// versions need (a file they need is set aside, never deleted).
struct Folder {
    dir: PathBuf,
    record: VerifiedRecord,
    needed: store::Needed,
}

fn fetch_one(
    client: &Client,
    folder: &mut Folder,
    entry: &ModelEntry,
    policy: &RetryPolicy,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(ModelsEvent),
) -> Result<ModelOutcome, ModelsError> {
    let Folder { dir, record, needed } = folder;
    let dir = dir.as_path();
    let dest = dir.join(&entry.name);
    match state_of(dir, record, entry)? {
        ModelState::Present => return Ok(ModelOutcome::AlreadyPresent),
        ModelState::Unverified => {
            if hash_and_remember(&dest, entry, record, on_event)? {
                record.save(dir)?;
                return Ok(ModelOutcome::VerifiedExisting);
            }
            store::set_aside(dir, record, &entry.name, needed)?;
        }
        ModelState::Corrupt { .. } => {
            store::set_aside(dir, record, &entry.name, needed)?;
        }
        ModelState::Missing | ModelState::Partial { .. } => {}
    }
    let request = DownloadRequest {
        expected_size: Some(entry.size),
        expected_sha256: Some(entry.sha256.clone()),
        ..DownloadRequest::new(entry.url.as_str(), &dest)
    };
    let name = entry.name.clone();
    let result = download::download(client, &request, policy, cancel, &mut |event| {
        on_event(ModelsEvent::Downloading {
            name: name.clone(),
            event,
        })
    });
    match result {
        Ok(outcome) => {
            // The download hashed every byte on the way in; record that, with the file's stamp now.
            if let Some(stamp) = FileStamp::of(&outcome.path)? {
                record.remember(&entry.name, &stamp, &outcome.sha256);
                record.save(dir)?;
            }
            Ok(ModelOutcome::Fetched {
                bytes: outcome.size.saturating_sub(outcome.resumed_from),
                resumed_from: outcome.resumed_from,
            })
        }
        Err(DownloadError::Cancelled { .. }) => Ok(ModelOutcome::Cancelled),
        Err(e) => Ok(ModelOutcome::Failed { error: e.to_string() }),
    }
}

/// Whether another process holds the models folder (a `models download`, or an update moving models).
/// The updater asks before it stops the running backend, so an update never proves a version healthy
/// without the models it carries. A missing folder is not busy.
pub fn models_folder_busy(paths: &Paths) -> bool {
    let dir = paths.models_dir();
    dir.is_dir() && matches!(lock_models_dir(&dir), Err(ModelsError::Busy { .. }))
}

/// The models folder's lock, for a process about to remove the folder (`uninstall`): `Ok(None)` when
/// there is no models folder; [`ModelsError::Busy`] while a download or an update holds it.
pub fn lock_models_folder(paths: &Paths) -> Result<Option<File>, ModelsError> {
    let dir = paths.models_dir();
    if !dir.is_dir() {
        return Ok(None);
    }
    lock_models_dir(&dir).map(Some)
}

/// An exclusive OS lock on the models folder, released when the file is dropped (or the process dies).
fn lock_models_dir(dir: &Path) -> Result<File, ModelsError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(ModelsError::io("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ModelsError::Busy { lock: path }),
        Err(std::fs::TryLockError::Error(e)) => Err(ModelsError::io("lock", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn manifest_for(models: &[(&str, &[u8], bool)]) -> ModelsManifest {
        ModelsManifest {
            location: "test".into(),
            models: models
                .iter()
                .map(|(name, bytes, required)| ModelEntry {
                    name: (*name).into(),
                    url: reqwest::Url::parse(&format!("https://example.com/{name}")).unwrap(),
                    size: bytes.len() as u64,
                    sha256: sha256_hex(bytes),
                    required: *required,
                    description: None,
                })
                .collect(),
        }
    }

    fn status_of(name: &str, size: u64, required: bool, state: ModelState) -> ModelStatus {
        ModelStatus {
            name: name.into(),
            size,
            required,
            state,
        }
    }

    #[test]
    fn a_plan_counts_only_what_is_missing_and_refuses_when_it_does_not_fit() {
        let gib = 1u64 << 30;
        let statuses = [
            status_of("present.gguf", 4 * gib, true, ModelState::Present),
            status_of("missing.gguf", 4 * gib, true, ModelState::Missing),
            status_of("half.gguf", 2 * gib, true, ModelState::Partial { done: gib }),
            status_of("extra.gguf", 8 * gib, false, ModelState::Missing),
        ];
        let plan = Plan::from_statuses(PathBuf::from("/m"), &statuses, false, 5 * gib);
        assert_eq!(
            plan.bytes_needed,
            5 * gib,
            "4 GiB missing + the 1 GiB a partial file lacks"
        );
        assert_eq!(plan.present, ["present.gguf"]);
        assert_eq!(plan.optional_skipped, ["extra.gguf"]);
        plan.check_space().unwrap();

        let short = Plan::from_statuses(PathBuf::from("/m"), &statuses, false, 5 * gib - 1);
        let message = short.check_space().unwrap_err().to_string();
        assert!(
            message.contains("5.00 GiB in /m") && message.contains("free") && message.contains("--home"),
            "{message}"
        );

        let with_optional = Plan::from_statuses(PathBuf::from("/m"), &statuses, true, 5 * gib);
        assert_eq!(with_optional.bytes_needed, 13 * gib);
        assert!(with_optional.check_space().is_err());
    }

    #[test]
    fn status_tells_missing_partial_unverified_present_and_corrupt_apart() {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path());
        let manifest = manifest_for(&[
            ("missing.bin", b"aaaa", true),
            ("partial.bin", b"bbbbbbbb", true),
            ("copied.bin", b"cccc", true),
            ("short.bin", b"dddd", true),
            ("wrong.bin", b"eeee", true),
        ]);
        let dir = paths.models_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("partial.bin.part"), b"bbb").unwrap();
        std::fs::write(dir.join("partial.bin.part.json"), b"{}").unwrap();
        std::fs::write(dir.join("copied.bin"), b"cccc").unwrap();
        std::fs::write(dir.join("short.bin"), b"dd").unwrap();
        std::fs::write(dir.join("wrong.bin"), b"EEEE").unwrap();

        let states = |list: Vec<ModelStatus>| list.into_iter().map(|s| s.state).collect::<Vec<_>>();
        let before = states(status(&paths, &manifest).unwrap());
        assert_eq!(before[0], ModelState::Missing);
        assert_eq!(before[1], ModelState::Partial { done: 3 });
        assert_eq!(before[2], ModelState::Unverified);
        assert!(matches!(before[3], ModelState::Corrupt { .. }), "{:?}", before[3]);
        assert_eq!(before[4], ModelState::Unverified, "right size, never hashed");

        let mut checked = Vec::new();
        let after = verify(&paths, &manifest, VerifyScope::Unverified, &mut |e| {
            if let ModelsEvent::Checking { name, .. } = e {
                checked.push(name)
            }
        })
        .unwrap();
        checked.dedup();
        assert_eq!(checked, ["copied.bin", "wrong.bin"]);
        let after = states(after);
        assert_eq!(after[2], ModelState::Present);
        assert!(matches!(&after[4], ModelState::Corrupt { reason } if reason.contains("SHA256")));

        // The record now answers without hashing: a second status agrees and reads nothing.
        assert_eq!(states(status(&paths, &manifest).unwrap()), after);
    }

    #[test]
    fn a_file_changed_after_hashing_is_unverified_again() {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path());
        let manifest = manifest_for(&[("m.bin", b"good", true)]);
        std::fs::create_dir_all(paths.models_dir()).unwrap();
        let file = paths.models_dir().join("m.bin");
        std::fs::write(&file, b"good").unwrap();
        verify(&paths, &manifest, VerifyScope::All, &mut |_| {}).unwrap();
        assert_eq!(status(&paths, &manifest).unwrap()[0].state, ModelState::Present);

        std::fs::write(&file, b"evil").unwrap();
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(
            status(&paths, &manifest).unwrap()[0].state,
            ModelState::Unverified
        );
        let verified = verify(&paths, &manifest, VerifyScope::All, &mut |_| {}).unwrap();
        assert!(matches!(verified[0].state, ModelState::Corrupt { .. }));
    }

    #[test]
    fn a_second_download_run_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock_models_dir(dir.path()).unwrap();
        let err = lock_models_dir(dir.path()).unwrap_err();
        assert!(matches!(err, ModelsError::Busy { .. }), "{err}");
    }
}
