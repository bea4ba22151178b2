//! The backend's output: every line of its stdout and stderr, and the launcher's own notes about it
//! (started, crashed, restarting), go to a rotated log file and to an in-memory tail for the window.
//!
//! Lines are written as `<UTC time> <source> | <text>` where source is `out`, `err` or `launcher`, so one
//! file tells the whole story of a crash. The file rotates at a size limit (`backend.log` →
//! `backend.log.1` → … → `backend.log.<keep>`), so a chatty backend cannot fill the disk.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineSource {
    Stdout,
    Stderr,
    Launcher,
}

impl LineSource {
    fn label(self) -> &'static str {
        match self {
            LineSource::Stdout => "out",
            LineSource::Stderr => "err",
            LineSource::Launcher => "launcher",
        }
    }
}

/// The log file and the in-memory tail, shared by the reader threads and the supervisor.
pub(crate) struct LogSink {
    inner: Mutex<SinkInner>,
    /// Told about new lines, at most every [`HOOK_INTERVAL`] (the window repaints its log view).
    on_line: Mutex<Option<LineHook>>,
}

pub(crate) type LineHook = Arc<dyn Fn() + Send + Sync>;

/// A chatty backend must not make the window repaint for every line.
const HOOK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct SinkInner {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    keep: usize,
    tail: VecDeque<String>,
    tail_lines: usize,
    /// Lines recorded so far (a change counter for viewers).
    written: u64,
    /// Whether a failure to write the file was already reported (report once, not per line).
    write_failure_reported: bool,
    last_hook_call: Option<std::time::Instant>,
}

