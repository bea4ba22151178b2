//! The local REST API the agent's web page (through the agent's own server) and, later, the other faces
//! use: JSON in and out over HTTP on 127.0.0.1, served by our own small HTTP/1.1 transport ([`server`]:
//! capped connections and threads, deadlines, an accept loop that never ends while the server lives);
//! every operation is the service layer's (`crate::app`), this module only translates.
//!
//! Security, in the order each request is checked (see docs/API.md):
//! 1. bound to 127.0.0.1 only;
//! 2. `Host` must be exactly `127.0.0.1:<port>` or `localhost:<port>`, else 403 (DNS rebinding);
//! 3. an `Origin` not on the allow-list (the API's own origins plus [`ApiOptions::allowed_origins`]) gets
//!    403, and no `*` CORS header is ever sent;
//! 4. `Authorization: Bearer <token>` (see [`token`]), compared in constant time, else 401 and no work
//!    (the one exception, `GET /api/owner/proof`, answers an HMAC of a caller's nonce under the token,
//!    which proves this server is the owner that made the token without giving it away);
//! 5. mutations are POST only (405 otherwise), bodies framed by `Content-Length` (411 otherwise) and at
//!    most [`MAX_BODY`] bytes (413), JSON objects (400) with no unknown field (400 naming it).
//!
//! Long operations answer 202 `{"job": id}` at once; `GET /api/jobs/{id}`, `GET /api/updates/status` and
//! the event stream `GET /api/events` (Server-Sent Events) carry their progress and outcome. A second long
//! operation while one runs gets 409 naming the running job.

pub mod client;
pub mod dto;
pub mod server;
pub mod token;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::app::{AppError, Service};
use server::{BodyFraming, Header, Request, Response};

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// How often an idle event stream sends a comment, so dead connections are noticed (and their stream
/// slot freed) soon.
const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// How to serve.
#[derive(Clone, Debug, Default)]
pub struct ApiOptions {
    /// The port on 127.0.0.1; 0 for any free one. A port that cannot be had gives way to a free one, with
    /// a warning: where the API listens is published in `run/api.json`, not assumed.
    pub port: u16,
    /// Origins allowed besides the API's own (`http://127.0.0.1:<port>`, `http://localhost:<port>`).
    pub allowed_origins: Vec<String>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "cannot listen on 127.0.0.1:{port}: {reason}; check that the loopback interface is up and that this user may open more files (`ulimit -n`)"
    )]
    Listen { port: u16, reason: String },
    #[error(transparent)]
    Token(#[from] token::TokenError),
}

/// A running API server; dropping it stops it.
pub struct ApiServer {
    port: u16,
    token_file: PathBuf,
    token: String,
    stopping: Arc<AtomicBool>,
    /// `None` only while dropping; boxed so that what holds an `ApiServer` (the window's engine) stays
    /// small.
    server: Option<Box<server::Server>>,
    service: Service,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").field("port", &self.port).finish()
    }
}

struct Shared {
    service: Service,
    token: String,
    port: u16,
    origins: Vec<String>,
    stopping: Arc<AtomicBool>,
}

