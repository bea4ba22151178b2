//! Windows process control for the supervisor. NOT compiled on the Linux build machine: kept small, and
//! every call checks its result.
//!
//! - The backend starts in a new process group (`CREATE_NEW_PROCESS_GROUP`), so a graceful stop can send
//!   it `CTRL_BREAK_EVENT`. Windows only delivers console events to processes sharing the launcher's
//!   console; when that fails (a launcher without a console) the stop goes straight to termination.
//! - Each backend is put in a Job Object with `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`: when the launcher ends,
//!   however it ends, the kernel closes the job handle and kills the backend and everything it started.
//!   The job is assigned just after the spawn; a child the backend starts in that first instant escapes it
//!   (std cannot create the process suspended).

use std::os::windows::io::AsRawHandle;
use std::os::windows::process::CommandExt;
use std::process::{Child, Command, ExitStatus};

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, GenerateConsoleCtrlEvent};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation, SetInformationJobObject,
    TerminateJobObject,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
};

const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
/// `GetExitCodeProcess` reports this while the process runs.
const STILL_ACTIVE: u32 = 259;

/// The job object holding the backend; closing it kills what is left in it.
#[derive(Debug)]
pub(super) struct ProcessGuard {
    job: HANDLE,
}

// SAFETY: a job handle is a kernel handle, usable from any thread.
unsafe impl Send for ProcessGuard {}
// SAFETY: as above; the handle is only read.
unsafe impl Sync for ProcessGuard {}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if !self.job.is_null() {
            // SAFETY: the handle came from CreateJobObjectW and is closed exactly once.
            unsafe { CloseHandle(self.job) };
        }
    }
}

pub(super) fn configure(command: &mut Command) {
    command.creation_flags(CREATE_NEW_PROCESS_GROUP);
}

pub(super) fn after_spawn(child: &Child) -> std::io::Result<ProcessGuard> {
    // SAFETY: null attributes and name create an anonymous job with default security.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    let guard = ProcessGuard { job };
    // SAFETY: an all-zero JOBOBJECT_EXTENDED_LIMIT_INFORMATION is a valid "no limits" value.
    let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    // SAFETY: `info` lives across the call and the size passed is its size.
    let set = unsafe {
        SetInformationJobObject(
            guard.job,
            JobObjectExtendedLimitInformation,
            (&raw const info).cast(),
            std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    };
    if set == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both handles are valid: the job above, and the child's process handle owned by `child`.
    if unsafe { AssignProcessToJobObject(guard.job, child.as_raw_handle() as HANDLE) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(guard)
}

pub(super) fn request_stop(pid: u32) -> std::io::Result<()> {
    // SAFETY: no memory is passed; the process group id is the backend's pid.
    if unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn kill_tree(_pid: u32, child: &mut Child, guard: &ProcessGuard) {
    // SAFETY: the job handle is valid while the guard lives.
    if unsafe { TerminateJobObject(guard.job, 1) } == 0 {
        let _ = child.kill();
    }
}

pub(super) fn sweep_group(_pid: u32, guard: &ProcessGuard) {
    // SAFETY: the job handle is valid while the guard lives; an empty job makes this a no-op.
    unsafe { TerminateJobObject(guard.job, 1) };
}

pub fn is_process_alive(pid: u32) -> bool {
    // SAFETY: OpenProcess returns null on failure; the handle is closed below.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return false;
    }
    let mut code = 0u32;
    // SAFETY: `process` is valid and `code` is a live u32.
    let ok = unsafe { GetExitCodeProcess(process, &mut code) } != 0;
    // SAFETY: closed exactly once.
    unsafe { CloseHandle(process) };
    ok && code == STILL_ACTIVE
}

pub(super) fn describe_exit(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => status.to_string(),
    }
}

/// Nothing to do: the job object already ended the backend with its launcher.
pub(super) fn kill_orphan_group(_pid: u32) {}

/// Not needed on Windows (see `kill_orphan_group`).
pub(super) fn process_executable(_pid: u32) -> Option<std::path::PathBuf> {
    None
}
