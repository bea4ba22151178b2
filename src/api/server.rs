//! The local API's transport: a small HTTP/1.1 server of our own on `std::net::TcpListener`, so that no
//! client (any local user can connect to 127.0.0.1, token or not) can stop it or make it grow without
//! bound. The request head is parsed by `httparse`; everything else is here.
//!
//! What it keeps true (ARCHITECTURE.md, docs/API.md):
//! - **The accept loop never ends while the server lives.** An accept error (too many open files, no
//!   buffer space, an aborted connection...) is logged at most every [`LOG_EVERY`] and backed off (10 ms,
//!   doubling up to 1 s), and the loop goes on; running out of file descriptors also closes the oldest
//!   idle connection, to free one. Only a listening socket broken for good, or a panic, ends the loop;
//!   then the failure is reported ([`Server::on_failure`]) so the owner withdraws `run/api.json`, and
//!   the socket stays bound (nobody else can take the port) until the server is dropped.
//! - **Connections and threads are capped**: one thread per connection, at most
//!   [`Limits::connections`] connections before their answer is sent and [`Limits::streams`] event
//!   streams. A connection beyond the cap first closes the oldest *idle* one (still sending its request
//!   head, or lingering after its answer); if none is idle it gets a quick 503 (written with a 100 ms
//!   timeout) and is closed, never a thread of its own. So idle connections never hold a slot a working
//!   client needs: a client that sends its request at once is never the oldest idle one.
//! - **Deadlines**: the request head must arrive whole within [`Limits::head_deadline`] (one deadline for
//!   the whole head, not per read; else the connection is closed), in at most [`MAX_HEAD`] bytes and
//!   [`MAX_HEADERS`] headers (431); a body within [`Limits::body_deadline`]; each write within
//!   [`Limits::write_timeout`].
//! - **One request per connection** (`Connection: close`). A body is framed by `Content-Length` only:
//!   [`Request::body_length`] reports a `Transfer-Encoding` so the handler refuses it (411).
//!
//! The handler (`super::handle`, which makes every security decision) gets each [`Request`] on the
//! connection's thread and answers it with [`Request::respond`], or turns it into an [`EventStream`]
//! written straight to the socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The largest request head (request line and headers); larger gets 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most headers a request may have; more gets 431.
pub const MAX_HEADERS: usize = 64;
/// How often the accept loop waits for a connection before it looks whether it should stop.
const POLL: Duration = Duration::from_millis(250);
/// The first and the longest pause after an accept error.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per kind of trouble this often (a flood must not fill the disk with logs).
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long the 503 to a connection over the cap may take to write.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_millis(100);
/// Threads beyond the connection and stream caps, for connections closed as idle whose thread has not
/// ended yet (it ends as soon as its read sees the closed socket).
const SPARE_THREADS: usize = 16;
/// The most bytes read (and thrown away) from a client after its answer, before closing.
const LINGER_BYTES: usize = 128 * 1024;

/// The caps and deadlines; [`Limits::default`] is what the owner serves with (tests shrink them).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections from accept until their answer is sent; event streams are not counted here.
    pub connections: usize,
    /// Event streams open at once.
    pub streams: usize,
    /// The whole request head must arrive within this.
    pub head_deadline: Duration,
    /// The whole body must arrive within this (from the moment it is asked for).
    pub body_deadline: Duration,
    /// Each write to a client (an answer, an event) must finish within this.
    pub write_timeout: Duration,
    /// After its answer, how long a connection is drained before it is closed, so that a client whose
    /// body was refused unread still reads the answer (closing with unread input sends a reset).
    pub linger: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 64,
            streams: 16,
            head_deadline: Duration::from_secs(10),
            body_deadline: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(1),
        }
    }
}

/// Where connections come from: the listening socket, or a test's stand-in that fails on purpose.
pub trait Accept: Send + Sync + 'static {
    /// The next connection, waiting at most `wait`; `Ok(None)` if none came.
    fn accept_within(&self, wait: Duration) -> io::Result<Option<TcpStream>>;
}

