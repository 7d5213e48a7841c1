//! The observer port: what the engine tells an observer (metrics) about its work, without any
//! I/O of its own. Every method has a no-op default, so an embedder that does not observe
//! anything gives nothing ([`NoObserver`], the engine's default). The metrics adapter is
//! `agent_mcp::observability::Metrics` (`docs/observability.md`).
//!
//! Everything passed is low-cardinality by construction (`&'static str` names of fixed sets,
//! enums, numbers): never a session id or free text, so an observer can use any of it as a
//! metric label. Calls are made on the engine's own tasks: an implementation must be cheap and
//! must not block (atomic counters, not I/O).

use std::time::Duration;

use crate::envelope::Envelope;
use crate::error::ErrorCode;
use crate::model::Workflow;
use crate::ports::Usage;

/// How a workflow call ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunOutcome {
    /// The envelope is `ok`.
    Completed,
    /// The execution or the store failed (backend error, store failure, lost lease, …).
    Failed,
    /// The execution was cancelled (`session_cancelled`).
    Cancelled,
    /// The request was refused: invalid, denied by policy, an unknown or busy session, a
    /// session in the wrong status, missing evidence or a preflight block ([`is_refusal`]).
    Rejected,
}

/// Whether `code` refuses the request itself (nothing failed: the caller must change it)
/// rather than reporting a failure of the execution or the store.
pub fn is_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::ValidationError
            | ErrorCode::PolicyDenied
            | ErrorCode::SessionNotFound
            | ErrorCode::SessionConflict
            | ErrorCode::SessionStatusError
            | ErrorCode::ToolNotAdmitted
            | ErrorCode::UnknownTool
            | ErrorCode::MissingEvidence
            | ErrorCode::ScopeTooBroad
            | ErrorCode::AmbiguousRequest
            | ErrorCode::MissingRequiredContext
            | ErrorCode::NonVerifiableRequest
            | ErrorCode::OutOfProfileRequest
            | ErrorCode::RestrictedModeMismatch
    )
}

impl RunOutcome {
    /// Every outcome, in label order.
    pub const ALL: [RunOutcome; 4] = [
        RunOutcome::Completed,
        RunOutcome::Failed,
        RunOutcome::Cancelled,
        RunOutcome::Rejected,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::Rejected => "rejected",
        }
    }

    /// The outcome an envelope reports (by its first error's code).
    pub fn of(envelope: &Envelope) -> Self {
        if envelope.ok {
            return RunOutcome::Completed;
        }
        match envelope.errors.first().map(|e| e.code) {
            Some(ErrorCode::SessionCancelled) => RunOutcome::Cancelled,
            Some(code) if is_refusal(code) => RunOutcome::Rejected,
            _ => RunOutcome::Failed,
        }
    }
}

/// Where a tool the model called comes from, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolKind {
    /// The built-in workspace tools (`agent-tools`).
    Builtin,
    /// A downstream MCP server's tool called in the tool-use loop (`agent-federation`).
    Federated,
    /// A tool request in a `claude_code` output, executed by mediation (`agent-mediation`).
    Mediated,
}

impl ToolKind {
    pub const ALL: [ToolKind; 3] = [ToolKind::Builtin, ToolKind::Federated, ToolKind::Mediated];

    pub const fn as_str(self) -> &'static str {
        match self {
            ToolKind::Builtin => "builtin",
            ToolKind::Federated => "federated",
            ToolKind::Mediated => "mediated",
        }
    }
}

/// One workflow call (`agent_run_task`, `agent_continue_session`, `agent_verify_task`) that
/// has returned its envelope.
#[derive(Debug, Clone, Copy)]
pub struct RunReport {
    pub workflow: Workflow,
    /// The backend's name (`api`, `claude_code`).
    pub backend: &'static str,
    pub outcome: RunOutcome,
    /// From the call to its envelope.
    pub duration: Duration,
}

