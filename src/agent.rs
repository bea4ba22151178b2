//! The bundle manifest `agent.json`: how to run the agent backend that a release bundle carries.
//!
//! A bundle (one installed version) holds the launcher, `backend/` and `agent.json` at its root; see
//! `docs/BUNDLE.md` for the layout. [`AgentSpec::load`] reads and checks the manifest, so any spec that
//! exists is runnable in principle: the command is non-empty and its program is a path inside the bundle.
//! [`AgentSpec::resolve`] then fills the placeholders (`{port}`, `{models_dir}`, `{bundle_dir}`,
//! `{data_dir}`) and yields a [`LaunchPlan`], which is all the supervisor needs to start the backend.
//!
//! The program must stay inside the bundle (no absolute path, no `..`): a manifest is data that arrives
//! with an update, and it must not be able to point the launcher at arbitrary executables on the machine.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::paths::Paths;

/// The manifest's file name, at the bundle root.
pub const AGENT_MANIFEST: &str = "agent.json";

/// How long to wait for the first healthy answer when the manifest does not say.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a bundle's `agent.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "{path} is missing: this folder is not a complete bundle; reinstall with `personal-ai-agent update install`"
    )]
    Missing { path: PathBuf },

    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not valid JSON for agent.json ({reason}); see docs/BUNDLE.md for the format")]
    Parse { path: PathBuf, reason: String },

    #[error("{path}: field `{field}` {problem}; see docs/BUNDLE.md for the format")]
    InvalidField {
        path: PathBuf,
        field: &'static str,
        problem: String,
    },
}

/// `agent.json` as written in the bundle. Unknown fields are ignored, so a newer bundle that adds fields
/// still runs under the launcher that installs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSpec {
    /// The program (relative to the bundle folder) and its arguments, with placeholders.
    pub command: Vec<String>,
    /// Where health is asked, usually `http://127.0.0.1:{port}/health`.
    pub health_url: String,
    /// How long the backend may take to answer its first health check.
    #[serde(default = "default_ready_timeout_secs")]
    pub ready_timeout_secs: u64,
    /// Extra environment for the backend, with placeholders in the values.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The backend's own version, when it differs from the release's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The models manifest, relative to the bundle folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models_manifest: Option<String>,
}

fn default_ready_timeout_secs() -> u64 {
    DEFAULT_READY_TIMEOUT.as_secs()
}

/// Everything needed to start one backend process: placeholders filled, program located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchPlan {
    /// Absolute path of the program inside the bundle.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to the launcher's environment.
    pub env: BTreeMap<String, String>,
    /// The bundle folder; the backend runs with it as working directory.
    pub working_dir: PathBuf,
    /// The loopback port given to the backend.
    pub port: u16,
    pub health_url: String,
    pub ready_timeout: Duration,
    /// The version the bundle declares (`agent.json` `version`), if any.
    pub version: Option<String>,
}

impl AgentSpec {
    /// Reads and checks `<bundle_dir>/agent.json`.
    pub fn load(bundle_dir: &Path) -> Result<AgentSpec, AgentError> {
        let path = bundle_dir.join(AGENT_MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(AgentError::Missing { path }),
            Err(source) => return Err(AgentError::Read { path, source }),
        };
        Self::parse(&text, &path)
    }

    /// Parses and checks manifest text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<AgentSpec, AgentError> {
        let spec: AgentSpec = serde_json::from_str(text).map_err(|e| AgentError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        spec.validate(path)?;
        Ok(spec)
    }

