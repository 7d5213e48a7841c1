//! agent-backends' one integration-test binary: the `api` backend (`api`) and the
//! `claude_code` backend (`claude_code`).

#[path = "backends/api.rs"]
mod api;
#[path = "backends/claude_code.rs"]
mod claude_code;
