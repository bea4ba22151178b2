//! The agent's own web page, end to end (the seed's web flow): a `run --headless` owner runs the example
//! backend, whose page at `/` shows the update status and offers "Update now" through the backend's own
//! server-side calls to the launcher's API (`PAI_LAUNCHER_API` + `PAI_LAUNCHER_TOKEN`); the browser never
//! sees the token. The page opens only with the launcher's key (`/?key=`, a session cookie), a GET changes
//! nothing, and the backend sends the token only to a server that proves it knows it (issue 18). Also home to [`Headless`], the owner other tests (the attached window) start.

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

/// A browser: no token, no redirects followed by itself (so the test sees the 303), cookies sent by hand.
fn browser() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// What "Open agent" opens for the owner whose token is `token`.
fn page_key_of(token: &str) -> String {
    personal_ai_agent::api::token::page_key(token)
}

/// Opens `http://127.0.0.1:<port>/?key=<key>` as the launcher's link does: asserts the 303 to `/` with a
/// session cookie that is HttpOnly, SameSite=Strict and Path=/, and returns `name=value` to send back.
pub fn open_with_key(b: &Client, port: u64, key: &str) -> String {
    let answer = b
        .get(format!("http://127.0.0.1:{port}/?key={key}"))
        .send()
        .unwrap();
    assert_eq!(answer.status(), 303, "the key buys a session and a redirect");
    assert_eq!(answer.headers()["location"], "/");
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    cookie.split(';').next().unwrap().to_owned()
}

/// The page with `cookie`: its status and text.
fn page_with(b: &Client, port: u64, cookie: &str) -> (u16, String) {
    let answer = b
        .get(format!("http://127.0.0.1:{port}/"))
        .header("cookie", cookie)
        .send()
        .unwrap();
    let status = answer.status().as_u16();
    if status == 200 {
        assert!(
            answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "a plain HTML page"
        );
    }
    (status, answer.text().unwrap())
}

/// The form token the page's buttons carry.
fn form_token(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form carries its token")
        .to_owned()
}

