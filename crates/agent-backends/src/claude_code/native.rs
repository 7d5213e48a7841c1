//! Native mode: the output of `claude -p --output-format stream-json --verbose`, one JSON
//! object per line: while the CLI runs, each `assistant` message line gives the steps of the
//! run ([`stream_steps`]: a new model turn, the tools it asks for); the `result` line (the last
//! one, the same object `--output-format json` prints alone) gives the outcome ([`parse`]).
//!
//! Parsed leniently from a [`serde_json::Value`]: every field is optional, fields of an
//! unexpected type are treated as absent and unknown fields are ignored (the shape varies
//! between CLI releases). Fields used: `type`, `subtype`, `is_error`, `result`, `errors`,
//! `session_id`, `num_turns`, `stop_reason`, `api_error_status`, `api_error_type`, `usage`
//! (`input_tokens`, `output_tokens`, `cache_creation_input_tokens`,
//! `cache_read_input_tokens`), `total_cost_usd` and `permission_denials[].tool_name`.

use agent_core::{BackendStep, Usage};
use serde_json::Value;

/// `subtype` of a run that used up its `--max-turns` budget.
pub const SUBTYPE_ERROR_MAX_TURNS: &str = "error_max_turns";
/// `subtype` of a run that `--max-budget-usd` stopped.
pub const SUBTYPE_ERROR_MAX_BUDGET: &str = "error_max_budget_usd";
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
    /// With `--json-schema`: the answer as the CLI validated it.
    pub structured_output: Option<Value>,
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
            // The `result` line of a stream, or else the last object line.
            let mut last_object = None;
            let line = text
                .lines()
                .rev()
                .filter_map(|line| match serde_json::from_str::<Value>(line.trim()) {
                    Ok(Value::Object(object)) => Some(object),
                    _ => None,
                })
                .find(|object| {
                    let is_result = object.get("type").and_then(Value::as_str) == Some("result");
                    if last_object.is_none() {
                        last_object = Some(object.clone());
                    }
                    is_result
                })
                .or(last_object);
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

/// What a stream has shown so far: model turns, counted by assistant message id (the CLI
/// writes one line per content block, all with their message's id).
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    turns: u32,
    message_id: Option<String>,
}

/// The steps one stream line shows: a new model turn when an assistant message starts, and
/// each tool the message asks for. Lines of other types, and lines that are not JSON objects,
/// show none.
pub(crate) fn stream_steps(line: &[u8], state: &mut StreamState) -> Vec<BackendStep> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(line) else {
        return Vec::new();
    };
    if object.get("type").and_then(Value::as_str) != Some("assistant") {
        return Vec::new();
    }
    let message = object.get("message").and_then(Value::as_object);
    let id = message.and_then(|m| string(m, "id"));
    let mut steps = Vec::new();
    if state.turns == 0 || id.is_none() || id != state.message_id {
        state.turns = state.turns.saturating_add(1);
        state.message_id = id;
        steps.push(BackendStep::ModelTurn { turn: state.turns });
    }
    let blocks = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array);
    for block in blocks.into_iter().flatten() {
        if block.get("type").and_then(Value::as_str) == Some("tool_use")
            && let Some(name) = block.get("name").and_then(Value::as_str)
        {
            steps.push(BackendStep::ToolUse {
                turn: state.turns,
                tool: name.to_owned(),
            });
        }
    }
    steps
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
        structured_output: object
            .get("structured_output")
            .filter(|v| !v.is_null())
            .cloned(),
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

    pub fn is_max_budget(&self) -> bool {
        self.subtype.as_deref() == Some(SUBTYPE_ERROR_MAX_BUDGET)
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

    #[test]
    fn a_stream_shows_turns_and_tool_uses_and_ends_with_its_result() {
        let stream = [
            r#"{"type":"system","subtype":"init","session_id":"s1","tools":["Read"]}"#,
            r#"{"type":"assistant","message":{"id":"msg_1","content":[{"type":"text","text":"Let me look."}]}}"#,
            r#"{"type":"assistant","message":{"id":"msg_1","content":[{"type":"tool_use","id":"tu_1","name":"Read","input":{}}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"tu_1","content":"x"}]}}"#,
            r#"{"type":"assistant","message":{"id":"msg_2","content":[{"type":"tool_use","name":"Grep"},{"type":"tool_use","name":"Glob"}]}}"#,
            r#"{"type":"assistant","message":{"id":"msg_3","content":[{"type":"text","text":"done"}]}}"#,
            r#"not json"#,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"s1","num_turns":3}"#,
        ];
        let mut state = StreamState::default();
        let steps: Vec<BackendStep> = stream
            .iter()
            .flat_map(|line| stream_steps(line.as_bytes(), &mut state))
            .collect();
        let tool = |turn, name: &str| BackendStep::ToolUse {
            turn,
            tool: name.to_owned(),
        };
        assert_eq!(
            steps,
            [
                BackendStep::ModelTurn { turn: 1 },
                tool(1, "Read"),
                BackendStep::ModelTurn { turn: 2 },
                tool(2, "Grep"),
                tool(2, "Glob"),
                BackendStep::ModelTurn { turn: 3 },
            ]
        );
        let parsed = parse(&stream.join("\n")).unwrap();
        assert_eq!(parsed.result.as_deref(), Some("done"));
        assert_eq!(parsed.num_turns, Some(3));
        // A line after the result (a CLI that prints more) does not hide it.
        let mut later = stream.join("\n");
        later.push_str("\n{\"type\":\"system\",\"subtype\":\"bye\"}");
        assert_eq!(parse(&later).unwrap().result.as_deref(), Some("done"));
    }
}
