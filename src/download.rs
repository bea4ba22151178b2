//! Resumable downloads that are verified while they stream.
//!
//! A download goes to `<dest>.part` through a small, fixed set of buffers, so memory stays flat whatever the
//! file size; each buffer is written on the calling thread and hashed (SHA256) on a second, named thread,
//! so hashing overlaps the network and costs almost no wall time. Beside the partial file a sidecar
//! `<dest>.part.json` records the URL, the server's validator (ETag or Last-Modified) and what is expected,
//! so a later call — after a dropped connection, a cancel or a crash — re-hashes the prefix it already has
//! and continues with `Range: bytes=N-` plus `If-Range`. A server that ignores the range, or whose file
//! changed, answers 200 and the download starts over from zero (and says so). Transient failures (5xx, 408,
//! 429, connection errors) are retried with exponential backoff and jitter; other 4xx answers stop at once.
//!
//! Every call is bounded, so a server that sends a few bytes and closes, every time, or trickles a byte
//! now and then, cannot hold a job (and `update.lock`) for ever ([`RetryPolicy`]): a try counts as progress
//! only when it brought a real share of the file (bytes that a restart threw away do not count), so such
//! tries use up the failures allowed in a row; every request counts against a total number of tries,
//! whatever it brought (a server answering 200 to a range request included); a try whose body arrives
//! slower than a floor over a window is abandoned as too slow; and the whole call may last a base time plus
//! the file's size at a floor rate. Giving up says how little the server sent, in how many tries and how
//! long, and keeps the partial file for a later call. A delta uses tighter bounds
//! ([`RetryPolicy::with_fallback`]): the full archive is there to fall back on.
//!
//! Only a file whose size and SHA256 match is renamed (after an fsync, unless the caller marks it a cache
//! it checks again as it reads it: [`DownloadRequest::cache_only`]) to its final name. A file that does
//! not match is deleted, so a bad download can never cause an update loop. `Authorization` goes only to the
//! request URL's own origin: reqwest drops it on a redirect that changes scheme, host or port, and redirects
//! this module follows itself (when the caller's client does not) apply the same rule.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::{self, HeaderMap};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::hashing::HashPipeline;

/// At most this many progress events a second (about 10, which is plenty for a progress bar).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// The window over which download speed is measured.
const SPEED_WINDOW: Duration = Duration::from_secs(3);
/// The longest a buffer is filled before it is written and reported, so a slow line still shows progress
/// and reacts to cancel promptly.
const FILL_TIME: Duration = Duration::from_millis(100);
/// Redirect hops followed by this module when the caller's client hands a 3xx back.
const MAX_REDIRECTS: usize = 10;
/// Version of the sidecar format; a sidecar of another version is ignored (the download starts over).
const SIDECAR_FORMAT: u32 = 1;

/// What to download and what the result must be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DownloadRequest {
    pub url: String,
    /// The final file; the download streams into `<dest>.part` next to it.
    pub dest: PathBuf,
    pub expected_size: Option<u64>,
    /// Lowercase or uppercase hex; checked after the last byte.
    pub expected_sha256: Option<String>,
    /// Sent as `Authorization: Bearer …`, only to the URL's own origin (never after a cross-host redirect).
    pub auth_token: Option<String>,
    /// The `Accept` header, e.g. `application/octet-stream` for GitHub API asset URLs.
    pub accept: Option<String>,
    /// The file is a cache that is verified again as it is used (a bundle archive is hashed while it is
    /// unpacked): it is renamed into place without an fsync of its own, which would write every byte to
    /// disk once more for nothing. A crash may then leave a damaged file, which that check refuses.
    pub cache_only: bool,
}

impl DownloadRequest {
    /// A request with nothing expected; add expectations with struct update syntax or the fields.
    pub fn new(url: impl Into<String>, dest: impl Into<PathBuf>) -> Self {
        DownloadRequest {
            url: url.into(),
            dest: dest.into(),
            ..Default::default()
        }
    }
}

/// How far a download is.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub done: u64,
    pub total: Option<u64>,
    /// Measured over the last few seconds of this call (bytes resumed from disk do not count).
    pub bytes_per_sec: f64,
    pub eta: Option<Duration>,
}

/// What a download reports while it runs, in order: `Started`, then any of `Progress`, `Retrying`,
/// `Resumed`, `Restarted`, then `Verifying` and `Done`.
#[derive(Clone, Debug, PartialEq)]
pub enum DownloadEvent {
    /// The server answered; `resume_from` bytes were already on disk and verified by re-hashing.
    Started {
        url: String,
        total: Option<u64>,
        resume_from: u64,
    },
    Progress(Progress),
    /// A transient failure; the next try (`attempt`, counting from 1) starts after `delay`.
    Retrying {
        attempt: u32,
        delay: Duration,
        reason: String,
    },
    /// The server accepted a range request: the download continues from byte `from`.
    Resumed {
        from: u64,
    },
    /// The partial file was discarded and the download starts over from byte 0.
    Restarted {
        reason: String,
    },
    /// The last byte arrived; size and hash are being checked.
    Verifying,
    Done(DownloadOutcome),
}

/// A verified file in its final place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadOutcome {
    pub path: PathBuf,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// Bytes that were already on disk from an earlier call (0 for a fresh download).
    pub resumed_from: u64,
}

/// Cancels a running download between two buffers (or during a backoff wait). Cloning is cheap; all
/// clones share one flag. The partial file is kept so a later call resumes it.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        let _guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.0.wake.notify_all();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout`, waking early on cancel; returns whether the token is cancelled.
    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.is_cancelled() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            guard = match self.0.wake.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        self.is_cancelled()
    }
}

