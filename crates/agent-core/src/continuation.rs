//! The structured continuation context (`backends.md` §5.6) that the engine builds from a
//! session's row and event log for backends that declare
//! `supports_structured_continuation_context` (the Claude Code CLI backend).

use serde::Serialize;
use serde_json::{Value, json};

use crate::event::{EventType, StoredEvent};
use crate::ports::{SessionRecord, ToolDefinition};

/// The reconstruction format version recorded in events and prompts.
pub const RECONSTRUCTION_VERSION: &str = "v1.0.0";

/// How much history a continuation carries (`profiles-and-policy.md` §5.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowPolicy {
    pub max_recent_turns: i64,
    pub max_warnings: i64,
    pub max_forwarding_events: i64,
    pub include_verification_context: bool,
    pub include_tool_downgrade_context: bool,
}

impl Default for WindowPolicy {
    fn default() -> Self {
        Self {
            max_recent_turns: 5,
            max_warnings: 3,
            max_forwarding_events: 3,
            include_verification_context: true,
            include_tool_downgrade_context: true,
        }
    }
}

/// Counts recorded in `session_continuation_context_built`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContinuationStats {
    pub turns_included: i64,
    pub turns_omitted: i64,
    pub warnings_included: i64,
    pub warnings_omitted: i64,
    pub forwarding_events_included: i64,
    pub forwarding_events_omitted: i64,
    pub reconstruction_version: String,
}

/// What prior turns did with federated tools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ForwardingHistory {
    pub mode: String,
    pub compatible_tool_names: Vec<String>,
    pub dropped_tool_names: Vec<String>,
    pub recent_drop_reasons: Vec<String>,
}

/// The context handed to the backend on `agent_continue_session`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContinuationContext {
    pub session_id: String,
    pub reconstruction_version: String,
    pub user_requests: Vec<String>,
    pub agent_outputs: Vec<String>,
    pub warnings: Vec<String>,
    pub forwarding: Option<ForwardingHistory>,
    /// `(key, value)` in order: `working_directory` (if set), then `profile`.
    pub active_constraints: Vec<(String, String)>,
    pub mediated_summaries: Vec<String>,
    pub session_summary: Option<String>,
    pub stats: ContinuationStats,
}

// ---------------------------------------------------------------------------------------------
// Building the context (`backends.md` §5.6)
// ---------------------------------------------------------------------------------------------

/// The forwarding mode recorded by limited text injection.
pub const FORWARDING_MODE_LIMITED: &str = "limited_text_injection";
/// The forwarding mode of a turn whose tools were not forwarded at all.
pub const FORWARDING_MODE_DISABLED: &str = "disabled";
/// The forwarding mode when the recorded events say neither.
pub const FORWARDING_MODE_NONE: &str = "none";
/// The reason used when a non-forwarding event carries none.
pub const DEFAULT_NOT_FORWARDED_REASON: &str = "backend does not support downstream tools";

/// Which mediated results a continuation carries (`mediation.md` §9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediationInclusion {
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_INCLUDE_MEDIATED_RESULTS_IN_CONTINUATION`.
    pub include_mediated: bool,
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_INCLUDE_REJECTED_MEDIATION_IN_CONTINUATION` (only matters
    /// when `include_mediated` is true).
    pub include_rejected: bool,
}

