//! The open-files limit. Every connection to the local API costs its owner a file descriptor, and the
//! usual soft limit (1,024) is low enough for another local user to reach with idle connections; so the
//! owner raises its soft limit to the hard one when its API starts (as Go's runtime does for every
//! program), and gives the limit it started with back to the processes it starts, which may not expect
//! descriptors above 1,023 (`select`).

#[cfg(unix)]
use std::sync::atomic::{AtomicU64, Ordering};

/// The soft limit before [`raise_open_files_limit`] raised it; `u64::MAX` while not raised.
#[cfg(unix)]
static ORIGINAL_SOFT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Above this no soft limit is asked for: Linux refuses more than `fs.nr_open` (1,048,576 by default)
/// and macOS more than `OPEN_MAX` (10,240), whatever the hard limit says.
#[cfg(unix)]
const CEILINGS: [u64; 2] = [1 << 20, 10_240];

/// Raises this process's soft open-files limit to its hard limit (Unix; nothing elsewhere), once, and
/// logs what it did.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            tracing::warn!(
                "cannot read the open-files limit: {}",
                std::io::Error::last_os_error()
            );
            return;
        }
        // `rlim_t` is not 64 bits wide on every Unix target.
        #[allow(clippy::useless_conversion)]
        let (soft, hard) = (u64::from(limit.rlim_cur), u64::from(limit.rlim_max));
        for ceiling in CEILINGS {
            let wanted = hard.min(ceiling);
            if wanted <= soft {
                return;
            }
            let raised = libc::rlimit {
                rlim_cur: wanted as libc::rlim_t,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit reads the struct we own.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                let _ = ORIGINAL_SOFT.compare_exchange(u64::MAX, soft, Ordering::SeqCst, Ordering::SeqCst);
                tracing::info!(from = soft, to = wanted, "raised the open-files limit");
                return;
            }
        }
        tracing::warn!(
            soft,
            hard,
            "cannot raise the open-files limit ({}); the local API keeps within it",
            std::io::Error::last_os_error()
        );
    }
}

/// In a child process between fork and exec: gives it back the soft limit the launcher started with.
/// Async-signal-safe (an atomic load and two system calls); errors are ignored, the child just keeps the
/// raised limit.
#[cfg(unix)]
pub fn restore_in_child() {
    let original = ORIGINAL_SOFT.load(Ordering::SeqCst);
    if original == u64::MAX {
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit use only the struct we own; both are async-signal-safe.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = original as libc::rlim_t;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