/// How often and how patiently transient failures are retried, and the bounds on one call: tries, speed
/// and wall time (see the module docs). The defaults suit a file of any size, a multi-gigabyte model
/// included; [`RetryPolicy::with_fallback`] tightens them for a download that has an alternative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in a row that may fail before giving up. A failed try resets the count only when it brought
    /// [`RetryPolicy::progress_bytes`] or a twentieth of the file since the previous failure, so a server
    /// that sends a few bytes and closes, every time, runs out of tries.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub base_delay: Duration,
    /// The longest wait, also the cap on a server's `Retry-After`.
    pub max_delay: Duration,
    /// Requests one call may make in all, whatever each brought (resumes, restarts and a server that
    /// answers a range request with the whole file all count).
    pub max_total_attempts: u32,
    /// The bytes a failed try must have added since the previous failure to count as progress (or a
    /// twentieth of the file, when that is less).
    pub progress_bytes: u64,
    /// The slowest a body may arrive, in bytes a second on average over each [`RetryPolicy::speed_window`]
    /// of a try; a slower try is abandoned as too slow (and retried, counting as a failure).
    pub min_bytes_per_sec: u64,
    pub speed_window: Duration,
    /// A call may last this long plus the file's size at [`RetryPolicy::time_bytes_per_sec`]
    /// ([`RetryPolicy::time_allowed`]); after that it gives up, keeping the partial file.
    pub time_base: Duration,
    pub time_bytes_per_sec: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_total_attempts: 10,
            progress_bytes: 1 << 20,
            // 2 KiB/s is below any line a download can finish on; it only stops a server that trickles.
            min_bytes_per_sec: 2 << 10,
            speed_window: Duration::from_secs(60),
            // 10 minutes plus the size at 16 KiB/s (128 kbit/s): an hour and three quarters for 100 MB,
            // three days for 4 GiB. A slower line still gets there: the next call resumes.
            time_base: Duration::from_secs(10 * 60),
            time_bytes_per_sec: 16 << 10,
        }
    }
}

impl RetryPolicy {
    /// This policy tightened for a download that has an alternative (a delta, whose full archive can be
    /// fetched instead): three failures in a row, four tries in all, two minutes plus the size at the same
    /// rate. Delays and the speed floor stay as they are, so a test's fast policy stays fast.
    pub fn with_fallback(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.min(3),
            max_total_attempts: self.max_total_attempts.min(4),
            time_base: self.time_base.min(Duration::from_secs(2 * 60)),
            ..self.clone()
        }
    }

    /// How long a call may last for a file of `size` bytes: [`RetryPolicy::time_base`] plus the size at
    /// [`RetryPolicy::time_bytes_per_sec`].
    pub fn time_allowed(&self, size: u64) -> Duration {
        let rate = self.time_bytes_per_sec.max(1);
        self.time_base
            .saturating_add(Duration::from_secs(size / rate))
            .saturating_add(Duration::from_nanos(
                (u128::from(size % rate) * 1_000_000_000 / u128::from(rate)) as u64,
            ))
    }

    /// The bytes a failed try must have added to reset the count of failures in a row.
    fn progress_needed(&self, total: Option<u64>) -> u64 {
        match total {
            Some(total) => self.progress_bytes.min(total / 20).max(1),
            None => self.progress_bytes.max(1),
        }
    }

    /// The wait before retry number `failures` (1 = after the first failure): exponential, capped, with
    /// "equal jitter" — half fixed, half random — so many clients that failed together do not retry together.
    pub fn delay_after(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = full / 2;
        let jitter_nanos = fastrand::u64(0..=half.as_nanos().min(u128::from(u64::MAX)) as u64);
        half + Duration::from_nanos(jitter_nanos)
    }
}

/// Why a download failed. Each message names the cause and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("`{url}` is not a URL that can be downloaded ({reason}); check the release source configuration")]
    InvalidUrl { url: String, reason: String },

    #[error("`{value}` is not a SHA256 (64 hex digits); check the release's checksum file or manifest")]
    InvalidChecksum { value: String },

    #[error("{url} answered HTTP {status}; {}", status_advice(*.status))]
    HttpStatus { url: String, status: u16 },

    #[error(
        "gave up on {url} after {attempts} tries: {reason}; check the network connection (or HTTPS_PROXY) and run the command again — the partial download is kept and will resume"
    )]
    RetriesExhausted {
        url: String,
        attempts: u32,
        reason: String,
    },

    #[error(
        "gave up on {url}: {attempts} tries over {} brought only {} ({why}; the last try: {last}); the server or the line is too slow, or the connection keeps breaking — try again later or use another mirror (the partial download is kept and will resume)",
        human_duration(*.elapsed),
        indicatif::HumanBytes(*.received)
    )]
    TooSlow {
        url: String,
        /// Bytes received over the network in this call (also those a restart threw away).
        received: u64,
        attempts: u32,
        elapsed: Duration,
        /// The bound that was reached.
        why: String,
        /// How the last try ended.
        last: String,
    },

    #[error("{url} could not be fetched: {reason}; check the URL and the proxy settings")]
    Request { url: String, reason: String },

    #[error(
        "downloaded {file} is corrupt or was tampered with: expected SHA256 {expected}, got {actual}; the file was deleted — run the command again, and if it happens again the release asset itself is bad"
    )]
    HashMismatch {
        file: PathBuf,
        expected: String,
        actual: String,
    },

    #[error(
        "{url} for {file} is {actual} bytes but {expected} bytes were expected; the partial file was deleted — the asset may have been replaced, check for a newer release and try again"
    )]
    SizeMismatch {
        url: String,
        file: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error(
        "not enough free space in {dir}: the download needs {needed} more bytes but only {available} are free; free some space (or remove old versions) and try again"
    )]
    InsufficientSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },

    #[error(
        "{part} is already being downloaded by another process; wait for that download to finish, then try again"
    )]
    Busy { part: PathBuf },

    #[error("the download of {url} was cancelled; {part} is kept and the next download resumes from it")]
    Cancelled { url: String, part: PathBuf },

    #[error(
        "could not {action} {path}: {source}; check the folder exists, is writable and the disk is not full"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `45 s`, `17 min 3 s`, `2 h 5 min`.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