/// Builds the structured continuation context of `record` from its full event log (read
/// **before** the new `user_input` event is written), following `backends.md` §5.6 steps 1–8.
///
/// Window sizes are used as given, except that a zero or negative size keeps nothing (the
/// original sliced Python lists with them; this implementation treats "the last 0 turns" as
/// none). Mediated summaries are built only when `mediation.include_mediated` is true.
pub fn build_context(
    record: &SessionRecord,
    events: &[StoredEvent],
    policy: &WindowPolicy,
    mediation: MediationInclusion,
) -> ContinuationContext {
    // 1–2. User requests and agent outputs, in event order.
    let mut users = Vec::new();
    let mut outputs = Vec::new();
    for event in events {
        if is(event, EventType::UserInput) {
            let task = event.payload.get("task");
            let text = match task {
                Some(v) if truthy(v) => Some(v),
                _ => event.payload.get("message"),
            };
            if let Some(text) = text.and_then(Value::as_str).map(str::trim)
                && !text.is_empty()
            {
                users.push(text.to_owned());
            }
        } else if is(event, EventType::ProviderResponseSummary)
            && let Some(text) = event
                .payload
                .get("summary")
                .and_then(Value::as_str)
                .map(str::trim)
            && !text.is_empty()
        {
            outputs.push(text.to_owned());
        }
    }

    // 3. Independent windows; pairs are formed by position later (quirk reproduced).
    let total_pairs = users.len().min(outputs.len());
    let user_requests = last(users, policy.max_recent_turns);
    let agent_outputs = last(outputs, policy.max_recent_turns);
    let turns_included = user_requests.len().min(agent_outputs.len());
    let turns_omitted = total_pairs.saturating_sub(turns_included);

    // 4. Derived warnings, oldest first; the first `max_warnings` are kept.
    let mut derived = Vec::new();
    for event in events {
        if is(event, EventType::DownstreamToolCatalogResolved) {
            if !policy.include_tool_downgrade_context {
                continue;
            }
            let dropped = string_list(event.payload.get("dropped_names"));
            if !dropped.is_empty() {
                let mode = non_empty_str(event.payload.get("forwarding_mode"))
                    .unwrap_or(FORWARDING_MODE_LIMITED);
                derived.push(format!(
                    "Prior turn: {} tool(s) were not forwarded ({}). Forwarding mode: {mode}.",
                    dropped.len(),
                    dropped.join(", ")
                ));
            } else if event.payload.get("forwarded") == Some(&Value::Bool(false)) {
                let reason = non_empty_str(event.payload.get("reason"))
                    .unwrap_or(DEFAULT_NOT_FORWARDED_REASON);
                derived.push(format!(
                    "Prior turn: federation tools were not forwarded — {reason}."
                ));
            }
        } else if is(event, EventType::WorkflowNormalization)
            && policy.include_verification_context
            && let Some(verdict) = event.payload.get("verdict").filter(|v| truthy(v))
        {
            derived.push(format!("Prior verification verdict: {}.", py_str(verdict)));
        }
    }
    let total_warnings = derived.len();
    derived.truncate(window(policy.max_warnings));
    let warnings_omitted = total_warnings - derived.len();

    // 5. Forwarding history over the last `max_forwarding_events` catalog events.
    let catalog: Vec<&Value> = events
        .iter()
        .filter(|e| is(e, EventType::DownstreamToolCatalogResolved))
        .map(|e| &e.payload)
        .collect();
    let keep = window(policy.max_forwarding_events).min(catalog.len());
    let selected = &catalog[catalog.len() - keep..];
    let forwarding_events_omitted = catalog.len() - keep;
    let forwarding = selected
        .last()
        .map(|latest| forwarding_history(latest, selected));

    // 6. Active constraints.
    let mut active_constraints = Vec::new();
    if let Some(dir) = record
        .working_directory
        .as_deref()
        .filter(|d| !d.is_empty())
    {
        active_constraints.push(("working_directory".to_owned(), dir.to_owned()));
    }
    active_constraints.push(("profile".to_owned(), record.profile.as_str().to_owned()));

    // 7. Mediated summaries (not windowed).
    let mediated_summaries = if mediation.include_mediated {
        mediated_summaries(events, mediation.include_rejected)
    } else {
        Vec::new()
    };

    let stats = ContinuationStats {
        turns_included: count(turns_included),
        turns_omitted: count(turns_omitted),
        warnings_included: count(derived.len()),
        warnings_omitted: count(warnings_omitted),
        forwarding_events_included: count(keep),
        forwarding_events_omitted: count(forwarding_events_omitted),
        reconstruction_version: RECONSTRUCTION_VERSION.to_owned(),
    };

    // 8. Summary and version.
    ContinuationContext {
        session_id: record.session_id.clone(),
        reconstruction_version: RECONSTRUCTION_VERSION.to_owned(),
        user_requests,
        agent_outputs,
        warnings: derived,
        forwarding,
        active_constraints,
        mediated_summaries,
        session_summary: record.summary_latest.clone(),
        stats,
    }
}

/// Whether `session_continuation_context_truncated` is recorded: turns or warnings were
/// omitted (forwarding omissions alone do not count).
pub fn is_truncated(stats: &ContinuationStats) -> bool {
    stats.turns_omitted > 0 || stats.warnings_omitted > 0
}

/// The payload of `session_continuation_context_built`: `{"policy": {...}, "stats": {...}}`.
pub fn context_built_payload(policy: &WindowPolicy, stats: &ContinuationStats) -> Value {
    json!({ "policy": policy, "stats": stats })
}

/// The payload of `session_continuation_context_truncated`: `{"stats": {...}}`.
pub fn context_truncated_payload(stats: &ContinuationStats) -> Value {
    json!({ "stats": stats })
}

/// The payload of `session_continuation_prompt_rendered`.
pub fn prompt_rendered_payload() -> Value {
    json!({ "reconstruction_version": RECONSTRUCTION_VERSION })
}

fn is(event: &StoredEvent, event_type: EventType) -> bool {
    event.event_type == event_type.as_str()
}

