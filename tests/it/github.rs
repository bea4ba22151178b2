//! The GitHub Releases source against a local server that answers like GitHub: GitHub's documented
//! example release, pagination by `Link`, ETag and 304, rate limits, 404, malformed JSON, redirects.

use personal_ai_agent::Error;
use personal_ai_agent::sources::ReleaseSource;
use personal_ai_agent::sources::github::{GitHubSource, Repo};
use serde_json::{Value, json};

use crate::support::{Response, TestServer, fixtures_dir, temp_home};

/// GitHub's documented example release, re-tagged, with our own asset names.
pub fn api_release(tag: &str, prerelease: bool, draft: bool, assets: &[&str]) -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join("github/release-example.json")).unwrap();
    let mut release: Value = serde_json::from_str(&text).unwrap();
    let template = release["assets"][0].clone();
    release["tag_name"] = json!(tag);
    release["name"] = json!(format!("Release {tag}"));
    release["body"] = json!(format!("## {tag}\n- notes of {tag}"));
    release["prerelease"] = json!(prerelease);
    release["draft"] = json!(draft);
    release["assets"] = Value::Array(
        assets
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut a = template.clone();
                a["name"] = json!(name);
                a["id"] = json!(i + 1);
                a["size"] = json!(1000 + i);
                a["browser_download_url"] =
                    json!(format!("https://github.com/o/r/releases/download/{tag}/{name}"));
                a
            })
            .collect(),
    );
    release
}

fn source(server: &TestServer, token: Option<&str>) -> GitHubSource {
    GitHubSource::new(
        personal_ai_agent::http::client().unwrap(),
        &server.url(),
        &server.url(),
        "o/r".parse::<Repo>().unwrap(),
        token.map(str::to_owned),
    )
}

