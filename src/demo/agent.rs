//! The **example** agent backend, standing in for the real one (which is built elsewhere): the
//! `agent_backend` example and the launcher's hidden `demo-agent` subcommand (what the offline demo's
//! bundles run) are both this module's [`main`].
//!
//! It exists so the launcher's supervision, health-gated updates and rollback can be tested and demonstrated
//! with a real child process. It is a tiny HTTP/1.1 server on std alone:
//!
//! - `GET /health` answers `200 {"status":"ok","version":"..."}` (open to anyone: it says only that);
//! - `POST /api/chat` with `{"message":"hi"}` answers `{"reply":"echo: hi"}` (the body is echoed as is when it
//!   is not such JSON);
//! - `GET /` is the agent's web page (plain HTML): the installed version and whether an update is
//!   available, with "Check for updates" and "Update now" buttons; `POST /check` and `POST /update` (the
//!   buttons) ask the launcher for a check or the install and redirect back to `/`.
//!
//! The page is the seed's web flow in miniature: the launcher starts the backend with `PAI_LAUNCHER_API`
//! (its local API's base URL), `PAI_LAUNCHER_TOKEN` and `PAI_AGENT_PAGE_KEY` in the environment, and this
//! server calls the API itself (`GET /api/updates/status`, `POST /api/updates/check`,
//! `POST /api/updates/install`, with `Authorization: Bearer`), so the browser never sees the token. Those
//! calls are hand-written HTTP/1.1 over a `TcpStream` to 127.0.0.1 only because this is a dependency-free
//! test stand-in; the real agent uses its HTTP client.
//!
//! It is the integration others copy, so it guards what it does for the user (issue 18):
//! - **The token goes only to the launcher that started it.** Another program may hold the API's port
//!   (the launcher ended, its port was taken). Before every call the backend asks
//!   `GET /api/owner/proof?nonce=<fresh random hex>` and sends `Authorization: Bearer` only if the answer
//!   is `HMAC-SHA256(token, "pai-owner-proof:" + nonce)`, compared in constant time. No proof: no token,
//!   a log line, and the page says the launcher could not be asked.
//! - **The page is this user's alone.** Any local user can connect to 127.0.0.1. The launcher opens the
//!   page as `/?key=<PAI_AGENT_PAGE_KEY>` (a key new at every launcher start, in this process's
//!   environment, which other users cannot read); the key buys a session cookie (`HttpOnly;
//!   SameSite=Strict; Path=/`) and a redirect to `/`. Without the session, `/`, the buttons and
//!   `/api/chat` answer 401 "open the agent from the launcher (Open agent)".
//! - **Only its own names, only its own pages.** Every route but `/health` wants `Host`
//!   `127.0.0.1:<port>` or `localhost:<port>` (a DNS-rebinding name is refused); every non-GET with an
//!   `Origin` wants this page's own; the buttons carry a form token bound to the session.
//! - **A GET changes nothing**: a check is asked for only by the page's own "Check for updates" post.
//!
//! Settings (flag, or the environment variable in brackets):
//! `--port N` (`AGENT_PORT`, required), `--models-dir DIR` (`AGENT_MODELS_DIR`), `--agent-version V`
//! (`AGENT_VERSION`, default the crate version).
//!
//! Ways to misbehave, to exercise the launcher:
//! `--fail-health` (`AGENT_FAIL_HEALTH=1`): `/health` answers 503 forever;
//! `--fail-health-after SECS` (`AGENT_FAIL_HEALTH_AFTER_SECS`): healthy at first, then 503 forever;
//! `--crash-after SECS` (`AGENT_CRASH_AFTER_SECS`, fractions allowed): exit with code 3 after that long;
//! `--never-listen` (`AGENT_NEVER_LISTEN=1`): never open the port;
//! `--startup-delay-ms N` (`AGENT_STARTUP_DELAY_MS`): wait before opening the port, like a slow model load.
//!
//! And one way to watch the launcher: `--report-api-on-exit FILE` (`AGENT_REPORT_API_ON_EXIT`): on the
//! termination signal, ask the launcher's API for its owner proof and write `proved` (or `not proved:
//! <why>`) to FILE before exiting, which tells whether the launcher still served its API when it stopped
//! this backend.
//!
//! It prints `agent backend <version> ready on http://127.0.0.1:<port>` once it listens, and on SIGTERM or
//! Ctrl-C (Ctrl-Break on Windows) prints `agent backend got a termination signal; exiting cleanly` and exits
//! with code 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