    fn validate(&self, path: &Path) -> Result<(), AgentError> {
        let invalid = |field: &'static str, problem: String| AgentError::InvalidField {
            path: path.to_path_buf(),
            field,
            problem,
        };
        let Some(program) = self.command.first() else {
            return Err(invalid(
                "command",
                "is empty; it needs at least the program".into(),
            ));
        };
        check_program_path(program).map_err(|problem| invalid("command", problem))?;
        if self.health_url.trim().is_empty() {
            return Err(invalid("health_url", "is empty".into()));
        }
        // The URL must parse once a port is filled in, or every health check would fail for a silly reason.
        let sample = self.health_url.replace("{port}", "1");
        let url =
            url::Url::parse(&sample).map_err(|e| invalid("health_url", format!("is not a URL ({e})")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid(
                "health_url",
                format!("uses `{}`; use http://", url.scheme()),
            ));
        }
        if self.ready_timeout_secs == 0 {
            return Err(invalid(
                "ready_timeout_secs",
                "is 0; give the backend at least 1 second".into(),
            ));
        }
        if let Some(models) = &self.models_manifest {
            check_program_path(models).map_err(|problem| invalid("models_manifest", problem))?;
        }
        Ok(())
    }

    /// Fills the placeholders for one start of the backend on `port`.
    ///
    /// The first command element is joined to the bundle folder; on Windows `.exe` is appended when the
    /// file only exists that way, so one manifest serves every platform.
    pub fn resolve(&self, bundle_dir: &Path, port: u16, paths: &Paths) -> LaunchPlan {
        let bundle_dir = std::path::absolute(bundle_dir).unwrap_or_else(|_| bundle_dir.to_path_buf());
        let values = [
            ("{port}", port.to_string()),
            ("{models_dir}", paths.models_dir().display().to_string()),
            ("{bundle_dir}", bundle_dir.display().to_string()),
            ("{data_dir}", paths.data_dir.display().to_string()),
        ];
        let fill = |text: &str| {
            values
                .iter()
                .fold(text.to_owned(), |acc, (key, value)| acc.replace(key, value))
        };
        let program_text = self.command.first().map(String::as_str).unwrap_or_default();
        LaunchPlan {
            program: program_in_bundle(&bundle_dir, &fill(program_text)),
            args: self.command.iter().skip(1).map(|a| fill(a)).collect(),
            env: self.env.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
            working_dir: bundle_dir.clone(),
            port,
            health_url: fill(&self.health_url),
            ready_timeout: Duration::from_secs(self.ready_timeout_secs),
            version: self.version.clone(),
        }
    }

    /// The models manifest inside the bundle, if the spec names one.
    pub fn models_manifest_path(&self, bundle_dir: &Path) -> Option<PathBuf> {
        self.models_manifest.as_ref().map(|m| bundle_dir.join(m))
    }
}

/// A program path must be relative and stay inside the bundle.
fn check_program_path(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("names an empty path".into());
    }
    let path = Path::new(text);
    // `Path::is_absolute` is platform-specific; refuse both forms everywhere, so a manifest that is
    // refused on one platform is refused on all.
    let looks_absolute =
        path.has_root() || text.starts_with('/') || text.starts_with('\\') || text.contains(':');
    if looks_absolute {
        return Err(format!(
            "names `{text}`, an absolute path; it must be relative to the bundle folder"
        ));
    }
    if text.contains('{') {
        // `{data_dir}/x` would leave the bundle once filled in; the path is relative to the bundle anyway.
        return Err(format!(
            "names `{text}` with a placeholder; write a plain path relative to the bundle folder"
        ));
    }
    if text.split(['/', '\\']).any(|part| part == "..")
        || path.components().any(|c| matches!(c, Component::ParentDir))
    {
        return Err(format!(
            "names `{text}`, which leaves the bundle folder (`..`); keep it inside"
        ));
    }
    Ok(())
}

