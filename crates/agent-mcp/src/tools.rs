//! The published tools: names, contractual input schemas
//! (`docs/reference/tools.md#2-published-tools`, byte for byte in property order), output schemas
//! and annotations (additions, same section).

use std::sync::Arc;

use agent_core::request::{DEFAULT_WAIT_TIMEOUT_SECONDS, MAX_WAIT_SECONDS};
use agent_core::spend::{Effort, Limit, MAX_BUDGET_USD, MAX_MODEL_ID_BYTES, MAX_TOTAL_TOKENS};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

/// A tool this server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolName {
    RunTask,
    ContinueSession,
    GetSession,
    ListSessions,
    VerifyTask,
    GetRuntimeStatus,
    CancelSession,
    WaitSession,
    ForkSession,
}

impl ToolName {
    /// Publication order in standard mode: the original's six, then the additions
    /// (`docs/reference/tools.md#2-published-tools`).
    pub const ALL: [ToolName; 9] = [
        ToolName::RunTask,
        ToolName::ContinueSession,
        ToolName::GetSession,
        ToolName::ListSessions,
        ToolName::VerifyTask,
        ToolName::GetRuntimeStatus,
        ToolName::CancelSession,
        ToolName::WaitSession,
        ToolName::ForkSession,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ToolName::RunTask => "agent_run_task",
            ToolName::ContinueSession => "agent_continue_session",
            ToolName::GetSession => "agent_get_session",
            ToolName::ListSessions => "agent_list_sessions",
            ToolName::VerifyTask => "agent_verify_task",
            ToolName::GetRuntimeStatus => "agent_get_runtime_status",
            ToolName::CancelSession => "agent_cancel_session",
            ToolName::WaitSession => agent_core::envelope::WAIT_TOOL,
            ToolName::ForkSession => "agent_fork_session",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    const fn title(self) -> &'static str {
        match self {
            ToolName::RunTask => "Run an agent task",
            ToolName::ContinueSession => "Continue an agent session",
            ToolName::GetSession => "Get an agent session",
            ToolName::ListSessions => "List agent sessions",
            ToolName::VerifyTask => "Verify a task against evidence",
            ToolName::GetRuntimeStatus => "Get runtime status",
            ToolName::CancelSession => "Cancel a running session",
            ToolName::WaitSession => "Wait for a session's result",
            ToolName::ForkSession => "Fork a session",
        }
    }

