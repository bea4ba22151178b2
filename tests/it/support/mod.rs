//! Test support: a tiny HTTP/1.1 server on `127.0.0.1:0` whose answers each test scripts, and helpers for
//! private home folders. No test touches the internet.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path with query, as sent (`/repos/o/r/releases?per_page=100`).
    pub path: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

/// What the server answers.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after sending this many body bytes (a dropped connection).
    pub drop_after: Option<usize>,
    /// Sleep before answering (a slow or dead server).
    pub delay: Option<Duration>,
    /// Send no `Content-Length`: the body ends when the connection closes (HTTP/1.1 allows this), so
    /// only the client's own bound stops it.
    pub until_close: bool,
    /// Send the body this many bytes at a time, pausing between them (a slow line).
    pub trickle: Option<(usize, Duration)>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            drop_after: None,
            delay: None,
            until_close: false,
            trickle: None,
        }
    }
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Response::new(status)
            .header("content-type", "application/json; charset=utf-8")
            .body(body.into().into_bytes())
    }
    pub fn bytes(body: impl Into<Vec<u8>>) -> Self {
        Response::new(200)
            .header("content-type", "application/octet-stream")
            .body(body.into())
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
    pub fn drop_after(mut self, n: usize) -> Self {
        self.drop_after = Some(n);
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
    /// Sends the body `chunk` bytes at a time with `pause` between them.
    pub fn trickle(mut self, chunk: usize, pause: Duration) -> Self {
        self.trickle = Some((chunk.max(1), pause));
        self
    }
    /// Sends the body without a `Content-Length` and closes the connection after it.
    pub fn until_close(mut self) -> Self {
        self.until_close = true;
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync + 'static;

/// A scripted HTTP server; every request is recorded in order.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    /// Starts a server answering every request with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let requests = requests.clone();
            let stop = stop.clone();
            thread::Builder::new()
                .name("test-http-server".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let handler = handler.clone();
                        let requests = requests.clone();
                        thread::spawn(move || serve_connection(stream, &*handler, &requests));
                    }
                })
                .unwrap();
        }
        TestServer { addr, requests, stop }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_connection(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<Request>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request {
            method,
            path,
            headers,
            body,
        };
        requests.lock().unwrap().push(request.clone());
        let response = handler(&request);
        if let Some(d) = response.delay {
            thread::sleep(d);
        }
        let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
        let has_len = response
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        for (k, v) in &response.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if response.until_close {
            head.push_str("connection: close\r\n");
        } else if !has_len {
            head.push_str(&format!("content-length: {}\r\n", response.body.len()));
        }
        head.push_str("\r\n");
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        if request.method == "HEAD" {
            continue;
        }
        if response.until_close {
            let _ = stream.write_all(&response.body);
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if let Some((chunk, pause)) = response.trickle {
            for part in response.body.chunks(chunk) {
                if stream.write_all(part).and_then(|()| stream.flush()).is_err() {
                    return;
                }
                thread::sleep(pause);
            }
            continue;
        }
        match response.drop_after {
            Some(n) => {
                let n = n.min(response.body.len());
                let _ = stream.write_all(&response.body[..n]);
                let _ = stream.flush();
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
            None => {
                if stream.write_all(&response.body).is_err() {
                    return;
                }
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        304 => "Not Modified",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Answers a request for `data` the way a real file server does: `Range: bytes=N-` gives 206 with
/// `Content-Range`, honouring `If-Range` against `etag`; otherwise 200 with the whole body.
pub fn serve_bytes(req: &Request, data: &[u8], etag: &str) -> Response {
    let range_ok = match req.header("if-range") {
        Some(v) => v == etag,
        None => true,
    };
    if let (Some(range), true) = (req.header("range"), range_ok)
        && let Some(start) = range.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-'))
        && let Ok(start) = start.parse::<usize>()
    {
        if start >= data.len() {
            return Response::new(416).header("content-range", format!("bytes */{}", data.len()));
        }
        return Response::new(206)
            .header("content-type", "application/octet-stream")
            .header("etag", etag)
            .header("accept-ranges", "bytes")
            .header(
                "content-range",
                format!("bytes {}-{}/{}", start, data.len() - 1, data.len()),
            )
            .body(data[start..].to_vec());
    }
    Response::bytes(data.to_vec())
        .header("etag", etag)
        .header("accept-ranges", "bytes")
}

/// A private home folder for one test.
pub fn temp_home() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("pai-test-").tempdir().unwrap()
}

/// Fixtures kept in the repository (`tests/fixtures`; `github/` holds GitHub's documented examples).
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The launcher binary under test.
pub const LAUNCHER: &str = env!("CARGO_BIN_EXE_personal-ai-agent");

/// The example backend's executable. `cargo test` builds examples; a narrower run (`--test it`) may not
/// have, so it is built once here if missing.
pub fn example_backend() -> &'static std::path::Path {
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = Path::new(LAUNCHER).parent().unwrap().join("examples");
        let path = dir.join(format!("agent_backend{}", std::env::consts::EXE_SUFFIX));
        if !path.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "--example", "agent_backend"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo to build the example backend");
            assert!(status.success(), "cargo build --example agent_backend failed");
        }
        assert!(path.exists(), "the example backend is not at {}", path.display());
        path
    })
}

