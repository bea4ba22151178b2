//! The shared models folder in two parts: the **live view** every backend reads, `<models>/<name>`, and
//! a content-addressed **store** of files set aside, `<models>/.by-hash/<sha256>`, so that installed
//! versions whose manifests give one name different content can each get theirs back.
//!
//! The rules every function here keeps:
//! - **Nothing another installed version needs is deleted.** Before a file loses its live name, its
//!   SHA256 is looked up (in the record when the file is unchanged, else by hashing it); when the manifest
//!   of an installed version names that hash, the file is moved into the store (a rename: same folder,
//!   same file system), otherwise it is deleted. A manifest that cannot be read counts as needing
//!   everything.
//! - **Identical content is kept once**: a hash is live or stored, never both.
//! - **The record follows every move.** A stored file is recorded under `.by-hash/<sha256>` with its
//!   stamp, so putting it back needs no re-hash, and a live file is recorded under its name.
//! - **One writer at a time**: every operation holds the models-folder lock that `models download`
//!   holds, and answers [`ModelsError::Busy`] at once when it is taken.
//!
//! Who calls what, and when (the updater; see docs/MODELS.md): [`adopt_models_of_bundle`] while no
//! backend runs, after the old backend stopped and before the new one starts; [`activate_models_for`]
//! before the backend of a version switched back to starts ([`prepare_models_for`] does both, for any
//! start); [`prune_model_store`] after versions were removed. `models download` sets a non-matching file
//! aside by the same rule.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{
    BUNDLED_MODELS_DIR, FileStamp, ManifestLocation, ModelEntry, ModelState, ModelsError, ModelsManifest,
    VerifiedRecord, hash_and_remember, hash_file, lock_models_dir, state_of,
};
use crate::paths::Paths;

/// The store of set-aside model files inside the models folder, one file per SHA256.
pub const STORE_DIR: &str = ".by-hash";

/// The SHA256 (with the size) of every model the manifests of some installed versions name.
#[derive(Debug, Default)]
pub(super) struct Needed {
    sizes: BTreeMap<String, u64>,
    /// A manifest could not be read: then every file is kept rather than guessed about.
    unknown: bool,
}