// Output goes to pipes the launcher reads; when the launcher is gone (that is when SIGTERM comes from
// `PR_SET_PDEATHSIG`) a write fails with EPIPE, and `println!` would panic instead of letting us exit.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! complain {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

struct Settings {
    port: u16,
    models_dir: Option<String>,
    version: String,
    fail_health: bool,
    fail_health_after: Option<Duration>,
    started: std::time::Instant,
    crash_after: Option<Duration>,
    never_listen: bool,
    startup_delay: Duration,
    report_api_on_exit: Option<String>,
    /// `PAI_AGENT_PAGE_KEY`: what the launcher's "Open agent" link carries; none, no one gets a session.
    page_key: Option<String>,
}

/// Runs the example backend with `args` (the flags below, without the program name); never returns.
pub fn main(args: impl Iterator<Item = String>) -> ! {
    let settings = match settings(args) {
        Ok(s) => s,
        Err(message) => {
            complain!("agent backend: {message}");
            std::process::exit(2);
        }
    };
    let report = settings.report_api_on_exit.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        if let Some(file) = &report {
            let outcome = launcher_authority()
                .and_then(|(authority, token)| launcher_proves_itself(&authority, &token))
                .map_or_else(|e| format!("not proved: {e}"), |()| "proved".to_owned());
            let _ = std::fs::write(file, outcome);
        }
        say!("agent backend got a termination signal; exiting cleanly");
        std::process::exit(0);
    }) {
        complain!("agent backend: cannot handle termination signals: {e}");
    }
    if let Some(after) = settings.crash_after {
        let spawned = std::thread::Builder::new()
            .name("crash-timer".into())
            .spawn(move || {
                std::thread::sleep(after);
                complain!(
                    "agent backend: crashing on purpose after {} ms (--crash-after)",
                    after.as_millis()
                );
                std::process::exit(3);
            });
        if let Err(e) = spawned {
            complain!("agent backend: cannot start the crash timer: {e}");
        }
    }
    complain!(
        "agent backend {} starting (pid {}, models in {})",
        settings.version,
        std::process::id(),
        settings.models_dir.as_deref().unwrap_or("(not set)")
    );
    std::thread::sleep(settings.startup_delay);
    if settings.never_listen {
        complain!("agent backend: not listening on purpose (--never-listen)");
        loop {
            std::thread::park();
        }
    }
    let listener = match TcpListener::bind(("127.0.0.1", settings.port)) {
        Ok(l) => l,
        Err(e) => {
            complain!("agent backend: cannot listen on 127.0.0.1:{}: {e}", settings.port);
            std::process::exit(1);
        }
    };
    say!(
        "agent backend {} ready on http://127.0.0.1:{}",
        settings.version,
        settings.port
    );
    let settings = std::sync::Arc::new(settings);
    // Any local user can connect: connections (a thread each) are capped, and an accept error (out of
    // descriptors, say) is waited out rather than spun on or allowed to end the server.
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if open.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
            continue;
        }
        let settings = settings.clone();
        let served = open.clone();
        let spawned = std::thread::Builder::new()
            .name("connection".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &settings) {
                    complain!("agent backend: connection error: {e}");
                }
                served.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        if spawned.is_err() {
            open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    complain!("agent backend: the listening socket closed");
    std::process::exit(1);
}

