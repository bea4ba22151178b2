//! The launcher updating itself: when the bundle just installed carries a newer launcher than the one
//! running, that launcher replaces the running executable, gated like the backend.
//!
//! ```text
//!  install committed (the new backend is healthy)
//!    └─► <bundle>/personal-ai-agent[.exe] present? ── no ──► nothing to do
//!          └─► self-test it (`--home H self-test --json`, ≤ SELF_TEST_TIMEOUT): fails ──► recorded as failed
//!                │                                                                     for the launcher
//!                └─► newer than the running one? ── no ──► nothing to do (never a launcher downgrade)
//!                      └─► where does the running one live? (`placement`)
//!                            package manager / App Translocation / read-only ──► refused, with the advice
//!                            replaceable ──► copy it to install/launchers/<previous version>/ (the backup a
//!                                            rollback restores), replace (`self_replace`; a whole `.app`
//!                                            on macOS), self-test the file now in place: fails ──► the
//!                                            backup is put back, recorded as failed
//!                                            ok ──► restart pending: the runner restarts itself with the
//!                                            same arguments, the window offers Restart
//! ```
//!
//! The version a launcher reports lives in a fixed slot of the executable ([`launcher_version`]), read at
//! run time, so a copy of a build can be stamped with another version (the self-update tests do) without
//! compiling it again.
//!
//! State: `install/launcher.json` (the last replacement, the versions whose launcher failed) and
//! `install/launchers/<version>/` (the launcher that ran while `<version>` was current).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::paths::Paths;

/// How long a new launcher may take to answer its self-test.
pub const SELF_TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The hidden subcommand a launcher answers to prove it runs here.
pub const SELF_TEST_SUBCOMMAND: &str = "self-test";

const SLOT_LEN: usize = 64;
/// What precedes the version in the slot; `stamp_version` looks for it.
pub const SLOT_PREFIX: &[u8] = b"PAI-LAUNCHER-VERSION=";

const fn version_slot() -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    let version = env!("CARGO_PKG_VERSION").as_bytes();
    let mut i = 0;
    while i < SLOT_PREFIX.len() {
        slot[i] = SLOT_PREFIX[i];
        i += 1;
    }
    let mut j = 0;
    while j < version.len() {
        slot[i + j] = version[j];
        j += 1;
    }
    slot
}

/// The launcher's version as the executable carries it: `PAI-LAUNCHER-VERSION=<version>` padded with NULs.
#[used]
static VERSION_SLOT: [u8; SLOT_LEN] = version_slot();

/// The running launcher's version: Cargo.toml's, unless this copy of the executable was stamped with
/// another ([`stamp_version`]).
pub fn launcher_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        // A volatile read, so the compiler cannot fold the slot into a constant: what is read is what the
        // file on disk holds.
        // SAFETY: VERSION_SLOT is a valid, aligned, initialised static of this type.
        let slot: [u8; SLOT_LEN] = unsafe { std::ptr::read_volatile(&raw const VERSION_SLOT) };
        let rest = &slot[SLOT_PREFIX.len()..];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end]).into_owned()
    })
}

/// Writes a copy of the launcher `exe` to `out` that reports `version` (release tooling and tests).
pub fn stamp_version(exe: &Path, out: &Path, version: &str) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(exe)?;
    let at = find_slot(&bytes)
        .ok_or_else(|| anyhow::anyhow!("{} has no version slot; is it the launcher?", exe.display()))?;
    anyhow::ensure!(
        SLOT_PREFIX.len() + version.len() < SLOT_LEN,
        "the version {version:?} is longer than the slot"
    );
    let slot = &mut bytes[at..at + SLOT_LEN];
    slot[SLOT_PREFIX.len()..].fill(0);
    slot[SLOT_PREFIX.len()..SLOT_PREFIX.len() + version.len()].copy_from_slice(version.as_bytes());
    std::fs::write(out, &bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o755))?;
    }
    // Changed bytes break the linker's ad-hoc signature, and macOS on Apple silicon kills an executable
    // whose signature does not match: sign the copy ad hoc again (a release is signed by its workflow).
    #[cfg(target_os = "macos")]
    {
        let status = Command::new("codesign")
            .args(["--force", "--sign", "-"])
            .arg(out)
            .status()?;
        anyhow::ensure!(status.success(), "codesign --sign - {} failed", out.display());
    }
    Ok(())
}

/// Where the slot starts: the prefix followed by a version and NUL padding to the slot's end.
fn find_slot(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = bytes[from..]
        .windows(SLOT_PREFIX.len())
        .position(|w| w == SLOT_PREFIX)
    {
        let at = from + pos;
        if let Some(slot) = bytes.get(at..at + SLOT_LEN) {
            let rest = &slot[SLOT_PREFIX.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let versionish = rest[..end]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b".+-".contains(b));
            if end > 0 && versionish && rest[end..].iter().all(|&b| b == 0) {
                return Some(at);
            }
        }
        from = at + 1;
    }
    None
}

/// The launcher's file name in a bundle and where it is installed.
pub fn launcher_file_name() -> String {
    format!("personal-ai-agent{}", std::env::consts::EXE_SUFFIX)
}

/// The running executable's path, as it was when the process started (after a replacement Linux names
/// the running file "… (deleted)"). `cli::main` asks first thing.
pub fn running_exe() -> Option<&'static Path> {
    static EXE: OnceLock<Option<PathBuf>> = OnceLock::new();
    // Canonical: the file itself, not a link to it (on macOS `current_exe` may name the link a user ran).
    EXE.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
    })
    .as_deref()
}

static RESTART_PENDING: AtomicBool = AtomicBool::new(false);
static RESTART_REQUESTED: AtomicBool = AtomicBool::new(false);
/// The install whose launcher this process replaced: where [`restart`] undoes a launcher that cannot
/// be started.
static REPLACED_IN: std::sync::Mutex<Option<Paths>> = std::sync::Mutex::new(None);

/// The file at the running executable's path is no longer the code running: restart into it.
fn mark_restart_pending(paths: &Paths) {
    *REPLACED_IN.lock().unwrap_or_else(|p| p.into_inner()) = Some(paths.clone());
    RESTART_PENDING.store(true, Ordering::SeqCst);
}

/// Whether this process replaced its own executable: it runs the old code until it restarts.
pub fn restart_pending() -> bool {
    RESTART_PENDING.load(Ordering::SeqCst)
}

/// Asks `cli::main` to start the new launcher with the same arguments once this process's work is over.
pub fn request_restart() {
    RESTART_REQUESTED.store(true, Ordering::SeqCst);
}

pub fn restart_requested() -> bool {
    RESTART_REQUESTED.load(Ordering::SeqCst)
}

/// Becomes the launcher now at the running executable's path, with the same arguments: `exec` on Unix
/// (same pid, so a service manager still tracks it), a new process on Windows. When the new launcher
/// cannot be started at all, the previous one is put back (and the release recorded as failed) and
/// started instead. Returns only on failure.
pub fn restart() -> anyhow::Error {
    let Some(exe) = running_exe() else {
        return anyhow::anyhow!("cannot find the launcher executable to restart; start it again by hand");
    };
    tracing::info!(exe = %exe.display(), "restarting into the updated launcher");
    let e = become_launcher_at(exe);
    let paths = REPLACED_IN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(paths) = paths
        && undo_unstarted(&paths, exe, &e.to_string())
    {
        tracing::error!(error = %e, "the new launcher could not be started; the previous one was put back and starts instead");
        let e2 = become_launcher_at(exe);
        return anyhow::anyhow!(
            "the updated launcher at {} could not be started ({e}), and neither could the previous one put back there ({e2}); start it again by hand",
            exe.display()
        );
    }
    anyhow::anyhow!(
        "could not restart into the updated launcher at {}: {e}; start it again by hand",
        exe.display()
    )
}

/// `exec`s (Unix) or starts and exits into (Windows) the launcher at `exe` with this process's arguments;
/// returns only the error when that failed.
fn become_launcher_at(exe: &Path) -> std::io::Error {
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.exec()
    }
    #[cfg(not(unix))]
    {
        match cmd.spawn() {
            Ok(_) => std::process::exit(0),
            Err(e) => e,
        }
    }
}

/// What became of the launcher after an install or rollback, in `update install --json` as `launcher`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum LauncherOutcome {
    /// The running executable was replaced; the new one runs after a restart.
    Updated { from: String, to: String, path: PathBuf },
    /// The bundle's launcher is newer, but this one is not the launcher's to replace: `advice` says how.
    Refused {
        version: String,
        path: PathBuf,
        reason: String,
        advice: String,
    },
    /// The new launcher did not pass its self-test; the running one was kept (or put back).
    Failed { release: String, reason: String },
}

