//! How a face reaches the operations: in this process, or through the owner of the install.
//!
//! One process owns an install (`crate::owner`). A face that is not the owner (the CLI beside a window,
//! a second window) must not do the work beside it: [`Control::connect`] returns the owner's API
//! ([`Control::Owner`]) when a live owner serves one, and a [`Service`] in this process
//! ([`Control::Here`]) when nobody owns the install. Either way the face runs the same [`Op`] values
//! through [`Control::run`] and gets the same result (the engine's report as JSON), the same progress
//! ([`Progress`]) and the same failure messages; nothing above this module knows which one answered.

use serde_json::{Value, json};

use super::{AppError, AppResult, Op, Progress, Service};
use crate::api::client::Client;
use crate::download::CancelToken;
use crate::paths::Paths;

/// Where the operations run.
#[derive(Debug)]
pub enum Control {
    /// Nobody owns the install: this process does the work.
    Here(Service),
    /// The launcher that owns the install does it, through its local API.
    Owner(Client),
}

impl Control {
    /// The owner's API when a live owner serves one; else a service in this process. A live owner whose
    /// API cannot be used (its token unreadable, its API not answering) is an error, never "no owner".
    pub fn connect(paths: &Paths) -> AppResult<Control> {
        Ok(match Client::connect(paths)? {
            Some(client) => {
                tracing::info!(pid = client.info().pid, url = %client.info().url, "asking the owner of this install");
                Control::Owner(client)
            }
            None => Control::Here(Service::new(paths.clone())),
        })
    }

    /// The pid of the owner this face asks, when it is another process.
    pub fn owner_pid(&self) -> Option<u32> {
        match self {
            Control::Here(_) => None,
            Control::Owner(client) => Some(client.info().pid),
        }
    }

    /// Runs `op` to its end and returns its result; `on_progress` gets its progress, and `cancel`
    /// (Ctrl-C, a Cancel button) cancels it where it runs.
    pub fn run(
        &self,
        op: Op,
        cancel: &CancelToken,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> AppResult<Value> {
        match self {
            Control::Here(service) => service.run_here(|s| s.start(op), cancel, on_progress),
            Control::Owner(client) => {
                let (path, body) = api_call(&op, client.info().pid)?;
                Ok(client.run_job(path, &body, cancel, on_progress)?)
            }
        }
    }
}

/// The API endpoint and body that start `op` on the owner. What the API cannot carry (another channel or
/// platform) is refused with the reason: the owner works for its own install and machine.
pub fn api_call(op: &Op, owner_pid: u32) -> AppResult<(&'static str, Value)> {
    let not_through = |what: &str| {
        AppError::Conflict(format!(
            "the launcher with pid {owner_pid} owns this install and works for its own channel and machine; {what} cannot be given through it: drop it, or stop that launcher first"
        ))
    };
    // The API never installs below the installed version (its token sits in the backend's environment);
    // the sanctioned way back goes through it all the same.
    let no_downgrade_through = || {
        AppError::Conflict(format!(
            "the launcher with pid {owner_pid} owns this install, and its API never installs a version older than the installed one, so --allow-downgrade cannot be given through it: go back to an installed version with `personal-ai-agent update rollback --to VERSION`, or stop that launcher first"
        ))
    };
    let version = |v: &Option<semver::Version>| v.as_ref().map(ToString::to_string);
    Ok(match op {
        Op::Check { channel, platform } => {
            if channel.is_some() || platform.is_some() {
                return Err(not_through("--channel or --platform"));
            }
            ("/api/updates/check", json!({}))
        }
        Op::Download {
            version: v,
            platform,
            allow_downgrade,
        } => {
            if platform.is_some() {
                return Err(not_through("--platform"));
            }
            if *allow_downgrade {
                return Err(no_downgrade_through());
            }
            ("/api/updates/download", json!({ "version": version(v) }))
        }
        Op::Install {
            version: v,
            full,
            allow_downgrade,
        } => {
            if *allow_downgrade {
                return Err(no_downgrade_through());
            }
            (
                "/api/updates/install",
                if *full {
                    json!({ "version": version(v), "full": true })
                } else {
                    json!({ "version": version(v) })
                },
            )
        }
        Op::Rollback { to } => ("/api/updates/rollback", json!({ "to": version(to) })),
        Op::BackendStart(options) => {
            if options.bundle.is_some() || options.port.is_some() {
                return Err(AppError::Conflict(format!(
                    "the launcher with pid {owner_pid} owns this install and runs its installed version; --bundle and --port cannot be given through it: stop that launcher first to try a bundle or a port"
                )));
            }
            ("/api/backend/start", json!({}))
        }
        Op::BackendStop => ("/api/backend/stop", json!({})),
        Op::BackendRestart => ("/api/backend/restart", json!({})),
        Op::ModelsDownload { all, manifest } => {
            if manifest.is_some() {
                return Err(not_through("--manifest"));
            }
            ("/api/models/download", json!({ "all": all }))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_an_endpoint_and_what_the_api_cannot_carry_is_refused_by_name() {
        let v = |s: &str| Some(s.parse::<semver::Version>().unwrap());
        let (path, body) = api_call(
            &Op::Install {
                version: v("1.2.0"),
                full: false,
                allow_downgrade: false,
            },
            7,
        )
        .unwrap();
        assert_eq!(
            (path, body),
            ("/api/updates/install", json!({ "version": "1.2.0" }))
        );
        let (_, body) = api_call(
            &Op::Install {
                version: None,
                full: true,
                allow_downgrade: false,
            },
            7,
        )
        .unwrap();
        assert_eq!(body, json!({ "version": null, "full": true }));
        let (path, body) = api_call(&Op::Rollback { to: None }, 7).unwrap();
        assert_eq!((path, body), ("/api/updates/rollback", json!({ "to": null })));
        let (path, body) = api_call(
            &Op::ModelsDownload {
                all: true,
                manifest: None,
            },
            7,
        )
        .unwrap();
        assert_eq!((path, body), ("/api/models/download", json!({ "all": true })));
        let refused = api_call(
            &Op::Download {
                version: None,
                platform: Some("windows-x86_64".parse().unwrap()),
                allow_downgrade: false,
            },
            7,
        )
        .unwrap_err()
        .to_string();
        assert!(
            refused.contains("pid 7") && refused.contains("--platform"),
            "{refused}"
        );
        let refused = api_call(
            &Op::Install {
                version: v("1.0.0"),
                full: false,
                allow_downgrade: true,
            },
            7,
        )
        .unwrap_err()
        .to_string();
        assert!(
            refused.contains("--allow-downgrade") && refused.contains("update rollback"),
            "{refused}"
        );
    }
}
