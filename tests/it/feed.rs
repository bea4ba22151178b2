//! The static feed source: from a folder, from a loopback URL, and its refusals.

use personal_ai_agent::Error;
use personal_ai_agent::sources::ReleaseSource;
use personal_ai_agent::sources::feed::FeedSource;
use serde_json::json;

use crate::support::{Response, TestServer, temp_home};

fn feed_doc() -> serde_json::Value {
    json!({
        "schema": 1,
        "releases": [
            {"version": "1.1.0", "notes": "eleven", "assets": [
                {"name": "PersonalAIAgent-linux-x86_64-1.1.0.tar.gz", "size": 10, "url": "v1.1.0/PersonalAIAgent-linux-x86_64-1.1.0.tar.gz",
                 "sha256": "AB".repeat(32)}
            ]},
            {"version": "v1.2.0-beta.1", "prerelease": true, "assets": [
                {"name": "PersonalAIAgent-linux-x86_64-1.2.0-beta.1.tar.gz", "size": 11, "url": "https://mirror.example/abs.tar.gz"}
            ]},
            {"version": "not-a-version", "assets": []}
        ]
    })
}

fn client() -> reqwest::blocking::Client {
    personal_ai_agent::http::client().unwrap()
}

#[test]
fn a_folder_feed_lists_releases_with_file_urls_beside_it() {
    let home = temp_home();
    std::fs::write(home.path().join("feed.json"), feed_doc().to_string()).unwrap();
    let source = FeedSource::new(client(), home.path().to_str().unwrap()).unwrap();
    let fetched = source.releases().unwrap();
    assert_eq!(fetched.requests, 0);
    assert_eq!(fetched.releases.len(), 2, "the non-semver entry is skipped");
    let first = &fetched.releases[0];
    assert_eq!(first.tag, "v1.1.0");
    assert_eq!(first.notes, "eleven");
    let url = &first.assets[0].url;
    assert!(
        url.starts_with("file://") && url.ends_with("v1.1.0/PersonalAIAgent-linux-x86_64-1.1.0.tar.gz"),
        "{url}"
    );
    assert_eq!(first.assets[0].sha256_digest().unwrap(), "ab".repeat(32));
    assert!(fetched.releases[1].is_prerelease());
    assert_eq!(
        fetched.releases[1].assets[0].url,
        "https://mirror.example/abs.tar.gz"
    );
}

#[test]
fn a_url_feed_resolves_relative_asset_urls_against_the_document() {
    let doc = feed_doc().to_string();
    let server = TestServer::start(move |req| match req.path_only() {
        "/mirror/feed.json" => Response::json(200, doc.clone()),
        _ => Response::new(404),
    });
    let source = FeedSource::new(client(), &format!("{}/mirror/feed.json", server.url())).unwrap();
    let fetched = source.releases().unwrap();
    assert_eq!(fetched.requests, 1);
    assert_eq!(
        fetched.releases[0].assets[0].url,
        format!(
            "{}/mirror/v1.1.0/PersonalAIAgent-linux-x86_64-1.1.0.tar.gz",
            server.url()
        )
    );
}

#[test]
fn plain_http_is_refused_away_from_this_machine() {
    let err = FeedSource::new(client(), "http://mirror.example/feed.json")
        .err()
        .unwrap();
    assert!(err.to_string().contains("https://"), "{err}");
}

#[test]
fn a_broken_or_newer_feed_is_refused_with_the_reason() {
    let home = temp_home();
    let path = home.path().join("feed.json");
    std::fs::write(&path, "{\"releases\": 5}").unwrap();
    let err = FeedSource::new(client(), path.to_str().unwrap())
        .unwrap()
        .releases()
        .unwrap_err();
    assert!(
        matches!(err, Error::Feed { .. }) && err.to_string().contains("docs/FEED.md"),
        "{err}"
    );
    std::fs::write(&path, "{\"schema\": 2, \"releases\": []}").unwrap();
    let err = FeedSource::new(client(), path.to_str().unwrap())
        .unwrap()
        .releases()
        .unwrap_err();
    assert!(err.to_string().contains("update the launcher"), "{err}");
}

#[test]
fn a_missing_feed_folder_names_the_path() {
    let home = temp_home();
    let missing = home.path().join("nowhere");
    let err = FeedSource::new(client(), missing.to_str().unwrap())
        .unwrap()
        .releases()
        .unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn an_offline_folder_made_by_release_feed_installs_and_updates_without_any_network() {
    use crate::cli_update::{json_of, pai};
    let work = temp_home();
    let home = temp_home();
    let feed_dir = work.path().join("usb-stick");
    crate::support::pack_example_release(work.path(), &feed_dir.join("1.0.0"), "1.0.0", &[], None);
    std::fs::write(feed_dir.join("1.0.0/NOTES.md"), "first release").unwrap();
    let feed = feed_dir.to_str().unwrap();
    let written = json_of(&pai(
        home.path(),
        None,
        &["release", "feed", "--dir", feed, "--json"],
    ));
    assert_eq!(written["versions"], json!(["1.0.0"]));

    json_of(&pai(
        home.path(),
        None,
        &["update", "configure", "--feed", feed, "--json"],
    ));
    let installed = json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    assert_eq!(installed["installed_version"], "1.0.0");
    assert!(
        installed["verified_by"]
            .as_str()
            .unwrap()
            .contains("release-manifest.json"),
        "{installed}"
    );

    crate::support::pack_example_release(work.path(), &feed_dir.join("1.1.0"), "1.1.0", &[], None);
    json_of(&pai(
        home.path(),
        None,
        &["release", "feed", "--dir", feed, "--json"],
    ));
    let check = json_of(&pai(home.path(), None, &["update", "check", "--json"]));
    assert_eq!(check["update_available"], true);
    assert_eq!(check["requests"], 0, "a folder feed makes no request");
    let changelog = json_of(&pai(home.path(), None, &["update", "changelog", "--json"]));
    assert_eq!(changelog["releases"][0]["version"], "1.1.0");
    let updated = json_of(&pai(home.path(), None, &["update", "install", "--json"]));
    assert_eq!(updated["installed_version"], "1.1.0");
    assert_eq!(updated["previous_version"], "1.0.0");
}

#[test]
fn release_feed_on_a_folder_without_releases_says_how_to_make_one() {
    let home = temp_home();
    let out = crate::cli_update::pai(
        home.path(),
        None,
        &["release", "feed", "--dir", home.path().to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("release pack --out"));
}