fn window(size: i64) -> usize {
    usize::try_from(size).unwrap_or(0)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The last `size` items (none when `size` ≤ 0).
fn last(mut items: Vec<String>, size: i64) -> Vec<String> {
    let keep = window(size).min(items.len());
    items.drain(..items.len() - keep);
    items
}

/// Python truthiness of a JSON value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python `str()` of a scalar JSON value (`None`, `True`, numbers, strings as-is).
fn py_str(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn non_empty_str(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The string items of a JSON array (other items and non-arrays ignored).
fn string_list(value: Option<&Value>) -> Vec<&str> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|existing| existing == item) {
        list.push(item.to_owned());
    }
}

fn forwarding_history(latest: &Value, selected: &[&Value]) -> ForwardingHistory {
    let mode = match non_empty_str(latest.get("forwarding_mode")) {
        Some(mode) => mode.to_owned(),
        None => match latest.get("forwarded") {
            Some(Value::Bool(false)) => FORWARDING_MODE_DISABLED.to_owned(),
            Some(v) if truthy(v) => FORWARDING_MODE_LIMITED.to_owned(),
            _ => FORWARDING_MODE_NONE.to_owned(),
        },
    };
    let mut history = ForwardingHistory {
        mode,
        ..ForwardingHistory::default()
    };
    for payload in selected {
        let dropped = string_list(payload.get("dropped_names"));
        let counts = matches!(
            payload.get("forwarded"),
            None | Some(Value::Bool(_)) | Some(Value::Number(_))
        );
        if counts {
            // Quirk reproduced: for `forwarded: false` events these are tools that were *not*
            // forwarded. Visible order is kept.
            for name in string_list(payload.get("visible_tools")) {
                if !dropped.contains(&name) {
                    push_unique(&mut history.compatible_tool_names, name);
                }
            }
        }
        for name in dropped {
            push_unique(&mut history.dropped_tool_names, name);
        }
        if let Some(reason) = non_empty_str(payload.get("reason")) {
            push_unique(&mut history.recent_drop_reasons, reason);
        }
    }
    history
}

/// The first `max` characters of `text`, plus ` [truncated]` when it was longer.
fn cut(text: &str, max: usize, marker: bool) -> String {
    let head = crate::text::truncate_chars(text, max);
    if marker && head.len() < text.len() {
        format!("{head} [truncated]")
    } else {
        head.to_owned()
    }
}

/// `mediation.md` §9: action summaries first, then workflow summaries, in event order.
fn mediated_summaries(events: &[StoredEvent], include_rejected: bool) -> Vec<String> {
    let field = |payload: &Value, key: &str| payload.get(key).map(py_str).unwrap_or_default();
    let text = |payload: &Value, key: &str| {
        payload
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut actions = Vec::new();
    let mut workflows = Vec::new();
    for event in events {
        let p = &event.payload;
        match event.event_type.as_str() {
            "mediated_action_completed"
                if p.get("status").and_then(Value::as_str) == Some("completed") =>
            {
                let tool = text(p, "tool_name").unwrap_or_else(|| field(p, "target_tool"));
                let kind = p
                    .get("action_type")
                    .map(|t| format!(" ({})", py_str(t)))
                    .unwrap_or_default();
                let result = match text(p, "result_summary") {
                    Some(summary) => cut(&summary, 150, true),
                    None => "(completed, no result summary)".to_owned(),
                };
                actions.push(format!("Tool {tool}{kind}: {result}"));
            }
            "mediated_action_rejected" if include_rejected => {
                let reason = text(p, "failure_reason")
                    .or_else(|| text(p, "policy_decision"))
                    .map(|r| cut(&r, 100, false))
                    .unwrap_or_else(|| "rejected by policy".to_owned());
                actions.push(format!(
                    "Tool {} (rejected): {reason}",
                    field(p, "target_tool")
                ));
            }
            "mediated_workflow_step_completed" => {
                let head = format!(
                    "Workflow {} step {}: tool {}",
                    field(p, "workflow_id"),
                    field(p, "step_index"),
                    field(p, "target_tool")
                );
                match p.get("status").and_then(Value::as_str) {
                    Some("completed") => {
                        let result = match text(p, "result_summary") {
                            Some(summary) => cut(&summary, 120, true),
                            None => "(completed, no result summary)".to_owned(),
                        };
                        workflows.push(format!("{head}: {result}"));
                    }
                    Some("failed") => {
                        let reason = text(p, "failure_reason").unwrap_or_default();
                        workflows.push(format!("{head} (failed): {}", cut(&reason, 80, false)));
                    }
                    _ => {}
                }
            }
            "mediated_workflow_step_rejected" if include_rejected => {
                let reason = text(p, "failure_reason")
                    .or_else(|| text(p, "rejection_reason"))
                    .map(|r| cut(&r, 80, false))
                    .unwrap_or_else(|| "rejected by policy".to_owned());
                workflows.push(format!(
                    "Workflow {} step {}: tool {} (rejected): {reason}",
                    field(p, "workflow_id"),
                    field(p, "step_index"),
                    field(p, "target_tool")
                ));
            }
            _ => {}
        }
    }
    actions.extend(workflows);
    actions
}

// ---------------------------------------------------------------------------------------------
// Limited tool forwarding screening (`backends.md` §5.5)
// ---------------------------------------------------------------------------------------------

/// JSON-Schema keywords that make a schema too complex for text injection, in the order they
/// are looked for.
pub const UNSUPPORTED_SCHEMA_KEYWORDS: [&str; 5] = ["$ref", "allOf", "anyOf", "oneOf", "not"];
/// The most top-level `properties` a text-injected tool may have.
pub const MAX_INJECTED_PROPERTIES: usize = 5;

/// The outcome level of screening one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScreeningLevel {
    Compatible,
    MissingDescription,
    SchemaUnsupported,
    ComplexSchema,
}

impl ScreeningLevel {
    pub const fn as_str(self) -> &'static str {
        match self {
            ScreeningLevel::Compatible => "compatible",
            ScreeningLevel::MissingDescription => "missing_description",
            ScreeningLevel::SchemaUnsupported => "schema_unsupported",
            ScreeningLevel::ComplexSchema => "complex_schema",
        }
    }
}

