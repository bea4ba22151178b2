//! Downloads against a local server: verification, resume after a dropped connection / cancel / restart,
//! servers that ignore ranges or change the file, retries, refusals, and redirects that must not leak the
//! token to another host.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use personal_ai_agent::download::{
    CancelToken, DownloadError, DownloadEvent, DownloadOutcome, DownloadRequest, RetryPolicy, download,
    part_path, sidecar_path, spawn_download,
};
use sha2::{Digest, Sha256};

use crate::support::{Request, Response, TestServer, serve_bytes, temp_home};

const ETAG: &str = "\"v1\"";

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    }
}

fn client() -> reqwest::blocking::Client {
    personal_ai_agent::http::client().unwrap()
}

/// Pseudo-random bytes; the seed is printed by failing assertions so a failure can be replayed.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut data = vec![0; len];
    rng.fill(&mut data);
    data
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn request_for(server: &TestServer, dir: &Path, data: &[u8]) -> DownloadRequest {
    DownloadRequest {
        expected_size: Some(data.len() as u64),
        expected_sha256: Some(sha256_hex(data)),
        ..DownloadRequest::new(format!("{}/asset.tar.gz", server.url()), dir.join("asset.tar.gz"))
    }
}

fn run(
    req: &DownloadRequest,
    cancel: &CancelToken,
) -> (Result<DownloadOutcome, DownloadError>, Vec<DownloadEvent>) {
    let mut events = Vec::new();
    let result = download(&client(), req, &fast_retries(), cancel, &mut |e| events.push(e));
    (result, events)
}

fn assert_no_leftovers(dest: &Path) {
    assert!(!part_path(dest).exists(), "the .part file must be gone");
    assert!(!sidecar_path(dest).exists(), "the sidecar must be gone");
}

/// Counts requests so a handler can answer the first ones differently.
fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

#[test]
fn a_full_download_is_hashed_verified_and_moved_into_place() {
    let home = temp_home();
    let data = random_bytes(1, 1_500_000);
    let served = data.clone();
    let server = TestServer::start(move |req| serve_bytes(req, &served, ETAG));
    let req = request_for(&server, home.path(), &data);

    let (result, events) = run(&req, &CancelToken::new());
    let outcome = result.unwrap();

    assert_eq!(outcome.sha256, sha256_hex(&data));
    assert_eq!(outcome.size, data.len() as u64);
    assert_eq!(outcome.resumed_from, 0);
    assert_eq!(std::fs::read(&req.dest).unwrap(), data);
    assert_no_leftovers(&req.dest);
    assert!(
        matches!(events.first(), Some(DownloadEvent::Started { total: Some(t), resume_from: 0, .. }) if *t == data.len() as u64)
    );
    assert!(events.contains(&DownloadEvent::Verifying));
    assert_eq!(events.last(), Some(&DownloadEvent::Done(outcome)));
    let last_progress = events.iter().rev().find_map(|e| match e {
        DownloadEvent::Progress(p) => Some(p.clone()),
        _ => None,
    });
    assert_eq!(
        last_progress.map(|p| (p.done, p.total)),
        Some((data.len() as u64, Some(data.len() as u64)))
    );
}

