//! `uninstall [--keep-data] [--yes] [--dry-run]`: removes what the launcher put on this machine.
//!
//! It first says what it will remove and how much space that frees, then asks (`--yes` answers for
//! scripts; without a terminal and without `--yes` nothing is removed). Everything that can refuse is
//! checked before anything is stopped: a command changing the install in its own process (a foreground
//! `update install`, a `models download`), an update or a models download running, a window or `run
//! --headless` owning the install (close it first). Then a background `backend start` owning it is asked
//! through its API to stop the backend (it then ends), and this process holds the owner lock, the update
//! lock and the models lock while removing, so nothing starts the backend or installs meanwhile.
//!
//! Removed: installed versions, downloads, caches, the demo and runtime state; unless `--keep-data`,
//! also the models, the logs, the settings and the API token. When the `data_dir` setting moved the data
//! folder, what the launcher wrote in the root's own folder before the move (logs, the marker) goes too.
//! A data folder that cannot be used (missing, or others can change it) is not touched: only the
//! settings go, and the report says why the folder was left. Nothing is reported removed that is still
//! there. The launcher executable itself is not removed (a package manager or the user owns it); the
//! last line says where it is.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::Ctx;
use crate::app::Op;
use crate::app::control::Control;
use crate::download::CancelToken;

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Keep the models, the logs and the settings (remove only installed versions, downloads and caches).
    #[arg(long)]
    pub keep_data: bool,
    /// Remove without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Only say what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// One thing to remove.
