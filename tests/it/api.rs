//! The local API against the real server: `run --headless --api-port 0` with a private home and a folder
//! feed, driven over HTTP only. Security (token, Host, Origin, methods, bodies), one job at a time, a whole
//! check → download → install → rollback with progress on `/api/events`, the owner lock, and the OpenAPI
//! document walked against what the server answers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::cli_update::pai;
use crate::support::temp_home;

const PATIENCE: Duration = Duration::from_secs(60);

/// Packs the example backend as `version` into `feed/<version>/` and rewrites the feed document.
fn publish(work: &Path, feed: &Path, version: &str, backend_args: &[&str]) {
    crate::support::publish_to_feed(work, feed, version, backend_args);
}

/// A `run --headless` owning `home`, with its API's address and token.
struct Owner {
    child: Child,
    port: u16,
    token: String,
    http: Client,
}

fn runner(home: &Path) -> Command {
    let mut cmd = crate::support::launcher_in(home);
    cmd.args(["run", "--headless", "--api-port", "0"]);
    cmd
}

impl Owner {
    fn start(home: &Path) -> Owner {
        let child = runner(home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let info_file = home.join("run/api.json");
        let deadline = Instant::now() + PATIENCE;
        let info: Value = loop {
            if let Ok(text) = std::fs::read_to_string(&info_file)
                && let Ok(v) = serde_json::from_str(&text)
            {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "the runner never published run/api.json"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(info["pid"], child.id());
        let token = std::fs::read_to_string(info["token_file"].as_str().unwrap()).unwrap();
        Owner {
            child,
            port: info["port"].as_u64().unwrap() as u16,
            token: token.trim().to_owned(),
            http: Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        answer(
            self.http
                .get(self.url(path))
                .bearer_auth(&self.token)
                .send()
                .unwrap(),
        )
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        answer(
            self.http
                .post(self.url(path))
                .bearer_auth(&self.token)
                .json(&body)
                .send()
                .unwrap(),
        )
    }

    /// Waits for job `id` to finish and returns it.
    fn wait_job(&self, id: u64) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, job) = self.get(&format!("/api/jobs/{id}"));
            assert_eq!(status, 200, "{job}");
            if job["state"] == "succeeded" || job["state"] == "failed" {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} never finished: {job}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a long operation to its end; returns the finished job.
    fn run_job(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post(path, body);
        assert_eq!(status, 202, "{path}: {answer}");
        self.wait_job(answer["job"].as_u64().unwrap())
    }

    fn backend_state(&self) -> Value {
        self.get("/api/backend/status").1
    }

    /// Ends the runner as a service manager would (SIGTERM) and waits for it.
    fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        #[cfg(unix)]
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM)
        };
        #[cfg(not(unix))]
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

fn answer(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A home whose settings name `feed`, with 1.0.0 published and installed (by the CLI, before any owner
/// runs, so the runner's first round has nothing to install and no check is due for a day), and 1.1.0
/// published (its backend given `backend_args`) for the API to install.
fn home_with_release(backend_args: &[&str]) -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    let work = temp_home();
    let home = temp_home();
    let feed = work.path().join("feed");
    publish(work.path(), &feed, "1.0.0", &[]);
    for args in [
        &["update", "configure", "--json", "--feed", feed.to_str().unwrap()][..],
        &["update", "install", "--json"],
    ] {
        let out = pai(home.path(), None, args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    publish(work.path(), &feed, "1.1.0", backend_args);
    (work, home, feed)
}

fn current_version(home: &Path) -> String {
    std::fs::read_to_string(home.join("install/current")).unwrap_or_default()
}

/// Every endpoint that needs the token (method as documented), for the security checks. The owner
/// proof, the one that does not, has a test of its own.
fn endpoints() -> Vec<(&'static str, String)> {
    let mut all: Vec<(&'static str, String)> = personal_ai_agent::api::ROUTES
        .iter()
        .filter(|(p, _)| *p != "/api/owner/proof")
        .map(|(p, m)| (*m, p.to_string()))
        .collect();
    all.push(("GET", "/api/jobs/1".into()));
    all
}

fn send(http: &Client, method: &str, url: &str) -> reqwest::blocking::RequestBuilder {
    match method {
        "GET" => http.get(url),
        _ => http
            .post(url)
            .header("content-type", "application/json")
            .body("{}"),
    }
}

#[test]
fn every_endpoint_refuses_a_missing_or_wrong_token_and_a_foreign_host_or_origin_and_does_nothing() {
    let (_work, home, _feed) = home_with_release(&[]);
    let owner = Owner::start(home.path());
    let config_before = std::fs::read(home.path().join("config.json")).unwrap();
    let mut wrong = owner.token.clone().into_bytes();
    wrong[0] = if wrong[0] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).unwrap();
    for (method, path) in endpoints() {
        let url = owner.url(&path);
        let (status, body) = answer(send(&owner.http, method, &url).send().unwrap());
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        let (status, _) = answer(
            send(&owner.http, method, &url)
                .bearer_auth(&wrong)
                .send()
                .unwrap(),
        );
        assert_eq!(status, 401, "{method} {path} with a wrong token");
        let (status, _) = answer(
            send(&owner.http, method, &url)
                .header("authorization", format!("Bearer {}", &owner.token[..32]))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 401, "{method} {path} with half the token");
        let (status, _) = answer(
            send(&owner.http, method, &url)
                .bearer_auth(&owner.token)
                .header("host", format!("evil.example:{}", owner.port))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 403, "{method} {path} with a foreign Host");
        let (status, _) = answer(
            send(&owner.http, method, &url)
                .bearer_auth(&owner.token)
                .header("origin", "http://evil.example")
                .send()
                .unwrap(),
        );
        assert_eq!(status, 403, "{method} {path} with a foreign Origin");
    }
    assert_eq!(
        std::fs::read(home.path().join("config.json")).unwrap(),
        config_before,
        "no refused request changed anything"
    );
    assert!(
        current_version(home.path()).contains("1.0.0"),
        "no refused request installed anything"
    );
    // The right token, on each host name, and the API's own origin, are accepted; no `*` CORS ever.
    for host in [
        format!("127.0.0.1:{}", owner.port),
        format!("localhost:{}", owner.port),
    ] {
        let response = owner
            .http
            .get(owner.url("/api/backend/status"))
            .bearer_auth(&owner.token)
            .header("host", host)
            .header("origin", format!("http://localhost:{}", owner.port))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let cors = response.headers().get("access-control-allow-origin");
        assert_ne!(cors.map(|v| v.to_str().unwrap()), Some("*"));
    }
    // Mutations are POST only.
    let (status, _) = owner.get("/api/updates/install");
    assert_eq!(status, 405);
    let (status, _) = answer(
        owner
            .http
            .put(owner.url("/api/updates/configure"))
            .bearer_auth(&owner.token)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 405);
    assert!(owner.stop().success());
}

#[test]
fn bodies_are_limited_parsed_strictly_and_refusals_name_the_field() {
    let (_work, home, _feed) = home_with_release(&[]);
    let owner = Owner::start(home.path());
    let huge = json!({ "feed": "x".repeat(70 * 1024) });
    let (status, body) = owner.post("/api/updates/configure", huge);
    assert_eq!(status, 413, "{body}");
    let (status, body) = answer(
        owner
            .http
            .post(owner.url("/api/updates/configure"))
            .bearer_auth(&owner.token)
            .body("{\"auto_check\": tru")
            .send()
            .unwrap(),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");
    let (status, body) = owner.post(
        "/api/updates/configure",
        json!({"auto_check": true, "colour": "red"}),
    );
    assert_eq!(status, 400);
    assert_eq!(body["field"], "colour", "{body}");
    let (status, body) = owner.post("/api/updates/configure", json!({"check_interval_hours": -1}));
    assert_eq!(status, 400);
    assert_eq!(body["field"], "check_interval_hours", "{body}");
    let (status, body) = owner.post("/api/updates/configure", json!({"auto_install": "yes"}));
    assert_eq!(status, 400);
    assert_eq!(body["field"], "auto_install", "{body}");
    let (status, body) = owner.post("/api/updates/skip-version", json!({"version": "not a version"}));
    assert_eq!(status, 400);
    assert_eq!(body["field"], "version", "{body}");
    let (status, body) = owner.post("/api/updates/check", json!({"now": true}));
    assert_eq!(status, 400);
    assert_eq!(body["field"], "now", "{body}");
    // A valid change is saved through the one locked writer, and a refused one changed nothing.
    let (status, body) = owner.post(
        "/api/updates/configure",
        json!({"auto_download": true, "update_channel": "stable", "backup_count": 3}),
    );
    assert_eq!(status, 200, "{body}");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["auto_download"], true);
    assert_eq!(saved["update_channel"], "stable");
    assert_eq!(saved["backup_count"], 3);
    assert_eq!(saved["check_interval_hours"], 24.0);
    // The settings that decide trust are not the API's to change: the backend holds the token too.
    for field in ["public_key", "feed", "github_repo"] {
        let (status, body) = owner.post("/api/updates/configure", json!({ field: null }));
        assert_eq!(status, 403, "{field}: {body}");
        assert_eq!(body["field"], field, "{body}");
    }
    let after: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(after, saved, "a refused trust change wrote something");
    assert!(owner.stop().success());
}

#[test]
fn a_second_install_while_one_runs_gets_409_naming_it() {
    // A backend that takes a while to come up keeps the first install busy in its health gate.
    let (_work, home, _feed) = home_with_release(&["--startup-delay-ms", "1500"]);
    let owner = Owner::start(home.path());
    // The runner's own start (the backend's start, its first scheduled round) holds the job slot for a
    // moment: the two requests race each other, not those.
    let deadline = Instant::now() + PATIENCE;
    let mut idle_looks = 0;
    while idle_looks < 3 {
        let (_, status) = owner.get("/api/updates/status");
        if status["backend"]["state"] == "running" && status["job"].is_null() {
            idle_looks += 1;
        } else {
            idle_looks = 0;
        }
        assert!(
            Instant::now() < deadline,
            "the runner never became idle: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let first = owner.http.clone();
    let url = owner.url("/api/updates/install");
    let token = owner.token.clone();
    let (a, b) = std::thread::scope(|s| {
        let one = s.spawn(|| answer(first.post(&url).bearer_auth(&token).body("{}").send().unwrap()));
        let two = s.spawn(|| answer(first.post(&url).bearer_auth(&token).body("{}").send().unwrap()));
        (one.join().unwrap(), two.join().unwrap())
    });
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "{a:?} {b:?}");
    let (accepted, refused) = if a.0 == 202 { (a.1, b.1) } else { (b.1, a.1) };
    assert_eq!(refused["running"], "install", "{refused}");
    assert_eq!(refused["job"], accepted["job"]);
    let job = owner.wait_job(accepted["job"].as_u64().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["installed_version"], "1.1.0");
    assert!(owner.stop().success());
}

/// Collects the event stream's `event:`/`data:` pairs on a thread.
fn listen(owner: &Owner) -> Arc<Mutex<Vec<(String, Value)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let response = Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(owner.url("/api/events"))
        .bearer_auth(&owner.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut name = String::new();
        for line in BufReader::new(response).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                sink.lock()
                    .unwrap()
                    .push((name.clone(), serde_json::from_str(data).unwrap()));
            }
        }
    });
    seen
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn check_download_install_and_rollback_through_the_api_alone_with_progress_on_the_event_stream() {
    let (_work, home, _feed) = home_with_release(&[]);
    let owner = Owner::start(home.path());
    wait_for("the runner to start the backend of 1.0.0", || {
        let b = owner.backend_state();
        b["state"] == "running" && b["version"] == "1.0.0"
    });
    let events = listen(&owner);

    let (status, changelog) = owner.get("/api/updates/changelog");
    assert_eq!(status, 200);
    assert_eq!(changelog["releases"][0]["version"], "1.1.0", "{changelog}");
    assert_eq!(changelog["releases"][0]["notes"], "What changed in 1.1.0");

    let check = owner.run_job("/api/updates/check", json!({}));
    assert_eq!(check["state"], "succeeded", "{check}");
    assert_eq!(check["result"]["update_available"], true, "{check}");
    assert_eq!(check["result"]["latest"]["version"], "1.1.0", "{check}");
    let download = owner.run_job("/api/updates/download", json!({}));
    assert_eq!(download["state"], "succeeded", "{download}");
    assert_eq!(download["result"]["version"], "1.1.0");
    let status = owner.get("/api/updates/status").1;
    assert_eq!(
        status["update"]["pending_download"]["version"], "1.1.0",
        "{status}"
    );
    let install = owner.run_job("/api/updates/install", json!({}));
    assert_eq!(install["state"], "succeeded", "{install}");
    assert_eq!(install["result"]["installed_version"], "1.1.0");
    assert_eq!(install["result"]["backend_running"], true);
    let backend = owner.backend_state();
    assert_eq!(backend["version"], "1.1.0", "{backend}");

    // The backend can call the API server-side: it was started with its address and token.
    #[cfg(target_os = "linux")]
    {
        let pid = backend["pid"].as_u64().unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(
            environ.contains(&format!("PAI_LAUNCHER_API=http://127.0.0.1:{}", owner.port)),
            "{environ}"
        );
        assert!(environ.contains(&format!("PAI_LAUNCHER_TOKEN={}", owner.token)));
        assert!(environ.contains(&format!(
            "PAI_AGENT_PAGE_KEY={}",
            personal_ai_agent::api::token::page_key(&owner.token)
        )));
    }

    let rollback = owner.run_job("/api/updates/rollback", json!({}));
    assert_eq!(rollback["state"], "succeeded", "{rollback}");
    assert_eq!(rollback["result"]["to"], "1.0.0");
    assert_eq!(rollback["result"]["skipped"], "1.1.0");
    let status = owner.get("/api/updates/status").1;
    assert_eq!(status["update"]["current_version"], "1.0.0");
    assert_eq!(owner.backend_state()["version"], "1.0.0");

    let restart = owner.run_job("/api/backend/restart", json!({}));
    assert_eq!(restart["state"], "succeeded", "{restart}");

    wait_for("the rollback's job event", || {
        events.lock().unwrap().iter().any(|(name, e)| {
            name == "job" && e["job"]["kind"] == "rollback" && e["job"]["state"] == "succeeded"
        })
    });
    let seen = events.lock().unwrap().clone();
    let phases: Vec<&str> = seen
        .iter()
        .filter(|(name, _)| name == "progress")
        .filter_map(|(_, e)| e["progress"]["phase"].as_str())
        .collect();
    for phase in [
        "checking",
        "verified",
        "installing",
        "starting_backend",
        "healthy",
    ] {
        assert!(phases.contains(&phase), "no {phase} progress in {phases:?}");
    }
    let install_states: Vec<&str> = seen
        .iter()
        .filter(|(name, e)| name == "job" && e["job"]["kind"] == "install")
        .filter_map(|(_, e)| e["job"]["state"].as_str())
        .collect();
    assert!(
        install_states.ends_with(&["queued", "running", "succeeded"]),
        "{install_states:?}"
    );
    assert!(
        seen.iter().any(|(name, _)| name == "backend"),
        "backend changes are events"
    );
    let ids: Vec<u64> = seen.iter().map(|(_, e)| e["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "events are numbered in order"
    );
    assert!(owner.stop().success());
}

#[test]
fn one_owner_per_data_folder_with_a_private_token_on_loopback_only() {
    let (_work, home, _feed) = home_with_release(&[]);
    let owner = Owner::start(home.path());

    // A second runner on the same data is refused, naming the owner and how to find it.
    let second = runner(home.path()).output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&format!("pid {}", owner.child.id())), "{stderr}");
    assert!(stderr.contains("personal-ai-agent api status"), "{stderr}");

    // `api status` tells where the owner listens.
    let out = pai(home.path(), None, &["api", "status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["port"], owner.port);
    assert_eq!(info["pid"], owner.child.id());
    assert_eq!(info["url"], format!("http://127.0.0.1:{}", owner.port));
    let token_file = PathBuf::from(info["token_file"].as_str().unwrap());
    assert_eq!(token_file, home.path().join("api-token"));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "api-token is readable by others: {mode:o}");
    }
    assert!(owner.token.len() >= 32, "at least 128 bits");

    // Loopback only: the port answers on 127.0.0.1 and on no other address of this machine.
    assert!(std::net::TcpStream::connect(("127.0.0.1", owner.port)).is_ok());
    #[cfg(target_os = "linux")]
    {
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let port_hex = format!(":{:04X}", owner.port);
        let listening: Vec<&str> = tcp
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.get(1)?.ends_with(&port_hex) && cols.get(3) == Some(&"0A")).then_some(cols[1])
            })
            .collect();
        assert_eq!(
            listening,
            [format!("0100007F{port_hex}")],
            "listens on 127.0.0.1 only"
        );
        if let Ok(tcp6) = std::fs::read_to_string("/proc/net/tcp6") {
            assert!(
                !tcp6.lines().any(|l| l
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|a| a.ends_with(&port_hex))),
                "listens on IPv6"
            );
        }
    }

    // A clean exit frees the folder and says so.
    assert!(owner.stop().success());
    assert!(!home.path().join("run/api.json").exists());
    let out = pai(home.path(), None, &["api", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run --headless"));
}

/// Fills the body for an operation: the document's example when it has one, else `{}`.
fn example_body(op: &Value) -> Value {
    op.pointer("/requestBody/content/application~1json/example")
        .cloned()
        .unwrap_or_else(|| json!({}))
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
        None => schema,
    }
}