#[test]
fn tampered_bytes_are_reported_with_both_hashes_and_the_part_file_is_deleted() {
    let home = temp_home();
    let data = random_bytes(2, 600_000);
    let mut tampered = data.clone();
    tampered[300_000] ^= 0x55;
    let tampered_sha = sha256_hex(&tampered);
    let server = TestServer::start(move |req| serve_bytes(req, &tampered, ETAG));
    let req = request_for(&server, home.path(), &data);

    let err = run(&req, &CancelToken::new()).0.unwrap_err();

    match &err {
        DownloadError::HashMismatch {
            file,
            expected,
            actual,
        } => {
            assert_eq!(file, &req.dest);
            assert_eq!(expected, &sha256_hex(&data));
            assert_eq!(actual, &tampered_sha);
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("asset.tar.gz")
            && message.contains(&sha256_hex(&data))
            && message.contains(&tampered_sha)
    );
    assert!(!req.dest.exists());
    assert_no_leftovers(&req.dest);
}

#[test]
fn a_truncated_file_on_the_server_is_a_size_mismatch_and_leaves_nothing() {
    let home = temp_home();
    let data = random_bytes(3, 400_000);
    let truncated = data[..data.len() - 1000].to_vec();
    let server = TestServer::start(move |req| serve_bytes(req, &truncated, ETAG));
    let req = request_for(&server, home.path(), &data);

    let err = run(&req, &CancelToken::new()).0.unwrap_err();

    assert!(
        matches!(err, DownloadError::SizeMismatch { expected, actual, .. } if expected == 400_000 && actual == 399_000),
        "{err:?}"
    );
    assert!(err.to_string().contains(&req.url));
    assert!(!req.dest.exists());
    assert_no_leftovers(&req.dest);
}

#[test]
fn a_server_announcing_another_size_than_expected_is_refused_and_cleaned_up() {
    let home = temp_home();
    let data = random_bytes(4, 700_000);
    let longer = [data.as_slice(), &[0u8; 5000]].concat();
    let server = TestServer::start(move |req| serve_bytes(req, &longer, ETAG));
    let req = request_for(&server, home.path(), &data);

    let err = run(&req, &CancelToken::new()).0.unwrap_err();

    assert!(
        matches!(
            err,
            DownloadError::SizeMismatch {
                expected: 700_000,
                actual: 705_000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!req.dest.exists());
    assert_no_leftovers(&req.dest);
}

#[test]
fn a_connection_dropped_at_a_random_offset_resumes_with_range_and_if_range() {
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let home = temp_home();
    let data = random_bytes(seed, 900_000);
    let cut = rng.usize(1..data.len() - 1);
    let served = data.clone();
    let calls = counter();
    let seen = calls.clone();
    let server = TestServer::start(move |req| {
        let response = serve_bytes(req, &served, ETAG);
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            response.drop_after(cut)
        } else {
            response
        }
    });
    let req = request_for(&server, home.path(), &data);

    let (result, events) = run(&req, &CancelToken::new());
    let outcome = result.unwrap_or_else(|e| panic!("seed {seed}, cut {cut}: {e}"));

    assert_eq!(outcome.sha256, sha256_hex(&data), "seed {seed}");
    assert_eq!(std::fs::read(&req.dest).unwrap(), data, "seed {seed}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "seed {seed}, cut {cut}");
    assert_eq!(requests[0].header("range"), None);
    assert_eq!(
        requests[1].header("range"),
        Some(format!("bytes={cut}-").as_str()),
        "seed {seed}"
    );
    assert_eq!(requests[1].header("if-range"), Some(ETAG));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DownloadEvent::Retrying { attempt: 2, .. }))
    );
    assert!(
        events.contains(&DownloadEvent::Resumed { from: cut as u64 }),
        "seed {seed}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, DownloadEvent::Restarted { .. }))
    );
    assert_no_leftovers(&req.dest);
}

#[test]
fn a_server_that_ignores_range_makes_the_download_start_over_and_still_succeed() {
    let home = temp_home();
    let data = random_bytes(5, 800_000);
    let served = data.clone();
    let calls = counter();
    let seen = calls.clone();
    let server = TestServer::start(move |_| {
        let whole = Response::bytes(served.clone()).header("etag", ETAG);
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            whole.drop_after(300_000)
        } else {
            whole
        }
    });
    let req = request_for(&server, home.path(), &data);

    let (result, events) = run(&req, &CancelToken::new());
    let outcome = result.unwrap();

    assert_eq!(outcome.sha256, sha256_hex(&data));
    assert_eq!(outcome.resumed_from, 0);
    assert_eq!(std::fs::read(&req.dest).unwrap(), data);
    assert_eq!(server.requests()[1].header("range"), Some("bytes=300000-"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DownloadEvent::Restarted { .. }))
    );
    assert!(!events.iter().any(|e| matches!(e, DownloadEvent::Resumed { .. })));
}

