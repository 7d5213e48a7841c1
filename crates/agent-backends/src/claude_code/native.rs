//! Native mode: the single JSON object that `claude -p --output-format json` prints.
//!
//! Parsed leniently from a [`serde_json::Value`]: every field is optional, fields of an
//! unexpected type are treated as absent and unknown fields are ignored (the shape varies
//! between CLI releases). Fields used: `type`, `subtype`, `is_error`, `result`, `errors`,
//! `session_id`, `num_turns`, `stop_reason`, `api_error_status`, `api_error_type`, `usage`
//! (`input_tokens`, `output_tokens`, `cache_creation_input_tokens`,
//! `cache_read_input_tokens`), `total_cost_usd` and `permission_denials[].tool_name`.

use agent_core::Usage;
use serde_json::Value;

/// `subtype` of a run that used up its `--max-turns` budget.
pub const SUBTYPE_ERROR_MAX_TURNS: &str = "error_max_turns";
/// `subtype` of a normal run.
pub const SUBTYPE_SUCCESS: &str = "success";

/// The fields of the CLI's result object that the backend uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CliResult {
    pub subtype: Option<String>,
    pub is_error: bool,
    pub result: Option<String>,
    pub errors: Vec<String>,
    pub session_id: Option<String>,
    pub num_turns: Option<u64>,
    pub stop_reason: Option<String>,
    pub api_error_status: Option<ApiErrorStatus>,
    pub api_error_type: Option<String>,
    pub usage: Option<Usage>,
    pub permission_denials: Vec<String>,
}

/// `api_error_status`: normally an HTTP status number.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ApiErrorStatus {
    Code(u16),
    Text(String),
}

impl std::fmt::Display for ApiErrorStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiErrorStatus::Code(code) => write!(f, "{code}"),
            ApiErrorStatus::Text(text) => f.write_str(text),
        }
    }
}

fn string(object: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
}

