//! SHA256 on a second thread, so hashing overlaps the I/O it checks: [`HashPipeline`] for a writer that
//! hands over the buffers it wrote (downloads), [`HashingReader`] for a reader whose every byte must be
//! hashed on its way through (unpacking an archive while verifying it).

use std::io::Read;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Size of one streaming buffer. Large enough that per-buffer overhead (a thread hand-off, a `write`) is
/// negligible — 1 MiB measured cheaper than 256 KiB, see docs/PERFORMANCE.md — and small enough that the
/// hashing thread reads data that is still in cache.
pub(crate) const BUFFER_SIZE: usize = 1024 * 1024;
/// Buffers in flight between the writer and the hashing thread; memory used is `BUFFERS * BUFFER_SIZE`.
pub(crate) const BUFFERS: usize = 4;
/// Hashes buffers on a named thread. Buffers circulate: the writer takes a free one, fills it, writes it to
/// disk and submits it; the hashing thread hashes it and hands it back. Only `BUFFERS` buffers ever exist.
pub(crate) struct HashPipeline {
    to_hasher: Option<SyncSender<(Vec<u8>, usize)>>,
    free: Receiver<Vec<u8>>,
    /// Returns a buffer that was taken but not filled, so the pool never shrinks.
    give_back: Sender<Vec<u8>>,
    worker: Option<JoinHandle<Sha256>>,
}

impl HashPipeline {
    pub(crate) fn start() -> std::io::Result<Self> {
        let (to_hasher, filled) = mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
        let (give_back, free) = mpsc::channel::<Vec<u8>>();
        for _ in 0..BUFFERS {
            // The receiver is alive (it is `free`, below), so this cannot fail.
            let _ = give_back.send(vec![0; BUFFER_SIZE]);
        }
        let worker_give_back = give_back.clone();
        let worker = std::thread::Builder::new()
            .name("download-sha256".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                for (buffer, len) in filled {
                    hasher.update(&buffer[..len]);
                    // The writer may have stopped taking buffers (finish or drop); nothing to do then.
                    let _ = worker_give_back.send(buffer);
                }
                hasher
            })?;
        Ok(HashPipeline {
            to_hasher: Some(to_hasher),
            free,
            give_back,
            worker: Some(worker),
        })
    }

    /// A buffer to fill; waits while all buffers are being hashed (that is the back-pressure).
    pub(crate) fn take_buffer(&self) -> Vec<u8> {
        loop {
            match self.free.recv_timeout(Duration::from_millis(200)) {
                Ok(buffer) => return buffer,
                // If the hashing thread died, the buffers it held are gone and waiting would never end: go
                // on with a fresh one; `finish` reports the failure.
                Err(mpsc::RecvTimeoutError::Timeout)
                    if !self.worker.as_ref().is_some_and(|w| w.is_finished()) => {}
                Err(_) => return vec![0; BUFFER_SIZE],
            }
        }
    }

    pub(crate) fn recycle(&self, buffer: Vec<u8>) {
        let _ = self.give_back.send(buffer);
    }

    pub(crate) fn submit(&self, buffer: Vec<u8>, len: usize) {
        if let Some(tx) = &self.to_hasher {
            let _ = tx.send((buffer, len));
        }
    }

    /// Waits for every submitted buffer to be hashed; the lowercase hex digest.
    pub(crate) fn finish(&mut self) -> std::io::Result<String> {
        drop(self.to_hasher.take());
        let worker = self
            .worker
            .take()
            .ok_or_else(|| std::io::Error::other("hashing thread missing"))?;
        let hasher = worker
            .join()
            .map_err(|_| std::io::Error::other("the hashing thread panicked"))?;
        Ok(hex::encode(hasher.finalize()))
    }
}

impl Drop for HashPipeline {
    fn drop(&mut self) {
        drop(self.to_hasher.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// A reader that hands every byte it passes on to a [`HashPipeline`]: what the caller reads is exactly
/// what was hashed, so checking [`HashingReader::finish`] against the expected hash after the last byte
/// closes the gap between "checked" and "used" that hashing a file first and reading it again leaves.
pub(crate) struct HashingReader<R> {
    inner: R,
    pipeline: HashPipeline,
    buffer: Vec<u8>,
    filled: usize,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> std::io::Result<Self> {
        let pipeline = HashPipeline::start()?;
        let buffer = pipeline.take_buffer();
        Ok(HashingReader {
            inner,
            pipeline,
            buffer,
            filled: 0,
            bytes: 0,
        })
    }

    /// Reads what is left (a compressed stream may end before its file does: trailing bytes are part of
    /// what was signed), then the lowercase hex SHA256 of everything read and the byte count.
    pub(crate) fn finish(mut self) -> std::io::Result<(String, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        let buffer = std::mem::take(&mut self.buffer);
        self.pipeline.submit(buffer, self.filled);
        Ok((self.pipeline.finish()?, self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        let mut rest = &out[..n];
        while !rest.is_empty() {
            if self.filled == self.buffer.len() {
                let full = std::mem::replace(&mut self.buffer, self.pipeline.take_buffer());
                self.pipeline.submit(full, self.filled);
                self.filled = 0;
            }
            let take = rest.len().min(self.buffer.len() - self.filled);
            self.buffer[self.filled..self.filled + take].copy_from_slice(&rest[..take]);
            self.filled += take;
            rest = &rest[take..];
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_every_byte_read_and_what_was_left_unread() {
        let data: Vec<u8> = (0..(BUFFER_SIZE * 2 + 1000))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut reader = HashingReader::new(&data[..]).unwrap();
        let mut first = vec![0; BUFFER_SIZE + 3];
        reader.read_exact(&mut first).unwrap();
        let (hash, bytes) = reader.finish().unwrap();
        assert_eq!(bytes, data.len() as u64);
        assert_eq!(hash, hex::encode(Sha256::digest(&data)));
    }
}