impl LauncherOutcome {
    /// One sentence for the CLI and the window.
    pub fn human(&self) -> String {
        match self {
            LauncherOutcome::Updated { from, to, path } => format!(
                "The launcher at {} was updated from {from} to {to}; every launcher started from now on is {to}, and one already running switches when it restarts (the headless runner restarts by itself, the window offers Restart).",
                path.display()
            ),
            LauncherOutcome::Refused {
                version,
                reason,
                advice,
                ..
            } => format!("Launcher {version} is available, but {reason}; {advice}."),
            LauncherOutcome::Failed { release, reason } => format!(
                "The launcher of release {release} was not put in place: {reason}. The current launcher keeps running and updating the agent; the next release's launcher is tried as usual."
            ),
        }
    }
}

/// Where the running launcher lives, and whether it may replace itself there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Placement {
    /// A folder this user may write: replaced in place (portable mode: beside its data).
    Replaceable { path: PathBuf },
    /// Installed by a package manager, which must update it.
    PackageManager {
        path: PathBuf,
        manager: String,
        package: Option<String>,
        advice: String,
    },
    /// A macOS app run from App Translocation (opened straight from a download) or a read-only volume.
    MoveFirst { path: PathBuf, advice: String },
    /// A folder this user may not write.
    ReadOnly { path: PathBuf, advice: String },
}

impl Placement {
    pub fn path(&self) -> &Path {
        match self {
            Placement::Replaceable { path }
            | Placement::PackageManager { path, .. }
            | Placement::MoveFirst { path, .. }
            | Placement::ReadOnly { path, .. } => path,
        }
    }

    /// Why it cannot be replaced, and what to do instead; `None` when it can.
    pub fn refusal(&self) -> Option<(String, String)> {
        match self {
            Placement::Replaceable { .. } => None,
            Placement::PackageManager { manager, advice, .. } => Some((
                format!("this launcher was installed by {manager}"),
                advice.clone(),
            )),
            Placement::MoveFirst { path, advice } => Some((
                format!(
                    "the launcher runs from {}, where it cannot be replaced",
                    path.display()
                ),
                advice.clone(),
            )),
            Placement::ReadOnly { path, advice } => Some((
                format!(
                    "this user may not write the launcher's folder {}",
                    parent_display(path)
                ),
                advice.clone(),
            )),
        }
    }
}

fn parent_display(path: &Path) -> String {
    path.parent().unwrap_or(path).display().to_string()
}

/// The `.app` bundle an executable runs from (`X.app/Contents/MacOS/exe`), if any.
pub fn app_bundle_of(exe: &Path) -> Option<PathBuf> {
    let macos = exe.parent()?;
    let contents = macos.parent()?;
    let app = contents.parent()?;
    (macos.file_name()? == "MacOS"
        && contents.file_name()? == "Contents"
        && app.extension().is_some_and(|e| e == "app"))
    .then(|| app.to_path_buf())
}

/// What a package database says of a path: the owning package's name, or `None`.
pub type OwnerQuery<'a> = &'a dyn Fn(&Path) -> Option<(String, String)>;

/// Where `exe` lives (see [`Placement`]), asking dpkg and rpm through `query`.
pub fn placement_with(exe: &Path, query: OwnerQuery<'_>) -> Placement {
    let path = exe.to_path_buf();
    let text = exe.to_string_lossy().replace('\\', "/");
    let name = "personal-ai-agent";
    if text.contains("/AppTranslocation/") {
        return Placement::MoveFirst {
            path,
            advice: "macOS runs apps opened straight from a download from a temporary read-only copy; drag Personal AI Agent into Applications, open it from there, and update again".into(),
        };
    }
    if text.contains("/Cellar/") || text.starts_with("/opt/homebrew/") || text.contains("/Homebrew/") {
        return Placement::PackageManager {
            path,
            manager: "Homebrew".into(),
            package: Some(name.into()),
            advice: format!("update it with `brew upgrade {name}`"),
        };
    }
    if text.starts_with("/nix/store/") {
        return Placement::PackageManager {
            path,
            manager: "Nix".into(),
            package: None,
            advice: "update it through Nix (your configuration, or `nix profile upgrade`)".into(),
        };
    }
    if text.starts_with("/snap/") {
        return Placement::PackageManager {
            path,
            manager: "snap".into(),
            package: Some(name.into()),
            advice: format!("update it with `sudo snap refresh {name}`"),
        };
    }
    if let Some((manager, package)) = query(exe) {
        let advice = match manager.as_str() {
            "dpkg" => format!(
                "update it with `sudo apt install --only-upgrade {package}`, or install the new release's .deb with `sudo apt install ./<file>.deb`"
            ),
            _ => format!("update it with `sudo dnf upgrade {package}` (or your distribution's tool)"),
        };
        return Placement::PackageManager {
            path,
            manager,
            package: Some(package),
            advice,
        };
    }
    // The folder that is replaced: the `.app` bundle's on macOS, else the executable's.
    let replaced = app_bundle_of(exe).unwrap_or_else(|| exe.to_path_buf());
    let folder = replaced.parent().unwrap_or(Path::new("."));
    if !folder_writable(folder) {
        if text.starts_with("/Volumes/") {
            return Placement::MoveFirst {
                path,
                advice: "it runs from a disk image or another read-only volume; drag Personal AI Agent into Applications, open it from there, and update again".into(),
            };
        }
        return Placement::ReadOnly {
            path,
            advice: format!(
                "reinstall it in a folder you own, or update it the way it was installed (the launcher inside each release is at install/versions/<version>/{} in the data folder)",
                launcher_file_name()
            ),
        };
    }
    Placement::Replaceable { path }
}

/// [`placement_with`] asking this machine's dpkg, then rpm.
pub fn placement(exe: &Path) -> Placement {
    placement_with(exe, &package_owner)
}

/// The package that owns `path` by dpkg (`dpkg-query -S`) or rpm (`rpm -qf`): `(manager, package)`.
fn package_owner(path: &Path) -> Option<(String, String)> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let mut candidates = vec![path.to_path_buf()];
    if let Ok(real) = std::fs::canonicalize(path)
        && real != path
    {
        candidates.push(real);
    }
    for candidate in &candidates {
        if let Some(out) = run_bounded(
            Command::new("dpkg-query").arg("-S").arg(candidate),
            Duration::from_secs(10),
        ) && out.0.success()
        {
            // "package[:arch][, other]: /path"
            let text = String::from_utf8_lossy(&out.1);
            if let Some((packages, _)) = text.lines().next().and_then(|l| l.split_once(": ")) {
                let package = packages.split(',').next().unwrap_or(packages).trim();
                let package = package.split(':').next().unwrap_or(package);
                return Some(("dpkg".into(), package.to_owned()));
            }
        }
        if let Some(out) = run_bounded(
            Command::new("rpm")
                .args(["-qf", "--qf", "%{NAME}\\n"])
                .arg(candidate),
            Duration::from_secs(10),
        ) && out.0.success()
        {
            let text = String::from_utf8_lossy(&out.1);
            if let Some(package) = text.lines().next().map(str::trim).filter(|p| !p.is_empty()) {
                return Some(("rpm".into(), package.to_owned()));
            }
        }
    }
    None
}

/// Whether this user may create files in `dir` (what replacing the executable takes).
fn folder_writable(dir: &Path) -> bool {
    tempfile::Builder::new()
        .prefix(".pai-write-test")
        .tempfile_in(dir)
        .is_ok()
}

/// Runs `cmd` with its output captured (64 KiB at most each) for at most `timeout`; `(status, stdout,
/// stderr)`, or `None` when it could not start or did not end in time (it is killed then).
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Option<(std::process::ExitStatus, Vec<u8>, Vec<u8>)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.by_ref().take(64 * 1024).read_to_end(&mut buf);
                let _ = tx.send(buf);
                // Drain the rest so the child never blocks on a full pipe.
                let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            } else {
                let _ = tx.send(buf);
            }
        });
        rx
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    // A grandchild may keep a pipe open after the child ended: wait for the readers only briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    let stdout = stdout
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or_default();
    let stderr = stderr
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or_default();
    status.map(|s| (s, stdout, stderr))
}

/// What `self-test --json` prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SelfTest {
    pub self_test: String,
    pub version: String,
    pub platform: String,
    /// A problem in `config.json` the launcher found (it still runs; the user is told).
    #[serde(default)]
    pub config_problem: Option<String>,
    /// Whether this launcher answers the start probe ([`PROBE_ENV`]); launchers older than the probe do
    /// not, and are not probed (running one as a probe would start it for real).
    #[serde(default)]
    pub probe: bool,
}