fn status_advice(status: u16) -> &'static str {
    match status {
        401 | 403 => {
            "the token is missing, expired or lacks access (set GITHUB_TOKEN to one that can read the repository)"
        }
        404 | 410 => "the file is not there (the release or asset was removed); run the update check again",
        _ => "the server refused the download; check the URL, or try again later",
    }
}

impl DownloadError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        DownloadError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `<dest>.part`: where the bytes go until they are verified.
pub fn part_path(dest: &Path) -> PathBuf {
    with_suffix(dest, ".part")
}

/// `<dest>.part.json`: what a later call needs to resume `<dest>.part`.
pub fn sidecar_path(dest: &Path) -> PathBuf {
    with_suffix(dest, ".part.json")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The sidecar beside a partial file. A partial file is only resumed when its sidecar describes the very
/// same request, so bytes from another URL or another expected file are never spliced in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PartState {
    format: u32,
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    total_size: Option<u64>,
    expected_size: Option<u64>,
    expected_sha256: Option<String>,
}

impl PartState {
    fn for_request(req: &DownloadRequest, expected_sha256: &Option<String>) -> Self {
        PartState {
            format: SIDECAR_FORMAT,
            url: req.url.clone(),
            expected_size: req.expected_size,
            expected_sha256: expected_sha256.clone(),
            ..Default::default()
        }
    }

    fn describes_same_request(&self, other: &PartState) -> bool {
        self.format == other.format
            && self.url == other.url
            && self.expected_size == other.expected_size
            && self.expected_sha256 == other.expected_sha256
    }

    /// The value for `If-Range`: a strong ETag, else Last-Modified (weak ETags are not allowed there).
    fn if_range(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }

