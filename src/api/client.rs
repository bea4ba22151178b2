//! The client side of the local API: how every other face (the CLI today) finds the owner of a data
//! folder and asks it to do the work, instead of doing it beside it.
//!
//! [`Client::connect`] returns `Ok(None)` when nobody owns the folder, so the caller does the work itself.
//! `run/api.json` alone is not proof (a SIGKILLed owner leaves it behind): [`crate::owner::current`]
//! checks the owner lock and the pid, and then the server must answer. A live owner whose API does not
//! answer, or refuses the token, is an error, never "no owner": doing the work beside a living owner is
//! what the owner exists to prevent.
//!
//! A long operation answers 202 with a job id; [`Client::run_job`] subscribes to `GET /api/events`
//! *before* posting (so no event of the job is missed), hands the job's progress to a callback, and
//! returns the job's result (the engine's report, serialised as the CLI's `--json` contracts are) or its
//! error message. `GET /api/jobs/{id}` is polled too, so a lost event stream only slows it down. An
//! owner that stays alive but answers neither (stopped, wedged) for [`SILENCE_LIMIT`] is an error naming
//! its pid, never a wait for ever; a long job that answers (progress, the stream's keep-alives, the job's
//! state) never hits it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::app::Progress;
use crate::download::CancelToken;
use crate::owner::ApiInfo;
use crate::paths::Paths;

/// How long one plain request may take (job results come through the event stream, not one request).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait between two polls of a job when no event arrived.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a followed job's owner may stay silent (no event, keep-alive or job state) before the client
/// gives up on it. The owner's event stream sends a keep-alive every 2 s.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// How long opening the event stream may take before the client polls the job instead.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);

/// Why the owner could not be asked, or refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "the launcher (pid {pid}) owns this install, but its API token could not be read from {path}: {reason}; check that file (it is created by the owner and readable only by you)"
    )]
    TokenUnreadable { pid: u32, path: PathBuf, reason: String },

    #[error(
        "the launcher (pid {pid}) that owns this install refused the API token read from {path} (401); check that file: it must hold the token the owner read when it started (a file replaced since then no longer matches until the owner restarts)"
    )]
    Unauthorized { pid: u32, path: PathBuf },

    #[error(
        "the launcher (pid {pid}) owns this install but its API at {url} does not answer ({reason}); wait a moment and try again, or stop that launcher"
    )]
    Unreachable { pid: u32, url: String, reason: String },

    /// The owner answered with an error status; `message` is its `error` field.
    #[error("{message}")]
    Refused { status: u16, message: String },

    /// The job ran and failed; `message` is the owner's whole message.
    #[error("{message}")]
    JobFailed { message: String },

    #[error(
        "the launcher (pid {pid}) that owned this install went away during the operation; see `personal-ai-agent update status` for what was done"
    )]
    OwnerGone { pid: u32 },

    #[error(
        "{} holds this install without serving an API (a command changing it in a terminal, or a launcher still starting); wait for it to finish, or stop it, then try again",
        describe_holder(*pid, role.as_deref())
    )]
    Busy { pid: Option<u32>, role: Option<String> },

    #[error(
        "the launcher (pid {pid}) that owns this install has not answered for {secs} s while running job {job} (is it stopped or stuck?); its job may still finish: check `personal-ai-agent update status` later, and if it stays silent, end that launcher (`kill {pid}`) and try again"
    )]
    OwnerSilent { pid: u32, job: u64, secs: u64 },

    #[error("the local API client could not be set up: {0}")]
    Setup(String),
}

/// How long a lock held without `api.json` is given to become a serving owner (it listens, then
/// publishes, within moments of taking the lock) before it is called busy.
const OWNER_START_PATIENCE: Duration = Duration::from_secs(5);

/// "`update install` (pid 42)", "the launcher with pid 42", or "another launcher process".
pub fn describe_holder(pid: Option<u32>, role: Option<&str>) -> String {
    match (role, pid) {
        (Some(role), Some(pid)) => format!("`{role}` (pid {pid})"),
        (Some(role), None) => format!("`{role}`"),
        (None, Some(pid)) => format!("the launcher with pid {pid}"),
        (None, None) => "another launcher process".into(),
    }
}