/// The listening socket on 127.0.0.1. Non-blocking and waited on with `poll` (short naps elsewhere than
/// Unix), so the accept loop notices a stop within [`POLL`] without a wake-up connection, which would
/// itself need a free file descriptor.
pub struct Listener(TcpListener);

impl Listener {
    pub fn bind(port: u16) -> io::Result<Listener> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        Ok(Listener(listener))
    }

    pub fn port(&self) -> io::Result<u16> {
        Ok(self.0.local_addr()?.port())
    }
}

impl Accept for Listener {
    fn accept_within(&self, wait: Duration) -> io::Result<Option<TcpStream>> {
        match self.0.accept() {
            Ok((stream, _)) => return Ok(Some(stream)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        wait_readable(&self.0, wait);
        match self.0.accept() {
            Ok((stream, _)) => Ok(Some(stream)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(unix)]
fn wait_readable(listener: &TcpListener, wait: Duration) {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd that lives for the whole call. An error (EINTR) just ends the wait early.
    unsafe { libc::poll(&mut fd, 1, millis) };
}

#[cfg(not(unix))]
fn wait_readable(_listener: &TcpListener, wait: Duration) {
    std::thread::sleep(wait.min(Duration::from_millis(20)));
}

/// What answers requests; called on each connection's own thread.
pub type Handler = dyn Fn(Request) + Send + Sync;

/// A running server; dropping it stops the accept loop (waiting for it) and closes idle connections.
pub struct Server {
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
    _listener: Arc<dyn Accept>,
}

struct State {
    limits: Limits,
    stopping: AtomicBool,
    conns: Mutex<Conns>,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    /// Connections not yet answered (or lingering after their answer); event streams are not here.
    open: Vec<Open>,
    streams: usize,
    threads: usize,
}

struct Open {
    id: u64,
    stream: Arc<TcpStream>,
    since: Instant,
    /// Reading its head, or lingering after its answer: may be closed to make room.
    idle: bool,
}

impl Conns {
    /// Closes the connection idle for the longest time, if any. Its thread sees the socket shut and ends;
    /// the socket's descriptor is freed with the thread's handle (shared by `Arc`, so its number is
    /// never reused under our feet).
    fn close_oldest_idle(&mut self) -> bool {
        let oldest = self
            .open
            .iter()
            .enumerate()
            .filter(|(_, o)| o.idle)
            .min_by_key(|(_, o)| o.since)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                let open = self.open.swap_remove(i);
                let _ = open.stream.shutdown(Shutdown::Both);
                true
            }
            None => false,
        }
    }
}

/// What is called once if the server cannot serve any more, with the reason.
type FailureHook = Box<dyn FnOnce(&str) + Send>;

#[derive(Default)]
struct Health {
    failure: Option<String>,
    on_failure: Option<FailureHook>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// Records that the server cannot serve any more and tells whoever asked ([`Server::on_failure`]).
    fn fail(&self, why: String) {
        let hook = {
            let mut health = lock(&self.health);
            if health.failure.is_some() {
                return;
            }
            tracing::error!("the local API cannot serve any more: {why}");
            health.failure = Some(why.clone());
            health.on_failure.take()
        };
        if let Some(hook) = hook {
            hook(&why);
        }
    }
}

impl Server {
    /// Serves `listener` with `handler` on a thread named `api-server` (one `api-request` thread per
    /// connection, within `limits`).
    pub fn start(listener: impl Accept, handler: Arc<Handler>, limits: Limits) -> io::Result<Server> {
        let state = Arc::new(State {
            limits,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Conns::default()),
            health: Mutex::new(Health::default()),
        });
        // Held by the server too: if the loop ever ends, the port stays ours until the server is
        // dropped, so nobody else can listen where the backend was told the API is.
        let listener: Arc<dyn Accept> = Arc::new(listener);
        let accept = {
            let state = state.clone();
            let listener = listener.clone();
            std::thread::Builder::new()
                .name("api-server".into())
                .spawn(move || {
                    let _watch = LoopWatch(state.clone());
                    accept_loop(&*listener, &state, &handler);
                })?
        };
        Ok(Server {
            state,
            accept: Some(accept),
            _listener: listener,
        })
    }

    /// Why the server cannot serve any more, if it cannot.
    pub fn failure(&self) -> Option<String> {
        lock(&self.state.health).failure.clone()
    }

    /// Calls `hook` once with the reason if the server ever cannot serve any more (at once if it
    /// already cannot). Replaces an earlier hook.
    pub fn on_failure(&self, hook: impl FnOnce(&str) + Send + 'static) {
        let failure = {
            let mut health = lock(&self.state.health);
            match &health.failure {
                Some(why) => why.clone(),
                None => {
                    health.on_failure = Some(Box::new(hook));
                    return;
                }
            }
        };
        hook(&failure);
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let conns = lock(&self.state.conns);
        (conns.open.len(), conns.streams, conns.threads)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
        // Requests being answered finish; nothing idle is kept waiting.
        let mut conns = lock(&self.state.conns);
        while conns.close_oldest_idle() {}
    }
}

/// Reports the end of the accept loop, however it ends (a return or a panic), unless asked to stop.
struct LoopWatch(Arc<State>);

impl Drop for LoopWatch {
    fn drop(&mut self) {
        if !self.0.stopping.load(Ordering::SeqCst) {
            let how = if std::thread::panicking() {
                "panicked"
            } else {
                "ended"
            };
            self.0.fail(format!("the thread accepting its connections {how}"));
        }
    }
}

/// One log line per [`LOG_EVERY`] at most, saying how many were left out.
#[derive(Default)]
struct RateLimited {
    last: Option<Instant>,
    left_out: u64,
}

impl RateLimited {
    fn warn(&mut self, message: impl FnOnce() -> String) {
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            self.left_out += 1;
            return;
        }
        let left_out = std::mem::take(&mut self.left_out);
        let message = message();
        if left_out > 0 {
            tracing::warn!("{message} ({left_out} more like it since the last report)");
        } else {
            tracing::warn!("{message}");
        }
        self.last = Some(Instant::now());
    }
}

/// A listening socket that accept cannot use any more: nothing will get better by waiting.
fn is_broken_listener(e: &io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return [
            libc::EBADF,
            libc::ENOTSOCK,
            libc::EINVAL,
            libc::EOPNOTSUPP,
            libc::EFAULT,
        ]
        .contains(&code);
    }
    #[cfg(windows)]
    if let Some(code) = e.raw_os_error() {
        // WSAENOTSOCK, WSAEINVAL, WSAEOPNOTSUPP, WSAEFAULT.
        return [10038, 10022, 10045, 10014].contains(&code);
    }
    e.kind() == io::ErrorKind::InvalidInput
}

