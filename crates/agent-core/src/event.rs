//! Session events (`docs/reference/events.md#2-event-types`): types and payload constructors with
//! exact key sets.

use serde_json::{Value, json};

use crate::error::ErrorObject;
use crate::model::{Profile, string_enum};

string_enum! {
    /// Every event type written to the append-only log.
    EventType {
        UserInput => "user_input",
        SystemPromptResolved => "system_prompt_resolved",
        PolicyDecision => "policy_decision",
        ProviderRequestStart => "provider_request_start",
        ProviderResponseSummary => "provider_response_summary",
        WorkflowNormalization => "workflow_normalization",
        ArtifactEmission => "artifact_emission",
        ErrorEvent => "error_event",
        DownstreamToolCatalogResolved => "downstream_tool_catalog_resolved",
        DownstreamToolInvocation => "downstream_tool_invocation",
        DownstreamToolResult => "downstream_tool_result",
        SessionContinuationContextBuilt => "session_continuation_context_built",
        SessionContinuationContextTruncated => "session_continuation_context_truncated",
        SessionContinuationPromptRendered => "session_continuation_prompt_rendered",
        MediatedActionRequested => "mediated_action_requested",
        MediatedActionApproved => "mediated_action_approved",
        MediatedActionRejected => "mediated_action_rejected",
        MediatedActionCompleted => "mediated_action_completed",
        MediatedWorkflowRequested => "mediated_workflow_requested",
        MediatedWorkflowStepRequested => "mediated_workflow_step_requested",
        MediatedWorkflowStepApproved => "mediated_workflow_step_approved",
        MediatedWorkflowStepRejected => "mediated_workflow_step_rejected",
        MediatedWorkflowStepCompleted => "mediated_workflow_step_completed",
        MediatedWorkflowCompleted => "mediated_workflow_completed",
        // Cancellation (an addition, `docs/reference/tools.md#10-agent_cancel_session`).
        SessionCancelled => "session_cancelled",
        // Built-in workspace tools (an addition, `docs/tools.md#events`).
        WorkspaceToolInvocation => "workspace_tool_invocation",
        WorkspaceToolResult => "workspace_tool_result",
        // Lease safety (additions, issue #12 item 7).
        SessionInterrupted => "session_interrupted",
        LeaseExpired => "lease_expired",
        // Steps streamed by the Claude Code CLI (additions, issue 15 item 2).
        ProviderTurn => "provider_turn",
        ProviderToolUse => "provider_tool_use",
        // Forks (additions, `docs/reference/tools.md#17-agent_fork_session`).
        SessionForked => "session_forked",
        SessionForkCreated => "session_fork_created",
        // The messages of a tool loop, replayed by continuations (an addition,
        // `docs/reference/sessions.md#8-conversation-history`).
        ProviderTranscript => "provider_transcript",
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_type: EventType,
    pub turn_index: i64,
    pub payload: Value,
}

/// An event as read back from the store. The type stays text: a database shared with other
/// implementations may hold types this build does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event_id: i64,
    pub session_id: String,
    pub event_type: String,
    pub turn_index: i64,
    pub payload: Value,
    pub created_at: String,
}

impl Event {
    fn new(event_type: EventType, turn_index: i64, payload: Value) -> Self {
        Self {
            event_type,
            turn_index,
            payload,
        }
    }

    pub fn user_input_task(task: &str) -> Self {
        Self::new(EventType::UserInput, 0, json!({ "task": task }))
    }

    pub fn user_input_message(turn: i64, message: &str) -> Self {
        Self::new(EventType::UserInput, turn, json!({ "message": message }))
    }

    pub fn user_input_verify(task: &str, scope: Option<&str>) -> Self {
        Self::new(
            EventType::UserInput,
            0,
            json!({ "task": task, "scope": scope }),
        )
    }

    pub fn system_prompt_resolved(profile: Profile) -> Self {
        Self::new(
            EventType::SystemPromptResolved,
            0,
            json!({ "profile": profile }),
        )
    }

    pub fn policy_decision_run(working_directory: &str, max_turns: u32) -> Self {
        Self::new(
            EventType::PolicyDecision,
            0,
            json!({ "working_directory": working_directory, "max_turns": max_turns }),
        )
    }

    pub fn policy_decision_verify(fail_closed: bool, evidence_paths: &[String]) -> Self {
        Self::new(
            EventType::PolicyDecision,
            0,
            json!({ "fail_closed": fail_closed, "evidence_paths": evidence_paths }),
        )
    }

    /// A step of the execution at turn index `turn`, as the backend streamed it.
    pub fn backend_step(turn: i64, step: &crate::ports::BackendStep) -> Self {
        use crate::ports::BackendStep;
        match step {
            BackendStep::ModelTurn { turn: n } => {
                Self::new(EventType::ProviderTurn, turn, json!({ "turn": n }))
            }
            BackendStep::ToolUse { turn: n, tool } => Self::new(
                EventType::ProviderToolUse,
                turn,
                json!({
                    "turn": n,
                    "tool": crate::text::truncate_chars(tool, crate::ports::MAX_STEP_TOOL_CHARS),
                }),
            ),
        }
    }