fn settings(args: impl Iterator<Item = String>) -> Result<Settings, String> {
    let mut args = args;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let truthy = |name: &str| env(name).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let mut port = env("AGENT_PORT");
    let mut models_dir = env("AGENT_MODELS_DIR");
    let mut version = env("AGENT_VERSION");
    let mut fail_health = truthy("AGENT_FAIL_HEALTH");
    let mut crash_after = env("AGENT_CRASH_AFTER_SECS");
    let mut fail_health_after = env("AGENT_FAIL_HEALTH_AFTER_SECS");
    let mut never_listen = truthy("AGENT_NEVER_LISTEN");
    let mut startup_delay = env("AGENT_STARTUP_DELAY_MS");
    let mut report_api_on_exit = env("AGENT_REPORT_API_ON_EXIT");
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => port = Some(value("--port")?),
            "--models-dir" => models_dir = Some(value("--models-dir")?),
            "--agent-version" => version = Some(value("--agent-version")?),
            "--fail-health" => fail_health = true,
            "--crash-after" => crash_after = Some(value("--crash-after")?),
            "--fail-health-after" => fail_health_after = Some(value("--fail-health-after")?),
            "--never-listen" => never_listen = true,
            "--startup-delay-ms" => startup_delay = Some(value("--startup-delay-ms")?),
            "--report-api-on-exit" => report_api_on_exit = Some(value("--report-api-on-exit")?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let port = port
        .ok_or("no port: pass --port N or set AGENT_PORT")?
        .parse::<u16>()
        .map_err(|e| format!("bad port: {e}"))?;
    let crash_after = crash_after
        .map(|secs| seconds("--crash-after", &secs))
        .transpose()?;
    let fail_health_after = fail_health_after
        .map(|secs| seconds("--fail-health-after", &secs))
        .transpose()?;
    let startup_delay = match startup_delay {
        Some(ms) => Duration::from_millis(ms.parse().map_err(|e| format!("bad --startup-delay-ms: {e}"))?),
        None => Duration::ZERO,
    };
    Ok(Settings {
        port,
        models_dir,
        version: version.unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        fail_health,
        fail_health_after,
        started: std::time::Instant::now(),
        crash_after,
        never_listen,
        startup_delay,
        report_api_on_exit,
        page_key: env("PAI_AGENT_PAGE_KEY"),
    })
}

fn seconds(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or(format!("bad {flag} `{text}`: give seconds, such as 2 or 0.5"))
}

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// The most a request (head and body) may be.
const MAX_REQUEST_BYTES: u64 = 16 * 1024 + (1 << 20);

fn serve(stream: TcpStream, settings: &Settings) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // A request is read within a bound in bytes (head and body), so no client grows this process.
    let mut reader = BufReader::new(stream.try_clone()?.take(MAX_REQUEST_BYTES));
    let mut writer = stream;
    // One request per connection keeps the example small; every answer says `Connection: close`.
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut content_length = 0usize;
    let (mut host, mut origin, mut cookie) = (None, None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("host") {
                host = Some(value.trim().to_owned());
            } else if name.eq_ignore_ascii_case("origin") {
                origin = Some(value.trim().to_owned());
            } else if name.eq_ignore_ascii_case("cookie") {
                cookie = Some(value.trim().to_owned());
            }
        }
    }
    let mut body = vec![0; content_length.min(1 << 20)];
    reader.read_exact(&mut body)?;

    let (route, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
    if method == "GET" && route == "/health" {
        // Open to anyone, whatever the name it is asked under: it says only whether the backend is up.
        let failing = settings.fail_health
            || settings
                .fail_health_after
                .is_some_and(|after| settings.started.elapsed() >= after);
        let (status, json) = if failing {
            (
                503,
                serde_json::json!({"status": "failing", "version": settings.version, "reason": "--fail-health"}),
            )
        } else {
            (
                200,
                serde_json::json!({"status": "ok", "version": settings.version}),
            )
        };
        return respond(&mut writer, status, "application/json", &json.to_string(), &[]);
    }
    // This server acts on the user's behalf with the launcher's token, so it guards itself as the
    // launcher's API does: only its own host names (a rebound DNS name is refused) and, for anything that
    // acts, no other site's pages.
    let own = [
        format!("127.0.0.1:{}", settings.port),
        format!("localhost:{}", settings.port),
    ];
    if !host.as_ref().is_some_and(|h| own.contains(h)) {
        return respond(&mut writer, 403, "text/plain", "wrong Host", &[]);
    }
    if method != "GET"
        && origin
            .as_ref()
            .is_some_and(|o| !own.iter().any(|h| *o == format!("http://{h}")))
    {
        return respond(&mut writer, 403, "text/plain", "cross-site request refused", &[]);
    }
    // The launcher's "Open agent" link: the key buys a session, and the address bar drops the key.
    if method == "GET" && route == "/" && !query.is_empty() {
        let key = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("key="))
            .unwrap_or_default();
        let Some(session) = settings
            .page_key
            .as_deref()
            .filter(|own| same_secret(own, key))
            .and_then(|_| new_session())
        else {
            complain!("agent backend: refused a page key that is not this launcher start's");
            return respond(&mut writer, 403, "text/html; charset=utf-8", &locked_page(), &[]);
        };
        let set_cookie = format!(
            "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            session.id
        );
        return respond(
            &mut writer,
            303,
            "text/plain",
            "See /",
            &[("Location", "/"), ("Set-Cookie", &set_cookie)],
        );
    }
    let session = cookie.as_deref().and_then(session_of);
    let Some(session) = session else {
        let known = matches!(
            (method.as_str(), route),
            ("GET", "/") | ("POST", "/check" | "/update" | "/api/chat")
        );
        if !known {
            return respond(
                &mut writer,
                404,
                "application/json",
                &serde_json::json!({"error": format!("no route for {method} {route}")}).to_string(),
                &[],
            );
        }
        return respond(&mut writer, 401, "text/html; charset=utf-8", &locked_page(), &[]);
    };
    match (method.as_str(), route) {
        ("GET", "/") => {
            let html = page(settings, &session);
            respond(&mut writer, 200, "text/html; charset=utf-8", &html, &[])
        }
        ("POST", "/check" | "/update") => {
            let form = String::from_utf8_lossy(&body);
            let sent = form
                .split('&')
                .find_map(|pair| pair.strip_prefix("csrf="))
                .unwrap_or_default();
            if !same_secret(&session.csrf, sent) {
                return respond(&mut writer, 403, "text/plain", "missing or wrong form token", &[]);
            }
            if route == "/check" {
                // Waited for a few seconds, so the page it redirects to shows the answer.
                fresh_check();
            } else if let Err(e) = launcher_api("POST", "/api/updates/install", Some("{}")) {
                // The install stops this very backend once the new one is unpacked; the answer goes out
                // first (the API answers 202 at once).
                complain!("agent backend: asking the launcher to update: {e}");
            }
            respond(&mut writer, 303, "text/plain", "See /", &[("Location", "/")])
        }
        ("POST", "/api/chat") => {
            let text = String::from_utf8_lossy(&body).into_owned();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or(text);
            let json = serde_json::json!({"reply": format!("echo: {message}")});
            respond(&mut writer, 200, "application/json", &json.to_string(), &[])
        }
        _ => {
            let json = serde_json::json!({"error": format!("no route for {method} {route}")});
            respond(&mut writer, 404, "application/json", &json.to_string(), &[])
        }
    }
}

