//! The models manifest, `models.json`: which model files the agent needs, where to fetch them, and the
//! size and SHA256 each must have.
//!
//! It comes from one of three places, first match wins (see [`locate`]): an explicit `--manifest PATH|URL`,
//! the `models_manifest` that the current version's `agent.json` names (a file inside the bundle), or a
//! `models_manifest` setting in `config.json` (a path, relative to the config folder, or a URL).
//!
//! The manifest is data that arrives with an update or from a server, so everything in it is checked
//! before use: a name must be a plain file name (it becomes a path in the shared models folder), a URL
//! must be `https://` (plain `http://` only on loopback, as for the release feed), and the SHA256 must be
//! 64 hex digits. The format is documented in `docs/MODELS.md`.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::ModelsError;
use crate::paths::Paths;

/// The only manifest schema this launcher understands.
pub const MANIFEST_SCHEMA: u32 = 1;
/// The setting (in `config.json`) and the `agent.json` field that name a manifest.
pub const MANIFEST_SETTING: &str = "models_manifest";
/// A manifest larger than this is refused: it lists files, it does not hold them.
const MANIFEST_LIMIT: u64 = 1 << 20;

/// Names the launcher keeps for itself in the models folder, and suffixes the downloader uses beside a
/// file; a model may not take them.
const RESERVED_NAMES: [&str; 3] = [super::record::RECORD_FILE, super::LOCK_FILE, super::STORE_DIR];
const RESERVED_SUFFIXES: [&str; 2] = [".part", ".part.json"];

/// Where a manifest is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestLocation {
    File(PathBuf),
    Url(Url),
}

impl fmt::Display for ManifestLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestLocation::File(path) => write!(f, "{}", path.display()),
            ManifestLocation::Url(url) => write!(f, "{url}"),
        }
    }
}

impl ManifestLocation {
    /// `https://…` (or loopback `http://…`) is a URL; anything else a path, joined to `base_dir` when
    /// relative.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, ModelsError> {
        let text = text.trim();
        if text.starts_with("https://") || text.starts_with("http://") {
            let url = check_url(text, None).map_err(|problem| ModelsError::ManifestLocation {
                value: text.to_owned(),
                problem,
            })?;
            return Ok(ManifestLocation::Url(url));
        }
        if text.is_empty() {
            return Err(ModelsError::ManifestLocation {
                value: String::new(),
                problem: "is empty".into(),
            });
        }
        Ok(ManifestLocation::File(base_dir.join(text)))
    }
}

/// Finds the manifest: `explicit` (a `--manifest` argument, relative to the working folder), else the one
/// the current version's `agent.json` names, else the `models_manifest` setting in `config.json`.
pub fn locate(paths: &Paths, explicit: Option<&str>) -> Result<ManifestLocation, ModelsError> {
    if let Some(text) = explicit {
        let cwd = std::env::current_dir().unwrap_or_default();
        return ManifestLocation::parse(text, &cwd);
    }
    let installer = crate::install::Installer::new(paths.install_dir());
    if let Some(bundle_dir) = installer.current_dir()? {
        let spec = crate::agent::AgentSpec::load(&bundle_dir)?;
        if let Some(path) = spec.models_manifest_path(&bundle_dir) {
            return Ok(ManifestLocation::File(path));
        }
    }
    let loaded = crate::config::Config::load(&paths.config_file());
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.config;
    match config.unknown.get(MANIFEST_SETTING) {
        Some(serde_json::Value::String(text)) => ManifestLocation::parse(text, &paths.config_dir),
        Some(other) => Err(ModelsError::ManifestLocation {
            value: other.to_string(),
            problem: format!(
                "(the `{MANIFEST_SETTING}` setting in {}) is not a string",
                paths.config_file().display()
            ),
        }),
        None => Err(ModelsError::NoManifest {
            config_file: paths.config_file(),
        }),
    }
}

/// One model file the agent needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelEntry {
    /// A plain file name inside the models folder.
    pub name: String,
    #[serde(serialize_with = "url_as_str")]
    pub url: Url,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// Required models are fetched by `models download`; optional ones only with `--all`.
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn url_as_str<S: serde::Serializer>(url: &Url, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(url.as_str())
}