impl Needed {
    /// What the versions in `bundle_dirs` need. A folder that is gone needs nothing.
    pub(super) fn of(bundle_dirs: &[PathBuf]) -> Needed {
        let mut needed = Needed::default();
        for dir in bundle_dirs {
            if !dir.is_dir() {
                continue;
            }
            match manifest_of(dir) {
                Ok(Some(manifest)) => {
                    for entry in manifest.models {
                        needed.sizes.insert(entry.sha256, entry.size);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(
                        bundle = %dir.display(),
                        error = %e,
                        "cannot read the models manifest of an installed version; keeping every model file it might need"
                    );
                    needed.unknown = true;
                }
            }
        }
        needed
    }

    /// When nobody can say what is needed: every file is kept.
    pub(super) fn everything() -> Needed {
        Needed {
            unknown: true,
            ..Needed::default()
        }
    }

    fn wants(&self, sha256: &str) -> bool {
        self.unknown || self.sizes.contains_key(sha256)
    }

    /// Whether a file of `size` bytes may be needed, so that its hash is worth computing.
    fn may_want_size(&self, size: u64) -> bool {
        self.unknown || self.sizes.values().any(|s| *s == size)
    }
}

/// The models manifest a bundle's `agent.json` names; `None` when it names none.
fn manifest_of(bundle_dir: &Path) -> Result<Option<ModelsManifest>, ModelsError> {
    let spec = crate::agent::AgentSpec::load(bundle_dir)?;
    let Some(path) = spec.models_manifest_path(bundle_dir) else {
        return Ok(None);
    };
    ModelsManifest::load(&ManifestLocation::File(path)).map(Some)
}

/// The bundle folder of every installed version, newest first.
pub fn installed_bundle_dirs(paths: &Paths) -> Result<Vec<PathBuf>, ModelsError> {
    let installer = crate::install::Installer::new(paths.install_dir());
    Ok(installer
        .installed_versions()?
        .iter()
        .map(|v| installer.version_dir(v))
        .collect())
}

/// [`installed_bundle_dirs`] without `bundle_dir`: the versions whose models must survive a change made
/// for `bundle_dir` (the `keep_for` of [`adopt_bundled_models`] and [`activate_models_for`]).
pub fn other_installed_bundle_dirs(paths: &Paths, bundle_dir: &Path) -> Result<Vec<PathBuf>, ModelsError> {
    let mut dirs = installed_bundle_dirs(paths)?;
    dirs.retain(|dir| !same_dir(dir, bundle_dir));
    Ok(dirs)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

fn store_path(models_dir: &Path, sha256: &str) -> PathBuf {
    models_dir.join(STORE_DIR).join(sha256)
}

/// The record's key for a stored file (a model name never starts with a dot, so keys cannot collide).
fn store_key(sha256: &str) -> String {
    format!("{STORE_DIR}/{sha256}")
}

/// Moves the models a bundle carries (`<bundle_dir>/models/<name>`) into the live view, keeping for the
/// versions in `keep_for` (the other installed versions' bundle folders) every file their manifests need.
///
/// For each bundled file named in `manifest`: a duplicate of the live file is dropped; a file that does
/// not match its entry is dropped with a warning and nothing live changes (`models download` then
/// fetches the model); a match takes the live name, after the file there was set aside into the store
/// when a version in `keep_for` needs it (deleted otherwise). Files the manifest does not name are left
/// alone. Holds the models-folder lock ([`ModelsError::Busy`] when a download holds it). Returns the names
/// that changed.
pub fn adopt_bundled_models(
    bundle_dir: &Path,
    paths: &Paths,
    manifest: &ModelsManifest,
    keep_for: &[PathBuf],
) -> Result<Vec<String>, ModelsError> {
    let bundled = bundle_dir.join(BUNDLED_MODELS_DIR);
    if !bundled.is_dir() {
        return Ok(Vec::new());
    }
    let dir = paths.models_dir();
    std::fs::create_dir_all(&dir).map_err(ModelsError::io("create the models folder", &dir))?;
    let _lock = lock_models_dir(&dir)?;
    sweep_adopt_leftovers(&dir);
    let needed = Needed::of(keep_for);
    let mut record = VerifiedRecord::load(&dir);
    let mut adopted = Vec::new();
    for entry in &manifest.models {
        let source = bundled.join(&entry.name);
        // Only a regular file is adopted: a link would be moved as a link and, from the shared folder,
        // point at whatever its relative target names there (another version, anything in the data folder).
        match std::fs::symlink_metadata(&source) {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                tracing::warn!(model = %entry.name, "the bundled model is a symbolic link; it is not adopted");
                continue;
            }
            _ => continue,
        }
        if live_matches(&dir, &mut record, entry)? {
            tracing::info!(model = %entry.name, "the bundled copy duplicates a present model; removing it");
            remove_quietly(&source);
            drop_stored_duplicate(&dir, &mut record, &entry.sha256)?;
            continue;
        }
        let size = FileStamp::of(&source)?.map(|s| s.size).unwrap_or(0);
        let hash = if size == entry.size {
            Some(hash_file(&source, &mut |_| {})?)
        } else {
            None
        };
        if hash.as_deref() != Some(entry.sha256.as_str()) {
            tracing::warn!(
                model = %entry.name,
                path = %source.display(),
                expected_sha256 = %entry.sha256,
                actual_sha256 = hash.as_deref().unwrap_or("(wrong size)"),
                "the bundled model does not match the manifest; removing it, `models download` will fetch it"
            );
            remove_quietly(&source);
            continue;
        }
        set_aside(&dir, &mut record, &entry.name, &needed)?;
        put_live(&dir, &mut record, &source, entry)?;
        adopted.push(entry.name.clone());
    }
    Ok(adopted)
}

/// [`adopt_bundled_models`] with the manifest the bundle's own `agent.json` names (a bundle that names
/// none carries no models, and nothing happens), keeping what every other installed version needs
/// ([`other_installed_bundle_dirs`]).
pub fn adopt_models_of_bundle(bundle_dir: &Path, paths: &Paths) -> Result<Vec<String>, ModelsError> {
    let Some(manifest) = manifest_of(bundle_dir)? else {
        return Ok(Vec::new());
    };
    let keep_for = other_installed_bundle_dirs(paths, bundle_dir)?;
    adopt_bundled_models(bundle_dir, paths, &manifest, &keep_for)
}

/// Everything the version in `bundle_dir` needs before its backend starts, in one call: the models its
/// bundle carries are adopted ([`adopt_models_of_bundle`]), then the ones the store holds are put back
/// ([`activate_models_for`]), keeping what every other installed version needs. Call it while no backend
/// runs, right before this one starts (a new version's health check, a rollback, a restart after
/// recovery); when both have nothing to do it only reads the manifest. Returns the names changed.
pub fn prepare_models_for(bundle_dir: &Path, paths: &Paths) -> Result<Vec<String>, ModelsError> {
    let mut changed = adopt_models_of_bundle(bundle_dir, paths)?;
    let keep_for = other_installed_bundle_dirs(paths, bundle_dir)?;
    for name in activate_models_for(bundle_dir, paths, &keep_for)? {
        if !changed.contains(&name) {
            changed.push(name);
        }
    }
    Ok(changed)
}

/// Makes the live view what the version in `bundle_dir` needs, from the store: for each entry of its
/// manifest whose live file has other content while `.by-hash/<sha256>` holds the right one, the live file
/// is set aside (kept in the store when a version in `keep_for` needs it) and the stored one takes its
/// place. Call it before that version's backend starts (a rollback, a switch). Entries the store cannot
/// serve are left as they are (`models download` fetches them). A version without a models manifest needs
/// nothing. Returns the names switched.
pub fn activate_models_for(
    bundle_dir: &Path,
    paths: &Paths,
    keep_for: &[PathBuf],
) -> Result<Vec<String>, ModelsError> {
    let Some(manifest) = manifest_of(bundle_dir)? else {
        return Ok(Vec::new());
    };
    let dir = paths.models_dir();
    if !dir.join(STORE_DIR).is_dir() {
        return Ok(Vec::new());
    }
    let _lock = lock_models_dir(&dir)?;
    let needed = Needed::of(keep_for);
    let mut record = VerifiedRecord::load(&dir);
    let mut switched = Vec::new();
    for entry in &manifest.models {
        let stored = store_path(&dir, &entry.sha256);
        if !stored.is_file() {
            continue;
        }
        if live_matches(&dir, &mut record, entry)? {
            drop_stored_duplicate(&dir, &mut record, &entry.sha256)?;
            continue;
        }
        if !stored_matches(&dir, &mut record, entry)? {
            tracing::warn!(
                path = %stored.display(),
                "a stored model file does not hash to its name; deleting it, `models download` will fetch the model"
            );
            delete(&stored)?;
            record.forget(&store_key(&entry.sha256));
            record.save(&dir)?;
            continue;
        }
        set_aside(&dir, &mut record, &entry.name, &needed)?;
        put_live(&dir, &mut record, &stored, entry)?;
        tracing::info!(model = %entry.name, sha256 = %entry.sha256, "put a stored model file back in place");
        switched.push(entry.name.clone());
    }
    Ok(switched)
}

/// Deletes the stored files (`.by-hash/*`) that no manifest of `installed_bundle_dirs` (every installed
/// version) needs; call it after versions were removed. Never touches the live files. When a manifest
/// cannot be read, nothing is deleted. Returns the hashes deleted.
pub fn prune_model_store(
    paths: &Paths,
    installed_bundle_dirs: &[PathBuf],
) -> Result<Vec<String>, ModelsError> {
    let dir = paths.models_dir();
    let store = dir.join(STORE_DIR);
    if !store.is_dir() {
        return Ok(Vec::new());
    }
    let _lock = lock_models_dir(&dir)?;
    let needed = Needed::of(installed_bundle_dirs);
    if needed.unknown {
        return Ok(Vec::new());
    }
    let mut record = VerifiedRecord::load(&dir);
    let mut removed = Vec::new();
    for item in std::fs::read_dir(&store).map_err(ModelsError::io("list", &store))? {
        let item = item.map_err(ModelsError::io("list", &store))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if needed.sizes.contains_key(&name) {
            continue;
        }
        tracing::info!(sha256 = %name, "deleting a stored model file no installed version needs");
        delete(&item.path())?;
        removed.push(name);
    }
    // Entries for stored files that are gone (deleted now, or by hand) vouch for nothing.
    record
        .files
        .retain(|key, _| match key.strip_prefix(&format!("{STORE_DIR}/")) {
            Some(hash) => store.join(hash).is_file(),
            None => true,
        });
    record.save(&dir)?;
    removed.sort();
    Ok(removed)
}

/// Takes the live file `name` out of the live view so another file can take its name: into the store when
/// a version in `needed` still needs its content (or a copy is stored already), else deleted. The record
/// follows. Returns the hash it was stored under, if it was.
pub(super) fn set_aside(
    dir: &Path,
    record: &mut VerifiedRecord,
    name: &str,
    needed: &Needed,
) -> Result<Option<String>, ModelsError> {
    let path = dir.join(name);
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            record.forget(name);
            return Ok(None);
        }
        Err(e) => return Err(ModelsError::io("inspect", &path)(e)),
    };
    if meta.is_file() {
        let stamp = FileStamp::from_metadata(&meta);
        if let Some(hash) = live_hash(&path, name, &stamp, record, needed)?
            && needed.wants(&hash)
        {
            let stored = store_path(dir, &hash);
            if stored.is_file() {
                // The same content is stored already: the live copy is the duplicate.
                delete(&path)?;
            } else {
                let store = dir.join(STORE_DIR);
                std::fs::create_dir_all(&store).map_err(ModelsError::io("create", &store))?;
                move_file(&path, &stored)?;
                if let Some(stamp) = FileStamp::of(&stored)? {
                    record.remember(&store_key(&hash), &stamp, &hash);
                }
            }
            record.forget(name);
            record.save(dir)?;
            tracing::info!(model = %name, sha256 = %hash, "set a model file aside: an installed version needs it");
            return Ok(Some(hash));
        }
    }
    tracing::info!(path = %path.display(), "deleting a model file that does not match the manifest");
    delete(&path)?;
    record.forget(name);
    record.save(dir)?;
    Ok(None)
}

