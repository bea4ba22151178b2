//! The desktop window (eframe/egui): the product's face over the same engine the CLI uses.
//!
//! `app.rs` draws and holds the runtime state; `worker.rs` is the one `ui-worker` thread that makes every
//! engine call (check, install, start/stop, settings). The UI thread never blocks and does no I/O.
//! The window is an owner like `run --headless` (it takes the owner lock and serves the local API) or,
//! when another launcher owns the install, attaches to it: then `remote.rs` is how the worker calls the
//! owner's API, and the window starts no backend.

pub mod app;
pub mod worker;

use anyhow::Context as _;

pub use app::{App, Command};

/// The window's title.
pub const WINDOW_TITLE: &str = crate::PRODUCT_NAME;

/// Whether a window can be shown: on Linux and the BSDs only with `DISPLAY` or `WAYLAND_DISPLAY` set;
/// always on macOS and Windows.
pub fn display_available() -> bool {
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

/// Opens the window and returns when it is closed (the backend is stopped then).
pub fn run_window(paths: crate::paths::Paths) -> anyhow::Result<()> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title(WINDOW_TITLE)
        .with_app_id("personal-ai-agent")
        .with_inner_size([760.0, 680.0])
        .with_min_inner_size([480.0, 400.0]);
    match eframe::icon_data::from_png_bytes(include_bytes!("../../assets/icon.png")) {
        Ok(icon) => viewport = viewport.with_icon(std::sync::Arc::new(icon)),
        Err(e) => tracing::warn!("the window icon could not be read: {e}"),
    }
    // Size, position and the last screen are remembered (eframe's storage, in the OS's app-data folder).
    let options = eframe::NativeOptions {
        viewport,
        persist_window: true,
        ..Default::default()
    };
    // The worker's last work (stopping the backend, or handing it over) is awaited once the window is
    // gone, not while it hangs on screen unpainted.
    let closing = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let slot = closing.clone();
    let result = eframe::run_native(
        WINDOW_TITLE,
        options,
        Box::new(move |cc| {
            let mut app = App::new(&paths, &cc.egui_ctx)?.finish_after_window(slot);
            if let Some(storage) = cc.storage {
                app.restore(storage);
            }
            Ok(Box::new(app))
        }),
    );
    for thread in std::mem::take(&mut *closing.lock().unwrap_or_else(|p| p.into_inner())) {
        let _ = thread.join();
    }
    result
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot open the window; run `personal-ai-agent run --headless` to work without one")
}