#[test]
fn every_owner_start_makes_a_new_token_and_proves_it_knows_it_without_the_token() {
    use personal_ai_agent::api::token::owner_proof;
    let (_work, home, _feed) = home_with_release(&[]);
    let owner = Owner::start(home.path());
    let first = owner.token.clone();
    // The proof: anyone may ask (no token), and only an owner that knows the token can answer.
    let nonce = "c3".repeat(32);
    let (status, body) = answer(
        owner
            .http
            .get(owner.url(&format!("/api/owner/proof?nonce={nonce}")))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["proof"], owner_proof(&first, &nonce));
    assert!(!body.to_string().contains(&first), "the proof is not the token");
    for bad in [
        "",
        "?nonce=",
        "?nonce=abc",
        "?nonce=zz00zz00zz00zz00zz00zz00zz00zz00",
    ] {
        let (status, body) = answer(
            owner
                .http
                .get(owner.url(&format!("/api/owner/proof{bad}")))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["field"], "nonce");
    }
    let (status, _) = answer(
        owner
            .http
            .get(owner.url(&format!("/api/owner/proof?nonce={nonce}")))
            .header("host", format!("evil.example:{}", owner.port))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 403, "a foreign Host");
    let (status, _) = answer(
        send(
            &owner.http,
            "POST",
            &owner.url(&format!("/api/owner/proof?nonce={nonce}")),
        )
        .send()
        .unwrap(),
    );
    assert_eq!(status, 405);
    assert!(owner.stop().success());

    // The next owner of the same install has another token: the one the last backend knew opens nothing.
    let owner = Owner::start(home.path());
    assert_ne!(owner.token, first, "a new token at every owner start");
    let (status, _) = answer(
        owner
            .http
            .get(owner.url("/api/backend/status"))
            .bearer_auth(&first)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 401, "the last start's token is refused");
    let (status, body) = answer(
        owner
            .http
            .get(owner.url(&format!("/api/owner/proof?nonce={nonce}")))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200);
    assert_ne!(
        body["proof"],
        owner_proof(&first, &nonce),
        "proves the new token only"
    );
    assert_eq!(body["proof"], owner_proof(&owner.token, &nonce));
    assert!(owner.stop().success());
}