/// The content hash of the live file `name` (stamped `stamp`) when it may matter: from the record while the
/// file is unchanged, else hashed, but only when a needed model has its size.
fn live_hash(
    path: &Path,
    name: &str,
    stamp: &FileStamp,
    record: &mut VerifiedRecord,
    needed: &Needed,
) -> Result<Option<String>, ModelsError> {
    if let Some(hash) = record.hash_if_unchanged(name, stamp) {
        return Ok(Some(hash.to_owned()));
    }
    if !needed.may_want_size(stamp.size) {
        return Ok(None);
    }
    // Nothing of the launcher writes a live file while the lock is held, so the hash stays true.
    hash_file(path, &mut |_| {}).map(Some)
}

/// Whether the live file of `entry` is the model (per the record, or hashed now when it is unverified).
fn live_matches(dir: &Path, record: &mut VerifiedRecord, entry: &ModelEntry) -> Result<bool, ModelsError> {
    match state_of(dir, record, entry)? {
        ModelState::Present => Ok(true),
        ModelState::Unverified => {
            let matches = hash_and_remember(&dir.join(&entry.name), entry, record, &mut |_| {})?;
            record.save(dir)?;
            Ok(matches)
        }
        _ => Ok(false),
    }
}

/// Whether `.by-hash/<entry.sha256>` holds the model (per the record, or hashed now).
fn stored_matches(dir: &Path, record: &mut VerifiedRecord, entry: &ModelEntry) -> Result<bool, ModelsError> {
    let path = store_path(dir, &entry.sha256);
    let key = store_key(&entry.sha256);
    let Some(stamp) = FileStamp::of(&path)? else {
        return Ok(false);
    };
    if stamp.size != entry.size {
        return Ok(false);
    }
    if record.hash_if_unchanged(&key, &stamp) == Some(entry.sha256.as_str()) {
        return Ok(true);
    }
    let hash = hash_file(&path, &mut |_| {})?;
    if hash == entry.sha256 && FileStamp::of(&path)?.as_ref() == Some(&stamp) {
        record.remember(&key, &stamp, &hash);
        return Ok(true);
    }
    Ok(false)
}

