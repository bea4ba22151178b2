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
    EXE.get_or_init(|| std::env::current_exe().ok()).as_deref()
}

static RESTART_PENDING: AtomicBool = AtomicBool::new(false);
static RESTART_REQUESTED: AtomicBool = AtomicBool::new(false);

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
/// (same pid, so a service manager still tracks it), a new process on Windows. Returns only on failure.
pub fn restart() -> anyhow::Error {
    let Some(exe) = running_exe() else {
        return anyhow::anyhow!("cannot find the launcher executable to restart; start it again by hand");
    };
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    tracing::info!(exe = %exe.display(), "restarting into the updated launcher");
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec();
        anyhow::anyhow!(
            "could not restart into the updated launcher at {}: {e}; start it again by hand",
            exe.display()
        )
    }
    #[cfg(not(unix))]
    {
        match cmd.spawn() {
            Ok(_) => std::process::exit(0),
            Err(e) => anyhow::anyhow!(
                "could not restart into the updated launcher at {}: {e}; start it again by hand",
                exe.display()
            ),
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
                "The launcher of release {release} failed its self-test ({reason}); the current launcher keeps running, and this release's launcher is not tried again."
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
        ) && out.0
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
        ) && out.0
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

/// Runs `cmd` with its output captured (64 KiB at most each) for at most `timeout`; `(success, stdout,
/// stderr)`, or `None` when it could not start or did not end in time (it is killed then).
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Option<(bool, Vec<u8>, Vec<u8>)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.by_ref().take(64 * 1024).read_to_end(&mut buf);
                // Drain the rest so the child never blocks on a full pipe.
                let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            }
            buf
        })
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
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    status.map(|s| (s.success(), stdout, stderr))
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
}

/// The self-test a launcher runs on itself: it starts, reads its settings and the install, and says
/// which version and platform it is. Fails (exit 1) when its own version cannot be read.
pub fn self_test(paths: &Paths) -> Result<SelfTest, String> {
    let version = launcher_version();
    Version::parse(version).map_err(|e| format!("its version {version:?} is not a version: {e}"))?;
    let loaded = crate::config::Config::load(&paths.config_file());
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
    })
}

