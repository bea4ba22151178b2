//! Personal AI Agent Desktop: installs, launches and safely updates the local agent backend.
//!
//! The crate is a library plus a thin `main`, so tests drive the same engine the binary ships. See
//! `ARCHITECTURE.md` for the code map and the invariants each module keeps. In short:
//!
//! - the **engine** (`config`, `paths`, `release`, `version`, `platform`, `sources`, `check`, `download`,
//!   `verify`, `archive`, `install`, `pack`, `agent`, `supervisor`, `models`) never draws a widget or
//!   serves HTTP;
//! - the **service layer** (`app`, with `owner`) holds the operations every face calls: one job at a
//!   time, progress as events, cancellation;
//! - the **faces** (`cli`, `ui`, and the local REST API `api`) turn results into text, JSON or pixels,
//!   and add the sentence a user needs to errors.

pub mod agent;
pub mod api;
pub mod app;
pub mod archive;
pub mod awake;
pub mod check;
pub mod cli;
pub mod config;
pub mod delta;
pub mod demo;
pub mod download;
pub mod error;
pub mod fsutil;
pub(crate) mod hashing;
pub mod http;
pub mod install;
pub mod logging;
pub mod models;
pub mod owner;
pub mod pack;
pub mod paths;
pub mod platform;
pub mod release;
pub mod rlimit;
pub mod selfupdate;
pub mod sources;
pub mod supervisor;
pub mod ui;
pub mod updater;
pub mod verify;
pub mod version;

pub use error::{Error, Result};

/// The name of the product as users see it.
pub const PRODUCT_NAME: &str = "Personal AI Agent";
/// The folder name the launcher keeps its data under when given a folder that holds other files.
pub const PRODUCT_FOLDER: &str = "PersonalAIAgent";
/// The running launcher's own version (Cargo.toml's, as the executable carries it: see
/// [`selfupdate::launcher_version`]).
pub fn launcher_version() -> &'static str {
    selfupdate::launcher_version()
}