#[test]
fn the_agents_page_shows_the_update_status_and_update_now_installs_it_without_exposing_the_token() {
    let work = temp_home();
    let feed = work.path().join("feed");
    publish(work.path(), &feed, "1.0.0");
    let home = temp_home();
    home_with_feed(home.path(), &feed);
    let owner = Headless::start(home.path());
    let port = owner.backend()["port"].as_u64().unwrap();
    let page_url = format!("http://127.0.0.1:{port}/");
    let browser = browser();
    let cookie = open_with_key(&browser, port, &page_key_of(&owner.token));
    let page = |b: &Client| {
        let (status, text) = page_with(b, port, &cookie);
        assert_eq!(status, 200, "{text}");
        text
    };

    let first = page(&browser);
    assert!(first.contains("Installed version: 1.0.0"), "{first}");
    assert!(!first.contains("Update available: 1.1.0"), "{first}");
    assert!(!first.contains(&owner.token), "the page never carries the token");

    // "Check for updates" (a post from the page) asks the launcher; the page then offers 1.1.0.
    publish(work.path(), &feed, "1.1.0");
    let offered = wait_for("the page to offer 1.1.0", || {
        let token = form_token(&page(&browser));
        let answer = browser
            .post(format!("{page_url}check"))
            .header("cookie", &cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("csrf={token}"))
            .send()
            .unwrap();
        assert_eq!(answer.status(), 303);
        let text = page(&browser);
        text.contains("Update available: 1.1.0").then_some(text)
    });
    assert!(
        offered.contains(r#"<form method="post" action="/update">"#),
        "{offered}"
    );
    assert!(offered.contains("Update now"), "{offered}");
    assert!(!offered.contains(&owner.token));

    // A post without the page's form token, from another site, under another name or without the session
    // is refused; the page's own form works.
    let token = form_token(&offered);
    assert_ne!(token, owner.token, "the form token is not the launcher's");
    let post = |cookie: Option<&str>, extra: &[(&str, &str)], body: String| {
        let mut request = browser
            .post(format!("{page_url}update"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.send().unwrap()
    };
    let forged = post(Some(&cookie), &[], String::new());
    assert_eq!(forged.status(), 403, "a post without the page's form token");
    let elsewhere = post(
        Some(&cookie),
        &[("Origin", "https://evil.example")],
        format!("csrf={token}"),
    );
    assert_eq!(elsewhere.status(), 403, "another site's page");
    let rebound = post(
        Some(&cookie),
        &[("Host", &format!("evil.example:{port}"))],
        format!("csrf={token}"),
    );
    assert_eq!(rebound.status(), 403, "a rebound DNS name");
    let stranger = post(None, &[], format!("csrf={token}"));
    assert_eq!(stranger.status(), 401, "no session: not this user's browser");
    let answer = post(
        Some(&cookie),
        &[("Origin", &format!("http://127.0.0.1:{port}"))],
        format!("csrf={token}"),
    );
    assert_eq!(answer.status(), 303, "Update now redirects back to the page");
    assert_eq!(answer.headers()["location"], "/");
    assert!(!answer.text().unwrap().contains(&owner.token));

    // The backend that served the form is replaced by 1.1.0's; the owner says so, and so does its page
    // (a new process: the launcher's link opens a session there again).
    wait_for("1.1.0 installed", || {
        (owner.get("/api/updates/status")["update"]["current_version"] == "1.1.0").then_some(())
    });
    wait_for("1.1.0 running", || {
        let backend = owner.backend();
        (backend["state"] == "running" && backend["version"] == "1.1.0").then_some(())
    });
    let port = owner.backend()["port"].as_u64().unwrap();
    let cookie = open_with_key(&browser, port, &page_key_of(&owner.token));
    let (status, after) = page_with(&browser, port, &cookie);
    assert_eq!(status, 200);
    assert!(after.contains("Installed version: 1.1.0"), "{after}");
    assert!(!after.contains(&owner.token));
}

#[test]
fn the_agents_page_serves_no_one_without_the_launchers_key_and_a_get_changes_nothing() {
    let work = temp_home();
    let feed = work.path().join("feed");
    publish(work.path(), &feed, "1.0.0");
    let home = temp_home();
    home_with_feed(home.path(), &feed);
    let owner = Headless::start(home.path());
    let port = owner.backend()["port"].as_u64().unwrap();
    let browser = browser();
    let checked_before = owner.get("/api/updates/status")["last_check"].clone();
    publish(work.path(), &feed, "1.1.0");

    // Another local user (or any page in the browser) without the key: no page, no form token.
    for _ in 0..3 {
        let answer = browser.get(format!("http://127.0.0.1:{port}/")).send().unwrap();
        assert_eq!(answer.status(), 401);
        let text = answer.text().unwrap();
        assert!(
            text.contains("open the agent from the launcher (Open agent)"),
            "{text}"
        );
        assert!(!text.contains("csrf"), "no form token without the key: {text}");
    }
    let wrong = browser
        .get(format!("http://127.0.0.1:{port}/?key={}", "0".repeat(64)))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 403, "a wrong key");
    assert!(wrong.headers().get("set-cookie").is_none());
    let made_up = browser
        .get(format!("http://127.0.0.1:{port}/"))
        .header("cookie", format!("pai_agent_session={}", "1".repeat(64)))
        .send()
        .unwrap();
    assert_eq!(made_up.status(), 401, "a session the page did not make");
    for path in ["check", "update"] {
        let answer = browser
            .post(format!("http://127.0.0.1:{port}/{path}"))
            .body("csrf=x")
            .send()
            .unwrap();
        assert_eq!(answer.status(), 401, "POST /{path} without a session");
    }

    // With the key, views of the page never ask for a check: only "Check for updates" does.
    let cookie = open_with_key(&browser, port, &page_key_of(&owner.token));
    for _ in 0..3 {
        let (status, text) = page_with(&browser, port, &cookie);
        assert_eq!(status, 200, "{text}");
        assert!(!text.contains("Update available: 1.1.0"), "{text}");
    }
    let status = owner.get("/api/updates/status");
    assert_eq!(
        status["last_check"], checked_before,
        "a GET queued no check: {status}"
    );

    // The chat: only this page's names and origin, only with the session.
    let chat = |host: Option<String>, origin: Option<&str>, cookie: Option<&str>| {
        let mut request = browser
            .post(format!("http://127.0.0.1:{port}/api/chat"))
            .header("content-type", "application/json")
            .body(r#"{"message":"hi"}"#);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let answer = request.send().unwrap();
        (answer.status().as_u16(), answer.text().unwrap())
    };
    assert_eq!(
        chat(Some(format!("evil.example:{port}")), None, Some(&cookie)).0,
        403,
        "a rebound DNS name"
    );
    assert_eq!(
        chat(None, Some("https://evil.example"), Some(&cookie)).0,
        403,
        "another site"
    );
    assert_eq!(chat(None, None, None).0, 401, "no session");
    let (status, reply) = chat(
        Some(format!("localhost:{port}")),
        Some(&format!("http://localhost:{port}")),
        Some(&cookie),
    );
    assert_eq!((status, reply.as_str()), (200, r#"{"reply":"echo: hi"}"#));
    // The supervisor's health check stays open.
    let health = browser
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// A program that took the launcher API's port: records every request it gets and answers each with
/// `{"proof": ...}`, a made-up one or (when `honest`) the right one for the token it was told.
struct Impostor {
    port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    honest: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Impostor {
    fn start(token: &str) -> Impostor {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let honest = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, knows, token) = (requests.clone(), honest.clone(), token.to_owned());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                let nonce = head
                    .split("nonce=")
                    .nth(1)
                    .and_then(|rest| rest.split([' ', '&']).next())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push(head);
                let proof = if knows.load(std::sync::atomic::Ordering::SeqCst) {
                    personal_ai_agent::api::token::owner_proof(&token, &nonce)
                } else {
                    "0".repeat(64)
                };
                let body = format!(r#"{{"proof":"{proof}","update":{{"current_version":"6.6.6"}}}}"#);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Impostor {
            port,
            requests,
            honest,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// A free port on 127.0.0.1 (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_agent_sends_its_token_only_to_a_launcher_that_proves_it_knows_it() {
    let token = "7e".repeat(32);
    let key = page_key_of(&token);
    let impostor = Impostor::start(&token);
    let port = free_port();
    let mut agent = std::process::Command::new(crate::support::LAUNCHER)
        .args([
            personal_ai_agent::demo::AGENT_SUBCOMMAND,
            "--port",
            &port.to_string(),
        ])
        .env("PAI_LAUNCHER_API", format!("http://127.0.0.1:{}", impostor.port))
        .env("PAI_LAUNCHER_TOKEN", &token)
        .env("PAI_AGENT_PAGE_KEY", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut agent);
    let browser = browser();
    wait_for("the agent listening", || {
        browser
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .ok()
            .filter(|r| r.status() == 200)
    });

    // The page asks the "launcher" for the status: the program on its port cannot prove it knows the
    // token, so it never gets it, and the page says why.
    let page = browser
        .get(format!("http://127.0.0.1:{port}/?key={key}"))
        .send()
        .unwrap();
    let cookie = page
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
        .unwrap_or_default();
    let (_, text) = page_with(&browser, port as u64, &cookie);
    let requests = impostor.requests();
    assert!(
        requests
            .iter()
            .all(|r| !r.to_ascii_lowercase().contains("authorization") && !r.contains(&token)),
        "the token went to a program that could not prove it knows it: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /api/owner/proof?nonce=")),
        "the agent asked for the proof: {requests:#?}"
    );
    assert!(text.contains("did not prove"), "{text}");
    assert!(
        !text.contains("6.6.6"),
        "nothing of the impostor's is shown: {text}"
    );

    // The same program, now answering the proof (as only the launcher holding the token can): the token
    // goes with the call.
    impostor.honest.store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, text) = page_with(&browser, port as u64, &cookie);
    assert_eq!(status, 200);
    assert!(text.contains("Installed version: 6.6.6"), "{text}");
    assert!(
        impostor
            .requests()
            .iter()
            .any(|r| r.contains(&format!("Authorization: Bearer {token}"))),
        "the proven launcher gets the token"
    );
}