/// Runs `exe`'s self-test for the install at `paths`: the version it reports, or why it failed.
pub fn test_launcher(exe: &Path, paths: &Paths, timeout: Duration) -> Result<Version, String> {
    let mut cmd = Command::new(exe);
    if let Some(home) = &paths.home {
        cmd.arg("--home").arg(home);
    }
    cmd.args([SELF_TEST_SUBCOMMAND, "--json"]);
    let (ok, stdout, stderr) = run_bounded(&mut cmd, timeout).ok_or_else(|| {
        format!(
            "it did not start, or did not answer within {} s",
            timeout.as_secs()
        )
    })?;
    let last_words = || {
        let text = String::from_utf8_lossy(&stderr);
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
    };
    if !ok {
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
    Version::parse(&report.version).map_err(|e| format!("it reports the version {:?} ({e})", report.version))
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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
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
    let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
    if let Err(e) = crate::fsutil::write_atomic(&state_file(paths), &bytes) {
        tracing::warn!("could not record the launcher's state: {e}");
    }
}

fn record_failed(paths: &Paths, release: &Version, reason: &str) {
    let mut state = read_state(paths);
    state.failed.insert(release.to_string(), reason.to_owned());
    write_state(paths, &state);
}

/// The folder of the launcher that ran while `version` was current.
pub fn saved_launcher_dir(paths: &Paths, version: &Version) -> PathBuf {
    paths.install_dir().join("launchers").join(version.to_string())
}

/// After `release` (in `bundle_dir`) was installed and proved healthy, with `previous` current before:
/// replaces the running launcher with the bundle's when it is newer (see the module's picture). `None`:
/// nothing to do. Called with the install lock held.
pub fn update_from_bundle(
    paths: &Paths,
    bundle_dir: &Path,
    release: &Version,
    previous: Option<&Version>,
) -> Option<LauncherOutcome> {
    let exe = running_exe()?;
    let candidate = bundle_dir.join(launcher_file_name());
    if !candidate.is_file() {
        return None;
    }
    if exe.file_name() != Some(std::ffi::OsStr::new(&launcher_file_name())) {
        // A program using the engine (a test harness) or a launcher renamed by hand: not ours to replace.
        tracing::debug!(exe = %exe.display(), "not running as the launcher; leaving the executable alone");
        return None;
    }
    if read_state(paths).failed.contains_key(&release.to_string()) {
        tracing::debug!(%release, "this release's launcher failed its self-test before");
        return None;
    }
    let running = Version::parse(launcher_version()).ok()?;
    let offered = match test_launcher(&candidate, paths, SELF_TEST_TIMEOUT) {
        Ok(v) => v,
        Err(reason) => {
            tracing::error!(%release, %reason, "the release's launcher failed its self-test; keeping this one");
            record_failed(paths, release, &reason);
            return Some(LauncherOutcome::Failed {
                release: release.to_string(),
                reason,
            });
        }
    };
    if offered <= running {
        return None;
    }
    let backup_key = previous.cloned().unwrap_or_else(|| running.clone());
    replace_with(
        paths,
        exe,
        &candidate,
        &running,
        &offered,
        release,
        &backup_key,
        false,
    )
}

/// After a rollback to `target`: puts back the launcher that ran while `target` was current, if one was
/// kept and it differs from the running one.
pub fn restore_for(paths: &Paths, target: &Version) -> Option<LauncherOutcome> {
    let exe = running_exe()?;
    let saved = saved_launcher_dir(paths, target).join(launcher_file_name());
    if !saved.is_file() || exe.file_name() != Some(std::ffi::OsStr::new(&launcher_file_name())) {
        return None;
    }
    let running = Version::parse(launcher_version()).ok()?;
    let offered = match test_launcher(&saved, paths, SELF_TEST_TIMEOUT) {
        Ok(v) => v,
        Err(reason) => {
            tracing::warn!(%target, %reason, "the launcher kept for this version does not run; keeping this one");
            return Some(LauncherOutcome::Failed {
                release: target.to_string(),
                reason,
            });
        }
    };
    if offered == running {
        return None;
    }
    replace_with(paths, exe, &saved, &running, &offered, target, target, true)
}

/// Backs up `exe`, replaces it with `candidate` and proves the result runs; puts the backup back when it
/// does not.
#[allow(clippy::too_many_arguments)]
fn replace_with(
    paths: &Paths,
    exe: &Path,
    candidate: &Path,
    running: &Version,
    offered: &Version,
    release: &Version,
    backup_key: &Version,
    restoring: bool,
) -> Option<LauncherOutcome> {
    let placement = placement(exe);
    if let Some((reason, advice)) = placement.refusal() {
        tracing::warn!(%offered, %reason, %advice, "not replacing the launcher");
        return Some(LauncherOutcome::Refused {
            version: offered.to_string(),
            path: exe.to_path_buf(),
            reason,
            advice,
        });
    }
    let app = app_bundle_of(exe);
    let new_app = candidate.parent().and_then(find_app_in);
    // The backup: the launcher (or its .app) that runs now, kept for a rollback to `backup_key`. Kept as
    // it is when restoring (it is the very file being put back).
    let backup_dir = saved_launcher_dir(paths, backup_key);
    let backup = backup_dir.join(launcher_file_name());
    if !restoring && let Err(e) = save_copy(exe, &backup) {
        tracing::warn!("could not keep a copy of the running launcher ({e}); not replacing it");
        return Some(LauncherOutcome::Failed {
            release: release.to_string(),
            reason: format!(
                "a copy of the running launcher could not be kept in {}: {e}",
                backup_dir.display()
            ),
        });
    }
    let rollback_copy;
    let undo_from = if restoring {
        // Restoring: the running launcher is not kept for any version; a temporary copy serves the undo.
        rollback_copy = paths
            .install_dir()
            .join(format!(".launcher-undo{}", std::env::consts::EXE_SUFFIX));
        if let Err(e) = save_copy(exe, &rollback_copy) {
            return Some(LauncherOutcome::Failed {
                release: release.to_string(),
                reason: format!("a copy of the running launcher could not be made: {e}"),
            });
        }
        rollback_copy.clone()
    } else {
        backup.clone()
    };
    let replaced = match (&app, &new_app) {
        (Some(app), Some(new_app)) => replace_app(app, new_app),
        _ => replace_running(candidate),
    };
    if let Err(e) = replaced {
        tracing::error!("could not replace the launcher: {e}");
        if restoring {
            let _ = std::fs::remove_file(&undo_from);
        }
        return Some(LauncherOutcome::Failed {
            release: release.to_string(),
            reason: format!("{} could not be replaced: {e}", exe.display()),
        });
    }
    // The gate: the file now at the launcher's path must run and be the version offered.
    let proven = test_launcher(exe, paths, SELF_TEST_TIMEOUT).and_then(|v| {
        if &v == offered {
            Ok(())
        } else {
            Err(format!("it reports {v}, not {offered}"))
        }
    });
    if let Err(reason) = proven {
        tracing::error!(%reason, "the replaced launcher failed its self-test; putting the previous one back");
        let put_back = put_file_back(&undo_from, exe);
        if restoring {
            let _ = std::fs::remove_file(&undo_from);
        } else {
            record_failed(paths, release, &reason);
        }
        return Some(LauncherOutcome::Failed {
            release: release.to_string(),
            reason: match put_back {
                Ok(()) => format!("{reason}; the previous launcher was put back"),
                Err(e) => format!(
                    "{reason}; putting the previous launcher back failed too ({e}): copy {} to {} by hand",
                    undo_from.display(),
                    exe.display()
                ),
            },
        });
    }
    if restoring {
        let _ = std::fs::remove_file(&undo_from);
    }
    let mut state = read_state(paths);
    state.last = Some(Replacement {
        from: running.to_string(),
        to: offered.to_string(),
        release: release.to_string(),
        at: Utc::now(),
    });
    write_state(paths, &state);
    RESTART_PENDING.store(true, Ordering::SeqCst);
    tracing::info!(from = %running, to = %offered, "the launcher was replaced; it runs after a restart");
    Some(LauncherOutcome::Updated {
        from: running.to_string(),
        to: offered.to_string(),
        path: exe.to_path_buf(),
    })
}

/// The `.app` bundle at the top of a bundle folder (macOS releases carry one).
fn find_app_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "app") && p.is_dir())
}

