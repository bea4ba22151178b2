//! `verified.json` in the models folder: what each model file hashed to, and the size and modification time
//! the file had then, so `models status` can trust a 4 GB file without reading it again.
//!
//! An entry only vouches for a file whose size and modification time are unchanged; anything else makes
//! the file "unverified" until it is hashed again. The record is a cache: a missing or unreadable one only
//! costs a re-hash, so it is never an error to lose it. Writes are atomic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::ModelsError;

/// The record's file name inside the models folder.
pub const RECORD_FILE: &str = "verified.json";
const RECORD_SCHEMA: u32 = 1;

/// What one file hashed to, and how it looked on disk at the time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedFile {
    /// Lowercase hex of the file's actual content (which may differ from the manifest's: a corrupt file
    /// stays recorded as corrupt until it changes).
    pub sha256: String,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
}

/// The whole record: model name → what its file hashed to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedRecord {
    schema: u32,
    pub files: BTreeMap<String, VerifiedFile>,
}

impl VerifiedRecord {
    /// Reads the record of `models_dir`; a missing, unreadable or foreign one reads as empty.
    pub fn load(models_dir: &Path) -> Self {
        let path = models_dir.join(RECORD_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the models record; files will be hashed again");
                return Self::default();
            }
        };
        match serde_json::from_str::<VerifiedRecord>(&text) {
            Ok(record) if record.schema == RECORD_SCHEMA => record,
            Ok(_) | Err(_) => {
                tracing::warn!(path = %path.display(), "ignoring an unreadable models record; files will be hashed again");
                Self::default()
            }
        }
    }

    /// Writes the record atomically.
    pub fn save(&self, models_dir: &Path) -> Result<(), ModelsError> {
        let mut record = self.clone();
        record.schema = RECORD_SCHEMA;
        let path = models_dir.join(RECORD_FILE);
        let text = serde_json::to_vec_pretty(&record).map_err(|e| ModelsError::Io {
            action: "encode",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        crate::fsutil::write_atomic(&path, &text).map_err(|e| ModelsError::Record {
            path,
            reason: e.to_string(),
        })
    }

    /// The recorded hash of `name`, when the file on disk still has the size and time recorded with it.
    pub fn hash_if_unchanged(&self, name: &str, on_disk: &FileStamp) -> Option<&str> {
        self.files
            .get(name)
            .filter(|f| f.size == on_disk.size && f.mtime_ns == on_disk.mtime_ns)
            .map(|f| f.sha256.as_str())
    }

    /// Remembers that the file `name`, as stamped, hashed to `sha256`.
    pub fn remember(&mut self, name: &str, stamp: &FileStamp, sha256: &str) {
        self.files.insert(
            name.to_owned(),
            VerifiedFile {
                sha256: sha256.to_ascii_lowercase(),
                size: stamp.size,
                mtime_ns: stamp.mtime_ns,
            },
        );
    }

    pub fn forget(&mut self, name: &str) {
        self.files.remove(name);
    }
}

/// A file's size and modification time: enough to notice that it changed since it was hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: u64,
}

impl FileStamp {
    /// The stamp of `path`; `Ok(None)` when there is no such file.
    pub fn of(path: &Path) -> Result<Option<FileStamp>, ModelsError> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(FileStamp::from_metadata(&meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ModelsError::Io {
                action: "inspect",
                path: PathBuf::from(path),
                source,
            }),
        }
    }

    pub fn from_metadata(meta: &std::fs::Metadata) -> FileStamp {
        // A file system without modification times stamps 0: the size alone then guards the record.
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        FileStamp {
            size: meta.len(),
            mtime_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_round_trip_and_vouches_only_for_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = FileStamp {
            size: 10,
            mtime_ns: 1_700_000_000_123_456_789,
        };
        let mut record = VerifiedRecord::default();
        record.remember("a.gguf", &stamp, "ABCD");
        record.save(dir.path()).unwrap();

        let loaded = VerifiedRecord::load(dir.path());
        assert_eq!(loaded.hash_if_unchanged("a.gguf", &stamp), Some("abcd"));
        let touched = FileStamp {
            mtime_ns: stamp.mtime_ns + 1,
            ..stamp.clone()
        };
        assert_eq!(loaded.hash_if_unchanged("a.gguf", &touched), None);
        let grown = FileStamp { size: 11, ..stamp };
        assert_eq!(loaded.hash_if_unchanged("a.gguf", &grown), None);
    }

    #[test]
    fn a_corrupt_record_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RECORD_FILE), "{ not json").unwrap();
        assert!(VerifiedRecord::load(dir.path()).files.is_empty());
    }
}