#[test]
fn the_documented_list_example_parses_and_requests_carry_githubs_required_headers() {
    let list = std::fs::read_to_string(fixtures_dir().join("github/releases-list-example.json")).unwrap();
    let server = TestServer::start(move |_| Response::json(200, list.clone()));
    let fetched = source(&server, Some("sekrit")).releases().unwrap();
    assert_eq!(fetched.releases.len(), 1);
    assert_eq!(fetched.releases[0].tag, "v1.0.0");
    let req = &server.requests()[0];
    assert_eq!(req.path, "/repos/o/r/releases?per_page=100");
    assert!(
        req.header("user-agent")
            .unwrap()
            .starts_with("personal-ai-agent/")
    );
    assert_eq!(req.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(req.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(req.header("authorization"), Some("Bearer sekrit"));
}

#[test]
fn no_authorization_header_is_sent_without_a_token() {
    let server = TestServer::start(|_| Response::json(200, "[]"));
    source(&server, None).releases().unwrap();
    assert_eq!(server.requests()[0].header("authorization"), None);
}

#[test]
fn pages_are_followed_by_link_and_drafts_and_non_semver_tags_are_dropped() {
    let server = TestServer::start(|req| {
        let base = format!("http://{}", req.header("host").unwrap());
        if req.path.contains("page=2") {
            Response::json(200, json!([api_release("v0.9.0", false, false, &[])]).to_string())
        } else {
            let page = json!([
                api_release("v1.1.0", false, false, &[]),
                api_release("v1.2.0", false, true, &[]),
                api_release("nightly-2026-01-01", true, false, &[]),
            ]);
            Response::json(200, page.to_string()).header(
                "link",
                format!(
                    r#"<{base}/repositories/1/releases?per_page=100&page=2>; rel="next", <{base}/repositories/1/releases?per_page=100&page=2>; rel="last""#
                ),
            )
        }
    });
    let fetched = source(&server, None).releases().unwrap();
    let tags: Vec<_> = fetched.releases.iter().map(|r| r.tag.as_str()).collect();
    assert_eq!(tags, ["v1.1.0", "v0.9.0"]);
    assert_eq!(fetched.requests, 2);
    assert_eq!(
        server.requests()[1].path,
        "/repositories/1/releases?per_page=100&page=2"
    );
}

#[test]
fn an_unchanged_list_costs_one_request_answered_304() {
    let server = TestServer::start(|req| {
        if req.header("if-none-match") == Some("\"abc\"") {
            Response::new(304).header("etag", "\"abc\"")
        } else {
            Response::json(200, json!([api_release("v1.0.0", false, false, &[])]).to_string())
                .header("etag", "\"abc\"")
        }
    });
    let home = temp_home();
    let cache = home.path().join("cache/github.json");
    let first = source(&server, None)
        .with_cache(cache.clone())
        .releases()
        .unwrap();
    assert!(!first.not_modified);
    let second = source(&server, None).with_cache(cache).releases().unwrap();
    assert!(second.not_modified);
    assert_eq!(second.requests, 1);
    assert_eq!(second.releases, first.releases);
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.requests()[1].header("if-none-match"), Some("\"abc\""));
}

#[test]
fn an_exhausted_rate_limit_stops_and_says_when_it_resets() {
    let server = TestServer::start(|_| {
        Response::json(403, r#"{"message":"API rate limit exceeded"}"#)
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", "1893456000")
    });
    let err = source(&server, None).releases().unwrap_err();
    match &err {
        Error::RateLimited { reset_at, .. } => assert_eq!(reset_at.unwrap().timestamp(), 1893456000),
        other => panic!("expected a rate limit, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("rate-limited by GitHub until"), "{text}");
    assert!(text.contains("2030-01-01T00:00:00Z"), "{text}");
    assert!(text.contains("GITHUB_TOKEN"), "{text}");
    assert_eq!(server.requests().len(), 1, "must not retry into the limit");
}

#[test]
fn a_secondary_limit_with_retry_after_is_reported() {
    let server = TestServer::start(|_| Response::json(429, "{}").header("retry-after", "60"));
    let err = source(&server, Some("t")).releases().unwrap_err();
    assert!(matches!(
        err,
        Error::RateLimited {
            retry_after_secs: Some(60),
            authenticated: true,
            ..
        }
    ));
    assert!(err.to_string().contains("for 60 s"), "{err}");
}

#[test]
fn a_plain_403_is_not_mistaken_for_a_rate_limit() {
    let server = TestServer::start(|_| {
        Response::json(403, r#"{"message":"Resource not accessible"}"#)
            .header("x-ratelimit-remaining", "4999")
    });
    let err = source(&server, Some("t")).releases().unwrap_err();
    assert!(matches!(err, Error::Http { status: 403, .. }), "{err:?}");
    assert!(err.to_string().contains("Resource not accessible"));
}

#[test]
fn a_missing_repository_says_it_may_be_private() {
    let server = TestServer::start(|_| Response::json(404, r#"{"message":"Not Found"}"#));
    let err = source(&server, None).releases().unwrap_err();
    assert!(matches!(err, Error::RepoNotFound { .. }));
    let text = err.to_string();
    assert!(
        text.contains("o/r") && text.contains("private") && text.contains("GITHUB_TOKEN"),
        "{text}"
    );
}

#[test]
fn malformed_json_is_an_invalid_response_not_a_panic() {
    let server = TestServer::start(|_| Response::json(200, r#"[{"tag_name": 5"#));
    let err = source(&server, None).releases().unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
}

#[test]
fn a_moved_repository_is_followed_and_the_token_stays_on_the_api_host() {
    let storage = TestServer::start(|_| {
        Response::json(200, json!([api_release("v2.0.0", false, false, &[])]).to_string())
    });
    let target = format!("{}/repositories/9/releases?per_page=100", storage.url());
    let api = TestServer::start(move |_| Response::new(301).header("location", target.clone()));
    let fetched = source(&api, Some("sekrit")).releases().unwrap();
    assert_eq!(fetched.releases[0].tag, "v2.0.0");
    assert_eq!(api.requests()[0].header("authorization"), Some("Bearer sekrit"));
    assert_eq!(
        storage.requests()[0].header("authorization"),
        None,
        "token leaked to another host"
    );
}

#[test]
fn a_dead_server_is_a_network_error_that_names_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let src = GitHubSource::new(
        personal_ai_agent::http::client().unwrap(),
        &url,
        &url,
        "o/r".parse().unwrap(),
        None,
    );
    let err = src.releases().unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&url) && text.contains("HTTPS_PROXY"), "{text}");
}

#[test]
fn a_stable_check_reads_the_static_manifest_without_an_api_call() {
    let manifest = json!({
        "schema": 1, "product": "personal-ai-agent", "version": "1.4.0", "channel": "stable", "tag": "v1.4.0", "notes": "## 1.4.0\n- signed notes",
        "assets": [{"name": "PersonalAIAgent-linux-x86_64-1.4.0.tar.gz", "size": 42, "sha256": "ab".repeat(32), "platform": "linux-x86_64"}]
    });
    let server = TestServer::start(move |req| match req.path_only() {
        "/o/r/releases/latest/download/release-manifest.json" => Response::json(200, manifest.to_string()),
        _ => Response::json(500, "{}"),
    });
    let fetched = source(&server, None)
        .latest_stable()
        .unwrap()
        .expect("manifest found");
    assert_eq!(fetched.releases[0].version, semver::Version::new(1, 4, 0));
    let asset = &fetched.releases[0].assets[0];
    assert_eq!(
        asset.url,
        format!(
            "{}/o/r/releases/download/v1.4.0/PersonalAIAgent-linux-x86_64-1.4.0.tar.gz",
            server.url()
        )
    );
    assert_eq!(asset.sha256_digest().unwrap(), "ab".repeat(32));
    assert_eq!(fetched.releases[0].notes, "## 1.4.0\n- signed notes");
    assert!(server.requests().iter().all(|r| !r.path.starts_with("/repos/")));
}

#[test]
fn without_a_manifest_the_stable_shortcut_defers_to_the_api() {
    let server = TestServer::start(|_| Response::json(404, "{}"));
    assert!(source(&server, None).latest_stable().unwrap().is_none());
}

/// GitHub's pagination never leaves the API origin, so a `Link` that does is a broken or hostile answer.
#[test]
fn a_next_link_to_another_origin_is_refused_and_never_receives_the_token() {
    // Same host, another port: another origin.
    let elsewhere = TestServer::start(|_| Response::json(200, "[]"));
    let next = format!("{}/repositories/1/releases?per_page=100&page=2", elsewhere.url());
    let api = TestServer::start(move |_| {
        Response::json(200, json!([api_release("v1.1.0", false, false, &[])]).to_string())
            .header("link", format!(r#"<{next}>; rel="next""#))
    });
    let result = source(&api, Some("sekrit")).releases();
    assert!(
        elsewhere
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "the token reached another origin"
    );
    let err = result.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&elsewhere.url()) && text.contains(&api.url()),
        "{text}"
    );
    assert!(elsewhere.requests().is_empty(), "a foreign page was followed");
    assert_eq!(api.requests()[0].header("authorization"), Some("Bearer sekrit"));
}

/// A release whose assets' `url` and `browser_download_url` both point away from the API origin.
fn release_with_foreign_asset_urls(foreign: &str) -> Value {
    let mut release = api_release(
        "v1.0.0",
        false,
        false,
        &["PersonalAIAgent-linux-x86_64-1.0.0.tar.gz"],
    );
    release["assets"][0]["url"] = json!(format!("{foreign}/repos/o/r/releases/assets/1"));
    release["assets"][0]["browser_download_url"] = json!(format!(
        "{foreign}/o/r/releases/download/v1.0.0/PersonalAIAgent-linux-x86_64-1.0.0.tar.gz"
    ));
    release
}

#[test]
fn an_asset_api_url_on_another_origin_is_downloaded_without_the_token() {
    let elsewhere = TestServer::start(|_| Response::bytes(b"bytes".to_vec()));
    let foreign = elsewhere.url();
    let api = TestServer::start(move |_| {
        Response::json(
            200,
            json!([release_with_foreign_asset_urls(&foreign)]).to_string(),
        )
    });
    let src = source(&api, Some("sekrit"));
    let fetched = src.releases().unwrap();
    let asset = &fetched.releases[0].assets[0];
    let target = src.download_target(asset);
    assert_eq!(target.token, None, "the token would go to {}", target.url);
    assert_eq!(target.url, asset.url, "the public download URL is used");
    assert_eq!(target.accept, None);
    assert_eq!(
        src.fetch_asset_small(asset, 1024).unwrap().as_deref(),
        Some(&b"bytes"[..])
    );
    assert!(!elsewhere.requests().is_empty());
    assert!(
        elsewhere
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "the token reached another origin"
    );
}

#[test]
fn an_asset_api_url_on_the_api_origin_gets_the_token_and_asks_for_bytes() {
    let api = TestServer::start(|_| Response::json(200, "[]"));
    let src = source(&api, Some("sekrit"));
    let mut release = release_with_foreign_asset_urls("https://github.com");
    release["assets"][0]["url"] = json!(format!("{}/repos/o/r/releases/assets/1", api.url()));
    let api_url = release["assets"][0]["url"].as_str().unwrap().to_owned();
    let asset = personal_ai_agent::release::Asset {
        name: "PersonalAIAgent-linux-x86_64-1.0.0.tar.gz".into(),
        size: 1,
        url: release["assets"][0]["browser_download_url"]
            .as_str()
            .unwrap()
            .to_owned(),
        api_url: Some(api_url.clone()),
        digest: None,
    };
    let target = src.download_target(&asset);
    assert_eq!(target.url, api_url);
    assert_eq!(target.token.as_deref(), Some("sekrit"));
    assert_eq!(target.accept.as_deref(), Some("application/octet-stream"));
}

#[test]
fn the_web_server_never_receives_the_api_token() {
    let web = TestServer::start(|_| Response::json(404, "{}"));
    let api = TestServer::start(|_| Response::json(200, "[]"));
    let src = GitHubSource::new(
        personal_ai_agent::http::client().unwrap(),
        &api.url(),
        &web.url(),
        "o/r".parse::<Repo>().unwrap(),
        Some("sekrit".into()),
    );
    assert!(src.latest_stable().unwrap().is_none());
    src.fetch_small(
        &format!("{}/o/r/releases/download/v1/SHA256SUMS", web.url()),
        1024,
    )
    .unwrap();
    assert_eq!(web.requests().len(), 2);
    assert!(
        web.requests().iter().all(|r| r.header("authorization").is_none()),
        "the token reached the web server"
    );
}

#[test]
fn a_release_page_announcing_more_than_32_mib_is_refused_before_its_body_is_read() {
    // The body is two bytes: a client that believed the header and read on would wait for the rest.
    let server =
        TestServer::start(|_| Response::json(200, "[]").header("content-length", (40u64 << 30).to_string()));
    let started = std::time::Instant::now();
    let err = source(&server, None).releases().unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("32 MiB"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn a_release_page_of_more_than_32_mib_without_a_length_is_cut_off_at_the_bound() {
    // Valid JSON (an empty list padded with 40 MiB of spaces), so only the size bound refuses it.
    let mut page = b"[".to_vec();
    page.resize(40 << 20, b' ');
    page.push(b']');
    let server = TestServer::start(move |_| Response::json(200, "").body(page.clone()).until_close());
    let err = source(&server, None).releases().unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("32 MiB"), "{err}");
}

/// A local GitHub where 1.1.0 was published, then the backport 1.0.5, which GitHub now calls "latest".
fn github_with_a_backport_as_latest(rate_limited: bool) -> TestServer {
    let manifest = json!({
        "schema": 1, "product": "personal-ai-agent", "version": "1.0.5", "channel": "stable", "tag": "v1.0.5",
        "assets": [{"name": "PersonalAIAgent-linux-x86_64-1.0.5.tar.gz", "size": 42, "sha256": "ab".repeat(32), "platform": "linux-x86_64"}]
    });
    TestServer::start(move |req| match req.path_only() {
        "/o/r/releases/latest/download/release-manifest.json" => Response::json(200, manifest.to_string()),
        "/repos/o/r/releases" if rate_limited => {
            Response::json(403, r#"{"message":"API rate limit exceeded"}"#)
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", "1893456000")
        }
        "/repos/o/r/releases" => Response::json(
            200,
            json!([
                api_release(
                    "v1.0.5",
                    false,
                    false,
                    &["PersonalAIAgent-linux-x86_64-1.0.5.tar.gz"]
                ),
                api_release(
                    "v1.1.0",
                    false,
                    false,
                    &["PersonalAIAgent-linux-x86_64-1.1.0.tar.gz"]
                ),
            ])
            .to_string(),
        ),
        _ => Response::json(404, r#"{"message":"Not Found"}"#),
    })
}

fn stable_check(
    server: &TestServer,
    current: &str,
) -> personal_ai_agent::Result<personal_ai_agent::check::CheckReport> {
    personal_ai_agent::check::check(
        &source(server, None),
        &personal_ai_agent::check::CheckRequest {
            channel: personal_ai_agent::version::Channel::Stable,
            platform: "linux-x86_64".parse().unwrap(),
            current: Some(current.parse().unwrap()),
            skip_versions: vec![],
            failed_versions: vec![],
        },
    )
}

#[test]
fn a_backport_that_github_calls_latest_does_not_strand_its_line() {
    let server = github_with_a_backport_as_latest(false);
    for current in ["1.0.3", "1.0.5"] {
        let report = stable_check(&server, current).unwrap();
        assert!(report.update_available, "{current}: {report:?}");
        assert_eq!(report.latest.unwrap().version, "1.1.0", "{current}");
        assert!(report.complete);
    }
    let report = stable_check(&server, "1.1.0").unwrap();
    assert!(!report.update_available);
    assert_eq!(report.latest.unwrap().version, "1.1.0");
    assert_eq!(report.message, None);
    assert!(
        server.requests().iter().all(|r| r.path.starts_with("/repos/")),
        "the latest shortcut is not asked while the API answers"
    );
}

#[test]
fn a_rate_limited_check_offers_only_what_the_latest_release_proves() {
    let server = github_with_a_backport_as_latest(true);
    let report = stable_check(&server, "1.0.3").unwrap();
    assert!(report.update_available);
    assert_eq!(report.latest.as_ref().unwrap().version, "1.0.5");
    assert!(!report.complete);
    assert!(
        report
            .message
            .as_deref()
            .unwrap()
            .contains("a newer release may exist")
    );
    let err = stable_check(&server, "1.0.5").unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { .. }),
        "never \"up to date\": {err:?}"
    );
}
