//! Downloads one URL with the launcher's own engine (`download::download`, hashing included) and prints
//! the wall time, so `scripts/bench-download.sh` can compare it with `curl` and `sha256sum`.
//!
//! Usage: `bench_download URL DEST [SHA256]` — exits non-zero when the download or the check fails.

use std::process::ExitCode;
use std::time::Instant;

use personal_ai_agent::download::{CancelToken, DownloadRequest, RetryPolicy, download};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(dest)) = (args.next(), args.next()) else {
        eprintln!("usage: bench_download URL DEST [SHA256]");
        return ExitCode::from(2);
    };
    let req = DownloadRequest {
        expected_sha256: args.next(),
        ..DownloadRequest::new(url, dest)
    };
    let client = match personal_ai_agent::http::client() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    match download(
        &client,
        &req,
        &RetryPolicy::default(),
        &CancelToken::new(),
        &mut |_| {},
    ) {
        Ok(outcome) => {
            let secs = started.elapsed().as_secs_f64();
            println!("{secs:.3} {} {}", outcome.size, outcome.sha256);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
