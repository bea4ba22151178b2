//! Logging: update operations go to a rotated file in the data folder, and to stderr by verbosity.
//!
//! Verbosity 0 prints errors only, 1 (the default) warnings, 2 info, 3 debug, 4 trace; `RUST_LOG`
//! overrides the stderr filter. The file always records info and above, rotated daily, seven files kept.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::paths::Paths;

/// The folder this process's own log file (`launcher.<date>.log`) is written to, once [`init`] set it up.
pub fn launcher_log_dir() -> Option<&'static std::path::Path> {
    LOG_DIR.get().map(|p| p.as_path())
}

static LOG_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Logs to stderr only, by verbosity (for commands that must not hold a file in the log folder).
pub fn init_stderr(verbosity: u8) {
    let level = level_of(verbosity);
    let filter = stderr_filter(level);
    let _ = tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .without_time()
                .with_filter(filter),
        )
        .try_init();
}

fn level_of(verbosity: u8) -> LevelFilter {
    match verbosity {
        0 => LevelFilter::ERROR,
        1 => LevelFilter::WARN,
        2 => LevelFilter::INFO,
        3 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// `RUST_LOG` (`level`, `target=level`, comma-separated) when set and readable, else `level` for all.
fn stderr_filter(level: LevelFilter) -> Targets {
    // Empty directives (`RUST_LOG=`, a trailing comma) would read as "everything at trace": dropped.
    std::env::var("RUST_LOG")
        .ok()
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(level))
}

/// Installs the global subscriber; keep the guard alive until exit so the file is flushed.
/// Returns `None` when a subscriber was already installed (tests) or the log folder is unusable, in
/// which case logging still goes to stderr.
pub fn init(paths: &Paths, verbosity: u8) -> Option<WorkerGuard> {
    let level = level_of(verbosity);
    let stderr_filter = stderr_filter(level);
    use std::io::IsTerminal;
    let stderr_layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .with_filter(stderr_filter);

    let file = crate::paths::ensure_dir(&paths.logs_dir()).ok().and_then(|()| {
        tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("launcher")
            .filename_suffix("log")
            .max_log_files(7)
            .build(paths.logs_dir())
            .ok()
    });
    match file {
        Some(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let file_layer = fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(Targets::new().with_default(LevelFilter::INFO));
            tracing_subscriber::registry()
                .with(stderr_layer)
                .with(file_layer)
                .try_init()
                .ok()
                .map(|()| {
                    let _ = LOG_DIR.set(paths.logs_dir());
                    guard
                })
        }
        None => {
            let _ = tracing_subscriber::registry().with(stderr_layer).try_init();
            None
        }
    }
}
