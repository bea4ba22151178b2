//! The API's request bodies, and their translation to the service's own values. Only this module knows
//! them; every one refuses unknown fields, and [`parse`] names the field a bad value came in.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::app::ConfigChange;
use crate::version::Channel;

/// A body that must hold no fields (`{}` or nothing at all).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `POST /api/jobs/cancel`: the job to cancel; without one, whatever job runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default)]
    pub job: Option<u64>,
}

/// `POST /api/updates/download`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionChoice {
    /// The version to take (default: the offered update).
    #[serde(default)]
    pub version: Option<String>,
}

/// `POST /api/updates/install`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallChoice {
    /// The version to take (default: the offered update).
    #[serde(default)]
    pub version: Option<String>,
    /// The full archive even when a delta would do.
    #[serde(default)]
    pub full: bool,
}

/// `POST /api/updates/skip-version` and `/unskip-version`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionBody {
    pub version: String,
}

/// `POST /api/updates/rollback`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The installed version to go back to (default: the previous one).
    #[serde(default)]
    pub to: Option<String>,
}

/// `POST /api/models/download`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsDownloadBody {
    /// Also download the optional models.
    #[serde(default)]
    pub all: bool,
}

/// `POST /api/updates/configure`: any subset of the settings a user may change; `null` (or `""`)
/// clears `github_repo`, `feed`, `public_key` and `api_port`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigureBody {
    #[serde(default)]
    pub update_channel: Option<Channel>,
    #[serde(default)]
    pub auto_check: Option<bool>,
    #[serde(default)]
    pub auto_download: Option<bool>,
    #[serde(default)]
    pub auto_install: Option<bool>,
    #[serde(default)]
    pub backup_count: Option<u32>,
    #[serde(default)]
    pub check_interval_hours: Option<f64>,
    #[serde(default)]
    pub keep_backend_running: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub github_repo: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub feed: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub public_key: Option<Option<String>>,
    #[serde(default)]
    pub skip_versions: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub api_port: Option<Option<u16>>,
}

/// A field that is present is `Some`, whatever its value (`null` included): absent and `null` differ.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl From<ConfigureBody> for ConfigChange {
    fn from(b: ConfigureBody) -> Self {
        ConfigChange {
            update_channel: b.update_channel,
            auto_check: b.auto_check,
            auto_download: b.auto_download,
            auto_install: b.auto_install,
            backup_count: b.backup_count,
            check_interval_hours: b.check_interval_hours,
            keep_backend_running: b.keep_backend_running,
            data_dir: None,
            github_repo: b.github_repo,
            feed: b.feed,
            public_key: b.public_key,
            skip_versions: b.skip_versions,
            api_port: b.api_port,
        }
    }
}

/// Why a body was refused: the message, and the field it names when there is one.
#[derive(Debug)]
pub struct BodyError {
    pub message: String,
    pub field: Option<String>,
}

/// Reads a JSON object body into `T`. An empty body is `{}`. Unknown fields and bad values are refused
/// with the field named (each field is tried on its own to find which one is wrong).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| BodyError {
            message: format!("the body is not valid JSON: {e}"),
            field: None,
        })?
    };
    let serde_json::Value::Object(object) = &value else {
        return Err(BodyError {
            message: "the body must be a JSON object ({ ... })".into(),
            field: None,
        });
    };
    let whole = match serde_json::from_value::<T>(value.clone()) {
        Ok(t) => return Ok(t),
        Err(e) => e.to_string(),
    };
    if let Some(rest) = whole.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default().to_owned();
        return Err(BodyError {
            message: format!("unknown field `{field}`"),
            field: Some(field),
        });
    }
    for (key, v) in object {
        let single = serde_json::Value::Object(std::iter::once((key.clone(), v.clone())).collect());
        if let Err(e) = serde_json::from_value::<T>(single) {
            let text = e.to_string();
            if !text.starts_with("missing field") {
                return Err(BodyError {
                    message: format!("`{key}` is {v}, which is not accepted: {text}"),
                    field: Some(key.clone()),
                });
            }
        }
    }
    let field = whole
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    Err(BodyError {
        message: whole,
        field,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_name_the_field_that_is_unknown_bad_or_missing() {
        let e = parse::<ConfigureBody>(br#"{"auto_check": true, "bogus": 1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("bogus"));
        let e = parse::<ConfigureBody>(br#"{"auto_check": "yes"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("auto_check"), "{}", e.message);
        let e = parse::<VersionBody>(b"{}").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("version"));
        let e = parse::<VersionBody>(b"{nope").unwrap_err();
        assert!(e.field.is_none() && e.message.contains("not valid JSON"));
        assert!(parse::<Empty>(b"").is_ok());
        let b = parse::<ConfigureBody>(br#"{"feed": null}"#).unwrap();
        assert_eq!(b.feed, Some(None), "null clears, absent leaves");
        assert_eq!(parse::<ConfigureBody>(b"{}").unwrap().feed, None);
    }
}
