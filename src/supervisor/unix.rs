//! Unix process control for the supervisor.
//!
//! The backend is started in its own process group (its pgid is its pid), so a stop reaches it and every
//! child it started: SIGTERM to the group, then SIGKILL to the group after the timeout, then a last SIGKILL
//! sweep for any member that ignored SIGTERM although the leader left.
//!
//! When the launcher dies without stopping the backend (`kill -9`, a crash):
//! - on **Linux** the backend gets SIGTERM through `PR_SET_PDEATHSIG`. That signal follows the *thread*
//!   that forked, not the process, which is why the supervisor forks from one long-lived spawner thread.
//!   Grandchildren of the launcher are not covered by it: a backend that starts helpers must end them when it
//!   gets SIGTERM (the example backend has none).
//! - on **macOS** there is no such signal: a normal exit, Ctrl-C or SIGTERM of the launcher stops the group,
//!   but a SIGKILLed launcher leaves the backend running until the next start ends it (the status file names
//!   its pid and program, checked with `proc_pidpath` so a reused pid is left alone). This is a documented
//!   limitation (see docs/BUNDLE.md).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};

/// Nothing to keep on Unix: the process group lives in the kernel.
#[derive(Debug)]
pub(super) struct ProcessGuard;

/// Puts the child in its own process group and, on Linux, ties its life to the launcher's.
pub(super) fn configure(command: &mut Command) {
    command.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and only makes async-signal-safe
    // system calls (getrlimit, setrlimit); it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            // The backend gets the open-files limit the launcher started with, not the one its API raised.
            crate::rlimit::restore_in_child();
            Ok(())
        });
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid is async-signal-safe and runs here, in the parent.
        let launcher_pid = unsafe { libc::getpid() };
        // SAFETY: the closure runs in the child between fork and exec and only makes async-signal-safe
        // system calls (prctl, getppid); it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // The launcher may have died between fork and prctl; then no signal would ever come.
                if libc::getppid() != launcher_pid {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
}

pub(super) fn after_spawn(_child: &Child) -> std::io::Result<ProcessGuard> {
    Ok(ProcessGuard)
}

/// Asks the backend's whole process group to stop (SIGTERM).
pub(super) fn request_stop(pid: u32) -> std::io::Result<()> {
    signal_group(pid, libc::SIGTERM)
}

/// Kills the backend's whole process group (SIGKILL); falls back to the child alone.
pub(super) fn kill_tree(pid: u32, child: &mut Child, _guard: &ProcessGuard) {
    if signal_group(pid, libc::SIGKILL).is_err() {
        let _ = child.kill();
    }
}

/// Removes any member of the group left behind after its leader exited.
pub(super) fn sweep_group(pid: u32, _guard: &ProcessGuard) {
    let _ = signal_group(pid, libc::SIGKILL);
}

fn signal_group(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pgid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    if pgid <= 1 {
        // Never signal "every process" (-1) or our own group (0) by accident.
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: killpg has no memory-safety preconditions.
    if unsafe { libc::killpg(pgid, signal) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a process with this pid exists (a zombie counts as gone on Linux).
pub fn is_process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    #[cfg(target_os = "linux")]
    if exists && let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name in parentheses; `Z` is a zombie, `X` dead.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        return !matches!(state, Some('Z' | 'X'));
    }
    exists
}

/// How the backend ended, in words.
pub(super) fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(signal) => format!("killed by signal {signal} ({})", signal_name(signal)),
        None => status.to_string(),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

/// Kills what is left of a backend's process group after its launcher died.
pub(super) fn kill_orphan_group(pid: u32) {
    let _ = signal_group(pid, libc::SIGKILL);
}

/// The executable a process runs, where the platform tells.
pub(super) fn process_executable(pid: u32) -> Option<std::path::PathBuf> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_link(format!("/proc/{pid}/exe")).ok()
    }
    #[cfg(target_os = "macos")]
    {
        let pid = libc::c_int::try_from(pid).ok()?;
        let mut buffer = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
        // SAFETY: the buffer is valid for the size passed; the call writes at most that many bytes.
        let length = unsafe { libc::proc_pidpath(pid, buffer.as_mut_ptr().cast(), buffer.len() as u32) };
        if length <= 0 {
            return None;
        }
        buffer.truncate(length as usize);
        use std::os::unix::ffi::OsStringExt;
        Some(std::path::PathBuf::from(std::ffi::OsString::from_vec(buffer)))
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = pid;
        None
    }
}
