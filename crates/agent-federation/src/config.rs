//! The federation config file (`docs/reference/federation.md#2-configuration`): format, defaults
//! and validation, with the original's exact error messages
//! (`docs/federation.md#33-errors-any-one-disables-federation`). Any error disables federation;
//! warnings never do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_core::Profile;
use agent_core::pyfmt;
use serde_json::{Map, Value};

/// `discovery_timeout_seconds` when absent.
pub const DEFAULT_DISCOVERY_TIMEOUT_SECONDS: f64 = 10.0;
/// `call_timeout_seconds` when absent (an extension: the original had no call timeout;
/// `docs/reference/federation.md#6-invocation`).
pub const DEFAULT_CALL_TIMEOUT_SECONDS: f64 = 60.0;
/// The transports a config may name, as the unsupported-transport message lists them.
pub const SUPPORTED_TRANSPORTS: [&str; 2] = ["stdio", "streamable-http"];

/// Why a config file cannot be used. `Display` is the exact message of
/// `docs/federation.md#1-enabling` and `docs/federation.md#33-errors-any-one-disables-federation`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FederationConfigError {
    /// The path does not exist (logged differently from the other errors,
    /// `docs/federation.md#1-enabling`).
    #[error("Federation config file not found: {}", .0.display())]
    NotFound(PathBuf),
    /// Every other error: the message as `docs/federation.md#33-errors-any-one-disables-federation`
    /// words it.
    #[error("{0}")]
    Invalid(String),
}

impl FederationConfigError {
    /// The error log line of `docs/federation.md#1-enabling` (`… — federation will be disabled`).
    pub fn log_line(&self) -> String {
        match self {
            FederationConfigError::NotFound(_) => {
                format!("{self} — federation will be disabled")
            }
            FederationConfigError::Invalid(message) => {
                format!("Federation config error: {message} — federation will be disabled")
            }
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        FederationConfigError::Invalid(message.into())
    }
}

/// How a downstream server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownstreamTransport {
    /// A child process speaking MCP over its stdin/stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        /// Laid over the minimal base environment (see [`crate::child_environment`]).
        env: BTreeMap<String, String>,
    },
    /// An MCP streamable HTTP endpoint (an extension: `"transport": "streamable-http"`).
    StreamableHttp {
        url: String,
        /// Sent with every request (e.g. `Authorization`).
        headers: BTreeMap<String, String>,
    },
}

impl DownstreamTransport {
    /// The config spelling: `stdio` or `streamable-http`.
    pub fn kind(&self) -> &'static str {
        match self {
            DownstreamTransport::Stdio { .. } => "stdio",
            DownstreamTransport::StreamableHttp { .. } => "streamable-http",
        }
    }
}

/// One validated `downstream_servers` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DownstreamServerConfig {
    /// Trimmed, non-empty, without `__`.
    pub name: String,
    pub transport: DownstreamTransport,
    /// Truthiness of the JSON value (the string `"false"` counts as true, as in the original:
    /// **[kept]** in `docs/reference/federation.md#1-enablement`).
    pub enabled: bool,
    /// Spawn/connect + `initialize` + `tools/list`; also bounds a reconnection.
    pub discovery_timeout: Duration,
    /// Bounds one `tools/call` (extension; default 60 s).
    pub call_timeout: Duration,
    /// Exact downstream tool names; no wildcard.
    pub allowed_tools: Vec<String>,
    /// Profiles that see this server's allowlisted tools.
    pub profiles_allowed: Vec<Profile>,
}

/// A validated federation config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FederationConfig {
    /// The file it came from, when loaded from one.
    pub path: Option<PathBuf>,
    /// Every entry in file order, disabled ones included (they are ignored everywhere else).
    pub servers: Vec<DownstreamServerConfig>,
    /// Non-fatal findings (already logged as warnings by [`FederationConfig::load`]).
    pub warnings: Vec<String>,
}