#[test]
fn a_file_whose_etag_changed_between_attempts_is_downloaded_again_from_the_start() {
    let home = temp_home();
    let old = random_bytes(6, 500_000);
    let new = random_bytes(7, 520_000);
    let (old_served, new_served) = (old.clone(), new.clone());
    let calls = counter();
    let seen = calls.clone();
    let server = TestServer::start(move |req| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            serve_bytes(req, &old_served, "\"old\"").drop_after(200_000)
        } else {
            serve_bytes(req, &new_served, "\"new\"")
        }
    });
    let req = DownloadRequest::new(
        format!("{}/asset.tar.gz", server.url()),
        home.path().join("asset.tar.gz"),
    );

    let (result, events) = run(&req, &CancelToken::new());
    let outcome = result.unwrap();

    assert_eq!(server.requests()[1].header("if-range"), Some("\"old\""));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DownloadEvent::Restarted { .. }))
    );
    assert_eq!(outcome.sha256, sha256_hex(&new));
    assert_eq!(std::fs::read(&req.dest).unwrap(), new);
}

#[test]
fn server_errors_are_retried_with_backoff_until_the_download_succeeds() {
    let home = temp_home();
    let data = random_bytes(8, 100_000);
    let served = data.clone();
    let calls = counter();
    let seen = calls.clone();
    let server = TestServer::start(move |req| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            Response::new(503)
        } else {
            serve_bytes(req, &served, ETAG)
        }
    });
    let req = request_for(&server, home.path(), &data);

    let (result, events) = run(&req, &CancelToken::new());

    assert_eq!(result.unwrap().sha256, sha256_hex(&data));
    assert_eq!(server.requests().len(), 3);
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            DownloadEvent::Retrying { attempt, reason, .. } => {
                assert!(reason.contains("503"), "{reason}");
                Some(*attempt)
            }
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [2, 3]);
}

#[test]
fn connections_dropped_before_the_first_byte_again_and_again_do_not_stall_the_download() {
    let home = temp_home();
    let data = random_bytes(17, 200_000);
    let served = data.clone();
    let calls = counter();
    let seen = calls.clone();
    let server = TestServer::start(move |req| {
        let response = serve_bytes(req, &served, ETAG);
        if seen.fetch_add(1, Ordering::SeqCst) < 7 {
            response.drop_after(0)
        } else {
            response
        }
    });
    let req = request_for(&server, home.path(), &data);
    let patient = RetryPolicy {
        max_attempts: 10,
        ..fast_retries()
    };

    let outcome = download(&client(), &req, &patient, &CancelToken::new(), &mut |_| {}).unwrap();

    assert_eq!(outcome.sha256, sha256_hex(&data));
    assert_eq!(server.requests().len(), 8);
}

#[test]
fn persistent_server_errors_end_in_a_clear_error_after_the_last_try() {
    let home = temp_home();
    let server = TestServer::start(|_| Response::new(500));
    let req = DownloadRequest::new(
        format!("{}/asset.tar.gz", server.url()),
        home.path().join("asset.tar.gz"),
    );

    let err = run(&req, &CancelToken::new()).0.unwrap_err();

    assert!(
        matches!(err, DownloadError::RetriesExhausted { attempts: 4, .. }),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 4);
    let message = err.to_string();
    assert!(message.contains(&req.url) && message.contains("500"), "{message}");
}

#[test]
fn a_long_retry_after_is_capped_by_the_policy() {
    let home = temp_home();
    let data = random_bytes(15, 50_000);
    let served = data.clone();
    let calls = counter();
    let seen = calls.clone();
    let server = TestServer::start(move |req| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Response::new(429).header("retry-after", "3600")
        } else {
            serve_bytes(req, &served, ETAG)
        }
    });
    let req = request_for(&server, home.path(), &data);

    let (result, events) = run(&req, &CancelToken::new());

    assert_eq!(result.unwrap().sha256, sha256_hex(&data));
    let delays: Vec<Duration> = events
        .iter()
        .filter_map(|e| match e {
            DownloadEvent::Retrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [fast_retries().max_delay]);
}

#[test]
fn without_a_validator_or_a_hash_a_broken_download_starts_over_instead_of_splicing() {
    let home = temp_home();
    let data = random_bytes(16, 400_000);
    let served = data.clone();
    let calls = counter();
    let seen = calls.clone();
    let server = TestServer::start(move |_| {
        // No ETag, no Last-Modified.
        let whole = Response::bytes(served.clone());
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            whole.drop_after(150_000)
        } else {
            whole
        }
    });
    let req = DownloadRequest::new(
        format!("{}/asset.tar.gz", server.url()),
        home.path().join("asset.tar.gz"),
    );

    let (result, events) = run(&req, &CancelToken::new());

    assert_eq!(result.unwrap().sha256, sha256_hex(&data));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].header("range"), None);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DownloadEvent::Restarted { .. }))
    );
}

