//! The window's client of another owner's local API, for an attached window: a few blocking JSON calls
//! over loopback HTTP with the owner's bearer token. Only the `ui-worker` thread uses it.
//!
//! Kept private to the window on purpose: it needs five calls, all of them answered by `crate::api`'s
//! documented JSON (docs/openapi.json).

use std::time::Duration;

use serde_json::Value;

use crate::owner::ApiInfo;

/// How long one call may take (long operations answer 202 at once, so this is only a dead owner's bound).
const TIMEOUT: Duration = Duration::from_secs(15);

/// The owner's API, as `run/api.json` and the token file describe it.
pub struct Remote {
    pub info: ApiInfo,
    token: String,
    http: reqwest::blocking::Client,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Remote").field("url", &self.info.url).finish()
    }
}

impl Remote {
    /// Reads the owner's token and prepares a client for its loopback address.
    pub fn connect(mut info: ApiInfo, config_dir: &std::path::Path) -> Result<Remote, String> {
        // The token is sent only to loopback, and read only from this user's own config folder, whatever
        // `api.json` says.
        info.url = format!("http://127.0.0.1:{}", info.port);
        info.token_file = config_dir.join(crate::api::token::TOKEN_FILE);
        let token = std::fs::read_to_string(&info.token_file)
            .map_err(|e| {
                format!(
                    "Could not read the API token of the launcher that owns this install ({}): {e}",
                    info.token_file.display()
                )
            })?
            .trim()
            .to_owned();
        let http = reqwest::blocking::Client::builder()
            // Loopback is never proxied.
            .no_proxy()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("Could not prepare the API client: {e}"))?;
        Ok(Remote { info, token, http })
    }

    fn answer(&self, response: reqwest::Result<reqwest::blocking::Response>) -> Result<(u16, Value), String> {
        let response = response.map_err(|e| {
            format!(
                "The launcher that owns this install (pid {}) does not answer on {}: {e}",
                self.info.pid, self.info.url
            )
        })?;
        let status = response.status().as_u16();
        let body = response.json::<Value>().unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// `GET path`; a non-200 answer is an error carrying the API's message.
    pub fn get(&self, path: &str) -> Result<Value, String> {
        let request = self
            .http
            .get(format!("{}{path}", self.info.url))
            .bearer_auth(&self.token);
        match self.answer(request.send())? {
            (200, body) => Ok(body),
            (status, body) => Err(message(status, &body)),
        }
    }

    /// `POST path` with a JSON body; returns the status and the body.
    pub fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let request = self
            .http
            .post(format!("{}{path}", self.info.url))
            .bearer_auth(&self.token)
            .json(body);
        self.answer(request.send())
    }

    /// Starts a long operation (`202 {"job": id}`); a 409 says which job runs.
    pub fn start_job(&self, path: &str, body: &Value) -> Result<u64, String> {
        match self.post(path, body)? {
            (202, answer) => answer["job"]
                .as_u64()
                .ok_or_else(|| format!("The owner's answer to {path} names no job: {answer}")),
            (status, answer) => Err(message(status, &answer)),
        }
    }

    /// The job `id` as `GET /api/jobs/{id}` shows it.
    pub fn job(&self, id: u64) -> Result<Value, String> {
        self.get(&format!("/api/jobs/{id}"))
    }
}

/// The API's `{"error": ..}` as a sentence.
fn message(status: u16, body: &Value) -> String {
    match body["error"].as_str() {
        Some(e) => format!("The owner refused ({status}): {e}"),
        None => format!("The owner answered {status}: {body}"),
    }
}