/// Moves `source` (known to be `entry`'s model) to its live name, records it, and deletes a stored copy of
/// the same content, which is now a duplicate. The live name must be free (see [`set_aside`]).
fn put_live(
    dir: &Path,
    record: &mut VerifiedRecord,
    source: &Path,
    entry: &ModelEntry,
) -> Result<(), ModelsError> {
    let dest = dir.join(&entry.name);
    move_file(source, &dest)?;
    record.forget(&store_key(&entry.sha256));
    if let Some(stamp) = FileStamp::of(&dest)? {
        record.remember(&entry.name, &stamp, &entry.sha256);
    }
    let stored = store_path(dir, &entry.sha256);
    if stored.is_file() {
        delete(&stored)?;
    }
    record.save(dir)
}

/// Deletes `.by-hash/<sha256>` when the live file holds that content.
fn drop_stored_duplicate(dir: &Path, record: &mut VerifiedRecord, sha256: &str) -> Result<(), ModelsError> {
    let stored = store_path(dir, sha256);
    if !stored.is_file() {
        return Ok(());
    }
    delete(&stored)?;
    record.forget(&store_key(sha256));
    record.save(dir)
}

/// Deletes a file (or a folder where a file belongs); one that is gone already is fine.
fn delete(path: &Path) -> Result<(), ModelsError> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ModelsError::io("delete", path)(e)),
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a bundled model copy");
    }
}