fn respond(
    writer: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        303 => "See Other",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    // `no-referrer`: the page's address never travels on to another site; `no-store`: nor into a cache.
    write!(
        writer,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{headers}Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    writer.flush()
}

/// The name of the session cookie.
const SESSION_COOKIE: &str = "pai_agent_session";
/// Sessions kept at once; the oldest is forgotten first.
const MAX_SESSIONS: usize = 32;

/// A browser that opened the launcher's link: its cookie, and the token its forms carry.
#[derive(Clone)]
struct Session {
    id: String,
    csrf: String,
}

fn sessions() -> std::sync::MutexGuard<'static, Vec<Session>> {
    static SESSIONS: std::sync::Mutex<Vec<Session>> = std::sync::Mutex::new(Vec::new());
    SESSIONS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A new session (none if the OS's random number generator fails).
fn new_session() -> Option<Session> {
    let session = Session {
        id: random_hex(32)?,
        csrf: random_hex(32)?,
    };
    let mut all = sessions();
    if all.len() >= MAX_SESSIONS {
        all.remove(0);
    }
    all.push(session.clone());
    Some(session)
}

/// The session the `Cookie` header names, if it is one of ours.
fn session_of(cookie: &str) -> Option<Session> {
    let id = cookie
        .split(';')
        .find_map(|pair| pair.trim().strip_prefix(&format!("{SESSION_COOKIE}=")))?;
    sessions().iter().find(|s| same_secret(&s.id, id)).cloned()
}

/// `bytes` random bytes from the OS, as hex.
fn random_hex(bytes: usize) -> Option<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).ok()?;
    Some(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether two secrets are equal, in time that depends only on their lengths.
fn same_secret(own: &str, presented: &str) -> bool {
    crate::api::token::matches(own, presented)
}

/// What `/`, the buttons and `/api/chat` answer without a session.
fn locked_page() -> String {
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Personal AI Agent</title></head>\n<body><h1>Personal AI Agent</h1>\n<p>This page is for the user who runs the agent: open the agent from the launcher (Open agent), or with the address `personal-ai-agent backend status` prints.</p>\n</body></html>\n".to_owned()
}

/// The web page for `session`: what the launcher says about updates, from this server's own calls to
/// its API. Viewing it changes nothing: the last check the launcher made is shown, and "Check for
/// updates" asks for a new one.
fn page(settings: &Settings, session: &Session) -> String {
    let mut rows = Vec::new();
    let status = launcher_api("GET", "/api/updates/status", None);
    let button = |action: &str, label: &str| {
        format!(
            r#"<form method="post" action="/{action}"><input type="hidden" name="csrf" value="{}"><button type="submit">{label}</button></form>"#,
            session.csrf
        )
    };
    match &status {
        Ok(status) => {
            let installed = status["update"]["current_version"].as_str().unwrap_or("none");
            rows.push(format!("<p>Installed version: {}</p>", escape(installed)));
            match &status["last_check"] {
                report if report["update_available"] == true => {
                    let version = report["latest"]["version"].as_str().unwrap_or("?");
                    rows.push(format!("<p>Update available: {}</p>", escape(version)));
                    rows.push(button("update", "Update now"));
                }
                serde_json::Value::Null => rows.push("<p>Not checked for updates yet.</p>".into()),
                _ => rows.push("<p>Up to date.</p>".into()),
            }
            rows.push(button("check", "Check for updates"));
        }
        Err(e) => rows.push(format!("<p>The launcher cannot be asked: {}</p>", escape(e))),
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Personal AI Agent</title></head>\n<body><h1>Personal AI Agent</h1>\n<p>Backend {} (pid {})</p>\n{}\n</body></html>\n",
        escape(&settings.version),
        std::process::id(),
        rows.join("\n")
    )
}

/// Asks the launcher to check, at most every five seconds (a page must not flood its one job slot), and
/// waits up to five seconds for the report (the launcher remembers it: the page shows it).
fn fresh_check() -> Option<serde_json::Value> {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
            return None;
        }
        *last = Some(std::time::Instant::now());
    }
    let started = launcher_api("POST", "/api/updates/check", Some("{}")).ok()?;
    let job = started["job"].as_u64()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let state = launcher_api("GET", &format!("/api/jobs/{job}"), None).ok()?;
        match state["state"].as_str() {
            Some("succeeded") => return Some(state["result"].clone()),
            Some("failed") => return None,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    None
}

/// One call to the launcher's API with the token from the environment; the answer's JSON body (any
/// status: the API's errors are JSON too). The token is sent only after the server proved it is the
/// launcher that started this backend ([`launcher_proves_itself`]).
fn launcher_api(method: &str, path: &str, body: Option<&str>) -> Result<serde_json::Value, String> {
    let (authority, token) = launcher_authority()?;
    let base = format!("http://{authority}");
    if let Err(e) = launcher_proves_itself(&authority, &token) {
        complain!("agent backend: not sending the launcher's token to {base}: {e}");
        return Err(format!(
            "the program at {base} did not prove it is the launcher that started this backend ({e}), so it was not asked; restart the agent from the launcher"
        ));
    }
    http_call(&authority, method, path, Some(&token), body)
}

/// The launcher API's `host:port` (loopback only) and the token, from the environment.
fn launcher_authority() -> Result<(String, String), String> {
    let base = std::env::var("PAI_LAUNCHER_API").map_err(|_| "PAI_LAUNCHER_API is not set".to_owned())?;
    let token =
        std::env::var("PAI_LAUNCHER_TOKEN").map_err(|_| "PAI_LAUNCHER_TOKEN is not set".to_owned())?;
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("PAI_LAUNCHER_API `{base}` is not an http:// URL"))?
        .trim_end_matches('/')
        .to_owned();
    if !authority.starts_with("127.0.0.1:") && !authority.starts_with("localhost:") {
        return Err(format!("PAI_LAUNCHER_API `{base}` is not on loopback"));
    }
    Ok((authority, token))
}