impl FederationConfig {
    /// Reads and validates the file at `path`. Warnings are logged and kept in
    /// [`FederationConfig::warnings`]; the error's `Display` is the guide's message.
    pub fn load(path: impl AsRef<Path>) -> Result<FederationConfig, FederationConfigError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(FederationConfigError::NotFound(path.to_path_buf()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            FederationConfigError::invalid(format!(
                "Cannot read federation config file {}: {e}",
                path.display()
            ))
        })?;
        let mut config = Self::parse(&text, &path.display().to_string())?;
        config.path = Some(path.to_path_buf());
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        Ok(config)
    }

    /// Validates config text; `origin` names it in the messages (the path for a file).
    /// Nothing is logged.
    pub fn parse(text: &str, origin: &str) -> Result<FederationConfig, FederationConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            FederationConfigError::invalid(format!(
                "Federation config file {origin} is not valid JSON: {e}"
            ))
        })?;
        if !value.is_object() {
            return Err(FederationConfigError::invalid(format!(
                "Federation config file {origin} must be a JSON object"
            )));
        }
        Self::from_value(&value)
    }

    /// Validates an already parsed top-level object. Nothing is logged.
    pub fn from_value(value: &Value) -> Result<FederationConfig, FederationConfigError> {
        let Some(top) = value.as_object() else {
            return Err(FederationConfigError::invalid(
                "Federation config must be a JSON object",
            ));
        };
        let mut config = FederationConfig::default();
        let entries = match top.get("downstream_servers") {
            None => return Ok(config),
            Some(Value::Array(entries)) => entries,
            Some(_) => {
                return Err(FederationConfigError::invalid(
                    "Federation config 'downstream_servers' must be a list",
                ));
            }
        };
        for entry in entries {
            let Some(object) = entry.as_object() else {
                return Err(FederationConfigError::invalid(format!(
                    "Each downstream server config must be a JSON object, got {}",
                    pyfmt::type_name(entry)
                )));
            };
            let server = parse_server(object, &mut config.warnings)?;
            if config.servers.iter().any(|s| s.name == server.name) {
                config.warnings.push(format!(
                    "Downstream server '{}' is configured more than once — only the first entry is used",
                    server.name
                ));
                continue;
            }
            config.servers.push(server);
        }
        Ok(config)
    }

    /// The servers that take part (`enabled` truthy), in file order.
    pub fn enabled_servers(&self) -> impl Iterator<Item = &DownstreamServerConfig> {
        self.servers.iter().filter(|s| s.enabled)
    }

    /// The entry named `name`, enabled or not.
    pub fn server(&self, name: &str) -> Option<&DownstreamServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }
}