/// Renames `source` onto `dest`; across file systems, copies to a temporary file beside `dest`, syncs,
/// renames it into place, then deletes `source`.
fn move_file(source: &Path, dest: &Path) -> Result<(), ModelsError> {
    match std::fs::rename(source, dest) {
        Ok(()) => {
            if let Some(dir) = dest.parent() {
                crate::fsutil::sync_dir(dir);
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => copy_then_delete(source, dest),
        Err(e) => Err(ModelsError::io("move a model file to", dest)(e)),
    }
}

fn copy_then_delete(source: &Path, dest: &Path) -> Result<(), ModelsError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".adopt-")
        .tempfile_in(dir)
        .map_err(ModelsError::io("create a temporary file in", dir))?;
    let mut input = std::fs::File::open(source).map_err(ModelsError::io("open", source))?;
    std::io::copy(&mut input, temp.as_file_mut()).map_err(ModelsError::io("copy a model file to", dest))?;
    temp.as_file_mut()
        .flush()
        .map_err(ModelsError::io("flush", temp.path()))?;
    temp.as_file()
        .sync_all()
        .map_err(ModelsError::io("flush", temp.path()))?;
    temp.persist(dest)
        .map_err(|e| ModelsError::io("move a model file to", dest)(e.error))?;
    crate::fsutil::sync_dir(dir);
    std::fs::remove_file(source).map_err(ModelsError::io("delete", source))
}

