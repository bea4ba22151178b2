//! The offline demo: the whole product on one machine, without a network.
//!
//! [`Demo::prepare`] makes, under `<data dir>/demo/` (never mixed with a real install), a minisign key made
//! on the spot, three releases packed and signed with it, and a home of its own whose settings pin that
//! key and point at a folder feed:
//! - 1.0.0, the first install;
//! - 1.1.0, with real markdown release notes;
//! - 1.2.0, whose backend fails its health check (so the launcher rolls it back by itself).
//!
//! The bundles' backend is the launcher's own executable run as the example agent (the hidden `demo-agent`
//! subcommand, [`agent`]), so nothing else needs building: on Unix `backend/agent-backend` is a two-line
//! shell script that runs this executable, on Windows a copy of it.
//!
//! Releases appear one at a time, as they would on a real project: the feed starts with 1.0.0, and
//! [`Demo::publish_next`] adds the next one once the one before is installed (the window's demo runs a
//! small thread that does that; the terminal story calls it between steps).

pub mod agent;

use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};

use crate::paths::Paths;
use crate::platform::Platform;

/// The running launcher, which the demo's bundles run as their backend.
pub fn this_launcher() -> anyhow::Result<PathBuf> {
    // The path remembered at start: after the launcher replaced itself, Linux names the running file
    // "… (deleted)", while the path holds the new launcher.
    match crate::selfupdate::running_exe() {
        Some(exe) => Ok(exe.to_path_buf()),
        None => Ok(
            std::env::current_exe().map_err(|e| crate::Error::io("find", "the launcher executable", e))?
        ),
    }
}

/// The hidden subcommand that runs this executable as the example agent.
pub const AGENT_SUBCOMMAND: &str = "demo-agent";

/// The demo's versions, in the order they are published.
pub const VERSIONS: [&str; 3] = ["1.0.0", "1.1.0", "1.2.0"];

/// The demo's folder and the home it installs into.
#[derive(Clone, Debug)]
pub struct Demo {
    /// `<data dir>/demo`.
    pub root: PathBuf,
    /// The demo's own home: its config, installs, logs.
    pub paths: Paths,
}

const NOTES_1_1: &str = "\
## Highlights

- **Faster answers**: the agent streams its first words sooner.
- A new `--offline` switch keeps every request on this machine.
- Fixed: the chat history no longer forgets the last message after a restart.

See [the demo's README](https://github.com/personal-ai-agent/desktop#offline-demo) for what this demo shows.
";

const NOTES_1_2: &str = "\
## Highlights

- An experimental model loader.

This release is **broken on purpose**: its backend never passes its health check, so the launcher keeps
the version that works and does not offer this one again.
";

/// What the demo's folder holds: nothing else is ever removed with it.
const DEMO_ENTRIES: [&str; 6] = [".prepared", "key", "bundles", "releases", "feed", "home"];

/// The entries of `root` that the demo did not make (all of them when it cannot be read).
fn foreign_entries(root: &Path) -> Vec<String> {
    match std::fs::read_dir(root) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !DEMO_ENTRIES.contains(&name.as_str()) && !name.starts_with(".prepared"))
            .collect(),
        Err(e) => vec![format!("({e})")],
    }
}

/// Whether `root` is a demo folder this launcher made (every entry is the demo's).
pub fn is_demo_folder(root: &Path) -> bool {
    root.is_dir() && foreign_entries(root).is_empty()
}

impl Demo {
    /// The demo under `paths`'s data folder (nothing is created).
    pub fn under(paths: &Paths) -> Demo {
        let root = paths.data_dir.join("demo");
        Demo {
            paths: Paths::under(root.join("home")),
            root,
        }
    }

    fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }

    /// The folder feed the demo's home updates from.
    pub fn feed_dir(&self) -> PathBuf {
        self.root.join("feed")
    }

    /// Makes the key, the three signed releases and the demo home's settings, unless an earlier run made
    /// them; publishes 1.0.0. Safe to run again: what exists is kept. `launcher` is the executable the
    /// bundles run as their backend (the running launcher; a test names the built one).
    pub fn prepare(&self, launcher: &Path) -> anyhow::Result<()> {
        let ready = self.root.join(".prepared");
        let exe = std::path::absolute(launcher)?;
        let marker = format!("{}\n", exe.display());
        // Made for this very launcher (the bundles run it by its path): keep it. A launcher that moved
        // (an upgrade into another folder) or a half-made demo is made again from nothing.
        if std::fs::read_to_string(&ready).is_ok_and(|m| m == marker)
            && self.feed_dir().join(crate::sources::feed::FEED_FILE).is_file()
        {
            return Ok(());
        }
        self.remove()?;
        crate::paths::ensure_dir(&self.root)?;
        let key_dir = self.root.join("key");
        crate::paths::ensure_dir(&key_dir)?;
        let pair = minisign::KeyPair::generate_unencrypted_keypair()
            .map_err(|e| anyhow::anyhow!("cannot make the demo's signing key: {e}"))?;
        let secret = key_dir.join("demo.key");
        let secret_text = pair
            .sk
            .to_box(None)
            .map_err(|e| anyhow::anyhow!("cannot write the demo's signing key: {e}"))?
            .to_string();
        crate::fsutil::write_atomic(&secret, secret_text.as_bytes())?;
        let public = pair.pk.to_base64();

        let platform = Platform::current();
        let now = Utc::now();
        for (i, version) in VERSIONS.iter().enumerate() {
            let bundle = self.root.join("bundles").join(version);
            make_bundle(&bundle, &exe, version, *version == "1.2.0")?;
            let notes = match *version {
                "1.0.0" => "The first release of the demo agent.".to_owned(),
                "1.1.0" => NOTES_1_1.to_owned(),
                _ => NOTES_1_2.to_owned(),
            };
            crate::pack::pack(&crate::pack::PackOptions {
                version: version.parse().expect("the demo's versions are semver"),
                platform,
                bundle_dir: bundle,
                out_dir: self.releases_dir().join(version),
                channel: crate::version::Channel::Stable,
                minisign_key: Some(secret.clone()),
                minisign_password: None,
                // Ordered publication times, as a real project's releases have.
                published_at: now - Duration::hours((VERSIONS.len() - i) as i64),
                notes: Some(notes),
                also_tar_gz: false,
                // The demo's bundles are a few hundred bytes: a delta could not be smaller.
                delta_from: Vec::new(),
            })
            .map_err(|e| anyhow::anyhow!("cannot pack the demo's {version}: {e}"))?;
        }
        let config = crate::config::Config {
            feed: Some(self.feed_dir().to_string_lossy().into_owned()),
            public_key: Some(public),
            auto_check: false,
            ..crate::config::Config::default()
        };
        config.save(&self.paths.config_file())?;
        crate::paths::ensure_dir(&self.feed_dir())?;
        self.publish(VERSIONS[0])?;
        crate::fsutil::write_atomic(&ready, marker.as_bytes())?;
        Ok(())
    }

    /// Whether the story was played already (a release past the first is published).
    pub fn played(&self) -> bool {
        self.published().len() > 1
    }

    /// Removes the demo's folder, unless a launcher owns the demo's home (a demo window is open).
    pub fn remove(&self) -> anyhow::Result<()> {
        if let Some(info) = crate::owner::current(&self.paths) {
            anyhow::bail!(
                "the demo is open in the launcher with pid {}; close that window first, then start the demo again",
                info.pid
            );
        }
        if self.root.exists() {
            // Only a folder of the demo's own making is removed whole: a folder of the user's that
            // happens to sit where the demo goes is left alone.
            let foreign = foreign_entries(&self.root);
            if !foreign.is_empty() {
                anyhow::bail!(
                    "{} holds files that are not the demo's ({}); move them away, then start the demo again",
                    self.root.display(),
                    foreign.join(", ")
                );
            }
            std::fs::remove_dir_all(&self.root).map_err(|e| crate::Error::io("remove", &self.root, e))?;
        }
        Ok(())
    }

    /// The versions in the feed now.
    pub fn published(&self) -> Vec<String> {
        VERSIONS
            .iter()
            .filter(|v| self.feed_dir().join(v).is_dir())
            .map(|v| (*v).to_owned())
            .collect()
    }

    fn publish(&self, version: &str) -> anyhow::Result<()> {
        let from = self.releases_dir().join(version);
        let to = self.feed_dir().join(version);
        if !to.exists() {
            std::fs::rename(&from, &to).map_err(|e| crate::Error::io("publish", &from, e))?;
        }
        crate::sources::feed::write_feed(&self.feed_dir())?;
        Ok(())
    }

    /// Publishes the release after the newest published one, once the newest is installed (or was tried
    /// and failed). Returns the version published, if any.
    pub fn publish_next(&self) -> anyhow::Result<Option<String>> {
        let published = self.published();
        let Some(newest) = published.last() else {
            return Ok(None);
        };
        let Some(next) = VERSIONS.iter().skip_while(|v| *v != newest).nth(1) else {
            return Ok(None);
        };
        let installed = crate::updater::current_version(&self.paths)?.map(|v| v.to_string());
        if installed.as_deref() != Some(newest.as_str()) {
            return Ok(None);
        }
        self.publish(next)?;
        Ok(Some((*next).to_owned()))
    }

    /// Watches the demo home on a thread named `demo-publisher` and publishes the next release each time
    /// the newest one is installed, until all three are published.
    pub fn publish_as_installed(&self) -> std::io::Result<()> {
        let demo = self.clone();
        std::thread::Builder::new()
            .name("demo-publisher".into())
            .spawn(move || {
                while demo.published().len() < VERSIONS.len() {
                    match demo.publish_next() {
                        Ok(Some(v)) => tracing::info!(version = %v, "the demo published a new release"),
                        Ok(None) => {}
                        Err(e) => tracing::warn!("the demo could not publish its next release: {e}"),
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            })
            .map(|_| ())
    }
}

/// A demo bundle: `agent.json` running `backend/agent-backend demo-agent …` (this executable as the
/// example agent), `--fail-health` for the broken release.
fn make_bundle(dir: &Path, exe: &Path, version: &str, broken: bool) -> anyhow::Result<()> {
    let backend_dir = dir.join("backend");
    crate::paths::ensure_dir(&backend_dir)?;
    let mut command = vec![
        "backend/agent-backend".to_owned(),
        AGENT_SUBCOMMAND.to_owned(),
        "--port".to_owned(),
        "{port}".to_owned(),
        "--models-dir".to_owned(),
        "{models_dir}".to_owned(),
        "--agent-version".to_owned(),
        version.to_owned(),
    ];
    if broken {
        command.push("--fail-health".to_owned());
    }
    #[cfg(windows)]
    {
        command[0] = "backend/agent-backend.exe".to_owned();
        let copy = backend_dir.join("agent-backend.exe");
        std::fs::copy(exe, &copy).map_err(|e| crate::Error::io("copy", exe, e))?;
    }
    #[cfg(not(windows))]
    {
        use std::os::unix::fs::PermissionsExt;
        let script = backend_dir.join("agent-backend");
        let quoted = exe.to_string_lossy().replace('\'', r"'\''");
        let text = format!(
            "#!/bin/sh\n# The offline demo's backend: the launcher itself, as the example agent.\nexec '{quoted}' \"$@\"\n"
        );
        std::fs::write(&script, text).map_err(|e| crate::Error::io("write", &script, e))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| crate::Error::io("make executable", &script, e))?;
    }
    let spec = serde_json::json!({
        "command": command,
        "health_url": "http://127.0.0.1:{port}/health",
        "ready_timeout_secs": 8,
        "env": {},
    });
    let path = dir.join("agent.json");
    let text = serde_json::to_string_pretty(&spec).unwrap_or_default();
    std::fs::write(&path, text).map_err(|e| crate::Error::io("write", &path, e))?;
    Ok(())
}