/// The self-test a launcher runs on itself: it starts, reads its settings and the install, and says
/// which version and platform it is. Fails (exit 1) when its own version cannot be read.
pub fn self_test(paths: &Paths) -> Result<SelfTest, String> {
    let version = launcher_version();
    Version::parse(version).map_err(|e| format!("its version {version:?} is not a version: {e}"))?;
    let loaded = crate::config::Config::load(&paths.config_file());
    // What every run needs beyond parsing its arguments: TLS for updates, a loopback socket for the API.
    crate::http::client().map_err(|e| format!("it cannot set up HTTPS: {e}"))?;
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| format!("it cannot listen on 127.0.0.1: {e}"))?;
    crate::updater::installer(paths)
        .installed_versions()
        .map_err(|e| format!("it cannot read the installed versions: {e}"))?;
    Ok(SelfTest {
        self_test: "ok".into(),
        version: version.to_owned(),
        platform: crate::platform::Platform::current().to_string(),
        config_problem: loaded.config.problem.map(|p| {
            format!(
                "{}, line {}: {} ({})",
                p.path.display(),
                p.line,
                p.field,
                p.reason
            )
        }),
        probe: true,
    })
}

/// What a launcher's self-test told: its version, and whether it answers the start probe.
pub struct Tested {
    pub version: Version,
    pub probe: bool,
}

/// Runs `exe`'s self-test for the install at `paths`: the version it reports, or why it failed.
pub fn test_launcher(exe: &Path, paths: &Paths, timeout: Duration) -> Result<Tested, String> {
    let mut cmd = Command::new(exe);
    // The same install as this launcher's: portable mode would otherwise take the tested file's own
    // folder for its data.
    if let Some(home) = &paths.home {
        cmd.arg("--home").arg(home);
    } else if paths.portable {
        cmd.arg("--home").arg(&paths.config_dir);
    }
    cmd.args([SELF_TEST_SUBCOMMAND, "--json"]);
    let (status, stdout, stderr) = run_bounded(&mut cmd, timeout).ok_or_else(|| {
        format!(
            "it did not start, or did not answer within {} s",
            timeout.as_secs()
        )
    })?;
    let last_words = || last_line(&stderr);
    if !status.success() {
        return Err(format!("it exited with a failure{}", last_words()));
    }
    let report: SelfTest = serde_json::from_slice(&stdout)
        .map_err(|e| format!("its self-test printed no report ({e}){}", last_words()))?;
    let platform = crate::platform::Platform::current().to_string();
    if report.self_test != "ok" {
        return Err(format!("its self-test said {:?}", report.self_test));
    }
    if report.platform != platform {
        return Err(format!("it is built for {}, not {platform}", report.platform));
    }
    let version = Version::parse(&report.version)
        .map_err(|e| format!("it reports the version {:?} ({e})", report.version))?;
    Ok(Tested {
        version,
        probe: report.probe,
    })
}

/// The last line a program wrote on stderr, as `": <line>"` (at most 300 characters), or nothing.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {}", line.chars().take(300).collect::<String>())
    }
}

/// The environment variable that makes a launcher a start probe: set to a file's path, the launcher goes
/// through its real start (arguments, paths, settings, logging, everything up to where it would take the
/// owner lock or do a command's work), writes to that file that it started, and exits 0 (see
/// [`probe_point`]).
pub const PROBE_ENV: &str = "PAI_LAUNCHER_PROBE";

/// How long a new launcher may take to reach its probe point.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a probed launcher writes once it reached its probe point.
#[derive(Debug, Serialize, Deserialize)]
struct ProbeReport {
    probe: String,
    version: String,
}

/// Where a start would take ownership of the install (the runner, the window) or a command would begin
/// its work: a launcher started as a probe ([`PROBE_ENV`]) reports that it got here and exits 0, having
/// done nothing else. Otherwise nothing happens.
pub fn probe_point() {
    let Some(file) = std::env::var_os(PROBE_ENV) else {
        return;
    };
    let report = ProbeReport {
        probe: "started".into(),
        version: launcher_version().to_owned(),
    };
    let written = std::fs::write(&file, serde_json::to_vec(&report).unwrap_or_default());
    std::process::exit(if written.is_ok() { 0 } else { 1 });
}

/// Starts the launcher at `exe` the way this process was started (the same arguments, so the same
/// command, `--home` and options; a service's `run --headless …`, the window's plain start) as a start
/// probe, and checks that it reached its probe point reporting `offered`. The owner lock this process
/// holds is never contended: the probe stops before taking it.
fn probe_start(paths: &Paths, exe: &Path, offered: &Version) -> Result<(), String> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let how = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let dir = tempfile::Builder::new()
        .prefix(".launcher-probe")
        .tempdir_in(paths.install_dir())
        .map_err(|e| {
            format!(
                "no folder for its start probe in {}: {e}",
                paths.install_dir().display()
            )
        })?;
    let result = dir.path().join("started.json");
    let mut cmd = Command::new(exe);
    cmd.args(&args).env(PROBE_ENV, &result);
    let outcome = run_bounded(&mut cmd, PROBE_TIMEOUT);
    let report = std::fs::read(&result)
        .ok()
        .and_then(|b| serde_json::from_slice::<ProbeReport>(&b).ok());
    let Some((status, _, stderr)) = outcome else {
        return Err(format!(
            "started as `{how}`, it did not get through its start within {} s",
            PROBE_TIMEOUT.as_secs()
        ));
    };
    if !status.success() {
        return Err(format!(
            "started as `{how}`, it {}{}",
            match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_owned(),
            },
            last_line(&stderr)
        ));
    }
    match report {
        Some(r) if r.probe == "started" && r.version == offered.to_string() => Ok(()),
        Some(r) => Err(format!(
            "started as `{how}`, it reported {:?} for version {}, not the start of {offered}",
            r.probe, r.version
        )),
        None => Err(format!(
            "started as `{how}`, it ended without reporting that it started{}",
            last_line(&stderr)
        )),
    }
}

/// `install/launcher.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LauncherState {
    /// The last replacement of the launcher.
    #[serde(default)]
    pub last: Option<Replacement>,
    /// Releases whose launcher failed its self-test, with the reason: not tried again.
    #[serde(default)]
    pub failed: BTreeMap<String, String>,
    /// The SHA256 of each launcher kept in `install/launchers/<version>/`, checked before it is put back.
    #[serde(default)]
    pub saved: BTreeMap<String, String>,
    /// A replacement not finished yet: written before the launcher's file is replaced, cleared once the
    /// new launcher started (or the old one is back). Whatever start finds it finishes or undoes it
    /// ([`recover`]).
    #[serde(default)]
    pub replacing: Option<Replacing>,
}

/// Where a replacement of the launcher stands (`replacing` in `install/launcher.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplacingStage {
    /// About to replace the file, or replaced and not yet through its tests in place: a crash here leaves
    /// a launcher nothing vouches for, so the next start puts the previous one back.
    Swapping,
    /// Through its tests in place (self-test, start probe); not yet started as this install's launcher.
    /// The previous launcher stays in `undo` until it has.
    AwaitingStart,
}

/// A replacement of the launcher under way (see [`ReplacingStage`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacing {
    pub from: String,
    pub to: String,
    pub release: String,
    /// The launcher's path (the executable's; inside `app` on macOS).
    pub path: PathBuf,
    /// The `.app` replaced whole, on macOS.
    #[serde(default)]
    pub app: Option<PathBuf>,
    /// The previous launcher: a copy of the executable, or the old `.app` set aside.
    pub undo: PathBuf,
    pub stage: ReplacingStage,
    pub at: DateTime<Utc>,
    /// `last` before this replacement, restored when it is undone after it was recorded.
    #[serde(default)]
    pub previous_last: Option<Replacement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    pub from: String,
    pub to: String,
    pub release: String,
    pub at: DateTime<Utc>,
}

fn state_file(paths: &Paths) -> PathBuf {
    paths.install_dir().join("launcher.json")
}

pub fn read_state(paths: &Paths) -> LauncherState {
    std::fs::read(state_file(paths))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_state(paths: &Paths, state: &LauncherState) {
    if let Err(e) = try_write_state(paths, state) {
        tracing::warn!("could not record the launcher's state: {e}");
    }
}

fn try_write_state(paths: &Paths, state: &LauncherState) -> crate::error::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
    crate::fsutil::write_atomic(&state_file(paths), &bytes)
}

fn record_failed(paths: &Paths, release: &Version, reason: &str) {
    let mut state = read_state(paths);
    state.failed.insert(release.to_string(), reason.to_owned());
    write_state(paths, &state);
}

/// Puts the previous launcher a replacement kept (`undo`) back at its place.
fn put_back(r: &Replacing) -> std::io::Result<()> {
    match &r.app {
        Some(app) if app.symlink_metadata().is_err() => std::fs::rename(&r.undo, app),
        Some(app) => swap_back(app, &r.undo),
        None => put_file_back(&r.undo, &r.path),
    }
}

