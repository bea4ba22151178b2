//! Folder renames that outlast Windows' short-lived locks.
//!
//! Right after a bundle is unpacked, antivirus scanners (and the search indexer, or an Explorer window
//! showing the folder) open its new executables for a moment. While they do, Windows refuses to rename the
//! folder that holds them with `ERROR_ACCESS_DENIED` (5), `ERROR_SHARING_VIOLATION` (32) or
//! `ERROR_LOCK_VIOLATION` (33). [`rename_dir`] retries exactly those errors, on Windows only, with a short
//! doubling back-off ([`RENAME_BACKOFF`]: 10 attempts, 50 ms doubling, 2.5 s in all), then reports
//! [`InstallError::InUse`] naming the folder that is held. Deleting a folder ([`remove_tree`]) is retried
//! the same way. On Unix each is tried once: none of these errors is transient there.
//!
//! The loop, [`retry_transient`], is generic over the operation, the "is transient" test and the sleep, so
//! it is tested on every platform with a fake operation that fails with simulated OS errors.

use std::io;
use std::path::Path;
use std::time::Duration;

use super::InstallError;

/// How often and how long to retry a transient failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The pause after the first failure; each later pause doubles, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// The pauses together never exceed this.
    pub max_total: Duration,
}

/// For folder renames: long enough for a virus scan of a few new executables, short enough that a folder
/// really held open (an Explorer window) is reported while the user still looks at the progress.
pub(crate) const RENAME_BACKOFF: Backoff = Backoff {
    max_attempts: 10,
    first_delay: Duration::from_millis(50),
    max_delay: Duration::from_millis(800),
    max_total: Duration::from_millis(2500),
};

/// Why [`retry_transient`] gave up.
#[derive(Debug)]
pub(crate) enum RetryError {
    /// A failure that is not transient; it was not retried.
    Permanent(io::Error),
    /// Every attempt failed transiently; the last error, and how many attempts were made.
    Exhausted { error: io::Error, attempts: u32 },
}

/// Runs `op` until it succeeds, fails with an error `is_transient` does not accept, or `backoff` is spent.
/// `sleep` waits between attempts (`std::thread::sleep`, or a recorder in tests).
pub(crate) fn retry_transient<T>(
    mut op: impl FnMut() -> io::Result<T>,
    is_transient: impl Fn(&io::Error) -> bool,
    backoff: &Backoff,
    mut sleep: impl FnMut(Duration),
) -> Result<T, RetryError> {
    let mut delay = backoff.first_delay;
    let mut slept = Duration::ZERO;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op() {
            Ok(value) => return Ok(value),
            Err(error) if !is_transient(&error) => return Err(RetryError::Permanent(error)),
            Err(error) => {
                let pause = delay.min(backoff.max_total.saturating_sub(slept));
                if attempt >= backoff.max_attempts || pause.is_zero() {
                    return Err(RetryError::Exhausted {
                        error,
                        attempts: attempt,
                    });
                }
                sleep(pause);
                slept += pause;
                delay = (delay * 2).min(backoff.max_delay);
            }
        }
    }
}

/// The Windows errors another program's open handle causes, which go away once it closes the handle:
/// `ERROR_ACCESS_DENIED`, `ERROR_SHARING_VIOLATION`, `ERROR_LOCK_VIOLATION`. Platform-independent so that
/// tests can feed it simulated codes; [`rename_dir`] only asks it on Windows.
pub(crate) fn is_windows_sharing_error(error: &io::Error) -> bool {
    const ERROR_ACCESS_DENIED: i32 = 5;
    const ERROR_SHARING_VIOLATION: i32 = 32;
    const ERROR_LOCK_VIOLATION: i32 = 33;
    matches!(
        error.raw_os_error(),
        Some(ERROR_ACCESS_DENIED | ERROR_SHARING_VIOLATION | ERROR_LOCK_VIOLATION)
    )
}

/// Whether a failed rename is worth trying again on this platform.
fn is_transient_rename_error(error: &io::Error) -> bool {
    cfg!(windows) && is_windows_sharing_error(error)
}

/// Renames the folder `from` to `to`, retrying while another program briefly holds it (Windows). `action`
/// and `path` name the step for an error that is not about a held folder (as [`InstallError::Io`]).
pub(crate) fn rename_dir(
    from: &Path,
    to: &Path,
    action: &'static str,
    path: &Path,
) -> Result<(), InstallError> {
    retry_transient(
        || std::fs::rename(from, to),
        is_transient_rename_error,
        &RENAME_BACKOFF,
        std::thread::sleep,
    )
    .map_err(|e| match e {
        RetryError::Permanent(source) => InstallError::io(action, path)(source),
        RetryError::Exhausted { error, attempts } => {
            tracing::debug!(from = %from.display(), to = %to.display(), attempts, "rename kept failing");
            InstallError::InUse {
                action,
                target: path.to_path_buf(),
                held: from.to_path_buf(),
                source: error,
            }
        }
    })
}

/// Flushes one unpacked file to disk, retrying like [`rename_dir`] while a scanner that opened it right
/// after extraction (antivirus, on Windows) briefly refuses write access; then names the file it holds.
pub(crate) fn sync_file(path: &Path) -> Result<(), InstallError> {
    retry_transient(
        || crate::fsutil::sync_file(path),
        is_transient_rename_error,
        &RENAME_BACKOFF,
        std::thread::sleep,
    )
    .map_err(|e| match e {
        RetryError::Permanent(source) => InstallError::io("flush", path)(source),
        RetryError::Exhausted { error, .. } => InstallError::InUse {
            action: "flush",
            target: path.to_path_buf(),
            held: path.to_path_buf(),
            source: error,
        },
    })
}