fn parse_server(
    object: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<DownstreamServerConfig, FederationConfigError> {
    let name = match object.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => {
            return Err(FederationConfigError::invalid(
                "Downstream server 'name' is required and must be a non-empty string",
            ));
        }
    };
    if name.contains("__") {
        return Err(FederationConfigError::invalid(format!(
            "Downstream server '{name}' must not contain '__' (reserved for normalized tool name separator)"
        )));
    }
    let bad =
        |what: &str| FederationConfigError::invalid(format!("Downstream server '{name}': {what}"));

    let transport_name = match object.get("transport") {
        None => "stdio".to_owned(),
        Some(value) => pyfmt::to_str(value),
    };
    let transport = match transport_name.as_str() {
        "stdio" => {
            let command = match object.get("command") {
                Some(Value::String(c)) if !c.trim().is_empty() => c.clone(),
                _ => return Err(bad("'command' is required for stdio transport")),
            };
            let args = match object.get("args") {
                None => Vec::new(),
                Some(Value::Array(items)) => items.iter().map(pyfmt::to_str).collect(),
                Some(_) => return Err(bad("'args' must be a list")),
            };
            let env =
                string_map(object.get("env")).ok_or_else(|| bad("'env' must be a JSON object"))?;
            DownstreamTransport::Stdio { command, args, env }
        }
        "streamable-http" => {
            let url = match object.get("url") {
                Some(Value::String(u)) if !u.trim().is_empty() => u.trim().to_owned(),
                _ => return Err(bad("'url' is required for streamable-http transport")),
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad("'url' must be an http:// or https:// URL"));
            }
            let headers = string_map(object.get("headers"))
                .ok_or_else(|| bad("'headers' must be a JSON object"))?;
            for (key, value) in &headers {
                if http::HeaderName::from_bytes(key.as_bytes()).is_err()
                    || http::HeaderValue::from_str(value).is_err()
                {
                    return Err(bad(&format!("'headers' has an invalid header '{key}'")));
                }
            }
            if object.contains_key("command") || object.contains_key("env") {
                warnings.push(format!(
                    "Downstream server '{name}': 'command', 'args' and 'env' are ignored for streamable-http transport"
                ));
            }
            DownstreamTransport::StreamableHttp { url, headers }
        }
        other => {
            return Err(bad(&format!(
                "unsupported transport '{other}'. Supported transports: {}",
                pyfmt::list(SUPPORTED_TRANSPORTS)
            )));
        }
    };

    let enabled = match object.get("enabled") {
        None => true,
        Some(value) => {
            if !value.is_boolean() {
                warnings.push(format!(
                    "Downstream server '{name}': 'enabled' is not a boolean ({value}); its truthiness is used, so it counts as {}",
                    pyfmt::truthy(value)
                ));
            }
            pyfmt::truthy(value)
        }
    };
    let discovery_timeout = seconds(
        object.get("discovery_timeout_seconds"),
        DEFAULT_DISCOVERY_TIMEOUT_SECONDS,
    )
    .ok_or_else(|| bad("'discovery_timeout_seconds' must be a positive number"))?;
    let call_timeout = seconds(
        object.get("call_timeout_seconds"),
        DEFAULT_CALL_TIMEOUT_SECONDS,
    )
    .ok_or_else(|| bad("'call_timeout_seconds' must be a positive number"))?;

    let allowed_tools: Vec<String> = match object.get("allowed_tools") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(pyfmt::to_str).collect(),
        Some(_) => return Err(bad("'allowed_tools' must be a list")),
    };
    let profile_names: Vec<String> = match object.get("profiles_allowed") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(pyfmt::to_str).collect(),
        Some(_) => return Err(bad("'profiles_allowed' must be a list")),
    };

    if allowed_tools.is_empty() {
        warnings.push(format!(
            "Downstream server '{name}' has an empty 'allowed_tools' list — no tools from this server will be exposed"
        ));
    } else if allowed_tools.iter().any(|t| t == "*" || t.contains('*')) {
        warnings.push(format!(
            "Downstream server '{name}': 'allowed_tools' has no wildcard support — '*' only matches a tool literally named so"
        ));
    }
    let mut profiles_allowed = Vec::new();
    for profile_name in &profile_names {
        match Profile::parse(profile_name) {
            Some(profile) if !profiles_allowed.contains(&profile) => profiles_allowed.push(profile),
            Some(_) => {}
            None => warnings.push(format!(
                "Downstream server '{name}': unknown profile '{profile_name}' in 'profiles_allowed' (known: {})",
                Profile::choices()
            )),
        }
    }
    if profiles_allowed.is_empty() && !allowed_tools.is_empty() {
        warnings.push(format!(
            "Downstream server '{name}' has no known profile in 'profiles_allowed' — its tools are visible to no session"
        ));
    }

    Ok(DownstreamServerConfig {
        name,
        transport,
        enabled,
        discovery_timeout,
        call_timeout,
        allowed_tools,
        profiles_allowed,
    })
}