    fn record_validators(&mut self, headers: &HeaderMap, total: Option<u64>) {
        self.etag = header_text(headers, header::ETAG);
        self.last_modified = header_text(headers, header::LAST_MODIFIED);
        self.total_size = total;
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Rate-limits progress events and measures speed over a sliding window.
struct ProgressMeter {
    samples: std::collections::VecDeque<(Instant, u64)>,
    last_emit: Option<Instant>,
}

impl ProgressMeter {
    fn new() -> Self {
        ProgressMeter {
            samples: std::collections::VecDeque::new(),
            last_emit: None,
        }
    }

    /// Forgets the speed history (after a restart the byte count goes back to 0).
    fn reset(&mut self) {
        self.samples.clear();
    }

    fn progress(&mut self, done: u64, total: Option<u64>, force: bool) -> Option<Progress> {
        let now = Instant::now();
        if self.samples.back().is_none_or(|(_, d)| *d != done) || self.samples.is_empty() {
            self.samples.push_back((now, done));
        }
        while self.samples.len() > 2 && self.samples.front().is_some_and(|(t, _)| now - *t > SPEED_WINDOW) {
            self.samples.pop_front();
        }
        if !force && self.last_emit.is_some_and(|t| now - t < PROGRESS_INTERVAL) {
            return None;
        }
        self.last_emit = Some(now);
        let bytes_per_sec = match (self.samples.front(), self.samples.back()) {
            (Some((t0, d0)), Some((t1, d1))) if t1 > t0 && d1 >= d0 => {
                (d1 - d0) as f64 / (*t1 - *t0).as_secs_f64()
            }
            _ => 0.0,
        };
        let eta = match total {
            Some(total) if bytes_per_sec > 0.0 && total >= done => {
                Some(Duration::from_secs_f64((total - done) as f64 / bytes_per_sec))
            }
            _ => None,
        };
        Some(Progress {
            done,
            total,
            bytes_per_sec,
            eta,
        })
    }
}

/// Downloads `req.url` to `req.dest`, resuming a partial file left by an earlier call, retrying transient
/// failures per `policy`, and verifying size and SHA256 before the file takes its final name.
///
/// Progress events are throttled to about ten a second. On cancel the partial file is kept.
pub fn download(
    client: &Client,
    req: &DownloadRequest,
    policy: &RetryPolicy,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(DownloadEvent),
) -> Result<DownloadOutcome, DownloadError> {
    Download::prepare(client, req, policy, cancel, on_event)?.run()
}

/// A handle to a download running on its own thread.
pub type DownloadHandle = JoinHandle<Result<DownloadOutcome, DownloadError>>;

/// Runs [`download`] on a named background thread; events arrive on the returned channel.
pub fn spawn_download(
    client: Client,
    req: DownloadRequest,
    policy: RetryPolicy,
    cancel: CancelToken,
) -> Result<(DownloadHandle, Receiver<DownloadEvent>), DownloadError> {
    spawn_download_notifying(client, req, policy, cancel, || {})
}

/// As [`spawn_download`], calling `notify` after each event is sent (a window passes its repaint request).
pub fn spawn_download_notifying(
    client: Client,
    req: DownloadRequest,
    policy: RetryPolicy,
    cancel: CancelToken,
    notify: impl Fn() + Send + 'static,
) -> Result<(DownloadHandle, Receiver<DownloadEvent>), DownloadError> {
    let (tx, rx) = mpsc::channel();
    let dest = req.dest.clone();
    let handle = std::thread::Builder::new()
        .name("download".into())
        .spawn(move || {
            download(&client, &req, &policy, &cancel, &mut |event| {
                // A receiver that went away only means nobody watches; the download goes on.
                let _ = tx.send(event);
                notify();
            })
        })
        .map_err(|e| DownloadError::io("start a download thread for", &dest, e))?;
    Ok((handle, rx))
}

/// How one request ended.
enum Step {
    /// All bytes are on disk.
    Complete,
    /// Try again after a wait (resuming).
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Drop the partial file and start over.
    Restart { reason: String },
}

/// One download in progress: the partial file, its sidecar, and the hash of what is in it.
struct Download<'a> {
    client: &'a Client,
    req: &'a DownloadRequest,
    policy: &'a RetryPolicy,
    cancel: &'a CancelToken,
    on_event: &'a mut dyn FnMut(DownloadEvent),
    url: Url,
    expected_sha256: Option<String>,
    part: PathBuf,
    sidecar: PathBuf,
    file: File,
    state: PartState,
    /// Bytes in the partial file, all of them hashed.
    offset: u64,
    resumed_from: u64,
    pipeline: HashPipeline,
    meter: ProgressMeter,
    started: bool,
    /// When this call's first request went out: the wall-time bound counts from here.
    began: Instant,
    /// Requests made by this call.
    attempts: u32,
    /// Bytes received over the network by this call, also those a restart threw away.
    received: u64,
}

impl<'a> Download<'a> {
    fn prepare(
        client: &'a Client,
        req: &'a DownloadRequest,
        policy: &'a RetryPolicy,
        cancel: &'a CancelToken,
        on_event: &'a mut dyn FnMut(DownloadEvent),
    ) -> Result<Self, DownloadError> {
        let url = Url::parse(&req.url).map_err(|e| DownloadError::InvalidUrl {
            url: req.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DownloadError::InvalidUrl {
                url: req.url.clone(),
                reason: format!("the scheme `{}` is not http or https", url.scheme()),
            });
        }
        let expected_sha256 = req.expected_sha256.as_deref().map(normalize_sha256).transpose()?;
        let dir = parent_dir(&req.dest);
        std::fs::create_dir_all(&dir).map_err(|e| DownloadError::io("create the folder", &dir, e))?;
        let part = part_path(&req.dest);
        let sidecar = sidecar_path(&req.dest);

        let wanted = PartState::for_request(req, &expected_sha256);
        let (state, offset) = match read_sidecar(&sidecar) {
            Some(saved) if saved.describes_same_request(&wanted) => {
                let len = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                let too_long = saved
                    .total_size
                    .or(req.expected_size)
                    .is_some_and(|total| len > total);
                if too_long { (wanted, 0) } else { (saved, len) }
            }
            _ => (wanted, 0),
        };
        check_free_space(&dir, req.expected_size.or(state.total_size), offset)?;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&part)
            .map_err(|e| DownloadError::io("open", &part, e))?;
        // Two writers on one partial file would interleave their bytes; the lock is released when the
        // file is closed, also when the process dies.
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(DownloadError::Busy { part }),
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::debug!(part = %part.display(), error = %e, "file locks unsupported; not locked");
            }
        }
        // Only when it is longer: truncating a fresh file to zero would make ext4 write all of it back as
        // soon as it is closed (`auto_da_alloc`), though a bundle archive is only a cache.
        let current_len = file
            .metadata()
            .map_err(|e| DownloadError::io("read", &part, e))?
            .len();
        if current_len != offset {
            file.set_len(offset)
                .map_err(|e| DownloadError::io("truncate", &part, e))?;
        }
        if offset == 0 {
            // No usable sidecar: whatever was there belongs to another request.
            remove_if_exists(&sidecar);
        }

        let pipeline = HashPipeline::start().map_err(|e| DownloadError::io("start hashing for", &part, e))?;
        let mut download = Download {
            client,
            req,
            policy,
            cancel,
            on_event,
            url,
            expected_sha256,
            part,
            sidecar,
            file,
            state,
            offset,
            resumed_from: offset,
            pipeline,
            meter: ProgressMeter::new(),
            started: false,
            began: Instant::now(),
            attempts: 0,
            received: 0,
        };
        if offset > 0 {
            download.hash_existing_prefix()?;
        }
        download
            .file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| DownloadError::io("seek in", &download.part, e))?;
        Ok(download)
    }

    /// Feeds the bytes already in the partial file to the hasher, so the final hash covers the whole file.
    fn hash_existing_prefix(&mut self) -> Result<(), DownloadError> {
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| DownloadError::io("seek in", &self.part, e))?;
        let mut left = self.offset;
        while left > 0 {
            if self.cancel.is_cancelled() {
                return Err(self.cancelled());
            }
            let mut buffer = self.pipeline.take_buffer();
            let want = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            if let Err(e) = self.file.read_exact(&mut buffer[..want]) {
                return Err(DownloadError::io("read", &self.part, e));
            }
            self.pipeline.submit(buffer, want);
            left -= want as u64;
        }
        Ok(())
    }

    fn run(mut self) -> Result<DownloadOutcome, DownloadError> {
        self.began = Instant::now();
        // Failures in a row without real progress, and where the partial file stood at the last one.
        let mut failures = 0u32;
        let mut mark = self.offset;
        // What the tries since the last real progress received (also bytes a restart threw away).
        let mut streak_from = 0u64;
        let mut restarts = 0u32;
        let mut last = String::from("none yet");
        loop {
            if self.cancel.is_cancelled() {
                return Err(self.cancelled());
            }
            if let Some(why) = self.out_of_tries().or_else(|| self.out_of_time(Duration::ZERO)) {
                let dribbled = self.received > 0;
                return Err(self.gave_up(why, last, dribbled));
            }
            self.attempts += 1;
            match self.attempt()? {
                Step::Complete => break,
                Step::Retry { reason, retry_after } => {
                    // Only what the partial file gained counts: bytes a restart threw away do not, so a
                    // server that answers every range request with a few bytes of the whole file makes no
                    // progress however often it is asked.
                    let total = self.state.total_size.or(self.req.expected_size);
                    let needed = self.policy.progress_needed(total);
                    if self.offset.saturating_sub(mark) >= needed {
                        failures = 0;
                        streak_from = self.received;
                    }
                    mark = self.offset;
                    failures += 1;
                    if failures >= self.policy.max_attempts {
                        let dribbled = self.received > streak_from;
                        let why = if dribbled {
                            format!(
                                "{failures} tries in a row each added less than {}",
                                indicatif::HumanBytes(needed)
                            )
                        } else {
                            format!("{failures} tries in a row failed")
                        };
                        return Err(self.gave_up(why, reason, dribbled));
                    }
                    if let Some(why) = self.out_of_tries() {
                        let dribbled = self.received > 0;
                        return Err(self.gave_up(why, reason, dribbled));
                    }
                    let delay = retry_after
                        .map(|d| d.min(self.policy.max_delay))
                        .unwrap_or_else(|| self.policy.delay_after(failures));
                    if let Some(why) = self.out_of_time(delay) {
                        let dribbled = self.received > 0;
                        return Err(self.gave_up(why, reason, dribbled));
                    }
                    tracing::info!(url = %self.req.url, %reason, ?delay, "download failed, retrying");
                    self.emit(DownloadEvent::Retrying {
                        attempt: self.attempts + 1,
                        delay,
                        reason: reason.clone(),
                    });
                    last = reason;
                    if self.cancel.wait(delay) {
                        return Err(self.cancelled());
                    }
                }
                Step::Restart { reason } => {
                    restarts += 1;
                    if restarts > self.policy.max_attempts {
                        return Err(DownloadError::RetriesExhausted {
                            url: self.req.url.clone(),
                            attempts: restarts,
                            reason,
                        });
                    }
                    self.restart(reason.clone())?;
                    mark = 0;
                    last = reason;
                }
            }
        }
        self.finish()
    }

    /// Why this call may make no further request: it made as many as it may.
    fn out_of_tries(&self) -> Option<String> {
        (self.attempts >= self.policy.max_total_attempts).then(|| {
            format!(
                "a download makes at most {} tries",
                self.policy.max_total_attempts
            )
        })
    }

    /// Why this call must stop if it waited `more` first: the time it may take for its file is up.
    fn out_of_time(&self, more: Duration) -> Option<String> {
        let size = self
            .state
            .total_size
            .or(self.req.expected_size)
            .unwrap_or(self.offset.max(self.received));
        let allowed = self.policy.time_allowed(size);
        (self.began.elapsed() + more >= allowed).then(|| {
            format!(
                "a download of {} may take at most {}",
                indicatif::HumanBytes(size),
                human_duration(allowed)
            )
        })
    }

    /// The error for a call that reached one of its bounds (`why`) after the try that ended with `last`;
    /// the partial file is kept. Tries that received nothing at all are a network problem
    /// ([`DownloadError::RetriesExhausted`]); a server that sent a little each time (`dribbled`) is too slow
    /// or keeps breaking the connection ([`DownloadError::TooSlow`]).
    fn gave_up(&self, why: String, last: String, dribbled: bool) -> DownloadError {
        let _ = self.file.sync_data();
        tracing::warn!(url = %self.req.url, received = self.received, attempts = self.attempts, %why, %last, "download gave up");
        if dribbled {
            DownloadError::TooSlow {
                url: self.req.url.clone(),
                received: self.received,
                attempts: self.attempts,
                elapsed: self.began.elapsed(),
                why,
                last,
            }
        } else {
            DownloadError::RetriesExhausted {
                url: self.req.url.clone(),
                attempts: self.attempts,
                reason: format!("{last} ({why})"),
            }
        }
    }

    /// One request: send it, check the answer, stream the body to the partial file.
    fn attempt(&mut self) -> Result<Step, DownloadError> {
        if self.offset > 0 && self.state.if_range().is_none() && self.expected_sha256.is_none() {
            // Without a validator the server cannot tell us the file changed, and without a hash we
            // could not tell either: continuing might splice two different files.
            self.restart(
                "the server sent no ETag or Last-Modified, so the partial file cannot be safely continued"
                    .into(),
            )?;
        }
        let response = match self.send() {
            Ok(response) => response,
            Err(step) => return step,
        };
        let status = response.status();
        let headers = response.headers().clone();

        let total = match status {
            StatusCode::PARTIAL_CONTENT if self.offset > 0 => match parse_content_range(&headers) {
                Some(range) if range.start == self.offset => {
                    self.emit(DownloadEvent::Resumed { from: self.offset });
                    range.total.or(self.state.total_size)
                }
                _ => {
                    return Ok(Step::Restart {
                        reason: format!(
                            "the server sent a different range than bytes {}- was asked for",
                            self.offset
                        ),
                    });
                }
            },
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                if self.offset > 0 {
                    self.restart(
                        "the server sent the whole file instead of the rest (it ignores ranges, or the file changed)"
                            .into(),
                    )?;
                }
                let total = if status == StatusCode::PARTIAL_CONTENT {
                    parse_content_range(&headers).and_then(|r| r.total)
                } else {
                    response.content_length()
                };
                self.state.record_validators(&headers, total);
                write_sidecar(&self.sidecar, &self.state)?;
                total
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // `bytes */N` with N equal to what we have: the file was already complete (e.g. a crash
                // between the last byte and the rename).
                let complete = parse_content_range(&headers).and_then(|r| r.total) == Some(self.offset);
                if complete && self.offset > 0 {
                    self.state.total_size = Some(self.offset);
                    self.emit_started(Some(self.offset));
                    return Ok(Step::Complete);
                }
                return Ok(Step::Restart {
                    reason: format!("the server cannot send bytes {}- (HTTP 416)", self.offset),
                });
            }
            s if is_transient_status(s) => {
                return Ok(Step::Retry {
                    reason: format!("the server answered HTTP {s}"),
                    retry_after: retry_after(&headers),
                });
            }
            s => {
                return Err(DownloadError::HttpStatus {
                    url: self.req.url.clone(),
                    status: s.as_u16(),
                });
            }
        };

        if let (Some(expected), Some(total)) = (self.req.expected_size, total)
            && expected != total
        {
            return Err(self.size_mismatch(expected, total));
        }
        if self.req.expected_size.is_none() {
            // The size was unknown before the server answered; this is the first chance to check.
            if let Err(e) = check_free_space(&parent_dir(&self.req.dest), total, self.offset) {
                if self.offset == 0 {
                    self.discard();
                }
                return Err(e);
            }
        }
        self.emit_started(total);
        self.stream_body(response, total)
    }

    /// Sends the request for the current offset, following redirects the client handed back.
    fn send(&mut self) -> Result<Response, Result<Step, DownloadError>> {
        let mut url = self.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.client.get(url.clone());
            if let Some(accept) = &self.req.accept {
                request = request.header(header::ACCEPT, accept);
            }
            if let Some(token) = &self.req.auth_token
                && same_origin(&url, &self.url)
            {
                request = request.bearer_auth(token);
            }
            if self.offset > 0 {
                request = request.header(header::RANGE, format!("bytes={}-", self.offset));
                if let Some(validator) = self.state.if_range() {
                    request = request.header(header::IF_RANGE, validator);
                }
            }
            let response = match request.send() {
                Ok(response) => response,
                Err(e) if e.is_builder() || e.is_redirect() => {
                    return Err(Err(DownloadError::Request {
                        url: self.req.url.clone(),
                        reason: error_chain(&e),
                    }));
                }
                Err(e) => {
                    return Err(Ok(Step::Retry {
                        reason: error_chain(&e),
                        retry_after: None,
                    }));
                }
            };
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url.join(l).ok());
            match location {
                Some(next) if response.status().is_redirection() => {
                    let from_loopback =
                        reqwest::Url::parse(&self.req.url).is_ok_and(|u| crate::http::is_loopback(&u));
                    let loopback_http =
                        next.scheme() == "http" && crate::http::is_loopback(&next) && from_loopback;
                    if next.scheme() != "https" && !loopback_http {
                        return Err(Err(DownloadError::Request {
                            url: self.req.url.clone(),
                            reason: format!(
                                "redirected to {next}, which is not https://; refusing to leave HTTPS"
                            ),
                        }));
                    }
                    url = next
                }
                _ => return Ok(response),
            }
        }
        Err(Err(DownloadError::Request {
            url: self.req.url.clone(),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        }))
    }

    fn stream_body(&mut self, mut response: Response, total: Option<u64>) -> Result<Step, DownloadError> {
        // The speed floor is checked over consecutive windows of the try: each must bring its share.
        let mut window = (Instant::now(), self.offset);
        let floor = (self.policy.min_bytes_per_sec as f64 * self.policy.speed_window.as_secs_f64()) as u64;
        loop {
            if self.cancel.is_cancelled() {
                return Err(self.cancelled());
            }
            let mut buffer = self.pipeline.take_buffer();
            let Fill { filled, ended, error } = fill(&mut response, &mut buffer, Instant::now() + FILL_TIME);
            if filled == 0 {
                self.pipeline.recycle(buffer);
            } else {
                if let Some(expected) = self.req.expected_size
                    && self.offset + filled as u64 > expected
                {
                    return Err(self.size_mismatch(expected, self.offset + filled as u64));
                }
                self.file
                    .write_all(&buffer[..filled])
                    .map_err(|e| DownloadError::io("write", &self.part, e))?;
                self.pipeline.submit(buffer, filled);
                self.offset += filled as u64;
                self.received += filled as u64;
                if let Some(p) = self.meter.progress(self.offset, total, false) {
                    self.emit(DownloadEvent::Progress(p));
                }
            }
            if let Some(e) = error {
                return Ok(Step::Retry {
                    reason: format!(
                        "the connection broke after {} bytes ({})",
                        self.offset,
                        error_chain(&e)
                    ),
                    retry_after: None,
                });
            }
            if ended {
                break;
            }
            if let Some(why) = self.out_of_time(Duration::ZERO) {
                let last = format!("the body was still arriving at byte {}", self.offset);
                return Err(self.gave_up(why, last, true));
            }
            let now = Instant::now();
            if now.duration_since(window.0) >= self.policy.speed_window {
                let got = self.offset.saturating_sub(window.1);
                if got < floor {
                    return Ok(Step::Retry {
                        reason: format!(
                            "the server sent only {} in {} (less than {}/s)",
                            indicatif::HumanBytes(got),
                            human_duration(now.duration_since(window.0)),
                            indicatif::HumanBytes(self.policy.min_bytes_per_sec)
                        ),
                        retry_after: None,
                    });
                }
                window = (now, self.offset);
            }
        }
        match total {
            Some(total) if self.offset < total => Ok(Step::Retry {
                reason: format!("the connection closed after {} of {total} bytes", self.offset),
                retry_after: None,
            }),
            _ => Ok(Step::Complete),
        }
    }

    /// Empties the partial file and the hash, and tells the listener why.
    fn restart(&mut self, reason: String) -> Result<(), DownloadError> {
        tracing::info!(url = %self.req.url, %reason, "download starts over");
        self.file
            .set_len(0)
            .map_err(|e| DownloadError::io("truncate", &self.part, e))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| DownloadError::io("seek in", &self.part, e))?;
        self.pipeline =
            HashPipeline::start().map_err(|e| DownloadError::io("start hashing for", &self.part, e))?;
        self.offset = 0;
        self.resumed_from = 0;
        self.state = PartState::for_request(self.req, &self.expected_sha256);
        remove_if_exists(&self.sidecar);
        self.meter.reset();
        self.emit(DownloadEvent::Restarted { reason });
        Ok(())
    }

    /// Checks size and hash; on success moves the file into place, on a mismatch deletes it.
    fn finish(mut self) -> Result<DownloadOutcome, DownloadError> {
        if let Some(p) = self
            .meter
            .progress(self.offset, self.state.total_size.or(Some(self.offset)), true)
        {
            self.emit(DownloadEvent::Progress(p));
        }
        self.emit(DownloadEvent::Verifying);
        if let Some(expected) = self.req.expected_size
            && expected != self.offset
        {
            return Err(self.size_mismatch(expected, self.offset));
        }
        let actual = self
            .pipeline
            .finish()
            .map_err(|e| DownloadError::io("hash", &self.part, e))?;
        if let Some(expected) = &self.expected_sha256
            && *expected != actual
        {
            self.discard();
            return Err(DownloadError::HashMismatch {
                file: self.req.dest.clone(),
                expected: expected.clone(),
                actual,
            });
        }
        if !self.req.cache_only {
            self.file
                .sync_all()
                .map_err(|e| DownloadError::io("flush", &self.part, e))?;
        }
        std::fs::rename(&self.part, &self.req.dest)
            .map_err(|e| DownloadError::io("move the download into place at", &self.req.dest, e))?;
        if !self.req.cache_only {
            crate::fsutil::sync_dir(&parent_dir(&self.req.dest));
        }
        remove_if_exists(&self.sidecar);
        let outcome = DownloadOutcome {
            path: self.req.dest.clone(),
            size: self.offset,
            sha256: actual,
            resumed_from: self.resumed_from,
        };
        self.emit(DownloadEvent::Done(outcome.clone()));
        Ok(outcome)
    }

    fn size_mismatch(&self, expected: u64, actual: u64) -> DownloadError {
        self.discard();
        DownloadError::SizeMismatch {
            url: self.req.url.clone(),
            file: self.req.dest.clone(),
            expected,
            actual,
        }
    }

    /// Deletes the partial file and its sidecar, so a bad download cannot be resumed into a loop.
    fn discard(&self) {
        remove_if_exists(&self.part);
        remove_if_exists(&self.sidecar);
    }

    fn cancelled(&self) -> DownloadError {
        let _ = self.file.sync_data();
        DownloadError::Cancelled {
            url: self.req.url.clone(),
            part: self.part.clone(),
        }
    }

    /// `Started` once per call, when the first answer says how big the file is.
    fn emit_started(&mut self, total: Option<u64>) {
        if !self.started {
            self.started = true;
            self.emit(DownloadEvent::Started {
                url: self.req.url.clone(),
                total,
                resume_from: self.offset,
            });
        }
    }

    fn emit(&mut self, event: DownloadEvent) {
        (self.on_event)(event);
    }
}

