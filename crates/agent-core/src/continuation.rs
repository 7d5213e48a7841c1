//! The structured continuation context (`backends.md` §5.6) that the engine builds from a
//! session's row and event log for backends that declare
//! `supports_structured_continuation_context` (the Claude Code CLI backend).

use serde::Serialize;

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