/// The process or the system ran out of file descriptors (or memory for sockets).
fn is_out_of_descriptors(e: &io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM].contains(&code);
    }
    #[cfg(windows)]
    if let Some(code) = e.raw_os_error() {
        // WSAEMFILE, WSAENOBUFS.
        return [10024, 10055].contains(&code);
    }
    e.kind() == io::ErrorKind::OutOfMemory
}

fn accept_loop(listener: &dyn Accept, state: &Arc<State>, handler: &Arc<Handler>) {
    let mut backoff: Option<Duration> = None;
    let mut accept_log = RateLimited::default();
    let mut busy_log = RateLimited::default();
    while !state.stopping.load(Ordering::SeqCst) {
        match listener.accept_within(POLL) {
            Ok(Some(stream)) => {
                backoff = None;
                admit(stream, state, handler, &mut busy_log);
            }
            Ok(None) => {}
            // One client gave up before it was accepted: nothing to wait for.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) if is_broken_listener(&e) => {
                state.fail(format!("its listening socket failed: {e}"));
                return;
            }
            Err(e) => {
                if is_out_of_descriptors(&e) {
                    lock(&state.conns).close_oldest_idle();
                }
                let pause = backoff.map_or(BACKOFF_FIRST, |b| (b * 2).min(BACKOFF_MAX));
                backoff = Some(pause);
                accept_log.warn(|| {
                    format!(
                        "the local API cannot accept a connection ({e}); it goes on, retrying within {} ms",
                        pause.as_millis()
                    )
                });
                std::thread::sleep(pause);
            }
        }
    }
}