/// Lays out a release bundle in `dir`: `backend/agent-backend` (the example backend) and an `agent.json`
/// that passes `args` to it.
pub fn make_bundle(dir: &std::path::Path, args: &[&str]) {
    std::fs::create_dir_all(dir.join("backend")).unwrap();
    let program = dir
        .join("backend")
        .join(format!("agent-backend{}", std::env::consts::EXE_SUFFIX));
    std::fs::copy(example_backend(), &program).unwrap();
    let mut command = vec![
        "backend/agent-backend".to_owned(),
        "--port".into(),
        "{port}".into(),
    ];
    command.extend(args.iter().map(|a| a.to_string()));
    let agent = serde_json::json!({
        "command": command,
        "health_url": "http://127.0.0.1:{port}/health",
        "ready_timeout_secs": 5,
        "env": {}
    });
    std::fs::write(dir.join("agent.json"), serde_json::to_vec_pretty(&agent).unwrap()).unwrap();
}

/// Packs the example backend (`backend_args` make it misbehave) as release `version` for this machine into
/// `out_dir` with `release pack`'s engine, signing with `key` when given. The bundle is laid out under `work`.
pub fn pack_example_release(
    work: &std::path::Path,
    out_dir: &std::path::Path,
    version: &str,
    backend_args: &[&str],
    key: Option<&std::path::Path>,
) {
    let bundle = work.join(format!("bundle-{version}"));
    make_bundle(&bundle, backend_args);
    pack_bundle(
        &bundle,
        out_dir,
        version,
        personal_ai_agent::version::Channel::Stable,
        key,
    );
}

/// Packs the bundle folder `bundle` as release `version` of `channel` for this machine into `out_dir`,
/// signing with `key` when given.
pub fn pack_bundle(
    bundle: &std::path::Path,
    out_dir: &std::path::Path,
    version: &str,
    channel: personal_ai_agent::version::Channel,
    key: Option<&std::path::Path>,
) {
    personal_ai_agent::pack::pack(&personal_ai_agent::pack::PackOptions {
        version: version.parse().unwrap(),
        platform: personal_ai_agent::platform::Platform::current(),
        bundle_dir: bundle.to_path_buf(),
        out_dir: out_dir.to_path_buf(),
        channel,
        minisign_key: key.map(std::path::Path::to_path_buf),
        minisign_password: None,
        published_at: chrono::Utc::now(),
        notes: None,
        also_tar_gz: false,
        delta_from: Vec::new(),
    })
    .unwrap();
}

/// Publishes the example backend (`backend_args` make it misbehave) as `version` in the folder feed
/// `feed`: `feed/<version>/` with release notes "What changed in <version>", then a new `feed.json`. The
/// bundle is laid out under `work`.
pub fn publish_to_feed(work: &std::path::Path, feed: &std::path::Path, version: &str, backend_args: &[&str]) {
    pack_example_release(
        &work.join(format!("w-{version}")),
        &feed.join(version),
        version,
        backend_args,
        None,
    );
    std::fs::write(
        feed.join(version).join("NOTES.md"),
        format!("What changed in {version}"),
    )
    .unwrap();
    personal_ai_agent::sources::feed::write_feed(feed).unwrap();
}

/// The launcher binary with `--home home` and none of the user's ambient settings (tokens, repository,
/// `AUTO_UPDATE`, intervals, portable mode, log filter), so a test sees only what it sets.
pub fn launcher_in(home: &std::path::Path) -> std::process::Command {
    launcher_at(std::path::Path::new(LAUNCHER), home)
}

/// [`launcher_in`] with the launcher executable at `exe` (a copy, for the self-update tests).
pub fn launcher_at(exe: &std::path::Path, home: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--home").arg(home);
    for var in [
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_REPO",
        "AUTO_UPDATE",
        "UPDATE_CHECK_INTERVAL",
        "PORTABLE_MODE",
        "PAI_HOME",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}
