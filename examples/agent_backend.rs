//! An **example** agent backend, standing in for the real one (which is built elsewhere).
//!
//! It exists so the launcher's supervision, health-gated updates and rollback can be tested and demonstrated
//! with a real child process. It is a tiny HTTP/1.1 server on std alone:
//!
//! - `GET /health` answers `200 {"status":"ok","version":"..."}`;
//! - `POST /api/chat` with `{"message":"hi"}` answers `{"reply":"echo: hi"}` (the body is echoed as is when it
//!   is not such JSON).
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

fn main() {
    let settings = match settings() {
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
}

fn settings() -> Result<Settings, String> {
    let mut args = std::env::args().skip(1);
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
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; content_length.min(1 << 20)];
    reader.read_exact(&mut body)?;

    let (status, json) = match (method.as_str(), path.split('?').next().unwrap_or_default()) {
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
    let body = json.to_string();
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    write!(
        writer,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    writer.flush()
}
