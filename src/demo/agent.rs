//! The **example** agent backend, standing in for the real one (which is built elsewhere): the
//! `agent_backend` example and the launcher's hidden `demo-agent` subcommand (what the offline demo's
//! bundles run) are both this module's [`main`].
//!
//! It exists so the launcher's supervision, health-gated updates and rollback can be tested and demonstrated
//! with a real child process. It is a tiny HTTP/1.1 server on std alone:
//!
//! - `GET /health` answers `200 {"status":"ok","version":"..."}`;
//! - `POST /api/chat` with `{"message":"hi"}` answers `{"reply":"echo: hi"}` (the body is echoed as is when it
//!   is not such JSON);
//! - `GET /` is the agent's web page (plain HTML): the installed version and whether an update is
//!   available, with an "Update now" button; `POST /update` (the button) asks for the install and
//!   redirects back to `/`.
//!
//! The page is the seed's web flow in miniature: the launcher starts the backend with `PAI_LAUNCHER_API`
//! (its local API's base URL) and `PAI_LAUNCHER_TOKEN` in the environment, and this server calls the API
//! itself (`GET /api/updates/status`, `POST /api/updates/check`, `POST /api/updates/install`, with
//! `Authorization: Bearer`), so the browser never sees the token. Those calls are hand-written HTTP/1.1
//! over a `TcpStream` to 127.0.0.1 only because this is a dependency-free test stand-in; the real agent uses
//! its HTTP client.
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
    if let Err(e) = ctrlc::set_handler(|| {
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
    for stream in listener.incoming().flatten() {
        let settings = settings.clone();
        let _ = std::thread::Builder::new()
            .name("connection".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &settings) {
                    complain!("agent backend: connection error: {e}");
                }
            });
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
    })
}

fn seconds(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or(format!("bad {flag} `{text}`: give seconds, such as 2 or 0.5"))
}

fn serve(stream: TcpStream, settings: &Settings) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    // One request per connection keeps the example small; every answer says `Connection: close`.
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut content_length = 0usize;
    let (mut host, mut origin) = (None, None);
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
            }
        }
    }
    let mut body = vec![0; content_length.min(1 << 20)];
    reader.read_exact(&mut body)?;

    let route = path.split('?').next().unwrap_or_default();
    // This page acts on the user's behalf with the launcher's token, so it guards itself as the launcher's
    // API does: only its own host names (a rebound DNS name is refused), no other site's pages, and a
    // per-process form token on the one action (a cross-site form post cannot know it).
    let own = [
        format!("127.0.0.1:{}", settings.port),
        format!("localhost:{}", settings.port),
    ];
    let page_route = route == "/" || route == "/update";
    if page_route && !host.as_ref().is_some_and(|h| own.contains(h)) {
        return respond(&mut writer, 403, "text/plain", "wrong Host", None);
    }
    if page_route
        && origin
            .as_ref()
            .is_some_and(|o| !own.iter().any(|h| *o == format!("http://{h}")))
    {
        return respond(&mut writer, 403, "text/plain", "cross-site request refused", None);
    }
    if method == "GET" && route == "/" {
        let html = page(settings);
        return respond(&mut writer, 200, "text/html; charset=utf-8", &html, None);
    }
    if method == "POST" && route == "/update" {
        let form = String::from_utf8_lossy(&body);
        let sent = form
            .split('&')
            .find_map(|pair| pair.strip_prefix("csrf="))
            .unwrap_or_default();
        if sent != form_token() {
            return respond(
                &mut writer,
                403,
                "text/plain",
                "missing or wrong form token",
                None,
            );
        }
        // The install stops this very backend once the new one is unpacked; the answer goes out first
        // (the API answers 202 at once).
        if let Err(e) = launcher_api("POST", "/api/updates/install", Some("{}")) {
            complain!("agent backend: asking the launcher to update: {e}");
        }
        return respond(&mut writer, 303, "text/plain", "See /", Some("/"));
    }
    let (status, json) = match (method.as_str(), route) {
        ("GET", "/health")
            if settings.fail_health
                || settings
                    .fail_health_after
                    .is_some_and(|after| settings.started.elapsed() >= after) =>
        {
            (
                503,
                serde_json::json!({"status": "failing", "version": settings.version, "reason": "--fail-health"}),
            )
        }
        ("GET", "/health") => (
            200,
            serde_json::json!({"status": "ok", "version": settings.version}),
        ),
        ("POST", "/api/chat") => {
            let text = String::from_utf8_lossy(&body).into_owned();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or(text);
            (200, serde_json::json!({"reply": format!("echo: {message}")}))
        }
        _ => (
            404,
            serde_json::json!({"error": format!("no route for {method} {path}")}),
        ),
    };
    respond(&mut writer, status, "application/json", &json.to_string(), None)
}

fn respond(
    writer: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    location: Option<&str>,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        303 => "See Other",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let location = location.map(|l| format!("Location: {l}\r\n")).unwrap_or_default();
    write!(
        writer,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    writer.flush()
}

/// The web page: what the launcher says about updates, from this server's own calls to its API. A check
/// is asked for on every view (waited for a few seconds); while the launcher is busy the last one shows.
fn page(settings: &Settings) -> String {
    let mut rows = Vec::new();
    let status = launcher_api("GET", "/api/updates/status", None);
    match &status {
        Ok(status) => {
            let installed = status["update"]["current_version"].as_str().unwrap_or("none");
            rows.push(format!("<p>Installed version: {}</p>", escape(installed)));
        }
        Err(e) => rows.push(format!("<p>The launcher cannot be asked: {}</p>", escape(e))),
    }
    let check = fresh_check().or_else(|| status.ok().map(|s| s["last_check"].clone()));
    match check.as_ref().filter(|c| !c.is_null()) {
        Some(report) if report["update_available"] == true => {
            let version = report["latest"]["version"].as_str().unwrap_or("?");
            rows.push(format!("<p>Update available: {}</p>", escape(version)));
            rows.push(format!(
                r#"<form method="post" action="/update"><input type="hidden" name="csrf" value="{}"><button type="submit">Update now</button></form>"#,
                form_token()
            ));
        }
        Some(_) => rows.push("<p>Up to date.</p>".into()),
        None => rows.push("<p>Not checked for updates yet.</p>".into()),
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Personal AI Agent</title></head>\n<body><h1>Personal AI Agent</h1>\n<p>Backend {} (pid {})</p>\n{}\n</body></html>\n",
        escape(&settings.version),
        std::process::id(),
        rows.join("\n")
    )
}

/// This process's form token: 128 bits from the standard library's randomly seeded hasher (an example;
/// a real agent uses its web framework's CSRF protection).
fn form_token() -> &'static str {
    use std::hash::{BuildHasher, Hasher};
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        let part = |salt: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(salt ^ u64::from(std::process::id()));
            h.finish()
        };
        format!("{:016x}{:016x}", part(1), part(2))
    })
}

/// Asks the launcher to check, at most every five seconds (a page view must not flood its one job slot),
/// and waits up to five seconds for the report.
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
/// status: the API's errors are JSON too). Plain HTTP/1.1 to loopback, one request per connection.
fn launcher_api(method: &str, path: &str, body: Option<&str>) -> Result<serde_json::Value, String> {
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
    let mut stream = TcpStream::connect(&authority).map_err(|e| format!("connecting to {base}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