fn program_in_bundle(bundle_dir: &Path, relative: &str) -> PathBuf {
    let program = bundle_dir.join(relative);
    if cfg!(windows) && program.extension().is_none() {
        let with_exe = program.with_extension("exe");
        if !program.exists() && with_exe.exists() {
            return with_exe;
        }
    }
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentSpec, AgentError> {
        AgentSpec::parse(text, Path::new("/b/agent.json"))
    }

    const GOOD: &str = r#"{
        "command": ["backend/agent-backend", "--port", "{port}", "--models", "{models_dir}"],
        "health_url": "http://127.0.0.1:{port}/health",
        "ready_timeout_secs": 12,
        "env": {"MODELS": "{models_dir}/x", "DATA": "{data_dir}", "HERE": "{bundle_dir}"},
        "version": "1.2.0",
        "models_manifest": "models.json"
    }"#;

    #[test]
    fn a_complete_manifest_resolves_every_placeholder() {
        let spec = parse(GOOD).unwrap();
        let paths = Paths::under("/home/u/pai");
        let plan = spec.resolve(Path::new("/home/u/pai/install/1.2.0"), 4321, &paths);
        assert_eq!(
            plan.program,
            Path::new("/home/u/pai/install/1.2.0/backend/agent-backend")
        );
        assert_eq!(plan.args, ["--port", "4321", "--models", "/home/u/pai/models"]);
        assert_eq!(plan.env["MODELS"], "/home/u/pai/models/x");
        assert_eq!(plan.env["DATA"], "/home/u/pai");
        assert_eq!(plan.env["HERE"], "/home/u/pai/install/1.2.0");
        assert_eq!(plan.health_url, "http://127.0.0.1:4321/health");
        assert_eq!(plan.ready_timeout, Duration::from_secs(12));
        assert_eq!(plan.port, 4321);
        assert_eq!(plan.version.as_deref(), Some("1.2.0"));
        assert_eq!(plan.working_dir, Path::new("/home/u/pai/install/1.2.0"));
    }

    #[test]
    fn optional_fields_take_their_defaults() {
        let spec = parse(r#"{"command": ["b"], "health_url": "http://127.0.0.1:{port}/"}"#).unwrap();
        assert_eq!(spec.ready_timeout_secs, 30);
        assert!(spec.env.is_empty());
        assert_eq!(spec.version, None);
    }

    #[test]
    fn programs_outside_the_bundle_are_refused_with_the_field_named() {
        for program in [
            "/usr/bin/python3",
            "../evil",
            "backend/../../evil",
            "C:\\Windows\\cmd.exe",
            "{data_dir}/evil",
            "\\\\host\\x",
        ] {
            let text = format!(
                r#"{{"command": [{}], "health_url": "http://127.0.0.1:{{port}}/"}}"#,
                serde_json::json!(program)
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains("`command`") && err.contains("/b/agent.json"),
                "{program}: {err}"
            );
        }
    }

    #[test]
    fn an_empty_command_is_refused() {
        let err = parse(r#"{"command": [], "health_url": "http://127.0.0.1:{port}/"}"#).unwrap_err();
        assert!(err.to_string().contains("`command` is empty"), "{err}");
    }

    #[test]
    fn a_health_url_that_is_not_http_is_refused() {
        let err = parse(r#"{"command": ["b"], "health_url": "ftp://127.0.0.1:{port}/"}"#).unwrap_err();
        assert!(err.to_string().contains("`health_url`"), "{err}");
        let err = parse(r#"{"command": ["b"], "health_url": "not a url"}"#).unwrap_err();
        assert!(err.to_string().contains("`health_url`"), "{err}");
    }

    #[test]
    fn the_template_that_ci_puts_in_bundles_is_valid() {
        let spec = parse(include_str!("../assets/agent.json")).unwrap();
        let plan = spec.resolve(Path::new("/b"), 9, &Paths::under("/d"));
        assert!(plan.args.contains(&"9".to_owned()) && plan.health_url.contains(":9/"));
    }

    #[test]
    fn fields_from_newer_bundles_are_ignored() {
        let spec = parse(r#"{"command": ["b"], "health_url": "http://x/", "gpu": {"layers": 20}}"#).unwrap();
        assert_eq!(spec.command, ["b"]);
    }

    #[test]
    fn a_missing_manifest_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = AgentSpec::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("agent.json") && err.contains("update install"),
            "{err}"
        );
    }
}
