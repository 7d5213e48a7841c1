//! # agent-backends
//!
//! Execution backends of claude-agent-mcp: implementations of the
//! [`agent_core::ExecutionBackend`] port.
//!
//! * [`api`]: [`MessagesApiBackend`], which calls the Anthropic Messages API over HTTP (single-shot
//!   requests and the tool-use loop of `docs/reference/backends.md#4-the-api-backend`).
//! * [`claude_code`]: [`ClaudeCodeBackend`], which runs the Claude Code CLI
//!   (`docs/reference/backends.md#5-the-claude_code-backend`): the native JSON mode (an addition)
//!   or the original's text mode (`docs/reference/backends.md#52-invocation`).

pub mod api;
pub mod claude_code;
#[cfg(test)]
mod strategies;

pub use api::{ApiBuildError, ApiConfig, MessagesApiBackend};
pub use claude_code::{
    ClaudeCodeBackend, ClaudeCodeConfig, ClaudeCodeMode, McpServer, McpTransport, locate_cli,
};