/// What one [`fill`] read. Bytes read before an error are good and must be kept.
struct Fill {
    filled: usize,
    ended: bool,
    error: Option<std::io::Error>,
}

/// Reads until `buffer` is full, the body ends, an error, or `deadline` (so that on a slow line progress
/// and cancel are not held up for a whole buffer).
fn fill(body: &mut impl Read, buffer: &mut [u8], deadline: Instant) -> Fill {
    let mut filled = 0;
    while filled < buffer.len() {
        match body.read(&mut buffer[filled..]) {
            Ok(0) => {
                return Fill {
                    filled,
                    ended: true,
                    error: None,
                };
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Fill {
                    filled,
                    ended: true,
                    error: Some(e),
                };
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Fill {
        filled,
        ended: false,
        error: None,
    }
}

fn normalize_sha256(value: &str) -> Result<String, DownloadError> {
    let trimmed = value.trim().to_ascii_lowercase();
    if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(trimmed)
    } else {
        Err(DownloadError::InvalidChecksum {
            value: value.to_owned(),
        })
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn is_transient_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// `Retry-After` in seconds (the HTTP-date form is rare for downloads and falls back to our backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`), or `bytes */TOTAL` on a 416.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ContentRange {
    start: u64,
    total: Option<u64>,
}

fn parse_content_range(headers: &HeaderMap) -> Option<ContentRange> {
    parse_content_range_value(headers.get(header::CONTENT_RANGE)?.to_str().ok()?)
}

fn parse_content_range_value(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let start = match range.trim() {
        "*" => 0,
        r => {
            let (start, end) = r.split_once('-')?;
            let start: u64 = start.trim().parse().ok()?;
            let end: u64 = end.trim().parse().ok()?;
            if end < start {
                return None;
            }
            start
        }
    };
    Some(ContentRange { start, total })
}

fn read_sidecar(path: &Path) -> Option<PartState> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable download sidecar");
            None
        }
    }
}