/// Forgets a replacement: the previous launcher's copy is removed and `replacing` cleared.
fn forget_replacing(paths: &Paths, state: &mut LauncherState, r: &Replacing) {
    if r.app.is_some() {
        let _ = std::fs::remove_dir_all(&r.undo);
    } else {
        let _ = std::fs::remove_file(&r.undo);
    }
    state.replacing = None;
    write_state(paths, state);
}

/// Finishes or undoes a replacement of the launcher that a crash (or a new launcher that could not be
/// started) interrupted; called with the install lock held at every start that recovers (the runner, the
/// window, `update install`, `update rollback`). Only the launcher at the path being replaced acts on it.
///
/// - `swapping` (killed before the new file passed its tests in place): the previous launcher is put back
///   and the release recorded as failed, whatever is at the path (the old one, the new one, nothing);
///   one the user put there since is left alone.
/// - `awaiting_start`: the new launcher running now is the proof that it starts; the previous one is let
///   go. While the launcher that replaced itself still runs, nothing changes.
pub fn recover(paths: &Paths) -> Option<LauncherOutcome> {
    let mut state = read_state(paths);
    let Some(r) = state.replacing.clone() else {
        // A copy made just before a crash, with no replacement recorded: nothing refers to it.
        let _ = std::fs::remove_file(undo_path(paths));
        return None;
    };
    let exe = running_exe()?;
    if r.path != exe {
        tracing::debug!(path = %r.path.display(), "a replacement of another launcher is pending; its own start finishes it");
        return None;
    }
    let on_disk = on_disk_version(&r.path).map(|v| v.to_string());
    match r.stage {
        ReplacingStage::AwaitingStart => {
            if on_disk.as_deref() == Some(&r.to) && launcher_version() != r.to {
                // The launcher that replaced itself has not restarted yet.
                return None;
            }
            if on_disk.as_deref() == Some(&r.to) {
                tracing::info!(to = %r.to, "the new launcher started; the previous one is no longer kept aside");
            }
            forget_replacing(paths, &mut state, &r);
            None
        }
        ReplacingStage::Swapping => {
            let release = &r.release;
            let unknown = on_disk.as_ref().is_some_and(|v| v != &r.from && v != &r.to);
            if unknown {
                // Neither the launcher replaced nor its successor: the user installed another one since.
                forget_replacing(paths, &mut state, &r);
                return None;
            }
            if on_disk.as_deref() == Some(&r.from) && launcher_version() == r.from {
                // Stopped (a power loss, say) before the file was touched: nothing to undo, and nothing
                // says the new launcher is bad, so the release is not recorded as failed.
                tracing::info!(release = %r.release, "a launcher replacement was interrupted before the file changed; nothing to undo");
                forget_replacing(paths, &mut state, &r);
                let _ = std::fs::remove_dir_all(staging_dir(paths));
                return None;
            }
            let why = "the launcher stopped while the new one was being put in place, before it proved itself there";
            if on_disk.as_deref() != Some(&r.from)
                && let Err(e) = put_back(&r)
            {
                let reason = format!(
                    "{why}, and putting the previous launcher back failed ({e}): copy {} to {} by hand",
                    r.undo.display(),
                    r.app.as_deref().unwrap_or(&r.path).display()
                );
                tracing::error!(%release, %reason, "an interrupted launcher replacement could not be undone");
                return Some(LauncherOutcome::Failed {
                    release: r.release.clone(),
                    reason,
                });
            }
            let reason = format!("{why}; the previous launcher ({}) was put back", r.from);
            tracing::warn!(%release, %reason, "an interrupted launcher replacement was undone");
            state
                .failed
                .entry(r.release.clone())
                .or_insert_with(|| reason.clone());
            forget_replacing(paths, &mut state, &r);
            let _ = std::fs::remove_dir_all(staging_dir(paths));
            // This process may be the launcher that was being put in place: it restarts into the one back.
            if launcher_version() != r.from {
                mark_restart_pending(paths);
            }
            Some(LauncherOutcome::Failed {
                release: r.release,
                reason,
            })
        }
    }
}

/// The new launcher could not be started at all (`exec` failed): the previous one is put back and the
/// release recorded as failed. Whether it was.
fn undo_unstarted(paths: &Paths, exe: &Path, reason: &str) -> bool {
    // The lock, so no install changes the state meanwhile; when another process updates, it is left to it.
    let Ok(_lock) = crate::updater::installer(paths).lock() else {
        return false;
    };
    let mut state = read_state(paths);
    let Some(r) = state.replacing.clone() else {
        return false;
    };
    if r.path != exe || r.stage != ReplacingStage::AwaitingStart {
        return false;
    }
    if let Err(e) = put_back(&r) {
        tracing::error!(
            "the new launcher could not be started ({reason}) and putting the previous one back failed ({e}): copy {} to {} by hand",
            r.undo.display(),
            r.app.as_deref().unwrap_or(&r.path).display()
        );
        return false;
    }
    state.failed.insert(
        r.release.clone(),
        format!(
            "it could not be started ({reason}); the previous launcher ({}) was put back",
            r.from
        ),
    );
    state.last = r.previous_last.clone();
    forget_replacing(paths, &mut state, &r);
    true
}

/// The folder of the launcher that ran while `version` was current.
pub fn saved_launcher_dir(paths: &Paths, version: &Version) -> PathBuf {
    paths.install_dir().join("launchers").join(version.to_string())
}

/// The version of the launcher file at `exe` now, read from its version slot: the running one, one this
/// process put there, or one the user installed meanwhile. `None` when it cannot be read.
fn on_disk_version(exe: &Path) -> Option<Version> {
    let bytes = std::fs::read(exe).ok()?;
    let at = find_slot(&bytes)?;
    let rest = &bytes[at + SLOT_PREFIX.len()..at + SLOT_LEN];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Version::parse(std::str::from_utf8(&rest[..end]).ok()?).ok()
}

/// Where the undo copy of a replaced single executable is kept until the new one proved itself (apart
/// from the staging folder, which every attempt makes afresh).
fn undo_path(paths: &Paths) -> PathBuf {
    paths
        .install_dir()
        .join("launcher-undo")
        .join(launcher_file_name())
}

/// The name of the app bundle a macOS release carries.
pub const APP_NAME: &str = "Personal AI Agent.app";

/// Whether `exe` is the launcher's to replace at all: named as the launcher (not a program using the
/// engine, not one renamed by hand) and not running from inside an installed version.
fn replaceable_launcher(paths: &Paths, exe: &Path) -> bool {
    // `exe` is canonical (`running_exe`): compare with the canonical install folder (Windows' `\\?\`
    // form, links in the data path).
    let install = std::fs::canonicalize(paths.install_dir()).unwrap_or_else(|_| paths.install_dir());
    exe.file_name() == Some(std::ffi::OsStr::new(&launcher_file_name()))
        && !exe.starts_with(&install)
        && !exe.starts_with(paths.install_dir())
}

/// The bundle's launcher, copied and checked right after the archive was unpacked, before any backend ran
/// in the version folder (and so before anything could change the folder or its file list).
pub struct Prepared {
    staged: Result<Staged, String>,
}

/// Stages the launcher `release`'s bundle carries, when there is one to consider: called with the install
/// lock held, right after the unpacked files were recorded and before the new backend starts.
pub fn prepare(paths: &Paths, bundle_dir: &Path, release: &Version) -> Option<Prepared> {
    let exe = running_exe()?;
    let candidate = bundle_dir.join(launcher_file_name());
    if candidate.symlink_metadata().is_err() {
        return None;
    }
    if !replaceable_launcher(paths, exe) {
        tracing::debug!(exe = %exe.display(), "not running as an installed launcher; leaving the executable alone");
        return None;
    }
    if read_state(paths).failed.contains_key(&release.to_string()) {
        tracing::debug!(%release, "this release's launcher failed before");
        return None;
    }
    Some(Prepared {
        staged: stage_candidate(paths, bundle_dir, release),
    })
}

/// Forgets a prepared launcher (the update was rolled back).
pub fn discard(paths: &Paths, prepared: Option<Prepared>) {
    if prepared.is_some() {
        let _ = std::fs::remove_dir_all(staging_dir(paths));
    }
}

