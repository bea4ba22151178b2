//! The agent's own web page, end to end (the seed's web flow): a `run --headless` owner runs the example
//! backend, whose page at `/` shows the update status and offers "Update now" through the backend's own
//! server-side calls to the launcher's API (`PAI_LAUNCHER_API` + `PAI_LAUNCHER_TOKEN`); the browser never
//! sees the token. Also home to [`Headless`], the owner other tests (the attached window) start.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

use crate::support::temp_home;

const PATIENCE: Duration = Duration::from_secs(60);

/// Packs the example backend as `version` into `feed/<version>/` and rewrites the feed document.
/// Publishes the example backend as `version` in the folder feed `feed`.
pub fn publish(work: &Path, feed: &Path, version: &str) {
    crate::support::publish_to_feed(work, feed, version, &[]);
}

/// A `run --headless --api-port 0` owning `home` (whose settings point at a feed), stopped with SIGTERM
/// when dropped.
pub struct Headless {
    child: Child,
    pub url: String,
    pub token: String,
    pub http: Client,
}

impl Headless {
    /// Starts the runner and waits until it published `run/api.json` and its backend runs.
    pub fn start(home: &Path) -> Headless {
        let mut cmd = crate::support::launcher_in(home);
        cmd.args(["run", "--headless", "--api-port", "0"]);
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let info_file = home.join("run/api.json");
        let info: Value = wait_for("run/api.json", || {
            std::fs::read_to_string(&info_file)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
        });
        let token = std::fs::read_to_string(info["token_file"].as_str().unwrap()).unwrap();
        let owner = Headless {
            child,
            url: info["url"].as_str().unwrap().to_owned(),
            token: token.trim().to_owned(),
            http: Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        // A first install proves the backend healthy in one process and then starts it for good in
        // another: wait until the same backend process has been running for a moment.
        wait_for("the owner's backend running, and settled", || {
            let first = owner.backend();
            std::thread::sleep(Duration::from_millis(700));
            let again = owner.backend();
            (first["state"] == "running" && again["state"] == "running" && first["pid"] == again["pid"])
                .then_some(())
        });
        owner
    }

    /// Kills the runner with SIGKILL (no clean exit: `run/api.json` stays behind) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    pub fn backend(&self) -> Value {
        self.get("/api/backend/status")
    }
}

impl Drop for Headless {
    fn drop(&mut self) {
        #[cfg(unix)]
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM)
        };
        #[cfg(not(unix))]
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Polls `probe` until it gives a value; fails the test naming `what` after [`PATIENCE`].
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A home whose settings point at `feed`.
pub fn home_with_feed(home: &Path, feed: &Path) -> PathBuf {
    let paths = personal_ai_agent::paths::Paths::under(home);
    let config = personal_ai_agent::config::Config {
        feed: Some(feed.to_str().unwrap().to_owned()),
        ..Default::default()
    };
    config.save(&paths.config_file()).unwrap();
    home.to_path_buf()
}

/// A browser: no token, no redirects followed by itself (so the test sees the 303).
fn browser() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn the_agents_page_shows_the_update_status_and_update_now_installs_it_without_exposing_the_token() {
    let work = temp_home();
    let feed = work.path().join("feed");
    publish(work.path(), &feed, "1.0.0");
    let home = temp_home();
    home_with_feed(home.path(), &feed);
    let owner = Headless::start(home.path());
    let page_url = format!("http://127.0.0.1:{}/", owner.backend()["port"].as_u64().unwrap());
    let browser = browser();
    let page = |b: &Client| {
        let answer = b.get(&page_url).send().unwrap();
        assert_eq!(answer.status(), 200);
        assert!(
            answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "a plain HTML page"
        );
        answer.text().unwrap()
    };

    let first = page(&browser);
    assert!(first.contains("Installed version: 1.0.0"), "{first}");
    assert!(!first.contains("Update available: 1.1.0"), "{first}");
    assert!(!first.contains(&owner.token), "the page never carries the token");

    publish(work.path(), &feed, "1.1.0");
    let offered = wait_for("the page to offer 1.1.0", || {
        let text = page(&browser);
        text.contains("Update available: 1.1.0").then_some(text)
    });
    assert!(
        offered.contains(r#"<form method="post" action="/update">"#),
        "{offered}"
    );
    assert!(offered.contains("Update now"), "{offered}");
    assert!(!offered.contains(&owner.token));

    // A cross-site form post (no token, or another site's Origin) is refused; the page's own form works.
    let forged = browser.post(format!("{page_url}update")).body("").send().unwrap();
    assert_eq!(forged.status(), 403, "a post without the page's form token");
    let token = offered
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form carries its token")
        .to_owned();
    let elsewhere = browser
        .post(format!("{page_url}update"))
        .header("Origin", "https://evil.example")
        .body(format!("csrf={token}"))
        .send()
        .unwrap();
    assert_eq!(elsewhere.status(), 403, "another site's page");
    assert_ne!(token, owner.token, "the form token is not the launcher's");
    let answer = browser
        .post(format!("{page_url}update"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}"))
        .send()
        .unwrap();
    assert_eq!(answer.status(), 303, "Update now redirects back to the page");
    assert_eq!(answer.headers()["location"], "/");
    assert!(!answer.text().unwrap().contains(&owner.token));

    // The backend that served the form is replaced by 1.1.0's; the owner says so, and so does its page.
    wait_for("1.1.0 installed", || {
        (owner.get("/api/updates/status")["update"]["current_version"] == "1.1.0").then_some(())
    });
    wait_for("1.1.0 running", || {
        let backend = owner.backend();
        (backend["state"] == "running" && backend["version"] == "1.1.0").then_some(())
    });
    let port = owner.backend()["port"].as_u64().unwrap();
    let after = browser
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(after.contains("Installed version: 1.1.0"), "{after}");
    assert!(!after.contains(&owner.token));
}
