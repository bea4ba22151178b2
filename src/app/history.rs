//! The update history: each check that found something, each download, install and rollback, with its
//! time, the versions from and to, and the outcome. It is what the seed's "update success rates" and
//! "error monitoring" come down to on one machine, and what "Report a problem" quotes.
//!
//! One JSON object per line in `<data dir>/logs/update-history.jsonl`, appended by the service when a
//! job of those kinds ends (whichever face asked for it, the autopilot included). The file is bounded:
//! past [`MAX_BYTES`] it is cut to its newest half, so it never grows without end.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::JobKind;
use crate::paths::Paths;

/// The file's name in the logs folder.
pub const FILE: &str = "update-history.jsonl";
/// The size past which the oldest half is dropped.
const MAX_BYTES: u64 = 512 * 1024;

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub at: DateTime<Utc>,
    /// `check`, `download`, `install`, `rollback`, or `scheduled_update`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `ok`, `failed`, `rolled_back`, `cancelled`, or (a check, a round) `found`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

pub fn path(paths: &Paths) -> PathBuf {
    paths.logs_dir().join(FILE)
}

/// The record of a finished job, if the history keeps jobs like it (a check that found nothing, backend
/// and models jobs are not kept).
pub fn record_of(
    kind: JobKind,
    installed_before: Option<String>,
    outcome: &Result<Value, String>,
) -> Option<Record> {
    let kind_name = kind.as_str().to_owned();
    let record = |to: Option<String>, outcome: &str, message: Option<String>| Record {
        at: Utc::now(),
        kind: kind_name.clone(),
        from: installed_before.clone(),
        to,
        outcome: outcome.to_owned(),
        message,
    };
    let text = |v: &Value, field: &str| v[field].as_str().map(str::to_owned);
    match (kind, outcome) {
        (JobKind::Check, Ok(v)) => {
            (v["update_available"] == true).then(|| record(text(&v["latest"], "version"), "found", None))
        }
        (JobKind::Download, Ok(v)) => {
            (v["update_available"] == true).then(|| record(text(v, "version"), "ok", None))
        }
        (JobKind::Install, Ok(v)) => text(v, "installed_version").map(|to| record(Some(to), "ok", None)),
        (JobKind::Rollback, Ok(v)) => Some(record(text(v, "to"), "ok", None)),
        (JobKind::ScheduledUpdate, Ok(v)) => {
            if let Some(failed) = text(v, "failed") {
                Some(record(Some(failed), "rolled_back", text(v, "error")))
            } else if let Some(installed) = text(v, "installed") {
                Some(record(Some(installed), "ok", None))
            } else if let Some(error) = text(v, "error") {
                Some(record(text(v, "offered"), "failed", Some(error)))
            } else {
                text(v, "offered").map(|offered| record(Some(offered), "found", None))
            }
        }
        (JobKind::Check | JobKind::Download | JobKind::Install | JobKind::Rollback, Err(message)) => {
            let outcome = if message.starts_with("cancelled") {
                "cancelled"
            } else if message.contains("rolled back to") || message.contains("not healthy") {
                "rolled_back"
            } else {
                "failed"
            };
            Some(record(None, outcome, Some(message.clone())))
        }
        _ => None,
    }
}

/// Appends `record`; a history that cannot be written is logged, never a reason to fail the operation.
/// A check that finds what the newest record already says was found is not written again (the agent's
/// page and the schedule may check often).
pub fn append(paths: &Paths, record: &Record) {
    let path = path(paths);
    if record.outcome == "found"
        && let Some(newest) = read(paths, 1).first()
        && newest.outcome == "found"
        && newest.to == record.to
        && newest.from == record.from
    {
        return;
    }
    let result = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(paths.logs_dir())?;
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_BYTES) {
            let all = read_all(&path);
            let keep = &all[all.len() / 2..];
            let mut text = String::new();
            for r in keep {
                text.push_str(&serde_json::to_string(r).unwrap_or_default());
                text.push('\n');
            }
            crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(std::io::Error::other)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        line.push('\n');
        file.write_all(line.as_bytes())
    })();
    if let Err(e) = result {
        tracing::warn!("could not write the update history {}: {e}", path.display());
    }
}

fn read_all(path: &std::path::Path) -> Vec<Record> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect()
}

/// The newest `limit` records, newest first (lines that cannot be read are skipped).
pub fn read(paths: &Paths, limit: usize) -> Vec<Record> {
    let mut all = read_all(&path(paths));
    all.reverse();
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_become_records_and_the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        let ok = |v: Value| Ok::<Value, String>(v);
        let nothing = record_of(
            JobKind::Check,
            Some("1.0.0".into()),
            &ok(serde_json::json!({"update_available": false})),
        );
        assert!(nothing.is_none(), "a check that found nothing is not history");
        let found = record_of(
            JobKind::Check,
            Some("1.0.0".into()),
            &ok(serde_json::json!({"update_available": true, "latest": {"version": "1.1.0"}})),
        )
        .unwrap();
        assert_eq!(
            (found.to.as_deref(), found.outcome.as_str()),
            (Some("1.1.0"), "found")
        );
        let failed = record_of(
            JobKind::Install,
            Some("1.0.0".into()),
            &Err("1.1.0 is not healthy (...): rolled back to 1.0.0, which runs as before".into()),
        )
        .unwrap();
        assert_eq!(failed.outcome, "rolled_back");
        assert!(record_of(JobKind::BackendStart, None, &ok(Value::Null)).is_none());
        append(&paths, &found);
        append(&paths, &failed);
        let read_back = read(&paths, 10);
        assert_eq!(read_back.len(), 2);
        assert_eq!(read_back[0].outcome, "rolled_back", "newest first");
        // The same find again is not written twice.
        append(&paths, &found);
        append(&paths, &found);
        assert_eq!(read(&paths, 10).len(), 3);
        // Past the bound the oldest half goes.
        let big = Record {
            message: Some("x".repeat(4096)),
            outcome: "failed".into(),
            ..found.clone()
        };
        for _ in 0..200 {
            append(&paths, &big);
        }
        let size = std::fs::metadata(path(&paths)).unwrap().len();
        assert!(size <= MAX_BYTES + 8192, "{size}");
        assert!(read(&paths, 1000).len() < 203);
    }
}