/// After `release` was installed and proved healthy, with `previous` current before: replaces the
/// running launcher with the one [`prepare`] staged when it is newer (see the module's picture). `None`:
/// nothing to do. Called with the install lock held.
pub fn update_from_bundle(
    paths: &Paths,
    prepared: Option<Prepared>,
    release: &Version,
    previous: Option<&Version>,
) -> Option<LauncherOutcome> {
    let prepared = prepared?;
    let exe = running_exe()?;
    let fail = |reason: String, record: bool| {
        tracing::error!(%release, %reason, "the release's launcher is not used; keeping this one");
        if record {
            record_failed(paths, release, &reason);
        }
        Some(LauncherOutcome::Failed {
            release: release.to_string(),
            reason,
        })
    };
    let staged = match prepared.staged {
        Ok(staged) => staged,
        Err(reason) => return fail(reason, true),
    };
    let offered = match test_launcher(&staged.exe, paths, SELF_TEST_TIMEOUT) {
        Ok(t) => t.version,
        Err(reason) => return fail(format!("it failed its self-test: {reason}"), true),
    };
    let Some(running) = on_disk_version(exe) else {
        let _ = std::fs::remove_dir_all(staging_dir(paths));
        return fail(
            format!(
                "the launcher at {} cannot be read, so it is not replaced; if it is missing, copy {} there",
                exe.display(),
                staged.exe.display()
            ),
            false,
        );
    };
    if offered <= running {
        let _ = std::fs::remove_dir_all(staging_dir(paths));
        return None;
    }
    replace_with(paths, exe, &staged, &running, &offered, release, previous)
}

/// After a rollback to `target`: puts back the launcher that ran while `target` was current, when one was
/// kept for it and the running launcher is the one this mechanism put in place (a launcher the user
/// installed since is left alone).
pub fn restore_for(paths: &Paths, target: &Version) -> Option<LauncherOutcome> {
    let exe = running_exe()?;
    let dir = saved_launcher_dir(paths, target);
    let state = read_state(paths);
    let running = on_disk_version(exe)?;
    let ours = state.last.as_ref().is_some_and(|r| r.to == running.to_string());
    if !dir.exists() || !replaceable_launcher(paths, exe) || !ours {
        return None;
    }
    let fail = |reason: String| {
        tracing::warn!(%target, %reason, "the launcher kept for this version is not put back");
        Some(LauncherOutcome::Failed {
            release: target.to_string(),
            reason,
        })
    };
    let staged = match stage_saved(paths, &dir, state.saved.get(&target.to_string())) {
        Ok(staged) => staged,
        Err(reason) => return fail(reason),
    };
    let offered = match test_launcher(&staged.exe, paths, SELF_TEST_TIMEOUT) {
        Ok(t) => t.version,
        Err(reason) => return fail(format!("it failed its self-test: {reason}")),
    };
    if offered == running {
        let _ = std::fs::remove_dir_all(staging_dir(paths));
        return None;
    }
    replace_with(paths, exe, &staged, &running, &offered, target, None)
}

/// A launcher copied into `install/launcher-staging/`: the executable, and the `.app` around it on macOS.
struct Staged {
    exe: PathBuf,
    app: Option<PathBuf>,
}

fn staging_dir(paths: &Paths) -> PathBuf {
    paths.install_dir().join("launcher-staging")
}

/// A fresh, private staging folder (the install lock is held, so nobody else uses it).
fn fresh_staging(paths: &Paths) -> Result<PathBuf, String> {
    let dir = staging_dir(paths);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{} could not be made: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(dir)
}

/// Copies the bundle's launcher (a file, or on macOS a link into `Personal AI Agent.app` and that app)
/// into staging, and checks every copied file against the SHA256 the release's archive gave it
/// (`install/files/<release>.json`, written before any backend ran in the folder).
fn stage_candidate(paths: &Paths, bundle_dir: &Path, release: &Version) -> Result<Staged, String> {
    let record = crate::updater::installed_file_hashes(paths, release).ok_or_else(|| {
        format!("no record of the files {release} was installed with, so its launcher cannot be vouched for")
    })?;
    let name = launcher_file_name();
    let candidate = bundle_dir.join(&name);
    let staging = fresh_staging(paths)?;
    let meta = candidate
        .symlink_metadata()
        .map_err(|e| format!("{} cannot be read: {e}", candidate.display()))?;
    if meta.file_type().is_symlink() {
        // macOS: the bundle's launcher is a link to the app's executable, and the whole app is what is
        // put in place.
        let target = std::fs::read_link(&candidate).map_err(|e| e.to_string())?;
        let expected = Path::new(APP_NAME).join("Contents/MacOS").join(&name);
        if target != expected {
            return Err(format!(
                "{} links to {}, not to {}",
                candidate.display(),
                target.display(),
                expected.display()
            ));
        }
        let app = staging.join(APP_NAME);
        copy_tree(&bundle_dir.join(APP_NAME), &app).map_err(|e| format!("copying {APP_NAME}: {e}"))?;
        check_app(&record, &app)?;
        Ok(Staged {
            exe: app.join("Contents/MacOS").join(&name),
            app: Some(app),
        })
    } else if meta.is_file() {
        let exe = staging.join(&name);
        save_copy(&candidate, &exe).map_err(|e| format!("copying {}: {e}", candidate.display()))?;
        check_recorded(&record, &name, &exe)?;
        Ok(Staged { exe, app: None })
    } else {
        Err(format!("{} is not a file", candidate.display()))
    }
}

/// A release's files as recorded when it was unpacked: path → (size, SHA256).
type FileRecord = BTreeMap<String, (u64, String)>;

/// Whether the staged file `staged` is the file `rel` the release's archive held.
fn check_recorded(record: &FileRecord, rel: &str, staged: &Path) -> Result<(), String> {
    let (size, sha256) = record
        .get(rel)
        .ok_or_else(|| format!("{rel} was not in the release's archive"))?;
    let actual = crate::verify::sha256_file(staged).map_err(|e| e.to_string())?;
    let actual_size = staged.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    if &actual != sha256 || actual_size != *size {
        return Err(format!(
            "{rel} is not the file the release's archive held (it changed after the install)"
        ));
    }
    Ok(())
}

/// Whether the staged `.app` holds exactly the files the release's archive held under [`APP_NAME`].
fn check_app(record: &FileRecord, app: &Path) -> Result<(), String> {
    let mut seen = 0;
    for (rel, path) in regular_files(app, APP_NAME).map_err(|e| e.to_string())? {
        check_recorded(record, &rel, &path)?;
        seen += 1;
    }
    let expected_files = record
        .keys()
        .filter(|k| k.starts_with(&format!("{APP_NAME}/")))
        .count();
    if seen != expected_files {
        return Err(format!("{APP_NAME} lacks files the release's archive held"));
    }
    Ok(())
}

/// What [`prepare`] did, as `install/unproven.json` keeps it: a recovery that proves the release healthy
/// after a crash finishes the launcher step from it ([`prepared_after_crash`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PreparedRecord {
    /// Copied into `install/launcher-staging/` and checked.
    Staged,
    /// Not usable, for this reason (recorded as failed once the release is committed).
    Failed { reason: String },
}

impl Prepared {
    pub fn record(&self) -> PreparedRecord {
        match &self.staged {
            Ok(_) => PreparedRecord::Staged,
            Err(reason) => PreparedRecord::Failed {
                reason: reason.clone(),
            },
        }
    }
}

/// The launcher [`prepare`] staged for `release` before a crash, for a recovery that proved `release`
/// healthy: the staged copy is checked again against the release's file record (it is what is tested
/// and put in place). `None`: nothing to do (the staging is removed).
pub fn prepared_after_crash(paths: &Paths, release: &Version, record: &PreparedRecord) -> Option<Prepared> {
    let usable = running_exe().is_some_and(|exe| replaceable_launcher(paths, exe))
        && !read_state(paths).failed.contains_key(&release.to_string());
    if !usable {
        let _ = std::fs::remove_dir_all(staging_dir(paths));
        return None;
    }
    Some(Prepared {
        staged: match record {
            PreparedRecord::Failed { reason } => Err(reason.clone()),
            PreparedRecord::Staged => check_staged(paths, release),
        },
    })
}

/// The launcher in `install/launcher-staging/`, checked against what `release`'s archive held.
fn check_staged(paths: &Paths, release: &Version) -> Result<Staged, String> {
    let record = crate::updater::installed_file_hashes(paths, release).ok_or_else(|| {
        format!("no record of the files {release} was installed with, so its launcher cannot be vouched for")
    })?;
    let staging = staging_dir(paths);
    let name = launcher_file_name();
    let app = staging.join(APP_NAME);
    if app.is_dir() {
        check_app(&record, &app)?;
        return Ok(Staged {
            exe: app.join("Contents/MacOS").join(&name),
            app: Some(app),
        });
    }
    let exe = staging.join(&name);
    if !exe.is_file() {
        return Err(format!(
            "the copy staged in {} is gone (the launcher stopped before its update was finished)",
            staging.display()
        ));
    }
    check_recorded(&record, &name, &exe)?;
    Ok(Staged { exe, app: None })
}

