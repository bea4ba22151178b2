//! `uninstall [--keep-data] [--yes] [--dry-run]`: removes what the launcher put on this machine.
//!
//! It first says what it will remove and how much space that frees, then asks (`--yes` answers for
//! scripts; without a terminal and without `--yes` nothing is removed). The backend is stopped first: a
//! launcher that owns the install is asked through its API (a background `backend start` then ends); a
//! window or `run --headless` that keeps owning it must be closed first. While removing, this process
//! holds the owner lock, so nothing starts the backend or installs meanwhile.
//!
//! Removed: installed versions, downloads, caches, the demo and runtime state; unless `--keep-data`,
//! also the models, the logs, the settings and the API token. The launcher executable itself is not
//! removed (a package manager or the user owns it); the last line says where it is.

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
    /// The launcher executable, left in place.
    launcher: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let paths = &ctx.paths;
    let items = plan(paths, args.keep_data);
    if !items.is_empty() && !is_launchers_own(paths) {
        // A folder the launcher did not make (a `--home` of the user's, the executable's folder in
        // portable mode) may hold other programs' `downloads`, `models` or `logs`: nothing is removed
        // by name there.
        anyhow::bail!(
            "nothing was removed: {} is not a folder the launcher made (it has no {} file), so its `install`, `downloads`, `models` and `logs` could be another program's; remove what is the launcher's by hand:\n{}",
            paths.data_dir.display(),
            crate::app::DATA_MARKER,
            items
                .iter()
                .map(|i| format!("  {}", i.path.display()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let total_bytes = items.iter().map(|i| i.bytes).sum();
    let mut report = Report {
        removed: false,
        keep_data: args.keep_data,
        items,
        total_bytes,
        failed: Vec::new(),
        launcher: std::env::current_exe().ok(),
    };
    if report.items.is_empty() {
        ctx.emit(&report, || {
            format!(
                "Nothing to remove: no install, download or settings under {}.",
                paths.data_dir.display()
            )
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
    let owner = stop_and_own(ctx)?;
    // (Looked at only when the folder exists: taking the lock to see would make it.)
    if paths.install_dir().is_dir() && crate::updater::installer(paths).is_update_running() {
        anyhow::bail!(
            "nothing was removed: an install runs in another launcher process; wait for it to finish, then run `personal-ai-agent uninstall` again"
        );
    }
    // A backend a dead launcher left running (macOS after a kill -9) is ended, not left running from
    // deleted files.
    let _ = crate::supervisor::end_unsupervised_backend(&paths.run_dir(), Duration::from_secs(10));
    for item in &report.items {
        // The settings name the data folder: they go only once everything else went, so a retry finds
        // what was left.
        if item.is_setting && !report.failed.is_empty() {
            report.failed.push(format!(
                "{}: kept, because something before it could not be removed",
                item.path.display()
            ));
            continue;
        }
        match remove(&item.path, paths) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report.failed.push(format!("{}: {e}", item.path.display())),
        }
    }
    // The runtime state, while the lock is still held (its own file stays until it is let go).
    if let Ok(entries) = std::fs::read_dir(paths.run_dir()) {
        for entry in entries.flatten() {
            if entry.file_name() != crate::owner::OWNER_LOCK_FILE {
                let _ = remove(&entry.path(), paths);
            }
        }
    }
    drop(owner);
    if !crate::owner::is_owned(paths) {
        let _ = std::fs::remove_dir_all(paths.run_dir());
    }
    if !args.keep_data {
        // The folders themselves, when nothing else is left in them.
        let _ = std::fs::remove_dir(&paths.data_dir);
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

/// What exists to remove, in the order it is removed (versions before the settings that name them).
fn plan(paths: &crate::paths::Paths, keep_data: bool) -> Vec<Item> {
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
            ("settings", paths.config_file()),
            ("settings lock", paths.config_dir.join("config.json.lock")),
            ("API token", paths.config_dir.join(crate::api::token::TOKEN_FILE)),
            ("data folder marker", paths.data_dir.join(crate::app::DATA_MARKER)),
        ]);
    }
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

/// Whether the data folder is the launcher's own: the platform's data folder for it, or one it marked
/// when it made it (or found it empty).
fn is_launchers_own(paths: &crate::paths::Paths) -> bool {
    std::fs::symlink_metadata(paths.data_dir.join(crate::app::DATA_MARKER)).is_ok_and(|m| m.is_file())
        || crate::paths::Paths::platform_default().is_some_and(|default| default.data_dir == paths.data_dir)
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

/// Stops the backend and holds the owner lock. A launcher owning the install is asked to stop its
/// backend (a background `backend start` then ends); one that keeps owning it (a window, `run
/// --headless`) is named, and nothing is removed.
fn stop_and_own(ctx: &Ctx) -> anyhow::Result<crate::owner::Owner> {
    let paths = &ctx.paths;
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
    crate::owner::Owner::take(paths).map_err(|e| match crate::owner::current(paths) {
        Some(info) => anyhow::anyhow!(
            "nothing was removed: the launcher with pid {} (a window or `run --headless`) owns this install; its backend is stopped, now close it and run `personal-ai-agent uninstall` again",
            info.pid
        ),
        None => anyhow::anyhow!("nothing was removed: {e}"),
    })
}

/// Removes a file or a folder (a link is removed, never followed). Folders of the install go through
/// the install module's retry for Windows sharing errors.
fn remove(path: &Path, paths: &crate::paths::Paths) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
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