#[derive(Debug, Serialize)]
struct Item {
    what: &'static str,
    path: PathBuf,
    bytes: u64,
    /// Settings (and the marker) go last, and only when everything else went.
    #[serde(skip)]
    is_setting: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    removed: bool,
    keep_data: bool,
    items: Vec<Item>,
    total_bytes: u64,
    /// What could not be removed, with the reason.
    failed: Vec<String>,
    /// The data folder, when it could not be used and so was not touched, with the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    untouched: Option<String>,
    /// The launcher executable, left in place.
    launcher: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let paths = &ctx.paths;
    // A data folder that cannot be used (a drive not mounted, a folder others can change) is not
    // touched: only the settings, and what the launcher wrote in the root's own folder, go.
    let problem = ctx.data_dir_problem.as_ref();
    let data_items = match problem {
        None => plan_data(paths, args.keep_data),
        Some(_) => Vec::new(),
    };
    if !data_items.is_empty() && !is_launchers_own(&paths.data_dir) {
        // A folder the launcher did not make (a `--home` of the user's, the executable's folder in
        // portable mode) may hold other programs' `downloads`, `models` or `logs`: nothing is removed
        // by name there.
        anyhow::bail!(
            "nothing was removed: {} is not a folder the launcher made (it has no {} file), so its `install`, `downloads`, `models` and `logs` could be another program's; remove what is the launcher's by hand:\n{}",
            paths.data_dir.display(),
            crate::app::DATA_MARKER,
            data_items
                .iter()
                .map(|i| format!("  {}", i.path.display()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let mut items = data_items;
    items.extend(plan_root(paths, args.keep_data));
    items.extend(plan_settings(paths, args.keep_data));
    // Settings (and the markers) go last, and only when everything else went.
    items.sort_by_key(|i| i.is_setting);
    let total_bytes = items.iter().map(|i| i.bytes).sum();
    let mut report = Report {
        removed: false,
        keep_data: args.keep_data,
        items,
        total_bytes,
        failed: Vec::new(),
        untouched: problem.map(|p| format!("{}: left as it is ({p})", paths.data_dir.display())),
        launcher: std::env::current_exe().ok(),
    };
    if report.items.is_empty() {
        ctx.emit(&report, || {
            let mut out = format!(
                "Nothing to remove: no install, download or settings under {}.",
                paths.data_dir.display()
            );
            if let Some(untouched) = &report.untouched {
                out.push_str(&format!("\nThe data folder {untouched}"));
            }
            out
        });
        return Ok(ExitCode::SUCCESS);
    }
    // The list is shown whenever it is asked about, `--quiet` or not.
    let asks = !args.yes && !args.dry_run && !ctx.json && std::io::stdin().is_terminal();
    if !ctx.json && (!ctx.quiet || asks) {
        eprintln!("{}", describe(&report));
    }
    if args.dry_run {
        ctx.emit(&report, || "Nothing was removed (--dry-run).".to_owned());
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        if ctx.json || !std::io::stdin().is_terminal() {
            anyhow::bail!("nothing was removed: confirm with --yes (or run it in a terminal to be asked)");
        }
        eprint!("Remove all of this? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            ctx.emit(&report, || "Nothing was removed.".to_owned());
            return Ok(ExitCode::SUCCESS);
        }
    }
    // Only a usable data folder has a backend, an owner and locks of this user's to deal with.
    let held = match problem {
        None => Some(stop_and_hold(ctx)?),
        Some(_) => None,
    };
    let mut failed_items = Vec::new();
    for (index, item) in report.items.iter().enumerate() {
        if item.is_setting {
            continue;
        }
        if let Err(e) = remove(&item.path, paths) {
            failed_items.push((index, e));
        }
    }
    // The runtime state, while the owner lock is still held (its own file stays until it is let go).
    if held.is_some()
        && let Ok(entries) = std::fs::read_dir(paths.run_dir())
    {
        for entry in entries.flatten() {
            if entry.file_name() != crate::owner::OWNER_LOCK_FILE {
                let _ = remove(&entry.path(), paths);
            }
        }
    }
    // The update and models locks are files in the folders just removed: let go of them, then retry
    // what failed (Windows cannot remove a folder holding an open file; the owner lock still keeps
    // every other launcher out).
    let owner = held.map(|held| {
        let Held {
            owner,
            install,
            models,
        } = held;
        drop(install);
        drop(models);
        owner
    });
    for (index, first) in failed_items {
        let path = &report.items[index].path;
        if let Err(e) = remove(path, paths) {
            tracing::debug!(path = %path.display(), "first attempt: {first}");
            report.failed.push(format!("{}: {e}", path.display()));
        }
    }
    for item in report.items.iter().filter(|i| i.is_setting) {
        // The settings name the data folder: they go only once everything else went, so a retry finds
        // what was left.
        if !report.failed.is_empty() {
            report.failed.push(format!(
                "{}: kept, because something before it could not be removed",
                item.path.display()
            ));
            continue;
        }
        if let Err(e) = remove(&item.path, paths) {
            report.failed.push(format!("{}: {e}", item.path.display()));
        }
    }
    // Nothing is said removed that is still there.
    for item in &report.items {
        if std::fs::symlink_metadata(&item.path).is_ok()
            && !report
                .failed
                .iter()
                .any(|f| f.starts_with(&item.path.display().to_string()))
        {
            report
                .failed
                .push(format!("{}: still there after removing it", item.path.display()));
        }
    }
    drop(owner);
    if held_run_dir_is_free(paths, problem.is_none()) {
        let _ = std::fs::remove_dir_all(paths.run_dir());
    }
    if !args.keep_data {
        // The folders themselves, when nothing else is left in them.
        if problem.is_none() {
            let _ = std::fs::remove_dir(&paths.data_dir);
        }
        let _ = std::fs::remove_dir(&paths.root_data_dir);
        let _ = std::fs::remove_dir(&paths.config_dir);
    }
    report.removed = report.failed.is_empty();
    let failed = !report.failed.is_empty();
    ctx.emit(&report, || {
        let mut out = if failed {
            format!(
                "Some things could not be removed:\n  {}\nClose what uses them (a file manager, an editor) and run `personal-ai-agent uninstall` again.",
                report.failed.join("\n  ")
            )
        } else {
            format!("Removed; {} freed.", super::update::human_size(report.total_bytes))
        };
        if let Some(untouched) = &report.untouched {
            out.push_str(&format!("\nThe data folder {untouched}"));
        }
        if let Some(exe) = &report.launcher {
            out.push_str(&format!(
                "\nThe launcher itself is {}: delete it (or uninstall its package) to finish.",
                exe.display()
            ));
        }
        out
    });
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether the data folder's runtime state may go: it was this process's to hold, and no other launcher
/// took the folder since.
fn held_run_dir_is_free(paths: &crate::paths::Paths, usable: bool) -> bool {
    usable && !crate::owner::is_owned(paths)
}

/// What exists to remove in the data folder, in the order it is removed.
fn plan_data(paths: &crate::paths::Paths, keep_data: bool) -> Vec<Item> {
    let mut items = vec![
        ("installed versions", paths.install_dir()),
        ("downloads", paths.downloads_dir()),
        ("caches", paths.cache_dir()),
        ("the offline demo", paths.data_dir.join("demo")),
    ];
    if !keep_data {
        items.extend([
            ("models", paths.models_dir()),
            ("logs", paths.logs_dir()),
            ("data folder marker", paths.data_dir.join(crate::app::DATA_MARKER)),
        ]);
    }
    existing(items)
}

/// What the launcher left in the root's own data folder before the `data_dir` setting moved the data
/// elsewhere (the logs and the marker of the first commands, caches): its own too, when it marked that
/// folder and nobody else can change it.
fn plan_root(paths: &crate::paths::Paths, keep_data: bool) -> Vec<Item> {
    let root = &paths.root_data_dir;
    if *root == paths.data_dir || !is_launchers_own(root) || crate::paths::check_private_folder(root).is_err()
    {
        return Vec::new();
    }
    let mut items = vec![
        ("installed versions", root.join("install")),
        ("downloads", root.join("downloads")),
        ("caches", root.join("cache")),
        ("runtime state", root.join("run")),
    ];
    if !keep_data {
        items.extend([
            ("logs", root.join("logs")),
            ("data folder marker", root.join(crate::app::DATA_MARKER)),
        ]);
    }
    existing(items)
}

/// The settings, unless they are kept.
fn plan_settings(paths: &crate::paths::Paths, keep_data: bool) -> Vec<Item> {
    if keep_data {
        return Vec::new();
    }
    existing(vec![
        ("settings", paths.config_file()),
        ("settings lock", paths.config_dir.join("config.json.lock")),
        ("API token", paths.config_dir.join(crate::api::token::TOKEN_FILE)),
    ])
}

fn existing(items: Vec<(&'static str, PathBuf)>) -> Vec<Item> {
    items
        .into_iter()
        .filter(|(what, path)| *what != "the offline demo" || crate::demo::is_demo_folder(path))
        .filter(|(_, path)| std::fs::symlink_metadata(path).is_ok())
        .map(|(what, path)| Item {
            what,
            bytes: bytes_under(&path),
            is_setting: matches!(
                what,
                "settings" | "settings lock" | "API token" | "data folder marker"
            ),
            path,
        })
        .collect()
}

/// Whether `dir` is the launcher's own: the platform's data folder for it, or one it marked when it
/// made it (or found it empty).
fn is_launchers_own(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(crate::app::DATA_MARKER)).is_ok_and(|m| m.is_file())
        || crate::paths::Paths::platform_default().is_some_and(|default| default.data_dir == dir)
}

fn describe(report: &Report) -> String {
    let mut out = String::from("This removes:\n");
    for item in &report.items {
        out.push_str(&format!(
            "  {:<20} {:>10}  {}\n",
            item.what,
            super::update::human_size(item.bytes),
            item.path.display()
        ));
    }
    out.push_str(&format!(
        "  {:<20} {:>10}",
        "in all",
        super::update::human_size(report.total_bytes)
    ));
    if report.keep_data {
        out.push_str("\nThe models, the logs and the settings are kept (--keep-data).");
    }
    out
}

/// What `uninstall` holds while it removes: the owner lock, and the update and models locks when their
/// folders exist.
struct Held {
    owner: crate::owner::Owner,
    install: Option<crate::install::InstallLock>,
    models: Option<std::fs::File>,
}

/// Refuses, before anything is stopped, whatever would make the uninstall stop halfway: a process
/// changing the install without an API (a foreground `update install`, a `models download`, an owner
/// starting), an owner that keeps owning the install once its backend is stopped (a window, `run
/// --headless`), an update or a models download running.
fn refuse_if_busy(paths: &crate::paths::Paths) -> anyhow::Result<()> {
    use crate::owner::Holder;
    match crate::owner::holder(paths) {
        Holder::Nobody => {}
        Holder::Busy { pid, role } => anyhow::bail!(
            "nothing was removed or stopped: {} is working on this install; wait for it or stop it, then run `personal-ai-agent uninstall` again",
            crate::api::client::describe_holder(pid, role.as_deref())
        ),
        Holder::Serving(info) => match crate::owner::role(paths) {
            // It ends once its backend is stopped (an older launcher, which does not say, is asked too).
            Some(role) if role == crate::owner::ROLE_BACKEND_START => {}
            None => {}
            Some(role) => anyhow::bail!(
                "nothing was removed or stopped: {} owns this install and keeps it while it runs; close it, then run `personal-ai-agent uninstall` again",
                crate::api::client::describe_holder(Some(info.pid), Some(&role))
            ),
        },
    }
    busy_locks(paths).map(drop)
}

/// The update and models locks, or the refusal naming what holds them. (The update lock is looked at
/// only when the install folder exists: taking it would make the folder.)
fn busy_locks(
    paths: &crate::paths::Paths,
) -> anyhow::Result<(Option<crate::install::InstallLock>, Option<std::fs::File>)> {
    let install = if paths.install_dir().is_dir() {
        match crate::updater::installer(paths).lock() {
            Ok(lock) => Some(lock),
            Err(crate::install::InstallError::Busy { pid, .. }) => anyhow::bail!(
                "nothing was removed: an update is running{}; wait for it or stop it, then run `personal-ai-agent uninstall` again",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            ),
            Err(e) => return Err(e).context("nothing was removed"),
        }
    } else {
        None
    };
    let models = match crate::models::lock_models_folder(paths) {
        Ok(lock) => lock,
        Err(crate::models::ModelsError::Busy { lock }) => anyhow::bail!(
            "nothing was removed: a models download (or an update moving models) holds {}; wait for it or stop it, then run `personal-ai-agent uninstall` again",
            lock.display()
        ),
        Err(e) => return Err(e).context("nothing was removed"),
    };
    Ok((install, models))
}

/// Checks everything that can refuse, then stops the backend and holds the owner, update and models
/// locks. A launcher owning the install that ends with its backend (a `backend start`) is asked to stop
/// it; one that keeps owning it (a window, `run --headless`) is named and nothing is stopped.
fn stop_and_hold(ctx: &Ctx) -> anyhow::Result<Held> {
    let paths = &ctx.paths;
    refuse_if_busy(paths)?;
    if let Some(client) = crate::api::client::Client::connect(paths)? {
        let pid = client.info().pid;
        Control::Owner(client)
            .run(Op::BackendStop, &CancelToken::new(), &mut |_| {})
            .with_context(|| {
                format!("nothing was removed: the launcher with pid {pid} did not stop the backend")
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while crate::owner::is_owned(paths) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let owner = crate::owner::Owner::take_as(paths, "uninstall").map_err(|e| match crate::owner::current(paths) {
        Some(info) => anyhow::anyhow!(
            "nothing was removed: the launcher with pid {} (a window or `run --headless`) owns this install; its backend is stopped, now close it and run `personal-ai-agent uninstall` again",
            info.pid
        ),
        None => anyhow::anyhow!("nothing was removed: {e}"),
    })?;
    // Every launcher that changes the install holds the owner lock first, so these are free now; an
    // older launcher's update (which does not) is still refused here.
    let (install, models) = busy_locks(paths)?;
    // A backend a dead launcher left running (macOS after a kill -9) is ended, not left running from
    // deleted files.
    let _ = crate::supervisor::end_unsupervised_backend(&paths.run_dir(), Duration::from_secs(10));
    Ok(Held {
        owner,
        install,
        models,
    })
}

/// Removes a file or a folder (a link is removed, never followed; one already gone is fine). Folders of the install go through
/// the install module's retry for Windows sharing errors.
fn remove(path: &Path, paths: &crate::paths::Paths) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    // A link (to a folder too, a junction on Windows) is removed as a link, never followed.
    if meta.file_type().is_symlink() {
        return std::fs::remove_file(path).or_else(|_| std::fs::remove_dir(path));
    }
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    if path == paths.run_dir() {
        return Ok(());
    }
    crate::install::retry::remove_tree(path).map_err(|e| std::io::Error::other(e.to_string()))
}

/// The bytes of the regular files under `path` (links not followed).
fn bytes_under(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}