    const fn description(self) -> &'static str {
        match self {
            ToolName::RunTask => {
                "Runs a bounded Claude-backed task in a new durable session and returns the canonical envelope (ok, session_id, status, workflow, profile, summary, result, artifacts, warnings, errors)."
            }
            ToolName::ContinueSession => {
                "Continues an existing session with a new message; the message is appended to the session's transcript and the canonical envelope is returned."
            }
            ToolName::GetSession => {
                "Returns the stored state of one session: status, profile, counters, timestamps and latest summary."
            }
            ToolName::ListSessions => {
                "Lists sessions, most recently updated first, optionally filtered by status."
            }
            ToolName::VerifyTask => {
                "Runs a structured, read-only, fail-closed verification workflow against evidence and returns one of the verdicts pass, pass_with_restrictions, fail_closed, insufficient_evidence."
            }
            ToolName::GetRuntimeStatus => {
                "Read-only snapshot of backend, transport, preset, capability flags, mediation and continuation settings, federation status and preserved limitations."
            }
            ToolName::CancelSession => {
                "Cancels the run, continuation or verification in progress on a session (from any request or connection, or from any server process on the same store); the session ends with status cancelled. A session that is not running is left unchanged."
            }
            ToolName::WaitSession => {
                "Waits until a session is no longer running (at most timeout_seconds) and returns the complete envelope of its latest run, continuation or verification, as that call would have returned it; at the timeout, an envelope with status running. Use it to collect work started with wait_seconds. A session that is not running answers at once; its result can be collected any number of times."
            }
            ToolName::ForkSession => {
                "Creates a new session whose conversation is the given session's up to at_turn (default: its latest completed turn), leaving the original unchanged, and returns the new session_id in the canonical envelope; with message, also continues the new session with it (as agent_continue_session). A running session can be forked at its last completed turn."
            }
        }
    }

    /// The contractual input schema.
    pub fn input_schema(self) -> Value {
        match self {
            ToolName::RunTask => with_spend(json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": "The task for the agent to perform."},
                    "system_profile": {"type": "string", "enum": ["general", "verification"], "default": "general", "description": "Execution profile."},
                    "working_directory": {"type": "string", "description": "Working directory for the task (defaults to the server's working directory); must lie inside the allowed directories."},
                    "attachments": {"type": "array", "items": {"type": "string"}, "description": "Paths of files to attach."},
                    "max_turns": {"type": "integer", "default": 10, "minimum": 1, "maximum": 100, "description": "Maximum conversation turns (capped by the profile)."},
                    "allow_tools": {"type": "boolean", "default": true, "description": "Whether tool use is allowed (subject to profile policy)."},
                    "output_schema": {"type": "object", "description": "A JSON Schema (at most 64 KiB) the answer must match; the result then carries structured_output."},
                    "wait_seconds": wait_seconds_schema()
                },
                "required": ["task"]
            })),
            ToolName::ContinueSession => with_spend(json!({
                "type": "object",
                "properties": {
                    "session_id": {"type": "string", "description": "The session to continue (sess_…)."},
                    "message": {"type": "string", "description": "The next message for the agent."},
                    "max_turns": {"type": "integer", "default": 10, "minimum": 1, "maximum": 100, "description": "Maximum conversation turns (capped by the profile)."},
                    "output_schema": {"type": "object", "description": "A JSON Schema (at most 64 KiB) the answer must match; the result then carries structured_output."},
                    "wait_seconds": wait_seconds_schema()
                },
                "required": ["session_id", "message"]
            })),
            ToolName::GetSession => json!({
                "type": "object",
                "properties": {"session_id": {"type": "string", "description": "The session id (sess_…)."}},
                "required": ["session_id"]
            }),
            ToolName::ListSessions => json!({
                "type": "object",
                "properties": {
                    "limit": {"type": "integer", "default": 20, "minimum": 1, "maximum": 200, "description": "Maximum number of sessions to return."},
                    "status": {"type": "string", "enum": ["created", "running", "completed", "failed", "interrupted", "cancelled"], "description": "Only sessions with this status."}
                }
            }),
            ToolName::VerifyTask => with_spend(json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": "The claim or task to verify."},
                    "scope": {"type": "string", "description": "What the verification covers."},
                    "evidence_paths": {"type": "array", "items": {"type": "string"}, "description": "Files or directories offered as evidence."},
                    "fail_closed": {"type": "boolean", "default": true, "description": "Fail closed when evidence is missing or the verdict is unclear."},
                    "system_profile": {"type": "string", "enum": ["verification"], "default": "verification", "description": "Always the verification profile."},
                    "wait_seconds": wait_seconds_schema()
                },
                "required": ["task"]
            })),
            ToolName::GetRuntimeStatus => json!({"type": "object", "properties": {}}),
            ToolName::CancelSession => json!({
                "type": "object",
                "properties": {"session_id": {"type": "string", "description": "The running session to cancel (sess_…)."}},
                "required": ["session_id"]
            }),
            ToolName::ForkSession => with_spend(json!({
                "type": "object",
                "properties": {
                    "session_id": {"type": "string", "description": "The session to fork (sess_…); at most 128 bytes."},
                    "at_turn": {"type": "integer", "minimum": 1, "description": "The turn to fork at, 1 to the session's turn_count, where one of its runs or continuations ended (default: its latest)."},
                    "message": {"type": "string", "description": "A message to continue the new session with, as agent_continue_session would."},
                    "max_turns": {"type": "integer", "default": 10, "minimum": 1, "maximum": 100, "description": "Maximum conversation turns of the continuation (capped by the profile); only with message."},
                    "output_schema": {"type": "object", "description": "A JSON Schema (at most 64 KiB) the continuation's answer must match; only with message."},
                    "wait_seconds": wait_seconds_schema()
                },
                "required": ["session_id"]
            })),
            ToolName::WaitSession => json!({
                "type": "object",
                "properties": {
                    "session_id": {"type": "string", "description": "The session to wait for (sess_…)."},
                    "timeout_seconds": {"type": "number", "default": DEFAULT_WAIT_TIMEOUT_SECONDS, "minimum": 0, "maximum": MAX_WAIT_SECONDS, "description": "The longest to wait for the session to stop running, in seconds."}
                },
                "required": ["session_id"]
            }),
        }
    }

    /// The schema of `structuredContent`.
    pub fn output_schema(self) -> Value {
        match self {
            ToolName::RunTask
            | ToolName::ContinueSession
            | ToolName::VerifyTask
            | ToolName::CancelSession
            | ToolName::ForkSession => envelope_schema(),
            ToolName::GetSession => json!({
                "type": "object",
                "anyOf": [session_schema(), error_result_schema()]
            }),
            ToolName::ListSessions => json!({
                "type": "object",
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"sessions": {"type": "array", "items": list_entry_schema()}},
                        "required": ["sessions"]
                    },
                    error_result_schema()
                ]
            }),
            ToolName::GetRuntimeStatus => status_schema(),
            ToolName::WaitSession => json!({
                "type": "object",
                "anyOf": [envelope_schema(), error_result_schema()]
            }),
        }
    }

    fn annotations(self) -> ToolAnnotations {
        let base = ToolAnnotations::with_title(self.title());
        match self {
            ToolName::GetSession
            | ToolName::ListSessions
            | ToolName::GetRuntimeStatus
            | ToolName::WaitSession => base.read_only(true),
            ToolName::RunTask | ToolName::ContinueSession | ToolName::ForkSession => {
                base.read_only(false).open_world(true)
            }
            ToolName::VerifyTask => base.read_only(false).open_world(true).destructive(false),
            ToolName::CancelSession => base
                .read_only(false)
                .destructive(true)
                .idempotent(false)
                .open_world(false),
        }
    }

    /// The MCP tool definition.
    pub fn definition(self) -> Tool {
        Tool::new(
            self.as_str(),
            self.description(),
            Arc::new(as_object(self.input_schema())),
        )
        .with_title(self.title())
        .with_raw_output_schema(Arc::new(as_object(self.output_schema())))
        .with_annotations(self.annotations())
    }
}