/// Removes a staged launcher nothing refers to any more (an install that rolled back, or ended before its
/// launcher step). Called with the install lock held.
pub fn discard_staging(paths: &Paths) {
    let _ = std::fs::remove_dir_all(staging_dir(paths));
}

/// Copies a kept launcher into staging, checking it against the SHA256 recorded when it was kept.
fn stage_saved(paths: &Paths, dir: &Path, sha256: Option<&String>) -> Result<Staged, String> {
    let name = launcher_file_name();
    let staging = fresh_staging(paths)?;
    let staged = if dir.join(APP_NAME).is_dir() {
        let app = staging.join(APP_NAME);
        copy_tree(&dir.join(APP_NAME), &app).map_err(|e| e.to_string())?;
        Staged {
            exe: app.join("Contents/MacOS").join(&name),
            app: Some(app),
        }
    } else {
        let exe = staging.join(&name);
        save_copy(&dir.join(&name), &exe).map_err(|e| format!("copying the kept launcher: {e}"))?;
        Staged { exe, app: None }
    };
    let actual = tree_digest(staged.app.as_deref().unwrap_or(&staged.exe)).map_err(|e| e.to_string())?;
    if sha256 != Some(&actual) {
        return Err(format!(
            "the launcher kept in {} is not the one that was kept (its SHA256 differs or was not recorded)",
            dir.display()
        ));
    }
    Ok(staged)
}

/// Every regular file under `root`, with its path relative to the bundle (`prefix/...`); a symbolic link
/// that leaves `root` is an error.
fn regular_files(root: &Path, prefix: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), prefix.to_owned())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let child = format!("{rel}/{}", entry.file_name().to_string_lossy());
            if kind.is_dir() {
                stack.push((entry.path(), child));
            } else if kind.is_symlink() {
                let target = std::fs::read_link(entry.path())?;
                let escapes = target.is_absolute()
                    || target
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                        && !entry
                            .path()
                            .parent()
                            .map(|p| p.join(&target))
                            .and_then(|t| std::fs::canonicalize(t).ok())
                            .is_some_and(|t| std::fs::canonicalize(root).is_ok_and(|r| t.starts_with(r)));
                if escapes {
                    return Err(std::io::Error::other(format!("{child} links outside the app")));
                }
            } else {
                out.push((child, entry.path()));
            }
        }
    }
    Ok(out)
}

/// Keeps the running launcher for a rollback to `previous`, replaces it with `staged` and proves the
/// result runs; puts the running one back when it does not.
fn replace_with(
    paths: &Paths,
    exe: &Path,
    staged: &Staged,
    running: &Version,
    offered: &Version,
    release: &Version,
    previous: Option<&Version>,
) -> Option<LauncherOutcome> {
    let failed = |reason: String| {
        tracing::error!(%release, %reason, "the launcher was not replaced");
        Some(LauncherOutcome::Failed {
            release: release.to_string(),
            reason,
        })
    };
    if exe.symlink_metadata().is_err() {
        let _ = std::fs::remove_dir_all(staging_dir(paths));
        let aside = app_bundle_of(exe).and_then(|app| {
            let name = app.file_name()?.to_string_lossy().into_owned();
            let aside = app.parent()?.join(format!(".{name}.outgoing"));
            aside.is_dir().then_some((aside, app))
        });
        return failed(format!(
            "the launcher is missing from {}{}",
            exe.display(),
            match aside {
                Some((aside, app)) => format!(
                    " (an interrupted replacement): rename {} to {}",
                    aside.display(),
                    app.display()
                ),
                None if undo_path(paths).is_file() => format!(
                    " (an interrupted replacement?): copy {} there",
                    undo_path(paths).display()
                ),
                None => String::new(),
            }
        ));
    }
    let placement = placement(exe);
    if let Some((reason, advice)) = placement.refusal() {
        let _ = std::fs::remove_dir_all(staging_dir(paths));
        tracing::warn!(%offered, %reason, %advice, "not replacing the launcher");
        return Some(LauncherOutcome::Refused {
            version: offered.to_string(),
            path: exe.to_path_buf(),
            reason,
            advice,
        });
    }
    if cfg!(windows) && restart_pending() {
        // Windows moved the running .exe aside once; a second replacement would act on that copy.
        return Some(LauncherOutcome::Refused {
            version: offered.to_string(),
            path: exe.to_path_buf(),
            reason: "this launcher already replaced itself and has not restarted yet".into(),
            advice: "restart it (Restart now in the window, or start it again), then try again".into(),
        });
    }
    let app = app_bundle_of(exe);
    if app.is_some() != staged.app.is_some() {
        // An .app must be replaced whole (its signature seals every file), and a bare launcher must not
        // become an .app's insides.
        let _ = std::fs::remove_dir_all(staging_dir(paths));
        return failed(match &app {
            Some(app) => format!(
                "the launcher runs from {} but the release carries no {APP_NAME} to replace it whole",
                app.display()
            ),
            None => format!("the release carries {APP_NAME}, but this launcher is not one"),
        });
    }
    // The launcher (or its .app) that runs now, kept for a rollback to the version current before.
    let mut state = read_state(paths);
    if let Some(previous) = previous {
        let dir = saved_launcher_dir(paths, previous);
        // Made beside the old kept copy and renamed over it, so a failure leaves the old one whole.
        let fresh = dir.with_extension("incoming");
        let kept = (|| -> std::io::Result<String> {
            let _ = std::fs::remove_dir_all(&fresh);
            std::fs::create_dir_all(&fresh)?;
            let copy = match &app {
                Some(app) => {
                    copy_tree(app, &fresh.join(APP_NAME))?;
                    fresh.join(APP_NAME)
                }
                None => {
                    save_copy(exe, &fresh.join(launcher_file_name()))?;
                    fresh.join(launcher_file_name())
                }
            };
            let digest = tree_digest(&copy)?;
            crate::fsutil::sync_dir(&fresh);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&fresh, &dir)?;
            Ok(digest)
        })();
        match kept {
            Ok(sha256) => {
                state.saved.insert(previous.to_string(), sha256);
                write_state(paths, &state);
            }
            Err(e) => {
                return failed(format!(
                    "a copy of the running launcher could not be kept in {} ({e}), so it was not replaced",
                    dir.display()
                ));
            }
        }
    }
    // The undo: for a single executable, a copy of it; an .app's old bundle is kept aside by the swap
    // itself. Either stays until the new launcher has started (`recover`), so whatever fails until then
    // can put the previous one back.
    let undo = match &app {
        Some(app) => aside_of(app),
        None => {
            let undo = undo_path(paths);
            if let Err(e) = save_copy(exe, &undo) {
                return failed(format!(
                    "a copy of the running launcher could not be made in {} ({e}), so it was not replaced",
                    undo.display()
                ));
            }
            undo
        }
    };
    // The intent first: a crash from here on leaves a record the next start finishes or undoes.
    let mut replacing = Replacing {
        from: running.to_string(),
        to: offered.to_string(),
        release: release.to_string(),
        path: exe.to_path_buf(),
        app: app.clone(),
        undo: undo.clone(),
        stage: ReplacingStage::Swapping,
        at: Utc::now(),
        previous_last: state.last.clone(),
    };
    state.replacing = Some(replacing.clone());
    if let Err(e) = try_write_state(paths, &state) {
        if app.is_none() {
            let _ = std::fs::remove_file(&undo);
        }
        let _ = std::fs::remove_dir_all(staging_dir(paths));
        return failed(format!(
            "the replacement could not be recorded in {} ({e}), so the launcher was not replaced",
            state_file(paths).display()
        ));
    }
    let swapped = match (&app, &staged.app) {
        (Some(app), Some(new_app)) => replace_app(app, new_app).map(|_| ()),
        _ => replace_file(exe, &staged.exe),
    };
    if let Err(e) = swapped {
        // Windows' self_replace may fail after moving the running .exe aside: the path must never
        // stay empty.
        let mut reason = format!("{} could not be replaced: {e}", exe.display());
        let _ = std::fs::remove_dir_all(staging_dir(paths));
        if app.is_none()
            && exe.symlink_metadata().is_err()
            && let Err(e2) = put_file_back(&undo, exe)
        {
            reason.push_str(&format!(
                "; putting it back failed too ({e2}): copy {} to {} by hand",
                undo.display(),
                exe.display()
            ));
            // Kept, with the record, for the next start to try again.
            return failed(reason);
        }
        forget_replacing(paths, &mut state, &replacing);
        return failed(reason);
    }
    // The gate: the launcher now at its path must run, be the version offered, and start the way this
    // launcher was started (the runner's `run --headless …`, the window, the command that installed).
    let proven = match test_launcher(exe, paths, SELF_TEST_TIMEOUT) {
        Err(reason) => Err(format!("it failed its self-test ({reason})")),
        Ok(t) if &t.version != offered => Err(format!(
            "it failed its self-test (it reports {}, not {offered})",
            t.version
        )),
        Ok(t) if t.probe => probe_start(paths, exe, offered),
        Ok(_) => {
            tracing::info!(%offered, "this launcher predates the start probe; its self-test is its proof");
            Ok(())
        }
    };
    let _ = std::fs::remove_dir_all(staging_dir(paths));
    if let Err(reason) = proven {
        let put_back = put_back(&replacing);
        let reason = match &put_back {
            Ok(()) => format!("in place, {reason}; the previous launcher was put back"),
            Err(e) => format!(
                "in place, {reason}, and putting the previous launcher back failed ({e}): copy {} to {} by hand",
                undo.display(),
                app.as_deref().unwrap_or(exe).display()
            ),
        };
        state.failed.insert(release.to_string(), reason.clone());
        if put_back.is_ok() {
            forget_replacing(paths, &mut state, &replacing);
        } else {
            // Kept, with the record, for the next start to try again.
            write_state(paths, &state);
        }
        return failed(reason);
    }
    state.last = Some(Replacement {
        from: running.to_string(),
        to: offered.to_string(),
        release: release.to_string(),
        at: Utc::now(),
    });
    // A restart changes something only when the file now differs from the code running; when it does
    // not, the launcher in place is the one running, which has started.
    if offered.to_string() != launcher_version() {
        replacing.stage = ReplacingStage::AwaitingStart;
        state.replacing = Some(replacing);
        write_state(paths, &state);
        mark_restart_pending(paths);
    } else {
        forget_replacing(paths, &mut state, &replacing);
        RESTART_PENDING.store(false, Ordering::SeqCst);
    }
    tracing::info!(from = %running, to = %offered, "the launcher was replaced; it runs after a restart");
    Some(LauncherOutcome::Updated {
        from: running.to_string(),
        to: offered.to_string(),
        path: exe.to_path_buf(),
    })
}