#[test]
fn the_openapi_document_matches_what_the_server_answers() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")).unwrap(),
    )
    .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();

    // Same endpoints, same methods, in the document and in the server.
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    documented.sort();
    let mut served: Vec<(String, String)> = personal_ai_agent::api::ROUTES
        .iter()
        .map(|(p, m)| (m.to_string(), p.to_string()))
        .chain([("GET".to_owned(), "/api/jobs/{id}".to_owned())])
        .collect();
    served.sort();
    assert_eq!(documented, served);

    let (_work, home, _feed) = home_with_release(&[]);
    let owner = Owner::start(home.path());
    // Walk in an order where each call can do its work; jobs are waited for, so none is refused as busy.
    let order = [
        "/api/updates/status",
        "/api/updates/changelog",
        "/api/updates/check",
        "/api/updates/download",
        "/api/updates/install",
        "/api/jobs/{id}",
        "/api/jobs/cancel",
        "/api/updates/skip-version",
        "/api/updates/unskip-version",
        "/api/updates/configure",
        "/api/backend/status",
        "/api/backend/stop",
        "/api/backend/start",
        "/api/backend/restart",
        "/api/models",
        "/api/models/download",
        "/api/updates/rollback",
        "/api/owner/proof",
        "/api/events",
    ];
    assert_eq!(order.len(), paths.len(), "walk every path");
    let mut last_job = 1;
    for path in order {
        for (method, op) in paths[path].as_object().unwrap() {
            let concrete = path.replace("{id}", &last_job.to_string());
            let url = owner.url(&concrete);
            let documented: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            // Refusals the document promises.
            let (status, _) = answer(send(&owner.http, &method.to_uppercase(), &url).send().unwrap());
            if path == "/api/owner/proof" {
                // No token needed; no nonce is the refusal.
                assert_eq!(status, 400, "{method} {path}");
                let nonce = "5a".repeat(32);
                let (status, body) = answer(owner.http.get(format!("{url}?nonce={nonce}")).send().unwrap());
                assert!(documented.iter().any(|c| **c == status.to_string()));
                assert!(body.get("proof").is_some(), "{body}");
                continue;
            }
            assert_eq!(status, 401, "{method} {path}");
            assert!(
                documented.iter().any(|c| *c == "401"),
                "{method} {path} documents 401"
            );
            assert!(
                documented.iter().any(|c| *c == "403"),
                "{method} {path} documents 403"
            );

            let request = match method.as_str() {
                "get" => owner.http.get(&url),
                _ => owner.http.post(&url).json(&example_body(op)),
            };
            let response = request.bearer_auth(&owner.token).send().unwrap();
            let status = response.status().as_u16();
            assert!(
                documented.iter().any(|c| **c == status.to_string()),
                "{method} {path} answered {status}, documented {documented:?}"
            );
            let spec = &op["responses"][status.to_string()];
            if path == "/api/events" {
                assert!(spec["content"].get("text/event-stream").is_some());
                continue;
            }
            let (_, body) = answer(response);
            if let Some(schema) = spec.pointer("/content/application~1json/schema") {
                let schema = resolve(&doc, schema);
                for field in schema["required"].as_array().into_iter().flatten() {
                    let field = field.as_str().unwrap();
                    assert!(
                        body.get(field).is_some(),
                        "{method} {path} ({status}) lacks required `{field}`: {body}"
                    );
                }
            }
            if status == 202 {
                last_job = body["job"].as_u64().unwrap();
                owner.wait_job(last_job);
            }
        }
    }
    assert!(owner.stop().success());
}