/// Gives `stream` a slot and a thread, or a quick 503 when there is no room (after closing the oldest
/// idle connection, if one is idle).
fn admit(stream: TcpStream, state: &Arc<State>, handler: &Arc<Handler>, log: &mut RateLimited) {
    // Accepted sockets may inherit the listener's non-blocking mode (Windows); connections use timeouts.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    // Events are small and must go out at once.
    let _ = stream.set_nodelay(true);
    let stream = Arc::new(stream);
    let limits = &state.limits;
    let id = {
        let mut conns = lock(&state.conns);
        if conns.open.len() >= limits.connections {
            conns.close_oldest_idle();
        }
        let threads_cap = limits.connections + limits.streams + SPARE_THREADS;
        if conns.open.len() >= limits.connections || conns.threads >= threads_cap {
            None
        } else {
            conns.next_id += 1;
            let id = conns.next_id;
            conns.open.push(Open {
                id,
                stream: stream.clone(),
                since: Instant::now(),
                idle: true,
            });
            conns.threads += 1;
            Some(id)
        }
    };
    let Some(id) = id else {
        log.warn(|| "the local API is answering as many requests as it may; more get 503".to_owned());
        refuse(&stream);
        return;
    };
    // Both given back when the thread ends, or when the closure is dropped because it could not start.
    let slot = Slot {
        state: state.clone(),
        id,
    };
    let thread = ThreadCount(state.clone());
    let handler = handler.clone();
    let conn = stream.clone();
    let spawned = std::thread::Builder::new()
        .name("api-request".into())
        .spawn(move || {
            let _thread = thread;
            serve(conn, slot, &*handler);
        });
    if let Err(e) = spawned {
        log.warn(|| format!("cannot start a thread for a local API connection: {e}"));
        refuse(&stream);
    }
}

/// The answer to a connection over the cap, without reading its request.
fn refuse(stream: &TcpStream) {
    let response = Response::json_error(503, "too many requests at once; try again");
    let _ = stream.set_write_timeout(Some(REFUSAL_WRITE_TIMEOUT));
    let mut out = stream;
    let _ = out.write_all(&response.to_bytes(false));
    let _ = stream.shutdown(Shutdown::Write);
    // What the client already sent is read (without waiting for more): closing with unread input would
    // reset the connection, and the client might lose the answer.
    if stream.set_nonblocking(true).is_ok() {
        let mut chunk = [0u8; 4096];
        let mut input = stream;
        for _ in 0..16 {
            if !matches!(input.read(&mut chunk), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

/// A connection's place in [`Conns::open`]; given back when dropped.
struct Slot {
    state: Arc<State>,
    id: u64,
}

impl Slot {
    /// Marks the connection idle (closable to make room) or not. `false`: it was closed to make room.
    fn set_idle(&self, idle: bool) -> bool {
        let mut conns = lock(&self.state.conns);
        match conns.open.iter_mut().find(|o| o.id == self.id) {
            Some(open) => {
                open.idle = idle;
                true
            }
            None => false,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut conns = lock(&self.state.conns);
        if let Some(i) = conns.open.iter().position(|o| o.id == self.id) {
            conns.open.swap_remove(i);
        }
    }
}

/// One connection thread, counted while it lives.
struct ThreadCount(Arc<State>);

impl Drop for ThreadCount {
    fn drop(&mut self) {
        lock(&self.0.conns).threads -= 1;
    }
}

/// An event stream's place in [`Conns::streams`]; given back when dropped.
struct StreamSlot(Arc<State>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        lock(&self.0.conns).streams -= 1;
    }
}

/// Reads into `buf` before `deadline`: `TimedOut` once it has passed, `Ok(0)` at the end of input.
fn read_before(mut stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::ErrorKind::TimedOut.into());
            }
            other => return other,
        }
    }
}

/// A request head, read whole.
struct Head {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    /// What came after the head: the start of the body.
    rest: Vec<u8>,
}

enum HeadError {
    /// The client went away, or did not finish in time: close without an answer.
    Gone,
    /// Answer this status and close.
    Refuse(u16, String),
}