/// Removes `.adopt-*` temporary files a copy across file systems left when the launcher died mid-copy.
/// Only called with the models lock held, so no copy is in progress.
fn sweep_adopt_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".adopt-") {
            tracing::info!(path = %entry.path().display(), "removing an interrupted model copy");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::models::{ModelEntry, status};

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn manifest_for(models: &[(&str, &[u8])]) -> ModelsManifest {
        ModelsManifest {
            location: "test".into(),
            models: models
                .iter()
                .map(|(name, bytes)| ModelEntry {
                    name: (*name).into(),
                    url: reqwest::Url::parse(&format!("https://example.com/{name}")).unwrap(),
                    size: bytes.len() as u64,
                    sha256: sha256_hex(bytes),
                    required: true,
                    description: None,
                })
                .collect(),
        }
    }

    /// An installed version `<data>/install/versions/<version>/` whose manifest names `models`.
    fn installed(paths: &Paths, version: &str, models: &[(&str, &[u8])]) -> PathBuf {
        let dir = paths.install_dir().join("versions").join(version);
        std::fs::create_dir_all(&dir).unwrap();
        let agent = serde_json::json!({
            "command": ["backend/agent-backend"],
            "health_url": "http://127.0.0.1:{port}/health",
            "models_manifest": "models.json"
        });
        std::fs::write(dir.join("agent.json"), agent.to_string()).unwrap();
        let entries: Vec<_> = models
            .iter()
            .map(|(name, bytes)| {
                serde_json::json!({
                    "name": name,
                    "url": format!("https://example.com/{name}"),
                    "size": bytes.len(),
                    "sha256": sha256_hex(bytes),
                })
            })
            .collect();
        let doc = serde_json::json!({"schema": 1, "models": entries});
        std::fs::write(dir.join("models.json"), doc.to_string()).unwrap();
        dir
    }

    fn live(paths: &Paths, name: &str, bytes: &[u8]) {
        std::fs::create_dir_all(paths.models_dir()).unwrap();
        std::fs::write(paths.models_dir().join(name), bytes).unwrap();
    }

    #[test]
    fn adopting_moves_matching_bundled_models_and_drops_bad_or_duplicate_copies() {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path().join("home"));
        let bundle = home.path().join("bundle");
        std::fs::create_dir_all(bundle.join("models")).unwrap();
        let manifest = manifest_for(&[("good.bin", b"good"), ("bad.bin", b"fine")]);
        std::fs::write(bundle.join("models/good.bin"), b"good").unwrap();
        std::fs::write(bundle.join("models/bad.bin"), b"evil").unwrap();
        std::fs::write(bundle.join("models/unlisted.txt"), b"keep me").unwrap();

        let adopted = adopt_bundled_models(&bundle, &paths, &manifest, &[]).unwrap();
        assert_eq!(adopted, ["good.bin"]);
        assert!(!bundle.join("models/good.bin").exists(), "moved, not copied");
        assert!(!bundle.join("models/bad.bin").exists(), "a bad copy is not kept");
        assert!(bundle.join("models/unlisted.txt").exists());
        assert_eq!(
            std::fs::read(paths.models_dir().join("good.bin")).unwrap(),
            b"good"
        );
        assert!(!paths.models_dir().join("bad.bin").exists());
        let states = status(&paths, &manifest).unwrap();
        assert_eq!(states[0].state, ModelState::Present, "recorded as verified");
        assert_eq!(states[1].state, ModelState::Missing);

        // A second bundle with the same model: the shared copy stays, the duplicate goes.
        std::fs::write(bundle.join("models/good.bin"), b"good").unwrap();
        assert!(
            adopt_bundled_models(&bundle, &paths, &manifest, &[])
                .unwrap()
                .is_empty()
        );
        assert!(!bundle.join("models/good.bin").exists());
    }

    #[test]
    fn a_file_no_installed_version_needs_is_deleted_and_one_that_is_needed_is_stored() {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path());
        let old = installed(&paths, "1.0.0", &[("m.bin", b"old!")]);
        let dir = paths.models_dir();
        let mut record = VerifiedRecord::load(&dir);

        live(&paths, "m.bin", b"old!");
        let stored = set_aside(
            &dir,
            &mut record,
            "m.bin",
            &Needed::of(std::slice::from_ref(&old)),
        )
        .unwrap();
        assert_eq!(stored.as_deref(), Some(sha256_hex(b"old!").as_str()));
        assert!(!dir.join("m.bin").exists());
        assert_eq!(
            std::fs::read(store_path(&dir, &sha256_hex(b"old!"))).unwrap(),
            b"old!"
        );
        let key = store_key(&sha256_hex(b"old!"));
        assert!(
            VerifiedRecord::load(&dir).files.contains_key(&key),
            "the record follows the move"
        );

        live(&paths, "m.bin", b"junk");
        assert_eq!(
            set_aside(&dir, &mut record, "m.bin", &Needed::of(&[old])).unwrap(),
            None
        );
        assert!(!dir.join("m.bin").exists());
        assert!(
            !store_path(&dir, &sha256_hex(b"junk")).exists(),
            "nobody needs it"
        );
    }

    #[test]
    fn an_installed_version_whose_manifest_cannot_be_read_keeps_every_file() {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path());
        let broken = installed(&paths, "1.0.0", &[]);
        std::fs::write(broken.join("models.json"), "{ not json").unwrap();
        let dir = paths.models_dir();
        live(&paths, "m.bin", b"whatever");
        let mut record = VerifiedRecord::load(&dir);
        let needed = Needed::of(std::slice::from_ref(&broken));
        assert!(set_aside(&dir, &mut record, "m.bin", &needed).unwrap().is_some());
        assert!(store_path(&dir, &sha256_hex(b"whatever")).is_file());

        assert!(prune_model_store(&paths, &[broken]).unwrap().is_empty());
        assert!(
            store_path(&dir, &sha256_hex(b"whatever")).is_file(),
            "kept: nobody can say it is unneeded"
        );
    }

    #[test]
    fn a_stored_file_that_does_not_hash_to_its_name_is_not_put_in_place() {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path());
        let old = installed(&paths, "1.0.0", &[("m.bin", b"old!")]);
        let dir = paths.models_dir();
        live(&paths, "m.bin", b"new!");
        std::fs::create_dir_all(dir.join(STORE_DIR)).unwrap();
        std::fs::write(store_path(&dir, &sha256_hex(b"old!")), b"bad!").unwrap();

        assert!(activate_models_for(&old, &paths, &[]).unwrap().is_empty());
        assert_eq!(
            std::fs::read(dir.join("m.bin")).unwrap(),
            b"new!",
            "the live file stays"
        );
        assert!(
            !store_path(&dir, &sha256_hex(b"old!")).exists(),
            "the bad stored file is gone"
        );
    }

    #[test]
    fn moving_models_is_refused_while_a_download_holds_the_folder() {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path().join("home"));
        let bundle = installed(&paths, "1.0.0", &[("m.bin", b"data")]);
        std::fs::create_dir_all(bundle.join("models")).unwrap();
        std::fs::write(bundle.join("models/m.bin"), b"data").unwrap();
        std::fs::create_dir_all(paths.models_dir().join(STORE_DIR)).unwrap();
        let _held = lock_models_dir(&paths.models_dir()).unwrap();

        let busy = |r: Result<Vec<String>, ModelsError>| matches!(r, Err(ModelsError::Busy { .. }));
        assert!(busy(adopt_models_of_bundle(&bundle, &paths)));
        assert!(busy(activate_models_for(&bundle, &paths, &[])));
        assert!(busy(prune_model_store(&paths, &[])));
        assert!(bundle.join("models/m.bin").exists(), "nothing moved");
    }

    #[test]
    fn the_cross_file_system_fallback_copies_then_deletes_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("a/src.bin");
        let dest = dir.path().join("b/dest.bin");
        std::fs::create_dir_all(source.parent().unwrap()).unwrap();
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&source, b"payload").unwrap();
        copy_then_delete(&source, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"payload");
        assert!(!source.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }
}