#[test]
fn a_second_download_of_the_same_file_at_the_same_time_is_refused() {
    let home = temp_home();
    let server = TestServer::start(|req| serve_bytes(req, b"data", ETAG));
    let req = DownloadRequest::new(
        format!("{}/asset.tar.gz", server.url()),
        home.path().join("asset.tar.gz"),
    );
    let held = std::fs::File::create(part_path(&req.dest)).unwrap();
    held.lock().unwrap();

    let err = run(&req, &CancelToken::new()).0.unwrap_err();

    assert!(
        matches!(&err, DownloadError::Busy { part } if *part == part_path(&req.dest)),
        "{err:?}"
    );
    assert!(server.requests().is_empty());
    drop(held);
    assert!(
        run(&req, &CancelToken::new()).0.is_ok(),
        "the lock is gone with its holder"
    );
}

#[test]
fn a_missing_file_is_not_retried_and_the_error_names_the_url() {
    let home = temp_home();
    let server = TestServer::start(|_| Response::new(404));
    let req = DownloadRequest::new(
        format!("{}/gone.tar.gz", server.url()),
        home.path().join("gone.tar.gz"),
    );

    let (result, events) = run(&req, &CancelToken::new());
    let err = result.unwrap_err();

    assert!(
        matches!(err, DownloadError::HttpStatus { status: 404, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&req.url));
    assert_eq!(server.requests().len(), 1);
    assert!(!events.iter().any(|e| matches!(e, DownloadEvent::Retrying { .. })));
}

/// GitHub answers an asset request with a 302 to a storage host: the token must stay with GitHub.
fn redirect_keeps_the_token_on_its_own_host(client: reqwest::blocking::Client) {
    let home = temp_home();
    let data = random_bytes(9, 300_000);
    let served = data.clone();
    let storage = TestServer::start(move |req| serve_bytes(req, &served, ETAG));
    let storage_url = format!("{}/blob/asset?sig=abc", storage.url());
    let api =
        TestServer::start(move |_: &Request| Response::new(302).header("location", storage_url.clone()));
    let req = DownloadRequest {
        auth_token: Some("secret-token".into()),
        accept: Some("application/octet-stream".into()),
        ..request_for(&api, home.path(), &data)
    };

    let outcome = download(&client, &req, &fast_retries(), &CancelToken::new(), &mut |_| {}).unwrap();

    assert_eq!(outcome.sha256, sha256_hex(&data));
    let api_requests = api.requests();
    assert_eq!(
        api_requests[0].header("authorization"),
        Some("Bearer secret-token")
    );
    assert_eq!(api_requests[0].header("accept"), Some("application/octet-stream"));
    let storage_requests = storage.requests();
    assert_eq!(storage_requests.len(), 1);
    assert_eq!(storage_requests[0].path, "/blob/asset?sig=abc");
    assert_eq!(
        storage_requests[0].header("authorization"),
        None,
        "the token leaked to the storage host"
    );
}

#[test]
fn a_redirect_to_another_host_followed_by_reqwest_drops_the_token() {
    redirect_keeps_the_token_on_its_own_host(client());
}

#[test]
fn a_redirect_handed_back_by_a_client_that_does_not_follow_is_followed_without_the_token() {
    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    redirect_keeps_the_token_on_its_own_host(no_redirects);
}

/// Downloads `data` and cancels after the first progress event (the first buffer is on disk); returns the
/// server and the request so a second call can resume.
fn cancelled_half_way(home: &Path, data: &[u8]) -> (TestServer, DownloadRequest) {
    let served = data.to_vec();
    let server = TestServer::start(move |req| serve_bytes(req, &served, ETAG));
    let req = request_for(&server, home, data);
    let cancel = CancelToken::new();
    let result = download(&client(), &req, &fast_retries(), &cancel, &mut |event| {
        if matches!(event, DownloadEvent::Progress(_)) {
            cancel.cancel();
        }
    });
    let err = result.unwrap_err();
    assert!(matches!(err, DownloadError::Cancelled { .. }), "{err:?}");
    assert!(err.to_string().contains("resumes"));
    (server, req)
}

#[test]
fn a_background_download_reports_its_events_over_a_channel() {
    let home = temp_home();
    let data = random_bytes(14, 1_000_000);
    let served = data.clone();
    let server = TestServer::start(move |req| serve_bytes(req, &served, ETAG));
    let req = request_for(&server, home.path(), &data);

    let (handle, events) = spawn_download(client(), req.clone(), fast_retries(), CancelToken::new()).unwrap();
    let events: Vec<DownloadEvent> = events.iter().collect();
    let outcome = handle.join().unwrap().unwrap();

    assert_eq!(outcome.sha256, sha256_hex(&data));
    assert!(matches!(events.first(), Some(DownloadEvent::Started { .. })));
    assert!(events.iter().any(|e| matches!(e, DownloadEvent::Progress(_))));
    assert_eq!(events.last(), Some(&DownloadEvent::Done(outcome)));
}

#[test]
fn a_cancelled_download_keeps_its_part_file_and_the_next_call_resumes_it() {
    let home = temp_home();
    let data = random_bytes(10, 3_000_000);
    let (server, req) = cancelled_half_way(home.path(), &data);
    let kept = std::fs::metadata(part_path(&req.dest)).unwrap().len();
    assert!(kept > 0 && kept < data.len() as u64, "kept {kept} bytes");
    assert!(sidecar_path(&req.dest).exists());
    assert!(!req.dest.exists());

    let (result, events) = run(&req, &CancelToken::new());
    let outcome = result.unwrap();

    assert_eq!(outcome.resumed_from, kept);
    assert_eq!(outcome.sha256, sha256_hex(&data));
    assert_eq!(std::fs::read(&req.dest).unwrap(), data);
    assert!(events.contains(&DownloadEvent::Resumed { from: kept }));
    let last = server.requests().pop().unwrap();
    assert_eq!(last.header("range"), Some(format!("bytes={kept}-").as_str()));
    assert_eq!(last.header("if-range"), Some(ETAG));
    assert_no_leftovers(&req.dest);
}

#[test]
fn after_a_restart_the_part_prefix_is_rehashed_so_a_corrupted_prefix_is_caught() {
    let home = temp_home();
    let data = random_bytes(11, 3_000_000);
    let (_server, req) = cancelled_half_way(home.path(), &data);
    // A crash can leave garbage in the partial file; the resumed download must not trust it.
    let part = part_path(&req.dest);
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&part, bytes).unwrap();

    let err = run(&req, &CancelToken::new()).0.unwrap_err();

    assert!(matches!(err, DownloadError::HashMismatch { .. }), "{err:?}");
    assert_no_leftovers(&req.dest);
}