impl ApiServer {
    /// Makes a new token, listens on 127.0.0.1, and serves `service` on a thread named `api-server` (one
    /// `api-request` thread per connection, capped: see [`server`]). The backends the service's supervisor
    /// starts from now on get `PAI_LAUNCHER_API`, `PAI_LAUNCHER_TOKEN` and `PAI_AGENT_PAGE_KEY` in their
    /// environment. Raises this process's open-files limit first (every connection costs one).
    pub fn start(service: Service, options: ApiOptions) -> Result<ApiServer, ApiError> {
        // New at every start: a backend of an earlier start must hold nothing this owner accepts.
        let (token, token_file) = token::create(&service.paths().config_dir)?;
        crate::rlimit::raise_open_files_limit();
        let listen_error = |port: u16| {
            move |e: std::io::Error| ApiError::Listen {
                port,
                reason: e.to_string(),
            }
        };
        let listener = match server::Listener::bind(options.port) {
            Ok(listener) => listener,
            // A chosen port someone else holds (another local user can take any port) must not keep the
            // owner from serving, and so the runner from starting: any free port will do, since every
            // client finds the owner through `run/api.json`.
            Err(e) if options.port != 0 => {
                tracing::warn!(
                    port = options.port,
                    "cannot listen on 127.0.0.1:{} ({e}); listening on a free port instead (`personal-ai-agent api status` names it)",
                    options.port
                );
                server::Listener::bind(0).map_err(listen_error(0))?
            }
            Err(e) => return Err(listen_error(options.port)(e)),
        };
        let port = listener.port().map_err(listen_error(options.port))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let mut origins = vec![
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
        ];
        origins.extend(options.allowed_origins.iter().cloned());
        let shared = Arc::new(Shared {
            service: service.clone(),
            token: token.clone(),
            port,
            origins,
            stopping: stopping.clone(),
        });
        let handler: Arc<server::Handler> = Arc::new(move |request: Request| {
            if let Some((request, response)) = handle(request, &shared) {
                request.respond(response);
            }
        });
        let server = server::Server::start(listener, handler, server::Limits::default()).map_err(|e| {
            ApiError::Listen {
                port,
                reason: format!("cannot start its thread: {e}"),
            }
        })?;
        let url = format!("http://127.0.0.1:{port}");
        let mut env = service.supervisor().launch_env();
        env.insert("PAI_LAUNCHER_API".into(), url);
        env.insert("PAI_LAUNCHER_TOKEN".into(), token.clone());
        env.insert("PAI_AGENT_PAGE_KEY".into(), token::page_key(&token));
        service.supervisor().set_launch_env(env);
        tracing::info!(port, "local API listening on 127.0.0.1");
        Ok(ApiServer {
            port,
            token_file,
            token,
            stopping,
            server: Some(Box::new(server)),
            service,
        })
    }

    /// Whether the server still serves: `false` once it cannot any more (see [`server`]; its owner then
    /// withdraws `run/api.json`, wired with [`ApiServer::on_failure`]).
    pub fn healthy(&self) -> bool {
        self.server.as_ref().is_some_and(|s| s.failure().is_none())
    }

