//! The local API against clients that do not play fair, through the real runner (`run --headless`):
//! any local user can connect to 127.0.0.1 without the token. Idle connections beyond every cap, and
//! beyond the owner's open-files limit, neither stop the API nor lock out the owner's own clients; a
//! request head that never finishes is dropped at its deadline; and `api status` says "listens" only
//! of an API that answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{launcher_in, temp_home};

/// A `run --headless` owning a bare home, killed when dropped.
struct Runner {
    child: Child,
    port: u16,
    token: String,
    /// Its stderr (its log), in a folder of its own.
    stderr: tempfile::NamedTempFile,
}

impl Runner {
    fn start(home: &Path, mut cmd: Command) -> Runner {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let child = cmd
            .args(["run", "--headless", "--api-port", "0"])
            .stdout(Stdio::null())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let info: Value = loop {
            if let Ok(text) = std::fs::read_to_string(home.join("run/api.json"))
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
        let token = std::fs::read_to_string(info["token_file"].as_str().unwrap()).unwrap();
        Runner {
            child,
            port: info["port"].as_u64().unwrap() as u16,
            token: token.trim().to_owned(),
            stderr,
        }
    }

    /// An authorised `GET /api/backend/status`: its status, or why there was none.
    fn ask(&self, timeout: Duration) -> Result<u16, String> {
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .unwrap();
        http.get(format!("http://127.0.0.1:{}/api/backend/status", self.port))
            .bearer_auth(&self.token)
            .send()
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e:?}"))
    }

    /// Asks until the API answers 200, for at most `patience`; how long that took.
    fn answers_within(&self, patience: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < patience {
            match self.ask(Duration::from_secs(5)) {
                Ok(200) => return Ok(started.elapsed()),
                Ok(status) => last = format!("status {status}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Idle connections, as another local user without the token would open them.
fn open_idle(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn idle_connections_beyond_the_open_files_limit_neither_stop_the_api_nor_lock_out_the_owners_clients() {
    use std::os::unix::process::CommandExt;
    // A low hard limit, so the runner cannot raise it: fewer descriptors than the API's connection cap,
    // so accepting itself fails ("Too many open files") while the connections are held.
    const LIMIT: libc::rlim_t = 48;
    let home = temp_home();
    let mut cmd = launcher_in(home.path());
    // SAFETY: setrlimit is async-signal-safe and the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let runner = Runner::start(home.path(), cmd);
    runner
        .answers_within(Duration::from_secs(10))
        .expect("the API answers before the flood");

    let idle = open_idle(runner.port, 200);
    assert!(
        idle.len() > 60,
        "only {} connections could be opened: the API stopped accepting them",
        idle.len()
    );
    // While they are all held: the owner's own client is served (the oldest idle ones make room).
    let took = runner
        .answers_within(Duration::from_secs(30))
        .unwrap_or_else(|e| {
            panic!(
                "the API stopped answering under {} idle connections: {e}",
                idle.len()
            )
        });
    println!(
        "answered after {took:?} with {} idle connections held",
        idle.len()
    );

    drop(idle);
    // And once they are gone, it serves as before: the accept loop never ended.
    for _ in 0..3 {
        runner
            .answers_within(Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("the API does not serve after the idle connections closed: {e}"));
    }
    let log = std::fs::read_to_string(runner.stderr.path()).unwrap();
    assert!(
        log.contains("cannot accept a connection"),
        "the runner ran out of descriptors (and went on): its log says so\n{log}"
    );
}

#[test]
fn a_request_head_that_never_finishes_is_dropped_at_its_deadline() {
    let home = temp_home();
    let runner = Runner::start(home.path(), launcher_in(home.path()));
    let mut slow = TcpStream::connect(("127.0.0.1", runner.port)).unwrap();
    slow.write_all(b"GET /api/backend/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let started = Instant::now();
    // The head deadline is 10 s (`api::server::Limits`); far less than the 30 s waited here.
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 64];
    let closed = matches!(slow.read(&mut buf), Ok(0) | Err(_));
    let waited = started.elapsed();
    assert!(
        closed && waited < Duration::from_secs(25),
        "a head still unfinished after {waited:?} must have been dropped"
    );
    runner
        .answers_within(Duration::from_secs(10))
        .expect("the API still serves");
}

/// Takes the owner lock of `home` in this process and publishes `port` as its API, as an owner whose API
/// went away would have left it.
fn fake_owner(home: &Path, port: u16) -> std::fs::File {
    std::fs::create_dir_all(home.join("run")).unwrap();
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(home.join("run/owner.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let info = serde_json::json!({
        "port": port,
        "pid": std::process::id(),
        "version": "0.1.0",
        "url": format!("http://127.0.0.1:{port}"),
        "token_file": home.join("api-token"),
    });
    std::fs::write(home.join("run/api.json"), info.to_string()).unwrap();
    std::fs::write(home.join("api-token"), "a".repeat(64)).unwrap();
    lock
}

#[test]
fn api_status_fails_naming_the_owner_when_its_api_does_not_answer() {
    let home = temp_home();
    // Nothing listens on the port the owner published.
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _lock = fake_owner(home.path(), free_port);
    let out = launcher_in(home.path()).args(["api", "status"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("listens"), "{stdout}");
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())) && stderr.contains("does not answer"),
        "{stderr}"
    );
    assert!(stderr.contains("stop that launcher"), "the next step: {stderr}");

    // Something accepts connections there but never answers: the same, within the probe's timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let home = temp_home();
    let _lock = fake_owner(home.path(), silent.local_addr().unwrap().port());
    let started = Instant::now();
    let out = launcher_in(home.path()).args(["api", "status"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not answer"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "a short probe");
}