/// A checked manifest: every entry is usable, names are unique.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelsManifest {
    /// Where it was read from, for messages.
    pub location: String,
    pub models: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ManifestDoc {
    schema: Option<u32>,
    models: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct EntryDoc {
    name: Option<String>,
    url: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    #[serde(default = "default_required")]
    required: bool,
    #[serde(default)]
    description: Option<String>,
}

fn default_required() -> bool {
    true
}

impl ModelsManifest {
    /// Reads and checks the manifest at `location` (a URL is fetched with the shared HTTP client).
    pub fn load(location: &ManifestLocation) -> Result<Self, ModelsError> {
        let where_ = location.to_string();
        match location {
            ManifestLocation::File(path) => {
                let text = match std::fs::metadata(path) {
                    Ok(meta) if meta.len() > MANIFEST_LIMIT => {
                        return Err(ModelsError::ManifestParse {
                            location: where_,
                            reason: format!("it is {} bytes, more than a manifest may have", meta.len()),
                        });
                    }
                    Ok(_) => std::fs::read_to_string(path),
                    Err(e) => Err(e),
                }
                .map_err(|source| ModelsError::ManifestRead {
                    path: path.clone(),
                    source,
                })?;
                Self::parse(&text, &where_, None)
            }
            ManifestLocation::Url(url) => {
                let fetch_error = |reason: String| ModelsError::ManifestFetch {
                    url: url.to_string(),
                    reason,
                };
                let client = crate::http::client().map_err(|e| fetch_error(e.to_string()))?;
                let body =
                    crate::sources::github::fetch_small(&client, url.as_str(), MANIFEST_LIMIT, None, None)
                        .map_err(|e| fetch_error(e.to_string()))?
                        .ok_or_else(|| fetch_error("the server answered 404 Not Found".into()))?;
                let text = String::from_utf8(body).map_err(|_| ModelsError::ManifestParse {
                    location: where_.clone(),
                    reason: "it is not UTF-8 text".into(),
                })?;
                Self::parse(&text, &where_, Some(url))
            }
        }
    }

    /// Parses and checks manifest text. `location` is only used in messages; model URLs may be relative
    /// to `base_url` when the manifest itself came from a URL.
    pub fn parse(text: &str, location: &str, base_url: Option<&Url>) -> Result<Self, ModelsError> {
        let doc: ManifestDoc = serde_json::from_str(text).map_err(|e| ModelsError::ManifestParse {
            location: location.to_owned(),
            reason: e.to_string(),
        })?;
        let field_error = |field: String, problem: String| ModelsError::ManifestField {
            location: location.to_owned(),
            field,
            problem,
        };
        match doc.schema {
            Some(MANIFEST_SCHEMA) => {}
            Some(other) => {
                return Err(field_error(
                    "schema".into(),
                    format!(
                        "is {other}, but this launcher reads schema {MANIFEST_SCHEMA}; update the launcher"
                    ),
                ));
            }
            None => {
                return Err(field_error(
                    "schema".into(),
                    format!("is missing; write `\"schema\": {MANIFEST_SCHEMA}`"),
                ));
            }
        }
        let Some(raw_models) = doc.models else {
            return Err(field_error(
                "models".into(),
                "is missing; list the model files there".into(),
            ));
        };
        let mut models = Vec::with_capacity(raw_models.len());
        let mut seen = HashSet::new();
        for (index, raw) in raw_models.into_iter().enumerate() {
            let field = |name: &str| format!("models[{index}].{name}");
            let entry: EntryDoc = serde_json::from_value(raw).map_err(|e| {
                field_error(format!("models[{index}]"), format!("is not a model entry ({e})"))
            })?;
            let name = entry
                .name
                .ok_or_else(|| field_error(field("name"), "is missing".into()))?;
            check_name(&name).map_err(|problem| field_error(field("name"), problem))?;
            if !seen.insert(name.to_lowercase()) {
                return Err(field_error(
                    field("name"),
                    format!(
                        "`{name}` is listed twice (names are compared without case, as on Windows and macOS)"
                    ),
                ));
            }
            let url_text = entry
                .url
                .ok_or_else(|| field_error(field("url"), "is missing".into()))?;
            let url = check_url(&url_text, base_url).map_err(|problem| field_error(field("url"), problem))?;
            let size = entry
                .size
                .ok_or_else(|| field_error(field("size"), "is missing".into()))?;
            if size == 0 {
                return Err(field_error(
                    field("size"),
                    "is 0; give the file's size in bytes".into(),
                ));
            }
            let sha256 = entry
                .sha256
                .ok_or_else(|| field_error(field("sha256"), "is missing".into()))?;
            let sha256 = sha256.trim().to_ascii_lowercase();
            if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(field_error(
                    field("sha256"),
                    format!("is `{sha256}`, not a SHA256 (64 hex digits)"),
                ));
            }
            models.push(ModelEntry {
                name,
                url,
                size,
                sha256,
                required: entry.required,
                description: entry.description.filter(|d| !d.trim().is_empty()),
            });
        }
        Ok(ModelsManifest {
            location: location.to_owned(),
            models,
        })
    }

    /// The entry called `name`, if any.
    pub fn entry(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// A model name becomes a path in the shared models folder, so it must be one plain file name that means
/// the same on every platform.
fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("is empty".into());
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(format!(
            "is `{name}`; it must be a plain file name, without folders"
        ));
    }
    if name.contains(['<', '>', ':', '"', '|', '?', '*']) || name.chars().any(char::is_control) {
        return Err(format!(
            "is `{name}`, which contains a character that is not allowed in file names on every platform"
        ));
    }
    if name.starts_with('.') || name.ends_with(['.', ' ']) {
        return Err(format!(
            "is `{name}`; a name may not start with a dot nor end with a dot or space"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_NAMES.contains(&lower.as_str()) || RESERVED_SUFFIXES.iter().any(|s| lower.ends_with(s)) {
        return Err(format!(
            "is `{name}`, a name the launcher keeps for its own files; rename the model"
        ));
    }
    Ok(())
}

/// `https://`, or `http://` on loopback only (tests and a local mirror); relative URLs resolve against
/// `base`.
fn check_url(text: &str, base: Option<&Url>) -> Result<Url, String> {
    let url = match (Url::parse(text), base) {
        (Ok(url), _) => url,
        (Err(url::ParseError::RelativeUrlWithoutBase), Some(base)) => base
            .join(text)
            .map_err(|e| format!("is `{text}`, not a URL ({e})"))?,
        (Err(e), _) => return Err(format!("is `{text}`, not an absolute URL ({e})")),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if crate::http::is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "is `{text}`; plain http:// is only accepted on this machine (127.0.0.1), use https://"
        )),
        other => Err(format!(
            "is `{text}`; the `{other}` scheme cannot be downloaded, use https://"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn manifest_with(entry: &str) -> String {
        format!(r#"{{"schema": 1, "models": [{entry}]}}"#)
    }

    fn entry(name: &str, url: &str) -> String {
        format!(
            r#"{{"name": {}, "url": {}, "size": 4, "sha256": "{HASH}"}}"#,
            serde_json::json!(name),
            serde_json::json!(url)
        )
    }

    fn parse(text: &str) -> Result<ModelsManifest, ModelsError> {
        ModelsManifest::parse(text, "/b/models.json", None)
    }

    #[test]
    fn a_complete_manifest_is_read_with_its_defaults() {
        let text = r#"{"schema": 1, "models": [
            {"name": "mistral-7b-instruct-v0.2.Q4_K_M.gguf", "url": "https://example.com/m.gguf",
             "size": 4368439584, "sha256": "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
             "description": "Mistral 7B"},
            {"name": "small.bin", "url": "http://127.0.0.1:8080/small.bin", "size": 1, "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "required": false}
        ]}"#;
        let manifest = parse(text).unwrap();
        assert_eq!(manifest.models.len(), 2);
        let first = &manifest.models[0];
        assert_eq!(first.size, 4368439584);
        assert_eq!(first.sha256, HASH, "hashes are kept in lowercase");
        assert!(first.required, "a model is required unless it says otherwise");
        assert_eq!(first.description.as_deref(), Some("Mistral 7B"));
        assert!(!manifest.models[1].required);
        assert_eq!(manifest.entry("small.bin").map(|m| m.size), Some(1));
    }

    #[test]
    fn names_that_are_not_plain_file_names_are_refused_with_the_field_named() {
        for name in [
            "../evil.gguf",
            "dir/model.gguf",
            "dir\\model.gguf",
            "..",
            "",
            ".hidden",
            "C:model",
            "verified.json",
            "model.gguf.part",
            "model.gguf.part.json",
        ] {
            let err = parse(&manifest_with(&entry(name, "https://example.com/x")))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("/b/models.json") && err.contains("`models[0].name`"),
                "{name:?}: {err}"
            );
        }
    }

    #[test]
    fn urls_must_be_https_except_on_loopback() {
        for url in [
            "http://example.com/m.gguf",
            "ftp://example.com/m.gguf",
            "file:///etc/passwd",
            "m.gguf",
        ] {
            let err = parse(&manifest_with(&entry("m.gguf", url)))
                .unwrap_err()
                .to_string();
            assert!(err.contains("`models[0].url`"), "{url}: {err}");
        }
        for url in [
            "https://example.com/m.gguf",
            "http://127.0.0.1:9/m.gguf",
            "http://localhost/m",
        ] {
            parse(&manifest_with(&entry("m.gguf", url))).unwrap();
        }
    }

    #[test]
    fn relative_urls_resolve_against_a_manifest_fetched_from_a_url() {
        let base = Url::parse("https://mirror.example/models/models.json").unwrap();
        let manifest =
            ModelsManifest::parse(&manifest_with(&entry("m.gguf", "m.gguf")), "x", Some(&base)).unwrap();
        assert_eq!(
            manifest.models[0].url.as_str(),
            "https://mirror.example/models/m.gguf"
        );
    }

    #[test]
    fn missing_and_malformed_fields_are_named() {
        let cases = [
            (r#"{"models": []}"#, "`schema`"),
            (r#"{"schema": 2, "models": []}"#, "`schema`"),
            (r#"{"schema": 1}"#, "`models`"),
            (
                &manifest_with(r#"{"name": "a", "url": "https://x/a", "sha256": "00"}"#),
                "`models[0].size`",
            ),
            (
                &manifest_with(&format!(
                    r#"{{"name": "a", "url": "https://x/a", "size": 0, "sha256": "{HASH}"}}"#
                )),
                "`models[0].size`",
            ),
            (
                &manifest_with(r#"{"name": "a", "url": "https://x/a", "size": 3, "sha256": "abc"}"#),
                "`models[0].sha256`",
            ),
            (
                &manifest_with(r#"{"url": "https://x/a", "size": 3}"#),
                "`models[0].name`",
            ),
            (&manifest_with(r#"{"name": 5}"#), "`models[0]`"),
        ];
        for (text, field) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains(field) && err.contains("/b/models.json"),
                "{text}: {err}"
            );
        }
        let err = parse("not json").unwrap_err().to_string();
        assert!(
            err.contains("/b/models.json") && err.contains("MODELS.md"),
            "{err}"
        );
    }

    #[test]
    fn a_name_listed_twice_is_refused() {
        let text = format!(
            r#"{{"schema": 1, "models": [{}, {}]}}"#,
            entry("Model.gguf", "https://x/a"),
            entry("model.gguf", "https://x/b")
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("`models[1].name`") && err.contains("twice"), "{err}");
    }

    #[test]
    fn a_location_is_a_url_or_a_path_relative_to_its_base() {
        let base = Path::new("/home/u/pai");
        assert_eq!(
            ManifestLocation::parse("models.json", base).unwrap(),
            ManifestLocation::File(base.join("models.json"))
        );
        assert!(matches!(
            ManifestLocation::parse("https://example.com/models.json", base).unwrap(),
            ManifestLocation::Url(_)
        ));
        assert!(ManifestLocation::parse("http://example.com/models.json", base).is_err());
    }
}