fn read_head(stream: &TcpStream, deadline: Instant) -> Result<Head, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = read_before(stream, &mut chunk, deadline).map_err(|_| HeadError::Gone)?;
        if n == 0 {
            return Err(HeadError::Gone);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => {
                return Ok(Head {
                    method: request.method.unwrap_or_default().to_owned(),
                    url: request.path.unwrap_or_default().to_owned(),
                    headers: request
                        .headers
                        .iter()
                        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect(),
                    rest: buf[len..].to_vec(),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(_) => {
                return Err(HeadError::Refuse(
                    431,
                    format!("the request head is larger than {MAX_HEAD} bytes"),
                ));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HeadError::Refuse(
                    431,
                    format!("the request has more than {MAX_HEADERS} headers"),
                ));
            }
            Err(e) => return Err(HeadError::Refuse(400, format!("a malformed request: {e}"))),
        }
    }
}

fn serve(stream: Arc<TcpStream>, slot: Slot, handler: &Handler) {
    let limits = slot.state.limits.clone();
    let head = match read_head(&stream, Instant::now() + limits.head_deadline) {
        Ok(head) => head,
        Err(HeadError::Gone) => return,
        Err(HeadError::Refuse(status, message)) => {
            let response = Response::json_error(status, &message);
            let conn = Conn {
                stream,
                slot,
                rest: Vec::new(),
                limits,
            };
            conn.send(&response.to_bytes(false));
            return;
        }
    };
    // Being answered: not closable to make room any more (unless that already happened).
    if !slot.set_idle(false) {
        return;
    }
    handler(Request {
        method: head.method,
        url: head.url,
        headers: head.headers,
        conn: Conn {
            stream,
            slot,
            rest: head.rest,
            limits,
        },
    });
}

struct Conn {
    stream: Arc<TcpStream>,
    slot: Slot,
    rest: Vec<u8>,
    limits: Limits,
}

impl Conn {
    /// Writes `bytes` (a whole answer), then closes: the write side at once, the read side after
    /// draining what the client still sends (for at most [`Limits::linger`]), idle meanwhile.
    fn send(self, bytes: &[u8]) {
        let stream = &*self.stream;
        let _ = stream.set_write_timeout(Some(self.limits.write_timeout));
        let mut out = stream;
        if out.write_all(bytes).and_then(|()| out.flush()).is_err() {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        let _ = stream.shutdown(Shutdown::Write);
        if !self.slot.set_idle(true) {
            return;
        }
        let deadline = Instant::now() + self.limits.linger;
        let mut drained = 0;
        let mut chunk = [0u8; 4096];
        while drained < LINGER_BYTES {
            match read_before(stream, &mut chunk, deadline) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// Why a request's body cannot be read as framed.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// A `Transfer-Encoding` (chunked) body: only `Content-Length` is accepted.
    TransferEncoding,
    /// A `Content-Length` that is not a number, or two that differ.
    BadLength,
}

/// One request, its head read; answer it with [`Request::respond`] or [`Request::into_event_stream`].
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    conn: Conn,
}

impl Request {
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent (path and query).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body's length as `Content-Length` declares it; `None` without one (no body). Saturates at
    /// `usize::MAX`, which every limit refuses.
    pub fn body_length(&self) -> Result<Option<usize>, BodyFraming> {
        if self.header("Transfer-Encoding").is_some() {
            return Err(BodyFraming::TransferEncoding);
        }
        let mut length = None;
        for (_, value) in self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BodyFraming::BadLength);
            }
            let n = value.parse::<usize>().unwrap_or(usize::MAX);
            if length.is_some_and(|l| l != n) {
                return Err(BodyFraming::BadLength);
            }
            length = Some(n);
        }
        Ok(length)
    }

    /// Reads a body of `length` bytes (the caller has checked it against its limit), within
    /// [`Limits::body_deadline`]. Answers `Expect: 100-continue` first.
    pub fn read_body(&mut self, length: usize) -> io::Result<Vec<u8>> {
        let mut body = std::mem::take(&mut self.conn.rest);
        body.truncate(length);
        if body.len() == length {
            return Ok(body);
        }
        let stream = &*self.conn.stream;
        if self
            .header("Expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            let _ = stream.set_write_timeout(Some(self.conn.limits.write_timeout));
            let mut out = stream;
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let deadline = Instant::now() + self.conn.limits.body_deadline;
        let mut chunk = [0u8; 8192];
        while body.len() < length {
            let want = (length - body.len()).min(chunk.len());
            match read_before(stream, &mut chunk[..want], deadline) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the connection ended after {} of its {length} bytes", body.len()),
                    ));
                }
                Ok(n) => body.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{} of its {length} bytes came within {} s",
                            body.len(),
                            self.conn.limits.body_deadline.as_secs()
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(body)
    }

    /// Sends `response` and closes the connection (no body for `HEAD`).
    pub fn respond(self, response: Response) {
        let head_only = self.method.eq_ignore_ascii_case("HEAD");
        self.conn.send(&response.to_bytes(head_only));
    }

    /// Turns the connection into an event stream, which the caller writes to (the status line and
    /// headers too). Gives the request's slot back and takes one of the stream slots; `Err` gives the
    /// request back when all of those are taken.
    pub fn into_event_stream(self) -> Result<EventStream, Box<Request>> {
        let state = self.conn.slot.state.clone();
        {
            let mut conns = lock(&state.conns);
            if conns.streams >= state.limits.streams {
                return Err(Box::new(self));
            }
            conns.streams += 1;
        }
        let stream_slot = StreamSlot(state);
        let Conn {
            stream, slot, limits, ..
        } = self.conn;
        drop(slot);
        let _ = stream.set_write_timeout(Some(limits.write_timeout));
        Ok(EventStream {
            stream,
            _slot: stream_slot,
        })
    }
}