/// The screening verdict of one tool: its level and the exact reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolScreening {
    pub level: ScreeningLevel,
    pub reason: String,
}

impl ToolScreening {
    pub fn is_compatible(&self) -> bool {
        self.level == ScreeningLevel::Compatible
    }
}

/// Screens a tool for limited text injection (`backends.md` §5.5), checks in order:
/// blank description, unsupported schema keyword, more than [`MAX_INJECTED_PROPERTIES`]
/// top-level properties.
///
/// The original's quirk (a plain substring search of the schema text, so that any schema
/// containing the letters `not`, e.g. a property named `notes`, was rejected) is fixed: only
/// real keyword usage counts, i.e. an object key named `$ref`, `allOf`, `anyOf`, `oneOf` or
/// `not` anywhere in the schema tree. Names of properties (keys of `properties`,
/// `patternProperties`, `$defs`, `definitions`, `dependentSchemas`) are not keywords, and
/// literal data (`enum`, `const`, `default`, `examples`) is not searched.
pub fn screen_tool(tool: &ToolDefinition) -> ToolScreening {
    if tool.description.trim().is_empty() {
        return ToolScreening {
            level: ScreeningLevel::MissingDescription,
            reason: "tool has no description and cannot be described to the model".to_owned(),
        };
    }
    if let Some(keyword) = unsupported_keyword(&tool.input_schema) {
        return ToolScreening {
            level: ScreeningLevel::SchemaUnsupported,
            reason: format!(
                "input_schema uses unsupported complexity keyword '{keyword}'; use 'api' backend for full tool support"
            ),
        };
    }
    let properties = tool
        .input_schema
        .get("properties")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    if properties > MAX_INJECTED_PROPERTIES {
        return ToolScreening {
            level: ScreeningLevel::ComplexSchema,
            reason: format!(
                "input_schema has {properties} top-level properties (max {MAX_INJECTED_PROPERTIES}); use 'api' backend for full tool support"
            ),
        };
    }
    ToolScreening {
        level: ScreeningLevel::Compatible,
        reason: "tool is compatible with limited text injection".to_owned(),
    }
}

/// The first unsupported keyword used anywhere in `schema` (see [`screen_tool`]).
pub fn unsupported_keyword(schema: &Value) -> Option<&'static str> {
    const NAME_MAPS: [&str; 5] = [
        "properties",
        "patternProperties",
        "$defs",
        "definitions",
        "dependentSchemas",
    ];
    const DATA: [&str; 4] = ["enum", "const", "default", "examples"];
    match schema {
        Value::Object(object) => {
            if let Some(keyword) = UNSUPPORTED_SCHEMA_KEYWORDS
                .iter()
                .find(|k| object.contains_key(**k))
            {
                return Some(keyword);
            }
            object.iter().find_map(|(key, value)| {
                if DATA.contains(&key.as_str()) {
                    None
                } else if NAME_MAPS.contains(&key.as_str()) {
                    match value {
                        Value::Object(named) => named.values().find_map(unsupported_keyword),
                        other => unsupported_keyword(other),
                    }
                } else {
                    unsupported_keyword(value)
                }
            })
        }
        Value::Array(items) => items.iter().find_map(unsupported_keyword),
        _ => None,
    }
}
