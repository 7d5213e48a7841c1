//! The catalog (`docs/reference/federation.md#3-discovery`,
//! `docs/reference/federation.md#4-visibility`): discovered tools under `<server>__<tool>`, the
//! allowlist, per-profile visibility and the Anthropic tool definitions.

use std::sync::Arc;

use agent_core::{Profile, ToolDefinition};
use rmcp::model::Tool;
use serde_json::{Value, json};

use crate::config::FederationConfig;

/// The separator between server and tool in a normalized name.
pub const NAME_SEPARATOR: &str = "__";
/// The longest tool name the Messages API accepts.
pub const MAX_TOOL_NAME_LEN: usize = 64;

/// `<server>__<tool>`.
pub fn normalized_name(server: &str, tool: &str) -> String {
    format!("{server}{NAME_SEPARATOR}{tool}")
}

/// Whether the Messages API accepts `name` as a tool name: `^[a-zA-Z0-9_-]{1,64}$`.
pub fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One discovered tool.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CatalogTool {
    pub normalized_name: String,
    /// The server's configured `name`.
    pub server: String,
    /// The tool's name on its server.
    pub downstream_name: String,
    /// The downstream description, or `""`.
    pub description: String,
    /// The downstream `inputSchema`, or `{}`.
    pub input_schema: Arc<Value>,
    /// Whether the downstream name is in the server's `allowed_tools`.
    pub allowed: bool,
    /// The server's `profiles_allowed`.
    pub profiles_allowed: Vec<Profile>,
}

impl CatalogTool {
    /// Allowlisted and visible to `profile`.
    pub fn visible_to(&self, profile: Profile) -> bool {
        self.allowed && self.profiles_allowed.contains(&profile)
    }

    /// The Anthropic tool definition (`docs/reference/federation.md#4-visibility`).
    pub fn definition(&self) -> ToolDefinition {
        let description = if self.description.trim().is_empty() {
            format!("Tool from {}", self.server)
        } else {
            self.description.clone()
        };
        let empty = match &*self.input_schema {
            Value::Object(o) => o.is_empty(),
            Value::Null => true,
            _ => false,
        };
        let input_schema = if empty {
            Arc::new(json!({"type": "object", "properties": {}}))
        } else {
            Arc::clone(&self.input_schema)
        };
        ToolDefinition {
            name: self.normalized_name.clone(),
            description: description.into(),
            input_schema,
        }
    }

    /// The schema's `required` names missing from `input`, in schema order.
    pub fn missing_required(&self, input: &serde_json::Map<String, Value>) -> Vec<String> {
        self.input_schema
            .get("required")
            .and_then(Value::as_array)
            .map(|required| {
                required
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|name| !input.contains_key(*name))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Builds the catalog from the tool lists of the servers whose discovery succeeded (in config
/// order) and returns it with the warnings it produced. Tools whose normalized name the Messages API would reject are left
/// out (with a warning when the tool is allowlisted); a later duplicate name is ignored.
pub fn build_catalog(
    config: &FederationConfig,
    discovered: &[(String, Vec<Tool>)],
) -> (Vec<CatalogTool>, Vec<String>) {
    let mut catalog: Vec<CatalogTool> = Vec::new();
    let mut warnings = Vec::new();
    for (server_name, tools) in discovered {
        let Some(server) = config.server(server_name) else {
            continue;
        };
        for tool in tools {
            let downstream = tool.name.to_string();
            let name = normalized_name(&server.name, &downstream);
            let allowed = server.allowed_tools.contains(&downstream);
            if !is_valid_tool_name(&name) {
                if allowed {
                    warnings.push(format!(
                        "Downstream tool '{downstream}' on server '{}' is skipped: its name '{name}' is not a valid tool name (^[a-zA-Z0-9_-]{{1,64}}$)",
                        server.name
                    ));
                } else {
                    tracing::debug!(tool = %name, "downstream tool with an invalid name ignored");
                }
                continue;
            }
            if catalog.iter().any(|t| t.normalized_name == name) {
                warnings.push(format!(
                    "Duplicate downstream tool name '{name}' — the later one is ignored"
                ));
                continue;
            }
            catalog.push(CatalogTool {
                normalized_name: name,
                server: server.name.clone(),
                downstream_name: downstream,
                description: tool.description.as_deref().unwrap_or_default().to_owned(),
                input_schema: Arc::new(Value::Object((*tool.input_schema).clone())),
                allowed,
                profiles_allowed: server.profiles_allowed.clone(),
            });
        }
        for wanted in &server.allowed_tools {
            if !tools.iter().any(|t| t.name == wanted.as_str()) {
                warnings.push(format!(
                    "Downstream server '{}': allowlisted tool '{wanted}' was not discovered",
                    server.name
                ));
            }
        }
    }
    (catalog, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_tool_name("fs__read_file"));
        assert!(is_valid_tool_name("everything__get-sum"));
        assert!(!is_valid_tool_name("fs__read.file"));
        assert!(!is_valid_tool_name(&"a".repeat(65)));
        assert!(is_valid_tool_name(&"a".repeat(64)));
        assert!(!is_valid_tool_name(""));
    }

    #[test]
    fn definition_fallbacks() {
        let tool = CatalogTool {
            normalized_name: "s__t".into(),
            server: "s".into(),
            downstream_name: "t".into(),
            description: String::new(),
            input_schema: Arc::new(json!({})),
            allowed: true,
            profiles_allowed: vec![Profile::General],
        };
        let def = tool.definition();
        assert_eq!(&*def.description, "Tool from s");
        assert_eq!(
            *def.input_schema,
            json!({"type": "object", "properties": {}})
        );
        assert!(tool.visible_to(Profile::General));
        assert!(!tool.visible_to(Profile::Verification));
    }
}