/// `wait_seconds` of run, continue and verify (`docs/reference/tools.md#15-background-runs`).
fn wait_seconds_schema() -> Value {
    json!({
        "type": "number",
        "minimum": 0,
        "maximum": MAX_WAIT_SECONDS,
        "description": "Answer after at most this many seconds: if the work is not done by then, the answer has status running and the work goes on in the server; collect its result with agent_wait_session. Absent: wait until the work is done."
    })
}

/// `schema` with `max_budget_usd`, `max_total_tokens`, `model` and `effort` after its other
/// properties: the spend arguments of run, continue, verify and fork
/// (`docs/reference/tools.md#18-budgets-and-models`).
fn with_spend(mut schema: Value) -> Value {
    if let Some(properties) = schema["properties"].as_object_mut() {
        properties.insert(Limit::Usd.name().into(), max_budget_usd_schema());
        properties.insert(Limit::Tokens.name().into(), max_total_tokens_schema());
        properties.insert("model".into(), model_schema());
        properties.insert("effort".into(), effort_schema());
    }
    schema
}

fn max_budget_usd_schema() -> Value {
    json!({
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": MAX_BUDGET_USD,
        "description": "The most this call may cost, in US dollars (lowered to the operator's cap). The tool loop stops before a model call that would pass it and answers with a warning and the spend so far."
    })
}

fn max_total_tokens_schema() -> Value {
    json!({
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_TOTAL_TOKENS,
        "description": "The most tokens (input, output and cache) this call may use (lowered to the operator's cap); api backend only."
    })
}

fn model_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_MODEL_ID_BYTES,
        "description": "The model for this call: the configured one or one the operator allows."
    })
}

fn effort_schema() -> Value {
    json!({
        "type": "string",
        "enum": Effort::ALL.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "description": "How much effort the model spends, where the model supports it."
    })
}