    /// Calls `hook` once, with the reason, if the server ever cannot serve any more (at once if it
    /// already cannot). The owner withdraws `run/api.json` there, so no face believes in a dead API.
    pub fn on_failure(&self, hook: impl FnOnce(&str) + Send + 'static) {
        if let Some(server) = &self.server {
            server.on_failure(hook);
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn token_file(&self) -> &std::path::Path {
        &self.token_file
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        drop(self.server.take());
        let mut env = self.service.supervisor().launch_env();
        env.remove("PAI_LAUNCHER_API");
        env.remove("PAI_LAUNCHER_TOKEN");
        env.remove("PAI_AGENT_PAGE_KEY");
        self.service.supervisor().set_launch_env(env);
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::new(name, value)
}

fn json_response<T: Serialize>(status: u16, body: &T) -> Response {
    let bytes = serde_json::to_vec_pretty(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::new(status, bytes)
        .with_header(header("Content-Type", "application/json"))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
}

fn error_response(status: u16, message: &str, field: Option<&str>) -> Response {
    let mut body = json!({ "error": message });
    if let Some(field) = field {
        body["field"] = field.into();
    }
    json_response(status, &body)
}

fn app_error(e: &AppError) -> Response {
    match e {
        AppError::Busy { running, job } => json_response(
            409,
            &json!({ "error": e.to_string(), "running": running, "job": job }),
        ),
        AppError::InvalidField { field, .. } => error_response(400, &e.to_string(), Some(field)),
        // Going below the installed version is rollback's, never the API's to do by naming a version.
        AppError::Engine(crate::Error::Downgrade { .. }) => {
            error_response(403, &e.to_string(), Some("version"))
        }
        AppError::Conflict(_)
        | AppError::Cancelled
        | AppError::Engine(crate::Error::NoRepository | crate::Error::SettingsUnreadable { .. }) => {
            error_response(409, &e.to_string(), None)
        }
        _ => error_response(500, &e.to_string(), None),
    }
}

fn header_value<'a>(request: &'a Request, name: &'static str) -> Option<&'a str> {
    request.header(name)
}

/// The routes: path, and the one method each answers (besides `GET /api/jobs/{id}`).
pub const ROUTES: &[(&str, &str)] = &[
    ("/api/updates/status", "GET"),
    ("/api/updates/check", "POST"),
    ("/api/updates/download", "POST"),
    ("/api/updates/install", "POST"),
    ("/api/updates/skip-version", "POST"),
    ("/api/updates/unskip-version", "POST"),
    ("/api/updates/configure", "POST"),
    ("/api/updates/changelog", "GET"),
    ("/api/updates/rollback", "POST"),
    ("/api/backend/status", "GET"),
    ("/api/backend/start", "POST"),
    ("/api/backend/stop", "POST"),
    ("/api/backend/restart", "POST"),
    ("/api/models", "GET"),
    ("/api/models/download", "POST"),
    ("/api/jobs/cancel", "POST"),
    ("/api/events", "GET"),
    ("/api/owner/proof", "GET"),
];

/// Checks and answers one request: returns the response to send, or `None` when the request was an
/// event stream, already served.
fn handle(mut request: Request, shared: &Shared) -> Option<(Request, Response)> {
    let method = request.method().to_ascii_uppercase();
    let path = request.url().split('?').next().unwrap_or_default().to_owned();
    // 2. Host: a browser on a rebound DNS name sends its own host name here.
    let host_ok = header_value(&request, "Host").is_some_and(|h| {
        h == format!("127.0.0.1:{}", shared.port) || h == format!("localhost:{}", shared.port)
    });
    if !host_ok {
        return Some((
            request,
            error_response(
                403,
                "the Host header must be 127.0.0.1:<port> or localhost:<port>",
                None,
            ),
        ));
    }
    // 3. Origin: a web page elsewhere may not drive the API from the user's browser.
    let origin = header_value(&request, "Origin").map(str::to_owned);
    if let Some(origin) = &origin
        && !shared.origins.iter().any(|o| o == origin)
    {
        return Some((
            request,
            error_response(403, &format!("origin {origin} is not allowed"), None),
        ));
    }
    // The owner proof needs no token: it is how a backend tells this owner from another program that
    // took the port, before it sends the token anywhere.
    if path == "/api/owner/proof" {
        let response = if method != "GET" {
            error_response(405, "/api/owner/proof answers GET only", None).with_header(header("Allow", "GET"))
        } else {
            owner_proof(request.url(), &shared.token)
        };
        return Some((request, response));
    }
    // 4. The token; nothing is done without it.
    let authorized = header_value(&request, "Authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| token::matches(&shared.token, t.trim()));
    if !authorized {
        let response = error_response(
            401,
            "missing or wrong bearer token: send `Authorization: Bearer <token>` with the token from the api-token file (`personal-ai-agent api status` names it)",
            None,
        )
        .with_header(header("WWW-Authenticate", "Bearer"));
        return Some((request, response));
    }
    let cors = origin.map(|o| header("Access-Control-Allow-Origin", &o));
    let respond = |request: Request, response: Response| {
        let response = match &cors {
            Some(h) => response
                .with_header(h.clone())
                .with_header(header("Vary", "Origin")),
            None => response,
        };
        Some((request, response))
    };
    // 5. Route and method.
    let job_id = path
        .strip_prefix("/api/jobs/")
        .filter(|rest| *rest != "cancel")
        .map(|rest| rest.parse::<u64>().ok());
    let allowed = match job_id {
        Some(_) => Some("GET"),
        None => ROUTES.iter().find(|(p, _)| *p == path).map(|(_, m)| *m),
    };
    let Some(allowed) = allowed else {
        return respond(
            request,
            error_response(404, &format!("no such endpoint: {path}"), None),
        );
    };
    if method != allowed {
        let response = error_response(405, &format!("{path} answers {allowed} only"), None)
            .with_header(header("Allow", allowed));
        return respond(request, response);
    }
    if let Some(id) = job_id {
        let response = match id.and_then(|id| shared.service.job(id)) {
            Some(job) => json_response(200, &job),
            None => error_response(404, "no such job (only the last few are kept)", None),
        };
        return respond(request, response);
    }
    if path == "/api/events" {
        // Streams live long: they have their own, smaller budget and give the request slot back, so a
        // handful of open pages (or a client hoarding streams) never locks the CLI out.
        let cors = header_value(&request, "Origin")
            .map(|o| format!("Access-Control-Allow-Origin: {o}\r\nVary: Origin\r\n"))
            .unwrap_or_default();
        return match request.into_event_stream() {
            Ok(stream) => {
                events(stream, &cors, shared);
                None
            }
            Err(request) => respond(
                *request,
                error_response(503, "too many event streams open; close one and try again", None),
            ),
        };
    }
    let body = if method == "POST" {
        // Framed by Content-Length only: the one framing whose size is known before a byte is read.
        let length = match request.body_length() {
            Ok(length) => length.unwrap_or(0),
            Err(BodyFraming::TransferEncoding) => {
                return respond(
                    request,
                    error_response(
                        411,
                        "send the body with a Content-Length header (Transfer-Encoding is not accepted)",
                        None,
                    ),
                );
            }
            Err(BodyFraming::BadLength) => {
                return respond(
                    request,
                    error_response(400, "the Content-Length header is not one number", None),
                );
            }
        };
        if length > MAX_BODY {
            return respond(request, too_large());
        }
        match request.read_body(length) {
            Ok(body) => body,
            Err(e) => {
                return respond(
                    request,
                    error_response(400, &format!("cannot read the body: {e}"), None),
                );
            }
        }
    } else {
        Vec::new()
    };
    let response = route(&shared.service, &path, &body);
    respond(request, response)
}

/// `GET /api/owner/proof?nonce=<hex>`: `{"proof": hex(HMAC-SHA256(token, "pai-owner-proof:" + nonce))}`.
fn owner_proof(url: &str, token: &str) -> Response {
    let nonce = url
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("nonce="))
        .unwrap_or_default();
    if !token::is_valid_nonce(nonce) {
        return error_response(
            400,
            &format!(
                "`nonce` must be {} to {} random bytes as hex digits: send a fresh one with every question",
                token::NONCE_BYTES.start(),
                token::NONCE_BYTES.end()
            ),
            Some("nonce"),
        );
    }
    json_response(200, &json!({ "proof": token::owner_proof(token, nonce) }))
}

fn too_large() -> Response {
    error_response(413, &format!("the body is larger than {MAX_BODY} bytes"), None)
}

fn accepted(job: Result<u64, AppError>) -> Response {
    match job {
        Ok(id) => json_response(202, &json!({ "job": id })),
        Err(e) => app_error(&e),
    }
}

fn version_of(text: Option<String>, field: &str) -> Result<Option<semver::Version>, AppError> {
    text.map(|v| {
        crate::version::parse_user_version(&v).map_err(|e| AppError::InvalidField {
            field: field.to_owned(),
            reason: e.to_string(),
        })
    })
    .transpose()
}

/// Answers one authorised request whose method matched.
fn route(service: &Service, path: &str, body: &[u8]) -> Response {
    macro_rules! body {
        ($t:ty) => {
            match dto::parse::<$t>(body) {
                Ok(b) => b,
                Err(e) => return error_response(400, &e.message, e.field.as_deref()),
            }
        };
    }
    let ok = |value: Result<serde_json::Value, AppError>| match value {
        Ok(v) => json_response(200, &v),
        Err(e) => app_error(&e),
    };
    match path {
        "/api/updates/status" => ok(service
            .status()
            .map(|s| serde_json::to_value(s).unwrap_or_default())),
        "/api/updates/changelog" => ok(service
            .changelog(crate::app::ChangelogQuery {
                offered_only: true,
                ..Default::default()
            })
            .map(|c| serde_json::to_value(c).unwrap_or_default())),
        "/api/updates/check" => {
            body!(dto::Empty);
            accepted(service.check())
        }
        "/api/updates/download" => {
            let b = body!(dto::VersionChoice);
            accepted(version_of(b.version, "version").and_then(|v| service.download(v)))
        }
        "/api/updates/install" => {
            let b = body!(dto::InstallChoice);
            accepted(version_of(b.version, "version").and_then(|v| service.install(v, b.full)))
        }
        "/api/updates/rollback" => {
            let b = body!(dto::RollbackBody);
            accepted(version_of(b.to, "to").and_then(|v| service.rollback(v)))
        }
        "/api/updates/skip-version" => {
            let b = body!(dto::VersionBody);
            ok(service
                .skip(&b.version)
                .map(|list| json!({ "skipped": b.version, "skip_versions": list })))
        }
        "/api/updates/unskip-version" => {
            let b = body!(dto::VersionBody);
            ok(service.unskip(&b.version).map(
                |(was, list)| json!({ "unskipped": b.version, "was_skipped": was, "skip_versions": list }),
            ))
        }
        "/api/updates/configure" => {
            let b = body!(dto::ConfigureBody);
            // The token also sits in the backend's environment: whatever can drive the agent's page must
            // not be able to unpin the key or point updates at its own feed and then install.
            let trust = [
                ("public_key", b.public_key.is_some()),
                ("feed", b.feed.is_some()),
                ("github_repo", b.github_repo.is_some()),
            ];
            if let Some((field, _)) = trust.iter().find(|(_, set)| *set) {
                return error_response(
                    403,
                    &format!(
                        "`{field}` decides which releases are trusted, so the local API cannot change it; change it with `personal-ai-agent update configure` or in config.json"
                    ),
                    Some(field),
                );
            }
            // Where the owner listens is not the API's to move: a port another local user holds would
            // keep the runner from serving, and `update configure` is where it is set and cleared.
            if b.api_port.is_some() {
                return error_response(
                    403,
                    "`api_port` decides where the owner's API listens, so the local API cannot change it; set it with `personal-ai-agent update configure --api-port N` (0 clears it: any free port)",
                    Some("api_port"),
                );
            }
            // A wider channel takes releases the user never chose to run: the API may only narrow it.
            if let Some(wanted) = b.update_channel {
                let current = service.settings().file.update_channel;
                if !current.includes(wanted) {
                    return error_response(
                        403,
                        &format!(
                            "the local API may only narrow the update channel (it is {current}; {wanted} would take releases of a wider channel); widen it with `personal-ai-agent update configure --channel {wanted}`"
                        ),
                        Some("update_channel"),
                    );
                }
            }
            ok(service
                .configure(b.into())
                .map(|c| serde_json::to_value(c).unwrap_or_default()))
        }
        "/api/backend/status" => json_response(200, &service.backend_status()),
        "/api/backend/start" => {
            body!(dto::Empty);
            accepted(service.backend_start())
        }
        "/api/backend/stop" => {
            body!(dto::Empty);
            accepted(service.backend_stop())
        }
        "/api/backend/restart" => {
            body!(dto::Empty);
            accepted(service.backend_restart())
        }
        "/api/models" => ok(service.models_status()),
        "/api/models/download" => {
            let b = body!(dto::ModelsDownloadBody);
            accepted(service.models_download(b.all))
        }
        "/api/jobs/cancel" => {
            let b = body!(dto::CancelBody);
            let cancelled = match b.job {
                Some(id) => service.cancel_job(id),
                None => service.cancel(),
            };
            json_response(200, &json!({ "cancelled": cancelled }))
        }
        _ => error_response(404, &format!("no such endpoint: {path}"), None),
    }
}

/// `GET /api/events`: Server-Sent Events, one per service event (`id`, `event` = its type, `data` = its
/// JSON), until the client goes away, falls too far behind (the service drops its subscription: the
/// stream ends and the client polls or reconnects), or the server stops. Written straight to the
/// connection (`Connection: close`, no length) and flushed per event.
fn events(mut out: server::EventStream, cors: &str, shared: &Shared) {
    let events = shared.service.subscribe();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n{cors}\r\n: connected\n\n"
    );
    if out.write_all(head.as_bytes()).and_then(|()| out.flush()).is_err() {
        return;
    }
    let mut last_write = std::time::Instant::now();
    while !shared.stopping.load(Ordering::SeqCst) {
        let text = match events.recv_timeout(Duration::from_millis(250)) {
            Ok(event) => {
                let data = serde_json::to_string(&event).unwrap_or_default();
                format!("id: {}\nevent: {}\ndata: {data}\n\n", event.id, event.kind.name())
            }
            // A comment now and then, so a client that went away is noticed by the failed write.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if last_write.elapsed() >= KEEP_ALIVE => {
                ": keep-alive\n\n".to_owned()
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
            break;
        }
        last_write = std::time::Instant::now();
    }
}
