//! The desktop window, driven through egui_kittest: the real `App` with its `ui-worker` thread, a private
//! home and a folder feed of releases packed around the example backend. Widgets are found by their label;
//! frames are pumped until the worker's answer shows, within a bounded time.

use std::path::Path;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use personal_ai_agent::config::Config;
use personal_ai_agent::paths::Paths;
use personal_ai_agent::supervisor::BackendState;
use personal_ai_agent::ui::App;

use crate::cli_update::{json_of, pai};
use crate::support::{pack_example_release, temp_home};

/// How long a test waits for the worker (installs start and health-check a real backend). Generous: on
/// CI's 2 cores, with the whole suite running beside it, a check once took more than 60 s to show.
const PATIENCE: Duration = Duration::from_secs(180);

/// Packs the example backend (`backend_args` make it misbehave) as `version` into `feed_dir/<version>/`
/// and rewrites the feed document.
fn publish(work: &Path, feed_dir: &Path, version: &str, backend_args: &[&str]) {
    pack_example_release(work, &feed_dir.join(version), version, backend_args, None);
    // A folder feed takes its release notes from NOTES.md beside the release.
    std::fs::write(
        feed_dir.join(version).join("NOTES.md"),
        format!(
            "What changed in {version}\n\n## Highlights {version}\n\n- **Faster** answers\n- See [the release page](https://example.com/releases/{version})\n"
        ),
    )
    .unwrap();
    personal_ai_agent::sources::feed::write_feed(feed_dir).unwrap();
}

/// A home whose settings point at `feed_dir`.
fn home_with_feed(home: &Path, feed_dir: &Path) -> Paths {
    let paths = Paths::under(home);
    let config = Config {
        feed: Some(feed_dir.to_str().unwrap().to_owned()),
        ..Config::default()
    };
    config.save(&paths.config_file()).unwrap();
    paths
}

/// A feed with 1.0.0 and a home whose settings point at it, nothing installed: the work folder, the feed,
/// the home and its paths.
fn published_1_0_0() -> (tempfile::TempDir, std::path::PathBuf, tempfile::TempDir, Paths) {
    let work = temp_home();
    let feed_dir = work.path().join("feed");
    publish(work.path(), &feed_dir, "1.0.0", &[]);
    let home = temp_home();
    let paths = home_with_feed(home.path(), &feed_dir);
    (work, feed_dir, home, paths)
}

/// A feed with 1.0.0 and a home that installed it through the CLI (nothing runs): the work folder, the
/// feed, the home and its paths.
fn installed_1_0_0() -> (tempfile::TempDir, std::path::PathBuf, tempfile::TempDir, Paths) {
    let (work, feed_dir, home, paths) = published_1_0_0();
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    (work, feed_dir, home, paths)
}

fn window(paths: &Paths) -> Harness<'static, App> {
    let paths = paths.clone();
    Harness::builder()
        .with_size([800.0, 1000.0])
        .build_eframe(move |cc| {
            App::new(&paths, &cc.egui_ctx)
                .unwrap()
                .with_demo_launcher(crate::support::LAUNCHER.into())
        })
}

/// Whether the window shows its backend running. A click waits for this: when the backend turns Running,
/// a row ("The agent answers at …") appears above the Updates card and moves its buttons, and a click
/// aimed at where a button was in the frame before lands on nothing.
fn backend_running(harness: &Harness<'_, App>) -> bool {
    matches!(harness.state().backend_state(), BackendState::Running { .. })
}

/// Runs frames until `done` holds; fails the test with `what` after [`PATIENCE`].
fn pump_until(harness: &mut Harness<'_, App>, what: &str, done: impl Fn(&Harness<'_, App>) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        harness.step();
        if done(harness) {
            // `done` may read live state (the backend's) that the last frame did not draw yet: two more
            // frames lay the window out for it, so a click goes where the button now is.
            harness.step();
            harness.step();
            return;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Focuses the text field labelled `label` and types `text` into it.
fn type_into(harness: &mut Harness<'_, App>, label: &str, text: &str) {
    harness
        .get_by_role_and_label(egui::accesskit::Role::TextInput, label)
        .focus();
    harness.step();
    harness
        .get_by_role_and_label(egui::accesskit::Role::TextInput, label)
        .type_text(text);
    harness.step();
}

fn shows(harness: &Harness<'_, App>, label: &str) -> bool {
    harness.query_all_by_label_contains(label).next().is_some()
}

/// Clicks "Open agent", takes the address the window asked the system to open, and opens it as a
/// browser would (the key buys a session cookie, then `/`): the page must work and show `version`.
fn open_agent_shows(harness: &mut Harness<'_, App>, version: &str) {
    harness.get_by_label("Open agent").click();
    harness.step();
    let opened: Vec<String> = harness
        .output()
        .platform_output
        .commands
        .iter()
        .filter_map(|c| match c {
            egui::OutputCommand::OpenUrl(open) => Some(open.url.clone()),
            _ => None,
        })
        .collect();
    let [url] = opened.as_slice() else {
        panic!("Open agent opened {opened:?}")
    };
    let port = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse::<u64>().ok())
        .expect("the agent's own address");
    let key = url.split("?key=").nth(1).expect("the page key in the address");
    let browser = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = crate::agent_page::open_with_key(&browser, port, key);
    let page = browser
        .get(format!("http://127.0.0.1:{port}/"))
        .header("cookie", cookie)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().unwrap();
    assert!(text.contains(&format!("Installed version: {version}")), "{text}");
}