#[test]
fn a_part_file_left_for_another_url_is_not_resumed() {
    let home = temp_home();
    let data = random_bytes(12, 3_000_000);
    let (server, req) = cancelled_half_way(home.path(), &data);
    let other = DownloadRequest {
        url: format!("{}/other.tar.gz", server.url()),
        ..req.clone()
    };

    let (result, events) = run(&other, &CancelToken::new());

    assert_eq!(result.unwrap().resumed_from, 0);
    assert_eq!(server.requests().last().unwrap().header("range"), None);
    assert!(!events.iter().any(|e| matches!(e, DownloadEvent::Resumed { .. })));
}

#[test]
fn a_download_that_cannot_fit_on_the_disk_is_refused_before_any_request() {
    let home = temp_home();
    let server = TestServer::start(|_| Response::new(200));
    let req = DownloadRequest {
        expected_size: Some(u64::MAX / 4),
        ..DownloadRequest::new(format!("{}/huge.bin", server.url()), home.path().join("huge.bin"))
    };

    let err = run(&req, &CancelToken::new()).0.unwrap_err();

    match &err {
        DownloadError::InsufficientSpace {
            dir,
            needed,
            available,
        } => {
            assert_eq!(dir, home.path());
            assert_eq!(*needed, u64::MAX / 4);
            assert!(available < needed);
        }
        other => panic!("expected insufficient space, got {other:?}"),
    }
    assert!(err.to_string().contains("free some space"));
    assert!(server.requests().is_empty());
    assert_no_leftovers(&req.dest);
}