impl LogSink {
    pub(crate) fn new(path: PathBuf, max_bytes: u64, keep: usize, tail_lines: usize) -> Self {
        LogSink {
            inner: Mutex::new(SinkInner {
                path,
                file: None,
                size: 0,
                max_bytes: max_bytes.max(1024),
                keep,
                tail: VecDeque::with_capacity(tail_lines.min(4096)),
                tail_lines,
                written: 0,
                write_failure_reported: false,
                last_hook_call: None,
            }),
            on_line: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SinkInner> {
        // A panic while holding the lock leaves plain data behind; keep logging rather than cascade.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records one line in the tail and the file.
    pub(crate) fn line(&self, source: LineSource, text: &str) {
        let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let line = format!(
            "{stamp} {} | {}",
            source.label(),
            text.trim_end_matches(['\r', '\n'])
        );
        let mut inner = self.lock();
        inner.written += 1;
        if inner.tail.len() >= inner.tail_lines {
            inner.tail.pop_front();
        }
        if inner.tail_lines > 0 {
            inner.tail.push_back(line.clone());
        }
        if let Err(e) = inner.write(&line) {
            inner.file = None;
            if !inner.write_failure_reported {
                inner.write_failure_reported = true;
                tracing::warn!("cannot write the backend log {}: {e}", inner.path.display());
            }
        }
        let due = inner
            .last_hook_call
            .is_none_or(|at| at.elapsed() >= HOOK_INTERVAL);
        if due {
            inner.last_hook_call = Some(std::time::Instant::now());
        }
        drop(inner);
        if due {
            let hook = self.on_line.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(hook) = hook {
                hook();
            }
        }
    }

    pub(crate) fn set_on_line(&self, hook: LineHook) {
        *self.on_line.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// How many lines were recorded so far.
    pub(crate) fn written(&self) -> u64 {
        self.lock().written
    }

    /// The last lines, oldest first.
    pub(crate) fn tail(&self) -> Vec<String> {
        self.lock().tail.iter().cloned().collect()
    }

    /// The last `n` lines, oldest first.
    pub(crate) fn last(&self, n: usize) -> Vec<String> {
        let inner = self.lock();
        inner
            .tail
            .iter()
            .skip(inner.tail.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

impl SinkInner {
    fn write(&mut self, line: &str) -> std::io::Result<()> {
        let needed = line.len() as u64 + 1;
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        if self.size > 0 && self.size + needed > self.max_bytes {
            self.file = None;
            rotate(&self.path, self.keep)?;
            self.file = Some(OpenOptions::new().create(true).append(true).open(&self.path)?);
            self.size = 0;
        }
        if let Some(file) = self.file.as_mut() {
            file.write_all(format!("{line}\n").as_bytes())?;
            self.size += needed;
        }
        Ok(())
    }
}

/// `backend.log.<keep-1>` → `.<keep>`, …, `backend.log` → `backend.log.1`; the oldest falls off.
fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let numbered = |n: usize| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

/// Copies each line of a child's stream into the sink until the stream closes.
pub(crate) fn pump(stream: impl Read, source: LineSource, sink: Arc<LogSink>) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) => break,
            // The backend's output need not be UTF-8; show what it can of it rather than drop the line.
            Ok(_) => sink.line(source, &String::from_utf8_lossy(&buffer)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// The last `n` lines of a log file, oldest first; an empty list when it does not exist yet.
pub fn read_last_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    // Read backwards in growing chunks until enough lines are in, so a 10 MiB file costs little.
    let mut chunk = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(chunk);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        Read::by_ref(&mut file)
            .take(len - start)
            .read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes);
        let mut lines: Vec<&str> = text.lines().collect();
        // A chunk that starts mid-file may start mid-line: that first piece is not a whole line.
        if start > 0 && !lines.is_empty() {
            lines.remove(0);
        }
        if lines.len() >= n || start == 0 {
            return Ok(lines[lines.len().saturating_sub(n)..]
                .iter()
                .map(|l| (*l).to_owned())
                .collect());
        }
        chunk *= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_only_the_newest_lines() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LogSink::new(dir.path().join("b.log"), 1 << 20, 3, 3);
        for i in 0..5 {
            sink.line(LineSource::Stdout, &format!("line {i}\n"));
        }
        let tail = sink.tail();
        assert_eq!(tail.len(), 3);
        assert!(
            tail[0].ends_with("out | line 2") && tail[2].ends_with("out | line 4"),
            "{tail:?}"
        );
        assert_eq!(sink.last(1), &tail[2..]);
    }

    #[test]
    fn the_line_hook_is_throttled_so_a_chatty_backend_does_not_flood_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LogSink::new(dir.path().join("b.log"), 1 << 20, 1, 10);
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        sink.set_on_line(Arc::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        for i in 0..50 {
            sink.line(LineSource::Stdout, &format!("{i}"));
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        std::thread::sleep(HOOK_INTERVAL);
        sink.line(LineSource::Stdout, "later");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn the_file_rotates_at_its_size_limit_and_keeps_a_bounded_number_of_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backend.log");
        let sink = LogSink::new(path.clone(), 2048, 2, 10);
        for i in 0..200 {
            sink.line(LineSource::Stderr, &format!("{i:04} {}", "x".repeat(40)));
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 2048 && size(&path) > 0);
        assert!(dir.path().join("backend.log.1").exists() && dir.path().join("backend.log.2").exists());
        assert!(!dir.path().join("backend.log.3").exists());
        let last = read_last_lines(&path, 2).unwrap();
        assert!(last[1].ends_with(&format!("0199 {}", "x".repeat(40))), "{last:?}");
        assert!(last[0].contains("| 0198 "), "{last:?}");
    }

    #[test]
    fn reading_the_last_lines_of_a_large_file_returns_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        let text: String = (0..20_000).map(|i| format!("line number {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let last = read_last_lines(&path, 3).unwrap();
        assert_eq!(
            last,
            ["line number 19997", "line number 19998", "line number 19999"]
        );
        let all = read_last_lines(&path, 50_000).unwrap();
        assert_eq!(all.len(), 20_000);
        assert!(
            read_last_lines(&dir.path().join("none.log"), 5)
                .unwrap()
                .is_empty()
        );
    }
}