/// Copies `from` to `to` (made executable), flushed, through a temporary file in `to`'s folder.
fn save_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".launcher").tempfile_in(dir)?;
    let mut input = std::fs::File::open(from)?;
    std::io::copy(&mut input, tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    tmp.persist(to).map_err(|e| e.error)?;
    crate::fsutil::sync_dir(dir);
    Ok(())
}

/// Puts `backup` at `exe` by copy and rename in its folder. The file at `exe` is not running (the running
/// one was moved or unlinked by the replacement), so this needs none of self_replace's care.
fn put_file_back(backup: &Path, exe: &Path) -> std::io::Result<()> {
    with_sharing_retry(|| save_copy(backup, exe))
}

/// Puts `new` at the running executable's path `exe`. Unix: a flushed copy beside it renamed over it (the
/// running process keeps its unlinked file), by the path remembered at start, so a second replacement
/// in one process works too. Windows: `self_replace`, which moves the running `.exe` aside first; retried
/// while antivirus briefly holds a file, but only while the launcher is still at its path.
fn replace_file(exe: &Path, new: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        save_copy(new, exe)
    }
    #[cfg(not(unix))]
    {
        with_sharing_retry(|| {
            if exe.symlink_metadata().is_err() {
                return Err(std::io::Error::other("the launcher is no longer at its path"));
            }
            self_replace::self_replace(new)
        })
    }
}

fn with_sharing_retry<T>(op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    use crate::install::retry::{RENAME_BACKOFF, RetryError, is_windows_sharing_error, retry_transient};
    retry_transient(
        op,
        |e| cfg!(windows) && is_windows_sharing_error(e),
        &RENAME_BACKOFF,
        std::thread::sleep,
    )
    .map_err(|e| match e {
        RetryError::Permanent(e) => e,
        RetryError::Exhausted { error, .. } => error,
    })
}

/// Replaces the `.app` bundle `app` with a copy of `new_app`, whole, so its code signature stays sealed:
/// the copy is made beside it, then the old bundle is renamed aside and the new one renamed in. Returns
/// where the old one is: removed by the caller once the new one proved itself, or swapped back
/// ([`swap_back`]). An app missing with its old bundle aside (a crash between the two renames) is put back
/// first.
pub fn replace_app(app: &Path, new_app: &Path) -> std::io::Result<PathBuf> {
    let parent = app.parent().unwrap_or(Path::new("."));
    let name = app.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let aside = aside_of(app);
    if app.symlink_metadata().is_err() && aside.is_dir() {
        std::fs::rename(&aside, app)?;
    }
    let incoming = tempfile::Builder::new()
        .prefix(&format!(".{name}.incoming"))
        .tempdir_in(parent)?
        .keep();
    let result = (|| {
        copy_tree(new_app, &incoming)?;
        if aside.exists() {
            std::fs::remove_dir_all(&aside)?;
        }
        std::fs::rename(app, &aside)?;
        if let Err(e) = std::fs::rename(&incoming, app) {
            let _ = std::fs::rename(&aside, app);
            return Err(e);
        }
        crate::fsutil::sync_dir(parent);
        Ok(aside.clone())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&incoming);
    }
    result
}

/// Where [`replace_app`] sets the old bundle aside: `.<name>.outgoing` beside it.
fn aside_of(app: &Path) -> PathBuf {
    let parent = app.parent().unwrap_or(Path::new("."));
    let name = app.file_name().unwrap_or_default().to_string_lossy();
    parent.join(format!(".{name}.outgoing"))
}

/// Undoes [`replace_app`]: the new bundle out, the old one back.
fn swap_back(app: &Path, aside: &Path) -> std::io::Result<()> {
    let parent = app.parent().unwrap_or(Path::new("."));
    let failed = tempfile::Builder::new()
        .prefix(".failed")
        .tempdir_in(parent)?
        .keep();
    std::fs::remove_dir(&failed)?;
    std::fs::rename(app, &failed)?;
    if let Err(e) = std::fs::rename(aside, app) {
        // Never leave the app's place empty: the new one goes back while the old one stays aside.
        let _ = std::fs::rename(&failed, app);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(&failed);
    Ok(())
}

/// Copies a folder tree, keeping symbolic links as links (an `.app`'s frameworks use them) and modes.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
            #[cfg(not(unix))]
            std::fs::copy(entry.path(), &target).map(|_| ())?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else {
            return Err(std::io::Error::other(format!(
                "{} is neither a file, a folder nor a link",
                entry.path().display()
            )));
        }
    }
    Ok(())
}

/// The SHA256 of a file, or of a folder as the sorted list of its entries (path, kind, the SHA256 of
/// each file, the target of each link): what a kept launcher is checked against before it is put back.
fn tree_digest(path: &Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    let meta = path.symlink_metadata()?;
    if meta.is_file() {
        return crate::verify::sha256_file(path).map_err(|e| std::io::Error::other(e.to_string()));
    }
    let mut lines = Vec::new();
    let mut stack = vec![(path.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let child = format!("{rel}/{}", entry.file_name().to_string_lossy());
            if kind.is_dir() {
                lines.push(format!("d {child}"));
                stack.push((entry.path(), child));
            } else if kind.is_symlink() {
                lines.push(format!(
                    "l {child} {}",
                    std::fs::read_link(entry.path())?.display()
                ));
            } else {
                let sha = crate::verify::sha256_file(&entry.path())
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                lines.push(format!("f {child} {sha}"));
            }
        }
    }
    lines.sort();
    Ok(hex::encode(sha2::Sha256::digest(lines.join("\n").as_bytes())))
}