#[test]
fn a_download_whose_size_the_server_announces_as_too_big_is_refused_and_cleaned_up() {
    let home = temp_home();
    let huge = u64::MAX / 4;
    // Only the header claims the size; the body is never read.
    let server = TestServer::start(move |_| Response::new(200).header("content-length", huge.to_string()));
    let req = DownloadRequest::new(format!("{}/huge.bin", server.url()), home.path().join("huge.bin"));

    let err = run(&req, &CancelToken::new()).0.unwrap_err();

    assert!(
        matches!(err, DownloadError::InsufficientSpace { needed, .. } if needed == huge),
        "{err:?}"
    );
    assert_no_leftovers(&req.dest);
}

#[test]
fn a_complete_part_file_left_before_the_rename_is_verified_without_downloading_again() {
    let home = temp_home();
    let data = random_bytes(13, 3_000_000);
    let (server, req) = cancelled_half_way(home.path(), &data);
    // As if the process died after the last byte but before the rename.
    std::fs::write(part_path(&req.dest), &data).unwrap();
    let before = server.requests().len();

    let outcome = run(&req, &CancelToken::new()).0.unwrap();

    assert_eq!(outcome.sha256, sha256_hex(&data));
    assert_eq!(outcome.resumed_from, data.len() as u64);
    let requests = server.requests();
    assert_eq!(requests.len(), before + 1);
    assert_eq!(
        requests[before].header("range"),
        Some(format!("bytes={}-", data.len()).as_str())
    );
    assert_no_leftovers(&req.dest);
}

/// Cancels `cancel` once `server` has answered `requests` requests: a guard for the tests below, whose
/// server would otherwise keep a download that never gives up (the old engine) going for ever.
fn cancel_after_requests(requests: usize, cancel: &CancelToken) -> impl Fn() + Send + Sync + 'static {
    let (cancel, seen) = (cancel.clone(), counter());
    move || {
        if seen.fetch_add(1, Ordering::SeqCst) + 1 >= requests {
            cancel.cancel();
        }
    }
}

/// Cancels `cancel` after `limit` unless the returned guard is dropped first: the test's own timeout, so a
/// download that never gives up fails the test instead of hanging it.
fn watchdog(limit: Duration, cancel: &CancelToken) -> std::sync::mpsc::Sender<()> {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let cancel = cancel.clone();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
            cancel.cancel();
        }
    });
    done
}

fn gave_up(result: Result<DownloadOutcome, DownloadError>) -> DownloadError {
    let err = result.expect_err("the download must give up");
    assert!(
        matches!(err, DownloadError::TooSlow { .. }),
        "expected the download to give up on the server, got {err:?}"
    );
    err
}

#[test]
fn a_server_that_sends_a_few_bytes_and_closes_every_time_is_given_up_on_with_the_reason() {
    let home = temp_home();
    let data = random_bytes(18, 200_000);
    let served = data.clone();
    let cancel = CancelToken::new();
    let guard = cancel_after_requests(50, &cancel);
    let server = TestServer::start(move |req| {
        guard();
        serve_bytes(req, &served, ETAG).drop_after(10)
    });
    let req = request_for(&server, home.path(), &data);

    let mut events = Vec::new();
    let result = download(&client(), &req, &fast_retries(), &cancel, &mut |e| events.push(e));
    let err = gave_up(result);

    // Each try adds 10 bytes, far less than a twentieth of the file: four of them in a row use up the
    // failures allowed, however many bytes they bring.
    assert_eq!(server.requests().len(), 4);
    let message = err.to_string();
    assert!(
        message.contains(&req.url)
            && message.contains("4 tries")
            && message.contains("40 B")
            && message.contains("another mirror"),
        "{message}"
    );
    assert_eq!(
        std::fs::metadata(part_path(&req.dest)).unwrap().len(),
        40,
        "the partial file is kept for a later call"
    );
}

#[test]
fn a_server_that_answers_every_range_request_with_the_start_of_the_file_is_given_up_on() {
    let home = temp_home();
    let data = random_bytes(19, 400_000);
    let served = data.clone();
    let cancel = CancelToken::new();
    let guard = cancel_after_requests(50, &cancel);
    // It ignores `Range` and sends the first 100 kB of the whole file again each time: the partial file
    // never grows past them, though every try brings 100 kB.
    let server = TestServer::start(move |_| {
        guard();
        Response::bytes(served.clone())
            .header("etag", ETAG)
            .drop_after(100_000)
    });
    let req = request_for(&server, home.path(), &data);

    let mut events = Vec::new();
    let result = download(&client(), &req, &fast_retries(), &cancel, &mut |e| events.push(e));
    let err = gave_up(result);

    let requests = server.requests();
    assert!(requests.len() <= 5, "{} requests", requests.len());
    assert_eq!(requests[1].header("range"), Some("bytes=100000-"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DownloadEvent::Restarted { .. }))
    );
    assert!(err.to_string().contains("in a row"), "{err}");
}