/// A connection turned into an event stream (see [`Request::into_event_stream`]); closed when dropped.
pub struct EventStream {
    stream: Arc<TcpStream>,
    _slot: StreamSlot,
}

impl Write for EventStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.stream).flush()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A response header.
#[derive(Clone, Debug)]
pub struct Header {
    name: String,
    value: String,
}

impl Header {
    /// A header; any CR or LF is dropped, so a value can never end the head early.
    pub fn new(name: &str, value: &str) -> Header {
        let clean = |s: &str| s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        Header {
            name: clean(name),
            value: clean(value),
        }
    }
}

/// A whole answer: status, headers, body. `Date`, `Content-Length` and `Connection: close` are added
/// when it is sent.
#[derive(Clone, Debug)]
pub struct Response {
    status: u16,
    headers: Vec<Header>,
    body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    #[must_use]
    pub fn with_header(mut self, header: Header) -> Response {
        self.headers.push(header);
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The transport's own refusals, shaped like the handler's error answers.
    fn json_error(status: u16, message: &str) -> Response {
        let body = serde_json::to_vec_pretty(&serde_json::json!({ "error": message })).unwrap_or_default();
        Response::new(status, body)
            .with_header(Header::new("Content-Type", "application/json"))
            .with_header(Header::new("Cache-Control", "no-store"))
            .with_header(Header::new("X-Content-Type-Options", "nosniff"))
    }

    fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nDate: {}\r\n",
            self.status,
            reason(self.status),
            chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT")
        );
        for h in &self.headers {
            out.push_str(&format!("{}: {}\r\n", h.name, h.value));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn echo() -> Arc<Handler> {
        Arc::new(|mut request: Request| {
            let body = match request.body_length() {
                Ok(n) => match request.read_body(n.unwrap_or(0)) {
                    Ok(body) => String::from_utf8_lossy(&body).into_owned(),
                    Err(e) => format!("unreadable: {e}"),
                },
                Err(e) => format!("{e:?}"),
            };
            let text = format!("{} {} {body}", request.method(), request.url());
            request.respond(Response::new(200, text.into_bytes()));
        })
    }

    fn small() -> Limits {
        Limits {
            connections: 4,
            streams: 2,
            head_deadline: Duration::from_millis(400),
            body_deadline: Duration::from_millis(400),
            write_timeout: Duration::from_secs(2),
            linger: Duration::from_millis(200),
        }
    }

    fn start(limits: Limits, handler: Arc<Handler>) -> (Server, u16) {
        let listener = Listener::bind(0).unwrap();
        let port = listener.port().unwrap();
        (Server::start(listener, handler, limits).unwrap(), port)
    }

    /// Sends `raw` on a new connection and reads the whole answer.
    fn exchange(port: u16, raw: &[u8]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(raw).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    fn get(port: u16) -> String {
        exchange(port, b"GET /x HTTP/1.1\r\nHost: here\r\n\r\n")
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The real listener, after a given list of accept errors.
    struct Failing {
        inner: Listener,
        errors: Mutex<Vec<io::Error>>,
    }

    impl Accept for Failing {
        fn accept_within(&self, wait: Duration) -> io::Result<Option<TcpStream>> {
            if let Some(e) = lock(&self.errors).pop() {
                return Err(e);
            }
            self.inner.accept_within(wait)
        }
    }

    #[test]
    fn answers_with_a_date_a_length_and_connection_close_and_no_body_to_head() {
        let (_server, port) = start(small(), echo());
        let answer = exchange(
            port,
            b"POST /p?q=1 HTTP/1.1\r\nHost: here\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{answer}");
        assert!(
            answer.contains("\r\nContent-Length: 17\r\nConnection: close\r\n\r\n"),
            "{answer}"
        );
        assert!(answer.ends_with("\r\n\r\nPOST /p?q=1 hello"), "{answer}");
        let head = exchange(port, b"HEAD /h HTTP/1.1\r\nHost: here\r\n\r\n");
        assert!(
            head.ends_with("Connection: close\r\n\r\n"),
            "no body for HEAD: {head}"
        );
    }

    #[test]
    fn bodies_are_framed_by_one_content_length_only() {
        let (_server, port) = start(small(), echo());
        let chunked = exchange(
            port,
            b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        );
        assert!(chunked.ends_with("TransferEncoding"), "{chunked}");
        let two = exchange(
            port,
            b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        );
        assert!(two.ends_with("BadLength"), "{two}");
        let signed = exchange(
            port,
            b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\na",
        );
        assert!(signed.ends_with("BadLength"), "{signed}");
        let short = exchange(
            port,
            b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
        );
        assert!(
            short.contains("unreadable: 3 of its 10 bytes came within"),
            "{short}"
        );
    }

    #[test]
    fn a_head_too_large_or_with_too_many_headers_gets_431_and_garbage_400() {
        let (_server, port) = start(small(), echo());
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        let answer = exchange(port, &big);
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend(format!("X-{i}: y\r\n").bytes());
        }
        many.extend(b"\r\n");
        let answer = exchange(port, &many);
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        let answer = exchange(port, b"\x00\x01 nonsense\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    }

    #[test]
    fn a_head_that_never_finishes_is_closed_at_its_deadline_however_slowly_it_trickles() {
        let (server, port) = start(small(), echo());
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let started = Instant::now();
        // A byte every 50 ms: a deadline per read would never pass.
        let mut closed = false;
        for byte in b"GET / HTTP/1.1\r\nX-Slow: ".iter().cycle().take(400) {
            if stream.write_all(&[*byte]).is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            if started.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        if !closed {
            stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut buf = [0u8; 16];
            closed = matches!(stream.read(&mut buf), Ok(0) | Err(_));
        }
        assert!(
            closed,
            "the connection is closed once the head deadline has passed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "closed near the 400 ms deadline, not per read"
        );
        wait_until("the slot to be given back", || server.counts() == (0, 0, 0));
    }

    #[test]
    fn idle_connections_beyond_the_cap_make_room_for_a_client_that_asks_and_threads_stay_capped() {
        let limits = Limits {
            head_deadline: Duration::from_secs(60),
            ..small()
        };
        let (server, port) = start(limits, echo());
        let idle: Vec<TcpStream> = (0..40)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        wait_until("the idle connections to be taken in", || server.counts().0 == 4);
        let (open, _, threads) = server.counts();
        assert!(
            open <= 4 && threads <= 4 + 2 + SPARE_THREADS,
            "{open} open, {threads} threads"
        );
        for _ in 0..3 {
            let answer = get(port);
            assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        }
        drop(idle);
        wait_until("every slot to be given back", || server.counts() == (0, 0, 0));
        assert!(get(port).starts_with("HTTP/1.1 200 OK"));
        assert!(server.failure().is_none());
    }

    #[test]
    fn over_the_cap_with_nothing_idle_a_connection_gets_a_quick_503() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let handler: Arc<Handler> = Arc::new(move |request: Request| {
            if request.url() == "/hold" {
                let _ = lock(&release_rx).recv();
            }
            request.respond(Response::new(200, Vec::new()));
        });
        let (server, port) = start(small(), handler);
        let held: Vec<std::thread::JoinHandle<String>> = (0..4)
            .map(|_| std::thread::spawn(move || exchange(port, b"GET /hold HTTP/1.1\r\n\r\n")))
            .collect();
        wait_until("four requests in progress", || {
            lock(&server.state.conns).open.iter().filter(|o| !o.idle).count() == 4
        });
        let refused = get(port);
        assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
        assert!(
            refused.contains("too many requests at once; try again"),
            "{refused}"
        );
        for _ in 0..4 {
            release_tx.send(()).unwrap();
        }
        for h in held {
            assert!(h.join().unwrap().starts_with("HTTP/1.1 200 OK"));
        }
        assert!(get(port).starts_with("HTTP/1.1 200 OK"));
    }

    #[test]
    fn accept_errors_are_backed_off_and_the_loop_goes_on() {
        #[cfg(unix)]
        let codes = [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ECONNABORTED,
            libc::EMFILE,
        ];
        #[cfg(windows)]
        let codes = [10024, 10055, 10053, 10024, 10024];
        let listener = Failing {
            inner: Listener::bind(0).unwrap(),
            errors: Mutex::new(codes.iter().map(|c| io::Error::from_raw_os_error(*c)).collect()),
        };
        let port = listener.inner.port().unwrap();
        let server = Server::start(listener, echo(), small()).unwrap();
        let answer = get(port);
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(server.failure().is_none(), "{:?}", server.failure());
    }

    #[test]
    fn an_accept_loop_that_ends_reports_why_and_keeps_the_port() {
        /// Holds the port, panics when asked for a connection.
        struct Panics {
            _bound: Listener,
        }
        impl Accept for Panics {
            fn accept_within(&self, _wait: Duration) -> io::Result<Option<TcpStream>> {
                panic!("a bug in the accept loop");
            }
        }
        let listener = Listener::bind(0).unwrap();
        let port = listener.port().unwrap();
        let server = Server::start(Panics { _bound: listener }, echo(), small()).unwrap();
        wait_until("the failure to be reported", || server.failure().is_some());
        let (tx, rx) = mpsc::channel();
        server.on_failure(move |why| tx.send(why.to_owned()).unwrap());
        let why = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(why.contains("panicked"), "{why}");
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_err(),
            "nobody else may listen where the backend was told the API is"
        );
        drop(server);
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "given back when dropped"
        );
    }

    #[test]
    fn event_streams_have_their_own_cap_and_give_the_request_slot_back() {
        let handler: Arc<Handler> = Arc::new(|request: Request| {
            if request.url() == "/events" {
                match request.into_event_stream() {
                    Ok(mut stream) => {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\nevent\n");
                        let _ = stream.flush();
                        std::thread::sleep(Duration::from_secs(2));
                    }
                    Err(request) => (*request).respond(Response::new(503, Vec::new())),
                }
            } else {
                request.respond(Response::new(200, Vec::new()));
            }
        });
        let (server, port) = start(small(), handler);
        let streams: Vec<TcpStream> = (0..2)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(b"GET /events HTTP/1.1\r\n\r\n").unwrap();
                s
            })
            .collect();
        wait_until("two streams", || server.counts().1 == 2);
        assert_eq!(server.counts().0, 0, "streams hold no request slot");
        let third = exchange(port, b"GET /events HTTP/1.1\r\n\r\n");
        assert!(third.starts_with("HTTP/1.1 503 "), "{third}");
        assert!(get(port).starts_with("HTTP/1.1 200 OK"));
        drop(streams);
    }
}