/// The API can never lower what the install trusts or runs (its token sits in the backend's environment):
/// no version below the installed one (going back is rollback), no wider channel, no unbounded count, no
/// port. Each refusal names what to use instead, and none writes anything.
#[test]
fn the_api_never_goes_below_the_installed_version_widens_the_channel_or_moves_its_port() {
    let (_work, home, _feed) = home_with_release(&[]);
    let out = pai(home.path(), None, &["update", "install", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(current_version(home.path()).trim(), "1.1.0");
    let config_before = std::fs::read(home.path().join("config.json")).unwrap();
    let owner = Owner::start(home.path());

    for path in ["/api/updates/install", "/api/updates/download"] {
        let (status, body) = owner.post(path, json!({"version": "1.0.0"}));
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["field"], "version", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("update rollback"),
            "{path}: {body}"
        );
    }
    assert_eq!(current_version(home.path()).trim(), "1.1.0");
    let (_, status) = owner.get("/api/updates/status");
    assert!(
        status["job"].is_null(),
        "a refused version started a job: {status}"
    );

    let (status, body) = owner.post("/api/updates/configure", json!({"update_channel": "dev"}));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["field"], "update_channel", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("update configure --channel dev"),
        "{body}"
    );
    let (status, body) = owner.post("/api/updates/configure", json!({"backup_count": 4294967295u64}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "backup_count", "{body}");
    for port in [json!(8765), json!(null)] {
        let (status, body) = owner.post("/api/updates/configure", json!({ "api_port": port }));
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["field"], "api_port", "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("update configure --api-port"),
            "{body}"
        );
    }
    assert_eq!(
        std::fs::read(home.path().join("config.json")).unwrap(),
        config_before,
        "a refused change wrote something"
    );

    // Narrowing stays the API's, and rollback is the way back.
    let out = pai(home.path(), None, &["update", "configure", "--channel", "beta"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = owner.post("/api/updates/configure", json!({"update_channel": "stable"}));
    assert_eq!(status, 200, "{body}");
    let job = owner.run_job("/api/updates/rollback", json!({"to": "1.0.0"}));
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(current_version(home.path()).trim(), "1.0.0");
    assert!(owner.stop().success());
}

/// `api_port` is this machine's command line's to set, and a port someone else holds does not keep the
/// runner from starting: it serves on a free port and says where in `run/api.json`.
#[cfg(unix)]
#[test]
fn a_configured_api_port_that_is_taken_gives_way_to_a_free_one() {
    let home = temp_home();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let out = pai(
        home.path(),
        None,
        &["update", "configure", "--api-port", &taken.to_string()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let saved: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["api_port"], taken);

    let mut child = crate::support::launcher_in(home.path())
        .args(["run", "--headless"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let info_file = home.path().join("run/api.json");
    let deadline = Instant::now() + PATIENCE;
    let info: Value = loop {
        if let Ok(text) = std::fs::read_to_string(&info_file)
            && let Ok(v) = serde_json::from_str(&text)
        {
            break v;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the runner ended ({status}) because its configured port was taken");
        }
        assert!(
            Instant::now() < deadline,
            "the runner never published run/api.json"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let port = info["port"].as_u64().unwrap() as u16;
    assert_ne!(port, taken);
    let token = std::fs::read_to_string(info["token_file"].as_str().unwrap()).unwrap();
    let (status, _) = answer(
        Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{port}/api/backend/status"))
            .bearer_auth(token.trim())
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    // `0` clears it: any free port.
    let out = pai(home.path(), None, &["update", "configure", "--api-port", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let saved: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("config.json")).unwrap()).unwrap();
    assert!(saved.get("api_port").is_none(), "{saved}");
    drop(squatter);
}
