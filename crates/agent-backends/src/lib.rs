//! # agent-backends
//!
//! Execution backends of claude-agent-mcp: implementations of the
//! [`agent_core::ExecutionBackend`] port.
//!
//! * [`api`]: [`MessagesApiBackend`], which calls the Anthropic Messages API over HTTP
//!   (single-shot requests and the tool-use loop of `backends.md` §4).
//! * [`claude_code`]: [`ClaudeCodeBackend`], which runs the Claude Code CLI (`backends.md` §5,
//!   native JSON mode of `beyond.md` §4, or the original's text mode).

pub mod api;
pub mod claude_code;
#[cfg(test)]
mod strategies;

pub use api::{ApiBuildError, ApiConfig, MessagesApiBackend};
pub use claude_code::{
    ClaudeCodeBackend, ClaudeCodeConfig, ClaudeCodeMode, McpServer, McpTransport, locate_cli,
};