    pub fn provider_request_start(turn: i64) -> Self {
        Self::new(EventType::ProviderRequestStart, turn, json!({}))
    }

    /// The messages an execution's tool loop added after its user message (the model's tool
    /// calls, their results, the final answer), as the Messages API took them.
    pub fn provider_transcript(turn: i64, messages: Vec<Value>) -> Self {
        Self::new(
            EventType::ProviderTranscript,
            turn,
            json!({ "messages": Value::Array(messages) }),
        )
    }

    pub fn provider_response_summary(turn: i64, summary: &str, stop_reason: Option<&str>) -> Self {
        Self::new(
            EventType::ProviderResponseSummary,
            turn,
            json!({ "summary": summary, "stop_reason": stop_reason }),
        )
    }

    pub fn verify_response_summary(turn: i64, verdict: &str, summary: &str) -> Self {
        Self::new(
            EventType::ProviderResponseSummary,
            turn,
            json!({ "verdict": verdict, "summary": summary }),
        )
    }

    pub fn workflow_normalization(turn: i64, verdict: &str) -> Self {
        Self::new(
            EventType::WorkflowNormalization,
            turn,
            json!({ "verdict": verdict }),
        )
    }

    pub fn continuation_context_built(turn: i64, payload: Value) -> Self {
        Self::new(EventType::SessionContinuationContextBuilt, turn, payload)
    }

    pub fn continuation_context_truncated(turn: i64, payload: Value) -> Self {
        Self::new(
            EventType::SessionContinuationContextTruncated,
            turn,
            payload,
        )
    }

    pub fn continuation_prompt_rendered(turn: i64, payload: Value) -> Self {
        Self::new(EventType::SessionContinuationPromptRendered, turn, payload)
    }

    pub fn session_cancelled(turn: i64, reason: &str) -> Self {
        Self::new(
            EventType::SessionCancelled,
            turn,
            json!({ "reason": reason }),
        )
    }

    /// `session_forked {"parent_session_id", "at_turn"}`: the first event of a fork after the
    /// events it copied from its parent.
    pub fn session_forked(parent_session_id: &str, at_turn: i64) -> Self {
        Self::new(
            EventType::SessionForked,
            at_turn,
            json!({ "parent_session_id": parent_session_id, "at_turn": at_turn }),
        )
    }

    /// `session_fork_created {"child_session_id", "at_turn"}`: the one event a fork writes to
    /// its parent.
    pub fn session_fork_created(child_session_id: &str, at_turn: i64) -> Self {
        Self::new(
            EventType::SessionForkCreated,
            at_turn,
            json!({ "child_session_id": child_session_id, "at_turn": at_turn }),
        )
    }

    /// `session_interrupted {"reason"}`: the end of an execution could not be recorded, so
    /// the session was marked `interrupted` instead (written by
    /// [`SessionStore::interrupt_execution`](crate::SessionStore::interrupt_execution)).
    pub fn session_interrupted(turn: i64, reason: &str) -> Self {
        Self::new(
            EventType::SessionInterrupted,
            turn,
            json!({ "reason": reason }),
        )
    }

    /// `lease_expired {"locked_by", "lock_expires_at"}`: a `running` session whose lease had
    /// expired (or that had no lock) was marked `interrupted` by the lease sweeper; the values
    /// are the lock columns as the sweeper found them (each may be null).
    pub fn lease_expired(
        turn: i64,
        locked_by: Option<&str>,
        lock_expires_at: Option<&str>,
    ) -> Self {
        Self::new(
            EventType::LeaseExpired,
            turn,
            json!({ "locked_by": locked_by, "lock_expires_at": lock_expires_at }),
        )
    }

    /// An `error_event` with a payload of the caller's shape (verification's unavailable paths
    /// record a string, or a code and summary).
    pub fn error_payload(turn: i64, payload: Value) -> Self {
        Self::new(EventType::ErrorEvent, turn, payload)
    }

    /// `{"error": {code, message[, details]}}`: `details` only when non-empty.
    pub fn error(turn: i64, error: &ErrorObject) -> Self {
        let mut inner = serde_json::Map::new();
        inner.insert("code".into(), json!(error.code));
        inner.insert("message".into(), json!(error.message));
        if let crate::error::Details::Value(v) = &error.details {
            let empty = v.is_null() || v.as_object().is_some_and(|o| o.is_empty());
            if !empty {
                inner.insert("details".into(), v.clone());
            }
        }
        Self::new(EventType::ErrorEvent, turn, json!({ "error": inner }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn payloads_have_exact_keys() {
        assert_eq!(
            Event::user_input_verify("t", None).payload,
            json!({"task": "t", "scope": null})
        );
        assert_eq!(
            Event::provider_response_summary(1, "s", None).payload,
            json!({"summary": "s", "stop_reason": null})
        );
        let e = Event::error(
            0,
            &ErrorObject::new(ErrorCode::ProviderRuntimeError, "boom"),
        );
        assert_eq!(
            e.payload,
            json!({"error": {"code": "provider_runtime_error", "message": "boom"}})
        );
        assert_eq!(e.event_type.as_str(), "error_event");
    }
}
