//! The structured continuation context (`docs/reference/backends.md#56-continuation-context`) that
//! the engine builds from a session's row and event log for backends that declare
//! `supports_structured_continuation_context` (the Claude Code CLI backend).

use serde::Serialize;
use serde_json::{Value, json};

use crate::event::{EventType, StoredEvent};
use crate::ports::{SessionRecord, ToolDefinition};
use crate::pyfmt;

/// The reconstruction format version recorded in events and prompts.
pub const RECONSTRUCTION_VERSION: &str = "v1.0.0";

/// How much history a continuation carries (`docs/reference/backends.md#56-continuation-context`).
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
// Building the context (`docs/reference/backends.md#56-continuation-context`)
// ---------------------------------------------------------------------------------------------

/// The forwarding mode recorded by limited text injection.
pub const FORWARDING_MODE_LIMITED: &str = "limited_text_injection";
/// The forwarding mode of a turn whose tools were not forwarded at all.
pub const FORWARDING_MODE_DISABLED: &str = "disabled";
/// The forwarding mode when the recorded events say neither.
pub const FORWARDING_MODE_NONE: &str = "none";
/// The reason used when a non-forwarding event carries none.
pub const DEFAULT_NOT_FORWARDED_REASON: &str = "backend does not support downstream tools";

/// Which mediated results a continuation carries
/// (`docs/reference/mediation.md#8-continuation-summaries`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediationInclusion {
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_INCLUDE_MEDIATED_RESULTS_IN_CONTINUATION`.
    pub include_mediated: bool,
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_INCLUDE_REJECTED_MEDIATION_IN_CONTINUATION` (only matters
    /// when `include_mediated` is true).
    pub include_rejected: bool,
}