#[test]
fn a_first_run_shows_the_welcome_and_the_install_button() {
    let (_work, _feed_dir, _home, paths) = published_1_0_0();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the welcome", |h| {
        shows(h, "Welcome to Personal AI Agent")
    });
    // The wizard shows what will be installed before offering to install it.
    pump_until(&mut harness, "the offered release", |h| {
        shows(h, "Personal AI Agent 1.0.0 for") && h.query_by_label("Install Personal AI Agent").is_some()
    });
    assert!(
        shows(&harness, "Installs into"),
        "where it goes, and the free space there"
    );
    // Its notes are the worker's second answer, just after the check's.
    pump_until(&mut harness, "its notes", |h| shows(h, "What changed in 1.0.0"));
    assert!(
        harness.query_by_label("Check for updates").is_none(),
        "nothing to update yet"
    );
}

#[test]
fn the_welcome_install_button_installs_and_starts_the_agent() {
    let (_work, _feed_dir, _home, paths) = published_1_0_0();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the install button", |h| {
        shows(h, "Install Personal AI Agent")
    });
    harness.get_by_label("Install Personal AI Agent").click();
    pump_until(&mut harness, "1.0.0 installed and running", |h| {
        h.state().installed_version() == Some("1.0.0")
            && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    assert!(shows(&harness, "Version 1.0.0"));
}

#[test]
fn an_installed_version_shows_its_version_and_channel() {
    let (_work, _feed_dir, _home, paths) = installed_1_0_0();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the version", |h| shows(h, "Version 1.0.0"));
    assert!(shows(&harness, "Channel stable"));
    assert!(harness.query_by_label("Check for updates").is_some());
    assert!(harness.query_by_label("Install Personal AI Agent").is_none());
}

/// Installs 1.0.0, publishes 1.1.0 (made with `backend_args`), opens the window, checks, and clicks
/// "Install update". Returns the folders (they must outlive the install) and the window.
fn update_through_the_window(backend_args: &[&str]) -> ([tempfile::TempDir; 2], Harness<'static, App>) {
    let (work, feed_dir, home, paths) = installed_1_0_0();
    publish(work.path(), &feed_dir, "1.1.0", backend_args);

    let mut harness = window(&paths);
    pump_until(&mut harness, "the backend running on 1.0.0", |h| {
        h.state().installed_version() == Some("1.0.0")
            && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    assert!(
        !shows(&harness, "Update to 1.1.0 available"),
        "nothing is offered before a check"
    );
    harness.get_by_label("Check for updates").click();
    pump_until(&mut harness, "the update offer", |h| {
        shows(h, "Update to 1.1.0 available")
    });
    // The changelog is a second answer of the worker, just after the check's.
    pump_until(&mut harness, "the changelog", |h| {
        shows(h, "What changed in 1.1.0")
    });
    harness.get_by_label("Install update").click();
    ([work, home], harness)
}

#[test]
fn clicking_check_for_updates_offers_the_newer_version_and_install_update_switches_to_it() {
    let (_dirs, mut harness) = update_through_the_window(&[]);
    pump_until(&mut harness, "the install outcome", |h| {
        shows(h, "Updated from 1.0.0 to 1.1.0")
    });
    pump_until(&mut harness, "1.1.0 shown and running", |h| {
        shows(h, "Version 1.1.0") && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    // Settings lists the kept version; rolling back to it runs it again.
    harness.get_by_label("Settings").click();
    pump_until(&mut harness, "the kept versions", |h| shows(h, "Kept versions"));
    harness.get_by_label("Roll back to 1.0.0").click();
    pump_until(&mut harness, "1.0.0 running again", |h| {
        h.state().installed_version() == Some("1.0.0")
            && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
}

#[test]
fn an_update_whose_backend_fails_its_health_check_shows_the_rollback() {
    let (_dirs, mut harness) = update_through_the_window(&["--fail-health"]);
    pump_until(&mut harness, "the rollback message", |h| shows(h, "Rolled back"));
    pump_until(&mut harness, "1.0.0 running again", |h| {
        shows(h, "Version 1.0.0") && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    // In plain words; the health URL and log lines are behind a closed "Details".
    assert!(shows(
        &harness,
        "1.1.0 did not pass its health check, so 1.0.0 runs again"
    ));
    assert!(harness.query_by_label("Details").is_some());
    assert!(!shows(&harness, "/health"), "details start folded");
    // The failed version is no longer offered: the card went back to "not checked", and a new check
    // finds nothing to install.
    assert!(harness.query_by_label("Install update").is_none());
    harness.get_by_label("Check for updates").click();
    pump_until(&mut harness, "the new check", |h| shows(h, "Up to date"));
}

#[test]
fn the_changelog_is_rendered_markdown_with_headings_and_links_as_widgets() {
    let (work, feed_dir, _home, paths) = installed_1_0_0();
    std::thread::sleep(Duration::from_millis(1100));
    publish(work.path(), &feed_dir, "1.1.0", &[]);
    let mut harness = window(&paths);
    pump_until(&mut harness, "the version, its backend running", |h| {
        shows(h, "Version 1.0.0") && backend_running(h)
    });
    harness.get_by_label("Check for updates").click();
    pump_until(&mut harness, "the changelog", |h| shows(h, "Highlights 1.1.0"));
    assert!(
        harness.query_by_label("Highlights 1.1.0").is_some(),
        "the heading is a widget of its own"
    );
    assert!(!shows(&harness, "## Highlights"), "no markdown syntax is shown");
    assert!(!shows(&harness, "**Faster**"));
    assert!(
        harness.query_by_label("the release page").is_some(),
        "the link is a widget"
    );
    // Skip this version hides the offer and lists it under Settings, where it can be offered again.
    harness.get_by_label("Skip this version").click();
    pump_until(&mut harness, "the skip saved", |h| {
        h.state().installed_version().is_some() && !shows(h, "Update to 1.1.0 available")
    });
    let deadline = Instant::now() + PATIENCE;
    while !Config::load(&paths.config_file())
        .config
        .skip_versions
        .contains(&"1.1.0".to_owned())
    {
        harness.step();
        assert!(Instant::now() < deadline, "the skip never reached config.json");
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.get_by_label("Settings").click();
    pump_until(&mut harness, "the skipped list", |h| {
        shows(h, "Offer 1.1.0 again")
    });
    harness.get_by_label("Offer 1.1.0 again").click();
    let deadline = Instant::now() + PATIENCE;
    while !Config::load(&paths.config_file()).config.skip_versions.is_empty() {
        harness.step();
        assert!(Instant::now() < deadline, "the un-skip never reached config.json");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn saving_the_settings_writes_them_to_config_json() {
    let work = temp_home();
    let feed_dir = work.path().join("feed");
    std::fs::create_dir_all(&feed_dir).unwrap();
    let home = temp_home();
    let paths = home_with_feed(home.path(), &feed_dir);
    let mut harness = window(&paths);
    pump_until(&mut harness, "the sidebar", |h| shows(h, "Settings"));
    harness.get_by_label("Settings").click();
    pump_until(&mut harness, "the settings", |h| {
        shows(h, "Install updates automatically")
    });
    harness.get_by_label("Install updates automatically").click();
    harness.step();
    harness.get_by_label("Save settings").click();
    let deadline = Instant::now() + PATIENCE;
    loop {
        harness.step();
        if Config::load(&paths.config_file()).config.auto_install {
            break;
        }
        assert!(Instant::now() < deadline, "config.json never got auto_install");
        std::thread::sleep(Duration::from_millis(20));
    }
    let saved = Config::load(&paths.config_file()).config;
    assert_eq!(
        saved.feed.as_deref(),
        feed_dir.to_str(),
        "other settings are kept"
    );
}

#[test]
fn the_logs_section_shows_the_backend_output() {
    let (_work, _feed_dir, _home, paths) = installed_1_0_0();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the backend running", |h| {
        matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    assert!(
        !shows(&harness, "ready on http://127.0.0.1"),
        "the logs start folded"
    );
    harness.get_by_label("Logs").click();
    pump_until(&mut harness, "the backend's ready line", |h| {
        shows(h, "ready on http://127.0.0.1")
    });
}

/// The example backend processes running from `home`'s installs (Linux: read from /proc).
#[cfg(target_os = "linux")]
fn backends_running_under(home: &Path) -> usize {
    let home = home.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&home) && c.contains("--port") && !c.contains("run --headless"))
        .count()
}

#[test]
fn a_window_opened_beside_a_headless_owner_attaches_shows_its_version_and_starts_no_backend() {
    use crate::agent_page::{Headless, home_with_feed as feed_home, publish as publish_plain};
    let work = temp_home();
    let feed_dir = work.path().join("feed");
    publish_plain(work.path(), &feed_dir, "1.0.0");
    let home = temp_home();
    feed_home(home.path(), &feed_dir);
    let owner = Headless::start(home.path());
    let owner_backend = owner.backend();

    let paths = Paths::under(home.path());
    let mut harness = window(&paths);
    pump_until(&mut harness, "the owner's version and running backend", |h| {
        h.state().attached_to().is_some()
            && shows(h, "Version 1.0.0")
            && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    assert_eq!(harness.state().attached_to().unwrap().pid, owner.pid());
    assert!(!harness.state().is_owner());
    open_agent_shows(&mut harness, "1.0.0");
    assert!(shows(
        &harness,
        &format!("Attached to launcher {}", personal_ai_agent::launcher_version())
    ));
    // A few more frames and polls: still the owner's one backend, never a second.
    for _ in 0..20 {
        harness.step();
        std::thread::sleep(Duration::from_millis(50));
    }
    let backend = owner.backend();
    assert_eq!(
        backend["pid"], owner_backend["pid"],
        "the owner's backend was not replaced"
    );
    assert_eq!(
        backend["supervisor_pid"],
        owner.pid(),
        "the owner still supervises it"
    );
    #[cfg(target_os = "linux")]
    assert_eq!(
        backends_running_under(home.path()),
        1,
        "exactly one backend process"
    );
    drop(harness);
    assert_eq!(
        owner.backend()["state"],
        "running",
        "closing an attached window stops nothing"
    );
}

#[test]
fn an_attached_windows_check_and_install_buttons_drive_the_owner_through_its_api() {
    use crate::agent_page::{Headless, home_with_feed as feed_home, publish as publish_plain};
    let work = temp_home();
    let feed_dir = work.path().join("feed");
    publish_plain(work.path(), &feed_dir, "1.0.0");
    let home = temp_home();
    feed_home(home.path(), &feed_dir);
    let owner = Headless::start(home.path());
    publish_plain(work.path(), &feed_dir, "1.1.0");

    let paths = Paths::under(home.path());
    let mut harness = window(&paths);
    pump_until(&mut harness, "the attached window", |h| {
        h.state().attached_to().is_some() && shows(h, "Check for updates")
    });
    harness.get_by_label("Check for updates").click();
    pump_until(&mut harness, "the owner's update offer", |h| {
        shows(h, "Update to 1.1.0 available")
    });
    harness.get_by_label("Install update").click();
    pump_until(&mut harness, "the owner's install outcome", |h| {
        shows(h, "Updated from 1.0.0 to 1.1.0")
    });
    pump_until(&mut harness, "1.1.0 shown and the owner's backend running", |h| {
        shows(h, "Version 1.1.0") && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    let backend = owner.backend();
    assert_eq!(backend["version"], "1.1.0");
    assert_eq!(
        backend["supervisor_pid"],
        owner.pid(),
        "the owner did the install"
    );
}

#[test]
fn a_window_with_no_owner_beside_it_owns_the_install_serves_the_api_and_shows_what_the_api_did() {
    let (work, feed_dir, home, paths) = installed_1_0_0();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the backend running", |h| {
        h.state().is_owner() && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    // Another face finds the window as the owner, and drives its backend through the API.
    let status = json_of(&pai(home.path(), None, &["api", "status", "--json"]));
    assert_eq!(
        status["pid"],
        std::process::id(),
        "the window's process owns the install"
    );
    let token = std::fs::read_to_string(status["token_file"].as_str().unwrap()).unwrap();
    let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    let url = status["url"].as_str().unwrap();
    let answer = http
        .post(format!("{url}/api/backend/stop"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({}))
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    pump_until(&mut harness, "the window to show the backend stopped", |h| {
        matches!(h.state().backend_state(), BackendState::Stopped) && shows(h, "Backend stopped")
    });
    // An update installed through the API shows in the window once the job ends.
    publish(work.path(), &feed_dir, "1.1.0", &[]);
    let answer = http
        .post(format!("{url}/api/updates/install"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({}))
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    pump_until(
        &mut harness,
        "the window to show 1.1.0 installed through the API",
        |h| shows(h, "Version 1.1.0"),
    );
    drop(harness);
    assert!(
        personal_ai_agent::owner::current(&paths).is_none(),
        "closing the window releases the install"
    );
}

#[test]
fn an_attached_window_takes_over_when_its_owner_is_killed() {
    use crate::agent_page::{Headless, home_with_feed as feed_home, publish as publish_plain};
    let work = temp_home();
    let feed_dir = work.path().join("feed");
    publish_plain(work.path(), &feed_dir, "1.0.0");
    let home = temp_home();
    feed_home(home.path(), &feed_dir);
    let mut owner = Headless::start(home.path());
    let paths = Paths::under(home.path());
    let mut harness = window(&paths);
    pump_until(&mut harness, "the attached window", |h| {
        h.state().attached_to().is_some() && shows(h, "Version 1.0.0")
    });
    owner.kill();
    pump_until(
        &mut harness,
        "the window to own the install and run the backend",
        |h| h.state().is_owner() && matches!(h.state().backend_state(), BackendState::Running { .. }),
    );
    let info = personal_ai_agent::owner::current(&paths).expect("the window published its API");
    assert_eq!(info.pid, std::process::id());
}

#[test]
fn the_wizard_with_nothing_configured_offers_a_source_and_the_offline_demo_which_installs_and_runs() {
    let home = temp_home();
    let paths = Paths::under(home.path());
    let mut harness = window(&paths);
    pump_until(&mut harness, "the wizard", |h| {
        shows(h, "no release source is set")
    });
    assert!(harness.query_by_label("GitHub repository or feed").is_some());
    assert!(
        harness.query_by_label("Install Personal AI Agent").is_none(),
        "no install button that can only fail"
    );
    harness.get_by_label("Try the offline demo").click();
    pump_until(&mut harness, "the demo's release offered", |h| {
        shows(h, "Personal AI Agent 1.0.0 for") && shows(h, "must be signed by the pinned key")
    });
    harness.get_by_label("Install Personal AI Agent").click();
    pump_until(&mut harness, "1.0.0 installed and running", |h| {
        h.state().installed_version() == Some("1.0.0")
            && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    // The demo publishes its next release once 1.0.0 is installed (it looks once a second); then a check
    // offers it with its notes.
    let published = home.path().join("demo").join("feed").join("1.1.0");
    pump_until(&mut harness, "the demo publishing 1.1.0", |_| published.is_dir());
    harness.get_by_label("Check for updates").click();
    pump_until(&mut harness, "1.1.0 offered", |h| {
        shows(h, "Update to 1.1.0 available")
    });
    pump_until(&mut harness, "its rendered notes", |h| shows(h, "Highlights"));
    // The real home has no settings of the demo's.
    assert!(Config::load(&paths.config_file()).config.feed.is_none());
}

#[test]
fn home_shows_the_agents_address_and_restart_gives_it_a_new_process() {
    let (_work, _feed_dir, _home, paths) = installed_1_0_0();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the backend running", |h| {
        matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    let BackendState::Running { pid, port, .. } = harness.state().backend_state() else {
        unreachable!()
    };
    pump_until(&mut harness, "the address and Open agent", |h| {
        shows(h, &format!("The agent answers at http://127.0.0.1:{port}/"))
            && h.query_by_label("Open agent").is_some()
    });
    open_agent_shows(&mut harness, "1.0.0");
    harness.get_by_label("Restart").click();
    pump_until(
        &mut harness,
        "the backend running in a new process",
        |h| matches!(h.state().backend_state(), BackendState::Running { pid: new, .. } if new != pid),
    );
}

#[test]
fn an_automatic_check_offers_the_update_on_its_own() {
    let (work, feed_dir, _home, paths) = installed_1_0_0();
    publish(work.path(), &feed_dir, "1.1.0", &[]);
    // The shortest interval there is (ten seconds), last checked five seconds ago: the window's schedule
    // checks about five seconds after it opens, with nobody clicking anything.
    let mut config = Config::load(&paths.config_file()).config;
    let seeded = chrono::Utc::now() - chrono::Duration::seconds(5);
    config.check_interval_hours = 10.0 / 3600.0;
    config.last_check = Some(seeded);
    config.save(&paths.config_file()).unwrap();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the version", |h| shows(h, "Version 1.0.0"));
    pump_until(&mut harness, "the automatic round's offer", |h| {
        shows(h, "Update to 1.1.0 available")
    });
    pump_until(&mut harness, "its changelog", |h| {
        shows(h, "What changed in 1.1.0")
    });
    assert_eq!(
        harness.state().installed_version(),
        Some("1.0.0"),
        "automatic download and install are off: only offered"
    );
    let saved = Config::load(&paths.config_file()).config;
    assert!(
        saved.last_check.unwrap() > seeded,
        "the round is recorded as the last check"
    );
}

#[test]
fn cancel_during_the_download_keeps_the_installed_version_running() {
    use crate::support::{Response, TestServer};
    let (work, feed_dir, _home, paths) = installed_1_0_0();
    publish(work.path(), &feed_dir, "1.1.0", &[]);
    // The same feed over HTTP, its archives sent slowly enough to click Cancel mid-way.
    let served = feed_dir.clone();
    let server = TestServer::start(move |req| {
        let name = req.path_only().trim_start_matches('/').to_owned();
        match std::fs::read(served.join(&name)) {
            Ok(bytes)
                if name.ends_with(".tar.zst") || name.ends_with(".tar.gz") || name.ends_with(".zip") =>
            {
                Response::bytes(bytes).trickle(16 * 1024, Duration::from_millis(50))
            }
            Ok(bytes) => Response::bytes(bytes),
            Err(_) => Response::new(404),
        }
    });
    let mut config = Config::load(&paths.config_file()).config;
    config.feed = Some(format!("{}/feed.json", server.url()));
    config.save(&paths.config_file()).unwrap();

    let mut harness = window(&paths);
    pump_until(&mut harness, "the backend running on 1.0.0", |h| {
        h.state().installed_version() == Some("1.0.0")
            && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    let BackendState::Running { pid, .. } = harness.state().backend_state() else {
        unreachable!()
    };
    harness.get_by_label("Check for updates").click();
    pump_until(&mut harness, "the update offer", |h| {
        shows(h, "Update to 1.1.0 available")
    });
    harness.get_by_label("Install update").click();
    pump_until(&mut harness, "the download under way", |h| {
        shows(h, "Downloading") && h.query_by_label("Cancel").is_some()
    });
    harness.get_by_label("Cancel").click();
    pump_until(&mut harness, "the cancelled outcome", |h| {
        shows(h, "Cancelled before anything was switched")
    });
    assert_eq!(harness.state().installed_version(), Some("1.0.0"));
    assert!(
        matches!(harness.state().backend_state(), BackendState::Running { pid: same, .. } if same == pid),
        "the same backend process never stopped"
    );
    let parts: Vec<_> = std::fs::read_dir(paths.downloads_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert_eq!(parts.len(), 1, "the partial download is kept to resume");
}

#[test]
fn the_settings_edit_the_check_interval_and_the_release_source() {
    let (work, _feed_dir, _home, paths) = installed_1_0_0();
    let other_feed = work.path().join("mirror");
    std::fs::create_dir_all(&other_feed).unwrap();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the version", |h| shows(h, "Version 1.0.0"));
    harness.get_by_label("Settings").click();
    pump_until(&mut harness, "the settings", |h| shows(h, "Hours between checks"));
    harness.get_by_label("Hours between checks").focus();
    harness.step();
    harness.get_by_label("Hours between checks").type_text("6");
    harness.step();
    harness.key_press(egui::Key::Enter);
    harness.step();
    harness.get_by_label("Save settings").click();
    let deadline = Instant::now() + PATIENCE;
    while Config::load(&paths.config_file()).config.check_interval_hours != 6.0 {
        harness.step();
        assert!(Instant::now() < deadline, "config.json never got the interval");
        std::thread::sleep(Duration::from_millis(20));
    }
    pump_until(&mut harness, "Saved", |h| shows(h, "Saved"));
    type_into(&mut harness, "Change to", other_feed.to_str().unwrap());
    harness.get_by_label("Use this source").click();
    pump_until(&mut harness, "the new source shown", |h| {
        shows(h, &format!("Releases come from feed {}", other_feed.display()))
    });
    assert_eq!(
        Config::load(&paths.config_file()).config.feed.as_deref(),
        other_feed.to_str()
    );
}

/// Kills a process left behind when a test fails halfway.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

#[cfg(unix)]
#[test]
fn closing_the_window_with_keep_running_hands_the_agent_to_a_background_launcher() {
    let (_work, _feed_dir, home, paths) = installed_1_0_0();
    let mut config = Config::load(&paths.config_file()).config;
    config.keep_backend_running = true;
    config.save(&paths.config_file()).unwrap();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the backend running", |h| {
        h.state().is_owner() && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    drop(harness);
    // Closing waited until a launcher of its own took the install over with the agent running.
    let client = personal_ai_agent::api::client::Client::connect(&paths)
        .unwrap()
        .expect("a background launcher owns the install");
    let owner_pid = client.info().pid;
    let _guard = KillOnDrop(Some(owner_pid));
    assert_ne!(owner_pid, std::process::id());
    let status = client.get("/api/updates/status").unwrap();
    assert_eq!(status["backend"]["state"], "running");
    assert_eq!(status["backend"]["version"], "1.0.0");
    assert_eq!(status["backend"]["supervisor_pid"], owner_pid);
    // `backend stop`, as the setting's help says, ends it all: the agent and the background launcher.
    let stopped = pai(home.path(), None, &["backend", "stop"]);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let deadline = Instant::now() + PATIENCE;
    while personal_ai_agent::owner::is_owned(&paths) {
        assert!(Instant::now() < deadline, "the background launcher did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    #[cfg(target_os = "linux")]
    assert_eq!(
        backends_running_under(home.path()),
        0,
        "its agent stopped with it"
    );
}

#[test]
fn closing_the_window_stops_the_agent_while_its_api_still_answers() {
    // The backend knows the API's token: the API must outlive it, or its port is free for another
    // program while the backend would still send the token there. The example backend, on the stop
    // signal, asks the API for its owner proof and writes down whether it got it.
    let work = temp_home();
    let feed_dir = work.path().join("feed");
    let report = work.path().join("api-at-exit.txt");
    publish(
        work.path(),
        &feed_dir,
        "1.0.0",
        &["--report-api-on-exit", report.to_str().unwrap()],
    );
    let home = temp_home();
    let paths = home_with_feed(home.path(), &feed_dir);
    json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    // The install's health check stopped a backend too (without an API): only the window's counts.
    let _ = std::fs::remove_file(&report);
    let mut harness = window(&paths);
    pump_until(&mut harness, "the backend running", |h| {
        h.state().is_owner() && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    drop(harness);
    let said = std::fs::read_to_string(&report).expect("the backend was stopped and reported");
    assert_eq!(said, "proved", "the API answered while the backend stopped");
}

#[test]
fn closing_the_window_stops_the_agent_when_keep_running_is_off() {
    let (_work, _feed_dir, home, paths) = installed_1_0_0();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the backend running", |h| {
        h.state().is_owner() && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    drop(harness);
    // Nobody takes over, then or a moment later.
    for _ in 0..30 {
        assert!(
            !personal_ai_agent::owner::is_owned(&paths),
            "nobody owns it after the window"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    #[cfg(target_os = "linux")]
    assert_eq!(backends_running_under(home.path()), 0);
    let _ = home;
}

#[test]
fn release_note_links_open_only_over_https() {
    let (work, feed_dir, _home, paths) = installed_1_0_0();
    publish(work.path(), &feed_dir, "1.1.0", &[]);
    std::fs::write(
        feed_dir.join("1.1.0/NOTES.md"),
        "Notes\n\n[safe page](https://example.com/notes) · [a local file](file:///etc/passwd) · [plain web](http://example.com/x)\n",
    )
    .unwrap();
    personal_ai_agent::sources::feed::write_feed(&feed_dir).unwrap();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the version, its backend running", |h| {
        shows(h, "Version 1.0.0") && backend_running(h)
    });
    harness.get_by_label("Check for updates").click();
    pump_until(&mut harness, "the notes", |h| {
        h.query_by_label("safe page").is_some()
    });
    let opened = |h: &mut Harness<'_, App>, link: &str| {
        h.get_by_label(link).click();
        h.step();
        h.output()
            .platform_output
            .commands
            .iter()
            .filter_map(|c| match c {
                egui::OutputCommand::OpenUrl(open) => Some(open.url.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(opened(&mut harness, "safe page"), ["https://example.com/notes"]);
    assert!(
        opened(&mut harness, "a local file").is_empty(),
        "file: links are dropped"
    );
    assert!(
        opened(&mut harness, "plain web").is_empty(),
        "plain http links are dropped"
    );
}

#[test]
fn the_wizard_installs_into_a_folder_the_user_chose() {
    let (work, _feed_dir, home, paths) = published_1_0_0();
    let chosen = work.path().join("big disk/agent");
    let mut harness = window(&paths);
    pump_until(&mut harness, "the offered release", |h| {
        shows(h, "Install Personal AI Agent") && shows(h, "Install somewhere else")
    });
    harness.get_by_label("Install somewhere else").click();
    pump_until(&mut harness, "the folder field", |h| {
        h.query_by_label("Folder").is_some()
    });
    type_into(&mut harness, "Folder", chosen.to_str().unwrap());
    harness.get_by_label("Use this folder").click();
    let target = chosen.join("install");
    pump_until(&mut harness, "the chosen folder shown", |h| {
        shows(h, &format!("Installs into {}", target.display()))
            && h.query_by_label("Install Personal AI Agent").is_some()
    });
    harness.get_by_label("Install Personal AI Agent").click();
    pump_until(&mut harness, "1.0.0 installed and running", |h| {
        h.state().installed_version() == Some("1.0.0")
            && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
    assert!(
        target.join("versions").is_dir(),
        "installed into the chosen folder"
    );
    assert!(
        !home.path().join("install/versions").exists(),
        "nothing was installed in the default folder"
    );
    // The next start (CLI or window) finds it through the setting.
    let resolved = Paths::resolve(Some(home.path())).unwrap();
    assert_eq!(resolved.data_dir, chosen);
    drop(harness);
    let status = json_of(&pai(home.path(), None, &["update", "status", "--json"]));
    assert_eq!(status["current_version"], "1.0.0");
    // Once installed, the folder is not moved under the install.
    let refused = pai(
        home.path(),
        None,
        &["update", "configure", "--data-dir", "/tmp/elsewhere"],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--data-dir can be chosen only before the first install"),
        "{stderr}"
    );
}

#[test]
fn the_first_run_works_by_keyboard_and_every_button_says_what_it_does() {
    use egui::accesskit::Role;
    use egui_kittest::kittest::NodeT;
    let (_work, _feed_dir, _home, paths) = published_1_0_0();
    let mut harness = window(&paths);
    pump_until(&mut harness, "the offered release", |h| {
        shows(h, "Install Personal AI Agent") && shows(h, "What changed in 1.0.0")
    });
    // Screen readers read every button by its label.
    let buttons: Vec<String> = harness
        .query_all_by_role(Role::Button)
        .map(|b| b.accesskit_node().label().unwrap_or_default())
        .collect();
    assert!(buttons.len() >= 5, "{buttons:?}");
    assert!(
        buttons.iter().all(|label| !label.trim().is_empty()),
        "a button without a label: {buttons:?}"
    );
    // Tab walks from control to control; Enter presses the focused one.
    let focused = |h: &Harness<'_, App>| {
        h.query_by(|n| n.is_focused())
            .and_then(|n| n.accesskit_node().label())
    };
    let mut visited = Vec::new();
    for _ in 0..60 {
        harness.key_press(egui::Key::Tab);
        harness.step();
        let now = focused(&harness);
        if now.as_deref() == Some("Install Personal AI Agent") {
            break;
        }
        visited.push(now);
    }
    assert_eq!(
        focused(&harness).as_deref(),
        Some("Install Personal AI Agent"),
        "Tab never reached the install button; it went through {visited:?}"
    );
    assert!(
        visited.iter().flatten().any(|l| l == "Models"),
        "the sidebar is on the way: {visited:?}"
    );
    harness.key_press(egui::Key::Enter);
    pump_until(&mut harness, "1.0.0 installed and running", |h| {
        h.state().installed_version() == Some("1.0.0")
            && matches!(h.state().backend_state(), BackendState::Running { .. })
    });
}

#[test]
fn an_update_with_a_delta_says_how_little_it_downloads() {
    let (work, feed_dir, _home, paths) = installed_1_0_0();
    let bundle = work.path().join("bundle-1.1.0-delta");
    crate::support::make_bundle(&bundle, &[]);
    std::fs::write(bundle.join("CHANGES.txt"), "what 1.1.0 changed").unwrap();
    personal_ai_agent::pack::pack(&personal_ai_agent::pack::PackOptions {
        version: "1.1.0".parse().unwrap(),
        platform: personal_ai_agent::platform::Platform::current(),
        bundle_dir: bundle,
        out_dir: feed_dir.join("1.1.0"),
        channel: personal_ai_agent::version::Channel::Stable,
        minisign_key: None,
        minisign_password: None,
        published_at: chrono::Utc::now(),
        notes: None,
        also_tar_gz: false,
        delta_from: vec![feed_dir.join("1.0.0")],
    })
    .unwrap();
    personal_ai_agent::sources::feed::write_feed(&feed_dir).unwrap();

    let mut harness = window(&paths);
    pump_until(&mut harness, "the installed version, its backend running", |h| {
        h.state().installed_version() == Some("1.0.0") && backend_running(h)
    });
    harness.get_by_label("Check for updates").click();
    pump_until(&mut harness, "the offer with its download size", |h| {
        shows(h, "Update to 1.1.0 available") && shows(h, "only what changed since 1.0.0")
    });
    harness.get_by_label("Install update").click();
    pump_until(&mut harness, "the update, saying what it downloaded", |h| {
        h.state().installed_version() == Some("1.1.0") && shows(h, "(only what changed).")
    });
}