/// Removes kept launchers of versions no longer installed.
pub fn prune_saved(paths: &Paths, installed: &[Version]) {
    let dir = paths.install_dir().join("launchers");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let keep = entry
            .file_name()
            .to_str()
            .and_then(|n| Version::parse(n).ok())
            .is_some_and(|v| installed.contains(&v));
        if !keep {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The launcher's part of `update status`: its version, where it runs, whether it may replace itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LauncherStatus {
    pub version: String,
    pub placement: Option<Placement>,
    /// A replacement made by this process that a restart has not picked up yet.
    pub restart_pending: bool,
    #[serde(default)]
    pub last_replacement: Option<Replacement>,
    #[serde(default)]
    pub failed: BTreeMap<String, String>,
    /// A replacement not finished yet (see [`ReplacingStage`]).
    #[serde(default)]
    pub replacing: Option<Replacing>,
}

impl LauncherStatus {
    /// Its lines in `update status`.
    pub fn human(&self) -> String {
        let mut out = format!("Launcher: {}", self.version);
        match &self.placement {
            Some(Placement::Replaceable { path }) => {
                out.push_str(&format!(" at {} (updates itself)", path.display()))
            }
            Some(other) => {
                let (reason, advice) = other.refusal().unwrap_or_default();
                out.push_str(&format!(
                    " at {}: does not update itself, {reason}; {advice}",
                    other.path().display()
                ));
            }
            None => {}
        }
        out.push('\n');
        if self.restart_pending {
            out.push_str("Launcher replaced: restart it to run the new one\n");
        }
        match &self.replacing {
            Some(r) if r.stage == ReplacingStage::AwaitingStart => out.push_str(&format!(
                "Launcher {} is in place and has not started yet; the previous one ({}) is kept in {} until it has\n",
                r.to,
                r.from,
                r.undo.display()
            )),
            Some(r) => out.push_str(&format!(
                "Launcher {} was being put in place when the launcher stopped; the next update or start puts {} back\n",
                r.to, r.from
            )),
            None => {}
        }
        for (release, reason) in &self.failed {
            out.push_str(&format!("Launcher of {release} not used: {reason}\n"));
        }
        out
    }
}

pub fn status(paths: &Paths) -> LauncherStatus {
    let state = read_state(paths);
    LauncherStatus {
        version: launcher_version().to_owned(),
        // Asked once a process (dpkg-query may be slow; an attached window polls the status twice a second).
        placement: {
            static PLACEMENT: OnceLock<Option<Placement>> = OnceLock::new();
            PLACEMENT
                .get_or_init(|| {
                    running_exe()
                        .filter(|exe| replaceable_launcher(paths, exe))
                        .map(placement)
                })
                .clone()
        },
        restart_pending: restart_pending(),
        last_replacement: state.last,
        failed: state.failed,
        replacing: state.replacing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_holds_the_cargo_version_and_is_found_in_a_copy() {
        assert_eq!(launcher_version(), env!("CARGO_PKG_VERSION"));
        let mut bytes = b"junk PAI-LAUNCHER-VERSION= not a slot ".to_vec();
        let at = bytes.len();
        bytes.extend_from_slice(&VERSION_SLOT);
        bytes.extend_from_slice(b"tail");
        assert_eq!(find_slot(&bytes), Some(at));
    }

    #[test]
    fn package_managers_and_odd_places_are_named_with_what_to_do() {
        let none = |_: &Path| None;
        let dpkg = |_: &Path| Some(("dpkg".to_owned(), "personal-ai-agent".to_owned()));
        let p = placement_with(Path::new("/usr/bin/personal-ai-agent"), &dpkg);
        assert!(
            matches!(&p, Placement::PackageManager { manager, .. } if manager == "dpkg"),
            "{p:?}"
        );
        let (reason, advice) = p.refusal().unwrap();
        assert!(
            reason.contains("dpkg") && advice.contains("apt"),
            "{reason} / {advice}"
        );
        let brew = placement_with(
            Path::new("/opt/homebrew/Cellar/personal-ai-agent/1.0.0/bin/personal-ai-agent"),
            &none,
        );
        assert!(matches!(&brew, Placement::PackageManager { manager, .. } if manager == "Homebrew"));
        assert!(brew.refusal().unwrap().1.contains("brew upgrade"));
        let moved = placement_with(
            Path::new(
                "/private/var/folders/x/AppTranslocation/ABC/d/Personal AI Agent.app/Contents/MacOS/personal-ai-agent",
            ),
            &none,
        );
        assert!(matches!(moved, Placement::MoveFirst { .. }));
        assert!(moved.refusal().unwrap().1.contains("Applications"));
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().join("personal-ai-agent");
        assert_eq!(
            placement_with(&here, &none),
            Placement::Replaceable { path: here.clone() }
        );
    }

    #[test]
    fn an_app_bundle_is_recognised_from_its_executable() {
        assert_eq!(
            app_bundle_of(Path::new(
                "/Applications/Personal AI Agent.app/Contents/MacOS/personal-ai-agent"
            )),
            Some(PathBuf::from("/Applications/Personal AI Agent.app"))
        );
        assert_eq!(app_bundle_of(Path::new("/usr/local/bin/personal-ai-agent")), None);
    }

    #[test]
    fn an_app_bundle_is_replaced_whole_with_its_links() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("Personal AI Agent.app");
        let new_app = dir.path().join("bundle/Personal AI Agent.app");
        for (root, text) in [(&app, "old"), (&new_app, "new")] {
            std::fs::create_dir_all(root.join("Contents/MacOS")).unwrap();
            std::fs::write(root.join("Contents/MacOS/personal-ai-agent"), text).unwrap();
            std::fs::write(root.join("Contents/Info.plist"), text).unwrap();
        }
        std::fs::write(app.join("Contents/stale"), "only in the old one").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("MacOS/personal-ai-agent", new_app.join("Contents/link")).unwrap();
        let read =
            |app: &Path| std::fs::read_to_string(app.join("Contents/MacOS/personal-ai-agent")).unwrap();
        let aside = replace_app(&app, &new_app).unwrap();
        assert_eq!(read(&app), "new");
        // Kept aside until the new one proved itself; swapped back when it did not.
        swap_back(&app, &aside).unwrap();
        assert_eq!(read(&app), "old");
        // A crash right after the old app was renamed aside: the next swap puts it back first.
        std::fs::rename(&app, &aside).unwrap();
        let aside = replace_app(&app, &new_app).unwrap();
        assert_eq!((read(&app), read(&aside)), ("new".to_owned(), "old".to_owned()));
        std::fs::remove_dir_all(&aside).unwrap();
        assert!(!app.join("Contents/stale").exists());
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(app.join("Contents/link")).unwrap(),
            PathBuf::from("MacOS/personal-ai-agent")
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "no incoming/outgoing folder left: {left:?}");
    }

    #[test]
    fn only_a_launcher_as_the_release_archive_held_it_is_staged() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        let v: Version = "1.0.0".parse().unwrap();
        let bundle = crate::updater::installer(&paths).version_dir(&v);
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join(launcher_file_name()), "as released").unwrap();
        crate::updater::record_installed_tree(&paths, &v).unwrap();
        let staged = stage_candidate(&paths, &bundle, &v).unwrap();
        assert_eq!(std::fs::read_to_string(&staged.exe).unwrap(), "as released");
        assert!(staged.exe.starts_with(staging_dir(&paths)));
        // Changed in the version folder after the install (the backend runs there): refused.
        std::fs::write(bundle.join(launcher_file_name()), "changed by the backend").unwrap();
        let err = stage_candidate(&paths, &bundle, &v).err().unwrap();
        assert!(err.contains("not the file the release's archive held"), "{err}");
        // No record of the release's files: nothing to vouch for it.
        let w: Version = "2.0.0".parse().unwrap();
        let err = stage_candidate(&paths, &bundle, &w).err().unwrap();
        assert!(err.contains("no record"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_macos_bundle_stages_its_whole_app_and_nothing_added_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        let v: Version = "1.0.0".parse().unwrap();
        let bundle = crate::updater::installer(&paths).version_dir(&v);
        let macos = bundle.join(APP_NAME).join("Contents/MacOS");
        std::fs::create_dir_all(&macos).unwrap();
        std::fs::write(macos.join(launcher_file_name()), "app launcher").unwrap();
        std::fs::write(bundle.join(APP_NAME).join("Contents/Info.plist"), "plist").unwrap();
        let link = Path::new(APP_NAME)
            .join("Contents/MacOS")
            .join(launcher_file_name());
        std::os::unix::fs::symlink(&link, bundle.join(launcher_file_name())).unwrap();
        crate::updater::record_installed_tree(&paths, &v).unwrap();
        let staged = stage_candidate(&paths, &bundle, &v).unwrap();
        assert!(staged.app.as_ref().unwrap().join("Contents/Info.plist").is_file());
        assert_eq!(std::fs::read_to_string(&staged.exe).unwrap(), "app launcher");
        std::fs::write(macos.join("extra"), "added later").unwrap();
        let err = stage_candidate(&paths, &bundle, &v).err().unwrap();
        assert!(err.contains("was not in the release's archive"), "{err}");
        std::fs::remove_file(macos.join("extra")).unwrap();
        std::fs::remove_file(bundle.join(launcher_file_name())).unwrap();
        std::os::unix::fs::symlink("elsewhere", bundle.join(launcher_file_name())).unwrap();
        let err = stage_candidate(&paths, &bundle, &v).err().unwrap();
        assert!(err.contains("links to elsewhere"), "{err}");
    }

    #[test]
    fn kept_launchers_of_removed_versions_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        for v in ["1.0.0", "1.1.0"] {
            std::fs::create_dir_all(saved_launcher_dir(&paths, &v.parse().unwrap())).unwrap();
        }
        prune_saved(&paths, &["1.1.0".parse().unwrap()]);
        assert!(!saved_launcher_dir(&paths, &"1.0.0".parse().unwrap()).exists());
        assert!(saved_launcher_dir(&paths, &"1.1.0".parse().unwrap()).exists());
    }
}