fn usage_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "input_tokens": {"type": "integer"},
            "output_tokens": {"type": "integer"},
            "cache_creation_input_tokens": {"type": "integer"},
            "cache_read_input_tokens": {"type": "integer"},
            "total_cost_usd": {"type": "number"}
        },
        "required": ["input_tokens", "output_tokens"]
    })
}

fn as_object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

fn nullable_string() -> Value {
    json!({"type": ["string", "null"]})
}

fn error_object_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "details": {"type": ["object", "null"]}
        },
        "required": ["code", "message"]
    })
}

fn error_result_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"error": error_object_schema()},
        "required": ["error"]
    })
}

fn envelope_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "session_id": {"type": "string"},
            "status": {"type": "string", "enum": ["completed", "failed", "running"]},
            "workflow": {"type": "string"},
            "profile": {"type": "string"},
            "summary": {"type": "string"},
            "result": {"type": "object"},
            "artifacts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "artifact_id": {"type": "string"},
                        "artifact_type": {"type": "string"},
                        "logical_name": {"type": "string"},
                        "mime_type": {"type": "string"}
                    },
                    "required": ["artifact_id", "artifact_type", "logical_name", "mime_type"]
                }
            },
            "warnings": {"type": "array", "items": {"type": "string"}},
            "errors": {"type": "array", "items": error_object_schema()}
        },
        "required": ["ok", "session_id", "status", "workflow", "profile", "summary", "result", "artifacts", "warnings", "errors"]
    })
}

fn session_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "session_id": {"type": "string"},
            "workflow": {"type": "string"},
            "profile": {"type": "string"},
            "status": {"type": "string"},
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "last_activity_at": {"type": "string"},
            "summary_latest": nullable_string(),
            "artifact_count": {"type": "integer"},
            "turn_count": {"type": "integer"},
            "request_count": {"type": "integer"},
            "working_directory": nullable_string(),
            "parent_session_id": nullable_string(),
            "forked_at_turn": {"type": ["integer", "null"]},
            "usage": usage_schema()
        },
        "required": ["session_id", "workflow", "profile", "status", "created_at", "updated_at", "last_activity_at", "summary_latest", "artifact_count", "turn_count", "request_count", "working_directory", "parent_session_id", "forked_at_turn", "usage"]
    })
}

/// One entry of `agent_list_sessions`: these properties of the session object, all required.
fn list_entry_schema() -> Value {
    const FIELDS: [&str; 6] = [
        "session_id",
        "workflow",
        "profile",
        "status",
        "updated_at",
        "summary_latest",
    ];
    let session = session_schema();
    let properties: JsonObject = FIELDS
        .iter()
        .map(|&field| (field.to_owned(), session["properties"][field].clone()))
        .collect();
    json!({"type": "object", "properties": properties, "required": FIELDS})
}

fn status_schema() -> Value {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    json!({
        "type": "object",
        "properties": {
            "version": {"type": "string"},
            "operator_profile_preset": nullable_string(),
            "backend": {"type": "string"},
            "transport": {"type": "string"},
            "model": {"type": "string"},
            "federation_enabled": {"type": "boolean"},
            "federation_active": {"type": "boolean"},
            "capability_flags": {"type": "object"},
            "continuation_settings": {"type": "object"},
            "mediation_settings": {"type": "object"},
            "workflow_settings": {"type": "object"},
            "preserved_limitations": {"type": "array", "items": {"type": "string"}},
            "resolved_at": {"type": "string"},
            "mode": {"type": "string"},
            "policy_mode": nullable_string(),
            "authority_mode": nullable_string(),
            "tool_surface_mode": nullable_string(),
            "active_profile": nullable_string(),
            "exposed_tools": nullable("array"),
            "allowed_directories": nullable("array"),
            "restriction_contract_id": nullable_string(),
            "restriction_contract_version": nullable("integer"),
            "fail_closed_enabled": nullable("boolean"),
            "restriction_compliance": nullable("boolean"),
            "non_compliance_reasons": nullable("array"),
            "server_version": nullable_string(),
            "session_store": {"type": "string", "enum": ["sqlite", "postgresql"]}
        },
        "required": ["version", "backend", "transport", "model", "mode"]
    })
}