#[test]
fn a_server_that_closes_after_every_share_of_the_file_is_given_up_on_after_the_last_try() {
    let home = temp_home();
    let data = random_bytes(20, 1_000_000);
    let served = data.clone();
    let cancel = CancelToken::new();
    let guard = cancel_after_requests(50, &cancel);
    // Each try brings 60 kB, more than a twentieth of the file, so the failures in a row never add up;
    // the total number of tries still ends it.
    let server = TestServer::start(move |req| {
        guard();
        serve_bytes(req, &served, ETAG).drop_after(60_000)
    });
    let req = request_for(&server, home.path(), &data);
    let policy = RetryPolicy {
        max_total_attempts: 6,
        ..fast_retries()
    };

    let result = download(&client(), &req, &policy, &cancel, &mut |_| {});
    let err = gave_up(result);

    assert_eq!(server.requests().len(), 6);
    let message = err.to_string();
    assert!(message.contains("at most 6 tries"), "{message}");
    assert_eq!(std::fs::metadata(part_path(&req.dest)).unwrap().len(), 360_000);
}

#[test]
fn a_try_that_trickles_below_the_speed_floor_is_abandoned_and_the_download_given_up() {
    let home = temp_home();
    let data = random_bytes(21, 200_000);
    let served = data.clone();
    // About 2 kB/s on a connection that stays open (each pause is well within the read timeout).
    let server =
        TestServer::start(move |req| serve_bytes(req, &served, ETAG).trickle(100, Duration::from_millis(50)));
    let req = request_for(&server, home.path(), &data);
    let policy = RetryPolicy {
        max_attempts: 2,
        min_bytes_per_sec: 10_000,
        speed_window: Duration::from_millis(300),
        ..fast_retries()
    };
    let cancel = CancelToken::new();
    let _guard = watchdog(Duration::from_secs(60), &cancel);

    let mut events = Vec::new();
    let result = download(&client(), &req, &policy, &cancel, &mut |e| events.push(e));
    let err = gave_up(result);

    assert_eq!(server.requests().len(), 2);
    let retried = events.iter().find_map(|e| match e {
        DownloadEvent::Retrying { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        retried.as_deref().is_some_and(|r| r.contains("less than")),
        "{retried:?}"
    );
    assert!(err.to_string().contains("less than"), "{err}");
}

#[test]
fn a_download_that_outlasts_the_time_its_size_allows_is_given_up() {
    let home = temp_home();
    let data = random_bytes(22, 200_000);
    let served = data.clone();
    // About 50 kB/s: fast enough for the speed floor, four seconds for the file, which may take one.
    let server = TestServer::start(move |req| {
        serve_bytes(req, &served, ETAG).trickle(1000, Duration::from_millis(20))
    });
    let req = request_for(&server, home.path(), &data);
    let policy = RetryPolicy {
        time_base: Duration::from_millis(800),
        time_bytes_per_sec: 1_000_000,
        ..fast_retries()
    };
    let cancel = CancelToken::new();
    let _guard = watchdog(Duration::from_secs(60), &cancel);

    let result = download(&client(), &req, &policy, &cancel, &mut |_| {});
    let err = gave_up(result);

    assert_eq!(server.requests().len(), 1);
    let message = err.to_string();
    assert!(message.contains("may take at most 1.0 s"), "{message}");
    assert!(
        part_path(&req.dest).exists(),
        "the partial file is kept for a later call"
    );
}

#[test]
fn a_download_with_a_fallback_gives_up_sooner() {
    let policy = RetryPolicy::default();
    let tight = policy.with_fallback();
    assert!(tight.max_attempts < policy.max_attempts);
    assert!(tight.max_total_attempts < policy.max_total_attempts);
    assert!(tight.time_allowed(1 << 20) < policy.time_allowed(1 << 20));
    assert_eq!(tight.base_delay, policy.base_delay);
}