fn write_sidecar(path: &Path, state: &PartState) -> Result<(), DownloadError> {
    let json = serde_json::to_vec_pretty(state).map_err(|e| DownloadError::io("encode", path, e.into()))?;
    crate::fsutil::write_atomic(path, &json).map_err(|e| match e {
        crate::Error::Io { source, .. } => DownloadError::io("write", path, source),
        other => DownloadError::io("write", path, std::io::Error::other(other.to_string())),
    })
}

fn remove_if_exists(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a download leftover");
    }
}

/// Refuses to start when the folder cannot hold the rest of the file. Unknown sizes and file systems that
/// cannot report free space are not checked (the write then fails with the OS's own "disk full").
fn check_free_space(dir: &Path, total: Option<u64>, have: u64) -> Result<(), DownloadError> {
    let Some(total) = total else { return Ok(()) };
    let needed = total.saturating_sub(have);
    match fs4::available_space(dir) {
        Ok(available) if available < needed => Err(DownloadError::InsufficientSpace {
            dir: dir.to_path_buf(),
            needed,
            available,
        }),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "free space unknown; not checked");
            Ok(())
        }
    }
}

/// The error and its causes on one line: reqwest's top-level message alone rarely says what went wrong.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::BUFFER_SIZE;
    use sha2::{Digest, Sha256};

    #[test]
    fn content_range_is_parsed_in_all_its_forms() {
        assert_eq!(
            parse_content_range_value("bytes 100-199/200"),
            Some(ContentRange {
                start: 100,
                total: Some(200)
            })
        );
        assert_eq!(
            parse_content_range_value("bytes 5-9/*"),
            Some(ContentRange {
                start: 5,
                total: None
            })
        );
        assert_eq!(
            parse_content_range_value("bytes */300"),
            Some(ContentRange {
                start: 0,
                total: Some(300)
            })
        );
        assert_eq!(parse_content_range_value("bytes 9-5/10"), None);
        assert_eq!(parse_content_range_value("items 0-1/2"), None);
        assert_eq!(parse_content_range_value("bytes x-1/2"), None);
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = policy.delay_after(1);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let third = policy.delay_after(3);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
                "{third:?}"
            );
            let late = policy.delay_after(30);
            assert!(
                late >= Duration::from_millis(500) && late <= Duration::from_secs(1),
                "{late:?}"
            );
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| policy.delay_after(4)).collect();
        assert!(spread.len() > 1, "jitter must vary the delay");
    }

    #[test]
    fn the_time_a_download_may_take_grows_with_its_size() {
        let policy = RetryPolicy {
            time_base: Duration::from_secs(60),
            time_bytes_per_sec: 1000,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.time_allowed(0), Duration::from_secs(60));
        assert_eq!(policy.time_allowed(2500), Duration::from_millis(62_500));
        // No overflow for absurd sizes or rates.
        assert!(policy.time_allowed(u64::MAX) > Duration::from_secs(1 << 40));
        let fast = RetryPolicy {
            time_bytes_per_sec: u64::MAX,
            ..policy
        };
        assert_eq!(
            fast.time_allowed(u64::MAX - 1),
            Duration::from_secs(60) + Duration::from_nanos(999_999_999)
        );
    }

    #[test]
    fn progress_that_resets_the_failures_is_a_real_share_of_the_file() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.progress_needed(None), 1 << 20);
        assert_eq!(policy.progress_needed(Some(100 << 20)), 1 << 20);
        assert_eq!(policy.progress_needed(Some(200_000)), 10_000);
        assert_eq!(policy.progress_needed(Some(5)), 1);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human_duration(Duration::from_secs(17 * 60 + 3)), "17 min 3 s");
        assert_eq!(
            human_duration(Duration::from_secs(2 * 3600 + 5 * 60 + 9)),
            "2 h 5 min"
        );
    }

    #[test]
    fn checksums_are_normalized_and_garbage_is_refused() {
        let upper = "AB".repeat(32);
        assert_eq!(normalize_sha256(&format!(" {upper}\n")).unwrap(), "ab".repeat(32));
        assert!(matches!(
            normalize_sha256("abc"),
            Err(DownloadError::InvalidChecksum { .. })
        ));
        assert!(normalize_sha256(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn if_range_prefers_a_strong_etag_then_last_modified() {
        let mut state = PartState {
            etag: Some("\"abc\"".into()),
            last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            ..Default::default()
        };
        assert_eq!(state.if_range(), Some("\"abc\""));
        state.etag = Some("W/\"abc\"".into());
        assert_eq!(state.if_range(), Some("Wed, 21 Oct 2015 07:28:00 GMT"));
        state.last_modified = None;
        assert_eq!(state.if_range(), None);
    }

    #[test]
    fn a_sidecar_only_matches_the_same_request() {
        let req = DownloadRequest {
            expected_size: Some(10),
            ..DownloadRequest::new("http://a/x", "/tmp/x")
        };
        let saved = PartState {
            etag: Some("\"e\"".into()),
            ..PartState::for_request(&req, &None)
        };
        assert!(saved.describes_same_request(&PartState::for_request(&req, &None)));
        let other_url = DownloadRequest::new("http://a/y", "/tmp/x");
        assert!(!saved.describes_same_request(&PartState::for_request(&other_url, &None)));
        assert!(!saved.describes_same_request(&PartState::for_request(&req, &Some("ab".repeat(32)))));
    }

    #[test]
    fn part_and_sidecar_sit_beside_the_destination() {
        let dest = Path::new("/d/app-1.0.tar.gz");
        assert_eq!(part_path(dest), Path::new("/d/app-1.0.tar.gz.part"));
        assert_eq!(sidecar_path(dest), Path::new("/d/app-1.0.tar.gz.part.json"));
    }

    #[test]
    fn the_hash_pipeline_hashes_every_buffer_in_order() {
        let data: Vec<u8> = (0..(BUFFER_SIZE * 3 + 17))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut pipeline = HashPipeline::start().unwrap();
        for chunk in data.chunks(BUFFER_SIZE / 2 + 5) {
            let mut buffer = pipeline.take_buffer();
            buffer[..chunk.len()].copy_from_slice(chunk);
            pipeline.submit(buffer, chunk.len());
        }
        assert_eq!(pipeline.finish().unwrap(), hex::encode(Sha256::digest(&data)));
    }

    #[test]
    fn progress_is_throttled_but_forced_updates_pass() {
        let mut meter = ProgressMeter::new();
        assert!(meter.progress(10, Some(100), false).is_some());
        assert!(meter.progress(20, Some(100), false).is_none());
        let forced = meter.progress(100, Some(100), true).unwrap();
        assert_eq!(forced.done, 100);
    }

    #[test]
    fn cancel_wakes_a_waiting_backoff() {
        let token = CancelToken::new();
        let other = token.clone();
        let waiter = std::thread::spawn(move || other.wait(Duration::from_secs(60)));
        token.cancel();
        assert!(waiter.join().unwrap());
    }
}