/// Asks `GET /api/owner/proof` with a fresh random nonce and checks the answer is
/// `HMAC-SHA256(token, "pai-owner-proof:" + nonce)`, in constant time, before every call that carries the
/// token. The proof and the call are two connections: what keeps the port from changing hands between them
/// is that the owner closes its API only after this backend stopped (and a token works only for the owner
/// start that made it).
fn launcher_proves_itself(authority: &str, token: &str) -> Result<(), String> {
    let nonce = random_hex(32).ok_or("the operating system's random number generator failed")?;
    let answer = http_call(
        authority,
        "GET",
        &format!("/api/owner/proof?nonce={nonce}"),
        None,
        None,
    )?;
    let proof = answer["proof"].as_str().unwrap_or_default();
    let expected = crate::api::token::owner_proof(token, &nonce);
    if same_secret(&expected, proof) {
        Ok(())
    } else {
        Err("its answer to the owner proof is wrong or missing".into())
    }
}

/// Plain HTTP/1.1 to loopback, one request per connection; the answer's JSON body.
fn http_call(
    authority: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<serde_json::Value, String> {
    let mut stream = TcpStream::connect(authority).map_err(|e| format!("connecting to {authority}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("calling {path}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("reading the answer to {path}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, rest) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("a malformed answer to {path}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    let text = if chunked { dechunk(rest) } else { rest.to_owned() };
    serde_json::from_str(&text).map_err(|e| format!("the answer to {path} is not JSON: {e}"))
}

/// A chunked body, joined.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