fn count(object: &serde_json::Map<String, Value>, key: &str) -> Option<u64> {
    let value = object.get(key)?;
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// Finds the result object in stdout: the whole (trimmed) text, or else the last line that is
/// a JSON object (a CLI that prints other lines before it).
pub(crate) fn parse(stdout: &str) -> Result<CliResult, String> {
    let text = stdout.trim();
    let whole = serde_json::from_str::<Value>(text);
    let object = match whole {
        Ok(Value::Object(object)) => object,
        Ok(other) => {
            return Err(format!(
                "the CLI output is JSON but not an object (found {})",
                kind(&other)
            ));
        }
        Err(error) => {
            let line = text.lines().rev().find_map(|line| {
                match serde_json::from_str::<Value>(line.trim()) {
                    Ok(Value::Object(object)) => Some(object),
                    _ => None,
                }
            });
            match line {
                Some(object) => object,
                None if text.is_empty() => {
                    return Err("the CLI printed nothing on stdout".to_owned());
                }
                None => return Err(format!("the CLI output is not JSON: {error}")),
            }
        }
    };
    Ok(from_object(&object))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn from_object(object: &serde_json::Map<String, Value>) -> CliResult {
    let usage_object = object.get("usage").and_then(Value::as_object);
    let cost = object.get("total_cost_usd").and_then(Value::as_f64);
    let usage = match (usage_object, cost) {
        (None, None) => None,
        (usage, cost) => {
            let field = |key: &str| usage.and_then(|u| count(u, key));
            Some(Usage {
                input_tokens: field("input_tokens").unwrap_or(0),
                output_tokens: field("output_tokens").unwrap_or(0),
                cache_creation_input_tokens: field("cache_creation_input_tokens"),
                cache_read_input_tokens: field("cache_read_input_tokens"),
                total_cost_usd: cost,
            })
        }
    };
    let api_error_status = match object.get("api_error_status") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(ApiErrorStatus::Code),
        Some(Value::String(s)) if !s.trim().is_empty() => Some(match s.trim().parse::<u16>() {
            Ok(code) => ApiErrorStatus::Code(code),
            Err(_) => ApiErrorStatus::Text(s.trim().to_owned()),
        }),
        _ => None,
    };
    let errors = object
        .get("errors")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| match item {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o.get("message").and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                })
                .filter(|s| !s.trim().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let permission_denials = object
        .get("permission_denials")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.get("tool_name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    CliResult {
        subtype: string(object, "subtype"),
        is_error: object
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        result: object
            .get("result")
            .and_then(Value::as_str)
            .map(str::to_owned),
        errors,
        session_id: string(object, "session_id"),
        num_turns: count(object, "num_turns"),
        stop_reason: string(object, "stop_reason"),
        api_error_status,
        api_error_type: string(object, "api_error_type"),
        usage,
        permission_denials,
    }
}

impl CliResult {
    /// The `result` text, trimmed; empty when absent.
    pub fn result_text(&self) -> &str {
        self.result.as_deref().map_or("", str::trim)
    }

    pub fn is_max_turns(&self) -> bool {
        self.subtype.as_deref() == Some(SUBTYPE_ERROR_MAX_TURNS)
    }

    /// What the CLI said about a failure: the `result` text, else the `errors`, else the
    /// subtype.
    pub fn failure_text(&self) -> String {
        let result = self.result_text();
        if !result.is_empty() {
            return result.to_owned();
        }
        if !self.errors.is_empty() {
            return self.errors.join("; ");
        }
        match &self.subtype {
            Some(subtype) => format!("the CLI reported subtype '{subtype}' without details"),
            None => "the CLI reported an error without details".to_owned(),
        }
    }

    /// `subtype …, api_error_status …, api_error_type …` (the parts present).
    pub fn failure_details(&self) -> Vec<String> {
        let mut parts = Vec::new();
        if let Some(subtype) = self.subtype.as_deref().filter(|s| *s != SUBTYPE_SUCCESS) {
            parts.push(format!("subtype {subtype}"));
        }
        if let Some(status) = &self.api_error_status {
            parts.push(format!("api_error_status {status}"));
        }
        if let Some(kind) = &self.api_error_type {
            parts.push(format!("api_error_type {kind}"));
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_full_result() {
        let out = json!({
            "type": "result", "subtype": "success", "is_error": false, "result": " hi ",
            "session_id": "abc", "num_turns": 2, "total_cost_usd": 0.5, "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 1,
                      "server_tool_use": {"web_search_requests": 0}},
            "permission_denials": [{"tool_name": "Write", "tool_use_id": "t"}],
            "api_error_status": null, "something_new": [1, 2]
        });
        let parsed = parse(&format!("\n{out}\n")).unwrap();
        assert_eq!(parsed.result_text(), "hi");
        assert_eq!(parsed.session_id.as_deref(), Some("abc"));
        assert_eq!(parsed.num_turns, Some(2));
        assert_eq!(parsed.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(parsed.api_error_status, None);
        assert_eq!(parsed.permission_denials, ["Write"]);
        assert_eq!(
            parsed.usage,
            Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
                cache_creation_input_tokens: None,
                cache_read_input_tokens: Some(1),
                total_cost_usd: Some(0.5),
            })
        );
    }

    #[test]
    fn tolerates_missing_and_mistyped_fields() {
        let parsed = parse(r#"{"is_error": "yes", "num_turns": "3", "usage": 5}"#).unwrap();
        assert_eq!(parsed, CliResult::default());
        let parsed =
            parse("warning: something\n{\"result\": \"x\", \"api_error_status\": \"529\"}\n")
                .unwrap();
        assert_eq!(parsed.result_text(), "x");
        assert_eq!(parsed.api_error_status, Some(ApiErrorStatus::Code(529)));
        assert!(
            parse("plain text")
                .unwrap_err()
                .starts_with("the CLI output is not JSON: ")
        );
        assert_eq!(
            parse("[1]").unwrap_err(),
            "the CLI output is JSON but not an object (found an array)"
        );
        assert_eq!(
            parse("  ").unwrap_err(),
            "the CLI printed nothing on stdout"
        );
    }

    #[test]
    fn failure_text_and_details() {
        let parsed = parse(
            r#"{"is_error": true, "subtype": "error_max_turns", "errors": ["Reached maximum number of turns (1)"]}"#,
        )
        .unwrap();
        assert!(parsed.is_max_turns());
        assert_eq!(parsed.failure_text(), "Reached maximum number of turns (1)");
        assert_eq!(parsed.failure_details(), ["subtype error_max_turns"]);
        let parsed = parse(
            r#"{"is_error": true, "subtype": "success", "result": "API Error: 429", "api_error_status": 429, "api_error_type": "rate_limit_error"}"#,
        )
        .unwrap();
        assert_eq!(
            parsed.failure_details(),
            ["api_error_status 429", "api_error_type rate_limit_error"]
        );
        assert_eq!(
            CliResult::default().failure_text(),
            "the CLI reported an error without details"
        );
    }
}