/// Deletes the folder `dir` and everything in it (nothing to do when it is missing), retrying like
/// [`rename_dir`] while another program briefly holds a file in it.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), InstallError> {
    let remove = || match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    retry_transient(
        remove,
        is_transient_rename_error,
        &RENAME_BACKOFF,
        std::thread::sleep,
    )
    .map_err(|e| match e {
        RetryError::Permanent(source) => InstallError::io("remove", dir)(source),
        RetryError::Exhausted { error, .. } => InstallError::InUse {
            action: "remove",
            target: dir.to_path_buf(),
            held: dir.to_path_buf(),
            source: error,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const SHARING_VIOLATION: i32 = 32;

    /// An operation that fails `failures` times with the raw OS error `code`, then succeeds.
    fn flaky(failures: u32, code: i32, calls: &Cell<u32>) -> impl FnMut() -> io::Result<&'static str> + '_ {
        move || {
            calls.set(calls.get() + 1);
            if calls.get() <= failures {
                Err(io::Error::from_raw_os_error(code))
            } else {
                Ok("renamed")
            }
        }
    }

    #[test]
    fn a_rename_held_for_a_moment_succeeds_after_doubling_pauses() {
        let calls = Cell::new(0);
        let mut pauses = Vec::new();
        let result = retry_transient(
            flaky(3, SHARING_VIOLATION, &calls),
            is_windows_sharing_error,
            &RENAME_BACKOFF,
            |d| pauses.push(d),
        );
        assert_eq!(result.unwrap(), "renamed");
        assert_eq!(calls.get(), 4);
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [50, 100, 200]);
    }

    #[test]
    fn every_transient_code_is_retried_and_others_are_not() {
        for code in [5, 32, 33] {
            let calls = Cell::new(0);
            let result = retry_transient(
                flaky(1, code, &calls),
                is_windows_sharing_error,
                &RENAME_BACKOFF,
                |_| {},
            );
            assert!(result.is_ok(), "code {code}");
            assert_eq!(calls.get(), 2, "code {code}");
        }
        // ERROR_FILE_NOT_FOUND / ENOENT: retrying cannot help.
        let calls = Cell::new(0);
        let result = retry_transient(
            flaky(1, 2, &calls),
            is_windows_sharing_error,
            &RENAME_BACKOFF,
            |_| panic!("a permanent error is not waited on"),
        );
        assert!(matches!(result, Err(RetryError::Permanent(e)) if e.raw_os_error() == Some(2)));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn a_folder_held_for_good_is_given_up_on_within_the_time_budget() {
        let calls = Cell::new(0);
        let mut total = Duration::ZERO;
        let result = retry_transient(
            flaky(u32::MAX, SHARING_VIOLATION, &calls),
            is_windows_sharing_error,
            &RENAME_BACKOFF,
            |d| total += d,
        );
        let Err(RetryError::Exhausted { error, attempts }) = result else {
            panic!("expected the retries to be exhausted, got {result:?}");
        };
        assert_eq!(error.raw_os_error(), Some(SHARING_VIOLATION));
        assert_eq!(attempts, calls.get());
        assert!(
            (2..=RENAME_BACKOFF.max_attempts).contains(&attempts),
            "{attempts}"
        );
        assert_eq!(
            total, RENAME_BACKOFF.max_total,
            "the whole budget is used, never more"
        );
    }

    #[test]
    fn the_attempt_count_bounds_the_retries_too() {
        let backoff = Backoff {
            max_attempts: 3,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            max_total: Duration::from_secs(60),
        };
        let calls = Cell::new(0);
        let result = retry_transient(
            flaky(u32::MAX, SHARING_VIOLATION, &calls),
            is_windows_sharing_error,
            &backoff,
            |_| {},
        );
        assert!(matches!(result, Err(RetryError::Exhausted { attempts: 3, .. })));
        assert_eq!(calls.get(), 3);
    }

    #[cfg(not(windows))]
    #[test]
    fn outside_windows_a_rename_is_tried_once() {
        // EACCES (13) and EPIPE (32) are not sharing errors on Unix: nothing holds a folder there.
        for code in [5, 13, 32, 33] {
            assert!(!is_transient_rename_error(&io::Error::from_raw_os_error(code)));
        }
        let home = tempfile::tempdir().unwrap();
        let missing = home.path().join("missing");
        let err = rename_dir(&missing, &home.path().join("to"), "move aside", &missing).unwrap_err();
        assert!(matches!(err, InstallError::Io { .. }), "{err:?}");
    }

    #[test]
    fn a_held_folder_is_named_with_what_to_do() {
        let err = InstallError::InUse {
            action: "move the new version to",
            target: "C:\\data\\install\\versions\\2.0.0".into(),
            held: "C:\\data\\install\\staging\\2.0.0-7\\PersonalAIAgent-windows-x86_64-2.0.0".into(),
            source: io::Error::from_raw_os_error(SHARING_VIOLATION),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("cannot move the new version to C:\\data\\install\\versions\\2.0.0: "),
            "{text}"
        );
        assert!(
            text.contains(
                "another program (often antivirus or an open Explorer window) is using C:\\data\\install\\staging\\2.0.0-7\\PersonalAIAgent-windows-x86_64-2.0.0; close it and try again"
            ),
            "{text}"
        );
        assert!(text.contains("os error 32"), "the OS error is kept: {text}");
    }
}