/// Builds the structured continuation context of `record` from its full event log (read **before**
/// the new `user_input` event is written), following
/// `docs/reference/backends.md#56-continuation-context` steps 1–8.
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
                Some(v) if pyfmt::truthy(v) => Some(v),
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
            && let Some(verdict) = event.payload.get("verdict").filter(|v| pyfmt::truthy(v))
        {
            derived.push(format!(
                "Prior verification verdict: {}.",
                pyfmt::to_str(verdict)
            ));
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
            Some(v) if pyfmt::truthy(v) => FORWARDING_MODE_LIMITED.to_owned(),
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

/// `docs/reference/mediation.md#8-continuation-summaries`: action summaries first, then workflow
/// summaries, in event order.
fn mediated_summaries(events: &[StoredEvent], include_rejected: bool) -> Vec<String> {
    let field =
        |payload: &Value, key: &str| payload.get(key).map(pyfmt::to_str).unwrap_or_default();
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
                    .map(|t| format!(" ({})", pyfmt::to_str(t)))
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
// Limited tool forwarding screening (`docs/reference/backends.md#55-limited-tool-forwarding`)
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

/// Screens a tool for limited text injection
/// (`docs/reference/backends.md#55-limited-tool-forwarding`), checks in order: blank description,
/// unsupported schema keyword, more than [`MAX_INJECTED_PROPERTIES`] top-level properties.
///
/// The original's quirk (**[fixed]** in `docs/reference/backends.md#55-limited-tool-forwarding`; a
/// plain substring search of the schema text, so that any schema containing the letters `not`, e.g.
/// a property named `notes`, was rejected) is fixed: only real keyword usage counts, i.e. an object
/// key named `$ref`, `allOf`, `anyOf`, `oneOf` or `not` anywhere in the schema tree. Names of
/// properties (keys of `properties`, `patternProperties`, `$defs`, `definitions`,
/// `dependentSchemas`) are not keywords, and literal data (`enum`, `const`, `default`, `examples`)
/// is not searched.
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
    let properties = tool.properties().map_or(0, serde_json::Map::len);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Profile, SessionStatus, Workflow};
    use crate::time::Timestamp;

    fn record() -> SessionRecord {
        let now = Timestamp::now();
        SessionRecord {
            session_id: "sess_1".to_owned(),
            workflow: Workflow::RunTask,
            profile: Profile::General,
            provider: "claude".to_owned(),
            provider_session_id: None,
            status: SessionStatus::Completed,
            working_directory: Some("/work/dir".to_owned()),
            created_at: now,
            updated_at: now,
            last_activity_at: now,
            request_count: 1,
            turn_count: 1,
            artifact_count: 0,
            summary_latest: Some("latest summary".to_owned()),
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 0,
            fork: None,
            usage: Default::default(),
        }
    }

    fn ev(event_type: &str, payload: Value) -> StoredEvent {
        StoredEvent {
            event_id: 0,
            session_id: "sess_1".to_owned(),
            event_type: event_type.to_owned(),
            turn_index: 0,
            payload,
            created_at: String::new(),
        }
    }

    fn user(text: &str) -> StoredEvent {
        ev("user_input", json!({ "message": text }))
    }

    fn output(text: &str) -> StoredEvent {
        ev(
            "provider_response_summary",
            json!({ "summary": text, "stop_reason": null }),
        )
    }

    fn turns(n: usize) -> Vec<StoredEvent> {
        (1..=n)
            .flat_map(|i| [user(&format!("u{i}")), output(&format!("o{i}"))])
            .collect()
    }

    fn build(events: &[StoredEvent], policy: &WindowPolicy) -> ContinuationContext {
        build_context(&record(), events, policy, MediationInclusion::default())
    }

    fn policy(turns: i64, warnings: i64, forwarding: i64) -> WindowPolicy {
        WindowPolicy {
            max_recent_turns: turns,
            max_warnings: warnings,
            max_forwarding_events: forwarding,
            ..WindowPolicy::default()
        }
    }

    #[test]
    fn basic_context_fields() {
        let ctx = build(&turns(2), &WindowPolicy::default());
        assert_eq!(ctx.session_id, "sess_1");
        assert_eq!(ctx.reconstruction_version, "v1.0.0");
        assert_eq!(ctx.user_requests, ["u1", "u2"]);
        assert_eq!(ctx.agent_outputs, ["o1", "o2"]);
        assert!(ctx.warnings.is_empty());
        assert_eq!(ctx.forwarding, None);
        assert_eq!(
            ctx.active_constraints,
            [
                ("working_directory".to_owned(), "/work/dir".to_owned()),
                ("profile".to_owned(), "general".to_owned())
            ]
        );
        assert!(ctx.mediated_summaries.is_empty());
        assert_eq!(ctx.session_summary.as_deref(), Some("latest summary"));
        assert_eq!(
            ctx.stats,
            ContinuationStats {
                turns_included: 2,
                reconstruction_version: "v1.0.0".to_owned(),
                ..ContinuationStats::default()
            }
        );
        assert!(!is_truncated(&ctx.stats));
    }

    #[test]
    fn user_and_output_extraction_rules() {
        let events = vec![
            ev("user_input", json!({"task": "  the task  ", "scope": null})),
            ev("user_input", json!({"task": "", "message": "from message"})),
            ev("user_input", json!({"task": 5})),
            ev("user_input", json!({"message": "   "})),
            ev("user_input", json!({})),
            output("  first  "),
            output(""),
            ev("provider_response_summary", json!({"summary": 3})),
            ev("system_prompt_resolved", json!({"profile": "general"})),
        ];
        let ctx = build(&events, &WindowPolicy::default());
        assert_eq!(ctx.user_requests, ["the task", "from message"]);
        assert_eq!(ctx.agent_outputs, ["first"]);
        assert_eq!(ctx.stats.turns_included, 1);
        assert_eq!(ctx.stats.turns_omitted, 0);
    }

    #[test]
    fn turn_windows() {
        // (turns, extra unanswered users, max_recent_turns) → (users kept, outputs kept,
        // included, omitted)
        type Row = (usize, usize, i64, (usize, usize, i64, i64));
        let table: [Row; 7] = [
            (6, 0, 5, (5, 5, 5, 1)),
            (5, 0, 5, (5, 5, 5, 0)),
            (3, 0, 5, (3, 3, 3, 0)),
            (6, 0, 2, (2, 2, 2, 4)),
            (0, 0, 5, (0, 0, 0, 0)),
            (3, 0, 0, (0, 0, 0, 3)),
            (2, 1, 5, (3, 2, 2, 0)),
        ];
        for (n, extra, window, expected) in table {
            let mut events = turns(n);
            for i in 0..extra {
                events.push(user(&format!("x{i}")));
            }
            let ctx = build(&events, &policy(window, 3, 3));
            let got = (
                ctx.user_requests.len(),
                ctx.agent_outputs.len(),
                ctx.stats.turns_included,
                ctx.stats.turns_omitted,
            );
            assert_eq!(got, expected, "turns={n} extra={extra} window={window}");
            assert_eq!(is_truncated(&ctx.stats), expected.3 > 0);
        }
        let ctx = build(&turns(6), &policy(5, 3, 3));
        assert_eq!(ctx.user_requests.first().map(String::as_str), Some("u2"));
        assert_eq!(ctx.agent_outputs.last().map(String::as_str), Some("o6"));
    }

    #[test]
    fn misaligned_pairs_are_reproduced() {
        // A failed turn (user without output) shifts the pairing after windowing.
        let events = vec![
            user("u1"),
            output("o1"),
            user("failed"),
            user("u3"),
            output("o3"),
        ];
        let ctx = build(&events, &policy(2, 3, 3));
        assert_eq!(ctx.user_requests, ["failed", "u3"]);
        assert_eq!(ctx.agent_outputs, ["o1", "o3"]);
        assert_eq!(ctx.stats.turns_included, 2);
        assert_eq!(ctx.stats.turns_omitted, 0);
    }

    fn dropped_event(names: &[&str]) -> StoredEvent {
        ev(
            "downstream_tool_catalog_resolved",
            json!({
                "visible_tools": ["s__a", "s__b", "s__c"],
                "forwarded": 3 - names.len(),
                "dropped": names.len(),
                "dropped_names": names,
                "forwarding_mode": "limited_text_injection"
            }),
        )
    }

    fn disabled_event() -> StoredEvent {
        ev(
            "downstream_tool_catalog_resolved",
            json!({
                "visible_tools": ["s__a", "s__b"],
                "forwarded": false,
                "reason": "backend 'claude_code' does not support downstream tools"
            }),
        )
    }

    #[test]
    fn derived_warning_texts() {
        let events = vec![
            dropped_event(&["s__b", "s__c"]),
            disabled_event(),
            ev(
                "downstream_tool_catalog_resolved",
                json!({"visible_tools": ["s__a"], "forwarded": false}),
            ),
            ev(
                "downstream_tool_catalog_resolved",
                json!({"visible_tools": ["s__a"], "dropped_names": ["s__a"]}),
            ),
            ev("workflow_normalization", json!({"verdict": "pass"})),
            ev("workflow_normalization", json!({"verdict": ""})),
            dropped_event(&[]),
        ];
        let ctx = build(&events, &policy(5, 10, 3));
        assert_eq!(
            ctx.warnings,
            [
                "Prior turn: 2 tool(s) were not forwarded (s__b, s__c). Forwarding mode: limited_text_injection.",
                "Prior turn: federation tools were not forwarded — backend 'claude_code' does not support downstream tools.",
                "Prior turn: federation tools were not forwarded — backend does not support downstream tools.",
                "Prior turn: 1 tool(s) were not forwarded (s__a). Forwarding mode: limited_text_injection.",
                "Prior verification verdict: pass.",
            ]
        );
        assert_eq!(ctx.stats.warnings_included, 5);
        assert_eq!(ctx.stats.warnings_omitted, 0);

        // The first `max_warnings` are kept.
        let ctx = build(&events, &WindowPolicy::default());
        assert_eq!(ctx.warnings.len(), 3);
        assert!(ctx.warnings[0].contains("2 tool(s)"));
        assert_eq!(ctx.stats.warnings_included, 3);
        assert_eq!(ctx.stats.warnings_omitted, 2);
        assert!(is_truncated(&ctx.stats));

        // Switches.
        let no_downgrade = WindowPolicy {
            include_tool_downgrade_context: false,
            ..WindowPolicy::default()
        };
        assert_eq!(
            build(&events, &no_downgrade).warnings,
            ["Prior verification verdict: pass."]
        );
        let mut no_verification = policy(5, 10, 3);
        no_verification.include_verification_context = false;
        assert_eq!(build(&events, &no_verification).warnings.len(), 4);
    }

    #[test]
    fn a_verdict_that_is_not_text_is_rendered_as_python_str() {
        // Python's `str()`: a list is `['pass', 1e+16]`, not JSON text.
        let events = [ev(
            "workflow_normalization",
            json!({"verdict": ["pass", 1e16]}),
        )];
        assert_eq!(
            build(&events, &WindowPolicy::default()).warnings,
            ["Prior verification verdict: ['pass', 1e+16]."]
        );
    }

    #[test]
    fn forwarding_history_rules() {
        // Limited injection with drops.
        let ctx = build(&[dropped_event(&["s__c"])], &WindowPolicy::default());
        assert_eq!(
            ctx.forwarding,
            Some(ForwardingHistory {
                mode: "limited_text_injection".to_owned(),
                compatible_tool_names: vec!["s__a".to_owned(), "s__b".to_owned()],
                dropped_tool_names: vec!["s__c".to_owned()],
                recent_drop_reasons: vec![],
            })
        );

        // Forwarding off: mode disabled; the quirk lists the visible tools as compatible.
        let ctx = build(&[disabled_event()], &WindowPolicy::default());
        let fwd = ctx.forwarding.unwrap();
        assert_eq!(fwd.mode, "disabled");
        assert_eq!(fwd.compatible_tool_names, ["s__a", "s__b"]);
        assert!(fwd.dropped_tool_names.is_empty());
        assert_eq!(
            fwd.recent_drop_reasons,
            ["backend 'claude_code' does not support downstream tools"]
        );

        // api-style event (no forwarded key) → mode none; truthy forwarded without mode →
        // limited; a string `forwarded` is not counted for compatible names.
        let api_event = ev(
            "downstream_tool_catalog_resolved",
            json!({"visible_tools": ["x"]}),
        );
        let fwd = build(&[api_event], &WindowPolicy::default())
            .forwarding
            .unwrap();
        assert_eq!(
            (fwd.mode.as_str(), fwd.compatible_tool_names.len()),
            ("none", 1)
        );
        let truthy_event = ev(
            "downstream_tool_catalog_resolved",
            json!({"visible_tools": ["x"], "forwarded": 1}),
        );
        let fwd = build(&[truthy_event], &WindowPolicy::default())
            .forwarding
            .unwrap();
        assert_eq!(fwd.mode, "limited_text_injection");
        let string_event = ev(
            "downstream_tool_catalog_resolved",
            json!({"visible_tools": ["x"], "forwarded": "yes"}),
        );
        let fwd = build(&[string_event], &WindowPolicy::default())
            .forwarding
            .unwrap();
        assert_eq!(fwd.mode, "limited_text_injection");
        assert!(fwd.compatible_tool_names.is_empty());

        // Window: the last `max_forwarding_events`; the latest decides the mode; unions keep
        // order and drop duplicates.
        let events = vec![
            dropped_event(&["s__a"]),
            disabled_event(),
            dropped_event(&["s__c"]),
            dropped_event(&["s__b", "s__c"]),
        ];
        let ctx = build(&events, &policy(5, 3, 3));
        let fwd = ctx.forwarding.clone().unwrap();
        assert_eq!(fwd.mode, "limited_text_injection");
        assert_eq!(fwd.compatible_tool_names, ["s__a", "s__b"]);
        assert_eq!(fwd.dropped_tool_names, ["s__c", "s__b"]);
        assert_eq!(ctx.stats.forwarding_events_included, 3);
        assert_eq!(ctx.stats.forwarding_events_omitted, 1);
        // Forwarding omissions alone do not mark the context truncated.
        assert_eq!(ctx.stats.warnings_omitted, 1);
        let ctx = build(&events, &policy(5, 10, 1));
        assert_eq!(ctx.stats.forwarding_events_omitted, 3);
        assert!(!is_truncated(&ctx.stats));
        let ctx = build(&events, &policy(5, 10, 0));
        assert_eq!(ctx.forwarding, None);
        assert_eq!(ctx.stats.forwarding_events_omitted, 4);
    }

    #[test]
    fn constraints_without_working_directory() {
        let mut rec = record();
        rec.working_directory = None;
        rec.profile = Profile::Verification;
        rec.summary_latest = None;
        let ctx = build_context(
            &rec,
            &[],
            &WindowPolicy::default(),
            MediationInclusion::default(),
        );
        assert_eq!(
            ctx.active_constraints,
            [("profile".to_owned(), "verification".to_owned())]
        );
        assert_eq!(ctx.session_summary, None);
    }

    #[test]
    fn mediated_summaries_follow_mediation_rules() {
        let long = "r".repeat(160);
        let events = vec![
            ev(
                "mediated_workflow_step_completed",
                json!({"workflow_id": "wf1", "step_index": 0, "target_tool": "s__read",
                       "status": "completed", "result_summary": "step ok"}),
            ),
            ev(
                "mediated_action_completed",
                json!({"request_id": "r1", "target_tool": "s__lookup", "status": "completed",
                       "result_summary": long, "failure_reason": null}),
            ),
            ev(
                "mediated_action_completed",
                json!({"target_tool": "s__x", "status": "completed", "result_summary": "",
                       "action_type": "read"}),
            ),
            ev(
                "mediated_action_completed",
                json!({"target_tool": "s__bad", "status": "failed", "result_summary": ""}),
            ),
            ev(
                "mediated_action_rejected",
                json!({"target_tool": "s__no", "policy_decision": "rejected_by_policy",
                       "failure_reason": "not allowed"}),
            ),
            ev(
                "mediated_workflow_step_completed",
                json!({"workflow_id": "wf1", "step_index": 1, "target_tool": "s__b",
                       "status": "failed", "failure_reason": "boom"}),
            ),
            ev(
                "mediated_workflow_step_rejected",
                json!({"workflow_id": "wf2", "step_index": 0, "target_tool": "s__c",
                       "policy_decision": "rejected", "rejection_reason": "too many"}),
            ),
        ];
        let on = MediationInclusion {
            include_mediated: true,
            include_rejected: false,
        };
        let ctx = build_context(&record(), &events, &WindowPolicy::default(), on);
        assert_eq!(
            ctx.mediated_summaries,
            [
                format!("Tool s__lookup: {} [truncated]", "r".repeat(150)),
                "Tool s__x (read): (completed, no result summary)".to_owned(),
                "Workflow wf1 step 0: tool s__read: step ok".to_owned(),
                "Workflow wf1 step 1: tool s__b (failed): boom".to_owned(),
            ]
        );
        let all = MediationInclusion {
            include_mediated: true,
            include_rejected: true,
        };
        let ctx = build_context(&record(), &events, &WindowPolicy::default(), all);
        assert_eq!(ctx.mediated_summaries.len(), 6);
        assert_eq!(
            ctx.mediated_summaries[2],
            "Tool s__no (rejected): not allowed"
        );
        assert_eq!(
            ctx.mediated_summaries[5],
            "Workflow wf2 step 0: tool s__c (rejected): too many"
        );
        let off = MediationInclusion {
            include_mediated: false,
            include_rejected: true,
        };
        let ctx = build_context(&record(), &events, &WindowPolicy::default(), off);
        assert!(ctx.mediated_summaries.is_empty());
    }

    #[test]
    fn event_payloads() {
        let stats = ContinuationStats {
            turns_included: 5,
            turns_omitted: 1,
            reconstruction_version: RECONSTRUCTION_VERSION.to_owned(),
            ..ContinuationStats::default()
        };
        let stats_json = json!({
            "turns_included": 5, "turns_omitted": 1, "warnings_included": 0,
            "warnings_omitted": 0, "forwarding_events_included": 0,
            "forwarding_events_omitted": 0, "reconstruction_version": "v1.0.0"
        });
        assert_eq!(
            context_built_payload(&WindowPolicy::default(), &stats),
            json!({
                "policy": {"max_recent_turns": 5, "max_warnings": 3, "max_forwarding_events": 3,
                           "include_verification_context": true,
                           "include_tool_downgrade_context": true},
                "stats": stats_json
            })
        );
        assert_eq!(
            context_truncated_payload(&stats),
            json!({ "stats": stats_json })
        );
        assert_eq!(
            prompt_rendered_payload(),
            json!({"reconstruction_version": "v1.0.0"})
        );
    }

    fn tool(description: &str, schema: Value) -> ToolDefinition {
        ToolDefinition {
            name: "srv__tool".to_owned(),
            description: description.into(),
            input_schema: schema.into(),
        }
    }

    #[test]
    fn screening_table() {
        let props = |n: usize| {
            let map: serde_json::Map<String, Value> = (0..n)
                .map(|i| (format!("p{i}"), json!({"type": "string"})))
                .collect();
            json!({"type": "object", "properties": map})
        };
        let table: Vec<(&str, Value, ScreeningLevel, Option<&str>)> = vec![
            ("", props(1), ScreeningLevel::MissingDescription, None),
            ("  ", props(9), ScreeningLevel::MissingDescription, None),
            ("d", props(5), ScreeningLevel::Compatible, None),
            ("d", props(6), ScreeningLevel::ComplexSchema, None),
            ("d", json!({}), ScreeningLevel::Compatible, None),
            // The substring quirk is fixed: `not` as letters is fine.
            (
                "Do not use for notes",
                json!({"type": "object", "properties": {
                    "notes": {"type": "string", "description": "not required; nothing"},
                    "annotation": {"type": "string", "enum": ["not", "anyOf"]},
                    "not": {"type": "string"},
                    "oneOf": {"type": "string", "default": {"allOf": 1}}
                }}),
                ScreeningLevel::Compatible,
                None,
            ),
            (
                "d",
                json!({"type": "object", "properties": {"v": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}),
                ScreeningLevel::SchemaUnsupported,
                Some("anyOf"),
            ),
            (
                "d",
                json!({"type": "object", "properties": {"v": {"$ref": "#/$defs/x"}}, "$defs": {"x": {}}}),
                ScreeningLevel::SchemaUnsupported,
                Some("$ref"),
            ),
            (
                "d",
                json!({"allOf": [{"type": "object"}]}),
                ScreeningLevel::SchemaUnsupported,
                Some("allOf"),
            ),
            (
                "d",
                json!({"type": "object", "properties": {"v": {"type": "array", "items": {"oneOf": []}}}}),
                ScreeningLevel::SchemaUnsupported,
                Some("oneOf"),
            ),
            (
                "d",
                json!({"type": "object", "properties": {"v": {"not": {"type": "null"}}}}),
                ScreeningLevel::SchemaUnsupported,
                Some("not"),
            ),
            // The keyword check comes before the property count.
            (
                "d",
                json!({"type": "object", "anyOf": [], "properties": props(7)["properties"].clone()}),
                ScreeningLevel::SchemaUnsupported,
                Some("anyOf"),
            ),
        ];
        for (description, schema, level, keyword) in table {
            let verdict = screen_tool(&tool(description, schema.clone()));
            assert_eq!(verdict.level, level, "{description:?} {schema}");
            assert_eq!(verdict.is_compatible(), level == ScreeningLevel::Compatible);
            let expected_reason = match level {
                ScreeningLevel::Compatible => {
                    "tool is compatible with limited text injection".to_owned()
                }
                ScreeningLevel::MissingDescription => {
                    "tool has no description and cannot be described to the model".to_owned()
                }
                ScreeningLevel::SchemaUnsupported => format!(
                    "input_schema uses unsupported complexity keyword '{}'; use 'api' backend for full tool support",
                    keyword.unwrap_or_default()
                ),
                ScreeningLevel::ComplexSchema => format!(
                    "input_schema has {} top-level properties (max 5); use 'api' backend for full tool support",
                    schema["properties"].as_object().map_or(0, |m| m.len())
                ),
            };
            assert_eq!(verdict.reason, expected_reason);
        }
        assert_eq!(
            ScreeningLevel::SchemaUnsupported.as_str(),
            "schema_unsupported"
        );
    }
}