/// A connection to the owner's API.
#[derive(Clone)]
pub struct Client {
    info: ApiInfo,
    /// Read from the token file; read again when the owner answers 401 (an owner makes a new token at
    /// every start, so one restarted in place, such as after a launcher update, has a new one).
    token: std::sync::Arc<std::sync::RwLock<String>>,
    http: reqwest::blocking::Client,
    /// [`SILENCE_LIMIT`] and [`SUBSCRIBE_WAIT`] (shorter in tests).
    silence_limit: Duration,
    subscribe_wait: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Client")
            .field("url", &self.info.url)
            .field("pid", &self.info.pid)
            .finish()
    }
}

impl Client {
    /// The owner's API for `paths`, when a live owner publishes one (`Ok(None)`: nobody owns the folder,
    /// do the work here). Reads the token and makes one authorised request, so a wrong token is reported
    /// now, naming the file. A lock held without an API is waited for a few seconds (an owner starting),
    /// then is [`ClientError::Busy`]: never "nobody", or the caller would do the work beside it.
    pub fn connect(paths: &Paths) -> Result<Option<Client>, ClientError> {
        Self::connect_within(paths, REQUEST_TIMEOUT)
    }

    /// [`Client::connect`] whose requests give up after `timeout`: for a quick look (`api status`).
    pub fn connect_within(paths: &Paths, timeout: Duration) -> Result<Option<Client>, ClientError> {
        let deadline = std::time::Instant::now() + OWNER_START_PATIENCE;
        let mut info = loop {
            match crate::owner::holder(paths) {
                crate::owner::Holder::Nobody => return Ok(None),
                crate::owner::Holder::Serving(info) => break info,
                crate::owner::Holder::Busy { pid, role } => {
                    if std::time::Instant::now() >= deadline {
                        return Err(ClientError::Busy { pid, role });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        // The token is sent only to loopback, and read only from this user's own config folder, whatever
        // `api.json` says.
        info.url = format!("http://127.0.0.1:{}", info.port);
        info.token_file = paths.config_dir.join(crate::api::token::TOKEN_FILE);
        let token = std::fs::read_to_string(&info.token_file)
            .map_err(|e| ClientError::TokenUnreadable {
                pid: info.pid,
                path: info.token_file.clone(),
                reason: e.to_string(),
            })?
            .trim()
            .to_owned();
        crate::http::ensure_tls_provider();
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let client = Client {
            info,
            token: std::sync::Arc::new(std::sync::RwLock::new(token)),
            http,
            silence_limit: SILENCE_LIMIT,
            subscribe_wait: SUBSCRIBE_WAIT,
        };
        client.get("/api/backend/status")?;
        Ok(Some(client))
    }

    /// Who the owner is.
    pub fn info(&self) -> &ApiInfo {
        &self.info
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.info.port)
    }

    /// The token as last read.
    pub fn token(&self) -> String {
        self.token.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the token file again; whether it now holds another token.
    fn reload_token(&self) -> bool {
        let Some(fresh) = crate::api::token::read(
            self.info
                .token_file
                .parent()
                .unwrap_or_else(|| std::path::Path::new(".")),
        ) else {
            return false;
        };
        if self.token() == fresh {
            return false;
        }
        // The port may have changed hands since `api.json` was read (an owner restarted in place listens
        // elsewhere, and another local user may take the old port and answer 401 on purpose): the new
        // token goes only to a server that proves it knows it.
        if !self.owner_proves(&fresh) {
            tracing::warn!(
                port = self.info.port,
                "the server on the owner's port refused the token and cannot prove it knows the new one; not sending it"
            );
            return false;
        }
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        true
    }

    /// Whether the server at this client's port answers `GET /api/owner/proof` for a fresh nonce with the
    /// HMAC only the holder of `token` can make (compared in constant time).
    fn owner_proves(&self, token: &str) -> bool {
        let Ok(nonce) = crate::api::token::random_hex(32) else {
            return false;
        };
        let Ok(response) = self
            .http
            .get(self.url(&format!("/api/owner/proof?nonce={nonce}")))
            .send()
        else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        let Ok(body) = response.json::<Value>() else {
            return false;
        };
        let expected = crate::api::token::owner_proof(token, &nonce);
        body["proof"]
            .as_str()
            .is_some_and(|proof| crate::api::token::matches(&expected, proof))
    }

    /// Sends the request `make` builds; once more with the token read again if the owner refused it.
    fn send(&self, make: impl Fn() -> reqwest::blocking::RequestBuilder) -> Result<Value, ClientError> {
        match self.send_once(make()) {
            Err(ClientError::Unauthorized { .. }) if self.reload_token() => self.send_once(make()),
            other => other,
        }
    }

    fn send_once(&self, request: reqwest::blocking::RequestBuilder) -> Result<Value, ClientError> {
        let response = request
            .bearer_auth(self.token())
            .send()
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let text = response.text().map_err(|e| self.unreachable(&e))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        match status {
            200..=299 => Ok(body),
            401 => Err(ClientError::Unauthorized {
                pid: self.info.pid,
                path: self.info.token_file.clone(),
            }),
            _ => Err(ClientError::Refused {
                status,
                message: body["error"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("the owner's API answered {status}: {body}")),
            }),
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        if !crate::supervisor::is_process_alive(self.info.pid) {
            return ClientError::OwnerGone { pid: self.info.pid };
        }
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason = s.to_string();
            source = s.source();
        }
        ClientError::Unreachable {
            pid: self.info.pid,
            url: self.info.url.clone(),
            reason,
        }
    }

    /// `GET path`, its JSON answer.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(|| self.http.get(self.url(path)))
    }

    /// `POST path` with `body`, its JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(|| self.http.post(self.url(path)).json(body))
    }

    /// Posts a long operation and follows its job to the end: `on_progress` gets each progress report,
    /// `cancel` (Ctrl-C) asks the owner to cancel the job. Returns the job's result.
    pub fn run_job(
        &self,
        path: &str,
        body: &Value,
        cancel: &CancelToken,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Value, ClientError> {
        let events = self.subscribe();
        let answer = self.post(path, body)?;
        let id = answer["job"].as_u64().ok_or_else(|| ClientError::Refused {
            status: 202,
            message: format!("the owner's API answered {path} without a job id: {answer}"),
        })?;
        let mut cancel_sent = false;
        let mut last_phase: Option<Progress> = None;
        // The last time the owner said anything: an event, a keep-alive, or the job's state.
        let mut last_heard = std::time::Instant::now();
        loop {
            if last_heard.elapsed() >= self.silence_limit {
                return Err(ClientError::OwnerSilent {
                    pid: self.info.pid,
                    job: id,
                    secs: self.silence_limit.as_secs(),
                });
            }
            if cancel.is_cancelled() && !cancel_sent {
                cancel_sent = true;
                let _ = self.post("/api/jobs/cancel", &serde_json::json!({ "job": id }));
            }
            let event = match &events {
                Some(rx) => match rx.recv_timeout(POLL_INTERVAL) {
                    Ok(event) => Some(event),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(POLL_INTERVAL);
                        None
                    }
                },
                None => {
                    std::thread::sleep(POLL_INTERVAL);
                    None
                }
            };
            if event.is_some() {
                last_heard = std::time::Instant::now();
            }
            let job = match event {
                // A keep-alive: the owner lives and answers.
                Some((name, _)) if name.is_empty() => continue,
                Some((name, data)) if name == "progress" && data["job"] == id => {
                    if let Ok(progress) = progress_of(&data["progress"]) {
                        on_progress(&progress);
                        last_phase = Some(progress);
                    }
                    continue;
                }
                Some((name, data)) if name == "job" && data["job"]["id"] == id => data["job"].clone(),
                Some(_) => continue,
                // Nothing heard for a while: ask (the stream may have been lost).
                None => match self.get(&format!("/api/jobs/{id}")) {
                    Ok(job) => {
                        last_heard = std::time::Instant::now();
                        if let Ok(progress) = progress_of(&job["progress"])
                            && last_phase.as_ref() != Some(&progress)
                        {
                            on_progress(&progress);
                            last_phase = Some(progress);
                        }
                        job
                    }
                    Err(ClientError::Unreachable { .. } | ClientError::OwnerGone { .. }) => {
                        if crate::supervisor::is_process_alive(self.info.pid) {
                            continue;
                        }
                        return Err(ClientError::OwnerGone { pid: self.info.pid });
                    }
                    Err(e) => return Err(e),
                },
            };
            match job["state"].as_str() {
                Some("succeeded") => return Ok(job["result"].clone()),
                Some("failed") => {
                    return Err(ClientError::JobFailed {
                        message: job["message"]
                            .as_str()
                            .unwrap_or("the owner's job failed without saying why")
                            .to_owned(),
                    });
                }
                _ => {}
            }
        }
    }

    /// Opens `GET /api/events` and reads it on a thread named `api-events`; `None` if it cannot be
    /// opened within [`SUBSCRIBE_WAIT`] (the caller then polls). Once this returns a stream, the server
    /// has subscribed us. Each event comes as `(name, data)`; a keep-alive comment as `("", null)`.
    fn subscribe(&self) -> Option<mpsc::Receiver<(String, Value)>> {
        crate::http::ensure_tls_provider();
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(None)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        let request = http.get(self.url("/api/events")).bearer_auth(self.token());
        let (tx, rx) = mpsc::channel();
        let (opened_tx, opened_rx) = mpsc::channel();
        // The answer's head is awaited on the thread too: an owner that accepts and never answers must
        // not hold the caller (the stream has no overall timeout, being endless).
        std::thread::Builder::new()
            .name("api-events".into())
            .spawn(move || {
                let Some(response) = request.send().ok().filter(|r| r.status().is_success()) else {
                    let _ = opened_tx.send(false);
                    return;
                };
                if opened_tx.send(true).is_err() {
                    return; // the caller stopped waiting and polls instead
                }
                let mut name = String::new();
                let mut data = String::new();
                for line in BufReader::new(response).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with(':') {
                        if tx.send((String::new(), Value::Null)).is_err() {
                            break;
                        }
                    } else if line.is_empty() {
                        if !data.is_empty() {
                            let value = serde_json::from_str(&data).unwrap_or(Value::Null);
                            if tx.send((std::mem::take(&mut name), value)).is_err() {
                                break;
                            }
                        }
                        name.clear();
                        data.clear();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
            })
            .ok()?;
        opened_rx
            .recv_timeout(self.subscribe_wait)
            .unwrap_or(false)
            .then_some(rx)
    }
}

fn progress_of(value: &Value) -> Result<Progress, ()> {
    serde_json::from_value(value.clone()).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// An "owner" that answers the job's POST with 202 and then never answers anything again (a stopped
    /// or wedged launcher whose kernel still accepts connections).
    fn silent_owner() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut head = [0u8; 4096];
                let n = stream.read(&mut head).unwrap_or(0);
                if head[..n].starts_with(b"POST /api/updates/install") {
                    let body = br#"{"job": 7}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(body);
                } else {
                    held.push(stream);
                }
            }
        });
        port
    }

    #[test]
    fn a_followed_job_whose_live_owner_stops_answering_fails_naming_the_owner_instead_of_waiting_for_ever() {
        let port = silent_owner();
        let client = Client {
            info: ApiInfo {
                port,
                // A live pid: this test's own process.
                pid: std::process::id(),
                version: "test".into(),
                url: format!("http://127.0.0.1:{port}"),
                token_file: PathBuf::from("api-token"),
            },
            token: std::sync::Arc::new(std::sync::RwLock::new("t".into())),
            http: reqwest::blocking::Client::builder()
                .no_proxy()
                .timeout(Duration::from_millis(500))
                .build()
                .unwrap(),
            silence_limit: Duration::from_secs(2),
            subscribe_wait: Duration::from_millis(300),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let result = client.run_job(
                "/api/updates/install",
                &serde_json::json!({}),
                &CancelToken::new(),
                &mut |_| {},
            );
            let _ = tx.send(result);
        });
        let result = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("run_job still waits for an owner that stopped answering");
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id()))
                && message.contains("has not answered")
                && message.contains("job 7"),
            "{message}"
        );
    }
}