/// An object of strings (values converted like Python's `str()`); `None` when not an object.
fn string_map(value: Option<&Value>) -> Option<BTreeMap<String, String>> {
    match value {
        None => Some(BTreeMap::new()),
        Some(Value::Object(map)) => Some(
            map.iter()
                .map(|(k, v)| (k.clone(), pyfmt::to_str(v)))
                .collect(),
        ),
        Some(_) => None,
    }
}

/// A positive, finite number of seconds: a JSON number or a numeric string (Python's
/// `float()` accepted both); `None` for anything else, including `null` and booleans.
fn seconds(value: Option<&Value>, default: f64) -> Option<Duration> {
    let secs = match value {
        None => default,
        Some(Value::Number(n)) => n.as_f64()?,
        Some(Value::String(s)) => s.trim().parse::<f64>().ok()?,
        Some(_) => return None,
    };
    if !secs.is_finite() || secs <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(value: Value) -> String {
        FederationConfig::from_value(&value)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_and_conversions() {
        let config = FederationConfig::from_value(&json!({"downstream_servers": [
            {"name": " s1 ", "command": "x", "args": [1, true, "a", 1e16, ["x"], {"k": null}], "env": {"K": 2},
             "enabled": "false", "discovery_timeout_seconds": "2.5",
             "allowed_tools": ["t"], "profiles_allowed": ["general", "bogus"]}
        ]}))
        .unwrap();
        let s = &config.servers[0];
        assert_eq!(s.name, "s1");
        assert!(s.enabled, "the string 'false' is truthy");
        assert_eq!(s.discovery_timeout, Duration::from_millis(2500));
        assert_eq!(s.call_timeout, Duration::from_secs(60));
        assert_eq!(s.profiles_allowed, vec![Profile::General]);
        let DownstreamTransport::Stdio { args, env, .. } = &s.transport else {
            panic!("stdio expected")
        };
        // Each argument is Python's `str()` of the value (expected bytes from CPython).
        assert_eq!(args, &["1", "True", "a", "1e+16", "['x']", "{'k': None}"]);
        assert_eq!(env.get("K").map(String::as_str), Some("2"));
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("unknown profile 'bogus'"))
        );
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("'enabled' is not a boolean"))
        );
    }

    #[test]
    fn messages() {
        assert_eq!(
            err(json!({"downstream_servers": {}})),
            "Federation config 'downstream_servers' must be a list"
        );
        assert_eq!(
            err(json!({"downstream_servers": [3]})),
            "Each downstream server config must be a JSON object, got int"
        );
        assert_eq!(
            err(json!({"downstream_servers": [{"name": 3}]})),
            "Downstream server 'name' is required and must be a non-empty string"
        );
        assert_eq!(
            err(json!({"downstream_servers": [{"name": "s", "transport": "sse", "command": "x"}]})),
            "Downstream server 's': unsupported transport 'sse'. Supported transports: ['stdio', 'streamable-http']"
        );
        assert_eq!(
            err(
                json!({"downstream_servers": [{"name": "s", "discovery_timeout_seconds": "x", "command": "c"}]})
            ),
            "Downstream server 's': 'discovery_timeout_seconds' must be a positive number"
        );
        assert_eq!(
            err(
                json!({"downstream_servers": [{"name": "s", "transport": "streamable-http", "url": "ftp://x"}]})
            ),
            "Downstream server 's': 'url' must be an http:// or https:// URL"
        );
    }

    #[test]
    fn duplicates_keep_the_first() {
        let config = FederationConfig::from_value(&json!({"downstream_servers": [
            {"name": "s", "command": "a", "allowed_tools": ["x"], "profiles_allowed": ["general"]},
            {"name": "s", "command": "b", "allowed_tools": ["x"], "profiles_allowed": ["general"]}
        ]}))
        .unwrap();
        assert_eq!(config.servers.len(), 1);
        assert!(
            matches!(&config.servers[0].transport, DownstreamTransport::Stdio { command, .. } if command == "a")
        );
    }
}
