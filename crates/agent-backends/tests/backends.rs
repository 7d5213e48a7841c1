//! agent-backends' one integration-test binary: the `api` backend (`api`) and the
//! `claude_code` backend (`claude_code`).

#[path = "backends/api.rs"]
mod api;
#[path = "backends/claude_code.rs"]
mod claude_code;

use agent_core::{BackendRequest, Profile};

/// The system prompt of every request the suites send.
const SYSTEM: &str = "You are a careful assistant.";

/// A first-turn request for `task`, no tools, no history.
fn request(task: &str) -> BackendRequest {
    BackendRequest {
        session_id: "sess_1".to_owned(),
        profile: Profile::General,
        system_prompt: SYSTEM,
        task: task.to_owned(),
        max_turns: 10,
        tools: Vec::new(),
        tool_executor: None,
        history: Vec::new(),
        session_summary: None,
        is_continuation: false,
        working_directory: None,
        provider_session_id: None,
        extra_instructions: None,
        continuation: None,
        output_schema: None,
        fork_provider_session: false,
        spend: Default::default(),
    }
}