/// What the engine reports. Every method defaults to doing nothing.
pub trait Observer: Send + Sync + 'static {
    /// A workflow call returned its envelope.
    fn run_finished(&self, _report: &RunReport) {}

    /// A backend execution returned an output: its model turns (`turn_count`, at least 1) and
    /// its usage, when the backend reports one.
    fn execution_output(&self, _backend: &'static str, _turns: u32, _usage: Option<&Usage>) {}

    /// A tool the model called returned (`ok` false when it answered an error).
    fn tool_call(&self, _kind: ToolKind, _ok: bool) {}

    /// An execution was recorded as cancelled.
    fn cancelled(&self, _workflow: Workflow) {}

    /// One pass of the lease sweeper: how many sessions it marked `interrupted`.
    fn lease_sweep(&self, _swept: u64) {}

    /// A store call the engine made failed; `operation` names it, from a fixed set:
    /// `begin_session`, `get_session`, `list_sessions`, `acquire_lock`, `events`,
    /// `begin_execution`, `finish_execution`, `artifacts`, `read_artifact`,
    /// `sweep_expired_leases`.
    fn store_error(&self, _operation: &'static str) {}
}

/// The observer that observes nothing (the engine's default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// Traces: the `tracing` spans the engine, the backends, mediation and the MCP layer open for
/// OpenTelemetry (`docs/observability.md#traces`), following the GenAI and MCP semantic
/// conventions. Spans are plain `tracing` spans (no I/O here); the binary exports those of
/// [`SPAN_TARGET`] when an OTLP endpoint is configured, and no other layer sees them.
pub mod trace {
    /// The `tracing` target of every exported span. The binary's log layer filters it out
    /// (spans never change the log lines), and its OpenTelemetry layer takes only it, so no log
    /// event and no other crate's span is exported.
    pub const SPAN_TARGET: &str = "claude_agent_mcp::trace";

    /// `gen_ai.provider.name` of every model call.
    pub const PROVIDER: &str = "anthropic";

    /// The most bytes of one text recorded in `gen_ai.input.messages` /
    /// `gen_ai.output.messages` when the operator opted in to recording content; longer text
    /// is cut (at a character boundary) and ends with `…`.
    pub const MAX_RECORDED_CONTENT_BYTES: usize = 16 * 1024;

    /// The longest value shaped outside the server (a request's ids, a model's or the CLI's
    /// names, ids and reasons) that is put on a span; a longer one is left off.
    pub const MAX_ATTRIBUTE_BYTES: usize = 512;

    /// `value` when it may go on a span ([`MAX_ATTRIBUTE_BYTES`]).
    pub fn bounded(value: &str) -> Option<&str> {
        (value.len() <= MAX_ATTRIBUTE_BYTES).then_some(value)
    }

    /// A failed operation on its span: `error.type` (`error_type`) and `otel.status_code`
    /// `error`.
    pub fn record_error(span: &tracing::Span, error_type: &str) {
        span.record("error.type", error_type);
        span.record("otel.status_code", "error");
    }

    /// A model call's token usage on its `chat` span: `gen_ai.usage.input_tokens` and
    /// `gen_ai.usage.output_tokens`, and the cache counts when the provider reported them.
    pub fn record_usage(span: &tracing::Span, usage: &crate::ports::Usage) {
        span.record("gen_ai.usage.input_tokens", usage.input_tokens);
        span.record("gen_ai.usage.output_tokens", usage.output_tokens);
        if let Some(n) = usage.cache_read_input_tokens {
            span.record("gen_ai.usage.cache_read.input_tokens", n);
        }
        if let Some(n) = usage.cache_creation_input_tokens {
            span.record("gen_ai.usage.cache_creation.input_tokens", n);
        }
    }

    /// One message in the GenAI conventions' JSON form
    /// (`[{"role":…,"parts":[{"type":"text","content":…}]}]`, plus `finish_reason` for an
    /// output), its text bounded by [`MAX_RECORDED_CONTENT_BYTES`]. Only called when the
    /// operator opted in (`CLAUDE_AGENT_MCP_OTEL_RECORD_CONTENT`).
    pub fn messages(role: &str, text: &str, finish_reason: Option<&str>) -> String {
        let kept = crate::text::truncate_bytes(text, MAX_RECORDED_CONTENT_BYTES);
        let content = if kept.len() < text.len() {
            format!("{kept}…")
        } else {
            text.to_owned()
        };
        let mut message = serde_json::json!({
            "role": role,
            "parts": [{"type": "text", "content": content}],
        });
        if let (Some(reason), Some(object)) = (finish_reason, message.as_object_mut()) {
            object.insert("finish_reason".into(), reason.into());
        }
        serde_json::Value::Array(vec![message]).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorObject;
    use crate::model::Profile;
    use serde_json::Map;

    #[test]
    fn recorded_messages_are_bounded_and_shaped_as_the_conventions_say() {
        let short = trace::messages("user", "hi", None);
        assert_eq!(
            short,
            r#"[{"role":"user","parts":[{"type":"text","content":"hi"}]}]"#
        );
        let out = trace::messages("assistant", "ok", Some("end_turn"));
        assert_eq!(
            out,
            r#"[{"role":"assistant","parts":[{"type":"text","content":"ok"}],"finish_reason":"end_turn"}]"#
        );
        let long = "é".repeat(trace::MAX_RECORDED_CONTENT_BYTES);
        let cut = trace::messages("user", &long, None);
        assert!(cut.len() < trace::MAX_RECORDED_CONTENT_BYTES + 100);
        assert!(cut.contains("é…"));
    }

    #[test]
    fn outcomes_follow_the_envelope() {
        let ok = Envelope::success(
            "sess_x".into(),
            Workflow::RunTask,
            Profile::General,
            String::new(),
            Map::new(),
        );
        assert_eq!(RunOutcome::of(&ok), RunOutcome::Completed);
        let failed = Envelope::error(
            "sess_x",
            Workflow::RunTask,
            "general",
            ErrorObject::new(ErrorCode::ProviderRuntimeError, "boom"),
        );
        assert_eq!(RunOutcome::of(&failed), RunOutcome::Failed);
        let cancelled = Envelope::failure(
            "sess_x",
            Workflow::RunTask,
            "general",
            ErrorCode::SessionCancelled,
            "cancelled",
        );
        assert_eq!(RunOutcome::of(&cancelled), RunOutcome::Cancelled);
        for code in [
            ErrorCode::ValidationError,
            ErrorCode::PolicyDenied,
            ErrorCode::SessionConflict,
            ErrorCode::MissingEvidence,
            ErrorCode::ScopeTooBroad,
        ] {
            let rejected = Envelope::failure("", Workflow::RunTask, "general", code, "no");
            assert_eq!(RunOutcome::of(&rejected), RunOutcome::Rejected, "{code}");
        }
        // A store failure before any session was created is a failure, not a refusal.
        let store_down = Envelope::failure(
            "",
            Workflow::RunTask,
            "general",
            ErrorCode::ProviderRuntimeError,
            "database error",
        );
        assert_eq!(RunOutcome::of(&store_down), RunOutcome::Failed);
        let labels: Vec<&str> = RunOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(labels, ["completed", "failed", "cancelled", "rejected"]);
        let kinds: Vec<&str> = ToolKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, ["builtin", "federated", "mediated"]);
    }
}
