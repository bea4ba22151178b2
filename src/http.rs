//! The one HTTP client configuration every network call uses.
//!
//! - TLS through rustls, verifying against the platform's trust store (`rustls-platform-verifier`), so a
//!   corporate TLS-inspecting proxy whose root certificate the user trusts keeps working.
//! - `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` (upper or lower case) are honoured, and on
//!   Windows and macOS the system proxy settings too.
//! - A connect timeout and a per-read timeout, so a dead network never hangs anything; there is no total
//!   timeout, so a multi-gigabyte download on a slow line is not cut off while bytes keep arriving.
//! - Redirects are followed (up to 10), never from `https://` down to plain `http://` (loopback aside);
//!   `Authorization` is dropped whenever a redirect changes scheme,
//!   host or port, so a token never reaches a storage host. This is reqwest's own rule, not ours: reqwest
//!   0.13's `redirect::remove_sensitive_headers` compares each hop with the previous URL by scheme, host
//!   and `port_or_known_default` (so `https://h/` to `https://h:443/` keeps the token, while another port,
//!   or `https` to `http` on the same host and port, drops it; once dropped, a later hop back does not
//!   restore it). Tested here for a redirect to another port (`tests/it/download.rs`,
//!   `tests/it/github.rs`); for a scheme change by reqwest's own
//!   `test_remove_sensitive_headers_on_scheme_downgrade_same_host_port`. A reqwest upgrade must keep this.
//!   Which URL gets a token in the first place is the source's rule (`sources::github`: the API origin).

use std::time::Duration;

use reqwest::blocking::Client;

use crate::error::{Error, Result};

/// How long to wait for a TCP + TLS connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long any single read or write may stall.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `personal-ai-agent/<version>`: GitHub requires a User-Agent, and it tells server logs who we are.
pub fn user_agent() -> String {
    format!(
        "personal-ai-agent/{} (+{})",
        crate::launcher_version(),
        env!("CARGO_PKG_REPOSITORY")
    )
}

/// Installs ring as rustls's crypto provider for this process, once; every client builder calls it first
/// (reqwest is built without a provider of its own).
pub fn ensure_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means another provider was installed first: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The shared client: built once per process (loading the platform's root certificates reads every file
/// in the trust store, tens of milliseconds each time) and cloned after that, which shares its connection
/// pool.
pub fn client() -> Result<Client> {
    static SHARED: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    if let Some(client) = SHARED.get() {
        return Ok(client.clone());
    }
    let built = build_client()?;
    Ok(SHARED.get_or_init(|| built).clone())
}

fn build_client() -> Result<Client> {
    ensure_tls_provider();
    Client::builder()
        .user_agent(user_agent())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            // Never from HTTPS down to plain HTTP (loopback aside, for tests and local mirrors): an unsigned
            // feed or release list fetched that way could be changed on the wire.
            // Plain http to loopback only when the whole chain stayed on loopback: a remote host must not
            // bounce requests onto this machine's local services either.
            let all_loopback = attempt.previous().iter().all(is_loopback);
            let insecure = attempt.url().scheme() == "http" && !(is_loopback(attempt.url()) && all_loopback);
            let was_secure = attempt.previous().iter().any(|u| u.scheme() == "https") || !all_loopback;
            if attempt.previous().len() > 10 {
                attempt.error("more than 10 redirects")
            } else if insecure && was_secure {
                attempt.error(
                    "a redirect to plain http:// was refused (only https://, or http:// within this machine)",
                )
            } else {
                attempt.follow()
            }
        }))
        .build()
        .map_err(|e| Error::Network {
            url: String::new(),
            reason: format!("the HTTP client could not be set up ({e}); check the proxy settings"),
        })
}

/// Turns a transport error into the engine's error, with the URL and the likely cause.
pub fn transport_error(url: &str, e: &reqwest::Error) -> Error {
    let reason = if e.is_timeout() {
        "the connection timed out".to_owned()
    } else if e.is_connect() {
        format!("could not connect ({})", root_cause(e))
    } else if e.is_redirect() {
        format!("a redirect was refused ({})", root_cause(e))
    } else {
        root_cause(e)
    };
    Error::Network {
        url: url.to_owned(),
        reason,
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Whether a URL points at this machine (plain HTTP is only accepted there).
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