/// Copies `from` to `to` (made executable), flushed, through a temporary file.
fn save_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new().prefix(".launcher").tempfile_in(dir)?;
    std::fs::copy(from, tmp.path())?;
    crate::fsutil::sync_file(tmp.path())?;
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

/// Replaces the running executable with `new` (`self_replace`: on Windows the running `.exe` is moved
/// aside first), retrying while antivirus briefly holds a file.
fn replace_running(new: &Path) -> std::io::Result<()> {
    with_sharing_retry(|| self_replace::self_replace(new))
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
/// the copy is made beside it, then the old bundle is renamed aside and the new one renamed in; the old
/// one is removed last (a running process keeps its mapped executable).
pub fn replace_app(app: &Path, new_app: &Path) -> std::io::Result<()> {
    let parent = app.parent().unwrap_or(Path::new("."));
    let name = app.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let incoming = parent.join(format!(".{name}.incoming"));
    let outgoing = parent.join(format!(".{name}.outgoing"));
    for stale in [&incoming, &outgoing] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)?;
        }
    }
    copy_tree(new_app, &incoming)?;
    std::fs::rename(app, &outgoing)?;
    if let Err(e) = std::fs::rename(&incoming, app) {
        let _ = std::fs::rename(&outgoing, app);
        let _ = std::fs::remove_dir_all(&incoming);
        return Err(e);
    }
    crate::fsutil::sync_dir(parent);
    let _ = std::fs::remove_dir_all(&outgoing);
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
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
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
        for (release, reason) in &self.failed {
            out.push_str(&format!("Launcher of {release} failed its self-test: {reason}\n"));
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
            PLACEMENT.get_or_init(|| running_exe().map(placement)).clone()
        },
        restart_pending: restart_pending(),
        last_replacement: state.last,
        failed: state.failed,
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
        replace_app(&app, &new_app).unwrap();
        assert_eq!(
            std::fs::read_to_string(app.join("Contents/MacOS/personal-ai-agent")).unwrap(),
            "new"
        );
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
